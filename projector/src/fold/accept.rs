//! accept-deletions: folding a `DeletionsAccepted`. The first acceptance of a
//! run is kept on it (`RunState.acceptance`); when it names exactly the drops
//! the deletion guard decided, the run is COMPLETE with its drops named as
//! DELETIONS_ACCEPTED ([`crate::verdict::decide_finished`] applies it, so a
//! run decided after its acceptance is judged the same way), and the source
//! counts it as its last COMPLETE (full) run unless a newer one already is.
//!
//! An acceptance never alters the run's events; it is a new fact. It is not
//! one of the run's events either: it does not count toward the events the
//! worker emitted, and it is never LATE_EVENTS.

use govledger_proto::v1::{
    Acceptance, DeletionsAccepted, Event, SourceState, SyncMode, Verdict, alert,
};

use super::{
    Working,
    read::{note_type_read, run_alert},
    records::source_mut,
};
use crate::verdict;

/// A run's deletions were accepted. An acceptance for a run the ledger does
/// not hold, or of another source, changes nothing (it stays in the stream);
/// a second one of the same run is counted and changes nothing else, and so
/// is one not sealed by a trusted producer (provenance, issue 21).
pub(super) fn deletions_accepted(
    w: &mut Working,
    seq: u64,
    ev: &Event,
    a: DeletionsAccepted,
    seal: govledger_stream::seal::SealCheck,
) {
    let Some(run) = w.runs.get_mut(&ev.run_id) else {
        return;
    };
    if run.source_id != ev.source_id {
        return;
    }
    if run.acceptance.is_some() || seal.status != govledger_proto::v1::SealStatus::Verified {
        run.acceptances_ignored += 1;
        return;
    }
    run.acceptance = Some(Acceptance {
        run_id: ev.run_id.clone(),
        accepted: Some(a),
        accepted_at_us: ev.occurred_at_us,
        seq,
    });
    if !run.decided {
        // Applied when the run is decided (decide_finished reads it).
        return;
    }
    let (v, reasons) = verdict::decide_finished(run);
    if !(v == Verdict::Complete && run.verdict != Verdict::Complete as i32) {
        // It does not name the run's drops (or the run is not SUSPECT): kept,
        // nothing else changes.
        return;
    }
    run.verdict = v as i32;
    run.reasons = reasons;
    let run = run.clone();
    w.alerts
        .push(run_alert(alert::Kind::DeletionsAccepted, &run, seq));
    let src = source_mut(w, ev);
    promote(src, &run);
}

/// The source after one of its decided runs became COMPLETE by an
/// acceptance: its last finished verdict if it is the last finished run, and
/// its last COMPLETE (full, per type) run wherever no newer one is recorded.
fn promote(src: &mut SourceState, run: &govledger_proto::v1::RunState) {
    if src.last_finished_run_id == run.run_id {
        src.last_finished_verdict = Verdict::Complete as i32;
        src.consecutive_failures = 0;
    }
    if src.last_complete_run_id.is_empty() || run.finished_at_us >= src.last_complete_at_us {
        src.last_complete_run_id.clone_from(&run.run_id);
        src.last_complete_at_us = run.finished_at_us;
    }
    if run.mode == SyncMode::Full as i32 {
        if src.last_complete_full_run_id.is_empty()
            || run.first_seq > src.last_complete_full_first_seq
        {
            src.last_complete_full_run_id.clone_from(&run.run_id);
            src.last_complete_full_first_seq = run.first_seq;
            src.last_complete_unique = run.records_unique;
        }
        for t in crate::deletion_guard::types_read(run) {
            let newer = src
                .last_complete_full_by_type
                .iter()
                .find(|c| c.entity_type == t)
                .is_none_or(|c| c.run_id.is_empty() || run.first_seq > c.first_seq);
            if newer {
                note_type_read(src, t, &run.run_id, run.first_seq);
            }
        }
    }
    if let Some(a) = &run.acceptance {
        note_acceptance(src, a.clone());
    }
}

/// Counts an acceptance that made a run of the source COMPLETE and keeps it
/// as the source's last one.
pub(super) fn note_acceptance(src: &mut SourceState, a: Acceptance) {
    src.deletions_accepted_total += 1;
    let newer = src
        .last_acceptance
        .as_ref()
        .is_none_or(|last| a.seq >= last.seq);
    if newer {
        src.last_acceptance = Some(a);
    }
}
