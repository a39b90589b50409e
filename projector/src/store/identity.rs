//! Which stream this projection folded: its name and creation time, kept
//! beside the format version (outside the projection records, so outside the
//! state digest). A projection is a fold of one stream; a stream that was
//! deleted and created again, or holds fewer messages than were applied, is
//! another stream, and folding it on top of the old projection would mix two
//! histories silently. [`check`] is pure; the store methods read and write.

use super::{Result, Store};

const STREAM_KEY: &[u8] = b"govledger.stream";

/// A stream as the projection knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamIdentity {
    pub name: String,
    /// When the stream was created (JetStream's `created`), Unix microseconds.
    pub created_us: i64,
}

/// Why the stream found is not the one folded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StreamMismatch {
    #[error(
        "stream {name} was created at {found_us} µs, but this projection folded the stream of that name created at \
         {recorded_us} µs: it was deleted and created again (or replaced). Folding it would mix two histories. \
         Restore the original stream from a backup, or rebuild the projection from this stream: stop govledger, \
         delete the sled folder of the data folder and start again"
    )]
    Replaced {
        name: String,
        recorded_us: i64,
        found_us: i64,
    },
    #[error(
        "stream {name} ends at sequence {last}, but this projection applied up to {applied}: the stream was \
         truncated or replaced. Restore it from a backup, or rebuild the projection (delete the sled folder and start again)"
    )]
    Truncated {
        name: String,
        applied: u64,
        last: u64,
    },
}

/// Whether `found` (ending at `last_seq`) is the stream a projection that
/// applied up to `applied` and recorded `recorded` folded.
pub fn check(
    recorded: Option<&StreamIdentity>,
    applied: u64,
    found: &StreamIdentity,
    last_seq: u64,
) -> std::result::Result<(), StreamMismatch> {
    if let Some(r) = recorded
        && r.name == found.name
        && r.created_us != found.created_us
    {
        return Err(StreamMismatch::Replaced {
            name: found.name.clone(),
            recorded_us: r.created_us,
            found_us: found.created_us,
        });
    }
    if last_seq < applied {
        return Err(StreamMismatch::Truncated {
            name: found.name.clone(),
            applied,
            last: last_seq,
        });
    }
    Ok(())
}

impl Store {
    /// The stream this projection recorded, if any.
    pub fn stream_identity(&self) -> Result<Option<StreamIdentity>> {
        let Some(v) = self.db.get(STREAM_KEY)? else {
            return Ok(None);
        };
        let text = String::from_utf8_lossy(&v);
        let mut parts = text.splitn(2, '\n');
        let name = parts.next().unwrap_or_default().to_owned();
        let created_us = parts
            .next()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or_default();
        Ok(Some(StreamIdentity { name, created_us }))
    }

    /// Records the stream this projection folds (and flushes it).
    pub fn set_stream_identity(&self, id: &StreamIdentity) -> Result<()> {
        self.db.insert(
            STREAM_KEY,
            format!("{}\n{}", id.name, id.created_us).as_bytes(),
        )?;
        self.db.flush()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(us: i64) -> StreamIdentity {
        StreamIdentity {
            name: "GOVLEDGER".into(),
            created_us: us,
        }
    }

    #[test]
    fn the_stream_folded_passes_another_is_named() {
        assert_eq!(check(None, 0, &id(5), 0), Ok(()));
        assert_eq!(check(Some(&id(5)), 53, &id(5), 60), Ok(()));
        assert!(matches!(
            check(Some(&id(5)), 53, &id(9), 23),
            Err(StreamMismatch::Replaced {
                recorded_us: 5,
                found_us: 9,
                ..
            })
        ));
        // A projection from before identities were recorded: the sequence still tells.
        assert!(matches!(
            check(None, 53, &id(9), 23),
            Err(StreamMismatch::Truncated {
                applied: 53,
                last: 23,
                ..
            })
        ));
        let e = check(Some(&id(5)), 1, &id(9), 1).unwrap_err().to_string();
        assert!(e.contains("delete the sled folder"), "{e}");
    }

    #[test]
    fn the_identity_survives_a_reopen_and_is_not_in_the_digest() {
        let d = tempfile::tempdir().unwrap();
        let s = Store::open(d.path(), 1 << 20).unwrap();
        let before = s.digest().unwrap();
        assert_eq!(s.stream_identity().unwrap(), None);
        s.set_stream_identity(&id(42)).unwrap();
        assert_eq!(s.digest().unwrap(), before);
        drop(s);
        let s = Store::open(d.path(), 1 << 20).unwrap();
        assert_eq!(s.stream_identity().unwrap(), Some(id(42)));
    }
}
