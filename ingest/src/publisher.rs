//! Publishing events: deduplicated, pipelined, retried, never dropped.
//!
//! - The `Nats-Msg-Id` header is the event id, so JetStream stores a retried
//!   publish once (within the stream's duplicate window; the projector also
//!   skips a repeated event id, so a retry after the window changes nothing).
//! - At most `inflight_max` publishes await their ack at once; [`Publisher::publish`]
//!   waits for a free slot, which is the back-pressure callers see.
//! - A publish whose ack does not arrive within `ack_timeout_ms` is sent again with
//!   the same id: a timeout does not mean the message was not stored.
//! - When NATS is unreachable the retries continue with jittered exponential backoff
//!   until the ack arrives or the publisher is shut down; only shutdown (or an event
//!   that can never be stored, e.g. too large) ends them with an error.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use async_nats::jetstream::{self, context::PublishErrorKind};
use bytes::Bytes;
use govledger_proto::v1::Event;
use prost::Message as _;
use tokio::sync::{Semaphore, oneshot};
use tokio_util::sync::CancellationToken;

use crate::{backoff::Backoff, subject};

pub const DEFAULT_INFLIGHT_MAX: usize = 4_096;
pub const DEFAULT_ACK_TIMEOUT_MS: u64 = 5_000;

#[derive(Debug, Clone)]
pub struct PublisherConfig {
    /// Publishes awaiting their ack at once (the back-pressure window).
    pub inflight_max: usize,
    /// How long one attempt waits for its ack before it is retried.
    pub ack_timeout: Duration,
    pub backoff: Backoff,
}

impl Default for PublisherConfig {
    fn default() -> Self {
        Self {
            inflight_max: DEFAULT_INFLIGHT_MAX,
            ack_timeout: Duration::from_millis(DEFAULT_ACK_TIMEOUT_MS),
            backoff: Backoff::default(),
        }
    }
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum PublishError {
    #[error("event rejected before publishing: {0}")]
    InvalidEvent(String),
    #[error(
        "event {event_id} is {len} bytes, over the server's max_payload; it cannot be stored"
    )]
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
    inner: Arc<Inner>,
}

struct Inner {
    js: jetstream::Context,
    cfg: PublisherConfig,
    window: Arc<Semaphore>,
    shutdown: CancellationToken,
    stats: PublisherStats,
}

impl Publisher {
    /// A publisher on `client`. `shutdown` ends retry loops.
    pub fn new(
        client: async_nats::Client,
        cfg: PublisherConfig,
        shutdown: CancellationToken,
    ) -> Self {
        let inflight_max = cfg.inflight_max.max(1);
        let js = jetstream::ContextBuilder::new()
            .timeout(cfg.ack_timeout)
            .max_ack_inflight(inflight_max)
            .backpressure_on_inflight(true)
            .build(client);
        Self {
            inner: Arc::new(Inner {
                js,
                window: Arc::new(Semaphore::new(inflight_max)),
                cfg: PublisherConfig {
                    inflight_max,
                    ..cfg
                },
                shutdown,
                stats: PublisherStats::default(),
            }),
        }
    }

    pub fn stats(&self) -> &PublisherStats {
        &self.inner.stats
    }

    /// Validates and encodes `event`, waits for a slot in the in-flight window and
    /// starts publishing it. Await the returned [`Pending`] to know it is stored.
    pub async fn publish(&self, event: &Event) -> Result<Pending, PublishError> {
        let (subject, payload) = encode(event)?;
        let permit = tokio::select! {
            p = self.inner.window.clone().acquire_owned() => p.map_err(|_| PublishError::ShuttingDown {
                event_id: event.event_id.clone(), attempts: 0 })?,
            _ = self.inner.shutdown.cancelled() => return Err(PublishError::ShuttingDown {
                event_id: event.event_id.clone(), attempts: 0 }),
        };
        let (tx, rx) = oneshot::channel();
        let inner = self.inner.clone();
        let event_id = event.event_id.clone();
        let id = event_id.clone();
        tokio::spawn(async move {
            let result = inner.publish_until_stored(subject, id, payload).await;
            drop(permit);
            let _ = tx.send(result);
        });
        Ok(Pending { rx, event_id })
    }

    /// Publishes and waits until it is stored.
    pub async fn publish_wait(&self, event: &Event) -> Result<Receipt, PublishError> {
        self.publish(event).await?.wait().await
    }

    /// Waits until every publish started so far has ended (stored or failed).
    pub async fn flush(&self) {
        let n = self.inner.cfg.inflight_max as u32;
        if let Ok(all) = self.inner.window.acquire_many(n).await {
            drop(all);
        }
    }
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

impl Inner {
    async fn publish_until_stored(
        &self,
        subject: String,
        event_id: String,
        payload: Bytes,
    ) -> Result<Receipt, PublishError> {
        let mut attempts: u32 = 0;
        loop {
            attempts += 1;
            let msg = jetstream::message::PublishMessage::build()
                .payload(payload.clone())
                .message_id(event_id.as_str());
            let outcome = tokio::time::timeout(self.cfg.ack_timeout, async {
                self.js.send_publish(subject.clone(), msg).await?.await
            })
            .await;
            let why = match outcome {
                Ok(Ok(ack)) => {
                    self.stats.published.fetch_add(1, Ordering::Relaxed);
                    if ack.duplicate {
                        self.stats.duplicates.fetch_add(1, Ordering::Relaxed);
                    }
                    return Ok(Receipt {
                        seq: ack.sequence,
                        duplicate: ack.duplicate,
                        attempts,
                    });
                }
                Ok(Err(e)) if e.kind() == PublishErrorKind::MaxPayloadExceeded => {
                    return Err(PublishError::TooLarge {
                        event_id,
                        len: payload.len(),
                    });
                }
                Ok(Err(e)) => e.to_string(),
                Err(_) => format!("no ack within {} ms", self.cfg.ack_timeout.as_millis()),
            };
            self.stats.retries.fetch_add(1, Ordering::Relaxed);
            if attempts.is_power_of_two() && attempts >= 4 {
                tracing::warn!(%event_id, attempts, %why, "publish not acknowledged yet; retrying with the same id");
            } else {
                tracing::debug!(%event_id, attempts, %why, "publish retry");
            }
            let delay = self.cfg.backoff.delay(attempts - 1, &mut rand::rng());
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = self.shutdown.cancelled() => {
                    return Err(PublishError::ShuttingDown { event_id, attempts });
                }
            }
        }
    }
}
