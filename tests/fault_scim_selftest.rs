//! Self-tests of the fault-injecting SCIM 2.0 server (`testkit/src/fault_scim/`):
//! honest index and cursor paging, probes, single resources and writes, bearer
//! auth, keep-alive, and one test per injected fault showing it behaves as its
//! doc says; then the plain REST API on the same server (page-number paging,
//! `Link`-header paging, `X-Total-Count`, and the faults on both endpoints);
//! then the write path a lifecycle action uses (deactivate with `If-Match`,
//! stale `If-Match` 412, attribute PATCHes, group member removal in filter and
//! value-list form, member add, DELETE then 404, drift helpers) and the write
//! faults W1..W3 (`write_noop`, `write_fail`, `write_applied_then_slow`,
//! `write_not_found`). The client is a hand-written HTTP/1.1 client over a
//! tokio socket, so nothing here depends on the sync engine under test.

use std::{collections::HashSet, time::Instant};

use govledger_testkit::fault_scim::*;
use serde_json::{Value, json};
use tokio::{
    io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader},
    net::TcpStream,
};

#[derive(Debug)]
struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }
}

/// One HTTP/1.1 connection (keep-alive unless the request says otherwise).
struct Conn {
    io: BufReader<TcpStream>,
    host: String,
}

impl Conn {
    async fn open(s: &FaultScim) -> Conn {
        Conn {
            io: BufReader::new(TcpStream::connect(s.addr).await.unwrap()),
            host: s.addr.to_string(),
        }
    }

    async fn send(
        &mut self,
        method: &str,
        target: &str,
        headers: &[(&str, &str)],
        body: Option<&str>,
    ) -> Resp {
        let mut req = format!("{method} {target} HTTP/1.1\r\nHost: {}\r\n", self.host);
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        if let Some(b) = body {
            req.push_str(&format!(
                "Content-Type: application/scim+json\r\nContent-Length: {}\r\n",
                b.len()
            ));
        }
        req.push_str("\r\n");
        req.push_str(body.unwrap_or(""));
        self.io.get_mut().write_all(req.as_bytes()).await.unwrap();

        let mut line = String::new();
        self.io.read_line(&mut line).await.unwrap();
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .unwrap_or_else(|| panic!("bad status line {line:?}"))
            .parse()
            .unwrap();
        let mut headers = Vec::new();
        loop {
            line.clear();
            self.io.read_line(&mut line).await.unwrap();
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            let (k, v) = l.split_once(':').unwrap();
            headers.push((k.trim().to_owned(), v.trim().to_owned()));
        }
        let mut resp = Resp {
            status,
            headers,
            body: Vec::new(),
        };
        if let Some(n) = resp.header("content-length") {
            let mut body = vec![0; n.parse().unwrap()];
            self.io.read_exact(&mut body).await.unwrap();
            resp.body = body;
        } else if resp
            .header("transfer-encoding")
            .is_some_and(|t| t.eq_ignore_ascii_case("chunked"))
        {
            loop {
                line.clear();
                self.io.read_line(&mut line).await.unwrap();
                let size = usize::from_str_radix(line.trim(), 16).unwrap();
                let mut chunk = vec![0; size + 2];
                self.io.read_exact(&mut chunk).await.unwrap();
                if size == 0 {
                    break;
                }
                resp.body.extend_from_slice(&chunk[..size]);
            }
        } else {
            self.io.read_to_end(&mut resp.body).await.unwrap();
        }
        resp
    }
}

/// GET `base_url + rel` on a fresh connection.
async fn get(s: &FaultScim, rel: &str) -> Resp {
    get_auth(s, rel, None).await
}

async fn get_auth(s: &FaultScim, rel: &str, token: Option<&str>) -> Resp {
    let auth = token.map(|t| format!("Bearer {t}"));
    let mut headers = vec![("Connection", "close")];
    if let Some(a) = &auth {
        headers.push(("Authorization", a));
    }
    Conn::open(s)
        .await
        .send("GET", &format!("/v2{rel}"), &headers, None)
        .await
}

async fn send_body(s: &FaultScim, method: &str, rel: &str, body: Option<&Value>) -> Resp {
    let text = body.map(|b| b.to_string());
    Conn::open(s)
        .await
        .send(
            method,
            &format!("/v2{rel}"),
            &[("Connection", "close")],
            text.as_deref(),
        )
        .await
}

fn ids(page: &Value) -> Vec<String> {
    page["Resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_owned())
        .collect()
}

fn uid(n: usize) -> String {
    format!("u{n:07}")
}

fn assert_scim_error(r: &Resp, status: u16) {
    assert_eq!(r.status, status, "{}", r.text());
    let b = r.json();
    assert_eq!(b["schemas"], json!([ERROR_SCHEMA]));
    assert_eq!(b["status"], json!(status.to_string()));
    assert!(b["detail"].is_string());
}

/// Walks cursor pages from the first; returns (ids, cursors seen) after at most `max_pages`.
async fn walk_cursor(s: &FaultScim, count: usize, max_pages: usize) -> (Vec<String>, Vec<String>) {
    let mut all = Vec::new();
    let mut cursors = Vec::new();
    let mut cursor = String::new();
    for _ in 0..max_pages {
        let r = get(s, &format!("/Users?cursor={cursor}&count={count}")).await;
        assert_eq!(r.status, 200, "{}", r.text());
        let b = r.json();
        all.extend(ids(&b));
        match b["nextCursor"].as_str() {
            Some(c) => {
                cursors.push(c.to_owned());
                cursor = c.to_owned();
            }
            None => break,
        }
    }
    (all, cursors)
}

#[tokio::test]
async fn honest_index_paging_250_users_in_three_pages() {
    let s = FaultScim::start(250).await;
    assert_eq!(s.user_count(), 250);
    let mut seen = Vec::new();
    for (i, start) in [1, 101, 201].into_iter().enumerate() {
        let r = get(&s, &format!("/Users?startIndex={start}&count=100")).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.header("content-type"), Some(SCIM_JSON));
        let b = r.json();
        assert_eq!(b["schemas"], json!([LIST_RESPONSE_SCHEMA]));
        assert_eq!(b["totalResults"], 250);
        assert_eq!(b["startIndex"], start);
        let expect = if i == 2 { 50 } else { 100 };
        assert_eq!(b["itemsPerPage"], expect);
        assert!(b.get("nextCursor").is_none());
        let page = ids(&b);
        assert_eq!(page.len(), expect);
        assert_eq!(page[0], uid(start - 1));
        seen.extend(page);
    }
    let want: Vec<String> = (0..250).map(uid).collect();
    assert_eq!(seen, want, "every user once, in id order");

    let first = get(&s, "/Users?startIndex=43&count=1").await.json();
    assert_eq!(
        first["Resources"][0],
        json!({
            "schemas": [USER_SCHEMA],
            "id": "u0000042",
            "userName": "user42@example.test",
            "active": true,
            "meta": {
                "resourceType": "User",
                "version": "W/\"1\"",
                "location": s.url("/Users/u0000042"),
            },
        })
    );

    // Defaults: startIndex 1, count 100; startIndex < 1 means 1; past the end is empty.
    let d = get(&s, "/Users").await.json();
    assert_eq!((d["startIndex"].as_u64(), ids(&d).len()), (Some(1), 100));
    let z = get(&s, "/Users?startIndex=0&count=5").await.json();
    assert_eq!(ids(&z)[0], uid(0));
    let past = get(&s, "/Users?startIndex=251&count=100").await.json();
    assert_eq!(
        (past["totalResults"].as_u64(), past["itemsPerPage"].as_u64()),
        (Some(250), Some(0))
    );
    assert_eq!(past["Resources"], json!([]));

    let bad = get(&s, "/Users?startIndex=x").await;
    assert_scim_error(&bad, 400);
    assert_eq!(bad.json()["scimType"], "invalidValue");

    let log = s.requests();
    assert_eq!(log[0].method, "GET");
    assert_eq!(log[0].path_and_query, "/v2/Users?startIndex=1&count=100");
    assert_eq!(log[0].status, 200);
    assert_eq!(log[0].page_no, Some(1));
    assert_eq!(log[2].page_no, Some(3));
    assert!(!log[0].has_authorization);
    assert!(log.windows(2).all(|w| w[0].at <= w[1].at));
}

#[tokio::test]
async fn count_zero_probe_and_page_cap() {
    let s = FaultScim::start_with(ScimConfig {
        users: 120,
        max_page_size: 50,
        ..Default::default()
    })
    .await;
    let p = get(&s, "/Users?count=0").await.json();
    assert_eq!(p["totalResults"], 120);
    assert_eq!(p["itemsPerPage"], 0);
    assert_eq!(p["Resources"], json!([]));
    assert_eq!(s.requests()[0].page_no, None, "a probe is not a page");
    assert_eq!(s.list_requests(), 0);

    let capped = get(&s, "/Users?count=100").await.json();
    assert_eq!(capped["itemsPerPage"], 50);
    assert_eq!(s.requests()[1].page_no, Some(1));

    let spc = get(&s, "/ServiceProviderConfig").await.json();
    assert_eq!(spc["pagination"]["maxPageSize"], 50);
    assert_eq!(spc["pagination"]["cursor"], true);
}

#[tokio::test]
async fn cursor_mode_walks_all_users_and_ends_without_next_cursor() {
    let s = FaultScim::start(250).await;
    let (all, cursors) = walk_cursor(&s, 100, 10).await;
    assert_eq!(all, (0..250).map(uid).collect::<Vec<_>>());
    assert_eq!(
        cursors.len(),
        2,
        "3 pages: two nextCursors, none on the last"
    );

    let first = get(&s, "/Users?cursor=&count=100").await.json();
    assert_eq!(first["totalResults"], 250);
    assert_eq!(first["itemsPerPage"], 100);
    assert!(
        first.get("startIndex").is_none(),
        "RFC 9865 pages have no startIndex"
    );
    let last = get(&s, &format!("/Users?cursor={}&count=100", cursors[1]))
        .await
        .json();
    assert_eq!(last["itemsPerPage"], 50);
    assert!(last.get("nextCursor").is_none());

    let bad = get(&s, "/Users?cursor=nonsense&count=10").await;
    assert_scim_error(&bad, 400);
    assert_eq!(bad.json()["scimType"], "invalidCursor");
    let both = get(&s, "/Users?cursor=&startIndex=1").await;
    assert_scim_error(&both, 400);
    // A Users cursor is not a Groups cursor.
    let cross = get(&s, &format!("/Groups?cursor={}&count=10", cursors[0])).await;
    assert_scim_error(&cross, 400);
}

#[tokio::test]
async fn single_users_patch_delete_and_mutators() {
    let s = FaultScim::start(5).await;
    let r = get(&s, "/Users/u0000003").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("etag"), Some("W/\"1\""));
    assert_eq!(r.json()["userName"], "user3@example.test");
    assert_scim_error(&get(&s, "/Users/u9999999").await, 404);
    assert_scim_error(&get(&s, "/Nope").await, 404);

    let by_path = json!({
        "schemas": [PATCH_OP_SCHEMA],
        "Operations": [{"op": "replace", "path": "active", "value": false}],
    });
    assert_eq!(
        send_body(&s, "PATCH", "/Users/u0000001", Some(&by_path))
            .await
            .status,
        204
    );
    let u = get(&s, "/Users/u0000001").await.json();
    assert_eq!(
        (u["active"].clone(), u["meta"]["version"].clone()),
        (json!(false), json!("W/\"2\""))
    );

    let by_value = json!({
        "schemas": [PATCH_OP_SCHEMA],
        "Operations": [{"op": "Replace", "value": {"active": false}}],
    });
    assert_eq!(
        send_body(&s, "PATCH", "/Users/u0000002", Some(&by_value))
            .await
            .status,
        204
    );
    assert_eq!(s.user_state("u0000002"), Some((false, 2)));

    let wrong_type = json!({
        "schemas": [PATCH_OP_SCHEMA],
        "Operations": [{"op": "replace", "path": "active", "value": "no"}],
    });
    assert_scim_error(
        &send_body(&s, "PATCH", "/Users/u0000000", Some(&wrong_type)).await,
        400,
    );
    let no_schema = json!({"Operations": [{"op": "replace", "path": "active", "value": false}]});
    assert_scim_error(
        &send_body(&s, "PATCH", "/Users/u0000000", Some(&no_schema)).await,
        400,
    );
    assert_scim_error(
        &send_body(&s, "PATCH", "/Users/u9999999", Some(&by_path)).await,
        404,
    );
    assert_eq!(s.user_state("u0000000"), Some((true, 1)));

    assert_eq!(
        send_body(&s, "DELETE", "/Users/u0000004", None)
            .await
            .status,
        204
    );
    assert_scim_error(&send_body(&s, "DELETE", "/Users/u0000004", None).await, 404);
    assert_scim_error(&get(&s, "/Users/u0000004").await, 404);
    assert_eq!(s.user_count(), 4);

    let id = s.add_user();
    assert_eq!(id, "u0000005");
    s.set_active(&id, false);
    assert_eq!(s.user_state(&id), Some((false, 2)));
    s.delete_user("u0000000");
    let list = get(&s, "/Users").await.json();
    assert_eq!(list["totalResults"], 4);
    assert_eq!(ids(&list), ["u0000001", "u0000002", "u0000003", "u0000005"]);
    assert_eq!(s.user_ids(), ids(&list));
}

#[tokio::test]
async fn groups_page_with_members() {
    let s = FaultScim::start_with(ScimConfig {
        users: 10,
        groups: 7,
        ..Default::default()
    })
    .await;
    let p1 = get(&s, "/Groups?startIndex=1&count=5").await.json();
    assert_eq!(p1["totalResults"], 7);
    assert_eq!(
        ids(&p1),
        ["g0000000", "g0000001", "g0000002", "g0000003", "g0000004"]
    );
    let g0 = &p1["Resources"][0];
    assert_eq!(g0["schemas"], json!([GROUP_SCHEMA]));
    assert_eq!(g0["displayName"], "group0");
    assert_eq!(g0["members"][0]["value"], "u0000000");
    assert_eq!(g0["members"][0]["type"], "User");
    assert_eq!(g0["members"].as_array().unwrap().len(), 3);
    let p2 = get(&s, "/Groups?startIndex=6&count=5").await.json();
    assert_eq!(ids(&p2), ["g0000005", "g0000006"]);
    assert_eq!(get(&s, "/Groups/g0000006").await.json()["id"], "g0000006");
    // Deleting a user drops it from its groups.
    s.delete_user("u0000000");
    let g0 = get(&s, "/Groups/g0000000").await.json();
    assert_eq!(g0["members"].as_array().unwrap().len(), 2);
    assert_eq!(g0["meta"]["version"], "W/\"2\"");
    let r = get(&s, "/Groups?cursor=&count=4").await.json();
    assert_eq!(ids(&r).len(), 4);
    assert!(r["nextCursor"].is_string());
    assert_eq!(
        s.requests().last().unwrap().page_no,
        Some(3),
        "Groups list #3"
    );
}

#[tokio::test]
async fn bearer_token_is_enforced() {
    let s = FaultScim::start_with(ScimConfig {
        users: 3,
        bearer_token: Some("s3cret".into()),
        ..Default::default()
    })
    .await;
    let none = get(&s, "/Users").await;
    assert_scim_error(&none, 401);
    assert!(
        none.header("www-authenticate")
            .unwrap()
            .starts_with("Bearer")
    );
    assert_scim_error(&get_auth(&s, "/Users", Some("wrong")).await, 401);
    assert_scim_error(&get(&s, "/Users/u0000000").await, 401);
    let ok = get_auth(&s, "/Users", Some("s3cret")).await;
    assert_eq!(ok.status, 200);
    assert_eq!(ok.json()["totalResults"], 3);
    let log = s.requests();
    let seen: Vec<(bool, u16)> = log
        .iter()
        .map(|r| (r.has_authorization, r.status))
        .collect();
    assert_eq!(seen, [(false, 401), (true, 401), (false, 401), (true, 200)]);
}

#[tokio::test]
async fn keep_alive_serves_several_requests_on_one_connection() {
    let s = FaultScim::start(30).await;
    let mut c = Conn::open(&s).await;
    for start in [1, 11, 21] {
        let r = c
            .send(
                "GET",
                &format!("/v2/Users?startIndex={start}&count=10"),
                &[],
                None,
            )
            .await;
        assert_eq!(r.status, 200);
        assert_eq!(ids(&r.json())[0], uid(start - 1));
    }
    assert_eq!(s.requests().len(), 3);
}

#[tokio::test]
async fn fail_times_then_succeed_keyed_by_start_index() {
    let s = FaultScim::start(250).await;
    s.set_faults(Faults {
        fail: vec![
            PageFault {
                start_index: 101,
                status: 503,
                times: 2,
            },
            PageFault {
                start_index: 201,
                status: 400,
                times: u32::MAX,
            },
        ],
        ..Default::default()
    });
    assert_eq!(get(&s, "/Users?startIndex=1&count=100").await.status, 200);
    assert_scim_error(&get(&s, "/Users?startIndex=101&count=100").await, 503);
    assert_scim_error(&get(&s, "/Users?startIndex=101&count=100").await, 503);
    let ok = get(&s, "/Users?startIndex=101&count=100").await;
    assert_eq!(ok.status, 200);
    assert_eq!(ids(&ok.json())[0], uid(100));
    for _ in 0..5 {
        assert_scim_error(&get(&s, "/Users?startIndex=201&count=100").await, 400);
    }
    // A probe is not a page: never failed.
    assert_eq!(get(&s, "/Users?startIndex=201&count=0").await.status, 200);

    let log = s.requests();
    let pages: Vec<(Option<usize>, u16)> = log.iter().map(|r| (r.page_no, r.status)).collect();
    assert_eq!(
        &pages[..4],
        [
            (Some(1), 200),
            (Some(2), 503),
            (Some(3), 503),
            (Some(4), 200)
        ],
        "retries of one page are new page_no's"
    );

    // Cursor mode: the page at offset 100 is start_index 101; set_faults resets counts.
    s.set_faults(Faults {
        fail: vec![PageFault {
            start_index: 101,
            status: 500,
            times: 1,
        }],
        ..Default::default()
    });
    let p1 = get(&s, "/Users?cursor=&count=100").await.json();
    let next = p1["nextCursor"].as_str().unwrap().to_owned();
    assert_scim_error(
        &get(&s, &format!("/Users?cursor={next}&count=100")).await,
        500,
    );
    let p2 = get(&s, &format!("/Users?cursor={next}&count=100")).await;
    assert_eq!(ids(&p2.json())[0], uid(100));
}

#[tokio::test]
async fn rate_limit_with_seconds_and_http_date() {
    let s = FaultScim::start(250).await;
    s.set_faults(Faults {
        rate_limit: vec![
            RateLimitFault {
                start_index: 1,
                times: 1,
                retry_after: RetryAfter::Seconds(7),
            },
            RateLimitFault {
                start_index: 101,
                times: 2,
                retry_after: RetryAfter::HttpDate(120),
            },
        ],
        ..Default::default()
    });
    let r = get(&s, "/Users?startIndex=1&count=100").await;
    assert_scim_error(&r, 429);
    assert_eq!(r.header("retry-after"), Some("7"));
    assert_eq!(r.header("x-ratelimit-remaining"), Some("0"));
    assert_eq!(get(&s, "/Users?startIndex=1&count=100").await.status, 200);

    for _ in 0..2 {
        let r = get(&s, "/Users?startIndex=101&count=100").await;
        assert_scim_error(&r, 429);
        assert_eq!(r.header("x-ratelimit-remaining"), Some("0"));
        let date = r.header("retry-after").unwrap();
        assert!(
            date.ends_with(" GMT") && date.len() == 29,
            "IMF-fixdate: {date:?}"
        );
        let when = chrono::DateTime::parse_from_rfc2822(date).unwrap();
        let ahead = (when.with_timezone(&chrono::Utc) - chrono::Utc::now()).num_seconds();
        assert!((100..=121).contains(&ahead), "{ahead}s ahead");
    }
    assert_eq!(get(&s, "/Users?startIndex=101&count=100").await.status, 200);
}

#[tokio::test]
async fn total_results_faults() {
    let s = FaultScim::start(250).await;
    let total = |b: &Value| b["totalResults"].as_i64().unwrap();

    s.set_faults(Faults {
        total_results: TotalResults::Fixed(1000),
        ..Default::default()
    });
    assert_eq!(total(&get(&s, "/Users?count=0").await.json()), 1000);
    assert_eq!(total(&get(&s, "/Users?count=100").await.json()), 1000);

    s.set_faults(Faults {
        total_results: TotalResults::Offset(-30),
        ..Default::default()
    });
    assert_eq!(total(&get(&s, "/Users?count=0").await.json()), 220);
    let p = get(&s, "/Users?startIndex=201&count=100").await.json();
    assert_eq!((total(&p), ids(&p).len()), (220, 50));

    // R13: totalResults == page size; a probe stays honest.
    s.set_faults(Faults {
        total_results: TotalResults::EqualsPageSize,
        ..Default::default()
    });
    let p = get(&s, "/Users?startIndex=1&count=100").await.json();
    assert_eq!((total(&p), ids(&p).len()), (100, 100));
    assert_eq!(
        total(&get(&s, "/Users?startIndex=101&count=100").await.json()),
        100
    );
    assert_eq!(total(&get(&s, "/Users?count=0").await.json()), 250);

    // R13: honest for two list requests, then +5 (probes follow the regime).
    s.set_faults(Faults {
        total_results: TotalResults::ChangeAfter {
            requests: 2,
            offset: 5,
        },
        ..Default::default()
    });
    assert_eq!(total(&get(&s, "/Users?count=0").await.json()), 250);
    assert_eq!(
        total(&get(&s, "/Users?startIndex=1&count=100").await.json()),
        250
    );
    assert_eq!(
        total(&get(&s, "/Users?startIndex=101&count=100").await.json()),
        250
    );
    assert_eq!(total(&get(&s, "/Users?count=0").await.json()), 255);
    assert_eq!(
        total(&get(&s, "/Users?startIndex=201&count=100").await.json()),
        255
    );

    // `only` keeps the other resource type honest.
    let g = FaultScim::start_with(ScimConfig {
        users: 10,
        groups: 10,
        ..Default::default()
    })
    .await;
    g.set_faults(Faults {
        only: Some(ResourceType::Users),
        total_results: TotalResults::Fixed(3),
        ..Default::default()
    });
    assert_eq!(total(&get(&g, "/Users?count=5").await.json()), 3);
    assert_eq!(total(&get(&g, "/Groups?count=5").await.json()), 10);
    assert_eq!(
        g.list_requests(),
        1,
        "Groups are not counted when only=Users"
    );
}

#[tokio::test]
async fn mutation_drift_duplicates_and_skips_ids_across_pages() {
    // Insert in front after page 1: the tail of page 1 reappears on page 2.
    let s = FaultScim::start(250).await;
    s.set_faults(Faults {
        mutate_after_page: Some(Mutation {
            after_requests: 1,
            insert_front: 5,
            delete_front: 0,
        }),
        ..Default::default()
    });
    let p1 = ids(&get(&s, "/Users?startIndex=1&count=100").await.json());
    assert_eq!(s.user_count(), 250, "not yet");
    let p2b = get(&s, "/Users?startIndex=101&count=100").await.json();
    assert_eq!(p2b["totalResults"], 255);
    let p2 = ids(&p2b);
    assert_eq!(p2[0], uid(95));
    let dup: Vec<&String> = p2.iter().filter(|id| p1.contains(id)).collect();
    assert_eq!(dup.len(), 5, "duplicated ids across pages: {dup:?}");
    assert_eq!(&s.user_ids()[..2], ["a0000000", "a0000001"]);
    // Applied once.
    get(&s, "/Users?startIndex=201&count=100").await;
    assert_eq!(s.user_count(), 255);

    // Delete from the front after page 1: ids are skipped.
    let s = FaultScim::start(250).await;
    s.set_faults(Faults {
        mutate_after_page: Some(Mutation {
            after_requests: 1,
            insert_front: 0,
            delete_front: 10,
        }),
        ..Default::default()
    });
    let mut seen: HashSet<String> = HashSet::new();
    for start in [1, 101, 201] {
        seen.extend(ids(&get(
            &s,
            &format!("/Users?startIndex={start}&count=100"),
        )
        .await
        .json()));
    }
    assert_eq!(s.user_count(), 240);
    let missed: Vec<String> = (10..250).map(uid).filter(|id| !seen.contains(id)).collect();
    assert_eq!(
        missed,
        (100..110).map(uid).collect::<Vec<_>>(),
        "live users never served"
    );
}

#[tokio::test]
async fn short_and_empty_pages() {
    let s = FaultScim::start(250).await;
    s.set_faults(Faults {
        short_page: Some(101),
        empty_page: Some(201),
        ..Default::default()
    });
    let p2 = get(&s, "/Users?startIndex=101&count=100").await.json();
    assert_eq!(
        (p2["totalResults"].as_u64(), p2["itemsPerPage"].as_u64()),
        (Some(250), Some(50))
    );
    assert_eq!(ids(&p2), (100..150).map(uid).collect::<Vec<_>>());
    let p3 = get(&s, "/Users?startIndex=201&count=100").await.json();
    assert_eq!(
        (p3["totalResults"].as_u64(), p3["itemsPerPage"].as_u64()),
        (Some(250), Some(0))
    );
    assert_eq!(p3["Resources"], json!([]));

    // Cursor mode: the short page's nextCursor skips its missing half.
    let (all, _) = walk_cursor(&s, 100, 10).await;
    assert_eq!(all.len(), 150);
    assert!(!all.contains(&uid(150)) && !all.contains(&uid(200)));
}

#[tokio::test]
async fn malformed_bodies_then_recovery() {
    let s = FaultScim::start(250).await;
    s.set_faults(Faults {
        malformed: vec![
            MalformedFault {
                start_index: 1,
                times: 1,
                kind: Malformed::Truncated,
            },
            MalformedFault {
                start_index: 101,
                times: 1,
                kind: Malformed::NotJson,
            },
        ],
        ..Default::default()
    });
    let t = get(&s, "/Users?startIndex=1&count=100").await;
    assert_eq!(t.status, 200);
    assert_eq!(t.header("content-type"), Some(SCIM_JSON));
    assert!(t.text().starts_with('{'));
    assert!(
        serde_json::from_slice::<Value>(&t.body).is_err(),
        "truncated"
    );
    let ok = get(&s, "/Users?startIndex=1&count=100").await;
    assert_eq!(ids(&ok.json()).len(), 100);
    assert!(t.body.len() < ok.body.len());

    let n = get(&s, "/Users?startIndex=101&count=100").await;
    assert_eq!(n.status, 200);
    assert!(n.header("content-type").unwrap().starts_with("text/plain"));
    assert!(serde_json::from_slice::<Value>(&n.body).is_err());
    assert_eq!(
        get(&s, "/Users?startIndex=101&count=100").await.json()["itemsPerPage"],
        100
    );
}

#[tokio::test]
async fn bad_records_missing_id_and_wrong_type() {
    let s = FaultScim::start(250).await;
    s.set_faults(Faults {
        bad_records: Some(101),
        ..Default::default()
    });
    let p = get(&s, "/Users?startIndex=101&count=100").await.json();
    let res = p["Resources"].as_array().unwrap();
    assert_eq!((res.len(), p["itemsPerPage"].as_u64()), (100, Some(100)));
    assert!(res[0].get("id").is_none(), "missing id");
    assert_eq!(res[0]["userName"], "user100@example.test");
    assert_eq!(res[1]["active"], json!("yes"), "active as a string");
    assert!(
        res[2..]
            .iter()
            .all(|r| r["id"].is_string() && r["active"].is_boolean())
    );
    let other = get(&s, "/Users?startIndex=1&count=100").await.json();
    assert!(other["Resources"][0]["id"].is_string());
}

#[tokio::test]
async fn auth_expires_after_n_list_requests() {
    let s = FaultScim::start_with(ScimConfig {
        users: 250,
        bearer_token: Some("tok".into()),
        ..Default::default()
    })
    .await;
    s.set_faults(Faults {
        auth_expire_after_requests: Some(2),
        ..Default::default()
    });
    let t = Some("tok");
    assert_eq!(
        get_auth(&s, "/Users?count=0", t).await.status,
        200,
        "probes do not count"
    );
    assert_eq!(
        get_auth(&s, "/Users?startIndex=1&count=100", t)
            .await
            .status,
        200
    );
    assert_eq!(get_auth(&s, "/Users/u0000000", t).await.status, 200);
    assert_eq!(
        get_auth(&s, "/Users?startIndex=101&count=100", t)
            .await
            .status,
        200
    );
    let r = get_auth(&s, "/Users?startIndex=201&count=100", t).await;
    assert_scim_error(&r, 401);
    assert!(
        r.header("www-authenticate")
            .unwrap()
            .contains("invalid_token")
    );
    assert_scim_error(&get_auth(&s, "/Users/u0000000", t).await, 401);
    assert_scim_error(&get_auth(&s, "/Users?startIndex=1&count=100", t).await, 401);
    s.set_faults(Faults::default());
    assert_eq!(
        get_auth(&s, "/Users?startIndex=201&count=100", t)
            .await
            .status,
        200
    );
}

#[tokio::test]
async fn cursor_cycle_repeats_pages() {
    let s = FaultScim::start(500).await;
    s.set_faults(Faults {
        cursor_cycle: Some((3, 2)),
        ..Default::default()
    });
    let (all, cursors) = walk_cursor(&s, 100, 7).await;
    // Pages 1, 2, 3, 2, 3, 2, 3: never ends, never reaches u0000300.
    assert_eq!(cursors.len(), 7, "every page hands out a nextCursor");
    assert_eq!(cursors[1], cursors[3]);
    assert_eq!(cursors[2], cursors[4]);
    assert_eq!(cursors[1], cursors[5]);
    let distinct: HashSet<&String> = all.iter().collect();
    assert_eq!((all.len(), distinct.len()), (700, 300));
    assert!(!distinct.contains(&uid(300)));
    // Index mode is unaffected.
    let p = get(&s, "/Users?startIndex=201&count=100").await.json();
    assert_eq!(ids(&p)[0], uid(200));
}

#[tokio::test]
async fn latency_and_one_slow_page() {
    let s = FaultScim::start(250).await;
    s.set_faults(Faults {
        latency_ms: 40,
        slow: Some((101, 400)),
        ..Default::default()
    });
    let t0 = Instant::now();
    assert_eq!(get(&s, "/Users/u0000001").await.status, 200);
    let fast = t0.elapsed();
    assert!(fast.as_millis() >= 40, "{fast:?}");
    let t1 = Instant::now();
    assert_eq!(get(&s, "/Users?startIndex=101&count=100").await.status, 200);
    let slow = t1.elapsed();
    assert!(slow.as_millis() >= 440, "{slow:?}");
    let t2 = Instant::now();
    assert_eq!(get(&s, "/Users?startIndex=1&count=100").await.status, 200);
    assert!(t2.elapsed().as_millis() < 400, "only that page is slow");
    // A client with a short timeout gives up on the slow page.
    let timed = tokio::time::timeout(
        std::time::Duration::from_millis(150),
        get(&s, "/Users?startIndex=101&count=100"),
    )
    .await;
    assert!(timed.is_err());
}

#[tokio::test]
async fn server_answers_while_the_test_thread_blocks() {
    let s = FaultScim::start(3).await;
    let addr = s.addr;
    // A blocking client on this (current-thread) runtime's own thread.
    let text = {
        use std::io::{Read, Write};
        let mut c = std::net::TcpStream::connect(addr).unwrap();
        c.write_all(b"GET /v2/Users?count=0 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut out = String::new();
        c.read_to_string(&mut out).unwrap();
        out
    };
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.contains("\"totalResults\":3"));
    drop(s);
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    assert!(
        std::net::TcpStream::connect(addr).is_err(),
        "stopped on drop"
    );
}

// ---------------------------------------------------------------------------
// The plain REST API (`/api/users`, `/api/users-link`).

/// GET an absolute path (e.g. `/api/users?page=1`) on a fresh connection.
async fn get_api(s: &FaultScim, target: &str) -> Resp {
    get_api_auth(s, target, None).await
}

async fn get_api_auth(s: &FaultScim, target: &str, token: Option<&str>) -> Resp {
    let auth = token.map(|t| format!("Bearer {t}"));
    let mut headers = vec![("Connection", "close")];
    if let Some(a) = &auth {
        headers.push(("Authorization", a));
    }
    Conn::open(s)
        .await
        .send("GET", target, &headers, None)
        .await
}

/// The path of one of this server's absolute REST URLs.
fn path_of(s: &FaultScim, url: &str) -> String {
    url.strip_prefix(&s.rest_url(""))
        .unwrap_or_else(|| panic!("{url} is not on {}", s.rest_url("")))
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
    links(r.header("link")?)
        .into_iter()
        .find(|(_, r)| r == rel)
        .map(|(u, _)| u)
}

fn rest_ids(items: &Value) -> Vec<String> {
    items
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["id"].as_str().unwrap().to_owned())
        .collect()
}

fn total_count(r: &Resp) -> u64 {
    r.header("x-total-count")
        .expect("X-Total-Count")
        .parse()
        .unwrap()
}

fn assert_rest_error(r: &Resp, status: u16) {
    assert_eq!(r.status, status, "{}", r.text());
    assert_eq!(r.header("content-type"), Some(REST_JSON));
    let b = r.json();
    assert_eq!(b["status"], status);
    assert!(b["error"].is_string() && b["message"].is_string(), "{b}");
}

/// Walks `Link` pages from the first, following `rel="next"`; returns (ids,
/// next links seen) after at most `max_pages`.
async fn walk_links(
    s: &FaultScim,
    per_page: usize,
    max_pages: usize,
) -> (Vec<String>, Vec<String>) {
    let mut all = Vec::new();
    let mut nexts = Vec::new();
    let mut target = format!("/api/users-link?per_page={per_page}");
    for _ in 0..max_pages {
        let r = get_api(s, &target).await;
        assert_eq!(r.status, 200, "{}", r.text());
        all.extend(rest_ids(&r.json()));
        match link_rel(&r, "next") {
            Some(n) => {
                target = path_of(s, &n);
                nexts.push(n);
            }
            None => break,
        }
    }
    (all, nexts)
}

#[test]
fn link_header_parser_handles_first_and_next() {
    let l = links(
        "<http://h/api/users-link?per_page=2>; rel=\"first\", <http://h/api/users-link?after=ab&per_page=2>; rel=\"next\"",
    );
    assert_eq!(
        l,
        [
            ("http://h/api/users-link?per_page=2".into(), "first".into()),
            (
                "http://h/api/users-link?after=ab&per_page=2".into(),
                "next".into()
            ),
        ]
    );
}

#[tokio::test]
async fn rest_page_number_paging_250_users_in_three_pages() {
    let s = FaultScim::start(250).await;
    let mut seen = Vec::new();
    for (page, expect) in [(1, 100), (2, 100), (3, 50)] {
        let r = get_api(&s, &format!("/api/users?page={page}&per_page=100")).await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.header("content-type"), Some(REST_JSON));
        assert_eq!(total_count(&r), 250);
        assert!(r.header("link").is_none(), "page-number mode has no Link");
        let b = r.json();
        assert_eq!(
            (&b["total"], &b["page"], &b["per_page"]),
            (&json!(250), &json!(page), &json!(100))
        );
        let page_ids = rest_ids(&b["users"]);
        assert_eq!(page_ids.len(), expect);
        assert_eq!(page_ids[0], uid((page - 1) * 100));
        seen.extend(page_ids);
    }
    assert_eq!(seen, (0..250).map(uid).collect::<Vec<_>>());
    assert_eq!(s.list_requests(), 3);

    let one = get_api(&s, "/api/users?page=43&per_page=1").await.json();
    assert_eq!(
        one["users"],
        json!([{"id": "u0000042", "email": "user42@example.test", "active": true}])
    );

    // Past the end: empty, total still honest.
    let past = get_api(&s, "/api/users?page=4&per_page=100").await;
    assert_eq!(past.status, 200);
    assert_eq!(total_count(&past), 250);
    let pb = past.json();
    assert_eq!((&pb["users"], &pb["total"]), (&json!([]), &json!(250)));

    // Defaults: page 1, per_page 100; page < 1 means 1.
    let d = get_api(&s, "/api/users").await.json();
    assert_eq!((&d["page"], &d["per_page"]), (&json!(1), &json!(100)));
    assert_eq!(rest_ids(&d["users"]).len(), 100);
    let z = get_api(&s, "/api/users?page=0&per_page=5").await.json();
    assert_eq!(
        (&z["page"], rest_ids(&z["users"])[0].as_str()),
        (&json!(1), "u0000000")
    );

    assert_rest_error(&get_api(&s, "/api/users?page=x").await, 400);
    assert_rest_error(&get_api(&s, "/api/users?per_page=0").await, 400);

    // Logged like SCIM list requests, numbered with /v2/Users.
    let log = s.requests();
    assert_eq!(log[0].path_and_query, "/api/users?page=1&per_page=100");
    assert_eq!((log[0].status, log[0].page_no), (200, Some(1)));
    assert_eq!(log[2].page_no, Some(3));
    get(&s, "/Users?count=10").await;
    let last = s.requests().pop().unwrap();
    assert_eq!(
        last.page_no,
        Some(log.iter().filter(|r| r.page_no.is_some()).count() + 1)
    );

    // per_page is capped at max_page_size.
    let c = FaultScim::start_with(ScimConfig {
        users: 120,
        max_page_size: 50,
        ..Default::default()
    })
    .await;
    let capped = get_api(&c, "/api/users?page=2&per_page=100").await.json();
    assert_eq!(capped["per_page"], 50);
    assert_eq!(rest_ids(&capped["users"])[0], uid(50));
}

#[tokio::test]
async fn rest_link_paging_walks_all_users_following_next() {
    let s = FaultScim::start(250).await;
    let first = get_api(&s, "/api/users-link?per_page=100").await;
    assert_eq!(first.status, 200);
    assert_eq!(first.header("content-type"), Some(REST_JSON));
    assert_eq!(total_count(&first), 250);
    let body = first.json();
    assert!(body.is_array(), "a bare array: {body}");
    assert_eq!(
        body[0],
        json!({"id": "u0000000", "email": "user0@example.test", "active": true})
    );
    let l = links(first.header("link").unwrap());
    assert_eq!(l.len(), 2);
    assert_eq!(
        l[0],
        (
            s.rest_url("/api/users-link?per_page=100"),
            "first".to_owned()
        )
    );
    assert_eq!(l[1].1, "next");
    assert!(
        l[1].0.starts_with(&s.rest_url("/api/users-link?after="))
            && l[1].0.ends_with("&per_page=100"),
        "{}",
        l[1].0
    );

    let (all, nexts) = walk_links(&s, 100, 10).await;
    assert_eq!(all, (0..250).map(uid).collect::<Vec<_>>());
    assert_eq!(nexts.len(), 2, "3 pages: two next links, none on the last");
    let last = get_api(&s, &path_of(&s, &nexts[1])).await;
    assert_eq!(rest_ids(&last.json()).len(), 50);
    assert_eq!(total_count(&last), 250);
    assert_eq!(link_rel(&last, "next"), None);
    assert_eq!(
        link_rel(&last, "first"),
        Some(s.rest_url("/api/users-link?per_page=100"))
    );

    // Default per_page is 100; an unknown token is a 400, so is a SCIM cursor.
    let d = get_api(&s, "/api/users-link").await;
    assert_eq!(rest_ids(&d.json()).len(), 100);
    assert_eq!(link_rel(&d, "next"), Some(nexts[0].clone()));
    assert_rest_error(&get_api(&s, "/api/users-link?after=nonsense").await, 400);
    let scim_next = get(&s, "/Users?cursor=&count=100").await.json()["nextCursor"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_rest_error(
        &get_api(
            &s,
            &format!("/api/users-link?after={scim_next}&per_page=100"),
        )
        .await,
        400,
    );
}

#[tokio::test]
async fn rest_total_count_follows_total_results() {
    let s = FaultScim::start(250).await;
    s.set_faults(Faults {
        total_results: TotalResults::Fixed(1000),
        ..Default::default()
    });
    let p = get_api(&s, "/api/users?page=1&per_page=100").await;
    assert_eq!((total_count(&p), &p.json()["total"]), (1000, &json!(1000)));
    assert_eq!(
        total_count(&get_api(&s, "/api/users-link?per_page=100").await),
        1000
    );

    s.set_faults(Faults {
        total_results: TotalResults::Offset(-30),
        ..Default::default()
    });
    let p = get_api(&s, "/api/users?page=3&per_page=100").await;
    assert_eq!((total_count(&p), &p.json()["total"]), (220, &json!(220)));
    assert_eq!(rest_ids(&p.json()["users"]).len(), 50);

    s.set_faults(Faults {
        total_results: TotalResults::EqualsPageSize,
        ..Default::default()
    });
    assert_eq!(
        total_count(&get_api(&s, "/api/users-link?per_page=40").await),
        40
    );
    assert_eq!(
        total_count(&get_api(&s, "/api/users?per_page=70").await),
        70
    );

    // Counted with SCIM list requests: honest for two, then +5.
    s.set_faults(Faults {
        total_results: TotalResults::ChangeAfter {
            requests: 2,
            offset: 5,
        },
        ..Default::default()
    });
    assert_eq!(total_count(&get_api(&s, "/api/users?page=1").await), 250);
    assert_eq!(get(&s, "/Users?count=10").await.json()["totalResults"], 250);
    assert_eq!(total_count(&get_api(&s, "/api/users-link").await), 255);
    assert_eq!(s.list_requests(), 3);

    // `only: Groups` leaves the REST API (Users) honest and uncounted.
    s.set_faults(Faults {
        only: Some(ResourceType::Groups),
        total_results: TotalResults::Fixed(3),
        ..Default::default()
    });
    assert_eq!(total_count(&get_api(&s, "/api/users").await), 250);
    assert_eq!(s.list_requests(), 0);
}

#[tokio::test]
async fn rest_fail_times_then_succeed_on_both_endpoints() {
    let s = FaultScim::start(250).await;
    s.set_faults(Faults {
        fail: vec![PageFault {
            start_index: 101,
            status: 503,
            times: 1,
        }],
        ..Default::default()
    });
    assert_eq!(
        get_api(&s, "/api/users?page=1&per_page=100").await.status,
        200
    );
    let r = get_api(&s, "/api/users?page=2&per_page=100").await;
    assert_rest_error(&r, 503);
    assert!(r.header("x-total-count").is_none());
    let ok = get_api(&s, "/api/users?page=2&per_page=100").await;
    assert_eq!(rest_ids(&ok.json()["users"])[0], uid(100));
    // Keyed by start_index, not page number: page 3 of 50 is offset 100.
    s.set_faults(Faults {
        fail: vec![PageFault {
            start_index: 101,
            status: 500,
            times: 1,
        }],
        ..Default::default()
    });
    assert_rest_error(&get_api(&s, "/api/users?page=3&per_page=50").await, 500);
    assert_eq!(
        get_api(&s, "/api/users?page=3&per_page=50").await.status,
        200
    );

    // Link mode: the page the first next link points at fails once.
    s.set_faults(Faults {
        fail: vec![PageFault {
            start_index: 101,
            status: 502,
            times: 1,
        }],
        ..Default::default()
    });
    let p1 = get_api(&s, "/api/users-link?per_page=100").await;
    let next = path_of(&s, &link_rel(&p1, "next").unwrap());
    assert_rest_error(&get_api(&s, &next).await, 502);
    let p2 = get_api(&s, &next).await;
    assert_eq!(p2.status, 200);
    assert_eq!(rest_ids(&p2.json())[0], uid(100));
    assert_eq!(s.list_requests(), 3);
    let log = s.requests();
    let tail: Vec<u16> = log[log.len() - 3..].iter().map(|r| r.status).collect();
    assert_eq!(tail, [200, 502, 200]);
}

#[tokio::test]
async fn rest_page_faults_rate_limit_malformed_short_empty_bad() {
    let s = FaultScim::start(250).await;
    s.set_faults(Faults {
        rate_limit: vec![RateLimitFault {
            start_index: 1,
            times: 1,
            retry_after: RetryAfter::Seconds(3),
        }],
        malformed: vec![
            MalformedFault {
                start_index: 101,
                times: 1,
                kind: Malformed::Truncated,
            },
            MalformedFault {
                start_index: 201,
                times: 1,
                kind: Malformed::NotJson,
            },
        ],
        ..Default::default()
    });
    let r = get_api(&s, "/api/users-link?per_page=100").await;
    assert_rest_error(&r, 429);
    assert_eq!(r.header("retry-after"), Some("3"));
    assert_eq!(r.header("x-ratelimit-remaining"), Some("0"));
    let t = get_api(&s, "/api/users?page=2&per_page=100").await;
    assert_eq!((t.status, t.header("content-type")), (200, Some(REST_JSON)));
    assert_eq!(total_count(&t), 250);
    assert!(
        serde_json::from_slice::<Value>(&t.body).is_err(),
        "truncated"
    );
    let n = get_api(&s, "/api/users?page=3&per_page=100").await;
    assert!(n.header("content-type").unwrap().starts_with("text/plain"));
    assert!(n.header("x-total-count").is_none());
    for page in 1..=3 {
        let r = get_api(&s, &format!("/api/users?page={page}&per_page=100")).await;
        assert_eq!(r.status, 200);
        r.json();
    }

    s.set_faults(Faults {
        short_page: Some(101),
        empty_page: Some(201),
        bad_records: Some(1),
        ..Default::default()
    });
    let p1 = get_api(&s, "/api/users?page=1&per_page=100").await.json();
    let u = p1["users"].as_array().unwrap();
    assert_eq!(u.len(), 100);
    assert!(u[0].get("id").is_none(), "missing id");
    assert_eq!(u[0]["email"], "user0@example.test");
    assert_eq!(u[1]["active"], json!("yes"));
    let p2 = get_api(&s, "/api/users?page=2&per_page=100").await.json();
    assert_eq!(
        (rest_ids(&p2["users"]).len(), &p2["total"]),
        (50, &json!(250))
    );
    let p3 = get_api(&s, "/api/users?page=3&per_page=100").await;
    assert_eq!((&p3.json()["users"], total_count(&p3)), (&json!([]), 250));
    // Link mode: the short page's next link still skips its missing half.
    s.set_faults(Faults {
        short_page: Some(101),
        ..Default::default()
    });
    let (all, nexts) = walk_links(&s, 100, 10).await;
    assert_eq!((all.len(), nexts.len()), (200, 2));
    assert!(!all.contains(&uid(150)) && all.contains(&uid(200)));
}

#[tokio::test]
async fn rest_bearer_auth_expiry_latency_and_drift() {
    let s = FaultScim::start_with(ScimConfig {
        users: 250,
        bearer_token: Some("tok".into()),
        ..Default::default()
    })
    .await;
    let none = get_api(&s, "/api/users").await;
    assert_rest_error(&none, 401);
    assert!(
        none.header("www-authenticate")
            .unwrap()
            .starts_with("Bearer")
    );
    assert_rest_error(
        &get_api_auth(&s, "/api/users-link", Some("wrong")).await,
        401,
    );
    assert_eq!(
        get_api_auth(&s, "/api/users", Some("tok")).await.status,
        200
    );
    assert_eq!(
        s.requests()
            .iter()
            .map(|r| (r.has_authorization, r.status))
            .collect::<Vec<_>>(),
        [(false, 401), (true, 401), (true, 200)]
    );

    s.set_faults(Faults {
        auth_expire_after_requests: Some(2),
        mutate_after_page: Some(Mutation {
            after_requests: 1,
            insert_front: 5,
            delete_front: 0,
        }),
        latency_ms: 30,
        slow: Some((101, 300)),
        ..Default::default()
    });
    let t = Some("tok");
    let p1 = get_api_auth(&s, "/api/users?page=1&per_page=100", t)
        .await
        .json();
    let t0 = Instant::now();
    let p2 = get_api_auth(&s, "/api/users?page=2&per_page=100", t).await;
    assert!(t0.elapsed().as_millis() >= 330, "{:?}", t0.elapsed());
    let p2 = p2.json();
    assert_eq!(p2["total"], 255, "drift applied after one list request");
    let dup = rest_ids(&p2["users"])
        .into_iter()
        .filter(|id| rest_ids(&p1["users"]).contains(id))
        .count();
    assert_eq!(dup, 5);
    let r = get_api_auth(&s, "/api/users?page=3&per_page=100", t).await;
    assert_rest_error(&r, 401);
    assert!(
        r.header("www-authenticate")
            .unwrap()
            .contains("invalid_token")
    );
    assert_scim_error(&get_auth(&s, "/Users?count=10", t).await, 401);
}

#[tokio::test]
async fn rest_link_cycle_repeats_next_links() {
    let s = FaultScim::start(500).await;
    s.set_faults(Faults {
        link_cycle: Some((3, 2)),
        ..Default::default()
    });
    let (all, nexts) = walk_links(&s, 100, 7).await;
    // Pages 1, 2, 3, 2, 3, 2, 3: never ends, never reaches u0000300.
    assert_eq!(nexts.len(), 7, "every page hands out a next link");
    assert_eq!(nexts[2], nexts[0], "page 3 links back to page 2");
    assert_eq!(nexts[1], nexts[3]);
    assert_eq!(nexts[2], nexts[4]);
    let distinct: HashSet<&String> = all.iter().collect();
    assert_eq!((all.len(), distinct.len()), (700, 300));
    assert!(!distinct.contains(&uid(300)));

    // b = 1: the next link is the first-page URL itself.
    s.set_faults(Faults {
        link_cycle: Some((2, 1)),
        ..Default::default()
    });
    let (_, nexts) = walk_links(&s, 100, 3).await;
    assert_eq!(nexts[1], s.rest_url("/api/users-link?per_page=100"));
    // Page-number and SCIM cursor paging are unaffected.
    let p = get_api(&s, "/api/users?page=3&per_page=100").await.json();
    assert_eq!(rest_ids(&p["users"])[0], uid(200));
    let (scim_all, _) = walk_cursor(&s, 100, 10).await;
    assert_eq!(scim_all.len(), 500);
}

// ---------------------------------------------------------------------------
// The write path (lifecycle actions) and the write faults W1..W3.

/// `method` on `base_url + rel` with extra headers and an optional JSON body.
async fn send_with(
    s: &FaultScim,
    method: &str,
    rel: &str,
    headers: &[(&str, &str)],
    body: Option<&Value>,
) -> Resp {
    let text = body.map(|b| b.to_string());
    let mut all = vec![("Connection", "close")];
    all.extend_from_slice(headers);
    Conn::open(s)
        .await
        .send(method, &format!("/v2{rel}"), &all, text.as_deref())
        .await
}

fn patch_op(ops: Value) -> Value {
    json!({"schemas": [PATCH_OP_SCHEMA], "Operations": ops})
}

fn deactivate_body() -> Value {
    patch_op(json!([{"op": "replace", "path": "active", "value": false}]))
}

fn member_ids(group: &Value) -> Vec<String> {
    group["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["value"].as_str().unwrap().to_owned())
        .collect()
}

/// Users u0..u9, groups g0 = [u0,u1,u2], g1 = [u3,u4,u5], g2 = [u6,u7,u8].
async fn write_server() -> FaultScim {
    FaultScim::start_with(ScimConfig {
        users: 10,
        groups: 3,
        ..Default::default()
    })
    .await
}

/// The group as the `/v2/Groups` list shows it.
async fn listed_group(s: &FaultScim, gid: &str) -> Value {
    let list = get(s, "/Groups?startIndex=1&count=100").await.json();
    list["Resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["id"] == gid)
        .unwrap_or_else(|| panic!("{gid} not listed"))
        .clone()
}

#[tokio::test]
async fn deactivate_reads_etag_patches_with_if_match_and_reads_back() {
    let s = write_server().await;
    let r = get(&s, "/Users/u0000001").await;
    assert_eq!(r.status, 200);
    let etag = r.header("etag").unwrap().to_owned();
    let u = r.json();
    assert_eq!(etag, "W/\"1\"");
    assert_eq!(u["meta"]["version"], etag.as_str());
    assert_eq!(u["active"], true);

    let p = send_with(
        &s,
        "PATCH",
        "/Users/u0000001",
        &[("If-Match", &etag)],
        Some(&deactivate_body()),
    )
    .await;
    assert_eq!(p.status, 204, "{}", p.text());
    assert!(p.body.is_empty());

    let r = get(&s, "/Users/u0000001").await;
    assert_eq!(r.header("etag"), Some("W/\"2\""));
    let u = r.json();
    assert_eq!(u["active"], false);
    assert_eq!(u["meta"]["version"], "W/\"2\"");
    assert_eq!(s.user_state("u0000001"), Some((false, 2)));

    // The same again changes nothing, so the version stays.
    let again = send_with(
        &s,
        "PATCH",
        "/Users/u0000001",
        &[("If-Match", "W/\"2\"")],
        Some(&deactivate_body()),
    )
    .await;
    assert_eq!(again.status, 204);
    assert_eq!(s.user_state("u0000001"), Some((false, 2)));

    // Other If-Match forms: strong-quoted, `*`, a list.
    let reactivate = patch_op(json!([{"op": "replace", "path": "active", "value": true}]));
    for (h, v) in [("\"2\"", 3), ("*", 3), ("W/\"9\", W/\"3\"", 4)] {
        let body = if v == 3 {
            reactivate.clone()
        } else {
            deactivate_body()
        };
        let r = send_with(
            &s,
            "PATCH",
            "/Users/u0000001",
            &[("If-Match", h)],
            Some(&body),
        )
        .await;
        assert_eq!(r.status, 204, "If-Match {h}: {}", r.text());
        assert_eq!(s.user_state("u0000001").unwrap().1, v, "If-Match {h}");
    }

    // The log has the writes, with If-Match, body and outcome.
    let w = s.write_requests();
    assert_eq!(w.len(), 5);
    assert!(w.iter().all(|r| r.method == "PATCH"));
    assert_eq!(w[0].path_and_query, "/v2/Users/u0000001");
    assert_eq!(w[0].if_match.as_deref(), Some("W/\"1\""));
    assert_eq!(w[0].status, 204);
    assert_eq!(w[0].applied, Some(true));
    let sent: Value = serde_json::from_str(&w[0].body).unwrap();
    assert_eq!(sent, deactivate_body());
    let reads: Vec<_> = s
        .requests()
        .into_iter()
        .filter(|r| r.method == "GET")
        .collect();
    assert!(
        reads
            .iter()
            .all(|r| r.applied.is_none() && r.body.is_empty())
    );
}

#[tokio::test]
async fn stale_if_match_is_412_and_changes_nothing() {
    let s = write_server().await;
    s.set_active("u0000002", false); // version 2: W/"1" is stale now
    let r = send_with(
        &s,
        "PATCH",
        "/Users/u0000002",
        &[("If-Match", "W/\"1\"")],
        Some(&patch_op(
            json!([{"op": "replace", "path": "active", "value": true}]),
        )),
    )
    .await;
    assert_scim_error(&r, 412);
    assert_eq!(s.user_state("u0000002"), Some((false, 2)));

    let d = send_with(
        &s,
        "DELETE",
        "/Users/u0000002",
        &[("If-Match", "W/\"1\"")],
        None,
    )
    .await;
    assert_scim_error(&d, 412);
    assert!(s.user_exists("u0000002"));
    // With the current version the DELETE goes through.
    let d = send_with(
        &s,
        "DELETE",
        "/Users/u0000002",
        &[("If-Match", "W/\"2\"")],
        None,
    )
    .await;
    assert_eq!(d.status, 204);
    assert!(!s.user_exists("u0000002"));

    // Groups too: g0 lost u2 above, so it is at version 2.
    assert_eq!(s.group_state("g0000000").unwrap().1, 2);
    let remove = patch_op(json!([{"op": "remove", "path": "members[value eq \"u0000000\"]"}]));
    let g = send_with(
        &s,
        "PATCH",
        "/Groups/g0000000",
        &[("If-Match", "W/\"1\"")],
        Some(&remove),
    )
    .await;
    assert_scim_error(&g, 412);
    assert_eq!(s.group_members("g0000000"), ["u0000000", "u0000001"]);
    let w = s.write_requests();
    assert_eq!(
        w.iter().map(|r| (r.status, r.applied)).collect::<Vec<_>>(),
        [
            (412, Some(false)),
            (412, Some(false)),
            (204, Some(true)),
            (412, Some(false))
        ]
    );
    // Body syntax is checked first (a members filter is no user path: 400),
    // then an unknown id is a 404 before If-Match is looked at.
    assert_scim_error(
        &send_with(
            &s,
            "PATCH",
            "/Users/u9999999",
            &[("If-Match", "W/\"1\"")],
            Some(&remove),
        )
        .await,
        400,
    );
    assert_scim_error(
        &send_with(
            &s,
            "PATCH",
            "/Users/u9999999",
            &[("If-Match", "W/\"1\"")],
            Some(&deactivate_body()),
        )
        .await,
        404,
    );
}

#[tokio::test]
async fn set_attributes_user_name_display_name_title_active() {
    let s = write_server().await;
    let body = patch_op(json!([
        {"op": "replace", "path": "displayName", "value": "Ada Lovelace"},
        {"op": "replace", "path": "title", "value": "Analyst"},
        {"op": "replace", "path": "userName", "value": "ada@example.test"},
        {"op": "replace", "path": "active", "value": false},
    ]));
    let r = send_body(&s, "PATCH", "/Users/u0000003", Some(&body)).await;
    assert_eq!(r.status, 204, "{}", r.text());
    let u = get(&s, "/Users/u0000003").await.json();
    assert_eq!(u["displayName"], "Ada Lovelace");
    assert_eq!(u["title"], "Analyst");
    assert_eq!(u["userName"], "ada@example.test");
    assert_eq!(u["active"], false);
    assert_eq!(u["meta"]["version"], "W/\"2\"", "one bump per PATCH");
    assert_eq!(s.user_resource("u0000003").unwrap(), u);
    // Unset attributes are absent, as before.
    let u0 = get(&s, "/Users/u0000000").await.json();
    assert!(u0.get("displayName").is_none() && u0.get("title").is_none());

    // Case-insensitive names, no-path value object, remove.
    let body = patch_op(json!([
        {"op": "Replace", "path": "TITLE", "value": "Lead"},
        {"op": "add", "value": {"displayName": "Ada L."}},
    ]));
    assert_eq!(
        send_body(&s, "PATCH", "/Users/u0000003", Some(&body))
            .await
            .status,
        204
    );
    let u = get(&s, "/Users/u0000003").await.json();
    assert_eq!(
        (u["title"].clone(), u["displayName"].clone()),
        (json!("Lead"), json!("Ada L."))
    );
    assert_eq!(u["meta"]["version"], "W/\"3\"");
    let rm = patch_op(json!([{"op": "remove", "path": "title"}]));
    assert_eq!(
        send_body(&s, "PATCH", "/Users/u0000003", Some(&rm))
            .await
            .status,
        204
    );
    let u = get(&s, "/Users/u0000003").await.json();
    assert!(u.get("title").is_none());
    assert_eq!(u["meta"]["version"], "W/\"4\"");

    // Bad values and paths are 400s and change nothing.
    for (ops, scim_type) in [
        (
            json!([{"op": "replace", "path": "title", "value": 5}]),
            "invalidValue",
        ),
        (
            json!([{"op": "replace", "path": "userName", "value": ""}]),
            "invalidValue",
        ),
        (
            json!([{"op": "replace", "path": "emails", "value": "x"}]),
            "invalidPath",
        ),
        (json!([{"op": "remove", "path": "userName"}]), "invalidPath"),
        (json!([{"op": "remove"}]), "noTarget"),
        (
            json!([{"op": "move", "path": "title", "value": "x"}]),
            "invalidSyntax",
        ),
    ] {
        let r = send_body(&s, "PATCH", "/Users/u0000003", Some(&patch_op(ops.clone()))).await;
        assert_scim_error(&r, 400);
        assert_eq!(r.json()["scimType"], scim_type, "{ops}");
    }
    assert_eq!(s.user_state("u0000003"), Some((false, 4)));
}

#[tokio::test]
async fn remove_member_in_filter_form_and_value_list_form() {
    let s = write_server().await;
    let g = get(&s, "/Groups/g0000000").await;
    assert_eq!(g.header("etag"), Some("W/\"1\""));
    assert_eq!(member_ids(&g.json()), ["u0000000", "u0000001", "u0000002"]);

    // Filter-path form.
    let by_filter = patch_op(json!([{"op": "remove", "path": "members[value eq \"u0000001\"]"}]));
    let r = send_with(
        &s,
        "PATCH",
        "/Groups/g0000000",
        &[("If-Match", "W/\"1\"")],
        Some(&by_filter),
    )
    .await;
    assert_eq!(r.status, 204, "{}", r.text());
    let g = get(&s, "/Groups/g0000000").await;
    assert_eq!(g.header("etag"), Some("W/\"2\""));
    let body = g.json();
    assert_eq!(body["meta"]["version"], "W/\"2\"");
    assert_eq!(member_ids(&body), ["u0000000", "u0000002"]);
    assert_eq!(
        member_ids(&listed_group(&s, "g0000000").await),
        ["u0000000", "u0000002"]
    );

    // Value-list form.
    let by_value =
        patch_op(json!([{"op": "remove", "path": "members", "value": [{"value": "u0000002"}]}]));
    let r = send_body(&s, "PATCH", "/Groups/g0000000", Some(&by_value)).await;
    assert_eq!(r.status, 204, "{}", r.text());
    assert_eq!(
        s.group_state("g0000000"),
        Some((vec!["u0000000".to_owned()], 3))
    );
    assert_eq!(
        member_ids(&listed_group(&s, "g0000000").await),
        ["u0000000"]
    );

    // Removing a non-member (either form) is a no-op: 204, version kept.
    for body in [&by_filter, &by_value] {
        assert_eq!(
            send_body(&s, "PATCH", "/Groups/g0000000", Some(body))
                .await
                .status,
            204
        );
    }
    assert_eq!(s.group_state("g0000000").unwrap().1, 3);

    // Filter syntax variants and errors.
    let spaced = patch_op(json!([{"op": "remove", "path": "Members[ VALUE EQ \"u0000003\" ]"}]));
    assert_eq!(
        send_body(&s, "PATCH", "/Groups/g0000001", Some(&spaced))
            .await
            .status,
        204
    );
    assert_eq!(s.group_members("g0000001"), ["u0000004", "u0000005"]);
    for path in [
        "members[display eq \"x\"]",
        "members[value co \"u\"]",
        "members[value eq u0000004]",
    ] {
        let r = send_body(
            &s,
            "PATCH",
            "/Groups/g0000001",
            Some(&patch_op(json!([{"op": "remove", "path": path}]))),
        )
        .await;
        assert_scim_error(&r, 400);
        assert_eq!(r.json()["scimType"], "invalidFilter", "{path}");
    }
    // `path: members` without value removes everyone.
    let all = patch_op(json!([{"op": "remove", "path": "members"}]));
    assert_eq!(
        send_body(&s, "PATCH", "/Groups/g0000001", Some(&all))
            .await
            .status,
        204
    );
    assert!(s.group_members("g0000001").is_empty());
    assert_eq!(
        get(&s, "/Groups/g0000001").await.json()["members"],
        json!([])
    );
    assert_scim_error(
        &send_body(&s, "PATCH", "/Groups/g9999999", Some(&by_filter)).await,
        404,
    );
}

#[tokio::test]
async fn add_member_and_other_group_patches() {
    let s = write_server().await;
    let add = patch_op(json!([{"op": "add", "path": "members", "value": [{"value": "u0000009"}]}]));
    let r = send_with(
        &s,
        "PATCH",
        "/Groups/g0000001",
        &[("If-Match", "W/\"1\"")],
        Some(&add),
    )
    .await;
    assert_eq!(r.status, 204, "{}", r.text());
    let g = get(&s, "/Groups/g0000001").await;
    assert_eq!(g.header("etag"), Some("W/\"2\""));
    let body = g.json();
    assert_eq!(
        member_ids(&body),
        ["u0000003", "u0000004", "u0000005", "u0000009"]
    );
    assert_eq!(body["members"][3]["type"], "User");
    assert_eq!(
        member_ids(&listed_group(&s, "g0000001").await),
        member_ids(&body)
    );

    // Adding a member again changes nothing.
    assert_eq!(
        send_body(&s, "PATCH", "/Groups/g0000001", Some(&add))
            .await
            .status,
        204
    );
    assert_eq!(s.group_state("g0000001").unwrap().1, 2);
    // Unknown users are refused, and nothing of the PATCH is applied.
    let mixed = patch_op(json!([
        {"op": "add", "path": "members", "value": [{"value": "u0000000"}]},
        {"op": "add", "path": "members", "value": [{"value": "u7777777"}]},
    ]));
    let r = send_body(&s, "PATCH", "/Groups/g0000001", Some(&mixed)).await;
    assert_scim_error(&r, 400);
    assert_eq!(r.json()["scimType"], "invalidValue");
    assert_eq!(
        s.group_state("g0000001").unwrap(),
        (
            vec![
                "u0000003".into(),
                "u0000004".into(),
                "u0000005".into(),
                "u0000009".into()
            ],
            2
        )
    );
    assert_eq!(s.write_requests().last().unwrap().applied, Some(false));

    // No-path add with a value object; replace of members and displayName.
    let no_path = patch_op(json!([{"op": "add", "value": {"members": [{"value": "u0000000"}]}}]));
    assert_eq!(
        send_body(&s, "PATCH", "/Groups/g0000002", Some(&no_path))
            .await
            .status,
        204
    );
    assert_eq!(
        s.group_members("g0000002"),
        ["u0000006", "u0000007", "u0000008", "u0000000"]
    );
    let replace = patch_op(json!([
        {"op": "replace", "path": "members", "value": [{"value": "u0000001"}, {"value": "u0000001"}]},
        {"op": "replace", "path": "displayName", "value": "renamed"},
    ]));
    assert_eq!(
        send_body(&s, "PATCH", "/Groups/g0000002", Some(&replace))
            .await
            .status,
        204
    );
    let g2 = s.group_resource("g0000002").unwrap();
    assert_eq!(member_ids(&g2), ["u0000001"]);
    assert_eq!(g2["displayName"], "renamed");
    assert_eq!(g2["meta"]["version"], "W/\"3\"");
    assert_eq!(get(&s, "/Groups/g0000002").await.json(), g2);
}

#[tokio::test]
async fn delete_then_get_is_404_and_memberships_go() {
    let s = write_server().await;
    let etag = get(&s, "/Users/u0000004")
        .await
        .header("etag")
        .unwrap()
        .to_owned();
    let d = send_with(
        &s,
        "DELETE",
        "/Users/u0000004",
        &[("If-Match", &etag)],
        None,
    )
    .await;
    assert_eq!(d.status, 204);
    assert!(d.body.is_empty());
    assert_scim_error(&get(&s, "/Users/u0000004").await, 404);
    assert!(!s.user_exists("u0000004"));
    assert!(s.user_resource("u0000004").is_none());
    assert_eq!(
        s.group_state("g0000001"),
        Some((vec!["u0000003".into(), "u0000005".into()], 2))
    );
    assert_eq!(
        member_ids(&listed_group(&s, "g0000001").await),
        ["u0000003", "u0000005"]
    );
    // Without If-Match too; a second DELETE is a 404.
    assert_eq!(
        send_body(&s, "DELETE", "/Users/u0000005", None)
            .await
            .status,
        204
    );
    assert_scim_error(&send_body(&s, "DELETE", "/Users/u0000005", None).await, 404);

    // Groups can be deleted as well.
    assert_eq!(
        send_body(&s, "DELETE", "/Groups/g0000002", None)
            .await
            .status,
        204
    );
    assert_scim_error(&get(&s, "/Groups/g0000002").await, 404);
    assert_eq!(s.group_ids(), ["g0000000", "g0000001"]);
    assert!(s.group_members("g0000002").is_empty());
    assert_eq!(get(&s, "/Groups?count=0").await.json()["totalResults"], 2);
    let w = s.write_requests();
    assert_eq!(
        w.iter()
            .map(|r| (r.method.as_str(), r.status))
            .collect::<Vec<_>>(),
        [
            ("DELETE", 204),
            ("DELETE", 204),
            ("DELETE", 404),
            ("DELETE", 204)
        ]
    );
}

#[tokio::test]
async fn write_noop_answers_204_and_changes_nothing() {
    let s = write_server().await;
    s.set_faults(Faults {
        write_noop: true,
        ..Default::default()
    });
    let r = send_with(
        &s,
        "PATCH",
        "/Users/u0000001",
        &[("If-Match", "W/\"1\"")],
        Some(&deactivate_body()),
    )
    .await;
    assert_eq!(r.status, 204);
    assert_eq!(s.user_state("u0000001"), Some((true, 1)));
    let u = get(&s, "/Users/u0000001").await;
    assert_eq!(u.header("etag"), Some("W/\"1\""));
    assert_eq!(u.json()["active"], true);

    assert_eq!(
        send_body(&s, "DELETE", "/Users/u0000002", None)
            .await
            .status,
        204
    );
    assert!(s.user_exists("u0000002"));
    assert_eq!(get(&s, "/Users/u0000002").await.status, 200);

    let remove = patch_op(json!([{"op": "remove", "path": "members[value eq \"u0000000\"]"}]));
    let add = patch_op(json!([{"op": "add", "path": "members", "value": [{"value": "u0000009"}]}]));
    for b in [&remove, &add] {
        assert_eq!(
            send_body(&s, "PATCH", "/Groups/g0000000", Some(b))
                .await
                .status,
            204
        );
    }
    assert_eq!(
        s.group_state("g0000000"),
        Some((
            vec!["u0000000".into(), "u0000001".into(), "u0000002".into()],
            1
        ))
    );
    assert!(
        s.write_requests()
            .iter()
            .all(|r| r.status == 204 && r.applied == Some(false))
    );

    // Honest errors stay honest.
    assert_scim_error(
        &send_with(
            &s,
            "PATCH",
            "/Users/u0000001",
            &[("If-Match", "W/\"7\"")],
            Some(&deactivate_body()),
        )
        .await,
        412,
    );
    assert_scim_error(&send_body(&s, "DELETE", "/Users/u9999999", None).await, 404);

    s.set_faults(Faults::default());
    assert_eq!(
        send_body(&s, "PATCH", "/Users/u0000001", Some(&deactivate_body()))
            .await
            .status,
        204
    );
    assert_eq!(s.user_state("u0000001"), Some((false, 2)));
}

#[tokio::test]
async fn write_fail_times_then_applies() {
    let s = write_server().await;
    s.set_faults(Faults {
        write_fail: vec![
            WriteFault {
                method: "PATCH".into(),
                id: "u0000001".into(),
                status: 503,
                times: 2,
            },
            WriteFault {
                method: "delete".into(),
                id: String::new(),
                status: 500,
                times: 1,
            },
        ],
        ..Default::default()
    });
    for _ in 0..2 {
        let r = send_body(&s, "PATCH", "/Users/u0000001", Some(&deactivate_body())).await;
        assert_scim_error(&r, 503);
        assert_eq!(r.json()["detail"], "injected write failure");
        assert_eq!(s.user_state("u0000001"), Some((true, 1)));
    }
    // Another id is not affected.
    assert_eq!(
        send_body(&s, "PATCH", "/Users/u0000002", Some(&deactivate_body()))
            .await
            .status,
        204
    );
    assert_eq!(
        send_body(&s, "PATCH", "/Users/u0000001", Some(&deactivate_body()))
            .await
            .status,
        204
    );
    assert_eq!(s.user_state("u0000001"), Some((false, 2)));

    // The DELETE fault matches any id, once.
    assert_scim_error(
        &send_body(&s, "DELETE", "/Groups/g0000001", None).await,
        500,
    );
    assert!(s.group_ids().contains(&"g0000001".to_owned()));
    assert_eq!(
        send_body(&s, "DELETE", "/Users/u0000003", None)
            .await
            .status,
        204
    );
    assert!(!s.user_exists("u0000003"));
    let w = s.write_requests();
    assert_eq!(
        w.iter()
            .map(|r| (r.status, r.applied.unwrap()))
            .collect::<Vec<_>>(),
        [
            (503, false),
            (503, false),
            (204, true),
            (204, true),
            (500, false),
            (204, true)
        ]
    );

    // set_faults restarts the counts.
    s.set_faults(Faults {
        write_fail: vec![WriteFault {
            method: String::new(),
            id: "g0000000".into(),
            status: 409,
            times: 1,
        }],
        ..Default::default()
    });
    let remove =
        patch_op(json!([{"op": "remove", "path": "members", "value": [{"value": "u0000000"}]}]));
    assert_scim_error(
        &send_body(&s, "PATCH", "/Groups/g0000000", Some(&remove)).await,
        409,
    );
    assert_eq!(s.group_members("g0000000").len(), 3);
    assert_eq!(
        send_body(&s, "PATCH", "/Groups/g0000000", Some(&remove))
            .await
            .status,
        204
    );
    assert_eq!(s.group_members("g0000000"), ["u0000001", "u0000002"]);
}

#[tokio::test]
async fn write_applied_then_slow_lands_before_the_answer() {
    let s = write_server().await;
    s.set_faults(Faults {
        write_applied_then_slow: Some(500),
        ..Default::default()
    });
    // A client with a 150 ms timeout gives up, but the write landed.
    let timed = tokio::time::timeout(
        std::time::Duration::from_millis(150),
        send_body(&s, "PATCH", "/Users/u0000001", Some(&deactivate_body())),
    )
    .await;
    assert!(timed.is_err(), "the answer is late");
    assert_eq!(s.user_state("u0000001"), Some((false, 2)));
    let r = get(&s, "/Users/u0000001").await;
    assert_eq!(r.json()["active"], false);
    let last = s.write_requests().pop().unwrap();
    assert_eq!((last.status, last.applied), (204, Some(true)));

    // A patient client gets the 204 after the delay; reads are not delayed.
    let t0 = Instant::now();
    let remove = patch_op(json!([{"op": "remove", "path": "members[value eq \"u0000000\"]"}]));
    assert_eq!(
        send_body(&s, "PATCH", "/Groups/g0000000", Some(&remove))
            .await
            .status,
        204
    );
    let took = t0.elapsed();
    assert!(took.as_millis() >= 500, "{took:?}");
    assert_eq!(s.group_members("g0000000"), ["u0000001", "u0000002"]);
    let t1 = Instant::now();
    assert_eq!(get(&s, "/Groups/g0000000").await.status, 200);
    assert!(t1.elapsed().as_millis() < 400, "GET is not delayed");
    let t2 = Instant::now();
    assert_eq!(
        send_body(&s, "DELETE", "/Users/u0000009", None)
            .await
            .status,
        204
    );
    assert!(t2.elapsed().as_millis() >= 500);
    // Failed writes are not delayed.
    let t3 = Instant::now();
    assert_scim_error(&send_body(&s, "DELETE", "/Users/u0000009", None).await, 404);
    assert!(t3.elapsed().as_millis() < 400);
}

#[tokio::test]
async fn write_not_found_deletes_then_answers_404() {
    let s = write_server().await;
    s.set_faults(Faults {
        write_not_found: true,
        ..Default::default()
    });
    let r = send_with(
        &s,
        "PATCH",
        "/Users/u0000001",
        &[("If-Match", "W/\"1\"")],
        Some(&deactivate_body()),
    )
    .await;
    assert_scim_error(&r, 404);
    assert_scim_error(&get(&s, "/Users/u0000001").await, 404);
    assert!(!s.user_exists("u0000001"));
    assert_eq!(s.group_members("g0000000"), ["u0000000", "u0000002"]);

    assert_scim_error(&send_body(&s, "DELETE", "/Users/u0000002", None).await, 404);
    assert!(!s.user_exists("u0000002"));

    let add = patch_op(json!([{"op": "add", "path": "members", "value": [{"value": "u0000009"}]}]));
    assert_scim_error(
        &send_body(&s, "PATCH", "/Groups/g0000001", Some(&add)).await,
        404,
    );
    assert_scim_error(&get(&s, "/Groups/g0000001").await, 404);
    assert_eq!(s.group_ids(), ["g0000000", "g0000002"]);
    assert!(s.write_requests().iter().all(|r| r.applied == Some(false)));

    // write_fail fires first and leaves the resource in place.
    s.set_faults(Faults {
        write_not_found: true,
        write_fail: vec![WriteFault {
            method: "PATCH".into(),
            id: "u0000003".into(),
            status: 503,
            times: 1,
        }],
        ..Default::default()
    });
    assert_scim_error(
        &send_body(&s, "PATCH", "/Users/u0000003", Some(&deactivate_body())).await,
        503,
    );
    assert!(s.user_exists("u0000003"));
    assert_scim_error(
        &send_body(&s, "PATCH", "/Users/u0000003", Some(&deactivate_body())).await,
        404,
    );
    assert!(!s.user_exists("u0000003"));
}

#[tokio::test]
async fn drift_helpers_set_active_and_group_members() {
    let s = write_server().await;
    assert_eq!(s.group_ids(), ["g0000000", "g0000001", "g0000002"]);
    // W4: confirmed deactivation, then someone re-enables the user.
    assert_eq!(
        send_body(&s, "PATCH", "/Users/u0000001", Some(&deactivate_body()))
            .await
            .status,
        204
    );
    s.set_active("u0000001", true);
    let u = get(&s, "/Users/u0000001").await;
    assert_eq!(u.header("etag"), Some("W/\"3\""));
    assert_eq!(u.json()["active"], true);

    // Confirmed removal, then the member is put back.
    let remove = patch_op(json!([{"op": "remove", "path": "members[value eq \"u0000001\"]"}]));
    assert_eq!(
        send_body(&s, "PATCH", "/Groups/g0000000", Some(&remove))
            .await
            .status,
        204
    );
    assert_eq!(s.group_members("g0000000"), ["u0000000", "u0000002"]);
    let mut m = s.group_members("g0000000");
    m.push("u0000001".into());
    m.push("u0000001".into());
    s.set_group_members("g0000000", m);
    assert_eq!(
        s.group_state("g0000000"),
        Some((
            vec!["u0000000".into(), "u0000002".into(), "u0000001".into()],
            3
        ))
    );
    let g = get(&s, "/Groups/g0000000").await;
    assert_eq!(g.header("etag"), Some("W/\"3\""));
    assert_eq!(member_ids(&g.json()), ["u0000000", "u0000002", "u0000001"]);
    assert_eq!(
        member_ids(&listed_group(&s, "g0000000").await),
        ["u0000000", "u0000002", "u0000001"]
    );
    // Setting the same list again keeps the version.
    s.set_group_members("g0000000", s.group_members("g0000000"));
    assert_eq!(s.group_state("g0000000").unwrap().1, 3);
    assert!(s.user_exists("u0000009") && !s.user_exists("u0000010"));
    assert!(s.group_members("g7777777").is_empty() && s.group_state("g7777777").is_none());
    // Only writes are in write_requests.
    assert_eq!(s.write_requests().len(), 2);
    assert!(s.requests().len() > 2);
}
