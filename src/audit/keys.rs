//! The manifest key: evidence bundles' manifests are signed by a key of their
//! own, not the checkpoint key, and the checkpoint key endorses it for a
//! validity period. An auditor pins only the checkpoint key (published out
//! of band); a bundle carries its manifest key's endorsement, and a manifest
//! signed outside the period, by an unendorsed key, or by the checkpoint key
//! itself proves nothing. The manifest key can be replaced (a new file, a new
//! endorsement) without touching the chain of checkpoints.
//!
//! The endorsement is an ed25519 signature by the checkpoint key over a
//! domain-separated, length-prefixed statement (tag, checkpoint key, manifest
//! key, not-before, not-after), so it cannot pass for a checkpoint or a
//! manifest. Also here: loading (or creating) a key file, and what every
//! signature check rests on — a public key fit to verify with (valid, not of
//! small order), its id, and strict ed25519 verification. Pure otherwise,
//! apart from [`ManifestKey::endorsement`] reading the clock.

use std::{path::Path, sync::Mutex};

use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use govledger_projector::fold::hex;

use crate::audit::checkpoints::unhex;

/// How long an endorsement holds by default (`audit.manifest_key_validity_days`).
pub const MANIFEST_KEY_VALIDITY_DAYS_DEFAULT: u64 = 365;
/// The longest validity `audit.manifest_key_validity_days` may set.
pub const MANIFEST_KEY_VALIDITY_DAYS_MAX: u64 = 3_650;
const DAY_US: i64 = 86_400 * 1_000_000;
/// How far before its making an endorsement's period starts (5 minutes).
const ENDORSEMENT_LEAD_US: i64 = 300 * 1_000_000;

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read the signing key {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("signing key {0} must hold 64 hex characters (a 32-byte ed25519 seed)")]
    Format(String),
}

/// Loads the signing key (64 hex chars), creating a new random one (mode 0600)
/// when the file does not exist. The key never reaches logs or events.
pub fn load_or_create_key(path: &Path) -> Result<SigningKey, KeyError> {
    let io = |source| KeyError::Io {
        path: path.display().to_string(),
        source,
    };
    if !path.exists() {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let mut seed = [0u8; 32];
        rand::Rng::fill(&mut rand::rng(), &mut seed);
        std::fs::write(path, hex(&seed)).map_err(io)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(io)?;
        }
    }
    load_key(path)
}

/// Loads a signing key that must exist (64 hex chars): a key being retired.
pub fn load_key(path: &Path) -> Result<SigningKey, KeyError> {
    let text = std::fs::read_to_string(path).map_err(|source| KeyError::Io {
        path: path.display().to_string(),
        source,
    })?;
    unhex(text.trim())
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
        .map(|seed| SigningKey::from_bytes(&seed))
        .ok_or_else(|| KeyError::Format(path.display().to_string()))
}

/// A key's id: the first 16 hex characters of its SHA-256.
pub fn key_id(public: &VerifyingKey) -> String {
    hex(&Sha256::digest(public.as_bytes()))[..16].to_owned()
}

/// Why a public key (hex) cannot verify anything: the producer keys' reasons.
pub use govledger_stream::seal::KeyProblem;

/// A public key (hex) fit to verify with: a valid point, not of small order
/// (the producer keys' check, without its tolerance of whitespace around a
/// key file's text: a key in a bundle or an argument is exactly its hex).
pub fn parse_public_key(h: &str) -> Result<VerifyingKey, KeyProblem> {
    if h.trim() != h {
        return Err(KeyProblem::Malformed);
    }
    govledger_stream::seal::parse_public_key(h)
}

/// Whether `signature` (hex) is `key`'s strict ed25519 signature of `msg`:
/// canonical `s`, `R` not of small order (`verify_strict`).
pub(crate) fn strict(key: &VerifyingKey, msg: &[u8], signature: &str) -> Option<bool> {
    let sig = unhex(signature)
        .and_then(|b| <[u8; 64]>::try_from(b).ok())
        .map(|b| Signature::from_bytes(&b))?;
    Some(key.verify_strict(msg, &sig).is_ok())
}

/// Whether `signature` (hex) is `public_key`'s (hex) strict ed25519 signature
/// of `msg`; a weak or malformed key verifies nothing.
pub fn verify_bytes(public_key: &str, msg: &[u8], signature: &str) -> bool {
    parse_public_key(public_key)
        .ok()
        .and_then(|k| strict(&k, msg, signature))
        .unwrap_or(false)
}

/// The checkpoint key's word that `manifest_key` signs manifests from
/// `not_before_us` to `not_after_us` (Unix microseconds, inclusive).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Endorsement {
    /// Hex ed25519 public key that signs manifests.
    pub manifest_key: String,
    pub not_before_us: i64,
    pub not_after_us: i64,
    /// Hex ed25519 signature of [`statement`] by the checkpoint key.
    pub signature: String,
}

/// The bytes the endorsement signs.
pub fn statement(checkpoint_key: &str, e: &Endorsement) -> Vec<u8> {
    let mut m = crate::audit::evidence::ManifestWriter::default();
    m.text("govledger manifest key endorsement v1");
    m.text(&checkpoint_key.to_ascii_lowercase());
    m.text(&e.manifest_key.to_ascii_lowercase());
    m.num(e.not_before_us as u64);
    m.num(e.not_after_us as u64);
    m.0
}

/// `manifest` endorsed by `checkpoint` from `not_before_us` for `validity_days`.
pub fn endorse(
    checkpoint: &SigningKey,
    manifest: &VerifyingKey,
    not_before_us: i64,
    validity_days: u64,
) -> Endorsement {
    let mut e = Endorsement {
        manifest_key: hex(manifest.as_bytes()),
        not_before_us,
        not_after_us: not_before_us.saturating_add((validity_days as i64).saturating_mul(DAY_US)),
        signature: String::new(),
    };
    let checkpoint_key = hex(checkpoint.verifying_key().as_bytes());
    e.signature = hex(&checkpoint.sign(&statement(&checkpoint_key, &e)).to_bytes());
    e
}

/// The manifest key `e` endorses, when the checkpoint key (hex) signed it,
/// it is a strong key other than the checkpoint key, and `at_us` (the
/// bundle's export time) lies in its period; else what is wrong.
pub fn check(e: &Endorsement, checkpoint_key: &str, at_us: i64) -> Result<VerifyingKey, String> {
    let key = parse_public_key(&e.manifest_key).map_err(|p| format!("the manifest key is {p}"))?;
    if e.manifest_key.eq_ignore_ascii_case(checkpoint_key) {
        return Err("the manifest key is the checkpoint key: the two roles need two keys".into());
    }
    if !verify_bytes(checkpoint_key, &statement(checkpoint_key, e), &e.signature) {
        return Err("the manifest key's endorsement is not signed by the checkpoint key".into());
    }
    if at_us < e.not_before_us || at_us > e.not_after_us {
        return Err(format!(
            "the bundle was exported at {at_us} µs, outside its manifest key's endorsed period ({} to {} µs)",
            e.not_before_us, e.not_after_us
        ));
    }
    Ok(key)
}

/// The ledger's manifest key and its current endorsement (renewed when it
/// has run out).
pub struct ManifestKey {
    key: SigningKey,
    validity_days: u64,
    endorsed: Mutex<Endorsement>,
}

impl ManifestKey {
    pub fn new(key: SigningKey, validity_days: u64) -> Self {
        Self {
            key,
            validity_days,
            endorsed: Mutex::new(Endorsement::default()),
        }
    }

    /// The endorsement that holds at `now_us`, made with `checkpoint` when
    /// the last one has run out (or none was made yet).
    pub fn endorsement(&self, checkpoint: &SigningKey, now_us: i64) -> Endorsement {
        let mut e = self
            .endorsed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if e.signature.is_empty() || now_us < e.not_before_us || now_us > e.not_after_us {
            // From a little before now: an export stamped just after, by a
            // wall clock that stepped back, still falls inside.
            *e = endorse(
                checkpoint,
                &self.key.verifying_key(),
                now_us.saturating_sub(ENDORSEMENT_LEAD_US),
                self.validity_days,
            );
        }
        e.clone()
    }

    /// Hex signature of `msg` (a bundle manifest).
    pub fn sign(&self, msg: &[u8]) -> String {
        hex(&self.key.sign(msg).to_bytes())
    }

    pub fn public_key_hex(&self) -> String {
        hex(self.key.verifying_key().as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> (SigningKey, SigningKey) {
        (
            SigningKey::from_bytes(&[1; 32]),
            SigningKey::from_bytes(&[2; 32]),
        )
    }

    #[test]
    fn an_endorsement_holds_for_its_key_and_period_only() {
        let (cp, m) = keys();
        let cp_hex = hex(cp.verifying_key().as_bytes());
        let e = endorse(&cp, &m.verifying_key(), 1_000, 1);
        assert_eq!(check(&e, &cp_hex, 1_000).unwrap(), m.verifying_key());
        assert!(check(&e, &cp_hex, 1_000 + DAY_US).is_ok());
        // Outside the period.
        assert!(check(&e, &cp_hex, 999).unwrap_err().contains("outside"));
        assert!(
            check(&e, &cp_hex, 1_001 + DAY_US)
                .unwrap_err()
                .contains("outside")
        );
        // Another checkpoint key, a stretched period, another manifest key.
        let other = hex(SigningKey::from_bytes(&[3; 32]).verifying_key().as_bytes());
        assert!(check(&e, &other, 1_000).unwrap_err().contains("not signed"));
        let mut stretched = e.clone();
        stretched.not_after_us += DAY_US;
        assert!(
            check(&stretched, &cp_hex, 1_000)
                .unwrap_err()
                .contains("not signed")
        );
        let mut swapped = e.clone();
        swapped.manifest_key = other;
        assert!(
            check(&swapped, &cp_hex, 1_000)
                .unwrap_err()
                .contains("not signed")
        );
        // The checkpoint key endorsing itself: refused.
        let same = endorse(&cp, &cp.verifying_key(), 1_000, 1);
        assert!(
            check(&same, &cp_hex, 1_000)
                .unwrap_err()
                .contains("two keys")
        );
    }

    #[test]
    fn keys_are_created_once_and_reloaded() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("audit/signing.key");
        let k1 = load_or_create_key(&p).unwrap();
        let k2 = load_or_create_key(&p).unwrap();
        assert_eq!(k1.to_bytes(), k2.to_bytes());
        std::fs::write(&p, "nothex").unwrap();
        assert!(matches!(load_or_create_key(&p), Err(KeyError::Format(_))));
    }

    #[test]
    fn the_ledger_renews_an_endorsement_that_ran_out() {
        let (cp, m) = keys();
        let mk = ManifestKey::new(m, 1);
        let first = mk.endorsement(&cp, 5);
        assert_eq!(first.not_before_us, 5 - ENDORSEMENT_LEAD_US);
        let end = first.not_after_us;
        assert_eq!(mk.endorsement(&cp, end), first);
        let renewed = mk.endorsement(&cp, end + 1);
        assert_eq!(renewed.not_before_us, end + 1 - ENDORSEMENT_LEAD_US);
        assert_eq!(renewed.manifest_key, mk.public_key_hex());
    }
}
