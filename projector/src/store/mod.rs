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
//!
//! Layout (private modules, each adding methods to [`Store`]; `tests` tests them):
//! - `mod.rs` (here): [`Store`], opening, [`Store::commit`], flushing and the digests;
//! - `load`: loading the records a batch needs into a [`Working`] set,
//!   identities page by page;
//! - `index`: the identity index (identity key → page number), read and kept up to date;
//! - `map`: the identity map (`crate::identity_map`), derived in each commit
//!   from the identity pages it writes, its root and proofs;
//! - `queries`: the reads the API serves (sources, runs, identities,
//!   actions, history, leaves, poison events);
//! - [`identity`]: which stream this projection folded (name, creation time),
//!   and the pure check that refuses another;
//! - `writer`: the one thread that applies batches (sled's lock, held at the
//!   readers' priority).

use std::path::Path;

use govledger_proto::v1::{Alert, LedgerMeta};
use prost::Message as _;
use sha2::{Digest as _, Sha256};

use crate::{
    fold::{Working, hex},
    identity_page,
    keys::Key,
};

pub mod identity;
mod index;
mod load;
mod map;
mod queries;
#[cfg(test)]
mod tests;
mod writer;

use load::not_a_page;

/// The layout version this build writes. Bump it when keys or values change
/// incompatibly; an older store is then rebuilt from the stream.
pub const STORE_FORMAT_VERSION: u32 = 12;
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
    #[error("cannot start the sled writer thread: {0}")]
    WriterStart(std::io::Error),
    #[error("the sled writer thread is gone (a projector bug; please report it)")]
    WriterGone,
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
    /// The producer keys whose seals the fold of this store's batches trusts.
    trust: std::sync::Arc<govledger_stream::seal::Trust>,
    /// Applies every batch, at the priority of the thread that opened the store.
    writer: writer::Writer,
}

impl Store {
    pub fn open(path: &Path, cache_capacity_bytes: u64) -> Result<Self> {
        let db = sled::Config::new()
            .path(path)
            .cache_capacity(cache_capacity_bytes)
            .mode(sled::Mode::HighThroughput)
            // No background flusher: sled writes the disk only when the
            // runner flushes a committed batch (the durability point, before
            // the ack), so a paused projector writes nothing to a full disk
            // (sled keeps a write error for the life of the process).
            .flush_every_ms(None)
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
        let writer = writer::Writer::start(tree.clone()).map_err(StoreError::WriterStart)?;
        Ok(Self {
            writer,
            db,
            tree,
            commit_lock: std::sync::RwLock::new(()),
            pages_read: Default::default(),
            trust: Default::default(),
        })
    }

    /// This store with the producer keys the fold trusts (provenance): the
    /// same trust for the live projection and every rebuild of it.
    pub fn with_trust(mut self, trust: std::sync::Arc<govledger_stream::seal::Trust>) -> Self {
        self.trust = trust;
        self
    }

    pub fn trust(&self) -> &std::sync::Arc<govledger_stream::seal::Trust> {
        &self.trust
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

    /// Writes every change in `w` (including `meta.last_applied_seq`) in one atomic batch.
    pub fn commit(&self, w: &Working) -> Result<()> {
        self.commit_with_alerts(w, &[])
    }

    /// [`Store::commit`], with the batch's decided `alerts` written to the
    /// alerts outbox in the same atomic batch: a decision committed is a
    /// decision that will be stored in the alerts stream (the relay empties
    /// the outbox), whatever crashes in between.
    pub fn commit_with_alerts(&self, w: &Working, alerts: &[Alert]) -> Result<()> {
        let mut batch = writer::WriteSet::default();
        for (i, a) in alerts.iter().enumerate() {
            let index = u32::try_from(i).unwrap_or(u32::MAX);
            batch.insert(
                &crate::keys::alert_outbox_key(a.seq, index)[..],
                a.encode_to_vec(),
            );
        }
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
        let mut written = Vec::with_capacity(pages.len());
        for (page_key, entries) in pages {
            let old = match pages_read.remove(&page_key) {
                Some(old) => old,
                None => self.tree.get(&page_key)?.unwrap_or_default(),
            };
            let page = identity_page::merge(&old, &entries).map_err(|e| match e {
                identity_page::PageError::NotAPage => not_a_page(&page_key),
                identity_page::PageError::Encode(e) => StoreError::Encode(e),
            })?;
            written.push((page_key, sled::IVec::from(page)));
        }
        self.derive_identity_map(
            &mut batch,
            written.iter().map(|(k, v)| (k.as_slice(), v.as_ref())),
        )?;
        for (page_key, page) in written {
            batch.insert(page_key, page);
        }
        self.index_new_identities(&mut batch, &w.new_identities())?;
        self.derive_tiles(&mut batch, w);
        let _guard = self
            .commit_lock
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        self.writer.apply(batch)
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

    /// The oldest `limit` alerts of the outbox, with their keys.
    pub fn alert_outbox(&self, limit: usize) -> Result<Vec<(sled::IVec, Alert)>> {
        let mut out = Vec::new();
        for kv in self
            .tree
            .scan_prefix([crate::keys::TAG_ALERT_OUTBOX])
            .take(limit)
        {
            let (k, v) = kv?;
            match Alert::decode(v.as_ref()) {
                Ok(a) => out.push((k, a)),
                // Written by this code from an Alert: unreadable means damaged.
                Err(_) => {
                    return Err(StoreError::Corrupt {
                        key: k.to_vec(),
                        what: "an alert",
                    });
                }
            }
        }
        Ok(out)
    }

    /// The upper tile (`level` ≥ 1, `index`) kept so far.
    pub fn upper_tile(&self, level: u8, index: u64) -> Result<Option<Vec<u8>>> {
        Ok(self
            .tree
            .get(crate::keys::tile_key(level, index))?
            .map(|v| v.to_vec()))
    }

    /// Keeps an upper tile's entries (through the writer, like every write).
    pub fn put_upper_tile(&self, level: u8, index: u64, entries: Vec<u8>) -> Result<()> {
        let mut batch = writer::WriteSet::default();
        batch.insert(&crate::keys::tile_key(level, index)[..], entries);
        self.writer.apply(batch)
    }

    /// Removes alerts from the outbox once they are stored.
    pub fn alert_outbox_remove(&self, keys: &[sled::IVec]) -> Result<()> {
        let mut batch = writer::WriteSet::default();
        for k in keys {
            batch.remove(k.clone());
        }
        self.writer.apply(batch)
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
            // The alerts outbox is delivery state, the upper tiles and the
            // identity map are derived from the leaves and the identity
            // pages: none is a projection of its own.
            if matches!(
                k.first(),
                Some(
                    &crate::keys::TAG_ALERT_OUTBOX
                        | &crate::keys::TAG_TILE
                        | &crate::keys::TAG_IDMAP_BLOCK
                        | &crate::keys::TAG_IDMAP_SOURCE
                )
            ) {
                continue;
            }
            digest_entry(&mut h, &k, &v);
        }
        Ok(hex(&h.finalize()))
    }
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

impl Store {
    /// Adds to `batch` the upper-tile entries the leaf blocks of this commit
    /// complete (`crate::tiles`): one hash of 256 leaves per 256 events, in
    /// the same atomic write as the leaves. A tile that cannot be derived now
    /// is computed by the first proof that needs it.
    fn derive_tiles(&self, batch: &mut writer::WriteSet, w: &Working) {
        let overlay = TileOverlay {
            store: self,
            leaves: &w.leaves,
            pending: Default::default(),
        };
        match crate::tiles::Tiles::new(&overlay).extend(w.merkle.size()) {
            Ok(()) => {
                for ((level, n), entries) in overlay.pending.into_inner() {
                    batch.insert(&crate::keys::tile_key(level, n)[..], entries);
                }
            }
            // A fold of a filtered slice (point in time) holds no whole tree.
            Err(crate::tiles::TileError::Missing(_)) => {}
            Err(e) => {
                tracing::warn!(error = %e, "upper tiles not derived; the next proof computes them")
            }
        }
    }
}

/// The tiles as this commit leaves them: its leaf blocks over the stored
/// ones, and the upper-tile entries it derives (written with the commit).
struct TileOverlay<'a> {
    store: &'a Store,
    leaves: &'a crate::fold::Table<u64, Vec<u8>>,
    pending: std::cell::RefCell<std::collections::BTreeMap<(u8, u64), Vec<u8>>>,
}

impl crate::tiles::TileSource for TileOverlay<'_> {
    fn leaf_block(&self, n: u64) -> std::result::Result<Option<Vec<u8>>, String> {
        match self.leaves.get(&n) {
            Some(b) => Ok(Some(b.clone())),
            None => Store::leaf_block(self.store, n).map_err(|e| e.to_string()),
        }
    }
    fn upper_tile(&self, level: u8, n: u64) -> std::result::Result<Option<Vec<u8>>, String> {
        if let Some(t) = self.pending.borrow().get(&(level, n)) {
            return Ok(Some(t.clone()));
        }
        Store::upper_tile(self.store, level, n).map_err(|e| e.to_string())
    }
    fn put_upper_tile(
        &self,
        level: u8,
        n: u64,
        entries: Vec<u8>,
    ) -> std::result::Result<(), String> {
        self.pending.borrow_mut().insert((level, n), entries);
        Ok(())
    }
}

/// The store's tiles: the leaf blocks (level 0) and the kept upper tiles.
impl crate::tiles::TileSource for Store {
    fn leaf_block(&self, n: u64) -> std::result::Result<Option<Vec<u8>>, String> {
        Store::leaf_block(self, n).map_err(|e| e.to_string())
    }
    fn upper_tile(&self, level: u8, n: u64) -> std::result::Result<Option<Vec<u8>>, String> {
        Store::upper_tile(self, level, n).map_err(|e| e.to_string())
    }
    fn put_upper_tile(
        &self,
        level: u8,
        n: u64,
        entries: Vec<u8>,
    ) -> std::result::Result<(), String> {
        Store::put_upper_tile(self, level, n, entries).map_err(|e| e.to_string())
    }
}
