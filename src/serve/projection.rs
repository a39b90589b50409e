//! `govledger project` (only the projector) and `govledger rebuild` (the whole
//! stream folded again into a fresh folder, its digest compared with the live one).

use std::{sync::Arc, time::Duration};

use govledger_projector::{Store, runner};
use govledger_stream::connect::ConnectSpec;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::{
    ServeError,
    nats::{self, nats_for},
    open_storage,
};
use crate::config::Config;

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
    spec: &ConnectSpec,
    nats_url: &str,
    live: (u64, String),
    dir: &std::path::Path,
) -> Result<RebuildReport, ServeError> {
    let conn = nats::reach_stream(cfg, spec, nats_url).await?;
    // The same trust as the live projection: its own producer key and the configured ones.
    let trust = crate::config::provenance::load_existing(cfg)?.trust;
    let store = Arc::new(Store::open(dir, cfg.projector.cache_capacity_bytes)?.with_trust(trust));
    let mut rc = cfg.runner_config();
    rc.stop_at_seq = Some(live.0);
    rc.storage_paths = vec![dir.to_path_buf()];
    // Its own durable consumer, so the live projector's is never touched.
    rc.durable = format!("govledger-rebuild-{}", std::process::id());
    let durable = rc.durable.clone();
    let (tx, _rx) = watch::channel(0u64);
    let started = std::time::Instant::now();
    runner::run(conn.client, store.clone(), rc, tx, CancellationToken::new()).await?;
    store.flush().await?;
    if let Ok(stream) = conn.js.get_stream(&cfg.nats.stream).await {
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

/// `govledger project`: only the projector, on a validated `cfg`. With
/// `exit_at_end` it returns once everything the stream held at start is applied
/// (a catch-up or rebuild run).
pub async fn project(
    cfg: Config,
    spec: &ConnectSpec,
    exit_at_end: bool,
    shutdown: CancellationToken,
) -> Result<(), ServeError> {
    let store = open_storage(&cfg, crate::config::provenance::load(&cfg)?.trust)?;
    let nats = nats_for(&cfg).await?;
    let conn = nats::reach_stream(&cfg, spec, &nats.url).await?;
    nats::check_identity(&store, &conn.info)?;
    let mut runner_cfg = cfg.runner_config();
    if exit_at_end {
        runner_cfg.stop_at_seq = Some(conn.info.state.last_sequence);
    }
    let (tx, mut rx) = watch::channel(0u64);
    // The decisions it folds are stored in the alerts stream from here too.
    crate::alerts::ensure_stream(&conn.js, &cfg.replication()).await?;
    let relay_stop = shutdown.child_token();
    let relay = tokio::spawn(crate::alerts::relay(
        store.clone(),
        conn.js.clone(),
        tx.subscribe(),
        relay_stop.clone(),
    ));
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
    let r = runner::run(conn.client, store.clone(), runner_cfg, tx, shutdown.clone()).await;
    progress.abort();
    // Its last pass stores what the last batch decided (bounded), then it stops.
    relay_stop.cancel();
    let _ = tokio::time::timeout(
        Duration::from_millis(crate::alerts::PUBLISH_TIMEOUT_MS),
        relay,
    )
    .await;
    store.flush().await?;
    tracing::info!("projector stopped: {}", runner::describe(&store.meta()?));
    if let Some(n) = nats.embedded {
        n.stop().await;
    }
    r.map_err(Into::into)
}
