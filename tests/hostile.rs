//! Hostile requests (issue 22, item 6): every field a client sends is bounded
//! and checked in one place; oversized or malformed → `INVALID_ARGUMENT` with a
//! short message (never the value echoed whole); an unknown stream is
//! `NOT_FOUND`, never TAMPERED; an external attempt names a real step.

use govledger_proto::v1::{self as pb, ActionKind};
use govledger_testkit::{
    govledger::{action_request, serve_fault_scim},
    run_govledger,
};
use tonic::Code;

/// The code and message of a refused call; the message is short.
fn refused<T: std::fmt::Debug>(what: &str, r: Result<T, tonic::Status>) -> (Code, String) {
    let e = r.expect_err(what);
    assert!(
        e.message().len() < 400,
        "{what}: a {}-byte message",
        e.message().len()
    );
    (e.code(), e.message().to_owned())
}

fn invalid<T: std::fmt::Debug>(what: &str, r: Result<T, tonic::Status>, needle: &str) {
    let (code, msg) = refused(what, r);
    assert_eq!(code, Code::InvalidArgument, "{what}: {msg}");
    assert!(msg.contains(needle), "{what}: {msg:?} lacks {needle:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_hostile_field_is_refused_with_a_short_actionable_message() {
    let (_nats, scim, gl) = serve_fault_scim(3, 0, "").await;
    let user = scim.user_ids()[0].clone();
    let mut c = gl.client().await;
    let huge = "x".repeat(1_000_000);

    // Ids of a megabyte: refused by size, never echoed.
    invalid(
        "GetRun",
        c.get_run(pb::GetRunRequest {
            run_id: huge.clone(),
        })
        .await,
        "run_id is 1000000 bytes, over the maximum 1024",
    );
    invalid(
        "GetIdentity",
        c.get_identity(pb::GetIdentityRequest {
            source_id: "hr".into(),
            external_id: huge.clone(),
            ..Default::default()
        })
        .await,
        "external_id is 1000000 bytes",
    );
    invalid(
        "Replay",
        c.replay(pb::ReplayRequest {
            action_id: huge.clone(),
            ..Default::default()
        })
        .await,
        "action_id is 1000000 bytes",
    );
    invalid(
        "CheckReadiness",
        c.check_readiness(pb::CheckReadinessRequest {
            identity_external_ids: vec![huge.clone()],
            ..Default::default()
        })
        .await,
        "identity_external_ids is 1000000 bytes",
    );
    invalid(
        "WatchAlerts",
        c.watch_alerts(pb::WatchAlertsRequest {
            source_ids: (0..1_001).map(|i| format!("s{i}")).collect(),
            after_alert_seq: 0,
        })
        .await,
        "source_ids holds 1001 ids, over the maximum 1000",
    );

    // SubmitAction: every field within its bound.
    let submit = |mutate: &dyn Fn(&mut pb::ActionRequested)| {
        let mut r = action_request(ActionKind::Deactivate, &user, "", "hostile", "T-1");
        mutate(&mut r);
        pb::SubmitActionRequest {
            source_id: "hr".into(),
            request: Some(r),
        }
    };
    type Mutate = Box<dyn Fn(&mut pb::ActionRequested)>;
    let cases: Vec<(&str, Mutate, &str)> = vec![
        (
            "entity_type 99",
            Box::new(|r| r.entity_type = 99),
            "entity_type 99",
        ),
        ("kind 99", Box::new(|r| r.kind = 99), "request.kind 99"),
        (
            "a negative deadline",
            Box::new(|r| r.deadline_us = -5),
            "request.deadline_us must be 0",
        ),
        (
            "a deadline in the past",
            Box::new(|r| r.deadline_us = 1_000_000),
            "in the past",
        ),
        (
            "steps 4294967295",
            Box::new(|r| r.steps = u32::MAX),
            "request.steps is 4294967295",
        ),
        (
            "an oversized reason",
            Box::new(|r| r.reason = "r".repeat(200_000)),
            "request.reason is 200000 characters, over the maximum 1000",
        ),
        (
            "a ticket on two lines",
            Box::new(|r| r.ticket = "T-1\nrm -rf".into()),
            "request.ticket must be text without control characters",
        ),
        (
            "a megabyte idempotency key",
            Box::new(|r| r.idempotency_key = "k".repeat(1_000_000)),
            "request.idempotency_key is 1000000 bytes",
        ),
        (
            "a plan of 17 steps",
            Box::new(|r| {
                r.plan = (0..17)
                    .map(|_| pb::ActionStep {
                        kind: ActionKind::Deactivate as i32,
                        ..Default::default()
                    })
                    .collect()
            }),
            "request.plan has 17 steps",
        ),
    ];
    for (what, mutate, needle) in &cases {
        invalid(what, c.submit_action(submit(mutate.as_ref())).await, needle);
    }

    // ReportExternalAttempt: the step must be one of the action's.
    let mut ext = action_request(ActionKind::Deactivate, &user, "", "ext-1", "T-2");
    ext.external = true;
    let action_id = c
        .submit_action(pb::SubmitActionRequest {
            source_id: "hr".into(),
            request: Some(ext),
        })
        .await
        .unwrap()
        .into_inner()
        .action_id;
    gl.wait_action_until(&action_id, |a| a.action.is_some())
        .await;
    for step in [0, 2, 9999] {
        invalid(
            &format!("step {step}"),
            c.report_external_attempt(pb::ReportExternalAttemptRequest {
                action_id: action_id.clone(),
                step,
                http_status: 204,
                ..Default::default()
            })
            .await,
            &format!("step {step} is not a step of this action: it has 1"),
        );
    }
    invalid(
        "http_status 1000",
        c.report_external_attempt(pb::ReportExternalAttemptRequest {
            action_id: action_id.clone(),
            step: 1,
            http_status: 1000,
            ..Default::default()
        })
        .await,
        "http_status 1000",
    );
    c.report_external_attempt(pb::ReportExternalAttemptRequest {
        action_id: action_id.clone(),
        step: 1,
        http_status: 204,
        request_summary: "PATCH active=false by the IGA platform".into(),
        ..Default::default()
    })
    .await
    .unwrap();

    // VerifyRange: a 5,000-character stream name is refused before NATS sees
    // it (the connection stays up); an unknown stream is NOT_FOUND.
    invalid(
        "VerifyRange with a long stream name",
        c.verify_range(pb::VerifyRangeRequest {
            stream: "S".repeat(5_000),
            ..Default::default()
        })
        .await,
        "is not a stream name this ledger reads",
    );
    let (code, msg) = refused(
        "VerifyRange of a missing stream",
        c.verify_range(pb::VerifyRangeRequest {
            stream: "NO_SUCH_COPY".into(),
            ..Default::default()
        })
        .await,
    );
    assert_eq!(code, Code::NotFound, "{msg}");
    assert!(msg.contains("no stream \"NO_SUCH_COPY\""), "{msg}");
    let ok = c
        .verify_range(pb::VerifyRangeRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(ok.ok, "{ok:?}");
    // The CLI: an error (exit 1), never TAMPERED (exit 3).
    let token = gl.token_env();
    let (status, err) = run_govledger(
        &[
            "verify",
            "--grpc-addr",
            &gl.addr,
            "--stream",
            "NO_SUCH_COPY",
        ],
        &[(token.0, &token.1)],
    );
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(
        !err.contains("TAMPERED") && err.contains("no stream"),
        "{err}"
    );
}

#[test]
fn an_excerpt_is_short_and_escaped() {
    use govledger::api::validate::{EXCERPT_CHARS_MAX, excerpt};
    assert_eq!(excerpt("a\nb"), "\"a\\nb\"");
    let long = "é".repeat(10_000);
    let e = excerpt(&long);
    assert!(e.chars().count() < EXCERPT_CHARS_MAX + 30, "{e}");
    assert!(e.ends_with("(20000 bytes)"), "{e}");
}

/// Two external reports in a row (both accepted before the first conclusion is
/// folded) conclude the action once: the stream holds one `ActionConcluded`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_reports_in_a_row_conclude_an_action_once() {
    let (nats, scim, gl) = serve_fault_scim(3, 0, "").await;
    let user = scim.user_ids()[0].clone();
    let mut ext = action_request(ActionKind::Deactivate, &user, "", "twice", "T-3");
    ext.external = true;
    let mut c = gl.client().await;
    let action_id = c
        .submit_action(pb::SubmitActionRequest {
            source_id: "hr".into(),
            request: Some(ext),
        })
        .await
        .unwrap()
        .into_inner()
        .action_id;
    gl.wait_action_until(&action_id, |a| a.action.is_some())
        .await;
    // The other system really deactivated the user, then reported twice.
    scim.set_active(&user, false);
    let report = || pb::ReportExternalAttemptRequest {
        action_id: action_id.clone(),
        step: 1,
        http_status: 204,
        ..Default::default()
    };
    let mut c2 = gl.client().await;
    let (a, b) = tokio::join!(
        c.report_external_attempt(report()),
        c2.report_external_attempt(report())
    );
    assert!(a.is_ok() || b.is_ok(), "{a:?} {b:?}");
    let done = gl.wait_action(&action_id).await;
    assert_eq!(
        done.outcome,
        pb::ActionOutcome::Confirmed as i32,
        "{done:?}"
    );
    // Give a second job every chance to run, then count the conclusions.
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    let conclusions = govledger_testkit::read_stream(&nats.client().await)
        .await
        .iter()
        .filter_map(|m| {
            use prost::Message as _;
            pb::Event::decode(m.payload.as_ref()).ok()
        })
        .filter(|e| {
            e.action_id == action_id && matches!(e.body, Some(pb::event::Body::ActionConcluded(_)))
        })
        .count();
    assert_eq!(
        conclusions, 1,
        "the action was concluded {conclusions} times"
    );
}
