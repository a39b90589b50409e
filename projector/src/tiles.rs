//! The Merkle tree as tlog tiles (c2sp.org/tlog-tiles, height 8), so an
//! inclusion or consistency proof reads O(log n) tiles instead of every leaf.
//!
//! Level 0 is the leaf blocks the fold already keeps (256 leaf hashes each).
//! A tile of level L ≥ 1 holds the roots of 256 full tiles of level L − 1;
//! its entries are derived in each commit, in the same atomic write as the
//! leaves ([`Tiles::extend`] over the commit's blocks: one hash of 256 leaves
//! per 256 events) and kept (`TAG_TILE`, outside the state digest: derived
//! from the leaves, recomputable). An entry missing (a ledger projected
//! before tiles) is computed the first time a proof needs it. Every entry is the root of a
//! *full* lower tile, so a stored prefix never changes; a partial tile grows
//! as the tree does.
//!
//! The proofs themselves are `tlog_tiles`' (a port of Go's sumdb/tlog) over a
//! [`HashReader`] that reads these tiles; [`TileSource`] is the storage they
//! come from, so the logic is tested over a map.

use tlog_tiles::{
    tile::Tile,
    tlog::{Error as TlogError, Hash, HashReader},
};

/// Tile height: 2^8 = 256 hashes per tile.
pub const TILE_HEIGHT: u8 = 8;
const WIDTH: u64 = 1 << TILE_HEIGHT;
const HASH: usize = 32;

/// Where the tiles are kept.
pub trait TileSource {
    /// Level-0 tile `n`: the leaf block (up to 256 leaf hashes; zeros = not held).
    fn leaf_block(&self, n: u64) -> Result<Option<Vec<u8>>, String>;
    /// The entries of tile (`level` ≥ 1, `n`) kept so far.
    fn upper_tile(&self, level: u8, n: u64) -> Result<Option<Vec<u8>>, String>;
    /// Keeps the entries of tile (`level`, `n`) computed so far.
    fn put_upper_tile(&self, level: u8, n: u64, entries: Vec<u8>) -> Result<(), String>;
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TileError {
    #[error("tile storage: {0}")]
    Store(String),
    #[error("leaf {0} is not held (the projection has not applied it)")]
    Missing(u64),
    #[error("proof: {0}")]
    Proof(String),
}

/// The tiles of one store.
pub struct Tiles<'a, S: TileSource> {
    src: &'a S,
}

impl<'a, S: TileSource> Tiles<'a, S> {
    pub fn new(src: &'a S) -> Self {
        Self { src }
    }

    /// The first `w` entries (32 bytes each) of tile (`level`, `n`).
    pub fn read(&self, level: u8, n: u64, w: u64) -> Result<Vec<u8>, TileError> {
        let want = w as usize * HASH;
        if level == 0 {
            let block = self
                .src
                .leaf_block(n)
                .map_err(TileError::Store)?
                .unwrap_or_default();
            if block.len() < want {
                return Err(TileError::Missing(
                    n * WIDTH + (block.len() / HASH) as u64 + 1,
                ));
            }
            let mut data = block;
            data.truncate(want);
            if let Some(i) = data.chunks_exact(HASH).position(|h| h == [0u8; HASH]) {
                return Err(TileError::Missing(n * WIDTH + i as u64 + 1));
            }
            return Ok(data);
        }
        let mut data = self
            .src
            .upper_tile(level, n)
            .map_err(TileError::Store)?
            .unwrap_or_default();
        if data.len() < want {
            for i in (data.len() / HASH) as u64..w {
                let child = self.read(level - 1, n * WIDTH + i, WIDTH)?;
                data.extend_from_slice(&Tile::subtree_hash(&child).0);
            }
            self.src
                .put_upper_tile(level, n, data.clone())
                .map_err(TileError::Store)?;
        }
        data.truncate(want);
        Ok(data)
    }

    /// Derives and keeps every upper-tile entry the tree of `size` leaves
    /// has (the roots of its full tiles, at every level): after a commit,
    /// only the entries of the tiles that filled since cost a hash; the rest
    /// is one read per level.
    pub fn extend(&self, size: u64) -> Result<(), TileError> {
        let mut level: u8 = 1;
        loop {
            // Full tiles of level − 1 = entries level `level` holds.
            let entries = size.checked_shr(u32::from(TILE_HEIGHT) * u32::from(level));
            let Some(entries) = entries.filter(|&e| e > 0) else {
                return Ok(());
            };
            self.read(level, (entries - 1) / WIDTH, (entries - 1) % WIDTH + 1)?;
            level += 1;
        }
    }

    /// Recomputes every kept upper-tile entry of the tree of `size` leaves
    /// from the leaf blocks, level by level, and names the first one that
    /// differs: `(level, tile index, entry index)`. Reads every leaf block
    /// once; holds one hash per 256 leaves.
    pub fn check(&self, size: u64) -> Result<Option<(u8, u64, u64)>, TileError> {
        // The roots of the full tiles of the level below, in order.
        let mut below: Vec<[u8; 32]> = (0..size / WIDTH)
            .map(|n| self.read(0, n, WIDTH).map(|b| Tile::subtree_hash(&b).0))
            .collect::<Result<_, _>>()?;
        let mut level: u8 = 1;
        while !below.is_empty() {
            for (n, computed) in below.chunks(WIDTH as usize).enumerate() {
                let n = n as u64;
                let kept = self
                    .src
                    .upper_tile(level, n)
                    .map_err(TileError::Store)?
                    .unwrap_or_default();
                let bad = kept
                    .chunks(HASH)
                    .zip(computed)
                    .position(|(k, c)| k != c.as_slice());
                if let Some(i) = bad {
                    return Ok(Some((level, n, i as u64)));
                }
            }
            below = below
                .chunks_exact(WIDTH as usize)
                .map(|c| Tile::subtree_hash(&c.concat()).0)
                .collect();
            level += 1;
        }
        Ok(None)
    }

    /// The root of the tree of the first `size` leaves.
    pub fn root(&self, size: u64) -> Result<[u8; 32], TileError> {
        tlog_tiles::tlog::tree_hash(size, &Reader(self))
            .map(|h| h.0)
            .map_err(proof_err)
    }

    /// The audit path (leaf to root) of leaf `index` (0-based) in the tree of `size`.
    pub fn inclusion_proof(&self, index: u64, size: u64) -> Result<Vec<[u8; 32]>, TileError> {
        tlog_tiles::tlog::prove_record(size, index, &Reader(self))
            .map(|p| p.into_iter().map(|h| h.0).collect())
            .map_err(proof_err)
    }

    /// The proof that the tree of `size2` extends the tree of `size1`.
    pub fn consistency_proof(&self, size1: u64, size2: u64) -> Result<Vec<[u8; 32]>, TileError> {
        tlog_tiles::tlog::prove_tree(size2, size1, &Reader(self))
            .map(|p| p.into_iter().map(|h| h.0).collect())
            .map_err(proof_err)
    }
}

fn proof_err(e: TlogError) -> TileError {
    TileError::Proof(e.to_string())
}

/// `tlog_tiles`' view of the tiles: the stored hashes by index.
struct Reader<'r, 'a, S: TileSource>(&'r Tiles<'a, S>);

impl<S: TileSource> HashReader for Reader<'_, '_, S> {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, TlogError> {
        indexes
            .iter()
            .map(|&i| {
                let t = Tile::from_index(TILE_HEIGHT, i);
                let data = self
                    .0
                    .read(t.level(), t.level_index(), u64::from(t.width()))
                    .map_err(|e| TlogError::InvalidInput(e.to_string()))?;
                t.hash_at_index(&data, i)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use std::{cell::RefCell, collections::HashMap};

    use super::*;
    use crate::merkle;

    /// Leaves in blocks of 256, upper tiles in a map.
    #[derive(Default)]
    struct Mem {
        leaves: Vec<merkle::Hash>,
        upper: RefCell<HashMap<(u8, u64), Vec<u8>>>,
    }

    impl TileSource for Mem {
        fn leaf_block(&self, n: u64) -> Result<Option<Vec<u8>>, String> {
            let from = (n * WIDTH) as usize;
            if from >= self.leaves.len() {
                return Ok(None);
            }
            let to = (from + WIDTH as usize).min(self.leaves.len());
            Ok(Some(self.leaves[from..to].concat()))
        }
        fn upper_tile(&self, level: u8, n: u64) -> Result<Option<Vec<u8>>, String> {
            Ok(self.upper.borrow().get(&(level, n)).cloned())
        }
        fn put_upper_tile(&self, level: u8, n: u64, entries: Vec<u8>) -> Result<(), String> {
            self.upper.borrow_mut().insert((level, n), entries);
            Ok(())
        }
    }

    fn mem(n: u64) -> Mem {
        Mem {
            leaves: (1..=n)
                .map(|s| merkle::leaf_hash(s, &s.to_le_bytes()))
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn tile_proofs_equal_the_proofs_from_every_leaf() {
        // Sizes around tile edges, and past one level-1 tile (256 × 256 leaves).
        let m = mem(66_000);
        let t = Tiles::new(&m);
        for size in [1u64, 2, 3, 255, 256, 257, 511, 512, 65_537] {
            let leaves = &m.leaves[..size as usize];
            assert_eq!(t.root(size).unwrap(), merkle::root(leaves), "root {size}");
            for index in [0, size / 2, size - 1] {
                assert_eq!(
                    t.inclusion_proof(index, size).unwrap(),
                    merkle::inclusion_proof(index as usize, leaves),
                    "inclusion of {index} in {size}"
                );
            }
            for old in [1, size / 3 + 1, size] {
                if old > size {
                    continue;
                }
                assert_eq!(
                    t.consistency_proof(old, size).unwrap(),
                    merkle::consistency_proof(old as usize, leaves),
                    "consistency {old} → {size}"
                );
            }
        }
        // The upper tiles were kept, and a second proof reuses them.
        assert!(m.upper.borrow().contains_key(&(1, 0)));
        assert!(m.upper.borrow().contains_key(&(2, 0)));
    }

    #[test]
    fn extend_keeps_every_full_tiles_root_and_proofs_need_no_more() {
        let m = mem(66_000);
        let t = Tiles::new(&m);
        // Grown in uneven steps, as commits do.
        for size in [0u64, 1, 255, 256, 300, 65_535, 65_536, 66_000] {
            t.extend(size).unwrap();
            let level1 = m.upper.borrow().get(&(1, 0)).map_or(0, Vec::len) / HASH;
            assert_eq!(level1 as u64, (size / 256).min(256), "level 1 at {size}");
        }
        assert_eq!(m.upper.borrow()[&(1, 1)].len(), HASH); // 66,000 leaves = 257 full blocks
        assert_eq!(m.upper.borrow()[&(2, 0)].len(), HASH);
        // Nothing is left to compute: a proof over the whole tree reads
        // the kept tiles and writes none.
        let kept = m.upper.borrow().clone();
        assert_eq!(
            t.inclusion_proof(0, 66_000).unwrap(),
            merkle::inclusion_proof(0, &m.leaves)
        );
        assert_eq!(*m.upper.borrow(), kept);
    }

    #[test]
    fn check_finds_a_tampered_upper_tile_and_passes_kept_ones() {
        let m = mem(66_000);
        let t = Tiles::new(&m);
        t.extend(66_000).unwrap();
        assert_eq!(t.check(66_000), Ok(None));
        // An entry of a level-1 tile altered: named, and proofs through it
        // no longer give the tree's root.
        let root = merkle::root(&m.leaves[..600]);
        m.upper.borrow_mut().get_mut(&(1, 0)).unwrap()[32] ^= 1;
        assert_eq!(t.check(66_000), Ok(Some((1, 0, 1))));
        assert_ne!(t.root(600).unwrap(), root);
        m.upper.borrow_mut().get_mut(&(1, 0)).unwrap()[32] ^= 1;
        // A level-2 entry altered.
        m.upper.borrow_mut().get_mut(&(2, 0)).unwrap()[0] ^= 1;
        assert_eq!(t.check(66_000), Ok(Some((2, 0, 0))));
    }

    #[test]
    fn a_leaf_not_held_is_named() {
        let mut m = mem(300);
        m.leaves[10] = [0; 32];
        let t = Tiles::new(&m);
        assert!(t.inclusion_proof(5, 300).is_err());
        assert_eq!(t.read(0, 0, 256), Err(TileError::Missing(11)));
        assert_eq!(t.read(0, 2, 1), Err(TileError::Missing(513)));
    }
}
