//! Stream-side helpers for tests: a retrying publisher, govledger's stream
//! contract, publishing a simulated run, reading the whole stream back as the
//! projector sees it, and the state digest of a stopped ledger's sled folder.

use std::{path::Path, time::Duration};

use govledger_ingest::{Publisher, PublisherConfig};
use tokio_util::sync::CancellationToken;

/// The seed of the tests' producer key. [`crate::govledger::Govledger`]
/// starts `serve` with it as its own producer key (`<data>/producer.key`), so
/// runs the tests publish through [`publisher`] are sealed by a trusted key.
pub const TEST_PRODUCER_SEED: [u8; 32] = [0x5e; 32];

/// The tests' producer key (see [`TEST_PRODUCER_SEED`]).
pub fn test_producer_key() -> std::sync::Arc<govledger_stream::seal::ProducerKey> {
    std::sync::Arc::new(govledger_stream::seal::ProducerKey::from_seed(
        TEST_PRODUCER_SEED,
    ))
}

/// The trust of a ledger started by the testkit: the tests' producer key.
pub fn test_trust() -> std::sync::Arc<govledger_stream::seal::Trust> {
    std::sync::Arc::new(govledger_stream::seal::Trust::new([
        test_producer_key().public_key()
    ]))
}

/// A publisher on `client` that keeps retrying until the test ends and
/// seals with the tests' producer key (trusted by a testkit-started ledger).
pub fn publisher(client: async_nats::Client, ack_timeout_ms: u64) -> Publisher {
    publisher_sealed_by(client, ack_timeout_ms, Some(test_producer_key()))
}

/// A publisher like [`publisher`] that seals with `key` (None: nothing is sealed).
pub fn publisher_sealed_by(
    client: async_nats::Client,
    ack_timeout_ms: u64,
    key: Option<std::sync::Arc<govledger_stream::seal::ProducerKey>>,
) -> Publisher {
    Publisher::new(
        client,
        PublisherConfig {
            ack_timeout: Duration::from_millis(ack_timeout_ms),
            seal_key: key,
            ..Default::default()
        },
        CancellationToken::new(),
    )
}

/// Publishes `events` through `p` (each stored once); returns the stream
/// sequence of the last.
pub async fn publish_events(p: &Publisher, events: &[govledger_proto::v1::Event]) -> u64 {
    let receipts = govledger::simulate::publish_all(p, events)
        .await
        .unwrap_or_else(|e| panic!("publishing {} events: {e}", events.len()));
    receipts.last().map_or(0, |r| r.seq)
}

/// Creates the stream, then publishes `sim`'s events as `producer` through a
/// fresh publisher; returns the stream sequence of the last.
pub async fn publish_sim(
    client: &async_nats::Client,
    producer: &str,
    sim: &govledger::simulate::SimRun,
) -> u64 {
    ensure_stream(client).await;
    let p = publisher(client.clone(), 2_000);
    let producer = govledger_ingest::event::ProducerId::new(producer);
    publish_events(&p, &govledger::simulate::run_events(&producer, sim)).await
}

/// Creates the stream with govledger's own contract.
pub async fn ensure_stream(client: &async_nats::Client) {
    let js = async_nats::jetstream::new(client.clone());
    govledger_stream::ensure_stream(&js, &govledger_stream::StreamSpec::default())
        .await
        .unwrap();
}

/// Every message in the stream, in order, as the projector sees it.
pub async fn read_stream(client: &async_nats::Client) -> Vec<govledger_projector::OwnedMsg> {
    use futures::StreamExt as _;
    let js = async_nats::jetstream::new(client.clone());
    let mut stream = js.get_stream("GOVLEDGER").await.unwrap();
    let total = stream.info().await.unwrap().state.messages as usize;
    let consumer = stream
        .create_consumer(async_nats::jetstream::consumer::pull::OrderedConfig {
            deliver_policy: async_nats::jetstream::consumer::DeliverPolicy::All,
            ..Default::default()
        })
        .await
        .unwrap();
    let mut msgs = consumer.messages().await.unwrap();
    let mut out = Vec::with_capacity(total);
    while out.len() < total {
        let m = tokio::time::timeout(Duration::from_secs(10), msgs.next())
            .await
            .expect("stream read stalled")
            .unwrap()
            .unwrap();
        let info = m.info().unwrap();
        out.push(govledger_projector::OwnedMsg {
            seq: info.stream_sequence,
            subject: m.subject.to_string(),
            stored_at_us: (info.published.unix_timestamp_nanos() / 1_000) as i64,
            payload: m.payload.clone(),
            leaf: None,
        });
    }
    out
}

/// Opens a sled folder left by a stopped govledger and returns its digest.
pub fn sled_digest(data_dir: &Path) -> String {
    let store = govledger_projector::Store::open(&data_dir.join("sled"), 8 << 20).unwrap();
    store.digest().unwrap()
}
