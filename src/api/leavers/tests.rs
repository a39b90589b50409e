//! The leaver rules, exhaustively over the cases that decide them.

use govledger_proto::v1::TypeCompleteRun;

use super::*;
use crate::config::leavers::LeaverRule;

fn person(id: &str, emp: &str, active: Option<bool>, extra: &[(&str, &str)]) -> IdentityState {
    let mut attributes: std::collections::HashMap<String, String> = extra
        .iter()
        .map(|(k, v)| ((*k).into(), (*v).into()))
        .collect();
    attributes.insert("employee_id".into(), emp.into());
    IdentityState {
        source_id: "hr".into(),
        entity_type: EntityType::User as i32,
        external_id: id.into(),
        display_name: format!("person {id}"),
        active,
        last_observed_run_id: "hr-run-2".into(),
        last_observed_seq: 10,
        attributes,
        ..Default::default()
    }
}

fn hr_state(complete_run_first_seq: u64) -> SourceState {
    SourceState {
        source_id: "hr".into(),
        last_run_id: "hr-run-2".into(),
        last_complete_full_by_type: vec![TypeCompleteRun {
            entity_type: EntityType::User as i32,
            run_id: "hr-run-2".into(),
            first_seq: complete_run_first_seq,
        }],
        ..Default::default()
    }
}

fn rule() -> LeaverRule {
    LeaverRule {
        hr_source: "hr".into(),
        match_on: "employee_id".into(),
        targets: vec!["ldap".into()],
    }
}

#[test]
fn hr_says_who_is_gone() {
    let hr = hr_state(5);
    let today = "2026-12-06";
    assert_eq!(gone(&person("1", "E1", Some(true), &[]), &hr, today), None);
    let t = gone(
        &person("2", "E2", Some(false), &[("status", "terminated")]),
        &hr,
        today,
    )
    .unwrap();
    assert!(
        t.contains("status \"terminated\"") && t.contains("hr-run-2"),
        "{t}"
    );
    let t = gone(
        &person("3", "E3", Some(true), &[("end_date", "2026-11-30")]),
        &hr,
        today,
    )
    .unwrap();
    assert!(t.contains("end date 2026-11-30 passed"), "{t}");
    assert_eq!(
        gone(
            &person("4", "E4", Some(true), &[("end_date", "2026-12-06")]),
            &hr,
            today
        ),
        None
    );
    // Absent from the last COMPLETE run (observed by an older run before it).
    let mut old = person("5", "E5", Some(true), &[]);
    old.last_observed_run_id = "hr-run-1".into();
    old.last_observed_seq = 3;
    let t = gone(&old, &hr, today).unwrap();
    assert!(t.starts_with("absent from HR"), "{t}");
    // An HR source with no COMPLETE run proves no absence.
    let never = SourceState {
        source_id: "hr".into(),
        last_run_id: "hr-run-2".into(),
        ..Default::default()
    };
    assert_eq!(gone(&old, &never, today), None);
}

fn target_user(id: &str, emp: &str, active: Option<bool>) -> IdentityState {
    IdentityState {
        source_id: "ldap".into(),
        entity_type: EntityType::User as i32,
        external_id: id.into(),
        display_name: format!("uid {id}"),
        active,
        last_observed_run_id: "ldap-run".into(),
        last_observed_seq: 20,
        attributes: [("employee_id".to_owned(), emp.to_owned())].into(),
        ..Default::default()
    }
}

fn group(id: &str, members: &[&str]) -> IdentityState {
    IdentityState {
        source_id: "ldap".into(),
        entity_type: EntityType::Group as i32,
        external_id: id.into(),
        display_name: format!("group {id}"),
        memberships: members.iter().map(|m| (*m).to_owned()).collect(),
        last_observed_run_id: "ldap-run".into(),
        last_observed_seq: 21,
        ..Default::default()
    }
}

#[test]
fn targets_block_on_access_only() {
    let hr = hr_state(5);
    let people = vec![
        person("1", "E1", Some(true), &[]),
        person("2", "e2 ", Some(false), &[("status", "terminated")]),
        person("3", "E3", Some(false), &[]),
        person("4", "E4", Some(false), &[]),
        person("5", "E5", Some(false), &[]),
    ];
    let leavers = hr_leavers(people, &hr, "employee_id", "2026-12-06");
    assert_eq!(leavers.len(), 4);
    let target = SourceState {
        source_id: "ldap".into(),
        last_run_id: "ldap-run".into(),
        ..Default::default()
    };
    let ids = vec![
        target_user("u1", "E1", Some(true)),  // not a leaver
        target_user("u2", "E2", Some(true)),  // leaver, active (matched case-insensitively)
        target_user("u3", "E3", Some(false)), // leaver, disabled, no groups
        target_user("u4", "E4", Some(false)), // leaver, disabled, still in a group
        target_user("u5", "E5", None),        // leaver, state unknown
        target_user("u6", "E9", Some(true)),  // no such person in HR
        group("g1", &["u1", "u4"]),
    ];
    let b = target_blockers(&leavers, &rule(), &target, &ids);
    let ids_blocked: Vec<&str> = b
        .iter()
        .map(|b| {
            assert_eq!(
                (b.code.as_str(), b.source_id.as_str()),
                ("LEAVER_STILL_ACTIVE", "ldap")
            );
            b.message
                .split("(id ")
                .nth(1)
                .unwrap()
                .split(')')
                .next()
                .unwrap()
        })
        .collect();
    assert_eq!(ids_blocked, vec!["u2", "u4", "u5"]);
    assert!(
        b[0].message.contains("is still active") && b[0].message.contains("terminated"),
        "{}",
        b[0].message
    );
    assert!(
        b[0].message.contains("ldap-run") && b[0].message.contains("hr-run-2"),
        "{}",
        b[0].message
    );
    assert!(
        b[1].message
            .contains("still a member of 1 group(s): group g1"),
        "{}",
        b[1].message
    );
    assert!(
        b[2].message.contains("not shown disabled"),
        "{}",
        b[2].message
    );
}

#[test]
fn a_user_removed_at_the_target_is_not_blocked() {
    let hr = hr_state(5);
    let leavers = hr_leavers(
        vec![person("2", "E2", Some(false), &[])],
        &hr,
        "employee_id",
        "2026-12-06",
    );
    let mut u = target_user("u2", "E2", Some(true));
    u.last_observed_run_id = "ldap-run-1".into();
    u.last_observed_seq = 3;
    let target = SourceState {
        source_id: "ldap".into(),
        last_run_id: "ldap-run-2".into(),
        last_complete_full_by_type: vec![TypeCompleteRun {
            entity_type: EntityType::User as i32,
            run_id: "ldap-run-2".into(),
            first_seq: 30,
        }],
        ..Default::default()
    };
    assert!(target_blockers(&leavers, &rule(), &target, &[u.clone()]).is_empty());
    // The same account, when the target's last COMPLETE run is older than
    // its observation, still blocks.
    let mut t2 = target.clone();
    t2.last_complete_full_by_type[0].first_seq = 1;
    assert_eq!(target_blockers(&leavers, &rule(), &t2, &[u]).len(), 1);
}

#[test]
fn blockers_are_bounded() {
    let hr = hr_state(5);
    let n = LEAVER_BLOCKERS_MAX + 7;
    let people = (0..n).map(|i| person(&i.to_string(), &format!("E{i}"), Some(false), &[]));
    let leavers = hr_leavers(people, &hr, "employee_id", "2026-12-06");
    let target = SourceState {
        source_id: "ldap".into(),
        ..Default::default()
    };
    let ids: Vec<IdentityState> = (0..n)
        .map(|i| target_user(&format!("u{i}"), &format!("E{i}"), Some(true)))
        .collect();
    let b = target_blockers(&leavers, &rule(), &target, &ids);
    assert_eq!(b.len(), LEAVER_BLOCKERS_MAX + 1);
    assert!(
        b.last().unwrap().message.starts_with("and 7 more"),
        "{}",
        b.last().unwrap().message
    );
}
