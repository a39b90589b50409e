//! Replay: the events of the stream, in order, filtered, each with its sequence
//! and its RFC 6962 leaf hash. Reads JetStream directly (the source of truth), not
//! the projections; a bounded channel is the back-pressure to the client.

use std::collections::HashSet;

use async_nats::jetstream::{self, consumer::DeliverPolicy};
use futures::StreamExt as _;
use govledger_projector::merkle;
use govledger_proto::v1::{Event, ReplayItem, ReplayRequest, event::Body};
use prost::Message as _;
use tokio::sync::mpsc;

/// Items buffered between the stream reader and a slow client.
pub const REPLAY_BUFFER: usize = 256;

/// Why a replay or a proof's leaves could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplayError {
    /// The stream cannot be read (NATS unreachable, a read stalled).
    #[error("cannot read stream {stream}: {reason}; is NATS reachable?")]
    Unavailable { stream: String, reason: String },
    /// `from_us` is not a representable time.
    #[error("from_us is out of range")]
    FromOutOfRange,
    /// A sequence is missing from the stream (it is not an immutable log).
    #[error(
        "stream sequence {missing} is missing (got {got}): the stream is not the immutable log govledger requires"
    )]
    SequenceMissing { missing: u64, got: u64 },
}

/// Streams matching items into `tx` until the stream's last sequence as of the
/// call (or `to_seq` / `to_us` / `limit`). A failure is sent as the last item,
/// converted to the channel's error type `E`.
pub async fn replay<E: From<ReplayError>>(
    js: jetstream::Context,
    stream_name: String,
    req: ReplayRequest,
    tx: mpsc::Sender<Result<ReplayItem, E>>,
) {
    if let Err(e) = run(js, &stream_name, &req, &tx).await {
        let _ = tx.send(Err(E::from(e))).await;
    }
}

async fn run<E>(
    js: jetstream::Context,
    stream_name: &str,
    req: &ReplayRequest,
    tx: &mpsc::Sender<Result<ReplayItem, E>>,
) -> Result<(), ReplayError> {
    let unavailable = |e: String| unavailable(stream_name, e);
    let (stream, last) = open(js, stream_name).await?;
    let end = if req.to_seq > 0 {
        req.to_seq.min(last)
    } else {
        last
    };
    if end == 0 || req.from_seq > end {
        return Ok(());
    }
    let deliver_policy = if req.from_seq > 0 {
        DeliverPolicy::ByStartSequence {
            start_sequence: req.from_seq,
        }
    } else if req.from_us > 0 {
        DeliverPolicy::ByStartTime {
            start_time: time::OffsetDateTime::from_unix_timestamp_nanos(
                i128::from(req.from_us) * 1_000,
            )
            .map_err(|_| ReplayError::FromOutOfRange)?,
        }
    } else {
        DeliverPolicy::All
    };
    let filter_subjects = if req.source_id.is_empty() {
        Vec::new()
    } else {
        govledger_stream::subject::source_filter_subjects(&req.source_id)
    };
    let mut msgs = ordered_messages(&stream, deliver_policy, filter_subjects)
        .await
        .map_err(|e| unavailable(e.to_string()))?;
    let mut actions_of_identity: HashSet<String> = HashSet::new();
    let mut sent: u64 = 0;
    loop {
        // Nothing more can match when the filtered subject has no message past `end`.
        let next = tokio::time::timeout(
            std::time::Duration::from_millis(REPLAY_IDLE_MS),
            msgs.next(),
        )
        .await;
        let m = match next {
            Ok(Some(Ok(m))) => m,
            Ok(Some(Err(e))) => return Err(unavailable(e.to_string())),
            Ok(None) => return Ok(()),
            Err(_) => {
                // Silence: nothing more matches the filter, or NATS stopped
                // answering; a replay cut short must not read as complete.
                let mut s = stream.clone();
                return match s.info().await {
                    Ok(_) => Ok(()),
                    Err(e) => Err(unavailable(format!("NATS does not answer: {e}"))),
                };
            }
        };
        let info = m.info().map_err(|e| unavailable(e.to_string()))?;
        let seq = info.stream_sequence;
        let stored_at_us = (info.published.unix_timestamp_nanos() / 1_000) as i64;
        if seq > end || (req.to_us > 0 && stored_at_us > req.to_us) {
            return Ok(());
        }
        let decoded = Event::decode(m.payload.as_ref());
        if !matches(
            req,
            m.subject.as_str(),
            decoded.as_ref().ok(),
            &mut actions_of_identity,
        ) {
            if info.pending == 0 {
                return Ok(());
            }
            continue;
        }
        let item = match decoded {
            Ok(ev) => ReplayItem {
                seq,
                subject: m.subject.to_string(),
                stored_at_us,
                event: Some(ev),
                leaf_hash: merkle::hex(&merkle::leaf_hash(seq, &m.payload)),
                error: String::new(),
                raw: Vec::new(),
            },
            Err(e) => ReplayItem {
                seq,
                subject: m.subject.to_string(),
                stored_at_us,
                event: None,
                leaf_hash: merkle::hex(&merkle::leaf_hash(seq, &m.payload)),
                error: format!("not a govledger.v1.Event: {e}"),
                raw: m.payload.to_vec(),
            },
        };
        if tx.send(Ok(item)).await.is_err() {
            return Ok(()); // the client went away
        }
        sent += 1;
        if (req.limit > 0 && sent >= req.limit) || seq >= end || info.pending == 0 {
            return Ok(());
        }
    }
}

/// An ordered consumer's messages from `deliver_policy`, filtered to
/// `filter_subjects` (empty = all): the one way this crate reads a stream in order.
pub async fn ordered_messages(
    stream: &jetstream::stream::Stream,
    deliver_policy: DeliverPolicy,
    filter_subjects: Vec<String>,
) -> Result<jetstream::consumer::pull::Ordered, async_nats::Error> {
    Ok(stream
        .create_consumer(jetstream::consumer::pull::OrderedConfig {
            deliver_policy,
            filter_subjects,
            ..Default::default()
        })
        .await?
        .messages()
        .await?)
}

fn unavailable(stream_name: &str, reason: String) -> ReplayError {
    ReplayError::Unavailable {
        stream: stream_name.to_owned(),
        reason,
    }
}

/// The stream and its last sequence now.
async fn open(
    js: jetstream::Context,
    stream_name: &str,
) -> Result<(jetstream::stream::Stream, u64), ReplayError> {
    let mut stream = js
        .get_stream(stream_name)
        .await
        .map_err(|e| unavailable(stream_name, e.to_string()))?;
    let last = stream
        .info()
        .await
        .map_err(|e| unavailable(stream_name, e.to_string()))?
        .state
        .last_sequence;
    Ok((stream, last))
}

/// Longest wait for the next message before the replay is considered done.
const REPLAY_IDLE_MS: u64 = 2_000;

/// Whether an event passes the request's filters. Poison messages pass only
/// unfiltered (or source-filtered) replays.
fn matches(
    req: &ReplayRequest,
    subject: &str,
    ev: Option<&Event>,
    actions: &mut HashSet<String>,
) -> bool {
    // A server older than 2.10 ignores the consumer's `filter_subjects`.
    if !req.source_id.is_empty()
        && !govledger_stream::subject::source_filter_subjects(&req.source_id)
            .iter()
            .any(|f| subject.starts_with(f.trim_end_matches('*')))
    {
        return false;
    }
    let Some(ev) = ev else {
        return req.run_id.is_empty()
            && req.action_id.is_empty()
            && req.identity_external_id.is_empty();
    };
    if !req.run_id.is_empty() && ev.run_id != req.run_id {
        return false;
    }
    if !req.action_id.is_empty() && ev.action_id != req.action_id {
        return false;
    }
    if !req.identity_external_id.is_empty() {
        let id = &req.identity_external_id;
        let hit = match &ev.body {
            Some(Body::RecordObserved(r)) => &r.external_id == id || r.memberships.contains(id),
            Some(Body::ActionRequested(r)) => {
                let hit = &r.identity_external_id == id;
                if hit {
                    actions.insert(ev.action_id.clone());
                }
                hit
            }
            _ => !ev.action_id.is_empty() && actions.contains(&ev.action_id),
        };
        if !hit {
            return false;
        }
    }
    true
}
