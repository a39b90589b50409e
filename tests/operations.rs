//! The HTTP listener as an operator meets it, against a real nats-server, the
//! real `govledger serve` binary and a SCIM server speaking the real protocol:
//! `/metrics` read by Prometheus's own Python parser (PyPI prometheus-client)
//! moves as a sync and an action run; `/readyz` and gRPC health flip when the
//! paused projector falls past its lag bound, and recover when it resumes;
//! the data pages want a reader's token.

use std::{collections::BTreeMap, time::Duration};

use govledger_proto::v1::{ActionKind, ActionOutcome, Verdict};
use govledger_testkit::{
    Govledger, NatsServer,
    fault_scim::{FaultScim, Faults, RateLimitFault, RetryAfter, ScimConfig},
    govledger::{action_request, run_govledger, scim_source_toml},
};
use serde_json::Value;

/// The lag bound of these tests: a sync of the fault server's users writes more.
const LAG_BOUND: u64 = 20;

async fn setup() -> (NatsServer, FaultScim, Govledger) {
    let nats = NatsServer::start().await;
    let scim = FaultScim::start_with(ScimConfig {
        users: 150,
        groups: 2,
        ..Default::default()
    })
    .await;
    let top =
        format!("[http]\naddr = \"127.0.0.1:0\"\n[projector]\nlag_bound_events = {LAG_BOUND}\n");
    let toml = format!(
        "{top}{}",
        scim_source_toml(&scim.base_url, "resources = [\"Users\", \"Groups\"]")
    );
    let gl = Govledger::serve_with_config(&nats.url(), &toml);
    (nats, scim, gl)
}

/// GET `path` on the HTTP listener with `auth` as the Authorization header
/// ("" = none): status and body.
async fn get(gl: &Govledger, path: &str, auth: &str) -> (u16, String) {
    let url = format!("http://{}{path}", gl.http_addr());
    govledger_ingest::http::install_crypto_provider();
    let mut req = reqwest::Client::new().get(&url);
    if !auth.is_empty() {
        req = req.header("authorization", auth);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.text().await.unwrap())
}

fn bearer(gl: &Govledger) -> String {
    let token = std::fs::read_to_string(gl.token_file()).unwrap();
    format!("Bearer {}", token.trim())
}

/// A scrape as Prometheus's Python parser reads it.
struct Scrape {
    types: BTreeMap<String, String>,
    samples: Vec<(String, BTreeMap<String, String>, f64)>,
}

impl Scrape {
    async fn of(gl: &Govledger) -> Self {
        let (status, text) = get(gl, "/metrics", &bearer(gl)).await;
        assert_eq!(status, 200, "{text}");
        let py = concat!(env!("CARGO_MANIFEST_DIR"), "/.tools/venv/bin/python");
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/py/parse_metrics.py");
        let mut child = std::process::Command::new(py)
            .arg(script)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("the tools' python (scripts/install-tools.sh)");
        use std::io::Write as _;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "Prometheus's parser rejected the scrape: {}\n{text}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        let types = v["families"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, t)| (k.clone(), t.as_str().unwrap().to_owned()))
            .collect();
        let samples = v["samples"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                let labels = s[1]
                    .as_object()
                    .unwrap()
                    .iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
                    .collect();
                (
                    s[0].as_str().unwrap().to_owned(),
                    labels,
                    s[2].as_f64().unwrap(),
                )
            })
            .collect();
        Scrape { types, samples }
    }

    /// The value of sample `name` whose labels include `labels` (0 when absent).
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.samples
            .iter()
            .filter(|(n, l, _)| {
                n == name
                    && labels
                        .iter()
                        .all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
            })
            .map(|(_, _, v)| v)
            .sum()
    }
}

async fn health(gl: &Govledger) -> tonic_health::pb::health_check_response::ServingStatus {
    let ch = tonic::transport::Endpoint::from_shared(format!("http://{}", gl.addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut hc = tonic_health::pb::health_client::HealthClient::new(ch);
    hc.check(tonic_health::pb::HealthCheckRequest {
        service: "govledger.v1.Ledger".into(),
    })
    .await
    .unwrap()
    .into_inner()
    .status()
}

/// Polls `/readyz` until it answers `want` (20 s at most); its body.
async fn readyz_until(gl: &Govledger, want: u16) -> String {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (status, body) = get(gl, "/readyz", "").await;
        if status == want {
            return body;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "/readyz still {status} after 20 s, wanted {want}: {body}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// CheckReadiness over source `hr`.
async fn readiness_of_hr(gl: &Govledger) -> govledger_proto::v1::CheckReadinessResponse {
    gl.client()
        .await
        .check_readiness(govledger_proto::v1::CheckReadinessRequest {
            source_ids: vec!["hr".into()],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
}

fn projector_cli(gl: &Govledger, verb: &str) {
    let (k, v) = gl.token_env();
    let (status, err) = run_govledger(
        &[
            "projector",
            verb,
            "--reason",
            "test maintenance",
            "--grpc-addr",
            &gl.addr,
        ],
        &[(k, v.as_str())],
    );
    assert!(status.success(), "projector {verb}: {err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_parse_and_move_with_a_sync_and_an_action() {
    let (_nats, scim, gl) = setup().await;
    let before = Scrape::of(&gl).await;
    // The first page is rate limited once: a 429 the engine waits out.
    scim.set_faults(Faults {
        rate_limit: vec![RateLimitFault {
            start_index: 1,
            times: 1,
            retry_after: RetryAfter::Seconds(1),
        }],
        ..Default::default()
    });
    let r = gl.sync("hr").await;
    assert_eq!(r.verdict, Verdict::Complete as i32, "{:?}", r.reasons);
    let run = r.run.unwrap();
    let u = scim.user_ids()[3].clone();
    let a = gl
        .act(
            "hr",
            action_request(ActionKind::Deactivate, &u, "", "ops-1", "OPS-1"),
        )
        .await;
    assert_eq!(
        a.outcome,
        ActionOutcome::Confirmed as i32,
        "{}",
        a.outcome_detail
    );
    let after = Scrape::of(&gl).await;
    let moved = |name: &str, labels: &[(&str, &str)]| {
        after.value(name, labels) - before.value(name, labels)
    };
    let hr = [("source", "hr")];
    // Families show in a scrape once they have a series; by now every one has.
    for (name, kind) in [
        ("govledger_events_applied", "counter"),
        ("govledger_runs_decided", "counter"),
        ("govledger_page_attempts", "counter"),
        ("govledger_grpc_requests", "counter"),
        ("govledger_fold_batch_seconds", "histogram"),
        ("govledger_publish_seconds", "histogram"),
        ("govledger_projector_lag_events", "gauge"),
        ("govledger_source_freshness_objective_seconds", "gauge"),
    ] {
        assert_eq!(
            after.types.get(name).map(String::as_str),
            Some(kind),
            "{name}: {:?}",
            after.types
        );
    }

    assert_eq!(
        moved(
            "govledger_events_applied_total",
            &[("kind", "record_observed")]
        ),
        run.records_observed as f64
    );
    assert_eq!(
        moved(
            "govledger_runs_decided_total",
            &[("source", "hr"), ("verdict", "COMPLETE")]
        ),
        1.0
    );
    assert_eq!(
        moved(
            "govledger_actions_concluded_total",
            &[("source", "hr"), ("outcome", "CONFIRMED")]
        ),
        1.0
    );
    // Every page read is one attempt, counted where its event is published;
    // the fold counts the same events as it applies them. The 429 is one of
    // them, retried.
    let read_events = moved(
        "govledger_events_applied_total",
        &[("kind", "page_fetched")],
    ) + moved("govledger_events_applied_total", &[("kind", "page_failed")]);
    assert_eq!(moved("govledger_page_attempts_total", &hr), read_events);
    assert!(read_events >= (run.pages_fetched + run.page_failures) as f64);
    assert!(run.rate_limited >= 1);
    assert_eq!(
        moved("govledger_rate_limited_waits_total", &hr),
        run.rate_limited as f64
    );
    assert_eq!(
        moved("govledger_page_retries_total", &hr),
        run.page_failures as f64
    );
    assert!(moved("govledger_publish_seconds_count", &[]) >= run.records_observed as f64);
    assert!(moved("govledger_fold_batch_seconds_count", &[]) >= 1.0);
    // The sync and the action's calls, by method and code.
    assert!(
        moved(
            "govledger_grpc_requests_total",
            &[("method", "TriggerSync"), ("code", "OK")]
        ) >= 1.0
    );
    assert!(
        moved(
            "govledger_grpc_requests_total",
            &[("method", "SubmitAction"), ("code", "OK")]
        ) >= 1.0
    );
    // Freshness per source, the projection's position.
    assert_eq!(after.value("govledger_source_fresh", &hr), 1.0);
    assert_eq!(
        after.value(
            "govledger_source_last_verdict",
            &[("source", "hr"), ("verdict", "COMPLETE")]
        ),
        1.0
    );
    assert!(after.value("govledger_source_last_complete_age_seconds", &hr) < 600.0);
    assert_eq!(
        after.value("govledger_source_freshness_objective_seconds", &hr),
        86_400.0
    );
    assert!(after.value("govledger_projected_sequence", &[]) >= run.last_seq as f64);
    assert_eq!(after.value("govledger_ready", &[]), 1.0);
    // A refused call is counted with its code.
    let mut anon = gl.client_with("not-a-token").await;
    let refused = anon
        .list_sources(govledger_proto::v1::ListSourcesRequest {})
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unauthenticated);
    let last = Scrape::of(&gl).await;
    assert!(
        last.value(
            "govledger_grpc_requests_total",
            &[("method", "ListSources"), ("code", "UNAUTHENTICATED")]
        ) >= 1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_and_health_flip_when_the_paused_projector_passes_its_lag_bound_and_recover() {
    let (_nats, _scim, gl) = setup().await;
    use tonic_health::pb::health_check_response::ServingStatus;
    assert_eq!(get(&gl, "/healthz", "").await.0, 200);
    let body = readyz_until(&gl, 200).await;
    assert!(body.starts_with("ready"), "{body}");
    assert_eq!(health(&gl).await, ServingStatus::Serving);
    let first = gl.sync("hr").await;
    assert_eq!(
        first.verdict,
        Verdict::Complete as i32,
        "{:?}",
        first.reasons
    );

    projector_cli(&gl, "pause");
    // The sync's events are stored but not folded: the lag grows past the bound.
    let mut c = gl.client().await;
    c.trigger_sync(govledger_proto::v1::TriggerSyncRequest {
        source_id: "hr".into(),
        mode: 0,
    })
    .await
    .unwrap();
    let body = readyz_until(&gl, 503).await;
    assert!(
        body.contains("past its bound of 20") && body.contains("govledger projector resume"),
        "{body}"
    );
    assert_eq!(health(&gl).await, ServingStatus::NotServing);
    let s = Scrape::of(&gl).await;
    assert_eq!(s.value("govledger_projector_paused", &[]), 1.0);
    assert_eq!(s.value("govledger_ready", &[]), 0.0);
    let lag = s.value("govledger_projector_lag_events", &[]);
    assert!(lag > LAG_BOUND as f64, "lag {lag}");
    assert_eq!(
        s.value("govledger_stream_last_sequence", &[])
            - s.value("govledger_projected_sequence", &[]),
        lag
    );
    // A review gate asked now is told the answer is behind the stream.
    let ready = readiness_of_hr(&gl).await;
    assert!(!ready.ready, "{ready:?}");
    assert!(
        ready.blockers.iter().any(|b| b.code == "PROJECTION_BEHIND"),
        "{:?}",
        ready.blockers
    );
    assert!(
        ready.as_of_seq + LAG_BOUND < ready.stream_last_seq,
        "{ready:?}"
    );
    // Still paused: a moment later the lag has not shrunk.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let later = Scrape::of(&gl).await;
    assert!(later.value("govledger_projector_lag_events", &[]) >= lag);

    projector_cli(&gl, "resume");
    let body = readyz_until(&gl, 200).await;
    assert!(body.starts_with("ready"), "{body}");
    assert_eq!(health(&gl).await, ServingStatus::Serving);
    let s = Scrape::of(&gl).await;
    assert_eq!(s.value("govledger_projector_paused", &[]), 0.0);
    let ready = readiness_of_hr(&gl).await;
    assert!(
        !ready.blockers.iter().any(|b| b.code == "PROJECTION_BEHIND"),
        "{:?}",
        ready.blockers
    );
    assert!(s.value("govledger_projector_lag_events", &[]) <= LAG_BOUND as f64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_pages_want_a_readers_token_and_health_is_open() {
    let (_nats, _scim, gl) = setup().await;
    assert_eq!(get(&gl, "/healthz", "").await.0, 200);
    for path in ["/metrics", "/"] {
        let (status, body) = get(&gl, path, "").await;
        assert_eq!(status, 401, "{path}: {body}");
        assert!(body.contains("no credentials"), "{body}");
        let (status, _) = get(&gl, path, "Bearer wrong").await;
        assert_eq!(status, 401, "{path}");
    }
    // A browser signs in with Basic: any user name, the token as the password.
    let token = std::fs::read_to_string(gl.token_file()).unwrap();
    use base64::Engine as _;
    let basic =
        base64::engine::general_purpose::STANDARD.encode(format!("reviewer:{}", token.trim()));
    let (status, html) = get(&gl, "/", &format!("Basic {basic}")).await;
    assert_eq!(status, 200);
    assert!(
        html.contains("govledger status") && html.contains("id=\"source-hr\""),
        "{html}"
    );
}

/// The status page in a real browser: a reviewer signs in with the token
/// (HTTP Basic, as the browser does with credentials in the address) and
/// sees `hr` COMPLETE and fresh, `crm` INCOMPLETE with its reason, the
/// review blocked by `crm`, and the history chart. The screenshot is kept
/// in target/test-artifacts/status-page.png.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_page_shows_the_right_verdicts_in_a_real_browser() {
    let nats = NatsServer::start().await;
    let hr = FaultScim::start_with(ScimConfig {
        users: 40,
        ..Default::default()
    })
    .await;
    let crm = FaultScim::start_with(ScimConfig {
        users: 40,
        ..Default::default()
    })
    .await;
    // crm's second page fails on every attempt: its run is INCOMPLETE.
    crm.set_faults(Faults {
        fail: vec![govledger_testkit::fault_scim::PageFault {
            start_index: 21,
            status: 503,
            times: u32::MAX,
        }],
        ..Default::default()
    });
    let source = |id: &str, url: &str| {
        format!(
            "\n[[sources]]\nid = \"{id}\"\nbase_url = \"{url}\"\npage_size = 20\n\n[sources.retry]\nattempts_max = 2\nbudget_ms = 5000\nbackoff_min_ms = 10\nbackoff_max_ms = 20\n"
        )
    };
    let toml = format!(
        "[http]\naddr = \"127.0.0.1:0\"\n{}{}",
        source("hr", &hr.base_url),
        source("crm", &crm.base_url)
    );
    let gl = Govledger::serve_with_config(&nats.url(), &toml);
    assert_eq!(gl.sync("hr").await.verdict, Verdict::Complete as i32);
    assert_eq!(gl.sync("crm").await.verdict, Verdict::Incomplete as i32);

    let token = std::fs::read_to_string(gl.token_file()).unwrap();
    let url = format!("http://reviewer:{}@{}/", token.trim(), gl.http_addr());
    let dom = govledger_testkit::browser::headless(&url, &["--dump-dom"]);
    let row = |id: &str| {
        let start = dom
            .find(&format!("id=\"source-{id}\""))
            .unwrap_or_else(|| panic!("no row for {id} in the rendered page:\n{dom}"));
        let end = dom[start..].find("</tr>").map_or(dom.len(), |e| start + e);
        dom[start..end].to_owned()
    };
    let hr_row = row("hr");
    assert!(
        hr_row.contains("data-verdict=\"COMPLETE\"") && hr_row.contains("data-freshness=\"FRESH\""),
        "{hr_row}"
    );
    let crm_row = row("crm");
    assert!(
        crm_row.contains("data-verdict=\"INCOMPLETE\"") && crm_row.contains("PAGES_FAILED"),
        "{crm_row}"
    );
    assert!(dom.contains("Not ready for review"), "{dom}");
    assert!(dom.contains("<svg"), "the history chart is missing:\n{dom}");

    let png = govledger_testkit::browser::artifacts().join("status-page.png");
    let _ = std::fs::remove_file(&png);
    govledger_testkit::browser::headless(
        &url,
        &[
            "--window-size=1280,1600",
            &format!("--screenshot={}", png.display()),
        ],
    );
    let bytes = std::fs::read(&png).unwrap_or_else(|e| panic!("{}: {e}", png.display()));
    assert!(
        bytes.starts_with(b"\x89PNG") && bytes.len() > 10_000,
        "{} bytes",
        bytes.len()
    );
    eprintln!("status page screenshot: {}", png.display());
}
