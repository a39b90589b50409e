//! The write path end to end: lifecycle actions submitted over gRPC, performed by
//! govledger's executor against a SCIM target, and proven by reading the target
//! back. The fault-injecting server drives W1–W6 on purpose.

use std::time::{Duration, Instant};

use govledger_proto::v1::{
    ActionKind, ActionOutcome, ActionRequested, ActionStep, AsOf, CheckReadinessRequest,
    GetActionRequest, GetActionResponse, ReportExternalAttemptRequest, SubmitActionRequest, alert,
    as_of,
};
use govledger_testkit::{
    Govledger, NatsServer,
    fault_scim::{FaultScim, Faults, ScimConfig, WriteFault},
    govledger::{action_request, scim_source_toml, serve_fault_scim},
    runs::{assert_outcome, outcome},
};
use tonic::Code;

/// The source `hr`, reading Users and Groups.
fn config(base_url: &str, extra: &str) -> String {
    let resources = "resources = [\"Users\", \"Groups\"]";
    scim_source_toml(base_url, &format!("{resources}\n{extra}"))
}

fn request(kind: ActionKind, user: &str, key: &str) -> ActionRequested {
    action_request(kind, user, "", key, "HR-1")
}

/// Submits a one-step action and waits until the ledger concludes it.
async fn act(gl: &Govledger, kind: ActionKind, user: &str, key: &str) -> GetActionResponse {
    gl.wait_action(&gl.submit_action("hr", request(kind, user, key)).await)
        .await
}

fn user(scim: &FaultScim, i: usize) -> String {
    scim.user_ids()[i].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deactivate_delete_and_memberships_are_confirmed_by_read_back() {
    let (_nats, scim, gl) = serve_fault_scim(30, 3, "").await;
    let u1 = user(&scim, 1);
    let r = act(&gl, ActionKind::Deactivate, &u1, "k1").await;
    assert_outcome(&r, ActionOutcome::Confirmed);
    assert!(
        r.outcome_detail.contains("active=false"),
        "{}",
        r.outcome_detail
    );
    let a = r.action.unwrap();
    assert_eq!((a.attempts, a.verified_steps.clone()), (1, vec![1]));
    assert_eq!(scim.user_state(&u1).map(|s| s.0), Some(false));

    let u2 = user(&scim, 2);
    let r = act(&gl, ActionKind::Delete, &u2, "k2").await;
    assert_outcome(&r, ActionOutcome::Confirmed);
    assert!(!scim.user_exists(&u2));

    let g = scim.group_ids()[0].clone();
    let member = scim.group_members(&g)[0].clone();
    let mut rm = request(ActionKind::RemoveMembership, &member, "k3");
    rm.group_external_id = g.clone();
    let r = gl.wait_action(&gl.submit_action("hr", rm).await).await;
    assert_outcome(&r, ActionOutcome::Confirmed);
    assert!(!scim.group_members(&g).contains(&member));

    let mut add = request(ActionKind::AddMembership, &member, "k4");
    add.group_external_id = g.clone();
    let r = gl.wait_action(&gl.submit_action("hr", add).await).await;
    assert_outcome(&r, ActionOutcome::Confirmed);
    assert!(scim.group_members(&g).contains(&member));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn w1_success_answer_without_effect_is_unconfirmed() {
    let (_nats, scim, gl) = serve_fault_scim(30, 3, "").await;
    scim.set_faults(Faults {
        write_noop: true,
        ..Default::default()
    });
    let u = user(&scim, 3);
    let r = act(&gl, ActionKind::Deactivate, &u, "w1").await;
    assert_outcome(&r, ActionOutcome::Unconfirmed);
    assert!(
        r.outcome_detail.contains("read-back shows no change"),
        "{}",
        r.outcome_detail
    );
    // The readiness gate blocks on it.
    let ready = gl
        .client()
        .await
        .check_readiness(CheckReadinessRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(!ready.ready);
    assert!(
        ready
            .blockers
            .iter()
            .any(|b| b.code == "ACTION_UNCONFIRMED"),
        "{:?}",
        ready.blockers
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn w2_503_then_success_is_confirmed_after_a_retry_with_both_attempts_recorded() {
    let (_nats, scim, gl) = serve_fault_scim(30, 3, "").await;
    let u = user(&scim, 4);
    scim.set_faults(Faults {
        write_fail: vec![WriteFault {
            method: "PATCH".into(),
            id: u.clone(),
            status: 503,
            times: 1,
        }],
        ..Default::default()
    });
    let r = act(&gl, ActionKind::Deactivate, &u, "w2").await;
    assert_outcome(&r, ActionOutcome::Confirmed);
    assert_eq!(r.action.unwrap().attempts, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn w2_timeout_where_the_write_landed_is_confirmed_without_a_second_write() {
    let (_nats, scim, gl) = serve_fault_scim(30, 3, "timeout_ms = 300").await;
    let u = user(&scim, 5);
    scim.set_faults(Faults {
        write_applied_then_slow: Some(1_500),
        ..Default::default()
    });
    let r = act(&gl, ActionKind::Deactivate, &u, "w2t").await;
    assert_outcome(&r, ActionOutcome::Confirmed);
    assert_eq!(r.action.unwrap().attempts, 1, "retried blindly");
    let writes = scim
        .write_requests()
        .into_iter()
        .filter(|w| w.path_and_query.contains(&u))
        .count();
    assert_eq!(writes, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn w3_target_404_is_confirmed_already_absent() {
    let (_nats, scim, gl) = serve_fault_scim(30, 3, "").await;
    scim.set_faults(Faults {
        write_not_found: true,
        ..Default::default()
    });
    let u = user(&scim, 6);
    let r = act(&gl, ActionKind::Deactivate, &u, "w3").await;
    assert_outcome(&r, ActionOutcome::Confirmed);
    assert!(r.outcome_detail.contains("absent"), "{}", r.outcome_detail);
    assert!(r.action.unwrap().target_absent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn w4_reenabled_after_confirmation_is_drifted_on_the_next_sync() {
    let (_nats, scim, gl) = serve_fault_scim(30, 3, "").await;
    let mut watch = gl.watch_alerts().await;
    let u = user(&scim, 7);
    let id = gl
        .submit_action("hr", request(ActionKind::Deactivate, &u, "w4"))
        .await;
    assert_eq!(
        outcome(&gl.wait_action(&id).await),
        ActionOutcome::Confirmed
    );
    scim.set_active(&u, true);
    gl.sync("hr").await;
    let r = gl.wait_action(&id).await;
    assert_outcome(&r, ActionOutcome::Drifted);
    assert!(
        r.outcome_detail.contains("active again"),
        "{}",
        r.outcome_detail
    );
    // Its steps say DRIFTED too, not the CONFIRMED they concluded with.
    let steps = &r.action.as_ref().unwrap().steps;
    assert!(!steps.is_empty());
    for s in steps {
        assert_eq!(
            ActionOutcome::try_from(s.outcome),
            Ok(ActionOutcome::Drifted),
            "{s:?}"
        );
        assert!(s.detail.ends_with("; since undone"), "{s:?}");
    }
    // The same as of now (the point-in-time view).
    let now_us = chrono::Utc::now().timestamp_micros();
    let past = gl
        .client()
        .await
        .get_action(GetActionRequest {
            action_id: id.clone(),
            as_of: Some(AsOf {
                point: Some(as_of::Point::TimeUs(now_us)),
            }),
        })
        .await
        .unwrap()
        .into_inner();
    assert_outcome(&past, ActionOutcome::Drifted);
    for s in &past.action.unwrap().steps {
        assert_eq!(s.outcome, ActionOutcome::Drifted as i32, "{s:?}");
    }
    // A drifted action blocks readiness again (the blocking-action index).
    let ready = gl
        .client()
        .await
        .check_readiness(CheckReadinessRequest {
            source_ids: vec!["hr".into()],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(
        !ready.ready && ready.blockers.iter().any(|b| b.code == "ACTION_DRIFTED"),
        "{:?}",
        ready.blockers
    );
    // The decision was also pushed to watchers as it happened.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let a = tokio::time::timeout(Duration::from_secs(10), watch.message())
            .await
            .expect("no alert")
            .unwrap()
            .unwrap();
        if a.kind == alert::Kind::ActionDrifted as i32 && a.action_id == id {
            break;
        }
        assert!(Instant::now() < deadline);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn w5_external_action_never_reported_by_its_deadline_is_overdue() {
    let (_nats, scim, gl) = serve_fault_scim(30, 3, "").await;
    let mut watch = gl.watch_alerts().await;
    let u = user(&scim, 8);
    let mut r = request(ActionKind::Deactivate, &u, "w5");
    r.external = true;
    r.deadline_us = chrono::Utc::now().timestamp_micros() + 700_000;
    let id = gl.submit_action("hr", r).await;
    tokio::time::sleep(Duration::from_millis(900)).await;
    let r = gl.wait_action(&id).await;
    assert_outcome(&r, ActionOutcome::Overdue);
    assert!(
        scim.write_requests().is_empty(),
        "govledger wrote for an external action"
    );
    // The clock's decision is pushed to watchers too.
    loop {
        let a = tokio::time::timeout(Duration::from_secs(10), watch.message())
            .await
            .expect("no OVERDUE alert")
            .unwrap()
            .unwrap();
        if a.kind == alert::Kind::ActionOverdue as i32 && a.action_id == id {
            break;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn external_attempt_is_verified_by_read_back() {
    let (_nats, scim, gl) = serve_fault_scim(30, 3, "").await;
    let u = user(&scim, 9);
    let mut r = request(ActionKind::Deactivate, &u, "ext");
    r.external = true;
    let id = gl.submit_action("hr", r).await;
    // The other system did its write...
    scim.set_active(&u, false);
    let mut c = gl.client().await;
    // (the action may not be projected yet: retry NotFound briefly)
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let rep = c
            .report_external_attempt(ReportExternalAttemptRequest {
                action_id: id.clone(),
                step: 1,
                http_status: 204,
                request_summary: "PATCH active=false by the IGA platform".into(),
                ..Default::default()
            })
            .await;
        match rep {
            Ok(_) => break,
            Err(e) if e.code() == Code::NotFound && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("{e}"),
        }
    }
    let r = gl.wait_action(&id).await;
    assert_outcome(&r, ActionOutcome::Confirmed);
    assert!(scim.write_requests().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn w6_three_step_action_with_one_failed_step_reports_each_step() {
    let (_nats, scim, gl) = serve_fault_scim(30, 3, "").await;
    let groups = scim.group_ids();
    let u = scim.group_members(&groups[0])[0].clone();
    scim.set_faults(Faults {
        write_fail: vec![WriteFault {
            method: "PATCH".into(),
            id: groups[1].clone(),
            status: 500,
            times: u32::MAX,
        }],
        ..Default::default()
    });
    let mut r = request(ActionKind::Deactivate, &u, "w6");
    r.plan = vec![
        ActionStep {
            kind: ActionKind::Deactivate as i32,
            ..Default::default()
        },
        ActionStep {
            kind: ActionKind::RemoveMembership as i32,
            group_external_id: groups[0].clone(),
            ..Default::default()
        },
        ActionStep {
            kind: ActionKind::AddMembership as i32,
            group_external_id: groups[1].clone(),
            ..Default::default()
        },
    ];
    let r = gl.wait_action(&gl.submit_action("hr", r).await).await;
    assert_outcome(&r, ActionOutcome::Failed);
    let steps: Vec<i32> = r.action.unwrap().steps.iter().map(|s| s.outcome).collect();
    assert_eq!(
        steps,
        vec![
            ActionOutcome::Confirmed as i32,
            ActionOutcome::Confirmed as i32,
            ActionOutcome::Failed as i32
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_key_submitted_concurrently_is_one_action_executed_once() {
    let (_nats, scim, gl) = serve_fault_scim(30, 3, "").await;
    let u = user(&scim, 10);
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let mut c = gl.client().await;
        let r = request(ActionKind::Deactivate, &u, "same-key");
        tasks.push(tokio::spawn(async move {
            c.submit_action(SubmitActionRequest {
                source_id: "hr".into(),
                request: Some(r),
            })
            .await
            .unwrap()
            .into_inner()
        }));
    }
    let mut ids = std::collections::BTreeSet::new();
    let mut created = 0;
    for t in tasks {
        let r = t.await.unwrap();
        ids.insert(r.action_id);
        created += usize::from(r.created);
    }
    assert_eq!(ids.len(), 1);
    assert_eq!(created, 1);
    let id = ids.into_iter().next().unwrap();
    assert_eq!(
        outcome(&gl.wait_action(&id).await),
        ActionOutcome::Confirmed
    );
    let writes = scim
        .write_requests()
        .into_iter()
        .filter(|w| w.path_and_query.contains(&u))
        .count();
    assert_eq!(writes, 1, "executed more than once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_action_requests_get_actionable_errors() {
    let (_nats, scim, gl) = serve_fault_scim(30, 3, "").await;
    let mut c = gl.client().await;
    let call = |source: &str, r: ActionRequested| SubmitActionRequest {
        source_id: source.into(),
        request: Some(r),
    };
    let u = user(&scim, 11);
    let e = c
        .submit_action(call("nope", request(ActionKind::Deactivate, &u, "b1")))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    let e = c
        .submit_action(call("hr", request(ActionKind::Deactivate, "ghost", "b2")))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    assert!(e.message().contains("sync it first"), "{}", e.message());
    let e = c
        .submit_action(call("hr", request(ActionKind::Unspecified, &u, "b3")))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    let e = c
        .submit_action(call("hr", request(ActionKind::Deactivate, &u, "")))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().contains("idempotency_key"));
    let e = c
        .submit_action(call("hr", request(ActionKind::RemoveMembership, &u, "b4")))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().contains("group_external_id"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn executor_killed_between_write_and_read_back_verifies_on_restart() {
    let nats = NatsServer::start().await;
    let scim = FaultScim::start_with(ScimConfig {
        users: 30,
        groups: 3,
        ..Default::default()
    })
    .await;
    let data = tempfile::tempdir().unwrap();
    let cfg_path = data.path().join("govledger.toml");
    std::fs::write(&cfg_path, config(&scim.base_url, "")).unwrap();
    let cfg = cfg_path.to_str().unwrap().to_owned();
    let mut gl = Govledger::serve_in_env(
        data,
        &nats.url(),
        &["--config", &cfg],
        &[("GOVLEDGER_FAILPOINT", "executor-after-write")],
    );
    gl.sync("hr").await;
    let u = user(&scim, 12);
    let id = gl
        .submit_action("hr", request(ActionKind::Deactivate, &u, "crash"))
        .await;
    // The process aborts right after the write, before reading the target back.
    let status = gl
        .wait_exit(Duration::from_secs(30))
        .expect("failpoint never fired");
    assert!(!status.success());
    assert_eq!(
        scim.user_state(&u).map(|s| s.0),
        Some(false),
        "the write landed"
    );
    let data = gl.take_data();
    drop(gl);

    let gl = Govledger::serve_in(data, &nats.url(), &["--config", &cfg]);
    let r = gl.wait_action(&id).await;
    assert_outcome(&r, ActionOutcome::Confirmed);
    let a = r.action.unwrap();
    assert_eq!(a.attempts, 1, "re-executed instead of verified");
    assert_eq!(a.verified_steps, vec![1]);
    let writes = scim
        .write_requests()
        .into_iter()
        .filter(|w| w.path_and_query.contains(&u))
        .count();
    assert_eq!(writes, 1, "the write was sent again after the restart");
    assert!(
        gl.log_text().contains("resuming an action"),
        "{}",
        gl.log_text()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn member_removal_in_the_value_list_form_when_configured() {
    let (_nats, scim, gl) = serve_fault_scim(30, 3, "member_removal = \"value-list\"").await;
    let g = scim.group_ids()[1].clone();
    let member = scim.group_members(&g)[0].clone();
    let mut rm = request(ActionKind::RemoveMembership, &member, "vl");
    rm.group_external_id = g.clone();
    let r = gl.wait_action(&gl.submit_action("hr", rm).await).await;
    assert_outcome(&r, ActionOutcome::Confirmed);
    let w = scim.write_requests();
    let body = &w.last().unwrap().body;
    assert!(
        body.contains(r#""path":"members""#) && body.contains(r#""value":[{"#),
        "{body}"
    );
    assert!(!scim.group_members(&g).contains(&member));
}
