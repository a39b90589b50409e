//! The proof that an identity bundle holds the identity's *whole* history:
//! its page of the identity map (`govledger_projector::identity_map`) at the
//! anchor, with the paths to the map root the anchor checkpoint signs.
//!
//! The exporter puts in every event of the identity up to the anchor's size
//! (those after the bundle's as-of point too: the map answers for the
//! anchor); the verifier folds them, takes the identity's history count and
//! chain head, and checks that the signed map holds exactly those. A bundle
//! that leaves out one of the identity's events — even one signed again by
//! the ledger's own keys — gives another count or head than the map the
//! checkpoint (and its witnesses) committed to before the export.

use govledger_projector::{
    OwnedMsg,
    identity_map::{Entry, HistoryProof},
    keys, merkle,
};
use govledger_proto::v1::Checkpoint;
use govledger_stream::seal::Trust;
use serde::{Deserialize, Serialize};

use super::Bundle;
use crate::audit::checkpoints;

/// [`HistoryProof`] as a bundle carries it: hashes in hex, each page entry
/// as `"<SHA-256 of the identity key> <count> <chain head>"`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BundleHistory {
    pub source_id: String,
    pub pages: u64,
    pub page: u64,
    pub entries: Vec<String>,
    pub page_path: Vec<String>,
    pub source_index: u64,
    pub sources: u64,
    pub source_path: Vec<String>,
}

impl From<&HistoryProof> for BundleHistory {
    fn from(p: &HistoryProof) -> Self {
        BundleHistory {
            source_id: p.source_id.clone(),
            pages: p.pages,
            page: p.page,
            entries: p
                .entries
                .iter()
                .map(|e| {
                    format!(
                        "{} {} {}",
                        merkle::hex(&e.key_hash),
                        e.count,
                        merkle::hex(&e.head)
                    )
                })
                .collect(),
            page_path: p.page_path.iter().map(merkle::hex).collect(),
            source_index: p.source_index,
            sources: p.sources,
            source_path: p.source_path.iter().map(merkle::hex).collect(),
        }
    }
}

fn hash(what: &str, h: &str) -> Result<merkle::Hash, String> {
    checkpoints::unhex_hash(h)
        .ok_or_else(|| format!("identity_history: {what} {h:?} is not a SHA-256 hash in hex"))
}

impl BundleHistory {
    fn proof(&self) -> Result<HistoryProof, String> {
        let entries = self
            .entries
            .iter()
            .map(|e| {
                let mut f = e.split(' ');
                let (Some(k), Some(c), Some(h), None) = (f.next(), f.next(), f.next(), f.next())
                else {
                    return Err(format!(
                        "identity_history: entry {e:?} is not \"<key hash> <count> <head>\""
                    ));
                };
                Ok(Entry {
                    key_hash: hash("key hash", k)?,
                    count: c
                        .parse()
                        .map_err(|_| format!("identity_history: count {c:?} is not a number"))?,
                    head: hash("head", h)?,
                })
            })
            .collect::<Result<_, _>>()?;
        let path = |what: &str, p: &[String]| {
            p.iter()
                .map(|h| hash(what, h))
                .collect::<Result<Vec<_>, _>>()
        };
        Ok(HistoryProof {
            source_id: self.source_id.clone(),
            pages: self.pages,
            page: self.page,
            entries,
            page_path: path("page path hash", &self.page_path)?,
            source_index: self.source_index,
            sources: self.sources,
            source_path: path("source path hash", &self.source_path)?,
        })
    }
}

/// Checks an identity bundle's history proof against the anchor's signed
/// identity map, folding `msgs` (the bundle's proven events, in sequence
/// order) up to the anchor. `Ok(None)`: a source bundle (nothing to check).
pub fn check(
    b: &Bundle,
    anchor: &Checkpoint,
    msgs: &[OwnedMsg],
    trust: &std::sync::Arc<Trust>,
) -> Result<Option<String>, String> {
    let s = &b.scope;
    if s.external_id.is_empty() {
        return match b.identity_history {
            None => Ok(None),
            Some(_) => Err(
                "a source bundle carries an identity history proof: it was added after export"
                    .into(),
            ),
        };
    }
    let Some(h) = &b.identity_history else {
        return Err("the bundle carries no proof of the identity's whole history (identity_history): it was removed after export".into());
    };
    let map_root = checkpoints::unhex_hash(&anchor.identity_map).ok_or("the anchor checkpoint signs no identity map, so nothing proves the bundle holds the identity's whole history")?;
    if h.source_id != s.source_id {
        return Err(format!(
            "identity_history proves source {:?}, the bundle is about source {:?}",
            h.source_id, s.source_id
        ));
    }
    let w = super::verify::fold_upto(msgs, anchor.tree_size, trust.clone());
    let key = (s.source_id.clone(), s.entity_type, s.external_id.clone());
    let (count, head) = w
        .identities
        .get(&key)
        .map(|i| (i.history_count, i.history_head.clone()))
        .unwrap_or_default();
    h.proof()?
        .verify(
            &keys::identity_key(&key.0, key.1, &key.2),
            count,
            &head,
            &map_root,
        )
        .map_err(|p| {
            format!(
                "the identity's history (anchor size {}): {p}",
                anchor.tree_size
            )
        })?;
    Ok(Some(format!(
        "whole history: the {count} event(s) of the identity up to the anchor (size {}) are the ones the identity map it signs commits to",
        anchor.tree_size
    )))
}
