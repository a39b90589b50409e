//! Checkpoint-key rotation, pure: the key sequence a chain of checkpoints
//! proves, and the published key set an auditor pins.
//!
//! A key hands over to its successor in a *handover checkpoint*: the last
//! checkpoint it signs, whose statement names the next key (`next_key=HEX`)
//! and which the next key countersigns ([`handover_statement`]), so both
//! keys agree. From then on the handing key is retired: a checkpoint it signs
//! later is refused ([`CheckpointError::RetiredKey`]), as is a change of key
//! no handover announced ([`CheckpointError::UnannouncedKey`]). Each key's
//! validity period is the stretch of the chain between the handover that
//! brought it in and the one that retired it ([`KeyPeriod`]).
//!
//! Trust: a handover is signed by both keys, and every checkpoint names the
//! hash of the one before it, so pinning any one key of the sequence pins
//! the whole sequence — an auditor who pinned the first key accepts its
//! successors, one who pinned today's key accepts the history it
//! countersigned. A key not in the sequence pins nothing.

use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};
use govledger_projector::fold::hex;
use govledger_proto::v1::Checkpoint;

use super::signed::{
    CheckpointError, check_history, checkpoint_hash, sign_checkpoint, statement, verify_signed,
};
use crate::audit::keys::{KeyProblem, key_id, parse_public_key, strict};

/// One checkpoint key and the part of the chain it signed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyPeriod {
    /// Hex ed25519 public key (lower case).
    pub public_key: String,
    pub key_id: String,
    /// The verifier key of its signed notes (`<origin>+<id>+<base64>`), when
    /// a checkpoint it signed carries a note.
    pub verifier_key: String,
    /// The tree size and time of the first checkpoint it signed (or of the
    /// handover that brought it in).
    pub from_size: u64,
    pub from_us: i64,
    /// The handover that retired it: tree size and time; `None` while current.
    pub retired: Option<(u64, i64)>,
}

/// What the next key signs to accept a handover: a domain tag, then the
/// handover checkpoint's statement (which names the next key).
pub fn handover_statement(cp: &Checkpoint) -> Vec<u8> {
    format!("govledger key handover v1\n{}", statement(cp)).into_bytes()
}

/// `cp` as a handover checkpoint: signed by `old`, naming `new` as the next
/// key, countersigned by `new`. (Its note, if any, is added after, by `old`.)
pub fn hand_over(old: &SigningKey, new: &SigningKey, mut cp: Checkpoint) -> Checkpoint {
    cp.next_public_key = hex(new.verifying_key().as_bytes());
    let mut cp = sign_checkpoint(old, cp);
    cp.next_key_signature = hex(&new.sign(&handover_statement(&cp)).to_bytes());
    cp
}

/// The next key of a handover checkpoint (whose own signature holds), once
/// its countersignature holds; `None` for a checkpoint that hands over nothing.
fn next_key(cp: &Checkpoint) -> Result<Option<VerifyingKey>, CheckpointError> {
    if cp.next_public_key.is_empty() {
        return if cp.next_key_signature.is_empty() {
            Ok(None)
        } else {
            Err(bad_handover(cp, "a countersignature without a next key"))
        };
    }
    let next = parse_public_key(&cp.next_public_key).map_err(|p| match p {
        KeyProblem::Malformed => bad_handover(cp, "the next key is not an ed25519 public key"),
        KeyProblem::Weak => bad_handover(cp, "the next key is a weak (small-order) key"),
    })?;
    if cp.next_public_key.eq_ignore_ascii_case(&cp.public_key) {
        return Err(bad_handover(cp, "a key cannot hand over to itself"));
    }
    match strict(&next, &handover_statement(cp), &cp.next_key_signature) {
        Some(true) => Ok(Some(next)),
        Some(false) => Err(bad_handover(
            cp,
            "the next key's countersignature does not match (forged, or the handover was altered)",
        )),
        None => Err(bad_handover(cp, "the next key did not countersign it")),
    }
}

fn bad_handover(cp: &Checkpoint, problem: &str) -> CheckpointError {
    CheckpointError::BadHandover {
        size: cp.tree_size,
        problem: problem.to_owned(),
    }
}

/// Walks checkpoints made one after the other (not necessarily adjacent)
/// and records who signed them; the hash links are the caller's.
#[derive(Default)]
struct Walk {
    periods: Vec<KeyPeriod>,
    /// The key the next checkpoint must be signed by, once one is known.
    expected: Option<String>,
}

impl Walk {
    fn step(&mut self, cp: &Checkpoint) -> Result<(), CheckpointError> {
        let key = verify_signed(cp)?;
        let public = hex(key.as_bytes());
        match &self.expected {
            None => self.periods.push(period(cp, &key)),
            Some(e) if *e == public => {
                let p = self.periods.last_mut().filter(|p| p.public_key == public);
                if let Some(p) = p
                    && p.verifier_key.is_empty()
                {
                    p.verifier_key = note_vkey(cp, &key);
                }
            }
            Some(e) => {
                let expected = self
                    .periods
                    .iter()
                    .find(|p| p.public_key == *e)
                    .map_or_else(String::new, |p| p.key_id.clone());
                return Err(match self.periods.iter().find(|p| p.public_key == public) {
                    Some(retired) => CheckpointError::RetiredKey {
                        size: cp.tree_size,
                        key_id: retired.key_id.clone(),
                        retired_at: retired.retired.map_or(0, |r| r.0),
                    },
                    None => CheckpointError::UnannouncedKey {
                        size: cp.tree_size,
                        found: cp.key_id.clone(),
                        expected,
                    },
                });
            }
        }
        self.expected = Some(public);
        if let Some(next) = next_key(cp)? {
            let at = (cp.tree_size, cp.created_at_us);
            if let Some(p) = self.periods.last_mut() {
                p.retired = Some(at);
            }
            let mut p = period(cp, &next);
            p.verifier_key.clear(); // known from its first note
            self.periods.push(p);
            self.expected = Some(hex(next.as_bytes()));
        }
        Ok(())
    }
}

fn period(cp: &Checkpoint, key: &VerifyingKey) -> KeyPeriod {
    KeyPeriod {
        public_key: hex(key.as_bytes()),
        key_id: key_id(key),
        verifier_key: note_vkey(cp, key),
        from_size: cp.tree_size,
        from_us: cp.created_at_us,
        retired: None,
    }
}

/// The verifier key `key` signs `cp`'s note under ("" without a note).
fn note_vkey(cp: &Checkpoint, key: &VerifyingKey) -> String {
    match cp.note.lines().next() {
        Some(origin) if !cp.note.is_empty() => crate::audit::note::verifier_key(origin, key),
        _ => String::new(),
    }
}

/// The key sequence of a chain of checkpoints given oldest first, each
/// naming the hash of the one before it: every signature, note and handover
/// holds, no fork or rollback, and each checkpoint is signed by the key of
/// its stretch (not a retired one, not one no handover announced).
pub fn key_sequence(cps: &[Checkpoint]) -> Result<Vec<KeyPeriod>, CheckpointError> {
    check_history(cps)?;
    let mut walk = Walk::default();
    for (i, cp) in cps.iter().enumerate() {
        walk.step(cp)?;
        if i > 0 {
            let expected = checkpoint_hash(&cps[i - 1]);
            if cp.previous != expected {
                return Err(CheckpointError::BrokenChain {
                    size: cp.tree_size,
                    found: cp.previous.clone(),
                    expected,
                });
            }
        }
    }
    Ok(walk.periods)
}

/// The key sequence of `handovers` (the handover checkpoints made before
/// `chain`, oldest first, as a bundle carries them) followed by `chain`:
/// each handover's next key signs the next handover, the last one's signs
/// the chain's first checkpoint.
pub fn key_sequence_after(
    handovers: &[Checkpoint],
    chain: &[Checkpoint],
) -> Result<Vec<KeyPeriod>, CheckpointError> {
    // Rollbacks (and forks) among the handovers and into the chain.
    let mut ordered = handovers.to_vec();
    ordered.extend(chain.first().cloned());
    check_history(&ordered)?;
    let mut walk = Walk::default();
    for h in handovers {
        if h.next_public_key.is_empty() {
            return Err(bad_handover(
                h,
                "a key history entry that hands over nothing",
            ));
        }
        walk.step(h)?;
    }
    let mut periods = walk.periods;
    let expected = walk.expected;
    let mut rest = key_sequence(chain)?;
    if let (Some(e), Some(first)) = (expected, rest.first()) {
        if first.public_key != e {
            return Err(CheckpointError::UnannouncedKey {
                size: first.from_size,
                found: first.key_id.clone(),
                expected: periods
                    .last()
                    .map_or_else(String::new, |p| p.key_id.clone()),
            });
        }
        // The chain's first key is the last handover's next key: one period.
        let joined = rest.remove(0);
        if let Some(p) = periods.last_mut() {
            p.verifier_key = joined.verifier_key;
            p.retired = joined.retired;
        }
    }
    periods.extend(rest);
    Ok(periods)
}

/// Whether one of `pins` (hex keys) is a key of `sequence` (an empty
/// sequence, no checkpoint, pins nothing and is refused nothing); `Err`
/// names the keys found and the first pin.
pub fn pinned(
    sequence: &[KeyPeriod],
    pins: &[String],
    first_size: u64,
) -> Result<(), CheckpointError> {
    if sequence.is_empty()
        || sequence
            .iter()
            .any(|p| pins.iter().any(|k| k.eq_ignore_ascii_case(&p.public_key)))
    {
        return Ok(());
    }
    Err(CheckpointError::OtherKey {
        size: first_size,
        found: sequence
            .iter()
            .map(|p| p.key_id.as_str())
            .collect::<Vec<_>>()
            .join(" then "),
        trusted: pins
            .first()
            .and_then(|k| parse_public_key(k).ok())
            .map_or_else(|| "?".to_owned(), |k| key_id(&k)),
    })
}

/// A key as an auditor pins it: 64 hex characters, or the signed-note
/// verifier key `<name>+<8 hex id>+<base64 of 0x01 and the key>` the
/// ledger publishes. Returns the key's hex.
pub fn pin(text: &str) -> Result<String, String> {
    use base64::Engine as _;
    let text = text.trim();
    if !text.contains('+') {
        return parse_public_key(text)
            .map(|k| hex(k.as_bytes()))
            .map_err(|p| format!("the key is {p}"));
    }
    // `+` is in no name and in no hex id, but may be in the base64.
    let mut parts = text.splitn(3, '+');
    let (Some(name), Some(_id), Some(b64)) = (parts.next(), parts.next(), parts.next()) else {
        return Err("not a verifier key (`<name>+<id>+<base64>`)".into());
    };
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|_| "the verifier key's key part is not base64".to_owned())?;
    let key = match bytes.split_first() {
        Some((0x01, k)) => <[u8; 32]>::try_from(k)
            .ok()
            .and_then(|k| VerifyingKey::from_bytes(&k).ok()),
        _ => None,
    }
    .ok_or_else(|| "not an Ed25519 signed-note verifier key (type 0x01)".to_owned())?;
    if crate::audit::note::verifier_key(name, &key) != text {
        return Err("the verifier key's id does not match its name and key".into());
    }
    parse_public_key(&hex(key.as_bytes()))
        .map(|k| hex(k.as_bytes()))
        .map_err(|p| format!("the key is {p}"))
}

/// The published key set, one key per line, oldest first: the signed-note
/// verifier key (the hex key when no note of it is known), its key id and
/// its validity period in tree sizes and times. An operator publishes it out
/// of band; an auditor pins a line's first field.
pub fn published_key_set(sequence: &[KeyPeriod]) -> String {
    let time = |us: i64| {
        chrono::DateTime::from_timestamp_micros(us)
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
            .unwrap_or_else(|| format!("{us} µs"))
    };
    let mut out = String::from(
        "# checkpoint keys, oldest first; pinning any one pins them all (each handover is signed by both keys)\n",
    );
    for p in sequence {
        let key = if p.verifier_key.is_empty() {
            &p.public_key
        } else {
            &p.verifier_key
        };
        let until = match p.retired {
            Some((size, at)) => format!("retired by its handover at size {size} ({})", time(at)),
            None => "current".to_owned(),
        };
        out.push_str(&format!(
            "{key}  key_id={}  valid from size {} ({}), {until}\n",
            p.key_id,
            p.from_size,
            time(p.from_us)
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::checkpoints::{sign, with_note};

    fn key(b: u8) -> SigningKey {
        SigningKey::from_bytes(&[b; 32])
    }

    fn pk(k: &SigningKey) -> String {
        hex(k.verifying_key().as_bytes())
    }

    /// A checkpoint of `size` after `prev`, signed by `k` with a note.
    fn next(k: &SigningKey, size: u64, prev: Option<&Checkpoint>) -> Checkpoint {
        let cp = sign(
            k,
            "G",
            size,
            &format!("{:064x}", size),
            size as i64 * 1_000_000,
            &prev.map(checkpoint_hash).unwrap_or_default(),
            "",
        );
        with_note(cp, k, "ledger.example/identity").unwrap()
    }

    /// The handover from `old` to `new` at `size` after `prev`.
    fn handover(old: &SigningKey, new: &SigningKey, size: u64, prev: &Checkpoint) -> Checkpoint {
        let body = Checkpoint {
            stream: "G".into(),
            tree_size: size,
            root: format!("{:064x}", size),
            created_at_us: size as i64 * 1_000_000,
            previous: checkpoint_hash(prev),
            ..Default::default()
        };
        with_note(hand_over(old, new, body), old, "ledger.example/identity").unwrap()
    }

    /// A, A, A→B handover, B, B.
    fn rotated() -> (SigningKey, SigningKey, Vec<Checkpoint>) {
        let (a, b) = (key(1), key(2));
        let c1 = next(&a, 1, None);
        let c2 = next(&a, 5, Some(&c1));
        let h = handover(&a, &b, 8, &c2);
        let c4 = next(&b, 8, Some(&h));
        let c5 = next(&b, 12, Some(&c4));
        (a, b, vec![c1, c2, h, c4, c5])
    }

    #[test]
    fn a_handover_signed_by_both_keys_moves_the_chain_to_the_next_key() {
        let (a, b, cps) = rotated();
        let seq = key_sequence(&cps).unwrap();
        assert_eq!(seq.len(), 2);
        assert_eq!(seq[0].public_key, pk(&a));
        assert_eq!(
            (seq[0].from_size, seq[0].retired),
            (1, Some((8, 8_000_000)))
        );
        assert_eq!(seq[1].public_key, pk(&b));
        assert_eq!((seq[1].from_size, seq[1].retired), (8, None));
        assert!(seq[1].verifier_key.starts_with("ledger.example/identity+"));
        // Pinning either key pins the chain; a third key pins nothing.
        crate::audit::checkpoints::verify_chain(&cps, &pk(&a)).unwrap();
        crate::audit::checkpoints::verify_chain(&cps, &pk(&b)).unwrap();
        assert!(matches!(
            crate::audit::checkpoints::verify_chain(&cps, &pk(&key(3))),
            Err(CheckpointError::OtherKey { .. })
        ));
        let text = published_key_set(&seq);
        assert!(
            text.contains(&seq[0].verifier_key)
                && text.contains("retired by its handover at size 8"),
            "{text}"
        );
        assert!(
            text.contains(&format!("key_id={}  valid from size 8", seq[1].key_id))
                && text.ends_with("current\n"),
            "{text}"
        );
    }

    #[test]
    fn a_retired_key_or_an_unannounced_one_signs_nothing() {
        let (a, _, mut cps) = rotated();
        // The retired key signs after its handover: a stale node or a stolen key.
        let stale = next(&a, 13, cps.last());
        cps.push(stale);
        assert!(matches!(
            key_sequence(&cps),
            Err(CheckpointError::RetiredKey {
                size: 13,
                retired_at: 8,
                ..
            })
        ));
        // A key no handover named.
        let (_, _, mut cps) = rotated();
        let other = next(&key(3), 13, cps.last());
        cps.push(other);
        let e = key_sequence(&cps).unwrap_err();
        assert!(
            matches!(e, CheckpointError::UnannouncedKey { size: 13, .. }),
            "{e}"
        );
        assert!(
            e.to_string().contains("audit.previous_signing_key_file"),
            "{e}"
        );
    }

    #[test]
    fn a_handover_without_the_next_keys_word_or_altered_is_refused() {
        let (a, b, cps) = rotated();
        // Countersigned by another key than the one named.
        let mut forged = cps.clone();
        forged[2].next_key_signature =
            hex(&key(3).sign(&handover_statement(&forged[2])).to_bytes());
        assert!(matches!(
            key_sequence(&forged),
            Err(CheckpointError::BadHandover { size: 8, .. })
        ));
        // Not countersigned at all.
        let mut bare = cps.clone();
        bare[2].next_key_signature.clear();
        assert!(matches!(
            key_sequence(&bare),
            Err(CheckpointError::BadHandover { size: 8, .. })
        ));
        // The next key swapped after signing: the old key's signature breaks.
        let mut swapped = cps.clone();
        swapped[2].next_public_key = pk(&key(3));
        assert!(matches!(
            key_sequence(&swapped),
            Err(CheckpointError::BadSignature(8))
        ));
        // A handover to itself.
        let h = handover(&a, &a, 8, &cps[1]);
        let e = key_sequence(&[cps[0].clone(), cps[1].clone(), h]).unwrap_err();
        assert!(e.to_string().contains("itself"), "{e}");
        let _ = b;
    }

    #[test]
    fn a_key_history_reaches_a_key_pinned_before_rotations() {
        let (a, b, cps) = rotated();
        let c = key(3);
        let h2 = handover(&b, &c, 12, &cps[4]);
        let c1 = next(&c, 20, Some(&h2));
        // History: both handovers; chain: C's checkpoint.
        let seq =
            key_sequence_after(&[cps[2].clone(), h2.clone()], std::slice::from_ref(&c1)).unwrap();
        let ids: Vec<_> = seq.iter().map(|p| p.public_key.clone()).collect();
        assert_eq!(ids, vec![pk(&a), pk(&b), pk(&c)]);
        assert_eq!(seq[2].retired, None);
        pinned(&seq, &[pk(&a)], 20).unwrap();
        // A history whose last handover names another key than the chain's.
        let e = key_sequence_after(std::slice::from_ref(&cps[2]), std::slice::from_ref(&c1))
            .unwrap_err();
        assert!(matches!(e, CheckpointError::UnannouncedKey { .. }), "{e}");
        // A history entry that hands over nothing.
        let e = key_sequence_after(&[cps[0].clone()], std::slice::from_ref(&c1)).unwrap_err();
        assert!(matches!(e, CheckpointError::BadHandover { .. }), "{e}");
        // Out of order.
        let e = key_sequence_after(&[h2, cps[2].clone()], std::slice::from_ref(&c1)).unwrap_err();
        assert!(matches!(e, CheckpointError::Rollback { .. }), "{e}");
    }

    #[test]
    fn a_key_is_pinned_as_hex_or_as_its_verifier_key() {
        let k = key(5);
        let vkey = crate::audit::note::verifier_key("ledger.example/identity", &k.verifying_key());
        assert_eq!(pin(&vkey).unwrap(), pk(&k));
        assert_eq!(pin(&pk(&k).to_uppercase()).unwrap(), pk(&k));
        // Another name under the same id: the id no longer matches.
        let renamed = vkey.replacen("ledger.example", "other.example", 1);
        assert!(pin(&renamed).unwrap_err().contains("id does not match"));
        assert!(pin("zz").is_err());
        assert!(pin("a+b+!!").is_err());
        // A key whose base64 holds a `+` still parses.
        let plus = (0u8..=255)
            .map(key)
            .map(|k| crate::audit::note::verifier_key("l", &k.verifying_key()))
            .find(|v| v.splitn(3, '+').nth(2).is_some_and(|b| b.contains('+')))
            .unwrap();
        assert!(pin(&plus).is_ok(), "{plus}");
    }
}
