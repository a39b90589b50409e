//! The embedded NATS: when no `nats.url` is configured, govledger runs a real
//! `nats-server -js` as a child process, with its store inside the data folder,
//! and stops it on shutdown.
//!
//! A stale child left by a crashed govledger (its pid file survives) is stopped
//! before a new one starts, so two servers never share one store.

use std::{
    net::TcpListener,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use nix::{sys::signal, unistd::Pid};
use tokio::process::{Child, Command};

/// How long the child may take to accept connections.
pub const READY_TIMEOUT_MS: u64 = 10_000;
/// How long a graceful stop may take before SIGKILL.
pub const STOP_GRACE_MS: u64 = 5_000;

#[derive(Debug, thiserror::Error)]
pub enum EmbedError {
    #[error(
        "no nats-server binary found (looked at {looked}); run scripts/install-tools.sh, \
         set nats.server_bin, or set nats.url to use an existing server"
    )]
    NotFound { looked: String },
    #[error("cannot start {bin}: {source}")]
    Spawn {
        bin: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot prepare {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "nats-server did not accept connections on 127.0.0.1:{port} within {READY_TIMEOUT_MS} ms; see {log}"
    )]
    NotReady { port: u16, log: String },
    #[error("nats-server exited during start ({status}); see {log}")]
    Exited { status: String, log: String },
}

/// Finds the `nats-server` binary: explicit path, `GOVLEDGER_NATS_SERVER`, the
/// project's `.tools/venv/bin` (next to the working directory or the executable),
/// then `PATH`.
pub fn find_binary(explicit: Option<&Path>) -> Result<PathBuf, EmbedError> {
    let mut looked = Vec::new();
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let Some(p) = explicit {
        candidates.push(p.to_path_buf());
    }
    if let Some(p) = std::env::var_os("GOVLEDGER_NATS_SERVER") {
        candidates.push(PathBuf::from(p));
    }
    candidates.push(PathBuf::from(".tools/venv/bin/nats-server"));
    if let Ok(exe) = std::env::current_exe() {
        // target/<profile>/govledger → the checkout root
        for anc in exe.ancestors().skip(1).take(4) {
            candidates.push(anc.join(".tools/venv/bin/nats-server"));
        }
    }
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            candidates.push(dir.join("nats-server"));
        }
    }
    for c in candidates {
        if c.is_file() {
            return Ok(c);
        }
        looked.push(c.display().to_string());
    }
    Err(EmbedError::NotFound {
        looked: looked.join(", "),
    })
}

/// A free TCP port on 127.0.0.1 (released before returning; good enough for a
/// child that binds it right away).
pub fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

pub struct EmbeddedNats {
    child: Child,
    pub url: String,
    pub port: u16,
    pid_file: PathBuf,
}

impl EmbeddedNats {
    /// Starts `bin -js` with its store in `dir` and waits until it accepts connections.
    pub async fn start(bin: &Path, dir: &Path, port: u16) -> Result<Self, EmbedError> {
        Self::start_with_config(bin, dir, port, None).await
    }

    /// [`Self::start`] with a nats-server config file (`-c`), e.g. one that
    /// requires a credential; the command line's address, port, store, pid file
    /// and log still apply.
    pub async fn start_with_config(
        bin: &Path,
        dir: &Path,
        port: u16,
        config: Option<&Path>,
    ) -> Result<Self, EmbedError> {
        let io = |path: &Path| {
            let path = path.display().to_string();
            move |source| EmbedError::Io { path, source }
        };
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let pid_file = dir.join("nats-server.pid");
        stop_stale(&pid_file).await;
        let port = if port == 0 {
            free_port().map_err(io(dir))?
        } else {
            port
        };
        let log = dir.join("nats-server.log");
        let store = dir.join("store");
        let mut cmd = Command::new(bin);
        if let Some(c) = config {
            cmd.arg("-c").arg(c);
        }
        let child = cmd
            .arg("-a")
            .arg("127.0.0.1")
            .arg("-p")
            .arg(port.to_string())
            .arg("-js")
            .arg("-sd")
            .arg(&store)
            .arg("-P")
            .arg(&pid_file)
            .arg("-l")
            .arg(&log)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .map_err(|source| EmbedError::Spawn {
                bin: bin.display().to_string(),
                source,
            })?;
        let mut me = Self {
            child,
            url: format!("nats://127.0.0.1:{port}"),
            port,
            pid_file,
        };
        let deadline = Instant::now() + Duration::from_millis(READY_TIMEOUT_MS);
        loop {
            if let Ok(Some(status)) = me.child.try_wait() {
                return Err(EmbedError::Exited {
                    status: status.to_string(),
                    log: log.display().to_string(),
                });
            }
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                return Ok(me);
            }
            if Instant::now() > deadline {
                let _ = me.child.start_kill();
                return Err(EmbedError::NotReady {
                    port,
                    log: log.display().to_string(),
                });
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The child's process id while it runs (for measuring it from `/proc`).
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// SIGKILL and reap, without a runtime: no flush, no goodbye, and the pid
    /// file stays, as after a crash (test harnesses use this to crash the
    /// server; `serve` never does). Waits at most [`STOP_GRACE_MS`] for the
    /// exit to be reaped.
    pub fn kill(mut self) {
        let _ = self.child.start_kill();
        let deadline = Instant::now() + Duration::from_millis(STOP_GRACE_MS);
        while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// SIGTERM, wait up to [`STOP_GRACE_MS`], then SIGKILL.
    pub async fn stop(mut self) {
        if let Some(pid) = self.child.id() {
            let _ = signal::kill(Pid::from_raw(pid as i32), signal::Signal::SIGTERM);
            let grace = Duration::from_millis(STOP_GRACE_MS);
            if tokio::time::timeout(grace, self.child.wait())
                .await
                .is_err()
            {
                tracing::warn!(pid, "nats-server did not stop in time; killing it");
                let _ = self.child.kill().await;
            }
        }
        let _ = std::fs::remove_file(&self.pid_file);
    }
}

/// Stops a nats-server left running by a crashed govledger on this store.
async fn stop_stale(pid_file: &Path) {
    let Ok(text) = std::fs::read_to_string(pid_file) else {
        return;
    };
    let Ok(pid) = text.trim().parse::<i32>() else {
        return;
    };
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
    if comm.trim() != "nats-server" {
        return;
    }
    tracing::warn!(
        pid,
        "stopping a nats-server left running on this data folder"
    );
    let p = Pid::from_raw(pid);
    let _ = signal::kill(p, signal::Signal::SIGTERM);
    let deadline = Instant::now() + Duration::from_millis(STOP_GRACE_MS);
    while Instant::now() < deadline && signal::kill(p, None).is_ok() {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    if signal::kill(p, None).is_ok() {
        let _ = signal::kill(p, signal::Signal::SIGKILL);
    }
}
