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

/// A flag's value is wrong (a malformed address, a file that cannot be read,
/// flags that need each other): exit code 2, found before anything is
/// reached. The message names the flag.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

fn usage(message: impl Into<String>) -> anyhow::Error {
    UsageError(message.into()).into()
}

/// `--from-seq` .. `--to-seq` (0 = open) in order, or a usage error.
pub fn check_seq_range(from_seq: u64, to_seq: u64) -> anyhow::Result<()> {
    if to_seq > 0 && to_seq < from_seq {
        return Err(usage(format!(
            "--to-seq {to_seq} is below --from-seq {from_seq}: the range runs from --from-seq up to --to-seq"
        )));
    }
    Ok(())
}

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
        let t = std::fs::read_to_string(&path).map_err(|e| {
            usage(format!(
                "cannot read the token file {} (--token-file or GOVLEDGER_TOKEN_FILE): {e}",
                path.display()
            ))
        })?;
        if t.trim().is_empty() {
            return Err(usage(format!(
                "the token file {} (--token-file or GOVLEDGER_TOKEN_FILE) is empty",
                path.display()
            )));
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
    check_tls_flags(f)?;
    let token = token_of(f)?;
    let scheme = if f.tls_ca.is_some() { "https" } else { "http" };
    let url = format!("{scheme}://{}", f.grpc_addr);
    let mut ep = grpc_endpoint(&url, &f.grpc_addr)?
        .connect_timeout(Duration::from_millis(CONNECT_TIMEOUT_MS));
    if let Some(ca) = &f.tls_ca {
        let read = |flag: &str, p: &Path| {
            std::fs::read(p).map_err(|e| usage(format!("cannot read {flag} {}: {e}", p.display())))
        };
        let mut tls =
            ClientTlsConfig::new().ca_certificate(Certificate::from_pem(read("--tls-ca", ca)?));
        if let (Some(c), Some(k)) = (&f.tls_cert, &f.tls_key) {
            tls = tls.identity(Identity::from_pem(
                read("--tls-cert", c)?,
                read("--tls-key", k)?,
            ));
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

/// The TLS flags that need each other: a client certificate needs its key,
/// and every TLS flag needs `--tls-ca` (without it the CLI would connect in
/// plaintext and send the token in the clear).
fn check_tls_flags(f: &ClientFlags) -> anyhow::Result<()> {
    match (&f.tls_cert, &f.tls_key) {
        (Some(_), None) => {
            return Err(usage(
                "--tls-cert needs --tls-key (the client certificate's key)",
            ));
        }
        (None, Some(_)) => {
            return Err(usage("--tls-key needs --tls-cert (the client certificate)"));
        }
        _ => {}
    }
    if f.tls_ca.is_none() {
        let given: Vec<&str> = [
            (f.tls_cert.is_some(), "--tls-cert"),
            (f.tls_key.is_some(), "--tls-key"),
            (f.tls_domain.is_some(), "--tls-domain"),
        ]
        .into_iter()
        .filter_map(|(set, flag)| set.then_some(flag))
        .collect();
        if !given.is_empty() {
            return Err(usage(format!(
                "{} need --tls-ca (the CA of the server's certificate): without it the connection is plaintext",
                given.join(" and ")
            )));
        }
    }
    Ok(())
}

/// The endpoint for `url`, or a usage error naming `--grpc-addr` (`addr` as
/// given, quoted short).
fn grpc_endpoint(url: &str, addr: &str) -> anyhow::Result<tonic::transport::Endpoint> {
    let bad = || {
        let shown: String = addr
            .chars()
            .take(64)
            .flat_map(char::escape_default)
            .collect();
        usage(format!(
            "--grpc-addr \"{shown}\" is not an address: give host:port (e.g. 127.0.0.1:50051), without a scheme or a path"
        ))
    };
    let ep = tonic::transport::Endpoint::from_shared(url.to_owned()).map_err(|_| bad())?;
    let uri = ep.uri();
    let plain = uri
        .path_and_query()
        .is_none_or(|p| p.as_str() == "/" || p.as_str().is_empty());
    if uri.host().is_none_or(str::is_empty) || !plain || addr.contains('/') {
        return Err(bad());
    }
    Ok(ep)
}

/// A gRPC error as the user reads it: `code: message`.
/// `msg` as a request that any node of a cluster answers only once it has
/// applied stream sequence `seq` (`govledger-min-seq`; 0: no such wait).
pub fn at_least<T>(msg: T, seq: u64) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    if seq > 0
        && let Ok(v) = seq.to_string().parse()
    {
        r.metadata_mut()
            .insert(crate::cluster::consistency::MIN_SEQ_HEADER, v);
    }
    r
}

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
