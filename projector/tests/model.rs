//! Deterministic simulation of the projector (VOPR style).
//!
//! A seeded generator writes realistic event histories (several sources, sync
//! runs with retried, failed and refetched pages, duplicate records, rejected
//! records, actions, garbage payloads and re-published event bytes). The
//! history is folded twice: by the in-memory reference ([`fold_in_memory`]) and
//! by a real sled [`Store`] fed with [`process_batch`] in random batches, with
//! crashes before and after commit, restarts from disk, redelivery from an
//! earlier sequence and the occasional lost sled folder. Both must end with the
//! same projections (digest) and the same meta counters.
//!
//! Every assertion names its seed. Reproduce one with
//! `GOVLEDGER_MODEL_SEED=<seed> cargo test -p govledger-projector --test model`;
//! run more seeds with `GOVLEDGER_MODEL_SEEDS=<count>`.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use bytes::Bytes;
use govledger_projector::{
    OwnedMsg, Store, contiguous_prefix,
    fold::{self, Working},
    fold_in_memory, process_batch,
    store::digest_of_working,
};
use govledger_proto::v1::{
    AcceptedDrop, ActionAttempted, ActionConcluded, ActionKind, ActionRequested, ActionVerified,
    DeletionsAccepted, EngineOutcome, EntityType, ErrorClass, Event, LedgerMeta, PageFailed,
    PageFetched, ReasonCode, RecordObserved, RecordRejected, RejectReason, SyncMode,
    SyncRunFinished, SyncRunStarted, Verdict, event::Body,
};
use prost::Message as _;
use rand::{Rng, SeedableRng, rngs::StdRng};
use tempfile::TempDir;

const CACHE: u64 = 8 << 20;
const T0: i64 = 1_760_000_000_000_000;
const SEEDS: u64 = 200;
const PAGE: u64 = 10;

// ---------------------------------------------------------------- builders

fn uuid(kind: u32, n: u64) -> String {
    format!("{kind:08x}-0000-7000-8000-{n:012x}")
}

/// The one event builder: event number `n` gives the event id and time.
fn ev(n: u64, src: &str, run: &str, action: &str, body: Body) -> Event {
    Event {
        event_id: uuid(1, n),
        occurred_at_us: T0 + n as i64 * 1_000,
        source_id: src.into(),
        run_id: run.into(),
        action_id: action.into(),
        attempt: 1,
        schema_version: 1,
        body: Some(body),
        ..Default::default()
    }
}

fn page_key(p: u64) -> String {
    format!("startIndex={}", p * PAGE + 1)
}

fn started(declared_total: Option<u64>, mode: SyncMode) -> Body {
    Body::SyncRunStarted(SyncRunStarted {
        mode: mode as i32,
        declared_total,
        page_size: PAGE as u32,
        paging: "scim-index".into(),
        entity_types: vec![EntityType::User as i32, EntityType::Group as i32],
        deletion_threshold_pct: 25,
        ..Default::default()
    })
}

fn fetched(p: u64, declared_total: Option<u64>) -> Body {
    Body::PageFetched(PageFetched {
        page_key: page_key(p),
        page_index: p,
        http_status: 200,
        item_count: PAGE as u32,
        declared_total,
        ..Default::default()
    })
}

fn failed(p: u64, will_retry: bool) -> Body {
    Body::PageFailed(PageFailed {
        page_key: page_key(p),
        page_index: p,
        error_class: ErrorClass::ServerError as i32,
        http_status: 503,
        will_retry,
        message: "503 Service Unavailable".into(),
        ..Default::default()
    })
}

/// Identity `j` of a source: every seventh is a group, the rest are users.
fn observed(j: u64) -> Body {
    let group = j % 7 == 6;
    Body::RecordObserved(RecordObserved {
        entity_type: if group {
            EntityType::Group
        } else {
            EntityType::User
        } as i32,
        external_id: format!("{}-{j}", if group { "g" } else { "u" }),
        active: Some(!j.is_multiple_of(5)),
        attribute_digest: format!("{:064x}", j * 0x9e37_79b9),
        memberships: if group {
            vec![]
        } else {
            vec![format!("g-{}", j / 7 * 7 + 6)]
        },
        version: format!("W/\"{j}\""),
        page_key: page_key(j / PAGE),
        display_name: format!("identity {j}"),
        ..Default::default()
    })
}

fn finished(outcome: EngineOutcome, declared_total: Option<u64>) -> Body {
    Body::SyncRunFinished(SyncRunFinished {
        engine_outcome: outcome as i32,
        declared_total,
        ..Default::default()
    })
}

fn subject(payload: &[u8]) -> String {
    let Ok(Event {
        source_id,
        body: Some(b),
        ..
    }) = Event::decode(payload)
    else {
        return "govledger.v1.unknown".into();
    };
    let kind = match b {
        Body::SyncRunStarted(_) => "read.sync_run_started",
        Body::PageFetched(_) => "read.page_fetched",
        Body::PageFailed(_) => "read.page_failed",
        Body::RecordObserved(_) => "read.record_observed",
        Body::RecordRejected(_) => "read.record_rejected",
        Body::SyncRunFinished(_) => "read.sync_run_finished",
        Body::ActionRequested(_) => "write.action_requested",
        Body::ActionAttempted(_) => "write.action_attempted",
        Body::ActionVerified(_) => "write.action_verified",
        Body::ActionConcluded(_) => "write.action_concluded",
        Body::DeletionsAccepted(_) => "read.deletions_accepted",
    };
    format!("govledger.v1.{source_id}.{kind}")
}

/// Stream messages with sequences 1..=N in order. Every other one carries its
/// leaf hash already (as the runner's fetch task makes them), the rest leave
/// it to the fold: both must give the same tree.
///
/// The payloads are sealed first as a trusted producer seals what it stores
/// (provenance): each finish over its run's events stored before it (each
/// event id once), each conclusion and acceptance on its own.
fn msgs_of(payloads: &[Vec<u8>]) -> Vec<OwnedMsg> {
    let payloads = seal_payloads(payloads);
    (1..)
        .zip(&payloads)
        .map(|(seq, p)| OwnedMsg {
            seq,
            subject: subject(p),
            stored_at_us: T0 + seq as i64 * 997,
            payload: Bytes::from(p.clone()),
            leaf: (seq % 2 == 0).then(|| govledger_projector::merkle::leaf_hash(seq, p)),
        })
        .collect()
}

/// The model's producer key.
fn key() -> govledger_stream::seal::ProducerKey {
    govledger_stream::seal::ProducerKey::from_seed([4; 32])
}

/// A working set that trusts the model's producer key.
fn trusting() -> Working {
    Working {
        trust: std::sync::Arc::new(govledger_stream::seal::Trust::new([key().public_key()])),
        ..Default::default()
    }
}

/// A sled store whose fold trusts the model's producer key.
fn open_store(dir: &std::path::Path) -> Result<Store, govledger_projector::store::StoreError> {
    Ok(Store::open(dir, CACHE)?.with_trust(trusting().trust))
}

/// See [`msgs_of`]: payloads at sequences 1..=N, sealed.
fn seal_payloads(payloads: &[Vec<u8>]) -> Vec<Vec<u8>> {
    use govledger_stream::seal;
    let k = key();
    let mut runs: BTreeMap<String, Vec<(u64, seal::Hash)>> = BTreeMap::new();
    let mut seen = BTreeSet::new();
    let mut out = Vec::with_capacity(payloads.len());
    for (seq, p) in (1u64..).zip(payloads) {
        let sm = fold::StreamMsg {
            seq,
            subject: "",
            stored_at_us: 0,
            payload: p,
            leaf: None,
        };
        let Ok(mut e) = fold::decode(&sm) else {
            out.push(p.clone());
            continue;
        };
        if !seen.insert(e.event_id.clone()) {
            out.push(p.clone());
            continue;
        }
        match &e.body {
            Some(Body::SyncRunFinished(_)) => {
                let leaves = runs.remove(&e.run_id).unwrap_or_default();
                let n = leaves.len() as u64;
                k.seal_run(&mut e, n, seal::chain_of(leaves));
                out.push(e.encode_to_vec());
            }
            Some(Body::ActionConcluded(_) | Body::DeletionsAccepted(_)) => {
                k.seal_event(&mut e);
                out.push(e.encode_to_vec());
            }
            Some(Body::ActionRequested(_) | Body::ActionAttempted(_) | Body::ActionVerified(_)) => {
                out.push(p.clone());
            }
            _ => {
                if !e.run_id.is_empty() {
                    runs.entry(e.run_id.clone())
                        .or_default()
                        .push((seq, seal::leaf(seq, p)));
                }
                out.push(p.clone());
            }
        }
    }
    out
}

fn reference(msgs: &[OwnedMsg]) -> Working {
    let mut w = trusting();
    fold_in_memory(&mut w, msgs);
    w
}

// ---------------------------------------------------------------- generator

struct Gen {
    rng: StdRng,
    n: u64,
    /// Tiny runs over the same few identities, so they are observed often
    /// enough for their history to move into chunks.
    hot: bool,
}

impl Gen {
    fn ev(&mut self, src: &str, run: &str, action: &str, body: Body) -> Event {
        self.n += 1;
        let mut e = ev(self.n, src, run, action, body);
        // Producers' clocks are not in stream order.
        e.occurred_at_us += self.rng.random_range(-5_000..5_000);
        e
    }

    /// One sync run of `src` over identities `offset..offset + total`.
    fn run(&mut self, src: &str, offset: u64) -> Vec<Event> {
        self.n += 1;
        let run = uuid(2, self.n);
        let total = if self.hot {
            self.rng.random_range(1..=3u64)
        } else {
            self.rng.random_range(0..=32u64)
        };
        let pages = total.div_ceil(PAGE).max(1);
        let mode = if self.rng.random_bool(0.8) {
            SyncMode::Full
        } else {
            SyncMode::Delta
        };
        let at_start = self.rng.random_bool(0.7).then_some(total);
        let mut out = vec![self.ev(src, &run, "", started(at_start, mode))];
        if self.rng.random_bool(0.05) {
            // The source is unreachable: nothing fetched, the engine gives up.
            out.push(self.ev(src, &run, "", failed(0, false)));
            out.push(self.ev(src, &run, "", finished(EngineOutcome::Failed, None)));
            return out;
        }
        let mut late = Vec::new();
        for p in 0..pages {
            while self.rng.random_bool(0.15) {
                out.push(self.ev(src, &run, "", failed(p, true)));
            }
            let target = if self.rng.random_bool(0.12) {
                out.push(self.ev(src, &run, "", failed(p, false)));
                if self.rng.random_bool(0.4) {
                    continue; // the page and its records are lost
                }
                &mut late // a later successful refetch
            } else {
                &mut out
            };
            let declared = match self.rng.random_range(0..10) {
                0 => None,
                1 => Some(total + 1),
                _ => Some(total),
            };
            target.push(self.ev(src, &run, "", fetched(p, declared)));
            for j in p * PAGE..((p + 1) * PAGE).min(total) {
                let body = if self.rng.random_bool(0.04) {
                    Body::RecordRejected(RecordRejected {
                        page_key: page_key(p),
                        reason: RejectReason::MissingId as i32,
                        index_in_page: (j % PAGE) as u32,
                        ..Default::default()
                    })
                } else {
                    observed(offset + j)
                };
                target.push(self.ev(src, &run, "", body));
                if self.rng.random_bool(0.03) {
                    // Paging shifted: an earlier record of the run comes again.
                    let again = offset + self.rng.random_range(0..=j);
                    target.push(self.ev(src, &run, "", observed(again)));
                }
            }
        }
        let refetch_after_finish = self.rng.random_bool(0.2);
        if !refetch_after_finish {
            out.append(&mut late);
        }
        if self.rng.random_bool(0.85) {
            let outcome = match self.rng.random_range(0..20) {
                0 | 1 => EngineOutcome::Failed,
                2 => EngineOutcome::Abandoned,
                3 => EngineOutcome::Unspecified,
                _ => EngineOutcome::Succeeded,
            };
            let declared = self.rng.random_bool(0.5).then_some(total);
            out.push(self.ev(src, &run, "", finished(outcome, declared)));
            if self.rng.random_bool(0.05) {
                // A second report for the same run (a different event).
                out.push(self.ev(src, &run, "", finished(EngineOutcome::Failed, None)));
            }
        }
        out.append(&mut late);
        out
    }

    fn action(&mut self, src: &str) -> Vec<Event> {
        self.n += 1;
        let action = uuid(3, self.n);
        let mut out = Vec::new();
        if self.rng.random_bool(0.9) {
            let target = format!("u-{}", self.rng.random_range(0..40));
            let req = ActionRequested {
                kind: ActionKind::Deactivate as i32,
                entity_type: EntityType::User as i32,
                identity_external_id: target,
                requested_by: "alice".into(),
                reason: "leaver".into(),
                ticket: format!("T-{}", self.n),
                deadline_us: T0 + 86_400_000_000,
                idempotency_key: action.clone(),
                steps: 1,
                ..Default::default()
            };
            out.push(self.ev(src, "", &action, Body::ActionRequested(req)));
        }
        for step in 0..self.rng.random_range(0..=3) {
            let (http_status, error_class) = match self.rng.random_range(0..4) {
                0 => (429, ErrorClass::RateLimited),
                1 => (500, ErrorClass::ServerError),
                _ => (204, ErrorClass::Unspecified),
            };
            let t = ActionAttempted {
                step,
                http_status,
                error_class: error_class as i32,
                ..Default::default()
            };
            out.push(self.ev(src, "", &action, Body::ActionAttempted(t)));
        }
        if self.rng.random_bool(0.7) {
            let v = ActionVerified {
                in_effect: self.rng.random_bool(0.8),
                target_absent: self.rng.random_bool(0.1),
                http_status: 200,
                ..Default::default()
            };
            out.push(self.ev(src, "", &action, Body::ActionVerified(v)));
        }
        if self.rng.random_bool(0.7) {
            let c = ActionConcluded {
                // CONFIRMED..DRIFTED, UNVERIFIABLE, UNVERIFIED (an UNVERIFIED
                // one stays in the open-actions index).
                outcome: [1, 2, 3, 4, 5, 7, 8][self.rng.random_range(0..7)],
                detail: "read back".into(),
                ..Default::default()
            };
            out.push(self.ev(src, "", &action, Body::ActionConcluded(c)));
        }
        out
    }

    /// A payload the fold cannot use.
    fn poison(&mut self, src: &str) -> Vec<u8> {
        let run = uuid(2, 0xdead);
        let mut e = self.ev(src, &run, "", observed(0));
        match self.rng.random_range(0..12) {
            0 => return Vec::new(),
            1 => e.schema_version = 2,
            2 => e.body = None,
            3 => e.run_id.clear(),
            4 => e.source_id.clear(),
            5 => e.body = Some(Body::ActionVerified(ActionVerified::default())),
            6 => e.body = Some(Body::RecordObserved(RecordObserved::default())),
            _ => {
                let mut b = vec![0u8; self.rng.random_range(1..48)];
                self.rng.fill(&mut b[..]);
                return b;
            }
        }
        e.encode_to_vec()
    }
}

/// About `target` messages of interleaved runs and actions, garbage and re-published events.
fn history(seed: u64, target: usize) -> Vec<OwnedMsg> {
    let mut g = Gen {
        rng: StdRng::seed_from_u64(seed),
        n: 0,
        hot: seed.is_multiple_of(5),
    };
    let source_count = if g.hot { 1 } else { g.rng.random_range(1..=3) };
    let sources: Vec<String> = (1..=source_count).map(|i| format!("src-{i}")).collect();
    let mut offsets = vec![0u64; sources.len()];
    let mut scripts = VecDeque::new();
    let mut planned = 0;
    while planned < target {
        let s = g.rng.random_range(0..sources.len());
        let script: VecDeque<Event> = if g.rng.random_bool(0.75) {
            if !g.hot {
                offsets[s] += g.rng.random_range(0..=3); // identities come and go
            }
            g.run(&sources[s], offsets[s]).into()
        } else {
            g.action(&sources[s]).into()
        };
        planned += script.len();
        scripts.push_back(script);
    }
    // Up to three scripts in flight at once; the tail of the last ones may be cut.
    let mut active: Vec<VecDeque<Event>> = Vec::new();
    let mut out: Vec<Vec<u8>> = Vec::new();
    let mut accepted = false;
    while out.len() < target {
        if !accepted && out.len() >= target / 2 {
            // Halfway: operators accept the drops of the SUSPECT runs so far
            // (and now and then a drop that is not the run's, or twice).
            accepted = true;
            for e in acceptances(&mut g, &out) {
                let mut e = e;
                e.event_id = styled_id(seed, out.len() as u64);
                out.push(e.encode_to_vec());
            }
        }
        while active.len() < 3
            && let Some(s) = scripts.pop_front()
        {
            active.push(s);
        }
        if active.is_empty() {
            break;
        }
        let i = g.rng.random_range(0..active.len());
        let Some(e) = active[i].pop_front() else {
            active.swap_remove(i);
            continue;
        };
        if g.rng.random_bool(0.04) {
            let src = e.source_id.clone();
            out.push(g.poison(&src));
        }
        let mut e = e;
        e.event_id = styled_id(seed, out.len() as u64);
        out.push(e.encode_to_vec());
        if g.rng.random_bool(0.04) {
            // A retried publish that JetStream's dedup window missed.
            let j = g.rng.random_range(0..out.len());
            out.push(out[j].clone());
        }
    }
    msgs_of(&out)
}

/// DeletionsAccepted events for the runs the reference fold of `out` decided
/// SUSPECT by the deletion guard alone: most name the run's drops, some a
/// drop that is not the run's, some come twice; one names a run not decided.
fn acceptances(g: &mut Gen, out: &[Vec<u8>]) -> Vec<Event> {
    let w = reference(&msgs_of(out));
    let mut evs = Vec::new();
    for (id, run) in w.runs.iter() {
        let drops = match govledger_projector::deletion_guard::acceptable(run) {
            Ok(d) if g.rng.random_bool(0.85) => d,
            Ok(_) => vec![AcceptedDrop {
                entity_type: EntityType::User as i32,
                baseline: 1,
                now: 0,
            }],
            Err(_) if !run.decided && evs.is_empty() => Vec::new(),
            Err(_) => continue,
        };
        let a = DeletionsAccepted {
            accepted_by: "alice".into(),
            reason: "reorganisation".into(),
            ticket: format!("CHG-{}", g.n),
            drops,
        };
        let times = if g.rng.random_bool(0.2) { 2 } else { 1 };
        for _ in 0..times {
            let body = Body::DeletionsAccepted(a.clone());
            evs.push(g.ev(&run.source_id, id, "", body));
        }
    }
    evs
}

/// Event ids in the forms producers send, one form per seed (`n` is unique
/// per event; a re-published event keeps its bytes, so its id): UUID v7 from
/// a clock (a few per millisecond, in event-id blocks), UUID v7 that all fall
/// into one block, UUID v4 (records of their own) and ids that are no UUID.
fn styled_id(seed: u64, n: u64) -> String {
    match seed % 4 {
        0 => {
            let ms = 0x0192_f3a4_0000 + n / 7;
            format!("{:08x}-{:04x}-7abc-9def-{n:012x}", ms >> 16, ms & 0xffff)
        }
        1 => format!("0192f3a4-5b6c-7abc-9def-{:012x}", n * 16),
        2 => format!("{n:08x}-1234-4abc-9def-0123456789ab"),
        _ => format!("evt-{seed}-{n}"),
    }
}

// ---------------------------------------------------------------- simulation

#[derive(Debug, Default)]
struct Coverage {
    msgs: u64,
    batches: u64,
    crashes: u64,
    rebuilds: u64,
    redelivered: u64,
    gaps: u64,
    duplicates: u64,
    poison: u64,
    verdicts: BTreeMap<i32, u64>,
    unfinished: u64,
    refetched: u64,
    history_chunks: u64,
    /// Run-seen records written because runs of one source interleaved.
    spills: u64,
    /// Runs COMPLETE because an acceptance named their drops.
    accepted: u64,
}

/// Checks that do not trust the fold: counts recomputed from the messages.
fn check_model(seed: u64, msgs: &[OwnedMsg], w: &Working) {
    let m = &w.meta;
    let n = msgs.len() as u64;
    assert_eq!(m.last_applied_seq, n, "seed {seed}: last_applied_seq");
    assert_eq!(
        m.events_applied + m.duplicate_events + m.poison_events,
        n,
        "seed {seed}: every sequence is applied, a duplicate or poison"
    );
    let mut ids = BTreeSet::new();
    let mut unique: BTreeMap<String, BTreeSet<(i32, String)>> = BTreeMap::new();
    let mut poison = 0;
    for msg in msgs {
        let Ok(e) = fold::decode(&msg.as_stream_msg()) else {
            poison += 1;
            continue;
        };
        // A run's record counters are as of its decision; later events are late.
        let decided_seq = w.runs.get(&e.run_id).map_or(0, |r| r.decided_seq);
        if ids.insert(e.event_id.clone())
            && let Some(Body::RecordObserved(r)) = &e.body
            && (decided_seq == 0 || msg.seq <= decided_seq)
        {
            let seen = unique.entry(e.run_id.clone()).or_default();
            seen.insert((r.entity_type, r.external_id.clone()));
        }
    }
    assert_eq!(m.poison_events, poison, "seed {seed}: poison events");
    assert_eq!(
        m.events_applied,
        ids.len() as u64,
        "seed {seed}: distinct ids"
    );
    for (id, run) in w.runs.iter() {
        let u = unique.get(id).map_or(0, |s| s.len() as u64);
        assert_eq!(run.records_unique, u, "seed {seed}: run {id} unique");
        assert_eq!(
            run.records_unique + run.duplicates,
            run.records_observed,
            "seed {seed}: run {id}"
        );
        if run.verdict == Verdict::Complete as i32 {
            // A COMPLETE run's only reasons are count drops an acceptance named.
            let accepted = run
                .reasons
                .iter()
                .all(|r| r.code == ReasonCode::DeletionsAccepted as i32);
            assert!(
                accepted == run.acceptance.is_some() || run.reasons.is_empty(),
                "seed {seed}: complete run {id}: {run:?}"
            );
            assert!(
                accepted && run.pages_failed_final == 0 && run.duplicates == 0,
                "seed {seed}: complete run {id} with defects: {run:?}"
            );
        }
        // Run counters agree with the page and seen records they summarise.
        let pages: Vec<_> = w.pages.iter().filter(|((r, _), _)| r == id).collect();
        let given_up: BTreeSet<_> = pages
            .iter()
            .filter(|(_, p)| p.gave_up)
            .map(|((_, k), _)| k)
            .collect();
        let counts = (
            pages.iter().filter(|(_, p)| p.ok).count() as u64,
            given_up.len() as u64,
        );
        let want = (run.pages_fetched, run.pages_failed_final);
        let spilled = w.run_seen.iter().filter(|((r, ..), _)| r == id).count() as u64;
        assert!(
            spilled <= run.seen_spilled && (spilled > 0) == (run.seen_spilled > 0),
            "seed {seed}: run {id}: {spilled} run-seen records, {} spill writes",
            run.seen_spilled
        );
        assert_eq!(run.decided, run.decided_seq > 0, "seed {seed}: run {id}");
        assert_eq!(counts, want, "seed {seed}: run {id} vs its pages");
        let kept: BTreeSet<_> = run.failed_page_keys.iter().collect();
        assert_eq!(kept, given_up, "seed {seed}: run {id} failed page keys");
    }
    for (id, src) in w.sources.iter() {
        let runs = w.source_runs.iter().filter(|((s, _), _)| s == id).count();
        assert_eq!(runs as u64, src.runs_total, "seed {seed}: source {id} runs");
    }
    // The leaf blocks hold the leaf of every stored message, in order.
    for msg in msgs {
        let (block, at) = govledger_projector::keys::leaf_slot(msg.seq);
        let b = w.leaves.get(&block).expect("leaf block");
        assert_eq!(
            &b[at..at + 32],
            &govledger_projector::merkle::leaf_hash(msg.seq, &msg.payload),
            "seed {seed}: leaf {}",
            msg.seq
        );
    }
    // Point in time: an identity's history (chunks + recent sequences), with the
    // events of the actions on it, folds to exactly the identity the whole log
    // folds to.
    let by_seq: BTreeMap<u64, &OwnedMsg> = msgs.iter().map(|m| (m.seq, m)).collect();
    let history = |chunks: Vec<&Vec<u8>>, recent: &[u64]| -> BTreeSet<u64> {
        let mut out: BTreeSet<u64> = chunks
            .into_iter()
            .flat_map(|c| govledger_projector::keys::unpack_seqs(c).collect::<Vec<_>>())
            .collect();
        out.extend(recent);
        out
    };
    for (key, want) in w.identities.iter().take(40) {
        let chunks: Vec<&Vec<u8>> = w
            .identity_history
            .iter()
            .filter(|((k, _), _)| k == key)
            .map(|(_, v)| v)
            .collect();
        let mut seqs = history(chunks, &want.recent_seqs);
        let mut actions: BTreeSet<String> = w
            .identity_actions
            .iter()
            .filter(|((k, _), _)| k == key)
            .map(|((_, a), _)| a.clone())
            .collect();
        actions.extend(
            seqs.iter()
                .filter_map(|s| fold::decode(&by_seq[s].as_stream_msg()).ok())
                .map(|e| e.action_id)
                .filter(|a| !a.is_empty()),
        );
        for a in &actions {
            let chunks: Vec<&Vec<u8>> = w
                .action_history
                .iter()
                .filter(|((k, _), _)| k == a)
                .map(|(_, v)| v)
                .collect();
            let recent = w
                .actions
                .get(a)
                .map(|x| x.recent_seqs.clone())
                .unwrap_or_default();
            seqs.extend(history(chunks, &recent));
        }
        let slice: Vec<OwnedMsg> = seqs.iter().map(|s| by_seq[s].clone()).collect();
        let mut part = trusting();
        fold_in_memory(&mut part, &slice);
        assert_eq!(part.identities.get(key), Some(want), "seed {seed}: {key:?}");
    }
}

/// Closes `store` and opens its folder again. sled 0.34 releases its file lock
/// only when its flusher thread exits, shortly after the drop (spacejam/sled#1234),
/// so the open is retried for a while, as a restarted process would wait.
async fn reopen(store: Store, dir: &TempDir, flush: bool) -> Store {
    if flush {
        store.flush().await.unwrap();
    }
    drop(store);
    for _ in 0..2_000 {
        match open_store(dir.path()) {
            Err(e) if e.to_string().contains("could not acquire lock") => {
                tokio::time::sleep(std::time::Duration::from_millis(1)).await;
            }
            r => return r.unwrap(),
        }
    }
    panic!("sled lock at {} not released", dir.path().display());
}

/// Folds one seeded history through sled the way the runner does (deliver a
/// batch, keep its gap-free prefix, fold and commit, ack), with crashes before
/// and after commit, lost acks, gaps in delivery and a lost sled folder.
async fn simulate(seed: u64) -> Coverage {
    let msgs = history(seed, 140 + (seed as usize * 7919) % 180);
    let want = reference(&msgs);
    check_model(seed, &msgs, &want);

    let mut rng = StdRng::seed_from_u64(seed ^ 0x5eed_c4a5);
    let mut cov = Coverage {
        msgs: msgs.len() as u64,
        history_chunks: (want.identity_history.iter().count() + want.action_history.iter().count())
            as u64,
        spills: want.run_seen.iter().count() as u64,
        ..Default::default()
    };
    let mut dir = TempDir::new().unwrap();
    let mut store = open_store(dir.path()).unwrap();
    let mut meta = store.meta().unwrap();
    let mut sums = LedgerMeta::default(); // what the batch outcomes reported
    let mut model = trusting(); // the reference, folded up to the store's last commit
    let mut next = 0usize; // index of the next message delivered (seq = next + 1)
    while next < msgs.len() {
        let size = if rng.random_bool(0.15) {
            rng.random_range(1..=3)
        } else {
            rng.random_range(1..=64)
        };
        let mut batch = msgs[next..(next + size).min(msgs.len())].to_vec();
        let roll = rng.random_range(0..100);
        let gap = roll >= 94 && batch.len() > 1;
        if gap {
            // A message missing from the delivery: nothing past it may be folded.
            batch.remove(rng.random_range(0..batch.len()));
        }
        let usable = contiguous_prefix(&batch, meta.last_applied_seq);
        assert!(
            gap || usable == batch.len(),
            "seed {seed}: no gap at {next}"
        );
        let crash = if roll < 6 {
            true // folded, then killed before commit: the batch is lost and comes back
        } else {
            let out = process_batch(&store, &mut meta, &batch[..usable])
                .unwrap_or_else(|e| panic!("seed {seed}: process_batch: {e}"));
            cov.batches += 1;
            sums.events_applied += out.applied as u64;
            sums.duplicate_events += out.duplicates as u64;
            sums.poison_events += out.poison.len() as u64;
            assert_eq!(
                meta,
                store.meta().unwrap(),
                "seed {seed}: meta after commit"
            );
            // Acked up to the last usable message; a gap reopens the consumer there.
            next = if gap {
                cov.gaps += 1;
                meta.last_applied_seq as usize
            } else {
                next + batch.len()
            };
            if roll < 20 {
                // Ack lost: JetStream redelivers a stretch of applied messages.
                next = rng.random_range(next.saturating_sub(50)..=next);
                cov.redelivered += 1;
            }
            (20..28).contains(&roll)
        };
        if crash {
            cov.crashes += 1;
            let before = meta;
            store = reopen(store, &dir, rng.random_bool(0.5)).await;
            meta = store.meta().unwrap();
            assert_eq!(
                meta, before,
                "seed {seed}: committed meta survives a restart"
            );
            let la = meta.last_applied_seq as usize;
            let folded = model.meta.last_applied_seq as usize;
            fold_in_memory(&mut model, &msgs[folded..la]);
            if la > 0 {
                assert_eq!(
                    store.digest().unwrap(),
                    digest_of_working(&model).unwrap(),
                    "seed {seed}: store after restart at seq {la} differs from the reference"
                );
            }
            // The consumer resumes at or before last_applied + 1.
            next = rng.random_range(la.saturating_sub(50)..=la);
        }
        if rng.random_bool(0.005) {
            // The sled folder is lost: rebuild from sequence 1.
            cov.rebuilds += 1;
            drop(store);
            dir = TempDir::new().unwrap();
            store = open_store(dir.path()).unwrap();
            meta = store.meta().unwrap();
            assert_eq!(meta, LedgerMeta::default(), "seed {seed}: fresh store");
            sums = LedgerMeta::default();
            model = trusting();
            next = 0;
        }
    }
    if rng.random_bool(0.5) {
        store = reopen(store, &dir, true).await;
    }

    let got = store.meta().unwrap();
    assert_eq!(
        got,
        want.meta_record(),
        "seed {seed}: meta differs from the reference"
    );
    sums.last_applied_seq = got.last_applied_seq;
    // The Merkle frontier is checked against the reference above; the sums are counters.
    sums.merkle_size = got.merkle_size;
    sums.merkle_peaks = got.merkle_peaks.clone();
    assert_eq!(
        sums, got,
        "seed {seed}: batch outcomes do not add up to meta"
    );
    for (id, run) in want.runs.iter() {
        let r = store.run(id).unwrap();
        assert_eq!(r.as_ref(), Some(run), "seed {seed}: run {id}");
        cov.verdicts
            .entry(run.verdict)
            .and_modify(|c| *c += 1)
            .or_insert(1);
        cov.unfinished += u64::from(!run.finished);
        cov.accepted += u64::from(govledger_projector::deletion_guard::accepted(run));
        cov.refetched += u64::from(run.pages_failed_final == 0 && run.page_failures > 0);
    }
    for (id, s) in want.sources.iter() {
        assert_eq!(
            store.source(id).unwrap().as_ref(),
            Some(s),
            "seed {seed}: source {id}"
        );
    }
    for (id, a) in want.actions.iter() {
        assert_eq!(
            store.action(id).unwrap().as_ref(),
            Some(a),
            "seed {seed}: action {id}"
        );
    }
    let poison = store.poison(0, usize::MAX).unwrap();
    let want_poison: Vec<_> = want.poison.iter().map(|(_, p)| p.clone()).collect();
    assert_eq!(poison, want_poison, "seed {seed}: poison events");
    assert_eq!(
        store.digest().unwrap(),
        digest_of_working(&want).unwrap(),
        "seed {seed}: sled digest differs from the reference"
    );
    cov.duplicates = got.duplicate_events;
    cov.poison = got.poison_events;
    cov
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().map(|v| v.parse().expect(name))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulated_histories_match_the_reference_fold() {
    if let Some(seed) = env_u64("GOVLEDGER_MODEL_SEED") {
        eprintln!("seed {seed}: {:?}", simulate(seed).await);
        return;
    }
    let seeds = env_u64("GOVLEDGER_MODEL_SEEDS").unwrap_or(SEEDS);
    let start = std::time::Instant::now();
    let shards: Vec<_> = (0..2)
        .map(|k| {
            tokio::spawn(async move {
                let mut all = Vec::new();
                for seed in (k..seeds).step_by(2) {
                    all.push(simulate(seed).await);
                }
                all
            })
        })
        .collect();
    let mut total = Coverage::default();
    for shard in shards {
        let covs = shard
            .await
            .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
        for c in covs {
            total.msgs += c.msgs;
            total.batches += c.batches;
            total.crashes += c.crashes;
            total.rebuilds += c.rebuilds;
            total.redelivered += c.redelivered;
            total.gaps += c.gaps;
            total.duplicates += c.duplicates;
            total.poison += c.poison;
            total.unfinished += c.unfinished;
            total.refetched += c.refetched;
            total.history_chunks += c.history_chunks;
            total.spills += c.spills;
            total.accepted += c.accepted;
            for (v, n) in c.verdicts {
                *total.verdicts.entry(v).or_default() += n;
            }
        }
    }
    eprintln!("{seeds} seeds in {:?}: {total:?}", start.elapsed());
    // The generator must keep exercising every path.
    for v in [
        Verdict::Complete,
        Verdict::Incomplete,
        Verdict::Suspect,
        Verdict::Failed,
        Verdict::Abandoned,
    ] {
        assert!(
            total.verdicts.get(&(v as i32)).is_some_and(|n| *n > 0),
            "no {v:?} run generated: {total:?}"
        );
    }
    assert!(
        total.crashes > seeds
            && total.rebuilds > 0
            && total.redelivered > seeds
            && total.gaps > seeds / 2
            && total.duplicates > seeds
            && total.poison > seeds
            && total.unfinished > 0
            && total.refetched > 0
            && total.history_chunks > 0
            && total.spills > 0
            && total.accepted > 0,
        "generator coverage: {total:?}"
    );
}

// ---------------------------------------------------------------- focused cases

/// Encodes one run of `src-1` (bodies in order, event numbers from 1).
fn one_run(run: &str, bodies: Vec<Body>) -> Vec<Vec<u8>> {
    (1..)
        .zip(bodies)
        .map(|(n, b)| ev(n, "src-1", run, "", b).encode_to_vec())
        .collect()
}

/// Folds `payloads` into a fresh sled store as two batches split at `split`,
/// checks it against the reference fold, and returns it reopened from disk.
async fn fold_store(payloads: &[Vec<u8>], split: usize) -> (TempDir, Store) {
    let msgs = msgs_of(payloads);
    let dir = TempDir::new().unwrap();
    let store = open_store(dir.path()).unwrap();
    let mut meta = store.meta().unwrap();
    let split = split.min(msgs.len());
    for batch in [&msgs[..split], &msgs[split..]] {
        process_batch(&store, &mut meta, batch).unwrap();
    }
    let store = reopen(store, &dir, true).await;
    let want = reference(&msgs);
    assert_eq!(store.meta().unwrap(), want.meta_record());
    assert_eq!(store.digest().unwrap(), digest_of_working(&want).unwrap());
    (dir, store)
}

/// Three pages holding `n` records in all (10, 10, n - 20), each declaring `n`.
fn three_pages(n: u64, fail_page_1: bool, refetch: bool) -> Vec<Body> {
    let mut b = vec![started(Some(n), SyncMode::Full)];
    for p in 0..3 {
        if p == 1 && fail_page_1 {
            b.push(failed(p, true));
            b.push(failed(p, false));
            if !refetch {
                continue;
            }
        }
        b.push(fetched(p, Some(n)));
        b.extend((p * PAGE..((p + 1) * PAGE).min(n)).map(observed));
    }
    b.push(finished(EngineOutcome::Succeeded, Some(n)));
    b
}

#[tokio::test]
async fn clean_run_is_complete() {
    let run = uuid(2, 1);
    let n = 25;
    let (_dir, store) = fold_store(&one_run(&run, three_pages(n, false, false)), 7).await;
    let r = store.run(&run).unwrap().unwrap();
    assert_eq!(r.verdict, Verdict::Complete as i32, "{:?}", r.reasons);
    assert!(r.reasons.is_empty());
    assert_eq!((r.records_unique, r.records_observed), (n, n));
    assert_eq!((r.pages_fetched, r.pages_failed_final), (3, 0));
    let src = store.source("src-1").unwrap().unwrap();
    assert_eq!(src.last_complete_full_run_id, run);
    assert_eq!(src.last_complete_unique, n);
    assert_eq!(store.run_ids_of("src-1", 10).unwrap(), vec![run]);
}

#[tokio::test]
async fn page_given_up_is_incomplete_and_named() {
    let run = uuid(2, 2);
    let (_dir, store) = fold_store(&one_run(&run, three_pages(25, true, false)), 13).await;
    let r = store.run(&run).unwrap().unwrap();
    assert_eq!(r.verdict, Verdict::Incomplete as i32, "{:?}", r.reasons);
    assert_eq!((r.pages_failed_final, r.page_failures), (1, 2));
    assert_eq!(r.failed_page_keys, vec!["startIndex=11".to_owned()]);
    let pages_failed = r
        .reasons
        .iter()
        .find(|x| x.code == ReasonCode::PagesFailed as i32)
        .unwrap_or_else(|| panic!("no PagesFailed reason: {:?}", r.reasons));
    assert!(
        pages_failed.message.contains("startIndex=11"),
        "{pages_failed:?}"
    );
    assert!(
        r.reasons
            .iter()
            .any(|x| x.code == ReasonCode::CountShort as i32)
    );
    let src = store.source("src-1").unwrap().unwrap();
    assert_eq!(src.last_finished_verdict, Verdict::Incomplete as i32);
    assert!(src.last_complete_run_id.is_empty());
    assert_eq!(src.consecutive_failures, 1);
}

#[tokio::test]
async fn page_given_up_then_refetched_is_complete() {
    let run = uuid(2, 3);
    let bodies = three_pages(25, true, true);
    // Split right after the give-up so the refetch reads the failed page from sled.
    let split = bodies
        .iter()
        .position(|b| matches!(b, Body::PageFailed(f) if !f.will_retry))
        .unwrap()
        + 1;
    let (_dir, store) = fold_store(&one_run(&run, bodies), split).await;
    let r = store.run(&run).unwrap().unwrap();
    assert_eq!(r.verdict, Verdict::Complete as i32, "{:?}", r.reasons);
    assert_eq!(
        (r.pages_fetched, r.pages_failed_final, r.page_failures),
        (3, 0, 2)
    );
    assert!(r.failed_page_keys.is_empty());
    assert_eq!(r.records_unique, 25);
}

#[tokio::test]
async fn undecodable_payload_is_poison_and_folding_continues() {
    let run = uuid(2, 4);
    let mut payloads = one_run(&run, three_pages(25, false, false));
    let garbage = b"\xff\xff\xff\xff not protobuf".to_vec();
    payloads.insert(2, garbage.clone());
    let (_dir, store) = fold_store(&payloads, 2).await;
    let poison = store.poison(0, 10).unwrap();
    assert_eq!(poison.len(), 1, "{poison:?}");
    assert_eq!(poison[0].seq, 3);
    assert_eq!(poison[0].payload_len, garbage.len() as u64);
    assert_eq!(poison[0].subject, "govledger.v1.unknown");
    assert!(
        poison[0].error.contains("not a govledger.v1.Event"),
        "{poison:?}"
    );
    assert!(store.poison(3, 10).unwrap().is_empty());
    let meta = store.meta().unwrap();
    assert_eq!(meta.poison_events, 1);
    assert_eq!(meta.events_applied, payloads.len() as u64 - 1);
    let r = store.run(&run).unwrap().unwrap();
    assert_eq!(r.verdict, Verdict::Complete as i32, "{:?}", r.reasons);
    assert_eq!(r.records_unique, 25);
}

#[tokio::test]
async fn republished_event_counts_once() {
    let run = uuid(2, 5);
    let mut payloads = one_run(&run, three_pages(25, false, false));
    // The first record (seq 3) published again later (seq 10).
    let again = payloads[2].clone();
    payloads.insert(9, again);
    // Original and copy in one batch, and in different batches (copy checked via sled).
    for split in [1, 5, payloads.len()] {
        let (_dir, store) = fold_store(&payloads, split).await;
        let meta = store.meta().unwrap();
        assert_eq!(meta.duplicate_events, 1, "split {split}");
        assert_eq!(
            meta.events_applied,
            payloads.len() as u64 - 1,
            "split {split}"
        );
        let r = store.run(&run).unwrap().unwrap();
        assert_eq!(
            (r.records_observed, r.records_unique, r.duplicates),
            (25, 25, 0)
        );
        assert_eq!(r.verdict, Verdict::Complete as i32, "{:?}", r.reasons);
        let ident = store
            .identity("src-1", EntityType::User as i32, "u-0")
            .unwrap();
        assert_eq!(ident.unwrap().observations, 1, "split {split}");
    }
}

/// More UUID v7 ids in one block than it keeps: the ones past its limit get
/// records of their own, and a re-published event is a duplicate whichever of
/// the two holds its id and wherever the batches split.
#[tokio::test]
async fn event_id_blocks_overflow_into_records() {
    use govledger_projector::keys::{EVENT_BLOCK_IDS_MAX, event_block_of};
    let run = uuid(2, 6);
    let n = EVENT_BLOCK_IDS_MAX as u64 + 150;
    let mut bodies = vec![started(None, SyncMode::Full)];
    bodies.extend((0..n).map(observed));
    let mut payloads: Vec<Vec<u8>> = (1u64..)
        .zip(bodies)
        .map(|(i, b)| {
            let mut e = ev(i, "src-1", &run, "", b);
            // One millisecond, one sub-block (tails are multiples of 16).
            e.event_id = format!("0192f3a4-5b6c-7abc-9def-{:012x}", i * 16);
            e.encode_to_vec()
        })
        .collect();
    let block = |p: &Vec<u8>| {
        event_block_of(&Event::decode(&p[..]).unwrap().event_id)
            .unwrap()
            .0
    };
    assert!(payloads.iter().all(|p| block(p) == block(&payloads[0])));
    // Re-published: one id held by the block, one past its limit, the last one.
    let again = [10, EVENT_BLOCK_IDS_MAX + 20, payloads.len() - 1].map(|i| payloads[i].clone());
    payloads.extend(again.iter().cloned());
    payloads.insert(EVENT_BLOCK_IDS_MAX + 60, again[0].clone());
    for split in [
        1,
        300,
        EVENT_BLOCK_IDS_MAX,
        EVENT_BLOCK_IDS_MAX + 40,
        payloads.len() - 2,
    ] {
        let (_dir, store) = fold_store(&payloads, split).await;
        let meta = store.meta().unwrap();
        assert_eq!(meta.duplicate_events, 4, "split {split}");
        assert_eq!(meta.events_applied, n + 1, "split {split}");
        let r = store.run(&run).unwrap().unwrap();
        assert_eq!((r.records_observed, r.duplicates), (n, 0), "split {split}");
    }
}

/// Two runs of `src-1` (25 then 12 records, so users, groups and memberships
/// drop past the 25% guard), with `accept` events for the second inserted
/// before its finish (`before`) or after it.
fn drop_history(accept: &[(&str, Vec<AcceptedDrop>)], before: bool) -> (String, Vec<Vec<u8>>) {
    let (r1, r2) = (uuid(2, 1), uuid(2, 2));
    let mut n = 0;
    let mut out = Vec::new();
    let mut push = |run: &str, b: Body| {
        n += 1;
        out.push(ev(n, "src-1", run, "", b).encode_to_vec());
    };
    for b in three_pages(25, false, false) {
        push(&r1, b);
    }
    let mut second = three_pages(12, false, false);
    let finish = second.pop().unwrap();
    for b in second {
        push(&r2, b);
    }
    let acceptances: Vec<(String, Body)> = accept
        .iter()
        .map(|(run, drops)| {
            let a = DeletionsAccepted {
                accepted_by: "alice".into(),
                reason: "reorganisation".into(),
                ticket: "CHG-1".into(),
                drops: drops.clone(),
            };
            ((*run).to_owned(), Body::DeletionsAccepted(a))
        })
        .collect();
    if before {
        for (run, a) in acceptances.clone() {
            push(&run, a);
        }
    }
    push(&r2, finish);
    if !before {
        for (run, a) in acceptances {
            push(&run, a);
        }
    }
    (r2, out)
}

fn drop_of(t: EntityType, baseline: u64, now: u64) -> AcceptedDrop {
    AcceptedDrop {
        entity_type: t as i32,
        baseline,
        now,
    }
}

#[tokio::test]
async fn an_acceptance_applies_whenever_it_is_folded_and_only_to_the_drops_decided() {
    let right = vec![
        drop_of(EntityType::User, 22, 11),
        drop_of(EntityType::Group, 3, 1),
        drop_of(EntityType::Membership, 22, 11),
    ];
    let wrong = vec![drop_of(EntityType::User, 22, 12)];
    // Not accepted: SUSPECT, the three drops named.
    let (r2, payloads) = drop_history(&[], true);
    let (_dir, store) = fold_store(&payloads, 30).await;
    let r = store.run(&r2).unwrap().unwrap();
    assert_eq!(r.verdict, Verdict::Suspect as i32, "{:?}", r.reasons);
    assert_eq!(
        govledger_projector::deletion_guard::acceptable(&r).unwrap(),
        right
    );
    // Accepted before or after the decision, in one batch or split anywhere:
    // COMPLETE, the drops named as DELETIONS_ACCEPTED, the source's last
    // complete run.
    for before in [true, false] {
        let (r2, payloads) = drop_history(&[(&r2, right.clone())], before);
        for split in [1, 30, payloads.len() - 1] {
            let (_dir, store) = fold_store(&payloads, split).await;
            let r = store.run(&r2).unwrap().unwrap();
            assert_eq!(r.verdict, Verdict::Complete as i32, "{:?}", r.reasons);
            assert_eq!(r.reasons.len(), 3);
            assert!(
                r.reasons
                    .iter()
                    .all(|x| x.code == ReasonCode::DeletionsAccepted as i32
                        && x.message.contains("deletions accepted by alice"))
            );
            let src = store.source("src-1").unwrap().unwrap();
            assert_eq!(src.last_complete_full_run_id, r2);
            assert_eq!(src.last_finished_verdict, Verdict::Complete as i32);
            assert_eq!(src.deletions_accepted_total, 1);
            assert_eq!(src.last_acceptance, r.acceptance);
        }
    }
    // A wrong drop first: kept, SUSPECT; the right one after it changes
    // nothing (counted); an acceptance of a run the ledger never saw makes
    // no run.
    let (r2, payloads) = drop_history(
        &[(&r2, wrong), (&r2, right), ("no-such-run", vec![])],
        false,
    );
    let (_dir, store) = fold_store(&payloads, 30).await;
    let r = store.run(&r2).unwrap().unwrap();
    assert_eq!(r.verdict, Verdict::Suspect as i32, "{:?}", r.reasons);
    assert_eq!(r.acceptances_ignored, 1);
    assert!(r.acceptance.is_some());
    assert!(store.run("no-such-run").unwrap().is_none());
    let src = store.source("src-1").unwrap().unwrap();
    assert_eq!(src.last_complete_full_run_id, uuid(2, 1));
    assert_eq!(src.deletions_accepted_total, 0);
}
