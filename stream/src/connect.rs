//! Connecting to NATS: one client name, a bounded wait, optional credentials
//! and TLS.
//!
//! [`connect`] waits at most [`ConnectSpec::connect_timeout_ms`] for a
//! connection and names the url in every error — redacted by
//! [`redact_url`], so a password in a URL is never printed — with the hint to
//! start a server or fix `nats.url`, or to fix the credential when the server
//! refused it. Credentials are [`Secret`]s: a spec printed shows `***`.

use std::{path::PathBuf, time::Duration};

use crate::{Secret, redact_url};

/// The client name govledger connects with.
pub const DEFAULT_CLIENT_NAME: &str = "govledger";
/// Default bound on the wait for a connection.
pub const DEFAULT_CONNECT_TIMEOUT_MS: u64 = 10_000;

/// How govledger proves who it is to the NATS server (at most one way).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum NatsAuth {
    /// No credential (a server without auth).
    #[default]
    None,
    /// `nats.user` with the password from `nats.password_env` / `nats.password_file`.
    UserPassword { user: String, password: Secret },
    /// A token from `nats.token_env` / `nats.token_file`.
    Token(Secret),
    /// An nkey seed (`SU…`) read from `nats.nkey_seed_file`.
    NkeySeed(Secret),
    /// A NATS credentials file (`.creds`: a user JWT and its nkey seed).
    CredentialsFile(PathBuf),
}

/// TLS towards the NATS server.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NatsTls {
    /// PEM file of the CA(s) that sign the server's certificate.
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate and key files, for a server that asks for one.
    pub client_cert: Option<(PathBuf, PathBuf)>,
    /// Refuse a connection that is not TLS.
    pub required: bool,
}

/// How to connect to NATS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectSpec {
    /// The client name the server shows for this connection.
    pub client_name: String,
    /// Longest wait for a connection, in milliseconds (the caller's config checks it is > 0).
    pub connect_timeout_ms: u64,
    /// The credential, if the server requires one.
    pub auth: NatsAuth,
    /// TLS settings (none by default).
    pub tls: NatsTls,
}

impl Default for ConnectSpec {
    fn default() -> Self {
        Self {
            client_name: DEFAULT_CLIENT_NAME.to_owned(),
            connect_timeout_ms: DEFAULT_CONNECT_TIMEOUT_MS,
            auth: NatsAuth::None,
            tls: NatsTls::default(),
        }
    }
}

const HINT_START: &str = "Start a server (`nats-server -js`), fix nats.url, or remove nats.url \
                          to let govledger run its own";
const HINT_AUTH: &str = "Check the credential in the [nats] section (nats.user with \
                         nats.password_env / nats.password_file, nats.token_env / \
                         nats.token_file, nats.nkey_seed_file or nats.credentials_file) against \
                         what the server expects";
const HINT_TLS: &str = "Check nats.tls_ca_file, nats.tls_cert_file and nats.tls_key_file \
                        against the server's TLS settings";

/// Why no connection was made. Each message names the url (its userinfo
/// redacted) and how to fix it; no message contains a secret.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("cannot reach NATS at {url}: cannot use nats.credentials_file: {error}. {HINT_START}")]
    Credentials { url: String, error: std::io::Error },
    #[error("cannot reach NATS at {url}: {error}. {hint}")]
    Refused {
        url: String,
        /// The client's error text, redacted.
        error: String,
        kind: async_nats::ConnectErrorKind,
        hint: &'static str,
    },
    #[error("cannot reach NATS at {url}: no connection within {timeout_ms} ms. {HINT_START}")]
    Timeout { url: String, timeout_ms: u64 },
}

// What the tests check each message against; callers print the error whole.
#[cfg(test)]
impl ConnectError {
    /// The url no connection was made to (redacted).
    pub fn url(&self) -> &str {
        match self {
            Self::Credentials { url, .. }
            | Self::Refused { url, .. }
            | Self::Timeout { url, .. } => url,
        }
    }

    /// Why, without the url and the hint (e.g. `no connection within 500 ms`).
    pub fn reason(&self) -> String {
        match self {
            Self::Credentials { error, .. } => format!("cannot use nats.credentials_file: {error}"),
            Self::Refused { error, .. } => error.clone(),
            Self::Timeout { timeout_ms, .. } => format!("no connection within {timeout_ms} ms"),
        }
    }
}

/// The hint for a refused connection of this kind whose client error reads
/// `error`: a certificate the client rejected surfaces as an I/O error
/// ("invalid peer certificate"), yet it is a TLS problem, not a missing server.
fn hint_for(kind: async_nats::ConnectErrorKind, error: &str) -> &'static str {
    use async_nats::ConnectErrorKind as K;
    let lower = error.to_ascii_lowercase();
    match kind {
        K::AuthorizationViolation | K::Authentication => HINT_AUTH,
        K::Tls => HINT_TLS,
        _ if lower.contains("certificate") || lower.contains("tls") => HINT_TLS,
        _ => HINT_START,
    }
}

/// The servers of `url`: one URL or a comma-separated list.
fn servers(url: &str) -> Vec<&str> {
    url.split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .collect()
}

/// Connects to NATS at `url` (one URL or a comma-separated list) as `spec`
/// says, waiting at most `spec.connect_timeout_ms`.
pub async fn connect(spec: &ConnectSpec, url: &str) -> Result<async_nats::Client, ConnectError> {
    let shown = redact_url(url);
    let timeout = Duration::from_millis(spec.connect_timeout_ms);
    let mut opts = async_nats::ConnectOptions::new()
        .name(&spec.client_name)
        .connection_timeout(timeout);
    match &spec.auth {
        NatsAuth::None => {}
        NatsAuth::UserPassword { user, password } => {
            opts = opts.user_and_password(user.clone(), password.expose().to_owned());
        }
        NatsAuth::Token(token) => opts = opts.token(token.expose().to_owned()),
        NatsAuth::NkeySeed(seed) => opts = opts.nkey(seed.expose().to_owned()),
        NatsAuth::CredentialsFile(creds) => {
            opts =
                opts.credentials_file(creds)
                    .await
                    .map_err(|error| ConnectError::Credentials {
                        url: shown.clone(),
                        error,
                    })?;
        }
    }
    if let Some(ca) = &spec.tls.ca_file {
        opts = opts.add_root_certificates(ca.clone());
    }
    if let Some((cert, key)) = &spec.tls.client_cert {
        opts = opts.add_client_certificate(cert.clone(), key.clone());
    }
    if spec.tls.required {
        opts = opts.require_tls(true);
    }
    match tokio::time::timeout(timeout, opts.connect(servers(url))).await {
        Ok(Ok(client)) => Ok(client),
        Ok(Err(error)) => {
            let text = redact_url(&error.to_string());
            Err(ConnectError::Refused {
                url: shown,
                hint: hint_for(error.kind(), &text),
                error: text,
                kind: error.kind(),
            })
        }
        Err(_) => Err(ConnectError::Timeout {
            url: shown,
            timeout_ms: spec.connect_timeout_ms,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HINT: &str = "Start a server (`nats-server -js`), fix nats.url, \
                        or remove nats.url to let govledger run its own";

    /// A local port nothing listens on: bound, then released.
    fn free_port() -> u16 {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    }

    fn spec(timeout_ms: u64) -> ConnectSpec {
        ConnectSpec {
            connect_timeout_ms: timeout_ms,
            ..ConnectSpec::default()
        }
    }

    #[tokio::test]
    async fn refused_port_names_the_url_and_the_fix() {
        let url = format!("nats://127.0.0.1:{}", free_port());
        let e = connect(&spec(5_000), &url).await.unwrap_err();
        assert!(matches!(e, ConnectError::Refused { .. }), "{e:?}");
        assert_eq!(e.url(), url);
        let s = e.to_string();
        assert_eq!(
            s,
            format!("cannot reach NATS at {url}: {}. {HINT}", e.reason())
        );
    }

    #[tokio::test]
    async fn a_password_in_the_url_is_never_printed() {
        let url = format!("nats://alice:S3cretPW@127.0.0.1:{}", free_port());
        let e = connect(&spec(5_000), &url).await.unwrap_err();
        let text = format!("{e} {e:?}");
        assert!(!text.contains("S3cretPW"), "{text}");
        assert!(text.contains("nats://***@127.0.0.1:"), "{text}");
    }

    #[tokio::test]
    async fn missing_credentials_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let s = ConnectSpec {
            auth: NatsAuth::CredentialsFile(dir.path().join("missing.creds")),
            ..spec(5_000)
        };
        let url = "nats://127.0.0.1:4222";
        let e = connect(&s, url).await.unwrap_err();
        assert!(matches!(e, ConnectError::Credentials { .. }), "{e:?}");
        let text = e.to_string();
        assert!(
            text.starts_with(
                "cannot reach NATS at nats://127.0.0.1:4222: cannot use nats.credentials_file: "
            ) && text.ends_with(HINT),
            "{text}"
        );
    }

    #[tokio::test]
    async fn silent_server_times_out_within_the_bound() {
        // Accepts the TCP connection and never sends INFO.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("nats://{}", listener.local_addr().unwrap());
        let hold = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                held.push(socket);
            }
        });
        let started = std::time::Instant::now();
        let e = connect(&spec(300), &url).await.unwrap_err();
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(e.url(), url);
        assert!(e.to_string().ends_with(HINT), "{e}");
        hold.abort();
    }

    #[test]
    fn timeout_message_matches_the_old_text() {
        let e = ConnectError::Timeout {
            url: "nats://h:1".into(),
            timeout_ms: 500,
        };
        assert_eq!(e.reason(), "no connection within 500 ms");
        assert_eq!(
            e.to_string(),
            format!("cannot reach NATS at nats://h:1: no connection within 500 ms. {HINT}")
        );
    }
}
