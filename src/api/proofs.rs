//! The audit answers of [`Queries`]: inclusion and consistency proofs,
//! checkpoints (signed, listed, cosigned by witnesses) and VerifyRange.

use govledger_projector::{
    Store, merkle,
    tiles::{TileError, Tiles},
};
use govledger_proto::v1::{Checkpoint, ConsistencyProof, InclusionProof, VerifyRangeResponse};

use super::queries::{Queries, QueryError};
use crate::audit::{
    checkpoints::{self, CosignatureError},
    verify,
};

impl Queries {
    /// The size of the tree an inclusion proof is asked in (0 = the projector's now).
    pub fn tree_size(&self, asked: u64) -> Result<u64, QueryError> {
        if asked == 0 {
            Ok(self.store.meta()?.merkle_size)
        } else {
            Ok(asked)
        }
    }

    /// Runs `f` over the projection's tiles on a blocking thread (tile
    /// reads and the first writes of upper tiles go through sled), for a
    /// tree of `size` leaves the projection holds.
    async fn with_tiles<T: Send + 'static>(
        &self,
        size: u64,
        f: impl FnOnce(&Tiles<'_, Store>) -> Result<T, TileError> + Send + 'static,
    ) -> Result<T, QueryError> {
        let applied = self.store.meta()?.merkle_size;
        if size > applied {
            return Err(QueryError::TreePastApplied { size, applied });
        }
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || f(&Tiles::new(store.as_ref())))
            .await
            .map_err(|e| QueryError::DigestTask(e.to_string()))?
            .map_err(QueryError::Tiles)
    }

    /// The inclusion proof of `seq` in the tree of `size` (both validated),
    /// from the kept tiles: O(log size) tile reads.
    pub async fn inclusion_proof(&self, seq: u64, size: u64) -> Result<InclusionProof, QueryError> {
        let (leaf, path, root) = self
            .with_tiles(size, move |t| {
                let leaf = t.read(0, (seq - 1) / 256, (seq - 1) % 256 + 1)?;
                let leaf: [u8; 32] = leaf[leaf.len() - 32..].try_into().unwrap_or([0; 32]);
                Ok((leaf, t.inclusion_proof(seq - 1, size)?, t.root(size)?))
            })
            .await?;
        Ok(InclusionProof {
            seq,
            tree_size: size,
            leaf_hash: merkle::hex(&leaf),
            path: path.iter().map(merkle::hex).collect(),
            root: merkle::hex(&root),
        })
    }

    /// The consistency proof of the tree of `size1` in that of `size2`
    /// (validated), from the kept tiles.
    pub async fn consistency_proof(
        &self,
        size1: u64,
        size2: u64,
    ) -> Result<ConsistencyProof, QueryError> {
        let (root1, root2, path) = self
            .with_tiles(size2, move |t| {
                Ok((
                    t.root(size1)?,
                    t.root(size2)?,
                    t.consistency_proof(size1, size2)?,
                ))
            })
            .await?;
        Ok(ConsistencyProof {
            size1,
            size2,
            root1: merkle::hex(&root1),
            root2: merkle::hex(&root2),
            path: path.iter().map(merkle::hex).collect(),
        })
    }

    /// Signs and publishes a checkpoint of the projector's root now.
    pub async fn checkpoint(&self, requested_by: &str) -> Result<Checkpoint, QueryError> {
        self.checkpointer
            .checkpoint(requested_by)
            .await
            .map_err(QueryError::CheckpointPublish)
    }

    /// This ledger's newest checkpoint that carries a signed note.
    pub async fn newest_checkpoint(&self) -> Result<Option<Checkpoint>, QueryError> {
        self.checkpointer
            .newest_own()
            .await
            .map_err(QueryError::CheckpointRead)
    }

    /// The newest `limit` checkpoints, newest first.
    pub async fn checkpoints(&self, limit: u32) -> Result<Vec<Checkpoint>, QueryError> {
        self.checkpointer
            .list(limit)
            .await
            .map_err(QueryError::CheckpointRead)
    }

    /// This ledger's handover checkpoints (at most `limit`), oldest first,
    /// then its newest checkpoint.
    pub async fn key_handovers(&self, limit: u32) -> Result<Vec<Checkpoint>, QueryError> {
        let mut cps = self
            .checkpointer
            .all(verify::VERIFY_CHECKPOINTS_MAX)
            .await
            .map_err(QueryError::CheckpointRead)?;
        cps.retain(|c| c.stream == self.stream);
        let newest = cps.pop();
        let mut out: Vec<Checkpoint> = cps
            .into_iter()
            .filter(|c| !c.next_public_key.is_empty())
            .take(limit as usize)
            .collect();
        out.extend(newest);
        Ok(out)
    }

    /// The last sequence a verification may read up to: `to_seq` (0 = the
    /// last applied), not past what the projector has applied.
    pub fn verify_end(&self, to_seq: u64) -> Result<u64, QueryError> {
        let applied = self.store.meta()?.last_applied_seq;
        let to = if to_seq == 0 { applied } else { to_seq };
        if to > applied {
            return Err(QueryError::PastApplied { to, applied });
        }
        Ok(to)
    }

    /// Verifies `from..=to` of `stream` against the recorded leaves and this
    /// ledger's signed checkpoints (whose chain is checked first).
    pub async fn verify_range(
        &self,
        stream: String,
        from: u64,
        to: u64,
    ) -> Result<VerifyRangeResponse, QueryError> {
        if stream != self.stream {
            // A copy named by the client must exist: a missing one is not a
            // tampered ledger.
            match self.js.get_stream(&stream).await {
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        async_nats::jetstream::context::GetStreamErrorKind::JetStream(j)
                            if j.error_code()
                                == async_nats::jetstream::ErrorCode::STREAM_NOT_FOUND
                    ) =>
                {
                    return Err(QueryError::NoStream { name: stream });
                }
                Err(e) => {
                    return Err(QueryError::StreamUnreachable {
                        stream,
                        reason: e.to_string(),
                    });
                }
            }
        }
        let log = self
            .checkpointer
            .log(verify::VERIFY_CHECKPOINTS_MAX)
            .await
            .map_err(QueryError::CheckpointRead)?;
        let mut cps = log.checkpoints;
        cps.retain(|cp| cp.stream == self.stream);
        let sequence = match checkpoints::verify_chain(&cps, &self.checkpointer.public_key_hex()) {
            Ok(s) => s,
            Err(e) => {
                return Ok(VerifyRangeResponse {
                    ok: false,
                    problem: format!("the signed checkpoints do not verify: {e}"),
                    stream,
                    from_seq: from,
                    to_seq: to,
                    ..Default::default()
                });
            }
        };
        let witnessed = match self.checkpointer.witnessed(&log.cosigned, &sequence) {
            Ok(w) => w,
            Err(e) => {
                return Ok(VerifyRangeResponse {
                    ok: false,
                    problem: format!("a stored witness cosignature does not verify: {e}"),
                    stream,
                    from_seq: from,
                    to_seq: to,
                    ..Default::default()
                });
            }
        };
        let mut resp = verify::verify_range(&self.js, &self.store, cps, &stream, from, to)
            .await
            .map_err(|reason| QueryError::StreamUnreachable { stream, reason })?;
        resp.witnessed = witnessed
            .iter()
            .map(|w| format!("size {}: {}", w.size, w.witnesses.join(", ")))
            .collect();
        Ok(resp)
    }

    /// Keeps a checkpoint note cosigned by configured witnesses.
    pub async fn add_cosignature(
        &self,
        note: &str,
    ) -> Result<crate::audit::witness::Witnessed, QueryError> {
        self.checkpointer
            .add_cosignature(note)
            .await
            .map_err(|e| match e {
                CosignatureError::Refused(r) => QueryError::Cosignature(r),
                CosignatureError::Stream(s) => QueryError::CheckpointPublish(s),
            })
    }
}
