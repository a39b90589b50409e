//! The working set: the slice of projection state a batch reads and writes,
//! table by table, with change tracking, and its encoding into store records.

use std::{borrow::Borrow, collections::HashMap, hash::Hash};

use govledger_proto::v1::{
    ActionState, Alert, IdentityState, LedgerMeta, PageState, PoisonEvent, RunState, SourceState,
};

use prost::Message as _;

use crate::keys::{IdentityKey, Key, RunSeenKey};

/// A loaded slice of one kind of record, with change tracking.
///
/// A hash map: the fold looks records up several times per event, and a
/// batch's records go to sled (which orders them) or are sorted where an
/// order is asked for ([`Table::iter`]).
#[derive(Debug, Clone)]
pub struct Table<K, V> {
    map: HashMap<K, Slot<V>, foldhash::fast::FixedState>,
}

/// What a table holds for one key: the value (`None` = absent) and whether
/// this batch changed it.
#[derive(Debug, Clone)]
struct Slot<V> {
    v: Option<V>,
    dirty: bool,
}

impl<K, V> Default for Table<K, V> {
    fn default() -> Self {
        Self {
            map: HashMap::default(),
        }
    }
}

impl<K: Ord + Hash + Clone + std::fmt::Debug, V> Table<K, V> {
    /// Room for `n` more keys, so that loading a batch's keys does not
    /// grow (and rehash) the table step by step.
    pub fn reserve(&mut self, n: usize) {
        self.map.reserve(n);
    }
    /// Records what the store holds for `k` (`None` = absent).
    pub fn load(&mut self, k: K, v: Option<V>) {
        self.map.entry(k).or_insert(Slot { v, dirty: false });
    }
    pub fn is_loaded<Q: Hash + Eq + ?Sized>(&self, k: &Q) -> bool
    where
        K: Borrow<Q>,
    {
        self.map.contains_key(k)
    }
    /// Loads `k` as absent, unless loaded already (the key is cloned only then).
    fn load_absent(&mut self, k: &K) {
        if !self.map.contains_key(k) {
            self.map.insert(
                k.clone(),
                Slot {
                    v: None,
                    dirty: false,
                },
            );
        }
    }
    pub fn get<Q: Hash + Eq + ?Sized>(&self, k: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
    {
        self.map.get(k).and_then(|s| s.v.as_ref())
    }
    pub fn get_mut(&mut self, k: &K) -> Option<&mut V> {
        let s = self.map.get_mut(k)?;
        if s.v.is_some() {
            s.dirty = true;
        }
        s.v.as_mut()
    }
    pub fn insert(&mut self, k: K, v: V) {
        self.map.insert(
            k,
            Slot {
                v: Some(v),
                dirty: true,
            },
        );
    }
    /// Changed entries or, with `all`, every present entry; in no particular order.
    fn entries(&self, all: bool) -> impl Iterator<Item = (&K, Option<&V>)> {
        self.map
            .iter()
            .filter(move |(_, s)| if all { s.v.is_some() } else { s.dirty })
            .map(|(k, s)| (k, s.v.as_ref()))
    }
    /// Every present value, in no particular order.
    pub fn values(&self) -> impl Iterator<Item = &V> {
        self.map.values().filter_map(|s| s.v.as_ref())
    }
    /// Every present entry, in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        let mut all: Vec<(&K, &V)> = self
            .map
            .iter()
            .filter_map(|(k, s)| s.v.as_ref().map(|v| (k, v)))
            .collect();
        all.sort_unstable_by(|a, b| a.0.cmp(b.0));
        all.into_iter()
    }
    /// Marks `k` absent (deleted at commit).
    pub fn remove(&mut self, k: &K) {
        self.map.insert(
            k.clone(),
            Slot {
                v: None,
                dirty: true,
            },
        );
    }
    pub(super) fn get_or_insert_with(&mut self, k: &K, f: impl FnOnce() -> V) -> &mut V {
        // The key is cloned only when it is new to the table.
        self.load_absent(k);
        match self.map.get_mut(k) {
            Some(s) => {
                s.dirty = true;
                s.v.get_or_insert_with(f)
            }
            // Proven invariant: load_absent inserted the key if it was missing.
            None => unreachable!("table key loaded above"),
        }
    }
}

/// An encoded (key, value).
pub type KeyValue = (Vec<u8>, Vec<u8>);

/// Identity → (its page, created by this batch).
pub type IdentityPages = HashMap<IdentityKey, (u64, bool), foldhash::fast::FixedState>;

/// Identity records to write, by page: (page key, (identity key, record)).
pub type IdentityPageWrites<'w> = Vec<(Vec<u8>, Vec<(Vec<u8>, &'w IdentityState)>)>;

/// Why [`Working::present_records`] failed (a projector bug either way).
#[derive(Debug, thiserror::Error)]
pub enum PresentError {
    #[error("identity {0:?} has no page in the working set")]
    PageUnknown(IdentityKey),
    #[error(transparent)]
    Page(#[from] crate::identity_page::PageError),
}

/// The part of the projection state a batch reads and writes.
#[derive(Debug, Clone, Default)]
pub struct Working {
    pub meta: LedgerMeta,
    pub meta_dirty: bool,
    pub sources: Table<String, SourceState>,
    pub runs: Table<String, RunState>,
    pub source_runs: Table<(String, String), ()>,
    pub pages: Table<(String, String), PageState>,
    pub run_seen: Table<RunSeenKey, ()>,
    pub identities: Table<IdentityKey, IdentityState>,
    pub actions: Table<String, ActionState>,
    /// Ids of events that are not UUID v7 (or whose block is full), with the
    /// sequence that applied them.
    pub event_ids: Table<String, u64>,
    /// Packed ids of UUID v7 events, per [`Key::EventBlock`].
    pub event_blocks: Table<u64, Vec<u8>>,
    pub poison: Table<u64, PoisonEvent>,
    pub source_actions: Table<(String, String), ()>,
    pub open_actions: Table<(String, String), ()>,
    /// Written, never read by the fold: see [`Key::BlockingAction`].
    pub blocking_actions: Table<(String, String), ()>,
    /// Point-in-time indexes (written, never read by the fold): history chunks
    /// (packed sequences, keyed by their first) and the actions on an identity.
    pub identity_history: Table<(IdentityKey, u64), Vec<u8>>,
    pub action_history: Table<(String, u64), Vec<u8>>,
    pub identity_actions: Table<(IdentityKey, String), ()>,
    /// Leaf-hash blocks ([`crate::keys::LEAVES_PER_BLOCK`] leaves each); the
    /// caller preloads the blocks [`needs_seq`](super::needs_seq) names.
    pub leaves: Table<u64, Vec<u8>>,
    /// The page of every identity in `identities`, and whether this batch
    /// created it (the store then adds it to the identity index at commit).
    pub identity_pages_of: IdentityPages,
    /// Decisions made while folding (not stored): runs decided, actions concluded, drift.
    pub alerts: Vec<Alert>,
    /// The Merkle tree over every applied message; stored inside the meta record.
    pub merkle: crate::merkle::Frontier,
    /// The producer keys whose seals count (an input of the fold, like the
    /// bytes: the same messages and the same trust give the same state).
    pub trust: std::sync::Arc<govledger_stream::seal::Trust>,
}

impl Working {
    /// Loads each of `keys` the fold may read as absent, unless loaded
    /// already: the in-memory reference fold, where nothing is stored.
    pub fn load_absent(&mut self, keys: &[Key]) {
        for key in keys {
            match key {
                Key::Meta => {}
                Key::Source(k) => self.sources.load_absent(k),
                Key::Run(k) => self.runs.load_absent(k),
                Key::SourceRun(a, b) => self.source_runs.load_absent(&(a.clone(), b.clone())),
                Key::Page(a, b) => self.pages.load_absent(&(a.clone(), b.clone())),
                Key::RunSeen(k) => self.run_seen.load_absent(k),
                Key::Identity(k) => self.identities.load_absent(k),
                Key::Action(k) => self.actions.load_absent(k),
                Key::EventId(k) => self.event_ids.load_absent(k),
                Key::EventBlock(b) => self.event_blocks.load_absent(b),
                Key::Poison(k) => self.poison.load_absent(k),
                Key::SourceAction(a, b) => self.source_actions.load_absent(&(a.clone(), b.clone())),
                Key::OpenAction(a, b) => self.open_actions.load_absent(&(a.clone(), b.clone())),
                Key::Leaves(b) => self.leaves.load_absent(b),
                // Written only, never read by the fold.
                Key::IdentityHistory(..)
                | Key::ActionHistory(..)
                | Key::IdentityAction(..)
                | Key::BlockingAction(..) => {}
            }
        }
    }

    /// Whether `key`'s record is loaded (present, absent or changed); keys the
    /// fold never reads count as loaded.
    pub fn holds(&self, key: &Key) -> bool {
        let pair = |a: &String, b: &String| (a.clone(), b.clone());
        match key {
            Key::Meta => true,
            Key::Source(k) => self.sources.is_loaded(k),
            Key::Run(k) => self.runs.is_loaded(k),
            Key::SourceRun(a, b) => self.source_runs.is_loaded(&pair(a, b)),
            Key::Page(a, b) => self.pages.is_loaded(&pair(a, b)),
            Key::RunSeen(k) => self.run_seen.is_loaded(k),
            Key::Identity(k) => self.identities.is_loaded(k),
            Key::Action(k) => self.actions.is_loaded(k),
            Key::EventId(k) => self.event_ids.is_loaded(k),
            Key::EventBlock(b) => self.event_blocks.is_loaded(b),
            Key::Poison(k) => self.poison.is_loaded(k),
            Key::SourceAction(a, b) => self.source_actions.is_loaded(&pair(a, b)),
            Key::OpenAction(a, b) => self.open_actions.is_loaded(&pair(a, b)),
            Key::Leaves(b) => self.leaves.is_loaded(b),
            Key::IdentityHistory(..)
            | Key::ActionHistory(..)
            | Key::IdentityAction(..)
            | Key::BlockingAction(..) => true,
        }
    }

    /// The meta record with the Merkle frontier folded in.
    pub fn meta_record(&self) -> LedgerMeta {
        let mut m = self.meta.clone();
        m.merkle_size = self.merkle.size();
        m.merkle_peaks = self.merkle.peaks().iter().map(|p| p.to_vec()).collect();
        m
    }

    /// A working set that continues from `meta` (its Merkle frontier included).
    pub fn continuing(meta: &LedgerMeta) -> Self {
        Self {
            meta: meta.clone(),
            merkle: crate::merkle::Frontier::from_parts(meta.merkle_size, &meta.merkle_peaks)
                .unwrap_or_default(),
            ..Default::default()
        }
    }

    /// Every changed record as (encoded key, encoded value or `None` for delete),
    /// table by table, in no particular order within a table (sled orders a
    /// batch itself). The store writes these, the identity pages
    /// ([`Working::identity_changes`]) and the new identities' index entries
    /// ([`Working::new_identities`]), and nothing else.
    pub fn changes(&self) -> Vec<(Vec<u8>, Option<Vec<u8>>)> {
        let mut out = Vec::with_capacity(64);
        if self.meta_dirty {
            out.push((Key::Meta.encode(), Some(self.meta_record().encode_to_vec())));
        }
        self.records(false, &mut out);
        out
    }

    /// The changed identity records, by page: (page key, (identity key,
    /// record) sorted by identity key). The store writes each over the page
    /// it holds ([`crate::identity_page::merge`]). `Err` names an identity
    /// whose page is unknown (a bug: every identity is loaded or created with
    /// its page).
    pub fn identity_changes(&self) -> Result<IdentityPageWrites<'_>, IdentityKey> {
        self.identity_pages(false)
    }

    /// The identities this working set created, as (identity key, page
    /// number) sorted by key: what the store adds to the identity index
    /// ([`crate::identity_index`]) at commit.
    pub fn new_identities(&self) -> Vec<(Vec<u8>, u64)> {
        self.index_entries(false)
    }

    /// (identity key, page number) of the created (or, with `all`, every
    /// present) identities, sorted by key.
    fn index_entries(&self, all: bool) -> Vec<(Vec<u8>, u64)> {
        // Every entry is a present identity: loaded or created, never deleted.
        let mut out: Vec<(Vec<u8>, u64)> = self
            .identity_pages_of
            .iter()
            .filter(|(_, (_, created))| all || *created)
            .map(|((s, t, id), (page, _))| (crate::keys::identity_key(s, *t, id), *page))
            .collect();
        out.sort_unstable();
        out
    }

    /// The changed (or, with `all`, every present) identity records grouped
    /// by page, pages and each page's entries in key order.
    fn identity_pages(&self, all: bool) -> Result<IdentityPageWrites<'_>, IdentityKey> {
        use crate::keys::KeyRef as K;
        type Records<'r> = Vec<(Vec<u8>, &'r IdentityState)>;
        let mut pages: std::collections::BTreeMap<(&str, u64), Records<'_>> = Default::default();
        for (key, v) in self.identities.entries(all) {
            // Identities are never deleted.
            let Some(v) = v else { continue };
            let Some((page, _)) = self.identity_pages_of.get(key) else {
                return Err(key.clone());
            };
            let (s, t, id) = key;
            pages
                .entry((s.as_str(), *page))
                .or_default()
                .push((K::Identity(s, *t, id).encode(), v));
        }
        Ok(pages
            .into_iter()
            .map(|((s, page), mut entries)| {
                entries.sort_unstable_by(|a, b| a.0.cmp(&b.0));
                (K::IdentityPage(s, page).encode(), entries)
            })
            .collect())
    }

    /// Every present record except meta, encoded as a store holding exactly
    /// this working set would hold it (the reference the sled path is checked
    /// against).
    pub fn present_records(&self) -> Result<Vec<KeyValue>, PresentError> {
        let mut out = Vec::new();
        self.records(true, &mut out);
        let all: Vec<(Vec<u8>, u64)> = self.index_entries(true);
        for (k, v) in crate::identity_index::chunk_all(&all) {
            out.push((k, Some(v)));
        }
        for (page, entries) in self
            .identity_pages(true)
            .map_err(PresentError::PageUnknown)?
        {
            out.push((page, Some(crate::identity_page::encode(&entries)?)));
        }
        Ok(out.into_iter().filter_map(|(k, v)| Some((k, v?))).collect())
    }

    /// The encoded records of every table: the changed ones (`None` = delete)
    /// or, with `all`, every present one.
    fn records(&self, all: bool, out: &mut Vec<(Vec<u8>, Option<Vec<u8>>)>) {
        fn enc<M: prost::Message>(v: Option<&M>) -> Option<Vec<u8>> {
            v.map(|m| m.encode_to_vec())
        }
        fn empty(v: Option<&()>) -> Option<Vec<u8>> {
            v.map(|_| Vec::new())
        }
        use crate::keys::KeyRef as K;
        for (k, v) in self.sources.entries(all) {
            out.push((K::Source(k).encode(), enc(v)));
        }
        for (k, v) in self.runs.entries(all) {
            out.push((K::Run(k).encode(), enc(v)));
        }
        for ((s, r), v) in self.source_runs.entries(all) {
            out.push((K::SourceRun(s, r).encode(), empty(v)));
        }
        for ((r, p), v) in self.pages.entries(all) {
            out.push((K::Page(r, p).encode(), enc(v)));
        }
        for ((r, t, id), v) in self.run_seen.entries(all) {
            out.push((K::RunSeen(r, *t, id).encode(), empty(v)));
        }
        // Page numbers live in the identity index: the store adds a batch's
        // new identities to it at commit (`new_identities`), and
        // `present_records` chunks every identity's.
        for (k, v) in self.actions.entries(all) {
            out.push((K::Action(k).encode(), enc(v)));
        }
        for (k, v) in self.event_ids.entries(all) {
            out.push((K::EventId(k).encode(), v.map(|s| s.to_be_bytes().to_vec())));
        }
        for (k, v) in self.event_blocks.entries(all) {
            out.push((K::EventBlock(*k).encode(), v.cloned()));
        }
        for (k, v) in self.poison.entries(all) {
            out.push((K::Poison(*k).encode(), enc(v)));
        }
        for ((s, a), v) in self.source_actions.entries(all) {
            out.push((K::SourceAction(s, a).encode(), empty(v)));
        }
        for ((s, a), v) in self.open_actions.entries(all) {
            out.push((K::OpenAction(s, a).encode(), empty(v)));
        }
        for ((s, a), v) in self.blocking_actions.entries(all) {
            out.push((K::BlockingAction(s, a).encode(), empty(v)));
        }
        for (((s, t, id), seq), v) in self.identity_history.entries(all) {
            out.push((K::IdentityHistory(s, *t, id, *seq).encode(), v.cloned()));
        }
        for ((a, seq), v) in self.action_history.entries(all) {
            out.push((K::ActionHistory(a, *seq).encode(), v.cloned()));
        }
        for (((s, t, id), a), v) in self.identity_actions.entries(all) {
            out.push((K::IdentityAction(s, *t, id, a).encode(), empty(v)));
        }
        for (k, v) in self.leaves.entries(all) {
            out.push((K::Leaves(*k).encode(), v.cloned()));
        }
    }
}
