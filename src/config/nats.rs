//! `[nats]`: which NATS server, the stream, and how govledger authenticates to
//! an external server.
//!
//! Decision: a URL with userinfo (`nats://user:pass@host`) is refused, naming
//! the key: a URL ends up in process lists (`--nats-url`), shell history and
//! logs. Credentials come from their own keys, secrets from the environment or
//! a file, never inline: `user` + `password_env` / `password_file`,
//! `token_env` / `token_file`, `nkey_seed_file`, `credentials_file` — at most
//! one way. TLS: `tls_ca_file`, `tls_cert_file` + `tls_key_file`,
//! `tls_required`. Secrets are read once, by [`NatsConfig::connect_spec`]
//! (called from `Config::resolve` and the commands that reach NATS themselves).

use std::path::PathBuf;

use govledger_stream::{
    connect::{ConnectSpec, DEFAULT_CLIENT_NAME, NatsAuth, NatsTls},
    redact::has_userinfo,
    redact_url,
};
use serde::Deserialize;

use super::{
    error::{ConfigError, invalid},
    secrets::{SecretSource, secret},
};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NatsConfig {
    /// `nats://host:port` of an existing server. Absent (and no `urls`): govledger
    /// starts its own `nats-server -js` as a child process with its store in the
    /// data folder.
    pub url: Option<String>,
    /// Several URLs of one cluster (instead of `url`); the client picks one and
    /// fails over to the others.
    pub urls: Vec<String>,
    /// JetStream stream name.
    pub stream: String,
    /// Duplicate window of the stream, in milliseconds.
    pub duplicate_window_ms: u64,
    /// Path of the `nats-server` binary for the embedded server. Default: the
    /// project's `.tools/venv/bin/nats-server`, then `PATH`.
    pub server_bin: Option<PathBuf>,
    /// Port of the embedded server (0 = a free port).
    pub embedded_port: u16,
    /// User name for user/password auth (the password from `password_env` / `password_file`).
    pub user: Option<String>,
    pub password_env: Option<String>,
    pub password_file: Option<PathBuf>,
    /// Token auth: the token from an environment variable or a file.
    pub token_env: Option<String>,
    pub token_file: Option<PathBuf>,
    /// A file holding an nkey seed (`SU…`).
    pub nkey_seed_file: Option<PathBuf>,
    /// A NATS credentials file (`.creds`). Its content is never logged.
    pub credentials_file: Option<PathBuf>,
    /// PEM CA file that signs the server's certificate.
    pub tls_ca_file: Option<PathBuf>,
    /// PEM client certificate (with `tls_key_file`), for a server that asks for one.
    pub tls_cert_file: Option<PathBuf>,
    pub tls_key_file: Option<PathBuf>,
    /// Refuse a connection that is not TLS.
    pub tls_required: bool,
    /// How long to wait for the first connection, in milliseconds.
    pub connect_timeout_ms: u64,
}

impl Default for NatsConfig {
    fn default() -> Self {
        Self {
            url: None,
            urls: Vec::new(),
            stream: govledger_stream::contract::DEFAULT_STREAM_NAME.to_owned(),
            duplicate_window_ms: govledger_stream::contract::DEFAULT_DUPLICATE_WINDOW_MS,
            server_bin: None,
            embedded_port: 0,
            user: None,
            password_env: None,
            password_file: None,
            token_env: None,
            token_file: None,
            nkey_seed_file: None,
            credentials_file: None,
            tls_ca_file: None,
            tls_cert_file: None,
            tls_key_file: None,
            tls_required: false,
            connect_timeout_ms: govledger_stream::connect::DEFAULT_CONNECT_TIMEOUT_MS,
        }
    }
}

/// Checks a configured URL at `key`, or a comma-separated list of a
/// cluster's URLs (`--nats-url a,b,c`): each a NATS URL.
fn check_url(key: &str, url: &str) -> Result<(), ConfigError> {
    if url.contains(',') {
        return url
            .split(',')
            .try_for_each(|u| check_one_url(key, u.trim()));
    }
    check_one_url(key, url)
}

/// Checks one URL at `key`: a NATS scheme (or none), no userinfo.
fn check_one_url(key: &str, url: &str) -> Result<(), ConfigError> {
    let ok = ["nats://", "tls://", "ws://", "wss://"]
        .iter()
        .any(|p| url.starts_with(p))
        || !url.contains("://");
    if !ok || url.trim().is_empty() {
        return Err(invalid(
            key,
            format!(
                "{:?} is not a NATS URL (e.g. nats://127.0.0.1:4222; several servers go in nats.urls)",
                redact_url(url)
            ),
        ));
    }
    if has_userinfo(url) {
        return Err(invalid(
            key,
            format!(
                "{:?} carries credentials; a URL shows in process lists and logs. Remove them \
                 and set nats.user with nats.password_env or nats.password_file (or \
                 nats.token_env / nats.token_file, nats.nkey_seed_file, nats.credentials_file)",
                redact_url(url)
            ),
        ));
    }
    Ok(())
}

impl NatsConfig {
    /// The external server's URL(s), comma-separated (what [`govledger_stream::connect::connect`]
    /// takes), or `None` for the embedded server.
    pub fn external_url(&self) -> Option<String> {
        match (&self.url, self.urls.is_empty()) {
            (Some(u), _) => Some(u.clone()),
            (None, false) => Some(self.urls.join(",")),
            (None, true) => None,
        }
    }

    /// The auth keys that are set, each group named by its first key.
    fn auth_ways(&self) -> Vec<&'static str> {
        let mut ways = Vec::new();
        if self.user.is_some() || self.password_env.is_some() || self.password_file.is_some() {
            ways.push("nats.user");
        }
        if self.token_env.is_some() || self.token_file.is_some() {
            ways.push(if self.token_env.is_some() {
                "nats.token_env"
            } else {
                "nats.token_file"
            });
        }
        if self.nkey_seed_file.is_some() {
            ways.push("nats.nkey_seed_file");
        }
        if self.credentials_file.is_some() {
            ways.push("nats.credentials_file");
        }
        ways
    }

    /// Checks the `[nats]` keys that need no secret; the first problem, naming its key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.url.is_some() && !self.urls.is_empty() {
            return Err(invalid(
                "nats.urls",
                "give either nats.url or nats.urls, not both",
            ));
        }
        if let Some(url) = &self.url {
            check_url("nats.url", url)?;
        }
        for (i, url) in self.urls.iter().enumerate() {
            check_url(&format!("nats.urls[{i}]"), url)?;
        }
        let ways = self.auth_ways();
        if ways.len() > 1 {
            return Err(invalid(
                ways[1],
                format!(
                    "{} and {} are both set: authenticate one way only",
                    ways[0], ways[1]
                ),
            ));
        }
        let external = self.external_url().is_some();
        let tls_set = self.tls_ca_file.is_some()
            || self.tls_cert_file.is_some()
            || self.tls_key_file.is_some()
            || self.tls_required;
        if !external && (!ways.is_empty() || tls_set) {
            let key = ways.first().copied().unwrap_or("nats.tls_ca_file");
            return Err(invalid(
                key,
                "credentials and TLS are for an external server: set nats.url (or nats.urls) too",
            ));
        }
        if (self.password_env.is_some() || self.password_file.is_some()) && self.user.is_none() {
            return Err(invalid(
                "nats.user",
                "required with nats.password_env / nats.password_file",
            ));
        }
        if self.user.as_deref().is_some_and(|u| u.trim().is_empty()) {
            return Err(invalid("nats.user", "must not be empty"));
        }
        match (&self.tls_cert_file, &self.tls_key_file) {
            (Some(_), None) => {
                return Err(invalid(
                    "nats.tls_key_file",
                    "required with nats.tls_cert_file",
                ));
            }
            (None, Some(_)) => {
                return Err(invalid(
                    "nats.tls_cert_file",
                    "required with nats.tls_key_file",
                ));
            }
            _ => {}
        }
        for (key, file) in [
            ("nats.credentials_file", &self.credentials_file),
            ("nats.nkey_seed_file", &self.nkey_seed_file),
            ("nats.tls_ca_file", &self.tls_ca_file),
            ("nats.tls_cert_file", &self.tls_cert_file),
            ("nats.tls_key_file", &self.tls_key_file),
        ] {
            if let Some(f) = file
                && !f.is_file()
            {
                return Err(invalid(
                    key,
                    format!("{} is not a readable file", f.display()),
                ));
            }
        }
        Ok(())
    }

    /// How every role of this process connects to NATS, its secret read now
    /// (from the environment or a file; never inline).
    pub fn connect_spec(&self, env: &dyn SecretSource) -> Result<ConnectSpec, ConfigError> {
        let auth = if let Some(user) = &self.user {
            NatsAuth::UserPassword {
                user: user.clone(),
                password: secret(
                    "nats.password",
                    &self.password_env,
                    &self.password_file,
                    env,
                )?,
            }
        } else if self.token_env.is_some() || self.token_file.is_some() {
            NatsAuth::Token(secret(
                "nats.token",
                &self.token_env,
                &self.token_file,
                env,
            )?)
        } else if let Some(f) = &self.nkey_seed_file {
            NatsAuth::NkeySeed(secret("nats.nkey_seed", &None, &Some(f.clone()), env)?)
        } else if let Some(f) = &self.credentials_file {
            NatsAuth::CredentialsFile(f.clone())
        } else {
            NatsAuth::None
        };
        Ok(ConnectSpec {
            client_name: DEFAULT_CLIENT_NAME.to_owned(),
            connect_timeout_ms: self.connect_timeout_ms,
            auth,
            tls: NatsTls {
                ca_file: self.tls_ca_file.clone(),
                client_cert: self.tls_cert_file.clone().zip(self.tls_key_file.clone()),
                required: self.tls_required,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    use crate::config::secrets::TestEnv as Env;

    fn nats(toml: &str) -> Result<NatsConfig, ConfigError> {
        let c = Config::from_toml(&format!("[nats]\n{toml}"), "t.toml")?;
        c.nats.validate()?;
        Ok(c.nats)
    }

    fn err(toml: &str) -> String {
        match nats(toml) {
            Ok(_) => panic!("accepted: {toml}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn a_url_with_credentials_is_refused_without_printing_them() {
        for (toml, key) in [
            ("url = \"nats://alice:S3cretPW@127.0.0.1:4222\"", "nats.url"),
            ("url = \"S3cretPW@127.0.0.1:4222\"", "nats.url"),
            (
                "urls = [\"nats://h:1\", \"tls://bob:S3cretPW@g:2\"]",
                "nats.urls[1]",
            ),
            ("url = \"ftp://alice:S3cretPW@h\"", "nats.url"),
        ] {
            let e = err(toml);
            assert!(e.contains(&format!("`{key}`")), "{toml}: {e}");
            assert!(!e.contains("S3cretPW"), "{toml}: {e}");
        }
        let e = err("url = \"nats://alice:S3cretPW@127.0.0.1:4222\"");
        assert!(e.contains("nats.password_env"), "{e}");
    }

    #[test]
    fn auth_keys_are_checked_together() {
        let url = "url = \"nats://h:4222\"\n";
        let cases = [
            (
                "user = \"a\"\npassword_env = \"P\"\ntoken_env = \"T\"",
                "nats.token_env",
                "nats.user and nats.token_env",
            ),
            (
                "token_file = \"/x\"\nnkey_seed_file = \"/y\"",
                "nats.nkey_seed_file",
                "nats.token_file and nats.nkey_seed_file",
            ),
            ("password_env = \"P\"", "nats.user", "required"),
            (
                "tls_cert_file = \"/etc/hostname\"",
                "nats.tls_key_file",
                "required",
            ),
            (
                "nkey_seed_file = \"/nonexistent.nk\"",
                "nats.nkey_seed_file",
                "not a readable file",
            ),
        ];
        for (toml, key, says) in cases {
            let e = err(&format!("{url}{toml}"));
            assert!(
                e.contains(&format!("`{key}`")) && e.contains(says),
                "{toml}: {e}"
            );
        }
        let e = err("token_env = \"T\"");
        assert!(
            e.contains("`nats.token_env`") && e.contains("external server"),
            "{e}"
        );
        let e = err("url = \"nats://h:1\"\nurls = [\"nats://g:2\"]");
        assert!(e.contains("`nats.urls`"), "{e}");
    }

    #[test]
    fn a_comma_list_of_a_clusters_urls_is_accepted_each_checked() {
        let n = nats("url = \"nats://h:1,nats://g:2, nats://f:3\"").unwrap();
        assert!(n.validate().is_ok());
        assert_eq!(
            n.external_url().as_deref(),
            Some("nats://h:1,nats://g:2, nats://f:3")
        );
        let e = err("url = \"nats://h:1,http://g:2\"");
        assert!(e.contains("`nats.url`") && e.contains("http://g:2"), "{e}");
        let e = err("url = \"nats://h:1,\"");
        assert!(e.contains("`nats.url`"), "{e}");
        let e = err("url = \"nats://h:1,nats://bob:pw@g:2\"");
        assert!(
            e.contains("carries credentials") && !e.contains("pw"),
            "{e}"
        );
    }

    #[test]
    fn secrets_come_from_env_or_file_and_print_as_stars() {
        let n = nats(
            "urls = [\"nats://h:1\", \"nats://g:2\"]\nuser = \"gov\"\npassword_env = \"NATS_PW\"",
        )
        .unwrap();
        assert_eq!(n.external_url().as_deref(), Some("nats://h:1,nats://g:2"));
        let spec = n.connect_spec(&Env(vec![("NATS_PW", "S3cretPW")])).unwrap();
        assert!(
            matches!(&spec.auth, NatsAuth::UserPassword { user, password }
            if user == "gov" && password.expose() == "S3cretPW")
        );
        assert!(!format!("{spec:?}").contains("S3cretPW"));
        let e = n.connect_spec(&Env(vec![])).unwrap_err().to_string();
        assert!(
            e.contains("`nats.password_env`") && e.contains("NATS_PW"),
            "{e}"
        );

        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("token");
        std::fs::write(&f, "tok-123\n").unwrap();
        let n = nats(&format!(
            "url = \"nats://h:1\"\ntoken_file = {:?}",
            f.display().to_string()
        ))
        .unwrap();
        let spec = n.connect_spec(&Env(vec![])).unwrap();
        assert!(matches!(&spec.auth, NatsAuth::Token(t) if t.expose() == "tok-123"));
        assert_eq!(
            nats("").unwrap().connect_spec(&Env(vec![])).unwrap().auth,
            NatsAuth::None
        );
    }
}
