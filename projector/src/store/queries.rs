//! The reads the API serves: records by id, per-source listings, history
//! chunks, leaf blocks and poison events.

use govledger_proto::v1::{ActionState, IdentityState, PoisonEvent, RunState, SourceState};
use prost::Message as _;

use super::{
    Result, Store, StoreError,
    index::IndexReader,
    load::{page_entries, record_in},
};
use crate::keys::{self, Key, KeyRef};

impl Store {
    pub fn source(&self, id: &str) -> Result<Option<SourceState>> {
        self.get(&KeyRef::Source(id).encode())
    }

    pub fn sources(&self) -> Result<Vec<SourceState>> {
        self.scan(&[keys::TAG_SOURCE], usize::MAX)
    }

    pub fn run(&self, id: &str) -> Result<Option<RunState>> {
        self.get(&KeyRef::Run(id).encode())
    }

    /// Run ids of a source, newest first, at most `limit`.
    pub fn run_ids_of(&self, source_id: &str, limit: usize) -> Result<Vec<String>> {
        let p = keys::prefix(keys::TAG_SOURCE_RUN, &[source_id]);
        let mut out = Vec::new();
        for kv in self.tree.scan_prefix(&p).rev().take(limit) {
            let (k, _) = kv?;
            if let Some((run, _)) = keys::read_str(&k, p.len()) {
                out.push(run);
            }
        }
        Ok(out)
    }

    pub fn identity(
        &self,
        source_id: &str,
        entity_type: i32,
        external_id: &str,
    ) -> Result<Option<IdentityState>> {
        let key = keys::identity_key(source_id, entity_type, external_id);
        let Some(page) = IndexReader::default().page_of(&self.tree, &key)? else {
            return Ok(None);
        };
        let page_key = KeyRef::IdentityPage(source_id, page).encode();
        let page = self.tree.get(&page_key)?.unwrap_or_default();
        record_in(&page_entries(&page_key, &page)?, &key, &page_key).map(Some)
    }

    /// Every identity of a source, page by page (the order the source first
    /// showed them), each handed to `f`.
    pub fn for_each_identity(
        &self,
        source_id: &str,
        mut f: impl FnMut(IdentityState),
    ) -> Result<()> {
        let p = keys::prefix(keys::TAG_IDENTITY_PAGE, &[source_id]);
        for kv in self.tree.scan_prefix(&p) {
            let (page_key, page) = kv?;
            for (key, value) in page_entries(&page_key, &page)? {
                f(
                    IdentityState::decode(value).map_err(|source| StoreError::Decode {
                        key: key.to_vec(),
                        source,
                    })?,
                );
            }
        }
        Ok(())
    }

    pub fn action(&self, id: &str) -> Result<Option<ActionState>> {
        self.get(&KeyRef::Action(id).encode())
    }

    /// Action ids of a source, newest first (UUID v7 / v5 ids: v7 sort by time), at most `limit`.
    pub fn action_ids_of(&self, source_id: &str, limit: usize) -> Result<Vec<String>> {
        let p = keys::prefix(keys::TAG_SOURCE_ACTION, &[source_id]);
        self.ids_under(&p, self.tree.scan_prefix(&p).rev().take(limit))
    }

    /// The action ids of index keys `kvs` (all under `prefix`).
    fn ids_under(
        &self,
        prefix: &[u8],
        kvs: impl Iterator<Item = sled::Result<(sled::IVec, sled::IVec)>>,
    ) -> Result<Vec<String>> {
        let mut out = Vec::new();
        for kv in kvs {
            let (k, _) = kv?;
            if let Some((id, _)) = keys::read_str(&k, prefix.len()) {
                out.push(id);
            }
        }
        Ok(out)
    }

    /// Every action of a source that has not concluded, or concluded
    /// UNVERIFIED and not confirmed since (its deadline still matters), at
    /// most `limit`, read through the open-action index: the cost follows
    /// the open actions only.
    pub fn open_actions(&self, source_id: &str, limit: usize) -> Result<Vec<ActionState>> {
        let p = keys::prefix(keys::TAG_OPEN_ACTION, &[source_id]);
        let mut out = Vec::new();
        for kv in self.tree.scan_prefix(&p).take(limit) {
            let (k, _) = kv?;
            if let Some((id, _)) = keys::read_str(&k, p.len())
                && let Some(a) = self.action(&id)?
            {
                out.push(a);
            }
        }
        Ok(out)
    }

    /// Ids of a source's actions that can block readiness (not CONFIRMED,
    /// or confirmed then drifted: [`crate::keys::Key::BlockingAction`]), at
    /// most `limit`: the cost follows these, not every action ever submitted.
    pub fn blocking_action_ids(&self, source_id: &str, limit: usize) -> Result<Vec<String>> {
        let p = keys::prefix(keys::TAG_BLOCKING_ACTION, &[source_id]);
        self.ids_under(&p, self.tree.scan_prefix(&p).take(limit))
    }

    /// Sequences (ascending, at most `limit`, all ≤ `upto_seq`) of the applied
    /// events that changed this identity: its history chunks, then the recent
    /// sequences in its record.
    pub fn identity_history(
        &self,
        source_id: &str,
        entity_type: i32,
        external_id: &str,
        upto_seq: u64,
        limit: usize,
    ) -> Result<Vec<u64>> {
        let recent = self
            .identity(source_id, entity_type, external_id)?
            .map(|i| i.recent_seqs)
            .unwrap_or_default();
        self.history(
            &keys::identity_history_prefix(source_id, entity_type, external_id),
            &recent,
            upto_seq,
            limit,
        )
    }

    /// Sequences (ascending, at most `limit`, all ≤ `upto_seq`) of an action's events.
    pub fn action_history(&self, action_id: &str, upto_seq: u64, limit: usize) -> Result<Vec<u64>> {
        let recent = self
            .action(action_id)?
            .map(|a| a.recent_seqs)
            .unwrap_or_default();
        self.history(
            &keys::action_history_prefix(action_id),
            &recent,
            upto_seq,
            limit,
        )
    }

    /// Actions requested on an identity (ids, at most `limit`).
    pub fn identity_actions(
        &self,
        source_id: &str,
        entity_type: i32,
        external_id: &str,
        limit: usize,
    ) -> Result<Vec<String>> {
        let p = keys::identity_actions_prefix(source_id, entity_type, external_id);
        let mut out = Vec::new();
        for kv in self.tree.scan_prefix(&p).take(limit) {
            let (k, _) = kv?;
            if let Some((a, _)) = keys::read_str(&k, p.len()) {
                out.push(a);
            }
        }
        Ok(out)
    }

    fn history(
        &self,
        chunks_prefix: &[u8],
        recent: &[u64],
        upto_seq: u64,
        limit: usize,
    ) -> Result<Vec<u64>> {
        let mut out = Vec::new();
        for kv in self.tree.scan_prefix(chunks_prefix) {
            let (_, v) = kv?;
            out.extend(keys::unpack_seqs(&v));
            if out.len() >= limit || out.last().is_some_and(|s| *s > upto_seq) {
                break;
            }
        }
        out.extend_from_slice(recent);
        out.retain(|s| *s <= upto_seq);
        out.truncate(limit);
        Ok(out)
    }

    /// The bytes of one leaf block (32 per leaf, zero = not held).
    pub fn leaf_block(&self, block: u64) -> Result<Option<Vec<u8>>> {
        Ok(self
            .tree
            .get(Key::Leaves(block).encode())?
            .map(|v| v.to_vec()))
    }

    /// The recorded leaf hashes of sequences 1..=`size`, read block by block;
    /// `Err` names the first sequence without a leaf.
    pub fn leaves_upto(
        &self,
        size: u64,
    ) -> Result<std::result::Result<Vec<crate::merkle::Hash>, u64>> {
        let mut out: Vec<crate::merkle::Hash> = Vec::with_capacity(size as usize);
        let blocks = size.div_ceil(keys::LEAVES_PER_BLOCK);
        for block in 0..blocks {
            let bytes = self.leaf_block(block)?.unwrap_or_default();
            for chunk in bytes.chunks_exact(32) {
                if out.len() as u64 == size {
                    break;
                }
                let mut h = [0u8; 32];
                h.copy_from_slice(chunk);
                if h == [0u8; 32] {
                    return Ok(Err(out.len() as u64 + 1));
                }
                out.push(h);
            }
            let want = ((block + 1) * keys::LEAVES_PER_BLOCK).min(size);
            if (out.len() as u64) < want {
                return Ok(Err(out.len() as u64 + 1));
            }
        }
        Ok(Ok(out))
    }

    /// Poison events with a sequence above `after_seq`, at most `limit`.
    pub fn poison(&self, after_seq: u64, limit: usize) -> Result<Vec<PoisonEvent>> {
        let from = Key::Poison(after_seq.saturating_add(1)).encode();
        let mut out = Vec::new();
        for kv in self.tree.range(from..).take(limit) {
            let (k, v) = kv?;
            if k.first() != Some(&keys::TAG_POISON) {
                break;
            }
            out.push(
                PoisonEvent::decode(&*v).map_err(|source| StoreError::Decode {
                    key: k.to_vec(),
                    source,
                })?,
            );
        }
        Ok(out)
    }

    fn scan<M: prost::Message + Default>(&self, prefix: &[u8], limit: usize) -> Result<Vec<M>> {
        let mut out = Vec::new();
        for kv in self.tree.scan_prefix(prefix).take(limit) {
            let (k, v) = kv?;
            out.push(M::decode(&*v).map_err(|source| StoreError::Decode {
                key: k.to_vec(),
                source,
            })?);
        }
        Ok(out)
    }
}
