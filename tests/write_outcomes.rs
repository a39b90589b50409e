//! Write-path outcomes that say only what the evidence shows (issue 20), end
//! to end against the fault-injecting SCIM server:
//! - a membership is read back by the queries that can prove it, in order
//!   (the group's `members`, `?attributes=members`, the filtered list
//!   `id eq "G" and members.value eq "U"`, the user's `groups`); when none can,
//!   the action is UNVERIFIABLE and says what was tried (W9);
//! - a target that stays down after the write is UNVERIFIED (never FAILED),
//!   OVERDUE once its deadline passes, and CONFIRMED late when a sync shows
//!   the intent (W10).

use std::time::Duration;

use govledger_proto::v1::{
    ActionKind, ActionOutcome, AsOf, CheckReadinessRequest, GetActionRequest, GetActionResponse,
    Verdict, alert, as_of,
};
use govledger_testkit::{
    Govledger,
    fault_scim::{FaultScim, Faults, MemberFilter, MembersCapped, MembersShown},
    govledger::{action_request, serve_fault_scim},
    runs::assert_outcome,
};

async fn get(gl: &Govledger, id: &str, as_of: Option<AsOf>) -> Option<GetActionResponse> {
    let r = gl
        .client()
        .await
        .get_action(GetActionRequest {
            action_id: id.into(),
            as_of,
        })
        .await;
    r.ok().map(|r| r.into_inner())
}

/// The readiness blocker codes.
async fn blockers(gl: &Govledger) -> Vec<String> {
    let r = gl
        .client()
        .await
        .check_readiness(CheckReadinessRequest::default())
        .await
        .unwrap()
        .into_inner();
    r.blockers.into_iter().map(|b| b.code).collect()
}

fn patches_to(scim: &FaultScim, group: &str) -> usize {
    scim.write_requests()
        .iter()
        .filter(|w| w.method == "PATCH" && w.path_and_query.contains(group))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn membership_where_only_a_filter_shows_members_is_proved_by_the_filter() {
    let (_nats, scim, gl) = serve_fault_scim(12, 3, "").await;
    scim.set_faults(Faults {
        members_shown: MembersShown::Never,
        member_filter: MemberFilter::Supported,
        ..Default::default()
    });
    let g = scim.group_ids()[0].clone();
    let members = scim.group_members(&g);
    let r = gl
        .act(
            "hr",
            action_request(ActionKind::RemoveMembership, &members[0], &g, "f1", "HR-3"),
        )
        .await;
    assert_outcome(&r, ActionOutcome::Confirmed);
    assert!(
        r.outcome_detail.contains("not a member (a filtered list"),
        "{}",
        r.outcome_detail
    );
    assert!(!scim.group_members(&g).contains(&members[0]));
    assert_eq!(r.action.unwrap().verified_steps, vec![1]);

    // Already in effect (not a member): proved by the filter, nothing written.
    let before = patches_to(&scim, &g);
    let r = gl
        .act(
            "hr",
            action_request(ActionKind::RemoveMembership, &members[0], &g, "f2", "HR-3"),
        )
        .await;
    assert_outcome(&r, ActionOutcome::Confirmed);
    assert!(
        r.outcome_detail.contains("already in effect (not a member"),
        "{}",
        r.outcome_detail
    );
    assert_eq!(patches_to(&scim, &g), before, "written although in effect");

    // A member whose removal the target only pretends: never CONFIRMED, never
    // "already in effect" — the filter shows the member still there.
    scim.set_faults(Faults {
        members_shown: MembersShown::Never,
        member_filter: MemberFilter::Supported,
        write_noop: true,
        ..Default::default()
    });
    let r = gl
        .act(
            "hr",
            action_request(ActionKind::RemoveMembership, &members[1], &g, "f3", "HR-3"),
        )
        .await;
    assert_outcome(&r, ActionOutcome::Unconfirmed);
    assert!(
        r.outcome_detail
            .contains("the read-back shows no change (a member (a filtered list"),
        "{}",
        r.outcome_detail
    );
    assert!(scim.group_members(&g).contains(&members[1]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn membership_that_nothing_shows_is_unverifiable_and_names_what_was_tried() {
    let (_nats, scim, gl) = serve_fault_scim(12, 3, "").await;
    scim.set_faults(Faults {
        members_shown: MembersShown::Never,
        ..Default::default()
    });
    let g = scim.group_ids()[0].clone();
    let member = scim.group_members(&g)[0].clone();
    let r = gl
        .act(
            "hr",
            action_request(ActionKind::RemoveMembership, &member, &g, "n1", "HR-3"),
        )
        .await;
    assert_outcome(&r, ActionOutcome::Unverifiable);
    for tried in [
        "the group left out members",
        "asked for by name (?attributes=members), left them out",
        "a filtered list (filter members.value eq): refused it (HTTP 400",
        "the user has no groups attribute",
    ] {
        assert!(
            r.outcome_detail.contains(tried),
            "{tried}: {}",
            r.outcome_detail
        );
    }
    assert!(patches_to(&scim, &g) > 0, "not written");
    let a = r.action.as_ref().unwrap();
    assert!(a.verified && a.read_back_unknown && a.verified_steps.is_empty());
    assert!(
        blockers(&gl)
            .await
            .contains(&"ACTION_UNVERIFIABLE".to_owned())
    );

    // A filter that ignores the member clause (501 elsewhere) proves nothing
    // either: the control query catches it, so a pretended add is not CONFIRMED.
    let g2 = scim.group_ids()[2].clone();
    let outsider = scim.user_ids()[11].clone();
    assert!(!scim.group_members(&g2).contains(&outsider));
    scim.set_faults(Faults {
        members_shown: MembersShown::Never,
        member_filter: MemberFilter::IgnoresMembers,
        write_noop: true,
        ..Default::default()
    });
    let r = gl
        .act(
            "hr",
            action_request(ActionKind::AddMembership, &outsider, &g2, "n2", "HR-3"),
        )
        .await;
    assert_outcome(&r, ActionOutcome::Unverifiable);
    assert!(
        r.outcome_detail
            .contains("the target ignores the member clause"),
        "{}",
        r.outcome_detail
    );

    // A real add the target cannot show is UNVERIFIABLE, then confirmed late
    // by a sync whose group list shows the member.
    scim.set_faults(Faults {
        members_shown: MembersShown::Never,
        member_filter: MemberFilter::NotImplemented,
        ..Default::default()
    });
    let id = gl
        .submit_action(
            "hr",
            action_request(ActionKind::AddMembership, &outsider, &g2, "n3", "HR-3"),
        )
        .await;
    let r = gl.wait_action(&id).await;
    assert_outcome(&r, ActionOutcome::Unverifiable);
    assert!(
        r.outcome_detail.contains("HTTP 501"),
        "{}",
        r.outcome_detail
    );
    assert!(scim.group_members(&g2).contains(&outsider));
    let s = gl.sync("hr").await;
    assert_eq!(s.verdict, Verdict::Complete as i32, "{:?}", s.reasons);
    let r = gl
        .wait_action_until(&id, |r| r.outcome == ActionOutcome::Confirmed as i32)
        .await;
    assert!(
        r.outcome_detail.contains("confirmed late")
            && r.outcome_detail.contains("before, UNVERIFIABLE"),
        "{}",
        r.outcome_detail
    );
    assert_eq!(
        r.action.unwrap().confirmed_late_from,
        ActionOutcome::Unverifiable as i32
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn add_membership_is_verified_by_the_users_groups() {
    let (_nats, scim, gl) = serve_fault_scim(12, 3, "").await;
    scim.set_faults(Faults {
        members_shown: MembersShown::Never,
        member_filter: MemberFilter::NotImplemented,
        user_groups: true,
        ..Default::default()
    });
    let g = scim.group_ids()[1].clone();
    let outsider = scim.user_ids()[10].clone();
    assert!(!scim.group_members(&g).contains(&outsider));
    let r = gl
        .act(
            "hr",
            action_request(ActionKind::AddMembership, &outsider, &g, "u1", "HR-3"),
        )
        .await;
    assert_outcome(&r, ActionOutcome::Confirmed);
    assert!(
        r.outcome_detail.contains("a member (the user's groups)"),
        "{}",
        r.outcome_detail
    );
    assert!(scim.group_members(&g).contains(&outsider));
    // And the removal, the same way.
    let r = gl
        .act(
            "hr",
            action_request(ActionKind::RemoveMembership, &outsider, &g, "u2", "HR-3"),
        )
        .await;
    assert_outcome(&r, ActionOutcome::Confirmed);
    assert!(
        r.outcome_detail
            .contains("not a member (the user's groups)"),
        "{}",
        r.outcome_detail
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_down_after_the_write_is_unverified_then_overdue_then_confirmed_late() {
    let (_nats, scim, gl) = serve_fault_scim(12, 3, "verify_window_ms = 1000").await;
    let mut watch = gl.watch_alerts().await;
    scim.set_faults(Faults {
        down_after_write: true,
        ..Default::default()
    });
    let u = scim.user_ids()[3].clone();
    let mut req = action_request(ActionKind::Deactivate, &u, "", "d1", "HR-3");
    let deadline_us = chrono::Utc::now().timestamp_micros() + 8_000_000;
    req.deadline_us = deadline_us;
    let id = gl.submit_action("hr", req).await;
    let r = gl.wait_action(&id).await;
    assert!(
        chrono::Utc::now().timestamp_micros() < deadline_us,
        "concluded too late for this test"
    );
    // Never FAILED: no read-back showed the intent not in effect.
    assert_outcome(&r, ActionOutcome::Unverified);
    assert!(
        r.outcome_detail
            .contains("the target could not be read back")
            && r.outcome_detail.contains("none answered"),
        "{}",
        r.outcome_detail
    );
    // (the conclusion is in the stream and applied: as of now it is there)
    let seen_at = chrono::Utc::now().timestamp_micros();
    assert_eq!(scim.user_state(&u).map(|s| s.0), Some(false), "it landed");
    assert!(
        blockers(&gl)
            .await
            .contains(&"ACTION_UNVERIFIED".to_owned())
    );

    // Its deadline passes with nothing showing it: OVERDUE, and the clock says so.
    let r = gl
        .wait_action_until(&id, |r| r.outcome == ActionOutcome::Overdue as i32)
        .await;
    assert!(
        r.outcome_detail.contains("not verified by its deadline"),
        "{}",
        r.outcome_detail
    );
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
    // As of a time before the deadline it was UNVERIFIED (judged at the point).
    let then = get(
        &gl,
        &id,
        Some(AsOf {
            point: Some(as_of::Point::TimeUs(seen_at)),
        }),
    )
    .await
    .unwrap();
    assert_outcome(&then, ActionOutcome::Unverified);

    // The target is back; a sync observes the intent: CONFIRMED (late).
    scim.set_faults(Faults::default());
    let s = gl.sync("hr").await;
    assert_eq!(s.verdict, Verdict::Complete as i32, "{:?}", s.reasons);
    let r = gl
        .wait_action_until(&id, |r| r.outcome == ActionOutcome::Confirmed as i32)
        .await;
    assert!(
        r.outcome_detail.contains("confirmed late")
            && r.outcome_detail.contains("active=false")
            && r.outcome_detail.contains("before, UNVERIFIED"),
        "{}",
        r.outcome_detail
    );
    let a = r.action.unwrap();
    assert_eq!(a.confirmed_late_from, ActionOutcome::Unverified as i32);
    // Its step reads as the action does.
    assert_eq!(a.steps.len(), 1);
    assert_eq!(
        a.steps[0].outcome,
        ActionOutcome::Confirmed as i32,
        "{:?}",
        a.steps
    );
    assert!(
        a.steps[0]
            .detail
            .ends_with("; confirmed late by a later observation"),
        "{:?}",
        a.steps
    );
    assert!(!blockers(&gl).await.iter().any(|b| b.starts_with("ACTION_")));
}

/// A group read that caps `members` (large directories do, on single reads
/// too) is no proof that a user beyond the cap is not a member: with the
/// source's `member_list_cap`, absence from a list that long proves nothing
/// and the next query (the filter) decides. Old code: "already in effect
/// (not a member (the group's members)); nothing written" while the user
/// was still a member.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_capped_member_list_is_no_proof_that_a_user_beyond_the_cap_is_not_a_member() {
    let (_nats, scim, gl) = serve_fault_scim(12, 3, "member_list_cap = 2").await;
    let g = scim.group_ids()[0].clone();
    let users = scim.user_ids();
    scim.set_group_members(&g, users[..6].to_vec());
    scim.set_faults(Faults {
        members_capped: Some(MembersCapped {
            list: 2,
            single: Some(2),
            ranged: false,
        }),
        member_filter: MemberFilter::Supported,
        ..Default::default()
    });
    let beyond = users[5].clone();
    let r = gl
        .act(
            "hr",
            action_request(ActionKind::RemoveMembership, &beyond, &g, "cap1", "HR-3"),
        )
        .await;
    assert_outcome(&r, ActionOutcome::Confirmed);
    assert!(
        !r.outcome_detail.contains("already in effect"),
        "{}",
        r.outcome_detail
    );
    assert!(
        r.outcome_detail.contains("a filtered list"),
        "{}",
        r.outcome_detail
    );
    assert!(
        !scim.group_members(&g).contains(&beyond),
        "the user is still a member"
    );
    // A user the capped list does show is proof either way: removing one is
    // confirmed by the list itself.
    let shown = users[0].clone();
    let r = gl
        .act(
            "hr",
            action_request(ActionKind::RemoveMembership, &shown, &g, "cap2", "HR-3"),
        )
        .await;
    assert_outcome(&r, ActionOutcome::Confirmed);
    assert!(!scim.group_members(&g).contains(&shown));
}
