//! Fold + sled commit speed without NATS: `cargo run --release -p govledger-projector
//! --example fold_speed -- IDENTITIES RUNS BATCH [fold-only] [shuffled]`. With `shuffled`
//! each run lists the users in a different order (the worst case for identity pages). Prints events/s for the batched
//! sled path and its fold / commit / flush split, then (without `fold-only`) a raw sled loop of
//! three inserts per event, the first layout's writes (event id, run-seen, identity), for
//! comparison. The benchmark's own sled floor is in `bench/src/storage.rs`. It also prints the
//! heap allocations per event of the fold and of the commit (a counting wrapper around the
//! binary's allocator, mimalloc).

use std::time::Instant;

/// mimalloc, counting allocations (and reallocations) for the per-event figure.
/// Measurement only: the projector and the govledger binary forbid unsafe code.
struct Counting;
static ALLOCS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
// SAFETY: every method hands its arguments unchanged to mimalloc's own
// `GlobalAlloc`, which upholds the trait's contract; counting touches no memory
// it returns.
unsafe impl std::alloc::GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: std::alloc::Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        unsafe { mimalloc::MiMalloc.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: std::alloc::Layout) {
        unsafe { mimalloc::MiMalloc.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: std::alloc::Layout, n: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        unsafe { mimalloc::MiMalloc.realloc(p, l, n) }
    }
}
#[global_allocator]
static GLOBAL: Counting = Counting;

use bytes::Bytes;
use govledger_projector::{OwnedMsg, Store};
use govledger_proto::v1::{
    EngineOutcome, EntityType, Event, PageFetched, RecordObserved, SyncMode, SyncRunFinished,
    SyncRunStarted, event::Body,
};
use prost::Message as _;

fn ev(n: u64, run: &str, body: Body) -> Event {
    Event {
        // UUID v7 as producers make them: time-ordered, ~500 per millisecond.
        event_id: {
            let ms = 0x0192_0000_0000 + n / 500;
            format!("{:08x}-{:04x}-7000-8000-{n:012x}", ms >> 16, ms & 0xffff)
        },
        occurred_at_us: n as i64,
        source_id: "hr".into(),
        run_id: run.into(),
        schema_version: 1,
        body: Some(body),
        ..Default::default()
    }
}

fn main() {
    let args: Vec<u64> = std::env::args()
        .skip(1)
        .take(3)
        .map(|a| a.parse().unwrap())
        .collect();
    let (idents, runs, batch) = (args[0], args[1], args[2] as usize);
    let flag = |f: &str| std::env::args().skip(4).any(|a| a == f);
    let shuffled = flag("shuffled");
    // User number at position `i` of run `r`: in order, or a permutation that
    // changes every run (multiplying by an odd number modulo a power of two is
    // one; the power of two at or above `idents` keeps it in range by cycling).
    let order = |i: u64, r: u64| {
        if !shuffled {
            return i;
        }
        let m = idents.next_power_of_two();
        let mut x = i;
        loop {
            x = (x.wrapping_mul(2 * r + 0x9e37_79b1) + r * 7919) & (m - 1);
            if x < idents {
                return x;
            }
        }
    };
    let mut msgs = Vec::new();
    let mut n = 0u64;
    for r in 0..runs {
        let run = format!("run-{r:04}");
        let mut push = |b: Body| {
            n += 1;
            msgs.push(OwnedMsg {
                seq: n,
                subject: String::new(),
                stored_at_us: 0,
                payload: Bytes::from(ev(n, &run, b).encode_to_vec()),
                leaf: None,
            });
        };
        push(Body::SyncRunStarted(SyncRunStarted {
            mode: SyncMode::Full as i32,
            ..Default::default()
        }));
        for p in 0..idents.div_ceil(100) {
            push(Body::PageFetched(PageFetched {
                page_key: format!("Users:startIndex={}", p * 100 + 1),
                declared_total: Some(idents),
                item_count: 100,
                requested_count: 100,
                offset: Some(p * 100),
                entity_type: EntityType::User as i32,
                ..Default::default()
            }));
            for i in (p * 100..((p + 1) * 100).min(idents)).map(|i| order(i, r)) {
                push(Body::RecordObserved(RecordObserved {
                    entity_type: EntityType::User as i32,
                    external_id: format!("u{i:07}"),
                    active: Some(true),
                    attribute_digest: format!("{i:064x}"),
                    display_name: format!("user{i}@example.test"),
                    version: "W/\"1\"".into(),
                    page_key: format!("Users:startIndex={}", p * 100 + 1),
                    ..Default::default()
                }));
            }
        }
        push(Body::SyncRunFinished(SyncRunFinished {
            engine_outcome: EngineOutcome::Succeeded as i32,
            ..Default::default()
        }));
    }
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("sled"), 64 << 20).unwrap();
    let mut meta = store.meta().unwrap();
    let t = Instant::now();
    let (mut t_fold, mut t_commit, mut t_flush) = (
        std::time::Duration::ZERO,
        std::time::Duration::ZERO,
        std::time::Duration::ZERO,
    );
    let (mut a_fold, mut a_commit) = (0u64, 0u64);
    for chunk in msgs.chunks(batch) {
        let a0 = ALLOCS.load(std::sync::atomic::Ordering::Relaxed);
        let t0 = Instant::now();
        let govledger_projector::Folded::Batch(b) =
            govledger_projector::fold_batch(&store, &meta, chunk).unwrap()
        else {
            panic!()
        };
        let t1 = Instant::now();
        let a1 = ALLOCS.load(std::sync::atomic::Ordering::Relaxed);
        store.commit(&b.working).unwrap();
        let a2 = ALLOCS.load(std::sync::atomic::Ordering::Relaxed);
        a_fold += a1 - a0;
        a_commit += a2 - a1;
        meta = b.meta;
        let t2 = Instant::now();
        store.flush_blocking().unwrap();
        t_fold += t1 - t0;
        t_commit += t2 - t1;
        t_flush += t2.elapsed();
    }
    let fold = t.elapsed();
    println!(
        "allocs per event: fold {:.1}, commit {:.1}",
        a_fold as f64 / msgs.len() as f64,
        a_commit as f64 / msgs.len() as f64
    );
    println!("  of which: fold {t_fold:.2?}, sled commit {t_commit:.2?}, flush {t_flush:.2?}");
    println!(
        "fold+sled: {} events in {:.2?} = {:.0} ev/s",
        msgs.len(),
        fold,
        msgs.len() as f64 / fold.as_secs_f64()
    );

    if flag("fold-only") {
        return; // for profiling the fold alone
    }
    // Raw sled: 3 inserts of similar sizes per event, same batch and flush cadence.
    let dir2 = tempfile::tempdir().unwrap();
    let db = sled::Config::new()
        .path(dir2.path())
        .cache_capacity(64 << 20)
        .mode(sled::Mode::HighThroughput)
        .open()
        .unwrap();
    let tree = db.open_tree("t").unwrap();
    let t = Instant::now();
    for (ci, chunk) in msgs.chunks(batch).enumerate() {
        let mut b = sled::Batch::default();
        for (j, m) in chunk.iter().enumerate() {
            let k = (ci * batch + j) as u64;
            b.insert(format!("e{k:020}").as_bytes(), &k.to_be_bytes());
            b.insert(format!("u{:07}{k}", k % idents).as_bytes(), &[]);
            b.insert(format!("i{:07}", k % idents).as_bytes(), &m.payload[..]);
        }
        tree.apply_batch(b).unwrap();
        db.flush().unwrap();
    }
    let raw = t.elapsed();
    println!(
        "raw sled (3 inserts/event): {:.2?} = {:.0} ev/s; ratio {:.2}",
        raw,
        msgs.len() as f64 / raw.as_secs_f64(),
        raw.as_secs_f64() / fold.as_secs_f64()
    );
}
