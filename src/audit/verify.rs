//! Verify a range: read the stream again (the ledger's own, or a copy of it),
//! recompute every leaf, and compare it with two independent witnesses:
//! - the leaf the projector recorded when it folded that sequence (names the
//!   exact first bad sequence: altered, missing or moved);
//! - the roots of the signed checkpoints (the tree over sequences 1..=size must
//!   give the signed root; this also catches a ledger whose own records were
//!   altered along with the stream).
//!
//! Once the leaves hold, the kept upper tiles (what proofs are read from) are
//! recomputed from the recorded leaves and compared: a tampered tile is named.
//!
//! The comparison ([`RangeCheck`]) is pure; [`verify_range`] feeds it from
//! JetStream and sled.

use std::{collections::VecDeque, time::Duration};

use async_nats::jetstream::{self, consumer::DeliverPolicy};
use futures::StreamExt as _;
use govledger_projector::{Store, merkle, tiles::Tiles};
use govledger_proto::v1::{Checkpoint, VerifyRangeResponse};

/// Messages one verification reads at most.
pub const VERIFY_MESSAGES_MAX: u64 = 50_000_000;
/// Checkpoints one verification reads at most.
pub const VERIFY_CHECKPOINTS_MAX: usize = 1_000_000;
const READ_IDLE_MS: u64 = 5_000;

/// Why a verification stopped: a finding, or the stream could not be read
/// (NATS unreachable or silent) — which proves nothing either way and is never
/// reported as tampering.
enum Stop {
    Found(Finding),
    Unreadable(String),
}

impl From<Finding> for Stop {
    fn from(f: Finding) -> Self {
        Stop::Found(f)
    }
}

/// The first problem found, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// 0 when the problem is not tied to one sequence.
    pub seq: u64,
    pub problem: String,
}

/// Leaves fed in sequence order, checked against the recorded leaves and the
/// signed checkpoint roots.
pub struct RangeCheck {
    tree: merkle::Frontier,
    /// Checkpoints not reached yet, by size ascending.
    pending: VecDeque<Checkpoint>,
    /// Size of the last checkpoint that matched (the last known-good prefix).
    last_good: u64,
    pub checkpoints_checked: u64,
    pub messages_checked: u64,
}

impl RangeCheck {
    pub fn new(mut checkpoints: Vec<Checkpoint>) -> Self {
        checkpoints.sort_by_key(|c| c.tree_size);
        let mut pending: VecDeque<Checkpoint> = checkpoints.into();
        let mut checked = 0;
        // The empty tree is checked trivially.
        while pending.front().is_some_and(|c| c.tree_size == 0) {
            pending.pop_front();
            checked += 1;
        }
        Self {
            tree: merkle::Frontier::default(),
            pending,
            last_good: 0,
            checkpoints_checked: checked,
            messages_checked: 0,
        }
    }

    /// Feeds the leaf at the next sequence (`seq` must be `size + 1`). `recorded`
    /// is the projector's leaf for it (`None` = not compared: a prefix taken from
    /// the record itself). `from_stream`: whether the leaf was read from the
    /// stream under test.
    pub fn push(
        &mut self,
        seq: u64,
        leaf: merkle::Hash,
        recorded: Option<Option<merkle::Hash>>,
    ) -> Result<(), Finding> {
        if seq != self.tree.size() + 1 {
            return Err(Finding {
                seq: self.tree.size() + 1,
                problem: format!(
                    "sequence {} is missing from the stream (the next message is {seq})",
                    self.tree.size() + 1
                ),
            });
        }
        match recorded {
            Some(None) => {
                return Err(Finding {
                    seq,
                    problem: format!(
                        "the ledger holds no leaf for sequence {seq}: it has not folded it"
                    ),
                });
            }
            Some(Some(r)) if r != leaf => {
                return Err(Finding {
                    seq,
                    problem: format!(
                        "sequence {seq}: the stored bytes differ from what the ledger folded (leaf {}, recorded {})",
                        merkle::hex(&leaf),
                        merkle::hex(&r)
                    ),
                });
            }
            _ => {}
        }
        self.tree.push(leaf);
        if recorded.is_some() {
            self.messages_checked += 1;
        }
        while let Some(cp) = self.pending.front() {
            if cp.tree_size != self.tree.size() {
                break;
            }
            let root = merkle::hex(&self.tree.root());
            if !root.eq_ignore_ascii_case(&cp.root) {
                return Err(Finding {
                    seq: self.last_good + 1,
                    problem: format!(
                        "the tree over sequences 1..={} has root {root}, but the checkpoint signed at that size says {}: an event in {}..={} is not what was signed",
                        cp.tree_size,
                        cp.root,
                        self.last_good + 1,
                        cp.tree_size
                    ),
                });
            }
            self.last_good = cp.tree_size;
            self.checkpoints_checked += 1;
            self.pending.pop_front();
        }
        Ok(())
    }
}

/// Verifies `from..=to` of `stream_name` (see the module doc). Sequences below
/// `from` come from the ledger's record (they are needed for the roots).
pub async fn verify_range(
    js: &jetstream::Context,
    store: &Store,
    checkpoints: Vec<Checkpoint>,
    stream_name: &str,
    from: u64,
    to: u64,
) -> Result<VerifyRangeResponse, String> {
    let mut resp = VerifyRangeResponse {
        stream: stream_name.to_owned(),
        from_seq: from,
        to_seq: to,
        ..Default::default()
    };
    // The checkpoint of the ledger's own applied size, if one was signed.
    let applied = store.meta().map_err(|e| e.to_string())?.last_applied_seq;
    let at_applied = checkpoints
        .iter()
        .rfind(|c| c.tree_size == applied && !c.identity_map.is_empty())
        .map(|c| c.identity_map.clone());
    let mut check = RangeCheck::new(checkpoints);
    let mut out = run(js, store, &mut check, stream_name, from, to).await;
    if out.is_ok() {
        out = tiles_hold(store, to);
    }
    if out.is_ok() {
        out = map_holds(store, at_applied.as_deref());
    }
    resp.messages_checked = check.messages_checked;
    resp.checkpoints_checked = check.checkpoints_checked;
    match out {
        Ok(()) => resp.ok = true,
        Err(Stop::Found(f)) => {
            resp.first_bad_seq = f.seq;
            resp.problem = f.problem;
        }
        Err(Stop::Unreadable(why)) => return Err(why),
    }
    Ok(resp)
}

/// The kept upper tiles of the tree over `1..=size` equal what the recorded
/// leaves (checked just before) give.
fn tiles_hold(store: &Store, size: u64) -> Result<(), Stop> {
    match Tiles::new(store).check(size) {
        Ok(None) => Ok(()),
        Ok(Some((level, n, i))) => Err(Finding {
            seq: 0,
            problem: format!(
                "the kept tile at level {level}, index {n} (entry {i}) is not what the leaves under it give: the ledger's proofs would not match its checkpoints; rebuild the ledger (govledger rebuild)"
            ),
        }
        .into()),
        Err(e) => Err(Stop::Unreadable(format!("reading the tiles: {e}"))),
    }
}

/// The kept identity map is what the identity pages give, and (when a
/// checkpoint was signed at the applied size) the map that checkpoint signs.
fn map_holds(store: &Store, signed_at_applied: Option<&str>) -> Result<(), Stop> {
    let found = |problem: String| Stop::Found(Finding { seq: 0, problem });
    match store.check_identity_map() {
        Ok(None) => {}
        Ok(Some(p)) => {
            return Err(found(format!(
                "{p}: the identity map's proofs would not match its checkpoints; rebuild the ledger (govledger rebuild)"
            )));
        }
        Err(e) => return Err(Stop::Unreadable(format!("reading the identity map: {e}"))),
    }
    let Some(signed) = signed_at_applied else {
        return Ok(());
    };
    let root = store
        .identity_map_root()
        .map_err(|e| Stop::Unreadable(format!("reading the identity map: {e}")))?;
    if !merkle::hex(&root).eq_ignore_ascii_case(signed) {
        return Err(found(format!(
            "the identity map is {}, but the checkpoint signed at this size says {signed}: the identity records were rewritten after it was signed",
            merkle::hex(&root)
        )));
    }
    Ok(())
}

async fn run(
    js: &jetstream::Context,
    store: &Store,
    check: &mut RangeCheck,
    stream_name: &str,
    from: u64,
    to: u64,
) -> Result<(), Stop> {
    let fail = Stop::Unreadable;
    // One leaf block (256 leaves) is read at a time, not once per sequence.
    let mut block: Option<(u64, Vec<u8>)> = None;
    let mut recorded = |seq: u64| -> Result<Option<merkle::Hash>, Stop> {
        let (b, at) = govledger_projector::keys::leaf_slot(seq);
        if block.as_ref().is_none_or(|(n, _)| *n != b) {
            let bytes = store
                .leaf_block(b)
                .map_err(|e| fail(e.to_string()))?
                .unwrap_or_default();
            block = Some((b, bytes));
        }
        Ok(block
            .as_ref()
            .and_then(|(_, bytes)| bytes.get(at..at + 32))
            .and_then(|s| merkle::Hash::try_from(s).ok())
            .filter(|h| *h != [0u8; 32]))
    };
    for seq in 1..from {
        let leaf = recorded(seq)?.ok_or_else(|| Finding {
            seq,
            problem: format!("the ledger holds no leaf for sequence {seq}"),
        })?;
        check.push(seq, leaf, None)?;
    }
    let stream = js
        .get_stream(stream_name)
        .await
        .map_err(|e| fail(format!("cannot open stream {stream_name}: {e}")))?;
    let mut msgs = crate::audit::replay::ordered_messages(
        &stream,
        DeliverPolicy::ByStartSequence {
            start_sequence: from,
        },
        Vec::new(),
    )
    .await
    .map_err(|e| fail(format!("cannot read stream {stream_name}: {e}")))?;
    let mut next = from;
    while next <= to {
        let m = match tokio::time::timeout(Duration::from_millis(READ_IDLE_MS), msgs.next()).await {
            Ok(Some(Ok(m))) => m,
            Ok(Some(Err(e))) => return Err(fail(format!("reading {stream_name}: {e}"))),
            Ok(None) | Err(_) => {
                // Silence: the stream ends here, or NATS stopped answering.
                // Only the stream's own last sequence tells which.
                let mut s = stream.clone();
                return match s.info().await {
                    Ok(i) if i.state.last_sequence < next => Err(Finding {
                        seq: next,
                        problem: format!(
                            "the stream {stream_name} ends before sequence {next} (the range goes to {to})"
                        ),
                    }
                    .into()),
                    Ok(i) => Err(fail(format!(
                        "NATS stopped delivering {stream_name} at sequence {next} although it holds {} (no message in {READ_IDLE_MS} ms)",
                        i.state.last_sequence
                    ))),
                    Err(e) => Err(fail(format!("NATS does not answer for {stream_name}: {e}"))),
                };
            }
        };
        let seq = m
            .info()
            .map_err(|e| fail(format!("reading {stream_name}: {e}")))?
            .stream_sequence;
        let leaf = merkle::leaf_hash(seq, &m.payload);
        check.push(seq, leaf, Some(recorded(seq)?))?;
        next = seq + 1;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `verify` holds the kept identity map to the one the checkpoint of the
    /// applied size signs.
    #[test]
    fn the_identity_map_must_be_the_one_signed_at_the_applied_size() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), 1 << 20).unwrap();
        let mut w = govledger_projector::fold::Working::default();
        let key = ("hr".to_owned(), 1, "alice".to_owned());
        let mut ident = govledger_proto::v1::IdentityState::default();
        govledger_projector::identity_map::note(&mut ident, 1);
        w.identities.insert(key.clone(), ident);
        w.identity_pages_of.insert(key, (0, true));
        store.commit(&w).unwrap();
        let root = merkle::hex(&store.identity_map_root().unwrap());
        assert!(map_holds(&store, None).is_ok());
        assert!(map_holds(&store, Some(&root)).is_ok());
        match map_holds(&store, Some(&"ee".repeat(32))) {
            Err(Stop::Found(f)) => assert!(
                f.problem
                    .contains("the checkpoint signed at this size says"),
                "{}",
                f.problem
            ),
            _ => panic!("a map other than the signed one passed"),
        }
    }

    fn leaves(n: u64) -> Vec<merkle::Hash> {
        (1..=n)
            .map(|s| merkle::leaf_hash(s, format!("event {s}").as_bytes()))
            .collect()
    }

    fn cp(size: u64, all: &[merkle::Hash]) -> Checkpoint {
        Checkpoint {
            tree_size: size,
            root: merkle::hex(&merkle::root(&all[..size as usize])),
            ..Default::default()
        }
    }

    #[test]
    fn an_untouched_range_passes_every_checkpoint() {
        let l = leaves(40);
        let mut c = RangeCheck::new(vec![cp(0, &l), cp(10, &l), cp(33, &l), cp(40, &l)]);
        for (i, h) in l.iter().enumerate() {
            c.push(i as u64 + 1, *h, Some(Some(*h))).unwrap();
        }
        assert_eq!((c.checkpoints_checked, c.messages_checked), (4, 40));
    }

    #[test]
    fn an_altered_leaf_is_named_by_the_record() {
        let l = leaves(20);
        let mut c = RangeCheck::new(vec![cp(20, &l)]);
        for s in 1..=6u64 {
            c.push(s, l[s as usize - 1], Some(Some(l[s as usize - 1])))
                .unwrap();
        }
        let bad = merkle::leaf_hash(7, b"altered");
        let f = c.push(7, bad, Some(Some(l[6]))).unwrap_err();
        assert_eq!(f.seq, 7);
        assert!(f.problem.contains("differ"), "{}", f.problem);
    }

    #[test]
    fn a_gap_names_the_missing_sequence() {
        let l = leaves(5);
        let mut c = RangeCheck::new(vec![]);
        c.push(1, l[0], Some(Some(l[0]))).unwrap();
        let f = c.push(3, l[2], Some(Some(l[2]))).unwrap_err();
        assert_eq!(f.seq, 2);
        assert!(f.problem.contains("missing"));
    }

    #[test]
    fn a_record_altered_with_the_stream_is_caught_by_the_signed_root() {
        let l = leaves(30);
        let mut c = RangeCheck::new(vec![cp(10, &l), cp(30, &l)]);
        let mut forged = l.clone();
        forged[17] = merkle::leaf_hash(18, b"forged");
        let mut err = None;
        for (i, h) in forged.iter().enumerate() {
            if let Err(f) = c.push(i as u64 + 1, *h, Some(Some(*h))) {
                err = Some(f);
                break;
            }
        }
        let f = err.expect("the signed root must disagree");
        assert_eq!(f.seq, 11, "first sequence after the last good checkpoint");
        assert!(f.problem.contains("11..=30"), "{}", f.problem);
        assert_eq!(c.checkpoints_checked, 1);
    }
}
