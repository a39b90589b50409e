//! Connecting to NATS: one client name, a bounded wait, optional credentials.
//!
//! [`connect`] waits at most [`ConnectSpec::connect_timeout_ms`] for a
//! connection and names the url in every error, with the hint to start a server
//! or fix `nats.url`.

use std::{path::PathBuf, time::Duration};

/// The client name govledger connects with.
pub const DEFAULT_CLIENT_NAME: &str = "govledger";
/// Default bound on the wait for a connection.
pub const DEFAULT_CONNECT_TIMEOUT_MS: u64 = 10_000;

/// How to connect to NATS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectSpec {
    /// The client name the server shows for this connection.
    pub client_name: String,
    /// Longest wait for a connection, in milliseconds (the caller's config checks it is > 0).
    pub connect_timeout_ms: u64,
    /// A NATS credentials file (`.creds`), if the server requires one.
    pub credentials_file: Option<PathBuf>,
}

impl Default for ConnectSpec {
    fn default() -> Self {
        Self {
            client_name: DEFAULT_CLIENT_NAME.to_owned(),
            connect_timeout_ms: DEFAULT_CONNECT_TIMEOUT_MS,
            credentials_file: None,
        }
    }
}

/// Why no connection was made. Each message names the url and how to fix it.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error(
        "cannot reach NATS at {url}: cannot use nats.credentials_file: {error}. Start a server \
         (`nats-server -js`), fix nats.url, or remove nats.url to let govledger run its own"
    )]
    Credentials { url: String, error: std::io::Error },
    #[error(
        "cannot reach NATS at {url}: {error}. Start a server (`nats-server -js`), fix nats.url, \
         or remove nats.url to let govledger run its own"
    )]
    Refused {
        url: String,
        error: async_nats::ConnectError,
    },
    #[error(
        "cannot reach NATS at {url}: no connection within {timeout_ms} ms. Start a server \
         (`nats-server -js`), fix nats.url, or remove nats.url to let govledger run its own"
    )]
    Timeout { url: String, timeout_ms: u64 },
}

// What the tests check each message against; callers print the error whole.
#[cfg(test)]
impl ConnectError {
    /// The url no connection was made to.
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
            Self::Refused { error, .. } => error.to_string(),
            Self::Timeout { timeout_ms, .. } => format!("no connection within {timeout_ms} ms"),
        }
    }
}

/// Connects to NATS at `url` as `spec` says, waiting at most `spec.connect_timeout_ms`.
pub async fn connect(spec: &ConnectSpec, url: &str) -> Result<async_nats::Client, ConnectError> {
    let timeout = Duration::from_millis(spec.connect_timeout_ms);
    let mut opts = async_nats::ConnectOptions::new()
        .name(&spec.client_name)
        .connection_timeout(timeout);
    if let Some(creds) = &spec.credentials_file {
        opts = opts
            .credentials_file(creds)
            .await
            .map_err(|error| ConnectError::Credentials {
                url: url.to_owned(),
                error,
            })?;
    }
    match tokio::time::timeout(timeout, opts.connect(url)).await {
        Ok(Ok(client)) => Ok(client),
        Ok(Err(error)) => Err(ConnectError::Refused {
            url: url.to_owned(),
            error,
        }),
        Err(_) => Err(ConnectError::Timeout {
            url: url.to_owned(),
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
    async fn missing_credentials_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let s = ConnectSpec {
            credentials_file: Some(dir.path().join("missing.creds")),
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
