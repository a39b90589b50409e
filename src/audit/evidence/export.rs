//! Exporting an evidence bundle: reads the stream (through the as-of reader)
//! and the ledger's tiles, signs an anchor checkpoint, and builds the
//! [`Bundle`] the offline check in [`super::verify`] accepts.
//!
//! Cost: the events of the scope (at most [`EXPORT_EVENTS_MAX`]) and, per
//! event and per checkpoint, O(log n) tile reads — never the whole tree.

use govledger_projector::{
    OwnedMsg, fold, merkle,
    tiles::{TileError, Tiles},
};
use govledger_proto::v1::{AsOfPoint, Checkpoint, ExportEvidenceRequest};
use prost::Message as _;

use super::{
    BUNDLE_BYTES_MAX, BUNDLE_FORMAT, Bundle, BundleEvent, BundleState, EXPORT_EVENTS_MAX, Scope,
    chunks, descriptors, in_range, manifest, readable, readable_state, tlog_proof,
};
use crate::audit::{
    asof::{AsOfError, AsOfReader, PointAt},
    checkpoints::{self, AuditStreamError},
    verify::VERIFY_CHECKPOINTS_MAX,
};

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
    /// The ledger's tiles could not give a root or a proof.
    #[error("the ledger's tiles: {0}; run govledger verify")]
    Tiles(TileError),
    /// The tiles do not give the root just signed.
    #[error("the ledger's tiles do not give the root it just signed; run govledger verify")]
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
    let identity = (!req.external_id.is_empty()).then(|| {
        (
            req.source_id.clone(),
            req.entity_type,
            req.external_id.clone(),
        )
    });
    // The anchor signs the identity map; the identity's page of it is read
    // from the same state.
    let (anchor, history) = d
        .checkpointer
        .checkpoint_proving(&format!("export by {}", d.requested_by), identity.as_ref())
        .await
        .map_err(ExportError::AnchorNotSigned)?;
    let (mut state, msgs) = match &identity {
        None => source_state(&d, req, &end).await?,
        Some(key) => {
            let found = identity_state(&d, key, &end, anchor.tree_size).await?;
            // Known at the end of the range, so known to the map now.
            if history.is_none() {
                return Err(ExportError::Store(
                    "the identity is not in the identity map the anchor signs; run govledger verify".into(),
                ));
            }
            found
        }
    };
    state.readable = readable_state(&pool, &state);
    if msgs.len() > EXPORT_EVENTS_MAX {
        return Err(ExportError::IdentityHistoryTooLong);
    }
    let tiles = Tiles::new(d.store);
    anchor_root(&tiles, &anchor)?;
    let seqs: Vec<u64> = msgs.iter().map(|m| m.seq).collect();
    let scope = Scope {
        source_id: req.source_id.clone(),
        entity_type: req.entity_type,
        external_id: req.external_id.clone(),
        from_us: req.from_us,
        to_us: req.to_us,
    };
    let events = proven_events(&pool, &scope, &msgs, &tiles, &anchor)?;
    let first_seq = seqs.first().copied().unwrap_or(end.seq);
    let (key_history, chain) = checkpoint_chain(&d, &anchor, first_seq).await?;
    let consistency = consistency_proofs(&tiles, &chain)?;
    // Endorsed before the export time it must cover.
    let manifest_key = d.checkpointer.manifest_endorsement();
    let mut b = Bundle {
        format: BUNDLE_FORMAT.to_owned(),
        created_at_us: chrono::Utc::now().timestamp_micros(),
        manifest_key,
        stream: d.stream.to_owned(),
        scope,
        public_key: d.checkpointer.public_key_hex(),
        key_id: d.checkpointer.key_id(),
        checkpoints: chain
            .iter()
            .map(|c| fold::hex(&c.encode_to_vec()))
            .collect(),
        key_history: key_history
            .iter()
            .map(|c| fold::hex(&c.encode_to_vec()))
            .collect(),
        consistency,
        manifest_seqs: seqs,
        producer_keys: d.store.trust().keys_hex(),
        events,
        state,
        identity_history: history.as_ref().map(Into::into),
        manifest_signature: String::new(),
        report: None,
    };
    b.manifest_signature = d.checkpointer.sign_manifest(&manifest(&b, &anchor));
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
/// its whole history up to the anchor's size `through` (what the anchor's
/// identity map answers for).
async fn identity_state(
    d: &ExportDeps<'_>,
    key: &govledger_projector::keys::IdentityKey,
    end: &AsOfPoint,
    through: u64,
) -> Result<(BundleState, Vec<OwnedMsg>), ExportError> {
    let mut state = BundleState {
        as_of_seq: end.seq,
        as_of_stored_at_us: end.stored_at_us,
        ..Default::default()
    };
    // One read and one fold: the identity's history holds every event of the
    // actions on it, so the same fold gives their states as of the end.
    let (ident, w, msgs) = d.reader.identity_fold(key, end, through).await?;
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
        .source_slice(&req.source_id, (req.from_us, 0), end.seq, |m, _| {
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

/// The tiles give the anchor's signed root.
fn anchor_root(
    tiles: &Tiles<'_, govledger_projector::Store>,
    anchor: &Checkpoint,
) -> Result<(), ExportError> {
    let root = tiles.root(anchor.tree_size).map_err(ExportError::Tiles)?;
    if merkle::hex(&root) != anchor.root {
        return Err(ExportError::RootMismatch);
    }
    Ok(())
}

/// The bundle's events, each with its `tlog-proof@v1` against the anchor;
/// every exported event's bytes must give the leaf the ledger recorded.
fn proven_events(
    pool: &prost_reflect::DescriptorPool,
    scope: &Scope,
    msgs: &[OwnedMsg],
    tiles: &Tiles<'_, govledger_projector::Store>,
    anchor: &Checkpoint,
) -> Result<Vec<BundleEvent>, ExportError> {
    let mut events = Vec::with_capacity(msgs.len());
    for m in msgs {
        let index = m.seq - 1;
        let block = tiles
            .read(0, index / 256, index % 256 + 1)
            .map_err(ExportError::Tiles)?;
        if block[block.len() - 32..] != merkle::leaf_hash(m.seq, &m.payload) {
            return Err(ExportError::LeafMismatch { seq: m.seq });
        }
        let path = tiles
            .inclusion_proof(index, anchor.tree_size)
            .map_err(ExportError::Tiles)?;
        events.push(BundleEvent {
            seq: m.seq,
            stored_at_us: m.stored_at_us,
            subject: m.subject.clone(),
            raw: fold::hex(&m.payload),
            tlog_proof: tlog_proof::format(index, &path, &anchor.note),
            in_range: in_range(scope, m.stored_at_us),
            event: readable(pool, "govledger.v1.Event", &m.payload),
        });
    }
    Ok(events)
}

/// The consistency proof of each checkpoint of `chain` in the next one.
fn consistency_proofs(
    tiles: &Tiles<'_, govledger_projector::Store>,
    chain: &[Checkpoint],
) -> Result<Vec<Vec<String>>, ExportError> {
    chain
        .windows(2)
        .map(|w| {
            let (old, new) = (w[0].tree_size, w[1].tree_size);
            if old == 0 || old >= new {
                return Ok(Vec::new()); // nothing to prove, or a rollback the verifier names
            }
            let path = tiles
                .consistency_proof(old, new)
                .map_err(ExportError::Tiles)?;
            Ok(path.iter().map(merkle::hex).collect())
        })
        .collect()
}

/// The chain from the last checkpoint before `first_seq` up to the anchor,
/// and the key handovers before it (the key history).
async fn checkpoint_chain(
    d: &ExportDeps<'_>,
    anchor: &Checkpoint,
    first_seq: u64,
) -> Result<(Vec<Checkpoint>, Vec<Checkpoint>), ExportError> {
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
    let key_history = cps
        .drain(..start)
        .filter(|c| !c.next_public_key.is_empty())
        .collect();
    Ok((key_history, cps))
}
