//! What the client commands share: the gRPC connection to a running govledger,
//! its errors as text, the "not OK" answer (exit code 3) and flag parsing.

use std::time::Duration;

use anyhow::Context as _;
use govledger_proto::v1::{AsOf, ledger_client::LedgerClient};
use tonic::transport::Channel;

use super::{args::ClientFlags, output};

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

/// Connects to the govledger at `--grpc-addr`.
pub async fn connect(f: &ClientFlags) -> anyhow::Result<LedgerClient<Channel>> {
    let url = format!("http://{}", f.grpc_addr);
    let ch = tonic::transport::Endpoint::from_shared(url.clone())?
        .connect_timeout(Duration::from_millis(CONNECT_TIMEOUT_MS))
        .connect()
        .await
        .with_context(|| {
            format!("cannot reach govledger at {url}; is `govledger serve` running?")
        })?;
    Ok(LedgerClient::new(ch))
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
