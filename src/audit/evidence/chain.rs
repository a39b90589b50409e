//! The checkpoints of a bundle, offline: its key history and chain verify
//! (signatures, hash links, key handovers, forks and rollbacks), each tree
//! is proven consistent with the next, the chain reaches back before the
//! first event, the anchor is signed by the bundle's key, and the pinned key
//! is one of the key sequence. Pure.

use govledger_projector::merkle;
use govledger_proto::v1::Checkpoint;

use super::{
    Bundle,
    verify::{BundleReport, decode_hex},
};
use crate::audit::checkpoints;

/// The bundle's checkpoints (after its key history) verify and chain, the
/// anchor is signed by the bundle's key, and the pinned key is one of the
/// key sequence; the anchor and its root.
pub(super) fn anchor(
    b: &Bundle,
    pin: Option<&str>,
    r: &mut BundleReport,
) -> Result<(Checkpoint, merkle::Hash), String> {
    let mut cps = Vec::with_capacity(b.checkpoints.len());
    for (i, h) in b.checkpoints.iter().enumerate() {
        cps.push(decode_hex::<Checkpoint>(&format!("checkpoint {i}"), h)?);
    }
    let mut handovers = Vec::with_capacity(b.key_history.len());
    for (i, h) in b.key_history.iter().enumerate() {
        handovers.push(decode_hex::<Checkpoint>(
            &format!("key history entry {i}"),
            h,
        )?);
    }
    let sequence = checkpoints::key_sequence_after(&handovers, &cps)
        .map_err(|e| format!("checkpoints: {e}"))?;
    if let Some(a) = cps.last()
        && !a.public_key.eq_ignore_ascii_case(&b.public_key)
    {
        return Err(format!(
            "the bundle names key {} but its anchor checkpoint is signed by key {}",
            b.key_id, a.key_id
        ));
    }
    pinned_key(b, &sequence, pin, r)?;
    consistent(&cps, &b.consistency)?;
    if let (Some(first), Some(first_event)) = (cps.first(), b.events.iter().map(|e| e.seq).min()) {
        chain_reaches_back(first, first_event)?;
    }
    let Some(anchor) = cps.last().cloned() else {
        return Err("the bundle holds no checkpoint to anchor its proofs".into());
    };
    if anchor.note.is_empty() {
        return Err(
            "the anchor checkpoint carries no signed note: the events' tlog-proofs end with nothing signed".into(),
        );
    }
    if anchor.stream != b.stream {
        return Err(format!(
            "the anchor checkpoint is for stream {}, the bundle for {}",
            anchor.stream, b.stream
        ));
    }
    let Some(anchor_root) = checkpoints::unhex_hash(&anchor.root) else {
        return Err("the anchor checkpoint's root is not a hash".into());
    };
    r.checked.push(format!(
        "{} signed checkpoint(s), chained, each tree proven consistent with the next, key {}; anchor: size {} root {}",
        cps.len(),
        anchor.key_id,
        anchor.tree_size,
        anchor.root
    ));
    Ok((anchor, anchor_root))
}

/// The pinned key is one of `sequence` (the bundle's key, or one that handed
/// over to it): both keys sign every handover, so one pins the other.
fn pinned_key(
    b: &Bundle,
    sequence: &[checkpoints::KeyPeriod],
    pin: Option<&str>,
    r: &mut BundleReport,
) -> Result<(), String> {
    let Some(pin) = pin else { return Ok(()) };
    let ids = || {
        sequence
            .iter()
            .map(|p| p.key_id.as_str())
            .collect::<Vec<_>>()
            .join(" then ")
    };
    let Some(p) = sequence
        .iter()
        .find(|p| p.public_key.eq_ignore_ascii_case(pin))
    else {
        let pin_id = checkpoints::parse_public_key(pin)
            .map(|k| checkpoints::key_id(&k))
            .unwrap_or_default();
        return Err(format!(
            "the bundle is signed by key {} ({}), not the trusted key given ({pin_id}), and its checkpoints' key sequence ({}) does not hold that key",
            b.key_id,
            b.public_key,
            ids()
        ));
    };
    if !p.public_key.eq_ignore_ascii_case(&b.public_key) {
        r.checked.push(format!(
            "key {}: handed over from the pinned key {} (key sequence {}, each handover signed by both keys), a strong ed25519 key",
            b.key_id,
            p.key_id,
            ids()
        ));
    }
    Ok(())
}

/// Each checkpoint's tree is proven a prefix of the next one's by its
/// consistency proof (one per pair): no fork and no rollback between them,
/// whatever the hash chain says. Pure.
fn consistent(cps: &[Checkpoint], proofs: &[Vec<String>]) -> Result<(), String> {
    if proofs.len() != cps.len().saturating_sub(1) {
        return Err(format!(
            "the bundle holds {} consistency proof(s) for {} checkpoint(s); it needs one per pair",
            proofs.len(),
            cps.len()
        ));
    }
    for (i, (pair, proof)) in cps.windows(2).zip(proofs).enumerate() {
        let (old, new) = (&pair[0], &pair[1]);
        let path: Option<Vec<merkle::Hash>> =
            proof.iter().map(|h| checkpoints::unhex_hash(h)).collect();
        let root = |c: &Checkpoint| checkpoints::unhex_hash(&c.root);
        let holds = match (root(old), root(new), path) {
            (Some(r1), Some(r2), Some(p)) => {
                merkle::verify_consistency(old.tree_size, new.tree_size, &r1, &r2, &p)
            }
            _ => false,
        };
        if !holds {
            return Err(format!(
                "checkpoints {i} (size {}) and {} (size {}): the tree of the second is not proven to extend the first's — a fork or a rollback of the log, or an altered proof",
                old.tree_size,
                i + 1,
                new.tree_size
            ));
        }
    }
    Ok(())
}

/// The chain starts before the bundle's first event (a checkpoint of a
/// smaller size) or at the log's very first checkpoint: a chain cut down to
/// what came after the events proves nothing about what the log held before
/// them. Pure.
fn chain_reaches_back(first: &Checkpoint, first_event_seq: u64) -> Result<(), String> {
    if first.previous.is_empty() || first.tree_size < first_event_seq {
        return Ok(());
    }
    Err(format!(
        "the chain of checkpoints is cut short: it starts at a checkpoint of size {} (not before the \
         first event, sequence {first_event_seq}) that is not the log's first; export the bundle again",
        first.tree_size
    ))
}
