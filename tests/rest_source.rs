//! A generic REST JSON source through the same sync engine: page-number paging
//! (`page`/`per_page`, total in the body) and RFC 8288 Link-header paging (bare
//! array, `X-Total-Count`), against the fault-injecting server's REST API;
//! and the ways real APIs answer ([`RestQuirks`]): one `Link` line per
//! relation, relative links, the last page again past the end, a page size
//! of their own, GitHub's rate-limit headers and 403s.

use govledger_proto::v1::{ReasonCode, Verdict};
use govledger_testkit::{
    Govledger, NatsServer,
    fault_scim::{
        FaultScim, Faults, PageFault, RateLimitFault, RateWindow, RestQuirks, RetryAfter,
        ScimConfig, TotalResults,
    },
    govledger::rest_source_toml,
    runs::{assert_run, assert_verdict, codes},
};

const USERS: usize = 250;

fn config(api_base: &str, paging: &str, path: &str, shape: &str) -> String {
    rest_source_toml(api_base, paging, path, shape, 100)
}

async fn setup(paging: &str) -> (NatsServer, FaultScim, Govledger) {
    let nats = NatsServer::start().await;
    let scim = FaultScim::start(USERS).await;
    let api = scim.base_url.trim_end_matches("/v2").to_owned() + "/api";
    let cfg = match paging {
        "link" => config(
            &api,
            "link",
            "users-link",
            "total_header = \"X-Total-Count\"",
        ),
        _ => config(
            &api,
            "page-number",
            "users",
            "items_pointer = \"/users\"\ntotal_pointer = \"/total\"",
        ),
    };
    let gl = Govledger::serve_with_config(&nats.url(), &cfg);
    (nats, scim, gl)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn page_number_paging_clean_and_with_a_lost_page() {
    let (_nats, scim, gl) = setup("page-number").await;
    let r = gl.sync("app").await;
    assert_verdict(&r, Verdict::Complete);
    let run = r.run.unwrap();
    assert_eq!(run.records_unique, USERS as u64);
    assert_eq!(run.declared_total_last, Some(USERS as u64));

    scim.set_faults(Faults {
        fail: vec![PageFault {
            start_index: 101,
            status: 502,
            times: u32::MAX,
        }],
        ..Default::default()
    });
    let r = gl.sync("app").await;
    assert_verdict(&r, Verdict::Incomplete);
    assert_eq!(
        codes(&r),
        vec![ReasonCode::PagesFailed, ReasonCode::CountShort]
    );
    assert!(
        r.reasons[0].message.contains("users:page=2"),
        "{:?}",
        r.reasons
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn page_number_paging_with_a_total_too_low_is_caught_past_the_end() {
    let (_nats, scim, gl) = setup("page-number").await;
    scim.set_faults(Faults {
        total_results: TotalResults::Offset(-60),
        ..Default::default()
    });
    let r = gl.sync("app").await;
    assert_run(&r, Verdict::Incomplete, &[ReasonCode::ProbeNotEmpty]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn link_header_paging_clean_and_with_a_cycle() {
    let (_nats, scim, gl) = setup("link").await;
    let r = gl.sync("app").await;
    assert_verdict(&r, Verdict::Complete);
    assert_eq!(r.run.unwrap().records_unique, USERS as u64);

    scim.set_faults(Faults {
        link_cycle: Some((3, 2)),
        ..Default::default()
    });
    let r = gl.sync("app").await;
    assert_run(&r, Verdict::Incomplete, &[ReasonCode::PagingCycle]);
}

/// A source of [`USERS`] users with `faults` set before the first sync, at
/// `page_size`; `shape` the `[sources.rest]` lines besides path and fields.
async fn start(
    paging: &str,
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
    let path = if paging == "link" {
        "users-link"
    } else {
        "users"
    };
    let cfg = rest_source_toml(&api, paging, path, shape, page_size);
    let gl = Govledger::serve_with_config(&nats.url(), &cfg);
    (nats, scim, gl)
}

const NUMBERED: &str = "items_pointer = \"/users\"";
const NUMBERED_TOTAL: &str = "items_pointer = \"/users\"\ntotal_pointer = \"/total\"";

fn quirks(rest: RestQuirks) -> Faults {
    Faults {
        rest,
        ..Default::default()
    }
}

/// A sync that must be decided within 60 s (a listing that loops never is).
async fn sync_bounded(gl: &Govledger) -> govledger_proto::v1::GetRunResponse {
    tokio::time::timeout(std::time::Duration::from_secs(60), gl.sync("app"))
        .await
        .expect("no verdict within 60 s: the listing does not end")
}

/// List requests the server answered, by status.
fn statuses(scim: &FaultScim) -> Vec<u16> {
    scim.requests()
        .iter()
        .filter(|r| r.path_and_query.starts_with("/api/"))
        .map(|r| r.status)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn link_header_one_line_per_relation_without_a_total() {
    let q = RestQuirks {
        link_per_line: true,
        ..Default::default()
    };
    let (_nats, _scim, gl) = start("link", "", 50, ScimConfig::default(), quirks(q)).await;
    let r = gl.sync("app").await;
    assert_verdict(&r, Verdict::Complete);
    assert_eq!(r.run.unwrap().records_unique, USERS as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relative_link_targets_resolve_against_the_request_uri() {
    let q = RestQuirks {
        link_relative: true,
        ..Default::default()
    };
    let shape = "total_header = \"X-Total-Count\"";
    let (_nats, _scim, gl) = start("link", shape, 100, ScimConfig::default(), quirks(q)).await;
    let r = gl.sync("app").await;
    assert_verdict(&r, Verdict::Complete);
    assert_eq!(r.run.unwrap().records_unique, USERS as u64);
}

/// A server that puts credentials in its next links: they are followed, and
/// no event, page key or log line holds them (the userinfo shows as `***`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_a_server_puts_in_its_next_links_never_reach_events_or_logs() {
    const PW: &str = "LinkPw-distinct-41c7";
    let q = RestQuirks {
        link_userinfo: Some(format!("robot:{PW}")),
        ..Default::default()
    };
    let shape = "total_header = \"X-Total-Count\"";
    let (nats, _scim, gl) = start("link", shape, 100, ScimConfig::default(), quirks(q)).await;
    let r = gl.sync("app").await;
    assert_verdict(&r, Verdict::Complete);
    let msgs = govledger_testkit::read_stream(&nats.client().await).await;
    let mut keys = Vec::new();
    for m in &msgs {
        assert!(
            !String::from_utf8_lossy(&m.payload).contains(PW),
            "an event holds the password"
        );
        use prost::Message as _;
        if let Ok(ev) = govledger_proto::v1::Event::decode(m.payload.as_ref())
            && let Some(govledger_proto::v1::event::Body::PageFetched(p)) = ev.body
        {
            keys.push(p.next_page_key);
        }
    }
    assert!(
        keys.iter().any(|k| k.contains("://***@127.0.0.1")),
        "{keys:?}"
    );
    assert!(!gl.log_text().contains(PW));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_past_the_end_that_repeats_the_last_page_ends_the_listing() {
    let q = RestQuirks {
        past_end_repeats_last: true,
        ..Default::default()
    };
    // No total, every page full: only a repeat can end the listing.
    let (_nats, scim, gl) = start(
        "page-number",
        NUMBERED,
        50,
        ScimConfig::default(),
        quirks(q.clone()),
    )
    .await;
    let r = sync_bounded(&gl).await;
    assert_verdict(&r, Verdict::Complete);
    assert_eq!(r.run.unwrap().records_unique, USERS as u64);
    assert_eq!(statuses(&scim).len(), 6, "5 pages and the repeat");
    drop(gl);

    // With an honest total: every record read, no false alarm.
    let (_nats, _scim, gl) = start(
        "page-number",
        NUMBERED_TOTAL,
        100,
        ScimConfig::default(),
        quirks(q.clone()),
    )
    .await;
    let r = sync_bounded(&gl).await;
    assert_verdict(&r, Verdict::Complete);
    assert_eq!(r.run.unwrap().records_unique, USERS as u64);
    drop(gl);

    // A total above what the API serves: the repeat comes before the declared end.
    let faults = Faults {
        total_results: TotalResults::Offset(60),
        rest: q,
        ..Default::default()
    };
    let (_nats, _scim, gl) = start(
        "page-number",
        NUMBERED_TOTAL,
        100,
        ScimConfig::default(),
        faults,
    )
    .await;
    let r = sync_bounded(&gl).await;
    assert_eq!(
        codes(&r),
        vec![
            ReasonCode::EngineFailed,
            ReasonCode::CountShort,
            ReasonCode::ShortPage
        ],
        "{:?}",
        r.reasons
    );
    assert_verdict(&r, Verdict::Incomplete);
    assert!(
        r.reasons[0].message.contains(
            "users:page=4 brought no new records (it repeats records already read) \
             after 250 of 310 declared records"
        ),
        "{:?}",
        r.reasons
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_that_serves_its_own_page_size_is_read_by_records_received() {
    let cfg = ScimConfig {
        max_page_size: 30,
        ..Default::default()
    };
    let (_nats, scim, gl) = start("page-number", NUMBERED_TOTAL, 100, cfg, Faults::default()).await;
    let r = gl.sync("app").await;
    let run = r.run.clone().unwrap();
    assert_eq!(run.records_unique, USERS as u64, "{:?}", r.reasons);
    // No false alarm: no SHORT_PAGE for the served size (the fold measures
    // pages against the size the first page showed), no COUNT_SHORT, no probe.
    assert_verdict(&r, Verdict::Complete);
    assert!(codes(&r).is_empty(), "{:?}", r.reasons);
    // 9 pages of 30 (the last has 10), then one past the end.
    assert_eq!(statuses(&scim), vec![200; 10]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limit_headers_on_a_200_are_honoured() {
    let q = RestQuirks {
        rate_window: Some(RateWindow {
            requests: 2,
            window_s: 1,
        }),
        ..Default::default()
    };
    let (_nats, scim, gl) = start(
        "page-number",
        NUMBERED_TOTAL,
        100,
        ScimConfig::default(),
        quirks(q),
    )
    .await;
    let r = gl.sync("app").await;
    assert_verdict(&r, Verdict::Complete);
    assert_eq!(r.run.unwrap().records_unique, USERS as u64);
    assert!(
        statuses(&scim).iter().all(|s| *s == 200),
        "{:?}",
        statuses(&scim)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_github_403_rate_limit_is_retried_like_a_429() {
    let faults = Faults {
        rate_limit: vec![RateLimitFault {
            start_index: 101,
            times: 1,
            retry_after: RetryAfter::Seconds(1),
        }],
        rest: RestQuirks {
            rate_limit_as_403: true,
            ..Default::default()
        },
        ..Default::default()
    };
    let (_nats, scim, gl) = start(
        "page-number",
        NUMBERED_TOTAL,
        100,
        ScimConfig::default(),
        faults,
    )
    .await;
    let r = gl.sync("app").await;
    assert_verdict(&r, Verdict::Complete);
    let run = r.run.unwrap();
    assert_eq!(run.records_unique, USERS as u64);
    assert_eq!(run.rate_limited, 1);
    assert!(statuses(&scim).contains(&403), "{:?}", statuses(&scim));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn link_paging_whose_last_page_links_past_the_end() {
    let q = RestQuirks {
        past_end_repeats_last: true,
        ..Default::default()
    };
    // No total: the page past the end repeats the last one and ends the chain.
    let (_nats, scim, gl) = start("link", "", 50, ScimConfig::default(), quirks(q.clone())).await;
    let r = sync_bounded(&gl).await;
    assert_verdict(&r, Verdict::Complete);
    assert_eq!(r.run.unwrap().records_unique, USERS as u64);
    assert_eq!(statuses(&scim).len(), 6, "5 pages and the repeat");
    drop(gl);

    // A total above what the API serves: the repeat comes before the declared end.
    let faults = Faults {
        total_results: TotalResults::Offset(60),
        rest: q,
        ..Default::default()
    };
    let shape = "total_header = \"X-Total-Count\"";
    let (_nats, _scim, gl) = start("link", shape, 100, ScimConfig::default(), faults).await;
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
async fn link_paging_with_the_next_link_in_the_body() {
    let q = RestQuirks {
        next_in_body: true,
        link_relative: true,
        ..Default::default()
    };
    let shape = "items_pointer = \"/users\"\nnext_pointer = \"/links/next\"\ntotal_header = \"X-Total-Count\"";
    let (_nats, _scim, gl) = start("link", shape, 100, ScimConfig::default(), quirks(q)).await;
    let r = gl.sync("app").await;
    assert_verdict(&r, Verdict::Complete);
    assert_eq!(r.run.unwrap().records_unique, USERS as u64);
}
