//! The read path end to end: `govledger serve` syncs a SCIM source through the
//! sync engine, and the ledger's verdict names exactly what went wrong. The
//! source is the fault-injecting SCIM server (testkit/src/fault_scim/), which
//! drives each failure of the taxonomy, R1–R13, on purpose.

use std::time::Duration;

use govledger_proto::v1::{
    CheckReadinessRequest, EntityType, Freshness, GetIdentityRequest, GetRunResponse,
    PresenceStatus, ReasonCode, Verdict,
};
use govledger_testkit::{
    Govledger, NatsServer,
    fault_scim::{
        FaultScim, Faults, Malformed, MalformedFault, Mutation, PageFault, RateLimitFault,
        RetryAfter, ScimConfig, TotalResults,
    },
    govledger::scim_source_toml,
    runs::{assert_lost_second_page, assert_reason, assert_run, assert_verdict, codes, verdict},
};

const USERS: usize = 250;

/// The source `hr`, with runs abandoned only after ten minutes.
fn config(base_url: &str, extra: &str) -> String {
    let api = "\n[api]\nabandon_after_ms = 600000\n";
    format!("{api}{}", scim_source_toml(base_url, extra))
}

/// A fault server with USERS users, a govledger syncing it as source "hr".
async fn setup(extra: &str) -> (NatsServer, FaultScim, Govledger) {
    setup_with(
        ScimConfig {
            users: USERS,
            ..Default::default()
        },
        extra,
    )
    .await
}

async fn setup_with(cfg: ScimConfig, extra: &str) -> (NatsServer, FaultScim, Govledger) {
    let nats = NatsServer::start().await;
    let scim = FaultScim::start_with(cfg).await;
    let gl = Govledger::serve_with_config(&nats.url(), &config(&scim.base_url, extra));
    (nats, scim, gl)
}

async fn run_with(
    faults: Faults,
    extra: &str,
) -> (GetRunResponse, FaultScim, Govledger, NatsServer) {
    let (nats, scim, gl) = setup(extra).await;
    scim.set_faults(faults);
    let r = gl.sync("hr").await;
    (r, scim, gl, nats)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clean_runs_are_always_complete_with_exact_counts() {
    let (_nats, scim, gl) = setup("").await;
    for i in 0..8 {
        let r = gl.sync("hr").await;
        assert_eq!(
            verdict(&r),
            Verdict::Complete,
            "clean run {i}: {:?}",
            r.reasons
        );
        let run = r.run.unwrap();
        assert_eq!(run.records_unique, USERS as u64);
        assert_eq!(run.declared_total_last, Some(USERS as u64));
        assert_eq!(
            (run.pages_fetched, run.page_failures, run.duplicates),
            (4, 0, 0),
            "3 data pages + the probe past the end"
        );
        assert_eq!(run.probe_past_end_items, 0);
    }
    assert_eq!(scim.user_count(), USERS);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r1_page_failing_after_retries_is_named_with_the_missing_count() {
    let faults = Faults {
        fail: vec![PageFault {
            start_index: 101,
            status: 503,
            times: u32::MAX,
        }],
        ..Default::default()
    };
    let (r, _s, _g, _n) = run_with(faults, "").await;
    assert_lost_second_page(&r, "Users:startIndex=101");
    let run = r.run.unwrap();
    assert_eq!(
        (run.pages_failed_final, run.page_failures),
        (1, 3),
        "3 attempts, all recorded"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r1_page_that_recovers_within_the_retry_budget_is_complete() {
    let faults = Faults {
        fail: vec![PageFault {
            start_index: 101,
            status: 500,
            times: 2,
        }],
        ..Default::default()
    };
    let (r, _s, _g, _n) = run_with(faults, "").await;
    assert_verdict(&r, Verdict::Complete);
    assert_eq!(r.run.unwrap().page_failures, 2);
}

async fn rate_limited(retry_after: RetryAfter, wait_min: Duration) {
    let faults = Faults {
        rate_limit: vec![RateLimitFault {
            start_index: 101,
            times: 1,
            retry_after,
        }],
        ..Default::default()
    };
    let (r, scim, _g, _n) = run_with(faults, "").await;
    assert_verdict(&r, Verdict::Complete);
    assert_eq!(r.run.unwrap().rate_limited, 1);
    let reqs: Vec<_> = scim
        .requests()
        .into_iter()
        .filter(|q| q.path_and_query.contains("startIndex=101&"))
        .collect();
    assert_eq!(reqs[0].status, 429);
    assert_eq!(reqs[1].status, 200);
    let waited = reqs[1].at.duration_since(reqs[0].at);
    assert!(
        waited >= wait_min,
        "retried after {waited:?}, before Retry-After"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r2_429_with_retry_after_seconds_is_waited_out() {
    rate_limited(RetryAfter::Seconds(1), Duration::from_millis(990)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r2_429_with_retry_after_http_date_is_waited_out() {
    // HTTP-dates have 1 s resolution: "2 s from now" is at least 1 s away.
    rate_limited(RetryAfter::HttpDate(2), Duration::from_millis(990)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r3_declared_total_too_high_is_short() {
    let faults = Faults {
        total_results: TotalResults::Offset(7),
        ..Default::default()
    };
    let (r, _s, _g, _n) = run_with(faults, "").await;
    assert_run(&r, Verdict::Incomplete, &[ReasonCode::CountShort]);
    assert!(
        r.reasons
            .iter()
            .any(|x| x.message.contains("7 of 257 records missing")),
        "{:?}",
        r.reasons
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r3_declared_total_too_low_is_caught_by_the_probe_past_the_end() {
    let faults = Faults {
        total_results: TotalResults::Offset(-60),
        ..Default::default()
    };
    let (r, _s, _g, _n) = run_with(faults, "").await;
    assert_run(
        &r,
        Verdict::Incomplete,
        &[ReasonCode::ProbeNotEmpty, ReasonCode::CountOver],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r13_declared_total_equal_to_the_page_size_is_not_believed() {
    let faults = Faults {
        total_results: TotalResults::EqualsPageSize,
        ..Default::default()
    };
    let (r, _s, _g, _n) = run_with(faults, "").await;
    assert_verdict(&r, Verdict::Incomplete);
    let c = codes(&r);
    for want in [
        ReasonCode::ProbeNotEmpty,
        ReasonCode::DeclaredEqualsPageSize,
    ] {
        assert!(c.contains(&want), "{want:?} missing: {:?}", r.reasons);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r13_declared_total_changing_between_pages_is_flagged() {
    let faults = Faults {
        total_results: TotalResults::ChangeAfter {
            requests: 1,
            offset: 12,
        },
        ..Default::default()
    };
    let (r, _s, _g, _n) = run_with(faults, "").await;
    assert_ne!(verdict(&r), Verdict::Complete);
    assert_reason(&r, ReasonCode::DeclaredTotalChanged);
    // The count probe declared 250 before the total moved to 262: the
    // reason names both, not "first unknown".
    let changed = r
        .reasons
        .iter()
        .find(|x| x.code == ReasonCode::DeclaredTotalChanged as i32)
        .unwrap();
    assert_eq!(
        changed.message,
        "the declared total changed during the run (first 250, last 262)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r4_offset_drift_inserts_give_duplicates() {
    let faults = Faults {
        mutate_after_page: Some(Mutation {
            after_requests: 1,
            insert_front: 10,
            delete_front: 0,
        }),
        ..Default::default()
    };
    let (r, _s, _g, _n) = run_with(faults, "").await;
    assert_run(&r, Verdict::Incomplete, &[ReasonCode::Duplicates]);
    assert!(r.run.unwrap().duplicates >= 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r4_offset_drift_deletes_give_skips() {
    let faults = Faults {
        mutate_after_page: Some(Mutation {
            after_requests: 1,
            insert_front: 0,
            delete_front: 10,
        }),
        ..Default::default()
    };
    let (r, _s, _g, _n) = run_with(faults, "").await;
    // 10 records slid into page 1's range after it was read: never seen.
    assert_ne!(verdict(&r), Verdict::Complete, "{:?}", r.reasons);
    let c = codes(&r);
    assert!(
        c.contains(&ReasonCode::CountShort) || c.contains(&ReasonCode::DeclaredTotalChanged),
        "{:?}",
        r.reasons
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_capping_its_page_size_is_read_completely_without_a_false_alarm() {
    // RFC 7644 lets a server return fewer than `count`: this one serves 40
    // per page although 100 are asked. Every record is read, no page is short
    // against what the server serves.
    let (_nats, scim, gl) = setup_with(
        ScimConfig {
            users: USERS,
            max_page_size: 40,
            ..Default::default()
        },
        "",
    )
    .await;
    let r = gl.sync("hr").await;
    assert_run(&r, Verdict::Complete, &[]);
    let run = r.run.unwrap();
    assert_eq!(run.records_unique, USERS as u64);
    assert_eq!(
        (run.short_pages, run.empty_pages, run.duplicates),
        (0, 0, 0)
    );
    // startIndex advanced by the records received: 1, 41, 81, ...
    let starts: Vec<String> = scim
        .requests()
        .into_iter()
        .filter(|q| q.path_and_query.contains("startIndex="))
        .map(|q| q.path_and_query)
        .collect();
    assert!(
        starts.iter().any(|q| q.contains("startIndex=41&")),
        "{starts:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_capped_server_with_a_short_page_before_the_declared_end_is_still_incomplete() {
    let (_nats, scim, gl) = setup_with(
        ScimConfig {
            users: USERS,
            max_page_size: 40,
            ..Default::default()
        },
        "",
    )
    .await;
    scim.set_faults(Faults {
        short_page: Some(81),
        ..Default::default()
    });
    let r = gl.sync("hr").await;
    assert_run(&r, Verdict::Incomplete, &[ReasonCode::ShortPage]);
    let short = r
        .reasons
        .iter()
        .find(|x| x.code == ReasonCode::ShortPage as i32)
        .unwrap();
    assert_eq!(
        short.message,
        "1 page came back with fewer records than asked before the declared end (first at Users:startIndex=81)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_capped_server_losing_a_page_loses_only_the_page_it_serves() {
    let (_nats, scim, gl) = setup_with(
        ScimConfig {
            users: USERS,
            max_page_size: 40,
            ..Default::default()
        },
        "",
    )
    .await;
    scim.set_faults(Faults {
        fail: vec![PageFault {
            start_index: 41,
            status: 503,
            times: u32::MAX,
        }],
        ..Default::default()
    });
    let r = gl.sync("hr").await;
    assert_verdict(&r, Verdict::Incomplete);
    assert_eq!(
        codes(&r),
        vec![ReasonCode::PagesFailed, ReasonCode::CountShort]
    );
    assert_eq!(
        r.reasons[1].message,
        "40 of 250 records missing: 210 unique observed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_first_page_is_not_taken_for_a_cap_once_a_later_page_brings_more() {
    let faults = Faults {
        short_page: Some(1),
        ..Default::default()
    };
    let (r, _s, _g, _n) = run_with(faults, "").await;
    assert_run(&r, Verdict::Incomplete, &[ReasonCode::ShortPage]);
    assert_eq!(
        r.reasons[0].message,
        "1 page came back with fewer records than asked before the declared end (first at Users:startIndex=1)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r2_429_with_a_retry_after_past_the_budget_is_named_as_a_rate_limit() {
    let faults = Faults {
        rate_limit: vec![RateLimitFault {
            start_index: 101,
            times: u32::MAX,
            retry_after: RetryAfter::Seconds(3600),
        }],
        ..Default::default()
    };
    let (r, _s, _g, _n) = run_with(faults, "").await;
    assert_verdict(&r, Verdict::Incomplete);
    assert_eq!(
        codes(&r),
        vec![ReasonCode::PagesFailed, ReasonCode::CountShort]
    );
    assert_eq!(
        r.reasons[0].message,
        "1 page was rate limited (HTTP 429) and given up without a retry: the server asked to wait 1h 0m (Retry-After), longer than the retry budget (at Users:startIndex=101)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r5_short_page_before_the_declared_end() {
    let faults = Faults {
        short_page: Some(101),
        ..Default::default()
    };
    let (r, _s, _g, _n) = run_with(faults, "").await;
    assert_run(&r, Verdict::Incomplete, &[ReasonCode::ShortPage]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r5_empty_page_before_the_declared_end() {
    let faults = Faults {
        empty_page: Some(101),
        ..Default::default()
    };
    let (r, _s, _g, _n) = run_with(faults, "").await;
    assert_run(
        &r,
        Verdict::Incomplete,
        &[ReasonCode::EmptyPage, ReasonCode::CountShort],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r6_malformed_body_that_persists_fails_the_page() {
    let faults = Faults {
        malformed: vec![MalformedFault {
            start_index: 201,
            times: u32::MAX,
            kind: Malformed::Truncated,
        }],
        ..Default::default()
    };
    let (r, _s, _g, _n) = run_with(faults, "").await;
    assert_verdict(&r, Verdict::Incomplete);
    assert_eq!(
        codes(&r),
        vec![ReasonCode::PagesFailed, ReasonCode::CountShort]
    );
    assert!(r.reasons[0].message.contains("startIndex=201"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r6_malformed_body_once_is_retried() {
    let faults = Faults {
        malformed: vec![MalformedFault {
            start_index: 101,
            times: 1,
            kind: Malformed::NotJson,
        }],
        ..Default::default()
    };
    let (r, _s, _g, _n) = run_with(faults, "").await;
    assert_verdict(&r, Verdict::Complete);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r7_records_without_id_or_with_wrong_types_are_rejected_not_dropped() {
    let faults = Faults {
        bad_records: Some(101),
        ..Default::default()
    };
    let (r, _s, _g, _n) = run_with(faults, "").await;
    assert_verdict(&r, Verdict::Incomplete);
    assert_eq!(
        codes(&r),
        vec![ReasonCode::CountShort, ReasonCode::RecordsRejected]
    );
    assert_eq!(r.run.unwrap().rejected, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r8_count_drop_past_the_deletion_threshold_is_suspect() {
    let (_nats, scim, gl) = setup("deletion_threshold_pct = 20").await;
    assert_eq!(verdict(&gl.sync("hr").await), Verdict::Complete);
    // Under the threshold (2%): an ordinary complete run.
    for id in scim.user_ids().into_iter().take(5) {
        scim.delete_user(&id);
    }
    let r = gl.sync("hr").await;
    assert_verdict(&r, Verdict::Complete);
    // Past it (60 of 245 = 24.5%): SUSPECT, and it stays SUSPECT against the last
    // COMPLETE run until the threshold is changed — a mass deletion is never
    // waved through silently.
    for id in scim.user_ids().into_iter().take(60) {
        scim.delete_user(&id);
    }
    for _ in 0..2 {
        let r = gl.sync("hr").await;
        assert_verdict(&r, Verdict::Suspect);
        assert_eq!(codes(&r), vec![ReasonCode::CountDrop]);
        assert!(
            r.reasons[0].message.contains("60 records disappeared")
                && r.reasons[0].message.contains("245 → 185"),
            "{:?}",
            r.reasons
        );
    }
}

/// R8 per entity type: a source that lost every group (5 of 505 records, 1%)
/// is SUSPECT naming the groups, although the user count is stable; and the
/// SUSPECT run is no evidence of removal, so the groups are not REMOVED_AT_SOURCE.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r8_count_drop_is_judged_per_entity_type() {
    let cfg = ScimConfig {
        users: 500,
        groups: 5,
        ..Default::default()
    };
    let extra = "resources = [\"Users\", \"Groups\"]\ndeletion_threshold_pct = 20";
    let (_nats, scim, gl) = setup_with(cfg, extra).await;
    let r = gl.sync("hr").await;
    assert_verdict(&r, Verdict::Complete);
    assert_eq!(r.run.unwrap().records_unique, 505);
    let groups = scim.group_ids();
    for gid in &groups {
        scim.delete_group(gid);
    }
    for _ in 0..2 {
        let r = gl.sync("hr").await;
        assert_verdict(&r, Verdict::Suspect);
        // The groups, and with them their 15 membership references.
        assert_eq!(
            codes(&r),
            vec![ReasonCode::CountDrop, ReasonCode::CountDrop]
        );
        assert!(
            r.reasons[0]
                .message
                .starts_with("groups: 5 records disappeared")
                && r.reasons[0].message.contains("(5 → 0, −100.0%)")
                && r.reasons[1]
                    .message
                    .starts_with("memberships: 15 records disappeared"),
            "{:?}",
            r.reasons
        );
    }
    let mut c = gl.client().await;
    for gid in groups {
        let r = c
            .get_identity(GetIdentityRequest {
                as_of: None,
                source_id: "hr".into(),
                entity_type: EntityType::Group as i32,
                external_id: gid,
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            PresenceStatus::try_from(r.presence).unwrap(),
            PresenceStatus::Unknown,
            "{r:?}"
        );
    }
}

/// R8 for memberships: every group came back without its members while users
/// and groups are stable (500 + 5 records): SUSPECT naming the memberships.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r8_memberships_that_vanish_are_a_count_drop() {
    let cfg = ScimConfig {
        users: 500,
        groups: 5,
        ..Default::default()
    };
    let extra = "resources = [\"Users\", \"Groups\"]\ndeletion_threshold_pct = 20";
    let (_nats, scim, gl) = setup_with(cfg, extra).await;
    assert_verdict(&gl.sync("hr").await, Verdict::Complete);
    for gid in scim.group_ids() {
        scim.set_group_members(&gid, Vec::new());
    }
    let r = gl.sync("hr").await;
    assert_verdict(&r, Verdict::Suspect);
    assert_eq!(codes(&r), vec![ReasonCode::CountDrop]);
    assert_eq!(
        r.reasons[0].message,
        "memberships: 15 records disappeared since the last complete run (15 → 0, −100.0%), \
         past the deletion threshold (20%): confirm the deletions before trusting this run (govledger accept-deletions)"
    );
    assert_eq!(r.run.unwrap().records_unique, 505);
}

/// `[sources.deletion_thresholds]` overrides the guard for one entity type:
/// groups may churn (off), users have an absolute bound besides the 20%.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r8_per_type_thresholds_from_config() {
    let cfg = ScimConfig {
        users: 100,
        groups: 10,
        ..Default::default()
    };
    let extra = "resources = [\"Users\", \"Groups\"]\ndeletion_threshold_pct = 20\n\
                 [sources.deletion_thresholds]\ngroups_pct = 0\nmemberships_pct = 0\nusers_abs = 3";
    let (_nats, scim, gl) = setup_with(cfg, extra).await;
    assert_verdict(&gl.sync("hr").await, Verdict::Complete);
    let groups = scim.group_ids();
    for gid in &groups {
        scim.delete_group(gid);
    }
    // Every group gone, but the guard of groups and memberships is off:
    // COMPLETE, so they are removed.
    assert_verdict(&gl.sync("hr").await, Verdict::Complete);
    let mut c = gl.client().await;
    let r = c
        .get_identity(GetIdentityRequest {
            as_of: None,
            source_id: "hr".into(),
            entity_type: EntityType::Group as i32,
            external_id: groups[0].clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        PresenceStatus::try_from(r.presence).unwrap(),
        PresenceStatus::RemovedAtSource
    );
    // 4 of 100 users: under 20%, past the 3 records of the users' override.
    for id in scim.user_ids().into_iter().take(4) {
        scim.delete_user(&id);
    }
    let r = gl.sync("hr").await;
    assert_verdict(&r, Verdict::Suspect);
    assert_eq!(
        r.reasons[0].message,
        "users: 4 records disappeared since the last complete run (100 → 96, −4.0%), \
         past the deletion threshold (20% or 3 records): confirm the deletions before trusting this run (govledger accept-deletions)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r9_freshness_and_the_readiness_gate() {
    let (_nats, _scim, gl) = setup("freshness_objective_ms = 4000").await;
    let mut c = gl.client().await;
    let ready = c
        .check_readiness(CheckReadinessRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(!ready.ready);
    assert_eq!(ready.blockers[0].code, "NEVER_COMPLETE");

    assert_eq!(verdict(&gl.sync("hr").await), Verdict::Complete);
    let ready = c
        .check_readiness(CheckReadinessRequest {
            source_ids: vec!["hr".into()],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(ready.ready, "{:?}", ready.blockers);
    let st = gl.source("hr").await.status.unwrap();
    assert_eq!(Freshness::try_from(st.freshness).unwrap(), Freshness::Fresh);

    tokio::time::sleep(Duration::from_millis(4_300)).await;
    let ready = c
        .check_readiness(CheckReadinessRequest {
            source_ids: vec!["hr".into(), "nope".into()],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!ready.ready);
    let got: Vec<&str> = ready.blockers.iter().map(|b| b.code.as_str()).collect();
    assert_eq!(got, vec!["STALE", "UNKNOWN_SOURCE"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r10_worker_killed_mid_run_leaves_it_abandoned_never_complete() {
    let (nats, scim, gl) = setup("").await;
    scim.set_faults(Faults {
        latency_ms: 150,
        ..Default::default()
    });
    let mut c = gl.client().await;
    let run_id = c
        .trigger_sync(govledger_proto::v1::TriggerSyncRequest {
            source_id: "hr".into(),
            mode: 0,
        })
        .await
        .unwrap()
        .into_inner()
        .run_id;
    // Let it read a page or two, then kill the whole process.
    while scim.list_requests() < 2 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let data = {
        let mut gl = gl;
        let data = std::mem::replace(&mut gl.data, tempfile::tempdir().unwrap());
        drop(gl); // SIGKILL
        data
    };
    scim.set_faults(Faults::default());
    let cfg = data.path().join("govledger.toml");
    let cfg = cfg.to_str().unwrap().to_owned();
    let gl = Govledger::serve_in(data, &nats.url(), &["--config", &cfg]);
    let r = gl.wait_decided(&run_id, Duration::from_secs(60)).await;
    assert_verdict(&r, Verdict::Abandoned);
    assert!(
        r.reasons[0].message.contains("worker restarted"),
        "{:?}",
        r.reasons
    );
    // The next run is a fresh, complete one.
    assert_eq!(verdict(&gl.sync("hr").await), Verdict::Complete);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r11_auth_expiring_mid_run_and_wrong_credentials() {
    let dir = tempfile::tempdir().unwrap();
    let tok = dir.path().join("token");
    std::fs::write(&tok, "t0ken\n").unwrap();
    let auth = format!(
        "[sources.auth]\nkind = \"bearer\"\ntoken_file = \"{}\"",
        tok.display()
    );
    let (nats, scim, gl) = setup_with(
        ScimConfig {
            users: USERS,
            bearer_token: Some("t0ken".into()),
            ..Default::default()
        },
        &auth,
    )
    .await;
    assert_eq!(verdict(&gl.sync("hr").await), Verdict::Complete);
    assert!(scim.requests().iter().all(|q| q.has_authorization));

    scim.set_faults(Faults {
        auth_expire_after_requests: Some(2),
        ..Default::default()
    });
    let r = gl.sync("hr").await;
    assert_verdict(&r, Verdict::Incomplete);
    assert_eq!(codes(&r)[0], ReasonCode::AuthFailed, "{:?}", r.reasons);
    assert!(r.reasons[0].message.contains("HTTP 401"), "{:?}", r.reasons);
    // The token itself never reaches the ledger.
    assert!(!format!("{r:?}").contains("t0ken"));
    drop(gl);

    // Wrong credentials from the first request: the sync could not run at all.
    std::fs::write(&tok, "wrong").unwrap();
    scim.set_faults(Faults::default());
    let gl = Govledger::serve_with_config(&nats.url(), &config(&scim.base_url, &auth));
    let r = gl.sync("hr").await;
    assert_verdict(&r, Verdict::Failed);
    assert_eq!(codes(&r), vec![ReasonCode::AuthFailed]);
    assert!(!gl.log_text().contains("wrong"), "a secret reached the log");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r12_cursor_cycle_is_detected() {
    let (_nats, scim, gl) = setup("paging = \"cursor\"").await;
    scim.set_faults(Faults {
        cursor_cycle: Some((3, 2)),
        ..Default::default()
    });
    let r = gl.sync("hr").await;
    assert_run(&r, Verdict::Incomplete, &[ReasonCode::PagingCycle]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cursor_paging_clean_run_is_complete() {
    let (_nats, _scim, gl) = setup("paging = \"cursor\"").await;
    let r = gl.sync("hr").await;
    assert_verdict(&r, Verdict::Complete);
    assert_eq!(r.run.unwrap().records_unique, USERS as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn absence_is_evidence_only_from_a_complete_run() {
    let (_nats, scim, gl) = setup("").await;
    assert_eq!(verdict(&gl.sync("hr").await), Verdict::Complete);
    let gone: Vec<String> = scim.user_ids().into_iter().skip(10).take(3).collect();
    for id in &gone {
        scim.delete_user(id);
    }
    // An INCOMPLETE run that did not see them: UNKNOWN, not removed.
    scim.set_faults(Faults {
        fail: vec![PageFault {
            start_index: 201,
            status: 503,
            times: u32::MAX,
        }],
        ..Default::default()
    });
    assert_eq!(verdict(&gl.sync("hr").await), Verdict::Incomplete);
    let mut c = gl.client().await;
    let presence = |c: &mut govledger_proto::v1::ledger_client::LedgerClient<_>, id: String| {
        let mut c = c.clone();
        async move {
            let r = c
                .get_identity(GetIdentityRequest {
                    as_of: None,
                    source_id: "hr".into(),
                    entity_type: EntityType::User as i32,
                    external_id: id,
                })
                .await
                .unwrap()
                .into_inner();
            PresenceStatus::try_from(r.presence).unwrap()
        }
    };
    for id in &gone {
        assert_eq!(presence(&mut c, id.clone()).await, PresenceStatus::Unknown);
    }
    // A COMPLETE run that did not see them: removed at the source.
    scim.set_faults(Faults::default());
    assert_eq!(verdict(&gl.sync("hr").await), Verdict::Complete);
    for id in &gone {
        assert_eq!(
            presence(&mut c, id.clone()).await,
            PresenceStatus::RemovedAtSource
        );
    }
    let kept = scim.user_ids()[0].clone();
    assert_eq!(presence(&mut c, kept).await, PresenceStatus::Present);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduled_syncs_run_by_themselves() {
    let (_nats, _scim, gl) = setup("schedule_interval_ms = 1000").await;
    let mut c = gl.client().await;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let runs = c
            .list_runs(govledger_proto::v1::ListRunsRequest {
                source_id: "hr".into(),
                limit: 10,
            })
            .await
            .map(|r| r.into_inner().runs)
            .unwrap_or_default();
        let complete = runs
            .iter()
            .filter(|r| r.verdict == Verdict::Complete as i32)
            .count();
        if complete >= 2 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "scheduled runs: {runs:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trigger_sync_errors_are_actionable() {
    use govledger_proto::v1::{SyncMode, TriggerSyncRequest};
    let (_nats, scim, gl) = setup("").await;
    let mut c = gl.client().await;
    let e = c
        .trigger_sync(TriggerSyncRequest {
            source_id: "nope".into(),
            mode: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::NotFound);
    assert!(e.message().contains("[[sources]]"), "{}", e.message());
    // Delta without a complete run to start from.
    let e = c
        .trigger_sync(TriggerSyncRequest {
            source_id: "hr".into(),
            mode: SyncMode::Delta as i32,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::FailedPrecondition);
    assert!(e.message().contains("full sync first"), "{}", e.message());
    // One run at a time per source.
    scim.set_faults(Faults {
        latency_ms: 100,
        ..Default::default()
    });
    let first = c
        .trigger_sync(TriggerSyncRequest {
            source_id: "hr".into(),
            mode: 0,
        })
        .await
        .unwrap()
        .into_inner()
        .run_id;
    let e = c
        .trigger_sync(TriggerSyncRequest {
            source_id: "hr".into(),
            mode: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::FailedPrecondition);
    assert!(e.message().contains(&first), "{}", e.message());
    let e = c
        .trigger_sync(TriggerSyncRequest {
            source_id: "hr".into(),
            mode: 9,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_slower_than_the_request_timeout_fails_as_timeout() {
    let (_nats, scim, gl) = setup("timeout_ms = 300").await;
    scim.set_faults(Faults {
        slow: Some((101, 2_000)),
        ..Default::default()
    });
    let r = gl.sync("hr").await;
    assert_verdict(&r, Verdict::Incomplete);
    assert_eq!(
        codes(&r),
        vec![ReasonCode::PagesFailed, ReasonCode::CountShort]
    );
    let run = r.run.unwrap();
    assert_eq!(
        run.page_failures, 3,
        "each attempt timed out and was recorded"
    );
}

/// Absence is evidence per entity type: after the source's `resources` went
/// from Users+Groups to Users only, a COMPLETE run that read no groups does not
/// make the groups REMOVED_AT_SOURCE, while a user deleted at the source is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_complete_run_that_read_no_groups_is_no_evidence_against_them() {
    let nats = NatsServer::start().await;
    let scim = FaultScim::start_with(ScimConfig {
        users: 20,
        groups: 3,
        ..Default::default()
    })
    .await;
    let both = config(&scim.base_url, "resources = [\"Users\", \"Groups\"]");
    let mut gl = Govledger::serve_with_config(&nats.url(), &both);
    let r = gl.sync("hr").await;
    assert_verdict(&r, Verdict::Complete);
    assert_eq!(r.run.unwrap().records_unique, 23);
    // Restart on the same data folder with Users only.
    gl.stop();
    let data = gl.take_data();
    drop(gl);
    let cfg = data.path().join("govledger.toml");
    std::fs::write(&cfg, config(&scim.base_url, "resources = [\"Users\"]")).unwrap();
    let cfg = cfg.to_str().unwrap().to_owned();
    let gl = Govledger::serve_in(data, &nats.url(), &["--config", &cfg]);
    let users = scim.user_ids();
    scim.delete_user(&users[0]);
    let r = gl.sync("hr").await;
    assert_verdict(&r, Verdict::Complete);
    assert_eq!(r.run.unwrap().records_unique, 19);
    let mut c = gl.client().await;
    let mut presence = async |entity_type: EntityType, external_id: &str| {
        let r = c
            .get_identity(GetIdentityRequest {
                as_of: None,
                source_id: "hr".into(),
                entity_type: entity_type as i32,
                external_id: external_id.to_owned(),
            })
            .await
            .unwrap()
            .into_inner();
        (
            PresenceStatus::try_from(r.presence).unwrap(),
            r.presence_reason,
        )
    };
    for gid in scim.group_ids() {
        let (p, why) = presence(EntityType::Group, &gid).await;
        assert_ne!(p, PresenceStatus::RemovedAtSource, "group {gid}: {why}");
        assert_eq!(p, PresenceStatus::Unknown, "group {gid}: {why}");
        assert!(why.contains("did not read groups"), "{why}");
    }
    let (p, why) = presence(EntityType::User, &users[0]).await;
    assert_eq!(p, PresenceStatus::RemovedAtSource, "{why}");
    let (p, why) = presence(EntityType::User, &users[1]).await;
    assert_eq!(p, PresenceStatus::Present, "{why}");
}
