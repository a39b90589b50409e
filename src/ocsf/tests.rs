//! The OCSF mapping's records, checked field by field.

use super::*;
use govledger_proto::v1::{ActionConcluded, PageFetched};

fn at() -> At {
    At {
        seq: 42,
        stored_at_us: 1_700_000_000_000_000,
    }
}

fn request(kind: ActionKind) -> ActionRequested {
    ActionRequested {
        kind: kind as i32,
        identity_external_id: "u1".into(),
        group_external_id: "g1".into(),
        requested_by: "alice@corp".into(),
        reason: "leaver".into(),
        ticket: "HR-1".into(),
        ..Default::default()
    }
}

fn concluded_event(outcome: ActionOutcome) -> Event {
    Event {
        event_id: "e".into(),
        occurred_at_us: 1_700_000_000_123_000,
        source_id: "hr".into(),
        action_id: "a1".into(),
        body: Some(Body::ActionConcluded(ActionConcluded {
            outcome: outcome as i32,
            detail: "read back".into(),
            ..Default::default()
        })),
        ..Default::default()
    }
}

#[test]
fn a_confirmed_deactivation_is_an_account_disable_that_succeeded() {
    let r = records(
        &concluded_event(ActionOutcome::Confirmed),
        at(),
        Some(&request(ActionKind::Deactivate)),
        Version::V1_1,
    );
    assert_eq!(r.len(), 1);
    let j = &r[0].json;
    assert_eq!(r[0].class, "account_change");
    assert_eq!(
        (j["class_uid"].as_u64(), j["activity_id"].as_u64()),
        (Some(3001), Some(5))
    );
    assert_eq!(j["type_uid"], 300105);
    assert_eq!(j["status_id"], 1);
    assert_eq!(j["metadata"]["uid"], "42");
    assert_eq!(j["metadata"]["version"], "1.1.0");
    assert_eq!(j["time"], 1_700_000_000_123i64);
    assert_eq!(j["user"]["uid"], "u1");
    assert_eq!(j["unmapped"]["outcome"], "CONFIRMED");
    assert_eq!(j["unmapped"]["ticket"], "HR-1");
}

#[test]
fn an_unconfirmed_removal_is_a_group_remove_with_unknown_status() {
    let r = records(
        &concluded_event(ActionOutcome::Unconfirmed),
        at(),
        Some(&request(ActionKind::RemoveMembership)),
        Version::V1_1,
    );
    let j = &r[0].json;
    assert_eq!(
        (j["class_uid"].as_u64(), j["activity_id"].as_u64()),
        (Some(3006), Some(4))
    );
    assert_eq!(j["status_id"], 0);
    assert_eq!(j["group"]["uid"], "g1");
    // 1.1's Group Management has no actor; 1.8's has.
    assert!(j.get("actor").is_none());
    let r8 = records(
        &concluded_event(ActionOutcome::Failed),
        at(),
        Some(&request(ActionKind::RemoveMembership)),
        Version::V1_8,
    );
    assert_eq!(r8[0].json["actor"]["user"]["name"], "alice@corp");
    assert_eq!(r8[0].json["status_id"], 2);
}

#[test]
fn a_page_read_is_api_activity_and_other_events_map_to_nothing() {
    let ev = Event {
        source_id: "hr".into(),
        run_id: "r1".into(),
        body: Some(Body::PageFetched(PageFetched {
            page_index: 3,
            item_count: 100,
            http_status: 200,
            entity_type: EntityType::User as i32,
            ..Default::default()
        })),
        ..Default::default()
    };
    let r = records(&ev, at(), None, Version::V1_1);
    assert_eq!(r[0].class, "api_activity");
    assert_eq!(r[0].json["api"]["operation"], "list user");
    assert_eq!(r[0].json["metadata"]["correlation_uid"], "r1");
    let none = Event {
        body: Some(Body::RecordObserved(Default::default())),
        ..Default::default()
    };
    assert!(records(&none, at(), None, Version::V1_1).is_empty());
    // A conclusion without its request names no user: no record.
    assert!(
        records(
            &concluded_event(ActionOutcome::Confirmed),
            at(),
            None,
            Version::V1_1
        )
        .is_empty()
    );
}

#[test]
fn a_write_that_is_not_http_is_judged_by_its_error_class() {
    use govledger_proto::v1::{ActionAttempted, ActionVerified, ErrorClass};
    let ev = |body: Body| Event {
        source_id: "directory".into(),
        action_id: "a1".into(),
        attempt: 1,
        body: Some(body),
        ..Default::default()
    };
    let req = request(ActionKind::Deactivate);
    let attempt = |class: ErrorClass| {
        let e = ev(Body::ActionAttempted(ActionAttempted {
            step: 1,
            http_status: 0,
            error_class: class as i32,
            request_summary: "LDAP modify uid=ann: replace pwdAccountLockedTime".into(),
            ..Default::default()
        }));
        records(&e, at(), Some(&req), Version::V1_1).remove(0).json
    };
    let ok = attempt(ErrorClass::Unspecified);
    assert_eq!(ok["status_id"], 1, "{ok}");
    assert!(
        ok["message"].as_str().unwrap().contains("answered success"),
        "{ok}"
    );
    assert!(ok.get("status_code").is_none(), "{ok}");
    let refused = attempt(ErrorClass::Auth);
    assert_eq!(refused["status_id"], 2, "{refused}");
    assert!(
        refused["message"].as_str().unwrap().contains("AUTH"),
        "{refused}"
    );
    let read = ev(Body::ActionVerified(ActionVerified {
        step: 1,
        in_effect: true,
        http_status: 0,
        ..Default::default()
    }));
    let j = records(&read, at(), Some(&req), Version::V1_1)
        .remove(0)
        .json;
    assert_eq!(j["status_id"], 1, "{j}");
}
