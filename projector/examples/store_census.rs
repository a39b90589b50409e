//! Counts the records of a projection store by key tag (first byte), with
//! their key and value bytes: which records a projection writes, and how many.
//! Also prints the state digest (as `govledger ledger --digest` would), so two
//! stores folded by different builds can be compared.
//!
//! `cargo run --release -p govledger-projector --example store_census -- DATA_DIR/sled`

use std::collections::BTreeMap;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args()
        .nth(1)
        .ok_or("usage: store_census <sled folder>")?;
    let db = sled::Config::new().path(&path).open()?;
    let tree = db.open_tree(govledger_projector::store::TREE)?;
    let mut by_tag: BTreeMap<String, (u64, u64, u64)> = BTreeMap::new();
    let mut digest = <sha2::Sha256 as sha2::Digest>::new();
    for kv in tree.iter() {
        let (k, v) = kv?;
        govledger_projector::store::digest_entry(&mut digest, &k, &v);
        let mut tag = String::from(char::from(k.first().copied().unwrap_or(b'?')));
        if k.first() == Some(&b'h') {
            tag.push(char::from(k.get(1).copied().unwrap_or(b'?')));
        }
        let e = by_tag.entry(tag).or_default();
        e.0 += 1;
        e.1 += k.len() as u64;
        e.2 += v.len() as u64;
    }
    println!(
        "{:<6} {:>12} {:>12} {:>14}",
        "tag", "records", "key bytes", "value bytes"
    );
    for (tag, (n, kb, vb)) in by_tag {
        println!("{tag:<6} {n:>12} {kb:>12} {vb:>14}");
    }
    let digest = sha2::Digest::finalize(digest);
    println!("digest {}", govledger_projector::fold::hex(&digest));
    Ok(())
}
