//! The identity map: a commitment to every identity's whole history, signed
//! with each checkpoint, so a bundle can prove it holds *all* of an
//! identity's events up to its anchor — not only that the events it holds
//! are in the log. Pure code, no I/O (the store keeps it: `store::map`).
//!
//! - Each identity record carries its history's count and a hash chain over
//!   the sequences of its events ([`note`]): the events `recent_seqs` ever
//!   held (observations, and confirmations that watch it) and every event of
//!   the actions requested on it, from when the ledger knows the identity.
//! - An identity page ([`crate::identity_page`], 16 identities) gives one
//!   leaf: `SHA-256(0x00 || "govledger identity page v1" || entries)`, each
//!   entry `SHA-256(identity key) || count (8 bytes BE) || head (32 bytes)` in
//!   key order ([`page_leaf`]). Only the key's hash goes in: a bundle shows
//!   the other identities of the page as hashes, never their names or records.
//! - A source's pages form an RFC 6962 tree in page order (its root is
//!   [`source_root`]); the store keeps the page leaves in blocks of 256 and
//!   each block's root, so a commit rehashes the blocks it touched and a root
//!   or proof costs one block read and one list of block roots.
//! - The map is an RFC 6962 tree over the sources in key order, each leaf
//!   `SHA-256(0x00 || "govledger identity map source v1" || len || source
//!   id || pages || source root)` ([`source_leaf`]); its root is what a
//!   checkpoint signs ([`map_root`]).
//!
//! [`HistoryProof::verify`] is what a verifier runs: the identity's (count,
//! head) as the bundle's events give it must be the entry the signed map
//! holds.

use govledger_proto::v1::IdentityState;
use sha2::{Digest as _, Sha256};

use crate::merkle::{self, Hash};

/// Page leaves per stored block (and per block root).
pub const BLOCK_PAGES: u64 = 256;

const CHAIN_TAG: &[u8] = b"govledger identity history v1\n";
const PAGE_TAG: &[u8] = b"govledger identity page v1";
const SOURCE_TAG: &[u8] = b"govledger identity map source v1";

/// The chain head after `head` (empty = the start, 32 zero bytes) takes `seq`.
pub fn chain(head: &[u8], seq: u64) -> Hash {
    let mut h = Sha256::new();
    h.update(CHAIN_TAG);
    if head.len() == 32 {
        h.update(head);
    } else {
        h.update([0u8; 32]);
    }
    h.update(seq.to_be_bytes());
    h.finalize().into()
}

/// Records `seq` in the identity's committed history (once: an event that
/// concerns the identity in two ways is one event of its history).
pub fn note(ident: &mut IdentityState, seq: u64) {
    if seq <= ident.history_last_seq {
        return;
    }
    ident.history_head = chain(&ident.history_head, seq).to_vec();
    ident.history_count += 1;
    ident.history_last_seq = seq;
}

/// The two fields of an [`IdentityState`] the map reads, decoded alone
/// (prost skips the others): a page's leaf costs no full decode.
#[derive(Clone, PartialEq, prost::Message)]
struct HistoryFields {
    #[prost(uint64, tag = "91")]
    history_count: u64,
    #[prost(bytes = "vec", tag = "92")]
    history_head: Vec<u8>,
}

/// One identity as the map holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    /// SHA-256 of the identity's key (`keys::identity_key`).
    pub key_hash: Hash,
    pub count: u64,
    /// 32 zero bytes for an identity with no history yet.
    pub head: Hash,
}

impl Entry {
    /// The entry of the identity `key` whose history is (`count`, `head`).
    pub fn of(key: &[u8], count: u64, head: &[u8]) -> Entry {
        Entry {
            key_hash: Sha256::digest(key).into(),
            count,
            head: <[u8; 32]>::try_from(head).unwrap_or([0u8; 32]),
        }
    }
}

/// The entries of an identity page (its stored bytes), in key order; `None`
/// when the bytes are no page or a record does not decode.
pub fn page_entries(page: &[u8]) -> Option<Vec<Entry>> {
    crate::identity_page::parse(page)?
        .into_iter()
        .map(|(k, v)| {
            let f = <HistoryFields as prost::Message>::decode(v).ok()?;
            Some(Entry::of(k, f.history_count, &f.history_head))
        })
        .collect()
}

/// The leaf of a page holding `entries` (in key order).
pub fn page_leaf(entries: &[Entry]) -> Hash {
    let mut h = Sha256::new();
    h.update([0x00]);
    h.update(PAGE_TAG);
    for e in entries {
        h.update(e.key_hash);
        h.update(e.count.to_be_bytes());
        h.update(e.head);
    }
    h.finalize().into()
}

/// The root of a source's pages from its block roots (each the RFC 6962
/// root of up to [`BLOCK_PAGES`] page leaves; all full but the last): blocks
/// are aligned complete subtrees, so this is the RFC 6962 root of every page.
pub fn source_root(block_roots: &[Hash]) -> Hash {
    merkle::root(block_roots)
}

/// The map's leaf for a source of `pages` pages whose root is `root`.
pub fn source_leaf(source_id: &str, pages: u64, root: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([0x00]);
    h.update(SOURCE_TAG);
    h.update((source_id.len() as u64).to_be_bytes());
    h.update(source_id.as_bytes());
    h.update(pages.to_be_bytes());
    h.update(root);
    h.finalize().into()
}

/// The map's root over its sources' leaves (in source key order).
pub fn map_root(source_leaves: &[Hash]) -> Hash {
    merkle::root(source_leaves)
}

/// The proof of one page's entries: the page, its place in its source's
/// tree, and the source's place in the map.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryProof {
    pub source_id: String,
    /// Pages of the source (its tree's size) and this page's number.
    pub pages: u64,
    pub page: u64,
    /// Every entry of the page, in the page's (identity key) order.
    pub entries: Vec<Entry>,
    /// RFC 6962 audit path of the page's leaf in the source's tree.
    pub page_path: Vec<Hash>,
    /// The source's place among the map's sources, their number, and the
    /// audit path of its leaf.
    pub source_index: u64,
    pub sources: u64,
    pub source_path: Vec<Hash>,
}

/// Why a history proof does not hold.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MapProblem {
    #[error("the identity is not on the page the proof shows")]
    NotOnPage,
    #[error(
        "the log commits to {committed} events of the identity's history up to this checkpoint, \
         the bundle's events give {held}: it does not hold the identity's whole history"
    )]
    CountDiffers { committed: u64, held: u64 },
    #[error(
        "the log commits to another history of the identity (same count {count}, other chain head): \
         the bundle's events are not the identity's"
    )]
    HeadDiffers { count: u64 },
    #[error(
        "the identity's page, as the proof shows it, is not in the identity map the checkpoint signs"
    )]
    NotInMap,
}

impl HistoryProof {
    /// The source's root the page path leads to (the page's leaf walked up).
    fn source_root(&self) -> Option<Hash> {
        let leaf = page_leaf(&self.entries);
        let root = merkle::root_from_inclusion(self.page, self.pages, &leaf, &self.page_path)?;
        Some(root)
    }

    /// Checks that the map whose root is `map_root` holds, for the identity
    /// `key` of source [`Self::source_id`], the history (`count`, `head`).
    pub fn verify(
        &self,
        key: &[u8],
        count: u64,
        head: &[u8],
        map_root: &Hash,
    ) -> Result<(), MapProblem> {
        let held = Entry::of(key, count, head);
        let on_page = self
            .entries
            .iter()
            .find(|e| e.key_hash == held.key_hash)
            .ok_or(MapProblem::NotOnPage)?;
        let source_root = self.source_root().ok_or(MapProblem::NotInMap)?;
        let leaf = source_leaf(&self.source_id, self.pages, &source_root);
        if !merkle::verify_inclusion(
            self.source_index,
            self.sources,
            &leaf,
            &self.source_path,
            map_root,
        ) {
            return Err(MapProblem::NotInMap);
        }
        if on_page.count != held.count {
            return Err(MapProblem::CountDiffers {
                committed: on_page.count,
                held: held.count,
            });
        }
        if on_page.head != held.head {
            return Err(MapProblem::HeadDiffers { count: held.count });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaves(n: u64) -> Vec<Hash> {
        (0..n)
            .map(|i| page_leaf(&[Entry::of(&i.to_be_bytes(), i, &[i as u8; 32])]))
            .collect()
    }

    /// The two-level path (in the block, then among the blocks) is the RFC
    /// 6962 path of the page in the tree of all pages, for every size around
    /// the block boundaries.
    #[test]
    fn block_paths_are_rfc6962_paths_of_the_whole_tree() {
        for n in [1u64, 2, 255, 256, 257, 511, 512, 513, 700, 1025] {
            let all = leaves(n);
            let blocks: Vec<&[Hash]> = all.chunks(BLOCK_PAGES as usize).collect();
            let roots: Vec<Hash> = blocks.iter().map(|b| merkle::root(b)).collect();
            assert_eq!(source_root(&roots), merkle::root(&all), "n={n}");
            for p in [0, n / 2, n - 1] {
                let (b, i) = ((p / BLOCK_PAGES) as usize, (p % BLOCK_PAGES) as usize);
                let mut path = merkle::inclusion_proof(i, blocks[b]);
                path.extend(merkle::inclusion_proof(b, &roots));
                assert_eq!(
                    path,
                    merkle::inclusion_proof(p as usize, &all),
                    "n={n} p={p}"
                );
            }
        }
    }

    fn proof_for(entries: Vec<Entry>, page: u64, pages: u64) -> (HistoryProof, Hash) {
        let mut all = leaves(pages);
        all[page as usize] = page_leaf(&entries);
        let src_root = merkle::root(&all);
        let srcs = vec![
            source_leaf("a", 3, &[1; 32]),
            source_leaf("hr", pages, &src_root),
            source_leaf("z", 1, &[2; 32]),
        ];
        let proof = HistoryProof {
            source_id: "hr".into(),
            pages,
            page,
            entries,
            page_path: merkle::inclusion_proof(page as usize, &all),
            source_index: 1,
            sources: 3,
            source_path: merkle::inclusion_proof(1, &srcs),
        };
        (proof, map_root(&srcs))
    }

    fn history(seqs: &[u64]) -> (u64, Hash) {
        let mut ident = IdentityState::default();
        for s in seqs {
            note(&mut ident, *s);
        }
        (ident.history_count, ident.history_head.try_into().unwrap())
    }

    #[test]
    fn the_whole_history_verifies_and_one_event_less_is_named() {
        let (count, head) = history(&[3, 9, 40]);
        let entries = vec![
            Entry::of(b"alice", count, &head),
            Entry::of(b"bob", 1, &[7; 32]),
        ];
        let (proof, root) = proof_for(entries, 300, 513);
        assert_eq!(proof.verify(b"alice", count, &head, &root), Ok(()));
        // Without the event at 9.
        let (c2, h2) = history(&[3, 40]);
        assert_eq!(
            proof.verify(b"alice", c2, &h2, &root),
            Err(MapProblem::CountDiffers {
                committed: 3,
                held: 2
            })
        );
        // The same count, another event.
        let (c3, h3) = history(&[3, 10, 40]);
        assert_eq!(
            proof.verify(b"alice", c3, &h3, &root),
            Err(MapProblem::HeadDiffers { count: 3 })
        );
        assert_eq!(
            proof.verify(b"carol", count, &head, &root),
            Err(MapProblem::NotOnPage)
        );
        // An entry changed to match, a page moved, another map.
        let mut forged = proof.clone();
        for e in &mut forged.entries {
            if e.key_hash == Entry::of(b"alice", 0, &[]).key_hash {
                *e = Entry::of(b"alice", c2, &h2);
            }
        }
        assert_eq!(
            forged.verify(b"alice", c2, &h2, &root),
            Err(MapProblem::NotInMap)
        );
        let mut moved = proof.clone();
        moved.page = 301;
        assert!(moved.verify(b"alice", count, &head, &root).is_err());
        assert_eq!(
            proof.verify(b"alice", count, &head, &[9; 32]),
            Err(MapProblem::NotInMap)
        );
    }

    #[test]
    fn a_page_decodes_to_its_identities_histories() {
        let mut a = IdentityState {
            external_id: "a".into(),
            display_name: "Alice".into(),
            ..Default::default()
        };
        note(&mut a, 5);
        note(&mut a, 8);
        let b = IdentityState::default();
        let page =
            crate::identity_page::encode(&[(b"a".to_vec(), &a), (b"b".to_vec(), &b)]).unwrap();
        let entries = page_entries(&page).unwrap();
        assert_eq!(
            entries,
            vec![Entry::of(b"a", 2, &a.history_head), Entry::of(b"b", 0, &[]),]
        );
        assert_eq!(entries[1].head, [0; 32]);
        assert_eq!(page_entries(b"\x00\x00"), None);
        // The chain is over sequences, in order.
        assert_ne!(history(&[1, 2]).1, history(&[2, 1]).1);
    }
}
