//! Row 1: publishing. govledger's [`Publisher`] (encode, publish with
//! `Nats-Msg-Id`, pipelined, ack) against a raw async-nats JetStream publish
//! loop of the same encoded payloads, subjects and ids with at most
//! [`RAW_INFLIGHT_MAX`] ack futures in flight. Each run gets a fresh stream;
//! the two alternate and the best of each counts.

use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use async_nats::jetstream::{self, message::PublishMessage};
use bytes::Bytes;
use futures::{StreamExt as _, stream::FuturesUnordered};
use govledger_ingest::{Publisher, publisher::encode};
use govledger_proto::v1::Event;
use govledger_stream::{StreamSpec, ensure_stream};
use tokio_util::sync::CancellationToken;

use crate::procs::NatsServer;

/// Ack futures the raw loop keeps in flight (the publisher's default window).
pub const RAW_INFLIGHT_MAX: usize = govledger_ingest::publisher::DEFAULT_INFLIGHT_MAX;

#[derive(Debug, Clone)]
pub struct PublishResult {
    pub events: usize,
    /// Best of the rounds.
    pub govledger: Duration,
    pub raw: Duration,
    /// The stream the last round left behind (the same events, for row 2).
    pub stream: String,
}

/// Publishes `events` `rounds` times each way, alternating, each run into its
/// own fresh stream (the previous one is deleted: all streams take the same
/// subjects). The last stream is kept.
pub async fn bench(nats: &NatsServer, events: &[Event], rounds: usize) -> Result<PublishResult> {
    let encoded = events
        .iter()
        .map(|e| encode(e).map(|(subject, payload)| (subject, payload, e.event_id.clone())))
        .collect::<Result<Vec<_>, _>>()?;
    let admin = jetstream::new(nats.client().await?);
    let mut best_gov = Duration::MAX;
    let mut best_raw = Duration::MAX;
    let mut previous: Option<String> = None;
    for round in 0..rounds.max(1) {
        for kind in ["gov", "raw"] {
            if let Some(old) = previous.take() {
                admin
                    .delete_stream(&old)
                    .await
                    .with_context(|| format!("deleting stream {old}"))?;
            }
            let name = format!("BENCH_PUB_{}_{round}", kind.to_uppercase());
            ensure_stream(
                &admin,
                &StreamSpec {
                    name: name.clone(),
                    ..Default::default()
                },
            )
            .await?;
            let took = if kind == "gov" {
                govledger_publish(nats, events).await?
            } else {
                raw_publish(nats, &encoded).await?
            };
            let stored = admin.get_stream(&name).await?.info().await?.state.messages;
            if stored != events.len() as u64 {
                bail!("{kind} publish stored {stored} of {} events", events.len());
            }
            crate::progress(format!(
                "  publish {kind} round {}: {} events in {:.2} s ({:.0} ev/s)",
                round + 1,
                events.len(),
                took.as_secs_f64(),
                events.len() as f64 / took.as_secs_f64()
            ));
            if kind == "gov" {
                best_gov = best_gov.min(took);
            } else {
                best_raw = best_raw.min(took);
            }
            previous = Some(name);
        }
    }
    Ok(PublishResult {
        events: events.len(),
        govledger: best_gov,
        raw: best_raw,
        stream: previous.unwrap_or_default(),
    })
}

/// Like `govledger::simulate::publish_all`: `publish()` every event, then wait
/// for every [`Pending`](govledger_ingest::publisher::Pending).
async fn govledger_publish(nats: &NatsServer, events: &[Event]) -> Result<Duration> {
    let client = nats.client().await?;
    let stop = CancellationToken::new();
    let publisher = Publisher::new(client, crate::events::sealing(), stop.clone());
    let started = Instant::now();
    let mut pending = Vec::with_capacity(events.len());
    for ev in events {
        pending.push(publisher.publish(ev).await?);
    }
    for p in pending {
        p.wait().await?;
    }
    let took = started.elapsed();
    stop.cancel();
    Ok(took)
}

/// The physical baseline: async-nats JetStream publishes of pre-encoded
/// payloads with the same `Nats-Msg-Id`, at most [`RAW_INFLIGHT_MAX`] acks
/// outstanding (on a context configured like the publisher's).
async fn raw_publish(nats: &NatsServer, encoded: &[(String, Bytes, String)]) -> Result<Duration> {
    let client = nats.client().await?;
    let js = jetstream::ContextBuilder::new()
        .timeout(Duration::from_secs(5))
        .max_ack_inflight(RAW_INFLIGHT_MAX * 8)
        .backpressure_on_inflight(true)
        .build(client);
    let started = Instant::now();
    let mut inflight = FuturesUnordered::new();
    for (subject, payload, id) in encoded {
        let msg = PublishMessage::build()
            .payload(payload.clone())
            .message_id(id.as_str());
        let ack = js.send_publish(subject.clone(), msg).await?;
        inflight.push(std::future::IntoFuture::into_future(ack));
        while inflight.len() >= RAW_INFLIGHT_MAX {
            if let Some(r) = inflight.next().await {
                r?;
            }
        }
    }
    while let Some(r) = inflight.next().await {
        r?;
    }
    Ok(started.elapsed())
}
