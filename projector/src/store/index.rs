//! The identity index in the store: reading an identity's page number, and
//! merging a batch's new identities into the index's chunks at commit.

use super::{Result, Store, StoreError};
use crate::identity_index;

impl Store {
    /// Adds `new` (identity key, page number; sorted by key, of any sources)
    /// to the identity index ([`identity_index`]) in `batch`: each run of
    /// chunks a new identity falls in is read, merged with the new entries
    /// and cut into chunks again, so the chunks stay the same function of
    /// the set of identities however they arrive.
    pub(super) fn index_new_identities(
        &self,
        batch: &mut super::writer::WriteSet,
        new: &[(Vec<u8>, u64)],
    ) -> Result<()> {
        let mut i = 0;
        while let Some((key, _)) = new.get(i) {
            let prefix = identity_index::source_prefix(key).ok_or_else(|| StoreError::Corrupt {
                key: key.clone(),
                what: "an identity key",
            })?;
            let (old, next_run) = self.index_run_at(&prefix, key)?;
            let mut entries: Vec<(Vec<u8>, u64)> = Vec::new();
            for (k, v) in &old {
                let chunk = index_chunk(k, v)?;
                entries.extend(chunk.into_iter().map(|(id, page)| (id.to_vec(), page)));
            }
            let before = i;
            while let Some((id, page)) = new.get(i)
                && identity_index::source_part(id) == prefix.get(1..)
                && next_run.as_ref().is_none_or(|n| id < n)
            {
                entries.push((id.clone(), *page));
                i += 1;
            }
            if i == before {
                return Err(StoreError::PageUnknown(format!(
                    "identity index: {key:?} fits no run of its source"
                )));
            }
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            // A key both stored and new (not expected) keeps the new page.
            entries.dedup_by(|later, earlier| {
                let same = later.0 == earlier.0;
                if same {
                    earlier.1 = later.1;
                }
                same
            });
            let chunks = identity_index::chunk_run(&entries);
            for (k, _) in &old {
                if !chunks.iter().any(|(c, _)| c.as_slice() == k.as_ref()) {
                    batch.remove(k.clone());
                }
            }
            for (k, v) in chunks {
                let same = old
                    .iter()
                    .any(|(ok, ov)| ok.as_ref() == k.as_slice() && ov.as_ref() == v.as_slice());
                if !same {
                    batch.insert(k, v);
                }
            }
        }
        Ok(())
    }

    /// The stored chunks of the run of `prefix`'s source that holds identity
    /// `key`, and the identity key that starts the source's next run (`None`:
    /// the run is the source's last). The run begins at the last chunk at or
    /// before `key`, back to the chunk that starts its run (or, when no chunk
    /// comes before `key`, the source's first chunk), and ends before the
    /// next chunk that starts a run.
    fn index_run_at(&self, prefix: &[u8], key: &[u8]) -> Result<(Vec<Stored>, Option<Vec<u8>>)> {
        let mut from = self
            .tree
            .range(prefix.to_vec()..=identity_index::chunk_key(key))
            .next_back()
            .transpose()?
            .map(|(k, _)| k);
        while let Some(at) = &from {
            if identity_index::starts_run(&identity_index::first_identity_key(at)) {
                break;
            }
            match self.tree.range(prefix.to_vec()..at.to_vec()).next_back() {
                Some(prev) => from = Some(prev?.0),
                None => break,
            }
        }
        let from = from.map_or_else(|| prefix.to_vec(), |k| k.to_vec());
        let mut old: Vec<Stored> = Vec::new();
        for kv in self.tree.range(from..) {
            let (k, v) = kv?;
            if !k.starts_with(prefix) {
                break;
            }
            let first = identity_index::first_identity_key(&k);
            if !old.is_empty() && identity_index::starts_run(&first) {
                return Ok((old, Some(first)));
            }
            old.push((k, v));
        }
        Ok((old, None))
    }
}

/// A stored (key, value).
type Stored = (sled::IVec, sled::IVec);

/// The entries of the identity index chunk stored at `chunk_key`, checked
/// to begin with the identity the key names.
fn index_chunk<'c>(chunk_key: &[u8], value: &'c [u8]) -> Result<Vec<(&'c [u8], u64)>> {
    identity_index::parse(value)
        .filter(|e| identity_index::is_first_of(chunk_key, e[0].0))
        .ok_or_else(|| StoreError::Corrupt {
            key: chunk_key.to_vec(),
            what: "an identity index chunk",
        })
}

/// Reads page numbers from the identity index, keeping the last chunk read:
/// identity keys asked in key order that fall in one chunk cost one read of
/// it. A single lookup costs one read (where the next chunk starts is read
/// only when a later key is past the held chunk's last entry).
#[derive(Default)]
pub(super) struct IndexReader {
    held: Option<HeldChunk>,
    /// The prefix of the chunk keys of the held chunk's source.
    source: Vec<u8>,
}

struct HeldChunk {
    key: sled::IVec,
    value: sled::IVec,
    /// The next chunk's key of the same source, once read (`Some(None)`: the
    /// held chunk is the source's last).
    next: Option<Option<sled::IVec>>,
}

impl IndexReader {
    /// The page number of identity `key`, `None` when the store has no such
    /// identity.
    pub(super) fn page_of(&mut self, tree: &sled::Tree, key: &[u8]) -> Result<Option<u64>> {
        let ck = identity_index::chunk_key(key);
        if let Some(held) = &mut self.held
            && ck.starts_with(&self.source)
            && held.key.as_ref() <= ck.as_slice()
        {
            let entries = index_chunk(&held.key, &held.value)?;
            let page = identity_index::lookup(&entries, key);
            let within = entries.last().is_some_and(|(last, _)| key <= *last);
            if within {
                return Ok(page);
            }
            // Past its last entry: still this chunk's (and absent) unless
            // another chunk of the source starts at or before it.
            let next = match &held.next {
                Some(next) => next.clone(),
                None => {
                    let after = (
                        std::ops::Bound::Excluded(held.key.to_vec()),
                        std::ops::Bound::Unbounded,
                    );
                    let next = match tree.range(after).next() {
                        Some(kv) => Some(kv?.0).filter(|n| n.starts_with(&self.source)),
                        None => None,
                    };
                    held.next = Some(next.clone());
                    next
                }
            };
            if next.is_none_or(|n| ck.as_slice() < n.as_ref()) {
                return Ok(page);
            }
        }
        self.held = None;
        let Some(prefix) = identity_index::source_prefix(key) else {
            return Ok(None);
        };
        let Some(kv) = tree.range(prefix.clone()..=ck).next_back() else {
            return Ok(None);
        };
        let (at, value) = kv?;
        let page = identity_index::lookup(&index_chunk(&at, &value)?, key);
        self.source = prefix;
        self.held = Some(HeldChunk {
            key: at,
            value,
            next: None,
        });
        Ok(page)
    }
}
