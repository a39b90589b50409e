//! The worked examples in `examples/` run as written — only `base_url`
//! changed to the test server's — against servers that behave like the real
//! APIs (`govledger_testkit::saas`): GitHub organization members, Okta users,
//! Microsoft Graph users and Slack's `users.list`. Each runs three full syncs
//! of a few hundred users over several pages (with the API's rate limiting
//! in play): every run COMPLETE with no reason (none of these APIs but Graph
//! declares a total: such a run is judged by its pages, see README "REST
//! sources"), every identity in the state the API shows, and a user
//! deprovisioned between runs shows so in the next run (inactive, or for
//! GitHub, whose members have no active flag, REMOVED_AT_SOURCE).

use std::time::Duration;

use govledger_proto::v1::{GetRunResponse, PresenceStatus, SyncMode, TriggerSyncRequest, Verdict};
use govledger_testkit::{
    Govledger, NatsServer,
    runs::{assert_verdict, codes},
    saas::{Api, RateWindow, Saas, SaasConfig},
};

/// `examples/<name>.toml` with its `base_url` line pointed at `base_url`.
fn example(name: &str, base_url: &str) -> String {
    let path = format!("{}/examples/{name}.toml", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let mut replaced = 0;
    let out: Vec<String> = text
        .lines()
        .map(|l| match l.starts_with("base_url = ") {
            true => {
                replaced += 1;
                format!("base_url = \"{base_url}\"")
            }
            false => l.to_owned(),
        })
        .collect();
    assert_eq!(replaced, 1, "{path} must have one base_url line");
    out.join("\n")
}

/// `govledger serve` with `examples/<name>.toml` against `base_url`, its token
/// variable set.
fn serve_example(nats: &NatsServer, name: &str, base_url: &str, token_env: &str) -> Govledger {
    let data = tempfile::tempdir().unwrap();
    let cfg = data.path().join(format!("{name}.toml"));
    std::fs::write(&cfg, example(name, base_url)).unwrap();
    let cfg = cfg.to_str().unwrap().to_owned();
    Govledger::serve_in_env(
        data,
        &nats.url(),
        &["--config", &cfg],
        &[(token_env, "test-token")],
    )
}

/// A full sync of `source`: the one its schedule started (each example syncs
/// at start, then hourly), or one triggered now.
async fn sync(gl: &Govledger, source: &str) -> GetRunResponse {
    for _ in 0..50 {
        let running = gl
            .source(source)
            .await
            .status
            .map(|s| s.running_run_id)
            .unwrap_or_default();
        if !running.is_empty() {
            return gl.wait_decided(&running, Duration::from_secs(120)).await;
        }
        let trigger = TriggerSyncRequest {
            source_id: source.to_owned(),
            mode: SyncMode::Full as i32,
        };
        match gl.client().await.trigger_sync(trigger).await {
            Ok(r) => {
                let run_id = r.into_inner().run_id;
                return gl.wait_decided(&run_id, Duration::from_secs(120)).await;
            }
            // The schedule started one between the two calls: follow it.
            Err(e) if e.code() == tonic::Code::FailedPrecondition => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("TriggerSync {source}: {e}"),
        }
    }
    panic!("no sync of {source} could be started or followed");
}

/// Three syncs; `check(run_no)` after each. User `gone` is deprovisioned
/// after the second. Every run must be COMPLETE without a reason, and hold
/// `expected` unique records (before and after the deprovisioning).
async fn three_runs<F, Fut>(gl: &Govledger, source: &str, server: &Saas, gone: usize, mut check: F)
where
    F: FnMut(u32) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    for run_no in 1..=3u32 {
        if run_no == 3 {
            server.deprovision(gone);
        }
        let r = sync(gl, source).await;
        assert_verdict(&r, Verdict::Complete);
        assert!(codes(&r).is_empty(), "run {run_no}: {:?}", r.reasons);
        let run = r.run.unwrap();
        let listed = server
            .users()
            .iter()
            .filter(|u| !(source == "github" && u.deprovisioned))
            .count() as u64;
        assert_eq!(run.records_unique, listed, "run {run_no}");
        assert_eq!(run.duplicates + run.rejected, 0, "run {run_no}");
        check(run_no).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn github_example() {
    let nats = NatsServer::start().await;
    let server = Saas::start_with(SaasConfig {
        // Two list requests a second: the third page waits for the reset.
        rate_window: Some(RateWindow {
            requests: 2,
            window_s: 1,
        }),
        relative_links: true,
        ..SaasConfig::new(Api::GitHub, 260)
    })
    .await;
    let gl = serve_example(&nats, "github", &server.origin, "GITHUB_TOKEN");
    let gone = 117;
    three_runs(&gl, "github", &server, gone, |run_no| {
        let (gl, server) = (&gl, &server);
        async move {
            for n in [0, 1, 99, 100, 199, 200, 259] {
                let id = server.external_id(n);
                let u = gl.user("github", &id).await;
                let ident = u.identity.clone().unwrap();
                assert_eq!(ident.active, None, "no active flag: unknown, never guessed");
                assert_eq!(ident.display_name, format!("user{n:04}"));
                assert_eq!(u.presence(), PresenceStatus::Present, "{n}");
            }
            let u = gl.user("github", &server.external_id(gone)).await;
            let want = match run_no {
                3 => PresenceStatus::RemovedAtSource,
                _ => PresenceStatus::Present,
            };
            assert_eq!(u.presence(), want, "run {run_no}: {}", u.presence_reason);
        }
    })
    .await;
    // Over the limit GitHub says 403: not one request was refused.
    assert!(
        server.statuses().iter().all(|s| *s == 200),
        "{:?}",
        server.statuses()
    );
    assert_eq!(
        server.statuses().len(),
        9,
        "3 pages a run, no probe, no retry"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn okta_example() {
    let nats = NatsServer::start().await;
    let server = Saas::start_with(SaasConfig {
        rate_window: Some(RateWindow {
            requests: 2,
            window_s: 1,
        }),
        ..SaasConfig::new(Api::Okta, 450)
    })
    .await;
    let gl = serve_example(&nats, "okta", &server.origin, "OKTA_ACCESS_TOKEN");
    let gone = 204; // ACTIVE until deprovisioned
    three_runs(&gl, "okta", &server, gone, |run_no| {
        let (gl, server) = (&gl, &server);
        async move {
            for n in 0..450 {
                if run_no < 3 && n % 5 != 0 && n % 50 > 20 {
                    continue; // every status each run, a sample of the rest
                }
                let status = server.okta_status(n);
                let want = match status {
                    "ACTIVE" | "PROVISIONED" | "RECOVERY" | "LOCKED_OUT" | "PASSWORD_EXPIRED" => {
                        true
                    }
                    "STAGED" | "SUSPENDED" | "DEPROVISIONED" => false,
                    other => panic!("status {other}"),
                };
                let ident = gl
                    .user("okta", &server.external_id(n))
                    .await
                    .identity
                    .unwrap();
                assert_eq!(ident.active, Some(want), "run {run_no}: user {n} {status}");
                assert_eq!(ident.display_name, format!("user{n}@acme.test"));
            }
            let want = run_no < 3;
            let ident = gl.user("okta", &server.external_id(gone)).await.identity;
            assert_eq!(ident.unwrap().active, Some(want), "run {run_no}");
        }
    })
    .await;
    // X-Rate-Limit-Remaining: 0 was honoured: no 429.
    assert!(
        server.statuses().iter().all(|s| *s == 200),
        "{:?}",
        server.statuses()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graph_example() {
    let nats = NatsServer::start().await;
    let server = Saas::start_with(SaasConfig {
        // The second list request is throttled: 429, Retry-After: 1.
        throttle_at: vec![2],
        ..SaasConfig::new(Api::Graph, 2100)
    })
    .await;
    let base = format!("{}/v1.0", server.origin);
    let gl = serve_example(&nats, "graph", &base, "GRAPH_TOKEN");
    let gone = 1500;
    three_runs(&gl, "graph", &server, gone, |run_no| {
        let (gl, server) = (&gl, &server);
        async move {
            for n in (0..2100).step_by(if run_no == 1 { 1 } else { 13 }) {
                let ident = gl
                    .user("graph", &server.external_id(n))
                    .await
                    .identity
                    .unwrap();
                assert_eq!(ident.active, Some(server.graph_enabled(n)), "user {n}");
                assert_eq!(ident.display_name, format!("user{n}@contoso.test"));
            }
            let ident = gl.user("graph", &server.external_id(gone)).await.identity;
            assert_eq!(ident.unwrap().active, Some(run_no < 3), "run {run_no}");
        }
    })
    .await;
    let statuses = server.statuses();
    assert_eq!(
        statuses.iter().filter(|s| **s == 429).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(statuses.len(), 10, "3 pages a run and one retry");
    // The declared total was used: @odata.count needs $count and the header.
    let runs = gl.source("graph").await;
    let last = runs.source.unwrap().last_run_id;
    let run = gl.run(&last).await.run.unwrap();
    assert_eq!(run.declared_total_last, Some(2100));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slack_example() {
    let nats = NatsServer::start().await;
    let server = Saas::start_with(SaasConfig {
        bots: 12,
        throttle_at: vec![3],
        ..SaasConfig::new(Api::Slack, 450)
    })
    .await;
    let base = format!("{}/api", server.origin);
    let gl = serve_example(&nats, "slack", &base, "SLACK_TOKEN");
    let gone = 333;
    three_runs(&gl, "slack", &server, gone, |run_no| {
        let (gl, server) = (&gl, &server);
        async move {
            for u in server.users() {
                let ident = gl
                    .user("slack", &server.external_id(u.n))
                    .await
                    .identity
                    .unwrap_or_else(|| panic!("user {} not recorded", u.n));
                assert_eq!(ident.active, Some(!server.slack_deleted(u.n)), "{u:?}");
                let label = match u.bot {
                    true => String::new(),
                    false => format!("user{}@acme.test", u.n),
                };
                assert_eq!(ident.display_name, label);
            }
            let ident = gl.user("slack", &server.external_id(gone)).await.identity;
            assert_eq!(ident.unwrap().active, Some(run_no < 3), "run {run_no}");
        }
    })
    .await;
    let statuses = server.statuses();
    assert_eq!(statuses.iter().filter(|s| **s == 429).count(), 1);
    assert_eq!(statuses.len(), 10, "3 pages a run and one retry");
}

/// Okta's rate-limit headers (`X-Rate-Limit-Remaining`, a dash more than
/// GitHub's) on a 200 hold the next request until `X-Rate-Limit-Reset`; a
/// minimal config (no query, no headers) so the defect shows alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn okta_rate_limit_headers_are_honoured() {
    let nats = NatsServer::start().await;
    let server = Saas::start_with(SaasConfig {
        rate_window: Some(RateWindow {
            requests: 1,
            window_s: 1,
        }),
        ..SaasConfig::new(Api::Okta, 450)
    })
    .await;
    let cfg = format!(
        r#"
[[sources]]
id = "okta"
kind = "rest"
base_url = "{}"
paging = "link"
page_size = 200

[sources.rest]
path = "api/v1/users"
label_field = "/profile/login"
size_param = "limit"

[sources.retry]
attempts_max = 3
backoff_min_ms = 10
backoff_max_ms = 20
budget_ms = 10000
"#,
        server.origin
    );
    let gl = Govledger::serve_with_config(&nats.url(), &cfg);
    let r = gl.sync("okta").await;
    assert_verdict(&r, Verdict::Complete);
    let run = r.run.unwrap();
    // Without `search` Okta leaves DEPROVISIONED users out; none here.
    assert_eq!(run.records_unique, 450);
    assert_eq!(run.rate_limited, 0, "a request went out over the limit");
    assert_eq!(server.statuses(), vec![200; 3]);
}
