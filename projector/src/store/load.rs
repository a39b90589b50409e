//! Loading what a batch needs: every key its events name, identities read
//! page by page (a scan along the source's pages, then by page number).

use govledger_proto::v1::{
    ActionState, IdentityState, PageState, PoisonEvent, RunState, SourceState,
};
use prost::Message as _;

use super::{Result, Store, StoreError, index::IndexReader};
use crate::{
    fold::Working,
    identity_page,
    keys::{self, Key, KeyRef},
};

/// Pages [`Store::load_into`] keeps for the commit (a batch touches at most
/// one page per event; more are read again at commit).
const PAGES_READ_MAX: usize = 4_096;

impl Store {
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
                Key::IdentityHistory(..)
                | Key::ActionHistory(..)
                | Key::IdentityAction(..)
                | Key::BlockingAction(..) => {}
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

    pub(super) fn keep_page_read(&self, page_key: &[u8], bytes: &sled::IVec) {
        let mut kept = self
            .pages_read
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if kept.len() < PAGES_READ_MAX {
            kept.insert(page_key.to_vec(), bytes.clone());
        }
    }
}

pub(super) fn not_a_page(page_key: &[u8]) -> StoreError {
    StoreError::Corrupt {
        key: page_key.to_vec(),
        what: "an identity page",
    }
}

/// The entries of the page stored at `page_key`.
pub(super) fn page_entries<'p>(
    page_key: &[u8],
    page: &'p [u8],
) -> Result<Vec<(&'p [u8], &'p [u8])>> {
    identity_page::parse(page).ok_or_else(|| not_a_page(page_key))
}

/// The record of identity `key` among the `entries` of the page stored at
/// `page_key`.
pub(super) fn record_in(
    entries: &[(&[u8], &[u8])],
    key: &[u8],
    page_key: &[u8],
) -> Result<IdentityState> {
    let v = identity_page::lookup(entries, key).ok_or_else(|| StoreError::Corrupt {
        key: page_key.to_vec(),
        what: "the identity page of a stored identity key",
    })?;
    IdentityState::decode(v).map_err(|source| StoreError::Decode {
        key: key.to_vec(),
        source,
    })
}
