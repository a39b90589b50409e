//! What the projector counts for `/metrics`: events applied by kind, decisions
//! by verdict and outcome, poison events, and how long a batch takes to fold
//! and commit. Counted where the runner publishes a flushed batch's alerts
//! and log lines, so a count and its log line come from one place.
//!
//! The families are shared handles: cloning a [`FoldMetrics`] counts into the
//! same series. [`FoldMetrics::register`] puts them in a registry; an
//! unregistered one (tests, rebuilds) counts into nothing anyone reads.

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, histogram::Histogram},
    registry::{Registry, Unit},
};

/// The event kinds a subject's last token names (`stream::subject::body_path`);
/// anything else counts as `other`.
pub const EVENT_KINDS: [&str; 11] = [
    "run_started",
    "page_fetched",
    "page_failed",
    "record_observed",
    "record_rejected",
    "run_finished",
    "deletions_accepted",
    "action_requested",
    "action_attempted",
    "action_verified",
    "action_concluded",
];

/// Per-batch tallies of applied events by kind: one slot per
/// [`EVENT_KINDS`] entry and a last one for `other`.
pub type KindTally = [u64; EVENT_KINDS.len() + 1];

/// The slot of a subject's kind in a [`KindTally`].
pub fn kind_slot(subject: &str) -> usize {
    let kind = subject.rsplit('.').next().unwrap_or("");
    EVENT_KINDS
        .iter()
        .position(|k| *k == kind)
        .unwrap_or(EVENT_KINDS.len())
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    pub kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct VerdictLabels {
    pub source: String,
    pub verdict: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub source: String,
    pub outcome: String,
}

/// The projector's series.
#[derive(Clone, Debug)]
pub struct FoldMetrics {
    pub events_applied: Family<KindLabel, Counter>,
    pub poison_events: Counter,
    pub runs_decided: Family<VerdictLabels, Counter>,
    pub actions_concluded: Family<OutcomeLabels, Counter>,
    pub actions_drifted: Family<OutcomeLabels, Counter>,
    pub batch_seconds: Histogram,
}

/// Batch fold+commit buckets, in seconds: 1 ms to ~4 s.
fn batch_buckets() -> impl Iterator<Item = f64> {
    prometheus_client::metrics::histogram::exponential_buckets(0.001, 2.0, 13)
}

impl Default for FoldMetrics {
    fn default() -> Self {
        Self {
            events_applied: Family::default(),
            poison_events: Counter::default(),
            runs_decided: Family::default(),
            actions_concluded: Family::default(),
            actions_drifted: Family::default(),
            batch_seconds: Histogram::new(batch_buckets()),
        }
    }
}

impl FoldMetrics {
    /// Registers every series under `govledger_`.
    pub fn register(&self, r: &mut Registry) {
        r.register(
            "govledger_events_applied",
            "Stream events this process folded into the projection, by event kind",
            self.events_applied.clone(),
        );
        r.register(
            "govledger_poison_events",
            "Stream events this process could not fold (kept, listed by ListPoisonEvents)",
            self.poison_events.clone(),
        );
        r.register(
            "govledger_runs_decided",
            "Sync runs the fold decided in this process, by source and verdict",
            self.runs_decided.clone(),
        );
        r.register(
            "govledger_actions_concluded",
            "Lifecycle actions the fold concluded in this process, by source and outcome",
            self.actions_concluded.clone(),
        );
        r.register(
            "govledger_actions_drifted",
            "Confirmed actions a later observation contradicted, by source",
            self.actions_drifted.clone(),
        );
        r.register_with_unit(
            "govledger_fold_batch",
            "Time to fold and commit one batch of stream events",
            Unit::Seconds,
            self.batch_seconds.clone(),
        );
    }

    /// Counts a committed, flushed batch: its events by kind, its poison
    /// events and its decisions.
    pub fn batch_published(
        &self,
        kinds: &KindTally,
        poison: usize,
        alerts: &[govledger_proto::v1::Alert],
    ) {
        use govledger_proto::v1::{ActionOutcome, Verdict, alert::Kind};
        for (slot, n) in kinds.iter().enumerate() {
            if *n > 0 {
                let kind = EVENT_KINDS.get(slot).copied().unwrap_or("other");
                self.events_applied
                    .get_or_create(&KindLabel { kind })
                    .inc_by(*n);
            }
        }
        self.poison_events.inc_by(poison as u64);
        for a in alerts {
            let source = a.source_id.clone();
            match Kind::try_from(a.kind) {
                Ok(Kind::RunDecided) => {
                    let verdict = label(
                        Verdict::try_from(a.verdict).map(|v| v.as_str_name()),
                        "VERDICT_",
                    );
                    self.runs_decided
                        .get_or_create(&VerdictLabels { source, verdict })
                        .inc();
                }
                Ok(Kind::ActionConcluded) => {
                    let outcome = label(
                        ActionOutcome::try_from(a.outcome).map(|o| o.as_str_name()),
                        "ACTION_OUTCOME_",
                    );
                    self.actions_concluded
                        .get_or_create(&OutcomeLabels { source, outcome })
                        .inc();
                }
                Ok(Kind::ActionDrifted) => {
                    self.actions_drifted
                        .get_or_create(&OutcomeLabels {
                            source,
                            outcome: "DRIFTED".into(),
                        })
                        .inc();
                }
                _ => {}
            }
        }
    }
}

/// An enum's proto name without its prefix (`VERDICT_COMPLETE` → `COMPLETE`).
fn label<E>(name: Result<&'static str, E>, prefix: &str) -> String {
    name.map_or("UNKNOWN", |n| n.strip_prefix(prefix).unwrap_or(n))
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use govledger_proto::v1::{Alert, Verdict, alert::Kind};

    #[test]
    fn kinds_come_from_the_subjects_last_token() {
        assert_eq!(kind_slot("govledger.v1.hr.read.page_fetched"), 1);
        assert_eq!(kind_slot("govledger.v1.hr.write.action_concluded"), 10);
        assert_eq!(
            kind_slot("govledger.v1.hr.read.something_new"),
            EVENT_KINDS.len()
        );
        assert_eq!(kind_slot(""), EVENT_KINDS.len());
    }

    #[test]
    fn a_batch_counts_kinds_poison_and_decisions() {
        let m = FoldMetrics::default();
        let mut kinds = KindTally::default();
        kinds[kind_slot("govledger.v1.hr.read.record_observed")] += 3;
        kinds[EVENT_KINDS.len()] += 1;
        let decided = Alert {
            kind: Kind::RunDecided as i32,
            source_id: "hr".into(),
            verdict: Verdict::Incomplete as i32,
            ..Default::default()
        };
        m.batch_published(&kinds, 2, &[decided]);
        let get = |k| m.events_applied.get_or_create(&KindLabel { kind: k }).get();
        assert_eq!(
            (get("record_observed"), get("other"), get("page_fetched")),
            (3, 1, 0)
        );
        assert_eq!(m.poison_events.get(), 2);
        let v = VerdictLabels {
            source: "hr".into(),
            verdict: "INCOMPLETE".into(),
        };
        assert_eq!(m.runs_decided.get_or_create(&v).get(), 1);
    }
}
