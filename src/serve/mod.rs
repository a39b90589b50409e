//! `govledger serve`: wiring the roles together, in named steps.
//!
//! Order matters: the config is validated and resolved first and the gRPC
//! listener bound (both by the caller), then storage is opened, then NATS is
//! reached and the stream contract checked, then the projector and the workers
//! start, and only then does gRPC serve. Any failure before that exits with a
//! message naming what to fix.
//!
//! One shutdown path: a single [`CancellationToken`] is cancelled by SIGINT/SIGTERM
//! (or by the caller); the gRPC server drains, the projector finishes its batch,
//! and the embedded NATS child is stopped last.
//!
//! Layout:
//! - this file: [`serve`] (the steps in order), [`bind`], [`ServeError`];
//! - [`nats`]: the NATS server to use, the connection, the stream check;
//! - [`nats_embed`]: the embedded `nats-server` child process;
//! - [`roles`]: starting the projector, the workers, the checkpointer, the clock's alerts;
//! - [`background`]: the lower-priority threads (and NATS connection) those roles run on;
//! - [`grpc`]: the gRPC router (ledger, health, reflection);
//! - [`health`]: the NATS watch: health NOT_SERVING and an alert while NATS does not answer;
//! - [`shutdown`]: the signals and the drain after them;
//! - [`tls`]: the listener's TLS, the plaintext-beyond-loopback refusal, who may call;
//! - [`projection`]: the projector alone: `govledger project` and `govledger rebuild`.
//!
//! The HTTP listener (`crate::http`) is bound with the gRPC one's checks and
//! served beside it, from the same queries, health state and credentials.

use std::sync::Arc;

use govledger_projector::{Store, runner::ProjectorError, store::StoreError};
use govledger_stream::contract::StreamError;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::{
    api::LedgerApi,
    config::{Config, ConfigError, DEFAULT_GRPC_ADDR, Resolved},
};

pub mod background;
pub mod grpc;
pub mod health;
pub mod nats;
pub mod nats_embed;
pub mod projection;
pub mod roles;
pub mod shutdown;
pub mod tls;

pub use nats::connect;
use nats_embed::EmbedError;
pub use projection::{RebuildReport, project, rebuild};
pub use shutdown::{SHUTDOWN_GRACE_MS, cancel_on_signals};

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Embed(#[from] EmbedError),
    #[error(transparent)]
    Stream(#[from] StreamError),
    /// The stream is not the one the projection folded.
    #[error(transparent)]
    NotTheStream(#[from] govledger_projector::store::identity::StreamMismatch),
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
    /// Names the url and how to fix it.
    #[error(transparent)]
    Connect(#[from] govledger_stream::connect::ConnectError),
    #[error("cannot listen on {addr}: {source} (is another govledger running? set --grpc-addr)")]
    Bind {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("config key `{key}`: {message}")]
    Tls { key: String, message: String },
    #[error(
        "refusing to serve gRPC in plaintext on {addr}, which is not a loopback address: set tls.cert_file and \
         tls.key_file (README: Security), or pass --insecure-plaintext when a TLS proxy in front terminates TLS"
    )]
    Plaintext { addr: String },
    #[error(
        "refusing to serve HTTP in plaintext on {addr} (http.addr), which is not a loopback address: the HTTP \
         listener has no TLS of its own; use a loopback address behind a TLS proxy, or pass --insecure-plaintext \
         when a TLS proxy in front terminates TLS"
    )]
    HttpPlaintext { addr: String },
    #[error("gRPC server failed: {0}")]
    Transport(#[from] tonic::transport::Error),
    #[error("checkpoints: {0}")]
    Audit(String),
    #[error(transparent)]
    Alerts(#[from] crate::alerts::AlertError),
    #[error(transparent)]
    Ocsf(#[from] crate::ocsf::feed::FeedError),
    #[error("cannot start the background threads: {0}")]
    Background(std::io::Error),
    #[error(transparent)]
    Lease(#[from] crate::cluster::lease::LeaseError),
    #[error(
        "`govledger {role}` is one role of a cluster: set cluster.node (this process's name) and \
         nats.urls (the cluster's servers) in the config, or run `govledger serve` for one process"
    )]
    NotClustered { role: &'static str },
}

/// Decisions buffered per WatchAlerts subscriber before it is told it lagged.
pub const ALERTS_BUFFER: usize = 1_024;

/// Binds the HTTP listener on `http.addr`, if set. It serves plaintext: on
/// a loopback address, or elsewhere only with `--insecure-plaintext` (a TLS
/// proxy in front).
async fn bind_http(cfg: &Config) -> Result<Option<TcpListener>, ServeError> {
    let Some(addr) = cfg.http_addr()? else {
        return Ok(None);
    };
    if !addr.ip().is_loopback() {
        if !cfg.grpc.insecure_plaintext {
            return Err(ServeError::HttpPlaintext {
                addr: addr.to_string(),
            });
        }
        tracing::warn!(
            "INSECURE: HTTP on {addr} is plaintext (--insecure-plaintext): tokens and ledger data cross the network unencrypted"
        );
    }
    crate::http::bind(addr).await.map(Some)
}

/// Binds the gRPC listener on `grpc.addr` (port 0 picks a free port).
pub async fn bind(cfg: &Config) -> Result<TcpListener, ServeError> {
    let addr = cfg.grpc_addr()?;
    tls::check_plaintext(cfg, addr)?;
    TcpListener::bind(addr)
        .await
        .map_err(|source| ServeError::Bind {
            addr: addr.to_string(),
            source,
        })
}

/// Creates the data folder and opens the sled projection in it, folding with
/// `trust` (the producer keys whose seals count).
pub(crate) fn open_storage(
    cfg: &Config,
    trust: Arc<govledger_stream::seal::Trust>,
) -> Result<Arc<Store>, ServeError> {
    let dir = cfg.data_dir();
    std::fs::create_dir_all(&dir).map_err(|source| ServeError::DataDir {
        path: dir.display().to_string(),
        source,
    })?;
    Ok(Arc::new(
        Store::open(&dir.join("sled"), cfg.projector.cache_capacity_bytes)?.with_trust(trust),
    ))
}

/// Runs every role in this process, gRPC on `listener`, until `shutdown`.
pub async fn serve(
    resolved: Resolved,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<(), ServeError> {
    serve_roles(resolved, roles::Roles::ALL, listener, shutdown).await
}

/// Runs `roles` in this process, gRPC on `listener`, until `shutdown`. A
/// role alone (`ingest`, `api`) needs `[cluster] node`.
pub async fn serve_roles(
    resolved: Resolved,
    roles: roles::Roles,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<(), ServeError> {
    if roles != roles::Roles::ALL && resolved.config.cluster.node.is_none() {
        return Err(ServeError::NotClustered { role: roles.name() });
    }
    // Who may call, and the TLS files: checked before anything starts.
    let guard = Guard {
        auth: tls::authenticator(&resolved.config)?,
        tls: tls::server_tls(&resolved.config)?,
        http: bind_http(&resolved.config).await?,
    };
    // The producer key, read (or made) once: the fold trusts it, the
    // publisher seals with it.
    let provenance = crate::config::provenance::load(&resolved.config)?;
    let store = open_storage(&resolved.config, provenance.trust.clone())?;
    let nats = nats::nats_for(&resolved.config).await?;
    // The embedded server is kept running (restarted when it dies) until
    // everything that needs it has drained, then stopped last.
    let nats_stop = CancellationToken::new();
    // The stores' disks: the data folder (sled), and the embedded server's
    // store, which the watch may ask to be restarted.
    let mut storage_paths = vec![resolved.config.data_dir().join("sled")];
    let restart_nats = nats.embedded.as_ref().map(|_| {
        storage_paths.push(nats::embedded_dir(&resolved.config));
        Arc::new(tokio::sync::Notify::new())
    });
    let supervisor = nats.embedded.map(|n| {
        let restart = restart_nats.clone().unwrap_or_default();
        nats_embed::supervise(n, restart, nats_stop.clone())
    });
    let result = serve_with(
        (&resolved, roles),
        listener,
        guard,
        store,
        provenance.key,
        Reach {
            url: nats.url,
            storage_paths,
            restart_nats,
        },
        shutdown.clone(),
    )
    .await;
    shutdown.cancel();
    nats_stop.cancel();
    if let Some(s) = supervisor {
        let bound = std::time::Duration::from_millis(nats_embed::STOP_GRACE_MS + 2_000);
        if tokio::time::timeout(bound, s).await.is_err() {
            tracing::warn!(
                "the embedded nats-server did not stop within {} ms",
                bound.as_millis()
            );
        }
    }
    result
}

/// Starts the background runtime, and the projector and the workers on it,
/// connected to NATS from there (the connection's I/O runs on those threads
/// too) to the stream `checked` describes.
async fn start_roles(
    (resolved, which): (&Resolved, roles::Roles),
    url: &str,
    checked: &async_nats::jetstream::stream::Info,
    store: Arc<Store>,
    seal_key: Arc<govledger_stream::seal::ProducerKey>,
    inst: roles::Instruments,
    shutdown: CancellationToken,
) -> Result<
    (
        background::Background,
        (roles::Projector, roles::Handles, roles::Workers),
    ),
    ServeError,
> {
    let background = background::Background::start(resolved.config.api.background_nice)
        .map_err(ServeError::Background)?;
    let (resolved, url, checked) = (resolved.clone(), url.to_owned(), checked.clone());
    let roles = background
        .handle()
        .spawn(async move {
            let conn =
                nats::connect_again(&resolved.config, &resolved.nats, &url, &checked).await?;
            let projector = roles::start_projector(&resolved, &conn, &store, &inst, &shutdown);
            let (handles, workers) = roles::start_workers(
                (&resolved, which),
                &conn,
                &store,
                seal_key,
                &projector,
                &inst,
                &shutdown,
            )
            .await?;
            Ok::<_, ServeError>((projector, handles, workers))
        })
        .await
        .map_err(|e| ServeError::Background(std::io::Error::other(e.to_string())))??;
    Ok((background, roles))
}

/// Logs the stream checked and what this process runs on it.
fn announce_stream(cfg: &Config, info: &async_nats::jetstream::stream::Info, which: roles::Roles) {
    tracing::info!(stream = %info.config.name, messages = info.state.messages,
        replicas = info.config.num_replicas, roles = which.name(), node = ?cfg.cluster.node,
        "stream checked");
}

/// Logs where gRPC listens. "gRPC listening on ADDR" ends the line: tests
/// and scripts read the address from it.
fn announce_grpc(cfg: &Config, bound: std::net::SocketAddr) {
    let scheme = if cfg.tls.enabled() {
        "TLS"
    } else {
        "plaintext"
    };
    tracing::info!("{scheme} gRPC listening on {bound}");
}

/// Serves gRPC on `listener` until `shutdown`; open calls (a WatchAlerts
/// stream, a call waiting on NATS) get a bounded time to finish once
/// shutdown begins, then they are closed.
async fn serve_grpc(
    router: tonic::transport::server::Router,
    listener: TcpListener,
    shutdown: &CancellationToken,
) -> Result<(), tonic::transport::Error> {
    let server = router.serve_with_incoming_shutdown(
        // TCP_NODELAY: without it small responses can wait ~40 ms on Nagle
        // and delayed ACKs (measured: GetSource p50 44 ms before, see BENCHMARKS.md).
        tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)),
        shutdown.clone().cancelled_owned(),
    );
    tokio::pin!(server);
    tokio::select! {
        r = &mut server => r,
        _ = async {
            shutdown.cancelled().await;
            tokio::time::sleep(std::time::Duration::from_millis(shutdown::GRPC_DRAIN_MS)).await;
        } => {
            tracing::warn!(
                "gRPC calls still open {} ms after shutdown began; closing them",
                shutdown::GRPC_DRAIN_MS
            );
            Ok(())
        }
    }
}

/// Clears scratch folds an earlier process left, and keeps each source's
/// snapshot fresh on the `[audit]` cadence, below the API's priority, over
/// `queries` (given back).
fn keep_source_snapshots(
    cfg: &Config,
    background: &background::Background,
    queries: Arc<crate::api::queries::Queries>,
    shutdown: &CancellationToken,
) -> Arc<crate::api::queries::Queries> {
    crate::audit::source_snapshots::remove_interrupted(&cfg.data_dir().join("scratch"));
    if cfg.audit.source_snapshot_interval_ms == 0 {
        return queries;
    }
    let (q, every, stop) = (
        queries.clone(),
        std::time::Duration::from_millis(cfg.audit.source_snapshot_interval_ms),
        shutdown.clone(),
    );
    background.handle().spawn(async move {
        crate::audit::source_snapshots::keep_fresh(&q.asof, every, stop).await;
    });
    queries
}

/// The ledger service over the store, the stream and the workers' handles.
fn ledger_api(
    cfg: &Config,
    conn: &nats::StreamConn,
    store: &Arc<Store>,
    projector: &roles::Projector,
    handles: roles::Handles,
    storage_full: &tokio::sync::watch::Sender<Option<String>>,
    (pause, health): (
        tokio::sync::watch::Sender<bool>,
        tokio::sync::watch::Receiver<health::HealthState>,
    ),
) -> LedgerApi {
    LedgerApi::new(crate::api::ApiParts {
        store: store.clone(),
        js: conn.js.clone(),
        stream: cfg.nats.stream.clone(),
        abandon_after_ms: cfg.api.abandon_after_ms,
        syncs: handles.syncs,
        actions: handles.actions,
        deletions: handles.deletions,
        alerts: projector.alerts.clone(),
        checkpointer: handles.checkpointer,
        scratch_dir: cfg.data_dir().join("scratch"),
        source_snapshots_kept: cfg.audit.source_snapshots_kept,
        projector_stopped: projector.stopped.clone(),
        storage_full: storage_full.subscribe(),
        pause,
        health,
        // Checked when the config was resolved; resolving again is pure.
        leavers: cfg.leavers.resolve(&cfg.sources).ok().flatten(),
    })
}

/// What the health watch reads besides NATS, and where it tells it.
fn probes(
    cfg: &Config,
    projector: &roles::Projector,
    paused: tokio::sync::watch::Receiver<bool>,
    state: tokio::sync::watch::Sender<health::HealthState>,
) -> health::Probes {
    health::Probes {
        projector_stopped: projector.stopped.clone(),
        applied: projector.applied.clone(),
        paused,
        lag_bound_events: cfg.projector.lag_bound_events,
        state,
    }
}

/// Waits (bounded) for the HTTP listener to close after shutdown began.
async fn close_http(http: Option<tokio::task::JoinHandle<std::io::Result<()>>>) {
    let Some(h) = http else {
        return;
    };
    let bound = std::time::Duration::from_millis(shutdown::GRPC_DRAIN_MS);
    match tokio::time::timeout(bound, h).await {
        Ok(Ok(Err(e))) => tracing::warn!("the HTTP listener failed: {e}"),
        Err(_) => tracing::warn!(
            "HTTP requests still open {} ms after shutdown began; closing them",
            bound.as_millis()
        ),
        _ => {}
    }
}

/// Serves the HTTP listener (when `http.addr` bound one) until `shutdown`.
fn start_http(
    listener: Option<TcpListener>,
    state: crate::http::HttpState,
    shutdown: &CancellationToken,
) -> Result<Option<tokio::task::JoinHandle<std::io::Result<()>>>, ServeError> {
    let Some(listener) = listener else {
        return Ok(None);
    };
    let at = listener.local_addr().map_err(|source| ServeError::Bind {
        addr: "http.addr".into(),
        source,
    })?;
    // "HTTP listening on ADDR" ends the line, like gRPC's.
    tracing::info!("status page, /metrics, /healthz and /readyz: HTTP listening on {at}");
    Ok(Some(tokio::spawn(crate::http::serve(
        listener,
        Arc::new(state),
        shutdown.clone(),
    ))))
}

/// Where NATS is, and the stores' disks the health watch looks at.
struct Reach {
    url: String,
    /// sled's folder, and the embedded server's store (if embedded).
    storage_paths: Vec<std::path::PathBuf>,
    /// Restarts the embedded nats-server (`None`: an external one).
    restart_nats: Option<Arc<tokio::sync::Notify>>,
}

/// The listener's trust settings, read at start.
struct Guard {
    auth: Arc<crate::auth::identify::Authenticator>,
    tls: Option<tonic::transport::ServerTlsConfig>,
    /// The HTTP listener, when `http.addr` is set.
    http: Option<TcpListener>,
}

async fn serve_with(
    (resolved, which): (&Resolved, roles::Roles),
    listener: TcpListener,
    guard: Guard,
    store: Arc<Store>,
    seal_key: Arc<govledger_stream::seal::ProducerKey>,
    reach: Reach,
    shutdown: CancellationToken,
) -> Result<(), ServeError> {
    let Reach {
        url,
        storage_paths,
        restart_nats,
    } = reach;
    let url = url.as_str();
    let cfg = &resolved.config;
    let conn = nats::reach_stream(cfg, &resolved.nats, url).await?;
    nats::check_identity(&store, &conn.info)?;
    announce_stream(cfg, &conn.info, which);
    // What `/metrics` serves, and the projector's pause switch.
    let metrics = Arc::new(crate::observe::Metrics::new());
    let (pause, paused) = tokio::sync::watch::channel(false);
    // The roles run on the background threads, below the API's priority, with
    // a NATS connection of their own; `background` outlives their drain.
    let (background, (projector, handles, workers)) = start_roles(
        (resolved, which),
        url,
        &conn.info,
        store.clone(),
        seal_key,
        roles::Instruments {
            metrics: metrics.clone(),
            paused: paused.clone(),
        },
        shutdown.clone(),
    )
    .await?;

    let addr = cfg
        .grpc
        .addr
        .clone()
        .unwrap_or_else(|| DEFAULT_GRPC_ADDR.to_owned());
    let bound = listener.local_addr().map_err(|source| ServeError::Bind {
        addr: addr.clone(),
        source,
    })?;
    let (storage_full, _) = tokio::sync::watch::channel(None);
    let (health_state, health_seen) = tokio::sync::watch::channel(health::HealthState {
        lag_bound_events: cfg.projector.lag_bound_events,
        ..Default::default()
    });
    let api = ledger_api(
        cfg,
        &conn,
        &store,
        &projector,
        handles,
        &storage_full,
        (pause, health_seen.clone()),
    );
    let queries = keep_source_snapshots(cfg, &background, api.queries(), &shutdown);
    let (router, health) = grpc::router(
        api,
        guard.auth.clone(),
        guard.tls,
        metrics.grpc.clone(),
        (projector.applied.clone(), cfg.api.min_seq_wait_ms),
        &addr,
    )
    .await?;
    let watch = tokio::spawn(health::watch_nats(
        conn.js.clone(),
        nats::identity_of(&conn.info),
        health,
        projector.alerts.clone(),
        health::StorageWatch {
            paths: storage_paths,
            full: storage_full,
            restart_nats,
        },
        probes(cfg, &projector, paused, health_state),
        shutdown.clone(),
    ));
    let http = start_http(
        guard.http,
        crate::http::HttpState {
            queries,
            health: health_seen,
            metrics: metrics.clone(),
            auth: guard.auth.clone(),
            reading: tokio::sync::Mutex::new(()),
        },
        &shutdown,
    )?;
    announce_grpc(cfg, bound);
    let served = serve_grpc(router, listener, &shutdown).await;
    shutdown.cancel();
    // The watch ends at once on shutdown (or has ended, having found the
    // stream replaced): its answer says which.
    let replaced = match tokio::time::timeout(
        std::time::Duration::from_millis(health::NATS_PROBE_TIMEOUT_MS + 1_000),
        watch,
    )
    .await
    {
        Ok(Ok(m)) => m,
        _ => None,
    };
    close_http(http).await;
    let projected = shutdown::drain(workers, projector, &store).await;
    drop(background); // after the drain: what is left on it is stopped, not awaited
    if let Some(m) = replaced {
        return Err(m.into());
    }
    served?;
    projected?;
    tracing::info!("stopped");
    Ok(())
}
