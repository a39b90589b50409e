//! The identity index: which page ([`crate::identity_page`]) holds each
//! identity, kept in chunks of about [`INDEX_CHUNK_MEAN`] identities instead
//! of one sled key per identity.
//!
//! A fresh sled key costs several times an update of an existing one (sled
//! splits a leaf past 16 entries and rewrites its parent), and one key per
//! identity meant a fresh key for every identity a source ever showed: the
//! largest cost of a first sync. Chunks turn most of those into updates of a
//! chunk that exists, and when a source's ids sort in the order it lists
//! them, a batch's new identities land in one or two chunks.
//!
//! Architecture Invariant: the chunks are a function of the set of identities
//! alone, never of the order or batches they arrived in, so a rebuild from
//! the stream writes the same records (the state digest is the same). Within
//! one source, in key order, an identity starts a chunk when it is the
//! source's first, when the hash of its key says so ([`starts_run`]: one key
//! in [`INDEX_CHUNK_MEAN`], the same for every store and build), or when it is
//! the [`INDEX_CHUNK_MAX`]-th since the last of those (a chunk never grows
//! past that, whatever ids a source chooses). A run is the stretch from one
//! hash-chosen (or first) start to the next; it is cut into chunks of at most
//! [`INDEX_CHUNK_MAX`]. A change is written by re-chunking the runs it
//! touches ([`chunk_run`]). (Ids chosen so that none starts a run make one
//! long run of full chunks, read whole and rewritten from the change on:
//! slower, never a larger record.)
//!
//! A chunk's key is its first identity's key with the tag
//! [`keys::TAG_IDENTITY_INDEX`]; its value is its entries in key order, each
//! `u32 BE key length, identity key, u64 BE page number`. Pure code, no I/O.

use crate::keys;

/// One identity key in this many starts a run (a power of two).
pub const INDEX_CHUNK_MEAN: u64 = 16;
/// Entries a chunk holds at most.
pub const INDEX_CHUNK_MAX: usize = 256;

/// The key of the chunk whose first entry is `identity_key`.
pub fn chunk_key(identity_key: &[u8]) -> Vec<u8> {
    retagged(identity_key, keys::TAG_IDENTITY_INDEX)
}

/// The identity key a chunk key was made of (its first entry's).
pub fn first_identity_key(chunk_key: &[u8]) -> Vec<u8> {
    retagged(chunk_key, keys::TAG_IDENTITY)
}

/// `key` with its tag byte replaced by `tag` (the two key kinds differ only there).
fn retagged(key: &[u8], tag: u8) -> Vec<u8> {
    let mut k = key.to_vec();
    if let Some(first) = k.first_mut() {
        *first = tag;
    }
    k
}

/// The bytes of a key (identity or chunk key) that name its source: the
/// length-prefixed source after the tag. `None` when the bytes are no such key.
pub fn source_part(key: &[u8]) -> Option<&[u8]> {
    let (len, _) = key.get(1..)?.split_first_chunk::<4>()?;
    let end = 5usize.checked_add(u32::from_be_bytes(*len) as usize)?;
    key.get(1..end)
}

/// The prefix every chunk key of `identity_key`'s source starts with, or
/// `None` when the bytes are no identity key.
pub fn source_prefix(identity_key: &[u8]) -> Option<Vec<u8>> {
    let part = source_part(identity_key)?;
    let mut p = Vec::with_capacity(1 + part.len());
    p.push(keys::TAG_IDENTITY_INDEX);
    p.extend_from_slice(part);
    Some(p)
}

/// Whether `identity_key` is the key `chunk_key` was made of (its first
/// entry's): [`first_identity_key`] without building it.
pub fn is_first_of(chunk_key: &[u8], identity_key: &[u8]) -> bool {
    identity_key.first() == Some(&keys::TAG_IDENTITY)
        && chunk_key.first() == Some(&keys::TAG_IDENTITY_INDEX)
        && identity_key[1..] == chunk_key[1..]
}

/// Whether `identity_key` starts a run: a fixed 64-bit hash of the key
/// (FNV-1a, then the SplitMix64 finalizer) is a multiple of
/// [`INDEX_CHUNK_MEAN`]. Written out here so that no library or compiler
/// update can move a boundary.
pub fn starts_run(identity_key: &[u8]) -> bool {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in identity_key {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^= h >> 31;
    h.is_multiple_of(INDEX_CHUNK_MEAN)
}

/// A chunk's value.
pub fn encode<K: AsRef<[u8]>>(entries: &[(K, u64)]) -> Vec<u8> {
    let mut out = Vec::with_capacity(entries.iter().map(|(k, _)| 12 + k.as_ref().len()).sum());
    for (k, page) in entries {
        let k = k.as_ref();
        out.extend_from_slice(&(k.len() as u32).to_be_bytes());
        out.extend_from_slice(k);
        out.extend_from_slice(&page.to_be_bytes());
    }
    out
}

/// A chunk's entries in key order; `None` when the bytes are no chunk
/// (truncated, empty, or keys out of order).
pub fn parse(bytes: &[u8]) -> Option<Vec<(&[u8], u64)>> {
    let mut out: Vec<(&[u8], u64)> = Vec::with_capacity(INDEX_CHUNK_MEAN as usize * 2);
    let mut rest = bytes;
    while !rest.is_empty() {
        let (len, tail) = rest.split_first_chunk::<4>()?;
        let len = u32::from_be_bytes(*len) as usize;
        let k = tail.get(..len)?;
        let (page, tail) = tail.get(len..)?.split_first_chunk::<8>()?;
        if out.last().is_some_and(|(last, _)| *last >= k) {
            return None;
        }
        out.push((k, u64::from_be_bytes(*page)));
        rest = tail;
    }
    (!out.is_empty()).then_some(out)
}

/// The page of `identity_key` among a chunk's parsed `entries`.
pub fn lookup(entries: &[(&[u8], u64)], identity_key: &[u8]) -> Option<u64> {
    entries
        .binary_search_by(|(k, _)| (*k).cmp(identity_key))
        .ok()
        .map(|i| entries[i].1)
}

/// The chunks (key, value) of `entries`: identity keys of one source with
/// their pages, sorted by key without repeats, the first of which starts a
/// run (it is the source's first identity or [`starts_run`] says so).
pub fn chunk_run<K: AsRef<[u8]>>(entries: &[(K, u64)]) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut out = Vec::new();
    let mut from = 0;
    for i in 1..=entries.len() {
        let start =
            i == entries.len() || i - from == INDEX_CHUNK_MAX || starts_run(entries[i].0.as_ref());
        if start {
            let chunk = &entries[from..i];
            out.push((chunk_key(chunk[0].0.as_ref()), encode(chunk)));
            from = i;
        }
    }
    out
}

/// The whole index of `entries` (identity keys of any sources with their
/// pages, sorted by key without repeats): what a store holding exactly these
/// identities holds.
pub fn chunk_all<K: AsRef<[u8]>>(entries: &[(K, u64)]) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut out = Vec::new();
    let mut from = 0;
    for i in 1..=entries.len() {
        if i == entries.len()
            || source_part(entries[i].0.as_ref()) != source_part(entries[from].0.as_ref())
        {
            out.extend(chunk_run(&entries[from..i]));
            from = i;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::identity_key;

    fn ids(source: &str, n: std::ops::Range<u32>) -> Vec<(Vec<u8>, u64)> {
        let mut v: Vec<_> = n
            .map(|i| {
                (
                    identity_key(source, 1, &format!("u{i:07}")),
                    u64::from(i) / 16,
                )
            })
            .collect();
        v.sort();
        v
    }

    #[test]
    fn encode_parse_lookup_round_trip() {
        let e = ids("hr", 0..40);
        let bytes = encode(&e);
        let parsed = parse(&bytes).unwrap();
        assert_eq!(parsed.len(), 40);
        for (k, page) in &e {
            assert_eq!(lookup(&parsed, k), Some(*page));
        }
        assert_eq!(lookup(&parsed, &identity_key("hr", 1, "nobody")), None);
        // Cut anywhere, empty, or out of order: no chunk.
        for cut in 0..bytes.len() {
            let whole_entries = cut > 0 && cut.is_multiple_of(4 + e[0].0.len() + 8);
            assert_eq!(
                parse(&bytes[..cut]).is_some(),
                whole_entries,
                "cut at {cut}"
            );
        }
        let mut backwards = e[..2].to_vec();
        backwards.reverse();
        assert_eq!(parse(&encode(&backwards)), None);
        assert_eq!(
            parse(&encode(&[(e[0].0.clone(), 1), (e[0].0.clone(), 2)])),
            None
        );
    }

    #[test]
    fn keys_and_prefixes() {
        let k = identity_key("hr", 1, "u1");
        let c = chunk_key(&k);
        assert_eq!(c[0], keys::TAG_IDENTITY_INDEX);
        assert_eq!(first_identity_key(&c), k);
        let p = source_prefix(&k).unwrap();
        assert!(c.starts_with(&p));
        assert!(!chunk_key(&identity_key("hr2", 1, "u1")).starts_with(&p));
        assert_eq!(source_prefix(&[keys::TAG_IDENTITY, 0, 0]), None);
        assert_eq!(source_prefix(&[keys::TAG_IDENTITY, 0, 0, 0, 9, b'x']), None);
        assert_eq!(source_part(&c), source_part(&k));
        assert_eq!(source_part(&k), Some(&p[1..]));
        assert!(is_first_of(&c, &k));
        assert!(!is_first_of(&c, &identity_key("hr", 1, "u2")));
        assert!(!is_first_of(&k, &k));
        assert!(!is_first_of(&c, &c));
    }

    #[test]
    fn about_one_key_in_the_mean_starts_a_run() {
        let e = ids("hr", 0..100_000);
        let starts = e.iter().filter(|(k, _)| starts_run(k)).count();
        let expected = 100_000 / INDEX_CHUNK_MEAN as usize;
        assert!(
            starts > expected * 9 / 10 && starts < expected * 11 / 10,
            "{starts} starts, about {expected} expected"
        );
        // Pinned: a change to the hash would move every stored boundary.
        let pinned: Vec<u32> = (0..400)
            .filter(|i| starts_run(&identity_key("hr", 1, &format!("u{i:07}"))))
            .collect();
        assert_eq!(pinned, PINNED_STARTS);
    }

    /// The ids `u0000000`..`u0000399` of source "hr", type 1, that start a run.
    const PINNED_STARTS: &[u32] = &[
        41, 42, 54, 91, 94, 96, 103, 123, 125, 153, 156, 163, 192, 201, 203, 216, 245, 254, 274,
        278, 279, 283, 339, 343, 354, 367, 369, 371, 385,
    ];

    #[test]
    fn chunks_start_at_the_first_key_at_hash_starts_and_at_the_cap() {
        let e = ids("hr", 0..5_000);
        let chunks = chunk_run(&e);
        let mut seen = Vec::new();
        for (i, (key, value)) in chunks.iter().enumerate() {
            let entries = parse(value).unwrap();
            assert_eq!(first_identity_key(key), entries[0].0, "chunk {i}");
            assert!(entries.len() <= INDEX_CHUNK_MAX);
            // Only the first entry may start a run.
            assert!(
                entries[1..].iter().all(|(k, _)| !starts_run(k)),
                "chunk {i}"
            );
            assert!(i == 0 || starts_run(entries[0].0) || chunks_before_full(&chunks, i));
            seen.extend(entries.into_iter().map(|(k, p)| (k.to_vec(), p)));
        }
        assert_eq!(seen, e);
        // Keys none of which starts a run: cut at the cap.
        let no_starts: Vec<_> = ids("hr", 0..20_000)
            .into_iter()
            .filter(|(k, _)| !starts_run(k))
            .take(INDEX_CHUNK_MAX * 2 + 5)
            .collect();
        let sizes: Vec<usize> = chunk_run(&no_starts)
            .iter()
            .map(|(_, v)| parse(v).unwrap().len())
            .collect();
        assert_eq!(sizes, [INDEX_CHUNK_MAX, INDEX_CHUNK_MAX, 5]);
        // Two sources never share a chunk.
        let mut two = ids("a", 0..30);
        two.extend(ids("b", 0..30));
        for (key, value) in chunk_all(&two) {
            let p = source_prefix(&first_identity_key(&key)).unwrap();
            for (k, _) in parse(&value).unwrap() {
                assert_eq!(source_prefix(k).unwrap(), p);
            }
        }
        assert!(chunk_all::<Vec<u8>>(&[]).is_empty());
    }

    /// Chunk `i` was cut at the cap: the one before it is full.
    fn chunks_before_full(chunks: &[(Vec<u8>, Vec<u8>)], i: usize) -> bool {
        parse(&chunks[i - 1].1).unwrap().len() == INDEX_CHUNK_MAX
    }
}
