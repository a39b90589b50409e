//! Folding the ledger: the events in stream order become the projections that
//! answer "is this data complete, is it fresh, did each action take effect".
//!
//! The stream contract, backoff and failpoints come from `govledger-stream`;
//! this crate does not depend on `govledger-ingest` (nor its HTTP stack).
//!
//! Layout:
//! - [`fold`]: the pure, deterministic fold (no I/O, no clock);
//! - [`verdict`]: pure verdict and presence rules;
//! - [`deletion_guard`]: the pure deletion guard (R8), judged per entity type;
//! - [`keys`]: the key layout of the one sled tree;
//! - [`identity_page`]: identity records kept several to a sled record (pure);
//! - [`identity_index`]: the index from identity key to page number, kept in chunks (pure);
//! - [`identity_map`]: the commitment to every identity's whole history, signed with each checkpoint (pure);
//! - [`merkle`]: RFC 6962 Merkle trees over the stream: hashes, inclusion and consistency proofs (pure);
//! - [`tiles`]: the same tree as tlog tiles kept in sled: proofs in O(log n) tile reads;
//! - [`store`]: the sled store (atomic batch commit with the last applied sequence);
//! - [`runner`]: the JetStream durable pull consumer loop (ack only after commit);
//! - [`metrics`]: what the runner counts for `/metrics`.
#![forbid(unsafe_code)]

pub mod deletion_guard;
pub mod fold;
pub mod identity_index;
pub mod identity_map;
pub mod identity_page;
pub mod keys;
pub mod merkle;
pub mod metrics;
pub mod runner;
pub mod store;
pub mod tiles;
pub mod verdict;

use bytes::Bytes;
use govledger_proto::v1::{LedgerMeta, PoisonEvent};

pub use store::Store;

/// A stream message the projector holds on to while it folds a batch.
#[derive(Debug, Clone)]
pub struct OwnedMsg {
    pub seq: u64,
    pub subject: String,
    pub stored_at_us: i64,
    pub payload: Bytes,
    /// `merkle::leaf_hash(seq, payload)` when whoever made the message
    /// computed it already (the runner's fetch task does, off the fold's
    /// thread); `None`: the fold computes it.
    pub leaf: Option<merkle::Hash>,
}

impl OwnedMsg {
    pub fn as_stream_msg(&self) -> fold::StreamMsg<'_> {
        fold::StreamMsg {
            seq: self.seq,
            subject: &self.subject,
            stored_at_us: self.stored_at_us,
            payload: &self.payload,
            leaf: self.leaf,
        }
    }
}

/// What one committed batch did.
#[derive(Debug, Default)]
pub struct BatchOutcome {
    pub applied: usize,
    pub skipped: usize,
    pub duplicates: usize,
    pub poison: Vec<PoisonEvent>,
    /// Decisions made by this batch (runs decided, actions concluded, drift).
    pub alerts: Vec<govledger_proto::v1::Alert>,
}

/// Folds `msgs` (in stream order) into `store` as one atomic commit that also
/// records the last applied sequence. `meta` is the projector's copy of the
/// store's meta record and is updated on success. Does not flush.
pub fn process_batch(
    store: &Store,
    meta: &mut LedgerMeta,
    msgs: &[OwnedMsg],
) -> Result<BatchOutcome, store::StoreError> {
    let folded = fold_batch(store, meta, msgs)?;
    commit_folded(store, meta, folded)
}

/// Commits what [`fold_batch`] made of a batch (nothing for redeliveries) and
/// updates `meta` on success. Does not flush.
pub fn commit_folded(
    store: &Store,
    meta: &mut LedgerMeta,
    folded: Folded,
) -> Result<BatchOutcome, store::StoreError> {
    match folded {
        Folded::Nothing { skipped } => Ok(BatchOutcome {
            skipped,
            ..Default::default()
        }),
        Folded::Batch(b) => {
            store.commit_with_alerts(&b.working, &b.outcome.alerts)?;
            *meta = b.meta;
            Ok(b.outcome)
        }
    }
}

/// A batch folded but not committed yet.
#[derive(Debug)]
pub struct FoldedBatch {
    /// Every record the batch read or wrote; [`Store::commit`] writes the changed ones.
    pub working: fold::Working,
    /// The meta record once this batch is committed.
    pub meta: LedgerMeta,
    pub outcome: BatchOutcome,
}

/// What [`fold_batch`] made of a batch.
#[derive(Debug)]
pub enum Folded {
    /// Every message was applied before (redeliveries): nothing to commit.
    Nothing {
        skipped: usize,
    },
    Batch(Box<FoldedBatch>),
}

/// Folds `msgs` (in stream order) on top of the state after `meta` (what
/// `store` holds), without writing anything.
pub fn fold_batch(
    store: &Store,
    meta: &LedgerMeta,
    msgs: &[OwnedMsg],
) -> Result<Folded, store::StoreError> {
    let mut out = BatchOutcome::default();
    let fresh: Vec<&OwnedMsg> = msgs
        .iter()
        .filter(|m| m.seq > meta.last_applied_seq)
        .collect();
    out.skipped = msgs.len() - fresh.len();
    if fresh.is_empty() {
        return Ok(Folded::Nothing {
            skipped: out.skipped,
        });
    }
    let decoded: Vec<_> = fresh
        .iter()
        .map(|m| fold::decode(&m.as_stream_msg()))
        .collect();
    let mut needs = Vec::with_capacity(fresh.len() * 4);
    let mut last = fold::LastPushed::default();
    for ev in decoded.iter().flatten() {
        fold::needs(ev, &mut last, &mut needs);
    }
    for m in &fresh {
        fold::needs_seq(m.seq, &mut needs);
    }
    let mut w = fold::Working::continuing(meta);
    w.trust = store.trust().clone();
    store.load_into(&mut w, needs)?;
    let mut more = Vec::new();
    fold::needs_after_load(&w, decoded.iter().flatten(), &mut more);
    store.load_into(&mut w, more)?;
    for (m, d) in fresh.iter().zip(decoded) {
        match fold::apply(&mut w, &m.as_stream_msg(), d) {
            fold::Applied::Event => out.applied += 1,
            fold::Applied::AlreadyApplied => out.skipped += 1,
            fold::Applied::DuplicateEventId => out.duplicates += 1,
            fold::Applied::Poison => {
                if let Some(p) = w.poison.get(&m.seq) {
                    out.poison.push(p.clone());
                }
            }
        }
    }
    out.alerts = std::mem::take(&mut w.alerts);
    // A poison event is a decision too: it is alerted (and stored) once.
    for p in &out.poison {
        out.alerts.push(govledger_proto::v1::Alert {
            kind: govledger_proto::v1::alert::Kind::PoisonEvent as i32,
            seq: p.seq,
            message: format!(
                "stream message {} on {} cannot be folded ({}); it is kept and listed by ListPoisonEvents",
                p.seq, p.subject, p.error
            ),
            ..Default::default()
        });
    }
    Ok(Folded::Batch(Box::new(FoldedBatch {
        meta: w.meta_record(),
        working: w,
        outcome: out,
    })))
}

/// How many leading messages of `msgs` can be processed: those at or below
/// `last_applied` (redeliveries, skipped) and those that continue the sequence
/// without a gap. Processing stops at the first gap.
pub fn contiguous_prefix(msgs: &[OwnedMsg], last_applied: u64) -> usize {
    let mut next = last_applied + 1;
    for (i, m) in msgs.iter().enumerate() {
        if m.seq < next {
            continue;
        }
        if m.seq != next {
            return i;
        }
        next += 1;
    }
    msgs.len()
}

/// Folds `msgs` entirely in memory: the reference model the sled path is checked
/// against. Every key a message needs that is not held yet is absent.
pub fn fold_in_memory(w: &mut fold::Working, msgs: &[OwnedMsg]) {
    for m in msgs {
        let sm = m.as_stream_msg();
        let d = fold::decode(&sm);
        let mut needs = Vec::new();
        fold::needs_seq(m.seq, &mut needs);
        if let Ok(ev) = &d {
            fold::needs(ev, &mut fold::LastPushed::default(), &mut needs);
        }
        w.load_absent(&needs);
        fold::apply(w, &sm, d);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msgs(seqs: &[u64]) -> Vec<OwnedMsg> {
        seqs.iter()
            .map(|&seq| OwnedMsg {
                seq,
                subject: String::new(),
                stored_at_us: 0,
                payload: Bytes::new(),
                leaf: None,
            })
            .collect()
    }

    #[test]
    fn contiguous_prefix_stops_at_gaps() {
        let check = |seqs: &[u64], last: u64, want: usize| {
            assert_eq!(
                contiguous_prefix(&msgs(seqs), last),
                want,
                "{seqs:?} after {last}"
            );
        };
        check(&[], 0, 0);
        check(&[1, 2, 3], 0, 3);
        check(&[2, 3], 0, 0);
        check(&[1, 2, 4, 5], 0, 2);
        check(&[3, 4, 5, 6], 4, 4); // redelivered 3 and 4 are skipped, 5 and 6 follow
        check(&[5, 7], 4, 1);
        check(&[1, 1, 2], 0, 3); // a repeated delivery is below `next` the second time
    }

    /// An action requested with no entity type targets the user (as the
    /// API reads it): it is indexed on that identity, and each of its events
    /// is chained into the identity's committed history, once.
    #[test]
    fn an_actions_events_join_its_target_users_history() {
        use govledger_proto::v1::{
            ActionAttempted, ActionRequested, EntityType, Event, RecordObserved, event::Body,
        };
        use prost::Message as _;
        let ev = |n: u32, body: Body| Event {
            event_id: format!("00000000-0000-7000-8000-{n:012}"),
            source_id: "hr".into(),
            run_id: "r1".into(),
            action_id: if n > 1 { "a1".into() } else { String::new() },
            body: Some(body),
            ..Default::default()
        };
        let events = [
            ev(
                1,
                Body::RecordObserved(RecordObserved {
                    entity_type: EntityType::User as i32,
                    external_id: "u1".into(),
                    ..Default::default()
                }),
            ),
            ev(
                2,
                Body::ActionRequested(ActionRequested {
                    identity_external_id: "u1".into(),
                    ..Default::default()
                }),
            ),
            ev(3, Body::ActionAttempted(ActionAttempted::default())),
        ];
        let msgs: Vec<OwnedMsg> = events
            .iter()
            .zip(1u64..)
            .map(|(e, seq)| OwnedMsg {
                seq,
                subject: String::new(),
                stored_at_us: 0,
                payload: e.encode_to_vec().into(),
                leaf: None,
            })
            .collect();
        let mut w = fold::Working::default();
        fold_in_memory(&mut w, &msgs);
        let key = ("hr".to_owned(), EntityType::User as i32, "u1".to_owned());
        assert!(
            w.identity_actions
                .get(&(key.clone(), "a1".into()))
                .is_some()
        );
        let u1 = w.identities.get(&key).unwrap();
        assert_eq!((u1.history_count, u1.history_last_seq), (3, 3));
        let mut want = govledger_proto::v1::IdentityState::default();
        for seq in 1..=3 {
            crate::identity_map::note(&mut want, seq);
            crate::identity_map::note(&mut want, seq); // once only
        }
        assert_eq!(u1.history_head, want.history_head);
    }

    #[test]
    fn needs_names_a_batchs_shared_source_and_run_once() {
        use crate::keys::Key;
        use govledger_proto::v1::{Event, RecordObserved, event::Body};
        let observed = |run: &str, id: &str| Event {
            event_id: format!("ev-{run}-{id}"),
            source_id: "hr".into(),
            run_id: run.into(),
            body: Some(Body::RecordObserved(RecordObserved {
                external_id: id.into(),
                ..Default::default()
            })),
            ..Default::default()
        };
        let events = [
            observed("r1", "a"),
            observed("r1", "b"),
            observed("r2", "c"),
            observed("r1", "d"),
        ];
        let mut last = fold::LastPushed::default();
        let mut keys = Vec::new();
        for ev in &events {
            fold::needs(ev, &mut last, &mut keys);
        }
        let count = |want: &Key| keys.iter().filter(|k| *k == want).count();
        assert_eq!(count(&Key::Source("hr".into())), 1, "{keys:?}");
        // A run is named again only after another run's event came between.
        assert_eq!(count(&Key::Run("r1".into())), 2, "{keys:?}");
        assert_eq!(count(&Key::Run("r2".into())), 1, "{keys:?}");
        for id in ["a", "b", "c", "d"] {
            let identity = Key::Identity(("hr".into(), 0, id.into()));
            assert_eq!(count(&identity), 1, "{id}: {keys:?}");
        }
        // A fresh `LastPushed` (the in-memory fold's, per message) names them again.
        let mut alone = Vec::new();
        fold::needs(&events[1], &mut fold::LastPushed::default(), &mut alone);
        assert!(alone.contains(&Key::Source("hr".into())), "{alone:?}");
        assert!(alone.contains(&Key::Run("r1".into())), "{alone:?}");
    }
}

#[cfg(test)]
mod order_tests {
    use super::*;
    use govledger_proto::v1::{
        EngineOutcome, Event, PageFetched, RecordObserved, SyncMode, SyncRunFinished,
        SyncRunStarted, Verdict, event::Body,
    };
    use prost::Message as _;

    fn ev(n: u64, body: Body) -> Event {
        Event {
            event_id: format!("00000000-0000-7000-8000-{n:012x}"),
            source_id: "hr".into(),
            run_id: "run-1".into(),
            schema_version: 1,
            occurred_at_us: n as i64,
            body: Some(body),
            ..Default::default()
        }
    }

    fn msgs(events: &[Event]) -> Vec<OwnedMsg> {
        events
            .iter()
            .enumerate()
            .map(|(i, e)| OwnedMsg {
                seq: i as u64 + 1,
                subject: String::new(),
                stored_at_us: 0,
                payload: e.encode_to_vec().into(),
                leaf: None,
            })
            .collect()
    }

    /// The tests' producer key and a working set that trusts it.
    fn key() -> govledger_stream::seal::ProducerKey {
        govledger_stream::seal::ProducerKey::from_seed([3; 32])
    }

    fn trusting() -> fold::Working {
        fold::Working {
            trust: std::sync::Arc::new(govledger_stream::seal::Trust::new([key().public_key()])),
            ..Default::default()
        }
    }

    /// `events` with each finish sealed, as a producer sees them stored in
    /// this order: over the run's events stored before it.
    fn sealed(events: &[Event]) -> Vec<Event> {
        let mut out: Vec<Event> = Vec::new();
        for e in events {
            let mut e = e.clone();
            if matches!(e.body, Some(Body::SyncRunFinished(_))) {
                let leaves = out
                    .iter()
                    .enumerate()
                    .filter(|(_, p)| !matches!(p.body, Some(Body::SyncRunFinished(_))))
                    .map(|(i, p)| {
                        let seq = i as u64 + 1;
                        (seq, govledger_stream::seal::leaf(seq, &p.encode_to_vec()))
                    })
                    .collect::<Vec<_>>();
                let n = leaves.len() as u64;
                key().seal_run(&mut e, n, govledger_stream::seal::chain_of(leaves));
            }
            out.push(e);
        }
        out
    }

    fn run_of(events: &[Event]) -> (fold::Working, govledger_proto::v1::RunState) {
        let mut w = trusting();
        fold_in_memory(&mut w, &msgs(&sealed(events)));
        let r = w.runs.get(&"run-1".to_owned()).cloned().unwrap();
        (w, r)
    }

    /// A finish that reaches the stream before the run's last records (a resend
    /// after a NATS outage) waits for them, then decides on all of them.
    #[test]
    fn verdict_waits_for_events_that_arrive_after_the_finish() {
        let start = ev(
            1,
            Body::SyncRunStarted(SyncRunStarted {
                mode: SyncMode::Full as i32,
                declared_total: Some(2),
                ..Default::default()
            }),
        );
        let page = ev(
            2,
            Body::PageFetched(PageFetched {
                page_key: "p1".into(),
                declared_total: Some(2),
                item_count: 2,
                ..Default::default()
            }),
        );
        let rec = |n: u64| {
            ev(
                n,
                Body::RecordObserved(RecordObserved {
                    external_id: format!("u{n}"),
                    ..Default::default()
                }),
            )
        };
        let finish = ev(
            9,
            Body::SyncRunFinished(SyncRunFinished {
                engine_outcome: EngineOutcome::Succeeded as i32,
                events_emitted: 4,
                ..Default::default()
            }),
        );
        let in_order = [start.clone(), page.clone(), rec(3), rec(4), finish.clone()];
        let (_, r) = run_of(&in_order);
        assert_eq!(r.verdict, Verdict::Complete as i32, "{:?}", r.reasons);

        let (_, r) = run_of(&[start.clone(), page.clone(), rec(3), finish.clone()]);
        assert!(!r.decided, "decided with an event still missing");
        let (v, _) = verdict::current(&r, 10, i64::MAX);
        assert_eq!(v, Verdict::Running);

        // Decided once the missing event arrives; but a seal cannot cover an
        // event stored after it (a sealing producer stores the finish last),
        // so such a run is never COMPLETE.
        let (w, r) = run_of(&[start.clone(), page.clone(), rec(3), finish.clone(), rec(4)]);
        assert!(r.decided);
        assert_eq!(
            r.verdict,
            Verdict::UnverifiedProducer as i32,
            "{:?}",
            r.reasons
        );
        let src = w.sources.get(&"hr".to_owned()).unwrap();
        assert!(src.last_complete_run_id.is_empty());

        // One event more than the worker reported: late, so not COMPLETE, and the
        // source no longer claims this run as its last complete one.
        let (w, r) = run_of(&[start, page, rec(3), rec(4), finish, rec(5)]);
        assert_eq!(r.verdict, Verdict::Incomplete as i32);
        assert_eq!(r.late_events, 1);
        let src = w.sources.get(&"hr".to_owned()).unwrap();
        assert!(src.last_complete_run_id.is_empty());
    }

    fn clean_run() -> Vec<Event> {
        vec![
            ev(
                1,
                Body::SyncRunStarted(SyncRunStarted {
                    mode: SyncMode::Full as i32,
                    declared_total: Some(1),
                    ..Default::default()
                }),
            ),
            ev(
                2,
                Body::PageFetched(PageFetched {
                    page_key: "p1".into(),
                    declared_total: Some(1),
                    item_count: 1,
                    ..Default::default()
                }),
            ),
            ev(
                3,
                Body::RecordObserved(RecordObserved {
                    external_id: "u1".into(),
                    ..Default::default()
                }),
            ),
            ev(
                9,
                Body::SyncRunFinished(SyncRunFinished {
                    engine_outcome: EngineOutcome::Succeeded as i32,
                    events_emitted: 3,
                    ..Default::default()
                }),
            ),
        ]
    }

    fn fold_raw(events: &[Event]) -> govledger_proto::v1::RunState {
        let mut w = trusting();
        fold_in_memory(&mut w, &msgs(events));
        w.runs.get(&"run-1".to_owned()).cloned().unwrap()
    }

    /// Provenance (issue 21): a run is COMPLETE only when its finish carries
    /// a valid seal of a trusted key over exactly the run's events in the stream.
    #[test]
    fn a_run_is_complete_only_with_a_trusted_seal_over_its_events() {
        use govledger_proto::v1::{ReasonCode, SealStatus};
        let ok = fold_raw(&sealed(&clean_run()));
        assert_eq!(ok.verdict, Verdict::Complete as i32, "{:?}", ok.reasons);
        assert_eq!(ok.seal_status, SealStatus::Verified as i32);

        // No seal.
        let r = fold_raw(&clean_run());
        assert_eq!(r.verdict, Verdict::UnverifiedProducer as i32);
        assert_eq!(r.seal_status, SealStatus::Missing as i32);
        assert_eq!(r.reasons[0].code, ReasonCode::UnverifiedProducer as i32);

        // An untrusted key, otherwise a perfect seal.
        let mut w = fold::Working::default();
        fold_in_memory(&mut w, &msgs(&sealed(&clean_run())));
        let r = w.runs.get(&"run-1".to_owned()).cloned().unwrap();
        assert_eq!(r.verdict, Verdict::UnverifiedProducer as i32);
        assert_eq!(r.seal_status, SealStatus::UntrustedKey as i32);

        // One event altered after sealing.
        let mut altered = sealed(&clean_run());
        if let Some(Body::RecordObserved(o)) = altered[2].body.as_mut() {
            o.active = Some(true);
        }
        let r = fold_raw(&altered);
        assert_eq!(r.seal_status, SealStatus::EventsDiffer as i32);
        assert_eq!(r.verdict, Verdict::UnverifiedProducer as i32);

        // One event injected before the finish (the worker's count unchanged).
        let mut injected = sealed(&clean_run());
        injected.insert(
            3,
            ev(
                4,
                Body::RecordObserved(RecordObserved {
                    external_id: "u1".into(),
                    ..Default::default()
                }),
            ),
        );
        let r = fold_raw(&injected);
        assert_eq!(r.seal_status, SealStatus::EventsDiffer as i32);
        assert_ne!(r.verdict, Verdict::Complete as i32);

        // The finish itself altered (its counts): the signature breaks.
        let mut forged = sealed(&clean_run());
        if let Some(Body::SyncRunFinished(f)) = forged[3].body.as_mut() {
            f.message = "edited".into();
        }
        let r = fold_raw(&forged);
        assert_eq!(r.seal_status, SealStatus::BadSignature as i32);

        // An event injected after the seal: late, never an upgrade.
        let mut after = sealed(&clean_run());
        after.push(ev(
            5,
            Body::RecordObserved(RecordObserved {
                external_id: "u9".into(),
                ..Default::default()
            }),
        ));
        let r = fold_raw(&after);
        assert_eq!(r.verdict, Verdict::Incomplete as i32);
        assert_eq!(r.late_events, 1);
    }

    /// Readiness reads the blocking-action index only: an action is in it
    /// until a sealed conclusion CONFIRMED takes it out; any other outcome,
    /// no conclusion yet, or an unsealed one keeps it in.
    #[test]
    fn only_a_confirmed_action_leaves_the_blocking_index() {
        use govledger_proto::v1::{
            ActionConcluded, ActionOutcome, ActionRequested, ActionVerified,
        };
        let act = |id: &str, n: u64, body: Body| Event {
            run_id: String::new(),
            action_id: id.into(),
            ..ev(n, body)
        };
        let concluded = |id: &str, n: u64, outcome: ActionOutcome, seal: bool| {
            let mut e = act(
                id,
                n,
                Body::ActionConcluded(ActionConcluded {
                    outcome: outcome as i32,
                    ..Default::default()
                }),
            );
            if seal {
                key().seal_event(&mut e);
            }
            e
        };
        let requested = |id: &str, n| act(id, n, Body::ActionRequested(ActionRequested::default()));
        let verified = |id: &str, n| {
            act(
                id,
                n,
                Body::ActionVerified(ActionVerified {
                    step: 1,
                    in_effect: true,
                    ..Default::default()
                }),
            )
        };
        let events = [
            requested("confirmed", 1),
            verified("confirmed", 2),
            concluded("confirmed", 3, ActionOutcome::Confirmed, true),
            requested("unconfirmed", 4),
            concluded("unconfirmed", 5, ActionOutcome::Unconfirmed, true),
            requested("pending", 6),
            requested("forged", 7),
            verified("forged", 8),
            concluded("forged", 9, ActionOutcome::Confirmed, false),
        ];
        let mut w = trusting();
        fold_in_memory(&mut w, &msgs(&events));
        let blocking = |id: &str| {
            w.blocking_actions
                .get(&("hr".to_owned(), id.to_owned()))
                .is_some()
        };
        assert!(!blocking("confirmed"));
        assert!(blocking("unconfirmed"));
        assert!(blocking("pending"));
        assert!(blocking("forged"), "an unsealed CONFIRMED confirms nothing");
    }

    /// Provenance: a conclusion no trusted key sealed neither counts first nor
    /// confirms; a sealed conclusion folded after it decides the action.
    #[test]
    fn only_a_sealed_conclusion_decides_an_action() {
        use govledger_proto::v1::{
            ActionConcluded, ActionOutcome, ActionRequested, ActionVerified, SealStatus,
        };
        let act = |n: u64, body: Body| Event {
            run_id: String::new(),
            action_id: "a-1".into(),
            ..ev(n, body)
        };
        let concluded = |n: u64, outcome: ActionOutcome| {
            act(
                n,
                Body::ActionConcluded(ActionConcluded {
                    outcome: outcome as i32,
                    ..Default::default()
                }),
            )
        };
        let mut sealed_unconfirmed = concluded(5, ActionOutcome::Unconfirmed);
        key().seal_event(&mut sealed_unconfirmed);
        let mut by_stranger = concluded(4, ActionOutcome::Confirmed);
        govledger_stream::seal::ProducerKey::from_seed([8; 32]).seal_event(&mut by_stranger);
        let events = [
            act(1, Body::ActionRequested(ActionRequested::default())),
            act(
                2,
                Body::ActionVerified(ActionVerified {
                    step: 1,
                    in_effect: true,
                    ..Default::default()
                }),
            ),
            concluded(3, ActionOutcome::Confirmed),
            by_stranger,
        ];
        let mut w = trusting();
        fold_in_memory(&mut w, &msgs(&events));
        let a = w.actions.get(&"a-1".to_owned()).cloned().unwrap();
        assert_eq!(a.outcome, ActionOutcome::UnverifiedProducer as i32);
        assert_eq!(a.unsealed_conclusions, 2);
        assert_eq!(a.concluded_seq, 0, "no conclusion counted");
        assert_eq!(a.seal_status, SealStatus::UntrustedKey as i32);
        let (o, detail) = verdict::action_outcome(&a, None, i64::MAX);
        assert_eq!(o, ActionOutcome::UnverifiedProducer, "{detail}");

        let mut all = events.to_vec();
        all.push(sealed_unconfirmed);
        let mut w = trusting();
        fold_in_memory(&mut w, &msgs(&all));
        let a = w.actions.get(&"a-1".to_owned()).cloned().unwrap();
        assert_eq!(a.outcome, ActionOutcome::Unconfirmed as i32);
        assert_eq!(a.seal_status, SealStatus::Verified as i32);
        assert_eq!(a.concluded_seq, 5);
    }
}
