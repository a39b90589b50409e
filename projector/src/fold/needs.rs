//! What a batch must load before folding: each message decoded and checked,
//! and the keys folding it may read.

use govledger_proto::v1::{Event, event::Body};
use prost::Message as _;

use super::{
    StreamMsg, Working,
    apply::{block_full, is_read_path},
};
use crate::keys::Key;

/// A decoded message, or why it cannot be folded.
pub fn decode(msg: &StreamMsg<'_>) -> Result<Event, String> {
    let ev = Event::decode(msg.payload).map_err(|e| format!("not a govledger.v1.Event: {e}"))?;
    if ev.schema_version > govledger_proto::SCHEMA_VERSION {
        return Err(format!(
            "schema_version {} is newer than this build understands ({}); upgrade govledger",
            ev.schema_version,
            govledger_proto::SCHEMA_VERSION
        ));
    }
    if ev.event_id.is_empty() {
        return Err("event without event_id".into());
    }
    let Some(body) = &ev.body else {
        return Err("event without a body (unknown event kind?)".into());
    };
    if ev.source_id.is_empty() {
        return Err("event without source_id".into());
    }
    let read_path = is_read_path(body);
    if read_path && ev.run_id.is_empty() {
        return Err("read-path event without run_id".into());
    }
    if let Body::DeletionsAccepted(_) = body {
        if ev.run_id.is_empty() {
            return Err("DeletionsAccepted without run_id (the run it accepts)".into());
        }
    } else if !read_path && ev.action_id.is_empty() {
        return Err("write-path event without action_id".into());
    }
    if let Body::RecordObserved(r) = body
        && r.external_id.is_empty()
    {
        return Err("RecordObserved without external_id (should be RecordRejected)".into());
    }
    Ok(ev)
}

/// The source and run keys a batch's [`needs`] calls pushed last: the events
/// of a batch mostly share both, and a key equal to the last one pushed is
/// not pushed (nor its string copied) again.
#[derive(Debug, Default)]
pub struct LastPushed<'e> {
    source: Option<&'e str>,
    run: Option<&'e str>,
}

/// The keys folding `ev` may read, so the caller can preload them. `last`
/// carries over from the previous event of the same batch (a fresh one is
/// always correct: it only means repeated keys).
pub fn needs<'e>(ev: &'e Event, last: &mut LastPushed<'e>, out: &mut Vec<Key>) {
    match crate::keys::event_block_of(&ev.event_id) {
        Some((block, _)) => out.push(Key::EventBlock(block)),
        None => out.push(Key::EventId(ev.event_id.clone())),
    };
    if last.source != Some(ev.source_id.as_str()) {
        out.push(Key::Source(ev.source_id.clone()));
        last.source = Some(&ev.source_id);
    }
    let mut push_run = |out: &mut Vec<Key>| {
        if last.run != Some(ev.run_id.as_str()) {
            out.push(Key::Run(ev.run_id.clone()));
            last.run = Some(&ev.run_id);
        }
    };
    let Some(body) = &ev.body else { return };
    match body {
        Body::SyncRunStarted(_)
        | Body::RecordRejected(_)
        | Body::SyncRunFinished(_)
        | Body::DeletionsAccepted(_) => {
            push_run(out);
        }
        Body::PageFetched(p) => {
            push_run(out);
            out.push(Key::Page(ev.run_id.clone(), p.page_key.clone()));
            if !p.next_page_key.is_empty() {
                out.push(Key::Page(ev.run_id.clone(), p.next_page_key.clone()));
            }
        }
        Body::PageFailed(p) => {
            push_run(out);
            out.push(Key::Page(ev.run_id.clone(), p.page_key.clone()));
        }
        Body::RecordObserved(r) => {
            push_run(out);
            out.push(Key::Identity((
                ev.source_id.clone(),
                r.entity_type,
                r.external_id.clone(),
            )));
        }
        Body::ActionRequested(r) => {
            action_keys(ev, out);
            // Its events are chained into the identity's history.
            if let Some(key) = super::write::target_of(&ev.source_id, r) {
                out.push(Key::Identity(key));
            }
        }
        Body::ActionAttempted(_) | Body::ActionVerified(_) => {
            action_keys(ev, out);
        }
        Body::ActionConcluded(c) => {
            action_keys(ev, out);
            for wi in &c.watch {
                out.push(Key::Identity((
                    ev.source_id.clone(),
                    wi.entity_type,
                    wi.external_id.clone(),
                )));
            }
        }
    }
}

/// The keys folding a batch's `events` may read that depend on records
/// [`needs`] named: the run that last observed each identity (is it still
/// open?), for a run with spilled run-seen records the identity's record of
/// it, the own records of ids whose block is full, each source's last
/// COMPLETE full run of each entity type (the deletion guard's per-type
/// baseline), and the
/// UNCONFIRMED actions watched on each identity (an observation may confirm
/// them late), and the identity an action requested before the batch is
/// chained into. Call with the
/// [`needs`] keys loaded. Keys that change inside the batch are covered: a run
/// that last observed an identity earlier in the batch is loaded through
/// [`needs`], and run-seen records spilled in the batch are in the working set.
pub fn needs_after_load<'e>(
    w: &Working,
    events: impl IntoIterator<Item = &'e Event>,
    out: &mut Vec<Key>,
) {
    for ev in events {
        // A full event-id block: ids past it have records of their own.
        if let Some((block, _)) = crate::keys::event_block_of(&ev.event_id)
            && w.event_blocks.get(&block).is_some_and(|b| block_full(b))
        {
            out.push(Key::EventId(ev.event_id.clone()));
        }
        // The identity an earlier-requested action's event is chained into.
        if matches!(
            &ev.body,
            Some(Body::ActionAttempted(_) | Body::ActionVerified(_) | Body::ActionConcluded(_))
        ) && let Some(key) = w
            .actions
            .get(&ev.action_id)
            .and_then(|a| a.request.as_ref())
            .and_then(|r| super::write::target_of(&ev.source_id, r))
            && !w.identities.is_loaded(&key)
        {
            out.push(Key::Identity(key));
        }
        if let Some(Body::RecordObserved(r)) = &ev.body
            && w.runs.get(&ev.run_id).is_some_and(|r| r.seen_spilled > 0)
        {
            out.push(Key::RunSeen((
                ev.run_id.clone(),
                r.entity_type,
                r.external_id.clone(),
            )));
        }
    }
    for i in w.identities.values() {
        if !i.last_observed_run_id.is_empty() && !w.runs.is_loaded(&i.last_observed_run_id) {
            out.push(Key::Run(i.last_observed_run_id.clone()));
        }
        // An UNCONFIRMED action an observation of this identity may confirm late.
        for wi in i.watched.iter().filter(|wi| wi.awaiting) {
            if !w.actions.is_loaded(&wi.action_id) {
                out.push(Key::Action(wi.action_id.clone()));
            }
        }
    }
    // The deletion guard's baseline: a run decided in this batch is judged,
    // type by type, against its source's last COMPLETE full run that read
    // the type.
    for s in w.sources.values() {
        let by_type = s.last_complete_full_by_type.iter().map(|t| &t.run_id);
        for run_id in by_type {
            if !run_id.is_empty() && !w.runs.is_loaded(run_id) {
                out.push(Key::Run(run_id.clone()));
            }
        }
    }
}

/// The leaf block a message at `seq` writes to (whatever the message holds).
pub fn needs_seq(seq: u64, out: &mut Vec<Key>) {
    out.push(Key::Leaves(crate::keys::leaf_slot(seq).0));
}

/// The action record and its two per-source indexes.
fn action_keys(ev: &Event, out: &mut Vec<Key>) {
    out.push(Key::Action(ev.action_id.clone()));
    out.push(Key::SourceAction(
        ev.source_id.clone(),
        ev.action_id.clone(),
    ));
    out.push(Key::OpenAction(ev.source_id.clone(), ev.action_id.clone()));
}
