//! "Already absent" needs corroboration (issue 22, item 7): a 404 from the
//! target's single GET confirms a deactivate, a delete or a removal from a
//! group only when the target's own listing agrees (`filter=id eq "X"`
//! answers no such resource), or when the action accepts a 404 as proof.
//! A misrouted read path (a proxy rule, another tenant's route) answers 404
//! for users a COMPLETE sync listed a minute ago: that must never turn a
//! deprovisioning into CONFIRMED.

use govledger_proto::v1::{ActionKind, ActionOutcome};
use govledger_testkit::{
    fault_scim::{Faults, IdFilter},
    govledger::{action_request, serve_fault_scim},
    runs::assert_outcome,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_404_no_listing_agrees_with_is_never_confirmed() {
    // The sync before this was COMPLETE and listed every user and group.
    let (_nats, scim, gl) = serve_fault_scim(30, 3, "").await;
    let (u1, u2) = (scim.user_ids()[1].clone(), scim.user_ids()[2].clone());
    let (g, member) = {
        let g = scim.group_ids()[0].clone();
        let m = scim.group_members(&g)[0].clone();
        (g, m)
    };
    for (filter, why) in [
        (IdFilter::Refused, "it was refused (HTTP 400"),
        (IdFilter::NotFound, "it answered 404 too"),
    ] {
        scim.set_faults(Faults {
            single_gets_not_found: true,
            id_filter: filter,
            ..Default::default()
        });
        let key = format!("{filter:?}");
        for (kind, user, group) in [
            (ActionKind::Deactivate, u1.as_str(), ""),
            (ActionKind::Delete, u2.as_str(), ""),
            (ActionKind::RemoveMembership, member.as_str(), g.as_str()),
        ] {
            let r = gl
                .act(
                    "hr",
                    action_request(kind, user, group, &format!("{key}-{kind:?}"), "T-1"),
                )
                .await;
            // The old executor: CONFIRMED "already absent (404)", 0 attempts.
            assert_outcome(&r, ActionOutcome::Unverified);
            let d = &r.outcome_detail;
            assert!(
                d.contains("GET answered 404, but no listing agrees")
                    && d.contains(why)
                    && d.contains("a 404 alone is not proof"),
                "{kind:?} {filter:?}: {d}"
            );
            let a = r.action.unwrap();
            assert!(a.attempts >= 1, "{kind:?}: the write was never tried: {d}");
            assert!(!a.verified_steps.contains(&1), "{kind:?}: {d}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_404_the_listing_contradicts_is_read_from_the_listing() {
    let (_nats, scim, gl) = serve_fault_scim(30, 3, "").await;
    let u = scim.user_ids()[4].clone();
    // Single GETs answer 404 for everything; the listing shows the truth.
    scim.set_faults(Faults {
        single_gets_not_found: true,
        ..Default::default()
    });
    let r = gl
        .act(
            "hr",
            action_request(ActionKind::Deactivate, &u, "", "listed", "T-2"),
        )
        .await;
    assert_outcome(&r, ActionOutcome::Confirmed);
    assert!(
        r.outcome_detail
            .contains("GET answered 404 but a filtered list shows it: active=false"),
        "{}",
        r.outcome_detail
    );
    assert_eq!(
        r.action.as_ref().unwrap().attempts,
        1,
        "the write was needed"
    );
    assert_eq!(scim.user_state(&u).map(|s| s.0), Some(false));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_404_the_listing_agrees_with_confirms_and_so_does_absent_is_proof() {
    let (_nats, scim, gl) = serve_fault_scim(30, 3, "").await;
    // Really gone: every write first deletes its target, then answers 404.
    scim.set_faults(Faults {
        write_not_found: true,
        ..Default::default()
    });
    let u = scim.user_ids()[5].clone();
    let r = gl
        .act(
            "hr",
            action_request(ActionKind::Deactivate, &u, "", "gone", "T-3"),
        )
        .await;
    assert_outcome(&r, ActionOutcome::Confirmed);
    assert!(
        r.outcome_detail.contains("a filtered list (id eq \"")
            && r.outcome_detail.contains("agrees: no such user"),
        "{}",
        r.outcome_detail
    );
    assert!(!scim.user_exists(&u));

    // The requester may accept the target's 404 as proof: then no listing is asked.
    scim.set_faults(Faults {
        single_gets_not_found: true,
        id_filter: IdFilter::Refused,
        ..Default::default()
    });
    let u = scim.user_ids()[6].clone();
    let mut req = action_request(ActionKind::Delete, &u, "", "proof", "T-4");
    req.absent_is_proof = true;
    let r = gl.act("hr", req).await;
    assert_outcome(&r, ActionOutcome::Confirmed);
    assert!(
        r.outcome_detail
            .contains("already absent (404); the action accepts a 404 as proof"),
        "{}",
        r.outcome_detail
    );
}
