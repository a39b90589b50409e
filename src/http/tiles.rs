//! The log as a tlog-tiles read API (c2sp.org/tlog-tiles), so a standard
//! tlog client fetches and verifies the tree itself:
//! - `/checkpoint`: the newest signed checkpoint note of this ledger;
//! - `/tile/<L>/<N>[.p/<W>]`: the hashes of tile N of level L (height 8),
//!   full, or its first W (1..=255) — read from the projector's tiles.
//!
//! Entry bundles (`/tile/entries/…`) are not served: an entry is a stream
//! message, read with `Replay`. Both paths take the `auditor` role, like the
//! proofs RPCs. Path parsing is pure ([`parse`]); the tile a request names
//! must lie inside the tree the projector has applied.

/// Hashes per full tile (height 8, as the projector keeps them).
pub const WIDTH: u64 = 256;
/// Levels a tree of at most 2^63 leaves has tiles at (0..=7).
pub const LEVEL_MAX: u8 = 7;

/// A tile request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TileReq {
    pub level: u8,
    pub n: u64,
    /// Hashes asked: 256 for a full tile, 1..=255 for a partial one.
    pub width: u64,
}

impl TileReq {
    /// Leaves the tree must hold for this tile (of this width) to exist.
    pub fn leaves_needed(&self) -> u128 {
        let per_entry = u128::from(WIDTH).pow(u32::from(self.level));
        (u128::from(self.n) * u128::from(WIDTH) + u128::from(self.width)) * per_entry
    }

    /// Whether the tile is full (its hashes never change).
    pub fn is_full(&self) -> bool {
        self.width == WIDTH
    }
}

/// Parses what follows `/tile/` (see the module doc); the error says why.
pub fn parse(rest: &str) -> Result<TileReq, String> {
    if rest.len() > 64 {
        return Err("the tile path is too long".into());
    }
    let mut parts: Vec<&str> = rest.split('/').collect();
    if parts.first() == Some(&"entries") {
        return Err(
            "entry bundles are not served: an entry is a stream message (read it with Replay)"
                .into(),
        );
    }
    let level = parts
        .first()
        .and_then(|l| canonical_number(l))
        .filter(|l| *l <= u64::from(LEVEL_MAX))
        .ok_or_else(|| format!("the level must be 0 to {LEVEL_MAX}"))? as u8;
    let mut width = WIDTH;
    if parts.len() >= 3 && parts[parts.len() - 2].ends_with(".p") {
        width = parts
            .pop()
            .and_then(canonical_number)
            .filter(|w| (1..WIDTH).contains(w))
            .ok_or("a partial tile's width must be 1 to 255")?;
        let last = parts.len() - 1;
        parts[last] = parts[last].trim_end_matches(".p");
    }
    let groups = &parts[1..];
    if groups.is_empty() {
        return Err("no tile index".into());
    }
    let mut n: u64 = 0;
    for (i, g) in groups.iter().enumerate() {
        let digits = if i + 1 == groups.len() {
            Some(*g)
        } else {
            g.strip_prefix('x')
        };
        let d = digits
            .filter(|d| d.len() == 3 && d.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|d| d.parse::<u64>().ok())
            .ok_or_else(|| format!("{g:?} is not a 3-digit group of the tile index"))?;
        n = n
            .checked_mul(1000)
            .and_then(|n| n.checked_add(d))
            .ok_or("the tile index is too large")?;
    }
    if encode_index(n) != groups.join("/") {
        return Err("the tile index is not in its one encoding (x-prefixed groups of 3 digits, no leading zero group)".into());
    }
    Ok(TileReq { level, n, width })
}

/// A decimal without sign or leading zero.
fn canonical_number(s: &str) -> Option<u64> {
    (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) && (s == "0" || !s.starts_with('0')))
        .then(|| s.parse().ok())
        .flatten()
}

/// `n` as tlog-tiles encodes it: groups of 3 digits, all but the last `x`-prefixed.
pub fn encode_index(n: u64) -> String {
    let mut groups = vec![format!("{:03}", n % 1000)];
    let mut rest = n / 1000;
    while rest > 0 {
        groups.push(format!("x{:03}", rest % 1000));
        rest /= 1000;
    }
    groups.reverse();
    groups.join("/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tile_paths_parse_as_the_spec_writes_them() {
        let t = |level, n, width| TileReq { level, n, width };
        assert_eq!(parse("0/000"), Ok(t(0, 0, 256)));
        assert_eq!(parse("1/x001/x234/067"), Ok(t(1, 1_234_067, 256)));
        assert_eq!(parse("0/005.p/17"), Ok(t(0, 5, 17)));
        assert_eq!(parse("2/x001/000.p/255"), Ok(t(2, 1000, 255)));
        assert_eq!(encode_index(1_234_067), "x001/x234/067");
        assert_eq!(encode_index(7), "007");
        for bad in [
            "",
            "8/000",
            "01/000",
            "0",
            "0/",
            "0/00",
            "0/0000",
            "0/x000/001",
            "0/001/002",
            "0/x01/000",
            "0/000.p/0",
            "0/000.p/256",
            "0/000.p/017",
            "0/abc",
            "entries/000",
            "0/x999/x999/x999/x999/x999/x999/x999/999",
        ] {
            assert!(parse(bad).is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn a_tile_needs_the_leaves_under_its_hashes() {
        let full = TileReq {
            level: 0,
            n: 1,
            width: 256,
        };
        assert_eq!(full.leaves_needed(), 512);
        let partial = TileReq {
            level: 1,
            n: 0,
            width: 3,
        };
        assert_eq!(partial.leaves_needed(), 3 * 256);
        assert!(full.is_full() && !partial.is_full());
    }
}
