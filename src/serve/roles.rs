//! Starting the roles of `govledger serve` once storage and NATS are ready: the
//! projector, the publisher with the sync and action workers, the checkpointer
//! and the clock's alerts.
//!
//! Which of them run is [`Roles`]: `serve` runs all; `govledger ingest` the
//! sync and action workers (and takes triggers from the cluster); `govledger
//! api` none of them (its triggers go to the ingest processes, its submitted
//! actions are recorded for them). Every process folds its own projection and
//! answers gRPC (the API and health) from it.

use std::{sync::Arc, time::Duration};

use govledger_ingest::{Publisher, event::ProducerId};
use govledger_projector::{
    Store,
    runner::{self, ProjectorError},
};
use govledger_proto::v1::{Alert, alert};
use tokio::{
    sync::{broadcast, watch},
    task::JoinHandle,
};
use tokio_util::sync::CancellationToken;

use super::{ALERTS_BUFFER, ServeError, nats::StreamConn};
use crate::{
    audit::checkpoints::Checkpointer,
    config::Resolved,
    workers::{
        action_intake::ActionManager, clock_alerts, deletions::DeletionsDesk, deps::WorkerDeps,
        scheduler::SyncManager,
    },
};

/// The roles one process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Roles {
    /// Sync workers, action executors, and (in a cluster) the trigger queue.
    pub ingest: bool,
    /// The clock's alerts and the checkpoint cadence (the API itself is
    /// served by every process).
    pub api: bool,
}

impl Roles {
    pub const ALL: Self = Self {
        ingest: true,
        api: true,
    };
    pub const INGEST: Self = Self {
        ingest: true,
        api: false,
    };
    pub const API: Self = Self {
        ingest: false,
        api: true,
    };

    /// The command that runs these roles.
    pub fn name(self) -> &'static str {
        match (self.ingest, self.api) {
            (true, true) => "serve",
            (true, false) => "ingest",
            _ => "api",
        }
    }
}

/// The running projector and what it feeds.
pub struct Projector {
    pub task: JoinHandle<Result<(), ProjectorError>>,
    /// Its last applied sequence.
    pub applied: watch::Receiver<u64>,
    /// The decisions it makes, for WatchAlerts.
    pub alerts: broadcast::Sender<Alert>,
    /// `None` while it runs; why it stopped when it stopped on its own (a
    /// sequence missing from the stream), for health and GetLedgerStatus.
    pub stopped: watch::Receiver<Option<String>>,
}

/// What the roles count into and obey besides their config.
pub struct Instruments {
    pub metrics: Arc<crate::observe::Metrics>,
    /// The projector's pause switch (SetProjectorPaused).
    pub paused: watch::Receiver<bool>,
}

/// Spawns the projector (stream -> sled) with its alerts channel.
pub fn start_projector(
    resolved: &Resolved,
    conn: &StreamConn,
    store: &Arc<Store>,
    inst: &Instruments,
    shutdown: &CancellationToken,
) -> Projector {
    let (progress_tx, applied) = watch::channel(0u64);
    let (alerts, _) = broadcast::channel(ALERTS_BUFFER);
    let mut runner_cfg = resolved.config.runner_config();
    runner_cfg.alerts = Some(alerts.clone());
    runner_cfg.metrics = inst.metrics.fold.clone();
    runner_cfg.paused = Some(inst.paused.clone());
    let (stopped_tx, stopped) = watch::channel(None);
    let run = runner::run(
        conn.client.clone(),
        store.clone(),
        runner_cfg,
        progress_tx,
        shutdown.clone(),
    );
    let told = alerts.clone();
    let task = tokio::spawn(async move {
        let r = run.await;
        if let Err(e) = &r {
            // It will not fold again in this process: say so once, loudly.
            let message = format!("the projector stopped: {e}");
            tracing::error!("{message}");
            let _ = told.send(Alert {
                kind: alert::Kind::ProjectorStopped as i32,
                message: message.clone(),
                seq: match e {
                    ProjectorError::Gap { missing, .. } => *missing,
                    _ => 0,
                },
                ..Default::default()
            });
            stopped_tx.send_replace(Some(message));
        }
        r
    });
    Projector {
        task,
        applied,
        alerts,
        stopped,
    }
}

/// The handles of the workers the gRPC API drives.
pub struct Handles {
    pub syncs: SyncManager,
    pub actions: ActionManager,
    pub deletions: DeletionsDesk,
    pub checkpointer: Arc<Checkpointer>,
}

/// What shutdown waits for once the workers are started.
pub struct Workers {
    /// Every worker task, awaited (bounded) at shutdown.
    pub tasks: Vec<JoinHandle<()>>,
    /// Outlives the workers: their last events are flushed before it stops.
    pub publisher: Publisher,
    pub publisher_stop: CancellationToken,
}

/// Starts the publisher, a sync and an action worker per source, the
/// checkpointer and the clock's alerts.
pub async fn start_workers(
    (resolved, roles): (&Resolved, Roles),
    conn: &StreamConn,
    store: &Arc<Store>,
    seal_key: Arc<govledger_stream::seal::ProducerKey>,
    projector: &Projector,
    inst: &Instruments,
    shutdown: &CancellationToken,
) -> Result<(Handles, Workers), ServeError> {
    let cfg = &resolved.config;
    // The publisher outlives the sync workers: on shutdown they end their runs
    // (ABANDONED) and those events are flushed before the publisher stops.
    let publisher_stop = CancellationToken::new();
    // Everything this process publishes is sealed with its producer key.
    tracing::info!(producer_key = %seal_key.public_hex(), key_id = %seal_key.key_id(),
        "producer key (list it in another ledger's provenance.trusted_keys to trust this process)");
    let publisher = Publisher::new(
        conn.client.clone(),
        govledger_ingest::PublisherConfig {
            seal_key: Some(seal_key),
            metrics: inst.metrics.ingest.clone(),
            ..cfg.publisher_config()
        },
        publisher_stop.clone(),
    );
    let cluster = shared((resolved, roles), conn).await?;
    let deps = WorkerDeps {
        publisher: publisher.clone(),
        producer: ProducerId::new(format!(
            "{}-{}",
            cfg.cluster.node.as_deref().unwrap_or("serve"),
            std::process::id()
        )),
        store: store.clone(),
        applied: projector.applied.clone(),
        stream_last_seq_at_start: conn.info.state.last_sequence,
        cancel: shutdown.clone(),
        cluster,
    };
    let deletions = DeletionsDesk {
        publisher: deps.publisher.clone(),
        producer: deps.producer.clone(),
        store: store.clone(),
        applied: deps.applied.clone(),
    };
    let subject = crate::cluster::control::trigger_subject(&cfg.nats.stream);
    let (syncs, mut tasks) = if roles.ingest {
        SyncManager::start(&resolved.sources, deps.clone())?
    } else {
        let remote = crate::cluster::control::Remote {
            client: conn.client.clone(),
            subject: subject.clone(),
        };
        (
            SyncManager::remote(&resolved.sources, store.clone(), remote),
            Vec::new(),
        )
    };
    if roles.ingest && deps.cluster.is_some() {
        tasks.push(tokio::spawn(crate::cluster::control::serve_triggers(
            conn.client.clone(),
            subject,
            syncs.clone(),
            shutdown.clone(),
        )));
    }
    let (actions, action_tasks) = ActionManager::start(&resolved.sources, deps, roles.ingest)?;
    tasks.extend(action_tasks);
    let checkpointer =
        start_checkpointer((resolved, roles), conn, store, shutdown, &mut tasks).await?;
    crate::alerts::ensure_stream(&conn.js, &cfg.replication()).await?;
    tasks.push(tokio::spawn(crate::alerts::relay(
        store.clone(),
        conn.js.clone(),
        projector.applied.clone(),
        shutdown.clone(),
    )));
    if cfg.ocsf.enabled {
        crate::ocsf::feed::ensure_stream(&conn.js, &cfg.replication()).await?;
        let feed = crate::ocsf::feed::Feed {
            js: conn.js.clone(),
            stream: cfg.nats.stream.clone(),
            requests: crate::ocsf::feed::Requests::Projection {
                store: store.clone(),
                applied: projector.applied.clone(),
            },
            version: cfg.ocsf.version,
        };
        tracing::info!(
            version = cfg.ocsf.version.as_str(),
            subjects = crate::ocsf::feed::OCSF_SUBJECTS,
            "OCSF feed on (stream {})",
            crate::ocsf::feed::OCSF_STREAM
        );
        tasks.push(tokio::spawn(feed.run(shutdown.clone())));
    }
    if roles.api {
        tasks.push(tokio::spawn(clock_alerts::run(
            store.clone(),
            syncs.clone(),
            conn.js.clone(),
            shutdown.clone(),
        )));
    }
    Ok((
        Handles {
            syncs,
            actions,
            deletions,
            checkpointer,
        },
        Workers {
            tasks,
            publisher,
            publisher_stop,
        },
    ))
}

/// In a cluster (`[cluster] node`), the lease bucket the workers share (an
/// `api` node, which runs none, never opens it); a node whose producer key
/// no other node trusts says so.
async fn shared(
    (resolved, roles): (&Resolved, Roles),
    conn: &StreamConn,
) -> Result<Option<Arc<crate::workers::deps::Shared>>, ServeError> {
    let cfg = &resolved.config;
    let Some(node) = &cfg.cluster.node else {
        return Ok(None);
    };
    if cfg.provenance.key_file.is_none() && cfg.provenance.trusted_keys.is_empty() {
        tracing::warn!(
            "cluster node with its own producer key and no trusted_keys: the other nodes decide \
             this node's runs UNVERIFIED_PRODUCER and it decides theirs so. Give every node the \
             same provenance.key_file, or list each node's key in provenance.trusted_keys \
             (README: Cluster)"
        );
    }
    if !roles.ingest {
        return Ok(None);
    }
    let leases = crate::cluster::lease::Leases::open(
        &conn.js,
        &cfg.nats.stream,
        &cfg.replication(),
        node,
        cfg.cluster.lease_ttl_ms,
    )
    .await?;
    tracing::info!(node = %node, holder = %leases.holder, lease_ttl_ms = cfg.cluster.lease_ttl_ms,
        "cluster node: syncs and actions run under leases");
    Ok(Some(Arc::new(crate::workers::deps::Shared {
        leases: Arc::new(leases),
        js: conn.js.clone(),
        stream: cfg.nats.stream.clone(),
    })))
}

/// Loads (or creates) the signing key and starts the checkpointer; signs on the
/// `[audit]` cadence unless it is 0.
async fn start_checkpointer(
    (resolved, roles): (&Resolved, Roles),
    conn: &StreamConn,
    store: &Arc<Store>,
    shutdown: &CancellationToken,
    tasks: &mut Vec<JoinHandle<()>>,
) -> Result<Arc<Checkpointer>, ServeError> {
    let cfg = &resolved.config;
    let key_path = cfg
        .audit
        .signing_key_file
        .clone()
        .unwrap_or_else(|| cfg.data_dir().join("audit").join("signing.key"));
    let key = crate::audit::keys::load_or_create_key(&key_path)
        .map_err(|e| ServeError::Audit(e.to_string()))?;
    let manifest_path = cfg
        .audit
        .manifest_key_file
        .clone()
        .unwrap_or_else(|| cfg.data_dir().join("audit").join("manifest.key"));
    let manifest = crate::audit::keys::load_or_create_key(&manifest_path)
        .map_err(|e| ServeError::Audit(format!("the manifest key: {e}")))?;
    let previous = match &cfg.audit.previous_signing_key_file {
        None => None,
        Some(p) => Some(
            crate::audit::keys::load_key(p)
                .map_err(|e| ServeError::Audit(format!("audit.previous_signing_key_file: {e}")))?,
        ),
    };
    if previous
        .as_ref()
        .is_some_and(|p| p.verifying_key() == key.verifying_key())
    {
        return Err(ServeError::Audit(
            "audit.previous_signing_key_file holds the same key as audit.signing_key_file: a rotation needs a new key"
                .into(),
        ));
    }
    if manifest.verifying_key() == key.verifying_key() {
        return Err(ServeError::Audit(
            "audit.manifest_key_file holds the checkpoint signing key: the two roles need two keys"
                .into(),
        ));
    }
    let mut checkpointer = Checkpointer::start(
        (
            key,
            crate::audit::keys::ManifestKey::new(manifest, cfg.audit.manifest_key_validity_days),
        ),
        conn.js.clone(),
        store.clone(),
        (cfg.nats.stream.clone(), &cfg.replication()),
        (
            cfg.audit.origin.clone(),
            cfg.audit
                .witness_keys
                .iter()
                .chain(cfg.audit.witnesses.iter().map(|w| &w.key))
                .cloned()
                .collect(),
        ),
    )
    .await
    .map_err(|e| ServeError::Audit(e.to_string()))?
    .with_previous_key(previous);
    let witnesses = if cfg.audit.witnesses.is_empty() {
        None
    } else {
        let client = crate::audit::witness_client::WitnessClient::new(cfg.audit.witnesses.clone())
            .map_err(|e| ServeError::Audit(format!("the witness client: {e}")))?;
        let (tx, rx) = tokio::sync::mpsc::channel(crate::audit::witness_client::WITNESS_QUEUE_MAX);
        checkpointer.witness_queue = Some(tx);
        Some((client, rx))
    };
    let checkpointer = Arc::new(checkpointer);
    if let Some((client, rx)) = witnesses {
        tasks.push(tokio::spawn(crate::audit::witness_client::run(
            checkpointer.clone(),
            client,
            rx,
            shutdown.clone(),
        )));
    }
    tracing::info!(verifier_key = %checkpointer.verifier_key(),
        "checkpoints are C2SP signed notes; publish this verifier key for auditors and witnesses");
    if cfg.audit.checkpoint_interval_ms > 0 && roles.api {
        tasks.push(tokio::spawn(checkpointer.clone().run(
            Duration::from_millis(cfg.audit.checkpoint_interval_ms),
            shutdown.clone(),
        )));
    }
    Ok(checkpointer)
}
