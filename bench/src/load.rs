//! `--only load`: the load campaign of issue 22 item 8. `--clients` clients
//! issue a mix of read RPCs against one `govledger serve` child, first with
//! nothing else running (idle), then for `--duration-s` while the source (a
//! fault SCIM server holding `--identities` users) is synced again and again
//! and a steady stream of actions is submitted. It counts every error by RPC
//! and code (none allowed), compares each RPC's loaded p99 with its idle p99
//! (target ≤ 2×), samples serve's RSS every second (flat after warm-up, see
//! [`rss_verdict`]), and prints its own table (never BENCHMARKS.md's).

use std::{
    collections::BTreeMap,
    path::Path,
    sync::{Arc, Mutex, RwLock},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, anyhow, bail};
use govledger::cli::client::{BearerToken, Client};
use govledger_proto::v1::{
    ActionKind, ActionOutcome, ActionRequested, CheckReadinessRequest, EntityType,
    GetActionRequest, GetIdentityRequest, GetLedgerStatusRequest, GetRunRequest, GetSourceRequest,
    ListActionsRequest, SubmitActionRequest, TriggerSyncRequest, Verdict,
    ledger_client::LedgerClient,
};
use govledger_testkit::fault_scim::{FaultScim, Faults, ScimConfig};
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

use crate::{procs, progress, query::percentile, report};

/// The one source the campaign syncs.
const SOURCE: &str = "hr";
/// How often a sync's run is polled until decided, and RSS sampled.
const POLL_MS: u64 = 200;
const RSS_SAMPLE_MS: u64 = 1_000;
/// Longest wait for one sync to be decided, beyond the source's own pace
/// ([`sync_decided_ms_max`]).
const SYNC_DECIDED_MS_MAX: u64 = 600_000;
/// Longest wait, after the load, for the submitted actions to conclude.
const ACTIONS_SETTLE_MS_MAX: u64 = 120_000;
/// Actions concluded before the idle phase, so GetAction has targets.
const SEED_ACTIONS: usize = 5;
/// Client connections opened before any phase is measured.
const WARMUP_MS: u64 = 3_000;
/// Error messages kept for the report (the counts keep everything).
const ERROR_SAMPLES_MAX: usize = 10;
/// RSS is flat when it grows by at most this share of the post-warm-up
/// level, or by [`RSS_FLAT_FLOOR_BYTES`], whichever is larger.
const RSS_FLAT_SHARE: f64 = 0.10;
const RSS_FLAT_FLOOR_BYTES: u64 = 16 * 1024 * 1024;
/// p99 under load over p99 idle, at most.
const P99_RATIO_MAX: f64 = 2.0;

/// What the campaign does (`govledger-bench --only load ...`).
#[derive(Debug, Clone)]
pub struct LoadParams {
    pub clients: usize,
    pub duration: Duration,
    pub identities: usize,
    pub idle: Duration,
    pub actions_per_s: f64,
    /// Calls per second per client, on a schedule; 0 = unpaced (closed loop).
    pub rate_per_client: f64,
    /// Users per page of the source's listing.
    pub page_size: u32,
    /// The source's answer time per listed page in the loaded phase (0 =
    /// syncs at full speed, back to back).
    pub page_latency_ms: u64,
}

/// The RPC mix every client cycles through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Rpc {
    GetSource,
    GetRun,
    GetIdentity,
    CheckReadiness,
    ListActions,
    GetAction,
    GetLedgerStatus,
}

impl Rpc {
    const MIX: [Rpc; 7] = [
        Rpc::GetSource,
        Rpc::GetRun,
        Rpc::GetIdentity,
        Rpc::CheckReadiness,
        Rpc::ListActions,
        Rpc::GetAction,
        Rpc::GetLedgerStatus,
    ];

    fn name(self) -> &'static str {
        match self {
            Rpc::GetSource => "GetSource",
            Rpc::GetRun => "GetRun",
            Rpc::GetIdentity => "GetIdentity",
            Rpc::CheckReadiness => "CheckReadiness",
            Rpc::ListActions => "ListActions(limit 20)",
            Rpc::GetAction => "GetAction",
            Rpc::GetLedgerStatus => "GetLedgerStatus",
        }
    }
}

/// What the clients ask about; grows as runs and actions are decided.
struct Targets {
    users: Vec<String>,
    /// Decided COMPLETE runs.
    runs: RwLock<Vec<String>>,
    actions: RwLock<Vec<String>>,
}

/// One phase's tally across every client.
#[derive(Default)]
struct Tally {
    took: BTreeMap<Rpc, Vec<Duration>>,
    /// Every answered call: (second of the phase it was due in, its latency).
    timeline: Vec<(u32, Duration)>,
    /// (what, gRPC code) → count; `what` is an RPC of the mix or a driver call.
    errors: BTreeMap<(String, String), u64>,
    error_samples: Vec<String>,
    /// Answers that succeeded but contradict what the ledger holds.
    wrong: u64,
    wrong_samples: Vec<String>,
}

impl Tally {
    fn error(&mut self, what: &str, s: &tonic::Status) {
        *self
            .errors
            .entry((what.to_owned(), format!("{:?}", s.code())))
            .or_default() += 1;
        if self.error_samples.len() < ERROR_SAMPLES_MAX {
            let msg: String = s.message().chars().take(200).collect();
            self.error_samples
                .push(format!("{what}: {:?}: {msg}", s.code()));
        }
    }

    fn wrong(&mut self, what: String) {
        self.wrong += 1;
        if self.wrong_samples.len() < ERROR_SAMPLES_MAX {
            self.wrong_samples.push(what);
        }
    }

    fn merge(&mut self, other: Tally) {
        for (rpc, xs) in other.took {
            self.took.entry(rpc).or_default().extend(xs);
        }
        self.timeline.extend(other.timeline);
        for (k, n) in other.errors {
            *self.errors.entry(k).or_default() += n;
        }
        self.wrong += other.wrong;
        for s in other.error_samples {
            if self.error_samples.len() < ERROR_SAMPLES_MAX {
                self.error_samples.push(s);
            }
        }
        for s in other.wrong_samples {
            if self.wrong_samples.len() < ERROR_SAMPLES_MAX {
                self.wrong_samples.push(s);
            }
        }
    }

    fn calls(&self) -> usize {
        self.took.values().map(Vec::len).sum::<usize>() + self.errors.values().sum::<u64>() as usize
    }

    fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }
}

/// One finished sync of the load phase.
struct SyncRun {
    verdict: String,
    records_unique: u64,
    took: Duration,
}

/// How many calls took longer than `over`, and the `top` seconds of the
/// phase that held most of them (second, count), most first: slow calls
/// spread evenly, or clustered in a few stalls.
fn slow_seconds(
    timeline: &[(u32, Duration)],
    over: Duration,
    top: usize,
) -> (usize, Vec<(u32, usize)>) {
    let mut by_second: BTreeMap<u32, usize> = BTreeMap::new();
    let mut slow = 0;
    for (second, took) in timeline {
        if *took > over {
            slow += 1;
            *by_second.entry(*second).or_default() += 1;
        }
    }
    let mut worst: Vec<(u32, usize)> = by_second.into_iter().collect();
    worst.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    worst.truncate(top);
    (slow, worst)
}

/// The p99 latency of the calls due in each minute of a phase (a minute
/// with under half the calls of the busiest, the phase's last few seconds,
/// left out).
fn per_minute_p99(timeline: &[(u32, Duration)]) -> Vec<Duration> {
    let mut minutes: BTreeMap<u32, Vec<Duration>> = BTreeMap::new();
    for (second, took) in timeline {
        minutes.entry(second / 60).or_default().push(*took);
    }
    let most = minutes.values().map(Vec::len).max().unwrap_or(0);
    minutes
        .into_values()
        .filter(|xs| xs.len() * 2 >= most)
        .map(|mut xs| {
            xs.sort_unstable();
            percentile(&xs, 99.0)
        })
        .collect()
}

/// Runs the campaign and returns its report (markdown).
pub async fn run(p: &LoadParams, nats_bin: &Path, govledger_bin: &Path) -> Result<String> {
    let started = Instant::now();
    let load_before = loadavg();
    let nats = procs::NatsServer::start(nats_bin).await?;
    progress(format!(
        "load: seeding the SCIM server with {} users",
        p.identities
    ));
    let scim = FaultScim::start_with(ScimConfig {
        users: p.identities,
        ..Default::default()
    })
    .await;
    let dir = tempfile::Builder::new()
        .prefix("govledger-load-")
        .tempdir()
        .context("creating the campaign's folder")?;
    let data = dir.path().join("data");
    let config = dir.path().join("govledger.toml");
    std::fs::write(&config, config_toml(&scim.base_url, p.page_size))?;
    let url = nats.url();
    let log = dir.path().join("serve.log");
    let mut serve = procs::start_serve(govledger_bin, &url, &data, &config, &log).await?;
    let pid = serve
        .guard
        .id()
        .ok_or_else(|| anyhow!("govledger serve has no pid"))?;
    progress(format!(
        "load: govledger serve (pid {pid}) on {}",
        serve.addr
    ));
    let token = std::fs::read_to_string(data.join("admin.token"))
        .context("reading the local admin token of govledger serve")?;
    let token = BearerToken::new(&token)?;
    let outcome = campaign(p, &serve.addr, &token, pid, &scim).await;
    serve.guard.stop(Duration::from_secs(10)).await;
    let c = match outcome {
        Ok(c) => c,
        Err(e) => bail!(
            "{e:#}\n(serve's log: {}; kept)",
            keep_log(&log).unwrap_or_default()
        ),
    };
    Ok(report(p, &c, load_before, started.elapsed()))
}

/// Copies serve's log out of the temporary folder, for a failed campaign.
fn keep_log(log: &Path) -> Option<String> {
    let to = std::env::temp_dir().join(format!("govledger-load-serve-{}.log", std::process::id()));
    std::fs::copy(log, &to).ok()?;
    Some(to.display().to_string())
}

fn config_toml(base_url: &str, page_size: u32) -> String {
    format!(
        r#"[projector]
cache_capacity_bytes = {cache}

[[sources]]
id = "{SOURCE}"
base_url = "{base_url}"
resources = ["Users"]
page_size = {page_size}

[sources.retry]
attempts_max = 3
budget_ms = 20000
backoff_min_ms = 10
backoff_max_ms = 50
"#,
        cache = crate::project::CACHE_CAPACITY_BYTES
    )
}

/// Everything the campaign measured.
struct Campaign {
    idle: Tally,
    loaded: Tally,
    driver: Tally,
    loaded_wall: Duration,
    syncs: Vec<SyncRun>,
    first_sync: Duration,
    actions: BTreeMap<String, u64>,
    actions_submitted: usize,
    rss: Vec<(Duration, u64)>,
    loadavg_during: f64,
    /// Share of CPU time the hypervisor took from this VM (`steal` in
    /// `/proc/stat`): idle phase, load phase.
    steal: (Option<f64>, Option<f64>),
}

async fn campaign(
    p: &LoadParams,
    addr: &str,
    token: &BearerToken,
    pid: u32,
    scim: &FaultScim,
) -> Result<Campaign> {
    let users = scim.user_ids();
    let mut ctl = connect(addr, token).await?;
    let mut driver = Tally::default();
    // The first sync: everything the clients ask about exists once it is decided.
    let t = Instant::now();
    let decided_ms_max = sync_decided_ms_max(p);
    let first = sync_once(&mut ctl, &mut driver, decided_ms_max).await?;
    let first_sync = t.elapsed();
    if first.verdict != Verdict::Complete.as_str_name()
        || first.records_unique != users.len() as u64
    {
        bail!(
            "the first sync is {} with {} of {} users",
            first.verdict,
            first.records_unique,
            users.len()
        );
    }
    progress(format!(
        "load: first sync of {} users decided in {:.1} s",
        users.len(),
        first_sync.as_secs_f64()
    ));
    let targets = Arc::new(Targets {
        users,
        runs: RwLock::new(vec![first.run_id.clone()]),
        actions: RwLock::new(Vec::new()),
    });
    // A few actions concluded, so GetAction and ListActions have answers.
    let mut next_user = 0usize;
    for _ in 0..SEED_ACTIONS {
        let id = submit(&mut ctl, &targets, next_user, &mut driver).await;
        next_user += 1;
        if let Some(id) = id {
            targets.actions.write().map_err(poisoned)?.push(id);
        }
    }
    settle_actions(&mut ctl, &targets, &mut driver).await?;

    // Idle: the mix alone.
    progress(format!(
        "load: idle phase, {} clients for {} s",
        p.clients,
        p.idle.as_secs()
    ));
    let cpu0 = CpuTimes::now();
    let (idle, _) = clients_for(addr, token, p, p.idle, &targets).await?;
    let steal_idle = CpuTimes::stolen_share(cpu0, CpuTimes::now());

    // Loaded: the mix, syncs back to back (as slow as the source answers), a
    // stream of actions, RSS sampled.
    scim.set_faults(Faults {
        page_latency_ms: p.page_latency_ms,
        ..Default::default()
    });
    progress(format!(
        "load: load phase, {} clients for {} s, syncs back to back, {} actions/s",
        p.clients,
        p.duration.as_secs(),
        p.actions_per_s
    ));
    let stop = CancellationToken::new();
    let syncs: Arc<Mutex<Vec<SyncRun>>> = Arc::default();
    let driver_tally: Arc<Mutex<Tally>> = Arc::new(Mutex::new(driver));
    let sync_task = {
        let (addr, token, stop, syncs, tally, targets) = (
            addr.to_owned(),
            token.clone(),
            stop.clone(),
            syncs.clone(),
            driver_tally.clone(),
            targets.clone(),
        );
        tokio::spawn(async move {
            let mut c = connect(&addr, &token).await?;
            while !stop.is_cancelled() {
                let mut t = Tally::default();
                let r = sync_once(&mut c, &mut t, decided_ms_max).await;
                tally.lock().map_err(poisoned)?.merge(t);
                let r = r?;
                progress(format!(
                    "load:   sync {}: {} ({} unique) in {:.1} s",
                    r.run_id,
                    r.verdict,
                    r.records_unique,
                    r.run.took.as_secs_f64()
                ));
                if r.verdict == Verdict::Complete.as_str_name() {
                    targets
                        .runs
                        .write()
                        .map_err(poisoned)?
                        .push(r.run_id.clone());
                }
                syncs.lock().map_err(poisoned)?.push(r.run);
            }
            Ok::<_, anyhow::Error>(())
        })
    };
    let action_task = {
        let (addr, token, stop, tally, targets) = (
            addr.to_owned(),
            token.clone(),
            stop.clone(),
            driver_tally.clone(),
            targets.clone(),
        );
        let every = Duration::from_secs_f64(1.0 / p.actions_per_s.max(0.001));
        tokio::spawn(async move {
            let mut c = connect(&addr, &token).await?;
            let mut tick = tokio::time::interval(every);
            let mut n = next_user;
            loop {
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = tick.tick() => {}
                }
                let mut t = Tally::default();
                let id = submit(&mut c, &targets, n, &mut t).await;
                n += 1;
                tally.lock().map_err(poisoned)?.merge(t);
                if let Some(id) = id {
                    targets.actions.write().map_err(poisoned)?.push(id);
                }
            }
            Ok::<_, anyhow::Error>(())
        })
    };
    let rss_task = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let t0 = Instant::now();
            let mut samples = Vec::new();
            let mut load = Vec::new();
            let mut tick = tokio::time::interval(Duration::from_millis(RSS_SAMPLE_MS));
            loop {
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = tick.tick() => {}
                }
                if let Some(rss) = rss_bytes(pid) {
                    samples.push((t0.elapsed(), rss));
                }
                if let Some(l) = loadavg() {
                    load.push(l);
                }
            }
            (samples, load)
        })
    };
    let t = Instant::now();
    let cpu0 = CpuTimes::now();
    let (loaded, _) = clients_for(addr, token, p, p.duration, &targets).await?;
    let steal_loaded = CpuTimes::stolen_share(cpu0, CpuTimes::now());
    let loaded_wall = t.elapsed();
    stop.cancel();
    let (rss, load) = rss_task.await.map_err(|e| anyhow!("RSS sampler: {e}"))?;
    action_task
        .await
        .map_err(|e| anyhow!("action stream: {e}"))??;
    progress("load: load phase over; waiting for the last sync to be decided");
    sync_task.await.map_err(|e| anyhow!("sync loop: {e}"))??;
    let mut driver = std::mem::take(&mut *driver_tally.lock().map_err(poisoned)?);
    let actions = settle_actions(&mut ctl, &targets, &mut driver).await?;
    let actions_submitted = targets.actions.read().map_err(poisoned)?.len();
    let syncs = std::mem::take(&mut *syncs.lock().map_err(poisoned)?);
    Ok(Campaign {
        idle,
        loaded,
        driver,
        loaded_wall,
        syncs,
        first_sync,
        actions,
        actions_submitted,
        rss,
        steal: (steal_idle, steal_loaded),
        loadavg_during: if load.is_empty() {
            0.0
        } else {
            load.iter().sum::<f64>() / load.len() as f64
        },
    })
}

fn poisoned<T>(_: std::sync::PoisonError<T>) -> anyhow::Error {
    anyhow!("a campaign task panicked holding a lock")
}

async fn connect(addr: &str, token: &BearerToken) -> Result<Client> {
    let channel = Channel::from_shared(format!("http://{addr}"))?
        .connect()
        .await
        .context("connecting to govledger serve")?;
    Ok(LedgerClient::with_interceptor(channel, token.clone()))
}

/// A decided sync.
struct Synced {
    run_id: String,
    verdict: String,
    records_unique: u64,
    run: SyncRun,
}

/// How long a sync may take to be decided: [`SYNC_DECIDED_MS_MAX`] plus
/// twice the time the source's pages take at `page_latency_ms` (the first
/// sync, before the latency is set, counts it too: a longer wait, never a
/// shorter one).
fn sync_decided_ms_max(p: &LoadParams) -> u64 {
    let pages = (p.identities as u64).div_ceil(u64::from(p.page_size.max(1)));
    SYNC_DECIDED_MS_MAX.saturating_add(pages.saturating_mul(p.page_latency_ms).saturating_mul(2))
}

/// TriggerSync, then GetRun until the run is decided.
async fn sync_once(c: &mut Client, tally: &mut Tally, decided_ms_max: u64) -> Result<Synced> {
    let t = Instant::now();
    let run_id = match c
        .trigger_sync(TriggerSyncRequest {
            source_id: SOURCE.into(),
            mode: 0,
        })
        .await
    {
        Ok(r) => r.into_inner().run_id,
        Err(s) => {
            tally.error("TriggerSync (driver)", &s);
            bail!("TriggerSync: {s}");
        }
    };
    let deadline = Instant::now() + Duration::from_millis(decided_ms_max);
    loop {
        match c
            .get_run(GetRunRequest {
                run_id: run_id.clone(),
            })
            .await
        {
            Ok(r) => {
                let r = r.into_inner();
                if let Some(run) = r.run.as_ref().filter(|run| run.decided) {
                    let verdict = Verdict::try_from(r.verdict)
                        .map_or("UNKNOWN", |v| v.as_str_name())
                        .to_owned();
                    let took = t.elapsed();
                    return Ok(Synced {
                        run_id: run_id.clone(),
                        verdict: verdict.clone(),
                        records_unique: run.records_unique,
                        run: SyncRun {
                            verdict,
                            records_unique: run.records_unique,
                            took,
                        },
                    });
                }
            }
            // Not projected yet: the run's first events are still on their way.
            Err(s) if s.code() == tonic::Code::NotFound => {}
            Err(s) => tally.error("GetRun (driver)", &s),
        }
        if Instant::now() > deadline {
            bail!("run {run_id} not decided within {decided_ms_max} ms");
        }
        tokio::time::sleep(Duration::from_millis(POLL_MS)).await;
    }
}

/// SubmitAction: deactivate the `n`-th user (each action its own user).
async fn submit(c: &mut Client, t: &Targets, n: usize, tally: &mut Tally) -> Option<String> {
    let user = t.users.get(n % t.users.len().max(1))?.clone();
    let r = c
        .submit_action(SubmitActionRequest {
            source_id: SOURCE.into(),
            request: Some(ActionRequested {
                kind: ActionKind::Deactivate as i32,
                identity_external_id: user,
                reason: "load campaign leaver".into(),
                ticket: format!("LOAD-{n}"),
                idempotency_key: format!("load-{n}"),
                ..Default::default()
            }),
        })
        .await;
    match r {
        Ok(r) => Some(r.into_inner().action_id),
        Err(s) => {
            tally.error("SubmitAction (driver)", &s);
            None
        }
    }
}

/// Waits (bounded) until no submitted action is PENDING; their outcomes.
async fn settle_actions(
    c: &mut Client,
    t: &Targets,
    tally: &mut Tally,
) -> Result<BTreeMap<String, u64>> {
    let ids = t.actions.read().map_err(poisoned)?.clone();
    let deadline = Instant::now() + Duration::from_millis(ACTIONS_SETTLE_MS_MAX);
    loop {
        let mut outcomes = BTreeMap::new();
        let mut pending = 0;
        for id in &ids {
            let name = match c
                .get_action(GetActionRequest {
                    action_id: id.clone(),
                    as_of: None,
                })
                .await
            {
                Ok(r) => ActionOutcome::try_from(r.into_inner().outcome)
                    .map_or("UNKNOWN", |o| o.as_str_name())
                    .to_owned(),
                Err(s) if s.code() == tonic::Code::NotFound => "NOT_PROJECTED_YET".to_owned(),
                Err(s) => {
                    tally.error("GetAction (driver)", &s);
                    format!("error {:?}", s.code())
                }
            };
            if name == ActionOutcome::Pending.as_str_name() || name == "NOT_PROJECTED_YET" {
                pending += 1;
            }
            *outcomes.entry(name).or_default() += 1;
        }
        if pending == 0 || Instant::now() > deadline {
            return Ok(outcomes);
        }
        tokio::time::sleep(Duration::from_millis(POLL_MS)).await;
    }
}

/// `clients` clients, each on its own connection, cycling through the mix
/// for `for_how_long` after a warm-up; their tally.
async fn clients_for(
    addr: &str,
    token: &BearerToken,
    p: &LoadParams,
    for_how_long: Duration,
    targets: &Arc<Targets>,
) -> Result<(Tally, Duration)> {
    let clients = p.clients;
    let pace = (p.rate_per_client > 0.0).then(|| Duration::from_secs_f64(1.0 / p.rate_per_client));
    let mut conns = Vec::with_capacity(clients);
    for _ in 0..clients {
        conns.push(connect(addr, token).await?);
    }
    // Warm-up: every connection used, sled's cache touched; not counted.
    let warm = CancellationToken::new();
    let mut tasks = Vec::with_capacity(clients);
    for (i, c) in conns.iter().enumerate() {
        tasks.push(tokio::spawn(client(
            c.clone(),
            i,
            pace,
            targets.clone(),
            (warm.clone(), Instant::now()),
        )));
    }
    tokio::time::sleep(Duration::from_millis(WARMUP_MS)).await;
    warm.cancel();
    for t in tasks {
        t.await.map_err(|e| anyhow!("client task: {e}"))?;
    }
    let stop = CancellationToken::new();
    let mut tasks = Vec::with_capacity(clients);
    let t = Instant::now();
    for (i, c) in conns.into_iter().enumerate() {
        tasks.push(tokio::spawn(client(
            c,
            i,
            pace,
            targets.clone(),
            (stop.clone(), t),
        )));
    }
    tokio::time::sleep(for_how_long).await;
    stop.cancel();
    let mut tally = Tally::default();
    for t in tasks {
        tally.merge(t.await.map_err(|e| anyhow!("client task: {e}"))?);
    }
    Ok((tally, t.elapsed()))
}

/// One client: the mix until `stop`, a call every `pace` (latency counted
/// from the time the call was due, so a slow answer that delays the next
/// calls counts against them too), or call after call when `None`.
async fn client(
    mut c: Client,
    i: usize,
    pace: Option<Duration>,
    t: Arc<Targets>,
    (stop, phase_start): (CancellationToken, Instant),
) -> Tally {
    let mut tally = Tally::default();
    let mut k = i;
    // Clients start spread over one period (golden-ratio offsets), not in step.
    let mut schedule = pace.map(|every| {
        let offset = every.mul_f64((i as f64 * 0.618_033_988_7).fract());
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + offset, every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        tick
    });
    loop {
        let due = match &mut schedule {
            Some(tick) => tokio::select! {
                _ = stop.cancelled() => break,
                at = tick.tick() => at.into_std(),
            },
            None if stop.is_cancelled() => break,
            None => Instant::now(),
        };
        let rpc = Rpc::MIX[k % Rpc::MIX.len()];
        // A multiplicative stride spreads the picks over every target.
        let pick = k.wrapping_mul(104_729);
        k += 1;
        let r = one_call(&mut c, rpc, pick, &t).await;
        let took = due.elapsed();
        let second = due.saturating_duration_since(phase_start).as_secs() as u32;
        match r {
            Ok(wrong) => {
                tally.took.entry(rpc).or_default().push(took);
                tally.timeline.push((second, took));
                if let Some(wrong) = wrong {
                    tally.wrong(format!("{}: {wrong}", rpc.name()));
                }
            }
            Err(s) => tally.error(rpc.name(), &s),
        }
    }
    tally
}

/// One call of the mix; `Ok(Some(why))` when it succeeded with an answer that
/// contradicts what the ledger holds.
async fn one_call(
    c: &mut Client,
    rpc: Rpc,
    pick: usize,
    t: &Targets,
) -> Result<Option<String>, tonic::Status> {
    let pick_of = |xs: &RwLock<Vec<String>>| -> Option<String> {
        let xs = xs.read().ok()?;
        xs.get(pick % xs.len().max(1)).cloned()
    };
    match rpc {
        Rpc::GetSource => {
            let r = c
                .get_source(GetSourceRequest {
                    source_id: SOURCE.into(),
                    as_of: None,
                })
                .await?
                .into_inner();
            if r.source.is_none_or(|s| s.source_id != SOURCE) {
                return Ok(Some("no source state".into()));
            }
        }
        Rpc::GetRun => {
            let Some(run_id) = pick_of(&t.runs) else {
                return Ok(Some("no run to ask about".into()));
            };
            let r = c
                .get_run(GetRunRequest {
                    run_id: run_id.clone(),
                })
                .await?
                .into_inner();
            // A run decided COMPLETE stays COMPLETE.
            if r.verdict != Verdict::Complete as i32 {
                return Ok(Some(format!("run {run_id} is now {}", r.verdict)));
            }
        }
        Rpc::GetIdentity => {
            let user = &t.users[pick % t.users.len()];
            let r = c
                .get_identity(GetIdentityRequest {
                    source_id: SOURCE.into(),
                    entity_type: EntityType::User as i32,
                    external_id: user.clone(),
                    as_of: None,
                })
                .await?
                .into_inner();
            if r.identity.is_none_or(|i| &i.external_id != user) {
                return Ok(Some(format!("identity {user} missing or another")));
            }
        }
        Rpc::CheckReadiness => {
            let r = c
                .check_readiness(CheckReadinessRequest {
                    source_ids: vec![SOURCE.into()],
                    ..Default::default()
                })
                .await?
                .into_inner();
            if r.sources.len() != 1 {
                return Ok(Some(format!("{} sources in scope", r.sources.len())));
            }
        }
        Rpc::ListActions => {
            let r = c
                .list_actions(ListActionsRequest {
                    source_id: SOURCE.into(),
                    outcome: 0,
                    limit: 20,
                })
                .await?
                .into_inner();
            if r.actions.is_empty() || r.actions.len() > 20 {
                return Ok(Some(format!("{} actions listed", r.actions.len())));
            }
        }
        Rpc::GetAction => {
            let Some(id) = pick_of(&t.actions) else {
                return Ok(Some("no action to ask about".into()));
            };
            // An action submitted a moment ago may not be projected yet: ask
            // about the settled ones (the first SEED_ACTIONS) half the time.
            let id = if pick.is_multiple_of(2) {
                pick_of_first(&t.actions, pick).unwrap_or(id)
            } else {
                id
            };
            match c
                .get_action(GetActionRequest {
                    action_id: id.clone(),
                    as_of: None,
                })
                .await
            {
                Ok(r) => {
                    if r.into_inner().action.is_none_or(|a| a.action_id != id) {
                        return Ok(Some(format!("action {id} missing or another")));
                    }
                }
                // Submitted (acknowledged) but not folded yet: a true answer.
                Err(s) if s.code() == tonic::Code::NotFound && !is_seed(&t.actions, &id) => {}
                Err(s) => return Err(s),
            }
        }
        Rpc::GetLedgerStatus => {
            let r = c
                .get_ledger_status(GetLedgerStatusRequest { with_digest: false })
                .await?
                .into_inner();
            if r.meta.is_none_or(|m| m.last_applied_seq == 0) {
                return Ok(Some("nothing applied".into()));
            }
        }
    }
    Ok(None)
}

fn pick_of_first(xs: &RwLock<Vec<String>>, pick: usize) -> Option<String> {
    let xs = xs.read().ok()?;
    let n = xs.len().clamp(1, SEED_ACTIONS);
    xs.get(pick % n).cloned()
}

fn is_seed(xs: &RwLock<Vec<String>>, id: &str) -> bool {
    xs.read()
        .map(|xs| xs.iter().take(SEED_ACTIONS).any(|x| x == id))
        .unwrap_or(false)
}

/// Resident set size of `pid` now (`VmRSS` of /proc/PID/status).
fn rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|kib| kib.parse::<u64>().ok())
        .map(|kib| kib * 1024)
}

/// The machine's CPU time counters (`/proc/stat`, all CPUs, in ticks).
#[derive(Debug, Clone, Copy)]
struct CpuTimes {
    steal: u64,
    total: u64,
}

impl CpuTimes {
    fn now() -> Option<CpuTimes> {
        CpuTimes::parse(&std::fs::read_to_string("/proc/stat").ok()?)
    }

    /// The first line: `cpu user nice system idle iowait irq softirq steal ...`.
    fn parse(stat: &str) -> Option<CpuTimes> {
        let fields: Vec<u64> = stat
            .lines()
            .next()?
            .strip_prefix("cpu ")?
            .split_whitespace()
            .take(8)
            .map(|f| f.parse().ok())
            .collect::<Option<_>>()?;
        (fields.len() == 8).then(|| CpuTimes {
            steal: fields[7],
            total: fields.iter().sum(),
        })
    }

    fn stolen_share(from: Option<CpuTimes>, to: Option<CpuTimes>) -> Option<f64> {
        let (a, b) = (from?, to?);
        let total = b.total.checked_sub(a.total).filter(|t| *t > 0)?;
        Some(b.steal.checked_sub(a.steal)? as f64 / total as f64)
    }
}

fn percent(share: Option<f64>) -> String {
    share.map_or("?".into(), |s| format!("{:.1} %", s * 100.0))
}

/// The 1-minute load average.
fn loadavg() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// RSS after warm-up against RSS at the end.
#[derive(Debug, Clone, PartialEq)]
pub struct RssVerdict {
    /// Median of the samples in 20–30 % of the load phase (warm-up = the
    /// first 20 %: sled's cache, allocator arenas and connection buffers fill).
    pub after_warmup: u64,
    /// Median of the last 10 % of the samples.
    pub end: u64,
    pub peak: u64,
    /// `end - after_warmup` (negative: it shrank).
    pub growth: i64,
    /// The growth allowed: the larger of 10 % of `after_warmup` and 16 MiB.
    pub allowed: u64,
    pub flat: bool,
}

/// Flat = grew by at most max(10 % of the post-warm-up level, 16 MiB).
/// Medians over windows, not single samples: a sync's page buffers come and
/// go within seconds; a leak stays and grows with calls and events.
pub fn rss_verdict(samples: &[u64]) -> Option<RssVerdict> {
    let n = samples.len();
    if n < 10 {
        return None;
    }
    let median = |xs: &[u64]| {
        let mut v = xs.to_vec();
        v.sort_unstable();
        v[v.len() / 2]
    };
    let after_warmup = median(&samples[n * 2 / 10..(n * 3 / 10).max(n * 2 / 10 + 1)]);
    let end = median(&samples[n - (n / 10).max(1)..]);
    let allowed = ((after_warmup as f64 * RSS_FLAT_SHARE) as u64).max(RSS_FLAT_FLOOR_BYTES);
    let growth = end as i64 - after_warmup as i64;
    Some(RssVerdict {
        after_warmup,
        end,
        peak: samples.iter().copied().max().unwrap_or(0),
        growth,
        allowed,
        flat: growth <= allowed as i64,
    })
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

fn mib(b: u64) -> String {
    format!("{:.1} MiB", b as f64 / (1024.0 * 1024.0))
}

fn report(p: &LoadParams, c: &Campaign, load_before: Option<f64>, wall: Duration) -> String {
    let machine = report::Machine::detect();
    let mut s = String::new();
    let profile = crate::PROFILE;
    s.push_str("## Load campaign (issue 22 item 8)\n\n");
    s.push_str(&format!(
        "- {} clients, {}; idle {} s, then {} s loaded ({:.0} s measured): syncs of {} users back to back (page {}{}) and {} actions/s (DEACTIVATE, each its own user)\n",
        p.clients,
        if p.rate_per_client > 0.0 {
            format!(
                "each {} calls/s on a schedule (latency from the time a call was due)",
                p.rate_per_client
            )
        } else {
            "each call after call (unpaced: a throughput test; its p99 ratio is the throughput lost)".into()
        },
        p.idle.as_secs(),
        p.duration.as_secs(),
        c.loaded_wall.as_secs_f64(),
        p.identities,
        p.page_size,
        if p.page_latency_ms > 0 {
            format!(", the source answering each page in {} ms", p.page_latency_ms)
        } else {
            ", at full speed".into()
        },
        p.actions_per_s
    ));
    s.push_str(&format!(
        "- machine: {}; build: {profile}; date {}; commit `{}`; wall {:.0} s\n",
        machine.describe(),
        chrono::Utc::now().format("%Y-%m-%d %H:%M UTC"),
        report::git_commit(&procs::workspace_root()),
        wall.as_secs_f64()
    ));
    s.push_str(&format!(
        "- machine busy: 1-min loadavg {} before, {:.2} on average during the load phase, on {} cores (other builders share them); CPU time stolen by the hypervisor: {} of the idle phase, {} of the load phase\n\n",
        load_before.map_or("?".into(), |l| format!("{l:.2}")),
        c.loadavg_during,
        machine.cores,
        percent(c.steal.0),
        percent(c.steal.1),
    ));
    s.push_str("| RPC | idle calls | idle p50 / p99 | loaded calls | loaded p50 / p99 / p99.9 / max | p99 loaded ÷ idle | target | errors |\n|---|---:|---|---:|---|---:|---|---:|\n");
    let mut all_idle = Vec::new();
    let mut all_loaded = Vec::new();
    let mut worst = 0.0f64;
    for rpc in Rpc::MIX {
        let mut i = c.idle.took.get(&rpc).cloned().unwrap_or_default();
        let mut l = c.loaded.took.get(&rpc).cloned().unwrap_or_default();
        i.sort_unstable();
        l.sort_unstable();
        let ratio =
            percentile(&l, 99.0).as_secs_f64() / percentile(&i, 99.0).as_secs_f64().max(1e-9);
        worst = worst.max(ratio);
        let errors: u64 = c
            .loaded
            .errors
            .iter()
            .chain(c.idle.errors.iter())
            .filter(|((what, _), _)| what == rpc.name())
            .map(|(_, n)| n)
            .sum();
        s.push_str(&format!(
            "| {} | {} | {} / {} | {} | {} / {} / {} / {} | {ratio:.2} | ≤ {P99_RATIO_MAX:.0}× {} | {errors} |\n",
            rpc.name(),
            i.len(),
            ms(percentile(&i, 50.0)),
            ms(percentile(&i, 99.0)),
            l.len(),
            ms(percentile(&l, 50.0)),
            ms(percentile(&l, 99.0)),
            ms(percentile(&l, 99.9)),
            ms(l.last().copied().unwrap_or_default()),
            if ratio <= P99_RATIO_MAX { "pass" } else { "FAIL" },
        ));
        all_idle.extend(i);
        all_loaded.extend(l);
    }
    all_idle.sort_unstable();
    all_loaded.sort_unstable();
    let all_ratio = percentile(&all_loaded, 99.0).as_secs_f64()
        / percentile(&all_idle, 99.0).as_secs_f64().max(1e-9);
    s.push_str(&format!(
        "| all | {} | {} / {} | {} | {} / {} / {} / {} | {all_ratio:.2} | ≤ {P99_RATIO_MAX:.0}× {} | {} |\n\n",
        all_idle.len(),
        ms(percentile(&all_idle, 50.0)),
        ms(percentile(&all_idle, 99.0)),
        all_loaded.len(),
        ms(percentile(&all_loaded, 50.0)),
        ms(percentile(&all_loaded, 99.0)),
        ms(percentile(&all_loaded, 99.9)),
        ms(all_loaded.last().copied().unwrap_or_default()),
        if all_ratio <= P99_RATIO_MAX { "pass" } else { "FAIL" },
        c.idle.error_count() + c.loaded.error_count()
    ));
    let errors = c.idle.error_count() + c.loaded.error_count() + c.driver.error_count();
    s.push_str(&format!(
        "- calls: {} idle, {} loaded ({:.0}/s); errors: {errors} (target 0){}\n",
        c.idle.calls(),
        c.loaded.calls(),
        c.loaded.calls() as f64 / c.loaded_wall.as_secs_f64().max(1e-9),
        if errors == 0 { " pass" } else { " FAIL" }
    ));
    for ((what, code), n) in c
        .idle
        .errors
        .iter()
        .chain(c.loaded.errors.iter())
        .chain(c.driver.errors.iter())
    {
        s.push_str(&format!("  - {what}: {code} × {n}\n"));
    }
    for e in c
        .idle
        .error_samples
        .iter()
        .chain(&c.loaded.error_samples)
        .chain(&c.driver.error_samples)
    {
        s.push_str(&format!("  - e.g. {e}\n"));
    }
    let wrong = c.idle.wrong + c.loaded.wrong;
    s.push_str(&format!(
        "- wrong answers (a run decided COMPLETE no longer COMPLETE, an identity or action missing, …): {wrong}{}\n",
        if wrong == 0 { " pass" } else { " FAIL" }
    ));
    for w in c.idle.wrong_samples.iter().chain(&c.loaded.wrong_samples) {
        s.push_str(&format!("  - e.g. {w}\n"));
    }
    s.push_str(&format!(
        "- worst per-RPC p99 ratio: {worst:.2} (target ≤ {P99_RATIO_MAX:.0}×){}\n",
        if worst <= P99_RATIO_MAX {
            " pass"
        } else {
            " FAIL"
        }
    ));
    s.push_str(&format!(
        "- loaded p99 (all RPCs) per minute of the load phase: {}\n",
        per_minute_p99(&c.loaded.timeline)
            .iter()
            .map(|d| ms(*d))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    let over = percentile(&all_idle, 99.0).mul_f64(P99_RATIO_MAX);
    let (slow, worst_seconds) = slow_seconds(&c.loaded.timeline, over, 8);
    s.push_str(&format!(
        "- calls over {P99_RATIO_MAX:.0}× idle p99 ({}): {slow} of {}; the seconds of the phase with the most: {}\n",
        ms(over),
        c.loaded.timeline.len(),
        worst_seconds
            .iter()
            .map(|(sec, n)| format!("{sec} s ({n})"))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    let rss: Vec<u64> = c.rss.iter().map(|(_, b)| *b).collect();
    match rss_verdict(&rss) {
        Some(v) => s.push_str(&format!(
            "- serve RSS ({} samples, 1/s): after warm-up (median of 20–30 %) {}, end (median of last 10 %) {}, growth {:+.1} MiB, allowed {} (max(10 %, 16 MiB)), peak {}: {}\n",
            rss.len(),
            mib(v.after_warmup),
            mib(v.end),
            v.growth as f64 / (1024.0 * 1024.0),
            mib(v.allowed),
            mib(v.peak),
            if v.flat { "flat, pass" } else { "GROWING, FAIL" }
        )),
        None => s.push_str(&format!(
            "- serve RSS: only {} samples (load phase too short to judge)\n",
            rss.len()
        )),
    }
    if !rss.is_empty() {
        // The shape: a plateau after warm-up, or a climb to the end.
        let tenths: Vec<String> = (1..=10)
            .map(|i| mib(rss[(rss.len() * i / 10).clamp(1, rss.len()) - 1]))
            .collect();
        s.push_str(&format!(
            "  - RSS at each tenth of the load phase: {}\n",
            tenths.join(", ")
        ));
    }
    let mut verdicts: BTreeMap<&str, u64> = BTreeMap::new();
    for r in &c.syncs {
        *verdicts.entry(r.verdict.as_str()).or_default() += 1;
    }
    let mut took: Vec<Duration> = c.syncs.iter().map(|r| r.took).collect();
    took.sort_unstable();
    s.push_str(&format!(
        "- syncs during the load: {} decided ({}), {} users each ({}), trigger-to-decided p50 {:.1} s, max {:.1} s (first sync, unloaded: {:.1} s)\n",
        c.syncs.len(),
        verdicts
            .iter()
            .map(|(v, n)| format!("{v} {n}"))
            .collect::<Vec<_>>()
            .join(", "),
        p.identities,
        if c.syncs.iter().all(|r| r.records_unique == p.identities as u64) {
            "every run read all".to_owned()
        } else {
            "SOME RUN READ FEWER".to_owned()
        },
        percentile(&took, 50.0).as_secs_f64(),
        took.last().copied().unwrap_or_default().as_secs_f64(),
        c.first_sync.as_secs_f64()
    ));
    s.push_str(&format!(
        "  - each sync, trigger to decided, in order: {} s\n",
        c.syncs
            .iter()
            .map(|r| format!("{:.1}", r.took.as_secs_f64()))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    s.push_str(&format!(
        "- actions: {} submitted (incl. {SEED_ACTIONS} before the idle phase); outcomes: {}\n",
        c.actions_submitted,
        c.actions
            .iter()
            .map(|(o, n)| format!("{o} {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    s
}

/// Whether the report's figures meet every target (for `--strict`).
pub fn passed(report: &str) -> bool {
    !report.contains("FAIL")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rss_is_flat_within_a_tenth_or_16_mib() {
        let mib = 1024 * 1024;
        // 100 samples: warm-up climbs, then a plateau at 200 MiB with spikes.
        let mut xs: Vec<u64> = (0..20).map(|i| (100 + i * 5) * mib).collect();
        xs.extend((0..80).map(|i| if i % 9 == 0 { 260 * mib } else { 200 * mib }));
        let v = rss_verdict(&xs).unwrap();
        assert_eq!(v.after_warmup, 200 * mib);
        assert_eq!(v.end, 200 * mib);
        assert!(v.flat, "{v:?}");
        assert_eq!(v.peak, 260 * mib);
        // A steady climb of 1 MiB per sample is not flat.
        let climb: Vec<u64> = (0..100).map(|i| (100 + i) * mib).collect();
        let v = rss_verdict(&climb).unwrap();
        assert!(!v.flat, "{v:?}");
        assert_eq!(v.allowed, 16 * mib);
        assert!(rss_verdict(&climb[..5]).is_none());
    }

    #[test]
    fn slow_calls_are_counted_by_second_and_p99_by_minute() {
        let ms = Duration::from_millis;
        let mut timeline: Vec<(u32, Duration)> = (0..180).map(|sec| (sec, ms(2))).collect();
        timeline.extend([(61, ms(30)), (61, ms(40)), (5, ms(9)), (150, ms(8))]);
        // The phase's last seconds: too few calls to be a minute of their own.
        timeline.extend([(180, ms(1)), (181, ms(1))]);
        let (slow, worst) = slow_seconds(&timeline, ms(8), 2);
        assert_eq!(slow, 3, "over 8 ms, not at it");
        assert_eq!(worst, vec![(61, 2), (5, 1)]);
        // Minute 1 holds the two slow calls among 62: its p99 is the slowest.
        assert_eq!(per_minute_p99(&timeline), vec![ms(9), ms(40), ms(8)]);
        assert!(per_minute_p99(&[]).is_empty());
    }

    #[test]
    fn stolen_cpu_is_read_from_the_first_line_of_proc_stat() {
        let a = CpuTimes::parse("cpu  100 0 50 800 0 0 0 50 0 0\ncpu0 1 2 3\n").unwrap();
        let b = CpuTimes::parse("cpu  200 0 50 850 0 0 0 100 0 0\n").unwrap();
        assert_eq!((a.steal, a.total), (50, 1000));
        let share = CpuTimes::stolen_share(Some(a), Some(b)).unwrap();
        assert!((share - 0.25).abs() < 1e-9, "{share}");
        assert!(CpuTimes::parse("cpu0 1 2 3 4 5 6 7 8").is_none());
        assert!(CpuTimes::parse("cpu  1 2 3").is_none());
        assert!(CpuTimes::stolen_share(Some(b), Some(a)).is_none());
    }
}
