//! Evidence bundles that cannot be edited: a real bundle exported from a real
//! run, attacked as an auditor's adversary would — every field a bundle shows
//! edited with the real key pinned, a re-signed forgery, a small-order key, a
//! wrong key id, an old format, an oversized file and other JSON — and the
//! manifest's encoding held against ids that hold newlines.

use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};
use govledger::audit::checkpoints::{self, unhex};
use govledger::audit::evidence::{Bundle, Scope, Verdict, manifest, verify_bundle};
use govledger::audit::keys;
use govledger_projector::fold::hex;
use govledger_proto::v1::{ActionKind, ActionRequested, Checkpoint, SubmitActionRequest};
use govledger_testkit::fault_scim::{FaultScim, ScimConfig};
use govledger_testkit::{Govledger, NatsServer, read_stream};
use prost::Message as _;

/// `govledger verify-bundle FILE [--public-key K]`: exit code and stdout + stderr.
fn verify_cli(path: &std::path::Path, key: Option<&str>) -> (Option<i32>, String) {
    let mut args = vec!["verify-bundle", path.to_str().unwrap()];
    if let Some(k) = key {
        args.extend(["--public-key", k]);
    }
    let o = std::process::Command::new(govledger_testkit::govledger_bin())
        .args(&args)
        .env("NO_COLOR", "1")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    (
        o.status.code(),
        String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr),
    )
}

fn write(dir: &std::path::Path, name: &str, b: &Bundle) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, serde_json::to_vec_pretty(b).unwrap()).unwrap();
    p
}

fn checkpoints_of(b: &Bundle) -> Vec<Checkpoint> {
    b.checkpoints
        .iter()
        .map(|h| Checkpoint::decode(unhex(h).unwrap().as_slice()).unwrap())
        .collect()
}

/// Signs the bundle again as a forger would: every checkpoint (re-chained) and
/// the manifest with `sign`, the bundle naming `public` and its key id. The
/// checkpoints' signed notes are signed again with `note_key` (the same key)
/// when the forger holds one, else stripped; every event's tlog-proof then
/// ends with the new anchor's note. With `note_key` the manifest is signed by
/// a manifest key of the forger's, endorsed by `note_key`.
fn resign(
    b: &mut Bundle,
    public: [u8; 32],
    sign: &dyn Fn(&[u8]) -> [u8; 64],
    note_key: Option<&SigningKey>,
) {
    let vk = VerifyingKey::from_bytes(&public).unwrap();
    let mut cps = checkpoints_of(b);
    let mut prev: Option<String> = None;
    for cp in &mut cps {
        cp.public_key = hex(&public);
        cp.key_id = checkpoints::key_id(&vk);
        if let Some(p) = prev {
            cp.previous = p;
        }
        cp.signature = hex(&sign(checkpoints::statement(cp).as_bytes()));
        let origin = cp
            .note
            .lines()
            .next()
            .unwrap_or("forged.example/log")
            .to_owned();
        cp.note.clear();
        cp.verifier_key.clear();
        if let Some(k) = note_key {
            *cp = checkpoints::with_note(cp.clone(), k, &origin).unwrap();
        }
        prev = Some(checkpoints::checkpoint_hash(cp));
    }
    b.checkpoints = cps.iter().map(|c| hex(&c.encode_to_vec())).collect();
    b.public_key = hex(&public);
    b.key_id = checkpoints::key_id(&vk);
    let anchor = cps.last().unwrap().clone();
    // The forger's own manifest key, endorsed by its own checkpoint key.
    let manifest_key = SigningKey::from_bytes(&[9u8; 32]);
    if let Some(k) = note_key {
        b.manifest_key = keys::endorse(k, &manifest_key.verifying_key(), b.created_at_us - 1, 1);
    }
    for e in &mut b.events {
        let (head, _) = e.tlog_proof.split_once("\n\n").unwrap();
        e.tlog_proof = format!("{head}\n\n{}", anchor.note);
    }
    let m = manifest(b, &anchor);
    let bytes: &[u8] = m.as_ref();
    b.manifest_signature = match note_key {
        Some(_) => hex(&manifest_key.sign(bytes).to_bytes()),
        None => hex(&sign(bytes)),
    };
}

/// The bundle's anchor: its last checkpoint.
fn anchor_of(b: &Bundle) -> Checkpoint {
    checkpoints_of(b).pop().unwrap()
}

/// Changes the first string value found in `v` (depth first); whether one was.
fn edit_first_string(v: &mut serde_json::Value) -> bool {
    match v {
        serde_json::Value::String(s) => {
            s.push_str("-edited");
            true
        }
        serde_json::Value::Array(a) => a.iter_mut().any(edit_first_string),
        serde_json::Value::Object(o) => o.values_mut().any(edit_first_string),
        _ => false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edited_or_forged_bundle_never_verifies() {
    let nats = NatsServer::start().await;
    let scim = FaultScim::start_with(ScimConfig {
        users: 12,
        groups: 2,
        ..Default::default()
    })
    .await;
    let cfg = format!(
        "[[sources]]\nid = \"hr\"\nbase_url = \"{}\"\nresources = [\"Users\", \"Groups\"]\n",
        scim.base_url
    );
    let mut gl = Govledger::serve_with_config(&nats.url(), &cfg);
    let mut c = gl.client().await;
    gl.sync("hr").await;
    let who = scim.user_ids()[2].clone();
    c.submit_action(SubmitActionRequest {
        source_id: "hr".into(),
        request: Some(ActionRequested {
            kind: ActionKind::Deactivate as i32,
            identity_external_id: who.clone(),
            idempotency_key: "attack-1".into(),
            ..Default::default()
        }),
    })
    .await
    .unwrap();
    gl.sync("hr").await;
    let stored = read_stream(&nats.client().await).await;
    gl.wait_applied(stored.last().unwrap().seq).await;
    let key = gl.ledger_status().await.checkpoint_public_key;

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("evidence.json");
    let text = gl.export_identity("hr", &who, &path);
    // The hint does not tell the auditor to pin the key the bundle itself carries.
    assert!(
        !text.contains(&format!("--public-key {key}")),
        "circular hint: {text}"
    );
    assert!(text.contains("govledger ledger"), "{text}");
    gl.stop();

    let original: Bundle = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    assert!(original.events.len() >= 4, "{}", original.events.len());
    let check = |b: &Bundle| verify_bundle(&serde_json::to_vec(b).unwrap(), Some(&key));
    assert!(check(&original).ok, "{:?}", check(&original));

    // The genuine bundle, pinned: VERIFIED, naming the scope it verified.
    let (code, out) = verify_cli(&path, Some(&key));
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("VERIFIED"), "{out}");
    let anchor = checkpoints_of(&original).last().unwrap().clone();
    for want in [
        format!("identity {who}"),
        "source hr".to_owned(),
        format!("as of sequence {}", original.state.as_of_seq),
        format!("anchor checkpoint of size {}", anchor.tree_size),
        anchor.root.clone(),
        "range from the beginning to".to_owned(),
    ] {
        assert!(out.contains(&want), "{want:?} not in: {out}");
    }

    // 1. Every field a person reads, edited with the real key pinned: TAMPERED.
    let i = original.events.len() / 2;
    let target = original.events[i].seq;
    let mut edits: Vec<(&str, Bundle)> = Vec::new();
    let mut b = original.clone();
    b.events[i].stored_at_us -= 86_400_000_000;
    edits.push(("stored_at_us", b));
    let mut b = original.clone();
    b.events[i].subject = b.events[i].subject.replace("hr", "payroll");
    edits.push(("subject", b));
    let mut b = original.clone();
    b.events[i].in_range = !b.events[i].in_range;
    edits.push(("in_range", b));
    let mut b = original.clone();
    assert!(
        edit_first_string(&mut b.events[i].event),
        "{:?}",
        b.events[i].event
    );
    edits.push(("readable event", b));
    let mut b = original.clone();
    b.events[i].event = serde_json::json!({"note": "nothing happened"});
    edits.push(("readable event replaced", b));
    let mut b = original.clone();
    let st = b.state.readable.to_string();
    assert!(st.contains(&who), "{st}");
    b.state.readable = serde_json::from_str(&st.replace(&who, "someone-else")).unwrap();
    edits.push(("readable state", b));
    let mut b = original.clone();
    b.state.readable = serde_json::json!({});
    edits.push(("readable state emptied", b));
    let mut b = original.clone();
    b.created_at_us += 1;
    edits.push(("created_at_us", b));
    // A field added to the file (a note a person would read) is no evidence.
    let mut v = serde_json::to_value(&original).unwrap();
    v["events"][i]["note"] = "approved by the CISO".into();
    let r = verify_bundle(&serde_json::to_vec(&v).unwrap(), Some(&key));
    assert!(!r.ok && r.problem.contains("never writes"), "{r:?}");
    for (what, b) in &edits {
        let r = check(b);
        assert!(!r.ok, "{what}: edited and still verified: {r:?}");
        let (code, out) = verify_cli(&write(dir.path(), "edited.json", b), Some(&key));
        assert_eq!(code, Some(3), "{what}: {out}");
        assert!(
            out.contains("TAMPERED") && !out.contains("VERIFIED"),
            "{what}: {out}"
        );
    }
    // A time or subject is signed in the manifest; a flag or a readable part
    // that disagrees with the signed data names its sequence.
    let r = check(&edits[0].1);
    assert!(r.problem.contains("time"), "{r:?}");
    for (what, b) in &edits[2..5] {
        let r = check(b);
        assert_eq!(r.first_bad_seq, Some(target), "{what}: {r:?}");
    }

    // 4. A key_id that is not the key's: rejected with a clear message.
    let mut b = original.clone();
    b.key_id = "0123456789abcdef".into();
    let r = check(&b);
    assert!(!r.ok && r.problem.contains("key_id"), "{r:?}");

    // 3. A small-order public key with the trivial signature (R = identity,
    // s = 0) "verifies" any message under a lax check: rejected.
    let mut weak_pk = [0u8; 32];
    weak_pk[0] = 1;
    let mut trivial = [0u8; 64];
    trivial[0] = 1;
    let mut b = original.clone();
    b.state.readable = serde_json::json!({"forged": true});
    resign(&mut b, weak_pk, &|_| trivial, None);
    let r = verify_bundle(&serde_json::to_vec(&b).unwrap(), Some(&hex(&weak_pk)));
    assert!(!r.ok && r.problem.contains("weak"), "{r:?}");
    let (code, out) = verify_cli(&write(dir.path(), "weak.json", &b), None);
    assert_eq!(code, Some(3), "{out}");
    assert!(out.contains("TAMPERED") && out.contains("weak"), "{out}");

    // 6. The manifest key: the ledger's own checkpoint key signing the
    // manifest directly, an endorsement by another key, and an export time
    // outside the endorsed period are all refused (checked with the pinned key).
    let k = ledger_key(&gl);
    let mut b = original.clone();
    b.manifest_key = keys::endorse(&k, &k.verifying_key(), b.created_at_us - 1, 1);
    b.manifest_signature = hex(&k.sign(&manifest(&b, &anchor_of(&b))).to_bytes());
    let r = check(&b);
    assert!(!r.ok && r.problem.contains("two keys"), "{r:?}");
    let mut b = original.clone();
    let stranger = SigningKey::from_bytes(&[5u8; 32]);
    let mk = SigningKey::from_bytes(&[6u8; 32]);
    b.manifest_key = keys::endorse(&stranger, &mk.verifying_key(), b.created_at_us - 1, 1);
    b.manifest_signature = hex(&mk.sign(&manifest(&b, &anchor_of(&b))).to_bytes());
    let r = check(&b);
    assert!(
        !r.ok && r.problem.contains("not signed by the checkpoint key"),
        "{r:?}"
    );
    let mut b = original.clone();
    let day = 86_400_000_000;
    b.manifest_key = keys::endorse(&k, &mk.verifying_key(), b.created_at_us - 3 * day, 1);
    b.manifest_signature = hex(&mk.sign(&manifest(&b, &anchor_of(&b))).to_bytes());
    let r = check(&b);
    assert!(!r.ok && r.problem.contains("outside"), "{r:?}");
    // The same, within the period: the ledger's checkpoint key endorses a
    // new manifest key (a rotation) and the bundle verifies.
    let mut b = original.clone();
    b.manifest_key = keys::endorse(&k, &mk.verifying_key(), b.created_at_us - day, 2);
    b.manifest_signature = hex(&mk.sign(&manifest(&b, &anchor_of(&b))).to_bytes());
    let r = check(&b);
    assert!(r.ok, "{r:?}");

    // 5. A re-signed forgery (an edited subject, signed with the forger's own
    // key): unpinned it is UNPINNED, never exit 0; pinned it is rejected.
    let forger = SigningKey::from_bytes(&[7u8; 32]);
    let mut b = original.clone();
    b.events[i].subject = b.events[i].subject.replace("hr", "payroll");
    resign(
        &mut b,
        forger.verifying_key().to_bytes(),
        &|m| forger.sign(m).to_bytes(),
        Some(&forger),
    );
    let forged = write(dir.path(), "forged.json", &b);
    let (code, out) = verify_cli(&forged, None);
    assert_eq!(code, Some(4), "{out}");
    assert!(
        out.contains("UNPINNED") && !out.contains("VERIFIED"),
        "{out}"
    );
    let (code, out) = verify_cli(&forged, Some(&key));
    assert_eq!(code, Some(3), "{out}");
    assert!(out.contains("not the trusted key"), "{out}");
    // The genuine bundle unpinned: UNPINNED too, exit 4.
    let (code, out) = verify_cli(&path, None);
    assert_eq!(code, Some(4), "{out}");
    assert!(
        out.contains("UNPINNED") && !out.contains("VERIFIED"),
        "{out}"
    );

    // A --public-key that is no key (or a weak one) is refused as such.
    for bad in ["xyz", &hex(&weak_pk)] {
        let (code, out) = verify_cli(&path, Some(bad));
        assert_eq!(code, Some(3), "{out}");
        assert!(
            out.contains("REJECTED: the key given with --public-key"),
            "{out}"
        );
    }

    // An old-format bundle: a clear error, not VERIFIED.
    for old in [
        "govledger-evidence/1",
        "govledger-evidence/2",
        "govledger-evidence/3",
        "govledger-evidence/4",
        "govledger-evidence/5",
    ] {
        let mut b = original.clone();
        b.format = old.into();
        let r = check(&b);
        assert!(
            !r.ok && r.verdict == Verdict::Rejected && r.problem.contains("export it again"),
            "{old}: {r:?}"
        );
    }

    // 7. Other JSON and garbage: "not a govledger evidence bundle"; a file past
    // the size cap is refused before it is read.
    for (name, data) in [
        ("other.json", b"{\"hello\": 1}".to_vec()),
        ("array.json", b"[1, 2, 3]".to_vec()),
        ("garbage.bin", vec![0xff, 0x00, 0x13, 0x37]),
    ] {
        let p = dir.path().join(name);
        std::fs::write(&p, data).unwrap();
        let (code, out) = verify_cli(&p, Some(&key));
        assert_ne!(code, Some(0), "{name}: {out}");
        assert!(
            out.contains("not a govledger evidence bundle"),
            "{name}: {out}"
        );
    }
    let huge = dir.path().join("huge.json");
    std::fs::File::create(&huge)
        .unwrap()
        .set_len(257 << 20)
        .unwrap();
    let (code, out) = verify_cli(&huge, Some(&key));
    assert_ne!(code, Some(0), "{out}");
    assert!(out.contains("256 MiB"), "{out}");
}

/// Two scopes whose fields differ only in where a newline splits them must not
/// sign the same manifest.
#[test]
fn the_manifest_is_unambiguous_for_ids_with_newlines() {
    let anchor = Checkpoint {
        tree_size: 10,
        root: "ab".repeat(32),
        ..Default::default()
    };
    let bundle = |scope: Scope| Bundle {
        scope,
        ..Default::default()
    };
    let a = bundle(Scope {
        source_id: "a\nscope.entity_type=1\nscope.external_id=b".into(),
        entity_type: 1,
        external_id: "c".into(),
        ..Default::default()
    });
    let b = bundle(Scope {
        source_id: "a".into(),
        entity_type: 1,
        external_id: "b\nscope.entity_type=1\nscope.external_id=c".into(),
        ..Default::default()
    });
    assert_ne!(manifest(&a, &anchor), manifest(&b, &anchor));
    // The sequence list cannot be shifted into another field either.
    let mut c = bundle(Scope::default());
    c.manifest_seqs = vec![1, 2];
    let mut d = bundle(Scope::default());
    d.manifest_seqs = vec![12];
    assert_ne!(manifest(&c, &anchor), manifest(&d, &anchor));
}

/// The ledger's own checkpoint key, read from its data folder (what an
/// equivocating ledger, or a thief of its key, signs with).
fn ledger_key(gl: &Govledger) -> SigningKey {
    let text = std::fs::read_to_string(gl.data_dir().join("audit/signing.key")).unwrap();
    SigningKey::from_bytes(&unhex(text.trim()).unwrap().try_into().unwrap())
}

/// A NATS, a SCIM source of `users` users and govledger serving it as `hr`.
async fn serve_hr(users: usize) -> (NatsServer, FaultScim, Govledger) {
    let nats = NatsServer::start().await;
    let scim = FaultScim::start_with(ScimConfig {
        users,
        ..Default::default()
    })
    .await;
    let cfg = format!(
        "[[sources]]\nid = \"hr\"\nbase_url = \"{}\"\n",
        scim.base_url
    );
    let gl = Govledger::serve_with_config(&nats.url(), &cfg);
    (nats, scim, gl)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chain_cut_short_or_forked_is_caught() {
    use govledger_proto::v1::CreateCheckpointRequest;
    let (_nats, scim, gl) = serve_hr(4).await;
    let mut c = gl.client().await;
    // A checkpoint before any event, one after the first sync, then more history.
    c.create_checkpoint(CreateCheckpointRequest {})
        .await
        .unwrap();
    gl.sync("hr").await;
    c.create_checkpoint(CreateCheckpointRequest {})
        .await
        .unwrap();
    scim.set_active(&scim.user_ids()[0], false);
    gl.sync("hr").await;
    let who = scim.user_ids()[0].clone();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("evidence.json");
    gl.export_identity("hr", &who, &path);
    let original: Bundle = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    let key = hex(ledger_key(&gl).verifying_key().as_bytes());
    let cps = checkpoints_of(&original);
    assert!(cps.len() >= 3, "{} checkpoints", cps.len());
    assert!(verify_bundle(&serde_json::to_vec(&original).unwrap(), Some(&key)).ok);

    // Cut down to the anchor: the chain no longer reaches back before the
    // identity's first event, though every signature still holds.
    let mut cut = original.clone();
    cut.checkpoints = vec![original.checkpoints.last().unwrap().clone()];
    cut.consistency.clear();
    let r = verify_bundle(&serde_json::to_vec(&cut).unwrap(), Some(&key));
    assert!(!r.ok && r.problem.contains("cut short"), "{r:?}");

    // A fork signed with the ledger's own key (an equivocating ledger): a
    // second checkpoint of the middle size with another root, chained in.
    let k = ledger_key(&gl);
    let mut forked = original.clone();
    let mut chain = checkpoints_of(&forked);
    let mid = chain[1].clone();
    let twin = checkpoints::sign(
        &k,
        &mid.stream,
        mid.tree_size,
        &"ee".repeat(32),
        mid.created_at_us + 1,
        "",
        "",
    );
    chain.insert(2, twin);
    forked.checkpoints = chain.iter().map(|c| hex(&c.encode_to_vec())).collect();
    resign(
        &mut forked,
        k.verifying_key().to_bytes(),
        &|m| k.sign(m).to_bytes(),
        Some(&k),
    );
    let r = verify_bundle(&serde_json::to_vec(&forked).unwrap(), Some(&key));
    assert!(!r.ok && r.problem.contains("fork"), "{r:?}");

    // A fork the hash chain cannot show: the middle checkpoint replaced by
    // one of another tree (no twin of its size left), the chain re-signed
    // with the ledger's own key. Only the consistency proofs catch it.
    let mut swapped = original.clone();
    let mut chain = checkpoints_of(&swapped);
    chain[1] = checkpoints::sign(
        &k,
        &mid.stream,
        mid.tree_size,
        &"ee".repeat(32),
        mid.created_at_us,
        "",
        "",
    );
    swapped.checkpoints = chain.iter().map(|c| hex(&c.encode_to_vec())).collect();
    resign(
        &mut swapped,
        k.verifying_key().to_bytes(),
        &|m| k.sign(m).to_bytes(),
        Some(&k),
    );
    let r = verify_bundle(&serde_json::to_vec(&swapped).unwrap(), Some(&key));
    assert!(!r.ok && r.problem.contains("not proven to extend"), "{r:?}");
    // An altered consistency proof, and a missing one.
    let mut altered = original.clone();
    let p = altered
        .consistency
        .iter_mut()
        .find(|p| !p.is_empty())
        .unwrap();
    p[0] = "00".repeat(32);
    let r = verify_bundle(&serde_json::to_vec(&altered).unwrap(), Some(&key));
    assert!(!r.ok && r.problem.contains("not proven to extend"), "{r:?}");
    let mut short = original.clone();
    short.consistency.pop();
    let r = verify_bundle(&serde_json::to_vec(&short).unwrap(), Some(&key));
    assert!(!r.ok && r.problem.contains("one per pair"), "{r:?}");
    // The anchor stripped of its signed note: its tlog-proofs end with
    // nothing signed.
    let mut stripped = original.clone();
    resign(
        &mut stripped,
        k.verifying_key().to_bytes(),
        &|m| k.sign(m).to_bytes(),
        None,
    );
    let r = verify_bundle(&serde_json::to_vec(&stripped).unwrap(), Some(&key));
    assert!(!r.ok && r.problem.contains("no signed note"), "{r:?}");
}

/// Identity `who`'s bundle as `govledger export` writes it into `dir`, the
/// ledger's key (and its hex), and the bundle's verification (VERIFIED).
fn exported(
    gl: &Govledger,
    who: &str,
    dir: &std::path::Path,
) -> (
    Bundle,
    SigningKey,
    String,
    govledger::audit::evidence::BundleReport,
) {
    let path = dir.join("evidence.json");
    gl.export_identity("hr", who, &path);
    let original: Bundle = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    let k = ledger_key(gl);
    let key = hex(k.verifying_key().as_bytes());
    let r = verify_bundle(&serde_json::to_vec(&original).unwrap(), Some(&key));
    assert!(r.ok, "{r:?}");
    (original, k, key, r)
}

/// `original` without the events at `seqs`, as a dishonest exporter would
/// make it: the identity's and its actions' states folded again from what is
/// left, everything signed again with the ledger's own key `k`; and the
/// identity's state in it.
fn omitted(
    original: &Bundle,
    seqs: &[u64],
    who: &str,
    k: &SigningKey,
) -> (Bundle, govledger_proto::v1::IdentityState) {
    use govledger::audit::evidence::{descriptors, fold_bundle, readable_state};
    let mut b = original.clone();
    b.events.retain(|e| !seqs.contains(&e.seq));
    b.manifest_seqs.retain(|s| !seqs.contains(s));
    let w = fold_bundle(&b).unwrap();
    let ident = w
        .identities
        .iter()
        .map(|(_, i)| i.clone())
        .find(|i| i.external_id == who)
        .unwrap();
    b.state.identity = Some(hex(&ident.encode_to_vec()));
    b.state.actions = w
        .actions
        .iter()
        .map(|(_, s)| hex(&s.encode_to_vec()))
        .collect();
    b.state.readable = readable_state(&descriptors().unwrap(), &b.state);
    resign(
        &mut b,
        k.verifying_key().to_bytes(),
        &|m| k.sign(m).to_bytes(),
        Some(k),
    );
    (b, ident)
}

/// A bundle that leaves out one earlier event of its identity, its state
/// folded again from what is left and every signature made again with the
/// ledger's own keys (a dishonest exporter), is caught: the identity map the
/// anchor signed before the export commits to the identity's whole history.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bundle_that_omits_one_earlier_event_of_its_identity_is_caught() {
    let (_nats, scim, gl) = serve_hr(3).await;
    let who = scim.user_ids()[1].clone();
    // Three observations of the identity; the middle one shows it disabled.
    gl.sync("hr").await;
    scim.set_active(&who, false);
    gl.sync("hr").await;
    scim.set_active(&who, true);
    gl.sync("hr").await;
    let dir = tempfile::tempdir().unwrap();
    let (original, k, key, r) = exported(&gl, &who, dir.path());
    assert!(
        r.checked
            .iter()
            .any(|c| c.contains("whole history: the 3 event(s)")),
        "{:?}",
        r.checked
    );
    // The identity's events: its three observations (the bundle also
    // holds nothing else here, no action being on it).
    let observed: Vec<u64> = original
        .events
        .iter()
        .filter(|e| e.event.to_string().contains("recordObserved"))
        .map(|e| e.seq)
        .collect();
    assert_eq!(observed.len(), 3, "{:?}", original.events);

    // Drop the middle observation (the one that showed it disabled), fold
    // the state again from what is left, sign everything again.
    let (b, ident) = omitted(&original, &[observed[1]], &who, &k);
    let resigned = |b: &mut Bundle| {
        resign(
            b,
            k.verifying_key().to_bytes(),
            &|m| k.sign(m).to_bytes(),
            Some(&k),
        )
    };
    let r = verify_bundle(&serde_json::to_vec(&b).unwrap(), Some(&key));
    assert!(
        !r.ok
            && r.problem
                .contains("does not hold the identity's whole history"),
        "{r:?}"
    );
    assert!(r.problem.contains("commits to 3 events"), "{}", r.problem);
    // Also told by the command an auditor runs.
    let (code, out) = verify_cli(&write(dir.path(), "omitted.json", &b), Some(&key));
    assert_eq!(code, Some(3), "{out}");
    assert!(
        out.contains("TAMPERED") && out.contains("whole history"),
        "{out}"
    );

    // The map's entry rewritten to match what is left: the page is no
    // longer the one the signed map holds.
    let mut entry_forged = b.clone();
    let h = entry_forged.identity_history.as_mut().unwrap();
    let key_hash = {
        use sha2::Digest as _;
        hex(&sha2::Sha256::digest(
            govledger_projector::keys::identity_key("hr", ident.entity_type, &who),
        ))
    };
    let e = h
        .entries
        .iter_mut()
        .find(|e| e.starts_with(&key_hash))
        .unwrap();
    *e = format!(
        "{key_hash} {} {}",
        ident.history_count,
        hex(&ident.history_head)
    );
    let r = verify_bundle(&serde_json::to_vec(&entry_forged).unwrap(), Some(&key));
    assert!(
        !r.ok && r.problem.contains("not in the identity map"),
        "{r:?}"
    );
    // The proof removed, or the anchor's map dropped (the note re-signed):
    // nothing proves the history whole, so the bundle is not evidence.
    let mut no_proof = b.clone();
    no_proof.identity_history = None;
    let r = verify_bundle(&serde_json::to_vec(&no_proof).unwrap(), Some(&key));
    assert!(
        !r.ok
            && r.problem
                .contains("no proof of the identity's whole history"),
        "{r:?}"
    );
    let mut no_map = b.clone();
    let mut chain = checkpoints_of(&no_map);
    for cp in &mut chain {
        cp.identity_map.clear();
    }
    no_map.checkpoints = chain.iter().map(|c| hex(&c.encode_to_vec())).collect();
    resigned(&mut no_map);
    let r = verify_bundle(&serde_json::to_vec(&no_map).unwrap(), Some(&key));
    assert!(
        !r.ok && r.problem.contains("signs no identity map"),
        "{r:?}"
    );
    // The honest bundle, re-signed the same way, still verifies: the
    // catches above are the omission, not the re-signing.
    let mut honest = original.clone();
    resigned(&mut honest);
    let r = verify_bundle(&serde_json::to_vec(&honest).unwrap(), Some(&key));
    assert!(r.ok, "{r:?}");
}

/// The identity's history holds every event of the actions requested on it:
/// a bundle that leaves out a deactivation (all its events and its state),
/// folded again and re-signed with the ledger's own keys, is caught.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bundle_that_omits_an_action_on_its_identity_is_caught() {
    use govledger_proto::v1::ActionOutcome;
    let (_nats, scim, gl) = govledger_testkit::govledger::serve_fault_scim(3, 0, "").await;
    let who = scim.user_ids()[1].clone();
    gl.sync("hr").await;
    let a = gl
        .act(
            "hr",
            govledger_testkit::govledger::action_request(
                ActionKind::Deactivate,
                &who,
                "",
                "omit-1",
                "T-1",
            ),
        )
        .await;
    assert_eq!(a.outcome, ActionOutcome::Confirmed as i32, "{a:?}");
    gl.sync("hr").await;
    let dir = tempfile::tempdir().unwrap();
    let (original, k, key, r) = exported(&gl, &who, dir.path());
    // Its observations (one per sync) and the action's events (request,
    // attempt, read-back, conclusion), each once.
    let of_action: Vec<u64> = original
        .events
        .iter()
        .filter(|e| e.event["actionId"] == a.action.as_ref().unwrap().action_id.as_str())
        .map(|e| e.seq)
        .collect();
    assert!(of_action.len() >= 3, "{:?}", original.events);
    let observed = original
        .events
        .iter()
        .filter(|e| e.event.get("recordObserved").is_some())
        .count();
    assert!(observed >= 2, "{:?}", original.events);
    let whole = format!("whole history: the {} event(s)", observed + of_action.len());
    assert!(
        r.checked.iter().any(|c| c.contains(&whole)),
        "{whole}: {:?}",
        r.checked
    );

    let (b, _) = omitted(&original, &of_action, &who, &k);
    assert!(b.state.actions.is_empty());
    let r = verify_bundle(&serde_json::to_vec(&b).unwrap(), Some(&key));
    assert!(
        !r.ok
            && r.problem
                .contains("does not hold the identity's whole history"),
        "{r:?}"
    );
    assert!(
        r.problem
            .contains(&format!("commits to {} events", observed + of_action.len())),
        "{}",
        r.problem
    );
}
