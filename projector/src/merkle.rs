//! RFC 6962 Merkle trees over the stream, in order: tree hashes, inclusion proofs
//! and consistency proofs, and their verification. Pure functions, no I/O.
//!
//! Leaves are domain-separated from nodes (`0x00` / `0x01` prefixes, RFC 6962 §2.1)
//! and a leaf commits to both the stored event bytes and its stream sequence, so
//! an event moved to another position changes the tree.

use sha2::{Digest as _, Sha256};

pub type Hash = [u8; 32];

/// Leaf hash of the event stored at `seq` with these exact bytes.
pub fn leaf_hash(seq: u64, stored_bytes: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0x00]);
    h.update(seq.to_be_bytes());
    h.update(stored_bytes);
    h.finalize().into()
}

pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([0x01]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// The hash of an empty tree: SHA-256 of nothing.
pub fn empty_root() -> Hash {
    Sha256::digest([]).into()
}

/// Largest power of two strictly smaller than `n` (n ≥ 2).
fn split(n: usize) -> usize {
    debug_assert!(n >= 2);
    let mut k = 1;
    while k << 1 < n {
        k <<= 1;
    }
    k
}

/// `MTH(D[n])` over leaf hashes (RFC 6962 §2.1).
pub fn root(leaves: &[Hash]) -> Hash {
    match leaves.len() {
        0 => empty_root(),
        1 => leaves[0],
        n => {
            let k = split(n);
            node_hash(&root(&leaves[..k]), &root(&leaves[k..]))
        }
    }
}

/// Audit path for leaf `m` (0-based) in the tree of `leaves` (RFC 6962 §2.1.1).
pub fn inclusion_proof(m: usize, leaves: &[Hash]) -> Vec<Hash> {
    let n = leaves.len();
    if n <= 1 || m >= n {
        return Vec::new();
    }
    let k = split(n);
    if m < k {
        let mut p = inclusion_proof(m, &leaves[..k]);
        p.push(root(&leaves[k..]));
        p
    } else {
        let mut p = inclusion_proof(m - k, &leaves[k..]);
        p.push(root(&leaves[..k]));
        p
    }
}

/// Audit paths for many leaves at once: `targets` are 0-based leaf indexes in
/// ascending order; the answer holds one path per target, equal to
/// [`inclusion_proof`]'s. Every node of the tree is hashed at most once, so the
/// cost is O(n) for all targets together instead of O(n) per target.
pub fn inclusion_proofs(targets: &[usize], leaves: &[Hash]) -> Vec<Vec<Hash>> {
    debug_assert!(targets.windows(2).all(|w| w[0] < w[1]));
    let mut out = vec![Vec::new(); targets.len()];
    if !leaves.is_empty() {
        paths(leaves, 0, targets, &mut out);
    }
    out
}

/// The root of `leaves` (which start at leaf `offset`); pushes the sibling of
/// each level onto the paths of the targets inside, bottom up.
fn paths(leaves: &[Hash], offset: usize, targets: &[usize], out: &mut [Vec<Hash>]) -> Hash {
    let n = leaves.len();
    if n == 1 {
        return leaves[0];
    }
    if targets.is_empty() {
        return root(leaves);
    }
    let k = split(n);
    let cut = targets.partition_point(|t| *t < offset + k);
    let (lt, rt) = targets.split_at(cut);
    let (lo, ro) = out.split_at_mut(cut);
    let left = paths(&leaves[..k], offset, lt, lo);
    let right = paths(&leaves[k..], offset + k, rt, ro);
    for p in lo.iter_mut() {
        p.push(right);
    }
    for p in ro.iter_mut() {
        p.push(left);
    }
    node_hash(&left, &right)
}

/// Consistency proof between the first `m` leaves and all of `leaves` (RFC 6962 §2.1.2).
pub fn consistency_proof(m: usize, leaves: &[Hash]) -> Vec<Hash> {
    if m == 0 || m >= leaves.len() {
        return Vec::new();
    }
    subproof(m, leaves, true)
}

fn subproof(m: usize, leaves: &[Hash], complete: bool) -> Vec<Hash> {
    let n = leaves.len();
    if m == n {
        return if complete {
            Vec::new()
        } else {
            vec![root(leaves)]
        };
    }
    let k = split(n);
    if m <= k {
        let mut p = subproof(m, &leaves[..k], complete);
        p.push(root(&leaves[k..]));
        p
    } else {
        let mut p = subproof(m - k, &leaves[k..], false);
        p.push(root(&leaves[..k]));
        p
    }
}

/// Verifies an inclusion proof (RFC 9162 §2.1.3.2): leaf `index` of a tree of
/// `size` leaves with root `root`.
pub fn verify_inclusion(index: u64, size: u64, leaf: &Hash, proof: &[Hash], root: &Hash) -> bool {
    root_from_inclusion(index, size, leaf, proof).is_some_and(|r| r == *root)
}

/// The root an inclusion proof of leaf `index` of a tree of `size` leaves
/// leads to (RFC 9162 §2.1.3.2), or `None` when the proof has the wrong shape.
pub fn root_from_inclusion(index: u64, size: u64, leaf: &Hash, proof: &[Hash]) -> Option<Hash> {
    if index >= size {
        return None;
    }
    let (mut f_n, mut s_n) = (index, size - 1);
    let mut r = *leaf;
    for p in proof {
        if s_n == 0 {
            return None;
        }
        if f_n & 1 == 1 || f_n == s_n {
            r = node_hash(p, &r);
            if f_n & 1 == 0 {
                while f_n & 1 == 0 && f_n != 0 {
                    f_n >>= 1;
                    s_n >>= 1;
                }
            }
        } else {
            r = node_hash(&r, p);
        }
        f_n >>= 1;
        s_n >>= 1;
    }
    (s_n == 0).then_some(r)
}

/// Verifies a consistency proof (RFC 9162 §2.1.4.2) between a tree of `size1`
/// leaves with `root1` and one of `size2` leaves with `root2`.
pub fn verify_consistency(
    size1: u64,
    size2: u64,
    root1: &Hash,
    root2: &Hash,
    proof: &[Hash],
) -> bool {
    if size1 > size2 {
        return false;
    }
    if size1 == size2 {
        return proof.is_empty() && root1 == root2;
    }
    if size1 == 0 {
        return proof.is_empty();
    }
    let mut path: Vec<Hash> = proof.to_vec();
    if size1.is_power_of_two() {
        path.insert(0, *root1);
    }
    let Some((first, rest)) = path.split_first() else {
        return false;
    };
    let (mut f_n, mut s_n) = (size1 - 1, size2 - 1);
    while f_n & 1 == 1 {
        f_n >>= 1;
        s_n >>= 1;
    }
    let (mut fr, mut sr) = (*first, *first);
    for c in rest {
        if s_n == 0 {
            return false;
        }
        if f_n & 1 == 1 || f_n == s_n {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            if f_n & 1 == 0 {
                while f_n & 1 == 0 && f_n != 0 {
                    f_n >>= 1;
                    s_n >>= 1;
                }
            }
        } else {
            sr = node_hash(&sr, c);
        }
        f_n >>= 1;
        s_n >>= 1;
    }
    fr == *root1 && sr == *root2 && s_n == 0
}

/// A Merkle tree kept incrementally as its frontier (at most log2(n) + 1 hashes):
/// append leaves in stream order, read the root at any time.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Frontier {
    size: u64,
    /// Roots of the perfect subtrees of the current tree, largest first.
    peaks: Vec<Hash>,
}

impl Frontier {
    /// Rebuilds a frontier from its stored parts (`None` when they are inconsistent).
    pub fn from_parts(size: u64, peaks: &[Vec<u8>]) -> Option<Self> {
        if peaks.len() != size.count_ones() as usize {
            return None;
        }
        let peaks = peaks
            .iter()
            .map(|p| <Hash>::try_from(p.as_slice()).ok())
            .collect::<Option<Vec<_>>>()?;
        Some(Self { size, peaks })
    }

    pub fn peaks(&self) -> &[Hash] {
        &self.peaks
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    pub fn push(&mut self, leaf: Hash) {
        let mut h = leaf;
        let mut s = self.size;
        // Merge equal-size subtrees: one per trailing 1 bit of the old size.
        while s & 1 == 1 {
            let Some(left) = self.peaks.pop() else { break };
            h = node_hash(&left, &h);
            s >>= 1;
        }
        self.peaks.push(h);
        self.size += 1;
    }

    /// MTH of everything pushed so far.
    pub fn root(&self) -> Hash {
        let mut it = self.peaks.iter().rev();
        let Some(last) = it.next() else {
            return empty_root();
        };
        it.fold(*last, |acc, left| node_hash(left, &acc))
    }
}

pub fn hex(h: &Hash) -> String {
    h.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng as _, SeedableRng as _, rngs::StdRng};

    fn leaves(n: usize) -> Vec<Hash> {
        (0..n)
            .map(|i| leaf_hash(i as u64 + 1, format!("event {i}").as_bytes()))
            .collect()
    }

    #[test]
    fn rfc6962_shapes() {
        let l = leaves(3);
        assert_eq!(root(&l), node_hash(&node_hash(&l[0], &l[1]), &l[2]));
        assert_eq!(root(&[]), empty_root());
        assert_eq!(root(&l[..1]), l[0]);
        // Leaves and nodes are domain-separated.
        assert_ne!(leaf_hash(1, b"x"), leaf_hash(2, b"x"));
    }

    #[test]
    fn frontier_matches_the_recursive_root() {
        let l = leaves(300);
        let mut f = Frontier::default();
        for (i, h) in l.iter().enumerate() {
            f.push(*h);
            assert_eq!(f.root(), root(&l[..=i]), "size {}", i + 1);
        }
        assert!(f.peaks.len() <= 9);
    }

    /// Property: for many random sizes every inclusion proof verifies, and a
    /// wrong leaf, index, size or root never does.
    #[test]
    fn inclusion_proofs_verify_and_reject_tampering() {
        let mut rng = StdRng::seed_from_u64(6962);
        for _ in 0..300 {
            let n = rng.random_range(1..200);
            let l = leaves(n);
            let r = root(&l);
            let m = rng.random_range(0..n);
            let p = inclusion_proof(m, &l);
            assert!(
                verify_inclusion(m as u64, n as u64, &l[m], &p, &r),
                "n={n} m={m}"
            );
            let wrong_leaf = leaf_hash(9_999, b"forged");
            assert!(!verify_inclusion(m as u64, n as u64, &wrong_leaf, &p, &r));
            if n > 1 {
                let other = (m + 1) % n;
                assert!(
                    !verify_inclusion(other as u64, n as u64, &l[m], &p, &r),
                    "n={n} m={m}"
                );
            }
            // A size whose tree is deeper needs a longer path.
            assert!(!verify_inclusion(m as u64, 2 * n as u64 + 1, &l[m], &p, &r));
            assert!(!verify_inclusion(
                m as u64,
                n as u64,
                &l[m],
                &p,
                &empty_root()
            ));
        }
    }

    /// Property: consistency proofs verify between random prefix sizes, and fail
    /// for a wrong size or a wrong root (e.g. an altered earlier leaf).
    #[test]
    fn many_paths_at_once_equal_one_path_at_a_time() {
        let mut rng = StdRng::seed_from_u64(2718);
        for _ in 0..300 {
            let n = rng.random_range(1..300);
            let l = leaves(n);
            let mut targets: Vec<usize> = (0..rng.random_range(0..=n.min(20)))
                .map(|_| rng.random_range(0..n))
                .collect();
            targets.sort_unstable();
            targets.dedup();
            let many = inclusion_proofs(&targets, &l);
            assert_eq!(many.len(), targets.len());
            for (t, p) in targets.iter().zip(&many) {
                assert_eq!(p, &inclusion_proof(*t, &l), "n {n} target {t}");
            }
        }
    }

    #[test]
    fn consistency_proofs_verify_and_reject_tampering() {
        let mut rng = StdRng::seed_from_u64(9162);
        for _ in 0..300 {
            let n = rng.random_range(2..200);
            let m = rng.random_range(1..n);
            let l = leaves(n);
            let (r1, r2) = (root(&l[..m]), root(&l));
            let p = consistency_proof(m, &l);
            assert!(
                verify_consistency(m as u64, n as u64, &r1, &r2, &p),
                "m={m} n={n}"
            );
            assert!(!verify_consistency(m as u64 + 1, n as u64, &r1, &r2, &p) || m + 1 == n);
            let mut altered = l.clone();
            altered[rng.random_range(0..m)] = leaf_hash(0, b"altered");
            assert!(!verify_consistency(
                m as u64,
                n as u64,
                &root(&altered[..m]),
                &r2,
                &p
            ));
            assert!(!verify_consistency(
                m as u64,
                n as u64,
                &r1,
                &empty_root(),
                &p
            ));
        }
        assert!(verify_consistency(
            5,
            5,
            &root(&leaves(5)),
            &root(&leaves(5)),
            &[]
        ));
    }
}
