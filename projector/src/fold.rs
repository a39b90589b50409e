//! The fold: events in stream order → projection records. Pure and deterministic.
//!
//! Architecture Invariant: the fold does no I/O and reads no clock. Its inputs are
//! the stream sequence, the stream's own timestamp and the message bytes; its
//! state is a [`Working`] set that the caller preloaded with every key
//! [`needs`] names (missing = absent). Folding the same messages into the same
//! state always gives the same records, byte for byte.
//!
//! Idempotence: a sequence at or below `last_applied_seq` is ignored, and an
//! event id that was already applied is counted as a duplicate and changes
//! nothing else. Undecodable or unusable messages become [`PoisonEvent`]s.

use std::{borrow::Borrow, collections::HashMap, hash::Hash};

use govledger_proto::v1::{
    ActionConcluded, ActionKind, ActionOutcome, ActionState, Alert, EntityCounts, ErrorClass,
    Event, IdentityState, LedgerMeta, PageRole, PageState, PoisonEvent, RunState, SourceState,
    SyncMode, Verdict, WatchedIntent, alert, event::Body,
};
use prost::Message as _;
use sha2::{Digest as _, Sha256};

use crate::{
    keys::{IdentityKey, Key, RunSeenKey},
    verdict,
};

/// Page keys kept in `RunState.failed_page_keys` for reason texts.
pub const FAILED_PAGES_KEPT_MAX: usize = 64;

/// One stream message as the fold sees it.
#[derive(Debug, Clone)]
pub struct StreamMsg<'a> {
    pub seq: u64,
    pub subject: &'a str,
    /// The stream's timestamp of the message, Unix microseconds.
    pub stored_at_us: i64,
    pub payload: &'a [u8],
    /// The message's leaf hash, if already computed (see `OwnedMsg::leaf`).
    pub leaf: Option<crate::merkle::Hash>,
}

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
    fn get_or_insert_with(&mut self, k: &K, f: impl FnOnce() -> V) -> &mut V {
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
    /// Point-in-time indexes (written, never read by the fold): history chunks
    /// (packed sequences, keyed by their first) and the actions on an identity.
    pub identity_history: Table<(IdentityKey, u64), Vec<u8>>,
    pub action_history: Table<(String, u64), Vec<u8>>,
    pub identity_actions: Table<(IdentityKey, String), ()>,
    /// Leaf-hash blocks ([`crate::keys::LEAVES_PER_BLOCK`] leaves each); the
    /// caller preloads the blocks [`needs_seq`] names.
    pub leaves: Table<u64, Vec<u8>>,
    /// The page of every identity in `identities`, and whether this batch
    /// created it (the store then adds it to the identity index at commit).
    pub identity_pages_of: IdentityPages,
    /// Decisions made while folding (not stored): runs decided, actions concluded, drift.
    pub alerts: Vec<Alert>,
    /// The Merkle tree over every applied message; stored inside the meta record.
    pub merkle: crate::merkle::Frontier,
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
                Key::IdentityHistory(..) | Key::ActionHistory(..) | Key::IdentityAction(..) => {}
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
            Key::IdentityHistory(..) | Key::ActionHistory(..) | Key::IdentityAction(..) => true,
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

/// A decoded message, or why it cannot be folded.
pub fn decode(msg: &StreamMsg<'_>) -> Result<Event, String> {
    let ev = Event::decode(msg.payload).map_err(|e| format!("not a govledger.v1.Event: {e}"))?;
    if ev.schema_version > govledger_proto::SCHEMA_VERSION {
        return Err(format!(
            "schema_version {} is newer than this build understands ({}); upgrade govledger",
            ev.schema_version,
            govledger_proto::SCHEMA_VERSION
        ));
    }
    if ev.event_id.is_empty() {
        return Err("event without event_id".into());
    }
    let Some(body) = &ev.body else {
        return Err("event without a body (unknown event kind?)".into());
    };
    if ev.source_id.is_empty() {
        return Err("event without source_id".into());
    }
    let read_path = is_read_path(body);
    if read_path && ev.run_id.is_empty() {
        return Err("read-path event without run_id".into());
    }
    if !read_path && ev.action_id.is_empty() {
        return Err("write-path event without action_id".into());
    }
    if let Body::RecordObserved(r) = body
        && r.external_id.is_empty()
    {
        return Err("RecordObserved without external_id (should be RecordRejected)".into());
    }
    Ok(ev)
}

/// The source and run keys a batch's [`needs`] calls pushed last: the events
/// of a batch mostly share both, and a key equal to the last one pushed is
/// not pushed (nor its string copied) again.
#[derive(Debug, Default)]
pub struct LastPushed<'e> {
    source: Option<&'e str>,
    run: Option<&'e str>,
}

/// The keys folding `ev` may read, so the caller can preload them. `last`
/// carries over from the previous event of the same batch (a fresh one is
/// always correct: it only means repeated keys).
pub fn needs<'e>(ev: &'e Event, last: &mut LastPushed<'e>, out: &mut Vec<Key>) {
    match crate::keys::event_block_of(&ev.event_id) {
        Some((block, _)) => out.push(Key::EventBlock(block)),
        None => out.push(Key::EventId(ev.event_id.clone())),
    };
    if last.source != Some(ev.source_id.as_str()) {
        out.push(Key::Source(ev.source_id.clone()));
        last.source = Some(&ev.source_id);
    }
    let mut push_run = |out: &mut Vec<Key>| {
        if last.run != Some(ev.run_id.as_str()) {
            out.push(Key::Run(ev.run_id.clone()));
            last.run = Some(&ev.run_id);
        }
    };
    let Some(body) = &ev.body else { return };
    match body {
        Body::SyncRunStarted(_) | Body::RecordRejected(_) | Body::SyncRunFinished(_) => {
            push_run(out);
        }
        Body::PageFetched(p) => {
            push_run(out);
            out.push(Key::Page(ev.run_id.clone(), p.page_key.clone()));
            if !p.next_page_key.is_empty() {
                out.push(Key::Page(ev.run_id.clone(), p.next_page_key.clone()));
            }
        }
        Body::PageFailed(p) => {
            push_run(out);
            out.push(Key::Page(ev.run_id.clone(), p.page_key.clone()));
        }
        Body::RecordObserved(r) => {
            push_run(out);
            out.push(Key::Identity((
                ev.source_id.clone(),
                r.entity_type,
                r.external_id.clone(),
            )));
        }
        Body::ActionRequested(_) | Body::ActionAttempted(_) | Body::ActionVerified(_) => {
            action_keys(ev, out);
        }
        Body::ActionConcluded(c) => {
            action_keys(ev, out);
            for wi in &c.watch {
                out.push(Key::Identity((
                    ev.source_id.clone(),
                    wi.entity_type,
                    wi.external_id.clone(),
                )));
            }
        }
    }
}

/// The keys folding a batch's `events` may read that depend on records
/// [`needs`] named: the run that last observed each identity (is it still
/// open?), for a run with spilled run-seen records the identity's record of
/// it, and the own records of ids whose block is full. Call with the
/// [`needs`] keys loaded. Keys that change inside the batch are covered: a run
/// that last observed an identity earlier in the batch is loaded through
/// [`needs`], and run-seen records spilled in the batch are in the working set.
pub fn needs_after_load<'e>(
    w: &Working,
    events: impl IntoIterator<Item = &'e Event>,
    out: &mut Vec<Key>,
) {
    for ev in events {
        // A full event-id block: ids past it have records of their own.
        if let Some((block, _)) = crate::keys::event_block_of(&ev.event_id)
            && w.event_blocks.get(&block).is_some_and(|b| block_full(b))
        {
            out.push(Key::EventId(ev.event_id.clone()));
        }
        if let Some(Body::RecordObserved(r)) = &ev.body
            && w.runs.get(&ev.run_id).is_some_and(|r| r.seen_spilled > 0)
        {
            out.push(Key::RunSeen((
                ev.run_id.clone(),
                r.entity_type,
                r.external_id.clone(),
            )));
        }
    }
    for i in w.identities.values() {
        if !i.last_observed_run_id.is_empty() && !w.runs.is_loaded(&i.last_observed_run_id) {
            out.push(Key::Run(i.last_observed_run_id.clone()));
        }
    }
}

/// The leaf block a message at `seq` writes to (whatever the message holds).
pub fn needs_seq(seq: u64, out: &mut Vec<Key>) {
    out.push(Key::Leaves(crate::keys::leaf_slot(seq).0));
}

/// The action record and its two per-source indexes.
fn action_keys(ev: &Event, out: &mut Vec<Key>) {
    out.push(Key::Action(ev.action_id.clone()));
    out.push(Key::SourceAction(
        ev.source_id.clone(),
        ev.action_id.clone(),
    ));
    out.push(Key::OpenAction(ev.source_id.clone(), ev.action_id.clone()));
}

/// What folding one message did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    Event,
    /// Sequence at or below the last applied one: ignored.
    AlreadyApplied,
    /// An event id seen before at another sequence: counted, nothing else changes.
    DuplicateEventId,
    Poison,
}

/// Folds one stream message. `decoded` is [`decode`]'s answer for it (taken:
/// its strings move into the records instead of being copied).
pub fn apply(w: &mut Working, msg: &StreamMsg<'_>, decoded: Result<Event, String>) -> Applied {
    if msg.seq <= w.meta.last_applied_seq {
        return Applied::AlreadyApplied;
    }
    w.meta.last_applied_seq = msg.seq;
    w.meta_dirty = true;
    // Every stored message is a leaf, whatever it holds: the tree commits to the stream.
    let leaf = msg
        .leaf
        .unwrap_or_else(|| crate::merkle::leaf_hash(msg.seq, msg.payload));
    w.merkle.push(leaf);
    let (block, at) = crate::keys::leaf_slot(msg.seq);
    debug_assert!(
        w.leaves.is_loaded(&block),
        "needs_seq() missed a leaf block"
    );
    let b = w.leaves.get_or_insert_with(&block, Vec::new);
    // A fold of a filtered slice (point-in-time) skips sequences: zeros = not held.
    b.resize(at, 0);
    b.extend_from_slice(&leaf);
    let ev = match decoded {
        Ok(ev) => ev,
        Err(e) => {
            w.meta.poison_events += 1;
            w.poison.insert(
                msg.seq,
                PoisonEvent {
                    seq: msg.seq,
                    subject: msg.subject.to_owned(),
                    error: e,
                    payload_len: msg.payload.len() as u64,
                    payload_sha256: hex(&Sha256::digest(msg.payload)),
                    stored_at_us: msg.stored_at_us,
                },
            );
            return Applied::Poison;
        }
    };
    if !record_event_id(w, &ev.event_id, msg.seq) {
        w.meta.duplicate_events += 1;
        return Applied::DuplicateEventId;
    }
    w.meta.events_applied += 1;
    fold_event(w, msg.seq, ev);
    Applied::Event
}

fn block_full(block: &[u8]) -> bool {
    block.len() >= crate::keys::EVENT_BLOCK_IDS_MAX * 16
}

/// Records that event `id` was applied at `seq`; `false` if it was before (a
/// duplicate). A UUID v7 goes into its block until the block is full, then
/// into a record of its own; any other id into a record of its own.
///
/// An id of a full block that has no record loaded is absent: [`needs_after_load`]
/// loads the records of blocks that were full before the batch, and an id
/// cannot have a record while its block was not yet full.
fn record_event_id(w: &mut Working, id: &str, seq: u64) -> bool {
    if let Some((block, bytes)) = crate::keys::event_block_of(id) {
        debug_assert!(
            w.event_blocks.is_loaded(&block),
            "needs() missed event block"
        );
        let (held, full) = match w.event_blocks.get(&block) {
            Some(b) => (crate::keys::event_block_holds(b, &bytes), block_full(b)),
            None => (false, false),
        };
        if held || (full && w.event_ids.get(id).is_some()) {
            return false;
        }
        if !full {
            w.event_blocks
                .get_or_insert_with(&block, Vec::new)
                .extend_from_slice(&bytes);
            return true;
        }
    } else {
        debug_assert!(w.event_ids.is_loaded(id), "needs() missed event id");
        if w.event_ids.get(id).is_some() {
            return false;
        }
    }
    w.event_ids.insert(id.to_owned(), seq);
    true
}

fn fold_event(w: &mut Working, seq: u64, mut ev: Event) {
    let Some(body) = ev.body.take() else { return };
    let read_path = is_read_path(&body);
    fold_body(w, seq, &ev, body);
    if !ev.run_id.is_empty() && read_path {
        after_run_event(w, &ev);
    }
}

fn is_read_path(body: &Body) -> bool {
    matches!(
        body,
        Body::SyncRunStarted(_)
            | Body::PageFetched(_)
            | Body::PageFailed(_)
            | Body::RecordObserved(_)
            | Body::RecordRejected(_)
            | Body::SyncRunFinished(_)
    )
}

fn fold_body(w: &mut Working, seq: u64, ev: &Event, body: Body) {
    let at = ev.occurred_at_us;
    {
        let src = w.sources.get_or_insert_with(&ev.source_id, || SourceState {
            source_id: ev.source_id.clone(),
            first_seq: seq,
            ..Default::default()
        });
        src.last_seq = seq;
        src.last_event_at_us = src.last_event_at_us.max(at);
        src.events_total += 1;
    }
    match body {
        Body::SyncRunStarted(s) => {
            let run = run_mut(w, ev, seq);
            let first_start = !run.started;
            run.started = true;
            run.mode = s.mode;
            run.started_at_us = at;
            run.deletion_threshold_pct = s.deletion_threshold_pct;
            run.deletion_threshold_abs = s.deletion_threshold_abs;
            if run.declared_total_at_start.is_none() {
                run.declared_total_at_start = s.declared_total;
            }
            if first_start {
                w.source_runs
                    .insert((ev.source_id.clone(), ev.run_id.clone()), ());
                let src = source_mut(w, ev);
                src.runs_total += 1;
                src.last_run_id = ev.run_id.clone();
                src.last_run_started_us = at;
            }
        }
        Body::PageFetched(p) => {
            let role = PageRole::try_from(p.role).unwrap_or_default();
            if matches!(role, PageRole::CountProbe) {
                let run = run_mut(w, ev, seq);
                note_declared(run, p.entity_type, p.declared_total);
                return;
            }
            let key = (ev.run_id.clone(), p.page_key.clone());
            let page = w.pages.get_or_insert_with(&key, PageState::default);
            let was_ok = page.ok;
            let was_given_up = page.gave_up;
            page.ok = true;
            page.gave_up = false;
            page.attempts += 1;
            page.http_status = p.http_status;
            // A cursor handed out again after its page was read: a paging cycle.
            let cycle = !p.next_page_key.is_empty()
                && w.pages
                    .get(&(ev.run_id.clone(), p.next_page_key.clone()))
                    .is_some_and(|pg| pg.ok);
            let run = run_mut(w, ev, seq);
            if !was_ok {
                run.pages_fetched += 1;
            }
            if was_given_up {
                run.pages_failed_final = run.pages_failed_final.saturating_sub(1);
                run.failed_page_keys.retain(|k| k != &p.page_key);
            }
            if cycle {
                run.paging_cycles += 1;
                if run.first_cycle_key.is_empty() {
                    run.first_cycle_key = p.page_key.clone();
                }
            }
            note_declared(run, p.entity_type, p.declared_total);
            if matches!(role, PageRole::ProbePastEnd) {
                run.probe_past_end_items += u64::from(p.item_count);
                return;
            }
            let declared = p.declared_total.or_else(|| {
                run.entities
                    .iter()
                    .find(|e| e.entity_type == p.entity_type)
                    .and_then(|e| e.declared_last)
            });
            if p.requested_count > 0
                && p.item_count < p.requested_count
                && let (Some(off), Some(d)) = (p.offset, declared)
                && off + u64::from(p.item_count) < d
            {
                if p.item_count == 0 {
                    run.empty_pages += 1;
                } else {
                    run.short_pages += 1;
                }
                if run.first_short_page.is_empty() {
                    run.first_short_page = p.page_key.clone();
                }
            }
            if p.requested_count > 0
                && p.item_count == p.requested_count
                && declared == Some(u64::from(p.requested_count))
            {
                run.declared_equals_page_size = true;
            }
        }
        Body::PageFailed(p) => {
            let key = (ev.run_id.clone(), p.page_key.clone());
            let page = w.pages.get_or_insert_with(&key, PageState::default);
            page.attempts += 1;
            let newly_given_up = !page.ok && !p.will_retry && !page.gave_up;
            if newly_given_up {
                page.gave_up = true;
                page.http_status = p.http_status;
                page.error_class = p.error_class;
            }
            let run = run_mut(w, ev, seq);
            run.page_failures += 1;
            if p.error_class == ErrorClass::RateLimited as i32 {
                run.rate_limited += 1;
            }
            if newly_given_up {
                run.pages_failed_final += 1;
                if run.failed_page_keys.len() < FAILED_PAGES_KEPT_MAX {
                    run.failed_page_keys.push(p.page_key.clone());
                }
            }
        }
        Body::RecordObserved(mut r) => {
            let ikey = (
                ev.source_id.clone(),
                r.entity_type,
                std::mem::take(&mut r.external_id),
            );
            let (seen_before, spill_into) = {
                // Which run observed this identity last ("" = none yet).
                let last_run = w
                    .identities
                    .get(&ikey)
                    .map_or("", |i| i.last_observed_run_id.as_str());
                // Seen by this run before: it observed the identity last, or another
                // run took over while this one was open and this run's observation was
                // spilled into a run-seen record (a run without spills has none).
                let seen_before = last_run == ev.run_id
                    || (w
                        .runs
                        .get(&ev.run_id)
                        .is_some_and(|run| run.seen_spilled > 0)
                        && w.run_seen
                            .get(&(ev.run_id.clone(), ikey.1, ikey.2.clone()))
                            .is_some());
                // The run that observed it last may still observe it again while
                // it is open: that fact is kept (below) before this observation
                // takes over. (Folding this event changes no other run.)
                let spill_into = (!last_run.is_empty()
                    && last_run != ev.run_id
                    && w.runs.get(last_run).is_some_and(|prev| !prev.decided))
                .then(|| last_run.to_owned());
                (seen_before, spill_into)
            };
            let run = run_mut(w, ev, seq);
            // A decided run's record counters stay as they were at the decision;
            // the event counts as late (after_run_event).
            if !run.decided {
                run.records_observed += 1;
                if seen_before {
                    run.duplicates += 1;
                } else {
                    run.records_unique += 1;
                    entity_mut(run, r.entity_type).unique += 1;
                }
            }
            if let Some(last_run) = spill_into
                && let Some(prev) = w.runs.get_mut(&last_run)
            {
                prev.seen_spilled += 1;
                w.run_seen.insert((last_run, ikey.1, ikey.2.clone()), ());
            }
            let (sources, created) = (&mut w.sources, &mut w.identity_pages_of);
            let ident = w
                .identities
                .get_or_insert_with(&ikey, || new_identity(sources, created, &ikey, at));
            ident.display_name = std::mem::take(&mut r.display_name);
            ident.active = r.active;
            ident.attribute_digest = std::mem::take(&mut r.attribute_digest);
            ident.version = std::mem::take(&mut r.version);
            ident.memberships = std::mem::take(&mut r.memberships);
            ident.last_observed_at_us = at;
            ident.last_observed_run_id.clone_from(&ev.run_id);
            ident.last_observed_seq = seq;
            ident.observations += 1;
            if let Some(chunk) = note_history(&mut ident.recent_seqs, seq) {
                w.identity_history.insert((ikey.clone(), chunk.0), chunk.1);
            }
            if !ident.watched.is_empty() {
                for (action_id, why) in check_drift(
                    &mut ident.watched,
                    r.active,
                    &ident.memberships,
                    &ev.run_id,
                    seq,
                ) {
                    w.alerts.push(Alert {
                        kind: alert::Kind::ActionDrifted as i32,
                        source_id: ev.source_id.clone(),
                        run_id: ev.run_id.clone(),
                        action_id,
                        outcome: ActionOutcome::Drifted as i32,
                        message: why,
                        seq,
                        ..Default::default()
                    });
                }
            }
        }
        Body::RecordRejected(_) => {
            run_mut(w, ev, seq).rejected += 1;
        }
        Body::SyncRunFinished(f) => {
            let run = run_mut(w, ev, seq);
            if run.finished {
                // A second report for the same run: the first one counts, and
                // after_run_event counts this one as late if the run is decided.
            } else {
                run.finished = true;
                run.finished_at_us = at;
                run.engine_report = Some(f.clone());
                run.events_expected = if f.events_emitted > 0 {
                    f.events_emitted + 1
                } else {
                    0
                };
                if run.declared_total_last.is_none() && f.declared_total.is_some() {
                    run.declared_total_last = f.declared_total;
                }
            }
        }
        Body::ActionRequested(r) => {
            if !r.identity_external_id.is_empty() {
                let ikey = (
                    ev.source_id.clone(),
                    r.entity_type,
                    r.identity_external_id.clone(),
                );
                w.identity_actions.insert((ikey, ev.action_id.clone()), ());
            }
            let a = action_mut(w, ev, seq);
            if a.request.is_none() {
                a.request = Some(r.clone());
                a.requested_at_us = at;
                a.external = r.external;
            }
        }
        Body::ActionAttempted(t) => {
            let a = action_mut(w, ev, seq);
            a.attempts += 1;
            a.last_http_status = t.http_status;
            a.last_error_class = t.error_class;
        }
        Body::ActionVerified(v) => {
            let a = action_mut(w, ev, seq);
            a.verified = true;
            a.in_effect = v.in_effect;
            a.target_absent = v.target_absent;
            if v.in_effect && !a.verified_steps.contains(&v.step) {
                a.verified_steps.push(v.step);
            } else if !v.in_effect {
                a.verified_steps.retain(|s| *s != v.step);
            }
        }
        Body::ActionConcluded(c) => conclude_action(w, ev, seq, at, &c),
    }
}

/// Records an action's conclusion. The ledger keeps CONFIRMED only when every
/// step has a read-back in effect; a claim without that evidence is UNCONFIRMED.
fn conclude_action(w: &mut Working, ev: &Event, seq: u64, at: i64, c: &ActionConcluded) {
    let a = action_mut(w, ev, seq);
    if a.concluded_seq != 0 {
        return; // the first conclusion counts
    }
    let steps = a.request.as_ref().map_or(1, |r| r.plan.len().max(1));
    let mut outcome = ActionOutcome::try_from(c.outcome).unwrap_or_default();
    let mut detail = c.detail.clone();
    if outcome == ActionOutcome::Confirmed && a.verified_steps.len() < steps {
        a.claimed_outcome = outcome as i32;
        outcome = ActionOutcome::Unconfirmed;
        detail = format!(
            "claimed CONFIRMED, but only {} of {steps} step(s) have a read-back showing the intent in effect; {detail}",
            a.verified_steps.len()
        );
    }
    a.outcome = outcome as i32;
    a.outcome_detail = detail.clone();
    a.concluded_at_us = at;
    a.concluded_seq = seq;
    a.steps = c.steps.clone();
    a.watch = c.watch.clone();
    w.open_actions
        .remove(&(ev.source_id.clone(), ev.action_id.clone()));
    w.alerts.push(Alert {
        kind: alert::Kind::ActionConcluded as i32,
        source_id: ev.source_id.clone(),
        action_id: ev.action_id.clone(),
        outcome: outcome as i32,
        message: detail,
        seq,
        ..Default::default()
    });
    if outcome != ActionOutcome::Confirmed {
        return;
    }
    for wi in &c.watch {
        let key = (ev.source_id.clone(), wi.entity_type, wi.external_id.clone());
        let (sources, created) = (&mut w.sources, &mut w.identity_pages_of);
        let ident = w
            .identities
            .get_or_insert_with(&key, || new_identity(sources, created, &key, 0));
        ident.watched.push(WatchedIntent {
            action_id: ev.action_id.clone(),
            kind: wi.kind,
            member_external_id: wi.member_external_id.clone(),
            confirmed_seq: seq,
            ..Default::default()
        });
        if ident.watched.len() > WATCHED_PER_IDENTITY_MAX {
            ident.watched.remove(0);
        }
        if let Some(chunk) = note_history(&mut ident.recent_seqs, seq) {
            w.identity_history.insert((key.clone(), chunk.0), chunk.1);
        }
    }
}

/// Confirmed intents kept per identity for drift checks (oldest dropped first).
pub const WATCHED_PER_IDENTITY_MAX: usize = 16;

/// W4: does this observation (its `active` flag and memberships) undo a
/// confirmed intent watched on the identity?
fn check_drift(
    watched: &mut [WatchedIntent],
    active: Option<bool>,
    memberships: &[String],
    run_id: &str,
    seq: u64,
) -> Vec<(String, String)> {
    let mut drifted = Vec::new();
    for wi in watched
        .iter_mut()
        .filter(|wi| !wi.drifted && seq > wi.confirmed_seq)
    {
        let undone = match ActionKind::try_from(wi.kind).unwrap_or_default() {
            ActionKind::Deactivate => {
                (active == Some(true)).then(|| "observed active again".to_owned())
            }
            ActionKind::Delete => {
                Some("observed at the source again after its deletion".to_owned())
            }
            ActionKind::RemoveMembership => memberships
                .contains(&wi.member_external_id)
                .then(|| format!("{} is a member again", wi.member_external_id)),
            ActionKind::AddMembership => (!memberships.contains(&wi.member_external_id))
                .then(|| format!("{} is no longer a member", wi.member_external_id)),
            _ => None,
        };
        if let Some(why) = undone {
            wi.drifted = true;
            wi.drifted_seq = seq;
            wi.drift_detail = format!("{why} (run {run_id})");
            wi.drift_run_id = run_id.to_owned();
            drifted.push((wi.action_id.clone(), wi.drift_detail.clone()));
        }
    }
    drifted
}

fn entity_mut(run: &mut RunState, entity_type: i32) -> &mut EntityCounts {
    let i = match run
        .entities
        .iter()
        .position(|e| e.entity_type == entity_type)
    {
        Some(i) => i,
        None => {
            run.entities.push(EntityCounts {
                entity_type,
                ..Default::default()
            });
            run.entities.len() - 1
        }
    };
    &mut run.entities[i]
}

/// Records a total the source declared for one entity type, and keeps the run's
/// summed `declared_total_last` and `declared_total_changed` up to date.
fn note_declared(run: &mut RunState, entity_type: i32, declared: Option<u64>) {
    let Some(d) = declared else { return };
    let e = entity_mut(run, entity_type);
    if e.declared_first.is_none() {
        e.declared_first = Some(d);
    }
    if e.declared_last.is_some_and(|prev| prev != d) {
        e.declared_changed = true;
    }
    e.declared_last = Some(d);
    let sum: Option<u64> = run.entities.iter().map(|e| e.declared_last).sum();
    run.declared_total_last = sum;
    if run.entities.iter().any(|e| e.declared_changed) {
        run.declared_total_changed = true;
    }
}

/// After every read-path event: count it for its run, and decide the verdict once
/// the run is finished and holds every event its worker said it emitted. An
/// event arriving after the decision makes the run INCOMPLETE (LATE_EVENTS).
fn after_run_event(w: &mut Working, ev: &Event) {
    let Some(run) = w.runs.get_mut(&ev.run_id) else {
        return;
    };
    run.events_folded += 1;
    if run.decided {
        run.late_events += 1;
    } else if !(run.finished
        && (run.events_expected == 0 || run.events_folded >= run.events_expected))
    {
        return;
    }
    let was_decided = run.decided;
    run.decided = true;
    if !was_decided {
        run.decided_seq = run.last_seq;
        let prev = w
            .sources
            .get(&ev.source_id)
            .map_or(0, |s| s.last_complete_unique);
        if let Some(run) = w.runs.get_mut(&ev.run_id) {
            run.previous_complete_unique = prev;
        }
    }
    let Some(run) = w.runs.get_mut(&ev.run_id) else {
        return;
    };
    let (v, reasons) = verdict::decide_finished(run);
    run.verdict = v as i32;
    run.reasons = reasons;
    let alert = Alert {
        kind: alert::Kind::RunDecided as i32,
        source_id: ev.source_id.clone(),
        run_id: run.run_id.clone(),
        verdict: v as i32,
        message: run
            .reasons
            .iter()
            .map(|r| r.message.as_str())
            .collect::<Vec<_>>()
            .join("; "),
        seq: run.last_seq,
        ..Default::default()
    };
    let run_id = run.run_id.clone();
    let finished_at = run.finished_at_us;
    let (full, first_seq, unique) = (
        run.mode == SyncMode::Full as i32,
        run.first_seq,
        run.records_unique,
    );
    w.alerts.push(alert);
    let src = source_mut(w, ev);
    if was_decided {
        // Only a late event gets here; the verdict can only have got worse.
        if src.last_finished_run_id == run_id {
            src.last_finished_verdict = v as i32;
        }
        if v != Verdict::Complete && src.last_complete_run_id == run_id {
            // Conservative: no COMPLETE run is claimed until the next one.
            src.last_complete_run_id.clear();
            src.last_complete_at_us = 0;
            src.last_complete_unique = 0;
        }
        if v != Verdict::Complete && src.last_complete_full_run_id == run_id {
            src.last_complete_full_run_id.clear();
            src.last_complete_full_first_seq = 0;
        }
        return;
    }
    src.last_finished_run_id = run_id.clone();
    src.last_finished_verdict = v as i32;
    src.last_finished_at_us = finished_at;
    if v == Verdict::Complete {
        src.last_complete_run_id = run_id.clone();
        src.last_complete_at_us = finished_at;
        src.consecutive_failures = 0;
        if full {
            // The deletion guard compares full runs with full runs only.
            src.last_complete_unique = unique;
            src.last_complete_full_run_id = run_id;
            src.last_complete_full_first_seq = first_seq;
        }
    } else {
        src.consecutive_failures += 1;
    }
}

/// A new identity record for `key`, first seen at `first_seen_at_us` (0 =
/// not observed yet). It takes the next number of its source and with it its
/// page for good ([`crate::identity_page`]), noted in `pages`: the commit
/// writes it under the identity's key. (The page is no part of the record,
/// which stays a function of the identity's own events.)
fn new_identity(
    sources: &mut Table<String, SourceState>,
    pages: &mut IdentityPages,
    key: &IdentityKey,
    first_seen_at_us: i64,
) -> IdentityState {
    // The event's source record is inserted at the top of fold_body already.
    let src = sources.get_or_insert_with(&key.0, || SourceState {
        source_id: key.0.clone(),
        ..Default::default()
    });
    let n = src.identities_total;
    src.identities_total += 1;
    pages.insert(key.clone(), (crate::identity_page::page_of(n), true));
    IdentityState {
        source_id: key.0.clone(),
        entity_type: key.1,
        external_id: key.2.clone(),
        first_seen_at_us,
        ..Default::default()
    }
}

fn source_mut<'w>(w: &'w mut Working, ev: &Event) -> &'w mut SourceState {
    // Inserted at the top of fold_event for every event.
    w.sources.get_or_insert_with(&ev.source_id, || SourceState {
        source_id: ev.source_id.clone(),
        ..Default::default()
    })
}

fn run_mut<'w>(w: &'w mut Working, ev: &Event, seq: u64) -> &'w mut RunState {
    let run = w.runs.get_or_insert_with(&ev.run_id, || RunState {
        run_id: ev.run_id.clone(),
        source_id: ev.source_id.clone(),
        first_seq: seq,
        ..Default::default()
    });
    run.last_seq = seq;
    run.last_event_at_us = run.last_event_at_us.max(ev.occurred_at_us);
    run
}

/// The action's record, created (and counted at its source) by whichever of its
/// events comes first.
fn action_mut<'w>(w: &'w mut Working, ev: &Event, seq: u64) -> &'w mut ActionState {
    if w.actions.get(&ev.action_id).is_none() {
        source_mut(w, ev).actions_total += 1;
        let key = (ev.source_id.clone(), ev.action_id.clone());
        w.source_actions.insert(key.clone(), ());
        w.open_actions.insert(key, ());
    }
    let a = w.actions.get_or_insert_with(&ev.action_id, || ActionState {
        action_id: ev.action_id.clone(),
        source_id: ev.source_id.clone(),
        first_seq: seq,
        ..Default::default()
    });
    a.last_seq = seq;
    if let Some(chunk) = note_history(&mut a.recent_seqs, seq) {
        w.action_history
            .insert((ev.action_id.clone(), chunk.0), chunk.1);
    }
    a
}

/// Stream sequences kept in a record's `recent_seqs` before they move to a
/// history chunk (one chunk write per this many events, not one per event).
pub const HISTORY_INLINE_MAX: usize = 16;

/// Appends `seq` to a record's recent history; when that is full, returns the
/// chunk to write (its first sequence and the packed sequences) and starts anew.
fn note_history(recent: &mut Vec<u64>, seq: u64) -> Option<(u64, Vec<u8>)> {
    let out = (recent.len() >= HISTORY_INLINE_MAX).then(|| {
        let chunk = std::mem::take(recent);
        (chunk[0], crate::keys::pack_seqs(&chunk))
    });
    recent.push(seq);
    out
}

pub fn hex(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(HEX[(b >> 4) as usize] as char);
        s.push(HEX[(b & 15) as usize] as char);
    }
    s
}
