//! The REST paging styles beside page numbers from 1 and `Link` headers
//! (those are in `rest_source.rs`), against the fault-injecting server's REST
//! API: page numbers from 0 (`page_start = 0`), offset/limit
//! (`paging = "offset"`) and a cursor in the body sent back as a query
//! parameter (`paging = "cursor"`), each clean (with and without a declared
//! total) and with the faults that must not pass silently: a lost page, a
//! page size of the server's own, a page past the end that repeats the last
//! one, a cursor that repeats. Every sync must be decided within 60 s (a
//! listing that loops never is).

use govledger_proto::v1::{GetRunResponse, ReasonCode, Verdict};
use govledger_testkit::{
    Govledger, NatsServer,
    fault_scim::{FaultScim, Faults, PageFault, RestQuirks, ScimConfig, TotalResults},
    govledger::rest_source_toml,
    runs::{assert_run, assert_verdict, codes},
};

const USERS: usize = 250;

async fn start(
    paging: &str,
    path: &str,
    shape: &str,
    page_size: u32,
    cfg: ScimConfig,
    faults: Faults,
) -> (NatsServer, FaultScim, Govledger) {
    let nats = NatsServer::start().await;
    let scim = FaultScim::start_with(ScimConfig {
        users: USERS,
        ..cfg
    })
    .await;
    scim.set_faults(faults);
    let api = scim.base_url.trim_end_matches("/v2").to_owned() + "/api";
    let gl = Govledger::serve_with_config(
        &nats.url(),
        &rest_source_toml(&api, paging, path, shape, page_size),
    );
    (nats, scim, gl)
}

async fn sync_bounded(gl: &Govledger) -> GetRunResponse {
    tokio::time::timeout(std::time::Duration::from_secs(60), gl.sync("app"))
        .await
        .expect("no verdict within 60 s: the listing does not end")
}

/// The REST list requests the server answered: (path and query, status).
fn requests(scim: &FaultScim) -> Vec<(String, u16)> {
    scim.requests()
        .into_iter()
        .filter(|r| r.path_and_query.starts_with("/api/"))
        .map(|r| (r.path_and_query, r.status))
        .collect()
}

fn complete_with_every_user(r: &GetRunResponse) {
    assert_verdict(r, Verdict::Complete);
    assert!(codes(r).is_empty(), "{:?}", r.reasons);
    assert_eq!(r.run.as_ref().unwrap().records_unique, USERS as u64);
}

const TOTAL: &str = "items_pointer = \"/users\"\ntotal_pointer = \"/total\"";
const NO_TOTAL: &str = "items_pointer = \"/users\"";

fn quirks(rest: RestQuirks) -> Faults {
    Faults {
        rest,
        ..Default::default()
    }
}

// Old code: the config cannot say it (unknown key `page_start`): serve exits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn page_numbers_from_zero() {
    let zero = quirks(RestQuirks {
        zero_based_pages: true,
        ..Default::default()
    });
    for shape in [TOTAL, NO_TOTAL] {
        let shape = format!("{shape}\npage_start = 0");
        let (_n, scim, gl) = start(
            "page-number",
            "users",
            &shape,
            100,
            ScimConfig::default(),
            zero.clone(),
        )
        .await;
        let r = sync_bounded(&gl).await;
        complete_with_every_user(&r);
        let reqs = requests(&scim);
        assert!(reqs[0].0.contains("page=0&"), "{reqs:?}");
        assert!(reqs.iter().all(|(_, s)| *s == 200), "{reqs:?}");
    }
}

// Old code: `paging = "offset"` is not a REST paging: serve exits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offset_limit_paging_clean_and_with_a_lost_page() {
    let (_n, scim, gl) = start(
        "offset",
        "users-offset",
        TOTAL,
        100,
        ScimConfig::default(),
        Faults::default(),
    )
    .await;
    complete_with_every_user(&sync_bounded(&gl).await);
    let reqs = requests(&scim);
    assert!(
        reqs[0].0.ends_with("?offset=0&limit=100") && reqs[1].0.ends_with("?offset=100&limit=100"),
        "{reqs:?}"
    );
    // Three full syncs stay COMPLETE.
    complete_with_every_user(&sync_bounded(&gl).await);

    scim.set_faults(Faults {
        fail: vec![PageFault {
            start_index: 101,
            status: 502,
            times: u32::MAX,
        }],
        ..Default::default()
    });
    let r = sync_bounded(&gl).await;
    assert_eq!(
        codes(&r),
        vec![ReasonCode::PagesFailed, ReasonCode::CountShort],
        "{:?}",
        r.reasons
    );
    assert!(
        r.reasons[0].message.contains("users-offset:offset=100"),
        "{:?}",
        r.reasons
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offset_paging_counts_records_received_and_ends_at_a_repeat() {
    // The server serves 30 whatever is asked: offsets advance by 30.
    let capped = ScimConfig {
        max_page_size: 30,
        ..Default::default()
    };
    let (_n, scim, gl) = start(
        "offset",
        "users-offset",
        TOTAL,
        100,
        capped,
        Faults::default(),
    )
    .await;
    complete_with_every_user(&sync_bounded(&gl).await);
    let reqs = requests(&scim);
    assert!(reqs[1].0.contains("offset=30&"), "{reqs:?}");
    drop(gl);

    // No total, and past the end the API answers the last page again.
    let q = quirks(RestQuirks {
        past_end_repeats_last: true,
        ..Default::default()
    });
    let (_n, scim, gl) = start(
        "offset",
        "users-offset",
        NO_TOTAL,
        50,
        ScimConfig::default(),
        q,
    )
    .await;
    complete_with_every_user(&sync_bounded(&gl).await);
    assert_eq!(requests(&scim).len(), 6, "5 pages and the repeat");
}

const CURSOR: &str = "items_pointer = \"/users\"\ncursor_pointer = \"/meta/next_cursor\"\ncursor_param = \"cursor\"\nsize_param = \"limit\"";

// Old code: `paging = "cursor"` is SCIM only and `cursor_pointer` unknown:
// serve exits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cursor_in_the_body_clean_with_and_without_a_total() {
    for shape in [
        format!("{CURSOR}\ntotal_header = \"X-Total-Count\""),
        CURSOR.to_owned(),
    ] {
        let (_n, scim, gl) = start(
            "cursor",
            "users-cursor",
            &shape,
            100,
            ScimConfig::default(),
            Faults::default(),
        )
        .await;
        complete_with_every_user(&sync_bounded(&gl).await);
        complete_with_every_user(&sync_bounded(&gl).await);
        let reqs = requests(&scim);
        assert_eq!(reqs.len(), 6, "3 pages a run: {reqs:?}");
        assert!(reqs[0].0.ends_with("users-cursor?limit=100"), "{reqs:?}");
        assert!(reqs[1].0.contains("cursor="), "{reqs:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cursor_that_repeats_is_a_paging_cycle_and_a_lost_page_stops_the_chain() {
    let shape = format!("{CURSOR}\ntotal_header = \"X-Total-Count\"");
    let cycle = Faults {
        link_cycle: Some((3, 2)),
        ..Default::default()
    };
    let (_n, scim, gl) = start(
        "cursor",
        "users-cursor",
        &shape,
        50,
        ScimConfig::default(),
        cycle,
    )
    .await;
    let r = sync_bounded(&gl).await;
    assert_run(&r, Verdict::Incomplete, &[ReasonCode::PagingCycle]);
    assert_eq!(
        requests(&scim).len(),
        3,
        "pages 1..3, then the cycle is seen"
    );

    scim.set_faults(Faults {
        fail: vec![PageFault {
            start_index: 101,
            status: 503,
            times: u32::MAX,
        }],
        ..Default::default()
    });
    let r = sync_bounded(&gl).await;
    assert_run(
        &r,
        Verdict::Incomplete,
        &[ReasonCode::PagesFailed, ReasonCode::CountShort],
    );
    assert!(
        r.reasons.iter().any(|x| x
            .message
            .contains("cursor paging cannot skip a failed page")),
        "{:?}",
        r.reasons
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cursor_past_the_end_that_repeats_the_last_page_ends_the_listing() {
    let q = quirks(RestQuirks {
        past_end_repeats_last: true,
        ..Default::default()
    });
    // No total: the page that brings nothing new ends the listing.
    let (_n, scim, gl) = start(
        "cursor",
        "users-cursor",
        CURSOR,
        50,
        ScimConfig::default(),
        q.clone(),
    )
    .await;
    complete_with_every_user(&sync_bounded(&gl).await);
    assert_eq!(requests(&scim).len(), 6, "5 pages and the repeat");
    drop(gl);

    // A total above what the API serves: the repeat comes before the declared end.
    let faults = Faults {
        total_results: TotalResults::Offset(60),
        ..q
    };
    let shape = format!("{CURSOR}\ntotal_header = \"X-Total-Count\"");
    let (_n, _scim, gl) = start(
        "cursor",
        "users-cursor",
        &shape,
        100,
        ScimConfig::default(),
        faults,
    )
    .await;
    let r = sync_bounded(&gl).await;
    assert_run(
        &r,
        Verdict::Incomplete,
        &[ReasonCode::EngineFailed, ReasonCode::CountShort],
    );
    assert!(
        r.reasons[0]
            .message
            .contains("brought no new records (it repeats records already read) after 250 of 310 declared records"),
        "{:?}",
        r.reasons
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_pages_that_keep_naming_a_next_cursor_end_the_chain() {
    let q = quirks(RestQuirks {
        past_end_empty_with_next: true,
        ..Default::default()
    });
    // No total: nothing says the end; the chain stops after 3 empty pages in
    // a row and says why (never a loop to PAGES_MAX).
    let (_n, scim, gl) = start(
        "cursor",
        "users-cursor",
        CURSOR,
        50,
        ScimConfig::default(),
        q.clone(),
    )
    .await;
    let r = sync_bounded(&gl).await;
    assert_run(&r, Verdict::Incomplete, &[ReasonCode::EngineFailed]);
    assert!(
        r.reasons[0]
            .message
            .contains("4 pages in a row brought no records yet named a next page"),
        "{:?}",
        r.reasons
    );
    assert_eq!(r.run.unwrap().records_unique, USERS as u64);
    assert_eq!(requests(&scim).len(), 5 + 4, "5 pages, then 4 empty ones");
    drop(gl);

    // With the total read, the first empty page ends it.
    let shape = format!("{CURSOR}\ntotal_header = \"X-Total-Count\"");
    let (_n, scim, gl) = start(
        "cursor",
        "users-cursor",
        &shape,
        50,
        ScimConfig::default(),
        q,
    )
    .await;
    complete_with_every_user(&sync_bounded(&gl).await);
    assert_eq!(requests(&scim).len(), 5 + 1);
}
