//! The storage-side projection baseline (rows 2, 4 and 6): the sled floor. A
//! raw sled loop that writes, for the same events, the least any projection
//! that deduplicates events and keeps per-identity state must write, with the
//! projector's sled settings (cache 64 MiB, `Mode::HighThroughput`) and its
//! commit cadence (one `apply_batch` plus one `flush_async` per
//! [`DEFAULT_BATCH_EVENTS_MAX`] events):
//!
//! - every event: its event-id key (`E` + the UUID's 16 bytes),
//!   value the stream sequence (8 bytes) — the duplicate check;
//! - every `RecordObserved` also: its identity key with an
//!   [`IDENTITY_VALUE_BYTES`]-byte value — the identity's state.
//!
//! These are also exactly the per-event writes govledger's projector makes in
//! the usual order of runs (its other records are written once per batch). The
//! keys are encoded with the projector's own [`Key::encode`], from an untimed
//! read of the stream, before the clock starts. No reads, no fold, no NATS:
//! what sled alone costs. Its rate against the raw fetch + ack rate is the
//! ceiling of any projection on sled on this machine (the "ceiling" rows).

use std::{
    ops::Range,
    path::Path,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, anyhow, bail};
use async_nats::jetstream::{
    self,
    consumer::{AckPolicy, DeliverPolicy, pull},
};
use futures::StreamExt as _;
use govledger_projector::{
    fold::{self, StreamMsg},
    keys::Key,
    runner::DEFAULT_BATCH_EVENTS_MAX,
};
use govledger_proto::v1::event::Body;

use crate::project::CACHE_CAPACITY_BYTES;

/// The value written under each identity key (about the size of an encoded
/// `IdentityState` of a simulated user).
pub const IDENTITY_VALUE_BYTES: usize = 200;

/// The encoded keys of one event.
#[derive(Debug, Clone)]
struct EventKeys {
    seq: u64,
    event_id: Range<usize>,
    /// The identity key of a `RecordObserved`.
    record: Option<Range<usize>>,
}

/// Every key the baseline writes, in stream order, packed in one buffer.
#[derive(Debug, Default)]
pub struct Writes {
    bytes: Vec<u8>,
    events: Vec<EventKeys>,
}

impl Writes {
    pub fn events(&self) -> usize {
        self.events.len()
    }

    pub fn keys(&self) -> usize {
        self.events
            .iter()
            .map(|e| 1 + usize::from(e.record.is_some()))
            .sum()
    }

    fn key(&mut self, key: &Key) -> Range<usize> {
        let start = self.bytes.len();
        self.bytes.extend_from_slice(&key.encode());
        start..self.bytes.len()
    }

    /// Adds the keys of the stream message `seq` (undecodable messages write
    /// nothing, as the projector folds nothing for them).
    pub fn add(&mut self, seq: u64, payload: &[u8]) {
        let msg = StreamMsg {
            seq,
            subject: "",
            stored_at_us: 0,
            payload,
        };
        let Ok(ev) = fold::decode(&msg) else { return };
        let event_id = self.key(&Key::EventId(ev.event_id.clone()));
        let record = match &ev.body {
            Some(Body::RecordObserved(r)) => Some(self.key(&Key::Identity((
                ev.source_id.clone(),
                r.entity_type,
                r.external_id.clone(),
            )))),
            _ => None,
        };
        self.events.push(EventKeys {
            seq,
            event_id,
            record,
        });
    }
}

/// Reads the stream up to `last_seq` (untimed, no acks) and encodes the keys
/// the baseline writes.
pub async fn read_stream(
    client: &async_nats::Client,
    stream: &str,
    last_seq: u64,
) -> Result<Writes> {
    let js = jetstream::new(client.clone());
    let stream = js.get_stream(stream).await?;
    let durable = "bench-sled-keys";
    let consumer = stream
        .create_consumer(pull::Config {
            durable_name: Some(durable.to_owned()),
            deliver_policy: DeliverPolicy::All,
            ack_policy: AckPolicy::None,
            ..Default::default()
        })
        .await
        .context("creating the key-reading consumer")?;
    let mut messages = consumer
        .stream()
        .max_messages_per_batch(DEFAULT_BATCH_EVENTS_MAX)
        .messages()
        .await
        .map_err(|e| anyhow!("reading the stream: {e}"))?;
    let mut writes = Writes::default();
    let mut last = 0u64;
    while last < last_seq {
        let m = tokio::time::timeout(Duration::from_secs(10), messages.next())
            .await
            .map_err(|_| anyhow!("reading the stream stalled at seq {last} of {last_seq}"))?
            .ok_or_else(|| anyhow!("the stream ended at seq {last} of {last_seq}"))?
            .map_err(|e| anyhow!("reading the stream: {e}"))?;
        last = m.info().map_err(|e| anyhow!("{e}"))?.stream_sequence;
        writes.add(last, &m.payload);
    }
    drop(messages);
    let _ = stream.delete_consumer(durable).await;
    Ok(writes)
}

/// The baseline: writes `writes` into a fresh sled database in `dir`, one
/// atomic batch and one `flush_async` per [`DEFAULT_BATCH_EVENTS_MAX`] events.
/// With `reads`, each key is first read (`get`), as a projection that checks
/// the event id and reads the identity before updating it must.
pub async fn raw_sled(writes: &Writes, dir: &Path, reads: bool) -> Result<Duration> {
    if writes.events.is_empty() {
        bail!("no events to write");
    }
    let db = sled::Config::new()
        .path(dir)
        .cache_capacity(CACHE_CAPACITY_BYTES)
        .mode(sled::Mode::HighThroughput)
        .open()
        .with_context(|| format!("opening sled at {}", dir.display()))?;
    let tree = db.open_tree("projections.v1")?;
    let value = [0x5au8; IDENTITY_VALUE_BYTES];
    let b = &writes.bytes;
    let started = Instant::now();
    for chunk in writes.events.chunks(DEFAULT_BATCH_EVENTS_MAX) {
        let mut batch = sled::Batch::default();
        for e in chunk {
            if reads {
                std::hint::black_box(tree.get(&b[e.event_id.clone()])?);
            }
            batch.insert(&b[e.event_id.clone()], &e.seq.to_be_bytes());
            if let Some(identity) = &e.record {
                if reads {
                    std::hint::black_box(tree.get(&b[identity.clone()])?);
                }
                batch.insert(&b[identity.clone()], &value[..]);
            }
        }
        tree.apply_batch(batch)?;
        db.flush_async().await?;
    }
    Ok(started.elapsed())
}

/// [`raw_sled`] into a fresh temporary folder (deleted afterwards).
pub async fn raw_sled_fresh(writes: &Writes, reads: bool) -> Result<Duration> {
    let dir = tempfile::Builder::new()
        .prefix("govledger-bench-raw-sled-")
        .tempdir()?;
    raw_sled(writes, &dir.path().join("sled"), reads).await
}

#[cfg(test)]
mod tests {
    use govledger::simulate::{SimRun, run_events};
    use govledger_ingest::publisher::encode;

    use super::*;

    #[tokio::test]
    async fn writes_two_keys_per_record_and_one_per_other_event() {
        let sim = SimRun::new("bench-00", 150, 100);
        let evs = run_events(&crate::events::producer(), &sim);
        let mut w = Writes::default();
        for (i, ev) in evs.iter().enumerate() {
            let (_, payload) = encode(ev).unwrap();
            w.add(i as u64 + 1, &payload);
        }
        // start + 2 pages + 150 records + finish.
        assert_eq!(w.events(), evs.len());
        assert_eq!(w.keys(), evs.len() + 150);
        let e = &w.events[1];
        assert_eq!(
            e.event_id.len(),
            17,
            "event-id key of a UUID: tag + 16 bytes"
        );
        let took = raw_sled_fresh(&w, false).await.unwrap();
        assert!(took > Duration::ZERO);
        let took = raw_sled_fresh(&w, true).await.unwrap();
        assert!(took > Duration::ZERO);
    }
}
