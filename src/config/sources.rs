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
    rest::{ActiveWords, RestShape},
    retry::RetryPolicy,
    sync::{Paging, Resource, SyncSpec},
};
use govledger_proto::v1::EntityType;
use govledger_stream::backoff::Backoff;
use serde::Deserialize;

use super::{
    error::{ConfigError, invalid},
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
}

/// How pages are addressed, as the file says it (which ones a kind allows is
/// checked by [`SourceConfig::resolve`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PagingSetting {
    /// SCIM `startIndex`/`count`; for REST the same as `page-number`.
    #[default]
    Index,
    /// SCIM cursors (RFC 9865).
    Cursor,
    /// REST page numbers.
    PageNumber,
    /// REST pages chained by RFC 8288 `Link: <...>; rel="next"`.
    Link,
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

/// What a REST source's items are.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RestEntity {
    #[default]
    User,
    Group,
}

impl From<RestEntity> for EntityType {
    fn from(e: RestEntity) -> Self {
        match e {
            RestEntity::User => EntityType::User,
            RestEntity::Group => EntityType::Group,
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
    /// SCIM base URL, e.g. `https://idp.example/scim/v2`.
    pub base_url: String,
    /// SCIM endpoints to read: `Users`, `Groups`.
    #[serde(default = "default_resources")]
    pub resources: Vec<String>,
    /// SCIM: `index` (startIndex/count) or `cursor` (RFC 9865).
    /// REST: `page-number` or `link` (RFC 8288 `Link: <...>; rel="next"`).
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
    /// How lifecycle actions remove a group member: `filter-path`
    /// (`members[value eq "id"]`, RFC 7644) or `value-list` (some servers require it).
    #[serde(default)]
    pub member_removal: MemberRemovalSetting,
    /// How long an action's read-backs may wait for a write to show before
    /// the step is UNCONFIRMED, in milliseconds (backoff between them).
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

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestConfig {
    /// Path below base_url, e.g. `users`.
    pub path: String,
    /// `user` or `group`.
    #[serde(default)]
    pub entity: RestEntity,
    /// JSON pointer to the items array; empty = the body is the array.
    #[serde(default)]
    pub items_pointer: String,
    #[serde(default = "default_id_field")]
    pub id_field: String,
    pub active_field: Option<String>,
    /// The active field says *inactive* when true (`suspended`, `disabled`).
    #[serde(default)]
    pub active_inverted: bool,
    /// Status words of the active field meaning active / inactive.
    #[serde(default)]
    pub active_words: Vec<String>,
    #[serde(default)]
    pub inactive_words: Vec<String>,
    pub label_field: Option<String>,
    /// JSON pointer to the total in the body (e.g. `/total`).
    pub total_pointer: Option<String>,
    /// Header with the total (e.g. `X-Total-Count`).
    pub total_header: Option<String>,
    /// Link paging: JSON pointer to the next URL in the body, not the header.
    pub next_pointer: Option<String>,
    #[serde(default = "default_page_param")]
    pub page_param: String,
    #[serde(default = "default_size_param")]
    pub size_param: String,
}

fn default_id_field() -> String {
    "id".into()
}
fn default_page_param() -> String {
    "page".into()
}
fn default_size_param() -> String {
    "per_page".into()
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
}

impl Source {
    /// True when lifecycle actions can write to it (SCIM; a REST connector only reads).
    pub fn writable(&self) -> bool {
        self.spec.rest.is_none()
    }

    /// A new HTTP client of this source, with its auth and timeout (each role
    /// has its own, so an OAuth2 token cache is never shared across roles).
    pub fn http(&self) -> Result<Arc<HttpSource>, ConfigError> {
        HttpSource::new(self.auth.clone(), self.timeout)
            .map(Arc::new)
            .map_err(|e| invalid(format!("sources[{}]", self.index), e.to_string()))
    }
}
impl RestConfig {
    fn shape(&self, key: &str) -> Result<RestShape, ConfigError> {
        let path = self.path.trim_matches('/');
        if path.is_empty() || path.contains('?') {
            return Err(invalid(
                format!("{key}.path"),
                "a path below base_url without a query, e.g. \"users\"",
            ));
        }
        for (name, p) in [
            ("items_pointer", Some(&self.items_pointer)),
            ("total_pointer", self.total_pointer.as_ref()),
            ("next_pointer", self.next_pointer.as_ref()),
        ] {
            if let Some(p) = p
                && !p.is_empty()
                && !p.starts_with('/')
            {
                return Err(invalid(
                    format!("{key}.{name}"),
                    format!("{p:?} is not a JSON pointer (starts with '/')"),
                ));
            }
        }
        let words = !self.active_words.is_empty() || !self.inactive_words.is_empty();
        if (self.active_inverted || words) && self.active_field.is_none() {
            return Err(invalid(
                format!("{key}.active_field"),
                "required with active_inverted / active_words / inactive_words",
            ));
        }
        if let Some(w) = self.active_words.iter().find(|w| {
            self.inactive_words
                .iter()
                .any(|x| x.trim().eq_ignore_ascii_case(w.trim()))
        }) {
            return Err(invalid(
                format!("{key}.inactive_words"),
                format!("{w:?} is in active_words too"),
            ));
        }
        Ok(RestShape {
            path: path.to_owned(),
            entity_type: self.entity.into(),
            items_pointer: self.items_pointer.clone(),
            id_field: self.id_field.clone(),
            active_field: self.active_field.clone(),
            active_words: ActiveWords {
                inverted: self.active_inverted,
                active: self.active_words.clone(),
                inactive: self.inactive_words.clone(),
            },
            label_field: self.label_field.clone(),
            total_pointer: self.total_pointer.clone(),
            total_header: self.total_header.as_ref().map(|h| h.to_ascii_lowercase()),
            next_pointer: self.next_pointer.clone(),
            page_param: self.page_param.clone(),
            size_param: self.size_param.clone(),
        })
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
        let rest = self.rest_shape(&k)?;
        let base_url = self.base_url(&k)?;
        let resources = self.resources(&k)?;
        let paging = self.paging(rest.is_some(), &k)?;
        self.check_limits(&k)?;
        let retry = self.retry_policy(&k)?;
        let rl = &self.rate_limit;
        if !(rl.requests_per_s >= 0.0 && rl.requests_per_s.is_finite()) {
            return Err(invalid(k("rate_limit.requests_per_s"), "must be >= 0"));
        }
        let auth = self.auth.resolve(&k("auth"), env)?;
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
            },
            auth,
            timeout: Duration::from_millis(self.timeout_ms),
            schedule_interval: (self.schedule_interval_ms > 0)
                .then(|| Duration::from_millis(self.schedule_interval_ms)),
            freshness_objective_ms: self.freshness_objective_ms,
            member_removal: self.member_removal.into(),
            verify_window_ms: self.verify_window_ms,
        })
    }

    /// `[sources.rest]` is there exactly when `kind = "rest"`.
    fn rest_shape(&self, k: &dyn Fn(&str) -> String) -> Result<Option<RestShape>, ConfigError> {
        match (self.kind, &self.rest) {
            (SourceKind::Scim, None) => Ok(None),
            (SourceKind::Scim, Some(_)) => Err(invalid(k("rest"), "only for kind = \"rest\"")),
            (SourceKind::Rest, None) => Err(invalid(
                k("rest"),
                "required for kind = \"rest\": say at least `path`",
            )),
            (SourceKind::Rest, Some(r)) => r.shape(&k("rest")).map(Some),
        }
    }

    /// An http(s) URL without credentials, without its trailing '/'.
    fn base_url(&self, k: &dyn Fn(&str) -> String) -> Result<String, ConfigError> {
        let url = self.base_url.trim();
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(invalid(
                k("base_url"),
                format!("{url:?} is not an http(s) URL"),
            ));
        }
        if url
            .split("://")
            .nth(1)
            .is_some_and(|rest| rest.split('/').next().unwrap_or("").contains('@'))
        {
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
    /// `page-number` (or `index`, the same)/`link`.
    fn paging(&self, rest: bool, k: &dyn Fn(&str) -> String) -> Result<Paging, ConfigError> {
        match (rest, self.paging) {
            (false, PagingSetting::Index) => Ok(Paging::Index),
            (false, PagingSetting::Cursor) => Ok(Paging::Cursor),
            (true, PagingSetting::PageNumber | PagingSetting::Index) => Ok(Paging::PageNumber),
            (true, PagingSetting::Link) => Ok(Paging::Link),
            (false, other) => Err(invalid(
                k("paging"),
                format!("{:?}: use \"index\" or \"cursor\" for SCIM", other.name()),
            )),
            (true, other) => Err(invalid(
                k("paging"),
                format!(
                    "{:?}: use \"page-number\" or \"link\" for REST",
                    other.name()
                ),
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
        }
    }
}

#[cfg(test)]
mod tests {
    use govledger_ingest::http::Secret;

    use super::*;
    use crate::config::Config;

    struct Env(Vec<(&'static str, &'static str)>);
    impl SecretSource for Env {
        fn env(&self, name: &str) -> Option<String> {
            self.0
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        }
    }

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
            ("kind = \"ldap\"", "sources[0].kind"),
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
                "kind = \"ldap\"",
                "sources[0].kind",
                ["scim", "rest"].as_slice(),
            ),
            (
                "paging = \"offset\"",
                "sources[0].paging",
                &["index", "cursor", "page-number", "link"],
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
            e.contains("`sources[0].paging`") && e.contains("REST"),
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
