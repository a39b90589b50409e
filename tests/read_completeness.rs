//! Completeness of what a SCIM sync reads, end to end against the
//! fault-injecting SCIM server: group member lists capped in list answers
//! (read in full one group at a time, or INCOMPLETE naming the groups, never
//! a false DRIFTED), and page sizes negotiated from `/ServiceProviderConfig`
//! (a capped server is no false alarm, with or without `totalResults`).

use std::time::{Duration, Instant};

use govledger_proto::v1::{
    ActionKind, ActionOutcome, ActionRequested, EntityType, GetActionRequest, GetActionResponse,
    GetIdentityRequest, IdentityState, ReasonCode, Verdict,
};
use govledger_testkit::{
    Govledger, NatsServer,
    fault_scim::{
        FaultScim, Faults, MembersCapped, MembersShown, ScimConfig, SpcAnswer, TotalResults,
    },
    govledger::scim_source_toml,
    runs::{assert_outcome, assert_run, codes},
};

const USERS: usize = 250;

/// A fault server of USERS users and 5 groups, govledger syncing Users and
/// Groups of it as source "hr" with `extra` config lines.
async fn setup(extra: &str) -> (NatsServer, FaultScim, Govledger) {
    setup_with(
        ScimConfig {
            users: USERS,
            groups: 5,
            ..Default::default()
        },
        extra,
    )
    .await
}

async fn setup_with(cfg: ScimConfig, extra: &str) -> (NatsServer, FaultScim, Govledger) {
    let nats = NatsServer::start().await;
    let scim = FaultScim::start_with(cfg).await;
    let toml = format!(
        "\n[api]\nabandon_after_ms = 600000\n{}",
        scim_source_toml(&scim.base_url, extra)
    );
    let gl = Govledger::serve_with_config(&nats.url(), &toml);
    (nats, scim, gl)
}

const GROUPS: &str = "resources = [\"Users\", \"Groups\"]";
const SIZES: [usize; 5] = [10, 6, 2, 4, 3];

/// Gives the five groups `sizes` members (users u0000000..); with the
/// usual 10, 6, 2, 4, 3 and lists capped at 4, g0, g1 and g3 are listed with 4.
fn size_groups(scim: &FaultScim, sizes: [usize; 5]) -> Vec<String> {
    let users = scim.user_ids();
    let groups = scim.group_ids();
    for (g, n) in groups.iter().zip(sizes) {
        scim.set_group_members(g, users[..n].to_vec());
    }
    groups
}

async fn group(gl: &Govledger, gid: &str) -> IdentityState {
    group_of(gl, "hr", gid).await
}

async fn group_of(gl: &Govledger, source: &str, gid: &str) -> IdentityState {
    gl.client()
        .await
        .get_identity(GetIdentityRequest {
            as_of: None,
            source_id: source.into(),
            entity_type: EntityType::Group as i32,
            external_id: gid.into(),
        })
        .await
        .unwrap()
        .into_inner()
        .identity
        .unwrap()
}

/// Adds `user` to `gid` through an action and waits for its outcome.
async fn add_member(gl: &Govledger, user: &str, gid: &str) -> String {
    let id = gl
        .submit_action(
            "hr",
            ActionRequested {
                kind: ActionKind::AddMembership as i32,
                identity_external_id: user.into(),
                group_external_id: gid.into(),
                requested_by: "alice@corp".into(),
                reason: "joiner".into(),
                ticket: "HR-7".into(),
                idempotency_key: format!("add-{user}-{gid}"),
                ..Default::default()
            },
        )
        .await;
    let r = action(gl, &id).await;
    assert_outcome(&r, ActionOutcome::Confirmed);
    id
}

/// The action's answer once it is concluded (60 s at most; it may not be
/// in the projection yet right after its submission).
async fn action(gl: &Govledger, id: &str) -> GetActionResponse {
    let mut c = gl.client().await;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let got = c
            .get_action(GetActionRequest {
                as_of: None,
                action_id: id.into(),
            })
            .await;
        match got {
            Ok(r) if r.get_ref().outcome != ActionOutcome::Pending as i32 => {
                return r.into_inner();
            }
            _ if Instant::now() > deadline => panic!("action {id} not concluded: {got:?}"),
            _ => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

/// List answers cap `members` at 4; single GETs show them all. The groups
/// at the cap are read one by one: the run is COMPLETE with every member,
/// and a member added beyond the cap by a CONFIRMED action is no drift.
/// (On the old code g0 kept 4 of its 10 members and the action turned DRIFTED.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capped_member_lists_are_read_in_full_one_group_at_a_time() {
    let (_nats, scim, gl) = setup(GROUPS).await;
    let groups = size_groups(&scim, SIZES);
    scim.set_faults(Faults {
        members_capped: Some(MembersCapped {
            list: 4,
            single: None,
            ranged: false,
        }),
        ..Default::default()
    });
    let first = gl.sync("hr").await;
    // A member beyond the cap, added by a CONFIRMED action, stays one.
    let user = scim.user_ids()[100].clone();
    let id = add_member(&gl, &user, &groups[0]).await;
    for _ in 0..3 {
        let r = gl.sync("hr").await;
        assert_outcome(&action(&gl, &id).await, ActionOutcome::Confirmed);
        assert_run(&r, Verdict::Complete, &[]);
        assert!(group(&gl, &groups[0]).await.memberships.contains(&user));
    }
    let g0 = group(&gl, &groups[0]).await;
    assert_eq!(g0.memberships.len(), 11, "{:?}", g0.memberships);
    assert!(!g0.memberships_incomplete);
    assert_eq!(group(&gl, &groups[3]).await.memberships.len(), 4);
    assert_run(&first, Verdict::Complete, &[]);
    let run = first.run.unwrap();
    assert_eq!(run.member_reads, 3, "g0, g1 and g3 share the largest count");
    assert_eq!(run.memberships_incomplete_groups, 0);
}

/// Single GETs are capped too (at the configured member_list_cap): the
/// groups at the cap are INCOMPLETE, named; their earlier members are kept
/// (unknown, not removed) and a confirmed add beyond the cap is no drift.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn member_lists_capped_on_every_read_are_incomplete_never_drifted() {
    let (_nats, scim, gl) = setup(&format!("{GROUPS}\nmember_list_cap = 4")).await;
    // No group of exactly 4 yet: a list of exactly the configured cap is in doubt.
    let groups = size_groups(&scim, [10, 6, 2, 5, 3]);
    assert_run(&gl.sync("hr").await, Verdict::Complete, &[]);
    let user = scim.user_ids()[100].clone();
    let id = add_member(&gl, &user, &groups[0]).await;
    scim.set_faults(Faults {
        members_capped: Some(MembersCapped {
            list: 4,
            single: Some(4),
            ranged: false,
        }),
        ..Default::default()
    });
    let r = gl.sync("hr").await;
    assert_run(&r, Verdict::Incomplete, &[ReasonCode::MembershipIncomplete]);
    assert_eq!(codes(&r), vec![ReasonCode::MembershipIncomplete]);
    assert_eq!(
        r.reasons[0].message,
        format!(
            "3 groups' member lists were capped, ranged or left out of the listing and could not \
             be read in full ({}, {}, {}): members not listed are unknown; raise member_fetch_max (groups read one by one per run) \
             or the server's member list cap, then sync again",
            groups[0], groups[1], groups[3]
        )
    );
    let g0 = group(&gl, &groups[0]).await;
    assert!(g0.memberships_incomplete);
    // The 4 shown and the 6 others of the last full read, kept (unknown now);
    // the member the action added is beyond every list since: no evidence.
    assert_eq!(g0.memberships.len(), 10);
    assert!(!g0.memberships.contains(&user));
    assert_outcome(&action(&gl, &id).await, ActionOutcome::Confirmed);
    assert!(!group(&gl, &groups[4]).await.memberships_incomplete);
}

/// `member_fetch_max` bounds the individual reads: past it the capped
/// groups are INCOMPLETE, named in the order listed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_member_fetch_bound_leaves_the_rest_incomplete() {
    let (_nats, scim, gl) = setup(&format!("{GROUPS}\nmember_fetch_max = 1")).await;
    let groups = size_groups(&scim, SIZES);
    scim.set_faults(Faults {
        members_capped: Some(MembersCapped {
            list: 4,
            single: None,
            ranged: false,
        }),
        ..Default::default()
    });
    let r = gl.sync("hr").await;
    assert_eq!(codes(&r), vec![ReasonCode::MembershipIncomplete]);
    assert!(
        r.reasons[0].message.starts_with(&format!(
            "2 groups' member lists were capped, ranged or left out of the listing and could not \
             be read in full ({}, {})",
            groups[1], groups[3]
        )),
        "{:?}",
        r.reasons
    );
    assert_eq!(r.run.unwrap().member_reads, 1);
    assert_eq!(group(&gl, &groups[0]).await.memberships.len(), 10);
}

/// A ranged `members;range=0-3` list is read again in full; where the full
/// read is capped too, the group stays INCOMPLETE.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ranged_member_lists_are_read_again_or_incomplete() {
    let (_nats, scim, gl) = setup(GROUPS).await;
    let groups = size_groups(&scim, SIZES);
    let ranged = |single| MembersCapped {
        list: 4,
        single,
        ranged: true,
    };
    scim.set_faults(Faults {
        members_capped: Some(ranged(None)),
        ..Default::default()
    });
    let r = gl.sync("hr").await;
    assert_run(&r, Verdict::Complete, &[]);
    assert_eq!(group(&gl, &groups[1]).await.memberships.len(), 6);
    scim.set_faults(Faults {
        members_capped: Some(ranged(Some(4))),
        ..Default::default()
    });
    let r = gl.sync("hr").await;
    assert_eq!(codes(&r), vec![ReasonCode::MembershipIncomplete]);
    assert!(
        r.reasons[0].message.starts_with(&format!(
            "2 groups' member lists were capped, ranged or left out of the listing and could not \
             be read in full ({}, {})",
            groups[0], groups[1]
        )),
        "{:?}",
        r.reasons
    );
}

/// List answers leave `members` out of every group (Entra ID-style); single
/// GETs show them (always, or only asked for by name). No listed group
/// shows members, so none is taken as empty: each is read one by one, the
/// run is COMPLETE with every membership (the empty group, empty on both
/// single answers, is empty), and a CONFIRMED add-membership is no drift.
/// (On the old code every group was stored without members, the run still
/// COMPLETE, and the action turned DRIFTED on the next sync.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn member_lists_left_out_of_every_listed_group_are_read_one_by_one() {
    let sizes = [10, 6, 0, 4, 3];
    for shown in [MembersShown::Always, MembersShown::OnRequest] {
        let (_nats, scim, gl) = setup(GROUPS).await;
        let groups = size_groups(&scim, sizes);
        scim.set_faults(Faults {
            members_left_out_of_lists: true,
            members_shown: shown,
            ..Default::default()
        });
        let first = gl.sync("hr").await;
        assert_run(&first, Verdict::Complete, &[]);
        for (g, n) in groups.iter().zip(sizes) {
            let got = group(&gl, g).await;
            assert_eq!(got.memberships.len(), n, "{shown:?} {g}");
            assert!(!got.memberships_incomplete, "{shown:?} {g}");
        }
        let run = first.run.unwrap();
        // Every group read once; a second time (`?attributes=members`) where
        // the first answer showed no members: the empty group, or every
        // group when members are shown only on request.
        let reads = if shown == MembersShown::Always { 6 } else { 10 };
        assert_eq!(run.member_reads, reads, "{shown:?}");
        let single_gets = scim
            .requests()
            .iter()
            .filter(|q| q.path_and_query.starts_with("/v2/Groups/"))
            .count();
        assert_eq!(single_gets as u64, reads, "{shown:?}");
        assert_eq!(run.memberships_incomplete_groups, 0);
        let user = scim.user_ids()[100].clone();
        let id = add_member(&gl, &user, &groups[3]).await;
        for _ in 0..2 {
            let r = gl.sync("hr").await;
            assert_run(&r, Verdict::Complete, &[]);
            assert_outcome(&action(&gl, &id).await, ActionOutcome::Confirmed);
            assert!(group(&gl, &groups[3]).await.memberships.contains(&user));
        }
    }
}

/// Members left out of every listed group and `member_fetch_max` smaller
/// than the group count: the groups past the bound are INCOMPLETE, named,
/// their members of earlier runs kept as unknown (never taken as removed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn member_lists_left_out_past_the_fetch_bound_are_incomplete() {
    let (_nats, scim, gl) = setup(&format!("{GROUPS}\nmember_fetch_max = 2")).await;
    let groups = size_groups(&scim, SIZES);
    assert_run(&gl.sync("hr").await, Verdict::Complete, &[]);
    scim.set_faults(Faults {
        members_left_out_of_lists: true,
        ..Default::default()
    });
    let r = gl.sync("hr").await;
    assert_run(&r, Verdict::Incomplete, &[ReasonCode::MembershipIncomplete]);
    assert_eq!(codes(&r), vec![ReasonCode::MembershipIncomplete]);
    assert!(
        r.reasons[0].message.starts_with(&format!(
            "3 groups' member lists were capped, ranged or left out of the listing and could not \
             be read in full ({}, {}, {})",
            groups[2], groups[3], groups[4]
        )),
        "{:?}",
        r.reasons
    );
    let run = r.run.unwrap();
    assert_eq!(run.member_reads, 2);
    assert_eq!(run.memberships_incomplete_groups, 3);
    for (g, n) in groups.iter().zip(SIZES) {
        let got = group(&gl, g).await;
        assert_eq!(got.memberships.len(), n, "{g}: read, or kept from before");
    }
    assert!(!group(&gl, &groups[0]).await.memberships_incomplete);
    assert!(group(&gl, &groups[4]).await.memberships_incomplete);
}

/// A server serving 40 per page declares it in /ServiceProviderConfig: the
/// run asks for 40 (not the configured 100), records the negotiated size
/// and is COMPLETE. Declared as `filter.maxResults` only (as scim2-server
/// does), or not at all / a failing endpoint (the configured size, said why).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_size_is_negotiated_from_the_service_provider_config() {
    let cfg = ScimConfig {
        users: USERS,
        max_page_size: 40,
        ..Default::default()
    };
    let (_nats, scim, gl) = setup_with(cfg, "").await;
    for (spc, want, note) in [
        (SpcAnswer::Honest, 40, ""),
        (SpcAnswer::MaxResults(40), 40, ""),
        (
            SpcAnswer::Omitted,
            100,
            "/ServiceProviderConfig declares no maximum page size: asked for the configured 100",
        ),
        (
            SpcAnswer::Fails(404),
            100,
            "/ServiceProviderConfig could not be read (",
        ),
    ] {
        scim.set_faults(Faults {
            spc,
            ..Default::default()
        });
        scim.clear_requests();
        let r = gl.sync("hr").await;
        assert_run(&r, Verdict::Complete, &[]);
        let run = r.run.unwrap();
        assert_eq!(run.records_unique, USERS as u64, "{spc:?}");
        assert_eq!(run.negotiated_page_size, want, "{spc:?}");
        assert!(
            run.page_size_note.starts_with(note),
            "{spc:?}: {}",
            run.page_size_note
        );
        let asked = format!("count={want}");
        assert!(
            scim.requests()
                .iter()
                .filter(|q| q.path_and_query.contains("startIndex="))
                .all(|q| q.path_and_query.contains(&asked)),
            "{spc:?}: {:?}",
            scim.requests()
        );
    }
}

/// A server capping its pages at 40 and sending no totalResults: the
/// listing goes on past the first short page (the cap) until an empty page,
/// with or without a usable ServiceProviderConfig. (On the old code the run
/// stopped after 40 records: INCOMPLETE, PROBE_NOT_EMPTY.) A page really
/// short is still caught, by the probe past the end, never as a SHORT_PAGE
/// of every page.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_capped_server_without_totals_is_read_to_the_end() {
    let cfg = ScimConfig {
        users: USERS,
        max_page_size: 40,
        ..Default::default()
    };
    let (_nats, scim, gl) = setup_with(cfg, "").await;
    for spc in [SpcAnswer::Omitted, SpcAnswer::Honest] {
        scim.set_faults(Faults {
            spc,
            total_results: TotalResults::Absent,
            ..Default::default()
        });
        for _ in 0..2 {
            let r = gl.sync("hr").await;
            assert_run(&r, Verdict::Complete, &[]);
            let run = r.run.unwrap();
            assert_eq!(run.records_unique, USERS as u64, "{spc:?}");
            assert_eq!(run.declared_total_last, None);
            assert_eq!((run.short_pages, run.probe_past_end_items), (0, 0));
        }
    }
    scim.set_faults(Faults {
        spc: SpcAnswer::Omitted,
        total_results: TotalResults::Absent,
        short_page: Some(81),
        ..Default::default()
    });
    let r = gl.sync("hr").await;
    assert_eq!(
        codes(&r),
        vec![ReasonCode::ProbeNotEmpty],
        "{:?}",
        r.reasons
    );
}

/// Three full syncs in a row, each COMPLETE without a reason; returns the last.
async fn three_clean_runs(gl: &Govledger, source: &str) -> govledger_proto::v1::GetRunResponse {
    let mut last = None;
    for i in 0..3 {
        let r = gl.sync(source).await;
        assert_eq!(
            (r.verdict, codes(&r)),
            (Verdict::Complete as i32, vec![]),
            "{source} run {i}: {:?}",
            r.reasons
        );
        last = Some(r);
    }
    last.unwrap()
}

fn scim2_toml(base_url: &str) -> String {
    format!(
        "[[sources]]\nid = \"scim2\"\nbase_url = \"{base_url}\"\nresources = [\"Users\", \"Groups\"]\npage_size = 100\n"
    )
}

/// Clean sources stay COMPLETE run after run, with no new false alarm: the
/// real scim2-server by index (its groups all of one size, so read one by
/// one each run) and capped at 40 per page (negotiated from its
/// ServiceProviderConfig), the fault server by cursor, and the fault server
/// capping member lists (read in full, a member added beyond the cap never
/// DRIFTED).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clean_runs_stay_complete_run_after_run() {
    let nats = NatsServer::start().await;
    for (max_results, negotiated) in [(None, 100), (Some(40), 40)] {
        let scim = match max_results {
            None => govledger_testkit::scim2::Scim2Server::start(),
            Some(n) => govledger_testkit::scim2::Scim2Server::start_with_max_results(n),
        };
        let users = scim.seed_users(300).await;
        scim.seed_groups(6, 20, &users).await;
        let gl = Govledger::serve_with_config(&nats.url(), &scim2_toml(&scim.base_url));
        let run = three_clean_runs(&gl, "scim2").await.run.unwrap();
        assert_eq!(run.records_unique, 306);
        assert_eq!(run.negotiated_page_size, negotiated);
        assert_eq!(
            run.server_max_page_size,
            Some(max_results.unwrap_or(1000) as u32)
        );
        assert_eq!(run.member_reads, 6, "six groups of 20: each read once");
    }

    let (_n, scim, gl) = setup(&format!("{GROUPS}\npaging = \"cursor\"")).await;
    let run = three_clean_runs(&gl, "hr").await.run.unwrap();
    assert_eq!(run.records_unique, USERS as u64 + 5);

    let (_n, scim2, gl2) = setup(GROUPS).await;
    let groups = size_groups(&scim2, SIZES);
    scim2.set_faults(Faults {
        members_capped: Some(MembersCapped {
            list: 4,
            single: None,
            ranged: false,
        }),
        ..Default::default()
    });
    three_clean_runs(&gl2, "hr").await;
    let user = scim2.user_ids()[200].clone();
    let id = add_member(&gl2, &user, &groups[1]).await;
    three_clean_runs(&gl2, "hr").await;
    assert_outcome(&action(&gl2, &id).await, ActionOutcome::Confirmed);
    assert_eq!(group(&gl2, &groups[1]).await.memberships.len(), 7);
    drop(scim);
}

/// The real scim2-server leaves `members` out of an empty group (RFC 7643
/// §2.5: unassigned is empty). While another group shows members, the
/// empty ones are empty and nothing is read one by one; run after run
/// COMPLETE. Once every group is empty, no listed group shows members:
/// each is read one by one, both answers show none, and they are empty
/// (still COMPLETE, no membership left behind).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_groups_of_the_real_server_are_empty() {
    let nats = NatsServer::start().await;
    let scim = govledger_testkit::scim2::Scim2Server::start();
    let users = scim.seed_users(40).await;
    let groups = scim.seed_groups(4, 0, &users).await;
    scim.patch_members(&groups[1], &users[..5], &[]).await;
    scim.patch_members(&groups[3], &users[5..8], &[]).await;
    assert!(
        scim.get_group(&groups[0]).await.get("members").is_none(),
        "scim2-server omits an empty member list"
    );
    let gl = Govledger::serve_with_config(&nats.url(), &scim2_toml(&scim.base_url));
    let run = three_clean_runs(&gl, "scim2").await.run.unwrap();
    assert_eq!(
        run.member_reads, 0,
        "one group at the largest count: no suspect"
    );
    for (g, n) in groups.iter().zip([0, 5, 0, 3]) {
        let got = group_of(&gl, "scim2", g).await;
        assert_eq!(got.memberships.len(), n, "{g}");
        assert!(!got.memberships_incomplete, "{g}");
    }
    scim.patch_members(&groups[1], &[], &users[..5]).await;
    scim.patch_members(&groups[3], &[], &users[5..8]).await;
    let run = three_clean_runs(&gl, "scim2").await.run.unwrap();
    assert_eq!(
        run.member_reads, 8,
        "each group, twice (plain, then members by name)"
    );
    for g in &groups {
        let got = group_of(&gl, "scim2", g).await;
        assert!(got.memberships.is_empty(), "{g}: {:?}", got.memberships);
        assert!(!got.memberships_incomplete, "{g}");
    }
}
