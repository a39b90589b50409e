//! govledger's checkpoints and proofs checked by an implementation we did not
//! write: Go's `golang.org/x/mod/sumdb/note` and `sumdb/tlog` (where the C2SP
//! signed-note and tlog formats come from), from Debian's
//! golang-golang-x-mod-dev, driven by `tests/go/c2sp_check.go`. A real
//! `serve` over a real NATS signs two checkpoints around a second sync; the
//! Go program verifies each note with the published verifier key, an event's
//! inclusion (its leaf recomputed from the stored bytes) and the consistency
//! of the two trees — and refuses a tampered note, a wrong record and a
//! proof between the wrong sizes.

use govledger_proto::v1::{
    Checkpoint, CreateCheckpointRequest, GetConsistencyProofRequest, GetInclusionProofRequest,
};
use govledger_testkit::go_c2sp::{build_checker, check};
use govledger_testkit::govledger::serve_fault_scim;

/// The base64 root line of a checkpoint's note.
fn note_root(cp: &Checkpoint) -> String {
    cp.note.lines().nth(2).unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_checkpoints_and_proofs_verify_with_gos_sumdb_note_and_tlog() {
    let dir = tempfile::tempdir().unwrap();
    let checker = build_checker(dir.path());
    let (nats, scim, gl) = serve_fault_scim(20, 2, "").await;
    let mut c = gl.client().await;
    let cp1 = c
        .create_checkpoint(CreateCheckpointRequest {})
        .await
        .unwrap()
        .into_inner();
    scim.set_active(&scim.user_ids()[0], false);
    gl.sync("hr").await;
    let cp2 = c
        .create_checkpoint(CreateCheckpointRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(cp2.tree_size > cp1.tree_size, "{cp1:?} {cp2:?}");
    // The verifier key the ledger logs at start, for operators to publish.
    assert!(
        gl.log_text().contains(&cp2.verifier_key),
        "the verifier key is not in the log"
    );

    // 1. Each note verifies under the verifier key, and says size and root.
    for cp in [&cp1, &cp2] {
        let f = dir.path().join(format!("cp{}.note", cp.tree_size));
        std::fs::write(&f, &cp.note).unwrap();
        let (ok, out) = check(&checker, &["note", &cp.verifier_key, f.to_str().unwrap()]);
        assert!(ok, "{out}");
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[1], cp.tree_size.to_string(), "{out}");
        let root = base64_decode(lines[2]);
        assert_eq!(govledger_projector::fold::hex(&root), cp.root, "{out}");
    }
    // A note with its size changed is refused by Go.
    let tampered = dir.path().join("tampered.note");
    std::fs::write(
        &tampered,
        cp2.note.replacen(
            &format!("\n{}\n", cp2.tree_size),
            &format!("\n{}\n", cp2.tree_size + 1),
            1,
        ),
    )
    .unwrap();
    let (ok, out) = check(
        &checker,
        &["note", &cp2.verifier_key, tampered.to_str().unwrap()],
    );
    assert!(!ok, "a tampered note verified: {out}");

    // 2. An event's inclusion in the second tree: Go hashes the record
    // (8-byte big-endian sequence, then the bytes the stream stored).
    let js = async_nats::jetstream::new(nats.client().await);
    let stream = js.get_stream("GOVLEDGER").await.unwrap();
    let size2 = cp2.tree_size.to_string();
    let root2 = note_root(&cp2);
    for seq in [1, cp1.tree_size, cp2.tree_size] {
        let stored = stream.get_raw_message(seq).await.unwrap().payload;
        let record = [&seq.to_be_bytes()[..], stored.as_ref()].concat();
        let f = dir.path().join(format!("record{seq}"));
        std::fs::write(&f, &record).unwrap();
        let p = c
            .get_inclusion_proof(GetInclusionProofRequest {
                seq,
                tree_size: cp2.tree_size,
            })
            .await
            .unwrap()
            .into_inner();
        let path = if p.path.is_empty() {
            "-".to_owned()
        } else {
            p.path.join(",")
        };
        let index = (seq - 1).to_string();
        let inclusion = || {
            check(
                &checker,
                &[
                    "inclusion",
                    &size2,
                    &root2,
                    &index,
                    f.to_str().unwrap(),
                    &path,
                ],
            )
        };
        let (ok, out) = inclusion();
        assert!(ok, "sequence {seq}: {out}");
        // One byte of the record changed: refused.
        let mut wrong = record.clone();
        let last = wrong.len() - 1;
        wrong[last] ^= 1;
        std::fs::write(&f, &wrong).unwrap();
        let (ok, out) = inclusion();
        assert!(!ok, "sequence {seq}: an altered record was included: {out}");
    }

    // A tree larger than the projection holds: refused, naming what it holds.
    let past = c
        .get_inclusion_proof(GetInclusionProofRequest {
            seq: 1,
            tree_size: cp2.tree_size + 1_000,
        })
        .await
        .unwrap_err();
    assert_eq!(past.code(), tonic::Code::FailedPrecondition, "{past:?}");
    assert!(
        past.message()
            .contains("past what the projector has applied"),
        "{past:?}"
    );

    // 3. The second tree extends the first.
    let p = c
        .get_consistency_proof(GetConsistencyProofRequest {
            size1: cp1.tree_size,
            size2: cp2.tree_size,
        })
        .await
        .unwrap()
        .into_inner();
    let args = [
        "consistency".to_owned(),
        cp1.tree_size.to_string(),
        note_root(&cp1),
        size2.clone(),
        root2.clone(),
        p.path.join(","),
    ];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (ok, out) = check(&checker, &args);
    assert!(ok, "{out}");
    // The same proof for another old size is refused.
    let mut wrong = args.clone();
    let other = (cp1.tree_size - 1).to_string();
    wrong[1] = &other;
    let (ok, out) = check(&checker, &wrong);
    assert!(!ok, "a consistency proof for the wrong size held: {out}");

    // 4. The auditor's way in: `govledger checkpoint` prints the note and
    // `--verifier-key` the key; Go verifies what the CLI printed.
    let (k, v) = gl.token_env();
    let env = [(k, v.as_str())];
    let (st, key, err) = govledger_testkit::govledger::run_govledger_out(
        &["checkpoint", "--verifier-key", "--grpc-addr", &gl.addr],
        &env,
    );
    assert!(st.success(), "{err}");
    assert_eq!(key.trim(), cp2.verifier_key);
    let (st, printed, err) = govledger_testkit::govledger::run_govledger_out(
        &["checkpoint", "--new", "--grpc-addr", &gl.addr],
        &env,
    );
    assert!(st.success(), "{err}");
    let f = dir.path().join("printed.note");
    std::fs::write(&f, &printed).unwrap();
    let (ok, out) = check(&checker, &["note", key.trim(), f.to_str().unwrap()]);
    assert!(ok, "{out}");
    assert_eq!(out.lines().nth(1), Some(cp2.tree_size.to_string().as_str()));

    // 5. An evidence bundle: Go checks every checkpoint note, the
    // consistency of each tree with the next, and every event's tlog-proof.
    let bundle = dir.path().join("evidence.json");
    let who = scim.user_ids()[0].clone();
    let (st, _, err) = govledger_testkit::govledger::run_govledger_out(
        &[
            "export",
            "--grpc-addr",
            &gl.addr,
            "--source",
            "hr",
            "--identity",
            &who,
            "--out",
            bundle.to_str().unwrap(),
        ],
        &env,
    );
    assert!(st.success(), "{err}");
    let bundle_check =
        |path: &std::path::Path| check(&checker, &["bundle", key.trim(), path.to_str().unwrap()]);
    let (ok, out) = bundle_check(&bundle);
    assert!(ok, "{out}");
    let b: govledger::audit::evidence::Bundle =
        serde_json::from_slice(&std::fs::read(&bundle).unwrap()).unwrap();
    assert!(b.checkpoints.len() >= 3 && b.events.len() >= 2, "{out}");
    assert!(
        out.contains(&format!("{} event(s) included", b.events.len())),
        "{out}"
    );
    // One stored byte of an event changed: Go refuses its proof.
    let mut bad = b.clone();
    let raw = &mut bad.events[1].raw;
    let flipped = if raw.ends_with('0') { '1' } else { '0' };
    raw.pop();
    raw.push(flipped);
    let f = dir.path().join("bad-event.json");
    std::fs::write(&f, serde_json::to_vec(&bad).unwrap()).unwrap();
    let (ok, out) = bundle_check(&f);
    assert!(
        !ok && out.contains(&format!("sequence {}", bad.events[1].seq)),
        "{out}"
    );
    // A consistency proof altered: Go refuses the chain.
    let mut bad = b.clone();
    let p = bad.consistency.iter_mut().find(|p| !p.is_empty()).unwrap();
    p[0] = "00".repeat(32);
    let f = dir.path().join("bad-consistency.json");
    std::fs::write(&f, serde_json::to_vec(&bad).unwrap()).unwrap();
    let (ok, out) = bundle_check(&f);
    assert!(!ok && out.contains("checkpoints"), "{out}");
}

fn base64_decode(s: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.decode(s).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_witness_cosignature_is_kept_shown_by_verify_and_a_forged_one_is_refused() {
    use ed25519_dalek::SigningKey;
    use govledger::audit::note;
    use govledger_testkit::{
        Govledger, NatsServer,
        fault_scim::{FaultScim, ScimConfig},
        govledger::{run_govledger_out, scim_source_toml},
    };
    let witness = SigningKey::from_bytes(&[31; 32]);
    let wname = "witness.example/w1";
    let wkey = note::witness_key(wname, &witness.verifying_key());
    let nats = NatsServer::start().await;
    let scim = FaultScim::start_with(ScimConfig {
        users: 5,
        ..Default::default()
    })
    .await;
    let toml = format!(
        "[audit]\nwitness_keys = [{wkey:?}]\n{}",
        scim_source_toml(&scim.base_url, "")
    );
    let gl = Govledger::serve_with_config(&nats.url(), &toml);
    gl.sync("hr").await;
    let (k, v) = gl.token_env();
    let env = [(k, v.as_str())];
    let run = |args: &[&str]| {
        let mut all = args.to_vec();
        all.extend(["--grpc-addr", &gl.addr]);
        run_govledger_out(&all, &env)
    };
    let (st, signed, err) = run(&["checkpoint", "--new"]);
    assert!(st.success(), "{err}");
    let dir = tempfile::tempdir().unwrap();

    // The witness cosigns; the ledger keeps it; verify names the witness.
    let cosigned = note::cosign(&signed, wname, &witness, 1_765_000_000).unwrap();
    let f = dir.path().join("cosigned.note");
    std::fs::write(&f, &cosigned).unwrap();
    let (st, out, err) = run(&["checkpoint", "--add-cosignature", f.to_str().unwrap()]);
    assert!(st.success(), "{out}{err}");
    assert!(out.contains(&format!("cosigned by {wname}")), "{out}");
    let (st, out, err) = run(&["verify"]);
    assert!(st.success(), "{out}{err}");
    let size = signed.lines().nth(1).unwrap();
    assert!(
        out.contains(&format!("witnessed: checkpoint of size {size}: {wname}")),
        "{out}"
    );

    // A cosignature line under the witness's name and key id whose
    // signature another key made: refused, nothing kept.
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let sig_of = |n: &str| {
        b64.decode(n.lines().last().unwrap().rsplit_once(' ').unwrap().1)
            .unwrap()
    };
    let other = note::cosign(
        &signed,
        wname,
        &SigningKey::from_bytes(&[32; 32]),
        1_765_000_000,
    )
    .unwrap();
    let spliced = [&sig_of(&cosigned)[..4], &sig_of(&other)[4..]].concat();
    let forged = format!("{signed}— {wname} {}\n", b64.encode(spliced));
    std::fs::write(&f, &forged).unwrap();
    let (st, out, err) = run(&["checkpoint", "--add-cosignature", f.to_str().unwrap()]);
    assert!(!st.success(), "a forged cosignature was kept: {out}");
    assert!(err.contains("does not verify"), "{err}");
    // A witness nobody configured: refused, saying what to configure.
    let stranger = note::cosign(&signed, "elsewhere.example/w9", &witness, 1).unwrap();
    std::fs::write(&f, &stranger).unwrap();
    let (st, _, err) = run(&["checkpoint", "--add-cosignature", f.to_str().unwrap()]);
    assert!(!st.success() && err.contains("audit.witness_keys"), "{err}");
}

/// The ledger's HTTP tlog-tiles API read by Go's tlog client: the served
/// checkpoint verifies under the verifier key, `tlog.TileHashReader` checks
/// every tile it fetches against the signed root and proves an event
/// included; a tile altered on disk is refused by Go; the API needs the
/// auditor role and names what it does not serve.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standard_tlog_client_verifies_the_served_tiles() {
    use govledger_testkit::{
        Govledger, NatsServer,
        fault_scim::{FaultScim, ScimConfig},
    };
    let dir = tempfile::tempdir().unwrap();
    let checker = build_checker(dir.path());
    let nats = NatsServer::start().await;
    // Over 512 events: full tiles at level 0 and entries at level 1.
    let scim = FaultScim::start_with(ScimConfig {
        users: 600,
        ..Default::default()
    })
    .await;
    let cfg = format!(
        "[http]\naddr = \"127.0.0.1:0\"\n[[sources]]\nid = \"hr\"\nbase_url = \"{}\"\n",
        scim.base_url
    );
    let mut gl = Govledger::serve_with_config(&nats.url(), &cfg);
    gl.sync("hr").await;
    let (k, token_file) = gl.token_env();
    let env = [(k, token_file.as_str())];
    let token = std::fs::read_to_string(gl.token_file())
        .unwrap()
        .trim()
        .to_owned();
    let (st, printed, err) = govledger_testkit::govledger::run_govledger_out(
        &["checkpoint", "--new", "--grpc-addr", &gl.addr],
        &env,
    );
    assert!(st.success(), "{err}");
    let size: u64 = printed.lines().nth(1).unwrap().parse().unwrap();
    assert!(size > 512, "{size}");
    let (_, vkey, _) = govledger_testkit::govledger::run_govledger_out(
        &["checkpoint", "--verifier-key", "--grpc-addr", &gl.addr],
        &env,
    );
    let vkey = vkey.trim().to_owned();
    let js = async_nats::jetstream::new(nats.client().await);
    let stream = js.get_stream("GOVLEDGER").await.unwrap();
    let seq = size / 2;
    let stored = stream.get_raw_message(seq).await.unwrap().payload;
    let record = dir.path().join("record");
    std::fs::write(&record, [&seq.to_be_bytes()[..], stored.as_ref()].concat()).unwrap();
    let index = (seq - 1).to_string();
    let tiles = |base: &str, token: &str| {
        check(
            &checker,
            &[
                "tiles",
                base,
                token,
                &vkey,
                &index,
                record.to_str().unwrap(),
            ],
        )
    };
    let base = format!("http://{}", gl.http_addr());
    let (ok, out) = tiles(&base, &token);
    assert!(ok, "{out}");
    assert!(
        out.contains(&format!("tree of size {size} verified")),
        "{out}"
    );

    // The API's refusals: no token, a path it does not serve, a tile past the tree.
    let (ok, out) = tiles(&base, "not-a-token");
    assert!(!ok && out.contains("401"), "{out}");
    govledger_ingest::http::install_crypto_provider();
    let http = reqwest::Client::new();
    for (path, code, says) in [
        ("/tile/entries/000", 404, "entry bundles are not served"),
        ("/tile/0/x999/000", 404, "past the tree"),
        ("/tile/9/000", 404, "level must be 0 to 7"),
    ] {
        let r = http
            .get(format!("{base}{path}"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), code, "{path}");
        let body = r.text().await.unwrap();
        assert!(body.contains(says), "{path}: {body}");
    }

    // A level-1 tile altered on disk: Go's client refuses the tree.
    gl.stop();
    let data = gl.take_data();
    {
        let store =
            govledger_projector::Store::open(&data.path().join("data/sled"), 8 << 20).unwrap();
        let mut tile = store.upper_tile(1, 0).unwrap().expect("tile (1, 0)");
        tile[5] ^= 1;
        store.put_upper_tile(1, 0, tile).unwrap();
        store.flush_blocking().unwrap();
    }
    let cfg_path = data.path().join("govledger.toml");
    let cfg_path = cfg_path.to_str().unwrap().to_owned();
    let gl = Govledger::serve_in(data, &nats.url(), &["--config", &cfg_path]);
    let base = format!("http://{}", gl.http_addr());
    let (ok, out) = tiles(&base, &token);
    assert!(
        !ok && out.contains("inconsistent tile"),
        "a tampered tile verified: {out}"
    );
}

/// The ledger asks a witness (c2sp.org/tlog-witness `add-checkpoint`) to
/// cosign every checkpoint: the first from size 0, the next with a
/// consistency proof the witness checks; a restarted ledger that no longer
/// knows what the witness saw is told (409 Conflict) and asks again from
/// there. `govledger verify` names the witness of each checkpoint.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ledger_asks_a_witness_to_cosign_each_checkpoint() {
    use ed25519_dalek::SigningKey;
    use govledger_testkit::{
        Govledger, NatsServer,
        fault_scim::{FaultScim, ScimConfig},
        witness::Witness,
    };
    let nats = NatsServer::start().await;
    let scim = FaultScim::start_with(ScimConfig {
        users: 6,
        ..Default::default()
    })
    .await;
    let keys = tempfile::tempdir().unwrap();
    let key_file = keys.path().join("checkpoint.key");
    std::fs::write(&key_file, "11".repeat(32)).unwrap();
    let origin = "ledger.test/witnessed";
    let log_vkey = govledger::audit::note::verifier_key(
        origin,
        &SigningKey::from_bytes(&[0x11; 32]).verifying_key(),
    );
    let witness = Witness::start("witness.test/w1", &log_vkey).await;
    let cfg = format!(
        "[audit]\ncheckpoint_interval_ms = 0\norigin = \"{origin}\"\nsigning_key_file = {:?}\n\
         [[audit.witnesses]]\nurl = \"{}\"\nkey = \"{}\"\n\n\
         [[sources]]\nid = \"hr\"\nbase_url = \"{}\"\n",
        key_file.display().to_string(),
        witness.url,
        witness.key,
        scim.base_url
    );
    let mut gl = Govledger::serve_with_config(&nats.url(), &cfg);
    let cosigned = |size: u64| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while witness.latest_size() != Some(size) {
            assert!(
                std::time::Instant::now() < deadline,
                "the witness never cosigned size {size} (it holds {:?})",
                witness.latest_size()
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    };
    let checkpoint = |gl: &Govledger| {
        let (k, v) = gl.token_env();
        let (st, out, err) = govledger_testkit::govledger::run_govledger_out(
            &["checkpoint", "--new", "--grpc-addr", &gl.addr],
            &[(k, v.as_str())],
        );
        assert!(st.success(), "{err}");
        out.lines().nth(1).unwrap().parse::<u64>().unwrap()
    };
    gl.sync("hr").await;
    let size1 = checkpoint(&gl);
    cosigned(size1);
    assert_eq!(witness.proofs_checked(), 0);
    scim.set_active(&scim.user_ids()[0], false);
    gl.sync("hr").await;
    let size2 = checkpoint(&gl);
    assert!(size2 > size1);
    cosigned(size2);
    assert_eq!(witness.proofs_checked(), 1, "the second came with a proof");

    // A restarted ledger starts from size 0: 409, then from the witness's size.
    gl.stop();
    let data = gl.take_data();
    let cfg_path = data.path().join("govledger.toml").display().to_string();
    let gl = Govledger::serve_in(data, &nats.url(), &["--config", &cfg_path]);
    gl.sync("hr").await;
    let size3 = checkpoint(&gl);
    cosigned(size3);
    assert_eq!(witness.proofs_checked(), 2);

    // `verify` names the witness of each cosigned checkpoint.
    let (k, v) = gl.token_env();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let (_, out, _) = govledger_testkit::govledger::run_govledger_out(
            &["verify", "--grpc-addr", &gl.addr],
            &[(k, v.as_str())],
        );
        let named = [size1, size2, size3].iter().all(|s| {
            out.contains(&format!(
                "witnessed: checkpoint of size {s}: witness.test/w1"
            ))
        });
        if named {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{out}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}
