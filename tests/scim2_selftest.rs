//! Self-test of the `scim2-server` harness (`testkit/src/scim2.rs`) against the
//! real server: seeding 10,000 users and 20 groups through Bulk, counting,
//! paginated reads, deletes and PATCH, plus the bare-read baseline timings the
//! ledger's sync is compared with (printed; run with `--nocapture`).
use std::{collections::HashSet, time::Instant};

use govledger_testkit::scim2::{Scim2Server, bare_paginated_read};

const USERS: usize = 10_000;
const GROUPS: usize = 20;
const MEMBERS: usize = 50;

fn rate(n: usize, d: std::time::Duration) -> f64 {
    n as f64 / d.as_secs_f64()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scim2_server_harness_end_to_end() {
    let t_start = Instant::now();
    let server = Scim2Server::start();
    eprintln!(
        "scim2-server up at {} in {:.2?}",
        server.base_url,
        t_start.elapsed()
    );
    let (max_ops, max_bytes) = server.bulk_limits().await;
    eprintln!("bulk limits: maxOperations={max_ops} maxPayloadSize={max_bytes}");

    let t = Instant::now();
    let users = server.seed_users(USERS).await;
    let seed_users = t.elapsed();
    assert_eq!(users.len(), USERS);
    assert_eq!(
        users.iter().collect::<HashSet<_>>().len(),
        USERS,
        "duplicate ids"
    );
    eprintln!(
        "seed_users({USERS}): {seed_users:.2?} ({:.0} users/s)",
        rate(USERS, seed_users)
    );

    let t = Instant::now();
    let groups = server.seed_groups(GROUPS, MEMBERS, &users).await;
    eprintln!(
        "seed_groups({GROUPS} x {MEMBERS} members): {:.2?}",
        t.elapsed()
    );
    assert_eq!(groups.len(), GROUPS);
    assert_eq!(server.count_groups().await, GROUPS as u64);
    let g = server.get_group(&groups[3]).await;
    assert_eq!(g["displayName"], "group3");
    let members: Vec<&str> = g["members"]
        .as_array()
        .expect("group without members")
        .iter()
        .map(|m| m["value"].as_str().unwrap())
        .collect();
    let want: Vec<&str> = users[3 * MEMBERS..4 * MEMBERS]
        .iter()
        .map(String::as_str)
        .collect();
    assert_eq!(members, want);

    // The first user really is user0, as seeded.
    let u0 = server.get_user(&users[0]).await;
    assert_eq!(u0["userName"], "user0@example.test");
    assert_eq!(u0["active"], true);

    assert_eq!(server.count_users().await, USERS as u64);

    // Page size 100: every id once. This read is also the page-100 baseline
    // (the same loop as bare_paginated_read, keeping ids).
    let (ids, took100) = server.paginated_ids("Users", 100).await;
    assert_eq!(ids.len(), USERS);
    let unique: HashSet<&String> = ids.iter().collect();
    assert_eq!(unique.len(), USERS, "a paginated read repeated ids");
    assert_eq!(unique, users.iter().collect::<HashSet<_>>());
    eprintln!(
        "bare paginated read Users page=100: {} records in {took100:.2?} ({:.0} records/s)",
        ids.len(),
        rate(ids.len(), took100)
    );

    let (n1000, took1000) = bare_paginated_read(&server.base_url, "Users", 1000).await;
    assert_eq!(n1000, USERS);
    eprintln!(
        "bare paginated read Users page=1000: {n1000} records in {took1000:.2?} ({:.0} records/s)",
        rate(n1000, took1000)
    );

    // Above the server's maximum the page is cut, and the reader still gets all.
    let (ng, _) = bare_paginated_read(&server.base_url, "Groups", 5000).await;
    assert_eq!(ng, GROUPS);

    for id in &users[10..13] {
        server.delete_user(id).await;
    }
    assert_eq!(server.count_users().await, (USERS - 3) as u64);

    let before = server.get_user(&users[42]).await;
    server.set_active(&users[42], false).await;
    let after = server.get_user(&users[42]).await;
    assert_eq!(after["active"], false);
    assert_ne!(
        before["meta"]["version"], after["meta"]["version"],
        "PATCH must bump meta.version"
    );
    server.set_active(&users[42], true).await;
    assert_eq!(server.get_user(&users[42]).await["active"], true);

    eprintln!("selftest total {:.2?}", t_start.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scim2_server_bearer_token() {
    let server = Scim2Server::start_with_token("t0ken-for-tests");
    let ids = server.seed_users(3).await;
    assert_eq!(ids.len(), 3);
    assert_eq!(server.count_users().await, 3);
    // Without the token the data is refused.
    let resp =
        govledger_testkit::scim2::http_request(&server.base_url, None, "GET", "/Users", None)
            .await
            .unwrap();
    assert_eq!(resp.status, 401);
    let resp = govledger_testkit::scim2::http_request(
        &server.base_url,
        Some("wrong"),
        "GET",
        "/Users",
        None,
    )
    .await
    .unwrap();
    assert_eq!(resp.status, 401);
    let (n, _) = govledger_testkit::scim2::bare_paginated_read_auth(
        &server.base_url,
        server.token.as_deref(),
        "Users",
        2,
    )
    .await;
    assert_eq!(n, 3);
}
