//! Signed checkpoints: on a cadence (and on demand) the Merkle root the
//! projector keeps is signed with the ledger's ed25519 key, chained to the
//! previous checkpoint, and published on `govledger.audit.checkpoint` into its own
//! immutable stream. Empty periods still get a checkpoint.
//!
//! The signed statement is plain text (so any tool can check it):
//! `govledger checkpoint v1\nstream=S\nsize=N\nroot=HEX\ncreated_at_us=T\nprevious=HEX\nkey_id=K\n`.
//! then `requested_by=P\n` and `identity_map=HEX\n` when set. A checkpoint's
//! hash (what the next one names) is SHA-256 of that statement. The identity
//! map (`govledger_projector::identity_map`) is the commitment to every
//! identity's whole history at that size.
//!
//! The same tree head is also a C2SP signed note ([`crate::audit::note`]):
//! `<origin>\n<size>\n<base64 root>\n` (then `identity-map <base64 root>\n`,
//! a tlog-checkpoint extension line) signed by the same key, so tools we
//! did not write verify it. A chain is also checked for forks (one size, two
//! roots) and rollbacks (a size smaller than the one before it).
//!
//! Layout:
//! - here: the audit stream (reading it), and the [`Checkpointer`] that signs
//!   and appends checkpoints;
//! - `signed`: one checkpoint, pure — statement, note extension, hash,
//!   signing, and the checks of a checkpoint and a chain (re-exported here);
//! - `rotation`: key handovers, pure — the key sequence a chain proves, each
//!   key's period, and pinning (re-exported here).

mod rotation;
mod signed;
pub use rotation::*;
pub use signed::*;

use std::{sync::Arc, time::Duration};

use async_nats::jetstream;
use ed25519_dalek::SigningKey;
use govledger_projector::{Store, fold::hex, identity_map::HistoryProof, merkle};
use govledger_proto::v1::Checkpoint;
use prost::Message as _;
use sha2::{Digest as _, Sha256};
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

pub use crate::audit::keys::{KeyProblem, key_id, parse_public_key, verify_bytes};

/// The stream and subject checkpoints live on.
pub const AUDIT_STREAM: &str = "GOVLEDGER_AUDIT";
pub const CHECKPOINT_SUBJECT: &str = "govledger.audit.checkpoint";
/// Default cadence.
pub const DEFAULT_CHECKPOINT_INTERVAL_MS: u64 = 60_000;
/// Checkpoints listed at most per call.
pub const LIST_CHECKPOINTS_MAX: u32 = 1_000;

/// Why a cosignature was not kept, or the witnesses could not be read.
#[derive(Debug, thiserror::Error)]
pub enum CosignatureError {
    #[error(transparent)]
    Refused(#[from] crate::audit::witness::CosignError),
    #[error(transparent)]
    Stream(#[from] AuditStreamError),
}

/// Why the audit stream could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum AuditStreamError {
    /// NATS or JetStream failed (the client's message).
    #[error("{0}")]
    Nats(String),
    /// The projection store failed (its message).
    #[error("{0}")]
    Store(String),
    /// More checkpoints than one call reads.
    #[error("the audit stream holds {total} checkpoints, over the {max} one call reads")]
    TooMany { total: u64, max: usize },
    /// No message arrived within the read timeout.
    #[error("audit stream read stalled")]
    Stalled,
    /// The stream ended before its counted messages were read.
    #[error("audit stream ended early")]
    EndedEarly,
    /// A message on the audit stream is not a checkpoint.
    #[error("audit stream message is not a Checkpoint: {0}")]
    NotACheckpoint(prost::DecodeError),
    /// The projector's stored Merkle frontier does not decode.
    #[error("the stored Merkle frontier is inconsistent")]
    FrontierInconsistent,
    /// This process's projection is behind the last checkpoint (another
    /// process's): signing now would go back.
    #[error(
        "this node's projection holds {have} events, the last checkpoint {last}: try again once it caught up"
    )]
    Behind { have: u64, last: u64 },
    /// The chain has handed over from this node's signing key (or to another
    /// key): what it signed would be refused.
    #[error(
        "the checkpoint chain's key is {chain} (since its handover at size {at}), but audit.signing_key_file holds key {ours}: give this node the current key"
    )]
    KeyRetired {
        ours: String,
        chain: String,
        at: u64,
    },
}

fn nats(e: impl std::fmt::Display) -> AuditStreamError {
    AuditStreamError::Nats(e.to_string())
}

/// What the audit stream holds, oldest first: the checkpoints and the
/// cosigned notes handed in ([`crate::audit::witness`]).
#[derive(Debug, Default)]
pub struct AuditLog {
    pub checkpoints: Vec<Checkpoint>,
    pub cosigned: Vec<String>,
}

/// Every checkpoint in the audit stream (at most `max` audit messages),
/// oldest first.
pub async fn read_all(
    js: &jetstream::Context,
    max: usize,
) -> Result<Vec<Checkpoint>, AuditStreamError> {
    Ok(read_log(js, max).await?.checkpoints)
}

/// The audit stream in one pass, reading at most `max` messages.
pub async fn read_log(js: &jetstream::Context, max: usize) -> Result<AuditLog, AuditStreamError> {
    use futures::StreamExt as _;
    // `get_stream` answers with the stream's info: its count needs no second request.
    let stream = js.get_stream(AUDIT_STREAM).await.map_err(nats)?;
    let total = stream.cached_info().state.messages;
    if total as usize > max {
        return Err(AuditStreamError::TooMany { total, max });
    }
    let mut log = AuditLog::default();
    if total == 0 {
        return Ok(log);
    }
    let mut msgs = crate::audit::replay::ordered_messages(
        &stream,
        jetstream::consumer::DeliverPolicy::All,
        Vec::new(),
    )
    .await
    .map_err(nats)?;
    for _ in 0..total {
        let m = tokio::time::timeout(Duration::from_secs(5), msgs.next())
            .await
            .map_err(|_| AuditStreamError::Stalled)?
            .ok_or(AuditStreamError::EndedEarly)?
            .map_err(nats)?;
        match m.subject.as_str() {
            CHECKPOINT_SUBJECT => log.checkpoints.push(
                Checkpoint::decode(m.payload.as_ref()).map_err(AuditStreamError::NotACheckpoint)?,
            ),
            crate::audit::witness::COSIGNATURE_SUBJECT => log
                .cosigned
                .push(String::from_utf8_lossy(&m.payload).into_owned()),
            _ => {}
        }
    }
    Ok(log)
}

/// Tries of appending a checkpoint when another process appended first.
const APPEND_TRIES: u32 = 5;
/// How long a checkpointer waits for its projection to reach the size of the
/// last checkpoint (another process's) before it gives up signing.
const CATCH_UP_MS: u64 = 10_000;

/// The last checkpoint in the audit stream: its stream sequence (0: none)
/// and its hash ("" when none).
async fn last_checkpoint(
    js: &jetstream::Context,
) -> Result<(u64, Option<Checkpoint>), AuditStreamError> {
    let stream = js.get_stream(AUDIT_STREAM).await.map_err(nats)?;
    match stream
        .get_last_raw_message_by_subject(CHECKPOINT_SUBJECT)
        .await
    {
        Ok(m) => Ok((
            m.sequence,
            Some(Checkpoint::decode(m.payload.as_ref()).map_err(AuditStreamError::NotACheckpoint)?),
        )),
        Err(e)
            if matches!(
                e.kind(),
                jetstream::stream::LastRawMessageErrorKind::NoMessageFound
            ) =>
        {
            Ok((0, None))
        }
        Err(e) => Err(nats(e)),
    }
}

/// The process's checkpointer: one signer. Every checkpoint names the last
/// one in the audit stream (whichever process made it) and is appended only
/// if that is still the last (JetStream's expected last subject sequence), so
/// several processes sharing the signing key make one chain, never a fork or
/// a rollback.
pub struct Checkpointer {
    key: SigningKey,
    /// The key `key` replaces (`audit.previous_signing_key_file`): while the
    /// chain's last checkpoint is its, the next one is the handover to `key`.
    previous_key: Option<SigningKey>,
    /// Signs bundle manifests; endorsed by `key` ([`crate::audit::keys`]).
    manifest: crate::audit::keys::ManifestKey,
    /// `audit.origin`: the origin line of its signed notes (else
    /// [`crate::audit::note::default_origin`] of the signing key).
    configured_origin: Option<String>,
    /// The witnesses whose cosignatures count (`audit.witness_keys`).
    witness_keys: Vec<String>,
    js: jetstream::Context,
    store: Arc<Store>,
    stream: String,
    /// One checkpoint at a time from this process.
    signing: Mutex<()>,
    /// New checkpoints, for the witnesses to cosign (`[[audit.witnesses]]`).
    pub witness_queue: Option<tokio::sync::mpsc::Sender<Checkpoint>>,
}

impl Checkpointer {
    /// Ensures the audit stream and picks up the chain where it ended.
    pub async fn start(
        (key, manifest): (SigningKey, crate::audit::keys::ManifestKey),
        js: jetstream::Context,
        store: Arc<Store>,
        (stream, replication): (String, &govledger_stream::contract::Replication),
        (configured_origin, witness_keys): (Option<String>, Vec<String>),
    ) -> Result<Self, AuditStreamError> {
        let spec = govledger_stream::StreamSpec {
            name: AUDIT_STREAM.to_owned(),
            subjects: vec!["govledger.audit.>".to_owned()],
            ..Default::default()
        }
        .replicated(replication);
        govledger_stream::ensure_stream(&js, &spec)
            .await
            .map_err(nats)?;
        Ok(Self {
            key,
            previous_key: None,
            manifest,
            configured_origin,
            witness_keys,
            js,
            store,
            stream,
            signing: Mutex::new(()),
            witness_queue: None,
        })
    }

    /// The key this one replaces: the first checkpoint it signs hands over.
    pub fn with_previous_key(mut self, previous: Option<SigningKey>) -> Self {
        self.previous_key = previous;
        self
    }

    /// The origin of the notes `key` signs.
    fn origin_of(&self, key: &SigningKey) -> String {
        self.configured_origin.clone().unwrap_or_else(|| {
            crate::audit::note::default_origin(&self.stream, &key_id(&key.verifying_key()))
        })
    }

    pub fn public_key_hex(&self) -> String {
        hex(self.key.verifying_key().as_bytes())
    }

    pub fn key_id(&self) -> String {
        key_id(&self.key.verifying_key())
    }

    /// The verifier key of its signed notes (what the operator publishes).
    pub fn verifier_key(&self) -> String {
        crate::audit::note::verifier_key(&self.origin_of(&self.key), &self.key.verifying_key())
    }

    /// Hex ed25519 signature of `msg` with the ledger's key (evidence manifests).
    /// The manifest key's endorsement that holds now (renewed when run out).
    pub fn manifest_endorsement(&self) -> crate::audit::keys::Endorsement {
        self.manifest
            .endorsement(&self.key, chrono::Utc::now().timestamp_micros())
    }

    /// The consistency proof of the tree of `old` leaves in the tree of `size`
    /// (from the projector's tiles).
    pub fn consistency_proof(&self, old: u64, size: u64) -> Result<Vec<merkle::Hash>, String> {
        govledger_projector::tiles::Tiles::new(self.store.as_ref())
            .consistency_proof(old, size)
            .map_err(|e| e.to_string())
    }

    /// Hex signature of a bundle manifest by the manifest key.
    pub fn sign_manifest(&self, msg: &[u8]) -> String {
        self.manifest.sign(msg)
    }

    /// Signs the projector's current root after the last checkpoint in the
    /// audit stream, appends it and returns it. `requested_by` (the
    /// principal, or `interval`) is part of what is signed.
    pub async fn checkpoint(&self, requested_by: &str) -> Result<Checkpoint, AuditStreamError> {
        Ok(self.checkpoint_proving(requested_by, None).await?.0)
    }

    /// [`Self::checkpoint`], and the proof of `identity`'s history in the
    /// identity map it signs (read from the same state; `None` when the
    /// ledger has no such identity).
    pub async fn checkpoint_proving(
        &self,
        requested_by: &str,
        identity: Option<&govledger_projector::keys::IdentityKey>,
    ) -> Result<(Checkpoint, Option<HistoryProof>), AuditStreamError> {
        let _one = self.signing.lock().await;
        let mut tries = 0;
        loop {
            tries += 1;
            let (last_seq, last) = last_checkpoint(&self.js).await?;
            let own = last.as_ref().filter(|c| c.stream == self.stream);
            // Never below the last checkpoint of this ledger's own stream.
            let floor = own.map_or(0, |c| c.tree_size);
            let handing = self.handing_over_after(own).await?;
            let (tree, map, proof) = self.tree_at_least(floor, identity).await?;
            let body = Checkpoint {
                stream: self.stream.clone(),
                tree_size: tree.size(),
                root: merkle::hex(&tree.root()),
                created_at_us: chrono::Utc::now().timestamp_micros(),
                previous: last.as_ref().map(checkpoint_hash).unwrap_or_default(),
                requested_by: requested_by.to_owned(),
                identity_map: merkle::hex(&map),
                ..Default::default()
            };
            let (cp, signer) = match handing {
                Some(old) => (hand_over(old, &self.key, body), old),
                None => (sign_checkpoint(&self.key, body), &self.key),
            };
            let cp = with_note(cp, signer, &self.origin_of(signer)).map_err(|e| {
                AuditStreamError::Store(format!("signing the checkpoint note: {e}"))
            })?;
            let msg = jetstream::message::PublishMessage::build()
                .payload(cp.encode_to_vec().into())
                .message_id(checkpoint_hash(&cp))
                .expected_last_subject_sequence(last_seq);
            let acked = match self.js.send_publish(CHECKPOINT_SUBJECT, msg).await {
                Ok(ack) => ack.await,
                Err(e) => return Err(nats(e)),
            };
            match acked {
                Ok(_) => {
                    if let Some(q) = &self.witness_queue {
                        // Full: the witnesses are behind; the next checkpoint asks again.
                        let _ = q.try_send(cp.clone());
                    }
                    if handing.is_some() {
                        // Handed over: what is asked for is signed by the new key.
                        tracing::info!(size = cp.tree_size, from = %cp.key_id, to = %self.key_id(),
                            "checkpoint key handed over; audit.previous_signing_key_file may be removed");
                        tries = 0;
                        continue;
                    }
                    return Ok((cp, proof));
                }
                // Another process appended first: sign again after it.
                Err(e) if tries < APPEND_TRIES => {
                    tracing::debug!(error = %e, "another checkpoint was appended first; signing again");
                }
                Err(e) => return Err(nats(e)),
            }
        }
    }

    /// The previous key when the chain's last checkpoint (`own`, this
    /// stream's) is its and hands over nothing yet: the next checkpoint is
    /// its handover to this node's key. Refuses to sign when the chain has
    /// handed over to another key.
    async fn handing_over_after(
        &self,
        own: Option<&Checkpoint>,
    ) -> Result<Option<&SigningKey>, AuditStreamError> {
        let Some(last) = own else { return Ok(None) };
        let ours = self.public_key_hex();
        if !last.next_public_key.is_empty() {
            if last.next_public_key.eq_ignore_ascii_case(&ours) {
                return Ok(None);
            }
            return Err(AuditStreamError::KeyRetired {
                ours: self.key_id(),
                chain: parse_public_key(&last.next_public_key)
                    .map(|k| key_id(&k))
                    .unwrap_or_else(|_| last.next_public_key.clone()),
                at: last.tree_size,
            });
        }
        if last.public_key.eq_ignore_ascii_case(&ours) {
            return Ok(None);
        }
        match &self.previous_key {
            Some(prev)
                if last
                    .public_key
                    .eq_ignore_ascii_case(&hex(prev.verifying_key().as_bytes())) =>
            {
                Ok(Some(prev))
            }
            _ => {
                // Ours handed over earlier (a stale node): refuse. Read only
                // in this odd case (once: what it signs is then the last).
                let cps = match self.all(crate::audit::verify::VERIFY_CHECKPOINTS_MAX).await {
                    Ok(cps) => cps,
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot read the checkpoints to tell whether this node's key was retired");
                        Vec::new()
                    }
                };
                if let Some(h) = cps.iter().rev().find(|c| {
                    c.stream == self.stream
                        && c.public_key.eq_ignore_ascii_case(&ours)
                        && !c.next_public_key.is_empty()
                }) {
                    return Err(AuditStreamError::KeyRetired {
                        ours: self.key_id(),
                        chain: last.key_id.clone(),
                        at: h.tree_size,
                    });
                }
                tracing::warn!(chain_key = %last.key_id, ours = %self.key_id(),
                    "the last checkpoint is signed by another key and this node's key is not its announced successor: \
                     checkpoints it signs will not verify as one chain; to rotate, set audit.previous_signing_key_file to that key's file");
                Ok(None)
            }
        }
    }

    /// The projector's tree, once it holds at least `size` leaves (the last
    /// checkpoint's, maybe another process's): a checkpoint never goes back.
    /// With it, the identity map's root and `identity`'s proof in it, read
    /// from the same state.
    async fn tree_at_least(
        &self,
        size: u64,
        identity: Option<&govledger_projector::keys::IdentityKey>,
    ) -> Result<(merkle::Frontier, merkle::Hash, Option<HistoryProof>), AuditStreamError> {
        let deadline = tokio::time::Instant::now() + Duration::from_millis(CATCH_UP_MS);
        loop {
            let (meta, map, proof) = self
                .store
                .tree_head(identity)
                .map_err(|e| AuditStreamError::Store(e.to_string()))?;
            let tree = merkle::Frontier::from_parts(meta.merkle_size, &meta.merkle_peaks)
                .ok_or(AuditStreamError::FrontierInconsistent)?;
            if tree.size() >= size {
                return Ok((tree, map, proof));
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(AuditStreamError::Behind {
                    have: tree.size(),
                    last: size,
                });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Keeps `cosigned` (a checkpoint of ours with witness cosignatures)
    /// once it holds ([`crate::audit::witness::accept`]).
    pub async fn add_cosignature(
        &self,
        cosigned: &str,
    ) -> Result<crate::audit::witness::Witnessed, CosignatureError> {
        let signed = self
            .all(crate::audit::verify::VERIFY_CHECKPOINTS_MAX)
            .await?;
        self.keep_cosigned(cosigned, &signed).await
    }

    /// [`Self::add_cosignature`] for a note of one of `signed` (the
    /// checkpoints it may cosign, when the caller holds them: a witness
    /// answering for the checkpoint just made).
    pub async fn keep_cosigned(
        &self,
        cosigned: &str,
        signed: &[Checkpoint],
    ) -> Result<crate::audit::witness::Witnessed, CosignatureError> {
        use crate::audit::witness;
        // Ours: by the current key, or the handover by the previous one.
        let mut w = witness::accept(cosigned, &self.verifier_key(), &self.witness_keys, signed);
        if w.is_err()
            && let Some(prev) = &self.previous_key
        {
            let vkey =
                crate::audit::note::verifier_key(&self.origin_of(prev), &prev.verifying_key());
            if let Ok(by_prev) = witness::accept(cosigned, &vkey, &self.witness_keys, signed) {
                w = Ok(by_prev);
            }
        }
        let w = w?;
        let msg = jetstream::message::PublishMessage::build()
            .payload(cosigned.as_bytes().to_vec().into())
            .message_id(hex(&Sha256::digest(cosigned.as_bytes())));
        self.js
            .send_publish(witness::COSIGNATURE_SUBJECT, msg)
            .await
            .map_err(nats)?
            .await
            .map_err(nats)?;
        Ok(w)
    }

    /// Which configured witnesses cosigned which checkpoint, from the
    /// cosigned notes of the audit log ([`read_log`]); notes of the keys of
    /// `sequence` (the chain's, retired ones too) open under their key.
    pub fn witnessed(
        &self,
        cosigned: &[String],
        sequence: &[KeyPeriod],
    ) -> Result<Vec<crate::audit::witness::Witnessed>, crate::audit::witness::CosignError> {
        let mut vkeys: Vec<String> = sequence
            .iter()
            .map(|p| p.verifier_key.clone())
            .filter(|k| !k.is_empty())
            .collect();
        vkeys.push(self.verifier_key());
        crate::audit::witness::summarize(cosigned, &vkeys, &self.witness_keys)
            .map_err(crate::audit::witness::CosignError::Note)
    }

    /// The most recent checkpoints, newest first.
    pub async fn list(&self, limit: u32) -> Result<Vec<Checkpoint>, AuditStreamError> {
        self.newest_where(limit, |_| true).await
    }

    /// This ledger's newest checkpoint with a signed note (the audit stream
    /// may hold other streams' checkpoints).
    pub async fn newest_own(&self) -> Result<Option<Checkpoint>, AuditStreamError> {
        let own = |c: &Checkpoint| c.stream == self.stream && !c.note.is_empty();
        Ok(self.newest_where(1, own).await?.pop())
    }

    /// The newest `limit` checkpoints that `keep`, newest first.
    async fn newest_where(
        &self,
        limit: u32,
        keep: impl Fn(&Checkpoint) -> bool,
    ) -> Result<Vec<Checkpoint>, AuditStreamError> {
        let stream = self.js.get_stream(AUDIT_STREAM).await.map_err(nats)?;
        let state = &stream.cached_info().state;
        let (first, last) = (state.first_sequence, state.last_sequence);
        let mut out = Vec::new();
        let mut seq = last;
        while seq >= first.max(1) && out.len() < limit as usize {
            if let Ok(m) = stream.get_raw_message(seq).await
                && m.subject.as_str() == CHECKPOINT_SUBJECT
                && let Ok(cp) = Checkpoint::decode(m.payload.as_ref())
                && keep(&cp)
            {
                out.push(cp);
            }
            seq -= 1;
        }
        Ok(out)
    }

    /// Every checkpoint (at most `max`), oldest first, as the audit stream holds them.
    pub async fn all(&self, max: usize) -> Result<Vec<Checkpoint>, AuditStreamError> {
        read_all(&self.js, max).await
    }

    /// The whole audit log (at most `max` messages), in one pass.
    pub async fn log(&self, max: usize) -> Result<AuditLog, AuditStreamError> {
        read_log(&self.js, max).await
    }

    /// Checkpoints on a cadence until `cancel`.
    pub async fn run(self: Arc<Self>, interval: Duration, cancel: CancellationToken) {
        let mut tick = tokio::time::interval(interval);
        tick.tick().await; // the first tick is immediate; start after one interval
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = cancel.cancelled() => return,
            }
            if let Err(e) = self.checkpoint(INTERVAL_PRINCIPAL).await {
                tracing::warn!(error = %e, "checkpoint failed; retrying at the next interval");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::{Signer as _, VerifyingKey};

    fn key(b: u8) -> SigningKey {
        SigningKey::from_bytes(&[b; 32])
    }

    #[test]
    fn signed_checkpoints_verify_and_chain() {
        let k = key(7);
        let pk = hex(k.verifying_key().as_bytes());
        let a = sign(&k, "GOVLEDGER", 10, &"ab".repeat(32), 1, "", "");
        let b = sign(
            &k,
            "GOVLEDGER",
            12,
            &"cd".repeat(32),
            2,
            &checkpoint_hash(&a),
            "alice",
        );
        verify_chain(&[a.clone(), b.clone()], &pk).unwrap();
        // Another key is rejected, naming both keys.
        let other = sign(
            &key(9),
            "GOVLEDGER",
            12,
            &"cd".repeat(32),
            2,
            &checkpoint_hash(&a),
            "alice",
        );
        assert!(matches!(
            verify(&other, &pk),
            Err(CheckpointError::OtherKey { .. })
        ));
        // An altered root breaks the signature.
        let mut altered = b.clone();
        altered.root = "ef".repeat(32);
        assert_eq!(
            verify(&altered, &pk),
            Err(CheckpointError::BadSignature(12))
        );
        // Who requested it is signed: another name breaks the signature.
        let mut renamed = b.clone();
        renamed.requested_by = "mallory".into();
        assert_eq!(
            verify(&renamed, &pk),
            Err(CheckpointError::BadSignature(12))
        );
        // A checkpoint that does not name its predecessor breaks the chain.
        let stray = sign(&k, "GOVLEDGER", 12, &"cd".repeat(32), 2, "00", "");
        assert!(matches!(
            verify_chain(&[a, stray], &pk),
            Err(CheckpointError::BrokenChain { .. })
        ));
    }

    #[test]
    fn forks_and_rollbacks_are_refused_and_a_note_must_say_what_the_checkpoint_says() {
        let k = key(7);
        let pk = hex(k.verifying_key().as_bytes());
        let origin = "ledger.example/identity";
        let a = with_note(sign(&k, "G", 10, &"ab".repeat(32), 1, "", ""), &k, origin).unwrap();
        assert!(
            a.note.starts_with("ledger.example/identity\n10\n"),
            "{}",
            a.note
        );
        assert!(a.verifier_key.starts_with("ledger.example/identity+"));
        verify(&a, &pk).unwrap();
        let chained = |size, root: &str| {
            with_note(
                sign(&k, "G", size, &root.repeat(32), 2, &checkpoint_hash(&a), ""),
                &k,
                origin,
            )
            .unwrap()
        };
        verify_chain(&[a.clone(), chained(12, "cd")], &pk).unwrap();
        // One size, two roots: a fork, though each is well signed.
        assert!(matches!(
            verify_chain(&[a.clone(), chained(10, "cd")], &pk),
            Err(CheckpointError::Fork { size: 10, .. })
        ));
        // A smaller size after a larger one: a rollback.
        assert!(matches!(
            verify_chain(&[a.clone(), chained(9, "cd")], &pk),
            Err(CheckpointError::Rollback {
                size: 9,
                previous: 10
            })
        ));
        // A well-signed note of another tree head does not vouch for this one.
        let mut mixed = a.clone();
        mixed.note = chained(12, "cd").note;
        assert!(matches!(
            verify(&mixed, &pk),
            Err(CheckpointError::NoteDiffers { note_size: 12, .. })
        ));
        // An altered note is refused.
        let mut altered = a.clone();
        altered.note = a.note.replacen("\n10\n", "\n11\n", 1);
        assert!(matches!(
            verify(&altered, &pk),
            Err(CheckpointError::BadNote { .. })
        ));
    }

    #[test]
    fn the_identity_map_is_signed_in_the_statement_and_the_note() {
        let k = key(7);
        let pk = hex(k.verifying_key().as_bytes());
        let with_map = |map: &str| {
            let cp = sign_checkpoint(
                &k,
                Checkpoint {
                    stream: "G".into(),
                    tree_size: 10,
                    root: "ab".repeat(32),
                    identity_map: map.repeat(32),
                    ..Default::default()
                },
            );
            with_note(cp, &k, "ledger.example/identity").unwrap()
        };
        let a = with_map("0f");
        assert!(statement(&a).ends_with(&format!("identity_map={}\n", "0f".repeat(32))));
        let ext = format!(
            "identity-map {}\n",
            "Dw8PDw8PDw8PDw8PDw8PDw8PDw8PDw8PDw8PDw8PDw8="
        );
        assert!(a.note.contains(&format!("\n{ext}\n")), "{}", a.note);
        verify(&a, &pk).unwrap();
        // The map changed after signing: the statement's signature fails.
        let mut edited = a.clone();
        edited.identity_map = "ee".repeat(32);
        assert_eq!(verify(&edited, &pk), Err(CheckpointError::BadSignature(10)));
        // A well-signed note of another map does not vouch for this one.
        let mut mixed = a.clone();
        mixed.note = with_map("ee").note;
        assert!(matches!(
            verify(&mixed, &pk),
            Err(CheckpointError::NoteMapDiffers { size: 10, .. })
        ));
        // One size, one tree root, two maps: a fork.
        let mut b = with_map("ee");
        b.previous = checkpoint_hash(&a);
        let b = with_note(sign_checkpoint(&k, b), &k, "ledger.example/identity").unwrap();
        assert!(matches!(
            check_history(&[a.clone(), b]),
            Err(CheckpointError::MapFork { size: 10, .. })
        ));
        // The same map again is no fork; one made before maps is compared by root only.
        check_history(&[a.clone(), a.clone()]).unwrap();
        check_history(&[a.clone(), with_map("")]).unwrap();
    }

    #[test]
    fn weak_keys_and_non_canonical_signatures_verify_nothing() {
        // The identity point (small order) with R = identity, s = 0: a lax
        // check accepts this for any text.
        let mut weak = [0u8; 32];
        weak[0] = 1;
        let mut trivial = [0u8; 64];
        trivial[0] = 1;
        let mut cp = Checkpoint {
            stream: "GOVLEDGER".into(),
            tree_size: 3,
            public_key: hex(&weak),
            signature: hex(&trivial),
            ..Default::default()
        };
        cp.key_id = key_id(&VerifyingKey::from_bytes(&weak).unwrap());
        assert_eq!(verify(&cp, &hex(&weak)), Err(CheckpointError::WeakKey(3)));
        assert!(!verify_bytes(&hex(&weak), b"anything", &hex(&trivial)));
        assert_eq!(parse_public_key(&hex(&weak)), Err(KeyProblem::Weak));
        // A genuine signature with s + l (the group order) in place of s.
        let k = key(7);
        let pk = hex(k.verifying_key().as_bytes());
        let mut sig = k.sign(b"text").to_bytes();
        assert!(verify_bytes(&pk, b"text", &hex(&sig)));
        const L: [u8; 32] = [
            0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9,
            0xde, 0x14, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
        ];
        let mut carry = 0u16;
        for (i, l) in L.iter().enumerate() {
            let v = u16::from(sig[32 + i]) + u16::from(*l) + carry;
            sig[32 + i] = (v & 0xff) as u8;
            carry = v >> 8;
        }
        assert!(!verify_bytes(&pk, b"text", &hex(&sig)));
    }
}
