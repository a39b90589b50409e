//! Audit: replaying the ledger's events from the stream, filtered, each with its
//! stream sequence and RFC 6962 leaf hash; the CLI writes NDJSON in the protobuf
//! JSON mapping.

mod common;

use common::{Govledger, NatsServer, ensure_stream, publisher, read_stream, run_govledger};
use govledger::simulate::{SimRun, publish_all, run_events, user_id};
use govledger_ingest::event::ProducerId;
use govledger_projector::merkle;
use govledger_proto::v1::{ReplayItem, ReplayRequest, event::Body};

async fn replay(gl: &Govledger, req: ReplayRequest) -> Vec<ReplayItem> {
    let mut s = gl.client().await.replay(req).await.unwrap().into_inner();
    let mut out = Vec::new();
    while let Some(i) = s.message().await.unwrap() {
        out.push(i);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_filters_and_commits_to_the_stored_bytes() {
    let nats = NatsServer::start();
    let gl = Govledger::serve(&nats.url(), &[]);
    let client = nats.client().await;
    ensure_stream(&client).await;
    let p = publisher(client.clone(), 2_000);
    let producer = ProducerId::new("test");
    let a = SimRun::new("hr", 120, 50);
    let b = SimRun::new("crm", 80, 50);
    publish_all(&p, &run_events(&producer, &a)).await.unwrap();
    let js = async_nats::jetstream::new(client.clone());
    js.publish("govledger.v1.hr.read.page_fetched", vec![0xde, 0xad].into())
        .await
        .unwrap()
        .await
        .unwrap();
    let last = publish_all(&p, &run_events(&producer, &b))
        .await
        .unwrap()
        .last()
        .unwrap()
        .seq;
    gl.wait_applied(last).await;

    let all = replay(&gl, ReplayRequest::default()).await;
    let stored = read_stream(&client).await;
    assert_eq!(all.len(), stored.len());
    for (item, m) in all.iter().zip(&stored) {
        assert_eq!(item.seq, m.seq);
        assert_eq!(
            item.leaf_hash,
            merkle::hex(&merkle::leaf_hash(m.seq, &m.payload))
        );
    }
    // The projector's Merkle root commits to exactly these stored bytes, in order.
    let leaves: Vec<merkle::Hash> = stored
        .iter()
        .map(|m| merkle::leaf_hash(m.seq, &m.payload))
        .collect();
    let status = gl.ledger_status().await;
    assert_eq!(status.merkle_size, last);
    assert_eq!(status.merkle_root, merkle::hex(&merkle::root(&leaves)));
    // An altered, removed or reordered event gives another root.
    let mut altered = leaves.clone();
    altered[3] = merkle::leaf_hash(4, b"altered");
    assert_ne!(merkle::hex(&merkle::root(&altered)), status.merkle_root);
    let mut reordered = leaves.clone();
    reordered.swap(5, 6);
    assert_ne!(merkle::hex(&merkle::root(&reordered)), status.merkle_root);
    assert_ne!(
        merkle::hex(&merkle::root(&leaves[..leaves.len() - 1])),
        status.merkle_root
    );

    let poison: Vec<_> = all.iter().filter(|i| i.event.is_none()).collect();
    assert_eq!(poison.len(), 1);
    assert_eq!(poison[0].raw, vec![0xde, 0xad]);

    let run_a = replay(
        &gl,
        ReplayRequest {
            run_id: a.run_id.clone(),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(run_a.len(), run_events(&producer, &a).len());
    assert!(
        run_a
            .iter()
            .all(|i| i.event.as_ref().unwrap().run_id == a.run_id)
    );

    let crm = replay(
        &gl,
        ReplayRequest {
            source_id: "crm".into(),
            ..Default::default()
        },
    )
    .await;
    assert!(
        !crm.is_empty()
            && crm
                .iter()
                .all(|i| i.subject.starts_with("govledger.v1.crm."))
    );

    let one = replay(
        &gl,
        ReplayRequest {
            identity_external_id: user_id(7),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(one.len(), 2, "observed once in each run");
    assert!(one.iter().all(|i| matches!(
        i.event.as_ref().unwrap().body,
        Some(Body::RecordObserved(ref r)) if r.external_id == user_id(7)
    )));

    let window = replay(
        &gl,
        ReplayRequest {
            from_seq: 10,
            to_seq: 19,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(
        window.iter().map(|i| i.seq).collect::<Vec<_>>(),
        (10..=19).collect::<Vec<_>>()
    );

    let e = gl
        .client()
        .await
        .replay(ReplayRequest {
            from_seq: 9,
            to_seq: 3,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);

    // The CLI writes one JSON object per event (protobuf JSON mapping).
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("replay.ndjson");
    let (status, stderr) = run_govledger(
        &[
            "replay",
            "--run",
            &a.run_id,
            "--grpc-addr",
            &gl.addr,
            "--out",
            out.to_str().unwrap(),
        ],
        &[],
    );
    assert!(status.success(), "{stderr}");
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), run_a.len());
    assert_eq!(lines[0]["event"]["runId"], a.run_id);
    assert!(
        lines[0]["event"]["syncRunStarted"].is_object(),
        "{}",
        lines[0]
    );
    assert_eq!(lines[0]["leafHash"], run_a[0].leaf_hash);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rebuild_matches_the_live_digest_after_a_mixed_history_with_restarts() {
    use common::fault_scim::{FaultScim, Faults, PageFault, ScimConfig};
    use govledger_proto::v1::{ActionKind, ActionRequested, SubmitActionRequest};

    let nats = NatsServer::start();
    let scim = FaultScim::start_with(ScimConfig {
        users: 150,
        groups: 3,
        ..Default::default()
    })
    .await;
    let cfg_text = format!(
        "[[sources]]\nid = \"hr\"\nbase_url = \"{}\"\nresources = [\"Users\", \"Groups\"]\n\n[sources.retry]\nattempts_max = 2\nbackoff_min_ms = 10\nbackoff_max_ms = 20\n",
        scim.base_url
    );
    let mut gl = Govledger::serve_with_config(&nats.url(), &cfg_text);
    let cfg = gl
        .data
        .path()
        .join("govledger.toml")
        .to_str()
        .unwrap()
        .to_owned();
    gl.sync("hr").await;
    scim.set_faults(Faults {
        fail: vec![PageFault {
            start_index: 101,
            status: 503,
            times: u32::MAX,
        }],
        ..Default::default()
    });
    gl.sync("hr").await;
    scim.set_faults(Faults::default());
    let users = scim.user_ids();
    for (i, u) in users.iter().take(3).enumerate() {
        gl.client()
            .await
            .submit_action(SubmitActionRequest {
                source_id: "hr".into(),
                request: Some(ActionRequested {
                    kind: ActionKind::Deactivate as i32,
                    identity_external_id: u.clone(),
                    idempotency_key: format!("mix-{i}"),
                    ..Default::default()
                }),
            })
            .await
            .unwrap();
    }
    // Restart govledger in the middle of the history.
    gl.stop();
    let data = gl.take_data();
    drop(gl);
    let gl = Govledger::serve_in(data, &nats.url(), &["--config", &cfg]);
    scim.set_active(&users[0], true); // drift, seen by the next sync
    gl.sync("hr").await;
    let client = nats.client().await;
    let last = read_stream(&client).await.last().unwrap().seq;
    gl.wait_applied(last).await;

    let (status, out) = {
        let o = std::process::Command::new(common::govledger_bin())
            .args([
                "rebuild",
                "--nats-url",
                &nats.url(),
                "--grpc-addr",
                &gl.addr,
            ])
            .output()
            .unwrap();
        (
            o.status,
            String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr),
        )
    };
    assert!(status.success(), "{out}");
    assert!(
        out.contains("MATCH: the live projection is exactly the fold of the stream"),
        "{out}"
    );
}

fn unhex(s: &str) -> merkle::Hash {
    let mut out = [0u8; 32];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap();
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inclusion_and_consistency_proofs_from_the_api_verify_offline() {
    use govledger_proto::v1::{GetConsistencyProofRequest, GetInclusionProofRequest};
    let nats = NatsServer::start();
    let gl = Govledger::serve(&nats.url(), &[]);
    let client = nats.client().await;
    ensure_stream(&client).await;
    let p = publisher(client.clone(), 2_000);
    let last = publish_all(
        &p,
        &run_events(&ProducerId::new("t"), &SimRun::new("hr", 60, 25)),
    )
    .await
    .unwrap()
    .last()
    .unwrap()
    .seq;
    gl.wait_applied(last).await;
    let status = gl.ledger_status().await;
    let root = unhex(&status.merkle_root);
    let mut c = gl.client().await;
    for seq in [1, 2, 7, last / 2, last] {
        let proof = c
            .get_inclusion_proof(GetInclusionProofRequest { seq, tree_size: 0 })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(proof.tree_size, last);
        assert_eq!(proof.root, status.merkle_root);
        let path: Vec<merkle::Hash> = proof.path.iter().map(|h| unhex(h)).collect();
        let leaf = unhex(&proof.leaf_hash);
        assert!(
            merkle::verify_inclusion(seq - 1, last, &leaf, &path, &root),
            "seq {seq}"
        );
        let forged = merkle::leaf_hash(seq, b"forged");
        assert!(!merkle::verify_inclusion(
            seq - 1,
            last,
            &forged,
            &path,
            &root
        ));
    }
    let cp = c
        .get_consistency_proof(GetConsistencyProofRequest {
            size1: 10,
            size2: last,
        })
        .await
        .unwrap()
        .into_inner();
    let path: Vec<merkle::Hash> = cp.path.iter().map(|h| unhex(h)).collect();
    assert!(merkle::verify_consistency(
        10,
        last,
        &unhex(&cp.root1),
        &root,
        &path
    ));
    assert!(!merkle::verify_consistency(
        10,
        last,
        &unhex(&cp.root1),
        &merkle::empty_root(),
        &path
    ));
    let e = c
        .get_inclusion_proof(GetInclusionProofRequest {
            seq: last + 1,
            tree_size: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_checkpoints_chain_cover_empty_periods_and_reject_other_keys() {
    use govledger::checkpoints::{self, CheckpointError};
    use govledger_proto::v1::{CreateCheckpointRequest, ListCheckpointsRequest};
    let nats = NatsServer::start();
    let gl = Govledger::serve_with_config(&nats.url(), "[audit]\ncheckpoint_interval_ms = 300\n");
    let client = nats.client().await;
    ensure_stream(&client).await;
    let p = publisher(client.clone(), 2_000);
    let last = publish_all(
        &p,
        &run_events(&ProducerId::new("t"), &SimRun::new("hr", 40, 20)),
    )
    .await
    .unwrap()
    .last()
    .unwrap()
    .seq;
    gl.wait_applied(last).await;
    // Quiet period: checkpoints keep coming with the same size.
    tokio::time::sleep(std::time::Duration::from_millis(1_500)).await;
    let mut c = gl.client().await;
    let on_demand = c
        .create_checkpoint(CreateCheckpointRequest {})
        .await
        .unwrap()
        .into_inner();
    let mut cps = c
        .list_checkpoints(ListCheckpointsRequest { limit: 100 })
        .await
        .unwrap()
        .into_inner()
        .checkpoints;
    cps.reverse(); // oldest first
    assert!(cps.len() >= 4, "only {} checkpoints", cps.len());
    assert_eq!(cps.last().unwrap(), &on_demand);
    let pk = gl.ledger_status().await.checkpoint_public_key;
    checkpoints::verify_chain(&cps, &pk).unwrap();
    assert!(cps[0].previous.is_empty());
    let at_last: Vec<_> = cps.iter().filter(|cp| cp.tree_size == last).collect();
    assert!(at_last.len() >= 2, "empty periods got no checkpoint");
    // Each root is the RFC 6962 root of exactly that prefix of the stream.
    let stored = read_stream(&client).await;
    let leaves: Vec<merkle::Hash> = stored
        .iter()
        .map(|m| merkle::leaf_hash(m.seq, &m.payload))
        .collect();
    for cp in &cps {
        assert_eq!(
            cp.root,
            merkle::hex(&merkle::root(&leaves[..cp.tree_size as usize]))
        );
    }
    // Signed with another key: rejected.
    let other = ed25519_dalek::SigningKey::from_bytes(&[42; 32]);
    let forged = checkpoints::sign(
        &other,
        &on_demand.stream,
        on_demand.tree_size,
        &on_demand.root,
        on_demand.created_at_us,
        &on_demand.previous,
    );
    assert!(matches!(
        checkpoints::verify(&forged, &pk),
        Err(CheckpointError::OtherKey { .. })
    ));
}
