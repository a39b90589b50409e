//! `[[sources]]`: what govledger syncs, how, and the objectives it is judged by.
//!
//! Each setting with a fixed set of values is an enum, so the file cannot name
//! anything else (serde's message for an unknown value names the key; see
//! [`super::Config::from_toml`]). [`SourceConfig::resolve`] checks what depends on
//! more than one key, once, and builds the [`Source`] every role runs with;
//! errors name the key (`sources[1].base_url`).

use std::{sync::Arc, time::Duration};

use govledger_ingest::{
    actions::MemberRemoval,
    http::{Auth, HttpSource},
    rest::RestShape,
    retry::RetryPolicy,
    sync::{Paging, Resource, SyncSpec},
};
use govledger_proto::v1::EntityType;
use govledger_stream::backoff::Backoff;
use serde::Deserialize;

use super::{
    directory::{FileConfig, LdapConfig},
    error::{ConfigError, invalid},
    rest::RestConfig,
    secrets::{AuthConfig, SecretSource},
    thresholds::DeletionThresholds,
};

pub const DEFAULT_PAGE_SIZE: u32 = 100;
pub const PAGE_SIZE_MAX: u32 = 10_000;
pub const DEFAULT_TIMEOUT_MS: u64 = 30_000;
pub const DEFAULT_FRESHNESS_OBJECTIVE_MS: u64 = 24 * 60 * 60 * 1_000;

/// The connector of a source.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceKind {
    /// SCIM 2.0.
    #[default]
    Scim,
    /// A JSON API, described by `[sources.rest]`.
    Rest,
    /// An LDAP directory (OpenLDAP, Active Directory), `[sources.ldap]`.
    Ldap,
    /// An HR file drop folder (CSV, JSON Lines), `[sources.file]`.
    File,
}

/// How pages are addressed, as the file says it (which ones a kind allows is
/// checked by [`SourceConfig::resolve`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PagingSetting {
    /// SCIM `startIndex`/`count`; for REST the same as `page-number`.
    #[default]
    Index,
    /// SCIM cursors (RFC 9865); for REST a cursor in the body
    /// (`cursor_pointer`) sent back as `cursor_param`.
    Cursor,
    /// REST page numbers (from `page_start`, 0 or 1).
    PageNumber,
    /// REST pages chained by RFC 8288 `Link: <...>; rel="next"`, or by a next
    /// URL in the body (`next_pointer`).
    Link,
    /// REST offsets (`offset_param`, `size_param`).
    Offset,
}

/// How lifecycle actions remove a group member.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MemberRemovalSetting {
    /// `members[value eq "id"]` (RFC 7644).
    #[default]
    FilterPath,
    /// `members` with a value list (some servers require it).
    ValueList,
}

impl From<MemberRemovalSetting> for MemberRemoval {
    fn from(m: MemberRemovalSetting) -> Self {
        match m {
            MemberRemovalSetting::FilterPath => MemberRemoval::FilterPath,
            MemberRemovalSetting::ValueList => MemberRemoval::ValueList,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    /// Source id: ASCII letters, digits, '-', '_' (one NATS subject token).
    pub id: String,
    /// Connector kind: `scim` (SCIM 2.0) or `rest` (a JSON API, see `[sources.rest]`).
    #[serde(default)]
    pub kind: SourceKind,
    /// SCIM base URL, e.g. `https://idp.example/scim/v2`; for `kind =
    /// "ldap"` the directory's `ldap://` or `ldaps://` URL; none for `file`.
    #[serde(default)]
    pub base_url: String,
    /// SCIM endpoints to read: `Users`, `Groups`.
    #[serde(default = "default_resources")]
    pub resources: Vec<String>,
    /// SCIM: `index` (startIndex/count) or `cursor` (RFC 9865).
    /// REST: `page-number`, `offset`, `link` (RFC 8288 `Link: <...>;
    /// rel="next"`, or a next URL in the body) or `cursor` (in the body).
    #[serde(default)]
    pub paging: PagingSetting,
    #[serde(default = "default_page_size")]
    pub page_size: u32,
    /// Per-request timeout, in milliseconds.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Run a full sync this often (0 = only on demand: TriggerSync / `govledger sync`).
    #[serde(default)]
    pub schedule_interval_ms: u64,
    /// A source is FRESH while its last COMPLETE run is younger than this.
    #[serde(default = "default_freshness_ms")]
    pub freshness_objective_ms: u64,
    /// A full run whose count dropped by more than this percentage (0 = off)
    /// against the last COMPLETE run is SUSPECT.
    #[serde(default)]
    pub deletion_threshold_pct: u32,
    /// ... or by more than this many records (0 = off).
    #[serde(default)]
    pub deletion_threshold_abs: u64,
    /// Per entity type overrides of the two above (the guard is judged per type).
    #[serde(default)]
    pub deletion_thresholds: DeletionThresholds,
    #[serde(default)]
    pub retry: RetryConfig,
    #[serde(default)]
    pub rate_limit: RateLimitConfig,
    #[serde(default)]
    pub auth: AuthConfig,
    /// For `kind = "rest"`: where the data is in the answers.
    pub rest: Option<RestConfig>,
    /// For `kind = "ldap"`: where users and groups are, ids, disabling.
    pub ldap: Option<LdapConfig>,
    /// For `kind = "file"`: the folder, the file pattern, columns, the row count.
    pub file: Option<FileConfig>,
    /// Attributes kept on every record, for correlation across sources and
    /// as evidence: ledger name = where it is (SCIM / REST: a name or JSON
    /// pointer; LDAP: an attribute; file: a column).
    #[serde(default)]
    pub attributes: std::collections::BTreeMap<String, String>,
    /// How lifecycle actions remove a group member: `filter-path`
    /// (`members[value eq "id"]`, RFC 7644) or `value-list` (some servers require it).
    #[serde(default)]
    pub member_removal: MemberRemovalSetting,
    /// How long an action's read-backs may wait for a write to show before
    /// the step is UNCONFIRMED (or UNVERIFIED when the target never
    /// answered), in milliseconds (backoff between them).
    #[serde(default = "default_verify_window_ms")]
    pub verify_window_ms: u64,
    /// SCIM: the server's cap on `members` in group lists, if known; groups
    /// listed with this many members are read individually. Absent: detected
    /// (the largest member count shared by several groups).
    pub member_list_cap: Option<u32>,
    /// SCIM: groups read individually for their members per run at most
    /// (0 = none: a capped group is then INCOMPLETE at once).
    #[serde(default = "default_member_fetch_max")]
    pub member_fetch_max: u32,
}

/// The most groups a run may read individually for their members.
pub const MEMBER_FETCH_MAX_MAX: u32 = 1_000_000;

fn default_member_fetch_max() -> u32 {
    govledger_ingest::sync::DEFAULT_MEMBER_FETCH_MAX
}

/// The longest verification window: an action's worker is busy meanwhile.
pub const VERIFY_WINDOW_MAX_MS: u64 = 300_000;

fn default_verify_window_ms() -> u64 {
    govledger_ingest::actions::DEFAULT_VERIFY_WINDOW_MS
}

fn default_resources() -> Vec<String> {
    vec!["Users".into()]
}
fn default_page_size() -> u32 {
    DEFAULT_PAGE_SIZE
}
fn default_timeout_ms() -> u64 {
    DEFAULT_TIMEOUT_MS
}
fn default_freshness_ms() -> u64 {
    DEFAULT_FRESHNESS_OBJECTIVE_MS
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryConfig {
    /// Attempts per request, the first included.
    pub attempts_max: u32,
    /// Time one request may take across its attempts, in milliseconds.
    pub budget_ms: u64,
    pub backoff_min_ms: u64,
    pub backoff_max_ms: u64,
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            attempts_max: govledger_ingest::retry::DEFAULT_ATTEMPTS_MAX,
            budget_ms: govledger_ingest::retry::DEFAULT_BUDGET_MS,
            backoff_min_ms: 100,
            backoff_max_ms: 5_000,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitConfig {
    /// Requests per second to this source (0 = no limit but the server's hints).
    pub requests_per_s: f64,
    pub burst: u32,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        Self {
            requests_per_s: 0.0,
            burst: 10,
        }
    }
}

/// A source as resolved from the file, once: its sync spec, its auth with the
/// secrets read, and the settings its workers need. Every role receives this.
#[derive(Debug, Clone)]
pub struct Source {
    /// Position in the file (`sources[index]`), to name it in errors.
    pub index: usize,
    pub spec: SyncSpec,
    pub auth: Auth,
    /// Per-request timeout.
    pub timeout: Duration,
    /// Full syncs this often; `None` = only on demand.
    pub schedule_interval: Option<Duration>,
    pub freshness_objective_ms: u64,
    pub member_removal: MemberRemoval,
    pub verify_window_ms: u64,
    /// A REST source's write templates (`[sources.rest.actions]`), if any.
    pub rest_actions: Option<Arc<govledger_ingest::actions::RestActions>>,
}

impl Source {
    /// The connector, as the file names it.
    pub fn kind_name(&self) -> &'static str {
        if self.spec.ldap.is_some() {
            "ldap"
        } else if self.spec.file.is_some() {
            "file"
        } else if self.spec.rest.is_some() {
            "rest"
        } else {
            "scim"
        }
    }

    /// True when lifecycle actions can write to it (SCIM, LDAP, a REST
    /// source with write templates; an HR file is read only).
    pub fn writable(&self) -> bool {
        (self.spec.rest.is_none() || self.rest_actions.is_some()) && self.spec.file.is_none()
    }

    /// The action kinds it accepts: `None` = every kind (SCIM, LDAP).
    pub fn action_kinds(&self) -> Option<Vec<govledger_proto::v1::ActionKind>> {
        self.rest_actions.as_ref().map(|a| a.kinds())
    }

    /// A new HTTP client of this source, with its auth and timeout (each role
    /// has its own, so an OAuth2 token cache is never shared across roles).
    pub fn http(&self) -> Result<Arc<HttpSource>, ConfigError> {
        let headers = self.spec.rest.as_ref().map_or(&[][..], |r| &r.headers[..]);
        HttpSource::new(self.auth.clone(), self.timeout)
            .and_then(|h| h.with_headers(headers))
            .map(Arc::new)
            .map_err(|e| invalid(format!("sources[{}]", self.index), e.to_string()))
    }
}
impl SourceConfig {
    /// Validates this source (index `i` in the file), reads its secrets and
    /// builds what its workers run with. Called once per source, by
    /// [`super::Config::resolve`].
    pub fn resolve(&self, i: usize, env: &dyn SecretSource) -> Result<Source, ConfigError> {
        let k = |name: &str| format!("sources[{i}].{name}");
        govledger_stream::subject::validate_source_id(&self.id)
            .map_err(|e| invalid(k("id"), e.to_string()))?;
        self.kind_tables(&k)?;
        let rest = self.rest_shape(&k)?;
        let base_url = match self.kind {
            SourceKind::Scim | SourceKind::Rest => self.base_url(&k)?,
            SourceKind::Ldap => self.base_url.trim().to_owned(),
            SourceKind::File => String::new(),
        };
        let resources = self.resources(&k)?;
        let paging = self.paging(rest.is_some(), &k)?;
        self.check_limits(&k)?;
        let attributes = self.kept_attributes(&k)?;
        let retry = self.retry_policy(&k)?;
        let rl = &self.rate_limit;
        if !(rl.requests_per_s >= 0.0 && rl.requests_per_s.is_finite()) {
            return Err(invalid(k("rate_limit.requests_per_s"), "must be >= 0"));
        }
        let auth = self.auth.resolve(&k("auth"), env)?;
        let ldap = match &self.ldap {
            Some(l) => Some(l.spec(
                &k,
                &base_url,
                &auth,
                attributes.clone(),
                self.page_size,
                Duration::from_millis(self.timeout_ms),
            )?),
            None => None,
        };
        let file = match &self.file {
            Some(f) => Some(f.spec(&k, attributes.clone())?),
            None => None,
        };
        let keep = if ldap.is_some() || file.is_some() {
            Vec::new()
        } else {
            attributes
        };
        let deletion_thresholds = self.deletion_thresholds.resolve(
            self.deletion_threshold_pct,
            self.deletion_threshold_abs,
            &k,
        )?;
        Ok(Source {
            index: i,
            spec: SyncSpec {
                source_id: self.id.clone(),
                base_url,
                resources,
                paging,
                page_size: self.page_size,
                retry,
                rate_per_s: rl.requests_per_s,
                burst: rl.burst.max(1),
                deletion_threshold_pct: self.deletion_threshold_pct,
                deletion_threshold_abs: self.deletion_threshold_abs,
                deletion_thresholds,
                rest,
                member_list_cap: self.member_list_cap,
                member_fetch_max: self.member_fetch_max,
                ldap,
                file,
                keep,
            },
            auth,
            timeout: Duration::from_millis(self.timeout_ms),
            schedule_interval: (self.schedule_interval_ms > 0)
                .then(|| Duration::from_millis(self.schedule_interval_ms)),
            freshness_objective_ms: self.freshness_objective_ms,
            member_removal: self.member_removal.into(),
            verify_window_ms: self.verify_window_ms,
            rest_actions: match &self.rest {
                Some(r) => super::rest_actions::resolve(&k("rest"), &r.actions)?,
                None => None,
            },
        })
    }

    /// `[sources.ldap]` / `[sources.file]` are there exactly for their kind.
    fn kind_tables(&self, k: &dyn Fn(&str) -> String) -> Result<(), ConfigError> {
        let own = |table: &str, is_kind: bool, present: bool| match (is_kind, present) {
            (true, false) => Err(invalid(
                k(table),
                format!("required for kind = \"{table}\""),
            )),
            (false, true) => Err(invalid(k(table), format!("only for kind = \"{table}\""))),
            _ => Ok(()),
        };
        own("ldap", self.kind == SourceKind::Ldap, self.ldap.is_some())?;
        own("file", self.kind == SourceKind::File, self.file.is_some())?;
        if matches!(self.kind, SourceKind::Ldap | SourceKind::File)
            && self.paging != PagingSetting::Index
        {
            return Err(invalid(
                k("paging"),
                "not for a directory or a file (a directory pages with RFC 2696 paged results, page_size entries a page)",
            ));
        }
        if self.kind == SourceKind::File && !self.base_url.trim().is_empty() {
            return Err(invalid(
                k("base_url"),
                "not for kind = \"file\": say the folder as file.dir",
            ));
        }
        Ok(())
    }

    /// `[sources.attributes]`: names the ledger keeps, each where it is.
    fn kept_attributes(
        &self,
        k: &dyn Fn(&str) -> String,
    ) -> Result<Vec<(String, String)>, ConfigError> {
        const RESERVED: [&str; 4] = ["status", "email", "manager", "end_date"];
        let mut out = Vec::new();
        for (name, at) in &self.attributes {
            let key = k(&format!("attributes.{name}"));
            if name.is_empty()
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            {
                return Err(invalid(key, "a name of letters, digits, '_' or '-'"));
            }
            if at.trim().is_empty() {
                return Err(invalid(key, "say where the value is"));
            }
            if self.kind == SourceKind::File && RESERVED.contains(&name.as_str()) {
                return Err(invalid(
                    key,
                    format!("{name:?} comes from [sources.file.columns]; choose another name"),
                ));
            }
            out.push((name.clone(), at.trim().to_owned()));
        }
        Ok(out)
    }

    /// `[sources.rest]` is there exactly when `kind = "rest"`.
    fn rest_shape(&self, k: &dyn Fn(&str) -> String) -> Result<Option<RestShape>, ConfigError> {
        match (self.kind, &self.rest) {
            (SourceKind::Scim | SourceKind::Ldap | SourceKind::File, None) => Ok(None),
            (SourceKind::Scim | SourceKind::Ldap | SourceKind::File, Some(_)) => {
                Err(invalid(k("rest"), "only for kind = \"rest\""))
            }
            (SourceKind::Rest, None) => Err(invalid(
                k("rest"),
                "required for kind = \"rest\": say at least `path`",
            )),
            (SourceKind::Rest, Some(r)) => r.shape(&k("rest"), self.paging).map(Some),
        }
    }

    /// An http(s) URL without credentials, without its trailing '/'.
    fn base_url(&self, k: &dyn Fn(&str) -> String) -> Result<String, ConfigError> {
        let url = self.base_url.trim();
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(invalid(
                k("base_url"),
                format!(
                    "{:?} is not an http(s) URL",
                    govledger_stream::redact_url(url)
                ),
            ));
        }
        if govledger_stream::redact::has_userinfo(url) {
            return Err(invalid(
                k("base_url"),
                "must not contain credentials; use [sources.auth]",
            ));
        }
        Ok(url.trim_end_matches('/').to_owned())
    }

    fn resources(&self, k: &dyn Fn(&str) -> String) -> Result<Vec<Resource>, ConfigError> {
        if self.resources.is_empty() {
            return Err(invalid(
                k("resources"),
                "list at least one of \"Users\", \"Groups\"",
            ));
        }
        let mut resources = Vec::new();
        for r in &self.resources {
            let entity_type = match r.as_str() {
                "Users" => EntityType::User,
                "Groups" => EntityType::Group,
                other => {
                    return Err(invalid(
                        k("resources"),
                        format!("{other:?} is not \"Users\" or \"Groups\""),
                    ));
                }
            };
            resources.push(Resource {
                endpoint: r.clone(),
                entity_type,
            });
        }
        Ok(resources)
    }

    /// The paging the connector supports: SCIM `index`/`cursor`, REST
    /// `page-number` (or `index`, the same)/`offset`/`link`/`cursor`.
    fn paging(&self, rest: bool, k: &dyn Fn(&str) -> String) -> Result<Paging, ConfigError> {
        match (rest, self.paging) {
            (false, PagingSetting::Index) => Ok(Paging::Index),
            (false, PagingSetting::Cursor) => Ok(Paging::Cursor),
            (true, PagingSetting::PageNumber | PagingSetting::Index) => Ok(Paging::PageNumber),
            (true, PagingSetting::Link) => Ok(Paging::Link),
            (true, PagingSetting::Offset) => Ok(Paging::Offset),
            (true, PagingSetting::Cursor) => Ok(Paging::BodyCursor),
            (false, other) => Err(invalid(
                k("paging"),
                format!("{:?}: use \"index\" or \"cursor\" for SCIM", other.name()),
            )),
        }
    }

    fn check_limits(&self, k: &dyn Fn(&str) -> String) -> Result<(), ConfigError> {
        if !(1..=PAGE_SIZE_MAX).contains(&self.page_size) {
            return Err(invalid(
                k("page_size"),
                format!("must be within 1..={PAGE_SIZE_MAX}"),
            ));
        }
        if self.timeout_ms < 10 {
            return Err(invalid(k("timeout_ms"), "must be at least 10"));
        }
        if self.schedule_interval_ms != 0 && self.schedule_interval_ms < 1_000 {
            return Err(invalid(
                k("schedule_interval_ms"),
                "must be 0 (on demand) or at least 1000",
            ));
        }
        if self.freshness_objective_ms == 0 {
            return Err(invalid(k("freshness_objective_ms"), "must be > 0"));
        }
        if self.deletion_threshold_pct > 100 {
            return Err(invalid(
                k("deletion_threshold_pct"),
                "must be within 0..=100",
            ));
        }
        if self.member_list_cap == Some(0) {
            return Err(invalid(
                k("member_list_cap"),
                "must be at least 1 (leave it out to detect the cap)",
            ));
        }
        if self.member_fetch_max > MEMBER_FETCH_MAX_MAX {
            return Err(invalid(
                k("member_fetch_max"),
                format!("must be within 0..={MEMBER_FETCH_MAX_MAX}"),
            ));
        }
        if self.verify_window_ms > VERIFY_WINDOW_MAX_MS {
            return Err(invalid(
                k("verify_window_ms"),
                format!("must be within 0..={VERIFY_WINDOW_MAX_MS} (0 = one read-back)"),
            ));
        }
        Ok(())
    }

    fn retry_policy(&self, k: &dyn Fn(&str) -> String) -> Result<RetryPolicy, ConfigError> {
        let r = &self.retry;
        if !(1..=100).contains(&r.attempts_max) {
            return Err(invalid(k("retry.attempts_max"), "must be within 1..=100"));
        }
        if r.budget_ms == 0 {
            return Err(invalid(k("retry.budget_ms"), "must be > 0"));
        }
        let backoff = Backoff::new(
            Duration::from_millis(r.backoff_min_ms),
            Duration::from_millis(r.backoff_max_ms),
            0.5,
        )
        .map_err(|e| invalid(k("retry.backoff_min_ms"), e.to_string()))?;
        Ok(RetryPolicy {
            attempts_max: r.attempts_max,
            budget: Duration::from_millis(r.budget_ms),
            backoff,
        })
    }
}

impl PagingSetting {
    /// The value as the file spells it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Index => "index",
            Self::Cursor => "cursor",
            Self::PageNumber => "page-number",
            Self::Link => "link",
            Self::Offset => "offset",
        }
    }
}

#[cfg(test)]
mod tests {
    use govledger_ingest::http::Secret;

    use super::*;
    use crate::config::Config;

    use crate::config::secrets::TestEnv as Env;

    /// One `[[sources]]` entry with `lines` (its sub-tables as `[auth]`, `[retry]`,
    /// `[rest]`), parsed and resolved as the whole file would be.
    fn resolve(base_url: &str, lines: &str, env: &Env) -> Result<Source, ConfigError> {
        let lines = lines
            .replace("[auth]", "[sources.auth]")
            .replace("[retry]", "[sources.retry]")
            .replace("[rest]", "[sources.rest]");
        let text = format!("[[sources]]\nid = \"hr\"\nbase_url = \"{base_url}\"\n{lines}");
        let mut r = Config::from_toml(&text, "t.toml")?.resolve(env)?;
        Ok(r.sources.remove(0))
    }

    fn source(lines: &str, env: &Env) -> Result<Source, ConfigError> {
        resolve("http://127.0.0.1:1/v2", lines, env)
    }

    fn err(lines: &str) -> String {
        match source(lines, &Env(vec![])) {
            Ok(_) => panic!("accepted {lines}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn defaults_build() {
        let s = source("", &Env(vec![])).unwrap();
        assert_eq!(s.spec.page_size, DEFAULT_PAGE_SIZE);
        assert_eq!(s.spec.paging, Paging::Index);
        assert_eq!(s.auth, Auth::None);
        assert_eq!(s.member_removal, MemberRemoval::FilterPath);
        assert_eq!(
            s.verify_window_ms,
            govledger_ingest::actions::DEFAULT_VERIFY_WINDOW_MS
        );
        assert!(s.writable());
        assert!(s.schedule_interval.is_none());
        assert_eq!(s.spec.member_list_cap, None);
        assert_eq!(
            s.spec.member_fetch_max,
            govledger_ingest::sync::DEFAULT_MEMBER_FETCH_MAX
        );
        let s = source(
            "member_list_cap = 1500
member_fetch_max = 0",
            &Env(vec![]),
        )
        .unwrap();
        assert_eq!(
            (s.spec.member_list_cap, s.spec.member_fetch_max),
            (Some(1500), 0)
        );
    }

    #[test]
    fn errors_name_the_key() {
        for (lines, key) in [
            ("paging = \"offset\"", "sources[0].paging"),
            ("page_size = 0", "sources[0].page_size"),
            ("resources = [\"Roles\"]", "sources[0].resources"),
            ("kind = \"ftp\"", "sources[0].kind"),
            ("kind = \"ldap\"", "sources[0].ldap"),
            ("kind = \"file\"", "sources[0].file"),
            (
                "deletion_threshold_pct = 101",
                "sources[0].deletion_threshold_pct",
            ),
            ("[auth]\nkind = \"bearer\"", "sources[0].auth.token_env"),
            (
                "[auth]\nkind = \"bearer\"\ntoken_env = \"NOPE\"",
                "sources[0].auth.token_env",
            ),
            (
                "[auth]\nkind = \"basic\"\npassword_env = \"X\"",
                "sources[0].auth.username",
            ),
            ("[retry]\nattempts_max = 0", "sources[0].retry.attempts_max"),
            ("member_list_cap = 0", "sources[0].member_list_cap"),
            ("member_fetch_max = 1000001", "sources[0].member_fetch_max"),
        ] {
            let e = err(lines);
            assert!(e.contains(&format!("`{key}`")), "{lines}: {e}");
        }
        let e = resolve("http://user:pw@idp/v2", "", &Env(vec![]))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("sources[0].base_url") && !e.contains("pw@"),
            "{e}"
        );
    }

    #[test]
    fn verify_window_is_bounded() {
        let s = source("verify_window_ms = 0", &Env(vec![])).unwrap();
        assert_eq!(s.verify_window_ms, 0);
        let e = err("verify_window_ms = 300001");
        assert!(
            e.contains("sources[0].verify_window_ms") && e.contains("0..=300000"),
            "{e}"
        );
    }

    #[test]
    fn unknown_values_name_the_key_and_the_allowed_ones() {
        for (lines, key, allowed) in [
            (
                "kind = \"ftp\"",
                "sources[0].kind",
                ["scim", "rest", "ldap", "file"].as_slice(),
            ),
            (
                "paging = \"token\"",
                "sources[0].paging",
                &["index", "cursor", "page-number", "link", "offset"],
            ),
            (
                "member_removal = \"patch\"",
                "sources[0].member_removal",
                &["filter-path", "value-list"],
            ),
            (
                "[auth]\nkind = \"kerberos\"",
                "sources[0].auth.kind",
                &["none", "bearer", "basic", "oauth2"],
            ),
            (
                "kind = \"rest\"\n[rest]\npath = \"users\"\nentity = \"role\"",
                "sources[0].rest.entity",
                &["user", "group"],
            ),
        ] {
            let e = err(lines);
            assert!(e.contains(&format!("`{key}`")), "{lines}: {e}");
            for a in allowed {
                assert!(e.contains(&format!("`{a}`")), "{lines}: {e}");
            }
        }
    }

    #[test]
    fn paging_and_rest_table_follow_the_kind() {
        let e = err("paging = \"link\"");
        assert!(
            e.contains("`sources[0].paging`") && e.contains("SCIM"),
            "{e}"
        );
        let e = err("kind = \"rest\"\npaging = \"cursor\"\n[rest]\npath = \"users\"");
        assert!(
            e.contains("`sources[0].rest.cursor_pointer`") && e.contains("required for paging"),
            "{e}"
        );
        let e = err("kind = \"rest\"");
        assert!(e.contains("`sources[0].rest`"), "{e}");
        let e = err("[rest]\npath = \"users\"");
        assert!(e.contains("`sources[0].rest`"), "{e}");
        let s = source(
            "kind = \"rest\"\nmember_removal = \"value-list\"\n[rest]\npath = \"/users/\"\nentity = \"group\"",
            &Env(vec![]),
        )
        .unwrap();
        assert_eq!(s.spec.paging, Paging::PageNumber);
        assert!(!s.writable());
        assert_eq!(s.member_removal, MemberRemoval::ValueList);
        let rest = s.spec.rest.unwrap();
        assert_eq!(
            (rest.path.as_str(), rest.entity_type),
            ("users", EntityType::Group)
        );
        let r = "kind = \"rest\"\n[rest]\npath = \"u\"\n";
        let e = err(&format!("{r}active_inverted = true"));
        assert!(e.contains("`sources[0].rest.active_field`"), "{e}");
        let e = err(&format!(
            "{r}active_field = \"s\"\nactive_words = [\"on\"]\ninactive_words = [\"ON\"]"
        ));
        assert!(e.contains("\"on\" is in active_words too"), "{e}");
    }

    #[test]
    fn rest_paging_styles_build() {
        let rest = |paging: &str, keys: &str| {
            let lines =
                format!("kind = \"rest\"\npaging = \"{paging}\"\n[rest]\npath = \"u\"\n{keys}");
            let s = source(&lines, &Env(vec![])).unwrap();
            (s.spec.paging, s.spec.rest.unwrap())
        };
        let (p, r) = rest("page-number", "page_start = 0\npage_param = \"pageNo\"");
        assert_eq!(p, Paging::PageNumber);
        assert_eq!((r.page_start, r.page_param.as_str()), (0, "pageNo"));
        assert_eq!(r.size_param, "per_page");
        let (p, r) = rest("offset", "offset_param = \"skip\"\nlimit_param = \"take\"");
        assert_eq!(p, Paging::Offset);
        assert_eq!(
            (r.offset_param.as_str(), r.size_param.as_str()),
            ("skip", "take")
        );
        let (_, r) = rest("offset", "");
        assert_eq!(
            (r.offset_param.as_str(), r.size_param.as_str()),
            ("offset", "limit")
        );
        let (p, r) = rest(
            "cursor",
            "cursor_pointer = \"/nextPageToken\"\ncursor_param = \"pageToken\"\nsize_param = \"pageSize\"",
        );
        assert_eq!(p, Paging::BodyCursor);
        assert_eq!(
            (r.cursor_pointer.as_deref(), r.cursor_param.as_str()),
            (Some("/nextPageToken"), "pageToken")
        );
        let (p, r) = rest(
            "link",
            "next_pointer = \"/@odata.nextLink\"\n[sources.rest.query]\n\"$select\" = \"id,accountEnabled\"\n\
             [sources.rest.headers]\nConsistencyLevel = \"eventual\"",
        );
        assert_eq!(p, Paging::Link);
        assert_eq!(r.next_pointer.as_deref(), Some("/@odata.nextLink"));
        assert_eq!(
            r.query,
            vec![("$select".into(), "id,accountEnabled".into())]
        );
        assert_eq!(
            r.headers,
            vec![("ConsistencyLevel".into(), "eventual".into())]
        );
    }

    #[test]
    fn rest_paging_errors_name_the_key() {
        let r = |paging: &str, keys: &str| {
            err(&format!(
                "kind = \"rest\"\npaging = \"{paging}\"\n[rest]\npath = \"u\"\n{keys}"
            ))
        };
        for (paging, keys, key, says) in [
            (
                "cursor",
                "cursor_param = \"cursor\"",
                "cursor_pointer",
                "required with cursor_param",
            ),
            (
                "link",
                "cursor_param = \"c\"",
                "cursor_pointer",
                "required with cursor_param",
            ),
            (
                "cursor",
                "",
                "cursor_pointer",
                "required for paging = \"cursor\"",
            ),
            (
                "link",
                "cursor_pointer = \"/next\"",
                "cursor_pointer",
                "only for paging = \"cursor\"",
            ),
            (
                "cursor",
                "cursor_pointer = \"next\"",
                "cursor_pointer",
                "write \"/next\"",
            ),
            (
                "page-number",
                "page_start = 2",
                "page_start",
                "must be 0 or 1",
            ),
            (
                "offset",
                "page_start = 0",
                "page_start",
                "only for paging = \"page-number\"",
            ),
            (
                "link",
                "page_param = \"p\"",
                "page_param",
                "only for paging = \"page-number\"",
            ),
            (
                "page-number",
                "offset_param = \"skip\"",
                "offset_param",
                "only for paging = \"offset\"",
            ),
            (
                "offset",
                "next_pointer = \"/next\"",
                "next_pointer",
                "only for paging = \"link\"",
            ),
            (
                "link",
                "next_pointer = \"@odata.nextLink\"",
                "next_pointer",
                "write \"/@odata.nextLink\"",
            ),
            (
                "offset",
                "size_param = \"a&b\"",
                "size_param",
                "not a query parameter name",
            ),
            (
                "offset",
                "[sources.rest.query]\nlimit = \"5\"",
                "query",
                "set by the engine",
            ),
            (
                "link",
                "[sources.rest.query]\n\"a b\" = \"5\"",
                "query",
                "not a query parameter name",
            ),
            (
                "link",
                "[sources.rest.headers]\nAuthorization = \"x\"",
                "headers",
                "[sources.auth]",
            ),
            (
                "link",
                "[sources.rest.headers]\n\"Bad Name\" = \"x\"",
                "headers",
                "not a valid request header",
            ),
        ] {
            let e = r(paging, keys);
            assert!(
                e.contains(&format!("`sources[0].rest.{key}`")) && e.contains(says),
                "{paging} {keys}: {e}"
            );
        }
        let e = err("kind = \"rest\"\n[rest]\npath = \"u?x=1\"");
        assert!(
            e.contains("`sources[0].rest.path`") && e.contains("[sources.rest.query]"),
            "{e}"
        );
        let e = err("paging = \"offset\"");
        assert!(
            e.contains("`sources[0].paging`") && e.contains("SCIM"),
            "{e}"
        );
    }

    #[test]
    fn secrets_come_from_env_and_never_print() {
        let s = source(
            "[auth]\nkind = \"bearer\"\ntoken_env = \"HR_TOKEN\"",
            &Env(vec![("HR_TOKEN", "s3cr3t")]),
        )
        .unwrap();
        assert_eq!(s.auth, Auth::Bearer(Secret::new("s3cr3t")));
        assert!(!format!("{:?}", s.auth).contains("s3cr3t"));
        assert!(!format!("{s:?}").contains("s3cr3t"));
    }
}
