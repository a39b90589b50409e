//! Folding one message: its leaf, poison or duplicate handling, and the
//! dispatch of its body to the read or write path.

use govledger_proto::v1::{Event, PoisonEvent, SourceState, event::Body};
use sha2::{Digest as _, Sha256};

use super::{Working, accept, read, read::after_run_event, write};

/// One stream message as the fold sees it.
#[derive(Debug, Clone)]
pub struct StreamMsg<'a> {
    pub seq: u64,
    pub subject: &'a str,
    /// The stream's timestamp of the message, Unix microseconds.
    pub stored_at_us: i64,
    pub payload: &'a [u8],
    /// The message's leaf hash, if already computed (see `OwnedMsg::leaf`).
    pub leaf: Option<crate::merkle::Hash>,
}

/// What folding one message did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    Event,
    /// Sequence at or below the last applied one: ignored.
    AlreadyApplied,
    /// An event id seen before at another sequence: counted, nothing else changes.
    DuplicateEventId,
    Poison,
}

/// Folds one stream message. `decoded` is [`decode`](super::decode)'s answer for it (taken:
/// its strings move into the records instead of being copied).
pub fn apply(w: &mut Working, msg: &StreamMsg<'_>, decoded: Result<Event, String>) -> Applied {
    if msg.seq <= w.meta.last_applied_seq {
        return Applied::AlreadyApplied;
    }
    w.meta.last_applied_seq = msg.seq;
    w.meta_dirty = true;
    // Every stored message is a leaf, whatever it holds: the tree commits to the stream.
    let leaf = msg
        .leaf
        .unwrap_or_else(|| crate::merkle::leaf_hash(msg.seq, msg.payload));
    w.merkle.push(leaf);
    let (block, at) = crate::keys::leaf_slot(msg.seq);
    debug_assert!(
        w.leaves.is_loaded(&block),
        "needs_seq() missed a leaf block"
    );
    let b = w.leaves.get_or_insert_with(&block, Vec::new);
    // A fold of a filtered slice (point-in-time) skips sequences: zeros = not held.
    b.resize(at, 0);
    b.extend_from_slice(&leaf);
    let ev = match decoded {
        Ok(ev) => ev,
        Err(e) => {
            w.meta.poison_events += 1;
            w.poison.insert(
                msg.seq,
                PoisonEvent {
                    seq: msg.seq,
                    subject: msg.subject.to_owned(),
                    error: e,
                    payload_len: msg.payload.len() as u64,
                    payload_sha256: hex(&Sha256::digest(msg.payload)),
                    stored_at_us: msg.stored_at_us,
                },
            );
            return Applied::Poison;
        }
    };
    if !record_event_id(w, &ev.event_id, msg.seq) {
        w.meta.duplicate_events += 1;
        return Applied::DuplicateEventId;
    }
    w.meta.events_applied += 1;
    fold_event(w, msg.seq, ev, &leaf);
    Applied::Event
}

pub(super) fn block_full(block: &[u8]) -> bool {
    block.len() >= crate::keys::EVENT_BLOCK_IDS_MAX * 16
}

/// Records that event `id` was applied at `seq`; `false` if it was before (a
/// duplicate). A UUID v7 goes into its block until the block is full, then
/// into a record of its own; any other id into a record of its own.
///
/// An id of a full block that has no record loaded is absent: [`needs_after_load`]
/// loads the records of blocks that were full before the batch, and an id
/// cannot have a record while its block was not yet full.
fn record_event_id(w: &mut Working, id: &str, seq: u64) -> bool {
    if let Some((block, bytes)) = crate::keys::event_block_of(id) {
        debug_assert!(
            w.event_blocks.is_loaded(&block),
            "needs() missed event block"
        );
        let (held, full) = match w.event_blocks.get(&block) {
            Some(b) => (crate::keys::event_block_holds(b, &bytes), block_full(b)),
            None => (false, false),
        };
        if held || (full && w.event_ids.get(id).is_some()) {
            return false;
        }
        if !full {
            w.event_blocks
                .get_or_insert_with(&block, Vec::new)
                .extend_from_slice(&bytes);
            return true;
        }
    } else {
        debug_assert!(w.event_ids.is_loaded(id), "needs() missed event id");
        if w.event_ids.get(id).is_some() {
            return false;
        }
    }
    w.event_ids.insert(id.to_owned(), seq);
    true
}

fn fold_event(w: &mut Working, seq: u64, mut ev: Event, leaf: &crate::merkle::Hash) {
    // Seals are checked on the full event, before its body moves out.
    let seal = match ev.body.as_ref() {
        Some(Body::SyncRunFinished(_)) => Some(read::run_seal(w, &ev)),
        Some(Body::ActionConcluded(_) | Body::DeletionsAccepted(_)) => {
            Some(w.trust.check_event(&ev))
        }
        _ => None,
    };
    let Some(body) = ev.body.take() else { return };
    let read_path = is_read_path(&body);
    fold_body(w, seq, &ev, body, seal.unwrap_or_default());
    if !ev.run_id.is_empty() && read_path {
        after_run_event(w, &ev, leaf);
    }
}

/// Whether `body` is a sync (read-path) event: the events a run's seal covers
/// (all but its `SyncRunFinished`).
pub fn is_read_path(body: &Body) -> bool {
    matches!(
        body,
        Body::SyncRunStarted(_)
            | Body::PageFetched(_)
            | Body::PageFailed(_)
            | Body::RecordObserved(_)
            | Body::RecordRejected(_)
            | Body::SyncRunFinished(_)
    )
}

/// Counts the event at its source, then folds its body (with what its seal
/// check found, for the bodies whose seal decides something): one function per kind
/// ([`read`] for the sync events, [`write`] for the action events, [`accept`]
/// for an acceptance of a run's deletions).
fn fold_body(
    w: &mut Working,
    seq: u64,
    ev: &Event,
    body: Body,
    seal: govledger_stream::seal::SealCheck,
) {
    let at = ev.occurred_at_us;
    {
        let src = w.sources.get_or_insert_with(&ev.source_id, || SourceState {
            source_id: ev.source_id.clone(),
            first_seq: seq,
            ..Default::default()
        });
        src.last_seq = seq;
        src.last_event_at_us = src.last_event_at_us.max(at);
        src.events_total += 1;
    }
    match body {
        Body::SyncRunStarted(s) => read::run_started(w, seq, ev, &s),
        Body::PageFetched(p) => read::page_fetched(w, seq, ev, &p),
        Body::PageFailed(p) => read::page_failed(w, seq, ev, &p),
        Body::RecordObserved(r) => read::record_observed(w, seq, ev, r),
        Body::RecordRejected(r) => read::record_rejected(w, seq, ev, &r),
        Body::SyncRunFinished(f) => read::run_finished(w, seq, ev, &f, seal),
        Body::ActionRequested(r) => {
            write::action_requested(w, seq, ev, &r);
            write::note_on_target(w, ev, seq);
        }
        Body::ActionAttempted(t) => {
            write::action_attempted(w, seq, ev, &t);
            write::note_on_target(w, ev, seq);
        }
        Body::ActionVerified(v) => {
            write::action_verified(w, seq, ev, &v);
            write::note_on_target(w, ev, seq);
        }
        Body::ActionConcluded(c) => {
            write::conclude_action(w, ev, seq, at, &c, seal);
            write::note_on_target(w, ev, seq);
        }
        Body::DeletionsAccepted(a) => {
            accept::deletions_accepted(w, seq, ev, a, seal);
        }
    }
}

/// `bytes` as lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(HEX[(b >> 4) as usize] as char);
        s.push(HEX[(b & 15) as usize] as char);
    }
    s
}
