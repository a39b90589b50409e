//! `govledger-bench`: measures govledger against physical baselines taken in
//! the same run on the same machine, and prints one markdown table (optionally
//! written to `BENCHMARKS.md` with the machine, date, commit and the command
//! that reproduces it).
//!
//! ```text
//! cargo run --release -p govledger-bench -- --scale medium --write BENCHMARKS.md
//! scripts/bench.sh [smoke|medium|full]
//! ```
//!
//! Layout:
//! - [`rows`]: which measurements run, in table order, and the rows each gives;
//! - rows 1 publish ([`publish`]), 2 projection ([`project`]), 3 sync overhead
//!   ([`sync`]), 4 scale and 6 growth ([`scale`]), 5 query latency ([`query`]),
//!   7 what a proof and an identity's export cost at each size ([`audit_cost`]);
//! - [`storage`]: the storage-side baseline, raw sled writes of the same keys
//!   (an informational ratio beside the projection rows);
//! - [`events`]: the event histories measured; [`procs`]: the child processes
//!   and how they are measured; [`report`]: the table and BENCHMARKS.md;
//! - [`load`]: the load campaign (`--only load`, RELIABILITY.md), its own
//!   report on stdout, never in BENCHMARKS.md's table;
//! - [`cluster`]: one vs two ingest workers and query nodes on a three-node
//!   JetStream cluster (`--only cluster`), its own report on stdout.
//!
//! Everything runs locally: the benchmark starts (and always stops) its own
//! `nats-server` and `scim2-server` on free ports, and runs the `govledger`
//! binary built with the same profile as itself as child processes.
#![forbid(unsafe_code)]

mod audit_cost;
mod cluster;
mod events;
mod load;
mod procs;
mod project;
mod publish;
mod query;
mod report;
mod rows;
mod scale;
mod storage;
mod sync;

use std::{path::PathBuf, process::ExitCode, sync::OnceLock, time::Instant};

use anyhow::{Context as _, Result, anyhow, bail};
use clap::{Parser, ValueEnum};

use report::{Outcome, short, thousands};

/// sled's copy-on-write pages allocate and free at a high rate; with glibc's
/// allocator the projector spent a third of its time in malloc (BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "govledger-bench",
    about = "Benchmarks govledger against physical baselines measured in the same run"
)]
struct Cli {
    /// How big: smoke (seconds, any build), medium (minutes, release), full.
    #[arg(long, value_enum, default_value_t = Scale::Medium)]
    scale: Scale,
    /// Also write the report (markdown) to this file, e.g. BENCHMARKS.md.
    #[arg(long)]
    write: Option<PathBuf>,
    /// The `govledger` binary to run as a child. Default: the one next to this
    /// executable (built first with the same profile unless --no-build).
    #[arg(long, env = "GOVLEDGER_BIN")]
    govledger_bin: Option<PathBuf>,
    /// Do not run `cargo build -p govledger` before using the binary.
    #[arg(long)]
    no_build: bool,
    /// Exit with code 1 when a row misses its target.
    #[arg(long)]
    strict: bool,
    /// Run only these groups of rows (for profiling one part; the report then
    /// holds only them): `project` (rows 1 and 2), `sync` (row 3), `scale`
    /// (rows 4, 5 and 6). Default: all. `load` is the load campaign (issue 22
    /// item 8, its own report on stdout, never BENCHMARKS.md), run alone.
    #[arg(long, value_enum, value_delimiter = ',')]
    only: Vec<Group>,
    /// `--only load`: concurrent clients.
    #[arg(long, default_value_t = 50)]
    clients: usize,
    /// `--only load`: seconds of the loaded phase.
    #[arg(long, default_value_t = 600)]
    duration_s: u64,
    /// `--only load`: users in the SCIM source synced again and again.
    #[arg(long, default_value_t = 100_000)]
    identities: usize,
    /// `--only load`: seconds of the idle phase (the same clients, nothing else).
    #[arg(long, default_value_t = 30)]
    idle_s: u64,
    /// `--only load`: actions submitted per second during the loaded phase.
    #[arg(long, default_value_t = 2.0)]
    actions_per_s: f64,
    /// `--only load`: calls per second each client makes, on a schedule
    /// (latency counted from the scheduled time); 0 = call after call, as
    /// fast as the server answers (a throughput test, not a latency one).
    #[arg(long, default_value_t = 20.0)]
    rate_per_client: f64,
    /// `--only load`: users per page of the source's listing.
    #[arg(long, default_value_t = 100)]
    page_size: u32,
    /// `--only load`: how long the source takes to answer each page of a
    /// listing in the loaded phase (a hosted SCIM API answers in hundreds of
    /// ms, so a large sync lasts minutes). The default makes one sync of
    /// 100,000 users in pages of 100 last the default 600 s. 0 = as fast as
    /// it can: syncs back to back at full speed (the stress profile, with
    /// `--page-size 1000`).
    #[arg(long, default_value_t = 600)]
    page_latency_ms: u64,
    /// `--only cluster`: users each of the 4 sources lists.
    #[arg(long, default_value_t = 50_000)]
    cluster_users: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Group {
    Project,
    Sync,
    Scale,
    Load,
    Cluster,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Scale {
    Smoke,
    Medium,
    Full,
}

/// The sizes of one scale.
#[derive(Debug, Clone)]
struct Params {
    /// Row 1 and 2: events published (held in memory) and projected.
    publish_events: usize,
    /// Row 3: users in the SCIM server.
    sync_users: usize,
    /// Row 4: identities and events.
    identities: u64,
    events: u64,
    /// Row 6: identity counts (events grow with them, same runs per identity).
    growth: Vec<u64>,
    /// Row 5: calls per RPC (per round).
    calls: usize,
}

impl Scale {
    fn name(self) -> &'static str {
        match self {
            Scale::Smoke => "smoke",
            Scale::Medium => "medium",
            Scale::Full => "full",
        }
    }

    fn params(self) -> Params {
        match self {
            Scale::Smoke => Params {
                publish_events: 5_000,
                sync_users: 200,
                identities: 2_000,
                events: 10_000,
                growth: vec![1_000, 2_000],
                calls: 500,
            },
            Scale::Medium => Params {
                publish_events: 200_000,
                sync_users: 10_000,
                identities: 100_000,
                events: 500_000,
                growth: vec![10_000, 100_000],
                calls: 10_000,
            },
            Scale::Full => Params {
                publish_events: 500_000,
                sync_users: 10_000,
                identities: 1_000_000,
                events: 5_000_000,
                growth: vec![10_000, 100_000, 1_000_000],
                calls: 20_000,
            },
        }
    }
}

impl Params {
    fn describe(&self) -> String {
        format!(
            "publish/projection {} events; sync {} users; scale {} identities / {} events; growth at {} identities; {} calls per RPC from {} clients",
            thousands(self.publish_events as u64),
            thousands(self.sync_users as u64),
            short(self.identities),
            short(self.events),
            self.growth
                .iter()
                .map(|g| short(*g))
                .collect::<Vec<_>>()
                .join(", "),
            thousands(self.calls as u64),
            query::TASKS
        )
    }
}

/// One progress line on stderr, with the time since start.
pub fn progress(msg: impl AsRef<str>) {
    static START: OnceLock<Instant> = OnceLock::new();
    let t = START.get_or_init(Instant::now).elapsed();
    eprintln!("[bench {:>7.1}s] {}", t.as_secs_f64(), msg.as_ref());
}

/// Rows 1 and 2 take each side's best of this many alternating rounds: on a
/// shared 2-core machine one side's rate moves by a quarter from round to round.
const BEST_OF_ROUNDS: usize = 3;

const PROFILE: &str = if cfg!(debug_assertions) {
    "debug"
} else {
    "release"
};

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    if !cli.only.is_empty() && cli.write.is_some() {
        eprintln!(
            "govledger-bench: --only runs part of the table; drop --write (BENCHMARKS.md keeps whole runs only)"
        );
        return ExitCode::from(2);
    }
    if cli.only.contains(&Group::Load) {
        return load_campaign(&cli).await;
    }
    if cli.only.contains(&Group::Cluster) {
        return cluster_campaign(&cli).await;
    }
    progress(format!("govledger-bench --scale {}", cli.scale.name()));
    let started = Instant::now();
    let outcome = tokio::select! {
        r = rows::run(&cli) => r,
        s = interrupted() => Err(anyhow!("interrupted by {s}; every child process was stopped")),
    };
    let rows = match outcome {
        Ok(rows) => rows,
        Err(e) => {
            eprintln!("govledger-bench: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    let (rows, details) = rows;
    let root = procs::workspace_root();
    let command = if PROFILE == "release" {
        format!(
            "scripts/bench.sh {0}  (= cargo run --release -p govledger-bench -- --scale {0} --write BENCHMARKS.md)",
            cli.scale.name()
        )
    } else {
        format!(
            "cargo run -p govledger-bench -- --scale {} --write BENCHMARKS.md",
            cli.scale.name()
        )
    };
    let meta = report::Meta {
        scale: cli.scale.name().to_owned(),
        scale_detail: cli.scale.params().describe(),
        machine: report::Machine::detect(),
        date: chrono::Utc::now().format("%Y-%m-%d %H:%M UTC").to_string(),
        commit: report::git_commit(&root),
        profile: PROFILE,
        command,
        wall: started.elapsed(),
    };
    let text = report::markdown(&meta, &rows, &details);
    println!("{text}");
    if let Some(path) = &cli.write {
        if let Err(e) = report::write_file(path, &text) {
            eprintln!("govledger-bench: {e:#}");
            return ExitCode::FAILURE;
        }
        progress(format!("wrote {}", path.display()));
    }
    let failed = rows.iter().filter(|r| r.outcome == Outcome::Fail).count();
    progress(format!(
        "done in {:.1} s: {} rows, {failed} missed their target",
        started.elapsed().as_secs_f64(),
        rows.len()
    ));
    if cli.strict && failed > 0 {
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

/// `--only cluster`: one vs two ingest workers and query nodes, on stdout.
async fn cluster_campaign(cli: &Cli) -> ExitCode {
    if cli.only != [Group::Cluster]
        || cli.cluster_users == 0
        || !(1..=1_000).contains(&cli.page_size)
    {
        eprintln!(
            "govledger-bench: --only cluster runs alone; --cluster-users above 0, --page-size 1 to 1000"
        );
        return ExitCode::from(2);
    }
    let run = async {
        // The children are the binary next to this one (testkit's lookup).
        govledger_bin(cli)?;
        cluster::run(cluster::ClusterParams {
            users: cli.cluster_users,
            page_size: cli.page_size,
        })
        .await
    };
    report_stdout(run, |_| true).await
}

/// Runs a campaign until it ends or a signal stops it; its report on stdout.
/// Exit code 1 on failure, or when `passed` says the report missed a target.
async fn report_stdout(
    run: impl std::future::Future<Output = Result<String>>,
    passed: impl Fn(&str) -> bool,
) -> ExitCode {
    let outcome = tokio::select! {
        r = run => r,
        s = interrupted() => Err(anyhow!("interrupted by {s}; every child process was stopped")),
    };
    match outcome {
        Ok(text) => {
            println!("{text}");
            if passed(&text) {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("govledger-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `--only load`: the load campaign alone, its report on stdout.
async fn load_campaign(cli: &Cli) -> ExitCode {
    if cli.only != [Group::Load] || cli.write.is_some() {
        eprintln!(
            "govledger-bench: --only load runs alone and prints its own report (no other group, no --write)"
        );
        return ExitCode::from(2);
    }
    if cli.clients == 0
        || cli.identities == 0
        || cli.duration_s == 0
        || cli.actions_per_s <= 0.0
        || !(cli.rate_per_client >= 0.0 && cli.rate_per_client <= 10_000.0)
        || !(1..=1_000).contains(&cli.page_size)
        || cli.page_latency_ms > 60_000
    {
        eprintln!(
            "govledger-bench: --clients, --identities, --duration-s and --actions-per-s must be above 0, \
             --rate-per-client between 0 (unpaced) and 10000, --page-size between 1 and 1000, \
             --page-latency-ms at most 60000"
        );
        return ExitCode::from(2);
    }
    let p = load::LoadParams {
        clients: cli.clients,
        duration: std::time::Duration::from_secs(cli.duration_s),
        identities: cli.identities,
        idle: std::time::Duration::from_secs(cli.idle_s.max(1)),
        actions_per_s: cli.actions_per_s,
        rate_per_client: cli.rate_per_client,
        page_size: cli.page_size,
        page_latency_ms: cli.page_latency_ms,
    };
    progress(format!("govledger-bench --only load: {p:?}"));
    let run = async {
        let nats = procs::nats_server_bin()?;
        let bin = govledger_bin(cli)?;
        load::run(&p, &nats, &bin).await
    };
    report_stdout(run, |text| !cli.strict || load::passed(text)).await
}

/// Resolves on SIGINT or SIGTERM (dropping the benchmark stops its children).
async fn interrupted() -> &'static str {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => "SIGINT",
        _ = term => "SIGTERM",
    }
}

/// The `govledger` binary the children run.
fn govledger_bin(cli: &Cli) -> Result<PathBuf> {
    if let Some(p) = &cli.govledger_bin {
        return Ok(p.clone());
    }
    let exe = std::env::current_exe().context("locating this executable")?;
    let dir = exe
        .parent()
        .ok_or_else(|| anyhow!("{} has no parent folder", exe.display()))?;
    let bin = dir.join("govledger");
    if !cli.no_build {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let manifest = procs::workspace_root().join("Cargo.toml");
        progress(format!(
            "cargo build ({PROFILE}) -p govledger --bin govledger"
        ));
        let mut cmd = std::process::Command::new(cargo);
        // Both packages: the same feature unification as this binary's own
        // build, so neither build undoes the other's.
        cmd.args([
            "build",
            "--quiet",
            "-p",
            "govledger",
            "-p",
            "govledger-bench",
        ])
        .args(["--bin", "govledger"])
        .arg("--manifest-path")
        .arg(&manifest);
        if PROFILE == "release" {
            cmd.arg("--release");
        }
        let status = cmd.status().context("running cargo build")?;
        if !status.success() {
            bail!("cargo build -p govledger failed ({status})");
        }
    }
    if !bin.is_file() {
        bail!(
            "no govledger binary at {} (build it, or pass --govledger-bin)",
            bin.display()
        );
    }
    Ok(bin)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn workspace_root_has_the_manifest() {
        assert!(procs::workspace_root().join("Cargo.toml").is_file());
    }

    #[test]
    fn cpu_rows_divide_by_events_and_cores() {
        let cores = std::thread::available_parallelism().map_or(1, usize::from) as f64;
        // 1,000 events: 3 s of projection CPU, 1 s raw CPU over 0.5 s raw wall.
        let [cpu, bound] = rows::cpu_rows("2", "x", 1_000, 3.0, 1.0, Duration::from_millis(500));
        assert_eq!(cpu.govledger, "3000.00 µs");
        assert_eq!(cpu.baseline, "1000.00 µs");
        assert_eq!(cpu.ratio, Some(3.0));
        let want = 0.5 * cores / 3.0;
        assert!(
            (bound.ratio.unwrap() - want).abs() < 1e-12,
            "{:?}",
            bound.ratio
        );
    }

    #[test]
    fn cpu_readers_count_work_done() {
        let own = || procs::rusage_cpu_seconds(nix::sys::resource::UsageWho::RUSAGE_SELF).unwrap();
        // Spinning makes this process's CPU time grow (by wall time it may
        // be descheduled, so the bound is generous).
        let before = own();
        let spin = Instant::now();
        let mut x = 0u64;
        while own() - before < 0.05 {
            assert!(
                spin.elapsed() < Duration::from_secs(20),
                "CPU time does not grow"
            );
            for _ in 0..10_000 {
                x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
            }
        }
        let by_proc = procs::cpu_seconds(std::process::id()).unwrap();
        assert!(by_proc > 0.0 && by_proc <= own() + 0.02, "{by_proc}");
        assert_eq!(procs::cpu_seconds(u32::MAX), None);
    }

    #[test]
    fn scales_are_ordered() {
        let s = Scale::Smoke.params();
        let m = Scale::Medium.params();
        let f = Scale::Full.params();
        assert!(s.events < m.events && m.events < f.events);
        for p in [&s, &m, &f] {
            assert!(p.growth.contains(&p.identities), "{p:?}");
            assert!(p.identities >= events::SOURCES * 100);
        }
    }
}
