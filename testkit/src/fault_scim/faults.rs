//! The fault catalogue: how the server is seeded ([`ScimConfig`]) and every way
//! it can bend the protocol ([`Faults`]: page faults R1..R13, write faults
//! W1..W3, W7..W10), plus the request log's record ([`RequestRecord`]).

use super::*;

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
    /// Users carry their groups (`groups`, RFC 7643 §4.1.2, read-only), as
    /// most real servers show them, from the start (the same as
    /// [`Faults::user_groups`], which can also switch it on later).
    pub user_groups: bool,
}

impl Default for ScimConfig {
    fn default() -> Self {
        Self {
            users: 0,
            groups: 0,
            bearer_token: None,
            max_page_size: 1000,
            user_groups: false,
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
    /// SCIM only: no `totalResults` at all, on pages and `count=0` probes
    /// (RFC 7644 makes it REQUIRED, yet some servers leave it out). REST
    /// answers keep their honest total.
    Absent,
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
    /// A 401 body echoes the credential the request carried, as a careless
    /// target does: the `Authorization` header, the bare token and the
    /// token's base64 ("token rejected: Bearer …").
    pub echo_credentials_in_errors: bool,
    /// R12: `(a, b)`, in cursor mode the page with ordinal `a` (1-based, by
    /// offset / count) hands out the cursor of the earlier page `b` as its
    /// `nextCursor`, so a client walks 1..a, b..a, b..a, ... forever.
    pub cursor_cycle: Option<(usize, usize)>,
    /// R12 for the REST `Link` API: `(a, b)`, the page with ordinal `a`
    /// (1-based, by offset / `per_page`) hands out as its `rel="next"` link
    /// exactly the link that led to the earlier page `b` (for `b` = 1 the
    /// first-page URL without `after`), so a client walks 1..a, b..a, ...
    /// forever. Applies even if page `a` is the last one; the same for the
    /// body cursor of `/api/users-cursor` (for `b` = 1 the cursor is the
    /// first page's, `""`, which ends the listing). Page-number and offset
    /// paging are unaffected.
    pub link_cycle: Option<(usize, usize)>,
    /// Added to every request (any path), before anything else is decided.
    pub latency_ms: u64,
    /// `(start_index, ms)`: that page answers after this extra delay (timeouts).
    pub slow: Option<(usize, u64)>,
    /// Added to every page of a listing (of any resource type; not to single
    /// GETs or writes): a hosted SCIM API, which answers a page in hundreds
    /// of milliseconds, so a large sync lasts minutes.
    pub page_latency_ms: u64,
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
    /// W7 (slow to apply): an applied write answers at once, but single-resource
    /// GETs (`/v2/Users/{id}`, `/v2/Groups/{id}`) keep showing the resource as
    /// it was before the write (its old body and `ETag`, or still there after a
    /// DELETE) for this many ms. Lists show the change at once.
    pub read_lag_ms: Option<u64>,
    /// W8 (memberships not shown): whether a single-group GET carries
    /// `members` (see [`MembersShown`]). Lists are not affected (see
    /// [`Faults::members_left_out_of_lists`] for those).
    pub members_shown: MembersShown,
    /// W9 (memberships shown by other means): how `GET /v2/Groups` answers
    /// the membership filter `id eq "G" and members.value eq "U"` (see
    /// [`MemberFilter`]; every other filter stays a 400 `invalidFilter`).
    pub member_filter: MemberFilter,
    /// How `GET /v2/Users?filter=id eq "U"` and `GET /v2/Groups?filter=id eq
    /// "G"` (RFC 7644 §3.4.2.2) are answered (see [`IdFilter`]).
    pub id_filter: IdFilter,
    /// A misrouted read path (a proxy rule, another tenant's route):
    /// single-resource GETs (`/v2/Users/{id}`, `/v2/Groups/{id}`) answer 404
    /// whatever exists. Lists and writes are unaffected.
    pub single_gets_not_found: bool,
    /// W9: users carry the read-only `groups` attribute (RFC 7643 §4.1.2,
    /// `[{"value":GID,"display":NAME,"$ref":URL,"type":"direct"}]`) in every
    /// answer (single GETs and lists). Off by default, as on `scim2-server`.
    pub user_groups: bool,
    /// W10 (down after the write): once a write is applied (and answered),
    /// every later request, reads and writes alike, answers 503 until the
    /// next [`FaultScim::set_faults`]: the target went down between the write
    /// and its read-back.
    pub down_after_write: bool,
    /// Capped member lists (large directories): see [`MembersCapped`].
    /// Applies regardless of [`Faults::only`].
    pub members_capped: Option<MembersCapped>,
    /// Member lists left out of list answers by design (Entra ID-style):
    /// every group in a list answer (`/v2/Groups?..`) comes without
    /// `members`, whatever its size; single-group GETs show them as
    /// [`Faults::members_shown`] says. Applies regardless of [`Faults::only`].
    pub members_left_out_of_lists: bool,
    /// What `GET /v2/ServiceProviderConfig` answers (see [`SpcAnswer`]).
    pub spc: SpcAnswer,
    /// How the REST API answers where real APIs differ from the plain form
    /// (GitHub-style `Link` lines, relative links, pages past the end, rate
    /// limits); SCIM is unaffected.
    pub rest: RestQuirks,
}

/// Member lists capped as large directories do: a group in a list answer
/// (`/v2/Groups?..`) shows only its first `list` members; a single-group GET
/// shows them all, or only the first `single` when set (capped too). With
/// `ranged`, a list answer whose group has more than `list` members names
/// them `"members;range=0-<list-1>"` instead of `"members"` (as directories
/// that page member attributes do); smaller groups keep `"members"`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MembersCapped {
    pub list: usize,
    pub single: Option<usize>,
    pub ranged: bool,
}

/// What `GET /v2/ServiceProviderConfig` answers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SpcAnswer {
    /// RFC 7643 §5 with `filter.maxResults` and RFC 9865's
    /// `pagination.maxPageSize`, both the server's real `max_page_size`.
    #[default]
    Honest,
    /// `filter.maxResults` says this (whatever the real cap), and there is
    /// no `pagination` block (as the real scim2-server answers).
    MaxResults(usize),
    /// Neither `filter.maxResults` nor `pagination`.
    Omitted,
    /// An error answer with this status (a SCIM error body).
    Fails(u16),
}

/// W8: when a single-group GET (`/v2/Groups/{id}`) shows `members`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum MembersShown {
    /// Always (the real protocol).
    #[default]
    Always,
    /// Only when asked for by name, `?attributes=members` (as some servers do
    /// by design); otherwise the attribute is left out.
    OnRequest,
    /// Never: the attribute is always left out.
    Never,
}

/// W9: how `GET /v2/Groups?filter=id eq "G" and members.value eq "U"`
/// (RFC 7644 §3.4.2.2) is answered. Filters of any other form are a 400
/// `invalidFilter` in every mode (as without this fault).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum MemberFilter {
    /// 400 `invalidFilter`: filtering is not supported (the default).
    #[default]
    Refused,
    /// Applied: a `ListResponse` with the group (`totalResults` 1) when `U`
    /// is one of its members, else none (`totalResults` 0). The group is
    /// shown as a single GET shows it ([`Faults::members_shown`]).
    Supported,
    /// 501 Not Implemented with a SCIM error body.
    NotImplemented,
    /// Only the `id eq` clause is applied (the member clause is ignored): the
    /// group matches whoever is asked about — a server a client must catch.
    IgnoresMembers,
    /// The filter is ignored altogether: the plain listing of every group.
    Ignored,
}

/// How the plain id filter `id eq "X"` on `/v2/Users` and `/v2/Groups` is
/// answered.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum IdFilter {
    /// Applied, as SCIM servers do: a `ListResponse` with the resource
    /// (`totalResults` 1) or none (`totalResults` 0).
    #[default]
    Supported,
    /// 400 `invalidFilter`, like every other filter.
    Refused,
    /// 404, as a path that does not lead to a SCIM server answers.
    NotFound,
}

/// REST API behaviours of real APIs (each legal, each one a client must read).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RestQuirks {
    /// `Link` mode: one `Link` header line per relation (`rel="first"` on one
    /// line, `rel="next"` on the next), as GitHub sends them, instead of one
    /// comma-separated line.
    pub link_per_line: bool,
    /// `Link` mode: link targets are relative references
    /// (`users-link?after=TOKEN&per_page=N`), to be resolved against the
    /// request URI (RFC 8288 §3.2).
    pub link_relative: bool,
    /// `Link` mode: absolute link targets carry this userinfo
    /// (`http://USERINFO@127.0.0.1:PORT/...`), as a server that echoes
    /// credentials into its next links does.
    pub link_userinfo: Option<String>,
    /// `Link` mode: no `Link` header; the body is
    /// `{"users":[..],"links":{"next":URL or null}}` (a next link in the body).
    pub next_in_body: bool,
    /// A page past the last one answers with the last page again (its items,
    /// the same total) instead of an empty page; in `Link` mode every page,
    /// the last one too, links to the page after the one asked for (so the
    /// links past the end are all different and never cycle).
    pub past_end_repeats_last: bool,
    /// GitHub-style rate window: every REST list answer carries
    /// `X-RateLimit-Limit`, `X-RateLimit-Remaining` and `X-RateLimit-Reset`
    /// (epoch seconds); a request with none remaining before the reset is
    /// refused with 403 `{"message":"API rate limit exceeded ..."}`.
    pub rate_window: Option<RateWindow>,
    /// Injected rate limits (`rate_limit`) on the REST API answer as GitHub's
    /// do: 403, body "API rate limit exceeded", `X-RateLimit-Remaining: 0` and
    /// `X-RateLimit-Reset` (epoch seconds, `retry_after`'s seconds from now);
    /// no `Retry-After`.
    pub rate_limit_as_403: bool,
    /// Page-number mode: pages count from 0 (`page=0` is the first page, and
    /// a request without `page` reads it), as many HR and ticketing APIs do.
    pub zero_based_pages: bool,
    /// Cursor mode (`/api/users-cursor`): past the end every page is empty
    /// yet hands out a fresh cursor (to the page after the one asked for), so
    /// the cursors never repeat and never run out.
    pub past_end_empty_with_next: bool,
}

/// `requests` REST list requests per window of `window_s` seconds; the window
/// starts with its first request and ends at a whole epoch second.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateWindow {
    pub requests: usize,
    pub window_s: u64,
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
