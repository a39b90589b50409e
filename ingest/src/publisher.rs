//! Publishing events: deduplicated, pipelined, retried, never dropped.
//!
//! - The `Nats-Msg-Id` header is the event id, so JetStream stores a retried
//!   publish once (within the stream's duplicate window; the projector also
//!   skips a repeated event id, so a retry after the window changes nothing).
//! - Order is kept: events are stored in the order they were queued, also across
//!   retries (one pipeline task sends them in order and resends the whole window,
//!   in order, when the head's ack fails).
//! - At most `inflight_max` publishes await their ack at once; [`Publisher::publish`]
//!   waits for room, which is the back-pressure callers see.
//! - A publish whose ack does not arrive within `ack_timeout_ms` is sent again with
//!   the same id: a timeout does not mean the message was not stored.
//! - When NATS is unreachable the retries continue with jittered exponential backoff
//!   until the ack arrives or the publisher is shut down; only shutdown (or an event
//!   that can never be stored, e.g. too large) ends them with an error.
//! - Provenance (issue 21): with a `seal_key`, the publisher seals what it
//!   publishes. Write-path events and `DeletionsAccepted` get an event seal each;
//!   a run's read-path events are chained as their acks arrive (the ack names
//!   the stream sequence, a retried publish's dedup ack the original one), and
//!   the run's `SyncRunFinished` is sealed by the pipeline over that chain when
//!   it reaches the head of the window (everything queued before it stored),
//!   then sent: neither the caller nor the events queued after it wait for
//!   that. One signature per run.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use async_nats::jetstream::{self, context::PublishErrorKind};
use bytes::Bytes;
use govledger_proto::v1::{Event, event::Body};
use govledger_stream::{
    backoff::Backoff,
    seal::{self, ProducerKey},
    subject,
};
use prost::Message as _;
use std::collections::VecDeque;

use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

pub const DEFAULT_INFLIGHT_MAX: usize = 4_096;
pub const DEFAULT_ACK_TIMEOUT_MS: u64 = 5_000;
/// Runs whose chains one publisher keeps at once; the oldest is dropped past
/// it (its finish is then sealed over fewer events: never COMPLETE).
pub const OPEN_RUNS_MAX: usize = 256;

#[derive(Debug, Clone)]
pub struct PublisherConfig {
    /// Publishes awaiting their ack at once (the back-pressure window).
    pub inflight_max: usize,
    /// How long one attempt waits for its ack before it is retried.
    pub ack_timeout: Duration,
    pub backoff: Backoff,
    /// The producer key that seals runs and write-path events (None: nothing
    /// is sealed, and the ledger decides such runs UNVERIFIED_PRODUCER).
    pub seal_key: Option<Arc<ProducerKey>>,
    /// What the publisher counts (page reads per source, publish latency).
    pub metrics: crate::metrics::IngestMetrics,
}

impl Default for PublisherConfig {
    fn default() -> Self {
        Self {
            inflight_max: DEFAULT_INFLIGHT_MAX,
            ack_timeout: Duration::from_millis(DEFAULT_ACK_TIMEOUT_MS),
            backoff: Backoff::default(),
            seal_key: None,
            metrics: crate::metrics::IngestMetrics::default(),
        }
    }
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum PublishError {
    #[error("event rejected before publishing: {0}")]
    InvalidEvent(String),
    #[error("event {event_id} is {len} bytes, over the server's max_payload; it cannot be stored")]
    TooLarge { event_id: String, len: usize },
    #[error(
        "publisher shut down before event {event_id} was acknowledged after {attempts} attempt(s); it may or may not be stored (republishing it with the same id is safe)"
    )]
    ShuttingDown { event_id: String, attempts: u32 },
}

/// Proof that JetStream stored an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Receipt {
    /// Stream sequence of the stored event.
    pub seq: u64,
    /// True when the server said it already had this event id.
    pub duplicate: bool,
    /// Attempts it took (1 = first try).
    pub attempts: u32,
}

/// A publish in flight; [`Pending::wait`] resolves when it is stored.
#[derive(Debug)]
pub struct Pending {
    rx: oneshot::Receiver<Result<Receipt, PublishError>>,
    event_id: String,
}

impl Pending {
    pub async fn wait(self) -> Result<Receipt, PublishError> {
        match self.rx.await {
            Ok(r) => r,
            // The task only ends without answering when the runtime shuts down.
            Err(_) => Err(PublishError::ShuttingDown {
                event_id: self.event_id,
                attempts: 0,
            }),
        }
    }
}

/// Counters for observability and tests.
#[derive(Debug, Default)]
pub struct PublisherStats {
    pub published: AtomicU64,
    pub retries: AtomicU64,
    pub duplicates: AtomicU64,
}

#[derive(Clone)]
pub struct Publisher {
    tx: mpsc::Sender<Command>,
    stats: Arc<PublisherStats>,
    shutdown: CancellationToken,
    seal_key: Option<Arc<ProducerKey>>,
    metrics: crate::metrics::IngestMetrics,
    /// The run id of the last run event published (see [`Self::run_name`]).
    last_run: Arc<std::sync::Mutex<Option<Arc<str>>>>,
}

/// The stored leaves of each open run, by run id (insertion order kept for
/// the bound [`OPEN_RUNS_MAX`]).
#[derive(Default)]
struct RunChains {
    runs: std::collections::HashMap<String, Vec<(u64, seal::Hash)>>,
    order: VecDeque<String>,
}

impl RunChains {
    fn note(&mut self, run_id: &str, seq: u64, leaf: seal::Hash) {
        if let Some(v) = self.runs.get_mut(run_id) {
            v.push((seq, leaf));
            return;
        }
        if self.order.len() >= OPEN_RUNS_MAX
            && let Some(old) = self.order.pop_front()
        {
            tracing::warn!(run_id = %old, "more than {OPEN_RUNS_MAX} open runs on one publisher; the oldest run's chain is dropped (its seal will not verify)");
            self.runs.remove(&old);
        }
        self.order.push_back(run_id.to_owned());
        self.runs.insert(run_id.to_owned(), vec![(seq, leaf)]);
    }

    fn take(&mut self, run_id: &str) -> Option<Vec<(u64, seal::Hash)>> {
        let v = self.runs.remove(run_id)?;
        self.order.retain(|r| r != run_id);
        Some(v)
    }
}

enum Command {
    Publish(Outgoing),
    /// Answered once everything sent before it is stored (or failed).
    Flush(oneshot::Sender<()>),
}

struct Outgoing {
    subject: String,
    event_id: String,
    payload: Bytes,
    /// A read-path event of this run, to be chained once stored (sealing only).
    run: Option<Arc<str>>,
    /// A run's finish, sealed by the pipeline when it reaches the head of the
    /// window (everything queued before it, its run's events included, is then
    /// stored and chained) and only then sent. The caller does not wait for
    /// that, and events queued after it keep flowing.
    seal_at_head: Option<(Box<Event>, Arc<ProducerKey>)>,
    reply: oneshot::Sender<Result<Receipt, PublishError>>,
    /// When it was queued (the publish latency is measured from here).
    queued_at: std::time::Instant,
}

impl Publisher {
    /// A publisher on `client`; spawns its pipeline task. `shutdown` ends retries:
    /// call [`Publisher::flush`] first to let everything in flight be stored.
    pub fn new(
        client: async_nats::Client,
        cfg: PublisherConfig,
        shutdown: CancellationToken,
    ) -> Self {
        let inflight_max = cfg.inflight_max.max(1);
        let js = jetstream::ContextBuilder::new()
            .timeout(cfg.ack_timeout)
            .ack_timeout(cfg.ack_timeout)
            // Our own window bounds what is in flight; the context must never be
            // the one to block (abandoned ack futures hold its permits for a while).
            .max_ack_inflight(inflight_max.saturating_mul(8))
            .backpressure_on_inflight(true)
            .build(client);
        let (tx, rx) = mpsc::channel(inflight_max);
        let stats = Arc::new(PublisherStats::default());
        let chains = Chainer::spawn(inflight_max);
        let seal_key = cfg.seal_key.clone();
        let metrics = cfg.metrics.clone();
        let pipeline = Pipeline {
            js,
            cfg: PublisherConfig {
                inflight_max,
                ..cfg
            },
            stats: stats.clone(),
            shutdown: shutdown.clone(),
            chains,
        };
        tokio::spawn(pipeline.run(rx));
        Self {
            tx,
            stats,
            shutdown,
            seal_key,
            metrics,
            last_run: Default::default(),
        }
    }

    /// `run_id` as a shared name: the last one is reused (a run's events come
    /// in a row), so chaining costs no allocation per event.
    fn run_name(&self, run_id: &str) -> Arc<str> {
        let mut last = self.last_run.lock().unwrap_or_else(|e| e.into_inner());
        match last.as_ref() {
            Some(r) if &**r == run_id => r.clone(),
            _ => {
                let r: Arc<str> = Arc::from(run_id);
                *last = Some(r.clone());
                r
            }
        }
    }

    /// The key this publisher seals with, if any.
    pub fn seal_key(&self) -> Option<&Arc<ProducerKey>> {
        self.seal_key.as_ref()
    }

    /// `event` sealed as this publisher's key seals it (see the module doc);
    /// `None` when it is published as it is. A run's finish first waits until
    /// everything queued before it is stored.
    fn sealed(&self, event: &Event) -> Option<Event> {
        let key = self.seal_key.as_ref()?;
        if event.seal.is_some() {
            return None;
        }
        match event.body.as_ref()? {
            // A run's finish is sealed by the pipeline ([`Outgoing::seal_at_head`]).
            Body::SyncRunFinished(_) => None,
            Body::ActionRequested(_)
            | Body::ActionAttempted(_)
            | Body::ActionVerified(_)
            | Body::ActionConcluded(_)
            | Body::DeletionsAccepted(_) => {
                let mut e = event.clone();
                key.seal_event(&mut e);
                Some(e)
            }
            _ => None,
        }
    }

    pub fn stats(&self) -> &PublisherStats {
        &self.stats
    }

    /// Validates and encodes `event` and queues it behind everything published
    /// before it (waiting while the window is full: back-pressure). Await the
    /// returned [`Pending`] to know it is stored.
    pub async fn publish(&self, event: &Event) -> Result<Pending, PublishError> {
        let sealed = self.sealed(event);
        let event = sealed.as_ref().unwrap_or(event);
        let (subject, payload) = encode(event)?;
        self.metrics.event_queued(event);
        let seal_at_head = match (&self.seal_key, event.body.as_ref()) {
            (Some(key), Some(Body::SyncRunFinished(_)))
                if !event.run_id.is_empty() && event.seal.is_none() =>
            {
                Some((Box::new(event.clone()), key.clone()))
            }
            _ => None,
        };
        // A run's read-path event is chained once stored (the finish is not).
        let run = (self.seal_key.is_some()
            && !event.run_id.is_empty()
            && event.body.as_ref().is_some_and(|b| {
                !matches!(b, Body::SyncRunFinished(_) | Body::DeletionsAccepted(_))
                    && !is_write_path(b)
            }))
        .then(|| self.run_name(&event.run_id));
        let (reply, rx) = oneshot::channel();
        let shut = || PublishError::ShuttingDown {
            event_id: event.event_id.clone(),
            attempts: 0,
        };
        let cmd = Command::Publish(Outgoing {
            subject,
            event_id: event.event_id.clone(),
            payload,
            run,
            seal_at_head,
            reply,
            queued_at: std::time::Instant::now(),
        });
        tokio::select! {
            r = self.tx.send(cmd) => r.map_err(|_| shut())?,
            _ = self.shutdown.cancelled() => return Err(shut()),
        }
        Ok(Pending {
            rx,
            event_id: event.event_id.clone(),
        })
    }

    /// Publishes and waits until it is stored.
    pub async fn publish_wait(&self, event: &Event) -> Result<Receipt, PublishError> {
        self.publish(event).await?.wait().await
    }

    /// Waits until every publish queued before this call has ended (stored or failed).
    pub async fn flush(&self) {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Command::Flush(tx)).await.is_ok() {
            let _ = rx.await;
        }
    }
}

fn is_write_path(b: &Body) -> bool {
    matches!(
        b,
        Body::ActionRequested(_)
            | Body::ActionAttempted(_)
            | Body::ActionVerified(_)
            | Body::ActionConcluded(_)
    )
}

/// Checks an event and returns its subject and encoded bytes.
pub fn encode(event: &Event) -> Result<(String, Bytes), PublishError> {
    let Some(body) = &event.body else {
        return Err(PublishError::InvalidEvent(format!(
            "event {} has no body",
            event.event_id
        )));
    };
    if uuid::Uuid::parse_str(&event.event_id).is_err() {
        return Err(PublishError::InvalidEvent(format!(
            "event_id {:?} is not a UUID",
            event.event_id
        )));
    }
    subject::validate_source_id(&event.source_id)
        .map_err(|e| PublishError::InvalidEvent(e.to_string()))?;
    Ok((
        subject::event_subject(&event.source_id, body),
        Bytes::from(event.encode_to_vec()),
    ))
}

type AckFuture = std::pin::Pin<
    Box<
        dyn std::future::Future<
                Output = Result<jetstream::publish::PublishAck, jetstream::context::PublishError>,
            > + Send,
    >,
>;

/// One entry of the in-flight window.
struct Inflight {
    out: Option<Outgoing>,
    flush: Option<oneshot::Sender<()>>,
    /// The ack, as a future that stays here across `select!` iterations.
    ack: Option<AckFuture>,
    attempts: u32,
}

/// The single task that owns the connection's publish order.
///
/// Events are sent in the order they were queued and acknowledged head first.
/// When the head's ack fails or times out, the whole window is sent again in
/// order after a backoff: JetStream drops the copies it already stored (same
/// `Nats-Msg-Id`), so the stream keeps the queue's order and stores each once.
struct Pipeline {
    js: jetstream::Context,
    cfg: PublisherConfig,
    stats: Arc<PublisherStats>,
    shutdown: CancellationToken,
    chains: Chainer,
}

/// Stored run events handed to the chainer at once (fewer wake-ups).
const NOTE_BATCH: usize = 256;

/// What the chainer task is asked.
enum ChainCmd {
    /// Runs' events stored at these sequences with these bytes, in order.
    Notes(Vec<(Arc<str>, u64, Bytes)>),
    /// The run's stored leaves, taken (after every note sent before).
    Take(String, oneshot::Sender<Option<Vec<(u64, seal::Hash)>>>),
}

/// Hashes stored run events into their runs' chains on its own task, so the
/// pipeline (the publish path) spends one channel send per event on sealing.
/// FIFO: a `Take` sees every `Note` sent before it.
struct Chainer {
    tx: mpsc::Sender<ChainCmd>,
}

impl Chainer {
    /// `capacity`: notes queued at most before the pipeline waits for the
    /// hashing to catch up (back-pressure, nothing dropped).
    fn spawn(capacity: usize) -> Self {
        let (tx, mut rx) = mpsc::channel::<ChainCmd>(capacity.max(1));
        tokio::spawn(async move {
            let mut chains = RunChains::default();
            while let Some(cmd) = rx.recv().await {
                match cmd {
                    ChainCmd::Notes(notes) => {
                        for (run, seq, payload) in notes {
                            chains.note(&run, seq, seal::leaf(seq, &payload));
                        }
                    }
                    ChainCmd::Take(run, reply) => {
                        let _ = reply.send(chains.take(&run));
                    }
                }
            }
        });
        Self { tx }
    }

    /// Hands `notes` (emptied) to the chainer.
    async fn notes(&self, notes: &mut Vec<(Arc<str>, u64, Bytes)>) {
        if !notes.is_empty() {
            let batch = std::mem::replace(notes, Vec::with_capacity(NOTE_BATCH));
            let _ = self.tx.send(ChainCmd::Notes(batch)).await;
        }
    }

    async fn take(&self, run: &str) -> Option<Vec<(u64, seal::Hash)>> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(ChainCmd::Take(run.to_owned(), reply))
            .await
            .ok()?;
        rx.await.ok().flatten()
    }
}

impl Pipeline {
    async fn run(self, mut rx: mpsc::Receiver<Command>) {
        let mut window: VecDeque<Inflight> = VecDeque::with_capacity(self.cfg.inflight_max);
        let mut closed = false;
        let mut failures: u32 = 0;
        // Stored run events not yet handed to the chainer.
        let mut notes: Vec<(Arc<str>, u64, Bytes)> = Vec::with_capacity(NOTE_BATCH);
        loop {
            if closed && window.is_empty() {
                return;
            }
            let room = window.len() < self.cfg.inflight_max && !closed;
            tokio::select! {
                biased;
                _ = self.shutdown.cancelled() => {
                    for mut e in window.drain(..) {
                        if let Some(out) = e.out.take() {
                            let _ = out.reply.send(Err(PublishError::ShuttingDown {
                                event_id: out.event_id, attempts: e.attempts }));
                        }
                    }
                    return;
                }
                done = head_ack(&mut window) => {
                    let Some(mut head) = window.pop_front() else { continue };
                    match done {
                        HeadDone::SealNow => {
                            self.chains.notes(&mut notes).await;
                            if let Some(out) = head.out.as_mut() {
                                self.seal_finish(out).await;
                            }
                            window.push_front(head);
                            self.send(&mut window, 0).await;
                        }
                        HeadDone::Flush => {
                            if let Some(f) = head.flush.take() { let _ = f.send(()); }
                        }
                        HeadDone::Stored(ack) => {
                            failures = 0;
                            self.stats.published.fetch_add(1, Ordering::Relaxed);
                            if ack.duplicate {
                                self.stats.duplicates.fetch_add(1, Ordering::Relaxed);
                            }
                            if let Some(out) = head.out.take() {
                                if let Some(run) = &out.run {
                                    notes.push((run.clone(), ack.sequence, out.payload.clone()));
                                    if notes.len() >= NOTE_BATCH {
                                        self.chains.notes(&mut notes).await;
                                    }
                                }
                                self.cfg.metrics.publish_seconds.observe(out.queued_at.elapsed().as_secs_f64());
                                let _ = out.reply.send(Ok(Receipt {
                                    seq: ack.sequence, duplicate: ack.duplicate, attempts: head.attempts }));
                            }
                        }
                        HeadDone::Failed(why) => {
                            window.push_front(head);
                            failures = failures.saturating_add(1);
                            self.stats.retries.fetch_add(1, Ordering::Relaxed);
                            if failures.is_power_of_two() {
                                tracing::warn!(failures, in_flight = window.len(), %why,
                                    "publish not acknowledged; resending the window in order with the same ids");
                            } else {
                                tracing::debug!(failures, %why, "publish retry");
                            }
                            let delay = self.cfg.backoff.delay(failures - 1, &mut rand::rng());
                            tokio::select! {
                                _ = tokio::time::sleep(delay) => {}
                                _ = self.shutdown.cancelled() => continue,
                            }
                            for e in window.iter_mut() {
                                e.ack = None;
                            }
                            let mut i = 0;
                            while i < window.len() {
                                if !self.send(&mut window, i).await { continue; }
                                i += 1;
                            }
                        }
                    }
                }
                cmd = rx.recv(), if room => {
                    match cmd {
                        None => closed = true,
                        Some(Command::Flush(f)) => window.push_back(Inflight {
                            out: None, flush: Some(f), ack: None, attempts: 0 }),
                        Some(Command::Publish(out)) => {
                            window.push_back(Inflight { out: Some(out), flush: None, ack: None, attempts: 0 });
                            let last = window.len() - 1;
                            self.send(&mut window, last).await;
                        }
                    }
                }
            }
        }
    }

    /// Seals a run's finish at the head of the window: every event queued
    /// before it is stored, so its run's chain is whole. A run this publisher
    /// holds no chain of (a predecessor's run, ended ABANDONED) stays unsealed.
    async fn seal_finish(&self, out: &mut Outgoing) {
        let Some((mut event, key)) = out.seal_at_head.take() else {
            return;
        };
        let leaves = self.chains.take(&event.run_id).await;
        if let Some(leaves) = leaves {
            let n = leaves.len() as u64;
            key.seal_run(&mut event, n, seal::chain_of(leaves));
            out.payload = Bytes::from(event.encode_to_vec());
        }
    }

    /// Sends entry `i`. Returns false when the entry was removed (it can never be
    /// stored, e.g. too large); its caller got the error.
    async fn send(&self, window: &mut VecDeque<Inflight>, i: usize) -> bool {
        let e = &mut window[i];
        let Some(out) = &e.out else { return true };
        if out.seal_at_head.is_some() {
            // Sent once sealed, at the head.
            return true;
        }
        e.attempts += 1;
        let msg = jetstream::message::PublishMessage::build()
            .payload(out.payload.clone())
            .message_id(out.event_id.as_str());
        match self.js.send_publish(out.subject.clone(), msg).await {
            Ok(ack) => {
                e.ack = Some(std::future::IntoFuture::into_future(ack));
                true
            }
            Err(err) if err.kind() == PublishErrorKind::MaxPayloadExceeded => {
                if let Some(mut gone) = window.remove(i)
                    && let Some(out) = gone.out.take()
                {
                    let len = out.payload.len();
                    let _ = out.reply.send(Err(PublishError::TooLarge {
                        event_id: out.event_id,
                        len,
                    }));
                }
                false
            }
            // Not sent (e.g. disconnected and the client's buffer is full): the
            // head's missing ack triggers a resend of the window.
            Err(err) => {
                tracing::debug!(error = %err, "publish not sent; will resend");
                e.ack = None;
                true
            }
        }
    }
}

enum HeadDone {
    Flush,
    /// The head is a run's finish still to be sealed and sent.
    SealNow,
    Stored(jetstream::publish::PublishAck),
    Failed(String),
}

/// Resolves when the head of the window is decided; pending forever when empty.
async fn head_ack(window: &mut VecDeque<Inflight>) -> HeadDone {
    let Some(head) = window.front_mut() else {
        return std::future::pending().await;
    };
    if head.flush.is_some() {
        return HeadDone::Flush;
    }
    if head.out.as_ref().is_some_and(|o| o.seal_at_head.is_some()) {
        return HeadDone::SealNow;
    }
    // Polled in place, so a `select!` that picks another branch loses nothing.
    let Some(fut) = head.ack.as_mut() else {
        return HeadDone::Failed("not sent".into());
    };
    let r = fut.await;
    head.ack = None;
    match r {
        Ok(ack) => HeadDone::Stored(ack),
        Err(e) => HeadDone::Failed(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_chains_are_bounded_and_taken_once() {
        let mut c = RunChains::default();
        for i in 0..OPEN_RUNS_MAX + 1 {
            c.note(&format!("r{i}"), i as u64 + 1, [0; 32]);
        }
        assert_eq!(c.runs.len(), OPEN_RUNS_MAX);
        assert!(c.take("r0").is_none(), "the oldest run's chain was dropped");
        c.note("r1", 9_999, [1; 32]);
        let r1 = c.take("r1").unwrap();
        assert_eq!(r1.len(), 2);
        assert!(c.take("r1").is_none(), "taken once");
        assert_eq!(c.order.len(), OPEN_RUNS_MAX - 1);
    }
}
