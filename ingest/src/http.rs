//! HTTP for connectors: one client per source with its auth, a per-request
//! timeout, and the classification of every outcome into an [`ErrorClass`].
//!
//! Secrets (tokens, passwords, client secrets) live in [`Secret`], whose `Debug`
//! and `Display` print `***`; no error message or event ever contains one.

use std::time::{Duration, Instant};

use bytes::Bytes;
use govledger_proto::v1::ErrorClass;
use tokio::sync::Mutex;

use crate::{ratelimit, retry::Failure};

pub use govledger_stream::Secret;

#[derive(Debug, Clone, PartialEq)]
pub enum Auth {
    None,
    Bearer(Secret),
    Basic {
        username: String,
        password: Secret,
    },
    /// OAuth2 client credentials (RFC 6749 §4.4); the token is cached until
    /// shortly before it expires, and refreshed once after a 401.
    OAuth2 {
        token_url: String,
        client_id: String,
        client_secret: Secret,
        scope: Option<String>,
    },
}

/// A successful (2xx) answer.
#[derive(Debug, Clone)]
pub struct Fetched {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Bytes,
    pub latency_ms: u32,
}

/// Refresh a cached OAuth2 token this long before it expires.
const TOKEN_EARLY_REFRESH_S: u64 = 30;
/// Longest error-body excerpt kept in a failure message.
const ERROR_EXCERPT_MAX: usize = 160;

pub struct HttpSource {
    client: reqwest::Client,
    auth: Auth,
    token: Mutex<Option<(Secret, Instant)>>,
    /// Sent with every request, replacing a default of the same name
    /// (`Accept`); e.g. a REST source's `ConsistencyLevel: eventual`.
    headers: reqwest::header::HeaderMap,
    /// The latest time the server asked to wait until (Retry-After, or the
    /// reset at `X-RateLimit-Remaining: 0`): it holds for every request to
    /// the source, across runs (a run that starts right after another one
    /// used the window up waits too).
    server_pause: std::sync::Mutex<Option<tokio::time::Instant>>,
    /// Removes this source's secrets (and credential-shaped text) from every
    /// text a failure carries into the ledger.
    scrubber: govledger_stream::Scrubber,
}

/// The secret values of `auth`, for the scrubber (a Basic credential also as
/// `user:password`, which the scrubber matches in base64 as sent).
fn secrets_of(auth: &Auth) -> Vec<String> {
    match auth {
        Auth::None => Vec::new(),
        Auth::Bearer(t) => vec![t.expose().to_owned()],
        Auth::Basic { username, password } => vec![
            password.expose().to_owned(),
            format!("{username}:{}", password.expose()),
        ],
        Auth::OAuth2 {
            client_id,
            client_secret,
            ..
        } => vec![
            client_secret.expose().to_owned(),
            format!("{client_id}:{}", client_secret.expose()),
        ],
    }
}

#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("cannot build the HTTP client: {0}")]
    Client(String),
    #[error("not a valid request header: {0}")]
    Header(String),
}

impl HttpSource {
    pub fn new(auth: Auth, timeout: Duration) -> Result<Self, HttpError> {
        install_crypto_provider();
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .user_agent(concat!("govledger/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| HttpError::Client(e.to_string()))?;
        let scrubber =
            govledger_stream::Scrubber::new(secrets_of(&auth).iter().map(String::as_str));
        Ok(Self {
            scrubber,
            client,
            auth,
            token: Mutex::new(None),
            headers: reqwest::header::HeaderMap::new(),
            server_pause: std::sync::Mutex::new(None),
        })
    }

    /// Records that the server asked to wait until `until` (a later hint
    /// extends, an earlier one does not shorten).
    pub fn hold_until(&self, until: tokio::time::Instant) {
        let mut p = self.server_pause.lock().unwrap_or_else(|e| e.into_inner());
        *p = Some(p.map_or(until, |t| t.max(until)));
    }

    /// The time the server asked to wait until, if it is still ahead.
    pub fn held_until(&self) -> Option<tokio::time::Instant> {
        let p = self.server_pause.lock().unwrap_or_else(|e| e.into_inner());
        p.filter(|t| *t > tokio::time::Instant::now())
    }

    /// This source with `headers` (name, value) sent on every request.
    pub fn with_headers(mut self, headers: &[(String, String)]) -> Result<Self, HttpError> {
        for (name, value) in headers {
            let (n, v) = header(name, value)?;
            self.headers.insert(n, v);
        }
        Ok(self)
    }

    /// True when a 401 may be cured by fetching a new token.
    pub fn can_refresh(&self) -> bool {
        matches!(self.auth, Auth::OAuth2 { .. })
    }

    /// Forgets a cached OAuth2 token (after a 401).
    pub async fn invalidate_token(&self) {
        *self.token.lock().await = None;
    }

    /// GET `url` with the source's auth; 2xx → [`Fetched`], anything else → a classified [`Failure`].
    pub async fn get(&self, url: &str) -> Result<Fetched, Failure> {
        self.send(reqwest::Method::GET, url, None, None).await
    }

    /// Any request with an optional JSON body and `If-Match`.
    pub async fn send(
        &self,
        method: reqwest::Method,
        url: &str,
        body: Option<Vec<u8>>,
        if_match: Option<&str>,
    ) -> Result<Fetched, Failure> {
        let mut req = self
            .client
            .request(method, url)
            .header("accept", "application/scim+json, application/json")
            .headers(self.headers.clone());
        if let Some(b) = body {
            req = req.header("content-type", "application/scim+json").body(b);
        }
        if let Some(etag) = if_match {
            req = req.header("if-match", etag);
        }
        req = self.authorize(req).await?;
        let started = Instant::now();
        let resp = match req.send().await {
            Ok(r) => r,
            Err(e) => return Err(self.scrubbed(transport_failure(e)).await),
        };
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = match resp.bytes().await {
            Ok(b) => b,
            Err(e) => return Err(self.scrubbed(transport_failure(e)).await),
        };
        let latency_ms = started.elapsed().as_millis().min(u128::from(u32::MAX)) as u32;
        if (200..300).contains(&status) {
            return Ok(Fetched {
                status,
                headers,
                body,
                latency_ms,
            });
        }
        let class = match status {
            429 => ErrorClass::RateLimited,
            403 if ratelimit::is_rate_limit_403(&headers, &body) => ErrorClass::RateLimited,
            401 | 403 => ErrorClass::Auth,
            404 => ErrorClass::NotFound,
            400..=499 => ErrorClass::ClientError,
            _ => ErrorClass::ServerError,
        };
        let retry_after = ratelimit::wait_hint(&headers, chrono::Utc::now());
        Err(self
            .scrubbed(Failure {
                class,
                http_status: status,
                retry_after,
                message: format!("HTTP {status}{}", excerpt(&body)),
            })
            .await)
    }

    /// `f` with its message scrubbed of this source's secrets, the cached
    /// OAuth2 token included: what reaches the ledger.
    async fn scrubbed(&self, mut f: Failure) -> Failure {
        let mut m = self.scrubber.scrub(&f.message);
        if let Some((t, _)) = self.token.lock().await.as_ref() {
            m = govledger_stream::Scrubber::new([t.expose()]).scrub(&m);
        }
        f.message = m;
        f
    }

    async fn authorize(
        &self,
        req: reqwest::RequestBuilder,
    ) -> Result<reqwest::RequestBuilder, Failure> {
        Ok(match &self.auth {
            Auth::None => req,
            Auth::Bearer(t) => req.bearer_auth(t.expose()),
            Auth::Basic { username, password } => req.basic_auth(username, Some(password.expose())),
            Auth::OAuth2 { .. } => {
                let token = self.oauth2_token().await?;
                req.bearer_auth(token.expose())
            }
        })
    }

    async fn oauth2_token(&self) -> Result<Secret, Failure> {
        let Auth::OAuth2 {
            token_url,
            client_id,
            client_secret,
            scope,
        } = &self.auth
        else {
            return Err(auth_failure(0, "no OAuth2 configuration".into()));
        };
        let mut cached = self.token.lock().await;
        if let Some((t, until)) = cached.as_ref()
            && Instant::now() < *until
        {
            return Ok(t.clone());
        }
        let mut form = vec![("grant_type", "client_credentials".to_owned())];
        if let Some(s) = scope {
            form.push(("scope", s.clone()));
        }
        let body = form
            .iter()
            .map(|(k, v)| format!("{k}={}", percent_encode(v)))
            .collect::<Vec<_>>()
            .join("&");
        let resp = self
            .client
            .post(token_url)
            .basic_auth(client_id, Some(client_secret.expose()))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .map_err(transport_failure)?;
        let status = resp.status().as_u16();
        let bytes = resp.bytes().await.map_err(transport_failure)?;
        if !(200..300).contains(&status) {
            return Err(auth_failure(
                status,
                format!("token endpoint answered HTTP {status}"),
            ));
        }
        let v: serde_json::Value = serde_json::from_slice(&bytes)
            .map_err(|_| auth_failure(status, "token endpoint answer is not JSON".into()))?;
        let token = v
            .get("access_token")
            .and_then(|t| t.as_str())
            .ok_or_else(|| {
                auth_failure(status, "token endpoint answer has no access_token".into())
            })?;
        let ttl = v.get("expires_in").and_then(|e| e.as_u64()).unwrap_or(300);
        let until = Instant::now() + Duration::from_secs(ttl.saturating_sub(TOKEN_EARLY_REFRESH_S));
        let secret = Secret::new(token);
        *cached = Some((secret.clone(), until));
        Ok(secret)
    }
}

/// Installs ring as the process's rustls provider (once; a no-op afterwards).
/// One provider only: async-nats uses ring too, and two providers make rustls
/// refuse to choose.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

fn auth_failure(status: u16, message: String) -> Failure {
    Failure {
        class: ErrorClass::Auth,
        http_status: status,
        retry_after: None,
        message,
    }
}

fn transport_failure(e: reqwest::Error) -> Failure {
    let class = if e.is_timeout() {
        ErrorClass::Timeout
    } else if e.is_connect() {
        ErrorClass::Connect
    } else if e.is_body() || e.is_decode() {
        ErrorClass::Parse
    } else {
        ErrorClass::Connect
    };
    // reqwest's Display names the URL, never headers; strip the URL's query anyway.
    let mut msg = e.without_url().to_string();
    msg.truncate(ERROR_EXCERPT_MAX);
    Failure {
        class,
        http_status: 0,
        retry_after: None,
        message: msg,
    }
}

fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() {
        return String::new();
    }
    let mut cut: String = text.chars().take(ERROR_EXCERPT_MAX).collect();
    if cut.len() < text.len() {
        cut.push('…');
    }
    // A server's error body may echo a URL with its userinfo.
    format!(
        ": {}",
        govledger_stream::redact_url(&cut.replace('\n', " "))
    )
}

/// `name: value` as a request header, or why it is not one.
pub fn header(
    name: &str,
    value: &str,
) -> Result<(reqwest::header::HeaderName, reqwest::header::HeaderValue), HttpError> {
    let n = reqwest::header::HeaderName::from_bytes(name.as_bytes())
        .map_err(|e| HttpError::Header(format!("{name:?}: {e}")))?;
    let v = reqwest::header::HeaderValue::from_str(value)
        .map_err(|e| HttpError::Header(format!("{name}: {e}")))?;
    Ok((n, v))
}

/// Percent-encodes everything but RFC 3986 unreserved characters (query values, path segments).
pub fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_print() {
        let a = Auth::Basic {
            username: "svc".into(),
            password: Secret::new("hunter2"),
        };
        let s = format!("{a:?} {}", Secret::new("tok"));
        assert!(!s.contains("hunter2") && !s.contains("tok"), "{s}");
    }

    #[test]
    fn urlencoding() {
        assert_eq!(percent_encode("a b&c=d"), "a%20b%26c%3Dd");
        assert_eq!(percent_encode("scim.read"), "scim.read");
    }

    #[test]
    fn excerpts_are_bounded() {
        let long = "x".repeat(1_000);
        assert!(excerpt(long.as_bytes()).chars().count() <= ERROR_EXCERPT_MAX + 3);
        assert_eq!(excerpt(b""), "");
    }
}
