//! Evidence bundles: what an auditor takes away and checks on a machine with
//! only the `govledger` binary — no NATS, no sled.
//!
//! A bundle (one JSON file) holds, for one identity or one source over a time
//! range:
//! - the events, each as the exact bytes the stream stored, with its sequence
//!   and its proof of inclusion in the anchor checkpoint's tree as a C2SP
//!   `tlog-proof@v1` ([`tlog_proof`]: index, RFC 6962 audit path, the anchor's
//!   signed note), so any tlog-proof verifier checks it (for an identity: its
//!   whole history up to the end of the range, so its state can be folded
//!   again; `in_range` marks the events inside the asked range);
//! - the signed checkpoints from before the first event up to the anchor (a
//!   checkpoint made for the export), chained, with the consistency proof of
//!   each in the next (no fork, no rollback between them), and the key
//!   handovers made before them (`key_history`: a key pinned before a
//!   rotation reaches the one that signs the bundle);
//! - the state as of the end of the range (protobuf bytes);
//! - for an identity: every one of its events up to the anchor, and its page
//!   of the identity map the anchor signs ([`history`]), so the bundle proves
//!   it leaves none of them out;
//! - a manifest signed with the ledger's manifest key (endorsed for a period
//!   by its checkpoint key, [`crate::audit::keys`]): format, stream, export time, keys,
//!   scope, anchor, the list of sequences, each event's sequence, stored time and
//!   subject, the producer keys the ledger trusts, and the state digest, so
//!   nothing can be dropped, swapped or re-dated;
//! - the producer keys (provenance, issue 21): the events carry their producer
//!   seals in their proven bytes, and the verifier checks every seal it can
//!   (each run finish in the bundle over the run's events in the bundle, each
//!   action conclusion on its own) against these keys, and folds with them. The manifest is a length-prefixed binary encoding ([`manifest`]),
//!   so no field's content can pass for another field.
//!
//! Everything a bundle shows is signed or recomputed: what is not in the
//! manifest or a checkpoint — each event's `in_range` flag (from the signed
//! scope and time), its readable JSON (decoded from its proven bytes) and the
//! readable state (decoded from the signed state bytes) — the verifier computes
//! itself and a bundle whose copy differs is TAMPERED. A field no govledger
//! writes (added to the file after export) makes it TAMPERED too.
//!
//! [`verify_bundle`] is pure: it checks the format and size, the key (strict
//! ed25519, no weak key, `key_id` derived from it, pinned or not), the chain
//! and signatures, every event against its proof (naming the first bad
//! sequence), the manifest, the recomputed parts, and folds the events again
//! with the projector's fold to compare the state.
//!
//! Layout:
//! - here: the bundle format ([`Bundle`] and its parts), the signed
//!   [`manifest`] bytes, what both sides recompute ([`in_range`],
//!   [`readable`], [`readable_state`]) and chunks;
//! - [`tlog_proof`]: the C2SP proof text, formatted and parsed;
//! - [`history`]: the proof that an identity bundle holds the identity's
//!   whole history (its page of the identity map the anchor signs);
//! - [`export`](mod@export): building a bundle from the stream and the ledger;
//! - [`verify`]: the offline check of a bundle;
//! - `chain`: its checkpoints, key history and consistency proofs, checked.

mod chain;
pub mod export;
pub mod history;
pub mod tlog_proof;
pub mod verify;

use govledger_projector::fold;
use govledger_proto::v1::Checkpoint;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::audit::checkpoints;

pub use export::{ExportDeps, ExportError, export};
pub use verify::{BundleReport, Verdict, verify_bundle};

/// The bundle format this version writes and checks. Version 1 did not sign
/// event times, subjects or the readable parts, version 2 carried no producer
/// keys (provenance), version 3's state was folded by the older drift rule
/// (stream order, not read time), version 4's proofs were bare hex paths
/// (no `tlog-proof`, no consistency proofs), version 5's manifest was signed
/// by the checkpoint key itself (no manifest key), version 6 did not prove an
/// identity's whole history; all are refused with a message, never judged
/// TAMPERED.
pub const BUNDLE_FORMAT: &str = "govledger-evidence/7";
/// The formats older versions wrote, and why this one does not judge them.
pub const OLDER_FORMATS: &[(&str, &str)] = &[
    (
        "govledger-evidence/1",
        "it does not sign its events' times and subjects or its readable parts",
    ),
    (
        "govledger-evidence/2",
        "it carries no producer keys, so its seals (provenance) cannot be checked",
    ),
    (
        "govledger-evidence/3",
        "its state was folded by the older drift rule (stream order, not when a record was read), so this version cannot refold it to the same state",
    ),
    (
        "govledger-evidence/4",
        "its proofs are bare hex paths, not C2SP tlog-proofs, and it holds no consistency proofs between its checkpoints",
    ),
    (
        "govledger-evidence/5",
        "its manifest is signed by the checkpoint key itself, with no endorsed manifest key",
    ),
    (
        "govledger-evidence/6",
        "nothing in it proves it holds the identity's whole history (its anchor signs no identity map)",
    ),
];

/// The prefix every bundle format carries.
pub const BUNDLE_FORMAT_PREFIX: &str = "govledger-evidence/";
/// Bytes a bundle file may hold at most (checked before it is read).
pub const BUNDLE_BYTES_MAX: u64 = 256 << 20;
/// Events one bundle holds at most.
pub const EXPORT_EVENTS_MAX: usize = 100_000;
/// Bytes per `EvidenceChunk`.
pub const CHUNK_BYTES: usize = 1 << 20;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
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
#[serde(deny_unknown_fields)]
pub struct BundleEvent {
    pub seq: u64,
    /// When the stream stored it (signed in the manifest).
    pub stored_at_us: i64,
    /// The subject it was stored on (signed in the manifest).
    pub subject: String,
    /// Hex of the exact stored bytes (what the leaf hash covers).
    pub raw: String,
    /// Its inclusion in the anchor's tree, a C2SP `tlog-proof@v1`
    /// ([`tlog_proof`]); the checkpoint it ends with is the anchor's note.
    pub tlog_proof: String,
    /// Inside the asked time range (else: earlier history the state needs);
    /// recomputed by the verifier from the signed scope and time.
    pub in_range: bool,
    /// The decoded event for people (protobuf JSON mapping); the verifier
    /// decodes the proven bytes again and refuses a bundle whose copy differs.
    #[serde(default)]
    pub event: serde_json::Value,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
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
    /// The same, readable; the verifier decodes the signed bytes again and
    /// refuses a bundle whose copy differs.
    #[serde(default)]
    pub readable: serde_json::Value,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bundle {
    pub format: String,
    pub created_at_us: i64,
    pub stream: String,
    pub scope: Scope,
    /// Hex ed25519 public key of the ledger (its checkpoint key, the anchor's
    /// signer) and its key id.
    pub public_key: String,
    pub key_id: String,
    /// The key that signed the manifest, endorsed by the checkpoint key for
    /// a period that holds the export time.
    pub manifest_key: crate::audit::keys::Endorsement,
    /// Hex protobuf `Checkpoint`s, oldest first; the last is the anchor.
    pub checkpoints: Vec<String>,
    /// Key rotation: the handover checkpoints made before `checkpoints` (hex
    /// protobuf, oldest first), so a checkpoint key pinned before a rotation
    /// reaches the one that signs this bundle. Absent when none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub key_history: Vec<String>,
    /// `consistency[i]`: the hex consistency proof of `checkpoints[i]`'s tree
    /// in `checkpoints[i + 1]`'s (empty when the sizes are equal or the first is 0).
    pub consistency: Vec<Vec<String>>,
    /// Sequences the ledger put in this bundle (signed in the manifest).
    pub manifest_seqs: Vec<u64>,
    /// Hex ed25519 public keys of the producers whose seals the ledger
    /// trusts, sorted (signed in the manifest): the verifier checks the
    /// events' seals against them and folds with them.
    pub producer_keys: Vec<String>,
    pub events: Vec<BundleEvent>,
    pub state: BundleState,
    /// For an identity: the proof that the events hold its whole history up
    /// to the anchor ([`history`]; checked against the anchor's signed map).
    #[serde(default)]
    pub identity_history: Option<history::BundleHistory>,
    /// Hex ed25519 signature of [`manifest`] by the manifest key (strictly verified).
    pub manifest_signature: String,
    /// The auditor's report rendered from this bundle, referenced by digest
    /// and signed by the manifest key after the manifest (when the export
    /// asked for it: `with_report`).
    #[serde(default)]
    pub report: Option<ReportSeal>,
}

/// The digest of the report page rendered from a bundle, signed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportSeal {
    /// Hex SHA-256 of the page's bytes.
    pub sha256: String,
    /// Hex ed25519 signature of [`report_statement`] by the manifest key.
    pub signature: String,
}

/// The bytes a report seal signs: a domain tag, the bundle's manifest
/// signature (so the page belongs to this bundle) and the page's digest.
pub fn report_statement(manifest_signature: &str, sha256: &str) -> Vec<u8> {
    let mut m = ManifestWriter::default();
    m.text("govledger report v1");
    m.text(&manifest_signature.to_ascii_lowercase());
    m.text(&sha256.to_ascii_lowercase());
    m.0
}

/// The report seal of `b`, checked under the manifest key (hex): its digest
/// when there is one.
fn report_sealed(b: &Bundle, manifest_key: &str) -> Result<Option<String>, String> {
    let Some(seal) = &b.report else {
        return Ok(None);
    };
    let sha_ok = seal.sha256.len() == 64 && checkpoints::unhex(&seal.sha256).is_some();
    if !sha_ok
        || !checkpoints::verify_bytes(
            manifest_key,
            &report_statement(&b.manifest_signature, &seal.sha256),
            &seal.signature,
        )
    {
        return Err("the report digest is not signed by the bundle's manifest key: it was changed after export".into());
    }
    Ok(Some(seal.sha256.to_ascii_lowercase()))
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

/// The bytes the manifest signature covers: a domain tag, then every field as
/// an 8-byte big-endian length and its bytes (numbers as 8 big-endian bytes),
/// lists preceded by their count — so no content can pass for another field.
pub fn manifest(b: &Bundle, anchor: &Checkpoint) -> Vec<u8> {
    let mut m = ManifestWriter::default();
    m.text("govledger evidence manifest v4");
    m.text(&b.format);
    m.text(&b.stream);
    m.num(b.created_at_us as u64);
    m.text(&b.public_key.to_ascii_lowercase());
    m.text(&b.key_id);
    m.text(&b.manifest_key.manifest_key.to_ascii_lowercase());
    m.num(b.manifest_key.not_before_us as u64);
    m.num(b.manifest_key.not_after_us as u64);
    m.text(&b.scope.source_id);
    m.num(i64::from(b.scope.entity_type) as u64);
    m.text(&b.scope.external_id);
    m.num(b.scope.from_us as u64);
    m.num(b.scope.to_us as u64);
    m.num(anchor.tree_size);
    m.text(&anchor.root);
    m.text(&state_digest(&b.state));
    m.num(b.producer_keys.len() as u64);
    for k in &b.producer_keys {
        m.text(&k.to_ascii_lowercase());
    }
    m.num(b.manifest_seqs.len() as u64);
    for s in &b.manifest_seqs {
        m.num(*s);
    }
    m.num(b.events.len() as u64);
    for e in &b.events {
        m.num(e.seq);
        m.num(e.stored_at_us as u64);
        m.text(&e.subject);
    }
    m.0
}

/// The length-prefixed encoding of [`manifest`] (and of the manifest key's
/// endorsement, `crate::audit::keys`): every field an 8-byte big-endian
/// length and its bytes, numbers as 8 big-endian bytes.
#[derive(Default)]
pub(crate) struct ManifestWriter(pub(crate) Vec<u8>);

impl ManifestWriter {
    fn bytes(&mut self, b: &[u8]) {
        self.0.extend_from_slice(&(b.len() as u64).to_be_bytes());
        self.0.extend_from_slice(b);
    }
    pub(crate) fn text(&mut self, s: &str) {
        self.bytes(s.as_bytes());
    }
    pub(crate) fn num(&mut self, n: u64) {
        self.bytes(&n.to_be_bytes());
    }
}

/// Whether an event stored at `stored_at_us` falls inside the scope's range
/// (both ends inclusive, 0 = open).
pub fn in_range(scope: &Scope, stored_at_us: i64) -> bool {
    stored_at_us >= scope.from_us && (scope.to_us == 0 || stored_at_us <= scope.to_us)
}

/// The compiled-in protobuf descriptors (to make bytes readable), decoded
/// once per process (the pool is a shared handle: clones are cheap).
pub fn descriptors() -> Result<prost_reflect::DescriptorPool, String> {
    static POOL: std::sync::OnceLock<Result<prost_reflect::DescriptorPool, String>> =
        std::sync::OnceLock::new();
    POOL.get_or_init(|| {
        prost_reflect::DescriptorPool::decode(govledger_proto::FILE_DESCRIPTOR_SET)
            .map_err(|e| e.to_string())
    })
    .clone()
}

/// `bytes` as message `name`, in the protobuf JSON mapping (null when they do
/// not decode).
pub fn readable(
    pool: &prost_reflect::DescriptorPool,
    name: &str,
    bytes: &[u8],
) -> serde_json::Value {
    pool.get_message_by_name(name)
        .and_then(|d| prost_reflect::DynamicMessage::decode(d, bytes).ok())
        .and_then(|m| serde_json::to_value(&m).ok())
        .unwrap_or(serde_json::Value::Null)
}

/// The readable state, decoded from the state's (signed) hex bytes: what the
/// exporter writes and the verifier recomputes.
pub fn readable_state(pool: &prost_reflect::DescriptorPool, s: &BundleState) -> serde_json::Value {
    let dec = |name: &str, h: &str| match checkpoints::unhex(h) {
        Some(bytes) => readable(pool, name, &bytes),
        None => serde_json::Value::Null,
    };
    match (&s.identity, &s.source) {
        (Some(i), _) => serde_json::json!({
            "identity": dec("govledger.v1.IdentityState", i),
            "actions": s.actions.iter().map(|a| dec("govledger.v1.ActionState", a)).collect::<Vec<_>>(),
        }),
        (None, Some(src)) => serde_json::json!({
            "source": dec("govledger.v1.SourceState", src),
        }),
        (None, None) => serde_json::Value::Null,
    }
}

/// The fold of a bundle's events up to its as-of sequence, trusting its
/// producer keys: what the state was folded from (for a bundle
/// [`verify_bundle`] accepted; the auditor's report reads it).
pub fn fold_bundle(b: &Bundle) -> Result<govledger_projector::fold::Working, String> {
    let trust = verify::producer_trust(b)?;
    let mut msgs = Vec::with_capacity(b.events.len());
    for e in &b.events {
        let raw = checkpoints::unhex(&e.raw)
            .ok_or_else(|| format!("sequence {}: raw is not hex", e.seq))?;
        msgs.push(govledger_projector::OwnedMsg {
            seq: e.seq,
            subject: e.subject.clone(),
            stored_at_us: e.stored_at_us,
            payload: raw.into(),
            leaf: None,
        });
    }
    msgs.sort_by_key(|m| m.seq);
    Ok(verify::fold_upto(&msgs, b.state.as_of_seq, trust))
}

/// `data` in chunks of [`CHUNK_BYTES`].
pub fn chunks(data: Vec<u8>) -> Vec<Vec<u8>> {
    data.chunks(CHUNK_BYTES).map(<[u8]>::to_vec).collect()
}
