//! Reaching NATS: the configured server or the embedded one, a connection with
//! the configured credentials (or, for the embedded server, the `govledger`
//! user's password from the data folder: [`local_spec`]), and the stream
//! contract checked.

use std::path::PathBuf;

use async_nats::jetstream;
use govledger_stream::{
    connect::{ConnectSpec, NatsAuth},
    contract::ensure_stream,
};

use super::{
    ServeError,
    nats_embed::{self, EmbeddedNats},
};
use crate::config::Config;
use govledger_projector::store::identity::{self, StreamIdentity};

/// Connects to NATS at `url` (one or several, comma-separated) with the
/// configured credentials, bounded by `connect_timeout_ms`.
pub async fn connect(spec: &ConnectSpec, url: &str) -> Result<async_nats::Client, ServeError> {
    Ok(govledger_stream::connect::connect(spec, url).await?)
}

/// Where NATS comes from for this process.
pub struct NatsHandle {
    pub url: String,
    pub embedded: Option<EmbeddedNats>,
}

/// The embedded server's folder: its store, log, config and users' passwords.
pub fn embedded_dir(cfg: &Config) -> PathBuf {
    cfg.data_dir().join("nats")
}

/// How a local process connects: `spec` (the `[nats]` credential) for an
/// external server; for the embedded one (no `nats.url`), the
/// [`nats_embed::GOVLEDGER_USER`] with its password from the data folder,
/// written by `govledger serve` ([`nats_for`]).
pub fn local_spec(cfg: &Config, spec: &ConnectSpec) -> Result<ConnectSpec, ServeError> {
    if cfg.nats.external_url().is_some() {
        return Ok(spec.clone());
    }
    let password = nats_embed::read_password(&embedded_dir(cfg), nats_embed::GOVLEDGER_USER)?;
    Ok(ConnectSpec {
        auth: NatsAuth::UserPassword {
            user: nats_embed::GOVLEDGER_USER.to_owned(),
            password,
        },
        ..spec.clone()
    })
}

/// Uses `nats.url` (or `nats.urls`), or starts the embedded server in
/// `<data_dir>/nats` with its generated auth config (users and passwords:
/// [`nats_embed::prepare_auth`]) and writes its URL to `<data_dir>/nats.url`
/// for local tools (`govledger simulate`, `govledger credentials siem`).
pub async fn nats_for(cfg: &Config) -> Result<NatsHandle, ServeError> {
    if let Some(url) = cfg.nats.external_url() {
        return Ok(NatsHandle {
            url,
            embedded: None,
        });
    }
    let bin = nats_embed::find_binary(cfg.nats.server_bin.as_deref())?;
    let dir = embedded_dir(cfg);
    let scope = nats_embed::AuthScope {
        stream: cfg.nats.stream.clone(),
        projector_durable: cfg.projector_durable(),
    };
    let auth = nats_embed::prepare_auth(&dir, &scope)?;
    let nats =
        EmbeddedNats::start_with_config(&bin, &dir, cfg.nats.embedded_port, Some(&auth.config))
            .await?;
    let url_file = cfg.data_dir().join("nats.url");
    std::fs::write(&url_file, format!("{}\n", nats.url)).map_err(|source| ServeError::DataDir {
        path: url_file.display().to_string(),
        source,
    })?;
    tracing::info!(
        url = %nats.url,
        bin = %bin.display(),
        store = %dir.display(),
        config = %auth.config.display(),
        users = "govledger, siem (read-only)",
        "embedded nats-server started; unauthenticated connections are refused"
    );
    Ok(NatsHandle {
        url: nats.url.clone(),
        embedded: Some(nats),
    })
}

/// The identity of the stream `info` describes.
pub fn identity_of(info: &jetstream::stream::Info) -> StreamIdentity {
    StreamIdentity {
        name: info.config.name.clone(),
        created_us: (info.created.unix_timestamp_nanos() / 1_000) as i64,
    }
}

/// Refuses a stream that is not the one `store` folded (recreated, or
/// holding fewer messages than were applied); records it on first use.
pub fn check_identity(
    store: &govledger_projector::Store,
    info: &jetstream::stream::Info,
) -> Result<(), ServeError> {
    let found = identity_of(info);
    let applied = store.meta()?.last_applied_seq;
    let recorded = store.stream_identity()?;
    identity::check(recorded.as_ref(), applied, &found, info.state.last_sequence)?;
    if recorded.as_ref() != Some(&found) {
        store.set_stream_identity(&found)?;
    }
    Ok(())
}

/// How long one JetStream API request may take before it fails.
pub const NATS_REQUEST_TIMEOUT_MS: u64 = 4_000;

/// A connection to the stream, checked against its contract.
pub struct StreamConn {
    pub client: async_nats::Client,
    pub js: jetstream::Context,
    /// The stream's state when it was checked.
    pub info: jetstream::stream::Info,
}

/// Connects to `url` as `spec` says (as the `govledger` user for the
/// embedded server: [`local_spec`]) and checks (or creates) the configured stream.
pub async fn reach_stream(
    cfg: &Config,
    spec: &ConnectSpec,
    url: &str,
) -> Result<StreamConn, ServeError> {
    let client = connect(&local_spec(cfg, spec)?, url).await?;
    let info = ensure_stream(&jetstream::new(client.clone()), &cfg.stream_spec()).await?;
    Ok(StreamConn {
        js: bounded(&client),
        client,
        info,
    })
}

/// A second connection to the stream `checked` reached (the same
/// credentials and bounds), made on the calling runtime, whose threads then
/// run its I/O. The stream is not checked again: `checked.info` is reused.
pub async fn connect_again(
    cfg: &Config,
    spec: &ConnectSpec,
    url: &str,
    checked: &jetstream::stream::Info,
) -> Result<StreamConn, ServeError> {
    let client = connect(&local_spec(cfg, spec)?, url).await?;
    Ok(StreamConn {
        js: bounded(&client),
        client,
        info: checked.clone(),
    })
}

/// JetStream on `client` with every API request (stream info, consumers,
/// message reads of the API and the audit) bounded: a silent NATS makes a
/// call fail with UNAVAILABLE, not hang to the client's deadline.
fn bounded(client: &async_nats::Client) -> jetstream::Context {
    let mut js = jetstream::new(client.clone());
    js.set_timeout(std::time::Duration::from_millis(NATS_REQUEST_TIMEOUT_MS));
    js
}
