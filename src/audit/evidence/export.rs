//! Exporting an evidence bundle: reads the stream (through the as-of reader)
//! and the ledger's recorded leaves, signs an anchor checkpoint, and builds the
//! [`Bundle`] the offline check in [`super::verify`] accepts.

use govledger_projector::{OwnedMsg, fold, merkle};
use govledger_proto::v1::{AsOfPoint, Checkpoint, ExportEvidenceRequest};
use prost::Message as _;

use super::{
    BUNDLE_BYTES_MAX, BUNDLE_FORMAT, Bundle, BundleEvent, BundleState, EXPORT_EVENTS_MAX, Scope,
    chunks, descriptors, in_range, manifest, proofs, readable, readable_state,
};
use crate::audit::{
    asof::{AsOfError, AsOfReader, PointAt},
    checkpoints::{self, AuditStreamError},
    verify::VERIFY_CHECKPOINTS_MAX,
};

/// An export reads the anchor tree's recorded leaves, at most this many.
pub const PROOF_LEAVES_MAX: u64 = 5_000_000;

/// What an export reads from.
pub struct ExportDeps<'a> {
    pub store: &'a govledger_projector::Store,
    pub reader: &'a AsOfReader,
    pub checkpointer: &'a checkpoints::Checkpointer,
    pub stream: &'a str,
    /// Who asked for the bundle: recorded in the anchor checkpoint.
    pub requested_by: &'a str,
}

/// Why a bundle could not be exported.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// The compiled-in protobuf descriptors do not decode.
    #[error("{0}")]
    Descriptors(String),
    /// The projection store failed.
    #[error("{0}")]
    Store(String),
    /// The end of the range, the identity or the source could not be read.
    #[error(transparent)]
    AsOf(#[from] AsOfError),
    /// The anchor checkpoint could not be signed and published.
    #[error("cannot sign the anchor checkpoint: {0}")]
    AnchorNotSigned(AuditStreamError),
    /// A source range over [`EXPORT_EVENTS_MAX`] events.
    #[error(
        "the range holds more than {EXPORT_EVENTS_MAX} events of source {source_id:?}; export a shorter time range"
    )]
    SourceRangeTooLong { source_id: String },
    /// An identity history over [`EXPORT_EVENTS_MAX`] events.
    #[error("the identity's history holds more than {EXPORT_EVENTS_MAX} events")]
    IdentityHistoryTooLong,
    /// The anchor's tree is over [`PROOF_LEAVES_MAX`] leaves.
    #[error("the ledger holds {size} events, over the {PROOF_LEAVES_MAX} a proof may read")]
    TreeTooLarge { size: u64 },
    /// The ledger recorded no leaf for a sequence of the anchor's tree.
    #[error("the ledger holds no leaf for sequence {seq}; rebuild it (govledger rebuild)")]
    NoLeaf { seq: u64 },
    /// The recorded leaves do not give the root just signed.
    #[error(
        "the ledger's recorded leaves do not give the root it just signed; run govledger verify"
    )]
    RootMismatch,
    /// A stream message is not what the ledger folded at its sequence.
    #[error("stream sequence {seq} is not what the ledger folded; run govledger verify")]
    LeafMismatch { seq: u64 },
    /// The audit stream's checkpoints could not be read.
    #[error("cannot read checkpoints: {0}")]
    Checkpoints(AuditStreamError),
    /// The anchor just published is not readable from the audit stream yet.
    #[error("the anchor checkpoint is not in the audit stream yet; retry")]
    AnchorNotInStream,
    /// The encoded bundle is over [`BUNDLE_BYTES_MAX`], which `verify-bundle` refuses.
    #[error(
        "the bundle would hold {bytes} bytes, over the {} MiB verify-bundle accepts; export a shorter time range",
        BUNDLE_BYTES_MAX >> 20
    )]
    BundleTooLarge { bytes: u64 },
    /// The bundle could not be encoded as JSON.
    #[error("cannot encode the bundle: {0}")]
    Encode(String),
}

/// Builds the bundle for `req` (validated by the caller).
pub async fn export(d: ExportDeps<'_>, req: &ExportEvidenceRequest) -> Result<Bundle, ExportError> {
    let pool = descriptors().map_err(ExportError::Descriptors)?;
    // The end of the range, then a checkpoint that covers it (the anchor).
    let end = end_of_range(&d, req).await?;
    let anchor = d
        .checkpointer
        .checkpoint(&format!("export by {}", d.requested_by))
        .await
        .map_err(ExportError::AnchorNotSigned)?;
    let (mut state, msgs) = if req.external_id.is_empty() {
        source_state(&d, req, &end).await?
    } else {
        identity_state(&d, req, &end).await?
    };
    state.readable = readable_state(&pool, &state);
    if msgs.len() > EXPORT_EVENTS_MAX {
        return Err(ExportError::IdentityHistoryTooLong);
    }
    let leaves = anchor_leaves(&d, &anchor)?;
    let seqs: Vec<u64> = msgs.iter().map(|m| m.seq).collect();
    let scope = Scope {
        source_id: req.source_id.clone(),
        entity_type: req.entity_type,
        external_id: req.external_id.clone(),
        from_us: req.from_us,
        to_us: req.to_us,
    };
    let events = proven_events(&pool, &scope, &msgs, &seqs, &leaves)?;
    let first_seq = seqs.first().copied().unwrap_or(end.seq);
    let chain = checkpoint_chain(&d, &anchor, first_seq).await?;
    let mut b = Bundle {
        format: BUNDLE_FORMAT.to_owned(),
        created_at_us: chrono::Utc::now().timestamp_micros(),
        stream: d.stream.to_owned(),
        scope,
        public_key: d.checkpointer.public_key_hex(),
        key_id: d.checkpointer.key_id(),
        checkpoints: chain,
        manifest_seqs: seqs,
        producer_keys: d.store.trust().keys_hex(),
        events,
        state,
        manifest_signature: String::new(),
    };
    b.manifest_signature = d.checkpointer.sign_bytes(&manifest(&b, &anchor));
    Ok(b)
}

/// The bundle as pretty JSON, in `EvidenceChunk`-sized pieces; at most
/// [`BUNDLE_BYTES_MAX`], what `verify-bundle` reads.
pub fn encode(b: &Bundle) -> Result<Vec<Vec<u8>>, ExportError> {
    let bytes = serde_json::to_vec_pretty(b).map_err(|e| ExportError::Encode(e.to_string()))?;
    if bytes.len() as u64 > BUNDLE_BYTES_MAX {
        return Err(ExportError::BundleTooLarge {
            bytes: bytes.len() as u64,
        });
    }
    Ok(chunks(bytes))
}

/// The point the range ends at: its end time, or the last applied sequence.
async fn end_of_range(
    d: &ExportDeps<'_>,
    req: &ExportEvidenceRequest,
) -> Result<AsOfPoint, ExportError> {
    let point = if req.to_us > 0 {
        PointAt::TimeUs(req.to_us)
    } else {
        let applied = d
            .store
            .meta()
            .map_err(|e| ExportError::Store(e.to_string()))?
            .last_applied_seq;
        PointAt::Seq(std::num::NonZeroU64::new(applied).unwrap_or(std::num::NonZeroU64::MIN))
    };
    Ok(d.reader.resolve(point).await?)
}

/// The identity's state (and the states of the actions on it) as of `end`, and
/// its whole history up to `end`.
async fn identity_state(
    d: &ExportDeps<'_>,
    req: &ExportEvidenceRequest,
    end: &AsOfPoint,
) -> Result<(BundleState, Vec<OwnedMsg>), ExportError> {
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
    // One read and one fold: the identity's history holds every event of the
    // actions on it, so the same fold gives their states as of the end.
    let (ident, w, msgs) = d.reader.identity_fold(&key, end).await?;
    for (_, st) in w.actions.iter() {
        state.actions.push(fold::hex(&st.encode_to_vec()));
    }
    state.identity = Some(fold::hex(&ident.encode_to_vec()));
    Ok((state, msgs))
}

/// The source's state as of `end`, and its events from `req.from_us` to `end`
/// (at most [`EXPORT_EVENTS_MAX`]).
async fn source_state(
    d: &ExportDeps<'_>,
    req: &ExportEvidenceRequest,
    end: &AsOfPoint,
) -> Result<(BundleState, Vec<OwnedMsg>), ExportError> {
    let mut state = BundleState {
        as_of_seq: end.seq,
        as_of_stored_at_us: end.stored_at_us,
        ..Default::default()
    };
    let (src, _) = d.reader.source(&req.source_id, end).await?;
    state.source = Some(fold::hex(&src.encode_to_vec()));
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
        return Err(ExportError::SourceRangeTooLong {
            source_id: req.source_id.clone(),
        });
    }
    Ok((state, msgs))
}

/// The anchor's leaves, as the projector recorded them; they must give the
/// signed root.
fn anchor_leaves(
    d: &ExportDeps<'_>,
    anchor: &Checkpoint,
) -> Result<Vec<merkle::Hash>, ExportError> {
    let size = anchor.tree_size;
    if size > PROOF_LEAVES_MAX {
        return Err(ExportError::TreeTooLarge { size });
    }
    let leaves = d
        .store
        .leaves_upto(size)
        .map_err(|e| ExportError::Store(e.to_string()))?
        .map_err(|seq| ExportError::NoLeaf { seq })?;
    if merkle::hex(&merkle::root(&leaves)) != anchor.root {
        return Err(ExportError::RootMismatch);
    }
    Ok(leaves)
}

/// The bundle's events with their inclusion proofs; every exported event's
/// bytes must give its recorded leaf.
fn proven_events(
    pool: &prost_reflect::DescriptorPool,
    scope: &Scope,
    msgs: &[OwnedMsg],
    seqs: &[u64],
    leaves: &[merkle::Hash],
) -> Result<Vec<BundleEvent>, ExportError> {
    let proofs = proofs(seqs, leaves);
    let mut events = Vec::with_capacity(msgs.len());
    for (m, proof) in msgs.iter().zip(proofs) {
        if merkle::leaf_hash(m.seq, &m.payload) != leaves[m.seq as usize - 1] {
            return Err(ExportError::LeafMismatch { seq: m.seq });
        }
        events.push(BundleEvent {
            seq: m.seq,
            stored_at_us: m.stored_at_us,
            subject: m.subject.clone(),
            raw: fold::hex(&m.payload),
            proof,
            in_range: in_range(scope, m.stored_at_us),
            event: readable(pool, "govledger.v1.Event", &m.payload),
        });
    }
    Ok(events)
}

/// The chain from the last checkpoint before `first_seq` up to the anchor, as
/// hex protobuf.
async fn checkpoint_chain(
    d: &ExportDeps<'_>,
    anchor: &Checkpoint,
    first_seq: u64,
) -> Result<Vec<String>, ExportError> {
    let mut cps = checkpoints::read_all(&d.reader.js, VERIFY_CHECKPOINTS_MAX)
        .await
        .map_err(ExportError::Checkpoints)?;
    cps.retain(|c| c.stream == d.stream);
    let anchor_hash = checkpoints::checkpoint_hash(anchor);
    let anchor_at = cps
        .iter()
        .rposition(|c| checkpoints::checkpoint_hash(c) == anchor_hash)
        .ok_or(ExportError::AnchorNotInStream)?;
    cps.truncate(anchor_at + 1);
    let start = cps
        .iter()
        .rposition(|c| c.tree_size < first_seq)
        .unwrap_or(0);
    Ok(cps[start..]
        .iter()
        .map(|c| fold::hex(&c.encode_to_vec()))
        .collect())
}
