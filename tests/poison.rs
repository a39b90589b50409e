//! Bad input on the event subjects: undecodable bytes and events this build
//! cannot understand are kept as poison events (counted, listed over gRPC with
//! their sequence, logged), the projector keeps going, and nothing is dropped.

use govledger::simulate::{SimRun, run_events};
use govledger_ingest::event::ProducerId;
use govledger_proto::v1::{GetLedgerStatusRequest, ListPoisonEventsRequest, Verdict};
use govledger_testkit::{
    Govledger, NatsServer, ensure_stream, publish_events, publisher, runs::assert_verdict,
};
use prost::Message as _;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undecodable_and_unknown_events_are_kept_as_poison_and_do_not_stop_projection() {
    let nats = NatsServer::start().await;
    let gl = Govledger::serve(&nats.url(), &[]);
    let client = nats.client().await;
    ensure_stream(&client).await;
    let js = async_nats::jetstream::new(client.clone());

    // 1: bytes that are not a protobuf Event at all.
    let garbage = js
        .publish(
            "govledger.v1.hr.read.page_fetched",
            vec![0xff, 0x00, 0x13].into(),
        )
        .await
        .unwrap()
        .await
        .unwrap()
        .sequence;
    // 2: a well-formed event from a newer schema.
    let producer = ProducerId::new("test");
    let mut future = run_events(&producer, &SimRun::new("hr", 1, 1)).remove(0);
    future.schema_version = 99;
    let newer = js
        .publish(
            "govledger.v1.hr.read.run_started",
            future.encode_to_vec().into(),
        )
        .await
        .unwrap()
        .await
        .unwrap()
        .sequence;
    // Then a clean run, which must still be projected and COMPLETE.
    let sim = SimRun::new("hr", 120, 50);
    let p = publisher(client.clone(), 2_000);
    let last = publish_events(&p, &run_events(&producer, &sim)).await;
    gl.wait_applied(last).await;

    let mut c = gl.client().await;
    let poison = c
        .list_poison_events(ListPoisonEventsRequest {
            after_seq: 0,
            limit: 10,
        })
        .await
        .unwrap()
        .into_inner()
        .events;
    assert_eq!(poison.len(), 2);
    assert_eq!(poison[0].seq, garbage);
    assert_eq!(poison[0].subject, "govledger.v1.hr.read.page_fetched");
    assert_eq!(poison[0].payload_len, 3);
    assert!(
        poison[0].error.contains("not a govledger.v1.Event"),
        "{}",
        poison[0].error
    );
    assert_eq!(poison[1].seq, newer);
    assert!(
        poison[1].error.contains("schema_version 99"),
        "{}",
        poison[1].error
    );
    assert!(poison[1].error.contains("upgrade govledger"));

    let status = c
        .get_ledger_status(GetLedgerStatusRequest { with_digest: false })
        .await
        .unwrap()
        .into_inner();
    let meta = status.meta.unwrap();
    assert_eq!(meta.poison_events, 2);
    assert_eq!(meta.last_applied_seq, last);
    assert_eq!(
        status.stream_messages, last,
        "every message is still in the stream"
    );

    let r = gl.run(&sim.run_id).await;
    assert_verdict(&r, Verdict::Complete);

    let log = gl.log_text();
    assert!(
        log.contains("poison event kept in the ledger") && log.contains(&format!("seq={garbage}")),
        "poison not logged with its sequence:\n{log}"
    );
}
