//! What one sled insert costs, fresh key against update: `cargo run --release -p
//! govledger-projector --example sled_insert_cost -- KEYS ROUNDS VALUE_BYTES`. Round 1
//! inserts KEYS new identity-shaped keys, later rounds overwrite them, all in
//! batches of 1,000 with a flush after each (the projector's cadence and sled
//! settings). Prints µs per insert per round: the gap between round 1 and the
//! others is what a fresh key (and the node splits it causes) costs over an update.

use std::time::Instant;

use govledger_projector::{
    keys::identity_key,
    store::{DEFAULT_CACHE_CAPACITY_BYTES, TREE},
};

fn arg(n: usize, default: u64) -> u64 {
    std::env::args()
        .nth(n)
        .and_then(|a| a.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let keys = arg(1, 20_000);
    let rounds = arg(2, 4);
    let value = vec![0x5a_u8; arg(3, 200) as usize];
    let dir = tempfile::tempdir().unwrap();
    let db = sled::Config::new()
        .path(dir.path())
        .cache_capacity(DEFAULT_CACHE_CAPACITY_BYTES)
        .mode(sled::Mode::HighThroughput)
        .open()
        .unwrap();
    let tree = db.open_tree(TREE).unwrap();
    for round in 1..=rounds {
        let started = Instant::now();
        for first in (0..keys).step_by(1_000) {
            let mut batch = sled::Batch::default();
            for i in first..(first + 1_000).min(keys) {
                let source = format!("bench-{:02}", i % 10);
                batch.insert(identity_key(&source, 1, &format!("u{i:07}")), &value[..]);
            }
            tree.apply_batch(batch).unwrap();
            db.flush().unwrap();
        }
        let us = started.elapsed().as_secs_f64() * 1e6 / keys as f64;
        let what = if round == 1 { "fresh keys" } else { "updates" };
        println!("round {round} ({what}): {us:.2} µs per insert");
    }
}
