//! `govledger serve` and `govledger project`: wiring the roles together.
//!
//! Order matters: config is validated first, then storage is opened, then NATS is
//! reached and the stream contract checked, and only then are ports bound. Any
//! failure before the listener is up exits with a message naming what to fix.
//!
//! One shutdown path: a single [`CancellationToken`] is cancelled by SIGINT/SIGTERM
//! (or by the caller); the gRPC server drains, the projector finishes its batch,
//! and the embedded NATS child is stopped last.

use std::{path::PathBuf, sync::Arc, time::Duration};

use govledger_ingest::stream::{StreamError, ensure_stream};
use govledger_projector::{
    Store,
    runner::{self, ProjectorError},
    store::StoreError,
};
use govledger_proto::v1::ledger_server::LedgerServer;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use govledger_ingest::{Publisher, event::ProducerId};

use crate::{
    api::LedgerApi,
    config::{Config, ConfigError, sources::ProcessEnv},
    workers::actions::{ActionDeps, ActionManager},
    workers::scheduler::{SyncManager, WorkerDeps},
};

pub mod nats_embed;

use nats_embed::{EmbedError, EmbeddedNats};

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Embed(#[from] EmbedError),
    #[error(transparent)]
    Stream(#[from] StreamError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Projector(#[from] ProjectorError),
    #[error("cannot create data folder {path}: {source}")]
    DataDir {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "cannot reach NATS at {url}: {message}. Start a server (`nats-server -js`), fix nats.url, \
         or remove nats.url to let govledger run its own"
    )]
    Connect { url: String, message: String },
    #[error("cannot listen on {addr}: {source} (is another govledger running? set --grpc-addr)")]
    Bind {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("gRPC server failed: {0}")]
    Transport(#[from] tonic::transport::Error),
    #[error("checkpoints: {0}")]
    Audit(String),
}

/// Decisions buffered per WatchAlerts subscriber before it is told it lagged.
pub const ALERTS_BUFFER: usize = 1_024;

/// How long shutdown waits for sync workers and unacknowledged events.
pub const SHUTDOWN_GRACE_MS: u64 = 10_000;

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

/// Resolves SIGINT/SIGTERM into `token`.
pub fn cancel_on_signals(token: CancellationToken) {
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        let term = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut s) => {
                    s.recv().await;
                }
                Err(_) => std::future::pending::<()>().await,
            }
        };
        #[cfg(not(unix))]
        let term = std::future::pending::<()>();
        tokio::select! {
            _ = ctrl_c => tracing::info!("SIGINT: shutting down"),
            _ = term => tracing::info!("SIGTERM: shutting down"),
        }
        token.cancel();
    });
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

fn prepare_data_dir(cfg: &Config) -> Result<PathBuf, ServeError> {
    let dir = cfg.data_dir();
    std::fs::create_dir_all(&dir).map_err(|source| ServeError::DataDir {
        path: dir.display().to_string(),
        source,
    })?;
    Ok(dir)
}

/// Runs every role in this process until `shutdown`.
pub async fn serve(cfg: Config, shutdown: CancellationToken) -> Result<(), ServeError> {
    cfg.validate()?;
    for (i, s) in cfg.sources.iter().enumerate() {
        s.build(i, &ProcessEnv)?;
    }
    let addr = cfg.grpc_addr()?;
    let dir = prepare_data_dir(&cfg)?;
    let store = Arc::new(Store::open(
        &dir.join("sled"),
        cfg.projector.cache_capacity_bytes,
    )?);
    let nats = nats_for(&cfg).await?;
    let result = serve_with(&cfg, addr, store, &nats.url, shutdown.clone()).await;
    shutdown.cancel();
    if let Some(n) = nats.embedded {
        n.stop().await;
        tracing::info!("embedded nats-server stopped");
    }
    result
}

async fn serve_with(
    cfg: &Config,
    addr: std::net::SocketAddr,
    store: Arc<Store>,
    url: &str,
    shutdown: CancellationToken,
) -> Result<(), ServeError> {
    let client = connect(cfg, url).await?;
    let js = async_nats::jetstream::new(client.clone());
    let info = ensure_stream(&js, &cfg.stream_spec()).await?;
    tracing::info!(stream = %info.config.name, messages = info.state.messages, "stream checked");

    let (progress_tx, progress_rx) = watch::channel(0u64);
    let (alerts_tx, _) = tokio::sync::broadcast::channel(ALERTS_BUFFER);
    let mut runner_cfg = cfg.runner_config();
    runner_cfg.alerts = Some(alerts_tx.clone());
    let projector = tokio::spawn(runner::run(
        client.clone(),
        store.clone(),
        runner_cfg,
        progress_tx,
        shutdown.clone(),
    ));

    // The publisher outlives the sync workers: on shutdown they end their runs
    // (ABANDONED) and those events are flushed before the publisher stops.
    let publisher_stop = CancellationToken::new();
    let publisher = Publisher::new(
        client.clone(),
        cfg.publisher_config(),
        publisher_stop.clone(),
    );
    let producer = ProducerId::new(format!("serve-{}", std::process::id()));
    let (syncs, mut sync_tasks) = SyncManager::start(
        cfg,
        &ProcessEnv,
        WorkerDeps {
            publisher: publisher.clone(),
            producer: producer.clone(),
            store: store.clone(),
            applied: progress_rx.clone(),
            stream_last_seq_at_start: info.state.last_sequence,
            cancel: shutdown.clone(),
        },
    )?;
    let (actions, action_tasks) = ActionManager::start(
        cfg,
        &ProcessEnv,
        ActionDeps {
            publisher: publisher.clone(),
            producer,
            store: store.clone(),
            applied: progress_rx,
            stream_last_seq_at_start: info.state.last_sequence,
            cancel: shutdown.clone(),
        },
    )?;
    sync_tasks.extend(action_tasks);
    let key_path = cfg
        .audit
        .signing_key_file
        .clone()
        .unwrap_or_else(|| cfg.data_dir().join("audit").join("signing.key"));
    let key = crate::checkpoints::load_or_create_key(&key_path)
        .map_err(|e| ServeError::Audit(e.to_string()))?;
    let checkpointer = Arc::new(
        crate::checkpoints::Checkpointer::start(
            key,
            js.clone(),
            store.clone(),
            cfg.nats.stream.clone(),
        )
        .await
        .map_err(ServeError::Audit)?,
    );
    if cfg.audit.checkpoint_interval_ms > 0 {
        sync_tasks.push(tokio::spawn(checkpointer.clone().run(
            Duration::from_millis(cfg.audit.checkpoint_interval_ms),
            shutdown.clone(),
        )));
    }
    sync_tasks.push(tokio::spawn(crate::workers::clock_alerts::run(
        store.clone(),
        syncs.clone(),
        alerts_tx.clone(),
        shutdown.clone(),
    )));

    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| ServeError::Bind {
            addr: addr.to_string(),
            source,
        })?;
    let bound = listener.local_addr().map_err(|source| ServeError::Bind {
        addr: addr.to_string(),
        source,
    })?;

    let (health_reporter, health) = tonic_health::server::health_reporter();
    health_reporter
        .set_serving::<LedgerServer<LedgerApi>>()
        .await;
    // Reflection v1 and v1alpha, so grpcurl and every language's reflection client work.
    let reflection_err = |e: tonic_reflection::server::Error| ServeError::Bind {
        addr: addr.to_string(),
        source: std::io::Error::other(e.to_string()),
    };
    let reflection_v1 = reflection().build_v1().map_err(reflection_err)?;
    let reflection_v1alpha = reflection().build_v1alpha().map_err(reflection_err)?;
    let api = LedgerApi::new(crate::api::ApiParts {
        store: store.clone(),
        js: Some(js.clone()),
        stream: cfg.nats.stream.clone(),
        abandon_after_ms: cfg.api.abandon_after_ms,
        syncs,
        actions,
        alerts: alerts_tx,
        checkpointer: Some(checkpointer),
        scratch_dir: cfg.data_dir().join("scratch"),
    });
    tracing::info!("gRPC listening on {bound}");
    let server = tonic::transport::Server::builder()
        .add_service(health)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(LedgerServer::new(api))
        .serve_with_incoming_shutdown(
            // TCP_NODELAY: without it small responses can wait ~40 ms on Nagle
            // and delayed ACKs (measured: GetSource p50 44 ms before, see BENCHMARKS.md).
            tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)),
            shutdown.clone().cancelled_owned(),
        );
    let served = server.await;
    shutdown.cancel();
    let grace = Duration::from_millis(SHUTDOWN_GRACE_MS);
    if tokio::time::timeout(grace, futures::future::join_all(sync_tasks))
        .await
        .is_err()
    {
        tracing::warn!("sync workers did not stop within {} ms", grace.as_millis());
    }
    if tokio::time::timeout(grace, publisher.flush())
        .await
        .is_err()
    {
        tracing::warn!(
            "events still unacknowledged after {} ms; they are retried at the next start only if their run is",
            grace.as_millis()
        );
    }
    publisher_stop.cancel();
    let projected = match projector.await {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "projector task panicked");
            Ok(())
        }
    };
    if let Err(e) = store.flush().await {
        tracing::error!(error = %e, "final flush failed");
    }
    served?;
    projected?;
    tracing::info!("stopped");
    Ok(())
}

/// What a rebuild found.
pub struct RebuildReport {
    pub seq: u64,
    pub live_digest: String,
    pub rebuilt_digest: String,
    pub events: u64,
    pub elapsed: Duration,
}

/// Folds the whole stream, from sequence 1, into a fresh sled folder up to the
/// live projection's last applied sequence, and compares the two state digests.
/// `live` is (last applied seq, digest) as the running govledger reported them.
pub async fn rebuild(
    cfg: &Config,
    nats_url: &str,
    live: (u64, String),
    dir: &std::path::Path,
) -> Result<RebuildReport, ServeError> {
    let client = connect(cfg, nats_url).await?;
    let js = async_nats::jetstream::new(client.clone());
    ensure_stream(&js, &cfg.stream_spec()).await?;
    let store = Arc::new(Store::open(dir, cfg.projector.cache_capacity_bytes)?);
    let mut rc = cfg.runner_config();
    rc.stop_at_seq = Some(live.0);
    // Its own durable consumer, so the live projector's is never touched.
    rc.durable = format!("govledger-rebuild-{}", std::process::id());
    let durable = rc.durable.clone();
    let (tx, _rx) = watch::channel(0u64);
    let started = std::time::Instant::now();
    runner::run(client, store.clone(), rc, tx, CancellationToken::new()).await?;
    store.flush().await?;
    if let Ok(stream) = js.get_stream(&cfg.nats.stream).await {
        let _ = stream.delete_consumer(&durable).await;
    }
    let (meta, rebuilt_digest) = store.digest_at()?;
    Ok(RebuildReport {
        seq: meta.last_applied_seq,
        live_digest: live.1,
        rebuilt_digest,
        events: meta.events_applied,
        elapsed: started.elapsed(),
    })
}

/// A reflection builder that knows govledger's and the health service's protos.
fn reflection() -> tonic_reflection::server::Builder<'static> {
    tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(govledger_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
}

/// `govledger project`: only the projector. With `exit_at_end` it returns once
/// everything the stream held at start is applied (a catch-up or rebuild run).
pub async fn project(
    cfg: Config,
    exit_at_end: bool,
    shutdown: CancellationToken,
) -> Result<(), ServeError> {
    cfg.validate()?;
    let dir = prepare_data_dir(&cfg)?;
    let store = Arc::new(Store::open(
        &dir.join("sled"),
        cfg.projector.cache_capacity_bytes,
    )?);
    let nats = nats_for(&cfg).await?;
    let client = connect(&cfg, &nats.url).await?;
    let js = async_nats::jetstream::new(client.clone());
    let info = ensure_stream(&js, &cfg.stream_spec()).await?;
    let mut runner_cfg = cfg.runner_config();
    if exit_at_end {
        runner_cfg.stop_at_seq = Some(info.state.last_sequence);
    }
    let (tx, mut rx) = watch::channel(0u64);
    let progress = tokio::spawn(async move {
        let mut last_logged = 0u64;
        while rx.changed().await.is_ok() {
            let seq = *rx.borrow();
            if seq >= last_logged + 10_000 || last_logged == 0 {
                tracing::info!(last_applied_seq = seq, "projected");
                last_logged = seq;
            }
        }
    });
    let r = runner::run(client, store.clone(), runner_cfg, tx, shutdown.clone()).await;
    progress.abort();
    store.flush().await?;
    tracing::info!("projector stopped: {}", runner::describe(&store.meta()?));
    if let Some(n) = nats.embedded {
        n.stop().await;
    }
    r.map_err(Into::into)
}
