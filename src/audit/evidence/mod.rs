//! Evidence bundles: what an auditor takes away and checks on a machine with
//! only the `govledger` binary — no NATS, no sled.
//!
//! A bundle (one JSON file) holds, for one identity or one source over a time
//! range:
//! - the events, each as the exact bytes the stream stored, with its sequence
//!   and an RFC 6962 inclusion proof against the anchor checkpoint's root (for an
//!   identity: its whole history up to the end of the range, so its state can be
//!   folded again; `in_range` marks the events inside the asked range);
//! - the signed checkpoints from before the first event up to the anchor (a
//!   checkpoint made for the export), chained;
//! - the state as of the end of the range (protobuf bytes);
//! - a manifest signed with the ledger's key: scope, anchor, the list of
//!   sequences and the state digest, so nothing can be dropped or swapped.
//!
//! [`verify_bundle`] is pure: it checks the chain and signatures, every event
//! against its proof (naming the first bad sequence), the manifest, and folds
//! the events again with the projector's fold to compare the state.

use std::collections::{BTreeMap, BTreeSet};

use govledger_projector::{OwnedMsg, fold, fold_in_memory, merkle};
use govledger_proto::v1::{ActionState, Checkpoint, IdentityState, SourceState};
use prost::Message as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::audit::checkpoints::{self, unhex};

pub const BUNDLE_FORMAT: &str = "govledger-evidence/1";
/// Events one bundle holds at most.
pub const EXPORT_EVENTS_MAX: usize = 100_000;
/// Bytes per `EvidenceChunk`.
pub const CHUNK_BYTES: usize = 1 << 20;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Scope {
    pub source_id: String,
    /// `EntityType` number; 0 with an empty `external_id` = the whole source.
    pub entity_type: i32,
    pub external_id: String,
    /// Stream time range, Unix microseconds, inclusive (0 = open).
    pub from_us: i64,
    pub to_us: i64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct BundleEvent {
    pub seq: u64,
    pub stored_at_us: i64,
    pub subject: String,
    /// Hex of the exact stored bytes (what the leaf hash covers).
    pub raw: String,
    /// Hex audit path, leaf to root, in the anchor tree.
    pub proof: Vec<String>,
    /// Inside the asked time range (else: earlier history the state needs).
    pub in_range: bool,
    /// The decoded event for people (protobuf JSON mapping); not verified.
    #[serde(default)]
    pub event: serde_json::Value,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct BundleState {
    /// The state holds as of this stream sequence (the end of the range).
    pub as_of_seq: u64,
    pub as_of_stored_at_us: i64,
    /// Hex protobuf `IdentityState` (identity scope).
    #[serde(default)]
    pub identity: Option<String>,
    /// Hex protobuf `ActionState`s of the actions on the identity.
    #[serde(default)]
    pub actions: Vec<String>,
    /// Hex protobuf `SourceState` (source scope).
    #[serde(default)]
    pub source: Option<String>,
    /// The same, readable; not verified.
    #[serde(default)]
    pub readable: serde_json::Value,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Bundle {
    pub format: String,
    pub created_at_us: i64,
    pub stream: String,
    pub scope: Scope,
    /// Hex ed25519 public key of the ledger and its key id.
    pub public_key: String,
    pub key_id: String,
    /// Hex protobuf `Checkpoint`s, oldest first; the last is the anchor.
    pub checkpoints: Vec<String>,
    /// Sequences the ledger put in this bundle (signed in the manifest).
    pub manifest_seqs: Vec<u64>,
    pub events: Vec<BundleEvent>,
    pub state: BundleState,
    /// Hex ed25519 signature of [`manifest`].
    pub manifest_signature: String,
}

fn sha_hex(parts: &[&[u8]]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_be_bytes());
        h.update(p);
    }
    fold::hex(&h.finalize())
}

/// Digest of the state part the manifest signs.
fn state_digest(s: &BundleState) -> String {
    let mut parts: Vec<Vec<u8>> = vec![
        s.as_of_seq.to_be_bytes().to_vec(),
        s.as_of_stored_at_us.to_be_bytes().to_vec(),
        s.identity.clone().unwrap_or_default().into_bytes(),
        s.source.clone().unwrap_or_default().into_bytes(),
    ];
    parts.extend(s.actions.iter().map(|a| a.clone().into_bytes()));
    let refs: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
    sha_hex(&refs)
}

/// The text the manifest signature covers.
pub fn manifest(b: &Bundle, anchor: &Checkpoint) -> String {
    format!(
        "govledger evidence v1\nformat={}\nstream={}\nscope.source_id={}\nscope.entity_type={}\nscope.external_id={}\nscope.from_us={}\nscope.to_us={}\nanchor.size={}\nanchor.root={}\nstate={}\nseqs={}\n",
        b.format,
        b.stream,
        b.scope.source_id,
        b.scope.entity_type,
        b.scope.external_id,
        b.scope.from_us,
        b.scope.to_us,
        anchor.tree_size,
        anchor.root,
        state_digest(&b.state),
        b.manifest_seqs
            .iter()
            .map(u64::to_string)
            .collect::<Vec<_>>()
            .join(",")
    )
}

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

fn verify_parsed(b: &Bundle, trusted_key: Option<&str>, mut r: BundleReport) -> BundleReport {
    if b.format != BUNDLE_FORMAT {
        return r.fail(
            None,
            format!(
                "bundle format {:?} is not {BUNDLE_FORMAT:?}; use the govledger that wrote it",
                b.format
            ),
        );
    }
    let key = match trusted_key {
        Some(k) if !k.eq_ignore_ascii_case(&b.public_key) => {
            return r.fail(
                None,
                format!(
                    "the bundle is signed by key {} ({}), not the trusted key given",
                    b.key_id, b.public_key
                ),
            );
        }
        Some(k) => k.to_owned(),
        None => {
            r.notes.push(format!(
                "key not pinned: checked against the bundle's own key {} (id {}); pass --public-key with the key the ledger's operator published to pin it",
                b.public_key, b.key_id
            ));
            b.public_key.clone()
        }
    };
    // 1. The checkpoints: signatures and chain.
    let mut cps = Vec::with_capacity(b.checkpoints.len());
    for (i, h) in b.checkpoints.iter().enumerate() {
        match decode_hex::<Checkpoint>(&format!("checkpoint {i}"), h) {
            Ok(cp) => cps.push(cp),
            Err(e) => return r.fail(None, e),
        }
    }
    if let Err(e) = checkpoints::verify_chain(&cps, &key) {
        return r.fail(None, format!("checkpoints: {e}"));
    }
    let Some(anchor) = cps.last().cloned() else {
        return r.fail(
            None,
            "the bundle holds no checkpoint to anchor its proofs".into(),
        );
    };
    if anchor.stream != b.stream {
        return r.fail(
            None,
            format!(
                "the anchor checkpoint is for stream {}, the bundle for {}",
                anchor.stream, b.stream
            ),
        );
    }
    let Some(anchor_root) = unhex(&anchor.root).and_then(|v| merkle::Hash::try_from(v).ok()) else {
        return r.fail(None, "the anchor checkpoint's root is not a hash".into());
    };
    r.checked.push(format!(
        "{} signed checkpoint(s), chained, key {}; anchor: size {} root {}",
        cps.len(),
        anchor.key_id,
        anchor.tree_size,
        anchor.root
    ));
    // 2. Every event against its proof, in sequence order; the first bad one is named.
    let listed: BTreeSet<u64> = b.manifest_seqs.iter().copied().collect();
    let mut present: BTreeMap<u64, &BundleEvent> = BTreeMap::new();
    let mut prev = 0;
    for e in &b.events {
        if e.seq <= prev {
            return r.fail(
                Some(e.seq),
                format!(
                    "events are out of order or repeated at sequence {} (after {prev})",
                    e.seq
                ),
            );
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
            return r.fail(
                Some(seq),
                format!(
                    "sequence {seq} is listed in the signed manifest but missing from the bundle"
                ),
            );
        };
        if !listed.contains(&seq) {
            return r.fail(
                Some(seq),
                format!("sequence {seq} is in the bundle but not in the signed manifest"),
            );
        }
        let Some(raw) = unhex(&e.raw) else {
            return r.fail(Some(seq), format!("sequence {seq}: raw bytes are not hex"));
        };
        let proof: Option<Vec<merkle::Hash>> = e
            .proof
            .iter()
            .map(|p| unhex(p).and_then(|v| merkle::Hash::try_from(v).ok()))
            .collect();
        let leaf = merkle::leaf_hash(seq, &raw);
        let proven = proof.is_some_and(|p| {
            merkle::verify_inclusion(seq - 1, anchor.tree_size, &leaf, &p, &anchor_root)
        });
        if !proven {
            return r.fail(
                Some(seq),
                format!(
                    "sequence {seq}: its bytes are not the ones the ledger stored there (the inclusion proof against the checkpoint of size {} fails)",
                    anchor.tree_size
                ),
            );
        }
        msgs.push(OwnedMsg {
            seq,
            subject: e.subject.clone(),
            stored_at_us: e.stored_at_us,
            payload: raw.into(),
            leaf: None,
        });
    }
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

/// Inclusion proofs of `seqs` (ascending) in the tree of `leaves` (all leaves
/// of the anchor), computed together in one pass over the tree.
pub fn proofs(seqs: &[u64], leaves: &[merkle::Hash]) -> Vec<Vec<String>> {
    let targets: Vec<usize> = seqs.iter().map(|s| *s as usize - 1).collect();
    merkle::inclusion_proofs(&targets, leaves)
        .iter()
        .map(|p| p.iter().map(merkle::hex).collect())
        .collect()
}

/// `data` in chunks of [`CHUNK_BYTES`].
pub fn chunks(data: Vec<u8>) -> Vec<Vec<u8>> {
    data.chunks(CHUNK_BYTES).map(<[u8]>::to_vec).collect()
}

// ---- Export (reads the stream and the ledger; the checks above are pure) ----

use govledger_proto::v1::{AsOf, ExportEvidenceRequest, as_of};
use tonic::Status;

use crate::audit::asof::AsOfReader;

/// What an export reads from.
pub struct ExportDeps<'a> {
    pub store: &'a govledger_projector::Store,
    pub reader: &'a AsOfReader,
    pub checkpointer: &'a checkpoints::Checkpointer,
    pub stream: &'a str,
}

fn readable(pool: &prost_reflect::DescriptorPool, name: &str, bytes: &[u8]) -> serde_json::Value {
    pool.get_message_by_name(name)
        .and_then(|d| prost_reflect::DynamicMessage::decode(d, bytes).ok())
        .and_then(|m| serde_json::to_value(&m).ok())
        .unwrap_or(serde_json::Value::Null)
}

/// Builds the bundle for `req` (validated by the caller).
pub async fn export(d: ExportDeps<'_>, req: &ExportEvidenceRequest) -> Result<Bundle, Status> {
    let internal = |e: String| Status::internal(e);
    let pool = prost_reflect::DescriptorPool::decode(govledger_proto::FILE_DESCRIPTOR_SET)
        .map_err(|e| internal(e.to_string()))?;
    // The end of the range, then a checkpoint that covers it (the anchor).
    let end = d
        .reader
        .resolve(&AsOf {
            point: Some(if req.to_us > 0 {
                as_of::Point::TimeUs(req.to_us)
            } else {
                as_of::Point::Seq(
                    d.store
                        .meta()
                        .map_err(|e| internal(e.to_string()))?
                        .last_applied_seq
                        .max(1),
                )
            }),
        })
        .await?;
    let anchor = d
        .checkpointer
        .checkpoint()
        .await
        .map_err(|e| Status::unavailable(format!("cannot sign the anchor checkpoint: {e}")))?;
    let identity_scope = !req.external_id.is_empty();
    let key = (
        req.source_id.clone(),
        req.entity_type,
        req.external_id.clone(),
    );
    let mut state = BundleState {
        as_of_seq: end.seq,
        as_of_stored_at_us: end.stored_at_us,
        ..Default::default()
    };
    let msgs: Vec<OwnedMsg> = if identity_scope {
        // One read and one fold: the identity's history holds every event of the
        // actions on it, so the same fold gives their states as of the end.
        let (ident, w, msgs) = d.reader.identity_fold(&key, &end).await?;
        let mut readable_actions = Vec::new();
        for (_, st) in w.actions.iter() {
            let bytes = st.encode_to_vec();
            readable_actions.push(readable(&pool, "govledger.v1.ActionState", &bytes));
            state.actions.push(fold::hex(&bytes));
        }
        let bytes = ident.encode_to_vec();
        state.readable = serde_json::json!({
            "identity": readable(&pool, "govledger.v1.IdentityState", &bytes),
            "actions": readable_actions,
        });
        state.identity = Some(fold::hex(&bytes));
        msgs
    } else {
        let (src, _) = d.reader.source(&req.source_id, &end).await?;
        let bytes = src.encode_to_vec();
        state.readable = serde_json::json!({
            "source": readable(&pool, "govledger.v1.SourceState", &bytes),
        });
        state.source = Some(fold::hex(&bytes));
        let mut msgs = Vec::new();
        let mut over = false;
        d.reader
            .source_slice(&req.source_id, req.from_us, end.seq, |m, _| {
                if msgs.len() >= EXPORT_EVENTS_MAX {
                    over = true;
                } else {
                    msgs.push(m);
                }
                Ok(())
            })
            .await?;
        if over {
            return Err(Status::failed_precondition(format!(
                "the range holds more than {EXPORT_EVENTS_MAX} events of source {:?}; export a shorter time range",
                req.source_id
            )));
        }
        msgs
    };
    if msgs.len() > EXPORT_EVENTS_MAX {
        return Err(Status::failed_precondition(format!(
            "the identity's history holds more than {EXPORT_EVENTS_MAX} events"
        )));
    }
    // The anchor's leaves, as the projector recorded them; they must give the
    // signed root, and every exported event's bytes must give its recorded leaf.
    let size = anchor.tree_size;
    if size > crate::audit::replay::PROOF_LEAVES_MAX {
        return Err(Status::failed_precondition(format!(
            "the ledger holds {size} events, over the {} a proof may read",
            crate::audit::replay::PROOF_LEAVES_MAX
        )));
    }
    let leaves = match d
        .store
        .leaves_upto(size)
        .map_err(|e| internal(e.to_string()))?
    {
        Ok(l) => l,
        Err(seq) => {
            return Err(Status::data_loss(format!(
                "the ledger holds no leaf for sequence {seq}; rebuild it (govledger rebuild)"
            )));
        }
    };
    if merkle::hex(&merkle::root(&leaves)) != anchor.root {
        return Err(Status::data_loss(
            "the ledger's recorded leaves do not give the root it just signed; run govledger verify",
        ));
    }
    let seqs: Vec<u64> = msgs.iter().map(|m| m.seq).collect();
    let proofs = proofs(&seqs, &leaves);
    let mut events = Vec::with_capacity(msgs.len());
    for (m, proof) in msgs.iter().zip(proofs) {
        if merkle::leaf_hash(m.seq, &m.payload) != leaves[m.seq as usize - 1] {
            return Err(Status::data_loss(format!(
                "stream sequence {} is not what the ledger folded; run govledger verify",
                m.seq
            )));
        }
        events.push(BundleEvent {
            seq: m.seq,
            stored_at_us: m.stored_at_us,
            subject: m.subject.clone(),
            raw: fold::hex(&m.payload),
            proof,
            in_range: m.stored_at_us >= req.from_us
                && (req.to_us == 0 || m.stored_at_us <= req.to_us),
            event: readable(&pool, "govledger.v1.Event", &m.payload),
        });
    }
    // The chain from the last checkpoint before the first event up to the anchor.
    let mut cps = checkpoints::read_all(&d.reader.js, crate::audit::verify::VERIFY_CHECKPOINTS_MAX)
        .await
        .map_err(|e| Status::unavailable(format!("cannot read checkpoints: {e}")))?;
    cps.retain(|c| c.stream == d.stream);
    let anchor_hash = checkpoints::checkpoint_hash(&anchor);
    let anchor_at = cps
        .iter()
        .rposition(|c| checkpoints::checkpoint_hash(c) == anchor_hash)
        .ok_or_else(|| {
            Status::unavailable("the anchor checkpoint is not in the audit stream yet; retry")
        })?;
    cps.truncate(anchor_at + 1);
    let first_seq = seqs.first().copied().unwrap_or(end.seq);
    let start = cps
        .iter()
        .rposition(|c| c.tree_size < first_seq)
        .unwrap_or(0);
    let chain: Vec<String> = cps[start..]
        .iter()
        .map(|c| fold::hex(&c.encode_to_vec()))
        .collect();
    let mut b = Bundle {
        format: BUNDLE_FORMAT.to_owned(),
        created_at_us: chrono::Utc::now().timestamp_micros(),
        stream: d.stream.to_owned(),
        scope: Scope {
            source_id: req.source_id.clone(),
            entity_type: req.entity_type,
            external_id: req.external_id.clone(),
            from_us: req.from_us,
            to_us: req.to_us,
        },
        public_key: d.checkpointer.public_key_hex(),
        key_id: d.checkpointer.key_id(),
        checkpoints: chain,
        manifest_seqs: seqs,
        events,
        state,
        manifest_signature: String::new(),
    };
    b.manifest_signature = d.checkpointer.sign_text(&manifest(&b, &anchor));
    Ok(b)
}
