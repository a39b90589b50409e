//! The OCSF role: a durable consumer of the ledger stream that publishes each
//! event's OCSF records ([`super::records`]) to `govledger.ocsf.v1.<class>`,
//! stored in the `GOVLEDGER_OCSF` stream for SIEMs to read with the
//! read-only credential.
//!
//! A conclusion's record names the user and group of its action's request.
//! In `serve` the request is read from the projection, so an event is
//! handled once the projector has applied it ([`Requests::Projection`]);
//! standalone (`govledger ocsf`, for scale-out) the feed keeps its own index
//! of the requests it has read, in stream order, in a small sled folder
//! ([`Requests::Own`]). An event is acknowledged only once all its records
//! are stored: a crash or a NATS outage redelivers it, and the records'
//! message ids (`ocsf-<seq>-<n>`) keep a redelivery within the duplicate
//! window from storing them twice. Run the feed in one place: in `serve`
//! (`ocsf.enabled`) or standalone, not both.

use std::{sync::Arc, time::Duration};

use async_nats::jetstream::{
    self,
    consumer::{AckPolicy, DeliverPolicy, pull},
};
use futures::StreamExt as _;
use govledger_projector::Store;
use govledger_proto::v1::{ActionRequested, Event, event::Body};
use prost::Message as _;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::{At, Version, records};

/// The stream the records are stored in.
pub const OCSF_STREAM: &str = "GOVLEDGER_OCSF";
/// Every record's subject starts with it (then the class: `api_activity`, ...).
pub const OCSF_SUBJECT_PREFIX: &str = "govledger.ocsf.v1";
/// What the stream captures.
pub const OCSF_SUBJECTS: &str = "govledger.ocsf.v1.>";
/// The feed's durable consumer on the ledger stream.
pub const OCSF_DURABLE: &str = "govledger-ocsf";
/// Ledger events handed out unacknowledged at once.
pub const OCSF_ACK_PENDING_MAX: i64 = 1_024;
/// How long a handed-out event may stay unacknowledged before it is sent again.
pub const OCSF_ACK_WAIT_MS: u64 = 30_000;
/// How long one record's store may take.
pub const OCSF_PUBLISH_TIMEOUT_MS: u64 = 5_000;

#[derive(Debug, thiserror::Error)]
pub enum FeedError {
    #[error("OCSF stream {OCSF_STREAM}: {0}")]
    Stream(#[from] govledger_stream::contract::StreamError),
    #[error("OCSF feed: cannot read the ledger stream {stream}: {reason}")]
    Consumer { stream: String, reason: String },
}

/// Creates the OCSF stream (or checks an existing one).
pub async fn ensure_stream(
    js: &jetstream::Context,
    replication: &govledger_stream::contract::Replication,
) -> Result<(), FeedError> {
    govledger_stream::ensure_stream(
        js,
        &govledger_stream::StreamSpec {
            name: OCSF_STREAM.to_owned(),
            subjects: vec![OCSF_SUBJECTS.to_owned()],
            ..Default::default()
        }
        .replicated(replication),
    )
    .await?;
    Ok(())
}

/// Where the feed finds an action's request.
pub enum Requests {
    /// The projection of this process (`serve`), once it has applied the event.
    Projection {
        store: Arc<Store>,
        /// The projector's last applied sequence.
        applied: watch::Receiver<u64>,
    },
    /// Its own index of the requests it has read (standalone): action id →
    /// the `ActionRequested` body. The stream holds every request before its
    /// conclusion and the feed reads it in order, so the index has it.
    Own(sled::Tree),
}

/// What the feed reads and where it publishes.
pub struct Feed {
    pub js: jetstream::Context,
    /// The ledger stream's name.
    pub stream: String,
    pub requests: Requests,
    pub version: Version,
}

impl Feed {
    /// Runs until `cancel`; a consumer that cannot be opened is retried.
    pub async fn run(mut self, cancel: CancellationToken) {
        let backoff = govledger_stream::backoff::Backoff::default();
        let mut failures: u32 = 0;
        loop {
            match self.consume(&cancel).await {
                Ok(()) => return,
                Err(e) => {
                    failures = failures.saturating_add(1);
                    tracing::warn!(failures, "{e}; retrying");
                }
            }
            let d = backoff.delay(failures.min(20) - 1, &mut rand::rng());
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(d) => {}
            }
        }
    }

    async fn consume(&mut self, cancel: &CancellationToken) -> Result<(), FeedError> {
        let name = self.stream.clone();
        let err = |reason: String| FeedError::Consumer {
            stream: name.clone(),
            reason,
        };
        let stream = self
            .js
            .get_stream(&self.stream)
            .await
            .map_err(|e| err(e.to_string()))?;
        let consumer = stream
            .get_or_create_consumer(
                OCSF_DURABLE,
                pull::Config {
                    durable_name: Some(OCSF_DURABLE.to_owned()),
                    description: Some("govledger OCSF feed".to_owned()),
                    deliver_policy: DeliverPolicy::All,
                    ack_policy: AckPolicy::Explicit,
                    ack_wait: Duration::from_millis(OCSF_ACK_WAIT_MS),
                    max_ack_pending: OCSF_ACK_PENDING_MAX,
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| err(e.to_string()))?;
        let mut messages = consumer.messages().await.map_err(|e| err(e.to_string()))?;
        loop {
            let m = tokio::select! {
                _ = cancel.cancelled() => return Ok(()),
                m = messages.next() => m,
            };
            let m = match m {
                None => return Err(err("the consumer's message stream ended".into())),
                Some(Err(e)) => {
                    tracing::debug!(error = %e, "OCSF feed: pull interrupted");
                    continue;
                }
                Some(Ok(m)) => m,
            };
            let Ok(info) = m.info() else {
                continue;
            };
            let at = At {
                seq: info.stream_sequence,
                stored_at_us: i64::try_from(info.published.unix_timestamp_nanos() / 1_000)
                    .unwrap_or(0),
            };
            // The projection first: a conclusion's request is read from it.
            if !self.applied_up_to(at.seq, cancel).await {
                return Ok(());
            }
            if self.handle(&m.payload, at).await {
                if let Err(e) = m.ack().await {
                    tracing::debug!(seq = at.seq, error = %e, "OCSF feed: ack failed; the event comes again");
                }
            } else {
                // Not acknowledged: it comes again after the ack wait.
                tokio::select! {
                    _ = cancel.cancelled() => return Ok(()),
                    _ = tokio::time::sleep(Duration::from_millis(1_000)) => {}
                }
            }
        }
    }

    /// Waits until the projector has applied `seq` (at once when the feed
    /// keeps its own index); false on shutdown.
    async fn applied_up_to(&mut self, seq: u64, cancel: &CancellationToken) -> bool {
        let Requests::Projection { applied, .. } = &mut self.requests else {
            return true;
        };
        loop {
            if *applied.borrow_and_update() >= seq {
                return true;
            }
            tokio::select! {
                _ = cancel.cancelled() => return false,
                changed = applied.changed() => {
                    if changed.is_err() {
                        cancel.cancelled().await;
                        return false;
                    }
                }
            }
        }
    }

    /// The request of the event's action (none for a read-path event). With
    /// its own index, a request read now is stored (and made durable) first.
    async fn request_of(&self, ev: &Event) -> Result<Option<ActionRequested>, String> {
        if ev.action_id.is_empty() {
            return Ok(None);
        }
        let id = ev.action_id.clone();
        match &self.requests {
            Requests::Projection { store, .. } => {
                let store = store.clone();
                let a = tokio::task::spawn_blocking(move || store.action(&id))
                    .await
                    .map_err(|e| e.to_string())?
                    .map_err(|e| e.to_string())?;
                Ok(a.and_then(|a| a.request))
            }
            Requests::Own(tree) => {
                if let Some(Body::ActionRequested(r)) = &ev.body {
                    tree.insert(id.as_bytes(), r.encode_to_vec())
                        .map_err(|e| e.to_string())?;
                    tree.flush_async().await.map_err(|e| e.to_string())?;
                    return Ok(Some(r.clone()));
                }
                match tree.get(id.as_bytes()).map_err(|e| e.to_string())? {
                    Some(v) => ActionRequested::decode(v.as_ref())
                        .map(Some)
                        .map_err(|e| e.to_string()),
                    None => Ok(None),
                }
            }
        }
    }

    /// Publishes one event's records; whether all were stored (an event that
    /// is not a readable event has none).
    async fn handle(&self, payload: &[u8], at: At) -> bool {
        let Ok(ev) = Event::decode(payload) else {
            // Poison: the ledger lists it (ListPoisonEvents); nothing to map.
            return true;
        };
        let request = match self.request_of(&ev).await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(seq = at.seq, error = %e, "OCSF feed: the request index failed; the event is handled again");
                return false;
            }
        };
        for (n, r) in records(&ev, at, request.as_ref(), self.version)
            .into_iter()
            .enumerate()
        {
            let subject = format!("{OCSF_SUBJECT_PREFIX}.{}", r.class);
            let Ok(body) = serde_json::to_vec(&r.json) else {
                return false;
            };
            let mut headers = async_nats::HeaderMap::new();
            headers.insert("Nats-Msg-Id", format!("ocsf-{}-{n}", at.seq).as_str());
            let stored = async {
                self.js
                    .publish_with_headers(subject, headers, body.into())
                    .await
                    .map_err(|e| e.to_string())?
                    .await
                    .map_err(|e| e.to_string())
            };
            match tokio::time::timeout(Duration::from_millis(OCSF_PUBLISH_TIMEOUT_MS), stored).await
            {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => {
                    tracing::warn!(seq = at.seq, error = %e, "OCSF feed: a record was not stored; the event is handled again");
                    return false;
                }
                Err(_) => {
                    tracing::warn!(
                        seq = at.seq,
                        "OCSF feed: no answer within {OCSF_PUBLISH_TIMEOUT_MS} ms; the event is handled again"
                    );
                    return false;
                }
            }
        }
        true
    }
}
