//! Audit: replaying the ledger's events from the stream, filtered, each with its
//! stream sequence and RFC 6962 leaf hash; the CLI writes NDJSON in the protobuf
//! JSON mapping.

use govledger::api::queries::drifted_steps;
use govledger::simulate::{SimRun, publish_all, run_events, user_id};
use govledger_ingest::event::ProducerId;
use govledger_projector::merkle;
use govledger_projector::{fold::Working, fold_in_memory};
use govledger_proto::v1::{
    ActionOutcome, AsOf, EntityType, GetActionRequest, GetIdentityRequest, GetSourceRequest,
    ListActionsRequest, ReplayItem, ReplayRequest, as_of, event::Body,
};
use govledger_testkit::{
    Govledger, NatsServer, ensure_stream, publish_events, publish_sim, publisher, read_stream,
    run_govledger,
};

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
    let nats = NatsServer::start().await;
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
    let last = publish_events(&p, &run_events(&producer, &b)).await;
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
            "--token-file",
            &gl.token_path(),
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
async fn mixed_history_rebuild_matches_and_as_of_answers_equal_a_fold_of_the_prefix() {
    use govledger_proto::v1::{ActionKind, ActionRequested, SubmitActionRequest};
    use govledger_testkit::fault_scim::{FaultScim, Faults, PageFault, ScimConfig};

    let nats = NatsServer::start().await;
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
    // Every action concluded before the history is read back: the executor's
    // read-backs may take up to its verify window, and their events must not
    // land after the stream's last sequence is taken below.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let listed = gl
            .client()
            .await
            .list_actions(ListActionsRequest {
                source_id: "hr".into(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .actions;
        let pending = listed
            .iter()
            .filter(|a| a.outcome == govledger_proto::v1::ActionOutcome::Pending as i32)
            .count();
        if listed.len() == 3 && pending == 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{} actions listed, {pending} pending",
            listed.len()
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    scim.set_active(&users[0], true); // drift, seen by the next sync
    gl.sync("hr").await;
    let client = nats.client().await;
    let last = read_stream(&client).await.last().unwrap().seq;
    gl.wait_applied(last).await;

    let (status, out) = gl.rebuild(&nats.url());
    assert!(status.success(), "{out}");
    assert!(
        out.contains("MATCH: the live projection is exactly the fold of the stream"),
        "{out}"
    );

    // Point in time: identities, actions and the source as of many past points
    // equal what a fold of the stream prefix up to that point holds.
    let stored = read_stream(&client).await;
    assert_eq!(stored.len() as u64, last);
    let mut c = gl.client().await;
    let actions: Vec<String> = c
        .list_actions(ListActionsRequest {
            source_id: "hr".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .actions
        .into_iter()
        .map(|a| a.action.unwrap().action_id)
        .collect();
    assert_eq!(actions.len(), 3);
    let mut points: Vec<u64> = vec![1, last / 4, last / 2, 3 * last / 4, last];
    for m in &stored {
        let ev = govledger_projector::fold::decode(&m.as_stream_msg());
        if let Ok(ev) = ev
            && matches!(
                ev.body,
                Some(Body::ActionConcluded(_) | Body::ActionRequested(_))
            )
        {
            points.extend([m.seq - 1, m.seq]);
        }
    }
    points.retain(|p| *p >= 1);
    points.sort_unstable();
    points.dedup();
    let watched: Vec<String> = users.iter().take(4).cloned().collect();
    let at_seq = |n: u64| AsOf {
        point: Some(as_of::Point::Seq(n)),
    };
    let (mut identities_checked, mut absent_checked, mut actions_checked) = (0, 0, 0);
    for &point in &points {
        let mut reference = Working {
            trust: govledger_testkit::stream::test_trust(),
            ..Default::default()
        };
        fold_in_memory(&mut reference, &stored[..point as usize]);
        for u in &watched {
            let key = ("hr".to_owned(), EntityType::User as i32, u.clone());
            let got = c
                .get_identity(GetIdentityRequest {
                    source_id: "hr".into(),
                    entity_type: EntityType::User as i32,
                    external_id: u.clone(),
                    as_of: Some(at_seq(point)),
                })
                .await;
            match reference.identities.get(&key) {
                Some(want) => {
                    let got = got.unwrap().into_inner();
                    assert_eq!(got.as_of.unwrap().seq, point);
                    assert_eq!(got.identity.as_ref(), Some(want), "{u} as of {point}");
                    identities_checked += 1;
                }
                None => {
                    let e = got.unwrap_err();
                    assert_eq!(e.code(), tonic::Code::NotFound, "{u} as of {point}: {e:?}");
                    assert!(e.message().contains("had not reported"), "{e:?}");
                    absent_checked += 1;
                }
            }
        }
        for a in &actions {
            let got = c
                .get_action(GetActionRequest {
                    action_id: a.clone(),
                    as_of: Some(at_seq(point)),
                })
                .await;
            match reference.actions.get(a) {
                Some(want) => {
                    let got = got.unwrap().into_inner();
                    let outcome = ActionOutcome::try_from(got.outcome).unwrap();
                    // The answer is the view of the prefix's fold: a drift (computed
                    // at query time from the identity then) only undoes a confirmation.
                    if outcome == ActionOutcome::Drifted {
                        assert_eq!(want.outcome, ActionOutcome::Confirmed as i32, "{a}");
                    }
                    assert_eq!(
                        got.action,
                        Some(drifted_steps(want.clone(), outcome)),
                        "action {a} as of {point}"
                    );
                    actions_checked += 1;
                }
                None => {
                    let e = got.unwrap_err();
                    assert_eq!(e.code(), tonic::Code::NotFound, "{e:?}");
                }
            }
        }
    }
    assert!(
        identities_checked > 10 && absent_checked > 0 && actions_checked > 3,
        "{identities_checked} {absent_checked} {actions_checked}"
    );
    // The source as of a few points (each folds the source's slice again).
    for point in [last / 3, 2 * last / 3, last] {
        let mut reference = Working {
            trust: govledger_testkit::stream::test_trust(),
            ..Default::default()
        };
        fold_in_memory(&mut reference, &stored[..point as usize]);
        let got = c
            .get_source(GetSourceRequest {
                source_id: "hr".into(),
                as_of: Some(at_seq(point)),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            got.source.as_ref(),
            reference.sources.get(&"hr".to_owned()),
            "source as of {point}"
        );
        let want_run = reference.runs.get(&got.source.unwrap().last_run_id);
        assert_eq!(got.last_run.as_ref(), want_run);
    }
    // Each answer after the first folded on from the one before it (a kept,
    // checked snapshot) — and gave the reference's state all the same.
    let log = gl.log_text();
    assert!(
        log.contains(&format!("snapshot_seq={}", last / 3))
            && log.contains(&format!("snapshot_seq={}", 2 * last / 3)),
        "{log}"
    );
    // A snapshot altered on disk is discarded, never trusted: the answer is
    // folded from the start and is still the reference's.
    let snaps = gl.data_dir().join("scratch/source-snapshots");
    let mut altered = 0;
    for source in std::fs::read_dir(&snaps).unwrap() {
        for snap in std::fs::read_dir(source.unwrap().path()).unwrap() {
            let record = snap.unwrap().path().join("snapshot.txt");
            let text = std::fs::read_to_string(&record).unwrap();
            let text = text.replace("digest=", "digest=00");
            std::fs::write(&record, text).unwrap();
            altered += 1;
        }
    }
    assert!(altered >= 2, "{altered} snapshots kept");
    let mut reference = Working {
        trust: govledger_testkit::stream::test_trust(),
        ..Default::default()
    };
    fold_in_memory(&mut reference, &stored[..(last - 1) as usize]);
    let got = c
        .get_source(GetSourceRequest {
            source_id: "hr".into(),
            as_of: Some(at_seq(last - 1)),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.source.as_ref(), reference.sources.get(&"hr".to_owned()));
    assert!(gl.log_text().contains("does not hold"), "{}", gl.log_text());
    // A time names the last event stored at or before it.
    let mid = &stored[stored.len() / 2];
    let want_seq = stored
        .iter()
        .filter(|m| m.stored_at_us <= mid.stored_at_us)
        .map(|m| m.seq)
        .max()
        .unwrap();
    let got = c
        .get_source(GetSourceRequest {
            source_id: "hr".into(),
            as_of: Some(AsOf {
                point: Some(as_of::Point::TimeUs(mid.stored_at_us)),
            }),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.as_of.unwrap().seq, want_seq);
    // Before the first event: NotFound, saying when the ledger starts.
    let e = c
        .get_identity(GetIdentityRequest {
            source_id: "hr".into(),
            entity_type: EntityType::User as i32,
            external_id: users[0].clone(),
            as_of: Some(AsOf {
                point: Some(as_of::Point::TimeUs(stored[0].stored_at_us - 1_000_000)),
            }),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::NotFound);
    assert!(e.message().contains("first event was stored"), "{e:?}");
    let e = c
        .get_action(GetActionRequest {
            action_id: actions[0].clone(),
            as_of: Some(at_seq(last + 1_000)),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e:?}");
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
    let nats = NatsServer::start().await;
    let gl = Govledger::serve(&nats.url(), &[]);
    let client = nats.client().await;
    let last = publish_sim(&client, "t", &SimRun::new("hr", 60, 25)).await;
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
    use govledger::audit::checkpoints::{self, CheckpointError};
    use govledger_proto::v1::{CreateCheckpointRequest, ListCheckpointsRequest};
    let nats = NatsServer::start().await;
    let gl = Govledger::serve_with_config(&nats.url(), "[audit]\ncheckpoint_interval_ms = 300\n");
    let client = nats.client().await;
    let last = publish_sim(&client, "t", &SimRun::new("hr", 40, 20)).await;
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
        .list_checkpoints(ListCheckpointsRequest {
            limit: 100,
            ..Default::default()
        })
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
        &on_demand.requested_by,
    );
    assert!(matches!(
        checkpoints::verify(&forged, &pk),
        Err(CheckpointError::OtherKey { .. })
    ));
}

/// The newest source snapshot's sequence in a ledger's data folder.
fn newest_snapshot(gl: &Govledger, source: &str) -> Option<u64> {
    let hex: String = source.bytes().map(|b| format!("{b:02x}")).collect();
    std::fs::read_dir(gl.data_dir().join("scratch/source-snapshots").join(hex))
        .ok()?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u64>().ok())
        .max()
}

/// Waits (at most 20 s) for a snapshot of `source` at or after `seq`.
async fn wait_snapshot(gl: &Govledger, source: &str, seq: u64) -> u64 {
    for _ in 0..200 {
        if let Some(n) = newest_snapshot(gl, source).filter(|n| *n >= seq) {
            return n;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!(
        "no snapshot of {source} at or after {seq}:\n{}",
        gl.log_text()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ledger_keeps_each_source_snapshot_fresh_and_answers_fold_on_from_it() {
    let nats = NatsServer::start().await;
    let scim = govledger_testkit::fault_scim::FaultScim::start(5).await;
    let cfg = format!(
        "[[sources]]\nid = \"hr\"\nbase_url = \"{}\"\n\n[audit]\nsource_snapshot_interval_ms = 1000\n",
        scim.base_url
    );
    let gl = Govledger::serve_with_config(&nats.url(), &cfg);
    gl.sync("hr").await;
    let now = gl.source("hr").await.source.unwrap();
    // The ledger answers the source as of its head on its own, and keeps it.
    let snap = wait_snapshot(&gl, "hr", now.last_seq).await;
    // A question as of that point folds nothing: the snapshot is the answer.
    let got = gl
        .client()
        .await
        .get_source(GetSourceRequest {
            source_id: "hr".into(),
            as_of: Some(AsOf {
                point: Some(as_of::Point::Seq(snap)),
            }),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.source.as_ref(), Some(&now));
    let log = gl.log_text();
    assert!(
        log.contains(&format!("snapshot_seq={snap} events_folded=0")),
        "{log}"
    );
    // More history: the next snapshot folds on from it; both are kept.
    scim.set_active(&scim.user_ids()[0], false);
    gl.sync("hr").await;
    let later = gl.source("hr").await.source.unwrap();
    let next = wait_snapshot(&gl, "hr", later.last_seq).await;
    assert!(next > snap);
    let log = gl.log_text();
    assert!(log.contains(&format!("snapshot_seq={snap} ")), "{log}");
}
