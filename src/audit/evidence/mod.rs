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
//!
//! Layout:
//! - here: the bundle format ([`Bundle`] and its parts), the signed
//!   [`manifest`] text, proofs and chunks;
//! - [`export`](mod@export): building a bundle from the stream and the ledger;
//! - [`verify`]: the offline check of a bundle.

pub mod export;
pub mod verify;

use govledger_projector::{fold, merkle};
use govledger_proto::v1::Checkpoint;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

pub use export::{ExportDeps, ExportError, export};
pub use verify::{BundleReport, verify_bundle};

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
