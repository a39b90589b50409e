//! Producer seals: the provenance of facts (issue 21).
//!
//! Publishing rights to the stream are not enough to make a fact count: a
//! run is COMPLETE, an action CONFIRMED and an acceptance applied only when a
//! trusted producer sealed it with its ed25519 key.
//!
//! - A **run seal** sits on the run's `SyncRunFinished`. It signs the count of
//!   the run's events before it and a SHA-256 chain over their Merkle leaves
//!   in stream order ([`chain_step`] over [`leaf`]), plus the whole finish
//!   event. The producer learns each event's stream sequence from its publish
//!   ack; the fold chains each event of the run as it applies it, in O(1)
//!   state, and compares at the finish ([`Trust::check_run`]).
//! - An **event seal** signs one event on its own (write-path events and
//!   `DeletionsAccepted`: few, from several components).
//!
//! The signed bytes are [`SEAL_DOMAIN`] followed by the event encoded with
//! the seal's `signature` left empty: the key, the count and the chain are
//! signed with everything else. Verification is strict ed25519 and refuses
//! weak (small-order) keys. Pure except [`ProducerKey::load_or_create`].

use std::path::Path;

use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use govledger_proto::v1::{Event, Seal, SealStatus};
use prost::Message as _;
use sha2::{Digest as _, Sha256};

/// The domain every seal signature starts with.
pub const SEAL_DOMAIN: &[u8] = b"govledger-seal/1\0";

/// A SHA-256 value.
pub type Hash = [u8; 32];

/// The chain of a run before any event.
pub const CHAIN_START: Hash = [0u8; 32];

/// The Merkle leaf of a stored message: SHA-256(0x00 ‖ seq ‖ stored bytes),
/// the same as the projector's `merkle::leaf_hash`.
pub fn leaf(seq: u64, stored_bytes: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0x00]);
    h.update(seq.to_be_bytes());
    h.update(stored_bytes);
    h.finalize().into()
}

/// One step of a run's chain: SHA-256(0x02 ‖ chain ‖ leaf).
pub fn chain_step(chain: &Hash, leaf: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([0x02]);
    h.update(chain);
    h.update(leaf);
    h.finalize().into()
}

/// The chain over `(seq, leaf)` pairs, taken in sequence order.
pub fn chain_of(mut leaves: Vec<(u64, Hash)>) -> Hash {
    leaves.sort_unstable_by_key(|(seq, _)| *seq);
    leaves
        .iter()
        .fold(CHAIN_START, |c, (_, l)| chain_step(&c, l))
}

/// A public key's short id: the first 16 hex characters of SHA-256(key).
pub fn key_id(public_key: &[u8]) -> String {
    hex(&Sha256::digest(public_key))[..16].to_owned()
}

/// `bytes` as lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) || !s.is_ascii() {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).ok())
        .collect()
}

/// Why a configured public key cannot be trusted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum KeyProblem {
    #[error("not an ed25519 public key (64 hex characters of a curve point)")]
    Malformed,
    #[error("a weak (small-order) ed25519 public key, under which trivial signatures verify")]
    Weak,
}

/// A public key (64 hex characters) fit to verify seals with.
pub fn parse_public_key(text: &str) -> Result<VerifyingKey, KeyProblem> {
    let key = unhex(text.trim())
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
        .and_then(|b| VerifyingKey::from_bytes(&b).ok())
        .ok_or(KeyProblem::Malformed)?;
    if key.is_weak() {
        return Err(KeyProblem::Weak);
    }
    Ok(key)
}

/// Why a producer key file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    #[error(
        "cannot read or create the producer key {path}: {source}; check the folder's permissions (config provenance.key_file)"
    )]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "producer key {0} must hold 64 hex characters (a 32-byte ed25519 seed); move it away and a new one is created (config provenance.key_file)"
    )]
    Format(String),
}

/// A producer's signing key. Its `Debug` shows the key id only.
#[derive(Clone)]
pub struct ProducerKey {
    key: SigningKey,
}

impl std::fmt::Debug for ProducerKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ProducerKey({})", self.key_id())
    }
}

impl ProducerKey {
    pub fn from_seed(seed: [u8; 32]) -> Self {
        Self {
            key: SigningKey::from_bytes(&seed),
        }
    }

    /// Loads the seed (64 hex characters) from `path`, creating a new random
    /// one (mode 0600, created that way: never readable by others) when the
    /// file does not exist. The seed never reaches logs, events or errors.
    pub fn load_or_create(path: &Path) -> Result<Self, KeyFileError> {
        let io = |source| KeyFileError::Io {
            path: path.display().to_string(),
            source,
        };
        if !path.exists() {
            if let Some(dir) = path.parent()
                && !dir.as_os_str().is_empty()
            {
                std::fs::create_dir_all(dir).map_err(io)?;
            }
            let mut seed = [0u8; 32];
            rand::Rng::fill(&mut rand::rng(), &mut seed);
            let mut opts = std::fs::OpenOptions::new();
            opts.write(true).create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
            match opts.open(path) {
                Ok(mut f) => {
                    std::io::Write::write_all(&mut f, hex(&seed).as_bytes()).map_err(io)?
                }
                // Another process created it first: read that one.
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(io(e)),
            }
        }
        let text = std::fs::read_to_string(path).map_err(io)?;
        let seed = unhex(text.trim())
            .and_then(|b| <[u8; 32]>::try_from(b).ok())
            .ok_or_else(|| KeyFileError::Format(path.display().to_string()))?;
        Ok(Self::from_seed(seed))
    }

    pub fn public_key(&self) -> VerifyingKey {
        self.key.verifying_key()
    }

    /// The public key as 64 hex characters (what `provenance.trusted_keys` lists).
    pub fn public_hex(&self) -> String {
        hex(self.key.verifying_key().as_bytes())
    }

    pub fn key_id(&self) -> String {
        key_id(self.key.verifying_key().as_bytes())
    }

    /// Seals `event` on its own (an event seal).
    pub fn seal_event(&self, event: &mut Event) {
        self.sign(event, Seal::default());
    }

    /// Seals a run's finish event over the `events` of the run before it,
    /// whose leaves chain to `chain` (a run seal).
    pub fn seal_run(&self, event: &mut Event, events: u64, chain: Hash) {
        self.sign(
            event,
            Seal {
                events,
                chain: chain.to_vec(),
                run: true,
                ..Default::default()
            },
        );
    }

    fn sign(&self, event: &mut Event, mut seal: Seal) {
        seal.public_key = self.key.verifying_key().as_bytes().to_vec();
        seal.signature = Vec::new();
        event.seal = Some(seal);
        let sig = self.key.sign(&signed_bytes(event));
        if let Some(s) = event.seal.as_mut() {
            s.signature = sig.to_bytes().to_vec();
        }
    }
}

/// What a seal signs: the domain, then `event` with its seal's signature emptied.
fn signed_bytes(event: &Event) -> Vec<u8> {
    let mut e = event.clone();
    if let Some(s) = e.seal.as_mut() {
        s.signature = Vec::new();
    }
    let mut out = Vec::with_capacity(SEAL_DOMAIN.len() + e.encoded_len());
    out.extend_from_slice(SEAL_DOMAIN);
    e.encode(&mut out).unwrap_or_default();
    out
}

/// The producer keys the ledger trusts: `provenance.trusted_keys` and its own.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Trust {
    /// Sorted, without repeats.
    keys: Vec<[u8; 32]>,
}

/// What a seal check found, and the sealing key's id ("" without a seal).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SealCheck {
    pub status: SealStatus,
    pub key_id: String,
}

impl Trust {
    pub fn new(keys: impl IntoIterator<Item = VerifyingKey>) -> Self {
        let mut keys: Vec<[u8; 32]> = keys.into_iter().map(|k| k.to_bytes()).collect();
        keys.sort_unstable();
        keys.dedup();
        Self { keys }
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The trusted keys, hex, sorted.
    pub fn keys_hex(&self) -> Vec<String> {
        self.keys.iter().map(|k| hex(k)).collect()
    }

    pub fn trusts(&self, public_key: &[u8]) -> bool {
        <[u8; 32]>::try_from(public_key).is_ok_and(|k| self.keys.binary_search(&k).is_ok())
    }

    /// Checks an event seal: present, of a trusted key, a valid signature.
    pub fn check_event(&self, event: &Event) -> SealCheck {
        self.check(event, None)
    }

    /// Checks the run seal on a finish event against what the fold chained:
    /// `events` events of the run before it, chaining to `chain`.
    pub fn check_run(&self, event: &Event, events: u64, chain: &Hash) -> SealCheck {
        self.check(event, Some((events, chain)))
    }

    fn check(&self, event: &Event, run: Option<(u64, &Hash)>) -> SealCheck {
        let Some(seal) = &event.seal else {
            return SealCheck {
                status: SealStatus::Missing,
                key_id: String::new(),
            };
        };
        let key_id = key_id(&seal.public_key);
        let status = if !self.trusts(&seal.public_key) {
            SealStatus::UntrustedKey
        } else if !signature_ok(event, seal) || run.is_some() != seal.run {
            SealStatus::BadSignature
        } else if run.is_some_and(|(n, c)| {
            seal.events != n || seal.chain.as_slice() != c || emitted_differs(event, n)
        }) {
            SealStatus::EventsDiffer
        } else {
            SealStatus::Verified
        };
        SealCheck { status, key_id }
    }
}

/// The worker's own count (`SyncRunFinished.events_emitted`, 0 = not
/// reported) names events the seal does not cover: some are stored after it.
fn emitted_differs(event: &Event, sealed: u64) -> bool {
    matches!(&event.body, Some(govledger_proto::v1::event::Body::SyncRunFinished(f))
        if f.events_emitted != 0 && f.events_emitted != sealed)
}

fn signature_ok(event: &Event, seal: &Seal) -> bool {
    let Some(key) = <[u8; 32]>::try_from(seal.public_key.as_slice())
        .ok()
        .and_then(|b| VerifyingKey::from_bytes(&b).ok())
        .filter(|k| !k.is_weak())
    else {
        return false;
    };
    let Ok(sig) = <[u8; 64]>::try_from(seal.signature.as_slice()) else {
        return false;
    };
    key.verify_strict(&signed_bytes(event), &Signature::from_bytes(&sig))
        .is_ok()
}

/// The operator's sentence for a seal status (empty for VERIFIED).
pub fn explain(status: SealStatus, key_id: &str) -> String {
    match status {
        SealStatus::Verified => String::new(),
        SealStatus::Missing | SealStatus::Unspecified => "not sealed by a trusted producer (no seal): investigate who published it, or have a govledger producer with a trusted key publish it".into(),
        SealStatus::UntrustedKey => format!("not sealed by a trusted producer (key {key_id} is not trusted): add its public key to provenance.trusted_keys if it is yours, or investigate who published it"),
        SealStatus::BadSignature => format!("not sealed by a trusted producer (the seal of key {key_id} does not verify: the event was altered after sealing): investigate who published it"),
        SealStatus::EventsDiffer => format!("not sealed by a trusted producer (the events in the stream differ from the ones key {key_id} sealed: altered, injected or missing events): investigate who published them"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use govledger_proto::v1::{SyncRunFinished, event::Body};

    fn finish() -> Event {
        Event {
            event_id: "e".into(),
            run_id: "r".into(),
            source_id: "s".into(),
            body: Some(Body::SyncRunFinished(SyncRunFinished {
                events_emitted: 2,
                ..Default::default()
            })),
            ..Default::default()
        }
    }

    #[test]
    fn a_run_seal_verifies_only_with_its_key_its_events_and_its_bytes() {
        let k = ProducerKey::from_seed([7; 32]);
        let chain = chain_of(vec![(3, leaf(3, b"b")), (1, leaf(1, b"a"))]);
        assert_eq!(
            chain,
            chain_step(&chain_step(&CHAIN_START, &leaf(1, b"a")), &leaf(3, b"b"))
        );
        let mut ev = finish();
        k.seal_run(&mut ev, 2, chain);
        let trust = Trust::new([k.public_key()]);
        assert_eq!(trust.check_run(&ev, 2, &chain).status, SealStatus::Verified);
        assert_eq!(
            trust.check_run(&ev, 3, &chain).status,
            SealStatus::EventsDiffer
        );
        assert_eq!(
            trust.check_run(&ev, 2, &CHAIN_START).status,
            SealStatus::EventsDiffer
        );
        assert_eq!(
            Trust::default().check_run(&ev, 2, &chain).status,
            SealStatus::UntrustedKey
        );
        let mut altered = ev.clone();
        altered.run_id = "other".into();
        assert_eq!(
            trust.check_run(&altered, 2, &chain).status,
            SealStatus::BadSignature
        );
        let mut forged_count = ev.clone();
        if let Some(s) = forged_count.seal.as_mut() {
            s.events = 3;
        }
        assert_eq!(
            trust.check_run(&forged_count, 3, &chain).status,
            SealStatus::BadSignature
        );
        assert_eq!(
            trust.check_event(&ev).status,
            SealStatus::BadSignature,
            "a run seal is no event seal"
        );
        assert_eq!(
            trust.check_run(&finish(), 2, &chain).status,
            SealStatus::Missing
        );
    }

    #[test]
    fn an_event_seal_survives_a_decode_and_refuses_edits() {
        let k = ProducerKey::from_seed([9; 32]);
        let mut ev = finish();
        k.seal_event(&mut ev);
        let back = Event::decode(ev.encode_to_vec().as_slice()).unwrap();
        let trust = Trust::new([k.public_key()]);
        assert_eq!(trust.check_event(&back).status, SealStatus::Verified);
        let mut edited = back.clone();
        edited.occurred_at_us += 1;
        assert_eq!(trust.check_event(&edited).status, SealStatus::BadSignature);
        assert!(
            !format!("{k:?}").contains(&hex(&[9; 32])),
            "Debug shows no seed"
        );
    }

    #[test]
    fn a_new_key_file_is_private_and_loads_the_same_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/producer.key");
        let a = ProducerKey::load_or_create(&path).unwrap();
        let b = ProducerKey::load_or_create(&path).unwrap();
        assert_eq!(a.public_hex(), b.public_hex());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        std::fs::write(&path, "nope").unwrap();
        assert!(matches!(
            ProducerKey::load_or_create(&path),
            Err(KeyFileError::Format(_))
        ));
        assert_eq!(parse_public_key("zz").unwrap_err(), KeyProblem::Malformed);
        assert_eq!(
            parse_public_key(&hex(&[0u8; 32])).unwrap_err(),
            KeyProblem::Weak
        );
        assert!(parse_public_key(&a.public_hex()).is_ok());
    }
}
