//! The real `govledger` binary driven as a child process: `govledger serve`
//! with its own data folder (waiting for its "gRPC listening on" line, then
//! syncs, waits and status calls over gRPC), and one-shot runs of any command.

use std::{
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use govledger_proto::v1::{GetLedgerStatusRequest, ledger_client::LedgerClient};

/// The name of the binary (`[[bin]]` of the root package).
const BIN_NAME: &str = "govledger";

/// The real `govledger` binary. Cargo builds it before the root package's
/// integration tests, next to them: a test executable is
/// `target/<profile>/deps/NAME-HASH`, the binary `target/<profile>/govledger`.
/// `CARGO_BIN_EXE_govledger` in the environment wins when set.
pub fn govledger_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("CARGO_BIN_EXE_govledger") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().unwrap_or_else(|e| panic!("current_exe: {e}"));
    let found = exe
        .ancestors()
        .skip(1)
        .take(2)
        .map(|dir| dir.join(BIN_NAME))
        .find(|p| p.is_file());
    found.unwrap_or_else(|| {
        panic!(
            "no {BIN_NAME} binary next to {} (run the root package's tests with cargo test)",
            exe.display()
        )
    })
}

/// A `govledger serve` child process with its own data folder.
pub struct Govledger {
    child: Option<Child>,
    pub addr: String,
    pub data: tempfile::TempDir,
    pub log: PathBuf,
}

impl Govledger {
    /// Starts `govledger serve --nats-url URL --grpc-addr 127.0.0.1:0` plus `extra`
    /// args and waits for its "gRPC listening on" line.
    pub fn serve(nats_url: &str, extra: &[&str]) -> Self {
        let data = tempfile::tempdir().unwrap();
        Self::serve_in(data, nats_url, extra)
    }

    pub fn serve_in(data: tempfile::TempDir, nats_url: &str, extra: &[&str]) -> Self {
        Self::serve_in_env(data, nats_url, extra, &[])
    }

    /// Like `serve_in`, with extra environment (e.g. `GOVLEDGER_FAILPOINT`).
    pub fn serve_in_env(
        data: tempfile::TempDir,
        nats_url: &str,
        extra: &[&str],
        envs: &[(&str, &str)],
    ) -> Self {
        Self::spawn_role("serve", data, Some(nats_url), extra, envs)
    }

    /// `govledger <role>` (`serve`, `ingest`, `api`) with a config file
    /// holding `toml` (its `[nats]` naming the servers), its own data folder.
    pub fn role_with_config(role: &str, toml: &str) -> Self {
        let data = tempfile::tempdir().unwrap();
        let cfg = data.path().join("govledger.toml");
        std::fs::write(&cfg, toml).unwrap();
        let cfg = cfg.to_str().unwrap().to_owned();
        Self::spawn_role(role, data, None, &["--config", &cfg], &[])
    }

    /// `govledger rebuild` against this process (its token, and its data
    /// folder: the rebuild trusts the same producer key), on `nats_url`;
    /// the exit status and stdout + stderr.
    pub fn rebuild(&self, nats_url: &str) -> (std::process::ExitStatus, String) {
        let o = Command::new(govledger_bin())
            .env_remove_all_flags()
            .args(["rebuild", "--nats-url", nats_url, "--grpc-addr", &self.addr])
            .args(["--token-file", &self.token_path()])
            .args(["--data-dir", &self.data_dir().display().to_string()])
            .output()
            .unwrap();
        let out =
            String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr);
        (o.status, out)
    }

    /// SIGKILL: the process dies mid-work, as a machine does.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// `govledger serve` WITHOUT `--nats-url`: it runs its embedded
    /// nats-server (with its generated users and passwords) in `data_dir()/nats`.
    pub fn serve_embedded(data: tempfile::TempDir, extra: &[&str]) -> Self {
        Self::spawn_role("serve", data, None, extra, &[])
    }

    /// The embedded server's URL, as `serve` wrote it to `data_dir()/nats.url`.
    /// The child's process id (`None` once it was stopped).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn embedded_nats_url(&self) -> String {
        let f = self.data_dir().join("nats.url");
        std::fs::read_to_string(&f)
            .unwrap_or_else(|e| panic!("{}: {e}", f.display()))
            .trim()
            .to_owned()
    }

    /// The embedded server's password of `user` (`govledger` or `siem`).
    pub fn embedded_password(&self, user: &str) -> String {
        let f = self
            .data_dir()
            .join("nats")
            .join(format!("{user}.password"));
        std::fs::read_to_string(&f)
            .unwrap_or_else(|e| panic!("{}: {e}", f.display()))
            .trim()
            .to_owned()
    }

    fn spawn_role(
        role: &str,
        data: tempfile::TempDir,
        nats_url: Option<&str>,
        extra: &[&str],
        envs: &[(&str, &str)],
    ) -> Self {
        let log = data.path().join("serve.log");
        // The tests' producer key is the ledger's own (trusted) key, unless the
        // folder already holds one (a restart) or the test wrote another.
        install_test_producer_key(&data.path().join("data"));
        let mut cmd = Command::new(govledger_bin());
        cmd.env_remove_all_flags().arg(role);
        if let Some(url) = nats_url {
            cmd.arg("--nats-url").arg(url);
        }
        let mut child = cmd
            .arg("--grpc-addr")
            .arg("127.0.0.1:0")
            .arg("--data-dir")
            .arg(data.path().join("data"))
            .args(extra)
            .envs(envs.iter().copied())
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let log_path = log.clone();
        std::thread::spawn(move || {
            use std::io::Write;
            let mut f = std::fs::File::create(&log_path).unwrap();
            let mut sent = false;
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let _ = writeln!(f, "{line}");
                let _ = f.flush();
                if !sent && let Some(i) = line.find("gRPC listening on ") {
                    let addr = line[i + "gRPC listening on ".len()..].trim().to_owned();
                    let _ = tx.send(addr);
                    sent = true;
                }
            }
        });
        let addr = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(a) => a,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "govledger {role} did not start; log:\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
        };
        Self {
            child: Some(child),
            addr,
            data,
            log,
        }
    }

    /// `govledger serve` with a config file holding `toml` (e.g. `[[sources]]`).
    pub fn serve_with_config(nats_url: &str, toml: &str) -> Self {
        Self::serve_with_config_env(nats_url, toml, &[])
    }

    /// Like `serve_with_config`, with extra environment (a secret a source's
    /// `*_env` key names).
    pub fn serve_with_config_env(nats_url: &str, toml: &str, envs: &[(&str, &str)]) -> Self {
        let data = tempfile::tempdir().unwrap();
        let cfg = data.path().join("govledger.toml");
        std::fs::write(&cfg, toml).unwrap();
        let cfg = cfg.to_str().unwrap().to_owned();
        Self::serve_in_env(data, nats_url, &["--config", &cfg], envs)
    }

    /// TriggerSync (full), then wait until the ledger has decided the run.
    pub async fn sync(&self, source: &str) -> govledger_proto::v1::GetRunResponse {
        self.sync_mode(source, govledger_proto::v1::SyncMode::Full)
            .await
    }

    pub async fn sync_mode(
        &self,
        source: &str,
        mode: govledger_proto::v1::SyncMode,
    ) -> govledger_proto::v1::GetRunResponse {
        let mut c = self.client().await;
        let run_id = c
            .trigger_sync(govledger_proto::v1::TriggerSyncRequest {
                source_id: source.to_owned(),
                mode: mode as i32,
            })
            .await
            .unwrap()
            .into_inner()
            .run_id;
        self.wait_decided(&run_id, Duration::from_secs(120)).await
    }

    /// `GetRun` of `run_id`.
    pub async fn run(&self, run_id: &str) -> govledger_proto::v1::GetRunResponse {
        let request = govledger_proto::v1::GetRunRequest {
            run_id: run_id.to_owned(),
        };
        let answer = self.client().await.get_run(request).await;
        answer
            .unwrap_or_else(|e| panic!("GetRun {run_id}: {e}"))
            .into_inner()
    }

    /// `GetSource` of `source_id` as it stands now.
    pub async fn source(&self, source_id: &str) -> govledger_proto::v1::GetSourceResponse {
        let request = govledger_proto::v1::GetSourceRequest {
            as_of: None,
            source_id: source_id.to_owned(),
        };
        let answer = self.client().await.get_source(request).await;
        answer
            .unwrap_or_else(|e| panic!("GetSource {source_id}: {e}"))
            .into_inner()
    }

    /// `GetIdentity` of user `external_id` of `source_id` as it stands now.
    pub async fn user(
        &self,
        source_id: &str,
        external_id: &str,
    ) -> govledger_proto::v1::GetIdentityResponse {
        let request = govledger_proto::v1::GetIdentityRequest {
            as_of: None,
            source_id: source_id.to_owned(),
            entity_type: govledger_proto::v1::EntityType::User as i32,
            external_id: external_id.to_owned(),
        };
        let answer = self.client().await.get_identity(request).await;
        answer
            .unwrap_or_else(|e| panic!("GetIdentity {source_id}/{external_id}: {e}"))
            .into_inner()
    }

    /// Waits until run `run_id` is decided (finished and every event folded).
    pub async fn wait_decided(
        &self,
        run_id: &str,
        limit: Duration,
    ) -> govledger_proto::v1::GetRunResponse {
        let mut c = self.client().await;
        let deadline = Instant::now() + limit;
        loop {
            if let Ok(r) = c
                .get_run(govledger_proto::v1::GetRunRequest {
                    run_id: run_id.to_owned(),
                })
                .await
            {
                let r = r.into_inner();
                if r.run.as_ref().is_some_and(|x| x.decided) {
                    return r;
                }
            }
            assert!(
                Instant::now() < deadline,
                "run {run_id} not decided in {limit:?}; log:\n{}",
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    pub fn data_dir(&self) -> PathBuf {
        self.data.path().join("data")
    }

    /// The local admin token `serve` wrote (no `[auth]` configured).
    pub fn token_file(&self) -> PathBuf {
        self.data_dir().join("admin.token")
    }

    /// [`Self::token_file`] as text, for `--token-file`.
    pub fn token_path(&self) -> String {
        self.token_file().display().to_string()
    }

    /// The environment that lets a CLI command run here use the local admin token.
    pub fn token_env(&self) -> (&'static str, String) {
        (
            "GOVLEDGER_TOKEN_FILE",
            self.token_file().display().to_string(),
        )
    }

    /// A client with the local admin token (when the config has no `[auth]`).
    pub async fn client(&self) -> govledger::cli::client::Client {
        let token = std::fs::read_to_string(self.token_file()).unwrap_or_default();
        self.client_with(token.trim()).await
    }

    /// A plaintext client that sends `token` ("" = none).
    pub async fn client_with(&self, token: &str) -> govledger::cli::client::Client {
        let ch = tonic::transport::Endpoint::from_shared(format!("http://{}", self.addr))
            .unwrap()
            .connect()
            .await
            .unwrap();
        let auth = if token.is_empty() {
            govledger::cli::client::BearerToken::none()
        } else {
            govledger::cli::client::BearerToken::new(token).unwrap()
        };
        LedgerClient::with_interceptor(ch, auth)
    }

    /// `SubmitAction` of `request` on `source`; the action id.
    pub async fn submit_action(
        &self,
        source: &str,
        request: govledger_proto::v1::ActionRequested,
    ) -> String {
        self.client()
            .await
            .submit_action(govledger_proto::v1::SubmitActionRequest {
                source_id: source.into(),
                request: Some(request),
            })
            .await
            .unwrap()
            .into_inner()
            .action_id
    }

    /// Polls `GetAction` until `done` holds for the action (60 s at most,
    /// then panics with the ledger's log).
    pub async fn wait_action_until(
        &self,
        id: &str,
        done: impl Fn(&govledger_proto::v1::GetActionResponse) -> bool,
    ) -> govledger_proto::v1::GetActionResponse {
        let mut c = self.client().await;
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(r) = c
                .get_action(govledger_proto::v1::GetActionRequest {
                    as_of: None,
                    action_id: id.into(),
                })
                .await
            {
                let r = r.into_inner();
                if done(&r) {
                    return r;
                }
            }
            assert!(
                Instant::now() < deadline,
                "action {id} never reached the state:\n{}",
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Waits until the action is no longer PENDING.
    pub async fn wait_action(&self, id: &str) -> govledger_proto::v1::GetActionResponse {
        let pending = govledger_proto::v1::ActionOutcome::Pending as i32;
        self.wait_action_until(id, |r| r.outcome != pending).await
    }

    /// Submits `request` on `source` and waits until it is concluded (no
    /// longer PENDING).
    pub async fn act(
        &self,
        source: &str,
        request: govledger_proto::v1::ActionRequested,
    ) -> govledger_proto::v1::GetActionResponse {
        let id = self.submit_action(source, request).await;
        self.wait_action(&id).await
    }

    /// `WatchAlerts` for every source, live once this returns (the server
    /// subscribed before it answered).
    pub async fn watch_alerts(&self) -> tonic::Streaming<govledger_proto::v1::Alert> {
        self.client()
            .await
            .watch_alerts(govledger_proto::v1::WatchAlertsRequest::default())
            .await
            .unwrap()
            .into_inner()
    }

    /// `GetLedgerStatus`, with the state digest.
    pub async fn ledger_status(&self) -> govledger_proto::v1::LedgerStatus {
        self.client()
            .await
            .get_ledger_status(GetLedgerStatusRequest { with_digest: true })
            .await
            .unwrap()
            .into_inner()
    }

    /// Every signed checkpoint (at most 1,000), oldest first.
    pub async fn checkpoints(&self) -> Vec<govledger_proto::v1::Checkpoint> {
        let mut cps = self
            .client()
            .await
            .list_checkpoints(govledger_proto::v1::ListCheckpointsRequest {
                limit: 1_000,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .checkpoints;
        cps.reverse();
        cps
    }

    /// `govledger export` of identity `who` of `source` to `path`, which
    /// must succeed; its output.
    pub fn export_identity(&self, source: &str, who: &str, path: &Path) -> String {
        let token = self.token_path();
        let (status, out, err) = run_govledger_out(
            &[
                "export",
                "--grpc-addr",
                &self.addr,
                "--token-file",
                &token,
                "--source",
                source,
                "--identity",
                who,
                "--out",
                path.to_str().unwrap(),
            ],
            &[],
        );
        let text = out + &err;
        assert!(status.success(), "{text}");
        text
    }

    /// The overall gRPC health status (`grpc.health.v1`: SERVING = 1,
    /// NOT_SERVING = 2); -1 when the server does not answer.
    pub async fn health(&self) -> i32 {
        let Ok(endpoint) = tonic::transport::Endpoint::from_shared(format!("http://{}", self.addr))
        else {
            return -1;
        };
        let Ok(ch) = endpoint.connect().await else {
            return -1;
        };
        tonic_health::pb::health_client::HealthClient::new(ch)
            .check(tonic_health::pb::HealthCheckRequest::default())
            .await
            .map_or(-1, |r| r.into_inner().status)
    }

    /// Waits (bounded) until [`Self::health`] is `status`.
    pub async fn wait_health(&self, status: i32, limit: Duration) {
        let deadline = Instant::now() + limit;
        loop {
            let now = self.health().await;
            if now == status {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "health {now}, not {status}, after {limit:?}; log:\n{}",
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The HTTP listener's address (`http.addr` set), from its log line.
    pub fn http_addr(&self) -> String {
        let log = self.log_text();
        let marker = "HTTP listening on ";
        log.lines()
            .find_map(|l| {
                l.find(marker)
                    .map(|i| l[i + marker.len()..].trim().to_owned())
            })
            .unwrap_or_else(|| panic!("no \"{marker}\" line (is http.addr set?); log:\n{log}"))
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until the projection has applied `seq`.
    pub async fn wait_applied(&self, seq: u64) {
        let mut c = self.client().await;
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let s = c
                .get_ledger_status(GetLedgerStatusRequest { with_digest: false })
                .await
                .unwrap()
                .into_inner();
            let applied = s.meta.unwrap_or_default().last_applied_seq;
            if applied >= seq {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "projection stuck at {applied}, waiting for {seq}; log:\n{}",
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits (bounded) for the process to exit by itself, e.g. at a failpoint.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + limit;
        let c = self.child.as_mut()?;
        loop {
            if let Ok(Some(st)) = c.try_wait() {
                self.child = None;
                return Some(st);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Takes the data folder out (to restart another govledger on it).
    pub fn take_data(&mut self) -> tempfile::TempDir {
        std::mem::replace(&mut self.data, tempfile::tempdir().unwrap())
    }

    /// SIGTERM and wait for a clean exit; returns the exit status.
    pub fn stop(&mut self) -> Option<std::process::ExitStatus> {
        let mut c = self.child.take()?;
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(c.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        c.wait().ok()
    }
}

impl Drop for Govledger {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Makes the tests' producer key ([`crate::stream::TEST_PRODUCER_SEED`]) the
/// producer key of a ledger using `data_dir`, unless it holds one already.
pub fn install_test_producer_key(data_dir: &Path) {
    let key = data_dir.join("producer.key");
    if !key.exists() {
        std::fs::create_dir_all(data_dir).unwrap();
        let hex: String = crate::stream::TEST_PRODUCER_SEED
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        std::fs::write(&key, hex).unwrap();
    }
}

/// A config with one SCIM source `hr` at `base_url` (pages of 100, three
/// quick retries), `extra` lines added to its `[[sources]]` table.
pub fn scim_source_toml(base_url: &str, extra: &str) -> String {
    format!(
        r#"
[[sources]]
id = "hr"
base_url = "{base_url}"
page_size = 100
{extra}

[sources.retry]
attempts_max = 3
budget_ms = 20000
backoff_min_ms = 10
backoff_max_ms = 50
"#
    )
}

/// A source `app` on a REST API at `api_base`: endpoint `path`, `paging`,
/// `page_size`, fields `id` / `active` / `email`, and `shape` (the other
/// `[sources.rest]` lines); quick retries.
pub fn rest_source_toml(
    api_base: &str,
    paging: &str,
    path: &str,
    shape: &str,
    page_size: u32,
) -> String {
    format!(
        r#"
[[sources]]
id = "app"
kind = "rest"
base_url = "{api_base}"
paging = "{paging}"
page_size = {page_size}

[sources.rest]
path = "{path}"
id_field = "id"
active_field = "active"
label_field = "email"
{shape}

[sources.retry]
attempts_max = 3
backoff_min_ms = 10
backoff_max_ms = 20
budget_ms = 10000
"#
    )
}

/// A lifecycle action on `user` (and `group`, for memberships; "" for
/// none) with idempotency key `key`, requested by `alice@corp` for a leaver
/// under ticket `ticket`.
pub fn action_request(
    kind: govledger_proto::v1::ActionKind,
    user: &str,
    group: &str,
    key: &str,
    ticket: &str,
) -> govledger_proto::v1::ActionRequested {
    govledger_proto::v1::ActionRequested {
        kind: kind as i32,
        identity_external_id: user.into(),
        group_external_id: group.into(),
        requested_by: "alice@corp".into(),
        reason: "leaver".into(),
        ticket: ticket.into(),
        idempotency_key: key.into(),
        ..Default::default()
    }
}

/// A NATS server, a fault SCIM server with `users` users and `groups`
/// groups, and govledger serving source `hr` (Users and Groups, `extra`
/// appended to its config) after one COMPLETE sync, so actions can name
/// the identities: the write-path tests' ground.
pub async fn serve_fault_scim(
    users: usize,
    groups: usize,
    extra: &str,
) -> (crate::NatsServer, crate::fault_scim::FaultScim, Govledger) {
    let nats = crate::NatsServer::start().await;
    let scim = crate::fault_scim::FaultScim::start_with(crate::fault_scim::ScimConfig {
        users,
        groups,
        ..Default::default()
    })
    .await;
    let toml = scim_source_toml(
        &scim.base_url,
        &format!("resources = [\"Users\", \"Groups\"]\n{extra}"),
    );
    let gl = Govledger::serve_with_config(&nats.url(), &toml);
    let r = gl.sync("hr").await;
    assert_eq!(
        r.verdict,
        govledger_proto::v1::Verdict::Complete as i32,
        "{:?}",
        r.reasons
    );
    (nats, scim, gl)
}

/// The environment variables that stand in for the CLI's flags: a test's
/// command gets exactly the flags it names, whatever the shell around it set.
pub const FLAG_ENV: [&str; 10] = [
    "GOVLEDGER_CONFIG",
    "GOVLEDGER_DATA_DIR",
    "GOVLEDGER_GRPC_ADDR",
    "GOVLEDGER_NATS_URL",
    "GOVLEDGER_TLS_CA",
    "GOVLEDGER_TLS_CERT",
    "GOVLEDGER_TLS_KEY",
    "GOVLEDGER_TLS_DOMAIN",
    "GOVLEDGER_TOKEN",
    "GOVLEDGER_TOKEN_FILE",
];

trait NoFlagEnv {
    fn env_remove_all_flags(&mut self) -> &mut Self;
}

impl NoFlagEnv for Command {
    fn env_remove_all_flags(&mut self) -> &mut Self {
        for v in FLAG_ENV {
            self.env_remove(v);
        }
        self
    }
}

/// Runs the binary to completion with `args`; returns (status, stdout, stderr).
pub fn run_govledger_out(
    args: &[&str],
    envs: &[(&str, &str)],
) -> (std::process::ExitStatus, String, String) {
    let out = Command::new(govledger_bin())
        .args(args)
        .env_remove_all_flags()
        .envs(envs.iter().copied())
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        out.status,
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs the binary to completion with `args`; returns (status, stderr).
pub fn run_govledger(args: &[&str], envs: &[(&str, &str)]) -> (std::process::ExitStatus, String) {
    let (status, _, stderr) = run_govledger_out(args, envs);
    (status, stderr)
}
