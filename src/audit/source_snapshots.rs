//! Snapshots of point-in-time source folds, so a source answer costs the
//! events since the nearest earlier answer, not the source's whole history.
//!
//! A point-in-time source answer folds the source's events up to the point
//! into a scratch sled folder ([`crate::audit::asof`]). That folder is the
//! source as it stood at the point; instead of deleting it, it is kept as a
//! snapshot (`audit.source_snapshots_kept` per source, default
//! [`DEFAULT_SNAPSHOTS_KEPT`]).
//! The next answer at a later point starts from a copy of the nearest
//! earlier snapshot and folds only the source's events after it. Beyond the
//! limit, the snapshot whose removal leaves the smallest gap goes (the
//! oldest and the newest stay), so the kept ones spread over the history.
//! On a cadence (`audit.source_snapshot_interval_ms`, [`keep_fresh`]) the
//! ledger answers each source as of its head itself, so the newest snapshot
//! is at most one interval old. A question costs the source's events
//! between the nearest earlier snapshot and its point, plus copying and
//! checking that snapshot (the size of the source's state).
//!
//! A snapshot is used only when its record still holds: the same stream,
//! source, store format, build and producer keys, the log's Merkle root at
//! its sequence (recomputed from the ledger's tiles) equal to the one it was
//! made at, and the copy's state digest equal to the one recorded — so a
//! snapshot altered on disk, or one of another log, is discarded (and the
//! answer folded from the start), never trusted.

use std::{
    num::NonZeroU64,
    path::{Path, PathBuf},
    time::Duration,
};

use tokio_util::sync::CancellationToken;

use sha2::{Digest as _, Sha256};

use govledger_projector::fold::hex;

/// Snapshots kept per source by default (spread over its history: see the
/// module doc), and the bounds of `audit.source_snapshots_kept`.
pub const DEFAULT_SNAPSHOTS_KEPT: usize = 4;
pub const SNAPSHOTS_KEPT_MIN: usize = 2;
pub const SNAPSHOTS_KEPT_MAX: usize = 64;
/// The default of `audit.source_snapshot_interval_ms`: one day.
pub const DEFAULT_SNAPSHOT_INTERVAL_MS: u64 = 86_400_000;
/// The shortest `audit.source_snapshot_interval_ms` other than 0 (off).
pub const SNAPSHOT_INTERVAL_MIN_MS: u64 = 1_000;
/// Files copied out of one snapshot at most (a sled folder holds a few).
const SNAPSHOT_FILES_MAX: usize = 1_000;
const RECORD_FILE: &str = "snapshot.txt";
const DB_DIR: &str = "db";

/// What a snapshot was made of and from; written beside its folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub stream: String,
    pub source_id: String,
    /// The sequence it holds the source's fold up to.
    pub seq: u64,
    /// Hex Merkle root of the log at `seq`.
    pub root: String,
    /// Hex state digest of the folded store.
    pub digest: String,
    /// Store format, build version and hash of the trusted producer keys.
    pub fold: String,
}

impl Record {
    fn text(&self) -> String {
        format!(
            "govledger source snapshot v1\nstream={}\nsource={}\nseq={}\nroot={}\ndigest={}\nfold={}\n",
            self.stream, self.source_id, self.seq, self.root, self.digest, self.fold
        )
    }

    fn parse(text: &str) -> Option<Self> {
        let mut lines = text.lines();
        if lines.next()? != "govledger source snapshot v1" {
            return None;
        }
        let mut field = |name: &str| {
            lines
                .next()?
                .strip_prefix(name)?
                .strip_prefix('=')
                .map(str::to_owned)
        };
        Some(Self {
            stream: field("stream")?,
            source_id: field("source")?,
            seq: field("seq")?.parse().ok()?,
            root: field("root")?,
            digest: field("digest")?,
            fold: field("fold")?,
        })
    }
}

/// What the fold of a snapshot depends on besides the events: the store
/// format, this build, and the producer keys the fold trusts.
pub fn fold_identity(trusted_keys: &[String]) -> String {
    let mut h = Sha256::new();
    for k in trusted_keys {
        h.update(k.to_ascii_lowercase().as_bytes());
        h.update(b"\n");
    }
    format!(
        "store-{}/govledger-{}/trust-{}",
        govledger_projector::store::STORE_FORMAT_VERSION,
        env!("CARGO_PKG_VERSION"),
        &hex(&h.finalize())[..16]
    )
}

/// The snapshots of one ledger, under `dir` (one folder per source).
#[derive(Debug, Clone)]
pub struct Snapshots {
    pub dir: PathBuf,
    /// Snapshots kept per source (at least 2: the oldest and the newest).
    pub kept: usize,
}

impl Snapshots {
    fn source_dir(&self, source_id: &str) -> PathBuf {
        self.dir.join(hex(source_id.as_bytes()))
    }

    /// The kept snapshots of a source, by sequence (unreadable ones skipped).
    fn list(&self, source_id: &str) -> Vec<(u64, PathBuf)> {
        let Ok(entries) = std::fs::read_dir(self.source_dir(source_id)) else {
            return Vec::new();
        };
        let mut out: Vec<(u64, PathBuf)> = entries
            .filter_map(Result::ok)
            .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path())))
            .collect();
        out.sort();
        out
    }

    /// The newest snapshot of `source_id` at or before `seq`: its record
    /// and its folder (not yet checked against the log and its digest).
    pub fn nearest(&self, source_id: &str, seq: u64) -> Option<(Record, PathBuf)> {
        let (_, path) = self
            .list(source_id)
            .into_iter()
            .rev()
            .find(|(s, _)| *s <= seq)?;
        let record = std::fs::read_to_string(path.join(RECORD_FILE))
            .ok()
            .and_then(|t| Record::parse(&t))?;
        Some((record, path))
    }

    /// Copies a snapshot's store into `to` (a new folder).
    pub fn copy_out(&self, snapshot: &Path, to: &Path) -> std::io::Result<()> {
        copy_dir(&snapshot.join(DB_DIR), to, &mut 0)
    }

    /// The sequence of the newest snapshot of `source_id`, if any.
    pub fn newest(&self, source_id: &str) -> Option<u64> {
        self.list(source_id).last().map(|(s, _)| *s)
    }

    /// Keeps `store_dir` (a closed scratch store) as the snapshot `record`
    /// describes; beyond `kept`, drops the one whose
    /// removal leaves the smallest gap (never the oldest or the newest).
    pub fn keep(&self, store_dir: &Path, record: &Record) -> std::io::Result<()> {
        let dir = self.source_dir(&record.source_id);
        let at = dir.join(format!("{:020}", record.seq));
        if at.exists() {
            return Ok(()); // the same fold, kept already
        }
        let staging = dir.join(format!(".new-{}", uuid::Uuid::now_v7()));
        std::fs::create_dir_all(&staging)?;
        std::fs::rename(store_dir, staging.join(DB_DIR))?;
        std::fs::write(staging.join(RECORD_FILE), record.text())?;
        std::fs::rename(&staging, &at)?;
        let mut kept = self.list(&record.source_id);
        while kept.len() > self.kept.max(SNAPSHOTS_KEPT_MIN) {
            let i = (1..kept.len() - 1)
                .min_by_key(|&i| kept[i + 1].0 - kept[i - 1].0)
                .unwrap_or(0);
            std::fs::remove_dir_all(&kept[i].1)?;
            kept.remove(i);
        }
        Ok(())
    }

    /// Drops a snapshot that no longer holds.
    pub fn discard(&self, snapshot: &Path) {
        if let Err(e) = std::fs::remove_dir_all(snapshot) {
            tracing::warn!(dir = %snapshot.display(), error = %e, "cannot remove a source snapshot");
        }
    }
}

/// Every `interval` until `cancel`, answers each source whose events went
/// past its newest snapshot as of the last applied sequence, which keeps
/// that answer as its newest snapshot (folded on from the one before).
pub async fn keep_fresh(
    reader: &crate::audit::asof::AsOfReader,
    interval: Duration,
    cancel: CancellationToken,
) {
    let snaps = &reader.snapshots;
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await; // the first tick is immediate; start after one interval
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = cancel.cancelled() => return,
        }
        let (applied, sources) = match (reader.store.meta(), reader.store.sources()) {
            (Ok(m), Ok(s)) => (m.last_applied_seq, s),
            (Err(e), _) | (_, Err(e)) => {
                tracing::warn!(error = %e, "source snapshots: cannot read the store; trying at the next interval");
                continue;
            }
        };
        let Some(at) = NonZeroU64::new(applied) else {
            continue;
        };
        // The head, resolved once per round (when a source needs it).
        let mut head = None;
        for s in sources {
            if snaps.newest(&s.source_id).is_some_and(|n| n >= s.last_seq) {
                continue; // nothing new since its newest snapshot
            }
            let answer = async {
                let p = match &head {
                    Some(p) => p,
                    None => {
                        head.insert(reader.resolve(crate::audit::asof::PointAt::Seq(at)).await?)
                    }
                };
                reader.source(&s.source_id, p).await
            };
            let answered = tokio::select! {
                a = answer => a,
                _ = cancel.cancelled() => return,
            };
            if let Err(e) = answered {
                tracing::warn!(source = %s.source_id, error = %e,
                    "source snapshot not made; trying at the next interval");
            }
        }
    }
}

/// Removes the scratch folds an earlier process left when it stopped in the
/// middle of an answer (`asof-*` under `scratch_dir`; the snapshots stay).
pub fn remove_interrupted(scratch_dir: &Path) {
    let Ok(entries) = std::fs::read_dir(scratch_dir) else {
        return;
    };
    for e in entries.filter_map(Result::ok) {
        if e.file_name().to_string_lossy().starts_with("asof-")
            && let Err(err) = std::fs::remove_dir_all(e.path())
        {
            tracing::warn!(dir = %e.path().display(), error = %err, "cannot remove an interrupted scratch fold");
        }
    }
}

fn copy_dir(from: &Path, to: &Path, files: &mut usize) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        *files += 1;
        if *files > SNAPSHOT_FILES_MAX {
            return Err(std::io::Error::other("a snapshot holds too many files"));
        }
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target, files)?;
        } else {
            std::fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(seq: u64) -> Record {
        Record {
            stream: "G".into(),
            source_id: "hr".into(),
            seq,
            root: "ab".repeat(32),
            digest: "cd".repeat(32),
            fold: fold_identity(&["ee".repeat(32)]),
        }
    }

    #[test]
    fn a_record_reads_back_and_a_damaged_one_does_not() {
        let r = record(42);
        assert_eq!(Record::parse(&r.text()), Some(r.clone()));
        assert_eq!(Record::parse(&r.text().replace("seq=42", "seq=x")), None);
        assert_eq!(Record::parse("something else"), None);
        // Other producer keys: another fold.
        assert_ne!(r.fold, fold_identity(&[]));
    }

    #[test]
    fn the_nearest_earlier_snapshot_is_found_and_the_kept_ones_spread() {
        let dir = tempfile::tempdir().unwrap();
        let snaps = Snapshots {
            dir: dir.path().join("snaps"),
            kept: DEFAULT_SNAPSHOTS_KEPT,
        };
        let keep = |seq: u64| {
            let store = dir.path().join(format!("store-{seq}"));
            std::fs::create_dir_all(store.join("blobs")).unwrap();
            std::fs::write(store.join("blobs/db"), seq.to_string()).unwrap();
            snaps.keep(&store, &record(seq)).unwrap();
        };
        for seq in [10, 30, 20, 40, 50] {
            keep(seq);
        }
        // Five kept at most four: the one whose removal leaves the smallest
        // gap went (a tie: the earliest), the oldest and the newest stayed.
        assert_eq!(snaps.newest("hr"), Some(50));
        assert_eq!(snaps.nearest("hr", 29).unwrap().0.seq, 10);
        assert_eq!(snaps.nearest("hr", 35).unwrap().0.seq, 30);
        assert!(snaps.nearest("hr", 9).is_none());
        assert_eq!(snaps.nearest("hr", 1_000).unwrap().0.seq, 50);
        assert!(snaps.nearest("other", 1_000).is_none());
        let (_, at) = snaps.nearest("hr", 45).unwrap();
        let out = dir.path().join("copy");
        snaps.copy_out(&at, &out).unwrap();
        assert_eq!(std::fs::read_to_string(out.join("blobs/db")).unwrap(), "40");
        snaps.discard(&at);
        assert_eq!(snaps.nearest("hr", 45).unwrap().0.seq, 30);
        // The newest always stays: one more at the head evicts an older one.
        keep(45);
        keep(60);
        assert_eq!(snaps.newest("hr"), Some(60));
        assert_eq!(snaps.list("hr").len(), DEFAULT_SNAPSHOTS_KEPT);
        assert_eq!(snaps.nearest("hr", 9), None);
        assert_eq!(snaps.nearest("hr", 11).unwrap().0.seq, 10);
    }
}
