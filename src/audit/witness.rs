//! Witness cosignatures: the outside anchor of the ledger's checkpoints. A
//! witness (c2sp.org/tlog-witness) that has checked a checkpoint's
//! consistency with what it saw before returns it cosigned
//! (c2sp.org/tlog-cosignature); the ledger asks its configured witnesses
//! itself ([`crate::audit::witness_client`]), or the operator or an auditor
//! hands such a note to the ledger (`AddCosignature`, `govledger checkpoint
//! --add-cosignature`); either way it is kept once it holds: the ledger's own signature verifies, at least
//! one cosignature by a configured witness key (`audit.witness_keys`) verifies,
//! and the tree head is one the ledger signed. They are stored beside the
//! checkpoints, on `govledger.audit.cosignature`, and `verify` names the
//! witnesses of each checkpoint.
//!
//! [`accept`] and [`summarize`] are pure; the stream I/O is in the checkpointer.

use govledger_proto::v1::Checkpoint;

use crate::audit::note::{self, NoteProblem};

/// The subject cosigned notes are stored on (in the audit stream).
pub const COSIGNATURE_SUBJECT: &str = "govledger.audit.cosignature";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CosignError {
    #[error("{0}")]
    Note(#[from] NoteProblem),
    #[error(
        "the note carries no cosignature by a configured witness (audit.witness_keys lists {configured}); \
         add the witness's verifier key to audit.witness_keys first"
    )]
    NoWitness { configured: usize },
    #[error("the ledger never signed a checkpoint of size {size} with root {root}")]
    NotOurs { size: u64, root: String },
}

/// A checkpoint and the configured witnesses that cosigned it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Witnessed {
    pub size: u64,
    /// Hex root.
    pub root: String,
    pub witnesses: Vec<String>,
}

/// Whether `note`, handed in with cosignatures, may be kept: the ledger's
/// signature (`vkey`), a configured witness's cosignature, a tree head the
/// ledger signed (one of `signed`). Pure.
pub fn accept(
    cosigned: &str,
    vkey: &str,
    witness_keys: &[String],
    signed: &[Checkpoint],
) -> Result<Witnessed, CosignError> {
    let opened = note::open(cosigned, vkey, witness_keys)?;
    if opened.witnesses.is_empty() {
        return Err(CosignError::NoWitness {
            configured: witness_keys.len(),
        });
    }
    let root = govledger_projector::merkle::hex(&opened.root);
    if !signed
        .iter()
        .any(|c| c.tree_size == opened.size && c.root.eq_ignore_ascii_case(&root))
    {
        return Err(CosignError::NotOurs {
            size: opened.size,
            root,
        });
    }
    Ok(Witnessed {
        size: opened.size,
        root,
        witnesses: opened.witnesses,
    })
}

/// The witnesses of each checkpoint, from the stored cosigned notes (a note
/// that no longer verifies — the stream was altered — is an error: a forged
/// cosignature is never counted). Sorted by size; one entry per size. A note
/// opens under the one of `vkeys` (the ledger's keys, old and current) whose
/// name is its origin and whose signature it carries.
pub fn summarize(
    notes: &[String],
    vkeys: &[String],
    witness_keys: &[String],
) -> Result<Vec<Witnessed>, NoteProblem> {
    let mut by_size: std::collections::BTreeMap<(u64, String), Vec<String>> = Default::default();
    for n in notes {
        let origin = n.lines().next().unwrap_or_default();
        let mut opened = Err(NoteProblem::Unsigned(origin.to_owned()));
        for vkey in vkeys.iter().filter(|k| k.split('+').next() == Some(origin)) {
            opened = note::open(n, vkey, witness_keys);
            if !matches!(opened, Err(NoteProblem::Unsigned(_))) {
                break;
            }
        }
        let o = opened?;
        let w = by_size
            .entry((o.size, govledger_projector::merkle::hex(&o.root)))
            .or_default();
        for name in o.witnesses {
            if !w.contains(&name) {
                w.push(name);
            }
        }
    }
    Ok(by_size
        .into_iter()
        .map(|((size, root), witnesses)| Witnessed {
            size,
            root,
            witnesses,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use ed25519_dalek::SigningKey;

    use super::*;
    use crate::audit::checkpoints;

    #[test]
    fn a_cosigned_checkpoint_of_ours_is_kept_others_are_refused() {
        let k = SigningKey::from_bytes(&[7; 32]);
        let origin = "ledger.example/identity";
        let cp = checkpoints::with_note(
            checkpoints::sign(&k, "G", 10, &"ab".repeat(32), 1, "", ""),
            &k,
            origin,
        )
        .unwrap();
        let w = SigningKey::from_bytes(&[20; 32]);
        let wkey = note::witness_key("witness.example/w1", &w.verifying_key());
        let cosigned = note::cosign(&cp.note, "witness.example/w1", &w, 1_700_000_000).unwrap();
        let keys = [wkey];
        let got = accept(
            &cosigned,
            &cp.verifier_key,
            &keys,
            std::slice::from_ref(&cp),
        )
        .unwrap();
        assert_eq!(got.witnesses, ["witness.example/w1"]);
        assert_eq!(got.size, 10);
        // No configured witness among the signatures.
        assert!(matches!(
            accept(&cosigned, &cp.verifier_key, &[], std::slice::from_ref(&cp)),
            Err(CosignError::NoWitness { configured: 0 })
        ));
        // A tree head the ledger never signed (its own key, another root).
        let other = checkpoints::with_note(
            checkpoints::sign(&k, "G", 10, &"cd".repeat(32), 1, "", ""),
            &k,
            origin,
        )
        .unwrap();
        let cosigned_other =
            note::cosign(&other.note, "witness.example/w1", &w, 1_700_000_000).unwrap();
        assert!(matches!(
            accept(
                &cosigned_other,
                &cp.verifier_key,
                &keys,
                std::slice::from_ref(&cp)
            ),
            Err(CosignError::NotOurs { size: 10, .. })
        ));
        let s = summarize(
            &[cosigned.clone(), cosigned],
            std::slice::from_ref(&cp.verifier_key),
            &keys,
        )
        .unwrap();
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].witnesses, ["witness.example/w1"]);
    }
}
