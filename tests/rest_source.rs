//! A generic REST JSON source through the same sync engine: page-number paging
//! (`page`/`per_page`, total in the body) and RFC 8288 Link-header paging (bare
//! array, `X-Total-Count`), against the fault-injecting server's REST API.

use govledger_proto::v1::{ReasonCode, Verdict};
use govledger_testkit::{
    Govledger, NatsServer,
    fault_scim::{FaultScim, Faults, PageFault, TotalResults},
    runs::{assert_run, assert_verdict, codes},
};

const USERS: usize = 250;

fn config(api_base: &str, paging: &str, path: &str, shape: &str) -> String {
    format!(
        r#"
[[sources]]
id = "app"
kind = "rest"
base_url = "{api_base}"
paging = "{paging}"
page_size = 100

[sources.rest]
path = "{path}"
id_field = "id"
active_field = "active"
label_field = "email"
{shape}

[sources.retry]
attempts_max = 2
backoff_min_ms = 10
backoff_max_ms = 20
"#
    )
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
