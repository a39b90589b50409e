//! A fault-injecting SCIM 2.0 server for tests (RFC 7643 resources, RFC 7644
//! protocol, RFC 9865 cursor paging), in process on axum, bound to 127.0.0.1:0.
//!
//! With no fault set it speaks the real protocol: `ListResponse` paging by
//! `startIndex`/`count` or by `cursor`/`nextCursor`, `count=0` probes, single
//! resources with `meta.version` and `ETag`, PATCH and DELETE, SCIM error bodies
//! and bearer authentication. [`Faults`] then bends it in each of the ways a
//! sync can fail silently (R1..R13, see each field), and each of the ways a
//! lifecycle action (a write) can fail or lie (W1..W3; W4, drift after a
//! confirmed action, is done by hand with [`FaultScim::set_active`] and
//! [`FaultScim::set_group_members`]).
//!
//! The server runs on its own thread with its own tokio runtime, so it keeps
//! answering while a test blocks its own thread (for example on
//! `run_govledger`, which waits for a child process). Dropping [`FaultScim`]
//! stops it: the listener closes and in-flight requests are abandoned.
//!
//! Beside SCIM, the same server speaks a plain REST JSON API over the same
//! users and the same [`Faults`], for generic REST connectors (URLs relative to
//! [`FaultScim::rest_url`], i.e. `http://127.0.0.1:PORT`):
//! - page-number paging, `GET /api/users?page=P&per_page=N` (`P` 1-based,
//!   default 1, below 1 means 1; `N` default [`DEFAULT_PAGE_SIZE`], capped at
//!   `max_page_size`, below 1 is a 400): 200 `application/json`
//!   `{"users":[{"id":"u0000000","email":"user0@example.test","active":true},..],
//!   "total":T,"page":P,"per_page":N}` and `X-Total-Count: T`; a page past the
//!   end has `"users":[]`;
//! - RFC 8288 `Link` paging, `GET /api/users-link?per_page=N`, then
//!   `GET /api/users-link?after=TOKEN&per_page=N`: 200 `application/json` with
//!   a bare array of the same user objects, `X-Total-Count: T` and
//!   `Link: <http://127.0.0.1:PORT/api/users-link?per_page=N>; rel="first",
//!   <http://127.0.0.1:PORT/api/users-link?after=TOKEN&per_page=N>; rel="next"`
//!   (the `next` link is absent on the last page; `TOKEN` is opaque, an
//!   unknown one is a 400).
//!
//! REST errors (injected failures, 400s, 401s) have an `application/json` body
//! `{"status":N,"error":"<reason phrase>","message":"..."}`; a REST 401 carries
//! the same `WWW-Authenticate` as a SCIM one. Both REST endpoints list Users.
//!
//! Counting rules, used by several faults:
//! - a *list request* is a GET on `/v2/Users` or `/v2/Groups` with `count > 0`
//!   (a `count=0` probe is not a list request), or any answered GET on
//!   `/api/users` or `/api/users-link` (these count as Users); only resource
//!   types the faults apply to are counted (see [`Faults::only`]); the count
//!   restarts at zero on [`FaultScim::set_faults`];
//! - a page is identified by its `start_index`: the `startIndex` it was asked
//!   with, or in cursor mode the offset its cursor points at plus one, so a
//!   retried request for the same page is recognised as the same page; a REST
//!   page has `start_index` = its offset + 1, i.e. `(P-1)*N+1` for page `P` of
//!   `N`, or the offset its `after` token points at plus one;
//! - page faults (fail, rate limit, malformed, short, empty, bad records, slow,
//!   cursor cycle) never touch `count=0` probes; `total_results` does; the
//!   REST API has no probes, so every REST page is subject to all of them
//!   (`total_results` sets both `"total"` and `X-Total-Count`).
//!
//! The write path (what a lifecycle-action executor uses), `{id}` a user or
//! group id:
//! - `GET /v2/Users/{id}`, `GET /v2/Groups/{id}`: 200 with the resource and
//!   `ETag: W/"N"`, where `W/"N"` is also its `meta.version`; `N` starts at 1
//!   and goes up by one on every change (a write that changes nothing keeps
//!   it). A user has `id`, `userName`, `active`, and `displayName` / `title`
//!   once set; a group has `id`, `displayName` and
//!   `members: [{"value":UID,"type":"User","$ref":URL}]`. Unknown id: 404.
//! - `PATCH /v2/Users/{id}`, body `{"schemas":[PatchOp URN],"Operations":[..]}`:
//!   `replace` / `add` with `path` `active` (boolean), `userName` (non-empty
//!   string), `displayName` / `title` (string, or null to clear), or without
//!   `path` and a `value` object of those attributes; `remove` with `path`
//!   `displayName` / `title`. Attribute names are case-insensitive.
//! - `PATCH /v2/Groups/{id}`: `add` `path` `members` `value`
//!   `[{"value":UID},..]` (already-members are skipped); `remove` `path`
//!   `members[value eq "UID"]` (filter form) or `path` `members` with the same
//!   `value` list (value-list form), or `path` `members` alone (all members);
//!   removing a non-member is a no-op; `replace` `path` `members` (the whole
//!   list) or `displayName`; `add` / `replace` without `path` and a `value`
//!   object with `members` / `displayName`. Adding an unknown user is a 400
//!   `invalidValue`.
//! - `DELETE /v2/Users/{id}` (also leaves its groups), `DELETE /v2/Groups/{id}`.
//! - Success is `204 No Content` with no body. Every operation of a PATCH is
//!   validated before any is applied. Errors are SCIM error bodies: 400
//!   (`scimType` `invalidSyntax`, `invalidPath`, `invalidValue`, `invalidFilter`
//!   or `noTarget`), 404 unknown id, 412 `If-Match` mismatch.
//! - `If-Match` is optional; when present it must name the current version
//!   (`W/"N"`, `"N"` or `*`; a list is matched if any entry matches), else the
//!   write is a 412 and changes nothing.
//! - Order of decisions for a write: body syntax (400), then the write faults
//!   [`Faults::write_fail`] and [`Faults::write_not_found`], then unknown id
//!   (404), `If-Match` (412), unknown members (400), then
//!   [`Faults::write_noop`], then the change, then
//!   [`Faults::write_applied_then_slow`]. Write faults apply regardless of
//!   [`Faults::only`] and are not list requests.
//! - Every request is logged with its `If-Match`, its body (for methods other
//!   than GET / HEAD) and, for writes, whether it was applied (see
//!   [`RequestRecord`], [`FaultScim::write_requests`]).

use std::{
    collections::{BTreeMap, HashMap},
    net::SocketAddr,
    sync::{Arc, Mutex, MutexGuard},
    time::{Duration, Instant},
};

use axum::{
    Router,
    body::{Body, Bytes},
    extract::{Path, Query, Request, State},
    http::{HeaderMap, HeaderValue, Method, StatusCode, header},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::get,
};
use serde_json::{Value, json};

pub const LIST_RESPONSE_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";
pub const ERROR_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:Error";
pub const PATCH_OP_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
pub const USER_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
pub const GROUP_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
pub const SPC_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig";
pub const SCIM_JSON: &str = "application/scim+json";
/// Page size used when a list request has no `count` (or a REST one no `per_page`).
pub const DEFAULT_PAGE_SIZE: usize = 100;
/// Content type of every REST API answer (except a `Malformed::NotJson` page).
pub const REST_JSON: &str = "application/json";
/// The REST page-number endpoint (`?page=P&per_page=N`).
pub const REST_USERS_PATH: &str = "/api/users";
/// The REST `Link`-header endpoint (`?per_page=N`, then `?after=TOKEN&per_page=N`).
pub const REST_USERS_LINK_PATH: &str = "/api/users-link";
/// The REST total-count header (lower case, as it goes on the wire).
pub const TOTAL_COUNT_HEADER: &str = "x-total-count";

/// How the server is seeded.
#[derive(Clone, Debug)]
pub struct ScimConfig {
    /// Users `u0000000`.. (`userName` `user<n>@example.test`, active).
    pub users: usize,
    /// Groups `g0000000`.. (`displayName` `group<n>`), each with up to three
    /// members taken round-robin from the initial users.
    pub groups: usize,
    /// If set, every request must carry `Authorization: Bearer <token>` or gets 401.
    pub bearer_token: Option<String>,
    /// Larger `count`s are capped to this (RFC 7644 §3.4.2.4).
    pub max_page_size: usize,
}

impl Default for ScimConfig {
    fn default() -> Self {
        Self {
            users: 0,
            groups: 0,
            bearer_token: None,
            max_page_size: 1000,
        }
    }
}

/// The two listable resource types.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ResourceType {
    Users,
    Groups,
}

impl ResourceType {
    pub fn endpoint(self) -> &'static str {
        match self {
            ResourceType::Users => "Users",
            ResourceType::Groups => "Groups",
        }
    }
}

/// R1 (page failed after retries): the page at `start_index` answers `status`
/// with a SCIM error body (a REST error body on the REST API) for its first
/// `times` requests, then succeeds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PageFault {
    pub start_index: usize,
    /// e.g. 503, 500, 400.
    pub status: u16,
    /// `u32::MAX` = always.
    pub times: u32,
}

/// The form of the `Retry-After` header of a 429.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RetryAfter {
    /// `Retry-After: <seconds>`.
    Seconds(u64),
    /// `Retry-After: <IMF-fixdate>` (RFC 7231), this many seconds from now.
    HttpDate(u64),
}

/// R2 (429): the page at `start_index` answers 429 with `Retry-After` and
/// `X-RateLimit-Remaining: 0` for its first `times` requests, then succeeds
/// (same headers on the REST API, with a REST error body).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RateLimitFault {
    pub start_index: usize,
    /// `u32::MAX` = always.
    pub times: u32,
    pub retry_after: RetryAfter,
}

/// What `totalResults` says (R3 wrong totalResults, R13 equals page size or
/// changes). Applies to list pages and to `count=0` probes alike, except where
/// a variant says otherwise. On the REST API it is what both `"total"` and
/// `X-Total-Count` say (a REST page's page size is its capped `per_page`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TotalResults {
    /// The true count.
    #[default]
    Honest,
    /// R3: always this number.
    Fixed(u64),
    /// R3: the true count plus this (floored at 0).
    Offset(i64),
    /// R13: a page reports `totalResults` = its page size (the `count` asked for,
    /// after capping at `max_page_size`). A `count=0` probe has no page size and
    /// gets the true count, so probe and pages disagree.
    EqualsPageSize,
    /// R13: honest for the first `requests` list requests, then the true count
    /// plus `offset`. A probe is honest while fewer than `requests` list
    /// requests have been served.
    ChangeAfter { requests: usize, offset: i64 },
}

/// R4 (offset drift between pages): once `after_requests` list requests have
/// been served, before the next request of any kind, the first `delete_front`
/// users (in id order) are deleted and then `insert_front` new users are added
/// with ids `a0000000`, `a0000001`.. that sort before every `u..` id. Applied
/// once per [`FaultScim::set_faults`]. Groups are not touched (except that
/// deleted users leave their groups).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Mutation {
    pub after_requests: usize,
    pub insert_front: usize,
    pub delete_front: usize,
}

/// The kind of broken 200 body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Malformed {
    /// The page's JSON cut in half, still `application/scim+json` (REST:
    /// still `application/json`, with its `X-Total-Count` and `Link` headers).
    Truncated,
    /// A `text/plain` body that is not JSON (REST: without `X-Total-Count` or
    /// `Link`, as from a proxy in front of the API).
    NotJson,
}

/// R6 (malformed body): the page at `start_index` answers 200 with a broken body
/// for its first `times` requests, then succeeds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MalformedFault {
    pub start_index: usize,
    /// `u32::MAX` = always.
    pub times: u32,
    pub kind: Malformed,
}

/// Every fault the server can inject; `Faults::default()` is none. Unless noted,
/// a fault applies to list requests of both resource types (narrow with `only`).
/// When several request-counted faults match one page they fire in the order
/// fail, rate limit, malformed (each consuming its own `times`).
#[derive(Clone, Debug, Default)]
pub struct Faults {
    /// Restrict page faults, `total_results` and the list-request count to one
    /// resource type (`None` = both).
    pub only: Option<ResourceType>,
    /// R1: pages that fail with an HTTP error status before succeeding.
    pub fail: Vec<PageFault>,
    /// R2: pages that answer 429 before succeeding.
    pub rate_limit: Vec<RateLimitFault>,
    /// R3/R13: what `totalResults` says.
    pub total_results: TotalResults,
    /// R4: users inserted before / deleted from the front mid-run.
    pub mutate_after_page: Option<Mutation>,
    /// R5: the page at this `start_index` returns only the first half of its
    /// items (`itemsPerPage` says so, `totalResults` stays honest). In cursor
    /// mode its `nextCursor` (REST link mode: its `rel="next"` link) still
    /// skips the whole nominal page, so the missing half is lost unless the
    /// client notices.
    pub short_page: Option<usize>,
    /// R5: the page at this `start_index` returns no items (`itemsPerPage` 0)
    /// although `totalResults` says there are more. In cursor mode its
    /// `nextCursor` (REST link mode: its `rel="next"` link) still points past
    /// the nominal page.
    pub empty_page: Option<usize>,
    /// R6: pages that answer 200 with a truncated or non-JSON body.
    pub malformed: Vec<MalformedFault>,
    /// R7: in the page at this `start_index` the first resource has no `"id"`
    /// and the second has `"active": "yes"` (a string); item count unchanged.
    /// The same on the REST API.
    pub bad_records: Option<usize>,
    /// R11: once this many list requests have been served, every request
    /// (lists, single resources, writes) gets 401 with `error="invalid_token"`.
    /// Applies regardless of `only`.
    pub auth_expire_after_requests: Option<usize>,
    /// R12: `(a, b)`, in cursor mode the page with ordinal `a` (1-based, by
    /// offset / count) hands out the cursor of the earlier page `b` as its
    /// `nextCursor`, so a client walks 1..a, b..a, b..a, ... forever.
    pub cursor_cycle: Option<(usize, usize)>,
    /// R12 for the REST `Link` API: `(a, b)`, the page with ordinal `a`
    /// (1-based, by offset / `per_page`) hands out as its `rel="next"` link
    /// exactly the link that led to the earlier page `b` (for `b` = 1 the
    /// first-page URL without `after`), so a client walks 1..a, b..a, ...
    /// forever. Applies even if page `a` is the last one. Page-number paging
    /// is unaffected.
    pub link_cycle: Option<(usize, usize)>,
    /// Added to every request (any path), before anything else is decided.
    pub latency_ms: u64,
    /// `(start_index, ms)`: that page answers after this extra delay (timeouts).
    pub slow: Option<(usize, u64)>,
    /// W1 (lying success): every PATCH / DELETE that would succeed answers 204
    /// but changes nothing (`meta.version` stays). Syntax errors, unknown ids
    /// and `If-Match` mismatches still answer honestly.
    pub write_noop: bool,
    /// W2 (write failed): writes that fail with an HTTP error status, without
    /// being applied, before succeeding (see [`WriteFault`]). The first entry
    /// that matches and has `times` left fires.
    pub write_fail: Vec<WriteFault>,
    /// W2 (write landed, answer lost): a successful write is applied, logged
    /// with its 204, and only then is the 204 sent, after this many ms; a
    /// client with a shorter timeout sees a timeout although the write landed.
    /// Not applied to `write_noop` answers.
    pub write_applied_then_slow: Option<u64>,
    /// W3 (resource gone): every PATCH / DELETE first deletes the resource it
    /// targets (a user also leaves its groups) and then answers 404, so a
    /// following GET of that id is a 404 too. Fires after `write_fail`.
    pub write_not_found: bool,
}

/// W2: the first `times` writes matching `method` and `id` answer `status`
/// with a SCIM error body (`"detail":"injected write failure"`) and change
/// nothing; later matching writes are handled normally. Counted per entry,
/// restarted by [`FaultScim::set_faults`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WriteFault {
    /// `"PATCH"` or `"DELETE"` (case-insensitive); `""` = any write.
    pub method: String,
    /// The user or group id in the URL; `""` = any.
    pub id: String,
    /// e.g. 503, 500, 429, 409.
    pub status: u16,
    /// `u32::MAX` = always.
    pub times: u32,
}

/// One request as the server saw it.
#[derive(Clone, Debug)]
pub struct RequestRecord {
    pub method: String,
    pub path_and_query: String,
    /// Final status; 0 if the request was abandoned before a response was built.
    pub status: u16,
    /// When the request arrived (before any injected latency).
    pub at: Instant,
    /// Whether an `Authorization` header was present (right or wrong).
    pub has_authorization: bool,
    /// For list requests (not probes): the 1-based ordinal of this list request
    /// for its resource type since the server started (retries count anew).
    /// REST list requests are numbered together with SCIM `/v2/Users` ones.
    pub page_no: Option<usize>,
    /// The `If-Match` header, if any.
    pub if_match: Option<String>,
    /// The request body (lossy UTF-8) for methods other than GET / HEAD;
    /// empty otherwise.
    pub body: String,
    /// For writes (POST, PUT, PATCH, DELETE): whether the server applied the
    /// change (`false` for every error, injected fault and `write_noop`);
    /// `None` for reads. A write that changed nothing (e.g. removing a
    /// non-member) still counts as applied.
    pub applied: Option<bool>,
}

#[derive(Clone, Debug)]
struct UserRec {
    id: String,
    user_name: String,
    active: bool,
    display_name: Option<String>,
    title: Option<String>,
    version: u64,
}

#[derive(Clone, Debug)]
struct GroupRec {
    id: String,
    display_name: String,
    members: Vec<String>,
    version: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Family {
    Fail,
    Rate,
    Malformed,
}

#[derive(Default)]
struct Counters {
    /// List requests since `set_faults`, of the resource types faults apply to.
    list_requests: usize,
    /// Page faults consumed, keyed by resource type, family and index in its Vec.
    hits: HashMap<(ResourceType, Family, usize), u32>,
    mutation_done: bool,
    /// `write_fail` entries consumed, keyed by index in the Vec.
    write_hits: HashMap<usize, u32>,
}

struct Inner {
    cfg: ScimConfig,
    base_url: String,
    users: BTreeMap<String, UserRec>,
    groups: BTreeMap<String, GroupRec>,
    next_user: usize,
    next_front: usize,
    faults: Faults,
    c: Counters,
    page_no: HashMap<ResourceType, usize>,
    log: Vec<RequestRecord>,
}

type Shared = Arc<Mutex<Inner>>;

fn lock(s: &Shared) -> MutexGuard<'_, Inner> {
    s.lock().unwrap_or_else(|e| e.into_inner())
}

impl Inner {
    fn new(cfg: ScimConfig, base_url: String) -> Self {
        let mut users = BTreeMap::new();
        for n in 0..cfg.users {
            let u = new_user(format!("u{n:07}"), format!("user{n}@example.test"));
            users.insert(u.id.clone(), u);
        }
        let mut groups = BTreeMap::new();
        for n in 0..cfg.groups {
            let mut members = Vec::new();
            if cfg.users > 0 {
                for k in 0..3 {
                    let id = format!("u{:07}", (n * 3 + k) % cfg.users);
                    if !members.contains(&id) {
                        members.push(id);
                    }
                }
            }
            let g = GroupRec {
                id: format!("g{n:07}"),
                display_name: format!("group{n}"),
                members,
                version: 1,
            };
            groups.insert(g.id.clone(), g);
        }
        Self {
            next_user: cfg.users,
            cfg,
            base_url,
            users,
            groups,
            next_front: 0,
            faults: Faults::default(),
            c: Counters::default(),
            page_no: HashMap::new(),
            log: Vec::new(),
        }
    }

    /// Consumes one of a page fault's `times`; false once they are used up.
    fn take(&mut self, kind: ResourceType, fam: Family, i: usize, times: u32) -> bool {
        let h = self.c.hits.entry((kind, fam, i)).or_insert(0);
        if *h < times {
            *h = h.saturating_add(1);
            true
        } else {
            false
        }
    }

    fn applies(&self, kind: ResourceType) -> bool {
        self.faults.only.is_none_or(|o| o == kind)
    }

    fn auth_expired(&self) -> bool {
        self.faults
            .auth_expire_after_requests
            .is_some_and(|n| self.c.list_requests >= n)
    }

    fn maybe_mutate(&mut self) {
        let Some(m) = self.faults.mutate_after_page else {
            return;
        };
        if self.c.mutation_done || self.c.list_requests < m.after_requests {
            return;
        }
        self.c.mutation_done = true;
        let victims: Vec<String> = self.users.keys().take(m.delete_front).cloned().collect();
        for v in victims {
            self.remove_user(&v);
        }
        for _ in 0..m.insert_front {
            let n = self.next_front;
            self.next_front += 1;
            let u = new_user(format!("a{n:07}"), format!("front{n}@example.test"));
            self.users.insert(u.id.clone(), u);
        }
    }

    fn remove_user(&mut self, id: &str) -> bool {
        if self.users.remove(id).is_none() {
            return false;
        }
        for g in self.groups.values_mut() {
            let before = g.members.len();
            g.members.retain(|m| m != id);
            if g.members.len() != before {
                g.version += 1;
            }
        }
        true
    }

    fn user_json(&self, u: &UserRec) -> Value {
        let mut v = json!({
            "schemas": [USER_SCHEMA],
            "id": u.id,
            "userName": u.user_name,
            "active": u.active,
            "meta": {
                "resourceType": "User",
                "version": weak_etag(u.version),
                "location": format!("{}/Users/{}", self.base_url, u.id),
            },
        });
        if let Some(d) = &u.display_name {
            v["displayName"] = json!(d);
        }
        if let Some(t) = &u.title {
            v["title"] = json!(t);
        }
        v
    }

    fn group_json(&self, g: &GroupRec) -> Value {
        let members: Vec<Value> = g
            .members
            .iter()
            .map(|m| {
                json!({
                    "value": m,
                    "type": "User",
                    "$ref": format!("{}/Users/{}", self.base_url, m),
                })
            })
            .collect();
        json!({
            "schemas": [GROUP_SCHEMA],
            "id": g.id,
            "displayName": g.display_name,
            "members": members,
            "meta": {
                "resourceType": "Group",
                "version": weak_etag(g.version),
                "location": format!("{}/Groups/{}", self.base_url, g.id),
            },
        })
    }

    /// A user as the REST API shows it.
    fn rest_user_json(u: &UserRec) -> Value {
        json!({"id": u.id, "email": u.user_name, "active": u.active})
    }

    /// Counts one list request (unless `count` is 0, a SCIM probe) and decides
    /// every page fault for the page of `count` items at `offset`: the common
    /// part of SCIM and REST listing. The caller has checked auth expiry.
    /// `rest` picks the item form (REST items are always Users).
    fn serve_page(&mut self, kind: ResourceType, offset: usize, count: usize, rest: bool) -> Page {
        let probe = count == 0;
        let applies = self.applies(kind);
        let mut page_no = None;
        if !probe {
            let n = self.page_no.entry(kind).or_insert(0);
            *n += 1;
            page_no = Some(*n);
            if applies {
                self.c.list_requests += 1;
            }
        }
        let request_no = self.c.list_requests;
        let start_index = offset + 1;
        let pf = applies && !probe; // page faults apply
        let f = self.faults.clone();
        let delay = match f.slow {
            Some((si, ms)) if pf && si == start_index => ms,
            _ => 0,
        };

        let mut injected = None;
        let mut malformed = None;
        if pf {
            for (i, x) in f.fail.iter().enumerate() {
                if injected.is_none()
                    && x.start_index == start_index
                    && self.take(kind, Family::Fail, i, x.times)
                {
                    injected = Some(Injected::Status(x.status));
                }
            }
            for (i, x) in f.rate_limit.iter().enumerate() {
                if injected.is_none()
                    && x.start_index == start_index
                    && self.take(kind, Family::Rate, i, x.times)
                {
                    injected = Some(Injected::RateLimit(x.retry_after));
                }
            }
            for (i, x) in f.malformed.iter().enumerate() {
                if injected.is_none()
                    && malformed.is_none()
                    && x.start_index == start_index
                    && self.take(kind, Family::Malformed, i, x.times)
                {
                    malformed = Some(x.kind);
                }
            }
        }
        let true_total = self.total(kind);
        let mut items = if rest {
            self.users
                .values()
                .skip(offset)
                .take(count)
                .map(Self::rest_user_json)
                .collect()
        } else {
            self.slice(kind, offset, count)
        };
        if pf {
            if f.short_page == Some(start_index) {
                items.truncate(items.len() / 2);
            }
            if f.empty_page == Some(start_index) {
                items.clear();
            }
            if f.bad_records == Some(start_index) {
                if let Some(Value::Object(o)) = items.get_mut(0) {
                    o.remove("id");
                }
                if let Some(Value::Object(o)) = items.get_mut(1) {
                    o.insert("active".into(), json!("yes"));
                }
            }
        }
        let shifted = |off: i64| (true_total as i64 + off).max(0) as u64;
        let total: u64 = if !applies {
            true_total as u64
        } else {
            match f.total_results {
                TotalResults::Honest => true_total as u64,
                TotalResults::Fixed(n) => n,
                TotalResults::Offset(o) => shifted(o),
                TotalResults::EqualsPageSize if probe => true_total as u64,
                TotalResults::EqualsPageSize => count as u64,
                TotalResults::ChangeAfter { requests, offset } => {
                    let honest = if probe {
                        request_no < requests
                    } else {
                        request_no <= requests
                    };
                    if honest {
                        true_total as u64
                    } else {
                        shifted(offset)
                    }
                }
            }
        };
        Page {
            page_no,
            delay,
            injected,
            malformed,
            items,
            total,
            true_total,
            pf,
        }
    }

    fn total(&self, kind: ResourceType) -> usize {
        match kind {
            ResourceType::Users => self.users.len(),
            ResourceType::Groups => self.groups.len(),
        }
    }

    /// Resources `offset..offset+count` in id order.
    fn slice(&self, kind: ResourceType, offset: usize, count: usize) -> Vec<Value> {
        match kind {
            ResourceType::Users => self
                .users
                .values()
                .skip(offset)
                .take(count)
                .map(|u| self.user_json(u))
                .collect(),
            ResourceType::Groups => self
                .groups
                .values()
                .skip(offset)
                .take(count)
                .map(|g| self.group_json(g))
                .collect(),
        }
    }
}

/// An injected error answer instead of a page.
#[derive(Clone, Copy)]
enum Injected {
    /// R1: this HTTP status.
    Status(u16),
    /// R2: 429 with this `Retry-After`.
    RateLimit(RetryAfter),
}

/// What [`Inner::serve_page`] decided for one list request.
struct Page {
    page_no: Option<usize>,
    /// Extra delay (`Faults::slow`).
    delay: u64,
    /// If set, answer this error instead of the page.
    injected: Option<Injected>,
    malformed: Option<Malformed>,
    /// The page's items, after short / empty / bad-record faults.
    items: Vec<Value>,
    /// What the total says (after `total_results`).
    total: u64,
    /// The true number of resources.
    true_total: usize,
    /// Whether page faults apply to this request.
    pf: bool,
}

fn new_user(id: String, user_name: String) -> UserRec {
    UserRec {
        id,
        user_name,
        active: true,
        display_name: None,
        title: None,
        version: 1,
    }
}

fn weak_etag(v: u64) -> String {
    format!("W/\"{v}\"")
}

/// The running server. Dropping it stops the server.
pub struct FaultScim {
    /// e.g. `http://127.0.0.1:PORT/v2` (no trailing slash).
    pub base_url: String,
    pub addr: SocketAddr,
    inner: Shared,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl FaultScim {
    /// `users` users, no groups, no token, default page cap.
    pub async fn start(users: usize) -> FaultScim {
        Self::start_with(ScimConfig {
            users,
            ..Default::default()
        })
        .await
    }

    pub async fn start_with(cfg: ScimConfig) -> FaultScim {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let base_url = format!("http://{addr}/v2");
        let inner: Shared = Arc::new(Mutex::new(Inner::new(cfg, base_url.clone())));
        let app = router(inner.clone());
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel::<()>();
        std::thread::Builder::new()
            .name(format!("fault-scim-{}", addr.port()))
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("fault-scim runtime");
                rt.block_on(async move {
                    let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                    let _ = ready_tx.send(());
                    tokio::select! {
                        r = axum::serve(listener, app) => r.expect("fault-scim serve"),
                        _ = stop_rx => {}
                    }
                });
                // Dropping the runtime here aborts every connection task.
            })
            .expect("spawn fault-scim thread");
        ready_rx.await.expect("fault-scim thread died");
        FaultScim {
            base_url,
            addr,
            inner,
            stop: Some(stop_tx),
        }
    }

    /// `base_url` + `rel`, e.g. `url("/Users?count=10")`.
    pub fn url(&self, rel: &str) -> String {
        format!("{}{rel}", self.base_url)
    }

    /// `http://127.0.0.1:PORT` + `rel`, for the REST API, e.g.
    /// `rest_url("/api/users?page=1&per_page=100")`.
    pub fn rest_url(&self, rel: &str) -> String {
        format!("http://{}{rel}", self.addr)
    }

    /// Replaces the faults and restarts every fault counter (list-request
    /// count, consumed `times`, the one-shot mutation). The request log and
    /// `page_no`s are kept.
    pub fn set_faults(&self, f: Faults) {
        let mut g = lock(&self.inner);
        g.faults = f;
        g.c = Counters::default();
    }

    /// Every request so far, in arrival order.
    pub fn requests(&self) -> Vec<RequestRecord> {
        lock(&self.inner).log.clone()
    }

    pub fn clear_requests(&self) {
        lock(&self.inner).log.clear();
    }

    /// List requests counted since the last `set_faults` (see module doc).
    pub fn list_requests(&self) -> usize {
        lock(&self.inner).c.list_requests
    }

    /// Deletes a user (and its group memberships); unknown ids are ignored.
    pub fn delete_user(&self, id: &str) {
        lock(&self.inner).remove_user(id);
    }

    /// Adds an active user with the next `u..` id and returns the id.
    pub fn add_user(&self) -> String {
        let mut g = lock(&self.inner);
        let n = g.next_user;
        g.next_user += 1;
        let u = new_user(format!("u{n:07}"), format!("user{n}@example.test"));
        let id = u.id.clone();
        g.users.insert(id.clone(), u);
        id
    }

    /// Sets `active` and bumps `meta.version` if it changed; panics on unknown ids.
    pub fn set_active(&self, id: &str, active: bool) {
        let mut g = lock(&self.inner);
        let u = g
            .users
            .get_mut(id)
            .unwrap_or_else(|| panic!("no user {id}"));
        if u.active != active {
            u.active = active;
            u.version += 1;
        }
    }

    pub fn user_count(&self) -> usize {
        lock(&self.inner).users.len()
    }

    pub fn group_count(&self) -> usize {
        lock(&self.inner).groups.len()
    }

    /// All user ids in server (id) order.
    pub fn user_ids(&self) -> Vec<String> {
        lock(&self.inner).users.keys().cloned().collect()
    }

    /// `(active, version)` of a user, if it exists.
    pub fn user_state(&self, id: &str) -> Option<(bool, u64)> {
        lock(&self.inner)
            .users
            .get(id)
            .map(|u| (u.active, u.version))
    }

    pub fn user_exists(&self, id: &str) -> bool {
        lock(&self.inner).users.contains_key(id)
    }

    /// A user as `GET /v2/Users/{id}` shows it, if it exists.
    pub fn user_resource(&self, id: &str) -> Option<Value> {
        let g = lock(&self.inner);
        g.users.get(id).map(|u| g.user_json(u))
    }

    /// All group ids in server (id) order.
    pub fn group_ids(&self) -> Vec<String> {
        lock(&self.inner).groups.keys().cloned().collect()
    }

    /// A group's member ids in server order; empty if the group does not exist
    /// (use [`FaultScim::group_ids`] or [`FaultScim::group_state`] to tell).
    pub fn group_members(&self, gid: &str) -> Vec<String> {
        lock(&self.inner)
            .groups
            .get(gid)
            .map(|x| x.members.clone())
            .unwrap_or_default()
    }

    /// `(members, version)` of a group, if it exists.
    pub fn group_state(&self, gid: &str) -> Option<(Vec<String>, u64)> {
        lock(&self.inner)
            .groups
            .get(gid)
            .map(|x| (x.members.clone(), x.version))
    }

    /// A group as `GET /v2/Groups/{id}` shows it, if it exists.
    pub fn group_resource(&self, gid: &str) -> Option<Value> {
        let g = lock(&self.inner);
        g.groups.get(gid).map(|x| g.group_json(x))
    }

    /// Replaces a group's members (duplicates dropped, order kept; ids are not
    /// checked against the users) and bumps `meta.version` if they changed;
    /// panics on unknown group ids. For drift after a confirmed action (W4).
    pub fn set_group_members(&self, gid: &str, members: Vec<String>) {
        let mut g = lock(&self.inner);
        let x = g
            .groups
            .get_mut(gid)
            .unwrap_or_else(|| panic!("no group {gid}"));
        let members = dedup(members);
        if x.members != members {
            x.members = members;
            x.version += 1;
        }
    }

    /// The write requests (POST, PUT, PATCH, DELETE) of the request log, in
    /// arrival order.
    pub fn write_requests(&self) -> Vec<RequestRecord> {
        lock(&self.inner)
            .log
            .iter()
            .filter(|r| is_write_method(&r.method))
            .cloned()
            .collect()
    }
}

impl Drop for FaultScim {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

fn router(shared: Shared) -> Router {
    Router::new()
        .route("/v2/Users", get(list_users))
        .route(
            "/v2/Users/{id}",
            get(get_user).patch(patch_user).delete(delete_user),
        )
        .route("/v2/Groups", get(list_groups))
        .route(
            "/v2/Groups/{id}",
            get(get_group).patch(patch_group).delete(delete_group),
        )
        .route("/v2/ServiceProviderConfig", get(service_provider_config))
        .route(REST_USERS_PATH, get(rest_users_paged))
        .route(REST_USERS_LINK_PATH, get(rest_users_link))
        .fallback(|| async { scim_error(StatusCode::NOT_FOUND, None, "no such endpoint") })
        .layer(middleware::from_fn_with_state(shared.clone(), track))
        .with_state(shared)
}

/// Marks a response with the `page_no` of the list request it answers.
#[derive(Clone, Copy)]
struct PageNo(usize);

fn is_write_method(m: &str) -> bool {
    ["POST", "PUT", "PATCH", "DELETE"]
        .iter()
        .any(|w| w.eq_ignore_ascii_case(m))
}

/// Logs every request, adds latency, enforces the bearer token and auth expiry
/// (with a REST error body under `/api/`), and applies a due mutation. After
/// a write it records whether it was applied and then waits out the write's
/// `write_applied_then_slow` delay.
async fn track(State(s): State<Shared>, req: Request, next: Next) -> Response {
    let at = Instant::now();
    let rest = req.uri().path().starts_with("/api/");
    let write = is_write_method(req.method().as_str());
    let auth = req
        .headers()
        .get(header::AUTHORIZATION)
        .map(|v| v.to_str().unwrap_or("").to_owned());
    let if_match = req
        .headers()
        .get(header::IF_MATCH)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    let (req, body) = if req.method() == Method::GET || req.method() == Method::HEAD {
        (req, String::new())
    } else {
        let (parts, b) = req.into_parts();
        let bytes = axum::body::to_bytes(b, 2 << 20).await.unwrap_or_default();
        let text = String::from_utf8_lossy(&bytes).into_owned();
        (Request::from_parts(parts, Body::from(bytes)), text)
    };
    let (idx, latency) = {
        let mut g = lock(&s);
        g.log.push(RequestRecord {
            method: req.method().to_string(),
            path_and_query: req
                .uri()
                .path_and_query()
                .map(|p| p.as_str().to_owned())
                .unwrap_or_default(),
            status: 0,
            at,
            has_authorization: auth.is_some(),
            page_no: None,
            if_match,
            body,
            applied: None,
        });
        (g.log.len() - 1, g.faults.latency_ms)
    };
    if latency > 0 {
        tokio::time::sleep(Duration::from_millis(latency)).await;
    }
    let (token_ok, expired) = {
        let mut g = lock(&s);
        g.maybe_mutate();
        let token_ok = match &g.cfg.bearer_token {
            None => true,
            Some(t) => auth.as_deref().is_some_and(|a| {
                a.split_once(' ').is_some_and(|(scheme, tok)| {
                    scheme.eq_ignore_ascii_case("bearer") && tok.trim() == t
                })
            }),
        };
        (token_ok, g.auth_expired())
    };
    let resp = if !token_ok && rest {
        rest_unauthorized("missing or wrong bearer token", false)
    } else if !token_ok {
        unauthorized("missing or wrong bearer token", false)
    } else if expired && rest {
        rest_unauthorized("the access token expired", true)
    } else if expired {
        unauthorized("the access token expired", true)
    } else {
        next.run(req).await
    };
    let page_no = resp.extensions().get::<PageNo>().map(|p| p.0);
    let info = resp.extensions().get::<WriteInfo>().copied();
    {
        let mut g = lock(&s);
        if let Some(r) = g.log.get_mut(idx) {
            r.status = resp.status().as_u16();
            r.page_no = page_no;
            r.applied = write.then(|| info.is_some_and(|w| w.applied));
        }
    }
    if let Some(ms) = info.map(|w| w.delay_ms).filter(|&ms| ms > 0) {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    resp
}

fn scim_json(status: StatusCode, body: &Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, SCIM_JSON)],
        body.to_string(),
    )
        .into_response()
}

fn scim_error(status: StatusCode, scim_type: Option<&str>, detail: &str) -> Response {
    let mut body = json!({
        "schemas": [ERROR_SCHEMA],
        "status": status.as_u16().to_string(),
        "detail": detail,
    });
    if let Some(t) = scim_type {
        body["scimType"] = json!(t);
    }
    scim_json(status, &body)
}

/// A REST API error: `{"status":N,"error":"<reason>","message":detail}`.
fn rest_error(status: StatusCode, detail: &str) -> Response {
    let body = json!({
        "status": status.as_u16(),
        "error": status.canonical_reason().unwrap_or("Error"),
        "message": detail,
    });
    (
        status,
        [(header::CONTENT_TYPE, REST_JSON)],
        body.to_string(),
    )
        .into_response()
}

fn unauthorized(detail: &str, expired: bool) -> Response {
    with_www_authenticate(scim_error(StatusCode::UNAUTHORIZED, None, detail), expired)
}

fn rest_unauthorized(detail: &str, expired: bool) -> Response {
    with_www_authenticate(rest_error(StatusCode::UNAUTHORIZED, detail), expired)
}

fn with_www_authenticate(mut r: Response, expired: bool) -> Response {
    let www = if expired {
        "Bearer realm=\"fault-scim\", error=\"invalid_token\", error_description=\"The access token expired\""
    } else {
        "Bearer realm=\"fault-scim\""
    };
    r.headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(www));
    r
}

/// `Retry-After` as an RFC 7231 IMF-fixdate, `secs` from now.
pub fn http_date_in(secs: u64) -> String {
    let t = chrono::Utc::now() + chrono::Duration::seconds(secs as i64);
    t.format("%a, %d %b %Y %H:%M:%S GMT").to_string()
}

fn hex_encode(text: &str) -> String {
    text.bytes().map(|b| format!("{b:02x}")).collect()
}

fn hex_decode(token: &str) -> Option<String> {
    if !token.len().is_multiple_of(2) || !token.is_ascii() {
        return None;
    }
    let bytes: Option<Vec<u8>> = (0..token.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&token[i..i + 2], 16).ok())
        .collect();
    String::from_utf8(bytes?).ok()
}

fn encode_cursor(kind: ResourceType, offset: usize) -> String {
    hex_encode(&format!("{}:{offset}", kind.endpoint()))
}

fn decode_cursor(kind: ResourceType, token: &str) -> Option<usize> {
    let text = hex_decode(token)?;
    let (k, off) = text.split_once(':')?;
    if k != kind.endpoint() {
        return None;
    }
    off.parse().ok()
}

/// The opaque `after` token of the REST `Link` API (not a SCIM cursor).
fn encode_after(offset: usize) -> String {
    hex_encode(&format!("users-link:{offset}"))
}

fn decode_after(token: &str) -> Option<usize> {
    hex_decode(token)?.strip_prefix("users-link:")?.parse().ok()
}

struct ListParams {
    /// 0-based offset of the first item.
    offset: usize,
    /// Effective page size (capped); 0 = probe.
    count: usize,
    cursor_mode: bool,
}

fn parse_list(
    q: &HashMap<String, String>,
    kind: ResourceType,
    max: usize,
) -> Result<ListParams, Box<Response>> {
    let bad = |t: &str, d: String| Box::new(scim_error(StatusCode::BAD_REQUEST, Some(t), &d));
    if q.contains_key("filter") {
        return Err(bad("invalidFilter", "filtering is not supported".into()));
    }
    let count = match q.get("count") {
        None => DEFAULT_PAGE_SIZE,
        Some(c) => match c.trim().parse::<i64>() {
            Ok(n) => n.max(0) as usize,
            Err(_) => {
                return Err(bad(
                    "invalidValue",
                    format!("count {c:?} is not an integer"),
                ));
            }
        },
    }
    .min(max);
    let cursor = q.get("cursor");
    let start = q.get("startindex");
    match (cursor, start) {
        (Some(_), Some(_)) => Err(bad(
            "invalidValue",
            "cursor and startIndex are mutually exclusive".into(),
        )),
        (Some(c), None) => {
            let offset = if c.is_empty() {
                0
            } else {
                match decode_cursor(kind, c) {
                    Some(o) => o,
                    None => return Err(bad("invalidCursor", format!("unknown cursor {c:?}"))),
                }
            };
            Ok(ListParams {
                offset,
                count,
                cursor_mode: true,
            })
        }
        (None, s) => {
            let start = match s {
                None => 1,
                Some(s) => match s.trim().parse::<i64>() {
                    Ok(n) => n.max(1) as usize,
                    Err(_) => {
                        return Err(bad(
                            "invalidValue",
                            format!("startIndex {s:?} is not an integer"),
                        ));
                    }
                },
            };
            Ok(ListParams {
                offset: start - 1,
                count,
                cursor_mode: false,
            })
        }
    }
}

fn rate_limited(r: RetryAfter) -> Response {
    let mut resp = scim_error(StatusCode::TOO_MANY_REQUESTS, None, "too many requests");
    add_rate_limit_headers(&mut resp, r);
    resp
}

/// `Retry-After` and `X-RateLimit-Remaining: 0`.
fn add_rate_limit_headers(resp: &mut Response, r: RetryAfter) {
    let value = match r {
        RetryAfter::Seconds(s) => s.to_string(),
        RetryAfter::HttpDate(s) => http_date_in(s),
    };
    let h = resp.headers_mut();
    h.insert(header::RETRY_AFTER, HeaderValue::from_str(&value).unwrap());
    h.insert("x-ratelimit-remaining", HeaderValue::from_static("0"));
}

enum Outcome {
    Done(Response),
    Page(Value, Option<Malformed>),
}

enum RestOutcome {
    Done(Response),
    Page {
        body: Value,
        /// `X-Total-Count`.
        total: u64,
        link: Option<String>,
        malformed: Option<Malformed>,
    },
}

async fn list_users(State(s): State<Shared>, Query(q): Query<HashMap<String, String>>) -> Response {
    list(s, ResourceType::Users, q).await
}

async fn list_groups(
    State(s): State<Shared>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    list(s, ResourceType::Groups, q).await
}

async fn list(s: Shared, kind: ResourceType, q: HashMap<String, String>) -> Response {
    let q: HashMap<String, String> = q
        .into_iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v))
        .collect();
    let (delay, outcome, page_no) = {
        let mut g = lock(&s);
        let p = match parse_list(&q, kind, g.cfg.max_page_size) {
            Ok(p) => p,
            Err(r) => return *r,
        };
        let probe = p.count == 0;
        if g.auth_expired() {
            return unauthorized("the access token expired", true);
        }
        let pg = g.serve_page(kind, p.offset, p.count, false);
        let outcome = match pg.injected {
            Some(Injected::Status(st)) => {
                let st = StatusCode::from_u16(st).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                Outcome::Done(scim_error(st, None, "injected page failure"))
            }
            Some(Injected::RateLimit(r)) => Outcome::Done(rate_limited(r)),
            None => {
                let mut body = json!({
                    "schemas": [LIST_RESPONSE_SCHEMA],
                    "totalResults": pg.total,
                    "itemsPerPage": pg.items.len(),
                    "Resources": pg.items,
                });
                if p.cursor_mode {
                    let next = match g.faults.cursor_cycle {
                        Some((a, b)) if pg.pf && p.offset / p.count + 1 == a => {
                            Some(encode_cursor(kind, b.saturating_sub(1) * p.count))
                        }
                        _ if !probe && p.offset + p.count < pg.true_total => {
                            Some(encode_cursor(kind, p.offset + p.count))
                        }
                        _ => None,
                    };
                    if let Some(n) = next {
                        body["nextCursor"] = json!(n);
                    }
                } else {
                    body["startIndex"] = json!(p.offset + 1);
                }
                Outcome::Page(body, pg.malformed)
            }
        };
        (pg.delay, outcome, pg.page_no)
    };
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    let mut resp = match outcome {
        Outcome::Done(r) => r,
        Outcome::Page(body, malformed) => render_page(&body, malformed, SCIM_JSON),
    };
    if let Some(n) = page_no {
        resp.extensions_mut().insert(PageNo(n));
    }
    resp
}

/// A 200 page: its JSON, or the broken body `malformed` asks for.
fn render_page(body: &Value, malformed: Option<Malformed>, content_type: &'static str) -> Response {
    match malformed {
        None => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, content_type)],
            body.to_string(),
        )
            .into_response(),
        Some(Malformed::Truncated) => {
            let text = body.to_string();
            let cut = text[..text.len() / 2].to_owned();
            (StatusCode::OK, [(header::CONTENT_TYPE, content_type)], cut).into_response()
        }
        Some(Malformed::NotJson) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            "upstream directory temporarily unavailable, please try again later\n",
        )
            .into_response(),
    }
}

/// Where a REST list request starts and how many items it asks for.
struct RestParams {
    offset: usize,
    per_page: usize,
    /// Page-number mode: the (effective) page number.
    page: usize,
}

/// `per_page` of a REST list request: default [`DEFAULT_PAGE_SIZE`], capped
/// at `max`; not an integer or below 1 is a 400.
fn rest_per_page(q: &HashMap<String, String>, max: usize) -> Result<usize, Box<Response>> {
    let n = match q.get("per_page") {
        None => DEFAULT_PAGE_SIZE,
        Some(v) => match v.trim().parse::<i64>() {
            Ok(n) if n >= 1 => n as usize,
            _ => {
                return Err(Box::new(rest_error(
                    StatusCode::BAD_REQUEST,
                    &format!("per_page {v:?} is not an integer of at least 1"),
                )));
            }
        },
    };
    Ok(n.min(max.max(1)))
}

/// `GET /api/users?page=P&per_page=N`: page-number paging (see module doc).
async fn rest_users_paged(
    State(s): State<Shared>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let parsed = {
        let g = lock(&s);
        rest_per_page(&q, g.cfg.max_page_size)
    };
    let per_page = match parsed {
        Ok(n) => n,
        Err(r) => return *r,
    };
    let page = match q.get("page") {
        None => 1,
        Some(v) => match v.trim().parse::<i64>() {
            Ok(n) => n.max(1) as usize,
            Err(_) => {
                return rest_error(
                    StatusCode::BAD_REQUEST,
                    &format!("page {v:?} is not an integer"),
                );
            }
        },
    };
    let p = RestParams {
        offset: (page - 1).saturating_mul(per_page),
        per_page,
        page,
    };
    rest_list(s, p, false).await
}

/// `GET /api/users-link?[after=TOKEN&]per_page=N`: `Link`-header paging (see
/// module doc).
async fn rest_users_link(
    State(s): State<Shared>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let parsed = {
        let g = lock(&s);
        rest_per_page(&q, g.cfg.max_page_size)
    };
    let per_page = match parsed {
        Ok(n) => n,
        Err(r) => return *r,
    };
    let offset = match q.get("after").map(String::as_str) {
        None | Some("") => 0,
        Some(t) => match decode_after(t) {
            Some(o) => o,
            None => {
                return rest_error(
                    StatusCode::BAD_REQUEST,
                    &format!("unknown after token {t:?}"),
                );
            }
        },
    };
    let p = RestParams {
        offset,
        per_page,
        page: offset / per_page + 1,
    };
    rest_list(s, p, true).await
}

/// The URL of a `Link`-mode page: the first page without `after`.
fn link_url(origin: &str, offset: Option<usize>, per_page: usize) -> String {
    match offset {
        None => format!("{origin}{REST_USERS_LINK_PATH}?per_page={per_page}"),
        Some(o) => format!(
            "{origin}{REST_USERS_LINK_PATH}?after={}&per_page={per_page}",
            encode_after(o)
        ),
    }
}

async fn rest_list(s: Shared, p: RestParams, link_mode: bool) -> Response {
    let (delay, outcome, page_no) = {
        let mut g = lock(&s);
        if g.auth_expired() {
            return rest_unauthorized("the access token expired", true);
        }
        let pg = g.serve_page(ResourceType::Users, p.offset, p.per_page, true);
        let outcome = match pg.injected {
            Some(Injected::Status(st)) => {
                let st = StatusCode::from_u16(st).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                RestOutcome::Done(rest_error(st, "injected page failure"))
            }
            Some(Injected::RateLimit(r)) => {
                let mut resp = rest_error(StatusCode::TOO_MANY_REQUESTS, "too many requests");
                add_rate_limit_headers(&mut resp, r);
                RestOutcome::Done(resp)
            }
            None if link_mode => {
                let origin = g.base_url.trim_end_matches("/v2").to_owned();
                let ordinal = p.offset / p.per_page + 1;
                let next = match g.faults.link_cycle {
                    Some((a, b)) if pg.pf && ordinal == a => {
                        let b = b.max(1);
                        Some(link_url(
                            &origin,
                            (b > 1).then(|| (b - 1).saturating_mul(p.per_page)),
                            p.per_page,
                        ))
                    }
                    _ if p.offset + p.per_page < pg.true_total => {
                        Some(link_url(&origin, Some(p.offset + p.per_page), p.per_page))
                    }
                    _ => None,
                };
                let mut link = format!("<{}>; rel=\"first\"", link_url(&origin, None, p.per_page));
                if let Some(n) = next {
                    link.push_str(&format!(", <{n}>; rel=\"next\""));
                }
                RestOutcome::Page {
                    body: Value::Array(pg.items),
                    total: pg.total,
                    link: Some(link),
                    malformed: pg.malformed,
                }
            }
            None => {
                let body = json!({
                    "users": pg.items,
                    "total": pg.total,
                    "page": p.page,
                    "per_page": p.per_page,
                });
                RestOutcome::Page {
                    body,
                    total: pg.total,
                    link: None,
                    malformed: pg.malformed,
                }
            }
        };
        (pg.delay, outcome, pg.page_no)
    };
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    let mut resp = match outcome {
        RestOutcome::Done(r) => r,
        RestOutcome::Page {
            body,
            total,
            link,
            malformed,
        } => {
            let mut r = render_page(&body, malformed, REST_JSON);
            if malformed != Some(Malformed::NotJson) {
                let h = r.headers_mut();
                h.insert(TOTAL_COUNT_HEADER, HeaderValue::from(total));
                if let Some(l) = link.and_then(|l| HeaderValue::from_str(&l).ok()) {
                    h.insert(header::LINK, l);
                }
            }
            r
        }
    };
    if let Some(n) = page_no {
        resp.extensions_mut().insert(PageNo(n));
    }
    resp
}

fn with_etag(mut r: Response, version: u64) -> Response {
    if let Ok(v) = HeaderValue::from_str(&weak_etag(version)) {
        r.headers_mut().insert(header::ETAG, v);
    }
    r
}

async fn get_user(State(s): State<Shared>, Path(id): Path<String>) -> Response {
    let g = lock(&s);
    match g.users.get(&id) {
        Some(u) => with_etag(scim_json(StatusCode::OK, &g.user_json(u)), u.version),
        None => scim_error(StatusCode::NOT_FOUND, None, &format!("User {id} not found")),
    }
}

async fn get_group(State(s): State<Shared>, Path(id): Path<String>) -> Response {
    let g = lock(&s);
    match g.groups.get(&id) {
        Some(x) => with_etag(scim_json(StatusCode::OK, &g.group_json(x)), x.version),
        None => scim_error(
            StatusCode::NOT_FOUND,
            None,
            &format!("Group {id} not found"),
        ),
    }
}

/// Which kind of resource a write targets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Target {
    User,
    Group,
}

impl Target {
    fn name(self) -> &'static str {
        match self {
            Target::User => "User",
            Target::Group => "Group",
        }
    }
}

/// Put on a write's response by its handler, read by [`track`].
#[derive(Clone, Copy, Debug)]
struct WriteInfo {
    applied: bool,
    /// `write_applied_then_slow`, sent after the response is logged.
    delay_ms: u64,
}

fn write_resp(mut r: Response, applied: bool, delay_ms: u64) -> Response {
    r.extensions_mut().insert(WriteInfo { applied, delay_ms });
    r
}

fn no_content() -> Response {
    StatusCode::NO_CONTENT.into_response()
}

fn header_text(h: &HeaderMap, name: header::HeaderName) -> Option<String> {
    h.get(name)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
}

/// Whether an `If-Match` value names version `v`: `*`, or any entry of the
/// comma-separated list equal to `W/"v"`, `"v"` or `v` (weak comparison).
fn etag_matches(if_match: &str, v: u64) -> bool {
    let want = v.to_string();
    if_match
        .split(',')
        .map(str::trim)
        .any(|t| t == "*" || t.strip_prefix("W/").unwrap_or(t).trim_matches('"') == want)
}

fn dedup(ids: Vec<String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(ids.len());
    for id in ids {
        if !out.contains(&id) {
            out.push(id);
        }
    }
    out
}

impl Inner {
    fn version_of(&self, t: Target, id: &str) -> Option<u64> {
        match t {
            Target::User => self.users.get(id).map(|u| u.version),
            Target::Group => self.groups.get(id).map(|x| x.version),
        }
    }

    fn remove_resource(&mut self, t: Target, id: &str) -> bool {
        match t {
            Target::User => self.remove_user(id),
            Target::Group => self.groups.remove(id).is_some(),
        }
    }

    /// What every write goes through before its own checks: `write_fail`,
    /// `write_not_found`, unknown id (404) and `If-Match` (412). `Err` is the
    /// answer (nothing applied).
    fn write_gate(
        &mut self,
        method: &str,
        t: Target,
        id: &str,
        if_match: Option<&str>,
    ) -> Result<(), Box<Response>> {
        let fails = self.faults.write_fail.clone();
        for (i, w) in fails.iter().enumerate() {
            let matches = (w.method.is_empty() || w.method.eq_ignore_ascii_case(method))
                && (w.id.is_empty() || w.id == id);
            if !matches {
                continue;
            }
            let h = self.c.write_hits.entry(i).or_insert(0);
            if *h < w.times {
                *h = h.saturating_add(1);
                let st =
                    StatusCode::from_u16(w.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                return Err(Box::new(write_resp(
                    scim_error(st, None, "injected write failure"),
                    false,
                    0,
                )));
            }
        }
        let not_found = || {
            write_resp(
                scim_error(
                    StatusCode::NOT_FOUND,
                    None,
                    &format!("{} {id} not found", t.name()),
                ),
                false,
                0,
            )
        };
        if self.faults.write_not_found {
            self.remove_resource(t, id);
            return Err(Box::new(not_found()));
        }
        let Some(v) = self.version_of(t, id) else {
            return Err(Box::new(not_found()));
        };
        if let Some(m) = if_match
            && !etag_matches(m, v)
        {
            return Err(Box::new(write_resp(
                scim_error(
                    StatusCode::PRECONDITION_FAILED,
                    None,
                    &format!(
                        "If-Match {m} does not match the current version {} of {} {id}",
                        weak_etag(v),
                        t.name()
                    ),
                ),
                false,
                0,
            )));
        }
        Ok(())
    }

    /// After the gate and the write's own checks: `write_noop` answers 204
    /// here (`Some`), else `None` and the caller applies the change.
    fn noop_answer(&self) -> Option<Response> {
        self.faults
            .write_noop
            .then(|| write_resp(no_content(), false, 0))
    }

    /// The 204 of an applied write (with its `write_applied_then_slow` delay).
    fn applied_answer(&self) -> Response {
        write_resp(
            no_content(),
            true,
            self.faults.write_applied_then_slow.unwrap_or(0),
        )
    }
}

fn bad_request(scim_type: &str, detail: &str) -> Box<Response> {
    Box::new(scim_error(StatusCode::BAD_REQUEST, Some(scim_type), detail))
}

/// The `Operations` of a PatchOp body (JSON, PatchOp schema, non-empty).
fn patch_ops(body: &[u8]) -> Result<Vec<Value>, Box<Response>> {
    let Ok(doc) = serde_json::from_slice::<Value>(body) else {
        return Err(bad_request("invalidSyntax", "request body is not JSON"));
    };
    let has_schema = doc["schemas"]
        .as_array()
        .is_some_and(|a| a.iter().any(|s| s == PATCH_OP_SCHEMA));
    if !has_schema {
        return Err(bad_request(
            "invalidSyntax",
            "schemas must contain the PatchOp URN",
        ));
    }
    match doc
        .get("Operations")
        .or_else(|| doc.get("operations"))
        .and_then(Value::as_array)
        .filter(|a| !a.is_empty())
    {
        Some(ops) => Ok(ops.clone()),
        None => Err(bad_request(
            "invalidSyntax",
            "Operations must be a non-empty array",
        )),
    }
}

fn op_kind(op: &Value) -> String {
    op["op"].as_str().unwrap_or("").to_ascii_lowercase()
}

fn op_path(op: &Value) -> Option<&str> {
    op.get("path").and_then(Value::as_str).map(str::trim)
}

async fn delete_user(
    State(s): State<Shared>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    delete_resource(&s, Target::User, &id, &headers)
}

async fn delete_group(
    State(s): State<Shared>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    delete_resource(&s, Target::Group, &id, &headers)
}

fn delete_resource(s: &Shared, t: Target, id: &str, headers: &HeaderMap) -> Response {
    let mut g = lock(s);
    let if_match = header_text(headers, header::IF_MATCH);
    if let Err(r) = g.write_gate("DELETE", t, id, if_match.as_deref()) {
        return *r;
    }
    if let Some(r) = g.noop_answer() {
        return r;
    }
    g.remove_resource(t, id);
    g.applied_answer()
}

/// One validated change of a user PATCH.
enum Change {
    Active(bool),
    UserName(String),
    DisplayName(Option<String>),
    Title(Option<String>),
}

fn change_for(attr: &str, value: &Value) -> Result<Change, Box<Response>> {
    let bad = |t: &str, d: String| Err(bad_request(t, &d));
    let optional = |name: &str| match value {
        Value::String(s) => Ok(Some(s.clone())),
        Value::Null => Ok(None),
        v => Err(bad_request(
            "invalidValue",
            &format!("{name} must be a string or null, got {v}"),
        )),
    };
    match attr.to_ascii_lowercase().as_str() {
        "active" => match value {
            Value::Bool(b) => Ok(Change::Active(*b)),
            v => bad("invalidValue", format!("active must be a boolean, got {v}")),
        },
        "username" => match value {
            Value::String(s) if !s.is_empty() => Ok(Change::UserName(s.clone())),
            v => bad(
                "invalidValue",
                format!("userName must be a non-empty string, got {v}"),
            ),
        },
        "displayname" => optional("displayName").map(Change::DisplayName),
        "title" => optional("title").map(Change::Title),
        other => bad(
            "invalidPath",
            format!("attribute {other:?} cannot be patched here"),
        ),
    }
}

fn user_changes(ops: &[Value]) -> Result<Vec<Change>, Box<Response>> {
    let mut changes = Vec::new();
    for op in ops {
        let kind = op_kind(op);
        if kind == "remove" {
            let Some(path) = op_path(op) else {
                return Err(bad_request("noTarget", "remove without path"));
            };
            match path.to_ascii_lowercase().as_str() {
                "displayname" => changes.push(Change::DisplayName(None)),
                "title" => changes.push(Change::Title(None)),
                _ => {
                    return Err(bad_request(
                        "invalidPath",
                        &format!("attribute {path:?} cannot be removed here"),
                    ));
                }
            }
            continue;
        }
        if kind != "replace" && kind != "add" {
            return Err(bad_request(
                "invalidSyntax",
                &format!("unsupported op {:?}", op["op"]),
            ));
        }
        let Some(value) = op.get("value") else {
            return Err(bad_request("invalidSyntax", "operation without value"));
        };
        match op_path(op) {
            Some(path) => changes.push(change_for(path, value)?),
            None => {
                let Some(obj) = value.as_object() else {
                    return Err(bad_request(
                        "invalidSyntax",
                        "a value without path must be an object",
                    ));
                };
                for (k, v) in obj {
                    changes.push(change_for(k, v)?);
                }
            }
        }
    }
    Ok(changes)
}

/// RFC 7644 §3.5.2 on a user (see the module doc for what is supported).
async fn patch_user(
    State(s): State<Shared>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let changes = match patch_ops(&body).and_then(|ops| user_changes(&ops)) {
        Ok(c) => c,
        Err(r) => return *r,
    };
    let mut g = lock(&s);
    let if_match = header_text(&headers, header::IF_MATCH);
    if let Err(r) = g.write_gate("PATCH", Target::User, &id, if_match.as_deref()) {
        return *r;
    }
    if let Some(r) = g.noop_answer() {
        return r;
    }
    let u = g.users.get_mut(&id).expect("checked by write_gate");
    let mut changed = false;
    for c in changes {
        match c {
            Change::Active(a) => {
                changed |= u.active != a;
                u.active = a;
            }
            Change::UserName(n) => {
                changed |= u.user_name != n;
                u.user_name = n;
            }
            Change::DisplayName(d) => {
                changed |= u.display_name != d;
                u.display_name = d;
            }
            Change::Title(t) => {
                changed |= u.title != t;
                u.title = t;
            }
        }
    }
    if changed {
        u.version += 1;
    }
    g.applied_answer()
}

/// One validated change of a group PATCH.
enum GroupChange {
    Add(Vec<String>),
    Remove(Vec<String>),
    RemoveAll,
    Set(Vec<String>),
    DisplayName(String),
}

/// `[{"value":UID},..]` (a single object is taken as a list of one).
fn member_values(v: &Value) -> Result<Vec<String>, Box<Response>> {
    let items: Vec<&Value> = match v {
        Value::Array(a) => a.iter().collect(),
        Value::Object(_) => vec![v],
        other => {
            return Err(bad_request(
                "invalidValue",
                &format!("members must be a list of {{\"value\": id}}, got {other}"),
            ));
        }
    };
    items
        .into_iter()
        .map(|m| match m.get("value").and_then(Value::as_str) {
            Some(id) if !id.is_empty() => Ok(id.to_owned()),
            _ => Err(bad_request(
                "invalidValue",
                &format!("member without a string value: {m}"),
            )),
        })
        .collect()
}

/// `members[value eq "UID"]`: `None` if `path` is not a `members[..]` filter,
/// else the id or a 400 `invalidFilter`.
fn member_filter(path: &str) -> Option<Result<String, Box<Response>>> {
    let lower = path.to_ascii_lowercase();
    if !lower.starts_with("members[") {
        return None;
    }
    let bad = || {
        Err(bad_request(
            "invalidFilter",
            &format!("unsupported member filter {path:?}; use members[value eq \"id\"]"),
        ))
    };
    let Some(inner) = path["members[".len()..].strip_suffix(']') else {
        return Some(bad());
    };
    let mut parts = inner.trim().splitn(3, char::is_whitespace);
    let (Some(attr), Some(op), Some(lit)) = (parts.next(), parts.next(), parts.next()) else {
        return Some(bad());
    };
    if !attr.eq_ignore_ascii_case("value") || !op.eq_ignore_ascii_case("eq") {
        return Some(bad());
    }
    match serde_json::from_str::<String>(lit.trim()) {
        Ok(id) => Some(Ok(id)),
        Err(_) => Some(bad()),
    }
}

fn group_value_changes(
    kind: &str,
    obj: &serde_json::Map<String, Value>,
) -> Result<Vec<GroupChange>, Box<Response>> {
    let mut out = Vec::new();
    for (k, v) in obj {
        match k.to_ascii_lowercase().as_str() {
            "members" if kind == "add" => out.push(GroupChange::Add(member_values(v)?)),
            "members" => out.push(GroupChange::Set(member_values(v)?)),
            "displayname" => out.push(display_name_change(v)?),
            _ => {
                return Err(bad_request(
                    "invalidPath",
                    &format!("attribute {k:?} cannot be patched here"),
                ));
            }
        }
    }
    Ok(out)
}

fn display_name_change(v: &Value) -> Result<GroupChange, Box<Response>> {
    match v {
        Value::String(s) if !s.is_empty() => Ok(GroupChange::DisplayName(s.clone())),
        v => Err(bad_request(
            "invalidValue",
            &format!("displayName must be a non-empty string, got {v}"),
        )),
    }
}

fn group_changes(ops: &[Value]) -> Result<Vec<GroupChange>, Box<Response>> {
    let mut changes = Vec::new();
    for op in ops {
        let kind = op_kind(op);
        let path = op_path(op);
        let value = op.get("value");
        match (kind.as_str(), path) {
            ("remove", None) => return Err(bad_request("noTarget", "remove without path")),
            ("remove", Some(p)) if p.eq_ignore_ascii_case("members") => match value {
                Some(v) => changes.push(GroupChange::Remove(member_values(v)?)),
                None => changes.push(GroupChange::RemoveAll),
            },
            ("remove", Some(p)) => match member_filter(p) {
                Some(id) => changes.push(GroupChange::Remove(vec![id?])),
                None => {
                    return Err(bad_request(
                        "invalidPath",
                        &format!("cannot remove {p:?} from a group"),
                    ));
                }
            },
            ("add" | "replace", _) if value.is_none() => {
                return Err(bad_request("invalidSyntax", "operation without value"));
            }
            ("add" | "replace", None) => {
                let Some(obj) = value.and_then(Value::as_object) else {
                    return Err(bad_request(
                        "invalidSyntax",
                        "a value without path must be an object",
                    ));
                };
                changes.extend(group_value_changes(&kind, obj)?);
            }
            ("add" | "replace", Some(p)) => {
                let v = value.expect("checked above");
                match p.to_ascii_lowercase().as_str() {
                    "members" if kind == "add" => changes.push(GroupChange::Add(member_values(v)?)),
                    "members" => changes.push(GroupChange::Set(member_values(v)?)),
                    "displayname" => changes.push(display_name_change(v)?),
                    _ => {
                        return Err(bad_request(
                            "invalidPath",
                            &format!("attribute {p:?} cannot be patched here"),
                        ));
                    }
                }
            }
            _ => {
                return Err(bad_request(
                    "invalidSyntax",
                    &format!("unsupported op {:?}", op["op"]),
                ));
            }
        }
    }
    Ok(changes)
}

/// RFC 7644 §3.5.2 on a group: membership and `displayName` (see the module
/// doc for the supported forms).
async fn patch_group(
    State(s): State<Shared>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let changes = match patch_ops(&body).and_then(|ops| group_changes(&ops)) {
        Ok(c) => c,
        Err(r) => return *r,
    };
    let mut g = lock(&s);
    let if_match = header_text(&headers, header::IF_MATCH);
    if let Err(r) = g.write_gate("PATCH", Target::Group, &id, if_match.as_deref()) {
        return *r;
    }
    for c in &changes {
        if let GroupChange::Add(ids) | GroupChange::Set(ids) = c
            && let Some(unknown) = ids.iter().find(|m| !g.users.contains_key(*m))
        {
            return write_resp(
                scim_error(
                    StatusCode::BAD_REQUEST,
                    Some("invalidValue"),
                    &format!("member {unknown} is not a known User"),
                ),
                false,
                0,
            );
        }
    }
    if let Some(r) = g.noop_answer() {
        return r;
    }
    let x = g.groups.get_mut(&id).expect("checked by write_gate");
    let before = (x.members.clone(), x.display_name.clone());
    for c in changes {
        match c {
            GroupChange::Add(ids) => {
                for m in ids {
                    if !x.members.contains(&m) {
                        x.members.push(m);
                    }
                }
            }
            GroupChange::Remove(ids) => x.members.retain(|m| !ids.contains(m)),
            GroupChange::RemoveAll => x.members.clear(),
            GroupChange::Set(ids) => x.members = dedup(ids),
            GroupChange::DisplayName(n) => x.display_name = n,
        }
    }
    if (&x.members, &x.display_name) != (&before.0, &before.1) {
        x.version += 1;
    }
    g.applied_answer()
}

/// RFC 7643 §5, with the RFC 9865 `pagination` block.
async fn service_provider_config(State(s): State<Shared>) -> Response {
    let g = lock(&s);
    let body = json!({
        "schemas": [SPC_SCHEMA],
        "patch": {"supported": true},
        "bulk": {"supported": false, "maxOperations": 0, "maxPayloadSize": 0},
        "filter": {"supported": false, "maxResults": g.cfg.max_page_size},
        "changePassword": {"supported": false},
        "sort": {"supported": false},
        "etag": {"supported": true},
        "authenticationSchemes": [{
            "type": "oauthbearertoken",
            "name": "OAuth Bearer Token",
            "description": "Authentication with a bearer token",
        }],
        "pagination": {
            "cursor": true,
            "index": true,
            "defaultPaginationMethod": "index",
            "defaultPageSize": DEFAULT_PAGE_SIZE,
            "maxPageSize": g.cfg.max_page_size,
            "cursorTimeout": 3600,
        },
        "meta": {
            "resourceType": "ServiceProviderConfig",
            "location": format!("{}/ServiceProviderConfig", g.base_url),
        },
    });
    scim_json(StatusCode::OK, &body)
}
