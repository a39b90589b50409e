//! Durable alerts: every decision the ledger makes (a run decided, an action
//! concluded, drifted or overdue, a source stale, deletions accepted, a
//! poison event) is stored once in its own JetStream stream,
//! `GOVLEDGER_ALERTS`, as protobuf JSON a SIEM reads without our .proto files.
//!
//! - The fold writes each decision to an outbox in the batch that decided it
//!   (`Store::commit_with_alerts`); [`relay`] stores the outbox in the stream
//!   and empties it. A crash between the two leaves the decision in the
//!   outbox: it is stored at the next start.
//! - Each alert has an id derived from the decision ([`alert_id`]) and its own
//!   subject, `govledger.alerts.v1.<source>.<kind>.<id>`; the stream keeps one
//!   message per subject and refuses a second. So a decision is stored once
//!   however often it is published: after a restart, a rebuild of the
//!   projection from the stream, or the clock deciding it again.
//! - `WatchAlerts` reads the stream ([`watch()`]): a client that reconnects with
//!   the last `alert_seq` it saw misses nothing and sees nothing twice.

use std::{sync::Arc, time::Duration};

use async_nats::jetstream::{self, consumer::DeliverPolicy};
use futures::StreamExt as _;
use govledger_projector::Store;
use govledger_proto::v1::{ActionOutcome, Alert, Verdict, alert::Kind};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// The stream decided alerts are stored in.
pub const ALERTS_STREAM: &str = "GOVLEDGER_ALERTS";
/// Every alert subject starts with it.
pub const ALERT_SUBJECT_PREFIX: &str = "govledger.alerts.v1";
/// Every alert's subject (what the stream captures, what a SIEM subscribes to).
pub const ALERT_SUBJECTS: &str = "govledger.alerts.v1.>";
/// Alerts the relay stores per pass over the outbox.
pub const RELAY_BATCH_MAX: usize = 256;
/// How long the relay waits for new decisions when the outbox is empty.
pub const RELAY_IDLE_MS: u64 = 1_000;
/// How long one store of an alert may take before it is retried.
pub const PUBLISH_TIMEOUT_MS: u64 = 5_000;
/// Alerts buffered per watcher.
pub const WATCH_BUFFER: usize = 256;

/// The namespace of alert ids (UUID v5 of the decision).
const ALERT_ID_NAMESPACE: uuid::Uuid =
    uuid::Uuid::from_u128(0x6a1e_47f2_9d0c_4c55_a1f3_2b8e_50c4_d7a9);

#[derive(Debug, thiserror::Error)]
pub enum AlertError {
    #[error("alerts stream {ALERTS_STREAM}: {0}")]
    Stream(#[from] govledger_stream::contract::StreamError),
    #[error(
        "cannot store alert {id} in {ALERTS_STREAM}: {reason}; it stays in the outbox and is retried"
    )]
    Publish { id: String, reason: String },
    #[error("alert outbox: {0}")]
    Store(#[from] govledger_projector::store::StoreError),
    #[error("cannot read {ALERTS_STREAM}: {0}; is NATS reachable?")]
    Read(String),
}

/// Creates the alerts stream (or checks an existing one keeps one message per subject).
pub async fn ensure_stream(
    js: &jetstream::Context,
    replication: &govledger_stream::contract::Replication,
) -> Result<(), AlertError> {
    let spec = govledger_stream::StreamSpec {
        name: ALERTS_STREAM.to_owned(),
        subjects: vec![ALERT_SUBJECTS.to_owned()],
        one_per_subject: true,
        ..Default::default()
    }
    .replicated(replication);
    govledger_stream::ensure_stream(js, &spec).await?;
    Ok(())
}

/// A proto enum's name, lower case, without its prefix (`VERDICT_INCOMPLETE` → `incomplete`).
fn token(name: &str, prefix: &str) -> String {
    name.strip_prefix(prefix)
        .unwrap_or(name)
        .to_ascii_lowercase()
}

/// Whether `a` is a decision (stored in the alerts stream), not an
/// operational alert (NATS, storage, the projector).
pub fn is_decision(a: &Alert) -> bool {
    matches!(
        Kind::try_from(a.kind),
        Ok(Kind::RunDecided
            | Kind::ActionConcluded
            | Kind::ActionDrifted
            | Kind::ActionOverdue
            | Kind::SourceStale
            | Kind::DeletionsAccepted
            | Kind::PoisonEvent)
    )
}

/// The kind token of a decided alert's subject (`run_incomplete`,
/// `action_drifted`, ...); `None` for operational alerts, which are not stored.
pub fn kind_token(a: &Alert) -> Option<String> {
    let verdict = || {
        Verdict::try_from(a.verdict)
            .map_or("unknown".into(), |v| token(v.as_str_name(), "VERDICT_"))
    };
    let outcome = || {
        ActionOutcome::try_from(a.outcome).map_or("unknown".into(), |o| {
            token(o.as_str_name(), "ACTION_OUTCOME_")
        })
    };
    Some(match Kind::try_from(a.kind).ok()? {
        Kind::RunDecided => format!("run_{}", verdict()),
        Kind::ActionConcluded => format!("action_{}", outcome()),
        Kind::ActionDrifted => "action_drifted".into(),
        Kind::ActionOverdue => "action_overdue".into(),
        Kind::SourceStale => "source_stale".into(),
        Kind::DeletionsAccepted => "deletions_accepted".into(),
        Kind::PoisonEvent => "poison_event".into(),
        _ => return None,
    })
}

/// The id of a decided alert: a UUID v5 of what was decided about what, so
/// the same decision always gets the same id. `None` for operational alerts.
pub fn alert_id(a: &Alert) -> Option<String> {
    let kind = kind_token(a)?;
    let about = match Kind::try_from(a.kind).ok()? {
        Kind::RunDecided | Kind::DeletionsAccepted => a.run_id.clone(),
        // A drift is one observation undoing the action: the event's sequence.
        Kind::ActionDrifted => format!("{}/{}", a.action_id, a.seq),
        Kind::ActionConcluded | Kind::ActionOverdue => a.action_id.clone(),
        // One staleness per last COMPLETE run (run_id; empty = never complete).
        Kind::SourceStale => format!("{}/{}", a.source_id, a.run_id),
        Kind::PoisonEvent => a.seq.to_string(),
        _ => return None,
    };
    let key = format!("{kind}/{about}");
    Some(uuid::Uuid::new_v5(&ALERT_ID_NAMESPACE, key.as_bytes()).to_string())
}

/// The subject a decided alert is stored on.
pub fn subject(a: &Alert, id: &str) -> Option<String> {
    let source = if a.source_id.is_empty() {
        "ledger"
    } else {
        a.source_id.as_str()
    };
    Some(format!(
        "{ALERT_SUBJECT_PREFIX}.{source}.{}.{}",
        kind_token(a)?,
        id.replace('-', "")
    ))
}

fn descriptor() -> Option<prost_reflect::MessageDescriptor> {
    crate::audit::evidence::descriptors()
        .ok()?
        .get_message_by_name("govledger.v1.Alert")
}

/// The alert as protobuf JSON (what the stream stores).
pub fn to_json(a: &Alert) -> Result<Vec<u8>, String> {
    let desc = descriptor().ok_or("the Alert descriptor is missing")?;
    let dm =
        prost_reflect::DynamicMessage::decode(desc, prost::Message::encode_to_vec(a).as_slice())
            .map_err(|e| e.to_string())?;
    serde_json::to_vec(&dm).map_err(|e| e.to_string())
}

/// An alert read back from its protobuf JSON.
pub fn from_json(bytes: &[u8]) -> Result<Alert, String> {
    let desc = descriptor().ok_or("the Alert descriptor is missing")?;
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let dm =
        prost_reflect::DynamicMessage::deserialize(desc, &mut de).map_err(|e| e.to_string())?;
    dm.transcode_to::<Alert>().map_err(|e| e.to_string())
}

/// What storing one alert came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored {
    /// Stored now, at this sequence of the alerts stream.
    New(u64),
    /// It was stored before (same id): nothing added.
    Before,
}

/// Stores a decided alert (operational alerts are not stored: `Before`).
pub async fn publish(js: &jetstream::Context, a: &Alert) -> Result<Stored, AlertError> {
    let Some(id) = alert_id(a) else {
        return Ok(Stored::Before);
    };
    let Some(subject) = subject(a, &id) else {
        return Ok(Stored::Before);
    };
    let mut stored = a.clone();
    stored.alert_id.clone_from(&id);
    stored.alert_seq = 0;
    let fail = |reason: String| AlertError::Publish {
        id: id.clone(),
        reason,
    };
    let payload = to_json(&stored).map_err(&fail)?;
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Nats-Msg-Id", id.as_str());
    let ack = async {
        js.publish_with_headers(subject, headers, payload.into())
            .await
            .map_err(|e| e.to_string())?
            .await
            .map_err(|e| e.to_string())
    };
    match tokio::time::timeout(Duration::from_millis(PUBLISH_TIMEOUT_MS), ack).await {
        Err(_) => Err(fail(format!("no answer within {PUBLISH_TIMEOUT_MS} ms"))),
        Ok(Ok(ack)) if ack.duplicate => Ok(Stored::Before),
        Ok(Ok(ack)) => Ok(Stored::New(ack.sequence)),
        // Its subject already holds it (stored before, outside the duplicate window).
        Ok(Err(e)) if e.contains("maximum messages per subject") => Ok(Stored::Before),
        Ok(Err(e)) => Err(fail(e)),
    }
}

/// Stores the outbox's alerts in the alerts stream and removes them once
/// stored, in decision order; wakes when the projector applies a batch (and
/// every [`RELAY_IDLE_MS`]). Runs until `cancel`; a NATS that does not take
/// an alert is retried with backoff (the alert stays in the outbox).
pub async fn relay(
    store: Arc<Store>,
    js: jetstream::Context,
    mut applied: watch::Receiver<u64>,
    cancel: CancellationToken,
) {
    let backoff = govledger_stream::backoff::Backoff::default();
    let mut failures: u32 = 0;
    loop {
        let failed = match relay_once(&store, &js).await {
            Ok(n) => {
                failures = 0;
                n == RELAY_BATCH_MAX
            }
            Err(e) => {
                failures = failures.saturating_add(1);
                if failures == 1 || failures.is_power_of_two() {
                    tracing::warn!(failures, "{e}");
                }
                false
            }
        };
        if failed {
            // A full batch: more may be waiting.
            continue;
        }
        let wait = if failures > 0 {
            backoff.delay(failures.min(20) - 1, &mut rand::rng())
        } else {
            Duration::from_millis(RELAY_IDLE_MS)
        };
        tokio::select! {
            _ = cancel.cancelled() => {
                // One last pass (bounded): what the last batch decided.
                let last = relay_once(&store, &js);
                let _ = tokio::time::timeout(Duration::from_millis(PUBLISH_TIMEOUT_MS), last).await;
                return;
            }
            _ = tokio::time::sleep(wait) => {}
            changed = applied.changed(), if failures == 0 => {
                if changed.is_err() {
                    // The projector is gone: one last pass, then wait for shutdown.
                    let _ = relay_once(&store, &js).await;
                    cancel.cancelled().await;
                    return;
                }
            }
        }
    }
}

/// One pass: stores up to [`RELAY_BATCH_MAX`] alerts; how many were stored.
async fn relay_once(store: &Arc<Store>, js: &jetstream::Context) -> Result<usize, AlertError> {
    let s = store.clone();
    let batch = tokio::task::spawn_blocking(move || s.alert_outbox(RELAY_BATCH_MAX))
        .await
        .map_err(|e| AlertError::Read(e.to_string()))??;
    let mut done = Vec::with_capacity(batch.len());
    let mut failed = None;
    for (key, a) in batch {
        match publish(js, &a).await {
            Ok(_) => done.push(key),
            Err(e) => {
                failed = Some(e);
                break;
            }
        }
    }
    let n = done.len();
    if n > 0 {
        let s = store.clone();
        tokio::task::spawn_blocking(move || s.alert_outbox_remove(&done))
            .await
            .map_err(|e| AlertError::Read(e.to_string()))??;
    }
    match failed {
        Some(e) => Err(e),
        None => Ok(n),
    }
}

/// The stored alerts after `after_seq` (0: from now on), then live ones, as
/// they are stored; each carries its `alert_seq`. Runs until dropped.
pub async fn watch(
    js: &jetstream::Context,
    after_seq: u64,
) -> Result<impl futures::Stream<Item = Alert> + Send + 'static, AlertError> {
    let stream = js
        .get_stream(ALERTS_STREAM)
        .await
        .map_err(|e| AlertError::Read(e.to_string()))?;
    let deliver_policy = if after_seq == 0 {
        DeliverPolicy::New
    } else {
        DeliverPolicy::ByStartSequence {
            start_sequence: after_seq.saturating_add(1),
        }
    };
    let consumer = stream
        .create_consumer(jetstream::consumer::pull::OrderedConfig {
            deliver_policy,
            ..Default::default()
        })
        .await
        .map_err(|e| AlertError::Read(e.to_string()))?;
    let messages = consumer
        .messages()
        .await
        .map_err(|e| AlertError::Read(e.to_string()))?;
    Ok(messages.filter_map(|m| async move {
        let m = match m {
            Ok(m) => m,
            Err(e) => {
                // The ordered consumer recreates itself; nothing is skipped.
                tracing::debug!(error = %e, "alerts stream read interrupted");
                return None;
            }
        };
        let seq = m.info().map(|i| i.stream_sequence).unwrap_or(0);
        match from_json(&m.payload) {
            Ok(mut a) => {
                a.alert_seq = seq;
                Some(a)
            }
            Err(e) => {
                tracing::warn!(seq, error = %e, "an alert in {ALERTS_STREAM} cannot be read; skipped");
                None
            }
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decided(kind: Kind) -> Alert {
        Alert {
            kind: kind as i32,
            source_id: "hr".into(),
            run_id: "r1".into(),
            action_id: "a1".into(),
            verdict: Verdict::Incomplete as i32,
            outcome: ActionOutcome::Failed as i32,
            seq: 42,
            message: "m".into(),
            ..Default::default()
        }
    }

    #[test]
    fn ids_follow_the_decision_not_the_message() {
        let a = decided(Kind::RunDecided);
        let mut b = a.clone();
        b.message = "said differently".into();
        b.seq = 99;
        assert_eq!(alert_id(&a), alert_id(&b), "same run, same verdict");
        b.verdict = Verdict::Failed as i32;
        assert_ne!(
            alert_id(&a),
            alert_id(&b),
            "a verdict that changed is a new decision"
        );
        let d1 = decided(Kind::ActionDrifted);
        let mut d2 = d1.clone();
        d2.seq = 43;
        assert_ne!(
            alert_id(&d1),
            alert_id(&d2),
            "two drifts of one action are two alerts"
        );
        let mut ops = decided(Kind::NatsUnavailable);
        ops.source_id.clear();
        assert_eq!(alert_id(&ops), None);
        assert_eq!(kind_token(&ops), None);
        assert!(!is_decision(&ops) && is_decision(&a));
    }

    #[test]
    fn decisions_are_exactly_the_kinds_with_a_subject() {
        for k in 0..64 {
            let a = Alert {
                kind: k,
                ..decided(Kind::RunDecided)
            };
            assert_eq!(is_decision(&a), kind_token(&a).is_some(), "kind {k}");
        }
    }

    #[test]
    fn subjects_name_source_kind_and_id() {
        let a = decided(Kind::RunDecided);
        let id = alert_id(&a).unwrap();
        let s = subject(&a, &id).unwrap();
        assert!(
            s.starts_with("govledger.alerts.v1.hr.run_incomplete."),
            "{s}"
        );
        assert_eq!(s.split('.').count(), 6, "{s}");
        let mut p = decided(Kind::PoisonEvent);
        p.source_id.clear();
        assert!(
            subject(&p, "x")
                .unwrap()
                .starts_with("govledger.alerts.v1.ledger.poison_event.")
        );
        let c = decided(Kind::ActionConcluded);
        assert!(subject(&c, "x").unwrap().contains(".action_failed."));
    }

    #[test]
    fn json_round_trips() {
        let mut a = decided(Kind::ActionConcluded);
        a.alert_id = alert_id(&a).unwrap();
        let j = to_json(&a).unwrap();
        let text = String::from_utf8(j.clone()).unwrap();
        assert!(
            text.contains("\"kind\":\"KIND_ACTION_CONCLUDED\""),
            "{text}"
        );
        assert_eq!(from_json(&j).unwrap(), a);
    }
}
