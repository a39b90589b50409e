//! Rows 4 and 6: scale and growth. A history of I identities and about E
//! events (E/I full runs of every source) is published through the
//! [`Publisher`] into a fresh server, then projected by the real
//! `govledger project --exit-at-end` as a child process (peak RSS sampled from
//! `/proc/PID/status`), the sled folder measured, deleted, and rebuilt from the
//! stream the same way. A raw fetch+ack of the same stream is the projection
//! baseline at every size; a raw sled loop writing the same keys
//! ([`storage::raw_sled`]) is the storage-side one.

use std::{
    ffi::OsStr,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result};
use govledger_ingest::Publisher;
use govledger_stream::{StreamSpec, ensure_stream};
use tokio_util::sync::CancellationToken;

use crate::{
    events::{self, Plan},
    procs::{self, ChildRun, NatsServer},
    project::CACHE_CAPACITY_BYTES,
    storage,
};

/// How long one `govledger project` may take before the benchmark gives up.
const CHILD_LIMIT: Duration = Duration::from_secs(3 * 3600);

/// A point whose raw fetch + ack takes less than this is measured in three
/// rounds (projection, raw fetch), as row 2 is: a single sub-second pair
/// moves by a quarter from one run to the next on a 2-core machine.
const SHORT_POINT: Duration = Duration::from_secs(10);

/// One measured size.
#[derive(Debug, Clone)]
pub struct Point {
    pub identities: u64,
    pub events: u64,
    pub ingest: Duration,
    pub project: ChildRun,
    pub rebuild: ChildRun,
    pub disk_bytes: u64,
    /// Raw fetch+ack of the same stream (the projection baseline).
    pub raw_fetch: Duration,
    /// Raw sled writes of the same events' keys (the storage-side baseline).
    pub raw_sled: Duration,
    /// CPU seconds (projecting child or benchmark process, plus nats-server)
    /// of the first projection and of the raw fetch + ack.
    pub project_cpu_s: f64,
    pub raw_fetch_cpu_s: f64,
    /// Raw fetch time ÷ projection time of each round, in order: the first
    /// projection with the first raw fetch, then (short points only) the
    /// rebuild and a third projection, each with a raw fetch of its own.
    pub rate_rounds: Vec<f64>,
}

impl Point {
    /// The projection's rate against the raw fetch: the median of the rounds.
    pub fn rate(&self) -> f64 {
        let mut r = self.rate_rounds.clone();
        r.sort_by(f64::total_cmp);
        r.get(r.len() / 2).copied().unwrap_or(0.0)
    }
}

/// Rates with two decimals, in order ("0.59, 0.46, 0.40").
pub fn rounds_label(rates: &[f64]) -> String {
    let each: Vec<String> = rates.iter().map(|r| format!("{r:.2}")).collect();
    each.join(", ")
}

/// A measured size whose server and projected data are kept (for queries).
pub struct Scaled {
    pub point: Point,
    pub nats: NatsServer,
    pub dir: tempfile::TempDir,
    pub published: events::Published,
    pub plan: Plan,
}

impl Scaled {
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }
    pub fn config(&self) -> PathBuf {
        self.dir.path().join("govledger.toml")
    }
}

pub async fn measure(
    nats_bin: &Path,
    govledger_bin: &Path,
    identities: u64,
    events: u64,
) -> Result<Scaled> {
    let plan = Plan::new(identities, events);
    crate::progress(format!(
        "scale: {} identities ({} sources x {} users), {} full runs each",
        plan.identities(),
        events::SOURCES,
        plan.users_per_source,
        plan.rounds
    ));
    let nats = NatsServer::start(nats_bin).await?;
    let client = nats.client().await?;
    let js = async_nats::jetstream::new(client.clone());
    let spec = StreamSpec::default();
    ensure_stream(&js, &spec).await?;

    let stop = CancellationToken::new();
    let publisher = Publisher::new(client.clone(), crate::events::sealing(), stop.clone());
    let started = Instant::now();
    let published = events::publish_plan(&publisher, plan).await?;
    let ingest = started.elapsed();
    stop.cancel();
    crate::progress(format!(
        "  ingest: {} events in {:.2} s ({:.0} ev/s)",
        published.events,
        ingest.as_secs_f64(),
        published.events as f64 / ingest.as_secs_f64()
    ));
    let last_seq = js
        .get_stream(&spec.name)
        .await?
        .info()
        .await?
        .state
        .last_sequence;

    let dir = tempfile::Builder::new()
        .prefix("govledger-bench-scale-")
        .tempdir()?;
    let data = dir.path().join("data");
    let config = dir.path().join("govledger.toml");
    std::fs::write(
        &config,
        format!("[projector]\ncache_capacity_bytes = {CACHE_CAPACITY_BYTES}\n"),
    )?;
    let url = nats.url();
    let args: Vec<&OsStr> = vec![
        OsStr::new("project"),
        OsStr::new("--exit-at-end"),
        OsStr::new("--nats-url"),
        OsStr::new(&url),
        OsStr::new("--data-dir"),
        data.as_os_str(),
        OsStr::new("--config"),
        config.as_os_str(),
    ];
    procs::settle().await?;
    let server_before = nats.cpu_seconds()?;
    let project = procs::run_measured(
        govledger_bin,
        &args,
        &dir.path().join("project.log"),
        CHILD_LIMIT,
    )
    .await?;
    let project_cpu_s = project.cpu_s + nats.cpu_seconds()? - server_before;
    let sled = data.join("sled");
    let disk_bytes = procs::disk_usage(&sled)?;
    crate::progress(format!(
        "  project (child): {:.2} s ({:.0} ev/s), peak RSS {:.1} MiB, sled {:.1} MiB",
        project.elapsed.as_secs_f64(),
        last_seq as f64 / project.elapsed.as_secs_f64(),
        mib(project.peak_rss),
        mib(disk_bytes)
    ));
    let rebuild =
        rebuild_from_stream(govledger_bin, &args, &sled, &dir.path().join("rebuild.log")).await?;
    crate::progress(format!(
        "  rebuild (child): {:.2} s, peak RSS {:.1} MiB",
        rebuild.elapsed.as_secs_f64(),
        mib(rebuild.peak_rss)
    ));
    procs::settle().await?;
    let cpu_before = crate::project::cpu_now(&nats)?;
    let raw_fetch = crate::project::raw_fetch(&client, &spec.name, last_seq, "bench-raw").await?;
    let raw_fetch_cpu_s = crate::project::cpu_now(&nats)? - cpu_before;
    crate::progress(format!(
        "  raw fetch+ack of the same stream: {:.2} s",
        raw_fetch.as_secs_f64()
    ));
    let mut rate_rounds = vec![raw_fetch.as_secs_f64() / project.elapsed.as_secs_f64()];
    if raw_fetch < SHORT_POINT {
        // Round 2 pairs the rebuild with a raw fetch; round 3 is both again.
        procs::settle().await?;
        let raw = crate::project::raw_fetch(&client, &spec.name, last_seq, "bench-raw-2").await?;
        rate_rounds.push(raw.as_secs_f64() / rebuild.elapsed.as_secs_f64());
        let log = dir.path().join("project-3.log");
        let again = rebuild_from_stream(govledger_bin, &args, &sled, &log).await?;
        procs::settle().await?;
        let raw = crate::project::raw_fetch(&client, &spec.name, last_seq, "bench-raw-3").await?;
        rate_rounds.push(raw.as_secs_f64() / again.elapsed.as_secs_f64());
        crate::progress(format!(
            "  short point, 3 rounds: projection ÷ raw fetch rates {}",
            rounds_label(&rate_rounds)
        ));
    }
    let writes = storage::read_stream(&client, &spec.name, last_seq).await?;
    procs::settle().await?;
    let raw_sled = storage::raw_sled_fresh(&writes, false).await?;
    crate::progress(format!(
        "  raw sled writes of the same keys ({} keys): {:.2} s ({:.0} ev/s)",
        writes.keys(),
        raw_sled.as_secs_f64(),
        last_seq as f64 / raw_sled.as_secs_f64()
    ));
    drop(writes);
    Ok(Scaled {
        point: Point {
            identities: plan.identities(),
            events: last_seq,
            ingest,
            project,
            rebuild,
            disk_bytes,
            raw_fetch,
            raw_sled,
            project_cpu_s,
            raw_fetch_cpu_s,
            rate_rounds,
        },
        nats,
        dir,
        published,
        plan,
    })
}

/// Deletes the `sled` folder and runs `govledger` with `args` (a projection
/// to the end of the stream) into it again, measured.
async fn rebuild_from_stream(
    govledger_bin: &Path,
    args: &[&OsStr],
    sled: &Path,
    log: &Path,
) -> Result<ChildRun> {
    std::fs::remove_dir_all(sled).with_context(|| format!("deleting {}", sled.display()))?;
    procs::settle().await?;
    procs::run_measured(govledger_bin, args, log, CHILD_LIMIT).await
}

pub fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(rate_rounds: Vec<f64>) -> Point {
        Point {
            identities: 1,
            events: 1,
            ingest: Duration::ZERO,
            project: ChildRun::default(),
            rebuild: ChildRun::default(),
            disk_bytes: 0,
            raw_fetch: Duration::ZERO,
            raw_sled: Duration::ZERO,
            project_cpu_s: 0.0,
            raw_fetch_cpu_s: 0.0,
            rate_rounds,
        }
    }

    #[test]
    fn a_points_rate_is_the_median_of_its_rounds() {
        assert_eq!(point(vec![0.48]).rate(), 0.48);
        assert_eq!(point(vec![0.65, 0.42, 0.51]).rate(), 0.51);
        assert_eq!(point(vec![0.42, 0.51, 0.65]).rate(), 0.51);
        assert_eq!(point(Vec::new()).rate(), 0.0);
    }
}
