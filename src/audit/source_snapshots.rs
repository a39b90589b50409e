//! Snapshots of point-in-time source folds, so a source answer costs the
//! events since the nearest earlier answer, not the source's whole history.
//!
//! A point-in-time source answer folds the source's events up to the point
//! into a scratch sled folder ([`crate::audit::asof`]). That folder is the
//! source as it stood at the point; instead of deleting it, it is kept as a
//! snapshot (at most [`SNAPSHOTS_PER_SOURCE_MAX`] per source, the newest).
//! The next answer at a later point starts from a copy of the nearest
//! earlier snapshot and folds only the source's events after it.
//!
//! A snapshot is used only when its record still holds: the same stream,
//! source, store format, build and producer keys, the log's Merkle root at
//! its sequence (recomputed from the ledger's tiles) equal to the one it was
//! made at, and the copy's state digest equal to the one recorded — so a
//! snapshot altered on disk, or one of another log, is discarded (and the
//! answer folded from the start), never trusted.

use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};

use govledger_projector::fold::hex;

/// Snapshots kept per source (the newest by sequence).
pub const SNAPSHOTS_PER_SOURCE_MAX: usize = 4;
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

    /// Keeps `store_dir` (a closed scratch store) as the snapshot `record`
    /// describes; drops the oldest beyond [`SNAPSHOTS_PER_SOURCE_MAX`].
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
        let kept = self.list(&record.source_id);
        for (_, old) in kept
            .iter()
            .take(kept.len().saturating_sub(SNAPSHOTS_PER_SOURCE_MAX))
        {
            std::fs::remove_dir_all(old)?;
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
    fn the_nearest_earlier_snapshot_is_found_and_the_oldest_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let snaps = Snapshots {
            dir: dir.path().join("snaps"),
        };
        for seq in [10, 30, 20, 40, 50] {
            let store = dir.path().join(format!("store-{seq}"));
            std::fs::create_dir_all(store.join("blobs")).unwrap();
            std::fs::write(store.join("blobs/db"), seq.to_string()).unwrap();
            snaps.keep(&store, &record(seq)).unwrap();
        }
        assert!(
            snaps.nearest("hr", 15).is_none(),
            "10 was the oldest: dropped"
        );
        assert_eq!(snaps.nearest("hr", 29).unwrap().0.seq, 20);
        assert_eq!(snaps.nearest("hr", 1_000).unwrap().0.seq, 50);
        assert!(snaps.nearest("other", 1_000).is_none());
        let (_, at) = snaps.nearest("hr", 45).unwrap();
        let out = dir.path().join("copy");
        snaps.copy_out(&at, &out).unwrap();
        assert_eq!(std::fs::read_to_string(out.join("blobs/db")).unwrap(), "40");
        snaps.discard(&at);
        assert_eq!(snaps.nearest("hr", 45).unwrap().0.seq, 30);
    }
}
