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
