//! The records an event touches, got or created: its source, run, action and
//! identity, and the history chunks their recent sequences spill into.

use govledger_proto::v1::{ActionState, Event, IdentityState, RunState, SourceState};

use super::{IdentityPages, Table, Working};
use crate::keys::IdentityKey;

/// A new identity record for `key`, first seen at `first_seen_at_us` (0 =
/// not observed yet). It takes the next number of its source and with it its
/// page for good ([`crate::identity_page`]), noted in `pages`: the commit
/// writes it under the identity's key. (The page is no part of the record,
/// which stays a function of the identity's own events.)
pub(super) fn new_identity(
    sources: &mut Table<String, SourceState>,
    pages: &mut IdentityPages,
    key: &IdentityKey,
    first_seen_at_us: i64,
) -> IdentityState {
    // The event's source record is inserted at the top of fold_body already.
    let src = sources.get_or_insert_with(&key.0, || SourceState {
        source_id: key.0.clone(),
        ..Default::default()
    });
    let n = src.identities_total;
    src.identities_total += 1;
    pages.insert(key.clone(), (crate::identity_page::page_of(n), true));
    IdentityState {
        source_id: key.0.clone(),
        entity_type: key.1,
        external_id: key.2.clone(),
        first_seen_at_us,
        ..Default::default()
    }
}

pub(super) fn source_mut<'w>(w: &'w mut Working, ev: &Event) -> &'w mut SourceState {
    // Inserted at the top of fold_event for every event.
    w.sources.get_or_insert_with(&ev.source_id, || SourceState {
        source_id: ev.source_id.clone(),
        ..Default::default()
    })
}

pub(super) fn run_mut<'w>(w: &'w mut Working, ev: &Event, seq: u64) -> &'w mut RunState {
    let run = w.runs.get_or_insert_with(&ev.run_id, || RunState {
        run_id: ev.run_id.clone(),
        source_id: ev.source_id.clone(),
        first_seq: seq,
        ..Default::default()
    });
    run.last_seq = seq;
    run.last_event_at_us = run.last_event_at_us.max(ev.occurred_at_us);
    run
}

/// The action's record, created (and counted at its source) by whichever of its
/// events comes first.
pub(super) fn action_mut<'w>(w: &'w mut Working, ev: &Event, seq: u64) -> &'w mut ActionState {
    if w.actions.get(&ev.action_id).is_none() {
        source_mut(w, ev).actions_total += 1;
        let key = (ev.source_id.clone(), ev.action_id.clone());
        w.source_actions.insert(key.clone(), ());
        w.blocking_actions.insert(key.clone(), ());
        w.open_actions.insert(key, ());
    }
    let a = w.actions.get_or_insert_with(&ev.action_id, || ActionState {
        action_id: ev.action_id.clone(),
        source_id: ev.source_id.clone(),
        first_seq: seq,
        ..Default::default()
    });
    a.last_seq = seq;
    if let Some(chunk) = note_history(&mut a.recent_seqs, seq) {
        w.action_history
            .insert((ev.action_id.clone(), chunk.0), chunk.1);
    }
    a
}

/// Stream sequences kept in a record's `recent_seqs` before they move to a
/// history chunk (one chunk write per this many events, not one per event).
pub const HISTORY_INLINE_MAX: usize = 16;

/// Appends `seq` to a record's recent history; when that is full, returns the
/// chunk to write (its first sequence and the packed sequences) and starts anew.
pub(super) fn note_history(recent: &mut Vec<u64>, seq: u64) -> Option<(u64, Vec<u8>)> {
    let out = (recent.len() >= HISTORY_INLINE_MAX).then(|| {
        let chunk = std::mem::take(recent);
        (chunk[0], crate::keys::pack_seqs(&chunk))
    });
    recent.push(seq);
    out
}
