//! Triggers between processes: an `api` node asks the ingest processes to
//! start a sync over NATS request/reply, on `govledger.ctl.<stream>.sync`, in
//! the queue group [`INGEST_QUEUE`] (one of them takes each request). The one
//! that takes it runs the sync if it gets the source's lease, and answers
//! `AlreadyRunning` otherwise; it answers once the run's start is stored.
//!
//! Who may publish on the subject is NATS's to say (the cluster roles'
//! credentials); the request carries the principal the `api` node
//! authenticated, which the run records as its trigger.

use std::{sync::Arc, time::Duration};

use futures::StreamExt;
use govledger_proto::v1::SyncMode;
use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::workers::scheduler::{
    SyncManager, TRIGGER_RECORDED_TIMEOUT_MS, TriggerError, Triggered,
};

/// The queue group of the ingest processes' trigger subscriptions.
pub const INGEST_QUEUE: &str = "govledger-ingest";
/// Triggers one ingest process handles at once.
const TRIGGERS_INFLIGHT_MAX: usize = 64;
/// The request's bound beyond the run start's own.
const REQUEST_SLACK_MS: u64 = 2_000;

/// The trigger subject of the ledger stream `stream`.
pub fn trigger_subject(stream: &str) -> String {
    format!("govledger.ctl.{stream}.sync")
}

#[derive(Debug, Serialize, Deserialize)]
struct Request {
    source_id: String,
    /// `SyncMode` as its number.
    mode: i32,
    by: String,
}

/// A refusal, as it crosses the wire.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "refused", rename_all = "snake_case")]
enum Refusal {
    NotConfigured,
    AlreadyRunning { run_id: String },
    Stopped,
    NoBaseline,
    NotRecorded,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Reply {
    Started(Triggered),
    Refused(Refusal),
}

fn refusal(e: &TriggerError) -> Refusal {
    match e {
        TriggerError::NotConfigured(_) => Refusal::NotConfigured,
        TriggerError::AlreadyRunning { run_id, .. } => Refusal::AlreadyRunning {
            run_id: run_id.clone(),
        },
        TriggerError::NoBaseline(_) => Refusal::NoBaseline,
        TriggerError::NotRecorded(_) => Refusal::NotRecorded,
        TriggerError::Stopped(_) | TriggerError::NoIngest(_) => Refusal::Stopped,
    }
}

fn error_of(source_id: &str, r: Refusal) -> TriggerError {
    let s = source_id.to_owned();
    match r {
        Refusal::NotConfigured => TriggerError::NotConfigured(s),
        Refusal::AlreadyRunning { run_id } => TriggerError::AlreadyRunning {
            source_id: s,
            run_id,
        },
        Refusal::Stopped => TriggerError::Stopped(s),
        Refusal::NoBaseline => TriggerError::NoBaseline(s),
        Refusal::NotRecorded => TriggerError::NotRecorded(s),
    }
}

/// The sending side, on a node without sync workers.
#[derive(Clone)]
pub struct Remote {
    pub client: async_nats::Client,
    pub subject: String,
}

impl Remote {
    pub async fn trigger(
        &self,
        source_id: &str,
        mode: SyncMode,
        by: &str,
    ) -> Result<Triggered, TriggerError> {
        let req = Request {
            source_id: source_id.to_owned(),
            mode: mode as i32,
            by: by.to_owned(),
        };
        let body = serde_json::to_vec(&req).unwrap_or_default();
        let bound = Duration::from_millis(TRIGGER_RECORDED_TIMEOUT_MS + REQUEST_SLACK_MS);
        let answer = tokio::time::timeout(
            bound,
            self.client.request(self.subject.clone(), body.into()),
        )
        .await;
        let msg = match answer {
            Ok(Ok(m)) => m,
            Ok(Err(e)) if e.kind() == async_nats::RequestErrorKind::NoResponders => {
                return Err(TriggerError::NoIngest(source_id.to_owned()));
            }
            // Timed out or NATS failed: the run may still start.
            _ => return Err(TriggerError::NotRecorded(source_id.to_owned())),
        };
        match serde_json::from_slice::<Reply>(&msg.payload) {
            Ok(Reply::Started(t)) => Ok(t),
            Ok(Reply::Refused(r)) => Err(error_of(source_id, r)),
            Err(_) => Err(TriggerError::NotRecorded(source_id.to_owned())),
        }
    }
}

/// The answering side, on an ingest process: takes triggers from the queue
/// group until `cancel`, each handed to this process's sync workers.
pub async fn serve_triggers(
    client: async_nats::Client,
    subject: String,
    syncs: SyncManager,
    cancel: CancellationToken,
) {
    let mut sub = match client
        .queue_subscribe(subject.clone(), INGEST_QUEUE.to_owned())
        .await
    {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(subject = %subject, error = %e,
                "cannot take triggers: this process runs scheduled syncs only");
            return;
        }
    };
    let slots = Arc::new(Semaphore::new(TRIGGERS_INFLIGHT_MAX));
    loop {
        let msg = tokio::select! {
            _ = cancel.cancelled() => break,
            m = sub.next() => match m { Some(m) => m, None => break },
        };
        let Some(reply_to) = msg.reply.clone() else {
            continue;
        };
        let Ok(permit) = slots.clone().acquire_owned().await else {
            break;
        };
        let (client, syncs) = (client.clone(), syncs.clone());
        tokio::spawn(async move {
            let reply = match serde_json::from_slice::<Request>(&msg.payload) {
                Ok(r) => {
                    let mode = SyncMode::try_from(r.mode).unwrap_or(SyncMode::Full);
                    match syncs.trigger(&r.source_id, mode, &r.by).await {
                        Ok(t) => Reply::Started(t),
                        Err(e) => Reply::Refused(refusal(&e)),
                    }
                }
                Err(_) => Reply::Refused(Refusal::NotConfigured),
            };
            let body = serde_json::to_vec(&reply).unwrap_or_default();
            if let Err(e) = client.publish(reply_to, body.into()).await {
                tracing::warn!(error = %e, "a trigger's answer was not sent");
            }
            drop(permit);
        });
    }
    let _ = sub.unsubscribe().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_refusal_crosses_the_wire_as_itself() {
        let cases = [
            TriggerError::NotConfigured("s".into()),
            TriggerError::AlreadyRunning {
                source_id: "s".into(),
                run_id: "r1".into(),
            },
            TriggerError::Stopped("s".into()),
            TriggerError::NoBaseline("s".into()),
            TriggerError::NotRecorded("s".into()),
        ];
        for e in cases {
            let wire = serde_json::to_vec(&Reply::Refused(refusal(&e))).unwrap();
            let Reply::Refused(r) = serde_json::from_slice(&wire).unwrap() else {
                panic!("not a refusal")
            };
            assert_eq!(error_of("s", r).to_string(), e.to_string());
        }
        let t = Triggered {
            run_id: "r".into(),
            seq: 42,
        };
        let wire = serde_json::to_vec(&Reply::Started(t.clone())).unwrap();
        assert!(matches!(serde_json::from_slice(&wire).unwrap(), Reply::Started(x) if x == t));
    }
}
