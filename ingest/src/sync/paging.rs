//! Walking a resource's pages: by `startIndex` (SCIM), or along a chain where
//! each page names the next (SCIM cursors, REST `Link` headers or next links
//! in the body, REST cursors in the body); with the count probes and the
//! probe past the last page; and the SCIM page size negotiated from
//! `/ServiceProviderConfig`. REST page numbers and offsets: `rest_paging`.

use std::collections::HashSet;

use govledger_proto::v1::{EntityType, ErrorClass, PageFetched, PageRole, event::Body};

use super::{PAGES_MAX, PageReq, Paging, Resource, Run, Stop, SyncError};

/// Pages in a row that bring no record while naming a next page: more, and a
/// REST chain stops (it does not advance; a cursor that changes forever
/// would otherwise run to [`PAGES_MAX`]).
pub(super) const EMPTY_PAGES_IN_A_ROW_MAX: u32 = 3;
use crate::{http::percent_encode, rest::RestShape, scim};

/// A chain of pages where each page names the next one.
#[derive(Clone, Copy)]
enum Chain<'a> {
    /// SCIM cursor paging: `cursor=<token>&count=<n>` on the resource endpoint.
    Cursor { name: &'a str, et: EntityType },
    /// REST `Link: <url>; rel="next"` paging (or the next URL in the body),
    /// starting at the first page's URL.
    Link { shape: &'a RestShape },
    /// REST cursors in the body (`cursor_pointer`), sent back as
    /// `cursor_param`; the first page without one.
    RestCursor { shape: &'a RestShape },
}

impl Chain<'_> {
    /// The endpoint, as page keys name it.
    fn name(&self) -> &str {
        match self {
            Self::Cursor { name, .. } => name,
            Self::Link { shape } | Self::RestCursor { shape } => shape.path.as_str(),
        }
    }

    /// How a page names the next, as page keys and messages say it.
    fn kind(&self) -> &'static str {
        match self {
            Self::Cursor { .. } | Self::RestCursor { .. } => "cursor",
            Self::Link { .. } => "link",
        }
    }

    fn entity_type(&self) -> EntityType {
        match self {
            Self::Cursor { et, .. } => *et,
            Self::Link { shape } | Self::RestCursor { shape } => shape.entity_type,
        }
    }

    /// A REST chain: it may declare its total on any page, and a page that
    /// brings no new records ends it.
    fn is_rest(&self) -> bool {
        !matches!(self, Self::Cursor { .. })
    }

    /// Why the run stops when the page at `key` names `next`, already read.
    fn cycle_message(&self, key: &str, next: &str) -> String {
        match self {
            Self::Cursor { .. } | Self::RestCursor { .. } => {
                format!("paging cycle: {key} handed out cursor {next:?} again")
            }
            Self::Link { .. } => format!("paging cycle: {key} linked back to {next}"),
        }
    }
}

/// What paging does after a page was lost.
pub(super) enum Flow {
    Next,
    End,
    Stop(Stop),
}

/// The page size to ask for: min(configured, declared), and why the
/// configured size is kept when the server declared none (`""` otherwise).
pub(super) fn negotiated(configured: u32, declared: Result<Option<u32>, String>) -> (u32, String) {
    let configured = configured.max(1);
    match declared {
        Ok(Some(d)) => (d.min(configured), String::new()),
        Ok(None) => (
            configured,
            format!(
                "/ServiceProviderConfig declares no maximum page size: asked for the configured {configured}"
            ),
        ),
        Err(why) => (
            configured,
            format!(
                "/ServiceProviderConfig could not be read ({why}): asked for the configured {configured}"
            ),
        ),
    }
}

impl Run<'_> {
    /// Reads `/ServiceProviderConfig` once (RFC 7643 §5; RFC 9865
    /// `pagination.maxPageSize`, else `filter.maxResults`) and returns the
    /// page size to ask for. Its answer is one `PageFetched`
    /// (`service_provider_config`); a failure or an answer without a
    /// maximum keeps the configured size and is no error of the run.
    pub(super) async fn negotiate_page_size(&mut self) -> Result<u32, SyncError> {
        let url = format!(
            "{}/ServiceProviderConfig",
            self.spec.base_url.trim_end_matches('/')
        );
        tokio::select! {
            _ = self.limiter.acquire() => {}
            _ = self.ctx.cancel.cancelled() => return Ok(self.page_size),
        }
        let got = tokio::select! {
            r = self.ctx.http.get(&url) => r,
            _ = self.ctx.cancel.cancelled() => return Ok(self.page_size),
        };
        let (status, latency_ms, declared) = match got {
            Ok(f) => (
                f.status,
                f.latency_ms,
                scim::parse_service_provider_config(&f.body).map_err(|e| e.to_string()),
            ),
            Err(e) => (e.http_status, 0, Err(e.message)),
        };
        let server_max = declared.clone().ok().flatten();
        let (size, note) = negotiated(self.spec.page_size, declared);
        self.emit(
            1,
            Body::PageFetched(PageFetched {
                page_key: "ServiceProviderConfig".into(),
                http_status: u32::from(status),
                latency_ms,
                service_provider_config: true,
                server_max_page_size: server_max,
                negotiated_page_size: size,
                negotiation_note: note,
                ..Default::default()
            }),
        )
        .await?;
        Ok(size)
    }

    /// Reads one SCIM resource completely. `Ok(Err(stop))`: the run must stop.
    pub(super) async fn read_resource(
        &mut self,
        res: &Resource,
    ) -> Result<Result<(), Stop>, SyncError> {
        let count = self.page_size.max(1);
        let (name, et) = (res.endpoint.as_str(), res.entity_type);
        // Count probe before: what the source says it holds.
        let mut probe = self.page_req(name, "count=0", format!("{name}:count-before"), et);
        probe.role = PageRole::CountProbe;
        match self.fetch_page(probe).await? {
            Ok(page) => self.add_declared(page.total_results),
            Err(stop) => return Ok(Err(stop)),
        }
        self.start_member_check(et);
        let r = match self.spec.paging {
            Paging::Cursor => self.follow_chain(Chain::Cursor { name, et }, count).await?,
            _ => self.page_by_index(name, et, count).await?,
        };
        self.settle_members(name, r.is_err()).await?;
        if let Err(stop) = r {
            return Ok(Err(stop));
        }
        // Count probe after: a total that moved during the run is a signal.
        let mut probe = self.page_req(name, "count=0", format!("{name}:count-after"), et);
        probe.role = PageRole::CountProbe;
        Ok(self.fetch_page(probe).await?.map(|_| ()))
    }

    /// Reads a REST source completely: page numbers or offsets
    /// (`rest_paging`), `Link` headers or next links in the body, or cursors
    /// in the body.
    pub(super) async fn read_rest(
        &mut self,
        shape: &RestShape,
    ) -> Result<Result<(), Stop>, SyncError> {
        let count = self.spec.page_size.max(1);
        match self.spec.paging {
            Paging::Link => self.follow_chain(Chain::Link { shape }, count).await,
            Paging::BodyCursor => self.follow_chain(Chain::RestCursor { shape }, count).await,
            _ => self.page_by_position(shape, count).await,
        }
    }

    pub(super) fn add_declared(&mut self, total: Option<u64>) {
        if let Some(t) = total {
            self.declared = Some(self.declared.unwrap_or(0) + t);
            let mut p = self.ctx.progress.borrow().clone();
            p.declared = self.declared;
            self.ctx.progress.send_replace(p);
        }
    }

    /// What to do after a data page gave up: skip it when the pages after it can
    /// still be located (a declared total), or stop the run.
    pub(super) fn after_lost_page(
        stop: Stop,
        declared: Option<u64>,
        next_offset: u64,
        cancelled: bool,
    ) -> Flow {
        let Stop::Abort(class, msg) = stop;
        if class == ErrorClass::Auth || cancelled {
            return Flow::Stop(Stop::Abort(class, msg));
        }
        match declared {
            Some(d) if next_offset >= d => Flow::End,
            Some(_) => Flow::Next,
            None => Flow::Stop(Stop::Abort(
                class,
                format!("{msg}; without a declared total the pages after it cannot be located"),
            )),
        }
    }

    async fn page_by_index(
        &mut self,
        name: &str,
        et: EntityType,
        count: u32,
    ) -> Result<Result<(), Stop>, SyncError> {
        let mut start: u64 = 1;
        let mut declared: Option<u64> = None;
        // The page size the server serves: RFC 7644 lets it cap `count`, and
        // its first page shows the cap (fewer items while more are declared).
        let mut served = u64::from(count);
        for page_index in 0..PAGES_MAX {
            let mut req = self.page_req(
                name,
                &format!("startIndex={start}&count={count}"),
                format!("{name}:startIndex={start}"),
                et,
            );
            (req.page_index, req.offset, req.count) = (page_index, Some(start - 1), count);
            match self.fetch_page(req).await? {
                Ok(page) => {
                    declared = page.total_results.or(declared);
                    let n = page.items.len() as u64;
                    if n == 0 {
                        break;
                    }
                    // Without a declared total a short first page is the
                    // whole listing or the cap: the next page tells (an
                    // empty one ends the listing).
                    if start == 1 && n < served && declared.is_none_or(|d| n < d) {
                        served = n;
                    }
                    // Progress by the records received, not the count asked.
                    start += n;
                    match declared {
                        Some(d) if start > d => break,
                        None if n < served => break,
                        _ => {}
                    }
                }
                Err(stop) => {
                    start += served;
                    match Self::after_lost_page(
                        stop,
                        declared,
                        start - 1,
                        self.ctx.cancel.is_cancelled(),
                    ) {
                        Flow::Next => {}
                        Flow::End => break,
                        Flow::Stop(s) => return Ok(Err(s)),
                    }
                }
            }
        }
        // A request past the last page must come back empty.
        let mut req = self.page_req(
            name,
            &format!("startIndex={start}&count={count}"),
            format!("{name}:probe startIndex={start}"),
            et,
        );
        (req.role, req.offset, req.count) = (PageRole::ProbePastEnd, Some(start - 1), count);
        Ok(self.fetch_page(req).await?.map(|_| ()))
    }

    /// Reads a chain of pages where each page names the next (a SCIM cursor, a
    /// REST `Link` URL or a REST cursor in the body) until one names none, or
    /// (REST) until a page brings no new records ([`Self::repeat_end`]). A
    /// page that fails after its retries, a page naming one already read (a
    /// cycle), more than [`EMPTY_PAGES_IN_A_ROW_MAX`] empty pages in a row that
    /// still name a next one, or more than [`PAGES_MAX`] pages stop the run: a
    /// chain cannot skip a page.
    async fn follow_chain(
        &mut self,
        chain: Chain<'_>,
        count: u32,
    ) -> Result<Result<(), Stop>, SyncError> {
        let (name, kind) = (chain.name(), chain.kind());
        let mut at = match chain {
            Chain::Cursor { .. } | Chain::RestCursor { .. } => String::new(),
            Chain::Link { shape } => self.url(
                name,
                &shape.query_with(&format!("{}={count}", shape.size_param)),
            ),
        };
        let mut seen: HashSet<String> = HashSet::new();
        let mut declared_seen = false;
        let mut received: u64 = 0;
        let mut empty_in_a_row: u32 = 0;
        for page_index in 0..PAGES_MAX {
            // A next link may carry userinfo: the key (events, logs) never does.
            let key = format!("{name}:{kind}={}", super::shown_link(&at));
            seen.insert(at.clone());
            let url = match chain {
                Chain::Cursor { .. } => self.url(
                    name,
                    &format!("cursor={}&count={count}", percent_encode(&at)),
                ),
                Chain::Link { .. } => at.clone(),
                Chain::RestCursor { shape } => {
                    let mut q = format!("{}={count}", shape.size_param);
                    if !at.is_empty() {
                        q.push_str(&format!("&{}={}", shape.cursor_param, percent_encode(&at)));
                    }
                    self.url(name, &shape.query_with(&q))
                }
            };
            let req = PageReq {
                url,
                key: key.clone(),
                entity_type: chain.entity_type(),
                role: PageRole::Data,
                page_index,
                offset: None,
                count,
                next_prefix: Some(format!("{name}:{kind}=")),
                member_read: false,
            };
            let page = match self.fetch_page(req).await? {
                Ok(p) => p,
                Err(Stop::Abort(class, msg)) => {
                    return Ok(Err(Stop::Abort(
                        class,
                        format!("{msg}; {kind} paging cannot skip a failed page"),
                    )));
                }
            };
            // A REST source may declare its total on any page; SCIM's count
            // probes declare it for cursor paging.
            if chain.is_rest() && !declared_seen && page.total_results.is_some() {
                declared_seen = true;
                self.add_declared(page.total_results);
            }
            if chain.is_rest() && self.repeated {
                return Ok(Self::repeat_end(&key, received, self.declared));
            }
            received += page.items.len() as u64;
            empty_in_a_row = if page.items.is_empty() {
                empty_in_a_row + 1
            } else {
                0
            };
            let all_read = self.declared.is_some_and(|d| received >= d);
            if chain.is_rest() && page.next_cursor.is_some() && empty_in_a_row > 0 && all_read {
                // Every declared record is in: an empty page past them ends it.
                return Ok(Ok(()));
            }
            if chain.is_rest()
                && page.next_cursor.is_some()
                && empty_in_a_row > EMPTY_PAGES_IN_A_ROW_MAX
            {
                return Ok(Err(Stop::Abort(
                    ErrorClass::Other,
                    format!(
                        "{key}: {empty_in_a_row} pages in a row brought no records yet named \
                         a next page: the listing does not advance, so the rest cannot be \
                         read"
                    ),
                )));
            }
            match page.next_cursor {
                None => return Ok(Ok(())),
                Some(next) if seen.contains(&next) => {
                    return Ok(Err(Stop::Abort(
                        ErrorClass::Other,
                        chain.cycle_message(&key, &super::shown_link(&next)),
                    )));
                }
                Some(next) => at = next,
            }
        }
        Ok(Err(Stop::Abort(
            ErrorClass::Other,
            format!("more than {PAGES_MAX} pages"),
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_size_is_the_smaller_of_configured_and_declared() {
        assert_eq!(negotiated(100, Ok(Some(40))), (40, String::new()));
        assert_eq!(negotiated(100, Ok(Some(1000))), (100, String::new()));
        assert_eq!(
            negotiated(100, Ok(None)),
            (
                100,
                "/ServiceProviderConfig declares no maximum page size: asked for the configured 100"
                    .to_owned()
            )
        );
        assert_eq!(
            negotiated(100, Err("HTTP 404".into())),
            (
                100,
                "/ServiceProviderConfig could not be read (HTTP 404): asked for the configured 100"
                    .to_owned()
            )
        );
    }
}
