//! The crash campaign's audit of a stream read back after the kills: event
//! ids stored more than once, undecodable messages, each run's records and
//! finishes (was it cut by a kill?), the actions requested; and the
//! campaign's one-line summary.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use govledger_projector::OwnedMsg;
use govledger_proto::v1::{EngineOutcome, EntityType, Event, event::Body};
use prost::Message as _;

/// What the stream holds of one sync run.
#[derive(Debug, Default)]
pub struct RunSeen {
    /// No finish of the run's own worker: only an ABANDONED one (the next
    /// worker's, or its own at shutdown), or none at all.
    pub cut: bool,
    /// `SyncRunFinished` events of the run (more than one: abandoned twice).
    pub finishes: usize,
    /// Users and groups the run observed.
    pub users: BTreeSet<String>,
    pub groups: BTreeSet<String>,
}

/// The campaign's findings; [`Audit::assert_clean`] fails on any loss or
/// duplicate.
#[derive(Debug, Default)]
pub struct Audit {
    pub events: usize,
    pub undecodable: usize,
    /// Event ids stored more than once, with their count.
    pub duplicates: Vec<(String, usize)>,
    pub runs: BTreeMap<String, RunSeen>,
    /// Action ids with an `ActionRequested` in the stream.
    pub actions: HashSet<String>,
    /// Runs with more than one finish (each abandonment is its own event).
    pub runs_finished_twice: usize,
    /// Filled in by the campaign: verdicts and outcomes by name.
    pub verdicts: BTreeMap<String, usize>,
    pub outcomes: BTreeMap<String, usize>,
    /// Actions accepted (SubmitAction OK) but not in the stream.
    pub actions_lost: Vec<String>,
    /// Run ids TriggerSync answered that never reached the stream.
    pub triggered_unrecorded: usize,
    pub unacknowledged_actions: usize,
    /// Actions in effect at the server but reported worse than CONFIRMED.
    pub in_effect_not_confirmed: Vec<String>,
    pub digest_equal: bool,
}

/// Decodes every message of `msgs` and collects what the campaign checks.
pub fn audit_stream(msgs: &[OwnedMsg]) -> Audit {
    let mut a = Audit {
        events: msgs.len(),
        ..Default::default()
    };
    let mut ids: HashMap<String, usize> = HashMap::new();
    let mut own_finish: HashSet<String> = HashSet::new();
    for m in msgs {
        let Ok(ev) = Event::decode(m.payload.as_ref()) else {
            a.undecodable += 1;
            continue;
        };
        *ids.entry(ev.event_id.clone()).or_default() += 1;
        match ev.body {
            Some(Body::SyncRunStarted(_)) => {
                a.runs.entry(ev.run_id).or_default();
            }
            Some(Body::RecordObserved(r)) => {
                let run = a.runs.entry(ev.run_id).or_default();
                if r.entity_type == EntityType::User as i32 {
                    run.users.insert(r.external_id);
                } else if r.entity_type == EntityType::Group as i32 {
                    run.groups.insert(r.external_id);
                }
            }
            Some(Body::SyncRunFinished(f)) => {
                if f.engine_outcome != EngineOutcome::Abandoned as i32 {
                    own_finish.insert(ev.run_id.clone());
                }
                a.runs.entry(ev.run_id).or_default().finishes += 1;
            }
            Some(Body::ActionRequested(_)) => {
                a.actions.insert(ev.action_id);
            }
            _ => {}
        }
    }
    for (id, run) in &mut a.runs {
        run.cut = !own_finish.contains(id);
    }
    a.runs_finished_twice = a.runs.values().filter(|r| r.finishes > 1).count();
    a.duplicates = ids.into_iter().filter(|(_, n)| *n > 1).collect();
    a
}

/// A COMPLETE run listed everything: every user and group the server holds
/// at the end (the campaign never adds any, so it held them throughout), and
/// nothing beyond what it ever held (`users` / `groups`, ids `u%07d` / `g%07d`).
pub fn assert_listed_everything(
    run_id: &str,
    seen: &RunSeen,
    users_now: &[String],
    groups_now: &[String],
    users: usize,
    groups: usize,
) {
    let missing_users: Vec<&String> = users_now
        .iter()
        .filter(|u| !seen.users.contains(*u))
        .collect();
    let missing_groups: Vec<&String> = groups_now
        .iter()
        .filter(|g| !seen.groups.contains(*g))
        .collect();
    assert!(
        missing_users.is_empty() && missing_groups.is_empty(),
        "run {run_id} is COMPLETE but never listed users {missing_users:?} / groups {missing_groups:?}"
    );
    let ever = |prefix: char, n: usize, id: &str| {
        id.strip_prefix(prefix)
            .and_then(|x| x.parse::<usize>().ok())
            .is_some_and(|k| k < n)
    };
    assert!(
        seen.users.iter().all(|u| ever('u', users, u))
            && seen.groups.iter().all(|g| ever('g', groups, g)),
        "run {run_id} is COMPLETE with records the server never held"
    );
}

impl Audit {
    /// Fails on a duplicate, an undecodable message or a lost action.
    pub fn assert_clean(&self) {
        assert!(
            self.duplicates.is_empty(),
            "event ids stored more than once: {:?}",
            self.duplicates
        );
        assert_eq!(self.undecodable, 0, "undecodable messages in the stream");
        assert!(
            self.actions_lost.is_empty(),
            "actions SubmitAction accepted, missing from the stream: {:?}",
            self.actions_lost
        );
    }

    /// The campaign's summary line (after the kills by target).
    pub fn summary(&self) -> String {
        format!(
            "runs {} by verdict {:?} (cut by a kill {}, finished twice {}, triggered but unrecorded {}); \
             actions {} by outcome {:?} (in effect but not CONFIRMED {:?}, submissions unanswered {}); \
             events stored {}, duplicates {}, lost {}, digest equal {}",
            self.runs.len(),
            self.verdicts,
            self.runs.values().filter(|r| r.cut).count(),
            self.runs_finished_twice,
            self.triggered_unrecorded,
            self.actions.len(),
            self.outcomes,
            self.in_effect_not_confirmed,
            self.unacknowledged_actions,
            self.events,
            self.duplicates.len(),
            self.actions_lost.len(),
            self.digest_equal
        )
    }
}
