//! The projector loop: a durable JetStream pull consumer, batches folded in
//! stream order, committed with the last applied sequence, flushed, then acked.
//!
//! Architecture Invariant: ack only after commit. A message is acknowledged only
//! after the batch that folded it was written atomically with its sequence and
//! flushed. A crash at any point leaves either the old state (the batch comes
//! back) or the new one (the redelivered batch is skipped by sequence).
//!
//! A batch's flush runs while the next batch is folded (one flush in flight at
//! most); the batch is acked, and its alerts and progress published, once its
//! flush is done, in batch order — at once when no next batch is waiting, so
//! an idle ledger holds nothing back. The next batch is committed only after
//! that: a commit queued behind a flush would wait for the disk inside sled's
//! store lock, and every API read with it.
//!
//! The fetch task keeps only what the fold reads of each message
//! ([`OwnedMsg`]) and its reply subject (where its ack goes), and drops the
//! rest of the message there: a JetStream message carries a clone of the
//! client, and dropping a thousand of them per batch on the fold's thread
//! was about 5 % of that thread's profile at 1M identities.

use std::{sync::Arc, time::Duration};

use async_nats::jetstream::{
    self,
    consumer::{AckPolicy, DeliverPolicy, pull},
};
use futures::StreamExt as _;
use govledger_proto::v1::LedgerMeta;
use govledger_stream::backoff::Backoff;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::{
    BatchOutcome, OwnedMsg, commit_folded, fold_batch,
    store::{Store, StoreError},
};

pub const DEFAULT_DURABLE: &str = "govledger-projector";
pub const DEFAULT_BATCH_EVENTS_MAX: usize = 1_000;
pub const DEFAULT_IDLE_WAIT_MS: u64 = 100;
/// How much longer than `idle_wait` one pull may take before it is abandoned
/// and the consumer reopened.
pub const PULL_TIMEOUT_MARGIN_MS: u64 = 5_000;

#[derive(Debug, Clone)]
pub struct RunnerConfig {
    pub stream: String,
    pub durable: String,
    /// Messages folded and committed together (one sled batch, one flush, one ack).
    pub batch_events_max: usize,
    /// When caught up, how long one pull waits for new messages.
    pub idle_wait: Duration,
    /// Return once everything up to this stream sequence is applied (catch-up
    /// runs such as a rebuild). `None`: run until shutdown.
    pub stop_at_seq: Option<u64>,
    /// Where decisions go once committed (WatchAlerts); `None` = nowhere.
    pub alerts: Option<tokio::sync::broadcast::Sender<govledger_proto::v1::Alert>>,
    /// Folders on sled's disk: while one has too little room
    /// ([`govledger_stream::room`]), nothing is committed (the events wait
    /// in the stream) instead of meeting a full disk, which sled does not
    /// survive in-process. Empty: not checked.
    pub storage_paths: Vec<std::path::PathBuf>,
    /// What the runner counts (events by kind, decisions, batch time).
    pub metrics: crate::metrics::FoldMetrics,
    /// While it holds `true`, no batch is folded (the events wait in the
    /// stream, the lag grows); `None`: never paused.
    pub paused: Option<watch::Receiver<bool>>,
}

impl Default for RunnerConfig {
    fn default() -> Self {
        Self {
            stream: govledger_stream::contract::DEFAULT_STREAM_NAME.to_owned(),
            durable: DEFAULT_DURABLE.to_owned(),
            batch_events_max: DEFAULT_BATCH_EVENTS_MAX,
            idle_wait: Duration::from_millis(DEFAULT_IDLE_WAIT_MS),
            stop_at_seq: None,
            alerts: None,
            storage_paths: Vec::new(),
            metrics: crate::metrics::FoldMetrics::default(),
            paused: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ProjectorError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("JetStream stream {stream} not found; start `govledger serve` once to create it")]
    NoStream { stream: String },
    #[error("the flush task of a committed batch failed: {0}")]
    Flush(String),
    /// A sequence the stream no longer holds (a damaged store lost it): the
    /// projection cannot go past it without folding a history with a hole.
    #[error(
        "GAP: sequence {missing} is missing from stream {stream} (the next stored message is {next}); \
         the projection stops at sequence {applied} and folds nothing after it. The stream's store lost a message: \
         `govledger verify` names every damaged sequence; restore the stream from a backup, then rebuild \
         (delete the data folder's sled and start again)",
        applied = missing.saturating_sub(1)
    )]
    Gap {
        stream: String,
        missing: u64,
        next: u64,
    },
}

/// How long the projector waits for NATS to say whether a sequence is stored.
pub const GAP_CHECK_TIMEOUT_MS: u64 = 4_000;

/// Runs until `shutdown`. Publishes each committed `last_applied_seq` on `progress`.
pub async fn run(
    client: async_nats::Client,
    store: Arc<Store>,
    cfg: RunnerConfig,
    progress: watch::Sender<u64>,
    shutdown: CancellationToken,
) -> Result<(), ProjectorError> {
    let js = jetstream::new(client.clone());
    let backoff = Backoff::default();
    let mut meta = store.meta()?;
    progress.send_replace(meta.last_applied_seq);
    let mut failures: u32 = 0;
    let caught_up = |meta: &LedgerMeta| cfg.stop_at_seq.is_some_and(|s| meta.last_applied_seq >= s);
    'connect: loop {
        if shutdown.is_cancelled() || caught_up(&meta) {
            return Ok(());
        }
        let consumer = match open_consumer(&js, &cfg, meta.last_applied_seq).await {
            Ok(c) => c,
            Err(e) => {
                failures = failures.saturating_add(1);
                tracing::warn!(error = %e, failures, "projector cannot open its consumer; retrying");
                let d = backoff.delay(failures - 1, &mut rand::rng());
                if sleep_or_shutdown(d, &shutdown).await {
                    return Ok(());
                }
                continue 'connect;
            }
        };
        tracing::info!(from_seq = meta.last_applied_seq + 1, durable = %cfg.durable, stop_at_seq = ?cfg.stop_at_seq, "projector consuming");
        // The next batch is pulled while this one is folded and committed. A
        // prefetched batch that is never folded (reconnect, stop) is never acked:
        // acks cover only what was committed, and the consumer is recreated from
        // sled's last applied sequence.
        let (tx, mut rx) = tokio::sync::mpsc::channel(PREFETCH_BATCHES);
        // The last committed batch, while its flush runs.
        let mut flushing: Option<Flushing> = None;
        let _fetcher = tokio_util::task::AbortOnDropHandle::new(tokio::spawn(fetch_ahead(
            consumer,
            cfg.clone(),
            shutdown.clone(),
            tx,
        )));
        loop {
            let batch = next_batch(&mut rx, &mut flushing, &client, &cfg, &progress)
                .await?
                .unwrap_or_else(|| Err("the fetch task ended".into()));
            let Pulled { mut replies, owned } = match batch {
                Ok(Some(p)) => p,
                Ok(None) => return finish(flushing, &client, &cfg, &progress).await,
                Err(e) => {
                    finish(flushing.take(), &client, &cfg, &progress).await?;
                    failures = failures.saturating_add(1);
                    tracing::warn!(error = %e, failures, "projector pull failed; retrying");
                    let d = backoff.delay(failures.min(20) - 1, &mut rand::rng());
                    if sleep_or_shutdown(d, &shutdown).await {
                        return Ok(());
                    }
                    continue 'connect;
                }
            };
            failures = 0;
            if owned.is_empty() {
                continue;
            }
            // Architecture Invariant: sequences are applied in order without gaps
            // (the stream denies delete and purge, so it has none). Anything past a
            // gap is neither folded nor acked; the consumer is reopened after it.
            let mut usable = crate::contiguous_prefix(&owned, meta.last_applied_seq);
            if let Some(stop) = cfg.stop_at_seq {
                // A catch-up run ends exactly at `stop` (a rebuild compares digests there).
                usable = owned[..usable].iter().take_while(|m| m.seq <= stop).count();
            }
            if !wait_for_room(&cfg.storage_paths, &shutdown).await {
                return finish(flushing, &client, &cfg, &progress).await;
            }
            if !hold_if_paused(&mut flushing, &client, &cfg, &progress, &shutdown).await? {
                return Ok(());
            }
            let started = std::time::Instant::now();
            let kinds = tally(&owned[..usable], meta.last_applied_seq);
            // Fold while the previous batch's flush runs; commit only once it
            // is done (and acked: acks stay in order). A commit behind a flush
            // waits for the disk inside sled's store lock, and every read
            // waits with it.
            let folded = blocking(|| fold_batch(&store, &meta, &owned[..usable]))?;
            finish(flushing.take(), &client, &cfg, &progress).await?;
            let outcome = blocking(|| commit_folded(&store, &mut meta, folded))?;
            cfg.metrics
                .batch_seconds
                .observe(started.elapsed().as_secs_f64());
            govledger_stream::failpoint::hit("projector-after-commit-before-flush");
            let flush_store = store.clone();
            flushing = Some(Flushing {
                flush: tokio_util::task::AbortOnDropHandle::new(tokio::spawn(async move {
                    flush_store.flush().await
                })),
                ack_to: usable
                    .checked_sub(1)
                    .and_then(|i| replies.get_mut(i))
                    .and_then(Option::take),
                outcome,
                kinds,
                seq: meta.last_applied_seq,
            });
            if caught_up(&meta) {
                return finish(flushing, &client, &cfg, &progress).await;
            }
            if usable < owned.len() {
                finish(flushing.take(), &client, &cfg, &progress).await?;
                let gap = (meta.last_applied_seq + 1, owned[usable].seq);
                failures = failures.saturating_add(1);
                if decide_gap(&js, &cfg.stream, gap, failures, &shutdown).await? {
                    return Ok(());
                }
                continue 'connect;
            }
        }
    }
}

/// What the fetch task hands the fold: a batch (possibly empty when idle),
/// `None` on shutdown, or the error that ended it.
type Fetched = Result<Option<Pulled>, BoxError>;

/// Waits for the next pulled batch. A flush that completes first is finished
/// at once: the last batch before an idle spell is acked, and its alerts and
/// progress published, as soon as it is durable — not when some later event
/// happens to arrive (it once waited for one, and a watcher of an idle ledger
/// never heard of its last decision).
async fn next_batch(
    rx: &mut tokio::sync::mpsc::Receiver<Fetched>,
    flushing: &mut Option<Flushing>,
    client: &async_nats::Client,
    cfg: &RunnerConfig,
    progress: &watch::Sender<u64>,
) -> Result<Option<Fetched>, ProjectorError> {
    if let Some(f) = flushing.as_mut() {
        tokio::select! {
            // A batch already pulled is folded first: its fold overlaps the flush.
            biased;
            batch = rx.recv() => return Ok(batch),
            flushed = &mut f.flush => {
                if let Some(f) = flushing.take() {
                    published(f, flushed, client, cfg, progress).await?;
                }
            }
        }
    }
    Ok(rx.recv().await)
}

/// A committed batch whose flush is running.
struct Flushing {
    flush: tokio_util::task::AbortOnDropHandle<Result<(), StoreError>>,
    /// The reply subject of the batch's last message: acking it acks the
    /// batch (`AckPolicy::All`).
    ack_to: Option<async_nats::Subject>,
    outcome: BatchOutcome,
    /// Its applied events by kind, for the metrics.
    kinds: crate::metrics::KindTally,
    /// The batch's last applied sequence.
    seq: u64,
}

/// Waits for a committed batch's flush, then acks it and publishes its
/// alerts and progress. Nothing is acked before its flush is done.
async fn finish(
    flushing: Option<Flushing>,
    client: &async_nats::Client,
    cfg: &RunnerConfig,
    progress: &watch::Sender<u64>,
) -> Result<(), ProjectorError> {
    let Some(mut f) = flushing else {
        return Ok(());
    };
    let flushed = (&mut f.flush).await;
    published(f, flushed, client, cfg, progress).await
}

/// A batch whose flush has ended: on success it is acked, then its alerts and
/// progress are published.
async fn published(
    f: Flushing,
    flushed: Result<Result<(), StoreError>, tokio::task::JoinError>,
    client: &async_nats::Client,
    cfg: &RunnerConfig,
    progress: &watch::Sender<u64>,
) -> Result<(), ProjectorError> {
    flushed.map_err(|e| ProjectorError::Flush(e.to_string()))??;
    govledger_stream::failpoint::hit("projector-after-flush-before-ack");
    // Architecture Invariant: ack only after commit (and flush).
    // What `jetstream::Message::ack` sends: an empty message to the reply subject.
    if let Some(reply) = f.ack_to
        && let Err(e) = client.publish(reply, bytes::Bytes::new()).await
    {
        // State is committed; the batch will be redelivered and skipped by sequence.
        tracing::warn!(error = %e, "ack failed after commit; batch will be redelivered and skipped");
    }
    for p in &f.outcome.poison {
        tracing::error!(seq = p.seq, subject = %p.subject, error = %p.error,
            "poison event kept in the ledger: it cannot be folded (see ListPoisonEvents)");
    }
    cfg.metrics
        .batch_published(&f.kinds, f.outcome.poison.len(), &f.outcome.alerts);
    if let Some(tx) = &cfg.alerts {
        for a in f.outcome.alerts {
            // No subscriber is fine: alerts are also derivable from the ledger.
            let _ = tx.send(a);
        }
    }
    progress.send_replace(f.seq);
    Ok(())
}

/// The messages after `last_applied` of a batch, by kind (for the metrics).
fn tally(msgs: &[OwnedMsg], last_applied: u64) -> crate::metrics::KindTally {
    let mut kinds = crate::metrics::KindTally::default();
    for m in msgs.iter().filter(|m| m.seq > last_applied) {
        kinds[crate::metrics::kind_slot(&m.subject)] += 1;
    }
    kinds
}

/// While an admin paused the projector, makes the last batch durable and
/// acked, then waits for the resume; false when shutdown came first.
async fn hold_if_paused(
    flushing: &mut Option<Flushing>,
    client: &async_nats::Client,
    cfg: &RunnerConfig,
    progress: &watch::Sender<u64>,
    shutdown: &CancellationToken,
) -> Result<bool, ProjectorError> {
    let Some(paused) = cfg.paused.as_ref().filter(|p| *p.borrow()) else {
        return Ok(true);
    };
    finish(flushing.take(), client, cfg, progress).await?;
    Ok(wait_while_paused(paused.clone(), shutdown).await)
}

/// Waits until `paused` holds `false` again; `false` when shutdown came
/// first (or the pause can no longer change: it then stays paused until shutdown).
async fn wait_while_paused(
    mut paused: watch::Receiver<bool>,
    shutdown: &CancellationToken,
) -> bool {
    tracing::warn!(
        "projector paused: nothing is folded until it is resumed (the events wait in the stream)"
    );
    loop {
        if !*paused.borrow_and_update() {
            tracing::info!("projector resumed");
            return true;
        }
        tokio::select! {
            _ = shutdown.cancelled() => return false,
            changed = paused.changed() => {
                if changed.is_err() {
                    shutdown.cancelled().await;
                    return false;
                }
            }
        }
    }
}

/// Runs CPU- and disk-bound work on this thread, telling a multi-thread
/// runtime first so its other tasks move to other workers meanwhile.
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(f),
        _ => f(),
    }
}

/// A gap in delivery (`expected`, `got`), decided, not looped on: a
/// sequence the stream does not hold stops the projector (`Err(Gap)`); one
/// it holds (a delivery hiccup) is asked for again after a backoff (`Ok`:
/// whether shutdown came meanwhile).
async fn decide_gap(
    js: &jetstream::Context,
    stream: &str,
    (expected, got): (u64, u64),
    failures: u32,
    shutdown: &CancellationToken,
) -> Result<bool, ProjectorError> {
    if stored(js, stream, expected).await == Some(false) {
        return Err(ProjectorError::Gap {
            stream: stream.to_owned(),
            missing: expected,
            next: got,
        });
    }
    tracing::warn!(
        expected,
        got,
        failures,
        "sequence gap in delivery, but the stream holds the sequence; reopening the consumer at it"
    );
    let d = Backoff::default().delay(failures.clamp(1, 20) - 1, &mut rand::rng());
    Ok(sleep_or_shutdown(d, shutdown).await)
}

/// Whether the stream holds message `seq`: `Some(false)` only when NATS
/// answers that it has no such message; `None` when NATS does not say.
async fn stored(js: &jetstream::Context, stream: &str, seq: u64) -> Option<bool> {
    let ask = async {
        let stream = js.get_stream(stream).await.ok()?;
        match stream.get_raw_message(seq).await {
            Ok(_) => Some(true),
            Err(e) if e.kind() == jetstream::stream::RawMessageErrorKind::NoMessageFound => {
                Some(false)
            }
            Err(_) => None,
        }
    };
    tokio::time::timeout(Duration::from_millis(GAP_CHECK_TIMEOUT_MS), ask)
        .await
        .ok()
        .flatten()
}

/// How often a paused projector looks at its disk again.
pub const ROOM_RECHECK_MS: u64 = 1_000;

/// Waits while sled's disk is full (see [`RunnerConfig::storage_paths`]).
/// False on shutdown.
async fn wait_for_room(paths: &[std::path::PathBuf], shutdown: &CancellationToken) -> bool {
    let Some(why) = govledger_stream::room::full_disk(paths) else {
        return true;
    };
    tracing::warn!(
        "projector paused: {why}; nothing is folded until space returns (the events wait in the stream)"
    );
    loop {
        if sleep_or_shutdown(Duration::from_millis(ROOM_RECHECK_MS), shutdown).await {
            return false;
        }
        if govledger_stream::room::full_disk(paths).is_none() {
            tracing::info!("projector resumes: its disk has room again");
            return true;
        }
    }
}

async fn sleep_or_shutdown(d: Duration, shutdown: &CancellationToken) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(d) => false,
        _ = shutdown.cancelled() => true,
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// (Re)creates the durable consumer so that it delivers from `last_applied + 1`.
///
/// sled, not the consumer, is the authority on what was applied: the consumer is
/// recreated on every start so a lost or restored sled folder never skips events
/// and a crash never waits for an ack timeout.
async fn open_consumer(
    js: &jetstream::Context,
    cfg: &RunnerConfig,
    last_applied: u64,
) -> Result<jetstream::consumer::Consumer<pull::Config>, BoxError> {
    let stream = js.get_stream(&cfg.stream).await.map_err(|e| -> BoxError {
        if e.to_string().contains("not found") {
            Box::new(ProjectorError::NoStream {
                stream: cfg.stream.clone(),
            })
        } else {
            Box::new(e)
        }
    })?;
    match stream.delete_consumer(&cfg.durable).await {
        Ok(_) => {}
        Err(e) if e.to_string().contains("not found") => {}
        Err(e) => return Err(Box::new(e)),
    }
    let deliver_policy = if last_applied == 0 {
        DeliverPolicy::All
    } else {
        DeliverPolicy::ByStartSequence {
            start_sequence: last_applied + 1,
        }
    };
    let batch = cfg.batch_events_max.max(1) as i64;
    let consumer = stream
        .create_consumer(pull::Config {
            durable_name: Some(cfg.durable.clone()),
            description: Some(
                "govledger projector (recreated at each start from sled's last applied sequence)"
                    .into(),
            ),
            deliver_policy,
            ack_policy: AckPolicy::All,
            ack_wait: Duration::from_secs(60),
            max_ack_pending: (batch * 4).max(10_000),
            max_batch: batch,
            ..Default::default()
        })
        .await?;
    Ok(consumer)
}

/// Batches pulled ahead of the one being folded (besides the one in flight).
pub const PREFETCH_BATCHES: usize = 1;

/// A pulled batch: what the fold reads of each message and, beside it, each
/// message's reply subject (the last folded one is acked), read on the fetch
/// task while the previous batch folds.
struct Pulled {
    owned: Vec<OwnedMsg>,
    replies: Vec<Option<async_nats::Subject>>,
}

/// Pulls batches in order into `tx` until shutdown, an error (sent, then the
/// task ends) or the receiver goes away.
async fn fetch_ahead(
    consumer: jetstream::consumer::Consumer<pull::Config>,
    cfg: RunnerConfig,
    shutdown: CancellationToken,
    tx: tokio::sync::mpsc::Sender<Fetched>,
) {
    let mut idle = false;
    loop {
        let batch = pull_batch(&consumer, &cfg, idle, &shutdown)
            .await
            .and_then(|pulled| {
                let Some(msgs) = pulled else { return Ok(None) };
                let owned = msgs
                    .iter()
                    .map(to_owned_msg)
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| format!("message without stream metadata: {e}"))?;
                // The rest of each message is dropped here, on the thread that made it.
                let replies = msgs.into_iter().map(|m| m.message.reply).collect();
                Ok(Some(Pulled { owned, replies }))
            });
        let go_on = match &batch {
            Ok(Some(p)) => {
                idle = p.owned.is_empty();
                true
            }
            Ok(None) | Err(_) => false,
        };
        if tx.send(batch).await.is_err() || !go_on {
            return;
        }
    }
}

/// One batch: `None` on shutdown, possibly empty when idle.
async fn pull_batch(
    consumer: &jetstream::consumer::Consumer<pull::Config>,
    cfg: &RunnerConfig,
    idle: bool,
    shutdown: &CancellationToken,
) -> Result<Option<Vec<jetstream::Message>>, BoxError> {
    let n = cfg.batch_events_max.max(1);
    let fut = async {
        // Caught up: wait (up to idle_wait) for one message, then fetch the rest
        // without waiting. A batch is always read to its end: messages of a
        // request that were delivered but not read would otherwise be skipped.
        let mut stream = if idle {
            consumer
                .batch()
                .max_messages(1)
                .expires(cfg.idle_wait)
                .messages()
                .await?
        } else {
            consumer.fetch().max_messages(n).messages().await?
        };
        let mut out = Vec::with_capacity(n);
        while let Some(m) = stream.next().await {
            out.push(m?);
        }
        Ok::<_, BoxError>(out)
    };
    // A pull whose connection died mid-request may never end: bound it.
    let limit = cfg.idle_wait + Duration::from_millis(PULL_TIMEOUT_MARGIN_MS);
    tokio::select! {
        r = tokio::time::timeout(limit, fut) => match r {
            Ok(r) => r.map(Some),
            Err(_) => Err(format!("pull did not finish within {} ms", limit.as_millis()).into()),
        },
        _ = shutdown.cancelled() => Ok(None),
    }
}

fn to_owned_msg(m: &jetstream::Message) -> Result<OwnedMsg, BoxError> {
    let info = m.info()?;
    Ok(OwnedMsg {
        seq: info.stream_sequence,
        subject: m.subject.to_string(),
        stored_at_us: (info.published.unix_timestamp_nanos() / 1_000) as i64,
        payload: m.payload.clone(),
        // Hashed here, on the fetch task, so the fold's thread does not.
        leaf: Some(crate::merkle::leaf_hash(info.stream_sequence, &m.payload)),
    })
}

/// Snapshot of `meta` for status answers.
pub fn describe(meta: &LedgerMeta) -> String {
    format!(
        "last applied seq {}, {} events, {} duplicates, {} poison",
        meta.last_applied_seq, meta.events_applied, meta.duplicate_events, meta.poison_events
    )
}
