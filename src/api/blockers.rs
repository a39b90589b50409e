//! The actions that keep a readiness check from READY: read through the
//! blocking-action index (every action not CONFIRMED, or confirmed and then
//! drifted), so the cost follows the blockers, never every action ever
//! confirmed; past [`READINESS_ACTIONS_MAX`] of them the check says so. The
//! same index counts the open actions by outcome (`/metrics`, the status page).

use govledger_proto::v1::{ActionOutcome, Blocker};

use super::queries::{Queries, QueryError, READINESS_ACTIONS_MAX};

impl Queries {
    /// The actions of `source` that are not confirmed, counted by their
    /// outcome now (at most [`READINESS_ACTIONS_MAX`] looked at).
    pub fn open_action_outcomes(
        &self,
        source: &str,
    ) -> Result<Vec<(ActionOutcome, u64)>, QueryError> {
        let now = super::queries::now_us();
        let mut counts: std::collections::BTreeMap<i32, u64> = Default::default();
        for id in self
            .store
            .blocking_action_ids(source, READINESS_ACTIONS_MAX)?
        {
            if let Some(a) = self.store.action(&id)? {
                let v = self.action_view(a, now)?;
                if v.outcome != ActionOutcome::Confirmed as i32 {
                    *counts.entry(v.outcome).or_default() += 1;
                }
            }
        }
        Ok(counts
            .into_iter()
            .map(|(o, n)| (ActionOutcome::try_from(o).unwrap_or_default(), n))
            .collect())
    }

    /// Blocking actions of a source: every outcome but CONFIRMED and PENDING
    /// (UNCONFIRMED, FAILED, OVERDUE, DRIFTED, UNVERIFIED, UNVERIFIABLE).
    pub(super) fn action_blockers(
        &self,
        source_id: &str,
        identities: &[String],
        now: i64,
    ) -> Result<Vec<Blocker>, QueryError> {
        let mut out = Vec::new();
        // Only actions that can block are read (the blocking-action index):
        // the cost follows them, not the confirmed ones.
        let ids = self
            .store
            .blocking_action_ids(source_id, READINESS_ACTIONS_MAX + 1)?;
        if ids.len() > READINESS_ACTIONS_MAX {
            // Never a silent cut: more than this many cannot all be read here.
            out.push(Blocker {
                source_id: source_id.to_owned(),
                code: "ACTIONS_NOT_ALL_CHECKED".into(),
                message: format!(
                    "more than {READINESS_ACTIONS_MAX} actions of {source_id} are not confirmed; \
                     only the first {READINESS_ACTIONS_MAX} were checked (list them: govledger actions {source_id})"
                ),
            });
        }
        for id in ids.into_iter().take(READINESS_ACTIONS_MAX) {
            let Some(a) = self.store.action(&id)? else {
                continue;
            };
            let who = a
                .request
                .as_ref()
                .map(|r| r.identity_external_id.clone())
                .unwrap_or_default();
            if !identities.is_empty() && !identities.contains(&who) {
                continue;
            }
            let v = self.action_view(a, now)?;
            let o = ActionOutcome::try_from(v.outcome).unwrap_or_default();
            if matches!(
                o,
                ActionOutcome::Unconfirmed
                    | ActionOutcome::Failed
                    | ActionOutcome::Overdue
                    | ActionOutcome::Drifted
                    | ActionOutcome::Unverified
                    | ActionOutcome::Unverifiable
                    | ActionOutcome::UnverifiedProducer
            ) {
                out.push(Blocker {
                    source_id: source_id.to_owned(),
                    code: format!(
                        "ACTION_{}",
                        o.as_str_name().trim_start_matches("ACTION_OUTCOME_")
                    ),
                    message: format!("action {id} on {who}: {}", v.outcome_detail),
                });
            }
        }
        Ok(out)
    }
}
