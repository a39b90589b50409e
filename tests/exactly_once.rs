//! Exactly-once projection: duplicate publishes are stored once; a projector
//! killed (SIGKILL or an abort at a failpoint) in the middle of its batches and
//! restarted ends with state identical to an uninterrupted run; deleting the sled
//! folder and refolding from sequence 1 gives the same digest.

use std::{
    collections::HashSet,
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use govledger::simulate::{SimRun, publish_all, run_events};
use govledger_ingest::event::ProducerId;
use govledger_projector::{OwnedMsg, fold::Working, fold_in_memory, store::digest_of_working};
use govledger_proto::v1::Event;
use govledger_testkit::{
    Govledger, NatsServer, ensure_stream, govledger_bin, publish_events, publisher, read_stream,
    sled_digest,
};
use prost::Message as _;
use rand::{Rng as _, SeedableRng as _};

/// Publishes `runs` simulated runs (every third with a failing page) plus some
/// repeated events (same bytes, no dedup id: what a retry after the duplicate
/// window looks like) and two undecodable messages. Returns the stream's last seq.
async fn publish_history(nats: &NatsServer, runs: usize, users: u64) -> u64 {
    let client = nats.client().await;
    ensure_stream(&client).await;
    let p = publisher(client.clone(), 2_000);
    let producer = ProducerId::new("test");
    let js = async_nats::jetstream::new(client.clone());
    let mut last = 0;
    for i in 0..runs {
        let mut sim = SimRun::new(&format!("src-{}", i % 3), users, 50);
        if i % 3 == 2 {
            sim.failing_pages = vec![1];
        }
        let events = run_events(&producer, &sim);
        last = publish_events(&p, &events).await;
        if i % 4 == 1 {
            // Re-store a few events without a dedup id: same event ids, new sequences.
            for ev in events.iter().step_by(37) {
                let subject = govledger_stream::subject::event_subject(
                    &ev.source_id,
                    ev.body.as_ref().unwrap(),
                );
                last = js
                    .publish(subject, ev.encode_to_vec().into())
                    .await
                    .unwrap()
                    .await
                    .unwrap()
                    .sequence;
            }
        }
        if i == runs / 2 {
            last = js
                .publish(
                    "govledger.v1.src-0.read.page_fetched",
                    "not protobuf \u{1}".into(),
                )
                .await
                .unwrap()
                .await
                .unwrap()
                .sequence;
        }
    }
    last
}

fn write_config(dir: &Path, batch: usize) -> std::path::PathBuf {
    let cfg = dir.join("govledger.toml");
    std::fs::write(
        &cfg,
        format!("[projector]\nbatch_events_max = {batch}\nidle_wait_ms = 20\n"),
    )
    .unwrap();
    cfg
}

fn project_cmd(nats_url: &str, data: &Path, cfg: &Path) -> Command {
    // The projector trusts the tests' producer key, as the reference fold does.
    govledger_testkit::govledger::install_test_producer_key(data);
    let mut c = Command::new(govledger_bin());
    c.arg("project")
        .arg("--exit-at-end")
        .arg("--nats-url")
        .arg(nats_url)
        .arg("--data-dir")
        .arg(data)
        .arg("--config")
        .arg(cfg)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    c
}

/// The in-memory reference fold of everything in the stream.
async fn model_digest(nats: &NatsServer) -> (String, Working) {
    let client = nats.client().await;
    let msgs: Vec<OwnedMsg> = read_stream(&client).await;
    let mut w = Working {
        trust: govledger_testkit::stream::test_trust(),
        ..Default::default()
    };
    fold_in_memory(&mut w, &msgs);
    (digest_of_working(&w).unwrap(), w)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_events_published_twice_are_stored_once() {
    let nats = NatsServer::start().await;
    let client = nats.client().await;
    ensure_stream(&client).await;
    let p = publisher(client.clone(), 2_000);
    let events = run_events(&ProducerId::new("test"), &SimRun::new("hr", 120, 50));
    let first = publish_all(&p, &events).await.unwrap();
    let second = publish_all(&p, &events).await.unwrap();
    assert!(first.iter().all(|r| !r.duplicate));
    assert!(
        second.iter().all(|r| r.duplicate),
        "a republish was stored again"
    );
    let firsts: Vec<u64> = first.iter().map(|r| r.seq).collect();
    let seconds: Vec<u64> = second.iter().map(|r| r.seq).collect();
    assert_eq!(
        firsts, seconds,
        "duplicates must point at the original sequences"
    );
    let stored = read_stream(&client).await;
    assert_eq!(stored.len(), events.len());
    let ids: HashSet<String> = stored
        .iter()
        .map(|m| Event::decode(m.payload.as_ref()).unwrap().event_id)
        .collect();
    assert_eq!(ids.len(), events.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn projector_killed_mid_batch_ends_identical_to_an_uninterrupted_run() {
    let nats = NatsServer::start().await;
    // Big enough that folding it takes much longer than starting up.
    let last = publish_history(&nats, 24, 1_500).await;
    assert!(last > 30_000, "history too small: {last}");
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), 97);
    let crashy = dir.path().join("crashy");
    let clean = dir.path().join("clean");

    // Aborts at both failpoints: after the sled commit (before flush), and after
    // the flush (before the ack). Each leaves the process dead mid-stream.
    for fp in [
        "projector-after-commit-before-flush",
        "projector-after-flush-before-ack",
    ] {
        let status = project_cmd(&nats.url(), &crashy, &cfg)
            .env("GOVLEDGER_FAILPOINT", fp)
            .status()
            .unwrap();
        assert!(!status.success(), "failpoint {fp} did not fire");
    }
    // An uninterrupted run first: how long the whole stream takes (start-up
    // included) sets when the kills below land.
    let started = std::time::Instant::now();
    let status = project_cmd(&nats.url(), &clean, &cfg).status().unwrap();
    assert!(status.success());
    let whole_ms = started.elapsed().as_millis().max(100) as u64;

    // SIGKILL at random moments while it works through the stream: each run
    // is killed after 1/20 to 1/5 of the uninterrupted time, so six runs cover
    // most of the stream without finishing it.
    let mut rng = rand::rngs::StdRng::seed_from_u64(20261125);
    let mut kills = 0;
    for _ in 0..6 {
        let mut child = project_cmd(&nats.url(), &crashy, &cfg).spawn().unwrap();
        std::thread::sleep(Duration::from_millis(
            rng.random_range(whole_ms / 20..whole_ms / 5),
        ));
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap();
            child.wait().unwrap();
            // Killed mid-stream: it had applied some of the stream, not all.
            let applied = govledger_projector::Store::open(&crashy.join("sled"), 8 << 20)
                .and_then(|s| s.meta())
                .map(|m| m.last_applied_seq)
                .unwrap_or(0);
            if applied > 0 && applied < last {
                kills += 1;
            }
        }
        child.wait().unwrap();
    }
    assert!(
        kills >= 3,
        "only {kills} kills landed while the projector was working (uninterrupted run: {whole_ms} ms)"
    );
    let status = project_cmd(&nats.url(), &crashy, &cfg).status().unwrap();
    assert!(status.success());

    let (model, w) = model_digest(&nats).await;
    let crashy_digest = sled_digest(&crashy);
    assert_eq!(
        crashy_digest,
        sled_digest(&clean),
        "crash-restarted state differs"
    );
    assert_eq!(
        crashy_digest, model,
        "sled state differs from the in-memory fold"
    );
    assert_eq!(w.meta.last_applied_seq, last);
    assert_eq!(w.meta.poison_events, 1);
    assert!(w.meta.duplicate_events > 0);
    // The identity map (derived, outside the digest) was committed with the
    // pages at every crash: it is the map of the pages, and the clean run's.
    let map_of = |dir: &std::path::Path| {
        let store = govledger_projector::Store::open(&dir.join("sled"), 8 << 20).unwrap();
        assert_eq!(
            store.check_identity_map().unwrap(),
            None,
            "{}",
            dir.display()
        );
        store.identity_map_root().unwrap()
    };
    assert_eq!(map_of(&crashy), map_of(&clean), "identity maps differ");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_sled_and_rebuilding_from_sequence_1_gives_the_same_digest() {
    let nats = NatsServer::start().await;
    let last = publish_history(&nats, 6, 200).await;
    let data = tempfile::tempdir().unwrap();
    let mut gl = Govledger::serve_in(data, &nats.url(), &[]);
    gl.wait_applied(last).await;
    let live = gl.ledger_status().await;
    assert_eq!(live.stream_last_seq, last);
    assert!(!live.state_digest.is_empty());
    let status = gl.stop().unwrap();
    assert!(
        status.success(),
        "serve did not stop cleanly: {}",
        gl.log_text()
    );

    let data_dir = gl.data_dir();
    std::fs::remove_dir_all(data_dir.join("sled")).unwrap();
    let started = Instant::now();
    let data = std::mem::replace(&mut gl.data, tempfile::tempdir().unwrap());
    drop(gl);
    let gl = Govledger::serve_in(data, &nats.url(), &[]);
    gl.wait_applied(last).await;
    let rebuilt = gl.ledger_status().await;
    assert_eq!(rebuilt.state_digest, live.state_digest);
    assert_eq!(rebuilt.meta, live.meta);
    eprintln!("rebuilt {last} events in {:?}", started.elapsed());
}
