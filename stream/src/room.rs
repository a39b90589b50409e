//! Free space on a store's disk: the one check that the health watch and the
//! projector make before writing, so a full disk is met with a pause and a
//! report instead of a write error (sled keeps a write error for the life of
//! the process; nats-server keeps a store's until it restarts).

use std::path::PathBuf;

/// Below this much free space on a store's disk, the store counts as full:
/// well before the last byte goes, so a batch in flight still fits.
pub const MIN_FREE_BYTES: u64 = 16 << 20;

/// The first of `paths` whose disk has less than [`MIN_FREE_BYTES`] free,
/// as a sentence naming it; `None` when all have room (a path that cannot be
/// looked at counts as having room: the store's own errors speak then).
pub fn full_disk(paths: &[PathBuf]) -> Option<String> {
    paths.iter().find_map(|p| {
        let s = nix::sys::statvfs::statvfs(p).ok()?;
        let free = s.blocks_available().saturating_mul(s.fragment_size());
        (free < MIN_FREE_BYTES).then(|| {
            format!(
                "storage full: {} has {} KiB free (govledger needs {} MiB)",
                p.display(),
                free >> 10,
                MIN_FREE_BYTES >> 20
            )
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_disk_with_room_is_not_full_and_a_missing_path_is_not_judged() {
        let dir = tempfile::tempdir().unwrap();
        // The test machine's temp disk has more than 16 MiB free.
        assert_eq!(full_disk(&[dir.path().to_path_buf()]), None);
        assert_eq!(full_disk(&[dir.path().join("no-such-folder")]), None);
    }
}
