//! Read-backs that verify (issue 20, part D), end to end against the
//! fault-injecting SCIM server: an attribute the target leaves out is unknown,
//! never empty (W8); a target that applies writes late gets a bounded
//! verification window, and a later sync that shows the intent upgrades an
//! UNCONFIRMED action to CONFIRMED (W7); a write whose target stays down is
//! UNVERIFIED, never FAILED without a read-back that showed the intent not in
//! effect.

use govledger_proto::v1::{ActionKind, ActionOutcome, AsOf, GetActionRequest, Verdict, as_of};
use govledger_testkit::{
    fault_scim::{Faults, MembersShown, WriteFault},
    govledger::{action_request, serve_fault_scim},
    runs::assert_outcome,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memberships_shown_only_on_request_are_read_back_by_name() {
    let (_nats, scim, gl) = serve_fault_scim(12, 3, "").await;
    scim.set_faults(Faults {
        members_shown: MembersShown::OnRequest,
        ..Default::default()
    });
    let g = scim.group_ids()[1].clone();
    let member = scim.group_members(&g)[0].clone();
    let r = gl
        .act(
            "hr",
            action_request(ActionKind::RemoveMembership, &member, &g, "m2", "HR-2"),
        )
        .await;
    assert_outcome(&r, ActionOutcome::Confirmed);
    assert!(!scim.group_members(&g).contains(&member));
    assert!(
        r.outcome_detail.contains("not a member"),
        "{}",
        r.outcome_detail
    );
    let r = gl
        .act(
            "hr",
            action_request(ActionKind::AddMembership, &member, &g, "m3", "HR-2"),
        )
        .await;
    assert_outcome(&r, ActionOutcome::Confirmed);
    assert!(scim.group_members(&g).contains(&member));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_applied_after_a_short_delay_is_confirmed_within_the_window() {
    let (_nats, scim, gl) = serve_fault_scim(12, 3, "").await;
    scim.set_faults(Faults {
        read_lag_ms: Some(1_500),
        ..Default::default()
    });
    let u = scim.user_ids()[2].clone();
    let r = gl
        .act(
            "hr",
            action_request(ActionKind::Deactivate, &u, "", "d1", "HR-2"),
        )
        .await;
    assert_outcome(&r, ActionOutcome::Confirmed);
    assert!(
        r.outcome_detail.contains("active=false"),
        "{}",
        r.outcome_detail
    );
    assert_eq!(r.action.unwrap().attempts, 1, "written once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unconfirmed_action_becomes_confirmed_late_when_a_sync_shows_the_intent() {
    let (_nats, scim, gl) = serve_fault_scim(12, 3, "").await;
    // Longer than the default window (5 s): the executor gives up first.
    scim.set_faults(Faults {
        read_lag_ms: Some(600_000),
        ..Default::default()
    });
    let u = scim.user_ids()[3].clone();
    let id = gl
        .submit_action(
            "hr",
            action_request(ActionKind::Deactivate, &u, "", "d2", "HR-2"),
        )
        .await;
    let r = gl
        .wait_action_until(&id, |r| r.outcome != ActionOutcome::Pending as i32)
        .await;
    assert_outcome(&r, ActionOutcome::Unconfirmed);
    // Lists show the change at once: the next sync observes it.
    let s = gl.sync("hr").await;
    assert_eq!(s.verdict, Verdict::Complete as i32, "{:?}", s.reasons);
    let r = gl
        .wait_action_until(&id, |r| r.outcome != ActionOutcome::Unconfirmed as i32)
        .await;
    assert_outcome(&r, ActionOutcome::Confirmed);
    assert!(
        r.outcome_detail.contains("confirmed late") && r.outcome_detail.contains("active=false"),
        "{}",
        r.outcome_detail
    );
    // As of now (the action's own history, which holds the observation), the
    // same answer: the evidence is part of the action's record.
    let late_seq = r.action.as_ref().unwrap().late_confirmed_seq;
    assert!(late_seq > 0);
    let at = gl
        .client()
        .await
        .get_action(GetActionRequest {
            action_id: id.clone(),
            as_of: Some(AsOf {
                point: Some(as_of::Point::Seq(late_seq)),
            }),
        })
        .await
        .unwrap()
        .into_inner();
    assert_outcome(&at, ActionOutcome::Confirmed);
    // ... and from then on it is watched: re-enabling it drifts.
    scim.set_faults(Faults::default());
    scim.set_active(&u, true);
    gl.sync("hr").await;
    let r = gl
        .wait_action_until(&id, |r| r.outcome == ActionOutcome::Drifted as i32)
        .await;
    assert_outcome(&r, ActionOutcome::Drifted);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_whose_target_stays_down_is_not_failed_without_a_read_back() {
    let (_nats, scim, gl) = serve_fault_scim(12, 3, "").await;
    let u = scim.user_ids()[4].clone();
    drop(scim); // the target is down: every request is refused
    let r = gl
        .act(
            "hr",
            action_request(ActionKind::Deactivate, &u, "", "f1", "HR-2"),
        )
        .await;
    // Never read back: UNVERIFIED (not FAILED, and not the UNCONFIRMED of a
    // read-back that showed no change).
    assert_outcome(&r, ActionOutcome::Unverified);
    assert!(
        r.outcome_detail
            .contains("no read-back showed whether it is in effect"),
        "{}",
        r.outcome_detail
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_refused_while_the_read_back_shows_it_not_in_effect_is_failed() {
    let (_nats, scim, gl) = serve_fault_scim(12, 3, "").await;
    scim.set_faults(Faults {
        write_fail: vec![WriteFault {
            status: 503,
            times: u32::MAX,
            ..Default::default()
        }],
        ..Default::default()
    });
    let u = scim.user_ids()[5].clone();
    let r = gl
        .act(
            "hr",
            action_request(ActionKind::Deactivate, &u, "", "f2", "HR-2"),
        )
        .await;
    assert_outcome(&r, ActionOutcome::Failed);
    assert!(
        r.outcome_detail.contains("active=true"),
        "{}",
        r.outcome_detail
    );
}
