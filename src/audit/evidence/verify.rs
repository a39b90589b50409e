//! The offline check of an evidence bundle: pure, needs no NATS and no sled.

use std::collections::{BTreeMap, BTreeSet};

use govledger_projector::{OwnedMsg, fold, fold_in_memory, merkle};
use govledger_proto::v1::{ActionState, Checkpoint, IdentityState, SourceState};

use super::{BUNDLE_FORMAT, Bundle, BundleEvent, manifest};
use crate::audit::checkpoints::{self, unhex};

/// What [`verify_bundle`] found.
#[derive(Debug, Clone, Default)]
pub struct BundleReport {
    pub ok: bool,
    /// The first bad sequence, when the problem is tied to one.
    pub first_bad_seq: Option<u64>,
    pub problem: String,
    /// What was checked, for the auditor's record.
    pub checked: Vec<String>,
    /// Things to know that are not failures (an unpinned key, say).
    pub notes: Vec<String>,
}

impl BundleReport {
    fn fail(mut self, seq: Option<u64>, problem: String) -> Self {
        self.ok = false;
        self.first_bad_seq = seq;
        self.problem = problem;
        self
    }
}

fn decode_hex<M: prost::Message + Default>(what: &str, h: &str) -> Result<M, String> {
    let bytes = unhex(h).ok_or_else(|| format!("{what} is not hex"))?;
    M::decode(bytes.as_slice()).map_err(|e| format!("{what} does not decode: {e}"))
}

/// Checks a bundle offline (see the module doc). `trusted_key`: the ledger's
/// public key as the auditor knows it (hex); without it the bundle's own key is
/// used and the report says so.
pub fn verify_bundle(json: &[u8], trusted_key: Option<&str>) -> BundleReport {
    let r = BundleReport::default();
    let b: Bundle = match serde_json::from_slice(json) {
        Ok(b) => b,
        Err(e) => return r.fail(None, format!("not a govledger evidence bundle: {e}")),
    };
    verify_parsed(&b, trusted_key, r)
}

/// A failed check: the first bad sequence (when tied to one) and the problem.
type Failure = (Option<u64>, String);

fn verify_parsed(b: &Bundle, trusted_key: Option<&str>, mut r: BundleReport) -> BundleReport {
    let key = match checked_key(b, trusted_key, &mut r) {
        Ok(k) => k,
        Err(problem) => return r.fail(None, problem),
    };
    // 1. The checkpoints: signatures and chain.
    let (anchor, anchor_root) = match anchor(b, &key, &mut r) {
        Ok(a) => a,
        Err(problem) => return r.fail(None, problem),
    };
    // 2. Every event against its proof, in sequence order; the first bad one is named.
    let msgs = match proven_events(b, &anchor, &anchor_root) {
        Ok(m) => m,
        Err((seq, problem)) => return r.fail(seq, problem),
    };
    r.checked.push(format!(
        "{} event(s), each proven included at its sequence",
        msgs.len()
    ));
    // 3. The manifest: scope, anchor, sequence list and state digest are the ledger's.
    if !checkpoints::verify_text(&key, &manifest(b, &anchor), &b.manifest_signature) {
        return r.fail(
            None,
            "the manifest signature does not match: the scope, the list of sequences or the state was changed after export".into(),
        );
    }
    r.checked
        .push("manifest (scope, sequences, state) signed by the ledger's key".into());
    // 4. The state folds again from the events.
    match check_state(b, &msgs) {
        Ok(Some(what)) => r.checked.push(what),
        Ok(None) => r.notes.push(
            "source state not folded again: the bundle starts after the source's first event (export with no start time to check it)".into(),
        ),
        Err(e) => return r.fail(None, e),
    }
    r.ok = true;
    r
}

/// The bundle's format is this one's, and the key to check it with: the
/// trusted key when given (it must be the bundle's), else the bundle's own
/// (noted in the report).
fn checked_key(
    b: &Bundle,
    trusted_key: Option<&str>,
    r: &mut BundleReport,
) -> Result<String, String> {
    if b.format != BUNDLE_FORMAT {
        return Err(format!(
            "bundle format {:?} is not {BUNDLE_FORMAT:?}; use the govledger that wrote it",
            b.format
        ));
    }
    match trusted_key {
        Some(k) if !k.eq_ignore_ascii_case(&b.public_key) => Err(format!(
            "the bundle is signed by key {} ({}), not the trusted key given",
            b.key_id, b.public_key
        )),
        Some(k) => Ok(k.to_owned()),
        None => {
            r.notes.push(format!(
                "key not pinned: checked against the bundle's own key {} (id {}); pass --public-key with the key the ledger's operator published to pin it",
                b.public_key, b.key_id
            ));
            Ok(b.public_key.clone())
        }
    }
}

/// The bundle's checkpoints verify and chain under `key`; the last one (the
/// anchor) and its root.
fn anchor(
    b: &Bundle,
    key: &str,
    r: &mut BundleReport,
) -> Result<(Checkpoint, merkle::Hash), String> {
    let mut cps = Vec::with_capacity(b.checkpoints.len());
    for (i, h) in b.checkpoints.iter().enumerate() {
        cps.push(decode_hex::<Checkpoint>(&format!("checkpoint {i}"), h)?);
    }
    checkpoints::verify_chain(&cps, key).map_err(|e| format!("checkpoints: {e}"))?;
    let Some(anchor) = cps.last().cloned() else {
        return Err("the bundle holds no checkpoint to anchor its proofs".into());
    };
    if anchor.stream != b.stream {
        return Err(format!(
            "the anchor checkpoint is for stream {}, the bundle for {}",
            anchor.stream, b.stream
        ));
    }
    let Some(anchor_root) = unhex(&anchor.root).and_then(|v| merkle::Hash::try_from(v).ok()) else {
        return Err("the anchor checkpoint's root is not a hash".into());
    };
    r.checked.push(format!(
        "{} signed checkpoint(s), chained, key {}; anchor: size {} root {}",
        cps.len(),
        anchor.key_id,
        anchor.tree_size,
        anchor.root
    ));
    Ok((anchor, anchor_root))
}

/// Every event, in sequence order, is listed in the manifest (and every listed
/// sequence is present) and proven included in the anchor's tree; the events
/// as messages to fold.
fn proven_events(
    b: &Bundle,
    anchor: &Checkpoint,
    anchor_root: &merkle::Hash,
) -> Result<Vec<OwnedMsg>, Failure> {
    let listed: BTreeSet<u64> = b.manifest_seqs.iter().copied().collect();
    let mut present: BTreeMap<u64, &BundleEvent> = BTreeMap::new();
    let mut prev = 0;
    for e in &b.events {
        if e.seq <= prev {
            return Err((
                Some(e.seq),
                format!(
                    "events are out of order or repeated at sequence {} (after {prev})",
                    e.seq
                ),
            ));
        }
        prev = e.seq;
        present.insert(e.seq, e);
    }
    let all: BTreeSet<u64> = listed
        .union(&present.keys().copied().collect())
        .copied()
        .collect();
    let mut msgs = Vec::with_capacity(present.len());
    for seq in all {
        let Some(e) = present.get(&seq) else {
            return Err((
                Some(seq),
                format!(
                    "sequence {seq} is listed in the signed manifest but missing from the bundle"
                ),
            ));
        };
        if !listed.contains(&seq) {
            return Err((
                Some(seq),
                format!("sequence {seq} is in the bundle but not in the signed manifest"),
            ));
        }
        let Some(raw) = unhex(&e.raw) else {
            return Err((Some(seq), format!("sequence {seq}: raw bytes are not hex")));
        };
        let proof: Option<Vec<merkle::Hash>> = e
            .proof
            .iter()
            .map(|p| unhex(p).and_then(|v| merkle::Hash::try_from(v).ok()))
            .collect();
        let leaf = merkle::leaf_hash(seq, &raw);
        let proven = proof.is_some_and(|p| {
            merkle::verify_inclusion(seq - 1, anchor.tree_size, &leaf, &p, anchor_root)
        });
        if !proven {
            return Err((
                Some(seq),
                format!(
                    "sequence {seq}: its bytes are not the ones the ledger stored there (the inclusion proof against the checkpoint of size {} fails)",
                    anchor.tree_size
                ),
            ));
        }
        msgs.push(OwnedMsg {
            seq,
            subject: e.subject.clone(),
            stored_at_us: e.stored_at_us,
            payload: raw.into(),
            leaf: None,
        });
    }
    Ok(msgs)
}

/// Folds the bundle's events and compares the state they give with the
/// bundle's state. `Ok(None)`: not checkable from this bundle.
fn check_state(b: &Bundle, msgs: &[OwnedMsg]) -> Result<Option<String>, String> {
    let upto: Vec<OwnedMsg> = msgs
        .iter()
        .filter(|m| m.seq <= b.state.as_of_seq)
        .cloned()
        .collect();
    let mut w = fold::Working::default();
    fold_in_memory(&mut w, &upto);
    if let Some(h) = &b.state.identity {
        let want: IdentityState = decode_hex("state.identity", h)?;
        let key = (
            b.scope.source_id.clone(),
            b.scope.entity_type,
            b.scope.external_id.clone(),
        );
        if w.identities.get(&key) != Some(&want) {
            return Err(format!(
                "the identity state in the bundle is not what its events fold to (as of sequence {})",
                b.state.as_of_seq
            ));
        }
        for (i, h) in b.state.actions.iter().enumerate() {
            let want: ActionState = decode_hex(&format!("state.actions[{i}]"), h)?;
            if w.actions.get(&want.action_id) != Some(&want) {
                return Err(format!(
                    "the state of action {} in the bundle is not what its events fold to",
                    want.action_id
                ));
            }
        }
        return Ok(Some(format!(
            "identity state and {} action state(s) as of sequence {} equal the fold of the events",
            b.state.actions.len(),
            b.state.as_of_seq
        )));
    }
    if let Some(h) = &b.state.source {
        let want: SourceState = decode_hex("state.source", h)?;
        if b.scope.from_us != 0 {
            return Ok(None);
        }
        if w.sources.get(&b.scope.source_id) != Some(&want) {
            return Err(format!(
                "the source state in the bundle is not what its events fold to (as of sequence {})",
                b.state.as_of_seq
            ));
        }
        return Ok(Some(format!(
            "source state as of sequence {} equals the fold of the events",
            b.state.as_of_seq
        )));
    }
    Err("the bundle holds no state".into())
}
