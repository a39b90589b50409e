//! The embedded NATS: when no `nats.url` is configured, govledger runs a real
//! `nats-server -js` as a child process, with its store inside the data folder,
//! and stops it on shutdown.
//!
//! A stale child left by a crashed govledger (its pid file survives) is stopped
//! before a new one starts, so two servers never share one store.
//!
//! Auth ([`prepare_auth`], [`render_config`]): `govledger serve` starts the
//! child with a generated config (`<data_dir>/nats/server.conf`, mode 0600)
//! that refuses unauthenticated connections and knows two users, each with a
//! random password generated once and kept in the data folder (mode 0600):
//! - [`GOVLEDGER_USER`]: publishes the ledger's and the checkpoints' subjects
//!   and creates those two streams only; it reads any stream (info, get a
//!   message, consumers, acks: `verify --stream COPY`), never `STREAM.DELETE`,
//!   `STREAM.PURGE`, `STREAM.MSG.DELETE` nor `STREAM.UPDATE` (the contract
//!   check creates or checks a stream, it never updates one);
//! - [`SIEM_USER`]: read-only: subscribes to the ledger's subjects, reads the
//!   ledger stream with its own consumers, publishes nothing to a ledger
//!   subject and may not touch the projector's durable consumer.
//!
//! The pure part ([`render_config`]) does no I/O; [`prepare_auth`] writes the files.
//! [`start`](EmbeddedNats::start) without a config stays unauthenticated (the
//! test harness's servers).

use std::{
    net::TcpListener,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use govledger_stream::Secret;
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
    #[error(
        "no credential for the embedded NATS in {path}: start `govledger serve` on this data \
         folder first (it creates it), or set nats.url to use an external server"
    )]
    NoCredential { path: String },
    #[error(
        "{path} does not hold a password govledger generated ({PASSWORD_LEN} letters and \
         digits); stop govledger, delete the file and start `govledger serve` again to \
         generate a new one"
    )]
    BadCredential { path: String },
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
    /// How it was started, to start it again the same way (same port, store,
    /// config) when it dies.
    bin: PathBuf,
    dir: PathBuf,
    config: Option<PathBuf>,
}

/// First wait before restarting a nats-server that died; doubled per failed
/// start up to [`RESTART_BACKOFF_MAX_MS`].
pub const RESTART_BACKOFF_MIN_MS: u64 = 250;
pub const RESTART_BACKOFF_MAX_MS: u64 = 10_000;

/// Keeps the embedded server running until `shutdown`: when the child exits
/// by itself it is reported (an error line; health and the alert follow from
/// the NATS watch of `serve`) and started again on the same port, store and config, with backoff; on
/// `shutdown` it is stopped (SIGTERM, then SIGKILL after [`STOP_GRACE_MS`]).
pub fn supervise(
    mut nats: EmbeddedNats,
    restart: std::sync::Arc<tokio::sync::Notify>,
    shutdown: tokio_util::sync::CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let status = tokio::select! {
                _ = shutdown.cancelled() => {
                    nats.stop().await;
                    tracing::info!("embedded nats-server stopped");
                    return;
                }
                // Asked for (its store's disk was full: nats-server keeps a
                // store's write error until it restarts).
                _ = restart.notified() => {
                    tracing::warn!("restarting the embedded nats-server to clear its store's write error");
                    if let Some(pid) = nats.child.id() {
                        let _ = signal::kill(Pid::from_raw(pid as i32), signal::Signal::SIGTERM);
                    }
                    let grace = Duration::from_millis(STOP_GRACE_MS);
                    if tokio::time::timeout(grace, nats.child.wait()).await.is_err() {
                        let _ = nats.child.kill().await;
                    }
                    "stopped by govledger to be restarted".to_owned()
                }
                st = nats.child.wait() => st.map_or_else(|e| e.to_string(), |s| s.to_string()),
            };
            let log = nats.dir.join("nats-server.log");
            tracing::error!(
                "embedded nats-server exited ({status}); restarting it on port {} (its log: {})",
                nats.port,
                log.display()
            );
            let mut delay = Duration::from_millis(RESTART_BACKOFF_MIN_MS);
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(delay) => {}
                }
                match EmbeddedNats::start_with_config(
                    &nats.bin,
                    &nats.dir,
                    nats.port,
                    nats.config.as_deref(),
                )
                .await
                {
                    Ok(next) => {
                        tracing::info!(
                            pid = next.pid().unwrap_or_default(),
                            "embedded nats-server restarted on port {}",
                            next.port
                        );
                        nats = next;
                        break;
                    }
                    Err(e) => {
                        tracing::warn!(
                            "embedded nats-server did not start again: {e}; next try in {} ms",
                            delay.as_millis()
                        );
                        delay = (delay * 2).min(Duration::from_millis(RESTART_BACKOFF_MAX_MS));
                    }
                }
            }
        }
    })
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
            bin: bin.to_path_buf(),
            dir: dir.to_path_buf(),
            config: config.map(Path::to_path_buf),
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

/// The embedded server's user for every govledger role (and local commands).
pub const GOVLEDGER_USER: &str = "govledger";
/// The embedded server's read-only user for a SIEM (`govledger credentials siem`).
pub const SIEM_USER: &str = "siem";
/// Length of a generated password (letters and digits: ~190 bits).
pub const PASSWORD_LEN: usize = 32;
/// The generated nats-server config, in the embedded server's folder.
pub const CONFIG_FILE: &str = "server.conf";
/// The audit checkpoints' stream and subjects (see `crate::audit::checkpoints`),
/// which the `govledger` user writes too.
const AUDIT_STREAM: &str = crate::audit::checkpoints::AUDIT_STREAM;
const ALERTS_STREAM: &str = crate::alerts::ALERTS_STREAM;
const ALERT_SUBJECTS: &str = crate::alerts::ALERT_SUBJECTS;
const OCSF_STREAM: &str = crate::ocsf::feed::OCSF_STREAM;
const OCSF_SUBJECTS: &str = crate::ocsf::feed::OCSF_SUBJECTS;
const AUDIT_SUBJECTS: &str = "govledger.audit.>";

/// The file holding `user`'s password in the embedded server's folder `dir`.
pub fn password_file(dir: &Path, user: &str) -> PathBuf {
    dir.join(format!("{user}.password"))
}

/// What the generated config allows: the ledger's stream and the durable
/// consumer of the projector (which the SIEM may not use).
#[derive(Debug, Clone)]
pub struct AuthScope {
    /// The ledger's stream (`nats.stream`).
    pub stream: String,
    /// The projector's durable consumer (`projector.durable`).
    pub projector_durable: String,
}

/// The files [`prepare_auth`] wrote or kept, and the `govledger` user's password.
#[derive(Debug)]
pub struct EmbeddedAuth {
    /// The nats-server config (mode 0600).
    pub config: PathBuf,
    /// The `govledger` user's password (from its file).
    pub govledger_password: Secret,
}

/// Creates (once) the two users' passwords in `dir` (mode 0600; kept across
/// restarts) and writes the server config (mode 0600) for `scope`.
pub fn prepare_auth(dir: &Path, scope: &AuthScope) -> Result<EmbeddedAuth, EmbedError> {
    let io = |path: &Path| {
        let path = path.display().to_string();
        move |source| EmbedError::Io { path, source }
    };
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(io(dir))?;
    }
    let govledger = password_or_create(&password_file(dir, GOVLEDGER_USER))?;
    let siem = password_or_create(&password_file(dir, SIEM_USER))?;
    let config = dir.join(CONFIG_FILE);
    write_private(&config, &render_config(scope, &govledger, &siem)).map_err(io(&config))?;
    Ok(EmbeddedAuth {
        config,
        govledger_password: govledger,
    })
}

/// Reads `user`'s password from the embedded server's folder `dir`.
pub fn read_password(dir: &Path, user: &str) -> Result<Secret, EmbedError> {
    read_password_file(&password_file(dir, user))
}

/// The generated password in `path`.
fn read_password_file(path: &Path) -> Result<Secret, EmbedError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(EmbedError::NoCredential {
                path: path.display().to_string(),
            });
        }
        Err(source) => {
            return Err(EmbedError::Io {
                path: path.display().to_string(),
                source,
            });
        }
    };
    let pw = text.trim();
    if is_generated_password(pw) {
        Ok(Secret::new(pw))
    } else {
        Err(EmbedError::BadCredential {
            path: path.display().to_string(),
        })
    }
}

/// A password as [`new_password`] makes them: safe inside a quoted config string.
fn is_generated_password(pw: &str) -> bool {
    pw.len() == PASSWORD_LEN && pw.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// A fresh random password of [`PASSWORD_LEN`] letters and digits.
fn new_password() -> Secret {
    use rand::Rng as _;
    let pw: String = rand::rng()
        .sample_iter(rand::distr::Alphanumeric)
        .take(PASSWORD_LEN)
        .map(char::from)
        .collect();
    Secret::new(pw)
}

/// The password in `path`, or a new one written there (mode 0600) when the
/// file does not exist. An existing file's mode is tightened to 0600.
fn password_or_create(path: &Path) -> Result<Secret, EmbedError> {
    let io = |source| EmbedError::Io {
        path: path.display().to_string(),
        source,
    };
    if !path.exists() {
        let pw = new_password();
        write_private(path, &format!("{}\n", pw.expose())).map_err(io)?;
    } else {
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(io)?;
        }
    }
    read_password_file(path)
}

/// Writes `text` to `path`, readable by its owner only (mode 0600 from the
/// first byte: the file is created with that mode, then tightened if it existed).
pub fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        opts.mode(0o600);
    }
    let mut f = opts.open(path)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    f.write_all(text.as_bytes())?;
    f.sync_all()
}

/// A quoted list of subjects in nats-server config syntax.
fn list(subjects: &[String]) -> String {
    let quoted: Vec<String> = subjects.iter().map(|s| format!("\"{s}\"")).collect();
    format!("[{}]", quoted.join(", "))
}

/// The JetStream API (and ack) subjects that read `stream` with consumers:
/// stream info, get one message, create/inspect/fetch from a consumer, ack.
fn read_api(stream: &str) -> Vec<String> {
    [
        "$JS.API.STREAM.INFO.{S}",
        "$JS.API.STREAM.MSG.GET.{S}",
        "$JS.API.DIRECT.GET.{S}",
        "$JS.API.DIRECT.GET.{S}.>",
        "$JS.API.CONSUMER.CREATE.{S}",
        "$JS.API.CONSUMER.CREATE.{S}.>",
        "$JS.API.CONSUMER.DURABLE.CREATE.{S}.>",
        "$JS.API.CONSUMER.INFO.{S}.>",
        "$JS.API.CONSUMER.NAMES.{S}",
        "$JS.API.CONSUMER.LIST.{S}",
        "$JS.API.CONSUMER.MSG.NEXT.{S}.>",
        "$JS.ACK.{S}.>",
        "$JS.FC.{S}.>",
    ]
    .iter()
    .map(|t| t.replace("{S}", stream))
    .collect()
}

/// The stream-changing JetStream API no user of the embedded server may call:
/// delete or purge a stream, delete a message, change a stream's config.
pub const DENIED_FOR_ALL: [&str; 4] = [
    "$JS.API.STREAM.DELETE.>",
    "$JS.API.STREAM.PURGE.>",
    "$JS.API.STREAM.MSG.DELETE.>",
    "$JS.API.STREAM.UPDATE.>",
];

/// The nats-server config of the embedded server: no anonymous access, the
/// `govledger` and `siem` users with their passwords and permissions. Pure.
pub fn render_config(scope: &AuthScope, govledger: &Secret, siem: &Secret) -> String {
    let stream = scope.stream.as_str();
    let ledger_subjects = govledger_stream::subject::stream_subjects();
    let mut gov_pub = ledger_subjects.clone();
    gov_pub.push(AUDIT_SUBJECTS.to_owned());
    gov_pub.push(ALERT_SUBJECTS.to_owned());
    gov_pub.push(OCSF_SUBJECTS.to_owned());
    gov_pub.push("$JS.API.INFO".to_owned());
    gov_pub.push("$JS.API.STREAM.NAMES".to_owned());
    for s in [stream, AUDIT_STREAM, ALERTS_STREAM, OCSF_STREAM] {
        gov_pub.push(format!("$JS.API.STREAM.CREATE.{s}"));
    }
    // Reads any stream: `verify --stream COPY` checks a copy or a restored backup.
    gov_pub.extend(read_api("*"));
    gov_pub.push("$JS.API.CONSUMER.DELETE.*.>".to_owned());
    let mut gov_sub = vec!["_INBOX.>".to_owned()];
    gov_sub.extend(ledger_subjects.iter().cloned());
    gov_sub.push(AUDIT_SUBJECTS.to_owned());
    gov_sub.push(ALERT_SUBJECTS.to_owned());
    gov_sub.push(OCSF_SUBJECTS.to_owned());
    let denied: Vec<String> = DENIED_FOR_ALL.iter().map(|s| (*s).to_owned()).collect();

    let mut siem_pub = vec!["$JS.API.INFO".to_owned()];
    siem_pub.extend(read_api(stream));
    // The decided alerts too (read-only, like the events).
    siem_pub.extend(read_api(ALERTS_STREAM));
    siem_pub.extend(read_api(OCSF_STREAM));
    let durable = scope.projector_durable.as_str();
    let mut siem_pub_deny = denied.clone();
    siem_pub_deny.extend(ledger_subjects.iter().cloned());
    siem_pub_deny.push(AUDIT_SUBJECTS.to_owned());
    siem_pub_deny.push(ALERT_SUBJECTS.to_owned());
    siem_pub_deny.push(OCSF_SUBJECTS.to_owned());
    siem_pub_deny.extend([
        format!("$JS.API.CONSUMER.CREATE.{stream}.{durable}"),
        format!("$JS.API.CONSUMER.CREATE.{stream}.{durable}.>"),
        format!("$JS.API.CONSUMER.DURABLE.CREATE.{stream}.{durable}"),
        format!("$JS.API.CONSUMER.MSG.NEXT.{stream}.{durable}"),
        format!("$JS.ACK.{stream}.{durable}.>"),
    ]);
    let mut siem_sub = vec!["_INBOX.>".to_owned()];
    siem_sub.extend(ledger_subjects.iter().cloned());
    siem_sub.push(ALERT_SUBJECTS.to_owned());
    siem_sub.push(OCSF_SUBJECTS.to_owned());

    format!(
        r#"# Generated by govledger serve at each start; edits are overwritten.
# Users: "{GOVLEDGER_USER}" (govledger's roles) and "{SIEM_USER}" (read-only,
# `govledger credentials siem`). Connections without a credential are refused.
authorization {{
  users = [
    {{
      user: "{GOVLEDGER_USER}"
      password: "{gov_pw}"
      permissions: {{
        publish: {{ allow: {gov_pub}, deny: {denied} }}
        subscribe: {{ allow: {gov_sub} }}
      }}
    }}
    {{
      user: "{SIEM_USER}"
      password: "{siem_pw}"
      permissions: {{
        publish: {{ allow: {siem_pub}, deny: {siem_pub_deny} }}
        subscribe: {{ allow: {siem_sub} }}
      }}
    }}
  ]
}}
"#,
        gov_pw = govledger.expose(),
        siem_pw = siem.expose(),
        gov_pub = list(&gov_pub),
        denied = list(&denied),
        gov_sub = list(&gov_sub),
        siem_pub = list(&siem_pub),
        siem_pub_deny = list(&siem_pub_deny),
        siem_sub = list(&siem_sub),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope() -> AuthScope {
        AuthScope {
            stream: "GOVLEDGER".into(),
            projector_durable: "govledger-projector".into(),
        }
    }

    #[test]
    fn passwords_are_generated_once_private_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let first = prepare_auth(dir.path(), &scope()).unwrap();
        let again = prepare_auth(dir.path(), &scope()).unwrap();
        assert_eq!(first.govledger_password, again.govledger_password);
        assert!(is_generated_password(first.govledger_password.expose()));
        let siem = read_password(dir.path(), SIEM_USER).unwrap();
        assert_ne!(siem, first.govledger_password);
        use std::os::unix::fs::PermissionsExt as _;
        for f in [
            first.config.clone(),
            password_file(dir.path(), GOVLEDGER_USER),
            password_file(dir.path(), SIEM_USER),
        ] {
            let mode = std::fs::metadata(&f).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{}", f.display());
        }
    }

    #[test]
    fn a_foreign_password_file_is_refused_without_printing_it() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(password_file(dir.path(), SIEM_USER), "short\"pw\n").unwrap();
        let e = prepare_auth(dir.path(), &scope()).unwrap_err().to_string();
        assert!(
            e.contains("siem.password") && e.contains("delete the file"),
            "{e}"
        );
        assert!(!e.contains("short"), "{e}");
        let e = read_password(&dir.path().join("none"), GOVLEDGER_USER)
            .unwrap_err()
            .to_string();
        assert!(e.contains("start `govledger serve`"), "{e}");
    }

    #[test]
    fn the_config_denies_destruction_to_everyone_and_publishing_to_the_siem() {
        let text = render_config(
            &scope(),
            &Secret::new("G".repeat(32)),
            &Secret::new("S".repeat(32)),
        );
        let siem_at = text.find("user: \"siem\"").unwrap();
        let (gov, siem) = text.split_at(siem_at);
        for d in DENIED_FOR_ALL {
            assert!(gov.contains(&format!("deny: [\"{d}\"")) || gov.contains(&format!("\"{d}\"")));
            assert!(siem.contains(&format!("\"{d}\"")), "{d}");
        }
        assert!(gov.contains("\"govledger.v1.*.read.*\""));
        let siem_allow = &siem[siem.find("allow:").unwrap()..siem.find("deny:").unwrap()];
        assert!(!siem_allow.contains("govledger.v1"), "{siem_allow}");
        assert!(siem.contains("$JS.API.CONSUMER.MSG.NEXT.GOVLEDGER.govledger-projector\""));
        assert!(!text.contains("no_auth_user"));
    }
}
