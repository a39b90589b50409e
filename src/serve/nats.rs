//! Reaching NATS: the configured server or the embedded one, a connection with
//! the configured credentials, and the stream contract checked.

use async_nats::jetstream;
use govledger_stream::{connect::ConnectSpec, contract::ensure_stream};

use super::{
    ServeError,
    nats_embed::{self, EmbeddedNats},
};
use crate::config::Config;

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

/// Uses `nats.url` (or `nats.urls`), or starts the embedded server in `<data_dir>/nats` and writes
/// its URL to `<data_dir>/nats.url` for local tools (`govledger simulate`).
pub async fn nats_for(cfg: &Config) -> Result<NatsHandle, ServeError> {
    if let Some(url) = cfg.nats.external_url() {
        return Ok(NatsHandle {
            url,
            embedded: None,
        });
    }
    let bin = nats_embed::find_binary(cfg.nats.server_bin.as_deref())?;
    let dir = cfg.data_dir().join("nats");
    let nats = EmbeddedNats::start(&bin, &dir, cfg.nats.embedded_port).await?;
    let url_file = cfg.data_dir().join("nats.url");
    std::fs::write(&url_file, format!("{}\n", nats.url)).map_err(|source| ServeError::DataDir {
        path: url_file.display().to_string(),
        source,
    })?;
    tracing::info!(url = %nats.url, bin = %bin.display(), store = %dir.display(), "embedded nats-server started");
    Ok(NatsHandle {
        url: nats.url.clone(),
        embedded: Some(nats),
    })
}

/// A connection to the stream, checked against its contract.
pub struct StreamConn {
    pub client: async_nats::Client,
    pub js: jetstream::Context,
    /// The stream's state when it was checked.
    pub info: jetstream::stream::Info,
}

/// Connects to `url` as `spec` says and checks (or creates) the configured stream.
pub async fn reach_stream(
    cfg: &Config,
    spec: &ConnectSpec,
    url: &str,
) -> Result<StreamConn, ServeError> {
    let client = connect(spec, url).await?;
    let js = jetstream::new(client.clone());
    let info = ensure_stream(&js, &cfg.stream_spec()).await?;
    Ok(StreamConn { client, js, info })
}
