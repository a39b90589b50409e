//! The offline check of an evidence bundle: pure, needs no NATS and no sled.
//!
//! Order: size and format (else REJECTED: not a bundle, or an older format),
//! the key (strict, not weak, its `key_id` derived from it, the pinned one when
//! given), the checkpoint chain, every event's proof, the signed manifest
//! (which covers every event's time and subject, and the producer keys), what
//! the verifier recomputes (each `in_range` flag, each readable event, the
//! readable state), the producer seals (provenance: reported, not failures —
//! an unsealed run is a fact the bundle proves, decided UNVERIFIED_PRODUCER by
//! the ledger), the state folded again with the same producer keys. All held:
//! VERIFIED with a pinned key, else UNPINNED.

use std::collections::{BTreeMap, BTreeSet};

use govledger_projector::{OwnedMsg, fold, fold_in_memory, merkle};
use govledger_proto::v1::{
    ActionState, Checkpoint, EntityType, IdentityState, SealStatus, SourceState, event::Body,
};
use govledger_stream::seal::{self, Trust};

use super::{
    BUNDLE_BYTES_MAX, BUNDLE_FORMAT, BUNDLE_FORMAT_PREFIX, Bundle, BundleEvent, descriptors,
    in_range, manifest, readable, readable_state, tlog_proof,
};
use crate::audit::checkpoints::{self, unhex};

/// The outcome of [`verify_bundle`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Verdict {
    /// Every check held and the bundle is signed by the pinned key.
    Verified,
    /// Every check held, but no key was pinned: the bundle is consistent
    /// under its own key, which anyone could have made.
    Unpinned,
    /// A check failed: the bundle was altered (or forged).
    #[default]
    Tampered,
    /// Not a govledger evidence bundle this version checks (other JSON,
    /// garbage, over the size cap, an older format).
    Rejected,
}

/// What [`verify_bundle`] found.
#[derive(Debug, Clone, Default)]
pub struct BundleReport {
    /// The verdict is [`Verdict::Verified`] (intact and signed by the pinned key).
    pub ok: bool,
    pub verdict: Verdict,
    /// The first bad sequence, when the problem is tied to one.
    pub first_bad_seq: Option<u64>,
    pub problem: String,
    /// What was checked, for the auditor's record.
    pub checked: Vec<String>,
    /// Things to know that are not failures.
    pub notes: Vec<String>,
    /// The scope verified, in words: identity or source, range, as-of
    /// sequence, anchor checkpoint (empty until the checks held).
    pub scope: String,
    /// The bundle's public key (hex) and its id, once the key checked out.
    pub public_key: String,
    pub key_id: String,
    /// The SHA-256 of the report page the manifest key signed for this
    /// bundle (empty: none), checked; not among `checked`, so the report
    /// rendered before the seal and after it is the same page.
    pub report_sha256: String,
}

impl BundleReport {
    fn fail(mut self, seq: Option<u64>, problem: String) -> Self {
        self.ok = false;
        self.verdict = Verdict::Tampered;
        self.first_bad_seq = seq;
        self.problem = problem;
        self
    }

    fn reject(mut self, problem: String) -> Self {
        self.ok = false;
        self.verdict = Verdict::Rejected;
        self.problem = problem;
        self
    }

    /// The report on a file of `len` bytes, over [`BUNDLE_BYTES_MAX`] (the CLI
    /// checks the size before it reads the file).
    pub fn too_large(len: u64) -> Self {
        Self::default().reject(format!(
            "the file holds {len} bytes, over the {} MiB a bundle may hold: not a govledger evidence bundle",
            BUNDLE_BYTES_MAX >> 20
        ))
    }
}

pub(super) fn decode_hex<M: prost::Message + Default>(what: &str, h: &str) -> Result<M, String> {
    let bytes = unhex(h).ok_or_else(|| format!("{what} is not hex"))?;
    M::decode(bytes.as_slice()).map_err(|e| format!("{what} does not decode: {e}"))
}

/// The part of a bundle read first, to tell a bundle from other JSON.
#[derive(serde::Deserialize)]
struct Head {
    #[serde(default)]
    format: Option<serde_json::Value>,
}

/// Checks a bundle offline (see the module doc). `trusted_key`: the ledger's
/// public key as the auditor knows it (hex, or the signed-note verifier key
/// of the published key set), obtained apart from the bundle; without it the
/// verdict is at best [`Verdict::Unpinned`].
pub fn verify_bundle(json: &[u8], trusted_key: Option<&str>) -> BundleReport {
    let r = BundleReport::default();
    let pin = match trusted_key.map(checkpoints::pin).transpose() {
        Ok(pin) => pin,
        Err(p) => {
            return r.reject(format!(
                "the key given with --public-key is not usable: {p}; pass the ledger's checkpoint key as its operator published it"
            ));
        }
    };
    let trusted_key = pin.as_deref();
    if json.len() as u64 > BUNDLE_BYTES_MAX {
        return BundleReport::too_large(json.len() as u64);
    }
    let format = match serde_json::from_slice::<Head>(json) {
        Ok(Head {
            format: Some(serde_json::Value::String(f)),
        }) if f.starts_with(BUNDLE_FORMAT_PREFIX) => f,
        Ok(_) => {
            return r.reject(
                "not a govledger evidence bundle: no \"format\": \"govledger-evidence/…\" field"
                    .into(),
            );
        }
        Err(e) => return r.reject(format!("not a govledger evidence bundle: {e}")),
    };
    if let Some((_, why)) = super::OLDER_FORMATS.iter().find(|(f, _)| *f == format) {
        return r.reject(format!(
            "bundle format {format} is from an older govledger: {why}; export it again with this version ({BUNDLE_FORMAT})"
        ));
    }
    if format != BUNDLE_FORMAT {
        return r.reject(format!(
            "bundle format {format:?} is not {BUNDLE_FORMAT:?}; use the govledger that wrote it"
        ));
    }
    let b: Bundle = match serde_json::from_slice(json) {
        Ok(b) => b,
        Err(e) if e.to_string().starts_with("unknown field") => {
            return r.fail(
                None,
                format!("the bundle holds a field govledger never writes, added after export: {e}"),
            );
        }
        Err(e) => return r.reject(format!("not a govledger evidence bundle: {e}")),
    };
    verify_parsed(&b, trusted_key, r)
}

/// A failed check: the first bad sequence (when tied to one) and the problem.
type Failure = (Option<u64>, String);

fn verify_parsed(b: &Bundle, trusted_key: Option<&str>, mut r: BundleReport) -> BundleReport {
    let pin = match checked_key(b, trusted_key, &mut r) {
        Ok(pin) => pin,
        Err(problem) => return r.fail(None, problem),
    };
    let key = b.public_key.clone();
    // 1. The checkpoints: signatures, chain, key handovers, the pinned key.
    let (anchor, anchor_root) = match super::chain::anchor(b, pin.as_deref(), &mut r) {
        Ok(a) => a,
        Err(problem) => return r.fail(None, problem),
    };
    // 2. Every event against its proof, in sequence order; the first bad one is named.
    let msgs = match proven_events(b, &anchor, &anchor_root) {
        Ok(m) => m,
        Err((seq, problem)) => return r.fail(seq, problem),
    };
    r.checked.push(format!(
        "{} event(s), each proven included at its sequence",
        msgs.len()
    ));
    // 3. The manifest: signed by the manifest key the checkpoint key endorsed
    // for a period holding the export time; it covers scope, anchor,
    // sequences, times, subjects, state digest.
    let manifest_key = match crate::audit::keys::check(&b.manifest_key, &key, b.created_at_us) {
        Ok(k) => k,
        Err(problem) => return r.fail(None, problem),
    };
    let manifest_key_id = checkpoints::key_id(&manifest_key);
    let manifest_key = fold::hex(manifest_key.as_bytes());
    if !checkpoints::verify_bytes(&manifest_key, &manifest(b, &anchor), &b.manifest_signature) {
        return r.fail(
            None,
            "the manifest signature does not match: the scope, the export time, an event's sequence, time or subject, or the state was changed after export".into(),
        );
    }
    r.checked.push(format!(
        "manifest (scope, export time, every event's sequence, time and subject, state) signed by the ledger's manifest key {}, endorsed by its checkpoint key for the export time",
        manifest_key_id
    ));
    match super::report_sealed(b, &manifest_key) {
        Ok(sha) => r.report_sha256 = sha.unwrap_or_default(),
        Err(problem) => return r.fail(None, problem),
    }
    // 4. What the bundle shows beside the signed data is what it decodes to.
    if let Err((seq, problem)) = recomputed(b, &msgs) {
        return r.fail(seq, problem);
    }
    r.checked.push(
        "in-range flags, readable events and readable state equal what the verifier computed from the signed data".into(),
    );
    // 5. Provenance: the producer seals the bundle's events carry.
    let trust = match producer_trust(b) {
        Ok(t) => t,
        Err(problem) => return r.fail(None, problem),
    };
    provenance(&msgs, &trust, &mut r);
    // 6. The state folds again from the events, trusting the same producers.
    match check_state(b, &msgs, &trust) {
        Ok(Some(what)) => r.checked.push(what),
        Ok(None) => r.notes.push(
            "source state not folded again: the bundle starts after the source's first event (export with no start time to check it)".into(),
        ),
        Err(e) => return r.fail(None, e),
    }
    // 7. An identity's whole history: what the anchor's identity map holds.
    match super::history::check(b, &anchor, &msgs, &trust) {
        Ok(Some(what)) => r.checked.push(what),
        Ok(None) => {}
        Err(e) => return r.fail(None, e),
    }
    r.scope = scope_text(b, &anchor);
    r.verdict = if trusted_key.is_some() {
        Verdict::Verified
    } else {
        Verdict::Unpinned
    };
    r.ok = r.verdict == Verdict::Verified;
    r
}

/// The bundle's key is a strong one with the key id it names; the pinned key
/// (hex, as [`verify_bundle`] parsed it), when one is given. Whether
/// the pin is the bundle's key or one it handed over from is `chain`'s.
fn checked_key(
    b: &Bundle,
    trusted_key: Option<&str>,
    r: &mut BundleReport,
) -> Result<Option<String>, String> {
    let key = checkpoints::parse_public_key(&b.public_key)
        .map_err(|p| format!("the bundle's public key is {p}; nothing it signs is evidence"))?;
    let derived = checkpoints::key_id(&key);
    if b.key_id != derived {
        return Err(format!(
            "the bundle's key_id {:?} is not the id of its public key ({derived}): the key id was edited",
            b.key_id
        ));
    }
    r.public_key = b.public_key.to_ascii_lowercase();
    r.key_id = derived;
    let Some(trusted) = trusted_key else {
        r.checked.push(format!(
            "key {}: a strong ed25519 key, its key_id derived from it — but NOT pinned (no --public-key)",
            r.key_id
        ));
        return Ok(None);
    };
    let pin = trusted.to_ascii_lowercase();
    if pin.eq_ignore_ascii_case(&b.public_key) {
        r.checked.push(format!(
            "key {}: the pinned key, a strong ed25519 key, its key_id derived from it",
            r.key_id
        ));
    }
    Ok(Some(pin))
}

/// The parts of the bundle that are not signed, recomputed from signed data:
/// each event's `in_range` (from the signed scope and time), its readable
/// JSON (from its proven bytes), and the readable state (from the signed
/// state bytes).
fn recomputed(b: &Bundle, msgs: &[OwnedMsg]) -> Result<(), Failure> {
    let pool = descriptors().map_err(|e| (None, format!("cannot decode events: {e}")))?;
    let by_seq: BTreeMap<u64, &BundleEvent> = b.events.iter().map(|e| (e.seq, e)).collect();
    for m in msgs {
        let Some(e) = by_seq.get(&m.seq) else {
            continue;
        };
        let inside = in_range(&b.scope, e.stored_at_us);
        if e.in_range != inside {
            return Err((
                Some(m.seq),
                format!(
                    "sequence {}: in_range says {}, but its signed time {} is {} the signed range",
                    m.seq,
                    e.in_range,
                    time_text(e.stored_at_us),
                    if inside { "inside" } else { "outside" }
                ),
            ));
        }
        if e.event != readable(&pool, "govledger.v1.Event", &m.payload) {
            return Err((
                Some(m.seq),
                format!(
                    "sequence {}: the readable event is not what its stored bytes decode to",
                    m.seq
                ),
            ));
        }
    }
    if b.state.readable != readable_state(&pool, &b.state) {
        return Err((
            None,
            "the readable state is not what the signed state bytes decode to".into(),
        ));
    }
    Ok(())
}

/// An RFC 3339 time (UTC) of Unix microseconds.
fn time_text(us: i64) -> String {
    chrono::DateTime::from_timestamp_micros(us)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))
        .unwrap_or_else(|| format!("{us} µs"))
}

/// The scope a verified bundle covers, in words.
fn scope_text(b: &Bundle, anchor: &Checkpoint) -> String {
    let s = &b.scope;
    let who = if s.external_id.is_empty() {
        format!("the whole source {}", s.source_id)
    } else {
        let kind = EntityType::try_from(s.entity_type)
            .map(|t| {
                t.as_str_name()
                    .trim_start_matches("ENTITY_TYPE_")
                    .to_ascii_lowercase()
            })
            .unwrap_or_else(|_| format!("entity type {}", s.entity_type));
        format!(
            "identity {} ({kind}) of source {}",
            s.external_id, s.source_id
        )
    };
    let from = if s.from_us == 0 {
        "the beginning".to_owned()
    } else {
        time_text(s.from_us)
    };
    let to = if s.to_us == 0 {
        "the ledger's end at export".to_owned()
    } else {
        time_text(s.to_us)
    };
    format!(
        "{who}; range from {from} to {to}; state as of sequence {} (stored {}); anchor checkpoint of size {} root {} (key id {}); exported {}",
        b.state.as_of_seq,
        time_text(b.state.as_of_stored_at_us),
        anchor.tree_size,
        anchor.root,
        anchor.key_id,
        time_text(b.created_at_us)
    )
}

/// Every event, in sequence order, is listed in the manifest (and every listed
/// sequence is present) and proven included in the anchor's tree; the events
/// as messages to fold.
fn proven_events(
    b: &Bundle,
    anchor: &Checkpoint,
    anchor_root: &merkle::Hash,
) -> Result<Vec<OwnedMsg>, Failure> {
    let listed: BTreeSet<u64> = b.manifest_seqs.iter().copied().collect();
    let mut present: BTreeMap<u64, &BundleEvent> = BTreeMap::new();
    let mut prev = 0;
    for e in &b.events {
        if e.seq <= prev {
            return Err((
                Some(e.seq),
                format!(
                    "events are out of order or repeated at sequence {} (after {prev})",
                    e.seq
                ),
            ));
        }
        prev = e.seq;
        present.insert(e.seq, e);
    }
    let all: BTreeSet<u64> = listed
        .union(&present.keys().copied().collect())
        .copied()
        .collect();
    let mut msgs = Vec::with_capacity(present.len());
    for seq in all {
        let Some(e) = present.get(&seq) else {
            return Err((
                Some(seq),
                format!(
                    "sequence {seq} is listed in the signed manifest but missing from the bundle"
                ),
            ));
        };
        if !listed.contains(&seq) {
            return Err((
                Some(seq),
                format!("sequence {seq} is in the bundle but not in the signed manifest"),
            ));
        }
        let Some(raw) = unhex(&e.raw) else {
            return Err((Some(seq), format!("sequence {seq}: raw bytes are not hex")));
        };
        let proof = tlog_proof::parse(&e.tlog_proof).map_err(|p| {
            (
                Some(seq),
                format!("sequence {seq}: its tlog-proof is malformed: {p}"),
            )
        })?;
        if proof.index != seq - 1 || proof.checkpoint != anchor.note {
            return Err((
                Some(seq),
                format!(
                    "sequence {seq}: its tlog-proof is for index {} under another checkpoint than the anchor's note; it must prove index {} under the anchor",
                    proof.index,
                    seq - 1
                ),
            ));
        }
        let leaf = merkle::leaf_hash(seq, &raw);
        if !merkle::verify_inclusion(seq - 1, anchor.tree_size, &leaf, &proof.path, anchor_root) {
            return Err((
                Some(seq),
                format!(
                    "sequence {seq}: its bytes are not the ones the ledger stored there (the inclusion proof against the checkpoint of size {} fails)",
                    anchor.tree_size
                ),
            ));
        }
        msgs.push(OwnedMsg {
            seq,
            subject: e.subject.clone(),
            stored_at_us: e.stored_at_us,
            payload: raw.into(),
            leaf: None,
        });
    }
    Ok(msgs)
}

/// The producer keys the bundle names (signed in the manifest), as a trust.
pub(super) fn producer_trust(b: &Bundle) -> Result<std::sync::Arc<Trust>, String> {
    let keys = b
        .producer_keys
        .iter()
        .enumerate()
        .map(|(i, k)| {
            seal::parse_public_key(k)
                .map_err(|p| format!("producer_keys[{i}] is {p}; nothing it seals is evidence"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(std::sync::Arc::new(Trust::new(keys)))
}

/// Checks every seal the bundle can show: each run finish over the run's
/// events in the bundle (in stream order, each event id once), each action
/// conclusion on its own. Verified seals are `checked` lines; a missing,
/// untrusted or broken seal, or one over events the bundle does not hold, a
/// note (the bundle proves the stream holds it; the ledger decided it
/// UNVERIFIED_PRODUCER, never COMPLETE or CONFIRMED).
fn provenance(msgs: &[OwnedMsg], trust: &Trust, r: &mut BundleReport) {
    let mut chains: BTreeMap<String, (u64, seal::Hash)> = BTreeMap::new();
    let mut seen = BTreeSet::new();
    let (mut verified, mut other) = (Vec::new(), Vec::new());
    for m in msgs {
        let Ok(ev) = fold::decode(&m.as_stream_msg()) else {
            continue;
        };
        if !seen.insert(ev.event_id.clone()) {
            continue;
        }
        match &ev.body {
            Some(Body::SyncRunFinished(_)) => {
                let (n, chain) = chains.remove(&ev.run_id).unwrap_or((0, seal::CHAIN_START));
                let c = trust.check_run(&ev, n, &chain);
                let covers = ev.seal.as_ref().map_or(0, |s| s.events);
                let line = match c.status {
                    SealStatus::Verified => format!(
                        "run {}: sealed by producer key {} over its {n} event(s) in the bundle",
                        ev.run_id, c.key_id
                    ),
                    SealStatus::EventsDiffer if covers > n => format!(
                        "run {}: sealed by producer key {} over {covers} event(s), the bundle holds {n} of them: the seal is not checkable from this bundle (export with no start time)",
                        ev.run_id, c.key_id
                    ),
                    s => format!("run {}: {}", ev.run_id, seal::explain(s, &c.key_id)),
                };
                if c.status == SealStatus::Verified {
                    verified.push(line);
                } else {
                    other.push(line);
                }
            }
            Some(Body::ActionConcluded(_)) => {
                let c = trust.check_event(&ev);
                if c.status == SealStatus::Verified {
                    verified.push(format!(
                        "action {}: its conclusion is sealed by producer key {}",
                        ev.action_id, c.key_id
                    ));
                } else {
                    other.push(format!(
                        "action {}: {}",
                        ev.action_id,
                        seal::explain(c.status, &c.key_id)
                    ));
                }
            }
            Some(b) if !ev.run_id.is_empty() && fold::is_read_path(b) => {
                let e = chains
                    .entry(ev.run_id.clone())
                    .or_insert((0, seal::CHAIN_START));
                let leaf = merkle::leaf_hash(m.seq, &m.payload);
                *e = (e.0 + 1, seal::chain_step(&e.1, &leaf));
            }
            _ => {}
        }
    }
    r.checked.push(format!(
        "provenance: {} seal(s) of trusted producers verified, {} not",
        verified.len(),
        other.len()
    ));
    r.checked
        .extend(verified.into_iter().map(|l| format!("provenance: {l}")));
    r.notes
        .extend(other.into_iter().map(|l| format!("provenance: {l}")));
}

/// The fold of `msgs` (in sequence order) up to `as_of`, trusting `trust`:
/// what a bundle's state is folded from.
pub(super) fn fold_upto(
    msgs: &[OwnedMsg],
    as_of: u64,
    trust: std::sync::Arc<Trust>,
) -> fold::Working {
    let end = msgs.partition_point(|m| m.seq <= as_of);
    let mut w = fold::Working {
        trust,
        ..Default::default()
    };
    fold_in_memory(&mut w, &msgs[..end]);
    w
}

/// Folds the bundle's events and compares the state they give with the
/// bundle's state. `Ok(None)`: not checkable from this bundle.
fn check_state(
    b: &Bundle,
    msgs: &[OwnedMsg],
    trust: &std::sync::Arc<Trust>,
) -> Result<Option<String>, String> {
    let w = fold_upto(msgs, b.state.as_of_seq, trust.clone());
    if let Some(h) = &b.state.identity {
        let want: IdentityState = decode_hex("state.identity", h)?;
        let key = (
            b.scope.source_id.clone(),
            b.scope.entity_type,
            b.scope.external_id.clone(),
        );
        if w.identities.get(&key) != Some(&want) {
            return Err(format!(
                "the identity state in the bundle is not what its events fold to (as of sequence {})",
                b.state.as_of_seq
            ));
        }
        for (i, h) in b.state.actions.iter().enumerate() {
            let want: ActionState = decode_hex(&format!("state.actions[{i}]"), h)?;
            if w.actions.get(&want.action_id) != Some(&want) {
                return Err(format!(
                    "the state of action {} in the bundle is not what its events fold to",
                    want.action_id
                ));
            }
        }
        return Ok(Some(format!(
            "identity state and {} action state(s) as of sequence {} equal the fold of the events",
            b.state.actions.len(),
            b.state.as_of_seq
        )));
    }
    if let Some(h) = &b.state.source {
        let want: SourceState = decode_hex("state.source", h)?;
        if b.scope.from_us != 0 {
            return Ok(None);
        }
        if w.sources.get(&b.scope.source_id) != Some(&want) {
            return Err(format!(
                "the source state in the bundle is not what its events fold to (as of sequence {})",
                b.state.as_of_seq
            ));
        }
        return Ok(Some(format!(
            "source state as of sequence {} equals the fold of the events",
            b.state.as_of_seq
        )));
    }
    Err("the bundle holds no state".into())
}
