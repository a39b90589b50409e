//! The sync engine: reads a source page by page and publishes an event for every
//! attempt (each page request, failure, retry, record observed, record rejected).
//!
//! Connectors say *what* to fetch ([`SyncSpec`]: resources, paging, page size);
//! the engine decides *how*: rate limiting, retries with the shared
//! [`retry`] policy, Retry-After, cross-checks (count probes before
//! and after, a probe past the last page, cursor cycles), and the final report.
//!
//! The engine reports facts and its own view; the ledger decides the verdict.
//! A run the engine could not finish (shutdown) ends with an explicit
//! `SyncRunFinished(ABANDONED)`; a run cut short by a crash is abandoned by the
//! next worker ([`abandon_run`]).
//!
//! A SCIM run first reads `/ServiceProviderConfig` and asks for pages of
//! min(configured, the server's declared maximum) (`paging`);
//! an answer that fails or declares none keeps the configured size.
//!
//! Layout: this module runs a sync and fetches, parses and publishes one page
//! with retries; `paging` (private) walks a resource's pages: by index, or
//! along a chain of cursors or links; `rest_paging` (private) walks a REST
//! listing by page number or offset; `members` holds back and reads
//! individually the groups whose member lists look capped; `abandon` ends a
//! run explicitly ABANDONED ([`abandon_run`]); `ldap` reads a directory
//! (paged results, ranged members); `file` reads an HR file drop; `spec`
//! holds what a run reads ([`SyncSpec`], [`Paging`], [`Resource`]).

use std::{
    collections::{HashSet, VecDeque},
    sync::Arc,
};

use govledger_proto::v1::{
    EngineOutcome, EntityType, ErrorClass, Event, PageFailed, PageFetched, PageRole,
    RecordObserved, SyncMode, SyncRunFinished, SyncRunStarted, event::Body,
};
use tokio::{sync::watch, time::Instant};
use tokio_util::sync::CancellationToken;

use crate::{
    Publisher,
    event::{ProducerId, Scope, stamp},
    http::{Fetched, HttpSource, percent_encode},
    publisher::{Pending, PublishError},
    ratelimit::{self, RateLimiter},
    rest,
    retry::{self, Decision, Failure},
    scim::{self, Item, ListPage},
};

/// Pages read per resource at most (a runaway source cannot loop forever).
pub const PAGES_MAX: u64 = 1_000_000;
/// Publishes awaited lazily: at most this many unconfirmed before the engine waits.
const UNCONFIRMED_MAX: usize = 8_192;

mod abandon;
mod file;
mod ldap;
mod members;
mod paging;
mod rest_paging;
mod spec;

pub use abandon::abandon_run;
pub use ldap::UNKNOWN_DN_PREFIX;
pub use members::DEFAULT_MEMBER_FETCH_MAX;
use spec::entity_types;
pub use spec::{Paging, Resource, SyncSpec, paging_name};

/// Live progress of a run, for progress bars and the API.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyncProgress {
    pub run_id: String,
    pub pages: u64,
    pub records: u64,
    pub declared: Option<u64>,
    pub done: bool,
    /// The run's `SyncRunStarted` is stored (acknowledged by JetStream): the
    /// run id names a run the ledger knows.
    pub started_stored: bool,
    /// The stream sequence of the run's `SyncRunStarted` once stored (0 before):
    /// a reader that waits for it sees the run (read-your-writes).
    pub started_seq: u64,
}

/// The engine's own summary of a run (the ledger's verdict may differ).
#[derive(Debug, Clone, Default)]
pub struct SyncReport {
    pub run_id: String,
    pub outcome: i32,
    pub observed: u64,
    pub unique: u64,
    pub duplicates: u64,
    pub rejected: u64,
    pub pages_ok: u64,
    pub pages_failed: u64,
    pub events: u64,
    pub message: String,
}

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("events of run {run_id} could not be stored: {source}")]
    Publish {
        run_id: String,
        #[source]
        source: PublishError,
    },
}

/// Everything a run needs besides its spec.
pub struct SyncContext {
    pub publisher: Publisher,
    pub producer: ProducerId,
    pub http: Arc<HttpSource>,
    pub progress: watch::Sender<SyncProgress>,
    /// Cancelled: the run stops between requests and ends ABANDONED.
    pub cancel: CancellationToken,
}

/// One page request: where, and what its `PageFetched` says.
struct PageReq {
    url: String,
    key: String,
    entity_type: EntityType,
    role: PageRole,
    page_index: u64,
    offset: Option<u64>,
    count: u32,
    /// How to name the next page from the cursor/link the page hands out.
    next_prefix: Option<String>,
    /// An individual group read for its members (`PageFetched.member_read`):
    /// one resource, not a list; its record is published by `members`.
    member_read: bool,
}

/// Why paging of one resource stopped early.
enum Stop {
    /// The run cannot go on (auth failed, cancelled, cursor lost).
    Abort(ErrorClass, String),
}

struct Run<'a> {
    /// SCIM filter of a delta run (empty for full runs).
    filter: String,
    spec: &'a SyncSpec,
    ctx: &'a SyncContext,
    scope: Scope,
    limiter: RateLimiter,
    unconfirmed: VecDeque<Pending>,
    /// The highest stream sequence of this run's events stored so far.
    confirmed_seq: u64,
    emitted: u64,
    seen: HashSet<(i32, String)>,
    report: SyncReport,
    declared: Option<u64>,
    jitter: rand::rngs::StdRng,
    /// The last page read brought no new records (REST): every record on it
    /// was already observed in this run; see [`Run::fetch_page`].
    repeated: bool,
    /// The page size asked for (SCIM: negotiated with the server).
    page_size: u32,
    /// While a SCIM resource of groups is listed: the capped-list detector.
    members: Option<members::MemberCap>,
    /// Groups read individually so far (against `member_fetch_max`).
    member_reads: u32,
}

/// A cursor or next link as events and logs show it: a URL's userinfo (a
/// password a server put in its next link) replaced by `***`; other cursors
/// unchanged (an opaque cursor may hold an `@`).
pub(crate) fn shown_link(cursor: &str) -> String {
    if cursor.contains("://") {
        govledger_stream::redact_url(cursor)
    } else {
        cursor.to_owned()
    }
}

/// Runs one sync of `spec` as run `run_id` and publishes every event of it.
/// Returns the engine's own report once every event is stored.
pub async fn run_sync(
    spec: &SyncSpec,
    ctx: &SyncContext,
    run_id: &str,
    mode: SyncMode,
    delta_since_us: Option<i64>,
    triggered_by: &str,
) -> Result<SyncReport, SyncError> {
    use rand::SeedableRng as _;
    let filter = match (mode, delta_since_us) {
        (SyncMode::Delta, Some(us)) => chrono::DateTime::from_timestamp_micros(us)
            .map(|t| {
                format!(
                    "meta.lastModified gt \"{}\"",
                    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
                )
            })
            .unwrap_or_default(),
        _ => String::new(),
    };
    let mut run = Run {
        filter: filter.clone(),
        spec,
        ctx,
        scope: Scope::run(&spec.source_id, run_id),
        limiter: RateLimiter::new(spec.rate_per_s, spec.burst),
        unconfirmed: VecDeque::new(),
        confirmed_seq: 0,
        emitted: 0,
        seen: HashSet::new(),
        report: SyncReport {
            run_id: run_id.to_owned(),
            ..Default::default()
        },
        declared: None,
        jitter: rand::rngs::StdRng::from_os_rng(),
        repeated: false,
        page_size: spec.page_size.max(1),
        members: None,
        member_reads: 0,
    };
    if let Some(until) = ctx.http.held_until() {
        // A pause the server asked for in an earlier run still holds.
        run.limiter.pause_until(until);
    }
    ctx.progress.send_replace(SyncProgress {
        run_id: run_id.to_owned(),
        ..Default::default()
    });
    run.emit(
        1,
        Body::SyncRunStarted(SyncRunStarted {
            mode: mode as i32,
            declared_total: None,
            page_size: spec.page_size,
            paging: paging_name(spec).to_owned(),
            entity_types: entity_types(spec),
            deletion_threshold_pct: spec.deletion_threshold_pct,
            deletion_threshold_abs: spec.deletion_threshold_abs,
            deletion_thresholds: spec.deletion_thresholds.clone(),
            delta_filter: filter,
            triggered_by: triggered_by.to_owned(),
        }),
    )
    .await?;
    // The run exists once its start is stored: whoever asked for it is told
    // its id only then (a run id is a record, not a promise).
    run.confirm_all().await?;
    let started_seq = run.confirmed_seq;
    ctx.progress.send_modify(|p| {
        p.started_stored = true;
        p.started_seq = started_seq;
    });

    if spec.is_scim() {
        run.page_size = run.negotiate_page_size().await?;
    }
    let stopped = run.read_source().await?;
    let (outcome, class, message) = match stopped {
        None => (
            EngineOutcome::Succeeded,
            ErrorClass::Unspecified,
            String::new(),
        ),
        Some(Stop::Abort(class, msg)) if run.ctx.cancel.is_cancelled() => {
            (EngineOutcome::Abandoned, class, msg)
        }
        Some(Stop::Abort(class, msg)) => (EngineOutcome::Failed, class, msg),
    };
    let events_emitted = run.emitted;
    let rep = &run.report;
    let finished = SyncRunFinished {
        engine_outcome: outcome as i32,
        observed: rep.observed,
        unique: rep.unique,
        duplicates: rep.duplicates,
        declared_total: run.declared,
        pages_ok: rep.pages_ok,
        pages_failed: rep.pages_failed,
        rejected: rep.rejected,
        error_class: class as i32,
        message: message.clone(),
        events_emitted,
    };
    run.emit(1, Body::SyncRunFinished(finished)).await?;
    run.confirm_all().await?;
    run.report.outcome = outcome as i32;
    run.report.events = run.emitted;
    run.report.message = message;
    let mut p = run.ctx.progress.borrow().clone();
    p.done = true;
    run.ctx.progress.send_replace(p);
    Ok(run.report)
}

impl Run<'_> {
    /// Reads the whole source by its connector; `Some` when it stopped early.
    async fn read_source(&mut self) -> Result<Option<Stop>, SyncError> {
        let spec = self.spec;
        if let Some(shape) = &spec.rest {
            return Ok(self.read_rest(shape).await?.err());
        }
        if let Some(l) = &spec.ldap {
            return self.read_ldap(l).await;
        }
        if let Some(f) = &spec.file {
            return self.read_file(f).await;
        }
        for res in &spec.resources {
            if let Err(stop) = self.read_resource(res).await? {
                return Ok(Some(stop));
            }
        }
        Ok(None)
    }

    async fn emit(&mut self, attempt: u32, body: Body) -> Result<(), SyncError> {
        let ev: Event = stamp(&self.ctx.producer, &self.scope, attempt, body);
        let pending = self
            .ctx
            .publisher
            .publish(&ev)
            .await
            .map_err(|source| self.publish_err(source))?;
        self.emitted += 1;
        self.unconfirmed.push_back(pending);
        while self.unconfirmed.len() > UNCONFIRMED_MAX {
            if let Some(p) = self.unconfirmed.pop_front() {
                let r = p.wait().await.map_err(|source| self.publish_err(source))?;
                self.confirmed_seq = self.confirmed_seq.max(r.seq);
            }
        }
        Ok(())
    }

    fn publish_err(&self, source: PublishError) -> SyncError {
        SyncError::Publish {
            run_id: self.report.run_id.clone(),
            source,
        }
    }

    async fn confirm_all(&mut self) -> Result<(), SyncError> {
        while let Some(p) = self.unconfirmed.pop_front() {
            let r = p.wait().await.map_err(|source| self.publish_err(source))?;
            self.confirmed_seq = self.confirmed_seq.max(r.seq);
        }
        Ok(())
    }

    /// `base/endpoint?query`, plus the delta filter.
    fn url(&self, endpoint: &str, query: &str) -> String {
        let filter = if self.filter.is_empty() {
            String::new()
        } else {
            format!("&filter={}", percent_encode(&self.filter))
        };
        format!(
            "{}/{endpoint}?{query}{filter}",
            self.spec.base_url.trim_end_matches('/'),
        )
    }

    fn page_req(&self, endpoint: &str, query: &str, key: String, et: EntityType) -> PageReq {
        PageReq {
            url: self.url(endpoint, query),
            key,
            entity_type: et,
            role: PageRole::Data,
            page_index: 0,
            offset: None,
            count: 0,
            next_prefix: None,
            member_read: false,
        }
    }

    fn parse(&self, f: &Fetched, req: &PageReq) -> Result<ListPage, Failure> {
        let parsed = match &self.spec.rest {
            None if req.member_read => scim::parse_resource(&f.body, req.entity_type, &req.key),
            None => scim::parse_list(&f.body, req.entity_type, &req.key),
            Some(shape) => rest::parse_fetched(f, &req.url, shape, &req.key),
        };
        let parsed = match parsed {
            Ok(mut page) if !self.spec.keep.is_empty() => {
                let records = match &self.spec.rest {
                    None if req.member_read => "",
                    None => "/Resources",
                    Some(shape) => shape.items_pointer.as_str(),
                };
                crate::attributes::attach(&f.body, records, &mut page.items, &self.spec.keep);
                Ok(page)
            }
            other => other,
        };
        parsed.map_err(|e| Failure {
            class: ErrorClass::Parse,
            http_status: f.status,
            retry_after: None,
            message: e.to_string(),
        })
    }

    /// One page with retries. Publishes `PageFailed` for every failed attempt and
    /// `PageFetched` plus its records on success. Rate-limit headers on a
    /// success (`X-RateLimit-Remaining: 0` and its reset) pause the next
    /// request, at most for the retry budget.
    ///
    /// A REST page whose records were all observed already in this run (an API
    /// that answers past its end with an earlier page) sets [`Run::repeated`]:
    /// its `PageFetched` says `last_page`, with the data role (a repeated probe
    /// is no sign of more records), and its records are not observed again.
    async fn fetch_page(&mut self, mut req: PageReq) -> Result<Result<ListPage, Stop>, SyncError> {
        let began = Instant::now();
        let mut attempt: u32 = 0;
        let mut refreshed = false;
        loop {
            attempt += 1;
            if let Err(stop) = self.next_attempt().await {
                return Ok(Err(stop));
            }
            // The answer shows the target as it was at or after this time.
            let asked_at_us = crate::event::now_us();
            let outcome = tokio::select! {
                r = self.ctx.http.get(&req.url) => r,
                _ = self.ctx.cancel.cancelled() => continue,
            };
            let parsed = outcome.and_then(|f| self.parse(&f, &req).map(|p| (f, p)));
            let failure = match parsed {
                Ok((fetched, mut page)) => {
                    for item in &mut page.items {
                        if let Item::Observed(r) = item {
                            r.read_at_us = asked_at_us;
                        }
                    }
                    self.repeated = self.spec.rest.is_some() && self.nothing_new(&page);
                    if self.repeated {
                        req.role = PageRole::Data;
                    }
                    if let Some(wait) = ratelimit::wait_hint(&fetched.headers, chrono::Utc::now()) {
                        let wait = wait.min(self.spec.retry.budget);
                        self.server_pause(Instant::now() + wait);
                    }
                    self.publish_page(&req, &fetched, &page, attempt).await?;
                    return Ok(Ok(page));
                }
                Err(f) => f,
            };
            // An OAuth2 token may have expired: fetch a new one once, right away.
            if failure.class == ErrorClass::Auth && self.ctx.http.can_refresh() && !refreshed {
                refreshed = true;
                self.ctx.http.invalidate_token().await;
                self.page_failed(&req, &failure, true, attempt).await?;
                continue;
            }
            let decision = retry::decide(
                &self.spec.retry,
                attempt,
                began.elapsed(),
                &failure,
                &mut self.jitter,
            );
            let will_retry = matches!(decision, Decision::Retry(_));
            self.page_failed(&req, &failure, will_retry, attempt)
                .await?;
            match decision {
                Decision::Retry(wait) => {
                    if let Some(hint) = failure.retry_after {
                        // The server's pause holds for every request of this source.
                        self.server_pause(Instant::now() + hint);
                    }
                    self.pause(wait).await;
                }
                Decision::GiveUp => {
                    self.report.pages_failed += 1;
                    return Ok(Err(Stop::Abort(
                        failure.class,
                        format!(
                            "{}: {} after {attempt} attempt(s)",
                            req.key, failure.message
                        ),
                    )));
                }
            }
        }
    }

    /// The start of every request attempt of every connector: the rate
    /// limit's turn, or the run's end when govledger shuts down.
    async fn next_attempt(&mut self) -> Result<(), Stop> {
        let shut_down = || Stop::Abort(ErrorClass::Other, "govledger shut down mid-run".into());
        if self.ctx.cancel.is_cancelled() {
            return Err(shut_down());
        }
        tokio::select! {
            _ = self.limiter.acquire() => Ok(()),
            _ = self.ctx.cancel.cancelled() => Err(shut_down()),
        }
    }

    /// The retry engine's wait before the next attempt (cut short by shutdown).
    async fn pause(&self, wait: std::time::Duration) {
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = self.ctx.cancel.cancelled() => {}
        }
    }

    /// No request to this source before `until`, in this run or the next.
    fn server_pause(&mut self, until: Instant) {
        self.limiter.pause_until(until);
        self.ctx.http.hold_until(until);
    }

    /// True when `page` has records and every one was observed already in
    /// this run (rejected items aside).
    fn nothing_new(&self, page: &ListPage) -> bool {
        let mut observed = page.items.iter().filter_map(|i| match i {
            Item::Observed(r) => Some(r),
            Item::Rejected(_) => None,
        });
        let mut any = false;
        let all_seen = observed.all(|r| {
            any = true;
            self.seen.contains(&(r.entity_type, r.external_id.clone()))
        });
        any && all_seen
    }

    #[allow(clippy::too_many_arguments)]
    async fn page_failed(
        &mut self,
        req: &PageReq,
        f: &Failure,
        will_retry: bool,
        attempt: u32,
    ) -> Result<(), SyncError> {
        tracing::debug!(source = %self.spec.source_id, page = %req.key, class = ?f.class, will_retry, attempt, "page failed");
        self.emit(
            attempt,
            Body::PageFailed(PageFailed {
                page_key: req.key.clone(),
                page_index: req.page_index,
                error_class: f.class as i32,
                http_status: u32::from(f.http_status),
                retry_after_ms: f
                    .retry_after
                    .map(|d| d.as_millis().min(u128::from(u32::MAX)) as u32),
                will_retry,
                message: f.message.clone(),
                latency_ms: 0,
                entity_type: req.entity_type as i32,
                role: req.role as i32,
            }),
        )
        .await
    }

    #[allow(clippy::too_many_arguments)]
    async fn publish_page(
        &mut self,
        req: &PageReq,
        fetched: &Fetched,
        page: &ListPage,
        attempt: u32,
    ) -> Result<(), SyncError> {
        let next_page_key = match (&req.next_prefix, &page.next_cursor) {
            (Some(prefix), Some(c)) => format!("{prefix}{}", shown_link(c)),
            _ => String::new(),
        };
        if req.member_read {
            return self.publish_member_read(req, fetched, page, attempt).await;
        }
        let role = req.role;
        let data = role != PageRole::CountProbe;
        self.emit(
            attempt,
            Body::PageFetched(PageFetched {
                page_key: req.key.clone(),
                page_index: req.page_index,
                http_status: u32::from(fetched.status),
                item_count: page.items.len() as u32,
                declared_total: page.total_results,
                latency_ms: fetched.latency_ms,
                next_page_key,
                last_page: self.repeated,
                entity_type: req.entity_type as i32,
                requested_count: if data { req.count } else { 0 },
                offset: req.offset,
                role: role as i32,
                ..Default::default()
            }),
        )
        .await?;
        if data {
            self.report.pages_ok += 1;
        }
        let items: &[Item] = if self.repeated { &[] } else { &page.items };
        for (i, item) in items.iter().enumerate() {
            match item {
                Item::Observed(r) => {
                    let left_out = page.members_left_out.binary_search(&(i as u32)).is_ok();
                    self.observe_listed(r.clone(), !left_out).await?;
                }
                Item::Rejected(r) => {
                    self.report.rejected += 1;
                    self.emit(1, Body::RecordRejected(r.clone())).await?;
                }
            }
        }
        let mut p = self.ctx.progress.borrow().clone();
        if data {
            p.pages += 1;
        }
        p.records = self.report.unique;
        self.ctx.progress.send_replace(p);
        Ok(())
    }

    /// Publishes one observed record: counted (unique or duplicate) and emitted.
    async fn observe(&mut self, r: RecordObserved) -> Result<(), SyncError> {
        self.report.observed += 1;
        if self.seen.insert((r.entity_type, r.external_id.clone())) {
            self.report.unique += 1;
        } else {
            self.report.duplicates += 1;
        }
        self.emit(1, Body::RecordObserved(r)).await
    }

    /// A record from a list page (`members_shown`: not a group listed
    /// without `members`): a group goes through the member-list detector
    /// while one is active (it may be held back), others are published at
    /// once.
    async fn observe_listed(
        &mut self,
        r: RecordObserved,
        members_shown: bool,
    ) -> Result<(), SyncError> {
        let now = match self.members.as_mut() {
            Some(cap) if r.entity_type == EntityType::Group as i32 => cap.offer(r, members_shown),
            _ => vec![r],
        };
        for r in now {
            self.observe(r).await?;
        }
        Ok(())
    }
}
