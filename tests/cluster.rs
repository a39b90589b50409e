//! govledger as a cluster: a three-node `nats-server` JetStream cluster on
//! loopback (own ports, routes and stores), an R3 stream, `govledger ingest`
//! and `govledger api` processes; leases raced by two holders; read-your-writes
//! across query nodes; and a sync with actions while one NATS node and one
//! ingest worker are SIGKILLed.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU32, Ordering},
    },
    time::{Duration, Instant},
};

use govledger::{
    audit::checkpoints,
    cluster::lease::{Acquired, Holding, LeaseError, Leases},
};
use govledger_proto::v1::{
    ActionKind, ActionOutcome, CreateCheckpointRequest, GetActionRequest, GetLedgerStatusRequest,
    GetRunRequest, ListRunsRequest, SetProjectorPausedRequest, SubmitActionRequest,
    SubmitActionResponse, TriggerSyncRequest, Verdict,
};
use govledger_stream::contract::Replication;
use govledger_testkit::{
    Govledger, NatsServer,
    crash::audit_stream,
    fault_scim::{FaultScim, Faults, ScimConfig},
    govledger::{action_request, scim_source_toml},
    nats_cluster::NatsCluster,
    stream::read_stream,
};
use tokio_util::sync::CancellationToken;

/// The config of one cluster process `node` on `cluster`, reading `scim`.
fn node_toml(cluster: &NatsCluster, node: &str, scim: &FaultScim) -> String {
    let urls: Vec<String> = cluster.urls().iter().map(|u| format!("{u:?}")).collect();
    format!(
        "[nats]\nurls = [{}]\n\n[stream]\nreplicas = 3\n\n[cluster]\nnode = \"{node}\"\nlease_ttl_ms = 5000\n\n\
         [audit]\ncheckpoint_interval_ms = 0\nsigning_key_file = {:?}\n{}",
        urls.join(", "),
        checkpoint_key(cluster).display().to_string(),
        scim_source_toml(&scim.base_url, "resources = [\"Users\", \"Groups\"]")
    )
}

/// The cluster's one checkpoint signing key (as README "Cluster" says: one
/// key, shared), written before any node starts.
fn checkpoint_key(cluster: &NatsCluster) -> std::path::PathBuf {
    let f = cluster.nodes[0].store.path().join("checkpoint.key");
    if !f.exists() {
        std::fs::write(&f, "42".repeat(32)).unwrap();
    }
    f
}

/// `TriggerSync` on `node`, retried while another run still holds the
/// source; the run id and the sequence of its start.
async fn trigger(node: &Govledger) -> (String, u64) {
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut c = node.client().await;
    loop {
        match c
            .trigger_sync(TriggerSyncRequest {
                source_id: "hr".into(),
                mode: 0,
            })
            .await
        {
            Ok(r) => {
                let r = r.into_inner();
                return (r.run_id, r.seq);
            }
            Err(s) => {
                assert!(
                    Instant::now() < deadline,
                    "TriggerSync never accepted: {s:?}; log:\n{}",
                    node.log_text()
                );
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        }
    }
}

/// Asks `node` for `GetLedgerStatus` with the digest, once it has applied `seq`.
async fn digest_at(node: &Govledger, seq: u64) -> (u64, String) {
    node.wait_applied(seq).await;
    let s = node
        .client()
        .await
        .get_ledger_status(GetLedgerStatusRequest { with_digest: true })
        .await
        .unwrap()
        .into_inner();
    (s.meta.unwrap_or_default().last_applied_seq, s.state_digest)
}

/// `SubmitAction` on `node`: deactivate `user` under idempotency key `key`.
async fn deactivate(node: &Govledger, user: &str, key: &str) -> SubmitActionResponse {
    node.client()
        .await
        .submit_action(SubmitActionRequest {
            source_id: "hr".into(),
            request: Some(action_request(ActionKind::Deactivate, user, "", key, "T-1")),
        })
        .await
        .unwrap_or_else(|s| panic!("SubmitAction {key}: {s:?}"))
        .into_inner()
}

/// A request carrying `govledger-min-seq: seq`.
fn at_least<T>(msg: T, seq: u64) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    r.metadata_mut()
        .insert("govledger-min-seq", seq.to_string().parse().unwrap());
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_holders_racing_for_a_lease_never_hold_it_at_once() {
    let nats = NatsServer::start().await;
    let open = |node: &'static str| {
        let url = nats.url();
        async move {
            let js = async_nats::jetstream::new(async_nats::connect(&url).await.unwrap());
            Arc::new(
                Leases::open(&js, "GOVLEDGER", &Replication::default(), node, 1_000)
                    .await
                    .unwrap(),
            )
        }
    };
    let holders = [open("worker-a").await, open("worker-b").await];
    // Holders inside each key's section now: "sync.hr", "actions.hr".
    let inside = Arc::new([AtomicU32::new(0), AtomicU32::new(0)]);
    let overlaps = Arc::new(AtomicU32::new(0));
    let mut tasks = Vec::new();
    for leases in holders {
        let (inside, overlaps) = (inside.clone(), overlaps.clone());
        tasks.push(tokio::spawn(async move {
            let mut turns = 0u32;
            for round in 0..400u32 {
                let k = (round % 2) as usize;
                let key = ["sync.hr", "actions.hr"][k];
                match leases.try_acquire(key).await.unwrap() {
                    Acquired::Held(lease) => {
                        let h = Holding::start(leases.clone(), lease, CancellationToken::new());
                        if inside[k].fetch_add(1, Ordering::SeqCst) != 0 {
                            overlaps.fetch_add(1, Ordering::SeqCst);
                        }
                        turns += 1;
                        tokio::time::sleep(Duration::from_micros(200 * u64::from(round % 7))).await;
                        inside[k].fetch_sub(1, Ordering::SeqCst);
                        h.release().await;
                    }
                    Acquired::Busy { .. } => tokio::task::yield_now().await,
                }
            }
            turns
        }));
    }
    let mut turns = Vec::new();
    for t in tasks {
        turns.push(t.await.unwrap());
    }
    assert_eq!(
        overlaps.load(Ordering::SeqCst),
        0,
        "two holders inside at once"
    );
    // A race, not a relay: both won turns.
    assert!(turns.iter().all(|t| *t > 10), "turns per holder: {turns:?}");
}

#[tokio::test]
async fn a_dead_holders_lease_is_taken_after_its_ttl_and_it_learns_it_lost() {
    let nats = NatsServer::start().await;
    let js = async_nats::jetstream::new(nats.client().await);
    let r = Replication::default();
    let dead = Leases::open(&js, "GOVLEDGER", &r, "dead", 1_000)
        .await
        .unwrap();
    let next = Leases::open(&js, "GOVLEDGER", &r, "next", 1_000)
        .await
        .unwrap();
    let Acquired::Held(mut old) = dead.try_acquire("sync.hr").await.unwrap() else {
        panic!("a free lease was not taken")
    };
    // The holder stops renewing (SIGKILL): until its TTL ends nobody takes it.
    let Acquired::Busy { holder, until_ms } = next.try_acquire("sync.hr").await.unwrap() else {
        panic!("a held lease was taken")
    };
    assert!(holder.starts_with("dead/"), "{holder}");
    let taken_at = loop {
        if let Acquired::Held(_) = next.try_acquire("sync.hr").await.unwrap() {
            break chrono::Utc::now().timestamp_millis();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        taken_at >= until_ms,
        "taken at {taken_at}, held until {until_ms}"
    );
    // The old holder, back, cannot renew: it was taken over.
    match dead.renew(&mut old).await {
        Err(LeaseError::Lost { by, .. }) => assert!(by.starts_with("next/"), "{by}"),
        other => panic!("renewal of a taken lease: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_write_on_one_query_node_is_read_on_the_other_or_refused_with_the_lag() {
    let cluster = NatsCluster::start(3).await;
    let scim = FaultScim::start_with(ScimConfig {
        users: 40,
        groups: 4,
        ..Default::default()
    })
    .await;
    let ingest = Govledger::role_with_config("ingest", &node_toml(&cluster, "ingest-1", &scim));
    let a = Govledger::role_with_config("api", &node_toml(&cluster, "api-a", &scim));
    let b = Govledger::role_with_config("api", &node_toml(&cluster, "api-b", &scim));

    // A trigger on an api node runs on the ingest process; B reads the run
    // with the sequence A answered.
    let (run_id, seq) = trigger(&a).await;
    assert!(seq > 0, "TriggerSync answered no sequence");
    let run = b
        .client()
        .await
        .get_run(at_least(
            GetRunRequest {
                run_id: run_id.clone(),
            },
            seq,
        ))
        .await
        .unwrap_or_else(|s| panic!("run {run_id} not readable on B at {seq}: {s:?}"))
        .into_inner();
    assert_eq!(run.run.unwrap_or_default().run_id, run_id);
    let done = b.wait_decided(&run_id, Duration::from_secs(60)).await;
    assert_eq!(done.verdict, Verdict::Complete as i32, "{:?}", done.reasons);
    // The CLI's `sync` on an api node: the trigger travels to the ingest
    // process, and the run is followed at its start's sequence.
    let (k, v) = b.token_env();
    let (status, out, err) = govledger_testkit::govledger::run_govledger_out(
        &["sync", "hr", "--grpc-addr", &b.addr],
        &[(k, v.as_str())],
    );
    assert!(
        status.success(),
        "govledger sync on an api node: {out}{err}"
    );
    assert!(out.contains("COMPLETE"), "{out}");

    // An action submitted on A is found on B at the sequence A answered.
    let submitted = deactivate(&a, &scim.user_ids()[0], "ryw-1").await;
    assert!(submitted.created && submitted.seq > 0, "{submitted:?}");
    let found = b
        .client()
        .await
        .get_action(at_least(
            GetActionRequest {
                action_id: submitted.action_id.clone(),
                as_of: None,
            },
            submitted.seq,
        ))
        .await
        .unwrap_or_else(|s| panic!("action not readable on B at its sequence: {s:?}"))
        .into_inner();
    assert_eq!(
        found.action.unwrap_or_default().action_id,
        submitted.action_id
    );
    // The ingest process executes it and reads it back.
    let concluded = b.wait_action(&submitted.action_id).await;
    assert_eq!(
        concluded.outcome,
        ActionOutcome::Confirmed as i32,
        "{concluded:?}"
    );
    assert_eq!(
        scim.user_state(&scim.user_ids()[0]).map(|s| s.0),
        Some(false)
    );

    // Checkpoints made on either node form one chain under the shared key:
    // each names the last one in the audit stream, whoever made it.
    for node in [&a, &b, &a, &b] {
        node.client()
            .await
            .create_checkpoint(CreateCheckpointRequest {})
            .await
            .unwrap();
    }
    let cps = a.checkpoints().await;
    assert_eq!(cps.len(), 4);
    let key = cps[0].public_key.clone();
    checkpoints::verify_chain(&cps, &key).unwrap_or_else(|e| panic!("{e}"));

    // B paused (its projection behind): a read at a later sequence is
    // refused with the lag, never answered stale.
    b.client()
        .await
        .set_projector_paused(SetProjectorPausedRequest {
            paused: true,
            reason: "test: a node behind".into(),
        })
        .await
        .unwrap();
    let later = deactivate(&a, &scim.user_ids()[1], "ryw-2").await;
    let refused = b
        .client()
        .await
        .get_action(at_least(
            GetActionRequest {
                action_id: later.action_id.clone(),
                as_of: None,
            },
            later.seq,
        ))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unavailable, "{refused:?}");
    assert!(
        refused
            .message()
            .contains(&format!("asked for {}", later.seq))
            && refused.message().contains("events behind"),
        "{}",
        refused.message()
    );
    let bad = b
        .client()
        .await
        .get_action({
            let mut r = tonic::Request::new(GetActionRequest {
                action_id: later.action_id.clone(),
                as_of: None,
            });
            r.metadata_mut()
                .insert("govledger-min-seq", "soon".parse().unwrap());
            r
        })
        .await
        .unwrap_err();
    assert_eq!(bad.code(), tonic::Code::InvalidArgument, "{bad:?}");
    drop(ingest);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_sync_and_actions_survive_a_nats_node_and_an_ingest_worker_killed_mid_run() {
    const USERS: usize = 1_500;
    const GROUPS: usize = 30;
    const ACTIONS: usize = 24;
    let mut cluster = NatsCluster::start(3).await;
    let scim = FaultScim::start_with(ScimConfig {
        users: USERS,
        groups: GROUPS,
        ..Default::default()
    })
    .await;
    let mut ingest = [
        Some(Govledger::role_with_config(
            "ingest",
            &node_toml(&cluster, "ingest-1", &scim),
        )),
        Some(Govledger::role_with_config(
            "ingest",
            &node_toml(&cluster, "ingest-2", &scim),
        )),
    ];
    let a = Govledger::role_with_config("api", &node_toml(&cluster, "api-a", &scim));
    let b = Govledger::role_with_config("api", &node_toml(&cluster, "api-b", &scim));

    // A baseline: the identities the actions name are known.
    let (first, _) = trigger(&a).await;
    let r = a.wait_decided(&first, Duration::from_secs(120)).await;
    assert_eq!(r.verdict, Verdict::Complete as i32, "{:?}", r.reasons);

    // A slow second run, and a batch of actions, then the kills mid-run.
    scim.set_faults(Faults {
        page_latency_ms: 150,
        ..Default::default()
    });
    let (second, _) = trigger(&a).await;
    let users = scim.user_ids();
    let mut actions = Vec::new();
    for (i, u) in users.iter().take(ACTIONS).enumerate() {
        let node = if i % 2 == 0 { &a } else { &b };
        let r = deactivate(node, u, &format!("chaos-{i}")).await;
        actions.push((r.action_id, u.clone()));
    }
    // Mid-run: a few pages stored, most still to come.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let r = a.run(&second).await;
        if r.run.is_some_and(|r| r.pages_fetched >= 3) {
            break;
        }
        assert!(Instant::now() < deadline, "the second run never got going");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The ingest process running the sync dies, and so does a NATS node.
    let holder = sync_lease_holder(&cluster).await;
    let victim = if holder.starts_with("ingest-1/") {
        0
    } else {
        1
    };
    if let Some(mut g) = ingest[victim].take() {
        g.kill9();
    }
    cluster.nodes[0].kill9();

    // The survivor decides the cut run (never COMPLETE unless it read all),
    // concludes every action, and a new run is COMPLETE.
    let cut = b.wait_decided(&second, Duration::from_secs(120)).await;
    scim.set_faults(Faults::default());
    let mut outcomes = Vec::new();
    for (id, user) in &actions {
        let r = b.wait_action(id).await;
        let in_effect = scim.user_state(user).is_some_and(|s| !s.0);
        if r.outcome == ActionOutcome::Confirmed as i32 {
            assert!(in_effect, "action {id} CONFIRMED but {user} is active");
        }
        outcomes.push(r.outcome);
    }
    let (third, _) = trigger(&b).await;
    let last = b.wait_decided(&third, Duration::from_secs(120)).await;
    assert_eq!(last.verdict, Verdict::Complete as i32, "{:?}", last.reasons);
    cluster.nodes[0].restart().await;
    cluster.wait_ready().await.unwrap();

    // Every event stored once; each COMPLETE run listed every user.
    let client = cluster.client().await;
    let msgs = read_stream(&client).await;
    let audit = audit_stream(&msgs);
    audit.assert_clean();
    for (run_id, verdict) in [
        (&first, r.verdict),
        (&second, cut.verdict),
        (&third, last.verdict),
    ] {
        if verdict == Verdict::Complete as i32 {
            let seen = &audit.runs[run_id.as_str()];
            assert_eq!(
                seen.users.len(),
                USERS,
                "run {run_id} COMPLETE with users missing"
            );
        }
    }
    // The run was cut (its worker never finished it) and is not COMPLETE.
    let seen = &audit.runs[second.as_str()];
    assert!(seen.cut, "the killed worker's run has its own finish");
    assert!(seen.users.len() < USERS, "the cut run listed everything");
    assert_ne!(
        cut.verdict,
        Verdict::Complete as i32,
        "a cut run reported COMPLETE"
    );
    // Both query nodes converge on the fold of the stream.
    let tip = msgs.last().map(|m| m.seq).unwrap_or(0);
    let (seq_a, digest_a) = digest_at(&a, tip).await;
    let (seq_b, digest_b) = digest_at(&b, tip).await;
    assert_eq!((seq_a, &digest_a), (seq_b, &digest_b), "query nodes differ");
    let rebuilt = rebuild_digest(&cluster, &a).await;
    assert_eq!(rebuilt, digest_a, "a rebuild differs from the query nodes");
    let runs = b
        .client()
        .await
        .list_runs(ListRunsRequest {
            source_id: "hr".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    eprintln!(
        "cluster chaos: {} events, {} runs ({} listed), cut run {:?}, action outcomes {:?}",
        msgs.len(),
        audit.runs.len(),
        runs.runs.len(),
        Verdict::try_from(cut.verdict),
        outcomes
    );
}

/// The holder named in the `sync.hr` lease now.
async fn sync_lease_holder(cluster: &NatsCluster) -> String {
    let js = async_nats::jetstream::new(cluster.client().await);
    let leases = Leases::open(&js, "GOVLEDGER", &Replication::default(), "probe", 1_000)
        .await
        .unwrap();
    match leases.read("sync.hr").await.unwrap() {
        Some((Some(v), _)) => v.holder,
        other => panic!("no sync lease while a run is under way: {other:?}"),
    }
}

/// `govledger rebuild` against query node `node`: the digest of the stream
/// folded again from sequence 1 (it must print MATCH).
async fn rebuild_digest(cluster: &NatsCluster, node: &Govledger) -> String {
    let (status, out) = node.rebuild(&cluster.urls().join(","));
    assert!(status.success(), "{out}");
    assert!(out.contains("MATCH"), "{out}");
    node.client()
        .await
        .get_ledger_status(GetLedgerStatusRequest { with_digest: true })
        .await
        .unwrap()
        .into_inner()
        .state_digest
}

#[tokio::test]
async fn a_stream_with_fewer_replicas_than_configured_is_refused() {
    let cluster = NatsCluster::start(3).await;
    let js = async_nats::jetstream::new(cluster.client().await);
    let one = govledger_stream::StreamSpec::default();
    govledger_stream::ensure_stream(&js, &one).await.unwrap();
    let three = govledger_stream::StreamSpec::default().replicated(&Replication {
        replicas: 3,
        placement_tags: vec![],
    });
    let e = govledger_stream::ensure_stream(&js, &three)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("replicas is 1") && e.contains("stream.replicas"),
        "{e}"
    );
    // Created with three, it is kept by three servers.
    let spec = govledger_stream::StreamSpec {
        name: "GOVLEDGER_R3".into(),
        subjects: vec!["r3.>".into()],
        ..Default::default()
    }
    .replicated(&Replication {
        replicas: 3,
        placement_tags: vec![],
    });
    let info = govledger_stream::ensure_stream(&js, &spec).await.unwrap();
    assert_eq!(info.config.num_replicas, 3);
}

#[test]
fn a_role_alone_needs_a_cluster_config_and_says_which_keys() {
    let dir = tempfile::tempdir().unwrap();
    for role in ["ingest", "api"] {
        let (status, err) = govledger_testkit::run_govledger(
            &[
                role,
                "--grpc-addr",
                "127.0.0.1:0",
                "--data-dir",
                &dir.path().display().to_string(),
            ],
            &[],
        );
        assert!(!status.success(), "{role} started without [cluster]");
        assert!(
            err.contains("cluster.node") && err.contains("nats.urls"),
            "{role}: {err}"
        );
    }
}
