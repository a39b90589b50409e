//! The storage-side projection baseline (rows 2, 4 and 6): the sled floor. A
//! raw sled loop that writes, for the same events, the least any projection
//! that deduplicates events and keeps per-identity state must write, with the
//! projector's sled settings (its default cache, `Mode::HighThroughput`) and its
//! commit cadence (one `apply_batch` plus one `flush_async` per
//! [`DEFAULT_BATCH_EVENTS_MAX`] events):
//!
//! - the duplicate check: per batch, one record per event-id block the
//!   batch's UUID v7 ids fall into (the projector's own [`event_block_of`]),
//!   holding that batch's ids of the block (16 bytes each); an id that is no
//!   UUID v7 gets its own key, value the stream sequence (8 bytes);
//! - every `RecordObserved` also: its identity key with an
//!   [`IDENTITY_VALUE_BYTES`]-byte value — the identity's state.
//!
//! govledger's projector writes the event-id blocks too (they also keep the
//! ids of earlier batches; its other records are written once per batch or
//! less), but keeps identity records 16 to a sled record
//! (`govledger_projector::identity_page`): fewer, larger writes than this
//! floor's one record per observation. The keys are encoded with the
//! projector's own [`Key::encode`], from an untimed read of the stream, before
//! the clock starts. No reads, no fold, no NATS: what sled alone costs. Its
//! rate against the raw fetch + ack rate is the ceiling of any projection on
//! sled on this machine (the "ceiling" rows).

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
    keys::{Key, event_block_of},
    runner::DEFAULT_BATCH_EVENTS_MAX,
};
use govledger_proto::v1::event::Body;

use crate::project::CACHE_CAPACITY_BYTES;

/// The value written under each identity key (about the size of an encoded
/// `IdentityState` of a simulated user).
pub const IDENTITY_VALUE_BYTES: usize = 200;

/// How the duplicate check of one event is written.
#[derive(Debug, Clone)]
enum IdWrite {
    /// Into event-id block `.0`, as the 16 bytes at `.1`.
    Block(u64, Range<usize>),
    /// Its own key.
    Key(Range<usize>),
}

/// The encoded keys of one event.
#[derive(Debug, Clone)]
struct EventKeys {
    seq: u64,
    event_id: IdWrite,
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

    /// Records written in all (blocks once per batch that touches them).
    pub fn keys(&self) -> usize {
        self.events
            .chunks(DEFAULT_BATCH_EVENTS_MAX)
            .map(|c| {
                let blocks: std::collections::BTreeSet<u64> = c
                    .iter()
                    .filter_map(|e| match e.event_id {
                        IdWrite::Block(b, _) => Some(b),
                        IdWrite::Key(_) => None,
                    })
                    .collect();
                blocks.len()
                    + c.iter()
                        .map(|e| {
                            usize::from(matches!(e.event_id, IdWrite::Key(_)))
                                + usize::from(e.record.is_some())
                        })
                        .sum::<usize>()
            })
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
            leaf: None,
        };
        let Ok(ev) = fold::decode(&msg) else { return };
        let event_id = match event_block_of(&ev.event_id) {
            Some((block, bytes)) => {
                let start = self.bytes.len();
                self.bytes.extend_from_slice(&bytes);
                IdWrite::Block(block, start..self.bytes.len())
            }
            None => IdWrite::Key(self.key(&Key::EventId(ev.event_id.clone()))),
        };
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
    let tree = db.open_tree(govledger_projector::store::TREE)?;
    let value = [0x5au8; IDENTITY_VALUE_BYTES];
    let b = &writes.bytes;
    let started = Instant::now();
    for chunk in writes.events.chunks(DEFAULT_BATCH_EVENTS_MAX) {
        let mut batch = sled::Batch::default();
        let mut blocks: std::collections::BTreeMap<u64, Vec<u8>> = Default::default();
        for e in chunk {
            match &e.event_id {
                IdWrite::Block(block, id) => {
                    let ids = blocks.entry(*block).or_default();
                    if reads && ids.is_empty() {
                        std::hint::black_box(tree.get(Key::EventBlock(*block).encode())?);
                    }
                    ids.extend_from_slice(&b[id.clone()]);
                }
                IdWrite::Key(k) => {
                    if reads {
                        std::hint::black_box(tree.get(&b[k.clone()])?);
                    }
                    batch.insert(&b[k.clone()], &e.seq.to_be_bytes());
                }
            }
            if let Some(identity) = &e.record {
                if reads {
                    std::hint::black_box(tree.get(&b[identity.clone()])?);
                }
                batch.insert(&b[identity.clone()], &value[..]);
            }
        }
        for (block, ids) in blocks {
            batch.insert(Key::EventBlock(block).encode(), ids);
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
    async fn writes_a_record_per_observation_and_ids_in_blocks() {
        let sim = SimRun::new("bench-00", 150, 100);
        let evs = run_events(&crate::events::producer(), &sim);
        let mut w = Writes::default();
        for (i, ev) in evs.iter().enumerate() {
            let (_, payload) = encode(ev).unwrap();
            w.add(i as u64 + 1, &payload);
        }
        // start + 2 pages + 150 records + finish, in one batch: one record per
        // distinct event-id block (UUID v7 made within a few milliseconds).
        assert_eq!(w.events(), evs.len());
        let distinct: std::collections::BTreeSet<u64> = evs
            .iter()
            .map(|e| event_block_of(&e.event_id).unwrap().0)
            .collect();
        assert_eq!(w.keys() - 150, distinct.len());
        assert!(
            w.events
                .iter()
                .all(|e| matches!(e.event_id, IdWrite::Block(..))),
            "every id of the simulation is a UUID v7"
        );
        let took = raw_sled_fresh(&w, false).await.unwrap();
        assert!(took > Duration::ZERO);
        let took = raw_sled_fresh(&w, true).await.unwrap();
        assert!(took > Duration::ZERO);
    }
}
