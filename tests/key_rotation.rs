//! Checkpoint-key rotation against a real ledger: a key hands over to its
//! successor (both sign the handover), the published key set lists both
//! with their periods, bundles verify under a key pinned before or after the
//! rotation, and a stale node that still holds the retired key signs nothing.

use govledger::audit::checkpoints;
use govledger::audit::evidence::Bundle;
use govledger_proto::v1::{Checkpoint, CreateCheckpointRequest};
use govledger_testkit::fault_scim::FaultScim;
use govledger_testkit::govledger::run_govledger_out;
use govledger_testkit::{Govledger, NatsServer};

/// A config for source `hr` at `scim` signing with `key`, after `previous`.
fn config(
    dir: &std::path::Path,
    name: &str,
    scim: &FaultScim,
    key: &str,
    previous: Option<&str>,
) -> String {
    let mut text = format!(
        "[[sources]]\nid = \"hr\"\nbase_url = \"{}\"\n\n[audit]\ncheckpoint_interval_ms = 0\nsigning_key_file = \"{}\"\n",
        scim.base_url,
        dir.join(key).display()
    );
    if let Some(p) = previous {
        text.push_str(&format!(
            "previous_signing_key_file = \"{}\"\n",
            dir.join(p).display()
        ));
    }
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_owned()
}

/// `govledger <args> --grpc-addr … --token-file …` against `gl`: success, stdout + stderr.
fn cli(gl: &Govledger, args: &[&str]) -> (bool, String) {
    let mut all: Vec<&str> = args.to_vec();
    let token = gl.token_path();
    all.extend(["--grpc-addr", &gl.addr, "--token-file", &token]);
    let (status, out, err) = run_govledger_out(&all, &[]);
    (status.success(), out + &err)
}

/// `govledger verify-bundle FILE --public-key K`: exit code, output.
fn verify(path: &std::path::Path, key: &str) -> (Option<i32>, String) {
    let (status, out, err) = run_govledger_out(
        &["verify-bundle", path.to_str().unwrap(), "--public-key", key],
        &[],
    );
    (status.code(), out + &err)
}

fn export(gl: &Govledger, who: &str, path: &std::path::Path) -> Bundle {
    gl.export_identity("hr", who, path);
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_key_hands_over_and_bundles_verify_under_either_pin() {
    let nats = NatsServer::start().await;
    let scim = FaultScim::start(3).await;
    let keys = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    // 1. Key A signs the first stretch.
    let cfg_a = config(keys.path(), "a.toml", &scim, "a.key", None);
    let mut gl = Govledger::serve_in(
        tempfile::tempdir().unwrap(),
        &nats.url(),
        &["--config", &cfg_a],
    );
    gl.sync("hr").await;
    let a_pk = gl.ledger_status().await.checkpoint_public_key;
    gl.client()
        .await
        .create_checkpoint(CreateCheckpointRequest {})
        .await
        .unwrap();
    let who = scim.user_ids()[0].clone();
    let before = out.path().join("before.json");
    export(&gl, &who, &before);
    gl.stop();
    let data = gl.take_data();

    // 2. Rotate: key B, with A as the previous key. The next checkpoint is
    // A's handover to B, then B signs.
    let cfg_b = config(keys.path(), "b.toml", &scim, "b.key", Some("a.key"));
    let mut gl = Govledger::serve_in(data, &nats.url(), &["--config", &cfg_b]);
    let b_pk = gl.ledger_status().await.checkpoint_public_key;
    assert_ne!(a_pk, b_pk);
    let cp = gl
        .client()
        .await
        .create_checkpoint(CreateCheckpointRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        cp.public_key, b_pk,
        "what is asked for after a handover is signed by the new key"
    );
    let cps = gl.checkpoints().await;
    let handovers: Vec<&Checkpoint> = cps
        .iter()
        .filter(|c| !c.next_public_key.is_empty())
        .collect();
    assert_eq!(handovers.len(), 1, "{cps:?}");
    let h = handovers[0].clone();
    assert_eq!(
        (h.public_key.as_str(), h.next_public_key.as_str()),
        (a_pk.as_str(), b_pk.as_str())
    );
    // Pinning either key verifies the whole chain; another key pins nothing.
    checkpoints::verify_chain(&cps, &a_pk).unwrap();
    checkpoints::verify_chain(&cps, &b_pk).unwrap();
    assert!(checkpoints::verify_chain(&cps, &"11".repeat(32)).is_err());

    // 3. The published key set: both keys, oldest first, with their periods.
    let (ok, set) = cli(&gl, &["checkpoint", "--keys"]);
    assert!(ok, "{set}");
    let lines: Vec<&str> = set.lines().filter(|l| !l.starts_with('#')).collect();
    assert_eq!(lines.len(), 2, "{set}");
    let pins: Vec<String> = lines
        .iter()
        .map(|l| l.split_whitespace().next().unwrap().to_owned())
        .collect();
    assert_eq!(checkpoints::pin(&pins[0]).unwrap(), a_pk);
    assert_eq!(checkpoints::pin(&pins[1]).unwrap(), b_pk);
    assert!(
        pins[1].contains('+'),
        "published as a signed-note verifier key: {set}"
    );
    assert!(
        lines[0].contains(&format!("retired by its handover at size {}", h.tree_size)),
        "{set}"
    );
    assert!(lines[1].ends_with("current"), "{set}");

    // 4. History after the rotation: a new user.
    let newbie = scim.add_user();
    gl.sync("hr").await;
    let old_after = out.path().join("old-after.json");
    let through = export(&gl, &who, &old_after);
    assert!(
        through.key_history.is_empty(),
        "its chain itself holds the handover"
    );
    let new_after = out.path().join("new-after.json");
    let fresh = export(&gl, &newbie, &new_after);
    assert_eq!(
        fresh.key_history.len(),
        1,
        "the handover before its chain travels with it"
    );
    for path in [&old_after, &new_after] {
        // Pinned with the key of before the rotation: the handover reaches B.
        let (code, text) = verify(path, &a_pk);
        assert_eq!(code, Some(0), "{text}");
        assert!(text.contains("handed over from the pinned key"), "{text}");
        // Pinned with today's key, as its verifier key.
        let (code, text) = verify(path, &pins[1]);
        assert_eq!(code, Some(0), "{text}");
        // Another key: refused.
        let (code, text) = verify(path, &"11".repeat(32));
        assert_eq!(code, Some(3), "{text}");
    }
    // A tool we did not write (Go's sumdb/note and tlog) checks the bundle
    // whose chain crosses the handover with the published key set.
    let go = tempfile::tempdir().unwrap();
    let checker = govledger_testkit::go_c2sp::build_checker(go.path());
    let both = format!("{},{}", pins[0], pins[1]);
    let (held, text) = govledger_testkit::go_c2sp::check(
        &checker,
        &["bundle", &both, old_after.to_str().unwrap()],
    );
    assert!(held && text.contains("bundle ok"), "{text}");
    // With today's key alone, the older checkpoints' notes do not open.
    let (held, text) = govledger_testkit::go_c2sp::check(
        &checker,
        &["bundle", &pins[1], old_after.to_str().unwrap()],
    );
    assert!(!held, "{text}");
    // Without its key history, the old pin no longer reaches the bundle's key.
    let mut cut = fresh.clone();
    cut.key_history.clear();
    let cut_path = out.path().join("cut.json");
    std::fs::write(&cut_path, serde_json::to_vec(&cut).unwrap()).unwrap();
    let (code, text) = verify(&cut_path, &a_pk);
    assert_eq!(code, Some(3), "{text}");
    assert!(text.contains("does not hold that key"), "{text}");
    // A bundle from before the rotation verifies with the key of its time.
    let (code, text) = verify(&before, &a_pk);
    assert_eq!(code, Some(0), "{text}");
    let (code, text) = verify(&before, &b_pk);
    assert_eq!(code, Some(3), "{text}");
    gl.stop();
    let data = gl.take_data();

    // 5. A stale node with the retired key: it refuses to sign, and says what to do.
    let gl = Govledger::serve_in(data, &nats.url(), &["--config", &cfg_a]);
    let e = gl
        .client()
        .await
        .create_checkpoint(CreateCheckpointRequest {})
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::FailedPrecondition, "{e:?}");
    assert!(
        e.message().contains("audit.signing_key_file")
            && e.message().contains(&format!("size {}", h.tree_size)),
        "{e:?}"
    );
    let cps = gl.checkpoints().await;
    checkpoints::verify_chain(&cps, &a_pk).unwrap();
}
