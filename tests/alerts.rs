//! WatchAlerts over a real nats-server and the real `govledger serve` binary:
//! a decision reaches a watcher when it is folded, not when some later event
//! happens to arrive.

use std::time::Duration;

use govledger::simulate::{SimRun, publish_all, run_events};
use govledger_ingest::event::ProducerId;
use govledger_proto::v1::alert;
use govledger_testkit::{Govledger, NatsServer, ensure_stream, publisher};

/// The decision of a run whose events end the stream was held back until the
/// next event arrived (the last committed batch's alerts were published only
/// when another batch came): an idle ledger never told its watchers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_decision_in_the_last_batch_is_pushed_while_the_ledger_is_idle() {
    let nats = NatsServer::start().await;
    let gl = Govledger::serve(&nats.url(), &[]);
    let mut watch = gl.watch_alerts().await;
    let client = nats.client().await;
    ensure_stream(&client).await;
    let p = publisher(client, 2_000);
    for (i, pages_fail) in [(0u32, false), (1, true)] {
        let mut sim = SimRun::new("hr", 30, 10);
        if pages_fail {
            sim.failing_pages = vec![1];
        }
        let receipts = publish_all(&p, &run_events(&ProducerId::new("test"), &sim))
            .await
            .unwrap();
        let last = receipts.last().unwrap().seq;
        gl.wait_applied(last).await;
        // Nothing else is published: the alert must come from the fold of this run.
        let a = tokio::time::timeout(Duration::from_secs(10), watch.message())
            .await
            .unwrap_or_else(|_| panic!("run {i}: no alert 10 s after its decision was applied"))
            .unwrap()
            .unwrap();
        assert_eq!(a.kind, alert::Kind::RunDecided as i32, "{a:?}");
        assert_eq!(a.run_id, sim.run_id, "{a:?}");
        assert_eq!(a.seq, last, "{a:?}");
    }
}

/// Every alert a watcher receives within `quiet` of the last one (at most 60 s).
async fn drain(
    watch: &mut tonic::Streaming<govledger_proto::v1::Alert>,
    quiet: Duration,
) -> Vec<govledger_proto::v1::Alert> {
    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while tokio::time::Instant::now() < deadline {
        match tokio::time::timeout(quiet, watch.message()).await {
            Ok(Ok(Some(a))) => got.push(a),
            _ => break,
        }
    }
    got
}

/// How many alerts the GOVLEDGER_ALERTS stream holds.
async fn stored_alerts(nats: &NatsServer) -> u64 {
    let js = async_nats::jetstream::new(nats.client().await);
    let mut s = js
        .get_stream(govledger::alerts::ALERTS_STREAM)
        .await
        .unwrap();
    s.info().await.unwrap().state.messages
}

/// Decisions are stored once, in their own stream: a watcher that was away
/// while a run was decided INCOMPLETE and an action DRIFTED reconnects with
/// the last alert_seq it saw and receives both, once; a restart and a
/// rebuild of the projection from the stream (its sled folder deleted) store
/// no decision twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watcher_that_reconnects_after_its_last_seq_misses_no_decision_and_sees_none_twice() {
    use govledger_proto::v1::{ActionKind, ActionOutcome, Verdict, WatchAlertsRequest};
    use govledger_testkit::{
        fault_scim::{Faults, PageFault, ResourceType},
        govledger::{action_request, serve_fault_scim},
    };
    let (nats, scim, mut gl) = serve_fault_scim(30, 3, "").await;
    let mut watch = gl.watch_alerts().await;
    let u = scim.user_ids()[4].clone();
    let confirmed = gl
        .act(
            "hr",
            action_request(ActionKind::Deactivate, &u, "", "dur-1", "T-1"),
        )
        .await;
    assert_eq!(confirmed.outcome, ActionOutcome::Confirmed as i32);
    // The watcher sees the conclusion, with its place in the alerts stream...
    let seen = loop {
        let a = tokio::time::timeout(Duration::from_secs(10), watch.message())
            .await
            .expect("no alert within 10 s")
            .unwrap()
            .unwrap();
        if a.kind == alert::Kind::ActionConcluded as i32 {
            break a;
        }
    };
    assert!(seen.alert_seq > 0 && !seen.alert_id.is_empty(), "{seen:?}");
    // ... and goes away.
    drop(watch);
    // Meanwhile the user is enabled again (the next sync shows the action
    // DRIFTED) and a later sync loses a page (INCOMPLETE).
    scim.set_active(&u, true);
    let again = gl.sync("hr").await;
    assert_eq!(
        again.verdict,
        Verdict::Complete as i32,
        "{:?}",
        again.reasons
    );
    // The Groups listing fails; the Users are read: INCOMPLETE, not FAILED.
    scim.set_faults(Faults {
        only: Some(ResourceType::Groups),
        fail: vec![PageFault {
            start_index: 1,
            status: 503,
            times: u32::MAX,
        }],
        ..Default::default()
    });
    let incomplete = gl.sync("hr").await;
    assert_eq!(incomplete.verdict, Verdict::Incomplete as i32);
    let incomplete_run = incomplete.run.unwrap();
    let incomplete_id = incomplete_run.run_id.clone();

    let resumed = |after| {
        let gl = &gl;
        async move {
            gl.client()
                .await
                .watch_alerts(WatchAlertsRequest {
                    after_alert_seq: after,
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_inner()
        }
    };
    let got = drain(&mut resumed(seen.alert_seq).await, Duration::from_secs(2)).await;
    let drifted: Vec<_> = got
        .iter()
        .filter(|a| a.kind == alert::Kind::ActionDrifted as i32 && a.action_id == seen.action_id)
        .collect();
    let decided: Vec<_> = got
        .iter()
        .filter(|a| a.kind == alert::Kind::RunDecided as i32 && a.run_id == incomplete_id)
        .collect();
    assert_eq!(drifted.len(), 1, "{got:#?}");
    assert_eq!(decided.len(), 1, "{got:#?}");
    assert_eq!(decided[0].verdict, Verdict::Incomplete as i32);
    assert!(got.iter().all(|a| a.alert_seq > seen.alert_seq), "{got:#?}");
    let mut ids: Vec<_> = got.iter().map(|a| a.alert_id.clone()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), got.len(), "an alert came twice: {got:#?}");

    // A restart stores nothing twice, and neither does a rebuild of the
    // projection from the stream (every decision folded, and relayed, again).
    let before = stored_alerts(&nats).await;
    let cfg = gl.data_dir().parent().unwrap().join("govledger.toml");
    let cfg = cfg.to_str().unwrap().to_owned();
    gl.stop();
    let data = gl.take_data();
    let mut gl = Govledger::serve_in(data, &nats.url(), &["--config", &cfg]);
    gl.wait_applied(incomplete_run.last_seq).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        stored_alerts(&nats).await,
        before,
        "a restart stored an alert again"
    );
    gl.stop();
    std::fs::remove_dir_all(gl.data_dir().join("sled")).unwrap();
    let data = gl.take_data();
    let gl = Govledger::serve_in(data, &nats.url(), &["--config", &cfg]);
    let status = gl.ledger_status().await;
    gl.wait_applied(status.stream_last_seq).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        stored_alerts(&nats).await,
        before,
        "a rebuild stored an alert again"
    );
    // The relay went through every refolded decision (stored before) and
    // still stores new ones, after them: one more decision is one more alert.
    scim.set_faults(Faults::default());
    let next = gl.sync("hr").await;
    assert_eq!(next.verdict, Verdict::Complete as i32, "{:?}", next.reasons);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while stored_alerts(&nats).await < before + 1 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the new decision was not stored"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(stored_alerts(&nats).await, before + 1);
}
