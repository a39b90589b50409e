//! The sled store: one tree holding every projection record.
//!
//! Architecture Invariant: sled holds nothing the stream cannot rebuild. Deleting
//! the folder loses nothing; the projector refolds from stream sequence 1.
//!
//! Architecture Invariant: a batch's records and `last_applied_seq` are written by
//! one atomic `apply_batch` and flushed to disk before any message of the batch
//! is acknowledged.
//!
//! sled is beta software whose on-disk format may change; it is used only through
//! this module, values are prost-encoded (versioned by field number), and the
//! store records its own format version.

use std::path::Path;

use govledger_proto::v1::{
    ActionState, IdentityState, LedgerMeta, PageState, PoisonEvent, RunState, SourceState,
};
use prost::Message as _;
use sha2::{Digest as _, Sha256};

use crate::{
    fold::{Working, hex},
    identity_index, identity_page,
    keys::{self, Key, KeyRef},
};

/// The layout version this build writes. Bump it when keys or values change
/// incompatibly; an older store is then rebuilt from the stream.
pub const STORE_FORMAT_VERSION: u32 = 6;
/// Default sled page cache, in bytes.
pub const DEFAULT_CACHE_CAPACITY_BYTES: u64 = 64 * 1024 * 1024;

/// The sled tree that holds every projection record.
pub const TREE: &str = "projections.v1";
const FORMAT_KEY: &[u8] = b"govledger.format";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("sled store at {path}: {source}")]
    Open {
        path: String,
        #[source]
        source: sled::Error,
    },
    #[error(
        "sled store at {path} has format version {found}, this build uses {STORE_FORMAT_VERSION}; \
         delete the folder (nothing is lost: it is rebuilt from the stream)"
    )]
    Format { path: String, found: u32 },
    #[error("sled: {0}")]
    Sled(#[from] sled::Error),
    #[error("identity pages: {0} (a projector bug; please report it)")]
    PageUnknown(String),
    #[error("encoding a record: {0}")]
    Encode(prost::EncodeError),
    #[error(
        "corrupt record at key {key:?}: not {what}; delete the folder (it is rebuilt from the stream)"
    )]
    Corrupt { key: Vec<u8>, what: &'static str },
    #[error("corrupt record at key {key:?}: {source}")]
    Decode {
        key: Vec<u8>,
        #[source]
        source: prost::DecodeError,
    },
}

pub type Result<T> = std::result::Result<T, StoreError>;

pub struct Store {
    db: sled::Db,
    tree: sled::Tree,
    /// Commits take it for writing, `digest_at` for reading: a digest and the
    /// sequence it belongs to are read from one consistent state.
    commit_lock: std::sync::RwLock<()>,
    /// The identity pages `load_into` read since the last commit, which
    /// writes over them without reading them again. Only commits write
    /// pages, and each commit empties this, so it holds what sled holds.
    pages_read: std::sync::Mutex<std::collections::HashMap<Vec<u8>, sled::IVec>>,
}

/// Pages [`Store::load_into`] keeps for the commit (a batch touches at most
/// one page per event; more are read again at commit).
const PAGES_READ_MAX: usize = 4_096;

impl Store {
    pub fn open(path: &Path, cache_capacity_bytes: u64) -> Result<Self> {
        let db = sled::Config::new()
            .path(path)
            .cache_capacity(cache_capacity_bytes)
            .mode(sled::Mode::HighThroughput)
            .open()
            .map_err(|source| StoreError::Open {
                path: path.display().to_string(),
                source,
            })?;
        let found = match db.get(FORMAT_KEY)? {
            Some(v) if v.len() == 4 => u32::from_be_bytes([v[0], v[1], v[2], v[3]]),
            Some(_) => 0,
            None => {
                db.insert(FORMAT_KEY, &STORE_FORMAT_VERSION.to_be_bytes())?;
                STORE_FORMAT_VERSION
            }
        };
        if found != STORE_FORMAT_VERSION {
            return Err(StoreError::Format {
                path: path.display().to_string(),
                found,
            });
        }
        let tree = db.open_tree(TREE)?;
        Ok(Self {
            db,
            tree,
            commit_lock: std::sync::RwLock::new(()),
            pages_read: Default::default(),
        })
    }

    pub fn meta(&self) -> Result<LedgerMeta> {
        Ok(self.get(&Key::Meta.encode())?.unwrap_or_default())
    }

    fn get<M: prost::Message + Default>(&self, key: &[u8]) -> Result<Option<M>> {
        match self.tree.get(key)? {
            None => Ok(None),
            Some(v) => M::decode(&*v)
                .map(Some)
                .map_err(|source| StoreError::Decode {
                    key: key.to_vec(),
                    source,
                }),
        }
    }

    /// Loads every key in `keys` that `w` does not hold yet (absent keys as
    /// `None`). The keys move into `w`'s tables: none is copied.
    pub fn load_into(&self, w: &mut Working, keys: Vec<Key>) -> Result<()> {
        let mut identities = Vec::new();
        for key in keys {
            if w.holds(&key) {
                continue;
            }
            let enc = key.encode();
            let key = match key {
                Key::Identity(k) => {
                    identities.push((enc, k));
                    continue;
                }
                other => other,
            };
            let present = |v: Option<sled::IVec>| v.map(|_| ());
            match key {
                Key::Meta => {}
                Key::Source(k) => w.sources.load(k, self.get::<SourceState>(&enc)?),
                Key::Run(k) => w.runs.load(k, self.get::<RunState>(&enc)?),
                Key::SourceRun(a, b) => w.source_runs.load((a, b), present(self.tree.get(&enc)?)),
                Key::Page(a, b) => w.pages.load((a, b), self.get::<PageState>(&enc)?),
                Key::RunSeen(k) => w.run_seen.load(k, present(self.tree.get(&enc)?)),
                Key::Identity(k) => w.identities.load(k, self.get::<IdentityState>(&enc)?),
                Key::Action(k) => w.actions.load(k, self.get::<ActionState>(&enc)?),
                Key::EventId(k) => {
                    let v = self
                        .tree
                        .get(&enc)?
                        .and_then(|b| <[u8; 8]>::try_from(b.as_ref()).ok().map(u64::from_be_bytes));
                    w.event_ids.load(k, v);
                }
                Key::EventBlock(b) => w
                    .event_blocks
                    .load(b, self.tree.get(&enc)?.map(|v| v.to_vec())),
                Key::SourceAction(a, b) => {
                    w.source_actions.load((a, b), present(self.tree.get(&enc)?));
                }
                Key::OpenAction(a, b) => w.open_actions.load((a, b), present(self.tree.get(&enc)?)),
                Key::Leaves(b) => w.leaves.load(b, self.tree.get(&enc)?.map(|v| v.to_vec())),
                Key::Poison(k) => w.poison.load(k, self.get::<PoisonEvent>(&enc)?),
                // Written only, never read by the fold.
                Key::IdentityHistory(..) | Key::ActionHistory(..) | Key::IdentityAction(..) => {}
            }
        }
        self.load_identities(w, identities)
    }

    /// Loads identity records (`want`: encoded key and key, in the order the
    /// batch's events name them).
    ///
    /// First, for each source, the pages in listing order ([`Self::scan_pages`]):
    /// a source lists its records in the same order every run and pages are
    /// numbered in the order it first showed them, so the batch's identities
    /// sit on consecutive pages starting at its first identity's page. The
    /// rest (identities new or listed in another order) are read key → page
    /// number → page, as follows.
    ///
    /// A batch's identities usually sit side by side in key order (a source
    /// lists its records in the same order every run), so their keys are read
    /// by one walk over sled's key range from the smallest to the largest
    /// wanted key: one tree descent for the whole batch instead of one per
    /// identity. A walk that meets more records nobody asked for than were
    /// asked for (wanted keys scattered over many others) stops, and the rest
    /// are read one `get` each, so a scattered batch costs at most about twice
    /// the `get`s.
    fn load_identities(
        &self,
        w: &mut Working,
        mut want: Vec<(Vec<u8>, keys::IdentityKey)>,
    ) -> Result<()> {
        // The first identity of each source in the batch's order (a batch
        // holds the events of a few sources).
        let mut firsts: Vec<(String, Vec<u8>)> = Vec::new();
        for (enc, key) in &want {
            if !firsts.iter().any(|(s, _)| *s == key.0) {
                firsts.push((key.0.clone(), enc.clone()));
            }
        }
        want.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        want.dedup_by(|a, b| a.0 == b.0);
        w.identities.reserve(want.len());
        w.identity_pages_of.reserve(want.len());
        for (source, first) in &firsts {
            want = self.scan_pages(w, want, source, first)?;
        }
        // (key, page number) of every wanted identity the store holds.
        let mut found: Vec<(Vec<u8>, keys::IdentityKey, u64)> = Vec::with_capacity(want.len());
        let mut index = IndexReader::default();
        for (enc, key) in want {
            match index.page_of(&self.tree, &enc)? {
                Some(page) => found.push((enc, key, page)),
                None => w.identities.load(key, None),
            }
        }
        // Each page read and parsed once: most of a batch's identities share
        // a few pages.
        found.sort_by(|a, b| (&a.1.0, a.2).cmp(&(&b.1.0, b.2)));
        let mut found = found.into_iter().peekable();
        while let Some((enc, key, page)) = found.next() {
            let source = key.0.clone();
            let page_key = KeyRef::IdentityPage(&source, page).encode();
            let bytes = self.tree.get(&page_key)?.unwrap_or_default();
            self.keep_page_read(&page_key, &bytes);
            let entries = page_entries(&page_key, &bytes)?;
            let mut next = Some((enc, key));
            while let Some((enc, key)) = next {
                let state = record_in(&entries, &enc, &page_key)?;
                w.identity_pages_of.insert(key.clone(), (page, false));
                w.identities.load(key, Some(state));
                next = found
                    .next_if(|(_, k, p)| *p == page && k.0 == source)
                    .map(|(e, k, _)| (e, k));
            }
        }
        Ok(())
    }

    /// Loads the identities of `want` (sorted by encoded key) that sit on
    /// `source`'s pages from the page of `first` on, reading those pages in
    /// order (one walk over page keys), and returns the ones not found there.
    ///
    /// The walk stops at a page holding none of the wanted identities (the
    /// listing left the order its pages were made in), once every wanted
    /// identity of the source is found, or after as many pages as those
    /// identities could fill plus two. A page holds an identity's only record,
    /// so one found on a page is loaded exactly as by its page number.
    fn scan_pages(
        &self,
        w: &mut Working,
        want: Vec<(Vec<u8>, keys::IdentityKey)>,
        source: &str,
        first: &[u8],
    ) -> Result<Vec<(Vec<u8>, keys::IdentityKey)>> {
        let Some(start) = IndexReader::default().page_of(&self.tree, first)? else {
            // New to the store: nothing to scan from (the source's other
            // identities in the batch go by page number).
            return Ok(want);
        };
        let mine: Vec<usize> = (0..want.len()).filter(|&i| want[i].1.0 == source).collect();
        let max_pages = mine
            .len()
            .div_ceil(identity_page::IDENTITY_PAGE_CAPACITY as usize)
            + 2;
        // What the walk found of each wanted identity: its page and record.
        let mut taken: Vec<Option<(u64, IdentityState)>> = Vec::new();
        taken.resize_with(want.len(), || None);
        let mut left = mine.len();
        let from = KeyRef::IdentityPage(source, start).encode();
        let to = KeyRef::IdentityPage(source, u64::MAX).encode();
        for kv in self.tree.range(from..=to).take(max_pages) {
            let (page_key, bytes) = kv?;
            let page = keys::trailing_u64(&page_key).ok_or_else(|| not_a_page(&page_key))?;
            let mut hits = 0;
            for (k, v) in page_entries(&page_key, &bytes)? {
                let Ok(at) = mine.binary_search_by(|&i| want[i].0.as_slice().cmp(k)) else {
                    continue;
                };
                let slot = &mut taken[mine[at]];
                if slot.is_some() {
                    continue;
                }
                let state = IdentityState::decode(v).map_err(|source| StoreError::Decode {
                    key: k.to_vec(),
                    source,
                })?;
                *slot = Some((page, state));
                hits += 1;
            }
            if hits == 0 {
                break;
            }
            self.keep_page_read(&page_key, &bytes);
            left -= hits;
            if left == 0 {
                break;
            }
        }
        let mut rest = Vec::with_capacity(want.len() - (mine.len() - left));
        for ((enc, key), found) in want.into_iter().zip(taken) {
            match found {
                Some((page, state)) => {
                    w.identity_pages_of.insert(key.clone(), (page, false));
                    w.identities.load(key, Some(state));
                }
                None => rest.push((enc, key)),
            }
        }
        Ok(rest)
    }

    fn keep_page_read(&self, page_key: &[u8], bytes: &sled::IVec) {
        let mut kept = self
            .pages_read
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if kept.len() < PAGES_READ_MAX {
            kept.insert(page_key.to_vec(), bytes.clone());
        }
    }

    /// Writes every change in `w` (including `meta.last_applied_seq`) in one atomic batch.
    pub fn commit(&self, w: &Working) -> Result<()> {
        let mut batch = sled::Batch::default();
        for (k, v) in w.changes() {
            match v {
                Some(v) => batch.insert(k, v),
                None => batch.remove(k),
            }
        }
        let pages = w.identity_changes().map_err(|key| {
            StoreError::PageUnknown(format!("{key:?} has no page in the working set"))
        })?;
        let mut pages_read = std::mem::take(
            &mut *self
                .pages_read
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        for (page_key, entries) in pages {
            let old = match pages_read.remove(&page_key) {
                Some(old) => old,
                None => self.tree.get(&page_key)?.unwrap_or_default(),
            };
            let page = identity_page::merge(&old, &entries).map_err(|e| match e {
                identity_page::PageError::NotAPage => not_a_page(&page_key),
                identity_page::PageError::Encode(e) => StoreError::Encode(e),
            })?;
            batch.insert(page_key, page);
        }
        self.index_new_identities(&mut batch, &w.new_identities())?;
        let _guard = self
            .commit_lock
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        self.tree.apply_batch(batch)?;
        Ok(())
    }

    /// Adds `new` (identity key, page number; sorted by key, of any sources)
    /// to the identity index ([`identity_index`]) in `batch`: each run of
    /// chunks a new identity falls in is read, merged with the new entries
    /// and cut into chunks again, so the chunks stay the same function of
    /// the set of identities however they arrive.
    fn index_new_identities(&self, batch: &mut sled::Batch, new: &[(Vec<u8>, u64)]) -> Result<()> {
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

    /// The last applied sequence and the digest of the state at exactly that
    /// sequence (no commit can happen in between).
    pub fn digest_at(&self) -> Result<(LedgerMeta, String)> {
        let _guard = self
            .commit_lock
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Ok((self.meta()?, self.digest()?))
    }

    /// Makes everything committed so far durable.
    pub async fn flush(&self) -> Result<()> {
        self.db.flush_async().await?;
        Ok(())
    }

    /// [`Store::flush`] for a blocking thread.
    pub fn flush_blocking(&self) -> Result<()> {
        self.db.flush()?;
        Ok(())
    }

    /// SHA-256 over every projection record in key order (length-prefixed key and
    /// value). Two stores with the same digest hold the same projections.
    pub fn digest(&self) -> Result<String> {
        let mut h = Sha256::new();
        for kv in self.tree.iter() {
            let (k, v) = kv?;
            digest_entry(&mut h, &k, &v);
        }
        Ok(hex(&h.finalize()))
    }

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

    pub fn action(&self, id: &str) -> Result<Option<ActionState>> {
        self.get(&KeyRef::Action(id).encode())
    }

    /// Action ids of a source, newest first (UUID v7 / v5 ids: v7 sort by time), at most `limit`.
    pub fn action_ids_of(&self, source_id: &str, limit: usize) -> Result<Vec<String>> {
        let p = keys::prefix(keys::TAG_SOURCE_ACTION, &[source_id]);
        let mut out = Vec::new();
        for kv in self.tree.scan_prefix(&p).rev().take(limit) {
            let (k, _) = kv?;
            if let Some((id, _)) = keys::read_str(&k, p.len()) {
                out.push(id);
            }
        }
        Ok(out)
    }

    /// Every action of a source that has not concluded (at most `limit`), read
    /// through the open-action index: the cost follows the open actions only.
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
struct IndexReader {
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
    fn page_of(&mut self, tree: &sled::Tree, key: &[u8]) -> Result<Option<u64>> {
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

fn not_a_page(page_key: &[u8]) -> StoreError {
    StoreError::Corrupt {
        key: page_key.to_vec(),
        what: "an identity page",
    }
}

/// The entries of the page stored at `page_key`.
fn page_entries<'p>(page_key: &[u8], page: &'p [u8]) -> Result<Vec<(&'p [u8], &'p [u8])>> {
    identity_page::parse(page).ok_or_else(|| not_a_page(page_key))
}

/// The record of identity `key` among the `entries` of the page stored at
/// `page_key`.
fn record_in(entries: &[(&[u8], &[u8])], key: &[u8], page_key: &[u8]) -> Result<IdentityState> {
    let v = identity_page::lookup(entries, key).ok_or_else(|| StoreError::Corrupt {
        key: page_key.to_vec(),
        what: "the identity page of a stored identity key",
    })?;
    IdentityState::decode(v).map_err(|source| StoreError::Decode {
        key: key.to_vec(),
        source,
    })
}

pub fn digest_entry(h: &mut Sha256, k: &[u8], v: &[u8]) {
    h.update((k.len() as u64).to_be_bytes());
    h.update(k);
    h.update((v.len() as u64).to_be_bytes());
    h.update(v);
}

/// The digest the store would have if it held exactly `w` (every record in `w`
/// present). Used to check the batched sled path against an in-memory fold.
pub fn digest_of_working(w: &Working) -> Result<String> {
    let mut all: std::collections::BTreeMap<Vec<u8>, Vec<u8>> = Default::default();
    for (k, v) in full_changes(w)? {
        all.insert(k, v);
    }
    let mut h = Sha256::new();
    for (k, v) in &all {
        digest_entry(&mut h, k, v);
    }
    Ok(hex(&h.finalize()))
}

fn full_changes(w: &Working) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
    // A store that never committed has no meta record.
    let mut out = Vec::new();
    if w.meta != LedgerMeta::default() || w.meta_dirty {
        out.push((Key::Meta.encode(), w.meta_record().encode_to_vec()));
    }
    out.extend(
        w.present_records()
            .map_err(|e| StoreError::PageUnknown(e.to_string()))?,
    );
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::IdentityKey;

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
                let mut b = sled::Batch::default();
                store.index_new_identities(&mut b, &sorted).unwrap();
                store.tree.apply_batch(b).unwrap();
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
}
