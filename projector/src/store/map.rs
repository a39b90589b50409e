//! The identity map as the store keeps it ([`crate::identity_map`]): per
//! source, its page leaves in blocks of 256 and a record of its page count
//! and block roots. A commit that writes identity pages rewrites their
//! leaves, the blocks they sit in and their sources' records in the same
//! atomic batch, so the map always answers for the last applied sequence.
//! A root or a proof reads one source record per source and one block.

use govledger_proto::v1::LedgerMeta;

use super::{Result, Store, StoreError, index::IndexReader, writer::WriteSet};
use crate::{
    identity_map::{self, BLOCK_PAGES, HistoryProof},
    keys::{self, IdentityKey, KeyRef},
    merkle::{self, Hash},
};

/// A source's record: its page count and the root of each block.
#[derive(Debug, Default, Clone)]
struct SourceRecord {
    pages: u64,
    block_roots: Vec<Hash>,
}

impl SourceRecord {
    fn decode(v: &[u8]) -> Option<SourceRecord> {
        let (pages, rest) = v.split_first_chunk::<8>()?;
        let (roots, tail) = rest.as_chunks::<32>();
        tail.is_empty().then(|| SourceRecord {
            pages: u64::from_be_bytes(*pages),
            block_roots: roots.to_vec(),
        })
    }
    fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(8 + 32 * self.block_roots.len());
        v.extend_from_slice(&self.pages.to_be_bytes());
        for r in &self.block_roots {
            v.extend_from_slice(r);
        }
        v
    }
    /// The source's root over all its pages.
    fn root(&self) -> Hash {
        identity_map::source_root(&self.block_roots)
    }
    /// Page leaves block `b` holds.
    fn block_len(&self, b: u64) -> usize {
        self.pages.saturating_sub(b * BLOCK_PAGES).min(BLOCK_PAGES) as usize
    }
}

fn corrupt(key: &[u8], what: &'static str) -> StoreError {
    StoreError::Corrupt {
        key: key.to_vec(),
        what,
    }
}

/// A block's page leaves, `len` of them (zero-padded).
fn block_leaves(bytes: &[u8], len: usize) -> Vec<Hash> {
    let (held, _) = bytes.as_chunks::<32>();
    let mut leaves = held.to_vec();
    leaves.resize(len, [0u8; 32]);
    leaves
}

impl Store {
    fn idmap_source(&self, source: &str) -> Result<SourceRecord> {
        let k = keys::prefix(keys::TAG_IDMAP_SOURCE, &[source]);
        match self.tree.get(&k)? {
            None => Ok(SourceRecord::default()),
            Some(v) => {
                SourceRecord::decode(&v).ok_or_else(|| corrupt(&k, "an identity map record"))
            }
        }
    }

    /// Adds to `batch` the identity map's records for the identity pages
    /// this commit writes (`pages`: key and new bytes).
    pub(super) fn derive_identity_map<'p>(
        &self,
        batch: &mut WriteSet,
        pages: impl Iterator<Item = (&'p [u8], &'p [u8])>,
    ) -> Result<()> {
        // source → page → leaf
        let mut leaves: std::collections::BTreeMap<&str, std::collections::BTreeMap<u64, Hash>> =
            Default::default();
        for (k, bytes) in pages {
            let (source, page) = keys::parse_identity_page_key(k)
                .ok_or_else(|| corrupt(k, "an identity page key"))?;
            let entries =
                identity_map::page_entries(bytes).ok_or_else(|| super::load::not_a_page(k))?;
            leaves
                .entry(source)
                .or_default()
                .insert(page, identity_map::page_leaf(&entries));
        }
        for (source, pages) in leaves {
            let mut rec = self.idmap_source(source)?;
            let old_last = rec.pages.checked_sub(1).map(|p| p / BLOCK_PAGES);
            if let Some(last) = pages.keys().next_back() {
                rec.pages = rec.pages.max(last + 1);
            }
            let blocks = rec.pages.div_ceil(BLOCK_PAGES);
            rec.block_roots.resize(blocks as usize, [0u8; 32]);
            let mut touched: std::collections::BTreeMap<u64, Vec<(u64, Hash)>> = Default::default();
            for (page, leaf) in pages {
                touched
                    .entry(page / BLOCK_PAGES)
                    .or_default()
                    .push((page % BLOCK_PAGES, leaf));
            }
            // The old last block may have grown without a page of it written.
            if let Some(b) = old_last {
                touched.entry(b).or_default();
            }
            for (b, set) in touched {
                let key = keys::idmap_block_key(source, b);
                let stored = self.tree.get(&key)?.unwrap_or_default();
                let mut block = block_leaves(&stored, rec.block_len(b));
                for (i, leaf) in set {
                    block[i as usize] = leaf;
                }
                rec.block_roots[b as usize] = merkle::root(&block);
                batch.insert(key, block.concat());
            }
            batch.insert(
                keys::prefix(keys::TAG_IDMAP_SOURCE, &[source]),
                rec.encode(),
            );
        }
        Ok(())
    }

    /// Every source of the map with its record and leaf, in key order.
    fn idmap_sources(&self) -> Result<Vec<(String, SourceRecord, Hash)>> {
        let mut out = Vec::new();
        for kv in self.tree.scan_prefix([keys::TAG_IDMAP_SOURCE]) {
            let (k, v) = kv?;
            let source = k
                .get(5..)
                .and_then(|s| std::str::from_utf8(s).ok())
                .ok_or_else(|| corrupt(&k, "an identity map key"))?
                .to_owned();
            let rec =
                SourceRecord::decode(&v).ok_or_else(|| corrupt(&k, "an identity map record"))?;
            let leaf = identity_map::source_leaf(&source, rec.pages, &rec.root());
            out.push((source, rec, leaf));
        }
        Ok(out)
    }

    /// The map's root and, for `identity`, the proof of its page (`None`
    /// when the store has no such identity), from one read of the sources.
    fn identity_map_head(
        &self,
        identity: Option<&IdentityKey>,
    ) -> Result<(Hash, Option<HistoryProof>)> {
        let sources = self.idmap_sources()?;
        let leaves: Vec<Hash> = sources.iter().map(|(_, _, l)| *l).collect();
        let proof = match identity {
            Some(key) => self.page_proof(key, &sources, &leaves)?,
            None => None,
        };
        Ok((identity_map::map_root(&leaves), proof))
    }

    /// The identity map's root now.
    pub fn identity_map_root(&self) -> Result<Hash> {
        Ok(self.identity_map_head(None)?.0)
    }

    /// The proof of identity `key`'s page in the map now; `None` when the
    /// store has no such identity.
    pub fn identity_history_proof(
        &self,
        source_id: &str,
        entity_type: i32,
        external_id: &str,
    ) -> Result<Option<HistoryProof>> {
        let key = (source_id.to_owned(), entity_type, external_id.to_owned());
        Ok(self.identity_map_head(Some(&key))?.1)
    }

    /// The proof of `identity`'s page among the map's `sources` (their
    /// `leaves`).
    fn page_proof(
        &self,
        (source_id, entity_type, external_id): &IdentityKey,
        sources: &[(String, SourceRecord, Hash)],
        leaves: &[Hash],
    ) -> Result<Option<HistoryProof>> {
        let key = keys::identity_key(source_id, *entity_type, external_id);
        let Some(page) = IndexReader::default().page_of(&self.tree, &key)? else {
            return Ok(None);
        };
        let page_key = KeyRef::IdentityPage(source_id, page).encode();
        let bytes = self.tree.get(&page_key)?.unwrap_or_default();
        let entries =
            identity_map::page_entries(&bytes).ok_or_else(|| super::load::not_a_page(&page_key))?;
        let source_index = sources
            .iter()
            .position(|(s, _, _)| s == source_id)
            .ok_or_else(|| corrupt(&page_key, "an identity page the map holds"))?;
        let rec = &sources[source_index].1;
        let b = page / BLOCK_PAGES;
        let block_key = keys::idmap_block_key(source_id, b);
        let block = block_leaves(
            &self.tree.get(&block_key)?.unwrap_or_default(),
            rec.block_len(b),
        );
        if page >= rec.pages
            || identity_map::page_leaf(&entries) != block[(page % BLOCK_PAGES) as usize]
        {
            return Err(corrupt(&block_key, "the identity map of its pages"));
        }
        let mut page_path = merkle::inclusion_proof((page % BLOCK_PAGES) as usize, &block);
        page_path.extend(merkle::inclusion_proof(b as usize, &rec.block_roots));
        Ok(Some(HistoryProof {
            source_id: source_id.clone(),
            pages: rec.pages,
            page,
            entries,
            page_path,
            source_index: source_index as u64,
            sources: leaves.len() as u64,
            source_path: merkle::inclusion_proof(source_index, leaves),
        }))
    }

    /// Recomputes the identity map from every identity page and names the
    /// first kept record that differs (a block, a source record, or a
    /// source the map holds without pages). Reads every page once; holds
    /// one source's page leaves at a time.
    pub fn check_identity_map(&self) -> Result<Option<String>> {
        let mut kept: std::collections::BTreeSet<String> = self
            .idmap_sources()?
            .into_iter()
            .map(|(s, _, _)| s)
            .collect();
        let mut source: Option<(String, Vec<Hash>)> = None;
        let mut scan = self.tree.scan_prefix([keys::TAG_IDENTITY_PAGE]);
        loop {
            let next = scan.next().transpose()?;
            let parsed = match &next {
                Some((k, v)) => {
                    let (s, page) = keys::parse_identity_page_key(k)
                        .ok_or_else(|| corrupt(k, "an identity page key"))?;
                    let entries =
                        identity_map::page_entries(v).ok_or_else(|| super::load::not_a_page(k))?;
                    Some((s.to_owned(), page, identity_map::page_leaf(&entries)))
                }
                None => None,
            };
            let same = matches!((&source, &parsed), (Some((a, _)), Some((b, _, _))) if a == b);
            if !same && let Some((s, leaves)) = source.take() {
                kept.remove(&s);
                if let Some(problem) = self.source_differs(&s, &leaves)? {
                    return Ok(Some(problem));
                }
            }
            let Some((s, page, leaf)) = parsed else { break };
            let leaves = &mut source.get_or_insert_with(|| (s, Vec::new())).1;
            if page != leaves.len() as u64 {
                leaves.resize(page as usize, [0u8; 32]);
            }
            leaves.push(leaf);
        }
        Ok(kept
            .into_iter()
            .next()
            .map(|s| format!("the identity map holds source {s:?}, which has no identity pages")))
    }

    /// How the kept map of `source` differs from its page `leaves`, if it does.
    fn source_differs(&self, source: &str, leaves: &[Hash]) -> Result<Option<String>> {
        let rec = self.idmap_source(source)?;
        for (b, computed) in leaves.chunks(BLOCK_PAGES as usize).enumerate() {
            let stored = self
                .tree
                .get(keys::idmap_block_key(source, b as u64))?
                .unwrap_or_default();
            if let Some(i) = (0..computed.len())
                .find(|&i| stored.get(i * 32..i * 32 + 32) != Some(&computed[i][..]))
            {
                return Ok(Some(format!(
                    "the identity map's leaf of page {} of source {source:?} is not what the page gives",
                    b * BLOCK_PAGES as usize + i
                )));
            }
            if rec.block_roots.get(b) != Some(&merkle::root(computed)) {
                return Ok(Some(format!(
                    "the identity map's root of pages {}.. of source {source:?} is not what the pages give",
                    b * BLOCK_PAGES as usize
                )));
            }
        }
        if rec.pages != leaves.len() as u64
            || rec.block_roots.len() != leaves.len().div_ceil(BLOCK_PAGES as usize)
        {
            return Ok(Some(format!(
                "the identity map says source {source:?} has {} pages, it has {}",
                rec.pages,
                leaves.len()
            )));
        }
        Ok(None)
    }

    /// The last applied state's meta, its identity map's root and, for
    /// `identity`, the proof of its page, read from one state (no commit can
    /// happen in between): what a checkpoint signs, and a proof against
    /// exactly that map.
    pub fn tree_head(
        &self,
        identity: Option<&IdentityKey>,
    ) -> Result<(LedgerMeta, Hash, Option<HistoryProof>)> {
        let _guard = self
            .commit_lock
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let (root, proof) = self.identity_map_head(identity)?;
        Ok((self.meta()?, root, proof))
    }
}
