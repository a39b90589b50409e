//! Against a real third-party SCIM 2.0 server (PyPI `scim2-server`, started by
//! the harness) seeded with 10,000 users and 20 groups: a full sync of Users and
//! Groups is COMPLETE with exact counts; users deleted at the source are
//! REMOVED_AT_SOURCE after the next complete run. Prints the sync throughput next
//! to a bare paginated read of the same server (no ledger), the baseline.

use std::time::{Duration, Instant};

use govledger_proto::v1::{EntityType, PresenceStatus, SyncMode, Verdict};
use govledger_testkit::{
    Govledger, NatsServer,
    scim2::{Scim2Server, bare_paginated_read},
};

const USERS: usize = 10_000;
const GROUPS: usize = 20;
const PAGE: usize = 100;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_sync_of_a_real_scim_server_is_complete_and_deletions_are_removed_at_source() {
    let scim = Scim2Server::start();
    let seeded = Instant::now();
    let users = scim.seed_users(USERS).await;
    scim.seed_groups(GROUPS, 50, &users).await;
    eprintln!(
        "seeded {USERS} users and {GROUPS} groups in {:?}",
        seeded.elapsed()
    );

    let nats = NatsServer::start().await;
    let gl = Govledger::serve_with_config(
        &nats.url(),
        &format!(
            r#"
[[sources]]
id = "scim2"
base_url = "{}"
resources = ["Users", "Groups"]
page_size = {PAGE}
"#,
            scim.base_url
        ),
    );

    let (bare_n, bare_t) = bare_paginated_read(&scim.base_url, "Users", PAGE).await;
    assert_eq!(bare_n, USERS);

    let t = Instant::now();
    let r = gl.sync("scim2").await;
    let sync_t = t.elapsed();
    assert_eq!(
        Verdict::try_from(r.verdict).unwrap(),
        Verdict::Complete,
        "{:?}",
        r.reasons
    );
    let run = r.run.unwrap();
    assert_eq!(run.records_unique, (USERS + GROUPS) as u64);
    assert_eq!(run.declared_total_last, Some((USERS + GROUPS) as u64));
    let by_type = |t: EntityType| {
        run.entities
            .iter()
            .find(|e| e.entity_type == t as i32)
            .map(|e| (e.unique, e.declared_last))
            .unwrap()
    };
    assert_eq!(
        by_type(EntityType::User),
        (USERS as u64, Some(USERS as u64))
    );
    assert_eq!(
        by_type(EntityType::Group),
        (GROUPS as u64, Some(GROUPS as u64))
    );
    let rate = |n: usize, d: Duration| n as f64 / d.as_secs_f64();
    eprintln!(
        "THROUGHPUT users page={PAGE}: bare read {bare_n} in {bare_t:.2?} ({:.0}/s); govledger sync of {} records (users+groups, with count probes and the probe past the end) in {sync_t:.2?} ({:.0}/s); ratio {:.2}x",
        rate(bare_n, bare_t),
        USERS + GROUPS,
        rate(USERS + GROUPS, sync_t),
        sync_t.as_secs_f64() / bare_t.as_secs_f64()
    );

    // Deleted at the source: the next COMPLETE run is evidence of their removal.
    let gone = &users[100..103];
    for id in gone {
        scim.delete_user(id).await;
    }
    let r = gl.sync("scim2").await;
    assert_eq!(
        Verdict::try_from(r.verdict).unwrap(),
        Verdict::Complete,
        "{:?}",
        r.reasons
    );
    assert_eq!(r.run.unwrap().records_unique, (USERS + GROUPS - 3) as u64);
    for (id, want) in [
        (&gone[0], PresenceStatus::RemovedAtSource),
        (&gone[2], PresenceStatus::RemovedAtSource),
        (&users[0], PresenceStatus::Present),
    ] {
        let p = gl.user("scim2", id).await;
        assert_eq!(
            PresenceStatus::try_from(p.presence).unwrap(),
            want,
            "{id}: {}",
            p.presence_reason
        );
    }

    // A delta sync reads only what changed since the last complete run.
    let changed = &users[200..202];
    for id in changed {
        scim.set_active(id, false).await;
    }
    let r = gl.sync_mode("scim2", SyncMode::Delta).await;
    assert_eq!(
        Verdict::try_from(r.verdict).unwrap(),
        Verdict::Complete,
        "{:?}",
        r.reasons
    );
    let run = r.run.unwrap();
    assert_eq!(run.records_unique, 2);
    assert_eq!(run.mode, SyncMode::Delta as i32);
    let p = gl.user("scim2", &changed[0]).await;
    assert_eq!(p.identity.unwrap().active, Some(false));
    // Absence from a delta run is not evidence: everyone else is still present.
    let p = gl.user("scim2", &users[0]).await;
    assert_ne!(
        PresenceStatus::try_from(p.presence).unwrap(),
        PresenceStatus::RemovedAtSource
    );
}

/// Lifecycle actions against the real SCIM server: each one is CONFIRMED by
/// reading the target back, and the evidence is kept on the action.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lifecycle_actions_on_a_real_scim_server_are_confirmed_by_read_back() {
    use govledger_proto::v1::{
        ActionKind, ActionOutcome, ActionRequested, GetActionRequest, SubmitActionRequest,
    };
    let scim = Scim2Server::start();
    let users = scim.seed_users(20).await;
    let groups = scim.seed_groups(2, 5, &users).await;
    let nats = NatsServer::start().await;
    let gl = Govledger::serve_with_config(
        &nats.url(),
        &format!(
            "[[sources]]\nid = \"scim2\"\nbase_url = \"{}\"\nresources = [\"Users\", \"Groups\"]\n",
            scim.base_url
        ),
    );
    assert_eq!(gl.sync("scim2").await.verdict, Verdict::Complete as i32);
    let mut c = gl.client().await;
    let member = scim.get_group(&groups[0]).await["members"][0]["value"]
        .as_str()
        .unwrap()
        .to_owned();
    let cases = [
        (ActionKind::Deactivate, users[10].clone(), String::new()),
        (ActionKind::Delete, users[11].clone(), String::new()),
        (
            ActionKind::RemoveMembership,
            member.clone(),
            groups[0].clone(),
        ),
        (
            ActionKind::AddMembership,
            users[12].clone(),
            groups[1].clone(),
        ),
    ];
    for (i, (kind, who, group)) in cases.iter().enumerate() {
        let id = c
            .submit_action(SubmitActionRequest {
                source_id: "scim2".into(),
                request: Some(ActionRequested {
                    kind: *kind as i32,
                    identity_external_id: who.clone(),
                    group_external_id: group.clone(),
                    requested_by: "test".into(),
                    idempotency_key: format!("real-{i}"),
                    ..Default::default()
                }),
            })
            .await
            .unwrap()
            .into_inner()
            .action_id;
        let deadline = Instant::now() + Duration::from_secs(30);
        let r = loop {
            if let Ok(r) = c
                .get_action(GetActionRequest {
                    as_of: None,
                    action_id: id.clone(),
                })
                .await
            {
                let r = r.into_inner();
                if r.outcome != ActionOutcome::Pending as i32 {
                    break r;
                }
            }
            assert!(
                Instant::now() < deadline,
                "{kind:?} never concluded:\n{}",
                gl.log_text()
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        };
        assert_eq!(
            r.outcome,
            ActionOutcome::Confirmed as i32,
            "{kind:?}: {}",
            r.outcome_detail
        );
        let a = r.action.unwrap();
        assert!(a.verified && a.in_effect, "{kind:?}: no read-back evidence");
        assert_eq!(a.verified_steps, vec![1]);
        assert!(
            a.outcome_detail.contains("read-back"),
            "{}",
            a.outcome_detail
        );
    }
    // The server really shows the effects.
    assert_eq!(scim.get_user(&users[10]).await["active"], false);
    let members: Vec<String> = scim.get_group(&groups[0]).await["members"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|m| m["value"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    assert!(!members.contains(&member));
}

/// The membership read-back queries against the real server: the filtered
/// list `id eq "G" and members.value eq "U"` proves membership (1 = a member,
/// 0 = not, and the control member that cannot exist matches nothing), and
/// users carry no `groups` there — so a target that hid `members` would still
/// be verifiable through the filter. The filter is built and read by the
/// executor's own functions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_scim_server_answers_the_membership_filter() {
    use govledger_ingest::{
        actions::{filter_shows, member_filter},
        http::percent_encode,
    };
    let scim = Scim2Server::start();
    let users = scim.seed_users(6).await;
    let groups = scim.seed_groups(1, 3, &users).await;
    let g = &groups[0];
    let members: Vec<String> = scim.get_group(g).await["members"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["value"].as_str().map(str::to_owned))
        .collect();
    let outsider = users.iter().find(|u| !members.contains(u)).unwrap();
    let ask = |member: &str| {
        format!(
            "/Groups?filter={}",
            percent_encode(&member_filter(g, member))
        )
    };
    assert_eq!(
        filter_shows(g, &scim.get(&ask(&members[0])).await),
        Ok(true)
    );
    assert_eq!(filter_shows(g, &scim.get(&ask(outsider)).await), Ok(false));
    assert_eq!(
        filter_shows(g, &scim.get(&ask("govledger-control-no-such-member")).await),
        Ok(false)
    );
    assert!(scim.get_user(&members[0]).await.get("groups").is_none());
}
