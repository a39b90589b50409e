//! `[[sources]]`: what govledger syncs, how, and the objectives it is judged by.
//!
//! Validated with the rest of the config; errors name the key
//! (`sources[1].base_url`). Secrets are referenced by environment variable or
//! file, never written in the config, and never logged.

use std::{path::PathBuf, time::Duration};

use govledger_ingest::{
    backoff::Backoff,
    http::{Auth, Secret},
    rest::RestShape,
    retry::RetryPolicy,
    sync::{Paging, Resource, SyncSpec},
};
use govledger_proto::v1::EntityType;
use serde::Deserialize;

use crate::config::ConfigError;

pub const DEFAULT_PAGE_SIZE: u32 = 100;
pub const PAGE_SIZE_MAX: u32 = 10_000;
pub const DEFAULT_TIMEOUT_MS: u64 = 30_000;
pub const DEFAULT_FRESHNESS_OBJECTIVE_MS: u64 = 24 * 60 * 60 * 1_000;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    /// Source id: ASCII letters, digits, '-', '_' (one NATS subject token).
    pub id: String,
    /// Connector kind: `scim` (SCIM 2.0) or `rest` (a JSON API, see `[sources.rest]`).
    #[serde(default = "default_kind")]
    pub kind: String,
    /// SCIM base URL, e.g. `https://idp.example/scim/v2`.
    pub base_url: String,
    /// SCIM endpoints to read: `Users`, `Groups`.
    #[serde(default = "default_resources")]
    pub resources: Vec<String>,
    /// SCIM: `index` (startIndex/count) or `cursor` (RFC 9865).
    /// REST: `page-number` or `link` (RFC 8288 `Link: <...>; rel="next"`).
    #[serde(default = "default_paging")]
    pub paging: String,
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
    #[serde(default = "default_member_removal")]
    pub member_removal: String,
}

fn default_member_removal() -> String {
    "filter-path".into()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestConfig {
    /// Path below base_url, e.g. `users`.
    pub path: String,
    /// `user` or `group`.
    #[serde(default = "default_entity")]
    pub entity: String,
    /// JSON pointer to the items array; empty = the body is the array.
    #[serde(default)]
    pub items_pointer: String,
    #[serde(default = "default_id_field")]
    pub id_field: String,
    pub active_field: Option<String>,
    pub label_field: Option<String>,
    /// JSON pointer to the total in the body (e.g. `/total`).
    pub total_pointer: Option<String>,
    /// Header with the total (e.g. `X-Total-Count`).
    pub total_header: Option<String>,
    #[serde(default = "default_page_param")]
    pub page_param: String,
    #[serde(default = "default_size_param")]
    pub size_param: String,
}

fn default_entity() -> String {
    "user".into()
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

fn default_kind() -> String {
    "scim".into()
}
fn default_resources() -> Vec<String> {
    vec!["Users".into()]
}
fn default_paging() -> String {
    "index".into()
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

/// Where a secret comes from: an environment variable or a file.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// `none`, `bearer`, `basic` or `oauth2`.
    pub kind: Option<String>,
    pub token_env: Option<String>,
    pub token_file: Option<PathBuf>,
    pub username: Option<String>,
    pub password_env: Option<String>,
    pub password_file: Option<PathBuf>,
    pub token_url: Option<String>,
    pub client_id: Option<String>,
    pub client_secret_env: Option<String>,
    pub client_secret_file: Option<PathBuf>,
    pub scope: Option<String>,
}

/// Reads secrets through this, so tests can inject an environment.
pub trait SecretSource {
    fn env(&self, name: &str) -> Option<String>;
}

/// The process environment.
pub struct ProcessEnv;

impl SecretSource for ProcessEnv {
    fn env(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

fn invalid(key: String, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key,
        message: message.into(),
    }
}

fn secret(
    key: &str,
    env_name: &Option<String>,
    file: &Option<PathBuf>,
    env: &dyn SecretSource,
) -> Result<Secret, ConfigError> {
    match (env_name, file) {
        (Some(e), None) => env
            .env(e)
            .filter(|v| !v.is_empty())
            .map(Secret::new)
            .ok_or_else(|| {
                invalid(
                    format!("{key}_env"),
                    format!("environment variable {e} is not set (or empty)"),
                )
            }),
        (None, Some(f)) => std::fs::read_to_string(f)
            .map(|s| Secret::new(s.trim().to_owned()))
            .map_err(|e| {
                invalid(
                    format!("{key}_file"),
                    format!("cannot read {}: {e}", f.display()),
                )
            }),
        (Some(_), Some(_)) => Err(invalid(
            format!("{key}_env"),
            format!("give either {key}_env or {key}_file, not both"),
        )),
        (None, None) => Err(invalid(
            format!("{key}_env"),
            format!("required: the name of an environment variable holding it (or {key}_file)"),
        )),
    }
}

impl RestConfig {
    fn shape(&self, key: &str) -> Result<RestShape, ConfigError> {
        let entity_type = match self.entity.as_str() {
            "user" => EntityType::User,
            "group" => EntityType::Group,
            other => {
                return Err(invalid(
                    format!("{key}.entity"),
                    format!("{other:?}: use \"user\" or \"group\""),
                ));
            }
        };
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
        Ok(RestShape {
            path: path.to_owned(),
            entity_type,
            items_pointer: self.items_pointer.clone(),
            id_field: self.id_field.clone(),
            active_field: self.active_field.clone(),
            label_field: self.label_field.clone(),
            total_pointer: self.total_pointer.clone(),
            total_header: self.total_header.as_ref().map(|h| h.to_ascii_lowercase()),
            page_param: self.page_param.clone(),
            size_param: self.size_param.clone(),
        })
    }
}

impl SourceConfig {
    /// The HTTP client of this source (index `i`), with its auth and timeout.
    pub fn http(
        &self,
        i: usize,
        auth: Auth,
    ) -> Result<std::sync::Arc<govledger_ingest::http::HttpSource>, ConfigError> {
        govledger_ingest::http::HttpSource::new(auth, Duration::from_millis(self.timeout_ms))
            .map(std::sync::Arc::new)
            .map_err(|e| invalid(format!("sources[{i}]"), e.to_string()))
    }

    /// Validates this source (index `i` in the file) and builds its sync spec and auth.
    pub fn build(&self, i: usize, env: &dyn SecretSource) -> Result<(SyncSpec, Auth), ConfigError> {
        let k = |name: &str| format!("sources[{i}].{name}");
        govledger_ingest::subject::validate_source_id(&self.id)
            .map_err(|e| invalid(k("id"), e.to_string()))?;
        let rest = match (self.kind.as_str(), &self.rest) {
            ("scim", None) => None,
            ("scim", Some(_)) => {
                return Err(invalid(k("rest"), "only for kind = \"rest\""));
            }
            ("rest", None) => {
                return Err(invalid(
                    k("rest"),
                    "required for kind = \"rest\": say at least `path`",
                ));
            }
            ("rest", Some(r)) => Some(r.shape(&k("rest"))?),
            (other, _) => {
                return Err(invalid(
                    k("kind"),
                    format!("{other:?} is not a known connector; use \"scim\" or \"rest\""),
                ));
            }
        };
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
        let paging = match (rest.is_some(), self.paging.as_str()) {
            (false, "index") => Paging::Index,
            (false, "cursor") => Paging::Cursor,
            (true, "page-number" | "index") => Paging::PageNumber,
            (true, "link") => Paging::Link,
            (false, other) => {
                return Err(invalid(
                    k("paging"),
                    format!("{other:?}: use \"index\" or \"cursor\" for SCIM"),
                ));
            }
            (true, other) => {
                return Err(invalid(
                    k("paging"),
                    format!("{other:?}: use \"page-number\" or \"link\" for REST"),
                ));
            }
        };
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
        let rl = &self.rate_limit;
        if !(rl.requests_per_s >= 0.0 && rl.requests_per_s.is_finite()) {
            return Err(invalid(k("rate_limit.requests_per_s"), "must be >= 0"));
        }
        if !matches!(self.member_removal.as_str(), "filter-path" | "value-list") {
            return Err(invalid(
                k("member_removal"),
                format!(
                    "{:?}: use \"filter-path\" or \"value-list\"",
                    self.member_removal
                ),
            ));
        }
        let auth = self.auth(i, env)?;
        Ok((
            SyncSpec {
                source_id: self.id.clone(),
                base_url: url.trim_end_matches('/').to_owned(),
                resources,
                paging,
                page_size: self.page_size,
                retry: RetryPolicy {
                    attempts_max: r.attempts_max,
                    budget: Duration::from_millis(r.budget_ms),
                    backoff,
                },
                rate_per_s: rl.requests_per_s,
                burst: rl.burst.max(1),
                deletion_threshold_pct: self.deletion_threshold_pct,
                deletion_threshold_abs: self.deletion_threshold_abs,
                rest,
            },
            auth,
        ))
    }

    fn auth(&self, i: usize, env: &dyn SecretSource) -> Result<Auth, ConfigError> {
        let a = &self.auth;
        let k = |name: &str| format!("sources[{i}].auth.{name}");
        match a.kind.as_deref().unwrap_or("none") {
            "none" => Ok(Auth::None),
            "bearer" => Ok(Auth::Bearer(secret(
                &k("token"),
                &a.token_env,
                &a.token_file,
                env,
            )?)),
            "basic" => Ok(Auth::Basic {
                username: a
                    .username
                    .clone()
                    .ok_or_else(|| invalid(k("username"), "required for basic auth"))?,
                password: secret(&k("password"), &a.password_env, &a.password_file, env)?,
            }),
            "oauth2" => Ok(Auth::OAuth2 {
                token_url: a
                    .token_url
                    .clone()
                    .ok_or_else(|| invalid(k("token_url"), "required for oauth2"))?,
                client_id: a
                    .client_id
                    .clone()
                    .ok_or_else(|| invalid(k("client_id"), "required for oauth2"))?,
                client_secret: secret(
                    &k("client_secret"),
                    &a.client_secret_env,
                    &a.client_secret_file,
                    env,
                )?,
                scope: a.scope.clone(),
            }),
            other => Err(invalid(
                k("kind"),
                format!("{other:?}: use \"none\", \"bearer\", \"basic\" or \"oauth2\""),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Env(Vec<(&'static str, &'static str)>);
    impl SecretSource for Env {
        fn env(&self, name: &str) -> Option<String> {
            self.0
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        }
    }

    fn source(extra: &str) -> SourceConfig {
        toml::from_str(&format!(
            "id = \"hr\"\nbase_url = \"http://127.0.0.1:1/v2\"\n{extra}"
        ))
        .unwrap()
    }

    fn err(extra: &str) -> String {
        match source(extra).build(0, &Env(vec![])) {
            Ok(_) => panic!("accepted {extra}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn defaults_build() {
        let (spec, auth) = source("").build(0, &Env(vec![])).unwrap();
        assert_eq!(spec.page_size, DEFAULT_PAGE_SIZE);
        assert_eq!(spec.paging, Paging::Index);
        assert_eq!(auth, Auth::None);
    }

    #[test]
    fn errors_name_the_key() {
        for (extra, key) in [
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
        ] {
            let e = err(extra);
            assert!(e.contains(&format!("`{key}`")), "{extra}: {e}");
        }
        let mut s = source("");
        s.base_url = "http://user:pw@idp/v2".into();
        let e = s.build(0, &Env(vec![])).unwrap_err().to_string();
        assert!(
            e.contains("sources[0].base_url") && !e.contains("pw@"),
            "{e}"
        );
    }

    #[test]
    fn secrets_come_from_env_and_never_print() {
        let s = source("[auth]\nkind = \"bearer\"\ntoken_env = \"HR_TOKEN\"");
        let (_, auth) = s.build(0, &Env(vec![("HR_TOKEN", "s3cr3t")])).unwrap();
        assert_eq!(auth, Auth::Bearer(Secret::new("s3cr3t")));
        assert!(!format!("{auth:?}").contains("s3cr3t"));
    }
}
