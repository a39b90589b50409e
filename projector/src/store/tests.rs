//! Tests of identity loading and the identity index against a real sled store.

use govledger_proto::v1::IdentityState;

use super::{index::IndexReader, *};
use crate::merkle;
use crate::{
    identity_index,
    keys::{self, IdentityKey, KeyRef},
};

fn ident(source: &str, n: u32) -> (IdentityKey, IdentityState) {
    let key = (source.to_owned(), 1, format!("u{n:04}"));
    let state = IdentityState {
        source_id: key.0.clone(),
        entity_type: key.1,
        external_id: key.2.clone(),
        observations: u64::from(n) + 1,
        ..Default::default()
    };
    (key, state)
}

/// Loads `wanted` (as `Key::Identity`) and checks each against `present`.
fn check(store: &Store, wanted: &[IdentityKey], present: &[(IdentityKey, IdentityState)]) {
    let mut w = Working::default();
    let keys = wanted.iter().cloned().map(Key::Identity).collect();
    store.load_into(&mut w, keys).unwrap();
    for k in wanted {
        assert!(w.identities.is_loaded(k), "{k:?} not loaded");
        let expected = present.iter().find(|(p, _)| p == k).map(|(_, s)| s);
        assert_eq!(w.identities.get(k), expected, "{k:?}");
        // Found by page scan or by page number, the page is the stored one.
        let page = IndexReader::default()
            .page_of(&store.tree, &Key::Identity(k.clone()).encode())
            .unwrap()
            .map(|page| (page, false));
        assert_eq!(w.identity_pages_of.get(k).copied(), page, "{k:?}");
    }
}

/// Every identity index record of the store.
fn index_records(store: &Store) -> Vec<(Vec<u8>, Vec<u8>)> {
    store
        .tree
        .scan_prefix([keys::TAG_IDENTITY_INDEX])
        .map(|kv| {
            let (k, v) = kv.unwrap();
            (k.to_vec(), v.to_vec())
        })
        .collect()
}

#[test]
fn the_identity_index_is_the_same_however_identities_arrive() {
    // Two sources; "b" has ids that start no run in a row, past the cap.
    let mut all: Vec<(Vec<u8>, u64)> = (0..600)
        .map(|n| keys::identity_key("a", 1 + n % 2, &format!("u{n:05}")))
        .chain(
            (0..5_000)
                .map(|n| keys::identity_key("b", 1, &format!("x{n:05}")))
                .filter(|k| !identity_index::starts_run(k))
                .take(identity_index::INDEX_CHUNK_MAX * 2 + 40),
        )
        .enumerate()
        .map(|(i, k)| (k, i as u64 / 16))
        .collect();
    all.sort();
    let expected = identity_index::chunk_all(&all);
    let mut rng = 0x9e37_79b9_7f4a_7c15_u64;
    let mut next = |n: usize| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        (rng % n as u64) as usize
    };
    // In key order, backwards, and shuffled; in batches of 1, 7 and 100.
    for (order, batch) in [(0, 100), (1, 7), (2, 1), (2, 100), (2, 7)] {
        let mut items = all.clone();
        match order {
            0 => {}
            1 => items.reverse(),
            _ => {
                for i in (1..items.len()).rev() {
                    let j = next(i + 1);
                    items.swap(i, j);
                }
            }
        }
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("sled"), 8 << 20).unwrap();
        for chunk in items.chunks(batch) {
            let mut sorted = chunk.to_vec();
            sorted.sort();
            let mut b = super::writer::WriteSet::default();
            store.index_new_identities(&mut b, &sorted).unwrap();
            store.tree.apply_batch(b.batch).unwrap();
        }
        assert!(
            index_records(&store) == expected,
            "order {order}, batches of {batch}"
        );
        let mut reader = IndexReader::default();
        for (k, page) in &all {
            assert_eq!(reader.page_of(&store.tree, k).unwrap(), Some(*page));
        }
        for k in [
            keys::identity_key("a", 1, "u"),
            keys::identity_key("a", 2, "zzzzzz"),
            keys::identity_key("b", 1, "x00001a"),
            keys::identity_key("c", 1, "u00001"),
        ] {
            assert_eq!(
                IndexReader::default().page_of(&store.tree, &k).unwrap(),
                None
            );
        }
    }
}

#[test]
fn identities_load_the_same_by_page_scan_walk_or_get() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("sled"), 8 << 20).unwrap();
    // Source "a": every even id of 0..100. Source "b": all of 0..200.
    let present: Vec<_> = (0..100)
        .step_by(2)
        .map(|n| ident("a", n))
        .chain((0..200).map(|n| ident("b", n)))
        .collect();
    let mut w = Working::default();
    let mut n: std::collections::HashMap<&str, u64> = Default::default();
    let present: Vec<_> = present
        .into_iter()
        .map(|(k, s)| {
            let nth = n.entry(if k.0 == "a" { "a" } else { "b" }).or_default();
            let page = crate::identity_page::page_of(*nth);
            *nth += 1;
            w.identities.insert(k.clone(), s.clone());
            w.identity_pages_of.insert(k.clone(), (page, true));
            (k, s)
        })
        .collect();
    store.commit(&w).unwrap();
    let a = |n| ident("a", n).0;
    let b = |n| ident("b", n).0;

    // Side by side, half absent, in no order, one asked twice: one walk.
    let mut side_by_side: Vec<_> = (0..20).rev().map(a).collect();
    side_by_side.push(a(7));
    check(&store, &side_by_side, &present);
    // In listing order: every present one is found by the page scan from
    // the first one's page; those before it by page number.
    check(
        &store,
        &(40..100).chain(0..40).map(b).collect::<Vec<_>>(),
        &present,
    );
    check(&store, &(150..200).map(b).collect::<Vec<_>>(), &present);
    // Two sources, each scanned from its own first identity.
    check(
        &store,
        &(0..30).flat_map(|n| [a(n), b(n)]).collect::<Vec<_>>(),
        &present,
    );
    // Past the last record of "a" and before the first of "b".
    check(&store, &(95..110).map(a).collect::<Vec<_>>(), &present);
    // Scattered: 190 unasked records between 10 asked ones, so the walk
    // gives up and the rest are read one get each.
    check(
        &store,
        &(0..200).step_by(20).map(b).collect::<Vec<_>>(),
        &present,
    );
    // Too few for a walk.
    check(&store, &[a(2), a(3), b(5)], &present);
    // Pages: 16 identities each, in the order first seen.
    let page_of_b17 = IndexReader::default()
        .page_of(&store.tree, &Key::Identity(b(17)).encode())
        .unwrap();
    assert_eq!(page_of_b17, Some(1));
    assert_eq!(
        store.identity("b", 1, "u0017").unwrap(),
        Some(ident("b", 17).1)
    );
    assert_eq!(store.identity("b", 1, "u0200").unwrap(), None);
    // A corrupt index chunk, or page, is an error naming its key, by
    // either path.
    let bad = ident("a", 4).0;
    let (enc, _) = store
        .tree
        .range(..=identity_index::chunk_key(&Key::Identity(bad.clone()).encode()))
        .next_back()
        .unwrap()
        .unwrap();
    let enc = enc.to_vec();
    store.tree.insert(&enc, &[0xff, 0xff, 0xff][..]).unwrap();
    let page_b0 = KeyRef::IdentityPage("b", 0).encode();
    store.tree.insert(&page_b0, &[0, 0, 0, 9][..]).unwrap();
    for (wanted, at) in [
        // Read by the scan (its first identity's page number) ...
        (
            std::iter::once(bad.clone())
                .chain((0..20).map(a))
                .collect::<Vec<_>>(),
            &enc,
        ),
        // ... or by the walk, the scan having started past its page.
        (std::iter::once(a(60)).chain((0..20).map(a)).collect(), &enc),
        (vec![bad], &enc),
        ((0..10).map(b).collect(), &page_b0),
        (vec![b(3)], &page_b0),
    ] {
        let keys = wanted.into_iter().map(Key::Identity).collect();
        match store.load_into(&mut Working::default(), keys) {
            Err(StoreError::Corrupt { key, .. }) => assert_eq!(&key, at),
            other => panic!("expected a corrupt-record error, got {other:?}"),
        }
    }
}

/// The identity map the commits keep equals the map computed from every
/// page at once, across blocks, batches that touch old pages, and sources;
/// each identity's proof verifies against that root.
#[test]
fn the_identity_map_kept_by_commits_is_the_map_of_every_page() {
    use crate::identity_map::{self, BLOCK_PAGES, page_entries, page_leaf};
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("sled"), 8 << 20).unwrap();
    assert_eq!(store.identity_map_root().unwrap(), merkle::empty_root());
    // Source "b": 5,000 identities (313 pages, two blocks) in batches of
    // 700; every batch also gives one earlier identity another event.
    let mut states: std::collections::BTreeMap<IdentityKey, (u64, IdentityState)> =
        Default::default();
    let mut seq = 0u64;
    for batch in 0..8u32 {
        let mut w = Working::default();
        let mut commit = |w: &mut Working, key: IdentityKey, nth: u64, s: &mut IdentityState| {
            seq += 1;
            identity_map::note(s, seq);
            w.identities.insert(key.clone(), s.clone());
            w.identity_pages_of
                .insert(key, (crate::identity_page::page_of(nth), true));
        };
        for n in (batch * 700)..((batch + 1) * 700).min(5_000) {
            let (k, mut s) = ident("b", n);
            commit(&mut w, k.clone(), u64::from(n), &mut s);
            states.insert(k, (u64::from(n), s));
        }
        if batch > 0 {
            let (k, _) = ident("b", batch * 37);
            let (nth, s) = states.get_mut(&k).unwrap();
            let nth = *nth;
            commit(&mut w, k, nth, s);
        }
        if batch == 3 {
            let (k, mut s) = ident("a", 1);
            commit(&mut w, k.clone(), 0, &mut s);
            states.insert(k, (0, s));
        }
        store.commit(&w).unwrap();
    }
    // The map computed from the pages alone.
    let mut leaves = Vec::new();
    for source in ["a", "b"] {
        let p = keys::prefix(keys::TAG_IDENTITY_PAGE, &[source]);
        let pages: Vec<merkle::Hash> = store
            .tree
            .scan_prefix(&p)
            .map(|kv| page_leaf(&page_entries(&kv.unwrap().1).unwrap()))
            .collect();
        leaves.push((source, pages));
    }
    assert_eq!(leaves[1].1.len() as u64, 5_000u64.div_ceil(16));
    assert!(leaves[1].1.len() as u64 > BLOCK_PAGES);
    let source_leaves: Vec<merkle::Hash> = leaves
        .iter()
        .map(|(s, pages)| identity_map::source_leaf(s, pages.len() as u64, &merkle::root(pages)))
        .collect();
    let root = identity_map::map_root(&source_leaves);
    assert_eq!(store.identity_map_root().unwrap(), root);
    for (key, (_, s)) in states.iter().step_by(97).chain(states.iter().take(1)) {
        let proof = store
            .identity_history_proof(&key.0, key.1, &key.2)
            .unwrap()
            .unwrap();
        let kb = keys::identity_key(&key.0, key.1, &key.2);
        proof
            .verify(&kb, s.history_count, &s.history_head, &root)
            .unwrap_or_else(|e| panic!("{key:?}: {e}"));
        assert!(
            proof
                .verify(&kb, s.history_count - 1, &s.history_head, &root)
                .is_err()
        );
    }
    let (meta, head_root, none) = store.tree_head(None).unwrap();
    assert_eq!(none, None);
    assert_eq!(head_root, root);
    assert_eq!(meta, store.meta().unwrap());
    assert_eq!(
        store.identity_history_proof("b", 1, "nobody").unwrap(),
        None
    );

    // `verify`'s check: the kept map is what the pages give; a leaf or a
    // source record altered on disk is named.
    assert_eq!(store.check_identity_map().unwrap(), None);
    let block = keys::idmap_block_key("b", 1);
    let good = store.tree.get(&block).unwrap().unwrap();
    let mut bad = good.to_vec();
    bad[32 * 3] ^= 1;
    store.tree.insert(&block, bad).unwrap();
    let found = store.check_identity_map().unwrap().unwrap();
    assert!(
        found.contains("leaf of page 259 of source \"b\""),
        "{found}"
    );
    store.tree.insert(&block, good).unwrap();
    let rec_key = keys::prefix(keys::TAG_IDMAP_SOURCE, &["a"]);
    let rec = store.tree.get(&rec_key).unwrap().unwrap();
    let mut bad = rec.to_vec();
    bad[7] += 1;
    store.tree.insert(&rec_key, bad).unwrap();
    let found = store.check_identity_map().unwrap().unwrap();
    assert!(
        found.contains("source \"a\" has 2 pages, it has 1"),
        "{found}"
    );
    store.tree.insert(&rec_key, rec).unwrap();
    assert_eq!(store.check_identity_map().unwrap(), None);
}
