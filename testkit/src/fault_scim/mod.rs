//! A fault-injecting SCIM 2.0 server for tests (RFC 7643 resources, RFC 7644
//! protocol, RFC 9865 cursor paging), in process on axum, bound to 127.0.0.1:0.
//!
//! With no fault set it speaks the real protocol: `ListResponse` paging by
//! `startIndex`/`count` or by `cursor`/`nextCursor`, `count=0` probes, single
//! resources with `meta.version` and `ETag`, PATCH and DELETE, SCIM error bodies
//! and bearer authentication. [`Faults`] then bends it in each of the ways a
//! sync can fail silently (R1..R13, see each field), and each of the ways a
//! lifecycle action (a write) can fail or lie (W1..W3, W7 slow to apply, W8 memberships not shown, W9
//! memberships shown only by a filter or the user's `groups`, W10 down after
//! the write; W4, drift after a
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
//!   unknown one is a 400);
//! - offset/limit paging, `GET /api/users-offset?offset=O&limit=N` (`O`
//!   0-based, default 0; `N` as `per_page` above): the page-number body
//!   `{"users":[..],"total":T,"page":..,"per_page":N}` and `X-Total-Count`;
//! - a cursor in the body, `GET /api/users-cursor?limit=N`, then
//!   `GET /api/users-cursor?cursor=C&limit=N`: `{"users":[..],
//!   "meta":{"next_cursor":C}}` and `X-Total-Count`, `C` opaque and `""` on
//!   the last page (an unknown one is a 400).
//!
//! [`Faults::rest`] ([`RestQuirks`]) bends these as real APIs do: one `Link`
//! line per relation, relative link targets, the last page again past the
//! end, GitHub's rate-limit headers and 403 refusals.
//!
//! REST errors (injected failures, 400s, 401s) have an `application/json` body
//! `{"status":N,"error":"<reason phrase>","message":"..."}`; a REST 401 carries
//! the same `WWW-Authenticate` as a SCIM one. Both REST endpoints list Users.
//!
//! Discovery and reads that directories bend:
//! - `GET /v2/ServiceProviderConfig`: RFC 7643 §5 with `filter.maxResults`
//!   and RFC 9865's `pagination.maxPageSize`, both the real `max_page_size`;
//!   [`Faults::spc`] ([`SpcAnswer`]) declares another `maxResults` without
//!   `pagination` (as scim2-server does), declares none, or fails;
//! - [`Faults::members_capped`] ([`MembersCapped`]): groups in list answers
//!   show only their first N members (optionally ranged,
//!   `members;range=0-<N-1>`); single-group GETs show all, or are capped too;
//! - [`Faults::members_left_out_of_lists`]: groups in list answers come
//!   without `members` (Entra ID-style); single-group GETs show them;
//! - [`TotalResults::Absent`]: no `totalResults` on SCIM pages and probes.
//!
//! Counting rules, used by several faults:
//! - a *list request* is a GET on `/v2/Users` or `/v2/Groups` with `count > 0`
//!   (a `count=0` probe is not a list request), or any answered GET on
//!   `/api/users`, `/api/users-link`, `/api/users-offset` or
//!   `/api/users-cursor` (these count as Users); only resource
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
//! - `GET /v2/Groups?filter=id eq "G" and members.value eq "U"`: the
//!   membership filter, answered as [`Faults::member_filter`] says (a 400
//!   `invalidFilter` by default, like every other filter).
//! - `GET /v2/Users?filter=id eq "U"`, `GET /v2/Groups?filter=id eq "G"`: the
//!   plain id filter, applied by default (see [`Faults::id_filter`]); what an
//!   executor asks to corroborate a 404 of a single GET.
//! - `GET /v2/Users/{id}`, `GET /v2/Groups/{id}` (`?attributes=members` asks for
//!   `members` by name, see [`MembersShown`]; users carry `groups` only with
//!   [`Faults::user_groups`]): 200 with the resource and
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
//!
//! Layout (split by role and fault family):
//! - `faults`: the seed config and the fault catalogue (R1..R13, W1..W3, W7..W10);
//! - `member_query`: the membership filter on `/v2/Groups` (W9);
//! - `model`: users, groups, counters and the request log;
//! - `page_faults`: which page faults fire for one list request;
//! - `paging`: SCIM index and cursor paging;
//! - `rest`: the REST page-number and `Link` variants;
//! - `rest_writes`: REST writes (`/api/users/{id}`, membership resources);
//! - `writes`: single-resource reads, the write gate, DELETE, user PATCH;
//! - `groups`: group PATCH;
//! - `responses`: JSON, error, 401 and 429 answers;
//! - `router`: routes, the tracking middleware, discovery;
//! - here: [`FaultScim`], the running server and its test-side handles.

mod faults;
mod groups;
mod member_query;
mod model;
mod page_faults;
mod paging;
mod responses;
mod rest;
mod rest_writes;
mod router;
mod writes;

pub use self::{faults::*, responses::http_date_in};
use self::{
    groups::*, member_query::*, model::*, page_faults::*, paging::*, responses::*, rest::*,
    rest_writes::*, router::*, writes::*,
};

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
/// The REST offset/limit endpoint (`?offset=O&limit=N`).
pub const REST_USERS_OFFSET_PATH: &str = "/api/users-offset";
/// The REST body-cursor endpoint (`?limit=N`, then `?cursor=C&limit=N`).
pub const REST_USERS_CURSOR_PATH: &str = "/api/users-cursor";
/// The REST total-count header (lower case, as it goes on the wire).
pub const TOTAL_COUNT_HEADER: &str = "x-total-count";

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

    /// Deletes a group (its members stay); unknown ids are ignored.
    pub fn delete_group(&self, gid: &str) {
        lock(&self.inner).groups.remove(gid);
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
