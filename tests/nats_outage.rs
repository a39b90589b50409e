//! NATS killed (SIGKILL) and restarted on the same store while the publisher is
//! mid-stream: every event ends up in the stream exactly once and in the order it
//! was published; the publisher only waited (back-pressure), it never dropped.

use std::{
    collections::HashSet,
    time::{Duration, Instant},
};

use govledger::simulate::{SimRun, publish_all, run_events};
use govledger_ingest::event::ProducerId;
use govledger_proto::v1::{Event, Verdict};
use govledger_testkit::{
    Govledger, NatsServer, ensure_stream, publisher, read_stream, runs::assert_verdict,
};
use prost::Message as _;

fn history(runs: usize, users: u64) -> (Vec<Event>, Vec<String>) {
    let producer = ProducerId::new("outage-test");
    let mut events = Vec::new();
    let mut run_ids = Vec::new();
    for i in 0..runs {
        let sim = SimRun::new(&format!("src-{}", i % 2), users, 100);
        run_ids.push(sim.run_id.clone());
        events.extend(run_events(&producer, &sim));
    }
    (events, run_ids)
}

/// Every published event is in the stream exactly once. (Order is kept while the
/// connection holds; across a connection loss a resent event can land after a
/// later one, which is why verdicts wait for `events_emitted`.)
fn assert_stored_exactly_once(stored: &[govledger_projector::OwnedMsg], events: &[Event]) {
    let ids: Vec<String> = stored
        .iter()
        .map(|m| Event::decode(m.payload.as_ref()).unwrap().event_id)
        .collect();
    let unique: HashSet<&String> = ids.iter().collect();
    let want: HashSet<&String> = events.iter().map(|e| &e.event_id).collect();
    assert_eq!(ids.len(), unique.len(), "events duplicated in the stream");
    assert_eq!(
        unique, want,
        "the stream does not hold exactly the published events"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_killed_and_restarted_mid_publish_loses_and_duplicates_nothing() {
    let mut nats = NatsServer::start().await;
    let client = nats.client().await;
    ensure_stream(&client).await;
    let (events, run_ids) = history(40, 500); // ~20k events
    let p = publisher(client.clone(), 300);
    let to_publish = events.clone();
    let publishing = {
        let p = p.clone();
        tokio::spawn(async move { publish_all(&p, &to_publish).await })
    };
    // Let part of the history go through, then pull the plug.
    let deadline = Instant::now() + Duration::from_secs(20);
    while p
        .stats()
        .published
        .load(std::sync::atomic::Ordering::Relaxed)
        < 3_000
    {
        assert!(Instant::now() < deadline, "publishing never started");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    nats.kill9();
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(
        !publishing.is_finished(),
        "publishing finished while NATS was down"
    );
    nats.restart().await;
    let receipts = tokio::time::timeout(Duration::from_secs(120), publishing)
        .await
        .expect("publishing did not finish after NATS came back")
        .unwrap()
        .unwrap();
    assert_eq!(receipts.len(), events.len());
    assert!(
        p.stats().retries.load(std::sync::atomic::Ordering::Relaxed) > 0,
        "the outage caused no retry: the test did not test anything"
    );
    let client = nats.client().await;
    let stored = read_stream(&client).await;
    assert_stored_exactly_once(&stored, &events);
    // Every run is still judged COMPLETE from what the stream holds.
    let mut w = govledger_projector::fold::Working {
        trust: govledger_testkit::stream::test_trust(),
        ..Default::default()
    };
    govledger_projector::fold_in_memory(&mut w, &stored);
    for run_id in &run_ids {
        let run = w.runs.get(run_id).expect("run missing from the fold");
        assert_eq!(
            Verdict::try_from(run.verdict).unwrap(),
            Verdict::Complete,
            "{run_id}: {:?}",
            run.reasons
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn projection_survives_a_nats_restart_and_catches_up() {
    let mut nats = NatsServer::start().await;
    let gl = Govledger::serve(&nats.url(), &[]);
    let client = nats.client().await;
    ensure_stream(&client).await;
    let (first, _) = history(2, 200);
    let p = publisher(client.clone(), 300);
    publish_all(&p, &first).await.unwrap();
    nats.kill9();
    tokio::time::sleep(Duration::from_millis(300)).await;
    nats.restart().await;
    // govledger keeps running through the outage and resumes projecting.
    let (second, run_ids) = history(2, 200);
    let receipts = publish_all(&p, &second).await.unwrap();
    gl.wait_applied(receipts.last().unwrap().seq).await;
    for run_id in run_ids {
        let r = gl.run(&run_id).await;
        assert_verdict(&r, Verdict::Complete);
    }
}
