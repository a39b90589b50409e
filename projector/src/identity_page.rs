//! Identity pages: the store keeps identity records [`IDENTITY_PAGE_CAPACITY`]
//! to a sled record, grouped by the order their source first showed them.
//!
//! Each observation rewrites its identity's record. One sled record per
//! identity meant one sled insert per observation, and sled copies the whole
//! leaf node on every insert: that was the largest single cost of a batch.
//! A source lists its records in the same order every run, so the identities
//! of one batch sit on a few pages and a batch writes a few records instead
//! of one per event. (A source whose order changes every run still costs one
//! page write per observation, of a larger value.)
//!
//! An identity's page never changes: its number is its position among its
//! source's identities ([`SourceState::identities_total`] when it was first
//! seen) divided by the capacity. The identity index
//! ([`crate::identity_index`]) maps the identity's key to that number, written
//! once, so a lookup is key → index chunk → page → entry. (The fold keeps it
//! beside the record, in `Working::identity_pages_of`, not in it.) Because pages follow
//! the listing order, the store reads a batch's pages in order first and
//! needs the page numbers only for identities it did not meet there.
//!
//! A page's value is its entries sorted by identity key, each
//! `u32 BE key length, key, u32 BE value length, value` (the value being the
//! prost-encoded [`IdentityState`]). Pure code, no I/O.
//!
//! [`SourceState::identities_total`]: govledger_proto::v1::SourceState::identities_total
//! [`IdentityState`]: govledger_proto::v1::IdentityState

/// Identities per page.
pub const IDENTITY_PAGE_CAPACITY: u64 = 16;

/// The page of the identity that is number `n` (from 0) of its source.
pub fn page_of(n: u64) -> u64 {
    n / IDENTITY_PAGE_CAPACITY
}

/// Why a page could not be written.
#[derive(Debug, PartialEq, thiserror::Error)]
pub enum PageError {
    #[error("the stored bytes are no identity page")]
    NotAPage,
    #[error("encoding an identity record: {0}")]
    Encode(#[from] prost::EncodeError),
}

/// Appends `bytes` after their u32 BE length.
fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
    out.extend_from_slice(bytes);
}

/// Appends one entry.
fn put(out: &mut Vec<u8>, key: &[u8], value: &[u8]) {
    put_bytes(out, key);
    put_bytes(out, value);
}

/// Appends one entry, encoding `record` in place.
fn put_record<M: prost::Message>(
    out: &mut Vec<u8>,
    key: &[u8],
    record: &M,
) -> Result<(), PageError> {
    put_bytes(out, key);
    out.extend_from_slice(&(record.encoded_len() as u32).to_be_bytes());
    record.encode(out)?;
    Ok(())
}

/// A page of `records` (identity key, record), sorted by key without repeats.
pub fn encode<M: prost::Message>(records: &[(Vec<u8>, &M)]) -> Result<Vec<u8>, PageError> {
    merge(&[], records)
}

/// The entries of a page, in key order; `None` when the bytes are no page
/// (truncated, or keys out of order).
pub fn parse(bytes: &[u8]) -> Option<Vec<(&[u8], &[u8])>> {
    fn take<'b>(rest: &mut &'b [u8]) -> Option<&'b [u8]> {
        let (len, tail) = rest.split_first_chunk::<4>()?;
        let len = u32::from_be_bytes(*len) as usize;
        let (item, tail) = (tail.get(..len)?, tail.get(len..)?);
        *rest = tail;
        Some(item)
    }
    let mut out: Vec<(&[u8], &[u8])> = Vec::with_capacity(IDENTITY_PAGE_CAPACITY as usize);
    let mut rest = bytes;
    while !rest.is_empty() {
        let k = take(&mut rest)?;
        let v = take(&mut rest)?;
        if out.last().is_some_and(|(last, _)| *last >= k) {
            return None;
        }
        out.push((k, v));
    }
    Some(out)
}

/// The value of `key` among a page's parsed `entries`.
pub fn lookup<'p>(entries: &[(&'p [u8], &'p [u8])], key: &[u8]) -> Option<&'p [u8]> {
    entries
        .binary_search_by(|(k, _)| (*k).cmp(key))
        .ok()
        .map(|i| entries[i].1)
}

/// `old` (a page, or empty) with `records` (identity key, record; sorted by
/// key, no repeats) written over it: a changed key's record replaces the old
/// one, a new key is added. Each record is encoded straight into the page.
pub fn merge<M: prost::Message>(
    old: &[u8],
    records: &[(Vec<u8>, &M)],
) -> Result<Vec<u8>, PageError> {
    let old = parse(old).ok_or(PageError::NotAPage)?;
    let mut out = Vec::with_capacity(
        old.iter()
            .map(|(k, v)| k.len() + v.len() + 8)
            .sum::<usize>()
            + records
                .iter()
                .map(|(k, r)| k.len() + r.encoded_len() + 8)
                .sum::<usize>(),
    );
    let mut old = old.into_iter().peekable();
    for (key, record) in records {
        // Old entries before this key stay; an equal one is replaced.
        while let Some((ok, ov)) = old.next_if(|(ok, _)| *ok <= key.as_slice()) {
            if ok != key.as_slice() {
                put(&mut out, ok, ov);
            }
        }
        put_record(&mut out, key, *record)?;
    }
    for (ok, ov) in old {
        put(&mut out, ok, ov);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use govledger_proto::v1::IdentityState;
    use prost::Message as _;

    use super::*;

    fn rec(name: &str) -> IdentityState {
        IdentityState {
            display_name: name.into(),
            ..Default::default()
        }
    }

    /// (key, display name) of every entry.
    fn entries(p: &[u8]) -> Vec<(String, String)> {
        parse(p)
            .unwrap()
            .into_iter()
            .map(|(k, v)| {
                let r = IdentityState::decode(v).unwrap();
                (String::from_utf8(k.to_vec()).unwrap(), r.display_name)
            })
            .collect()
    }

    fn page(recs: &[(&str, &str)]) -> Vec<u8> {
        let owned: Vec<(Vec<u8>, IdentityState)> = recs
            .iter()
            .map(|(k, n)| (k.as_bytes().to_vec(), rec(n)))
            .collect();
        let refs: Vec<(Vec<u8>, &IdentityState)> =
            owned.iter().map(|(k, r)| (k.clone(), r)).collect();
        encode(&refs).unwrap()
    }

    fn pairs(recs: &[(&str, &str)]) -> Vec<(String, String)> {
        recs.iter()
            .map(|(k, n)| (k.to_string(), n.to_string()))
            .collect()
    }

    #[test]
    fn encode_parse_lookup_round_trip() {
        let p = page(&[("a", "1"), ("b", ""), ("c", "333")]);
        assert_eq!(entries(&p), pairs(&[("a", "1"), ("b", ""), ("c", "333")]));
        let parsed = parse(&p).unwrap();
        let got = |k: &[u8]| lookup(&parsed, k).map(|v| IdentityState::decode(v).unwrap());
        assert_eq!(got(b"c"), Some(rec("333")));
        assert_eq!(got(b"b"), Some(rec("")));
        assert_eq!(got(b"bb"), None);
        assert_eq!(parse(&[]), Some(vec![]));
    }

    #[test]
    fn merge_replaces_adds_and_keeps_order() {
        let old = page(&[("b", "old-b"), ("d", "old-d")]);
        let new_recs = [rec("A"), rec("B"), rec("C"), rec("E")];
        let changes: Vec<(Vec<u8>, &IdentityState)> = ["a", "b", "c", "e"]
            .iter()
            .zip(&new_recs)
            .map(|(k, r)| (k.as_bytes().to_vec(), r))
            .collect();
        let merged = merge(&old, &changes).unwrap();
        assert_eq!(
            entries(&merged),
            pairs(&[
                ("a", "A"),
                ("b", "B"),
                ("c", "C"),
                ("d", "old-d"),
                ("e", "E")
            ])
        );
        assert_eq!(merge::<IdentityState>(&old, &[]).unwrap(), old);
        let x = rec("1");
        assert_eq!(
            merge(&[], &[(b"x".to_vec(), &x)]).unwrap(),
            page(&[("x", "1")])
        );
    }

    #[test]
    fn bytes_that_are_no_page_are_refused() {
        let mut p = Vec::new();
        put(&mut p, b"a", b"1");
        put(&mut p, b"b", b"2");
        // Cut anywhere but between the two entries (at 10 bytes).
        for cut in (1..p.len()).filter(|&c| c != 10) {
            assert_eq!(parse(&p[..cut]), None, "cut at {cut}");
        }
        assert_eq!(parse(&p[..10]), Some(vec![(&b"a"[..], &b"1"[..])]));
        let mut unsorted = Vec::new();
        put(&mut unsorted, b"b", b"1");
        put(&mut unsorted, b"a", b"2");
        assert_eq!(parse(&unsorted), None);
        let mut repeated = Vec::new();
        put(&mut repeated, b"a", b"1");
        put(&mut repeated, b"a", b"2");
        assert_eq!(parse(&repeated), None);
        assert_eq!(
            merge::<IdentityState>(&unsorted, &[]),
            Err(PageError::NotAPage)
        );
        assert_eq!(page_of(15), 0);
        assert_eq!(page_of(16), 1);
    }
}
