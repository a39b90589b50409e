//! The fuzz campaign's CI-sized run on stable (issue 22 item 8): every body of
//! `govledger::fuzzing` over its committed seed corpus, its committed
//! regression inputs and a few thousand deterministic mutations of them (bit
//! flips, truncations, splices), each input under a hang bound (CPU time); and the
//! seeds' source, live servers whose real answers reach every body.
//!
//! `GOVLEDGER_FUZZ_SEEDS_OUT=<dir>` makes the live test also write the seed
//! corpora it gathered there (`fuzz/corpus` to refresh the committed ones).

use std::{
    path::{Path, PathBuf},
    sync::mpsc,
    time::Duration,
};

use govledger::fuzzing::{self, TARGETS};
use govledger_proto::v1::{self as pb, ActionKind};
use govledger_testkit::{
    fault_scim::{FaultScim, ScimConfig},
    govledger::{action_request, rest_source_toml, serve_fault_scim},
    read_stream,
    saas::{Api, Saas},
};
use prost::Message as _;
use rand::{Rng as _, SeedableRng as _, rngs::StdRng};

/// One input that takes more CPU time than this is a hang (a body takes
/// milliseconds to a few hundred on any committed input in a debug build).
/// CPU time, not wall time: CI shares two cores with other test binaries.
const HANG_BOUND_MS: u64 = 1_000;
/// A body that holds its thread this long in wall time without finishing
/// is blocked (waiting on something that never comes): a hang as well.
const BLOCKED_BOUND_MS: u64 = 30_000;

/// This thread's CPU time (Linux: `/proc/thread-self/stat`, in the kernel's
/// fixed 100 Hz user ticks); `None` elsewhere, and then wall time is judged.
fn thread_cpu() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").ok()?;
    // Fields after the command name (which may hold spaces), from field 3.
    let after = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = after.split(' ').collect();
    let ticks = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_millis(ticks * 10))
}
/// Mutations per target: a few thousand in all, seconds in CI. The events
/// body folds a whole stream twice per input (in memory and over sled),
/// checking seals: it gets fewer.
fn mutations(target: &str) -> usize {
    match target {
        "events" => 100,
        _ => 600,
    }
}
/// The largest mutated input, in bytes.
const INPUT_BYTES_MAX: usize = 1 << 20;

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

/// The files of `dir`, sorted by name (so mutations are reproducible).
fn files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<(String, Vec<u8>)> = entries
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&p).unwrap())
        })
        .collect();
    out.sort();
    out
}

fn body_of(target: &str) -> fuzzing::Body {
    TARGETS
        .iter()
        .find(|(n, _)| *n == target)
        .unwrap_or_else(|| panic!("no fuzz body {target}"))
        .1
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Runs `body` over `inputs` on a worker thread; a panic or an input over
/// [`HANG_BOUND_MS`] fails with the input's hex.
fn run_all(target: &str, body: fuzzing::Body, inputs: Vec<(String, Vec<u8>)>) {
    let n = inputs.len();
    type Outcome = (usize, Duration, Result<(), String>);
    let (tx, rx) = mpsc::channel::<Outcome>();
    let (inputs_tx, inputs_rx) = mpsc::channel::<Vec<u8>>();
    let worker = std::thread::Builder::new()
        .name(format!("fuzz-{target}"))
        .spawn(move || {
            for (i, input) in inputs_rx.into_iter().enumerate() {
                let (cpu0, wall0) = (thread_cpu(), std::time::Instant::now());
                let r = std::panic::catch_unwind(|| body(&input)).map_err(|p| {
                    p.downcast_ref::<String>()
                        .cloned()
                        .or_else(|| p.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                        .unwrap_or_default()
                });
                let took = match (cpu0, thread_cpu()) {
                    (Some(a), Some(b)) => b.saturating_sub(a),
                    _ => wall0.elapsed(),
                };
                if tx.send((i, took, r)).is_err() {
                    return;
                }
            }
        })
        .unwrap();
    let mut slowest = (Duration::ZERO, String::new());
    for (i, (name, input)) in inputs.iter().enumerate() {
        inputs_tx.send(input.clone()).unwrap();
        match rx.recv_timeout(Duration::from_millis(BLOCKED_BOUND_MS)) {
            Ok((j, took, Ok(()))) => {
                assert_eq!(i, j);
                assert!(
                    took <= Duration::from_millis(HANG_BOUND_MS),
                    "{target}: input {name} took {} ms of CPU (a hang)\ninput (hex): {}",
                    took.as_millis(),
                    hex(input)
                );
                slowest = slowest.max((took, name.clone()));
            }
            Ok((_, _, Err(msg))) => panic!(
                "{target}: input {name} panicked: {msg}\ninput (hex): {}",
                hex(input)
            ),
            Err(_) => panic!(
                "{target}: input {name} held its thread over {BLOCKED_BOUND_MS} ms (a hang)\ninput (hex): {}",
                hex(input)
            ),
        }
    }
    drop(inputs_tx);
    worker.join().unwrap();
    assert!(n > 0, "{target}: no input ran");
    eprintln!(
        "{target}: {n} inputs, the slowest {} ms of CPU ({})",
        slowest.0.as_millis(),
        slowest.1
    );
}

/// `seed` mutated once or a few times: bit flips, byte sets, truncations,
/// splices with `other`, insertions, deletions, duplications.
fn mutate(rng: &mut StdRng, seed: &[u8], other: &[u8]) -> Vec<u8> {
    let mut v = seed.to_vec();
    for _ in 0..rng.random_range(1..=4) {
        let len = v.len();
        match rng.random_range(0..8) {
            0 if len > 0 => {
                let i = rng.random_range(0..len);
                v[i] ^= 1 << rng.random_range(0..8);
            }
            1 if len > 0 => {
                let i = rng.random_range(0..len);
                v[i] = *[0u8, 0xff, 0x7f, 0x80, b'"', b'{', b'[', b'\\', b'\n', b'0']
                    .get(rng.random_range(0..10))
                    .unwrap();
            }
            2 => v.truncate(rng.random_range(0..=len)),
            3 if !other.is_empty() => {
                // Splice: a prefix of this one, a suffix of the other.
                let cut = rng.random_range(0..=len);
                let from = rng.random_range(0..other.len());
                v.truncate(cut);
                v.extend_from_slice(&other[from..]);
            }
            4 => {
                let at = rng.random_range(0..=len);
                let n = rng.random_range(1..=16);
                let bytes: Vec<u8> = (0..n).map(|_| rng.random()).collect();
                v.splice(at..at, bytes);
            }
            5 if len > 0 => {
                let a = rng.random_range(0..len);
                let b = rng.random_range(a..=len.min(a + 64));
                v.drain(a..b);
            }
            6 if len > 0 => {
                let a = rng.random_range(0..len);
                let b = rng.random_range(a..=len.min(a + 256));
                let chunk = v[a..b].to_vec();
                let at = rng.random_range(0..=v.len());
                v.splice(at..at, chunk);
            }
            _ => {
                // A varint-sized or selector byte at the front.
                if let Some(b) = v.first_mut() {
                    *b = rng.random();
                }
            }
        }
    }
    v.truncate(INPUT_BYTES_MAX);
    v
}

/// The seed corpus, the regression inputs and the mutations of `target`.
fn smoke(target: &str) {
    let seeds = files(&fuzz_dir().join("corpus").join(target));
    assert!(
        !seeds.is_empty(),
        "{target}: fuzz/corpus/{target}/ holds no seed"
    );
    let mut inputs = seeds.clone();
    inputs.extend(files(&fuzz_dir().join("regressions").join(target)));
    let mut rng = StdRng::seed_from_u64(0x6f76_6c65_6467_6572 ^ target.len() as u64);
    for i in 0..mutations(target) {
        let (name, seed) = &seeds[i % seeds.len()];
        let other = &seeds[rng.random_range(0..seeds.len())].1;
        inputs.push((format!("{name}~{i}"), mutate(&mut rng, seed, other)));
    }
    inputs.push(("empty".into(), Vec::new()));
    run_all(target, body_of(target), inputs);
}

#[test]
fn events_survive_their_corpus_and_mutations() {
    smoke("events");
}

#[test]
fn scim_pages_survive_their_corpus_and_mutations() {
    smoke("scim");
}

#[test]
fn rest_pages_survive_their_corpus_and_mutations() {
    smoke("rest");
}

#[test]
fn configs_survive_their_corpus_and_mutations() {
    smoke("config");
}

#[test]
fn grpc_requests_survive_their_corpus_and_mutations() {
    smoke("grpc");
}

#[test]
fn bundles_survive_their_corpus_and_mutations() {
    smoke("bundle");
}

#[test]
fn hr_files_survive_their_corpus_and_mutations() {
    smoke("hrfile");
}

/// Every body has its cargo-fuzz target, and every target a body.
#[test]
fn every_body_has_a_fuzz_target() {
    let dir = fuzz_dir().join("fuzz_targets");
    let mut targets: Vec<String> = files(&dir)
        .into_iter()
        .map(|(n, text)| {
            let name = n.trim_end_matches(".rs").to_owned();
            let call = format!("govledger::fuzzing::{name}(");
            assert!(
                String::from_utf8_lossy(&text).contains(&call),
                "fuzz_targets/{n} does not call {call}"
            );
            name
        })
        .collect();
    targets.sort();
    let mut bodies: Vec<String> = TARGETS.iter().map(|(n, _)| (*n).to_owned()).collect();
    bodies.sort();
    assert_eq!(targets, bodies);
}

/// The seeds reach past the parsers' first refusals: each is accepted by the
/// production function its body drives.
#[test]
fn the_committed_seeds_are_real_inputs() {
    let corpus = |t: &str| files(&fuzz_dir().join("corpus").join(t));
    for (name, seed) in corpus("scim") {
        let (mode, body) = seed.split_first().unwrap();
        let ok = match mode % 4 {
            0 => govledger_ingest::scim::parse_list(body, pb::EntityType::User, "k").is_ok(),
            1 => govledger_ingest::scim::parse_list(body, pb::EntityType::Group, "k").is_ok(),
            2 => govledger_ingest::scim::parse_resource(body, pb::EntityType::Group, "k").is_ok(),
            _ => govledger_ingest::scim::parse_service_provider_config(body)
                .is_ok_and(|n| n.is_some()),
        };
        assert!(ok, "scim seed {name} is refused");
    }
    for (name, seed) in corpus("config") {
        let text = String::from_utf8(seed).unwrap();
        let cfg = govledger::config::Config::from_toml(&text, &name).unwrap();
        cfg.validate().unwrap();
    }
    let shapes = fuzzing::rest_shapes();
    assert_eq!(shapes.len(), 5, "a REST shape failed to build");
    for (name, seed) in corpus("bundle") {
        let r = govledger::audit::evidence::verify::verify_bundle(&seed, None);
        assert_eq!(
            r.verdict,
            govledger::audit::evidence::verify::Verdict::Unpinned,
            "bundle seed {name}: {}",
            r.problem
        );
    }
    for (name, seed) in corpus("events") {
        let msgs = fuzzing::messages(&seed);
        let mut w = govledger_projector::fold::Working::default();
        govledger_projector::fold_in_memory(&mut w, &msgs);
        assert_eq!(w.meta.poison_events, 0, "events seed {name} holds poison");
        assert_eq!(w.meta.events_applied, msgs.len() as u64, "{name}");
    }
    let grpc = corpus("grpc");
    let mut kinds: Vec<u8> = grpc.iter().map(|(_, s)| s[0]).collect();
    kinds.sort();
    kinds.dedup();
    assert_eq!(
        kinds.len(),
        fuzzing::GRPC_REQUESTS.len(),
        "a gRPC request type has no seed"
    );
}

/// `data` written as `<out>/<target>/<name>` when seeds are being refreshed.
struct Seeds(Option<PathBuf>, Vec<(String, String, Vec<u8>)>);

impl Seeds {
    fn add(&mut self, target: &str, name: &str, data: Vec<u8>) {
        self.1.push((target.to_owned(), name.to_owned(), data));
    }

    fn finish(self) {
        for (target, name, data) in &self.1 {
            // Every live input goes through its body here, written out or not.
            body_of(target)(data);
            if let Some(out) = &self.0 {
                let dir = out.join(target);
                std::fs::create_dir_all(&dir).unwrap();
                std::fs::write(dir.join(name), data).unwrap();
            }
        }
    }
}

/// `url`'s body, `Link` lines (joined by `\r`) and total header, asked
/// with `headers` (a REST source's configured ones).
async fn get(url: &str, headers: &[(String, String)]) -> (Vec<u8>, String, String) {
    govledger_ingest::http::install_crypto_provider();
    let mut req = reqwest::Client::new().get(url).bearer_auth("test-token");
    for (k, v) in headers {
        req = req.header(k, v);
    }
    let r = req.send().await.unwrap();
    assert!(r.status().is_success(), "{url}: {}", r.status());
    let header = |n: &str| {
        r.headers()
            .get_all(n)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect::<Vec<_>>()
            .join("\r")
    };
    let (link, total) = (header("link"), header("x-total-count"));
    (r.bytes().await.unwrap().to_vec(), link, total)
}

fn rest_seed(shape: usize, link: &str, total: &str, body: &[u8]) -> Vec<u8> {
    let mut v = vec![shape as u8];
    v.extend_from_slice(link.as_bytes());
    v.push(b'\n');
    v.extend_from_slice(total.as_bytes());
    v.push(b'\n');
    v.extend_from_slice(body);
    v
}

/// The seeds' source: real pages of the testkit's SCIM and SaaS servers, a
/// real ledger's stream and evidence bundle, the example configs, and one
/// request of every gRPC type. Each reaches its body; the SCIM and REST
/// pages parse, the stream folds without poison, the bundle checks out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_inputs_reach_every_body() {
    let mut seeds = Seeds(
        std::env::var_os("GOVLEDGER_FUZZ_SEEDS_OUT").map(PathBuf::from),
        Vec::new(),
    );

    // SCIM: lists of users and groups, one group, the server's config.
    let scim = FaultScim::start_with(ScimConfig {
        users: 4,
        groups: 2,
        ..Default::default()
    })
    .await;
    for (mode, name, rel) in [
        (0u8, "users-page", "/Users?startIndex=1&count=3".to_owned()),
        (
            0,
            "users-last-page",
            "/Users?startIndex=4&count=3".to_owned(),
        ),
        (1, "groups-page", "/Groups?startIndex=1&count=2".to_owned()),
        (2, "group", format!("/Groups/{}", scim.group_ids()[0])),
        (
            3,
            "service-provider-config",
            "/ServiceProviderConfig".to_owned(),
        ),
    ] {
        let (body, _, _) = get(&scim.url(&rel), &[]).await;
        let mut v = vec![mode];
        v.extend_from_slice(&body);
        seeds.add("scim", name, v);
    }

    // REST: the first page of each worked example's API, and a page whose
    // total is a header.
    let shapes = fuzzing::rest_shapes();
    for (i, api) in [Api::GitHub, Api::Okta, Api::Graph, Api::Slack]
        .into_iter()
        .enumerate()
    {
        let saas = Saas::start(api, 5).await;
        let url = reqwest::Url::parse(&shapes[i].1).unwrap();
        let query = url.query().map(|q| format!("?{q}")).unwrap_or_default();
        let (body, link, total) = get(
            &format!("{}{}{query}", saas.origin, url.path()),
            &shapes[i].0.headers,
        )
        .await;
        seeds.add(
            "rest",
            &format!("{api:?}-page").to_lowercase(),
            rest_seed(i, &link, &total, &body),
        );
    }
    let (body, link, total) = get(&scim.rest_url("/api/users?page=1&per_page=3"), &[]).await;
    assert!(!total.is_empty(), "the REST API declares no total");
    seeds.add(
        "rest",
        "total-header-page",
        rest_seed(4, &link, &total, &body),
    );
    drop(scim);

    // A real ledger: a sync, an action, another sync; its stream and a bundle.
    let (nats, scim, gl) = serve_fault_scim(3, 1, "").await;
    let who = scim.user_ids()[1].clone();
    let mut c = gl.client().await;
    c.submit_action(pb::SubmitActionRequest {
        source_id: "hr".into(),
        request: Some(action_request(
            ActionKind::Deactivate,
            &who,
            "",
            "fuzz-1",
            "T-1",
        )),
    })
    .await
    .unwrap();
    gl.sync("hr").await;
    let stored = read_stream(&nats.client().await).await;
    gl.wait_applied(stored.last().unwrap().seq).await;
    let payloads: Vec<&[u8]> = stored.iter().map(|m| &m.payload[..]).collect();
    let mut w = govledger_projector::fold::Working::default();
    govledger_projector::fold_in_memory(&mut w, &stored);
    assert_eq!(w.meta.poison_events, 0);
    seeds.add(
        "events",
        "two-syncs-and-an-action",
        fuzzing::join_messages(payloads.iter().copied()),
    );
    let first_finish = stored
        .iter()
        .position(|m| {
            matches!(
                pb::Event::decode(&m.payload[..]).ok().and_then(|e| e.body),
                Some(pb::event::Body::SyncRunFinished(_))
            )
        })
        .unwrap();
    seeds.add(
        "events",
        "one-sync",
        fuzzing::join_messages(payloads[..=first_finish].iter().copied()),
    );

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("evidence.json");
    let (status, out) = govledger_testkit::run_govledger(
        &[
            "export",
            "--grpc-addr",
            &gl.addr,
            "--token-file",
            &gl.token_path(),
            "--source",
            "hr",
            "--identity",
            &who,
            "--out",
            path.to_str().unwrap(),
        ],
        &[],
    );
    assert!(status.success(), "{out}");
    let bundle = std::fs::read(&path).unwrap();
    let r = govledger::audit::evidence::verify::verify_bundle(&bundle, None);
    assert_eq!(
        r.verdict,
        govledger::audit::evidence::verify::Verdict::Unpinned,
        "{}",
        r.problem
    );
    seeds.add("bundle", "identity-bundle", bundle);
    drop(gl);
    drop(nats);

    // Configs: the worked examples and the testkit's sources.
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    for (name, text) in files(&examples) {
        if name.ends_with(".toml") {
            seeds.add("config", &name, text);
        }
    }
    seeds.add(
        "config",
        "scim-source.toml",
        govledger_testkit::govledger::scim_source_toml(
            "http://127.0.0.1:9/v2",
            "resources = [\"Users\", \"Groups\"]",
        )
        .into_bytes(),
    );
    seeds.add(
        "config",
        "rest-cursor-source.toml",
        rest_source_toml(
            "http://127.0.0.1:9",
            "cursor",
            "api/users-cursor",
            "items_pointer = \"/data\"\ncursor_pointer = \"/next\"",
            50,
        )
        .into_bytes(),
    );

    // gRPC: one request of every type, as a client sends it.
    let as_of = Some(pb::AsOf {
        point: Some(pb::as_of::Point::Seq(3)),
    });
    let requests: Vec<Vec<u8>> = vec![
        pb::ListSourcesRequest {}.encode_to_vec(),
        pb::GetSourceRequest {
            source_id: "hr".into(),
            as_of,
        }
        .encode_to_vec(),
        pb::ListRunsRequest {
            source_id: "hr".into(),
            limit: 5,
        }
        .encode_to_vec(),
        pb::GetRunRequest {
            run_id: "0190a3c4-0000-7000-8000-000000000001".into(),
        }
        .encode_to_vec(),
        pb::GetIdentityRequest {
            source_id: "hr".into(),
            external_id: who.clone(),
            entity_type: pb::EntityType::User as i32,
            as_of,
        }
        .encode_to_vec(),
        pb::GetLedgerStatusRequest { with_digest: true }.encode_to_vec(),
        pb::ListPoisonEventsRequest {
            after_seq: 2,
            limit: 10,
        }
        .encode_to_vec(),
        pb::TriggerSyncRequest {
            source_id: "hr".into(),
            mode: pb::SyncMode::Full as i32,
        }
        .encode_to_vec(),
        pb::CheckReadinessRequest {
            source_ids: vec!["hr".into()],
            identity_external_ids: vec![who.clone()],
        }
        .encode_to_vec(),
        pb::SubmitActionRequest {
            source_id: "hr".into(),
            request: Some(pb::ActionRequested {
                deadline_us: fuzzing::NOW_US + 3_600_000_000,
                ..action_request(ActionKind::AddMembership, &who, "g1", "k-1", "T-2")
            }),
        }
        .encode_to_vec(),
        pb::GetActionRequest {
            action_id: "a-1".into(),
            as_of,
        }
        .encode_to_vec(),
        pb::ListActionsRequest {
            source_id: "hr".into(),
            limit: 10,
            outcome: pb::ActionOutcome::Confirmed as i32,
        }
        .encode_to_vec(),
        pb::ReportExternalAttemptRequest {
            action_id: "a-1".into(),
            step: 1,
            http_status: 204,
            request_summary: "PATCH /Users/u1".into(),
            latency_ms: 12,
            error_class: 0,
        }
        .encode_to_vec(),
        pb::WatchAlertsRequest {
            source_ids: vec!["hr".into()],
            after_alert_seq: 0,
        }
        .encode_to_vec(),
        pb::ReplayRequest {
            source_id: "hr".into(),
            from_seq: 1,
            to_seq: 9,
            ..Default::default()
        }
        .encode_to_vec(),
        pb::GetInclusionProofRequest {
            seq: 3,
            tree_size: 9,
        }
        .encode_to_vec(),
        pb::GetConsistencyProofRequest { size1: 3, size2: 9 }.encode_to_vec(),
        pb::CreateCheckpointRequest {}.encode_to_vec(),
        pb::ListCheckpointsRequest {
            limit: 3,
            ..Default::default()
        }
        .encode_to_vec(),
        pb::VerifyRangeRequest {
            from_seq: 1,
            to_seq: 9,
            stream: "GOVLEDGER".into(),
        }
        .encode_to_vec(),
        pb::ExportEvidenceRequest {
            source_id: "hr".into(),
            external_id: who.clone(),
            entity_type: pb::EntityType::User as i32,
            ..Default::default()
        }
        .encode_to_vec(),
        pb::AcceptDeletionsRequest {
            run_id: "0190a3c4-0000-7000-8000-000000000001".into(),
            reason: "reorg".into(),
            ticket: "T-3".into(),
            ..Default::default()
        }
        .encode_to_vec(),
        pb::SetProjectorPausedRequest {
            paused: true,
            reason: "copying the sled folder".into(),
        }
        .encode_to_vec(),
    ];
    assert_eq!(requests.len(), fuzzing::GRPC_REQUESTS.len());
    for (i, r) in requests.into_iter().enumerate() {
        let mut v = vec![i as u8];
        v.extend(r);
        seeds.add("grpc", &fuzzing::GRPC_REQUESTS[i].to_lowercase(), v);
    }
    seeds.finish();
}
