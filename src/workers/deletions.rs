//! accept-deletions, the submission side: an operator accepts the count drops
//! of a run the deletion guard made SUSPECT. The run must be decided SUSPECT
//! for count drops only ([`deletion_guard::acceptable`], pure); the
//! acceptance names those drops and is published as a `DeletionsAccepted`
//! event. The fold then makes the run COMPLETE with the acceptance named.
//!
//! Idempotency: the event id is a UUID v5 of the run id, so concurrent
//! acceptances of one run publish one event; a run the ledger already shows
//! accepted answers with its first acceptance, unchanged (`created = false`).

use std::{sync::Arc, time::Duration};

use govledger_ingest::{
    Publisher,
    event::{ProducerId, Scope, stamp},
    publisher::PublishError,
};
use govledger_projector::{
    Store,
    deletion_guard::{self, NotAcceptable},
};
use govledger_proto::v1::{
    AcceptDeletionsRequest, AcceptDeletionsResponse, Acceptance, DeletionsAccepted, Reason,
    Verdict, event::Body,
};
use tokio::sync::watch;

/// Namespace of acceptance event ids (UUID v5 over "run id\0deletions-accepted").
const ACCEPT_NS: uuid::Uuid = uuid::Uuid::from_u128(0x0b5e_2d7c_41a9_4e63_9c1f_7d2a_5e80_c3b4);
/// How long an acceptance waits for the projector to fold it before it
/// answers with the event alone.
const APPLIED_WAIT_MS: u64 = 10_000;

/// The event id of the acceptance of `run_id` (the same for every attempt).
pub fn acceptance_event_id(run_id: &str) -> String {
    uuid::Uuid::new_v5(
        &ACCEPT_NS,
        format!("{run_id}\0deletions-accepted").as_bytes(),
    )
    .to_string()
}

/// Why an acceptance was not recorded.
#[derive(Debug, thiserror::Error)]
pub enum AcceptError {
    /// No such run in the ledger.
    #[error(
        "no run {} in the ledger (it may not be projected yet; govledger runs SOURCE lists a source's runs)",
        crate::api::validate::excerpt(.0)
    )]
    NoRun(String),
    /// The run is not SUSPECT for count drops alone; the message says what it is.
    #[error("{0}")]
    NotAcceptable(String),
    /// The projection store failed.
    #[error("projection store error: {0}; the projection can be rebuilt from the stream")]
    Store(String),
    /// The event could not be stored.
    #[error("could not record the acceptance: {0}")]
    Publish(#[from] PublishError),
}

/// Accepts runs' deletions: validates against the projection, publishes.
#[derive(Clone)]
pub struct DeletionsDesk {
    pub publisher: Publisher,
    pub producer: ProducerId,
    pub store: Arc<Store>,
    /// The projector's last applied sequence.
    pub applied: watch::Receiver<u64>,
}

impl DeletionsDesk {
    /// Records the acceptance of `req.run_id`'s drops (fields validated by
    /// the caller). Returns the acceptance and its stream sequence.
    pub async fn accept(
        &self,
        req: AcceptDeletionsRequest,
    ) -> Result<AcceptDeletionsResponse, AcceptError> {
        let run = self.run(&req.run_id)?;
        if let Some(a) = run.acceptance {
            return Ok(AcceptDeletionsResponse {
                seq: a.seq,
                created: false,
                acceptance: Some(a),
            });
        }
        let drops = deletion_guard::acceptable(&run)
            .map_err(|e| AcceptError::NotAcceptable(not_acceptable(&req.run_id, &e)))?;
        let body = DeletionsAccepted {
            accepted_by: req.accepted_by,
            reason: req.reason,
            ticket: req.ticket,
            drops,
        };
        let mut ev = stamp(
            &self.producer,
            &Scope::run(&run.source_id, &run.run_id),
            1,
            Body::DeletionsAccepted(body.clone()),
        );
        ev.event_id = acceptance_event_id(&run.run_id);
        let receipt = self.publisher.publish_wait(&ev).await?;
        // The fold's view once it holds the event (the first acceptance, if
        // another one won the race); the event alone if it is slow.
        let mut applied = self.applied.clone();
        let folded = tokio::time::timeout(
            Duration::from_millis(APPLIED_WAIT_MS),
            applied.wait_for(|s| *s >= receipt.seq),
        )
        .await
        .is_ok_and(|r| r.is_ok());
        let stored = if folded {
            self.run(&run.run_id)?.acceptance
        } else {
            None
        };
        let acceptance = stored.unwrap_or(Acceptance {
            run_id: run.run_id.clone(),
            accepted: Some(body),
            accepted_at_us: ev.occurred_at_us,
            seq: receipt.seq,
        });
        Ok(AcceptDeletionsResponse {
            seq: acceptance.seq,
            created: !receipt.duplicate && acceptance.seq == receipt.seq,
            acceptance: Some(acceptance),
        })
    }

    fn run(&self, run_id: &str) -> Result<govledger_proto::v1::RunState, AcceptError> {
        self.store
            .run(run_id)
            .map_err(|e| AcceptError::Store(e.to_string()))?
            .ok_or_else(|| AcceptError::NoRun(run_id.to_owned()))
    }
}

/// Why run `id`'s deletions cannot be accepted, and what to do instead.
pub fn not_acceptable(id: &str, e: &NotAcceptable) -> String {
    let only = "an acceptance covers count drops (COUNT_DROP) only";
    match e {
        NotAcceptable::NotDecided => format!(
            "run {id} is not decided yet: accept its deletions once the ledger has decided it \
             SUSPECT (follow it with govledger run {id})"
        ),
        NotAcceptable::NotSuspect(Verdict::Complete, _) => {
            format!("run {id} is COMPLETE: it has no count drop to accept")
        }
        NotAcceptable::NotSuspect(v, reasons) => format!(
            "run {id} is {}, not SUSPECT ({}); {only}: fix what the reasons name and sync again",
            verdict_name(*v),
            reason_text(reasons)
        ),
        NotAcceptable::NotOnlyDrops(reasons) => format!(
            "run {id} is SUSPECT for another reason than a count drop ({}); {only}: sync again",
            reason_text(reasons)
        ),
    }
}

fn verdict_name(v: Verdict) -> &'static str {
    v.as_str_name().trim_start_matches("VERDICT_")
}

fn reason_text(reasons: &[Reason]) -> String {
    if reasons.is_empty() {
        return "no reason recorded".to_owned();
    }
    reasons
        .iter()
        .map(|r| r.message.as_str())
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use govledger_proto::v1::ReasonCode;

    use super::*;

    #[test]
    fn refusals_say_what_the_run_is_and_what_to_do() {
        assert_eq!(
            not_acceptable("r1", &NotAcceptable::NotSuspect(Verdict::Complete, vec![])),
            "run r1 is COMPLETE: it has no count drop to accept"
        );
        let pages = Reason {
            code: ReasonCode::PagesFailed as i32,
            message: "1 page failed after retries (at startIndex=101)".into(),
        };
        assert_eq!(
            not_acceptable(
                "r1",
                &NotAcceptable::NotSuspect(Verdict::Incomplete, vec![pages])
            ),
            "run r1 is INCOMPLETE, not SUSPECT (1 page failed after retries (at startIndex=101)); \
             an acceptance covers count drops (COUNT_DROP) only: fix what the reasons name and sync again"
        );
        assert!(not_acceptable("r1", &NotAcceptable::NotDecided).contains("not decided yet"));
        assert_eq!(acceptance_event_id("r1"), acceptance_event_id("r1"));
        assert_ne!(acceptance_event_id("r1"), acceptance_event_id("r2"));
    }
}
