//! A message lost from the stream's store (issue 22, item 2): the projector
//! decides the gap instead of looping on it. `project` and `rebuild` stop
//! with a verdict naming the missing sequence (exit 3); `serve` stops its
//! projector there, says NOT_SERVING, tells watchers (even those that connect
//! later) and `GetLedgerStatus`, and keeps answering from what it folded.

use std::{
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use govledger::simulate::SimRun;
use govledger_proto::v1::{self as pb, alert};
use govledger_testkit::{Govledger, NatsServer, govledger_bin, publish_sim};

const STREAM: &str = "GOVLEDGER";

/// A stream of one simulated run whose message `lost` is gone from the store;
/// returns the server and the stream's last sequence.
async fn stream_with_a_lost_message(lost: u64) -> (NatsServer, u64) {
    let mut nats = NatsServer::start().await;
    let client = nats.client().await;
    let last = publish_sim(&client, "gap-test", &SimRun::new("hr", 300, 50)).await;
    assert!(last > lost + 10, "the stream holds {last} messages");
    drop(client);
    nats.lose_message(STREAM, lost).await;
    (nats, last)
}

/// How often a log says it met the gap and went round again.
fn loops_in(log: &str) -> usize {
    log.matches("sequence gap in delivery").count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn project_stops_at_a_lost_message_with_a_verdict_naming_it() {
    let lost = 120;
    let (nats, _) = stream_with_a_lost_message(lost).await;
    let data = tempfile::tempdir().unwrap();
    let mut child = Command::new(govledger_bin())
        .args(["project", "--exit-at-end", "--nats-url", &nats.url()])
        .arg("--data-dir")
        .arg(data.path())
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // It must decide, not loop: the old projector reopened its consumer at
    // the gap forever (~35 log lines a second, no verdict).
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "project did not stop within 60 s at a lost message; stderr:\n{}",
                String::from_utf8_lossy(&out.stderr)
                    .lines()
                    .rev()
                    .take(20)
                    .collect::<Vec<_>>()
                    .join("\n")
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let stderr = String::from_utf8_lossy(&child.wait_with_output().unwrap().stderr).into_owned();
    assert_eq!(status.code(), Some(3), "exit code; stderr:\n{stderr}");
    assert!(
        stderr.contains(&format!(
            "GAP: sequence {lost} is missing from stream {STREAM} (the next stored message is {})",
            lost + 1
        )) && stderr.contains(&format!("stops at sequence {}", lost - 1))
            && stderr.contains("govledger verify"),
        "{stderr}"
    );
    assert_eq!(loops_in(&stderr), 0, "{stderr}");
    // Everything before the gap was folded and kept; nothing after it.
    let store = govledger_projector::Store::open(&data.path().join("sled"), 8 << 20).unwrap();
    assert_eq!(store.meta().unwrap().last_applied_seq, lost - 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_stops_its_projector_at_a_lost_message_and_says_so() {
    let lost = 57;
    let (nats, last) = stream_with_a_lost_message(lost).await;
    let gl = Govledger::serve(&nats.url(), &[]);
    let mut c = gl.client().await;

    // GetLedgerStatus says why, and answers as of the sequence before the gap.
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        let s = gl.ledger_status().await;
        if !s.projector_stopped.is_empty() {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "the projector never said it stopped; log:\n{}",
            gl.log_text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        status
            .projector_stopped
            .contains(&format!("sequence {lost} is missing from stream {STREAM}")),
        "{}",
        status.projector_stopped
    );
    assert_eq!(status.meta.unwrap_or_default().last_applied_seq, lost - 1);
    assert_eq!(status.stream_last_seq, last);

    // Health: NOT_SERVING.
    gl.wait_health(
        tonic_health::pb::health_check_response::ServingStatus::NotServing as i32,
        Duration::from_secs(10),
    )
    .await;

    // A watcher that connects after the stop is told at once.
    let mut alerts = gl.watch_alerts().await;
    let a = tokio::time::timeout(Duration::from_secs(5), alerts.message())
        .await
        .expect("no alert for a stopped projector")
        .unwrap()
        .unwrap();
    assert_eq!(a.kind, alert::Kind::ProjectorStopped as i32, "{a:?}");
    assert!(
        a.message.contains(&format!("sequence {lost} is missing")),
        "{a:?}"
    );

    // Reads still answer, from what was folded.
    c.list_sources(pb::ListSourcesRequest::default())
        .await
        .expect("reads answer while the projector is stopped");

    // `rebuild` says the live projection stopped (exit 3), though the part it
    // folded matches.
    let (st, out) = rebuild(&gl, &nats.url());
    assert_eq!(st, Some(3), "{out}");
    assert!(
        out.contains("MATCH")
            && out.contains(&format!(
                "STOPPED: the live projector folds nothing after seq {}",
                lost - 1
            )),
        "{out}"
    );

    // No busy loop: one decision, logged once, and quiet afterwards.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let log = gl.log_text();
    assert_eq!(loops_in(&log), 0, "{log}");
    assert_eq!(log.matches("the projector stopped").count(), 1, "{log}");
}

/// `govledger rebuild` against `gl`: (exit code, stdout + stderr).
fn rebuild(gl: &Govledger, nats_url: &str) -> (Option<i32>, String) {
    let out = Command::new(govledger_bin())
        .args(["rebuild", "--nats-url", nats_url, "--grpc-addr", &gl.addr])
        .arg("--data-dir")
        .arg(gl.data_dir())
        .args(["--token-file", &gl.token_path()])
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        out.status.code(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}
