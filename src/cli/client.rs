//! What the client commands share: the gRPC connection to a running govledger,
//! its errors as text, the "not OK" answer (exit code 3) and flag parsing.

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::Context as _;
use govledger_proto::v1::{AsOf, ledger_client::LedgerClient};
use tonic::{
    metadata::{Ascii, MetadataValue},
    service::{Interceptor, interceptor::InterceptedService},
    transport::{Certificate, Channel, ClientTlsConfig, Identity},
};

use super::{args::ClientFlags, output};
use crate::{auth::identify::LOCAL_ADMIN_TOKEN_FILE, config::DEFAULT_DATA_DIR};

/// How long connecting to a running govledger may take.
pub const CONNECT_TIMEOUT_MS: u64 = 5_000;

/// A negative answer (not COMPLETE, not ready): exit code 3, nothing more to print.
#[derive(Debug)]
pub struct NotOk;

impl std::fmt::Display for NotOk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("not ok")
    }
}

impl std::error::Error for NotOk {}

/// `verify-bundle` without a pinned key: the bundle holds together under its
/// own key, which proves nothing about who signed it. Exit code 4.
#[derive(Debug)]
pub struct Unpinned;

impl std::fmt::Display for Unpinned {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("unpinned: no --public-key given")
    }
}

impl std::error::Error for Unpinned {}

/// A ledger client that sends its bearer token with every call.
pub type Client = LedgerClient<InterceptedService<Channel, BearerToken>>;

/// Adds `authorization: Bearer <token>` to every request (nothing when no
/// token is set: the server then asks for a client certificate).
#[derive(Clone, Default)]
pub struct BearerToken(Option<MetadataValue<Ascii>>);

impl BearerToken {
    /// From the token text (surrounding whitespace dropped). The error never
    /// repeats the token.
    pub fn new(token: &str) -> anyhow::Result<Self> {
        let v = MetadataValue::try_from(format!("Bearer {}", token.trim()))
            .map_err(|_| anyhow::anyhow!("the token holds characters a header cannot carry"))?;
        Ok(Self(Some(v)))
    }

    pub fn none() -> Self {
        Self(None)
    }
}

impl std::fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "BearerToken(redacted)"
        } else {
            "BearerToken(none)"
        })
    }
}

impl Interceptor for BearerToken {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(v) = &self.0 {
            req.metadata_mut().insert("authorization", v.clone());
        }
        Ok(req)
    }
}

/// The token the CLI sends: `--token-file`, `GOVLEDGER_TOKEN_FILE`,
/// `GOVLEDGER_TOKEN`, else the local admin token a `serve` on this machine
/// wrote to `./govledger-data/admin.token` (none when that is absent).
pub fn token_of(f: &ClientFlags) -> anyhow::Result<BearerToken> {
    let file = f
        .token_file
        .clone()
        .or_else(|| std::env::var_os("GOVLEDGER_TOKEN_FILE").map(PathBuf::from));
    if let Some(path) = file {
        let t = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read the token file {}", path.display()))?;
        if t.trim().is_empty() {
            anyhow::bail!("the token file {} is empty", path.display());
        }
        return BearerToken::new(&t);
    }
    if let Ok(t) = std::env::var("GOVLEDGER_TOKEN")
        && !t.trim().is_empty()
    {
        return BearerToken::new(&t);
    }
    let local = Path::new(DEFAULT_DATA_DIR).join(LOCAL_ADMIN_TOKEN_FILE);
    match std::fs::read_to_string(&local) {
        Ok(t) if !t.trim().is_empty() => BearerToken::new(&t),
        _ => Ok(BearerToken::none()),
    }
}

/// Connects to the govledger at `--grpc-addr`: TLS when `--tls-ca` is given
/// (with `--tls-cert`/`--tls-key` for mTLS), the bearer token of [`token_of`].
pub async fn connect(f: &ClientFlags) -> anyhow::Result<Client> {
    let token = token_of(f)?;
    let scheme = if f.tls_ca.is_some() { "https" } else { "http" };
    let url = format!("{scheme}://{}", f.grpc_addr);
    let mut ep = tonic::transport::Endpoint::from_shared(url.clone())?
        .connect_timeout(Duration::from_millis(CONNECT_TIMEOUT_MS));
    if let Some(ca) = &f.tls_ca {
        let pem =
            std::fs::read(ca).with_context(|| format!("cannot read --tls-ca {}", ca.display()))?;
        let mut tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(pem));
        match (&f.tls_cert, &f.tls_key) {
            (Some(c), Some(k)) => {
                let cert = std::fs::read(c)
                    .with_context(|| format!("cannot read --tls-cert {}", c.display()))?;
                let key = std::fs::read(k)
                    .with_context(|| format!("cannot read --tls-key {}", k.display()))?;
                tls = tls.identity(Identity::from_pem(cert, key));
            }
            (None, None) => {}
            _ => anyhow::bail!("--tls-cert and --tls-key go together"),
        }
        if let Some(d) = &f.tls_domain {
            tls = tls.domain_name(d.clone());
        }
        ep = ep
            .tls_config(tls)
            .context("the TLS settings (--tls-ca, --tls-cert, --tls-key)")?;
    }
    let ch = ep.connect().await.with_context(|| {
        let hint = if f.tls_ca.is_some() {
            "is `govledger serve` running with TLS, and does --tls-ca name the CA of its certificate?"
        } else {
            "is `govledger serve` running? (a server with TLS needs --tls-ca)"
        };
        format!("cannot reach govledger at {url}; {hint}")
    })?;
    Ok(LedgerClient::with_interceptor(ch, token))
}

/// A gRPC error as the user reads it: `code: message`.
pub fn status_err(s: tonic::Status) -> anyhow::Error {
    anyhow::anyhow!("{}: {}", s.code(), s.message())
}

/// `--as-of` (a stream sequence or an RFC 3339 time), when given.
pub fn as_of_arg(v: Option<&str>) -> anyhow::Result<Option<AsOf>> {
    v.map(output::parse_as_of)
        .transpose()
        .map_err(|e| anyhow::anyhow!(e))
}

/// An RFC 3339 time flag in microseconds since the epoch (0 when absent).
pub fn time_arg(flag: &str, v: Option<&str>) -> anyhow::Result<i64> {
    match v {
        None => Ok(0),
        Some(s) => chrono::DateTime::parse_from_rfc3339(s)
            .map(|t| t.timestamp_micros())
            .map_err(|e| {
                anyhow::anyhow!(
                    "{flag} {s:?} is not an RFC 3339 time such as 2026-10-31T23:59:59Z ({e})"
                )
            }),
    }
}
