//! Readiness rules: why a scope of sources is not ready (stale, never
//! complete, last run not complete, unknown). Pure; the blocking actions are
//! added by [`super::queries::Queries::readiness`].

use govledger_projector::verdict;
use govledger_proto::v1::{Blocker, Freshness, RunState, SourceStatus, Verdict};

/// Why no answer of the projection can close a review now: the projector
/// stopped, or it is behind the stream past its lag bound. Pure.
pub fn projection_blockers(h: &crate::serve::health::HealthState) -> Vec<Blocker> {
    let mut out = Vec::new();
    if let Some(why) = &h.projector_stopped {
        out.push(Blocker {
            source_id: String::new(),
            code: "PROJECTOR_STOPPED".into(),
            message: format!(
                "the answer is as of stream sequence {} and nothing after it is folded: {why}",
                h.applied_seq
            ),
        });
    }
    if let Some(lag) = h.lag_past_bound() {
        out.push(Blocker {
            source_id: String::new(),
            code: "PROJECTION_BEHIND".into(),
            message: format!(
                "the answer is as of stream sequence {} but the stream holds {} ({lag} events not folded yet, \
                 past projector.lag_bound_events {}): what happened since is not counted; ask again when /readyz is ready",
                h.applied_seq,
                h.applied_seq + lag,
                h.lag_bound_events
            ),
        });
    }
    out
}

/// Why a scope is not ready: every blocking reason, in source order. Pure.
pub fn readiness_blockers(
    scope: &[(String, Option<SourceStatus>, Option<RunState>)],
) -> Vec<Blocker> {
    let mut out = Vec::new();
    let block = |out: &mut Vec<Blocker>, id: &str, code: &str, message: String| {
        out.push(Blocker {
            source_id: id.to_owned(),
            code: code.to_owned(),
            message,
        })
    };
    if scope.is_empty() {
        block(
            &mut out,
            "",
            "NO_SOURCES",
            "no source in scope: nothing shows the data is complete".into(),
        );
    }
    for (id, status, last_finished) in scope {
        let Some(st) = status else {
            block(
                &mut out,
                id,
                "UNKNOWN_SOURCE",
                format!("source {id:?} is neither configured nor in the ledger"),
            );
            continue;
        };
        match Freshness::try_from(st.freshness).unwrap_or_default() {
            Freshness::Fresh => {}
            Freshness::Stale => block(
                &mut out,
                id,
                "STALE",
                format!(
                    "last complete run is {} old, over its freshness objective of {}",
                    verdict::human_ms(st.last_complete_age_ms),
                    verdict::human_ms(st.freshness_objective_ms as i64)
                ),
            ),
            Freshness::NeverComplete | Freshness::Unspecified => block(
                &mut out,
                id,
                "NEVER_COMPLETE",
                "no COMPLETE run on record: run `govledger sync` and fix what it reports".into(),
            ),
        }
        if let Some(run) = last_finished
            && run.verdict != Verdict::Complete as i32
        {
            let why = run
                .reasons
                .iter()
                .map(|r| r.message.as_str())
                .collect::<Vec<_>>()
                .join("; ");
            block(
                &mut out,
                id,
                "LAST_RUN_NOT_COMPLETE",
                format!(
                    "last run {} ended {}: {why}",
                    run.run_id,
                    Verdict::try_from(run.verdict)
                        .map(|v| v.as_str_name().trim_start_matches("VERDICT_").to_owned())
                        .unwrap_or_default()
                ),
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use govledger_proto::v1::{Reason, SourceState};

    fn status(freshness: Freshness, age_ms: i64) -> Option<SourceStatus> {
        Some(SourceStatus {
            source_id: "hr".into(),
            state: Some(SourceState::default()),
            freshness: freshness as i32,
            last_complete_age_ms: age_ms,
            freshness_objective_ms: 3_600_000,
            configured: true,
            running_run_id: String::new(),
        })
    }

    fn codes(scope: &[(String, Option<SourceStatus>, Option<RunState>)]) -> Vec<String> {
        readiness_blockers(scope)
            .into_iter()
            .map(|b| b.code)
            .collect()
    }

    #[test]
    fn readiness_rules() {
        let complete = RunState {
            run_id: "r1".into(),
            verdict: Verdict::Complete as i32,
            ..Default::default()
        };
        let incomplete = RunState {
            run_id: "r2".into(),
            verdict: Verdict::Incomplete as i32,
            reasons: vec![Reason {
                code: 1,
                message: "1 page failed".into(),
            }],
            ..Default::default()
        };
        let id = || "hr".to_string();
        assert!(codes(&[(id(), status(Freshness::Fresh, 10), Some(complete.clone()))]).is_empty());
        assert_eq!(codes(&[]), vec!["NO_SOURCES"]);
        assert_eq!(codes(&[(id(), None, None)]), vec!["UNKNOWN_SOURCE"]);
        assert_eq!(
            codes(&[(id(), status(Freshness::NeverComplete, 0), None)]),
            vec!["NEVER_COMPLETE"]
        );
        let b =
            readiness_blockers(&[(id(), status(Freshness::Stale, 7_200_000), Some(incomplete))]);
        let got: Vec<&str> = b.iter().map(|b| b.code.as_str()).collect();
        assert_eq!(got, vec!["STALE", "LAST_RUN_NOT_COMPLETE"]);
        assert!(b[0].message.contains("2h 0m old"), "{}", b[0].message);
        assert!(
            b[1].message.contains("r2 ended INCOMPLETE: 1 page failed"),
            "{}",
            b[1].message
        );
    }
}
