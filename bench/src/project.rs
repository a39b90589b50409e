//! Row 2: projection. [`runner::run`] (fetch 1,000, fold, one atomic sled
//! batch, flush, ack) into a fresh sled folder until the stream's last
//! sequence, against a raw JetStream pull consumer on the same stream that
//! only fetches batches of 1,000 and acks the last message of each
//! (`AckPolicy::All`, like the projector). A second, storage-side baseline
//! ([`storage::raw_sled`]) writes the same events' keys straight into sled.
//! The three alternate; best of each, and each round's own ratio.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, anyhow, bail};
use async_nats::jetstream::{
    self,
    consumer::{AckPolicy, DeliverPolicy, pull},
};
use futures::StreamExt as _;
use govledger_projector::{
    Store,
    runner::{self, DEFAULT_BATCH_EVENTS_MAX, RunnerConfig},
};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::{
    procs::{self, NatsServer},
    storage,
};

/// The sled page cache the projector runs with (govledger's default).
pub const CACHE_CAPACITY_BYTES: u64 = govledger_projector::store::DEFAULT_CACHE_CAPACITY_BYTES;

#[derive(Debug, Clone)]
pub struct ProjectResult {
    pub events: u64,
    pub govledger: Duration,
    pub raw: Duration,
    /// The storage-side baseline ([`storage::raw_sled`]).
    pub raw_sled: Duration,
    /// The same with the reads a read-modify-write projection makes.
    pub raw_sled_reads: Duration,
    /// CPU seconds (this process + nats-server) of the least costly round of each.
    pub govledger_cpu_s: f64,
    pub raw_cpu_s: f64,
    /// Each round's raw time ÷ govledger time, in run order (the two run
    /// back to back, so a slow spell of the machine mostly hits both).
    pub round_ratios: Vec<f64>,
}

/// CPU seconds this process and the server have used so far.
pub fn cpu_now(nats: &NatsServer) -> Result<f64> {
    let own = crate::procs::rusage_cpu_seconds(nix::sys::resource::UsageWho::RUSAGE_SELF)?;
    Ok(own + nats.cpu_seconds()?)
}

pub async fn bench(nats: &NatsServer, stream: &str, rounds: usize) -> Result<ProjectResult> {
    let client = nats.client().await?;
    let js = jetstream::new(client.clone());
    let last_seq = js
        .get_stream(stream)
        .await?
        .info()
        .await?
        .state
        .last_sequence;
    let writes = storage::read_stream(&client, stream, last_seq).await?;
    crate::progress(format!(
        "  raw sled baseline: {} keys for {} events",
        writes.keys(),
        writes.events()
    ));
    let mut best_gov = Duration::MAX;
    let mut best_raw = Duration::MAX;
    let mut best_sled = Duration::MAX;
    let mut best_sled_reads = Duration::MAX;
    let (mut gov_cpu, mut raw_cpu) = (f64::MAX, f64::MAX);
    let mut round_ratios = Vec::with_capacity(rounds.max(1));
    for round in 0..rounds.max(1) {
        let dir = tempfile::Builder::new()
            .prefix("govledger-bench-sled-")
            .tempdir()?;
        let sled = dir.path().join("sled");
        procs::settle().await?;
        let cpu0 = cpu_now(nats)?;
        let took = project_in_process(&client, stream, &sled, last_seq, round).await?;
        let cpu1 = cpu_now(nats)?;
        note_round("govledger", round, last_seq, took);
        best_gov = best_gov.min(took);
        gov_cpu = gov_cpu.min(cpu1 - cpu0);
        procs::settle().await?;
        let raw_cpu0 = cpu_now(nats)?;
        let raw = raw_fetch(&client, stream, last_seq, &format!("bench-raw-{round}")).await?;
        raw_cpu = raw_cpu.min(cpu_now(nats)? - raw_cpu0);
        note_round("raw fetch+ack", round, last_seq, raw);
        best_raw = best_raw.min(raw);
        round_ratios.push(raw.as_secs_f64() / took.as_secs_f64());
        procs::settle().await?;
        let sled = storage::raw_sled_fresh(&writes, false).await?;
        note_round("raw sled", round, last_seq, sled);
        best_sled = best_sled.min(sled);
        procs::settle().await?;
        let sled = storage::raw_sled_fresh(&writes, true).await?;
        note_round("raw sled with reads", round, last_seq, sled);
        best_sled_reads = best_sled_reads.min(sled);
    }
    Ok(ProjectResult {
        events: last_seq,
        govledger: best_gov,
        raw: best_raw,
        raw_sled: best_sled,
        raw_sled_reads: best_sled_reads,
        govledger_cpu_s: gov_cpu,
        raw_cpu_s: raw_cpu,
        round_ratios,
    })
}

/// Progress line of one measured round.
fn note_round(what: &str, round: usize, events: u64, took: Duration) {
    crate::progress(format!(
        "  project {what} round {}: {events} events in {:.2} s ({:.0} ev/s)",
        round + 1,
        took.as_secs_f64(),
        events as f64 / took.as_secs_f64()
    ));
}

/// `runner::run` with `stop_at_seq = last_seq` into a fresh store at `sled`.
async fn project_in_process(
    client: &async_nats::Client,
    stream: &str,
    sled: &std::path::Path,
    last_seq: u64,
    round: usize,
) -> Result<Duration> {
    let store =
        Arc::new(Store::open(sled, CACHE_CAPACITY_BYTES)?.with_trust(crate::events::trust()));
    let cfg = RunnerConfig {
        stream: stream.to_owned(),
        durable: format!("bench-projector-{round}"),
        stop_at_seq: Some(last_seq),
        ..Default::default()
    };
    let (tx, _rx) = watch::channel(0u64);
    let started = Instant::now();
    runner::run(
        client.clone(),
        store.clone(),
        cfg,
        tx,
        CancellationToken::new(),
    )
    .await?;
    let took = started.elapsed();
    let applied = store.meta()?.last_applied_seq;
    if applied != last_seq {
        bail!("projector stopped at seq {applied}, expected {last_seq}");
    }
    Ok(took)
}

/// The physical baseline: a durable pull consumer from sequence 1 that fetches
/// batches of 1,000 without waiting (as the projector does) and acks the last
/// message of each batch, until `last_seq`.
pub async fn raw_fetch(
    client: &async_nats::Client,
    stream: &str,
    last_seq: u64,
    durable: &str,
) -> Result<Duration> {
    let js = jetstream::new(client.clone());
    let stream = js.get_stream(stream).await?;
    let batch = DEFAULT_BATCH_EVENTS_MAX;
    let consumer = stream
        .create_consumer(pull::Config {
            durable_name: Some(durable.to_owned()),
            deliver_policy: DeliverPolicy::All,
            ack_policy: AckPolicy::All,
            ack_wait: Duration::from_secs(60),
            max_ack_pending: (batch as i64 * 4).max(10_000),
            max_batch: batch as i64,
            ..Default::default()
        })
        .await
        .context("creating the raw consumer")?;
    let started = Instant::now();
    let mut last = 0u64;
    let mut stalled_since: Option<Instant> = None;
    while last < last_seq {
        let mut msgs = consumer
            .fetch()
            .max_messages(batch)
            .messages()
            .await
            .map_err(|e| anyhow!("fetch: {e}"))?;
        let mut held = Vec::with_capacity(batch);
        while let Some(m) = msgs.next().await {
            held.push(m.map_err(|e| anyhow!("fetch: {e}"))?);
        }
        match held.last() {
            Some(m) => {
                last = m.info().map_err(|e| anyhow!("{e}"))?.stream_sequence;
                m.ack().await.map_err(|e| anyhow!("ack: {e}"))?;
                stalled_since = None;
            }
            None => {
                let since = *stalled_since.get_or_insert_with(Instant::now);
                if since.elapsed() > Duration::from_secs(10) {
                    bail!("raw consumer stuck at seq {last} of {last_seq}");
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    }
    let took = started.elapsed();
    let _ = stream.delete_consumer(durable).await;
    Ok(took)
}
