//! Reaching NATS: the configured server or the embedded one, a connection with
//! the configured credentials, and the stream contract checked.

use std::time::Duration;

use async_nats::jetstream;
use govledger_ingest::stream::ensure_stream;

use super::{
    ServeError,
    nats_embed::{self, EmbeddedNats},
};
use crate::config::Config;

/// Connects to NATS with the configured credentials, bounded by `connect_timeout_ms`.
pub async fn connect(cfg: &Config, url: &str) -> Result<async_nats::Client, ServeError> {
    let err = |message: String| ServeError::Connect {
        url: url.to_owned(),
        message,
    };
    let mut opts = async_nats::ConnectOptions::new()
        .name("govledger")
        .connection_timeout(Duration::from_millis(cfg.nats.connect_timeout_ms));
    if let Some(creds) = &cfg.nats.credentials_file {
        opts = opts
            .credentials_file(creds)
            .await
            .map_err(|e| err(format!("cannot use nats.credentials_file: {e}")))?;
    }
    let timeout = Duration::from_millis(cfg.nats.connect_timeout_ms);
    match tokio::time::timeout(timeout, opts.connect(url)).await {
        Ok(Ok(c)) => Ok(c),
        Ok(Err(e)) => Err(err(e.to_string())),
        Err(_) => Err(err(format!(
            "no connection within {} ms",
            timeout.as_millis()
        ))),
    }
}

/// Where NATS comes from for this process.
pub struct NatsHandle {
    pub url: String,
    pub embedded: Option<EmbeddedNats>,
}

/// Uses `nats.url`, or starts the embedded server in `<data_dir>/nats` and writes
/// its URL to `<data_dir>/nats.url` for local tools (`govledger simulate`).
pub async fn nats_for(cfg: &Config) -> Result<NatsHandle, ServeError> {
    if let Some(url) = &cfg.nats.url {
        return Ok(NatsHandle {
            url: url.clone(),
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

/// Connects to `url` and checks (or creates) the configured stream.
pub async fn reach_stream(cfg: &Config, url: &str) -> Result<StreamConn, ServeError> {
    let client = connect(cfg, url).await?;
    let js = jetstream::new(client.clone());
    let info = ensure_stream(&js, &cfg.stream_spec()).await?;
    Ok(StreamConn { client, js, info })
}
