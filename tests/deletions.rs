//! The deletion guard (R8) end to end: it judges only the entity types a run
//! read, and a SUSPECT run has a way forward — `AcceptDeletions` records who
//! accepted which drop, and the run then counts as COMPLETE with the
//! acceptance named in every answer. The source is the fault-injecting SCIM
//! server (testkit/src/fault_scim/).

use govledger_proto::v1::{
    AcceptDeletionsRequest, EntityType, GetIdentityRequest, PresenceStatus, ReasonCode, Verdict,
    alert,
};
use govledger_testkit::{
    Govledger, NatsServer,
    fault_scim::{FaultScim, Faults, PageFault, ScimConfig},
    govledger::scim_source_toml,
    runs::{assert_verdict, codes},
};

/// The source `hr`, with runs abandoned only after ten minutes.
fn config(base_url: &str, extra: &str) -> String {
    let api = "\n[api]\nabandon_after_ms = 600000\n";
    // alice accepts with her own operator token; the harness keeps the local
    // admin token for its own calls.
    let auth = format!(
        "\n[auth]\nlocal_admin_token = true\n[[auth.tokens]]\nprincipal = \"alice\"\nsha256 = \"{}\"\nroles = [\"operator\"]\n",
        govledger::auth::identify::token_sha256_hex(ALICE_TOKEN)
    );
    format!("{api}{auth}{}", scim_source_toml(base_url, extra))
}

/// alice's bearer token (its SHA-256 is in the config).
const ALICE_TOKEN: &str = "glt_alice-accepts-deletions";

/// A file holding alice's token, for the CLI's --token-file.
fn alice_token_file() -> tempfile::NamedTempFile {
    let f = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(f.path(), ALICE_TOKEN).unwrap();
    f
}

/// Restarts `gl` on its data folder with the source's extra lines `extra`.
fn restart_with(gl: &mut Govledger, nats_url: &str, base_url: &str, extra: &str) -> Govledger {
    gl.stop();
    let data = gl.take_data();
    let cfg = data.path().join("govledger.toml");
    std::fs::write(&cfg, config(base_url, extra)).unwrap();
    let cfg = cfg.to_str().unwrap().to_owned();
    Govledger::serve_in(data, nats_url, &["--config", &cfg])
}

async fn presence(gl: &Govledger, entity_type: EntityType, id: &str) -> (PresenceStatus, String) {
    let r = gl
        .client()
        .await
        .get_identity(GetIdentityRequest {
            as_of: None,
            source_id: "hr".into(),
            entity_type: entity_type as i32,
            external_id: id.to_owned(),
        })
        .await
        .unwrap()
        .into_inner();
    (
        PresenceStatus::try_from(r.presence).unwrap(),
        r.presence_reason,
    )
}

/// A run that did not read groups (the source's `resources` went from
/// Users+Groups to Users only) is not judged on groups — nor on the
/// membership references only groups carried — and is no evidence against
/// them; users are still judged. Then reading groups again and finding none
/// still trips the guard, against the last complete run that read groups.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_guard_judges_only_the_entity_types_a_run_read() {
    let nats = NatsServer::start().await;
    let scim = FaultScim::start_with(ScimConfig {
        users: 20,
        groups: 4,
        user_groups: true,
        ..Default::default()
    })
    .await;
    let both = "resources = [\"Users\", \"Groups\"]\ndeletion_threshold_pct = 20";
    let users_only = "resources = [\"Users\"]\ndeletion_threshold_pct = 20";
    let mut gl = Govledger::serve_with_config(&nats.url(), &config(&scim.base_url, both));
    let r = gl.sync("hr").await;
    assert_verdict(&r, Verdict::Complete);
    assert_eq!(r.run.unwrap().records_unique, 24);

    let mut gl = restart_with(&mut gl, &nats.url(), &scim.base_url, users_only);
    let r = gl.sync("hr").await;
    // Old code: SUSPECT "groups: 4 records disappeared … (4 → 0, −100.0%)".
    assert_verdict(&r, Verdict::Complete);
    assert_eq!(r.run.unwrap().records_unique, 20);
    for gid in scim.group_ids() {
        let (p, why) = presence(&gl, EntityType::Group, &gid).await;
        assert_eq!(p, PresenceStatus::Unknown, "group {gid}: {why}");
    }
    // Users are still judged in a run that read only users.
    for id in scim.user_ids().into_iter().take(5) {
        scim.delete_user(&id);
    }
    let r = gl.sync("hr").await;
    assert_verdict(&r, Verdict::Suspect);
    assert!(codes(&r).iter().all(|c| *c == ReasonCode::CountDrop));
    assert!(
        r.reasons[0]
            .message
            .starts_with("users: 5 records disappeared since the last complete run (20 → 15"),
        "{:?}",
        r.reasons
    );
    for id in scim.user_ids() {
        scim.delete_user(&id);
    }
    for _ in 0..3 {
        scim.add_user();
    }
    let mut gl = restart_with(&mut gl, &nats.url(), &scim.base_url, both);
    // Users back to 3 and every group gone: a run that read groups and found
    // none is judged against the last complete run that read groups.
    for gid in scim.group_ids() {
        scim.delete_group(&gid);
    }
    let r = gl.sync("hr").await;
    assert_verdict(&r, Verdict::Suspect);
    let msgs: Vec<&str> = r.reasons.iter().map(|x| x.message.as_str()).collect();
    assert!(
        msgs.iter()
            .any(|m| m.starts_with("groups: 4 records disappeared")
                && m.contains("(4 → 0, −100.0%)")),
        "{msgs:?}"
    );
    gl.stop();
}

/// Runs the real binary with `args`; (exit code, stdout, stderr).
fn cli(args: &[&str]) -> (Option<i32>, String, String) {
    let o = std::process::Command::new(govledger_testkit::govledger_bin())
        .args(args)
        .env("NO_COLOR", "1")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    (
        o.status.code(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn accept_request(run_id: &str, by: &str, reason: &str, ticket: &str) -> AcceptDeletionsRequest {
    AcceptDeletionsRequest {
        run_id: run_id.into(),
        accepted_by: by.into(),
        reason: reason.into(),
        ticket: ticket.into(),
    }
}

const REASON: &str = "HR reorganisation retired every group";
const TICKET: &str = "CHG-4711";

/// A source that lost every group is SUSPECT; `accept-deletions` makes the
/// run COMPLETE with the acceptance named in `run`, `runs`, `status`, the
/// alert, GetSource, readiness, the removed groups' presence and the evidence
/// bundle; the next run is judged against the accepted run's counts; bad
/// requests get the right codes; a rebuild gives the same state.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accepting_a_suspect_runs_drops_makes_it_complete_with_the_acceptance_named() {
    let nats = NatsServer::start().await;
    let scim = FaultScim::start_with(ScimConfig {
        users: 30,
        groups: 5,
        ..Default::default()
    })
    .await;
    let extra = "resources = [\"Users\", \"Groups\"]\ndeletion_threshold_pct = 20";
    let gl = Govledger::serve_with_config(&nats.url(), &config(&scim.base_url, extra));
    let first = gl.sync("hr").await;
    assert_verdict(&first, Verdict::Complete);
    let first_id = first.run.unwrap().run_id;
    let groups = scim.group_ids();
    for gid in &groups {
        scim.delete_group(gid);
    }
    let r = gl.sync("hr").await;
    assert_verdict(&r, Verdict::Suspect);
    assert_eq!(
        codes(&r),
        vec![ReasonCode::CountDrop, ReasonCode::CountDrop]
    );
    let drops: Vec<String> = r.reasons.iter().map(|x| x.message.clone()).collect();
    let run_id = r.run.unwrap().run_id;
    let (code, out, _) = cli(&[
        "run",
        &run_id,
        "--grpc-addr",
        &gl.addr,
        "--token-file",
        &gl.token_path(),
    ]);
    assert_eq!(code, Some(0));
    assert!(
        out.contains(&format!("govledger accept-deletions {run_id}")),
        "{out}"
    );

    // Bad requests, each with its code and a message naming what is wrong.
    let mut c = gl.client().await;
    let refused =
        async |c: &mut govledger_proto::v1::ledger_client::LedgerClient<_>,
               req: AcceptDeletionsRequest| { c.accept_deletions(req).await.unwrap_err() };
    let e = refused(
        &mut c,
        accept_request("no-such-run", "alice", REASON, TICKET),
    )
    .await;
    assert_eq!(e.code(), tonic::Code::NotFound, "{e:?}");
    let e = refused(&mut c, accept_request(&run_id, "alice", "", TICKET)).await;
    assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e:?}");
    assert!(e.message().starts_with("reason is required"), "{e:?}");
    let e = refused(&mut c, accept_request(&run_id, "alice", REASON, " ")).await;
    assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e:?}");
    assert!(e.message().starts_with("ticket is required"), "{e:?}");
    let e = refused(&mut c, accept_request(&first_id, "alice", REASON, TICKET)).await;
    assert_eq!(e.code(), tonic::Code::FailedPrecondition, "{e:?}");
    assert_eq!(
        e.message(),
        format!("run {first_id} is COMPLETE: it has no count drop to accept")
    );
    // The CLI needs a reason and a ticket (a usage error otherwise).
    let (code, _, err) = cli(&["accept-deletions", &run_id, "--ticket", TICKET]);
    assert_eq!(code, Some(2), "{err}");

    // Accept with the CLI (alice's token: the ledger records her), watching the alerts.
    let alice = alice_token_file();
    let mut alerts = gl.watch_alerts().await;
    let (code, out, err) = cli(&[
        "accept-deletions",
        &run_id,
        "--reason",
        REASON,
        "--ticket",
        TICKET,
        "--grpc-addr",
        &gl.addr,
        "--token-file",
        alice.path().to_str().unwrap(),
    ]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(
        out.contains(&format!(
            "deletions accepted of run {run_id}: groups 5 → 0, memberships 15 → 0"
        )),
        "{out}"
    );
    assert!(out.contains("verdict: COMPLETE"), "{out}");
    let alert = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        loop {
            let a = alerts.message().await.unwrap().unwrap();
            if a.kind == alert::Kind::DeletionsAccepted as i32 {
                return a;
            }
        }
    })
    .await
    .expect("a DELETIONS_ACCEPTED alert");
    assert_eq!(
        (alert.run_id.as_str(), alert.verdict),
        (run_id.as_str(), Verdict::Complete as i32)
    );
    assert!(alert.message.contains("accepted by alice"), "{alert:?}");

    // GetRun: COMPLETE, the drops kept, each naming the acceptance.
    let r = gl.run(&run_id).await;
    assert_verdict(&r, Verdict::Complete);
    assert_eq!(
        codes(&r),
        vec![ReasonCode::DeletionsAccepted, ReasonCode::DeletionsAccepted]
    );
    for (reason, drop) in r.reasons.iter().zip(&drops) {
        let what = drop.split(": confirm the deletions").next().unwrap();
        assert!(
            reason.message.starts_with(what)
                && reason.message.contains("deletions accepted by alice at ")
                && reason
                    .message
                    .contains(&format!("under ticket {TICKET}: \"{REASON}\"")),
            "{reason:?}"
        );
    }
    let acceptance = r.run.unwrap().acceptance.unwrap();
    let accepted = acceptance.accepted.clone().unwrap();
    assert_eq!(
        (accepted.accepted_by.as_str(), accepted.ticket.as_str()),
        ("alice", TICKET)
    );
    assert_eq!(
        accepted
            .drops
            .iter()
            .map(|d| (d.entity_type, d.baseline, d.now))
            .collect::<Vec<_>>(),
        vec![
            (EntityType::Group as i32, 5, 0),
            (EntityType::Membership as i32, 15, 0)
        ]
    );

    // Accepting again is idempotent: the first acceptance, unchanged.
    let again = c
        .accept_deletions(accept_request(&run_id, "bob", "another reason", "CHG-1"))
        .await
        .unwrap()
        .into_inner();
    assert!(!again.created);
    assert_eq!(again.seq, acceptance.seq);
    assert_eq!(again.acceptance.as_ref(), Some(&acceptance));

    // Every answer shows it.
    let (_, out, _) = cli(&[
        "run",
        &run_id,
        "--grpc-addr",
        &gl.addr,
        "--token-file",
        &gl.token_path(),
    ]);
    assert!(
        out.contains("[DELETIONS_ACCEPTED] groups: 5 records disappeared")
            && out.contains("deletions accepted: accepted by alice at "),
        "{out}"
    );
    let (_, out, _) = cli(&[
        "runs",
        "hr",
        "--grpc-addr",
        &gl.addr,
        "--token-file",
        &gl.token_path(),
    ]);
    assert!(
        out.lines()
            .any(|l| l.starts_with(&run_id) && l.contains("COMPLETE (deletions accepted)")),
        "{out}"
    );
    let (_, out, _) = cli(&[
        "status",
        "--grpc-addr",
        &gl.addr,
        "--token-file",
        &gl.token_path(),
    ]);
    assert!(out.contains("COMPLETE (deletions accepted)"), "{out}");
    let src = gl.source("hr").await.source.unwrap();
    assert_eq!(src.last_complete_run_id, run_id);
    assert_eq!(src.last_complete_full_run_id, run_id);
    assert_eq!(src.deletions_accepted_total, 1);
    assert_eq!(src.last_acceptance.as_ref(), Some(&acceptance));
    let (code, out, _) = cli(&[
        "readiness",
        "hr",
        "--grpc-addr",
        &gl.addr,
        "--token-file",
        &gl.token_path(),
    ]);
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains(&format!(
            "note: hr's last run {run_id} is COMPLETE because its deletions were accepted by alice"
        )),
        "{out}"
    );
    // The accepted run is evidence of absence: the groups are removed.
    for gid in &groups {
        let (p, why) = presence(&gl, EntityType::Group, gid).await;
        assert_eq!(p, PresenceStatus::RemovedAtSource, "group {gid}: {why}");
        assert!(
            why.starts_with(&format!(
                "not observed by complete full run {run_id} (complete because its deletions \
                 were accepted by alice under ticket {TICKET}: \"{REASON}\")"
            )),
            "{why}"
        );
    }

    // The evidence bundle of the source holds the acceptance event, and its
    // state the acceptance's reason; it verifies offline.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hr.json");
    let (code, out, err) = cli(&[
        "export",
        "--grpc-addr",
        &gl.addr,
        "--token-file",
        &gl.token_path(),
        "--source",
        "hr",
        "--out",
        path.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(0), "{out}{err}");
    let bundle: govledger::audit::evidence::Bundle =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    assert!(
        bundle
            .events
            .iter()
            .any(|e| e.subject == "govledger.v1.hr.read.deletions_accepted"
                && e.event.to_string().contains(REASON)),
        "no acceptance event in the bundle"
    );
    assert!(bundle.state.readable.to_string().contains(REASON));
    let key = gl.ledger_status().await.checkpoint_public_key;
    let (code, out, err) = cli(&[
        "verify-bundle",
        path.to_str().unwrap(),
        "--public-key",
        &key,
    ]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("VERIFIED"), "{out}");

    // The next run is judged against the accepted run's counts: no groups, no drop.
    let next = gl.sync("hr").await;
    assert_verdict(&next, Verdict::Complete);
    assert!(next.reasons.is_empty(), "{:?}", next.reasons);
    let baseline = next.run.unwrap().previous_complete_entities;
    assert!(
        baseline
            .iter()
            .any(|e| e.entity_type == EntityType::Group as i32 && e.unique == 0),
        "{baseline:?}"
    );

    // A rebuild from the stream gives the same state, byte for byte.
    // With serve's data folder: the rebuild trusts the same producer key.
    let data_dir = gl.data_dir().display().to_string();
    let (code, out, err) = cli(&[
        "rebuild",
        "--nats-url",
        &nats.url(),
        "--grpc-addr",
        &gl.addr,
        "--token-file",
        &gl.token_path(),
        "--data-dir",
        &data_dir,
    ]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(
        (out.clone() + &err)
            .contains("MATCH: the live projection is exactly the fold of the stream"),
        "{out}{err}"
    );
}

/// Only a run SUSPECT for count drops alone can be accepted: a run SUSPECT
/// because its declared total changed is refused with FAILED_PRECONDITION,
/// and so is an INCOMPLETE one, each saying what it is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_not_suspect_for_count_drops_alone_are_refused() {
    let nats = NatsServer::start().await;
    let scim = FaultScim::start_with(ScimConfig {
        users: 250,
        ..Default::default()
    })
    .await;
    let gl = Govledger::serve_with_config(
        &nats.url(),
        &config(&scim.base_url, "deletion_threshold_pct = 20"),
    );
    assert_verdict(&gl.sync("hr").await, Verdict::Complete);
    scim.set_faults(Faults {
        fail: vec![PageFault {
            start_index: 101,
            status: 503,
            times: u32::MAX,
        }],
        ..Default::default()
    });
    let r = gl.sync("hr").await;
    assert_verdict(&r, Verdict::Incomplete);
    let run_id = r.run.unwrap().run_id;
    let e = gl
        .client()
        .await
        .accept_deletions(accept_request(&run_id, "alice", REASON, TICKET))
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::FailedPrecondition, "{e:?}");
    assert!(
        e.message()
            .starts_with(&format!("run {run_id} is INCOMPLETE, not SUSPECT ("))
            && e.message()
                .contains("an acceptance covers count drops (COUNT_DROP) only"),
        "{e:?}"
    );
    let alice = alice_token_file();
    let (code, _, err) = cli(&[
        "accept-deletions",
        &run_id,
        "--reason",
        REASON,
        "--ticket",
        TICKET,
        "--grpc-addr",
        &gl.addr,
        "--token-file",
        alice.path().to_str().unwrap(),
    ]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("not SUSPECT"), "{err}");
}
