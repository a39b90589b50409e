//! Tamper evidence end to end: `govledger verify` reads a copied stream again and
//! names the first altered, removed or reordered sequence; `govledger export`
//! writes an evidence bundle that `govledger verify-bundle` checks with NATS and
//! govledger stopped, naming the first bad sequence of a tampered copy.

use govledger::audit::evidence::{Bundle, verify_bundle};
use govledger_projector::OwnedMsg;
use govledger_proto::v1::{
    ActionKind, ActionRequested, CreateCheckpointRequest, SubmitActionRequest,
};
use govledger_testkit::fault_scim::{FaultScim, ScimConfig};
use govledger_testkit::{Govledger, NatsServer, read_stream};

/// Runs the CLI; exit status and stdout + stderr.
fn run_govledger(args: &[&str], envs: &[(&str, &str)]) -> (std::process::ExitStatus, String) {
    let o = std::process::Command::new(govledger_testkit::govledger_bin())
        .args(args)
        .envs(envs.iter().copied())
        .env("NO_COLOR", "1")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    (
        o.status,
        String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr),
    )
}

/// Copies `msgs` (in the given order) into a new stream `name` on subjects
/// `copy.<name>.…`, so the copy's sequences are 1, 2, … in that order.
async fn copy_stream(client: &async_nats::Client, name: &str, msgs: &[OwnedMsg]) {
    let js = async_nats::jetstream::new(client.clone());
    js.create_stream(async_nats::jetstream::stream::Config {
        name: name.to_owned(),
        subjects: vec![format!("copy.{name}.>")],
        ..Default::default()
    })
    .await
    .unwrap();
    for m in msgs {
        js.publish(format!("copy.{name}.{}", m.subject), m.payload.clone())
            .await
            .unwrap()
            .await
            .unwrap();
    }
}

fn verify(gl: &Govledger, stream: Option<&str>) -> (bool, String) {
    let token = gl.token_path();
    let mut args = vec!["verify", "--grpc-addr", &gl.addr, "--token-file", &token];
    if let Some(s) = stream {
        args.extend(["--stream", s]);
    }
    let (status, out) = run_govledger(&args, &[]);
    assert!(
        status.code() == Some(0) || status.code() == Some(3),
        "verify failed to run: {out}"
    );
    (status.success(), out)
}

fn verify_bundle_cli(path: &std::path::Path, key: &str) -> (bool, String) {
    let (status, out) = run_govledger(
        &["verify-bundle", path.to_str().unwrap(), "--public-key", key],
        &[],
    );
    assert!(
        status.code() == Some(0) || status.code() == Some(3),
        "verify-bundle failed to run: {out}"
    );
    (status.success(), out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_and_verify_bundle_name_the_first_bad_sequence() {
    let mut nats = NatsServer::start().await;
    let scim = FaultScim::start_with(ScimConfig {
        users: 40,
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
    c.create_checkpoint(CreateCheckpointRequest {})
        .await
        .unwrap();
    let users = scim.user_ids();
    let who = users[3].clone();
    c.submit_action(SubmitActionRequest {
        source_id: "hr".into(),
        request: Some(ActionRequested {
            kind: ActionKind::Deactivate as i32,
            identity_external_id: who.clone(),
            idempotency_key: "tamper-1".into(),
            ..Default::default()
        }),
    })
    .await
    .unwrap();
    gl.sync("hr").await;
    c.create_checkpoint(CreateCheckpointRequest {})
        .await
        .unwrap();
    gl.sync("hr").await;
    let client = nats.client().await;
    let stored = read_stream(&client).await;
    let last = stored.last().unwrap().seq;
    gl.wait_applied(last).await;
    let key = gl.ledger_status().await.checkpoint_public_key;

    // The ledger's own stream and an exact copy verify.
    let (ok, out) = verify(&gl, None);
    assert!(ok, "{out}");
    assert!(out.contains(&format!("sequences 1..={last}")), "{out}");
    copy_stream(&client, "INTACT", &stored).await;
    let (ok, out) = verify(&gl, Some("INTACT"));
    assert!(ok, "{out}");

    // Altered, removed and reordered copies: each names the first bad sequence.
    let k = (last / 2) as usize; // 0-based index of sequence k + 1
    let bad_seq = k as u64 + 1;
    let mut altered = stored.clone();
    let mut bytes = altered[k].payload.to_vec();
    let mid_byte = bytes.len() / 2;
    bytes[mid_byte] ^= 0x01;
    altered[k].payload = bytes.into();
    let mut removed = stored.clone();
    removed.remove(k);
    let mut reordered = stored.clone();
    reordered.swap(k, k + 1);
    for (name, msgs) in [
        ("ALTERED", &altered),
        ("REMOVED", &removed),
        ("REORDERED", &reordered),
    ] {
        copy_stream(&client, name, msgs).await;
        let (ok, out) = verify(&gl, Some(name));
        assert!(!ok, "{name}: {out}");
        assert!(
            out.contains(&format!("first bad sequence {bad_seq} ")),
            "{name}: {out}"
        );
    }

    // Export one identity's evidence; a time range marks what falls inside it.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("evidence.json");
    let export = |extra: &[&str], out: &std::path::Path| {
        let token = gl.token_path();
        let mut args = vec![
            "export",
            "--grpc-addr",
            &gl.addr,
            "--token-file",
            &token,
            "--source",
            "hr",
        ];
        args.extend_from_slice(extra);
        args.extend(["--out", out.to_str().unwrap()]);
        let (status, text) = run_govledger(&args, &[]);
        assert!(status.success(), "{text}");
        text
    };
    let out = export(&["--identity", &who], &path);
    assert!(out.contains("verify-bundle"), "{out}");
    let bundle: Bundle = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    assert!(
        bundle.events.len() >= 5,
        "3 observations + the action's events"
    );
    assert!(bundle.state.identity.is_some() && bundle.state.actions.len() == 1);
    let mid = &bundle.events[bundle.events.len() / 2];
    let from = chrono::DateTime::from_timestamp_micros(mid.stored_at_us)
        .unwrap()
        .to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    let ranged = dir.path().join("ranged.json");
    export(&["--identity", &who, "--from", &from], &ranged);
    let rb: Bundle = serde_json::from_slice(&std::fs::read(&ranged).unwrap()).unwrap();
    let inside = rb.events.iter().filter(|e| e.in_range).count();
    assert!(
        inside > 0 && inside < rb.events.len(),
        "{inside} of {}",
        rb.events.len()
    );
    // A whole-source bundle from the beginning re-folds the source state too.
    let source_path = dir.path().join("source.json");
    export(&[], &source_path);

    // Offline: nothing of the ledger runs any more.
    gl.stop();
    nats.kill9();
    let (ok, out) = verify_bundle_cli(&path, &key);
    assert!(ok, "{out}");
    assert!(out.contains("VERIFIED"), "{out}");
    assert!(out.contains("equal the fold of the events"), "{out}");
    let (ok, out) = verify_bundle_cli(&ranged, &key);
    assert!(ok, "{out}");
    let (ok, out) = verify_bundle_cli(&source_path, &key);
    assert!(ok, "{out}");
    assert!(out.contains("source state as of sequence"), "{out}");

    let original: Bundle = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    let check = |b: &Bundle| verify_bundle(&serde_json::to_vec(b).unwrap(), Some(&key));
    assert!(check(&original).ok);
    let i = 1;
    let target = original.events[i].seq;
    // Altered bytes.
    let mut b = original.clone();
    let mut raw = b.events[i].raw.clone().into_bytes();
    let at = raw.len() / 2;
    raw[at] = if raw[at] == b'0' { b'1' } else { b'0' };
    b.events[i].raw = String::from_utf8(raw).unwrap();
    let r = check(&b);
    assert!(!r.ok && r.first_bad_seq == Some(target), "{r:?}");
    // Removed event.
    let mut b = original.clone();
    b.events.remove(i);
    let r = check(&b);
    assert!(!r.ok && r.first_bad_seq == Some(target), "{r:?}");
    assert!(r.problem.contains("missing"), "{r:?}");
    // Reordered: two events' bytes swapped between their sequences.
    let mut b = original.clone();
    let (x, y) = (b.events[i].raw.clone(), b.events[i + 1].raw.clone());
    b.events[i].raw = y;
    b.events[i + 1].raw = x;
    let r = check(&b);
    assert!(!r.ok && r.first_bad_seq == Some(target), "{r:?}");
    // Reordered entries.
    let mut b = original.clone();
    b.events.swap(i, i + 1);
    let r = check(&b);
    assert!(!r.ok && r.first_bad_seq.is_some(), "{r:?}");
    // An event dropped from both the events and the manifest list: the signature fails.
    let mut b = original.clone();
    b.events.remove(i);
    b.manifest_seqs.retain(|s| *s != target);
    let r = check(&b);
    assert!(!r.ok && r.problem.contains("manifest"), "{r:?}");
    // The state changed after export.
    let mut b = original.clone();
    b.state.as_of_seq -= 1;
    let r = check(&b);
    assert!(!r.ok, "{r:?}");
    // Another key: rejected (the auditor pins the ledger's key).
    let other = "11".repeat(32);
    let r = check(&original);
    assert!(r.ok);
    let r = verify_bundle(&serde_json::to_vec(&original).unwrap(), Some(&other));
    assert!(!r.ok && r.problem.contains("not the trusted key"), "{r:?}");
    // The CLI names the sequence too.
    let mut b = original.clone();
    b.events.remove(i);
    let tampered = dir.path().join("tampered.json");
    std::fs::write(&tampered, serde_json::to_vec(&b).unwrap()).unwrap();
    let (ok, out) = verify_bundle_cli(&tampered, &key);
    assert!(!ok);
    assert!(
        out.contains(&format!("first bad sequence {target}")),
        "{out}"
    );
}

/// A proof is read from the kept tiles (O(log n)); a tile altered on disk is
/// named by `govledger verify`, an export refuses to prove from it (the
/// tiles no longer give the root the ledger signs), and a proof served from
/// it does not verify against a signed checkpoint.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tampered_tile_is_named_by_verify_and_nothing_is_proven_from_it() {
    use govledger_projector::merkle;
    use govledger_proto::v1::GetInclusionProofRequest;
    let nats = NatsServer::start().await;
    // Over 256 events: one full leaf block, so a level-1 tile exists.
    let scim = FaultScim::start_with(ScimConfig {
        users: 300,
        ..Default::default()
    })
    .await;
    let cfg = format!(
        "[[sources]]\nid = \"hr\"\nbase_url = \"{}\"\n",
        scim.base_url
    );
    let mut gl = Govledger::serve_with_config(&nats.url(), &cfg);
    gl.sync("hr").await;
    let mut c = gl.client().await;
    let cp = c
        .create_checkpoint(CreateCheckpointRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(cp.tree_size > 256, "{}", cp.tree_size);
    let (ok, out) = verify(&gl, None);
    assert!(ok, "{out}");

    // The projector derived the level-1 tile as it committed; alter it.
    gl.stop();
    let data = gl.take_data();
    {
        let sled = data.path().join("data/sled");
        let store = govledger_projector::Store::open(&sled, 8 << 20).unwrap();
        let mut tile = store.upper_tile(1, 0).unwrap().expect("tile (1, 0) kept");
        assert_eq!(tile.len(), 32 * (cp.tree_size as usize / 256));
        tile[0] ^= 1;
        store.put_upper_tile(1, 0, tile).unwrap();
        store.flush_blocking().unwrap();
    }
    let cfg_path = data.path().join("govledger.toml");
    let cfg_path = cfg_path.to_str().unwrap().to_owned();
    let gl = Govledger::serve_in(data, &nats.url(), &["--config", &cfg_path]);
    let mut c = gl.client().await;

    let (ok, out) = verify(&gl, None);
    assert!(!ok, "{out}");
    assert!(
        out.contains("kept tile at level 1, index 0 (entry 0)"),
        "{out}"
    );
    // A proof served from the altered tile does not lead to the signed root
    // (the last event's path passes through the root of the first 256).
    let p = c
        .get_inclusion_proof(GetInclusionProofRequest {
            seq: cp.tree_size,
            tree_size: cp.tree_size,
        })
        .await
        .unwrap()
        .into_inner();
    let h = |s: &str| -> merkle::Hash {
        govledger::audit::checkpoints::unhex(s)
            .unwrap()
            .try_into()
            .unwrap()
    };
    let path: Vec<merkle::Hash> = p.path.iter().map(|s| h(s)).collect();
    assert!(!merkle::verify_inclusion(
        cp.tree_size - 1,
        cp.tree_size,
        &h(&p.leaf_hash),
        &path,
        &h(&cp.root)
    ));
    // An export refuses to prove anything from it.
    let token = gl.token_path();
    let dir = tempfile::tempdir().unwrap();
    let out_path = dir.path().join("e.json");
    let (status, out) = run_govledger(
        &[
            "export",
            "--grpc-addr",
            &gl.addr,
            "--token-file",
            &token,
            "--source",
            "hr",
            "--identity",
            &scim.user_ids()[0],
            "--out",
            out_path.to_str().unwrap(),
        ],
        &[],
    );
    assert!(!status.success(), "{out}");
    assert!(out.contains("tiles do not give the root"), "{out}");
    assert!(!out_path.exists());
}
