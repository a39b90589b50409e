//! The signed checkpoint itself, pure: its statement and note extension,
//! its hash, signing, and the checks of one checkpoint and of a chain
//! (signatures, notes, forks, rollbacks). Re-exported by the parent.

use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};
use govledger_projector::{fold::hex, merkle};
use govledger_proto::v1::Checkpoint;
use sha2::{Digest as _, Sha256};

use crate::audit::keys::{KeyProblem, key_id, parse_public_key, strict};
pub fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// A SHA-256 hash (32 bytes) from its hex.
pub fn unhex_hash(s: &str) -> Option<merkle::Hash> {
    unhex(s).and_then(|b| merkle::Hash::try_from(b).ok())
}

/// The text a checkpoint's signature covers. Who requested it is a last line
/// when known (checkpoints made before it was recorded verify as they were).
pub fn statement(cp: &Checkpoint) -> String {
    let mut s = format!(
        "govledger checkpoint v1\nstream={}\nsize={}\nroot={}\ncreated_at_us={}\nprevious={}\nkey_id={}\n",
        cp.stream, cp.tree_size, cp.root, cp.created_at_us, cp.previous, cp.key_id
    );
    if !cp.requested_by.is_empty() {
        // Principals are printable (no line breaks): config validation.
        s.push_str(&format!(
            "requested_by={}\n",
            cp.requested_by.replace(['\n', '\r'], " ")
        ));
    }
    if !cp.identity_map.is_empty() {
        s.push_str(&format!("identity_map={}\n", cp.identity_map));
    }
    if !cp.next_public_key.is_empty() {
        s.push_str(&format!("next_key={}\n", cp.next_public_key));
    }
    s
}

/// The note's extension lines for a checkpoint: `identity-map <base64
/// root>` when it commits to the identity map, else none.
pub fn note_extension(cp: &Checkpoint) -> String {
    use base64::Engine as _;
    match unhex(&cp.identity_map) {
        Some(root) if !root.is_empty() => format!(
            "identity-map {}\n",
            base64::engine::general_purpose::STANDARD.encode(root)
        ),
        _ => String::new(),
    }
}

/// Who a checkpoint made on the cadence names as its requester.
pub const INTERVAL_PRINCIPAL: &str = "interval";

/// Hex SHA-256 of a checkpoint's statement: what the next checkpoint names.
pub fn checkpoint_hash(cp: &Checkpoint) -> String {
    hex(&Sha256::digest(statement(cp).as_bytes()))
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum CheckpointError {
    #[error("checkpoint of size {size} is signed by key {found}, not the trusted key {trusted}")]
    OtherKey {
        size: u64,
        found: String,
        trusted: String,
    },
    #[error(
        "checkpoint of size {0}: the signature does not match its statement (altered or forged)"
    )]
    BadSignature(u64),
    #[error("checkpoint of size {0}: malformed key or signature")]
    Malformed(u64),
    #[error(
        "checkpoint of size {0} is signed by a weak (small-order) ed25519 key: it proves nothing"
    )]
    WeakKey(u64),
    #[error(
        "checkpoint of size {size} names previous {found}, but the one before it hashes to {expected}"
    )]
    BrokenChain {
        size: u64,
        found: String,
        expected: String,
    },
    #[error("checkpoint of size {size}: its signed note does not hold: {problem}")]
    BadNote {
        size: u64,
        problem: crate::audit::note::NoteProblem,
    },
    #[error(
        "checkpoint of size {size}: its signed note says size {note_size} root {note_root}, not what the checkpoint says"
    )]
    NoteDiffers {
        size: u64,
        note_size: u64,
        note_root: String,
    },
    #[error(
        "checkpoint of size {size}: its signed note's extension lines ({note:?}) do not say the identity map the checkpoint signs"
    )]
    NoteMapDiffers { size: u64, note: String },
    #[error(
        "fork: two checkpoints of size {size} with different roots ({first} and {second}): the log shows two histories"
    )]
    Fork {
        size: u64,
        first: String,
        second: String,
    },
    #[error(
        "fork: two checkpoints of size {size} sign different identity maps ({first} and {second}): one state cannot have two"
    )]
    MapFork {
        size: u64,
        first: String,
        second: String,
    },
    #[error(
        "rollback: a checkpoint of size {size} follows one of size {previous}: a log only grows"
    )]
    Rollback { size: u64, previous: u64 },
    #[error(
        "checkpoint of size {size} is signed by key {key_id}, which handed over to its successor at size {retired_at}: a retired key signs nothing (a stale node, or a stolen old key)"
    )]
    RetiredKey {
        size: u64,
        key_id: String,
        retired_at: u64,
    },
    #[error(
        "checkpoint of size {size} is signed by key {found}, but the chain's key is {expected} and no handover checkpoint names {found} (rotate keys with audit.previous_signing_key_file)"
    )]
    UnannouncedKey {
        size: u64,
        found: String,
        expected: String,
    },
    #[error("checkpoint of size {size} hands over to a next key, but {problem}")]
    BadHandover { size: u64, problem: String },
}

/// Checks a checkpoint against the ledger's trusted public key (hex): the
/// same key, not weak, its key id derived from it, a strict signature.
pub fn verify(cp: &Checkpoint, trusted_public_key: &str) -> Result<(), CheckpointError> {
    if !cp.public_key.eq_ignore_ascii_case(trusted_public_key) {
        let trusted = unhex(trusted_public_key)
            .and_then(|b| <[u8; 32]>::try_from(b).ok())
            .and_then(|b| VerifyingKey::from_bytes(&b).ok())
            .map(|k| key_id(&k))
            .unwrap_or_else(|| "?".into());
        return Err(CheckpointError::OtherKey {
            size: cp.tree_size,
            found: cp.key_id.clone(),
            trusted,
        });
    }
    verify_signed(cp).map(|_| ())
}

/// Checks a checkpoint's own signature, whoever's key it names: not weak,
/// its key id derived from it, a strict signature, its note. Returns the key.
pub fn verify_signed(cp: &Checkpoint) -> Result<VerifyingKey, CheckpointError> {
    let key = parse_public_key(&cp.public_key).map_err(|p| match p {
        KeyProblem::Malformed => CheckpointError::Malformed(cp.tree_size),
        KeyProblem::Weak => CheckpointError::WeakKey(cp.tree_size),
    })?;
    if key_id(&key) != cp.key_id {
        return Err(CheckpointError::BadSignature(cp.tree_size));
    }
    match strict(&key, statement(cp).as_bytes(), &cp.signature) {
        None => Err(CheckpointError::Malformed(cp.tree_size)),
        Some(false) => Err(CheckpointError::BadSignature(cp.tree_size)),
        Some(true) => verify_note(cp, &key).map(|()| key),
    }
}

/// The checkpoint's signed note (when it has one) opens under `key` with the
/// origin it names, and says the same size and root as the checkpoint.
fn verify_note(cp: &Checkpoint, key: &VerifyingKey) -> Result<(), CheckpointError> {
    if cp.note.is_empty() {
        return Ok(()); // made before notes: the statement's signature holds
    }
    let origin = cp.note.lines().next().unwrap_or_default();
    let vkey = crate::audit::note::verifier_key(origin, key);
    let opened = crate::audit::note::open(&cp.note, &vkey, &[]).map_err(|problem| {
        CheckpointError::BadNote {
            size: cp.tree_size,
            problem,
        }
    })?;
    if opened.size != cp.tree_size || !merkle::hex(&opened.root).eq_ignore_ascii_case(&cp.root) {
        return Err(CheckpointError::NoteDiffers {
            size: cp.tree_size,
            note_size: opened.size,
            note_root: merkle::hex(&opened.root),
        });
    }
    if opened.extension != note_extension(cp) {
        return Err(CheckpointError::NoteMapDiffers {
            size: cp.tree_size,
            note: opened.extension.trim_end().to_owned(),
        });
    }
    Ok(())
}

/// Forks and rollbacks in checkpoints given in the order they were made:
/// sizes never decrease, and one size has one root. Pure.
pub fn check_history(cps: &[Checkpoint]) -> Result<(), CheckpointError> {
    for w in cps.windows(2) {
        let (a, b) = (&w[0], &w[1]);
        if b.tree_size < a.tree_size {
            return Err(CheckpointError::Rollback {
                size: b.tree_size,
                previous: a.tree_size,
            });
        }
        if b.tree_size == a.tree_size && !a.root.eq_ignore_ascii_case(&b.root) {
            return Err(CheckpointError::Fork {
                size: a.tree_size,
                first: a.root.clone(),
                second: b.root.clone(),
            });
        }
        if b.tree_size == a.tree_size
            && !a.identity_map.is_empty()
            && !b.identity_map.is_empty()
            && !a.identity_map.eq_ignore_ascii_case(&b.identity_map)
        {
            return Err(CheckpointError::MapFork {
                size: a.tree_size,
                first: a.identity_map.clone(),
                second: b.identity_map.clone(),
            });
        }
    }
    Ok(())
}

/// Checks signatures, the chain, forks and rollbacks, and key handovers of
/// checkpoints given oldest first; the trusted key must be one of the
/// chain's keys ([`super::key_sequence`]). Returns the key sequence.
pub fn verify_chain(
    cps: &[Checkpoint],
    trusted_public_key: &str,
) -> Result<Vec<super::KeyPeriod>, CheckpointError> {
    let sequence = super::rotation::key_sequence(cps)?;
    let first = cps.first().map_or(0, |c| c.tree_size);
    super::rotation::pinned(&sequence, &[trusted_public_key.to_owned()], first)?;
    Ok(sequence)
}

/// Signs a checkpoint of (size, root) after `previous`.
pub fn sign(
    key: &SigningKey,
    stream: &str,
    tree_size: u64,
    root: &str,
    created_at_us: i64,
    previous: &str,
    requested_by: &str,
) -> Checkpoint {
    sign_checkpoint(
        key,
        Checkpoint {
            stream: stream.to_owned(),
            tree_size,
            root: root.to_owned(),
            created_at_us,
            previous: previous.to_owned(),
            requested_by: requested_by.to_owned(),
            ..Default::default()
        },
    )
}

/// `cp` (its stream, size, roots, time, previous and requester set) with
/// the key's id and public key, signed.
pub fn sign_checkpoint(key: &SigningKey, mut cp: Checkpoint) -> Checkpoint {
    let public = key.verifying_key();
    cp.key_id = key_id(&public);
    cp.public_key = hex(public.as_bytes());
    cp.signature = hex(&key.sign(statement(&cp).as_bytes()).to_bytes());
    cp
}

/// `cp` with its tree head also signed as a C2SP note under `origin`.
pub fn with_note(
    mut cp: Checkpoint,
    key: &SigningKey,
    origin: &str,
) -> Result<Checkpoint, crate::audit::note::NoteProblem> {
    let root = unhex_hash(&cp.root)
        .ok_or_else(|| crate::audit::note::NoteProblem::Malformed("root is not a hash".into()))?;
    cp.note = crate::audit::note::sign(key, origin, cp.tree_size, &root, &note_extension(&cp))?;
    cp.verifier_key = crate::audit::note::verifier_key(origin, &key.verifying_key());
    Ok(cp)
}
