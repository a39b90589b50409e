//! What a sync reads: the [`SyncSpec`] of a source (its connector, paging
//! and limits), how pages are addressed ([`Paging`]), and the names and
//! entity types a run's start event records.

use govledger_proto::v1::{EntityThreshold, EntityType};

use crate::{rest::RestShape, retry::RetryPolicy};

/// How pages are addressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Paging {
    /// SCIM `startIndex`/`count` (RFC 7644 §3.4.2.4).
    Index,
    /// SCIM cursors (RFC 9865): `cursor`/`nextCursor`.
    Cursor,
    /// REST page numbers (`page`/`per_page`), from `page_start` (0 or 1).
    PageNumber,
    /// REST pages chained by RFC 8288 `Link: <...>; rel="next"` headers, or
    /// by a next URL in the body (`next_pointer`).
    Link,
    /// REST offsets (`offset`/`limit`), advanced by the records received.
    Offset,
    /// REST cursors found in the body by JSON pointer (`cursor_pointer`) and
    /// sent back as a query parameter (`cursor_param`).
    BodyCursor,
}

impl Paging {
    pub fn name(self) -> &'static str {
        match self {
            Paging::Index => "scim-index",
            Paging::Cursor => "scim-cursor",
            Paging::PageNumber => "page-number",
            Paging::Link => "link-header",
            Paging::Offset => "offset",
            Paging::BodyCursor => "body-cursor",
        }
    }
}

/// One collection to read: the SCIM endpoint (`Users`, `Groups`) and what it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resource {
    pub endpoint: String,
    pub entity_type: EntityType,
}

/// What to sync and the limits to do it within.
#[derive(Debug, Clone)]
pub struct SyncSpec {
    pub source_id: String,
    /// SCIM base URL, e.g. `https://idp.example/scim/v2` (no trailing slash needed).
    pub base_url: String,
    pub resources: Vec<Resource>,
    pub paging: Paging,
    pub page_size: u32,
    pub retry: RetryPolicy,
    /// Requests per second (0 = unlimited) and burst.
    pub rate_per_s: f64,
    pub burst: u32,
    pub deletion_threshold_pct: u32,
    pub deletion_threshold_abs: u64,
    /// Per entity type overrides of the two above (types not listed use them).
    pub deletion_thresholds: Vec<EntityThreshold>,
    /// A generic REST source instead of SCIM `resources`.
    pub rest: Option<RestShape>,
    /// SCIM: the server's cap on listed `members`, if known (groups listed
    /// with this many are read individually); `None` = detect it.
    pub member_list_cap: Option<u32>,
    /// SCIM: groups read individually for their members per run at most
    /// (LDAP: ranged member reads per run at most).
    pub member_fetch_max: u32,
    /// A directory (LDAP / Active Directory) instead of SCIM `resources`.
    pub ldap: Option<std::sync::Arc<crate::ldap::LdapSpec>>,
    /// An HR file drop folder instead of SCIM `resources`.
    pub file: Option<std::sync::Arc<crate::hrfile::FileSpec>>,
    /// Attributes kept on every record (SCIM / REST): (ledger name, a
    /// top-level name or JSON pointer into the record).
    pub keep: Vec<(String, String)>,
}

impl SyncSpec {
    /// True for a SCIM source (no REST shape, directory or file folder).
    pub fn is_scim(&self) -> bool {
        self.rest.is_none() && self.ldap.is_none() && self.file.is_none()
    }
}

/// How a run of `spec` addresses its pages, as its start event says.
pub fn paging_name(spec: &SyncSpec) -> &'static str {
    if spec.ldap.is_some() {
        "ldap-paged-results"
    } else if spec.file.is_some() {
        "file"
    } else {
        spec.paging.name()
    }
}

/// The entity types a run of `spec` sets out to read.
pub(super) fn entity_types(spec: &SyncSpec) -> Vec<i32> {
    if let Some(l) = &spec.ldap {
        let mut t = Vec::new();
        if l.users.is_some() {
            t.push(EntityType::User as i32);
        }
        if l.groups.is_some() {
            t.push(EntityType::Group as i32);
        }
        return t;
    }
    if spec.file.is_some() {
        return vec![EntityType::User as i32];
    }
    match &spec.rest {
        Some(shape) => vec![shape.entity_type as i32],
        None => spec
            .resources
            .iter()
            .map(|r| r.entity_type as i32)
            .collect(),
    }
}
