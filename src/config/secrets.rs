//! `[sources.auth]`: how a source authenticates, and where its secrets come from.
//!
//! Secrets are referenced by environment variable or file, never written in the
//! config, read once when the config is resolved, and never logged.

use std::path::PathBuf;

use govledger_ingest::http::{Auth, Secret};
use serde::Deserialize;

use super::error::{ConfigError, invalid};

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

/// A fixed environment of (name, value) pairs, for tests.
#[cfg(test)]
pub(crate) struct TestEnv(pub Vec<(&'static str, &'static str)>);

#[cfg(test)]
impl SecretSource for TestEnv {
    fn env(&self, name: &str) -> Option<String> {
        self.0
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| (*v).to_owned())
    }
}

/// How a source authenticates.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthKind {
    #[default]
    None,
    Bearer,
    Basic,
    OAuth2,
}

/// Where a secret comes from: an environment variable or a file.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// `none`, `bearer`, `basic` or `oauth2`.
    pub kind: AuthKind,
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

impl AuthConfig {
    /// The auth of the source whose auth table is at `key` (e.g. `sources[1].auth`),
    /// its secrets read now.
    pub fn resolve(&self, key: &str, env: &dyn SecretSource) -> Result<Auth, ConfigError> {
        let k = |name: &str| format!("{key}.{name}");
        match self.kind {
            AuthKind::None => Ok(Auth::None),
            AuthKind::Bearer => Ok(Auth::Bearer(secret(
                &k("token"),
                &self.token_env,
                &self.token_file,
                env,
            )?)),
            AuthKind::Basic => Ok(Auth::Basic {
                username: self
                    .username
                    .clone()
                    .ok_or_else(|| invalid(k("username"), "required for basic auth"))?,
                password: secret(&k("password"), &self.password_env, &self.password_file, env)?,
            }),
            AuthKind::OAuth2 => Ok(Auth::OAuth2 {
                token_url: self
                    .token_url
                    .clone()
                    .ok_or_else(|| invalid(k("token_url"), "required for oauth2"))?,
                client_id: self
                    .client_id
                    .clone()
                    .ok_or_else(|| invalid(k("client_id"), "required for oauth2"))?,
                client_secret: secret(
                    &k("client_secret"),
                    &self.client_secret_env,
                    &self.client_secret_file,
                    env,
                )?,
                scope: self.scope.clone(),
            }),
        }
    }
}

/// Reads the secret `key` from its environment variable or its file (exactly one).
pub(crate) fn secret(
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
