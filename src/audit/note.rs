//! Checkpoints in the transparency-log world's formats: the C2SP
//! tlog-checkpoint body (origin, tree size, base64 root) signed as a C2SP
//! signed note with Ed25519 (`c2sp.org/signed-note`), so any signed-note
//! implementation verifies the ledger's checkpoints with the published
//! verifier key (`<origin>+<key id>+<base64 key>`), and witness cosignatures
//! (`c2sp.org/tlog-cosignature`, Ed25519 v1) on the same note are checked
//! against the configured witness keys.
//!
//! The formats come from Cloudflare's `signed_note` and `tlog_tiles` crates
//! (ports of Go's `golang.org/x/mod/sumdb`); this module holds the glue: the
//! ledger's key as a note signer, the cosignature verifier, and what an opened
//! note says. Pure: no I/O.

use base64::Engine as _;
use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use signed_note::{Note, StandardVerifier, Verifier as _, VerifierList};
use tlog_tiles::{Checkpoint as Body, Hash as TlogHash};

/// The signed-note signature type of an Ed25519 checkpoint signature.
const ALG_ED25519: u8 = 0x01;
/// The signature type of a `cosignature/v1` (c2sp.org/tlog-cosignature).
const ALG_COSIGNATURE_V1: u8 = 0x04;
/// Signature lines a note may carry before it is refused.
pub const NOTE_SIGNATURES_MAX: usize = 100;

/// The origin line of a ledger whose stream is `stream`, signing with key id
/// `key_id`, unless `audit.origin` names one: unique per deployment.
pub fn default_origin(stream: &str, key_id: &str) -> String {
    format!("govledger/{stream}/{key_id}")
}

/// Whether `name` may be a note's key name (and so an origin): non-empty,
/// no white space, no `+` (c2sp.org/signed-note).
pub fn is_name(name: &str) -> bool {
    signed_note::is_key_name_valid(name)
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoteProblem {
    #[error("the note is not a well-formed signed note: {0}")]
    Malformed(String),
    #[error("the verifier key is not an Ed25519 signed-note key (`name+id+base64`): {0}")]
    BadKey(String),
    #[error("the note carries no signature by {0}: it proves nothing")]
    Unsigned(String),
    #[error(
        "signature by {name} (key id {id:08x}) does not verify: the note was altered or forged"
    )]
    BadSignature { name: String, id: u32 },
    #[error("the note's body is not a tlog checkpoint (origin, size, base64 root)")]
    NotACheckpoint,
}

/// The ledger's checkpoint key, as a note signer named `origin`.
struct KeySigner<'a> {
    origin: &'a str,
    id: u32,
    key: &'a SigningKey,
}

impl signed_note::Signer for KeySigner<'_> {
    fn name(&self) -> &str {
        self.origin
    }
    fn key_id(&self) -> u32 {
        self.id
    }
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, signature::Error> {
        Ok(self.key.sign(msg).to_bytes().to_vec())
    }
}

/// The verifier key of `public` under `origin`: what the operator publishes
/// out of band and every verifier pins.
pub fn verifier_key(origin: &str, public: &VerifyingKey) -> String {
    signed_note::new_ed25519_verifier_key(origin, public)
}

/// The checkpoint (origin, `size`, `root`, then the `extension` lines, each
/// ending in a line break, or nothing) signed as a note by `key`.
pub fn sign(
    key: &SigningKey,
    origin: &str,
    size: u64,
    root: &[u8; 32],
    extension: &str,
) -> Result<String, NoteProblem> {
    let body = Body::new(origin, size, TlogHash(*root), extension)
        .map_err(|_| NoteProblem::Malformed(format!("origin {origin:?} is not a note name")))?;
    let public = [&[ALG_ED25519][..], key.verifying_key().as_bytes()].concat();
    let signer = KeySigner {
        origin,
        id: signed_note::key_id(origin, &public),
        key,
    };
    let mut note =
        Note::new(&body.to_bytes(), &[]).map_err(|e| NoteProblem::Malformed(e.to_string()))?;
    note.add_sigs(&[&signer])
        .map_err(|e| NoteProblem::Malformed(e.to_string()))?;
    String::from_utf8(note.to_bytes()).map_err(|e| NoteProblem::Malformed(e.to_string()))
}

/// A witness's `cosignature/v1` key: verifies `timestamp || signature` over
/// `cosignature/v1\ntime <t>\n` followed by the checkpoint body.
struct CosignatureVerifier {
    name: String,
    id: u32,
    key: VerifyingKey,
}

impl signed_note::Verifier for CosignatureVerifier {
    fn name(&self) -> &str {
        &self.name
    }
    fn key_id(&self) -> u32 {
        self.id
    }
    fn verify(&self, msg: &[u8], sig: &[u8]) -> bool {
        let Some((t, s)) = sig.split_first_chunk::<8>() else {
            return false;
        };
        let Ok(s) = <[u8; 64]>::try_from(s) else {
            return false;
        };
        let signed = [
            format!("cosignature/v1\ntime {}\n", u64::from_be_bytes(*t)).as_bytes(),
            msg,
        ]
        .concat();
        self.key
            .verify_strict(&signed, &Signature::from_bytes(&s))
            .is_ok()
    }
}

/// Checks a witness's verifier key (`audit.witness_keys`).
pub fn check_witness_key(vkey: &str) -> Result<(), NoteProblem> {
    cosignature_verifier(vkey).map(|_| ())
}

/// Parses a witness's verifier key (`name+id+base64(0x04 || key)`).
fn cosignature_verifier(vkey: &str) -> Result<CosignatureVerifier, NoteProblem> {
    let bad = || NoteProblem::BadKey(vkey.to_owned());
    let mut parts = vkey.splitn(3, '+');
    let (name, id, key) = (
        parts.next().ok_or_else(bad)?,
        parts.next().ok_or_else(bad)?,
        parts.next().ok_or_else(bad)?,
    );
    let raw = base64::engine::general_purpose::STANDARD
        .decode(key)
        .map_err(|_| bad())?;
    let id = u32::from_str_radix(id, 16).map_err(|_| bad())?;
    if !is_name(name) || raw.first() != Some(&ALG_COSIGNATURE_V1) || raw.len() != 33 {
        return Err(bad());
    }
    if id != signed_note::key_id(name, &raw) {
        return Err(bad());
    }
    let key =
        VerifyingKey::from_bytes(raw[1..].try_into().map_err(|_| bad())?).map_err(|_| bad())?;
    if key.is_weak() {
        return Err(bad());
    }
    Ok(CosignatureVerifier {
        name: name.to_owned(),
        id,
        key,
    })
}

/// What a note verified against the ledger's key says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opened {
    pub origin: String,
    pub size: u64,
    pub root: [u8; 32],
    /// The extension lines after the root (each ending in a line break).
    pub extension: String,
    /// The configured witnesses whose cosignatures verified.
    pub witnesses: Vec<String>,
    /// Signature lines by keys nobody configured (ignored, as the spec says).
    pub unknown_signatures: usize,
}

/// Opens `note` with the ledger's verifier key `vkey` (required) and the
/// witnesses' keys (each cosignature by a known witness must verify: a
/// forged one rejects the note).
pub fn open(note: &str, vkey: &str, witnesses: &[String]) -> Result<Opened, NoteProblem> {
    let ledger = StandardVerifier::new(vkey).map_err(|_| NoteProblem::BadKey(vkey.to_owned()))?;
    let ledger_name = ledger.name().to_owned();
    let ledger_id = ledger.key_id();
    let mut verifiers: Vec<Box<dyn signed_note::Verifier>> = vec![Box::new(ledger)];
    for w in witnesses {
        verifiers.push(Box::new(cosignature_verifier(w)?));
    }
    let parsed =
        Note::from_bytes(note.as_bytes()).map_err(|e| NoteProblem::Malformed(e.to_string()))?;
    let (verified, unverified) = match parsed.verify(&VerifierList::new(verifiers)) {
        Ok(v) => v,
        Err(signed_note::NoteError::InvalidSignature { name, id }) => {
            return Err(NoteProblem::BadSignature { name, id });
        }
        Err(signed_note::NoteError::UnverifiedNote) => {
            return Err(NoteProblem::Unsigned(ledger_name));
        }
        Err(e) => return Err(NoteProblem::Malformed(e.to_string())),
    };
    if !verified
        .iter()
        .any(|s| s.name() == ledger_name && s.id() == ledger_id)
    {
        // Only witnesses signed it: not the ledger's checkpoint.
        return Err(NoteProblem::Unsigned(ledger_name));
    }
    let body = Body::from_bytes(parsed.text()).map_err(|_| NoteProblem::NotACheckpoint)?;
    if body.origin() != ledger_name {
        return Err(NoteProblem::NotACheckpoint);
    }
    Ok(Opened {
        origin: body.origin().to_owned(),
        size: body.size(),
        root: body.hash().0,
        extension: body.extension().to_owned(),
        witnesses: verified
            .iter()
            .filter(|s| !(s.name() == ledger_name && s.id() == ledger_id))
            .map(|s| s.name().to_owned())
            .collect(),
        unknown_signatures: unverified.len(),
    })
}

/// A witness's cosignature line on `note` at `time` (seconds), as a witness
/// would return it: for tests and for operators who run their own witness.
pub fn cosign(
    note: &str,
    witness: &str,
    key: &SigningKey,
    time: u64,
) -> Result<String, NoteProblem> {
    let parsed =
        Note::from_bytes(note.as_bytes()).map_err(|e| NoteProblem::Malformed(e.to_string()))?;
    let public = [&[ALG_COSIGNATURE_V1][..], key.verifying_key().as_bytes()].concat();
    let id = signed_note::key_id(witness, &public);
    let signed = [
        format!("cosignature/v1\ntime {time}\n").as_bytes(),
        parsed.text(),
    ]
    .concat();
    let sig = [&time.to_be_bytes()[..], &key.sign(&signed).to_bytes()].concat();
    let line = signed_note::Signature::new(witness.to_owned(), id, sig)
        .map_err(|e| NoteProblem::Malformed(e.to_string()))?;
    Ok(format!(
        "{note}{}",
        String::from_utf8_lossy(&line.to_bytes())
    ))
}

/// A witness's verifier key (`name+id+base64(0x04 || key)`).
pub fn witness_key(name: &str, public: &VerifyingKey) -> String {
    let raw = [&[ALG_COSIGNATURE_V1][..], public.as_bytes()].concat();
    format!(
        "{name}+{:08x}+{}",
        signed_note::key_id(name, &raw),
        base64::engine::general_purpose::STANDARD.encode(raw)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(b: u8) -> SigningKey {
        SigningKey::from_bytes(&[b; 32])
    }

    const ORIGIN: &str = "govledger/GOVLEDGER/0123456789abcdef";

    #[test]
    fn a_signed_checkpoint_opens_with_its_key_and_says_what_was_signed() {
        let k = key(7);
        let note = sign(&k, ORIGIN, 42, &[9; 32], "").unwrap();
        let lines: Vec<&str> = note.lines().collect();
        assert_eq!(lines[0], ORIGIN);
        assert_eq!(lines[1], "42");
        assert_eq!(
            lines[2],
            base64::engine::general_purpose::STANDARD.encode([9u8; 32])
        );
        assert_eq!(lines[3], "");
        assert!(lines[4].starts_with(&format!("— {ORIGIN} ")), "{note}");
        let vkey = verifier_key(ORIGIN, &k.verifying_key());
        assert!(vkey.starts_with(&format!("{ORIGIN}+")), "{vkey}");
        let o = open(&note, &vkey, &[]).unwrap();
        assert_eq!((o.origin.as_str(), o.size, o.root), (ORIGIN, 42, [9; 32]));
        assert!(o.witnesses.is_empty());
    }

    #[test]
    fn an_altered_note_or_another_key_is_refused() {
        let k = key(7);
        let vkey = verifier_key(ORIGIN, &k.verifying_key());
        let note = sign(&k, ORIGIN, 42, &[9; 32], "").unwrap();
        let altered = note.replacen("\n42\n", "\n43\n", 1);
        assert!(matches!(
            open(&altered, &vkey, &[]),
            Err(NoteProblem::BadSignature { .. })
        ));
        let other = sign(&key(8), ORIGIN, 42, &[9; 32], "").unwrap();
        // Same name, another key: its id differs, so it is an unknown
        // signature, and the ledger's own is missing.
        assert!(matches!(
            open(&other, &vkey, &[]),
            Err(NoteProblem::Unsigned(_))
        ));
        assert!(matches!(
            open("not a note", &vkey, &[]),
            Err(NoteProblem::Malformed(_))
        ));
        assert!(matches!(
            open(&note, "nonsense", &[]),
            Err(NoteProblem::BadKey(_))
        ));
    }

    #[test]
    fn witness_cosignatures_are_counted_and_a_forged_one_rejects_the_note() {
        let k = key(7);
        let vkey = verifier_key(ORIGIN, &k.verifying_key());
        let note = sign(&k, ORIGIN, 42, &[9; 32], "").unwrap();
        let w = key(20);
        let wkey = witness_key("witness.example/w1", &w.verifying_key());
        let cosigned = cosign(&note, "witness.example/w1", &w, 1_700_000_000).unwrap();
        let o = open(&cosigned, &vkey, std::slice::from_ref(&wkey)).unwrap();
        assert_eq!(o.witnesses, ["witness.example/w1"]);
        // Unconfigured, the cosignature is ignored, not trusted.
        let o = open(&cosigned, &vkey, &[]).unwrap();
        assert!(o.witnesses.is_empty());
        assert_eq!(o.unknown_signatures, 1);
        // A cosignature line under the witness's name and key id, its
        // signature made with another key: refused.
        let b64 = base64::engine::general_purpose::STANDARD;
        let sig_of = |line: &str| b64.decode(line.rsplit_once(' ').unwrap().1).unwrap();
        let real = sig_of(cosigned.lines().last().unwrap());
        let other = cosign(&note, "witness.example/w1", &key(21), 1_700_000_000).unwrap();
        let wrong = sig_of(other.lines().last().unwrap());
        let spliced = [&real[..4], &wrong[4..]].concat();
        let forged = format!("{note}— witness.example/w1 {}\n", b64.encode(spliced));
        assert!(matches!(
            open(&forged, &vkey, std::slice::from_ref(&wkey)),
            Err(NoteProblem::BadSignature { .. })
        ));
        assert!(cosignature_verifier("w+00000000+AAAA").is_err());
    }
}
