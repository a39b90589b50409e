//! Self-tests of the fault-injecting SCIM 2.0 server
//! (`govledger_testkit::fault_scim`): honest index and cursor paging, probes,
//! single resources and writes, bearer auth, keep-alive, and one test per
//! injected fault showing it behaves as its doc says; then the plain REST API
//! on the same server (page-number paging, `Link`-header paging,
//! `X-Total-Count`, and the faults on both endpoints); then the write path a
//! lifecycle action uses and the write faults W1..W3.
//!
//! Table-driven: each behaviour is a row `request => expected answer` run by
//! one [`check`]; the rows of a table run in order against one server, so a
//! row may depend on the ones before it. Requests go through `reqwest`, on a
//! fresh connection each, so nothing here depends on the sync engine under
//! test. Two tests keep a raw socket on purpose: keep-alive (several requests
//! on ONE connection) and a blocking client on the runtime's own thread.

use std::{
    collections::HashSet,
    sync::OnceLock,
    time::{Duration, Instant},
};

use govledger_testkit::fault_scim::*;
use serde_json::{Value, json};

// ---------------------------------------------------------------------------
// The harness: a request, what its answer must be, `check`, and the tables.

/// Runs rows `request => want` in order against server `s`, each through
/// [`check`] (a macro so that a table stays one row per line).
macro_rules! rows {
    ($s:expr; $($r:expr => $w:expr),+ $(,)?) => {
        $( check($s, $r, $w).await; )+
    };
}

/// `Faults { field: value, .., ..Default::default() }`.
macro_rules! faults {
    ($($k:ident: $v:expr),* $(,)?) => {
        Faults { $($k: $v,)* ..Default::default() }
    };
}

/// A server seeded with `ScimConfig { field: value, .., ..Default::default() }`.
macro_rules! server {
    ($($k:ident: $v:expr),* $(,)?) => {
        FaultScim::start_with(ScimConfig { $($k: $v,)* ..Default::default() }).await
    };
}

/// One request: `target` is an absolute path (`/v2/...` or `/api/...`).
#[derive(Clone, Debug)]
struct Req {
    method: &'static str,
    target: String,
    if_match: Option<String>,
    token: Option<String>,
    body: Option<Value>,
}

fn req(method: &'static str, target: String, body: Option<Value>) -> Req {
    let (if_match, token) = (None, None);
    Req {
        method,
        target,
        if_match,
        token,
        body,
    }
}

/// `GET /v2{rel}`.
fn get(rel: &str) -> Req {
    req("GET", format!("/v2{rel}"), None)
}

/// `GET {target}` on the REST API (`/api/...`).
fn api(target: &str) -> Req {
    req("GET", target.to_owned(), None)
}

/// `PATCH /v2{rel}` with a PatchOp body of `ops`.
fn patch(rel: &str, ops: Value) -> Req {
    req("PATCH", format!("/v2{rel}"), Some(patch_op(ops)))
}

/// `DELETE /v2{rel}`.
fn delete(rel: &str) -> Req {
    req("DELETE", format!("/v2{rel}"), None)
}

impl Req {
    fn if_match(mut self, v: &str) -> Self {
        self.if_match = Some(v.to_owned());
        self
    }

    fn token(mut self, t: &str) -> Self {
        self.token = Some(t.to_owned());
        self
    }
}

/// What an answer must be.
#[derive(Clone, Copy, Debug)]
enum Want {
    /// This status, any body.
    Is(u16),
    /// A SCIM error body with this status.
    Scim(u16),
    /// A SCIM error with this status and `scimType`.
    ScimType(u16, &'static str),
    /// A REST error body with this status.
    Rest(u16),
    /// 200 with a SCIM `totalResults` of this.
    Total(i64),
    /// 200 with an `X-Total-Count` of this.
    Count(u64),
}
use Want::*;

/// 200, any body.
const OK: Want = Is(200);
/// 204, any body.
const DONE: Want = Is(204);

#[derive(Debug)]
struct Resp {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: Vec<u8>,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }
}

/// One client for every test; nothing pooled, so each request gets a fresh
/// connection on the calling test's runtime.
fn client() -> &'static reqwest::Client {
    static CLIENT: OnceLock<reqwest::Client> = OnceLock::new();
    CLIENT.get_or_init(|| {
        govledger_ingest::http::install_crypto_provider();
        let builder = reqwest::Client::builder().pool_max_idle_per_host(0);
        builder.build().unwrap()
    })
}

/// Sends `r` and returns the answer, whatever it is.
async fn send(s: &FaultScim, r: &Req) -> Resp {
    let method = reqwest::Method::from_bytes(r.method.as_bytes()).unwrap();
    let mut b = client().request(method, s.rest_url(&r.target));
    if let Some(v) = &r.if_match {
        b = b.header("If-Match", v);
    }
    if let Some(t) = &r.token {
        b = b.bearer_auth(t);
    }
    if let Some(body) = &r.body {
        b = b.header("Content-Type", SCIM_JSON).body(body.to_string());
    }
    let resp = b.send().await.unwrap();
    let (status, headers) = (resp.status().as_u16(), resp.headers().clone());
    let body = resp.bytes().await.unwrap().to_vec();
    Resp {
        status,
        headers,
        body,
    }
}

/// Sends `r` and asserts its answer is `want`; returns the answer.
async fn check(s: &FaultScim, r: Req, want: Want) -> Resp {
    let resp = send(s, &r).await;
    let what = format!("{} {}: {}", r.method, r.target, resp.text());
    let status = match want {
        Is(n) | Scim(n) | ScimType(n, _) | Rest(n) => n,
        Total(_) | Count(_) => 200,
    };
    assert_eq!(resp.status, status, "{what}");
    match want {
        Is(_) => {}
        Scim(_) | ScimType(..) => {
            let b = resp.json();
            let head = (&b["schemas"], &b["status"]);
            assert_eq!(
                head,
                (&json!([ERROR_SCHEMA]), &json!(status.to_string())),
                "{what}"
            );
            assert!(b["detail"].is_string(), "{what}");
            if let ScimType(_, t) = want {
                assert_eq!(b["scimType"], t, "{what}");
            }
        }
        Rest(_) => {
            assert_eq!(resp.header("content-type"), Some(REST_JSON), "{what}");
            let b = resp.json();
            assert_eq!(b["status"], status, "{what}");
            assert!(b["error"].is_string() && b["message"].is_string(), "{what}");
        }
        Total(n) => assert_eq!(resp.json()["totalResults"].as_i64(), Some(n), "{what}"),
        Count(n) => assert_eq!(total_count(&resp), n, "{what}"),
    }
    resp
}

/// `check(s, r, OK)`'s body as JSON.
async fn ok_json(s: &FaultScim, r: Req) -> Value {
    check(s, r, OK).await.json()
}

/// `has!(v, {"field": value, ..})`: every field named (recursively into
/// objects) has that value in `v`; fields not named are not looked at.
macro_rules! has {
    ($v:expr, $($want:tt)+) => {
        has_fields(&$v, json!($($want)+))
    };
}

/// What [`has!`] checks.
fn has_fields(v: &Value, want: Value) {
    match want {
        Value::Object(fields) => fields
            .into_iter()
            .for_each(|(k, w)| has_fields(&v[k.as_str()], w)),
        w => assert_eq!(v, &w),
    }
}

fn ids(page: &Value) -> Vec<String> {
    let resources = page["Resources"].as_array().unwrap().iter();
    resources
        .map(|r| r["id"].as_str().unwrap().to_owned())
        .collect()
}

fn uid(n: usize) -> String {
    format!("u{n:07}")
}

fn uids(r: std::ops::Range<usize>) -> Vec<String> {
    r.map(uid).collect()
}

fn strings(ids: &[&str]) -> Vec<String> {
    ids.iter().map(|s| (*s).to_owned()).collect()
}

fn patch_op(ops: Value) -> Value {
    json!({"schemas": [PATCH_OP_SCHEMA], "Operations": ops})
}

fn set_active_ops(active: bool) -> Value {
    json!([{"op": "replace", "path": "active", "value": active}])
}

fn deactivate(rel: &str) -> Req {
    patch(rel, set_active_ops(false))
}

/// A PatchOp removing member `uid` in the filter form.
fn remove_member(uid: &str) -> Value {
    json!([{"op": "remove", "path": format!("members[value eq \"{uid}\"]")}])
}

/// A PatchOp adding member `uid`.
fn add_member(uid: &str) -> Value {
    json!([{"op": "add", "path": "members", "value": [{"value": uid}]}])
}

/// Walks cursor pages from the first; returns (ids, cursors seen) after at most `max_pages`.
async fn walk_cursor(s: &FaultScim, count: usize, max_pages: usize) -> (Vec<String>, Vec<String>) {
    let (mut all, mut cursors, mut cursor) = (Vec::new(), Vec::new(), String::new());
    for _ in 0..max_pages {
        let b = ok_json(s, get(&format!("/Users?cursor={cursor}&count={count}"))).await;
        all.extend(ids(&b));
        let Some(c) = b["nextCursor"].as_str() else {
            break;
        };
        cursors.push(c.to_owned());
        cursor = c.to_owned();
    }
    (all, cursors)
}

/// Sends `r`, asserts `want`, and returns how long the answer took in ms.
async fn timed(s: &FaultScim, r: Req, want: Want) -> u128 {
    let t0 = Instant::now();
    check(s, r, want).await;
    t0.elapsed().as_millis()
}

// ---------------------------------------------------------------------------
// SCIM paging, resources, auth.

#[tokio::test]
async fn honest_index_paging_250_users_in_three_pages() {
    let s = FaultScim::start(250).await;
    assert_eq!(s.user_count(), 250);
    let mut seen = Vec::new();
    for (start, n) in [(1, 100), (101, 100), (201, 50)] {
        let r = check(&s, get(&format!("/Users?startIndex={start}&count=100")), OK).await;
        assert_eq!(r.header("content-type"), Some(SCIM_JSON));
        let b = r.json();
        let schemas = json!([LIST_RESPONSE_SCHEMA]);
        has!(b, {"schemas": schemas, "totalResults": 250, "startIndex": start, "itemsPerPage": n});
        assert!(b.get("nextCursor").is_none());
        assert_eq!(ids(&b), uids(start - 1..start - 1 + n));
        seen.extend(ids(&b));
    }
    assert_eq!(seen, uids(0..250), "every user once, in id order");

    let first = ok_json(&s, get("/Users?startIndex=43&count=1")).await;
    let want = json!({
        "schemas": [USER_SCHEMA],
        "id": "u0000042",
        "userName": "user42@example.test",
        "active": true,
        "meta": {"resourceType": "User", "version": "W/\"1\"", "location": s.url("/Users/u0000042")},
    });
    assert_eq!(first["Resources"][0], want);

    // Defaults: startIndex 1, count 100; startIndex < 1 means 1; past the end is empty.
    let d = ok_json(&s, get("/Users")).await;
    assert_eq!((d["startIndex"].as_u64(), ids(&d).len()), (Some(1), 100));
    let z = ok_json(&s, get("/Users?startIndex=0&count=5")).await;
    assert_eq!(ids(&z)[0], uid(0));
    let past = ok_json(&s, get("/Users?startIndex=251&count=100")).await;
    has!(past, {"totalResults": 250, "itemsPerPage": 0, "Resources": []});
    rows!(&s; get("/Users?startIndex=x") => ScimType(400, "invalidValue"));

    let log = s.requests();
    assert_eq!((log[0].method.as_str(), log[0].status), ("GET", 200));
    assert_eq!(log[0].path_and_query, "/v2/Users?startIndex=1&count=100");
    assert_eq!((log[0].page_no, log[2].page_no), (Some(1), Some(3)));
    assert!(!log[0].has_authorization);
    assert!(log.windows(2).all(|w| w[0].at <= w[1].at));
}

#[tokio::test]
async fn count_zero_probe_and_page_cap() {
    let s = server!(users: 120, max_page_size: 50);
    let probe = ok_json(&s, get("/Users?count=0")).await;
    has!(probe, {"totalResults": 120, "itemsPerPage": 0, "Resources": []});
    assert_eq!(s.requests()[0].page_no, None, "a probe is not a page");
    assert_eq!(s.list_requests(), 0);
    let capped = ok_json(&s, get("/Users?count=100")).await;
    assert_eq!(capped["itemsPerPage"], 50);
    assert_eq!(s.requests()[1].page_no, Some(1));
    let spc = ok_json(&s, get("/ServiceProviderConfig")).await;
    has!(spc, {"pagination": {"maxPageSize": 50, "cursor": true}});
}

#[tokio::test]
async fn cursor_mode_walks_all_users_and_ends_without_next_cursor() {
    let s = FaultScim::start(250).await;
    let (all, cursors) = walk_cursor(&s, 100, 10).await;
    assert_eq!(all, uids(0..250));
    // 3 pages: two nextCursors, none on the last.
    assert_eq!(cursors.len(), 2);
    let first = ok_json(&s, get("/Users?cursor=&count=100")).await;
    has!(first, {"totalResults": 250, "itemsPerPage": 100});
    let no_start = first.get("startIndex").is_none();
    assert!(no_start, "RFC 9865 pages have no startIndex");
    let last = ok_json(&s, get(&format!("/Users?cursor={}&count=100", cursors[1]))).await;
    assert_eq!(last["itemsPerPage"], 50);
    assert!(last.get("nextCursor").is_none());
    let groups_with_users_cursor = format!("/Groups?cursor={}&count=10", cursors[0]);
    rows!(&s;
        get("/Users?cursor=nonsense&count=10") => ScimType(400, "invalidCursor"),
        get("/Users?cursor=&startIndex=1") => Scim(400),
        // A Users cursor is not a Groups cursor.
        get(&groups_with_users_cursor) => Scim(400),
    );
}

#[tokio::test]
async fn single_users_patch_delete_and_mutators() {
    let s = FaultScim::start(5).await;
    let r = check(&s, get("/Users/u0000003"), OK).await;
    assert_eq!(r.header("etag"), Some("W/\"1\""));
    assert_eq!(r.json()["userName"], "user3@example.test");
    let no_schema = json!({"Operations": set_active_ops(false)});
    rows!(&s;
        get("/Users/u9999999") => Scim(404),
        get("/Nope") => Scim(404),
        deactivate("/Users/u0000001") => DONE,
        patch("/Users/u0000002", json!([{"op": "Replace", "value": {"active": false}}])) => DONE,
        patch("/Users/u0000000", json!([{"op": "replace", "path": "active", "value": "no"}])) => Scim(400),
        req("PATCH", "/v2/Users/u0000000".into(), Some(no_schema)) => Scim(400),
        deactivate("/Users/u9999999") => Scim(404),
    );
    let u = ok_json(&s, get("/Users/u0000001")).await;
    has!(u, {"active": false, "meta": {"version": "W/\"2\""}});
    assert_eq!(s.user_state("u0000002"), Some((false, 2)));
    assert_eq!(s.user_state("u0000000"), Some((true, 1)));
    rows!(&s;
        delete("/Users/u0000004") => DONE,
        delete("/Users/u0000004") => Scim(404),
        get("/Users/u0000004") => Scim(404),
    );
    assert_eq!(s.user_count(), 4);

    let id = s.add_user();
    assert_eq!(id, "u0000005");
    s.set_active(&id, false);
    assert_eq!(s.user_state(&id), Some((false, 2)));
    s.delete_user("u0000000");
    let list = ok_json(&s, get("/Users")).await;
    assert_eq!(list["totalResults"], 4);
    assert_eq!(ids(&list), ["u0000001", "u0000002", "u0000003", "u0000005"]);
    assert_eq!(s.user_ids(), ids(&list));
}

#[tokio::test]
async fn groups_page_with_members() {
    let s = server!(users: 10, groups: 7);
    let p1 = ok_json(&s, get("/Groups?startIndex=1&count=5")).await;
    assert_eq!(p1["totalResults"], 7);
    let first_five = ["g0000000", "g0000001", "g0000002", "g0000003", "g0000004"];
    assert_eq!(ids(&p1), first_five);
    let g0 = &p1["Resources"][0];
    has!(g0, {"schemas": [GROUP_SCHEMA], "displayName": "group0"});
    has!(g0["members"][0], {"value": "u0000000", "type": "User"});
    assert_eq!(g0["members"].as_array().unwrap().len(), 3);
    let p2 = ok_json(&s, get("/Groups?startIndex=6&count=5")).await;
    assert_eq!(ids(&p2), ["g0000005", "g0000006"]);
    assert_eq!(ok_json(&s, get("/Groups/g0000006")).await["id"], "g0000006");
    // Deleting a user drops it from its groups.
    s.delete_user("u0000000");
    let g0 = ok_json(&s, get("/Groups/g0000000")).await;
    assert_eq!(g0["members"].as_array().unwrap().len(), 2);
    assert_eq!(g0["meta"]["version"], "W/\"2\"");
    let r = ok_json(&s, get("/Groups?cursor=&count=4")).await;
    assert_eq!(ids(&r).len(), 4);
    assert!(r["nextCursor"].is_string());
    let last = s.requests().pop().unwrap();
    assert_eq!(last.page_no, Some(3), "Groups list #3");
}

#[tokio::test]
async fn capped_member_lists_ranged_lists_and_capped_single_reads() {
    let s = server!(users: 10, groups: 2);
    s.set_group_members("g0000000", uids(0..6));
    let members = |v: &Value, key: &str| v[key].as_array().map_or(0, Vec::len);
    s.set_faults(Faults {
        members_capped: Some(MembersCapped {
            list: 4,
            single: None,
            ranged: false,
        }),
        ..Default::default()
    });
    let page = ok_json(&s, get("/Groups?startIndex=1&count=5")).await;
    assert_eq!(members(&page["Resources"][0], "members"), 4);
    assert_eq!(
        members(&page["Resources"][1], "members"),
        3,
        "under the cap"
    );
    assert_eq!(
        members(&ok_json(&s, get("/Groups/g0000000")).await, "members"),
        6
    );
    s.set_faults(Faults {
        members_capped: Some(MembersCapped {
            list: 4,
            single: Some(5),
            ranged: true,
        }),
        ..Default::default()
    });
    let page = ok_json(&s, get("/Groups?startIndex=1&count=5")).await;
    let g0 = &page["Resources"][0];
    assert!(g0.get("members").is_none());
    assert_eq!(members(g0, "members;range=0-3"), 4);
    assert_eq!(members(&page["Resources"][1], "members"), 3);
    let single = ok_json(&s, get("/Groups/g0000000?attributes=members")).await;
    assert_eq!(members(&single, "members"), 5, "capped too, never ranged");
}

#[tokio::test]
async fn member_lists_left_out_of_list_answers() {
    let s = server!(users: 10, groups: 2);
    s.set_group_members("g0000000", uids(0..6));
    s.set_faults(Faults {
        members_left_out_of_lists: true,
        members_shown: MembersShown::OnRequest,
        ..Default::default()
    });
    let page = ok_json(&s, get("/Groups?startIndex=1&count=5")).await;
    for g in page["Resources"].as_array().unwrap() {
        assert!(g.get("members").is_none(), "{g}");
        assert!(g["displayName"].is_string());
    }
    let single = ok_json(&s, get("/Groups/g0000000")).await;
    assert!(single.get("members").is_none(), "OnRequest: not asked");
    let single = ok_json(&s, get("/Groups/g0000000?attributes=members")).await;
    assert_eq!(single["members"].as_array().unwrap().len(), 6);
}

#[tokio::test]
async fn service_provider_config_answers_and_absent_totals() {
    let s = server!(users: 10);
    s.set_faults(Faults {
        spc: SpcAnswer::MaxResults(40),
        total_results: TotalResults::Absent,
        ..Default::default()
    });
    let spc = ok_json(&s, get("/ServiceProviderConfig")).await;
    assert_eq!(spc["filter"]["maxResults"], 40);
    assert!(spc.get("pagination").is_none());
    let page = ok_json(&s, get("/Users?startIndex=1&count=5")).await;
    assert!(page.get("totalResults").is_none());
    assert_eq!(ids(&page).len(), 5);
    let probe = ok_json(&s, get("/Users?count=0")).await;
    assert!(probe.get("totalResults").is_none());
    s.set_faults(Faults {
        spc: SpcAnswer::Omitted,
        ..Default::default()
    });
    let spc = ok_json(&s, get("/ServiceProviderConfig")).await;
    assert!(spc["filter"].get("maxResults").is_none() && spc.get("pagination").is_none());
    s.set_faults(Faults {
        spc: SpcAnswer::Fails(503),
        ..Default::default()
    });
    rows!(&s; get("/ServiceProviderConfig") => Scim(503));
}

/// `(has_authorization, status)` of every logged request.
fn auth_log(s: &FaultScim) -> Vec<(bool, u16)> {
    s.requests()
        .iter()
        .map(|r| (r.has_authorization, r.status))
        .collect()
}

#[tokio::test]
async fn bearer_token_is_enforced() {
    let s = server!(users: 3, bearer_token: Some("s3cret".into()));
    let none = check(&s, get("/Users"), Scim(401)).await;
    let challenge = none.header("www-authenticate").unwrap();
    assert!(challenge.starts_with("Bearer"));
    rows!(&s;
        get("/Users").token("wrong") => Scim(401),
        get("/Users/u0000000") => Scim(401),
        get("/Users").token("s3cret") => Total(3),
    );
    let want = [(false, 401), (true, 401), (false, 401), (true, 200)];
    assert_eq!(auth_log(&s), want);
}

/// Raw on purpose: three requests on ONE connection (keep-alive), which a
/// pooling client cannot promise.
#[tokio::test]
async fn keep_alive_serves_several_requests_on_one_connection() {
    use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _};
    let s = FaultScim::start(30).await;
    let mut c = tokio::io::BufReader::new(tokio::net::TcpStream::connect(s.addr).await.unwrap());
    for start in [1, 11, 21] {
        let target = format!("/v2/Users?startIndex={start}&count=10");
        let head = format!("GET {target} HTTP/1.1\r\nHost: {}\r\n\r\n", s.addr);
        c.get_mut().write_all(head.as_bytes()).await.unwrap();
        let (mut status, mut len, mut line) = (0u16, 0usize, String::new());
        loop {
            line.clear();
            c.read_line(&mut line).await.unwrap();
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some(code) = l.strip_prefix("HTTP/1.1 ") {
                status = code[..3].parse().unwrap();
            } else if let Some((k, v)) = l.split_once(':')
                && k.eq_ignore_ascii_case("content-length")
            {
                len = v.trim().parse().unwrap();
            }
        }
        let mut body = vec![0; len];
        c.read_exact(&mut body).await.unwrap();
        assert_eq!(status, 200);
        let page: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(ids(&page)[0], uid(start - 1));
    }
    assert_eq!(s.requests().len(), 3);
}

// ---------------------------------------------------------------------------
// SCIM page faults R1..R13.

fn fail(start_index: usize, status: u16, times: u32) -> PageFault {
    PageFault {
        start_index,
        status,
        times,
    }
}

#[tokio::test]
async fn fail_times_then_succeed_keyed_by_start_index() {
    let s = FaultScim::start(250).await;
    s.set_faults(faults!(fail: vec![fail(101, 503, 2), fail(201, 400, u32::MAX)]));
    let p2 = || get("/Users?startIndex=101&count=100");
    let p3 = || get("/Users?startIndex=201&count=100");
    rows!(&s;
        get("/Users?startIndex=1&count=100") => OK,
        p2() => Scim(503),
        p2() => Scim(503),
    );
    assert_eq!(ids(&ok_json(&s, p2()).await)[0], uid(100));
    rows!(&s; p3() => Scim(400), p3() => Scim(400), p3() => Scim(400), p3() => Scim(400), p3() => Scim(400));
    // A probe is not a page: never failed.
    rows!(&s; get("/Users?startIndex=201&count=0") => OK);
    let pages: Vec<_> = s.requests().iter().map(|r| (r.page_no, r.status)).collect();
    let want = [
        (Some(1), 200),
        (Some(2), 503),
        (Some(3), 503),
        (Some(4), 200),
    ];
    assert_eq!(pages[..4], want, "retries of one page are new page_no's");

    // Cursor mode: the page at offset 100 is start_index 101; set_faults resets counts.
    s.set_faults(faults!(fail: vec![fail(101, 500, 1)]));
    let p1 = ok_json(&s, get("/Users?cursor=&count=100")).await;
    let next = format!(
        "/Users?cursor={}&count=100",
        p1["nextCursor"].as_str().unwrap()
    );
    rows!(&s; get(&next) => Scim(500));
    assert_eq!(ids(&ok_json(&s, get(&next)).await)[0], uid(100));
}

fn limit(start_index: usize, times: u32, retry_after: RetryAfter) -> RateLimitFault {
    RateLimitFault {
        start_index,
        times,
        retry_after,
    }
}

#[tokio::test]
async fn rate_limit_with_seconds_and_http_date() {
    let s = FaultScim::start(250).await;
    let rate_limit = vec![
        limit(1, 1, RetryAfter::Seconds(7)),
        limit(101, 2, RetryAfter::HttpDate(120)),
    ];
    s.set_faults(faults!(rate_limit: rate_limit));
    let p1 = || get("/Users?startIndex=1&count=100");
    let p2 = || get("/Users?startIndex=101&count=100");
    let r = check(&s, p1(), Scim(429)).await;
    assert_eq!(r.header("retry-after"), Some("7"));
    assert_eq!(r.header("x-ratelimit-remaining"), Some("0"));
    rows!(&s; p1() => OK);
    for _ in 0..2 {
        let r = check(&s, p2(), Scim(429)).await;
        assert_eq!(r.header("x-ratelimit-remaining"), Some("0"));
        let date = r.header("retry-after").unwrap();
        let imf_fixdate = date.ends_with(" GMT") && date.len() == 29;
        assert!(imf_fixdate, "IMF-fixdate: {date:?}");
        let when = chrono::DateTime::parse_from_rfc2822(date).unwrap();
        let ahead = (when.with_timezone(&chrono::Utc) - chrono::Utc::now()).num_seconds();
        assert!((100..=121).contains(&ahead), "{ahead}s ahead");
    }
    rows!(&s; p2() => OK);
}

#[tokio::test]
async fn total_results_faults() {
    let s = FaultScim::start(250).await;
    s.set_faults(faults!(total_results: TotalResults::Fixed(1000)));
    rows!(&s; get("/Users?count=0") => Total(1000), get("/Users?count=100") => Total(1000));
    s.set_faults(faults!(total_results: TotalResults::Offset(-30)));
    rows!(&s; get("/Users?count=0") => Total(220));
    let p = check(&s, get("/Users?startIndex=201&count=100"), Total(220)).await;
    assert_eq!(ids(&p.json()).len(), 50);
    // R13: totalResults == page size; a probe stays honest.
    s.set_faults(faults!(total_results: TotalResults::EqualsPageSize));
    let p = check(&s, get("/Users?startIndex=1&count=100"), Total(100)).await;
    assert_eq!(ids(&p.json()).len(), 100);
    rows!(&s;
        get("/Users?startIndex=101&count=100") => Total(100),
        get("/Users?count=0") => Total(250),
    );
    // R13: honest for two list requests, then +5 (probes follow the regime).
    s.set_faults(faults!(total_results: TotalResults::ChangeAfter { requests: 2, offset: 5 }));
    rows!(&s;
        get("/Users?count=0") => Total(250),
        get("/Users?startIndex=1&count=100") => Total(250),
        get("/Users?startIndex=101&count=100") => Total(250),
        get("/Users?count=0") => Total(255),
        get("/Users?startIndex=201&count=100") => Total(255),
    );

    // `only` keeps the other resource type honest.
    let g = server!(users: 10, groups: 10);
    g.set_faults(faults!(only: Some(ResourceType::Users), total_results: TotalResults::Fixed(3)));
    rows!(&g; get("/Users?count=5") => Total(3), get("/Groups?count=5") => Total(10));
    // Groups are not counted when only=Users.
    assert_eq!(g.list_requests(), 1);
}

#[tokio::test]
async fn mutation_drift_duplicates_and_skips_ids_across_pages() {
    let mutate = |insert_front, delete_front| {
        let m = Mutation {
            after_requests: 1,
            insert_front,
            delete_front,
        };
        faults!(mutate_after_page: Some(m))
    };
    // Insert in front after page 1: the tail of page 1 reappears on page 2.
    let s = FaultScim::start(250).await;
    s.set_faults(mutate(5, 0));
    let p1 = ids(&ok_json(&s, get("/Users?startIndex=1&count=100")).await);
    assert_eq!(s.user_count(), 250, "not yet");
    let p2 = check(&s, get("/Users?startIndex=101&count=100"), Total(255)).await;
    let p2 = ids(&p2.json());
    assert_eq!(p2[0], uid(95));
    let dup: Vec<&String> = p2.iter().filter(|id| p1.contains(id)).collect();
    assert_eq!(dup.len(), 5, "duplicated ids across pages: {dup:?}");
    assert_eq!(&s.user_ids()[..2], ["a0000000", "a0000001"]);
    // Applied once.
    send(&s, &get("/Users?startIndex=201&count=100")).await;
    assert_eq!(s.user_count(), 255);

    // Delete from the front after page 1: ids are skipped.
    let s = FaultScim::start(250).await;
    s.set_faults(mutate(0, 10));
    let mut seen: HashSet<String> = HashSet::new();
    for start in [1, 101, 201] {
        let page = ok_json(&s, get(&format!("/Users?startIndex={start}&count=100"))).await;
        seen.extend(ids(&page));
    }
    assert_eq!(s.user_count(), 240);
    let missed: Vec<String> = (10..250).map(uid).filter(|id| !seen.contains(id)).collect();
    assert_eq!(missed, uids(100..110), "live users never served");
}

#[tokio::test]
async fn short_and_empty_pages() {
    let s = FaultScim::start(250).await;
    s.set_faults(faults!(short_page: Some(101), empty_page: Some(201)));
    let p2 = ok_json(&s, get("/Users?startIndex=101&count=100")).await;
    has!(p2, {"totalResults": 250, "itemsPerPage": 50});
    assert_eq!(ids(&p2), uids(100..150));
    let p3 = ok_json(&s, get("/Users?startIndex=201&count=100")).await;
    has!(p3, {"totalResults": 250, "itemsPerPage": 0, "Resources": []});
    // Cursor mode: the short page's nextCursor skips its missing half.
    let (all, _) = walk_cursor(&s, 100, 10).await;
    assert_eq!(all.len(), 150);
    assert!(!all.contains(&uid(150)) && !all.contains(&uid(200)));
}

fn malformed(start_index: usize, kind: Malformed) -> MalformedFault {
    MalformedFault {
        start_index,
        times: 1,
        kind,
    }
}

#[tokio::test]
async fn malformed_bodies_then_recovery() {
    let s = FaultScim::start(250).await;
    let malformed = vec![
        malformed(1, Malformed::Truncated),
        malformed(101, Malformed::NotJson),
    ];
    s.set_faults(faults!(malformed: malformed));
    let p1 = || get("/Users?startIndex=1&count=100");
    let p2 = || get("/Users?startIndex=101&count=100");
    let t = check(&s, p1(), OK).await;
    assert_eq!(t.header("content-type"), Some(SCIM_JSON));
    assert!(t.text().starts_with('{'));
    let truncated = serde_json::from_slice::<Value>(&t.body).is_err();
    assert!(truncated, "truncated");
    let ok = check(&s, p1(), OK).await;
    assert_eq!(ids(&ok.json()).len(), 100);
    assert!(t.body.len() < ok.body.len());
    let n = check(&s, p2(), OK).await;
    assert!(n.header("content-type").unwrap().starts_with("text/plain"));
    assert!(serde_json::from_slice::<Value>(&n.body).is_err());
    assert_eq!(ok_json(&s, p2()).await["itemsPerPage"], 100);
}

#[tokio::test]
async fn bad_records_missing_id_and_wrong_type() {
    let s = FaultScim::start(250).await;
    s.set_faults(faults!(bad_records: Some(101)));
    let p = ok_json(&s, get("/Users?startIndex=101&count=100")).await;
    let res = p["Resources"].as_array().unwrap();
    assert_eq!((res.len(), p["itemsPerPage"].as_u64()), (100, Some(100)));
    assert!(res[0].get("id").is_none(), "missing id");
    assert_eq!(res[0]["userName"], "user100@example.test");
    assert_eq!(res[1]["active"], json!("yes"), "active as a string");
    let good = |r: &Value| r["id"].is_string() && r["active"].is_boolean();
    assert!(res[2..].iter().all(good));
    let other = ok_json(&s, get("/Users?startIndex=1&count=100")).await;
    assert!(other["Resources"][0]["id"].is_string());
}

#[tokio::test]
async fn auth_expires_after_n_list_requests() {
    let s = server!(users: 250, bearer_token: Some("tok".into()));
    s.set_faults(faults!(auth_expire_after_requests: Some(2)));
    let tok = |rel: &str| get(rel).token("tok");
    rows!(&s;
        // Probes and single resources do not count.
        tok("/Users?count=0") => OK,
        tok("/Users?startIndex=1&count=100") => OK,
        tok("/Users/u0000000") => OK,
        tok("/Users?startIndex=101&count=100") => OK,
    );
    let r = check(&s, tok("/Users?startIndex=201&count=100"), Scim(401)).await;
    let challenge = r.header("www-authenticate").unwrap();
    assert!(challenge.contains("invalid_token"));
    rows!(&s;
        tok("/Users/u0000000") => Scim(401),
        tok("/Users?startIndex=1&count=100") => Scim(401),
    );
    s.set_faults(Faults::default());
    rows!(&s; tok("/Users?startIndex=201&count=100") => OK);
}

#[tokio::test]
async fn cursor_cycle_repeats_pages() {
    let s = FaultScim::start(500).await;
    s.set_faults(faults!(cursor_cycle: Some((3, 2))));
    let (all, c) = walk_cursor(&s, 100, 7).await;
    // Pages 1, 2, 3, 2, 3, 2, 3: never ends, never reaches u0000300.
    assert_eq!(c.len(), 7, "every page hands out a nextCursor");
    assert_eq!((&c[1], &c[2], &c[1]), (&c[3], &c[4], &c[5]));
    let distinct: HashSet<&String> = all.iter().collect();
    assert_eq!((all.len(), distinct.len()), (700, 300));
    assert!(!distinct.contains(&uid(300)));
    // Index mode is unaffected.
    let p = ok_json(&s, get("/Users?startIndex=201&count=100")).await;
    assert_eq!(ids(&p)[0], uid(200));
}

#[tokio::test]
async fn latency_and_one_slow_page() {
    let s = FaultScim::start(250).await;
    s.set_faults(faults!(latency_ms: 40, slow: Some((101, 400))));
    let slow_page = || get("/Users?startIndex=101&count=100");
    let fast = timed(&s, get("/Users/u0000001"), OK).await;
    assert!(fast >= 40, "{fast} ms");
    let slow = timed(&s, slow_page(), OK).await;
    assert!(slow >= 440, "{slow} ms");
    let other = timed(&s, get("/Users?startIndex=1&count=100"), OK).await;
    assert!(other < 400, "only that page is slow");
    // A client with a short timeout gives up on the slow page.
    let gave_up = tokio::time::timeout(Duration::from_millis(150), send(&s, &slow_page())).await;
    assert!(gave_up.is_err());
}

#[tokio::test]
async fn page_latency_slows_every_listed_page_and_nothing_else() {
    let s = FaultScim::start(250).await;
    s.set_faults(faults!(page_latency_ms: 300));
    for start in [1, 101, 201] {
        let page = timed(&s, get(&format!("/Users?startIndex={start}&count=100")), OK).await;
        assert!(page >= 300, "page at {start}: {page} ms");
    }
    // A single GET, a write and a count probe (`count=0`) answer at once.
    let single = timed(&s, get("/Users/u0000001"), OK).await;
    assert!(single < 300, "single GET {single} ms");
    let probe = timed(&s, get("/Users?count=0"), OK).await;
    assert!(probe < 300, "probe {probe} ms");
    let write = timed(&s, deactivate("/Users/u0000002"), DONE).await;
    assert!(write < 300, "write {write} ms");
}

/// Raw and blocking on purpose: a blocking client on this (current-thread)
/// runtime's own thread, which no async client can be.
#[tokio::test]
async fn server_answers_while_the_test_thread_blocks() {
    use std::io::{Read as _, Write as _};
    let s = FaultScim::start(3).await;
    let addr = s.addr;
    let mut c = std::net::TcpStream::connect(addr).unwrap();
    let request = b"GET /v2/Users?count=0 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    c.write_all(request).unwrap();
    let mut text = String::new();
    c.read_to_string(&mut text).unwrap();
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.contains("\"totalResults\":3"));
    drop(s);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let stopped = std::net::TcpStream::connect(addr).is_err();
    assert!(stopped, "stopped on drop");
}

// ---------------------------------------------------------------------------
// The plain REST API (`/api/users`, `/api/users-link`).

/// The path of one of this server's absolute REST URLs.
fn path_of(s: &FaultScim, url: &str) -> String {
    let path = url.strip_prefix(&s.rest_url(""));
    path.unwrap_or_else(|| panic!("{url} is not on {}", s.rest_url("")))
        .to_owned()
}

/// `(url, rel)` of every link of an RFC 8288 `Link` header.
fn links(h: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = h;
    while let Some(open) = rest.find('<') {
        let close = open + rest[open..].find('>').expect("unclosed <");
        let url = rest[open + 1..close].to_owned();
        let after = &rest[close + 1..];
        let end = after.find('<').unwrap_or(after.len());
        let rel = after[..end]
            .split(';')
            .filter_map(|p| p.trim().trim_end_matches(',').trim().strip_prefix("rel="))
            .map(|v| v.trim_matches('"').to_owned())
            .next()
            .unwrap_or_else(|| panic!("no rel in {h:?}"));
        out.push((url, rel));
        rest = &after[end..];
    }
    out
}

fn link_rel(r: &Resp, rel: &str) -> Option<String> {
    let mut all = links(r.header("link")?).into_iter();
    all.find(|(_, r)| r == rel).map(|(u, _)| u)
}

fn rest_ids(items: &Value) -> Vec<String> {
    let items = items.as_array().unwrap().iter();
    items
        .map(|u| u["id"].as_str().unwrap().to_owned())
        .collect()
}

fn total_count(r: &Resp) -> u64 {
    let count = r.header(TOTAL_COUNT_HEADER).expect("X-Total-Count");
    count.parse().unwrap()
}

/// Walks `Link` pages from the first, following `rel="next"`; returns (ids,
/// next links seen) after at most `max_pages`.
async fn walk_links(
    s: &FaultScim,
    per_page: usize,
    max_pages: usize,
) -> (Vec<String>, Vec<String>) {
    let (mut all, mut nexts) = (Vec::new(), Vec::new());
    let mut target = format!("/api/users-link?per_page={per_page}");
    for _ in 0..max_pages {
        let r = check(s, api(&target), OK).await;
        all.extend(rest_ids(&r.json()));
        let Some(n) = link_rel(&r, "next") else {
            break;
        };
        target = path_of(s, &n);
        nexts.push(n);
    }
    (all, nexts)
}

#[test]
fn link_header_parser_handles_first_and_next() {
    let first = "http://h/api/users-link?per_page=2";
    let next = "http://h/api/users-link?after=ab&per_page=2";
    let l = links(&format!("<{first}>; rel=\"first\", <{next}>; rel=\"next\""));
    let want: [(String, String); 2] =
        [(first.into(), "first".into()), (next.into(), "next".into())];
    assert_eq!(l, want);
}

#[tokio::test]
async fn rest_page_number_paging_250_users_in_three_pages() {
    let s = FaultScim::start(250).await;
    let mut seen = Vec::new();
    for (page, n) in [(1, 100), (2, 100), (3, 50)] {
        let r = check(
            &s,
            api(&format!("/api/users?page={page}&per_page=100")),
            Count(250),
        )
        .await;
        assert_eq!(r.header("content-type"), Some(REST_JSON));
        assert!(r.header("link").is_none(), "page-number mode has no Link");
        let b = r.json();
        has!(b, {"total": 250, "page": page, "per_page": 100});
        let from = (page - 1) * 100;
        assert_eq!(rest_ids(&b["users"]), uids(from..from + n));
        seen.extend(rest_ids(&b["users"]));
    }
    assert_eq!(seen, uids(0..250));
    assert_eq!(s.list_requests(), 3);
    let one = ok_json(&s, api("/api/users?page=43&per_page=1")).await;
    let user = json!({"id": "u0000042", "email": "user42@example.test", "active": true});
    assert_eq!(one["users"], json!([user]));

    // Past the end: empty, total still honest.
    let past = check(&s, api("/api/users?page=4&per_page=100"), Count(250)).await;
    has!(past.json(), {"users": [], "total": 250});
    // Defaults: page 1, per_page 100; page < 1 means 1.
    let d = ok_json(&s, api("/api/users")).await;
    has!(d, {"page": 1, "per_page": 100});
    assert_eq!(rest_ids(&d["users"]).len(), 100);
    let z = ok_json(&s, api("/api/users?page=0&per_page=5")).await;
    assert_eq!(z["page"], 1);
    assert_eq!(rest_ids(&z["users"])[0], "u0000000");
    rows!(&s; api("/api/users?page=x") => Rest(400), api("/api/users?per_page=0") => Rest(400));

    // Logged like SCIM list requests, numbered with /v2/Users.
    let log = s.requests();
    assert_eq!(log[0].path_and_query, "/api/users?page=1&per_page=100");
    assert_eq!((log[0].status, log[0].page_no), (200, Some(1)));
    assert_eq!(log[2].page_no, Some(3));
    send(&s, &get("/Users?count=10")).await;
    let pages_before = log.iter().filter(|r| r.page_no.is_some()).count();
    assert_eq!(s.requests().pop().unwrap().page_no, Some(pages_before + 1));

    // per_page is capped at max_page_size.
    let c = server!(users: 120, max_page_size: 50);
    let capped = ok_json(&c, api("/api/users?page=2&per_page=100")).await;
    assert_eq!(capped["per_page"], 50);
    assert_eq!(rest_ids(&capped["users"])[0], uid(50));
}

#[tokio::test]
async fn rest_link_paging_walks_all_users_following_next() {
    let s = FaultScim::start(250).await;
    let first_url = s.rest_url("/api/users-link?per_page=100");
    let first = check(&s, api("/api/users-link?per_page=100"), Count(250)).await;
    assert_eq!(first.header("content-type"), Some(REST_JSON));
    let body = first.json();
    assert!(body.is_array(), "a bare array: {body}");
    let user = json!({"id": "u0000000", "email": "user0@example.test", "active": true});
    assert_eq!(body[0], user);
    let l = links(first.header("link").unwrap());
    assert_eq!(l.len(), 2);
    assert_eq!(l[0], (first_url.clone(), "first".to_owned()));
    assert_eq!(l[1].1, "next");
    let after = s.rest_url("/api/users-link?after=");
    let next_ok = l[1].0.starts_with(&after) && l[1].0.ends_with("&per_page=100");
    assert!(next_ok, "{}", l[1].0);

    let (all, nexts) = walk_links(&s, 100, 10).await;
    assert_eq!(all, uids(0..250));
    assert_eq!(nexts.len(), 2, "3 pages: two next links, none on the last");
    let last = check(&s, api(&path_of(&s, &nexts[1])), Count(250)).await;
    assert_eq!(rest_ids(&last.json()).len(), 50);
    assert_eq!(link_rel(&last, "next"), None);
    assert_eq!(link_rel(&last, "first"), Some(first_url));

    // Default per_page is 100; an unknown token is a 400, so is a SCIM cursor.
    let d = check(&s, api("/api/users-link"), OK).await;
    assert_eq!(rest_ids(&d.json()).len(), 100);
    assert_eq!(link_rel(&d, "next"), Some(nexts[0].clone()));
    let scim = ok_json(&s, get("/Users?cursor=&count=100")).await;
    let cursor = scim["nextCursor"].as_str().unwrap();
    let scim_next = format!("/api/users-link?after={cursor}&per_page=100");
    rows!(&s; api("/api/users-link?after=nonsense") => Rest(400), api(&scim_next) => Rest(400));
}

#[tokio::test]
async fn rest_total_count_follows_total_results() {
    let s = FaultScim::start(250).await;
    s.set_faults(faults!(total_results: TotalResults::Fixed(1000)));
    let p = check(&s, api("/api/users?page=1&per_page=100"), Count(1000)).await;
    assert_eq!(p.json()["total"], 1000);
    rows!(&s; api("/api/users-link?per_page=100") => Count(1000));
    s.set_faults(faults!(total_results: TotalResults::Offset(-30)));
    let p = check(&s, api("/api/users?page=3&per_page=100"), Count(220)).await;
    assert_eq!(p.json()["total"], 220);
    assert_eq!(rest_ids(&p.json()["users"]).len(), 50);
    s.set_faults(faults!(total_results: TotalResults::EqualsPageSize));
    rows!(&s;
        api("/api/users-link?per_page=40") => Count(40),
        api("/api/users?per_page=70") => Count(70),
    );
    // Counted with SCIM list requests: honest for two, then +5.
    s.set_faults(faults!(total_results: TotalResults::ChangeAfter { requests: 2, offset: 5 }));
    rows!(&s;
        api("/api/users?page=1") => Count(250),
        get("/Users?count=10") => Total(250),
        api("/api/users-link") => Count(255),
    );
    assert_eq!(s.list_requests(), 3);
    // `only: Groups` leaves the REST API (Users) honest and uncounted.
    s.set_faults(faults!(only: Some(ResourceType::Groups), total_results: TotalResults::Fixed(3)));
    rows!(&s; api("/api/users") => Count(250));
    assert_eq!(s.list_requests(), 0);
}

#[tokio::test]
async fn rest_fail_times_then_succeed_on_both_endpoints() {
    let s = FaultScim::start(250).await;
    let fail_once = |status| faults!(fail: vec![fail(101, status, 1)]);
    s.set_faults(fail_once(503));
    rows!(&s; api("/api/users?page=1&per_page=100") => OK);
    let r = check(&s, api("/api/users?page=2&per_page=100"), Rest(503)).await;
    assert!(r.header(TOTAL_COUNT_HEADER).is_none());
    let ok = ok_json(&s, api("/api/users?page=2&per_page=100")).await;
    assert_eq!(rest_ids(&ok["users"])[0], uid(100));
    // Keyed by start_index, not page number: page 3 of 50 is offset 100.
    s.set_faults(fail_once(500));
    rows!(&s;
        api("/api/users?page=3&per_page=50") => Rest(500),
        api("/api/users?page=3&per_page=50") => OK,
    );
    // Link mode: the page the first next link points at fails once.
    s.set_faults(fail_once(502));
    let p1 = check(&s, api("/api/users-link?per_page=100"), OK).await;
    let next = path_of(&s, &link_rel(&p1, "next").unwrap());
    rows!(&s; api(&next) => Rest(502));
    assert_eq!(rest_ids(&ok_json(&s, api(&next)).await)[0], uid(100));
    assert_eq!(s.list_requests(), 3);
    let log = s.requests();
    let tail: Vec<u16> = log[log.len() - 3..].iter().map(|r| r.status).collect();
    assert_eq!(tail, [200, 502, 200]);
}

#[tokio::test]
async fn rest_page_faults_rate_limit_malformed_short_empty_bad() {
    let s = FaultScim::start(250).await;
    let rate_limit = vec![limit(1, 1, RetryAfter::Seconds(3))];
    let malformed = vec![
        malformed(101, Malformed::Truncated),
        malformed(201, Malformed::NotJson),
    ];
    s.set_faults(faults!(rate_limit: rate_limit, malformed: malformed));
    let r = check(&s, api("/api/users-link?per_page=100"), Rest(429)).await;
    assert_eq!(r.header("retry-after"), Some("3"));
    assert_eq!(r.header("x-ratelimit-remaining"), Some("0"));
    let t = check(&s, api("/api/users?page=2&per_page=100"), Count(250)).await;
    assert_eq!(t.header("content-type"), Some(REST_JSON));
    let truncated = serde_json::from_slice::<Value>(&t.body).is_err();
    assert!(truncated, "truncated");
    let n = check(&s, api("/api/users?page=3&per_page=100"), OK).await;
    assert!(n.header("content-type").unwrap().starts_with("text/plain"));
    assert!(n.header(TOTAL_COUNT_HEADER).is_none());
    for page in 1..=3 {
        ok_json(&s, api(&format!("/api/users?page={page}&per_page=100"))).await;
    }

    s.set_faults(faults!(short_page: Some(101), empty_page: Some(201), bad_records: Some(1)));
    let p1 = ok_json(&s, api("/api/users?page=1&per_page=100")).await;
    let u = p1["users"].as_array().unwrap();
    assert_eq!(u.len(), 100);
    assert!(u[0].get("id").is_none(), "missing id");
    assert_eq!(u[0]["email"], "user0@example.test");
    assert_eq!(u[1]["active"], "yes");
    let p2 = ok_json(&s, api("/api/users?page=2&per_page=100")).await;
    assert_eq!(rest_ids(&p2["users"]).len(), 50);
    assert_eq!(p2["total"], 250);
    let p3 = check(&s, api("/api/users?page=3&per_page=100"), Count(250)).await;
    assert_eq!(p3.json()["users"], json!([]));
    // Link mode: the short page's next link still skips its missing half.
    s.set_faults(faults!(short_page: Some(101)));
    let (all, nexts) = walk_links(&s, 100, 10).await;
    assert_eq!((all.len(), nexts.len()), (200, 2));
    assert!(!all.contains(&uid(150)) && all.contains(&uid(200)));
}

#[tokio::test]
async fn rest_bearer_auth_expiry_latency_and_drift() {
    let s = server!(users: 250, bearer_token: Some("tok".into()));
    let none = check(&s, api("/api/users"), Rest(401)).await;
    let challenge = none.header("www-authenticate").unwrap();
    assert!(challenge.starts_with("Bearer"));
    rows!(&s;
        api("/api/users-link").token("wrong") => Rest(401),
        api("/api/users").token("tok") => OK,
    );
    assert_eq!(auth_log(&s), [(false, 401), (true, 401), (true, 200)]);

    let m = Mutation {
        after_requests: 1,
        insert_front: 5,
        delete_front: 0,
    };
    s.set_faults(faults!(
        auth_expire_after_requests: Some(2),
        mutate_after_page: Some(m),
        latency_ms: 30,
        slow: Some((101, 300)),
    ));
    let tok = |target: &str| api(target).token("tok");
    let p1 = ok_json(&s, tok("/api/users?page=1&per_page=100")).await;
    let t0 = Instant::now();
    let p2 = ok_json(&s, tok("/api/users?page=2&per_page=100")).await;
    assert!(t0.elapsed().as_millis() >= 330, "{:?}", t0.elapsed());
    assert_eq!(p2["total"], 255, "drift applied after one list request");
    let first = rest_ids(&p1["users"]);
    let dup = rest_ids(&p2["users"])
        .into_iter()
        .filter(|id| first.contains(id))
        .count();
    assert_eq!(dup, 5);
    let r = check(&s, tok("/api/users?page=3&per_page=100"), Rest(401)).await;
    let challenge = r.header("www-authenticate").unwrap();
    assert!(challenge.contains("invalid_token"));
    rows!(&s; get("/Users?count=10").token("tok") => Scim(401));
}

#[tokio::test]
async fn rest_link_cycle_repeats_next_links() {
    let s = FaultScim::start(500).await;
    s.set_faults(faults!(link_cycle: Some((3, 2))));
    let (all, n) = walk_links(&s, 100, 7).await;
    // Pages 1, 2, 3, 2, 3, 2, 3: never ends, never reaches u0000300.
    assert_eq!(n.len(), 7, "every page hands out a next link");
    assert_eq!(n[2], n[0], "page 3 links back to page 2");
    assert_eq!((&n[1], &n[2]), (&n[3], &n[4]));
    let distinct: HashSet<&String> = all.iter().collect();
    assert_eq!((all.len(), distinct.len()), (700, 300));
    assert!(!distinct.contains(&uid(300)));

    // b = 1: the next link is the first-page URL itself.
    s.set_faults(faults!(link_cycle: Some((2, 1))));
    let (_, n) = walk_links(&s, 100, 3).await;
    assert_eq!(n[1], s.rest_url("/api/users-link?per_page=100"));
    // Page-number and SCIM cursor paging are unaffected.
    let p = ok_json(&s, api("/api/users?page=3&per_page=100")).await;
    assert_eq!(rest_ids(&p["users"])[0], uid(200));
    assert_eq!(walk_cursor(&s, 100, 10).await.0.len(), 500);
}

// ---------------------------------------------------------------------------
// The write path (lifecycle actions) and the write faults W1..W3.

fn member_ids(group: &Value) -> Vec<String> {
    let members = group["members"].as_array().unwrap().iter();
    members
        .map(|m| m["value"].as_str().unwrap().to_owned())
        .collect()
}

/// Users u0..u9, groups g0 = [u0,u1,u2], g1 = [u3,u4,u5], g2 = [u6,u7,u8].
async fn write_server() -> FaultScim {
    server!(users: 10, groups: 3)
}

/// The group's members as the `/v2/Groups` list shows them.
async fn listed_members(s: &FaultScim, gid: &str) -> Vec<String> {
    let list = ok_json(s, get("/Groups?startIndex=1&count=100")).await;
    let mut groups = list["Resources"].as_array().unwrap().iter();
    let group = groups.find(|g| g["id"] == gid);
    member_ids(group.unwrap_or_else(|| panic!("{gid} not listed")))
}

/// Group `gid` has `members` at `version`, as its GET (`ETag`, body and
/// `meta.version`), the `/v2/Groups` list and the server's own state show it.
async fn assert_group(s: &FaultScim, gid: &str, members: &[&str], version: u64) {
    let etag = format!("W/\"{version}\"");
    let g = check(s, get(&format!("/Groups/{gid}")), OK).await;
    assert_eq!(g.header("etag"), Some(etag.as_str()), "{gid}");
    let body = g.json();
    assert_eq!(body["meta"]["version"], etag, "{gid}");
    assert_eq!(member_ids(&body), members, "{gid}");
    assert_eq!(listed_members(s, gid).await, members, "{gid} listed");
    let state = s.group_state(gid);
    assert_eq!(state, Some((strings(members), version)), "{gid} state");
}

/// `(status, applied)` of every logged write, in order.
fn write_outcomes(s: &FaultScim) -> Vec<(u16, Option<bool>)> {
    s.write_requests()
        .iter()
        .map(|r| (r.status, r.applied))
        .collect()
}

#[tokio::test]
async fn deactivate_reads_etag_patches_with_if_match_and_reads_back() {
    let s = write_server().await;
    let r = check(&s, get("/Users/u0000001"), OK).await;
    let etag = r.header("etag").unwrap().to_owned();
    assert_eq!(etag, "W/\"1\"");
    has!(r.json(), {"meta": {"version": etag}, "active": true});
    let p = check(&s, deactivate("/Users/u0000001").if_match(&etag), DONE).await;
    assert!(p.body.is_empty());
    let r = check(&s, get("/Users/u0000001"), OK).await;
    assert_eq!(r.header("etag"), Some("W/\"2\""));
    has!(r.json(), {"active": false, "meta": {"version": "W/\"2\""}});
    assert_eq!(s.user_state("u0000001"), Some((false, 2)));

    // The same again changes nothing, so the version stays.
    rows!(&s; deactivate("/Users/u0000001").if_match("W/\"2\"") => DONE);
    assert_eq!(s.user_state("u0000001"), Some((false, 2)));
    // Other If-Match forms: strong-quoted, `*`, a list.
    for (h, active, v) in [
        ("\"2\"", true, 3),
        ("*", true, 3),
        ("W/\"9\", W/\"3\"", false, 4),
    ] {
        let r = patch("/Users/u0000001", set_active_ops(active)).if_match(h);
        rows!(&s; r => DONE);
        assert_eq!(s.user_state("u0000001").unwrap().1, v, "If-Match {h}");
    }

    // The log has the writes, with If-Match, body and outcome.
    let w = s.write_requests();
    assert_eq!(w.len(), 5);
    assert!(w.iter().all(|r| r.method == "PATCH"));
    assert_eq!(w[0].path_and_query, "/v2/Users/u0000001");
    assert_eq!(w[0].if_match.as_deref(), Some("W/\"1\""));
    assert_eq!((w[0].status, w[0].applied), (204, Some(true)));
    let sent: Value = serde_json::from_str(&w[0].body).unwrap();
    assert_eq!(sent, patch_op(set_active_ops(false)));
    let reads: Vec<_> = s
        .requests()
        .into_iter()
        .filter(|r| r.method == "GET")
        .collect();
    let untouched = |r: &RequestRecord| r.applied.is_none() && r.body.is_empty();
    assert!(reads.iter().all(untouched));
}

#[tokio::test]
async fn stale_if_match_is_412_and_changes_nothing() {
    let s = write_server().await;
    s.set_active("u0000002", false); // version 2: W/"1" is stale now
    let reactivate = patch("/Users/u0000002", set_active_ops(true));
    rows!(&s; reactivate.if_match("W/\"1\"") => Scim(412));
    assert_eq!(s.user_state("u0000002"), Some((false, 2)));
    rows!(&s; delete("/Users/u0000002").if_match("W/\"1\"") => Scim(412));
    assert!(s.user_exists("u0000002"));
    // With the current version the DELETE goes through.
    rows!(&s; delete("/Users/u0000002").if_match("W/\"2\"") => DONE);
    assert!(!s.user_exists("u0000002"));

    // Groups too: g0 lost u2 above, so it is at version 2.
    assert_eq!(s.group_state("g0000000").unwrap().1, 2);
    let remove = patch("/Groups/g0000000", remove_member("u0000000"));
    rows!(&s; remove.if_match("W/\"1\"") => Scim(412));
    assert_eq!(s.group_members("g0000000"), ["u0000000", "u0000001"]);
    let refused = (412, Some(false));
    let want = [refused, refused, (204, Some(true)), refused];
    assert_eq!(write_outcomes(&s), want);
    // Body syntax is checked first (a members filter is no user path: 400),
    // then an unknown id is a 404 before If-Match is looked at.
    rows!(&s;
        patch("/Users/u9999999", remove_member("u0000000")).if_match("W/\"1\"") => Scim(400),
        deactivate("/Users/u9999999").if_match("W/\"1\"") => Scim(404),
    );
}

#[tokio::test]
async fn set_attributes_user_name_display_name_title_active() {
    let s = write_server().await;
    let u3 = "/Users/u0000003";
    let ops = json!([
        {"op": "replace", "path": "displayName", "value": "Ada Lovelace"},
        {"op": "replace", "path": "title", "value": "Analyst"},
        {"op": "replace", "path": "userName", "value": "ada@example.test"},
        {"op": "replace", "path": "active", "value": false},
    ]);
    rows!(&s; patch(u3, ops) => DONE);
    let u = ok_json(&s, get(u3)).await;
    has!(u, {"displayName": "Ada Lovelace", "title": "Analyst", "userName": "ada@example.test", "active": false});
    assert_eq!(u["meta"]["version"], "W/\"2\"", "one bump per PATCH");
    assert_eq!(s.user_resource("u0000003").unwrap(), u);
    // Unset attributes are absent, as before.
    let u0 = ok_json(&s, get("/Users/u0000000")).await;
    assert!(u0.get("displayName").is_none() && u0.get("title").is_none());

    // Case-insensitive names, no-path value object, remove.
    let ops = json!([
        {"op": "Replace", "path": "TITLE", "value": "Lead"},
        {"op": "add", "value": {"displayName": "Ada L."}},
    ]);
    rows!(&s; patch(u3, ops) => DONE);
    let u = ok_json(&s, get(u3)).await;
    has!(u, {"title": "Lead", "displayName": "Ada L.", "meta": {"version": "W/\"3\""}});
    let remove_title = patch(u3, json!([{"op": "remove", "path": "title"}]));
    rows!(&s; remove_title => DONE);
    let u = ok_json(&s, get(u3)).await;
    assert!(u.get("title").is_none());
    assert_eq!(u["meta"]["version"], "W/\"4\"");

    // Bad values and paths are 400s and change nothing.
    rows!(&s;
        patch(u3, json!([{"op": "replace", "path": "title", "value": 5}])) => ScimType(400, "invalidValue"),
        patch(u3, json!([{"op": "replace", "path": "userName", "value": ""}])) => ScimType(400, "invalidValue"),
        patch(u3, json!([{"op": "replace", "path": "emails", "value": "x"}])) => ScimType(400, "invalidPath"),
        patch(u3, json!([{"op": "remove", "path": "userName"}])) => ScimType(400, "invalidPath"),
        patch(u3, json!([{"op": "remove"}])) => ScimType(400, "noTarget"),
        patch(u3, json!([{"op": "move", "path": "title", "value": "x"}])) => ScimType(400, "invalidSyntax"),
    );
    assert_eq!(s.user_state("u0000003"), Some((false, 4)));
}

#[tokio::test]
async fn remove_member_in_filter_form_and_value_list_form() {
    let s = write_server().await;
    let (g0, g1) = ("/Groups/g0000000", "/Groups/g0000001");
    let g = check(&s, get(g0), OK).await;
    assert_eq!(g.header("etag"), Some("W/\"1\""));
    assert_eq!(member_ids(&g.json()), ["u0000000", "u0000001", "u0000002"]);
    // Filter-path form.
    rows!(&s; patch(g0, remove_member("u0000001")).if_match("W/\"1\"") => DONE);
    assert_group(&s, "g0000000", &["u0000000", "u0000002"], 2).await;
    // Value-list form.
    let by_value = json!([{"op": "remove", "path": "members", "value": [{"value": "u0000002"}]}]);
    rows!(&s; patch(g0, by_value.clone()) => DONE);
    assert_group(&s, "g0000000", &["u0000000"], 3).await;
    // Removing a non-member (either form) is a no-op: 204, version kept.
    rows!(&s; patch(g0, remove_member("u0000001")) => DONE, patch(g0, by_value) => DONE);
    assert_eq!(s.group_state("g0000000").unwrap().1, 3);

    // Filter syntax variants and errors.
    let remove_path = |path: &str| patch(g1, json!([{"op": "remove", "path": path}]));
    rows!(&s; remove_path("Members[ VALUE EQ \"u0000003\" ]") => DONE);
    assert_eq!(s.group_members("g0000001"), ["u0000004", "u0000005"]);
    rows!(&s;
        remove_path("members[display eq \"x\"]") => ScimType(400, "invalidFilter"),
        remove_path("members[value co \"u\"]") => ScimType(400, "invalidFilter"),
        remove_path("members[value eq u0000004]") => ScimType(400, "invalidFilter"),
        // `path: members` without value removes everyone.
        remove_path("members") => DONE,
    );
    assert!(s.group_members("g0000001").is_empty());
    assert_eq!(ok_json(&s, get(g1)).await["members"], json!([]));
    rows!(&s; patch("/Groups/g9999999", remove_member("u0000001")) => Scim(404));
}

#[tokio::test]
async fn add_member_and_other_group_patches() {
    let s = write_server().await;
    let (g1, g2) = ("/Groups/g0000001", "/Groups/g0000002");
    let grown = ["u0000003", "u0000004", "u0000005", "u0000009"];
    rows!(&s; patch(g1, add_member("u0000009")).if_match("W/\"1\"") => DONE);
    assert_group(&s, "g0000001", &grown, 2).await;
    assert_eq!(ok_json(&s, get(g1)).await["members"][3]["type"], "User");
    // Adding a member again changes nothing.
    rows!(&s; patch(g1, add_member("u0000009")) => DONE);
    assert_eq!(s.group_state("g0000001").unwrap().1, 2);
    // Unknown users are refused, and nothing of the PATCH is applied.
    let mixed = json!([add_member("u0000000")[0], add_member("u7777777")[0]]);
    rows!(&s; patch(g1, mixed) => ScimType(400, "invalidValue"));
    assert_eq!(s.group_state("g0000001").unwrap(), (strings(&grown), 2));
    assert_eq!(s.write_requests().last().unwrap().applied, Some(false));

    // No-path add with a value object; replace of members and displayName.
    let no_path = json!([{"op": "add", "value": {"members": [{"value": "u0000000"}]}}]);
    rows!(&s; patch(g2, no_path) => DONE);
    let members = s.group_members("g0000002");
    assert_eq!(members, ["u0000006", "u0000007", "u0000008", "u0000000"]);
    let replace = json!([
        {"op": "replace", "path": "members", "value": [{"value": "u0000001"}, {"value": "u0000001"}]},
        {"op": "replace", "path": "displayName", "value": "renamed"},
    ]);
    rows!(&s; patch(g2, replace) => DONE);
    let g = s.group_resource("g0000002").unwrap();
    assert_eq!(member_ids(&g), ["u0000001"]);
    has!(g, {"displayName": "renamed", "meta": {"version": "W/\"3\""}});
    assert_eq!(ok_json(&s, get(g2)).await, g);
}

#[tokio::test]
async fn delete_then_get_is_404_and_memberships_go() {
    let s = write_server().await;
    let r = check(&s, get("/Users/u0000004"), OK).await;
    let etag = r.header("etag").unwrap();
    let d = check(&s, delete("/Users/u0000004").if_match(etag), DONE).await;
    assert!(d.body.is_empty());
    rows!(&s; get("/Users/u0000004") => Scim(404));
    assert!(!s.user_exists("u0000004") && s.user_resource("u0000004").is_none());
    let left = strings(&["u0000003", "u0000005"]);
    assert_eq!(s.group_state("g0000001"), Some((left.clone(), 2)));
    assert_eq!(listed_members(&s, "g0000001").await, left);
    rows!(&s;
        // Without If-Match too; a second DELETE is a 404.
        delete("/Users/u0000005") => DONE,
        delete("/Users/u0000005") => Scim(404),
        // Groups can be deleted as well.
        delete("/Groups/g0000002") => DONE,
        get("/Groups/g0000002") => Scim(404),
    );
    assert_eq!(s.group_ids(), ["g0000000", "g0000001"]);
    assert!(s.group_members("g0000002").is_empty());
    rows!(&s; get("/Groups?count=0") => Total(2));
    let w: Vec<(String, u16)> = s
        .write_requests()
        .into_iter()
        .map(|r| (r.method, r.status))
        .collect();
    let deleted = |status| ("DELETE".to_owned(), status);
    assert_eq!(w, [deleted(204), deleted(204), deleted(404), deleted(204)]);
}

#[tokio::test]
async fn write_noop_answers_204_and_changes_nothing() {
    let s = write_server().await;
    s.set_faults(faults!(write_noop: true));
    rows!(&s; deactivate("/Users/u0000001").if_match("W/\"1\"") => DONE);
    assert_eq!(s.user_state("u0000001"), Some((true, 1)));
    let u = check(&s, get("/Users/u0000001"), OK).await;
    assert_eq!(u.header("etag"), Some("W/\"1\""));
    assert_eq!(u.json()["active"], true);
    rows!(&s; delete("/Users/u0000002") => DONE);
    assert!(s.user_exists("u0000002"));
    rows!(&s;
        get("/Users/u0000002") => OK,
        patch("/Groups/g0000000", remove_member("u0000000")) => DONE,
        patch("/Groups/g0000000", add_member("u0000009")) => DONE,
    );
    let unchanged = strings(&["u0000000", "u0000001", "u0000002"]);
    assert_eq!(s.group_state("g0000000"), Some((unchanged, 1)));
    assert!(write_outcomes(&s).iter().all(|w| *w == (204, Some(false))));
    // Honest errors stay honest.
    rows!(&s;
        deactivate("/Users/u0000001").if_match("W/\"7\"") => Scim(412),
        delete("/Users/u9999999") => Scim(404),
    );
    s.set_faults(Faults::default());
    rows!(&s; deactivate("/Users/u0000001") => DONE);
    assert_eq!(s.user_state("u0000001"), Some((false, 2)));
}

fn write_fault(method: &str, id: &str, status: u16, times: u32) -> WriteFault {
    WriteFault {
        method: method.into(),
        id: id.into(),
        status,
        times,
    }
}

#[tokio::test]
async fn write_fail_times_then_applies() {
    let s = write_server().await;
    let write_fail = vec![
        write_fault("PATCH", "u0000001", 503, 2),
        write_fault("delete", "", 500, 1),
    ];
    s.set_faults(faults!(write_fail: write_fail));
    for _ in 0..2 {
        let r = check(&s, deactivate("/Users/u0000001"), Scim(503)).await;
        assert_eq!(r.json()["detail"], "injected write failure");
        assert_eq!(s.user_state("u0000001"), Some((true, 1)));
    }
    // Another id is not affected.
    rows!(&s; deactivate("/Users/u0000002") => DONE, deactivate("/Users/u0000001") => DONE);
    assert_eq!(s.user_state("u0000001"), Some((false, 2)));
    // The DELETE fault matches any id, once.
    rows!(&s; delete("/Groups/g0000001") => Scim(500));
    assert!(s.group_ids().contains(&"g0000001".to_owned()));
    rows!(&s; delete("/Users/u0000003") => DONE);
    assert!(!s.user_exists("u0000003"));
    let (failed, applied) = ((503, Some(false)), (204, Some(true)));
    let want = [
        failed,
        failed,
        applied,
        applied,
        (500, Some(false)),
        applied,
    ];
    assert_eq!(write_outcomes(&s), want);

    // set_faults restarts the counts.
    s.set_faults(faults!(write_fail: vec![write_fault("", "g0000000", 409, 1)]));
    let ops = json!([{"op": "remove", "path": "members", "value": [{"value": "u0000000"}]}]);
    rows!(&s; patch("/Groups/g0000000", ops.clone()) => Scim(409));
    assert_eq!(s.group_members("g0000000").len(), 3);
    rows!(&s; patch("/Groups/g0000000", ops) => DONE);
    assert_eq!(s.group_members("g0000000"), ["u0000001", "u0000002"]);
}

#[tokio::test]
async fn write_applied_then_slow_lands_before_the_answer() {
    let s = write_server().await;
    s.set_faults(faults!(write_applied_then_slow: Some(500)));
    // A client with a 150 ms timeout gives up, but the write landed.
    let write = deactivate("/Users/u0000001");
    let write = send(&s, &write);
    let late = tokio::time::timeout(Duration::from_millis(150), write).await;
    assert!(late.is_err(), "the answer is late");
    assert_eq!(s.user_state("u0000001"), Some((false, 2)));
    assert_eq!(ok_json(&s, get("/Users/u0000001")).await["active"], false);
    let last = s.write_requests().pop().unwrap();
    assert_eq!((last.status, last.applied), (204, Some(true)));

    // A patient client gets the 204 after the delay; reads are not delayed.
    let took = timed(
        &s,
        patch("/Groups/g0000000", remove_member("u0000000")),
        DONE,
    )
    .await;
    assert!(took >= 500, "{took} ms");
    assert_eq!(s.group_members("g0000000"), ["u0000001", "u0000002"]);
    let read_ms = timed(&s, get("/Groups/g0000000"), OK).await;
    assert!(read_ms < 400, "GET is not delayed");
    assert!(timed(&s, delete("/Users/u0000009"), DONE).await >= 500);
    // Failed writes are not delayed.
    assert!(timed(&s, delete("/Users/u0000009"), Scim(404)).await < 400);
}

#[tokio::test]
async fn write_not_found_deletes_then_answers_404() {
    let s = write_server().await;
    s.set_faults(faults!(write_not_found: true));
    rows!(&s;
        deactivate("/Users/u0000001").if_match("W/\"1\"") => Scim(404),
        get("/Users/u0000001") => Scim(404),
    );
    assert!(!s.user_exists("u0000001"));
    assert_eq!(s.group_members("g0000000"), ["u0000000", "u0000002"]);
    rows!(&s; delete("/Users/u0000002") => Scim(404));
    assert!(!s.user_exists("u0000002"));
    rows!(&s;
        patch("/Groups/g0000001", add_member("u0000009")) => Scim(404),
        get("/Groups/g0000001") => Scim(404),
    );
    assert_eq!(s.group_ids(), ["g0000000", "g0000002"]);
    assert!(s.write_requests().iter().all(|r| r.applied == Some(false)));

    // write_fail fires first and leaves the resource in place.
    let write_fail = vec![write_fault("PATCH", "u0000003", 503, 1)];
    s.set_faults(faults!(write_not_found: true, write_fail: write_fail));
    rows!(&s; deactivate("/Users/u0000003") => Scim(503));
    assert!(s.user_exists("u0000003"));
    rows!(&s; deactivate("/Users/u0000003") => Scim(404));
    assert!(!s.user_exists("u0000003"));
}

#[tokio::test]
async fn drift_helpers_set_active_and_group_members() {
    let s = write_server().await;
    assert_eq!(s.group_ids(), ["g0000000", "g0000001", "g0000002"]);
    // W4: confirmed deactivation, then someone re-enables the user.
    rows!(&s; deactivate("/Users/u0000001") => DONE);
    s.set_active("u0000001", true);
    let u = check(&s, get("/Users/u0000001"), OK).await;
    assert_eq!(u.header("etag"), Some("W/\"3\""));
    assert_eq!(u.json()["active"], true);

    // Confirmed removal, then the member is put back.
    rows!(&s; patch("/Groups/g0000000", remove_member("u0000001")) => DONE);
    assert_eq!(s.group_members("g0000000"), ["u0000000", "u0000002"]);
    let mut m = s.group_members("g0000000");
    m.extend(strings(&["u0000001", "u0000001"]));
    s.set_group_members("g0000000", m);
    assert_group(&s, "g0000000", &["u0000000", "u0000002", "u0000001"], 3).await;
    // Setting the same list again keeps the version.
    s.set_group_members("g0000000", s.group_members("g0000000"));
    assert_eq!(s.group_state("g0000000").unwrap().1, 3);
    assert!(s.user_exists("u0000009") && !s.user_exists("u0000010"));
    assert!(s.group_members("g7777777").is_empty() && s.group_state("g7777777").is_none());
    // Only writes are in write_requests.
    assert_eq!(s.write_requests().len(), 2);
    assert!(s.requests().len() > 2);
}

// ---------------------------------------------------------------------------
// W9 (memberships shown by a filter or the user's `groups`) and W10 (down
// after the write).

/// `GET /v2/Groups?filter=id eq "G" and members.value eq "U"`, encoded.
fn member_filter(g: &str, u: &str) -> Req {
    let f = format!("id eq \"{g}\" and members.value eq \"{u}\"");
    let enc: String = f
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect();
    get(&format!("/Groups?filter={enc}"))
}

#[tokio::test]
async fn w9_the_membership_filter_in_each_mode() {
    let s = server!(users: 6, groups: 2);
    // g0000000 has u0..u2, g0000001 u3..u5.
    let (member, stranger) = (
        member_filter("g0000000", "u0000001"),
        member_filter("g0000000", "u0000005"),
    );
    rows!(&s;
        member.clone() => ScimType(400, "invalidFilter"),
        get("/Groups?filter=displayName%20eq%20%22group0%22") => ScimType(400, "invalidFilter"),
    );
    s.set_faults(
        faults!(member_filter: MemberFilter::Supported, members_shown: MembersShown::Never),
    );
    let hit = check(&s, member.clone(), Total(1)).await.json();
    has!(hit["Resources"][0], {"id": "g0000000", "displayName": "group0"});
    assert!(
        hit["Resources"][0].get("members").is_none(),
        "members shown: {hit}"
    );
    rows!(&s;
        stranger.clone() => Total(0),
        member_filter("g9999999", "u0000001") => Total(0),
        get("/Groups?filter=displayName%20eq%20%22group0%22") => ScimType(400, "invalidFilter"),
    );
    s.set_faults(faults!(member_filter: MemberFilter::NotImplemented));
    rows!(&s; member.clone() => Scim(501));
    s.set_faults(faults!(member_filter: MemberFilter::IgnoresMembers));
    rows!(&s; stranger.clone() => Total(1));
    s.set_faults(faults!(member_filter: MemberFilter::Ignored));
    rows!(&s; stranger => Total(2));
}

#[tokio::test]
async fn w9_users_carry_groups_only_when_asked_to() {
    let s = server!(users: 7, groups: 2);
    assert!(
        ok_json(&s, get("/Users/u0000001"))
            .await
            .get("groups")
            .is_none()
    );
    s.set_faults(faults!(user_groups: true));
    let u = ok_json(&s, get("/Users/u0000001")).await;
    has!(u["groups"][0], {"value": "g0000000", "display": "group0", "type": "direct"});
    assert_eq!(u["groups"].as_array().unwrap().len(), 1);
    let lonely = ok_json(&s, get("/Users/u0000006")).await;
    assert_eq!(lonely["groups"], json!([]));
    let page = ok_json(&s, get("/Users?count=10")).await;
    assert!(page["Resources"][0]["groups"].is_array(), "{page}");
}

#[tokio::test]
async fn w10_down_after_the_first_applied_write() {
    let s = server!(users: 3);
    s.set_faults(faults!(down_after_write: true));
    rows!(&s;
        get("/Users/u0000000") => OK,
        deactivate("/Users/u0000000") => DONE,
        get("/Users/u0000000") => Scim(503),
        get("/Users?count=10") => Scim(503),
        deactivate("/Users/u0000001") => Scim(503),
    );
    assert_eq!(
        s.user_state("u0000000"),
        Some((false, 2)),
        "the write landed"
    );
    s.set_faults(Faults::default());
    rows!(&s; get("/Users/u0000000") => OK);
}
