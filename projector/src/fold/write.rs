//! The write path: one function per action event body (requested, attempted,
//! verified, concluded), the drift check that holds a confirmed action's
//! intent against later observations, and the late confirmation of an
//! UNCONFIRMED, UNVERIFIED or UNVERIFIABLE action that a later observation
//! shows in effect. An UNVERIFIED action stays in the open-actions index
//! (the clock turns it OVERDUE at its deadline) until it is confirmed late.

use govledger_proto::v1::{
    ActionAttempted, ActionConcluded, ActionKind, ActionOutcome, ActionRequested, ActionVerified,
    Alert, Event, StepOutcome, WatchedIntent, alert,
};

use govledger_proto::v1::SealStatus;
use govledger_stream::seal::SealCheck;

use super::{
    Working,
    records::{action_mut, new_identity, note_history},
};

/// The identity an action of `source` requested as `r` targets: an
/// unspecified entity type is a user, as the API reads a request.
pub(crate) fn target_of(source: &str, r: &ActionRequested) -> Option<crate::keys::IdentityKey> {
    if r.identity_external_id.is_empty() {
        return None;
    }
    let t = match r.entity_type {
        0 => govledger_proto::v1::EntityType::User as i32,
        t => t,
    };
    Some((source.to_owned(), t, r.identity_external_id.clone()))
}

/// An action was requested (the first request counts), indexed on its identity.
pub(super) fn action_requested(w: &mut Working, seq: u64, ev: &Event, r: &ActionRequested) {
    let at = ev.occurred_at_us;
    if let Some(ikey) = target_of(&ev.source_id, r) {
        w.identity_actions.insert((ikey, ev.action_id.clone()), ());
    }
    let a = action_mut(w, ev, seq);
    if a.request.is_none() {
        a.request = Some(r.clone());
        a.requested_at_us = at;
        a.external = r.external;
    }
}

/// Records an action's event in the committed history of the identity its
/// request names (`identity_map::note`), when the ledger knows that
/// identity: an identity's bundle holds every event of the actions on it,
/// and the map commits to them.
pub(super) fn note_on_target(w: &mut Working, ev: &Event, seq: u64) {
    let Some(key) = w
        .actions
        .get(&ev.action_id)
        .and_then(|a| a.request.as_ref())
        .and_then(|r| target_of(&ev.source_id, r))
    else {
        return;
    };
    if let Some(ident) = w.identities.get_mut(&key) {
        crate::identity_map::note(ident, seq);
    }
}

/// An action attempt: counted, with its last status and error class.
pub(super) fn action_attempted(w: &mut Working, seq: u64, ev: &Event, t: &ActionAttempted) {
    let a = action_mut(w, ev, seq);
    a.attempts += 1;
    a.last_http_status = t.http_status;
    a.last_error_class = t.error_class;
}

/// A read-back of one step: whether the step's intent is in effect.
pub(super) fn action_verified(w: &mut Working, seq: u64, ev: &Event, v: &ActionVerified) {
    let a = action_mut(w, ev, seq);
    a.verified = true;
    a.in_effect = v.in_effect;
    a.read_back_unknown = v.unknown;
    a.target_absent = v.target_absent;
    if v.in_effect && !a.verified_steps.contains(&v.step) {
        a.verified_steps.push(v.step);
    } else if !v.in_effect {
        a.verified_steps.retain(|s| *s != v.step);
    }
}

/// Records an action's conclusion. The ledger keeps CONFIRMED only when every
/// step has a read-back in effect; a claim without that evidence is UNCONFIRMED.
///
/// Provenance: only a conclusion sealed by a trusted producer counts. One
/// without (no seal, an untrusted key, a bad signature) is counted
/// (`unsealed_conclusions`) and leaves the action UNVERIFIED_PRODUCER until a
/// sealed conclusion is folded; it never confirms, watches or closes it.
pub(super) fn conclude_action(
    w: &mut Working,
    ev: &Event,
    seq: u64,
    at: i64,
    c: &ActionConcluded,
    seal: SealCheck,
) {
    let a = action_mut(w, ev, seq);
    if a.concluded_seq != 0 {
        return; // the first conclusion counts
    }
    if seal.status != SealStatus::Verified {
        a.unsealed_conclusions += 1;
        a.outcome = ActionOutcome::UnverifiedProducer as i32;
        a.seal_status = seal.status as i32;
        a.seal_key_id.clone_from(&seal.key_id);
        a.outcome_detail = format!(
            "a conclusion claiming {} was ignored: {}",
            ActionOutcome::try_from(c.outcome)
                .unwrap_or_default()
                .as_str_name()
                .trim_start_matches("ACTION_OUTCOME_"),
            govledger_stream::seal::explain(seal.status, &seal.key_id)
        );
        let message = a.outcome_detail.clone();
        w.alerts.push(Alert {
            kind: alert::Kind::ActionConcluded as i32,
            source_id: ev.source_id.clone(),
            action_id: ev.action_id.clone(),
            outcome: ActionOutcome::UnverifiedProducer as i32,
            message,
            seq,
            ..Default::default()
        });
        return;
    }
    a.seal_status = seal.status as i32;
    a.seal_key_id = seal.key_id;
    let steps = a.request.as_ref().map_or(1, |r| r.plan.len().max(1));
    let mut outcome = ActionOutcome::try_from(c.outcome).unwrap_or_default();
    let mut detail = c.detail.clone();
    if outcome == ActionOutcome::Confirmed && a.verified_steps.len() < steps {
        a.claimed_outcome = outcome as i32;
        outcome = ActionOutcome::Unconfirmed;
        detail = format!(
            "claimed CONFIRMED, but only {} of {steps} step(s) have a read-back showing the intent in effect; {detail}",
            a.verified_steps.len()
        );
    }
    a.outcome = outcome as i32;
    a.outcome_detail = detail.clone();
    a.concluded_at_us = at;
    a.concluded_seq = seq;
    a.steps = c.steps.clone();
    a.watch = c.watch.clone();
    // Concluded: no longer open, unless nothing is known yet (UNVERIFIED:
    // its deadline still matters, see `verdict::action_outcome`).
    if outcome != ActionOutcome::Unverified {
        w.open_actions
            .remove(&(ev.source_id.clone(), ev.action_id.clone()));
    }
    // Confirmed: it blocks nothing (until a drift); anything else may.
    let key = (ev.source_id.clone(), ev.action_id.clone());
    if outcome == ActionOutcome::Confirmed {
        w.blocking_actions.remove(&key);
    } else {
        w.blocking_actions.insert(key, ());
    }
    w.alerts.push(Alert {
        kind: alert::Kind::ActionConcluded as i32,
        source_id: ev.source_id.clone(),
        action_id: ev.action_id.clone(),
        outcome: outcome as i32,
        message: detail,
        seq,
        ..Default::default()
    });
    // A confirmed intent is watched for drift; one not shown in effect (and
    // not shown failed) for a later observation that shows it in effect
    // (confirmed late).
    let awaiting = match outcome {
        ActionOutcome::Confirmed => false,
        o if awaits_late_confirmation(o) => true,
        _ => return,
    };
    for wi in &c.watch {
        let key = (ev.source_id.clone(), wi.entity_type, wi.external_id.clone());
        let (sources, created) = (&mut w.sources, &mut w.identity_pages_of);
        let ident = w
            .identities
            .get_or_insert_with(&key, || new_identity(sources, created, &key, 0));
        ident.watched.push(WatchedIntent {
            action_id: ev.action_id.clone(),
            kind: wi.kind,
            member_external_id: wi.member_external_id.clone(),
            confirmed_seq: seq,
            confirmed_at_us: ev.occurred_at_us,
            awaiting,
            ..Default::default()
        });
        if ident.watched.len() > WATCHED_PER_IDENTITY_MAX {
            ident.watched.remove(0);
        }
        crate::identity_map::note(ident, seq);
        if let Some(chunk) = note_history(&mut ident.recent_seqs, seq) {
            w.identity_history.insert((key.clone(), chunk.0), chunk.1);
        }
    }
}

/// The outcomes a later observation showing the intent in effect turns
/// into CONFIRMED (late): nothing showed the intent, but nothing showed the
/// write refused either.
pub fn awaits_late_confirmation(o: ActionOutcome) -> bool {
    matches!(
        o,
        ActionOutcome::Unconfirmed | ActionOutcome::Unverified | ActionOutcome::Unverifiable
    )
}

/// Whether observations can confirm every step not yet CONFIRMED: each must
/// be of a kind a watch follows (deactivate, delete, memberships); a
/// set-attribute step no read-back showed stays unproved whatever a sync
/// shows of the others.
pub fn late_confirmable(steps: &[StepOutcome]) -> bool {
    steps.iter().all(|s| {
        s.outcome == ActionOutcome::Confirmed as i32
            || matches!(
                ActionKind::try_from(s.kind).unwrap_or_default(),
                ActionKind::Deactivate
                    | ActionKind::Delete
                    | ActionKind::RemoveMembership
                    | ActionKind::AddMembership
            )
    })
}

/// Confirmed intents kept per identity for drift checks (oldest dropped first).
pub const WATCHED_PER_IDENTITY_MAX: usize = 16;

/// W4: does this observation (its `active` flag and memberships) undo a
/// confirmed intent watched on the identity? A member listed is evidence of
/// membership; a member missing is evidence of removal only from a complete
/// member list (`members_complete`: not capped or ranged past reading).
/// Only an observation read after the intent was shown in effect
/// (`read_at_us` > `confirmed_at_us`) counts: one read before may show the
/// target as it was before the write, though its record is stored after the
/// conclusion (a later read decides).
pub(super) fn check_drift(
    watched: &mut [WatchedIntent],
    active: Option<bool>,
    memberships: &[String],
    members_complete: bool,
    (run_id, read_at_us): (&str, i64),
    seq: u64,
) -> Vec<(String, String)> {
    let mut drifted = Vec::new();
    for wi in watched.iter_mut().filter(|wi| {
        !wi.drifted
            && !wi.awaiting
            && seq > wi.confirmed_seq
            && (wi.confirmed_at_us == 0 || read_at_us > wi.confirmed_at_us)
    }) {
        let undone = match ActionKind::try_from(wi.kind).unwrap_or_default() {
            ActionKind::Deactivate => {
                (active == Some(true)).then(|| "observed active again".to_owned())
            }
            ActionKind::Delete => {
                Some("observed at the source again after its deletion".to_owned())
            }
            ActionKind::RemoveMembership => memberships
                .contains(&wi.member_external_id)
                .then(|| format!("{} is a member again", wi.member_external_id)),
            ActionKind::AddMembership => (members_complete
                && !memberships.contains(&wi.member_external_id))
            .then(|| format!("{} is no longer a member", wi.member_external_id)),
            _ => None,
        };
        if let Some(why) = undone {
            wi.drifted = true;
            wi.drifted_seq = seq;
            wi.drift_detail = format!("{why} (run {run_id})");
            wi.drift_run_id = run_id.to_owned();
            drifted.push((wi.action_id.clone(), wi.drift_detail.clone()));
        }
    }
    drifted
}

/// Does this observation show an awaiting (UNCONFIRMED, UNVERIFIED or
/// UNVERIFIABLE) action's watched intent in effect? Only what an observation can prove counts: `active=false` for a
/// deactivation, the member listed for an added membership. An absence (a
/// removed membership, a deletion) is not proof: a list may leave members
/// out or cap them. Returns (action id, evidence) per intent shown; those
/// intents are watched for drift from `seq` on.
pub(super) fn check_late(
    watched: &mut [WatchedIntent],
    active: Option<bool>,
    memberships: &[String],
    seq: u64,
    read_at_us: i64,
) -> Vec<(String, String)> {
    let mut shown = Vec::new();
    for wi in watched
        .iter_mut()
        .filter(|wi| wi.awaiting && seq > wi.confirmed_seq)
    {
        let evidence = match ActionKind::try_from(wi.kind).unwrap_or_default() {
            ActionKind::Deactivate => (active == Some(false)).then(|| "active=false".to_owned()),
            ActionKind::AddMembership => memberships
                .contains(&wi.member_external_id)
                .then(|| format!("{} a member", wi.member_external_id)),
            _ => None,
        };
        if let Some(e) = evidence {
            wi.awaiting = false;
            wi.confirmed_seq = seq;
            wi.confirmed_at_us = read_at_us;
            shown.push((wi.action_id.clone(), e));
        }
    }
    shown
}

/// An observation (sync run `run_id`, at `seq`) showed one watched intent of
/// an awaiting action in effect; once all its watches are shown, the action
/// is CONFIRMED (late), its old outcome and reason kept, its open-actions
/// entry (an UNVERIFIED one's) removed, and an alert raised.
pub(super) fn late_confirmed(
    w: &mut Working,
    source_id: &str,
    action_id: &str,
    evidence: &str,
    run_id: &str,
    seq: u64,
) {
    let key = action_id.to_owned();
    let Some(a) = w.actions.get_mut(&key) else {
        return;
    };
    let before = ActionOutcome::try_from(a.outcome).unwrap_or_default();
    if !awaits_late_confirmation(before) || !late_confirmable(&a.steps) {
        return;
    }
    // The observation is evidence of this action: it joins its history, so
    // the action as of any later point (its own events) is confirmed too.
    if let Some(chunk) = note_history(&mut a.recent_seqs, seq) {
        w.action_history.insert((key.clone(), chunk.0), chunk.1);
    }
    let Some(a) = w.actions.get_mut(&key) else {
        return;
    };
    a.late_shown += 1;
    if (a.late_shown as usize) < a.watch.len() {
        return;
    }
    a.unconfirmed_detail = std::mem::take(&mut a.outcome_detail);
    a.outcome = ActionOutcome::Confirmed as i32;
    a.confirmed_late_from = before as i32;
    a.outcome_detail = format!(
        "confirmed late: sync run {run_id} observed it in effect ({evidence}); before, {}: {}",
        before.as_str_name().trim_start_matches("ACTION_OUTCOME_"),
        a.unconfirmed_detail
    );
    a.late_confirmed_seq = seq;
    let message = a.outcome_detail.clone();
    w.open_actions
        .remove(&(source_id.to_owned(), action_id.to_owned()));
    w.blocking_actions
        .remove(&(source_id.to_owned(), action_id.to_owned()));
    w.alerts.push(Alert {
        kind: alert::Kind::ActionConcluded as i32,
        source_id: source_id.to_owned(),
        action_id: action_id.to_owned(),
        run_id: run_id.to_owned(),
        outcome: ActionOutcome::Confirmed as i32,
        message,
        seq,
        ..Default::default()
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn awaiting(kind: ActionKind, member: &str) -> WatchedIntent {
        WatchedIntent {
            action_id: "a1".into(),
            kind: kind as i32,
            member_external_id: member.into(),
            confirmed_seq: 10,
            awaiting: true,
            ..Default::default()
        }
    }

    #[test]
    fn only_an_observation_that_proves_the_intent_confirms_late() {
        let mut w = [awaiting(ActionKind::Deactivate, "")];
        assert!(check_late(&mut w, Some(true), &[], 11, 0).is_empty());
        assert!(
            check_late(&mut w, None, &[], 11, 0).is_empty(),
            "no active flag"
        );
        // An observation before the conclusion proves nothing.
        assert!(check_late(&mut w, Some(false), &[], 9, 0).is_empty());
        let got = check_late(&mut w, Some(false), &[], 12, 0);
        assert_eq!(got, vec![("a1".to_owned(), "active=false".to_owned())]);
        assert!(!w[0].awaiting);
        assert_eq!(w[0].confirmed_seq, 12);
        // From then on it is a drift watch, not confirmed again.
        assert!(check_late(&mut w, Some(false), &[], 13, 0).is_empty());
        assert_eq!(
            check_drift(&mut w, Some(true), &[], true, ("r", 0), 13).len(),
            1
        );

        let mut w = [awaiting(ActionKind::AddMembership, "u1")];
        assert!(check_late(&mut w, None, &["u2".into()], 11, 0).is_empty());
        assert_eq!(check_late(&mut w, None, &["u1".into()], 11, 0).len(), 1);

        // Absence is no proof: a list may leave members out or cap them.
        let mut w = [
            awaiting(ActionKind::RemoveMembership, "u1"),
            awaiting(ActionKind::Delete, ""),
        ];
        assert!(check_late(&mut w, Some(false), &[], 11, 0).is_empty());
        assert!(w.iter().all(|wi| wi.awaiting));
    }

    #[test]
    fn every_outcome_that_showed_nothing_against_the_intent_awaits_an_observation() {
        use ActionOutcome::*;
        for o in [Unconfirmed, Unverified, Unverifiable] {
            assert!(awaits_late_confirmation(o), "{o:?}");
        }
        for o in [Confirmed, Failed, Overdue, Drifted, Pending, Unspecified] {
            assert!(!awaits_late_confirmation(o), "{o:?}");
        }
    }

    #[test]
    fn a_step_no_watch_follows_keeps_an_action_from_being_confirmed_late() {
        let step = |kind: ActionKind, outcome: ActionOutcome| StepOutcome {
            step: 1,
            kind: kind as i32,
            outcome: outcome as i32,
            detail: String::new(),
        };
        use ActionKind::*;
        use ActionOutcome::*;
        assert!(late_confirmable(&[
            step(Deactivate, Unverified),
            step(AddMembership, Unverifiable),
            step(SetAttribute, Confirmed),
        ]));
        assert!(!late_confirmable(&[
            step(Deactivate, Unverified),
            step(SetAttribute, Unverified),
        ]));
    }

    #[test]
    fn only_a_read_after_the_confirmation_shows_drift() {
        // Confirmed at t=1000 (seq 10). A page read at t=900, before the
        // write, whose record is stored after the conclusion (seq 11): not
        // drift (found by the crash and load campaigns: a false DRIFTED). A
        // read at t=1100 that sees it active: drift.
        let mut w = [WatchedIntent {
            awaiting: false,
            confirmed_at_us: 1_000,
            ..awaiting(ActionKind::Deactivate, "")
        }];
        assert!(check_drift(&mut w, Some(true), &[], true, ("old", 900), 11).is_empty());
        assert!(check_drift(&mut w, Some(true), &[], true, ("same", 1_000), 12).is_empty());
        assert!(!w[0].drifted);
        let got = check_drift(&mut w, Some(true), &[], true, ("new", 1_100), 13);
        assert_eq!(got.len(), 1);
        assert!(got[0].1.contains("run new"), "{got:?}");
        // A late confirmation starts the watch at the confirming observation.
        let mut w = [awaiting(ActionKind::Deactivate, "")];
        assert_eq!(check_late(&mut w, Some(false), &[], 11, 2_000).len(), 1);
        assert_eq!(w[0].confirmed_at_us, 2_000);
        assert!(check_drift(&mut w, Some(true), &[], true, ("r", 1_500), 12).is_empty());
        assert_eq!(
            check_drift(&mut w, Some(true), &[], true, ("r2", 2_500), 13).len(),
            1
        );
    }

    #[test]
    fn a_member_missing_from_an_incomplete_list_is_no_drift() {
        let confirmed = |kind, member: &str| WatchedIntent {
            awaiting: false,
            ..awaiting(kind, member)
        };
        let mut w = [confirmed(ActionKind::AddMembership, "u9")];
        assert!(check_drift(&mut w, None, &["u1".into()], false, ("r", 0), 11).is_empty());
        assert!(!w[0].drifted);
        assert_eq!(
            check_drift(&mut w, None, &["u1".into()], true, ("r", 0), 12).len(),
            1
        );
        // A member shown is evidence even in an incomplete list.
        let mut w = [confirmed(ActionKind::RemoveMembership, "u1")];
        assert_eq!(
            check_drift(&mut w, None, &["u1".into()], false, ("r", 0), 11).len(),
            1
        );
    }

    #[test]
    fn an_awaiting_intent_never_drifts() {
        let mut w = [awaiting(ActionKind::Deactivate, "")];
        assert!(check_drift(&mut w, Some(true), &[], true, ("r", 0), 11).is_empty());
        assert!(!w[0].drifted);
    }
}
