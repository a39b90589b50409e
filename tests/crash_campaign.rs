//! The crash campaign (issue 22 item 8): SIGKILLs at random points across
//! `serve` (sync worker mid-run, action executor mid-action, its projector
//! while folding), a `project` on a replica folder, and the nats-server,
//! during syncs and actions; then the stream holds every event exactly once,
//! each projection's digest equals a rebuild from sequence 1, and no run or
//! action is reported better than it was. `GOVLEDGER_CRASH_KILLS` sets the
//! kill count (default CI-sized), `GOVLEDGER_CRASH_SEED` the seed (printed).

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use govledger_proto::v1::{
    self as pb, ActionKind, ActionOutcome, SyncMode, TriggerSyncRequest, Verdict,
};
use govledger_testkit::{
    Govledger, NatsServer,
    crash::{self, Audit},
    fault_scim::{FaultScim, Faults, ScimConfig},
    govledger::{action_request, install_test_producer_key},
    govledger_bin, sled_digest,
};
use rand::{Rng as _, SeedableRng as _, rngs::StdRng, seq::SliceRandom as _};

/// Kills of the CI-sized campaign.
const KILLS_DEFAULT: usize = 12;
/// The CI campaign's seed (any other reproduces with `GOVLEDGER_CRASH_SEED`).
const SEED_DEFAULT: u64 = 20_261_206;
const USERS: usize = 400;
const GROUPS: usize = 40;
/// Users 0..MEMBER_USERS are the groups' members (group n holds 3n..3n+2):
/// they are the targets of membership removals, the others of
/// deactivations and deletions, so no user is the target of two actions.
const MEMBER_USERS: usize = GROUPS * 3;
/// Attempts per landed kill at most (a `project` that finished before its
/// kill, an executor that wrote nothing, is no kill).
const TRIES_PER_KILL_MAX: usize = 4;
/// How long any one RPC of the driver may take.
const RPC_MS: u64 = 15_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Target {
    /// SIGKILL `serve` a random time after a sync was triggered.
    ServeMidSync,
    /// SIGKILL `serve` a random time after actions were submitted.
    ServeMidAction,
    /// SIGKILL `serve` the moment its projector lags the stream.
    ServeWhileFolding,
    /// `serve` aborts at `executor-after-write` (failpoint).
    ExecutorFailpoint,
    /// SIGKILL `project` on the replica folder mid-stream.
    Projector,
    /// `project` on the replica aborts at one of its two failpoints.
    ProjectorFailpoint,
    /// SIGKILL the nats-server during a sync and actions; `serve` lives on.
    Nats,
    /// SIGKILL the nats-server and `serve` together.
    Both,
}

const TARGETS: [(Target, u32); 8] = [
    (Target::ServeMidSync, 4),
    (Target::ServeMidAction, 3),
    (Target::ServeWhileFolding, 2),
    (Target::ExecutorFailpoint, 1),
    (Target::Projector, 2),
    (Target::ProjectorFailpoint, 1),
    (Target::Nats, 3),
    (Target::Both, 2),
];

/// One action whose SubmitAction answered OK.
struct Submitted {
    id: String,
    kind: ActionKind,
    user: String,
    group: String,
}

struct Campaign {
    rng: StdRng,
    nats: NatsServer,
    scim: FaultScim,
    dir: tempfile::TempDir,
    gl: Option<Govledger>,
    replica: PathBuf,
    /// Every serve's log, appended at each restart (for a failure's story).
    logs: PathBuf,
    kills: BTreeMap<Target, usize>,
    landed: usize,
    triggered: Vec<String>,
    actions: Vec<Submitted>,
    /// Submissions that did not answer OK (killed mid-call, NATS down).
    unacknowledged: usize,
    member_pairs: Vec<(String, String)>,
    loners: Vec<String>,
    next_key: usize,
    sync_ms: u64,
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn source_toml(base_url: &str) -> String {
    // Pages of 50 and a little latency per request: a sync takes long enough
    // that a random kill lands inside it.
    format!(
        r#"
[projector]
batch_events_max = 64
idle_wait_ms = 20

[[sources]]
id = "hr"
base_url = "{base_url}"
page_size = 50
resources = ["Users", "Groups"]

[sources.retry]
attempts_max = 4
budget_ms = 20000
backoff_min_ms = 10
backoff_max_ms = 100
"#
    )
}

impl Campaign {
    async fn start(seed: u64) -> Self {
        let nats = NatsServer::start().await;
        let scim = FaultScim::start_with(ScimConfig {
            users: USERS,
            groups: GROUPS,
            ..Default::default()
        })
        .await;
        scim.set_faults(Faults {
            latency_ms: 2,
            ..Default::default()
        });
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("govledger.toml"),
            source_toml(&scim.base_url),
        )
        .unwrap();
        // The replica's projector commits every 16 events: a kill lands between batches.
        std::fs::write(
            dir.path().join("project.toml"),
            "[projector]\nbatch_events_max = 16\nidle_wait_ms = 20\n",
        )
        .unwrap();
        let replica = dir.path().join("replica");
        install_test_producer_key(&replica);
        let mut rng = StdRng::seed_from_u64(seed);
        let mut member_pairs: Vec<(String, String)> = (0..GROUPS)
            .flat_map(|n| (0..3).map(move |k| (format!("g{n:07}"), format!("u{:07}", n * 3 + k))))
            .collect();
        member_pairs.shuffle(&mut rng);
        let mut loners: Vec<String> = (MEMBER_USERS..USERS).map(|n| format!("u{n:07}")).collect();
        loners.shuffle(&mut rng);
        let logs = dir.path().join("serve-all.log");
        let mut c = Self {
            rng,
            nats,
            scim,
            gl: None,
            replica,
            logs,
            dir,
            kills: BTreeMap::new(),
            landed: 0,
            triggered: Vec::new(),
            actions: Vec::new(),
            unacknowledged: 0,
            member_pairs,
            loners,
            next_key: 0,
            sync_ms: 0,
        };
        c.start_serve(tempfile::tempdir().unwrap(), &[]);
        // One whole sync first: actions need known identities, and its length
        // sets when the kills of a sync land.
        let started = Instant::now();
        let r = c.gl().sync("hr").await;
        assert_eq!(r.verdict, Verdict::Complete as i32, "{:?}", r.reasons);
        c.triggered.push(r.run.unwrap_or_default().run_id);
        c.sync_ms = (started.elapsed().as_millis() as u64).max(50);
        c
    }

    fn cfg(&self) -> String {
        self.dir.path().join("govledger.toml").display().to_string()
    }

    fn gl(&self) -> &Govledger {
        self.gl.as_ref().expect("serve is running")
    }

    fn start_serve(&mut self, data: tempfile::TempDir, envs: &[(&str, &str)]) {
        let cfg = self.cfg();
        let gl = Govledger::serve_in_env(data, &self.nats.url(), &["--config", &cfg], envs);
        self.gl = Some(gl);
    }

    /// Takes the data folder of the running serve out, keeping its log.
    fn take_serve(&mut self) -> (Govledger, tempfile::TempDir) {
        let mut gl = self.gl.take().expect("serve is running");
        let text = gl.log_text();
        let mut all = std::fs::read_to_string(&self.logs).unwrap_or_default();
        all.push_str("---- serve ----\n");
        all.push_str(&text);
        std::fs::write(&self.logs, all).unwrap();
        let data = gl.take_data();
        (gl, data)
    }

    /// SIGKILL `serve` (dropping a running `Govledger` kills it) and start it
    /// again on the same folder.
    fn kill_serve(&mut self) -> tempfile::TempDir {
        let (gl, data) = self.take_serve();
        drop(gl);
        data
    }

    fn restart_serve(&mut self, data: tempfile::TempDir) {
        self.start_serve(data, &[]);
    }

    async fn trigger(&mut self) {
        let Some(gl) = self.gl.as_ref() else { return };
        let call = async {
            let mut c = gl.client().await;
            let req = TriggerSyncRequest {
                source_id: "hr".into(),
                mode: SyncMode::Full as i32,
            };
            c.trigger_sync(req).await
        };
        if let Ok(Ok(r)) = tokio::time::timeout(Duration::from_millis(RPC_MS), call).await {
            self.triggered.push(r.into_inner().run_id);
        }
    }

    /// Submits one action on a user no other action names.
    async fn submit(&mut self) {
        let kind = match self.rng.random_range(0..3) {
            0 => ActionKind::Deactivate,
            1 => ActionKind::Delete,
            _ => ActionKind::RemoveMembership,
        };
        let (user, group) = match kind {
            ActionKind::RemoveMembership => match self.member_pairs.pop() {
                Some(p) => (p.1, p.0),
                None => return,
            },
            _ => match self.loners.pop() {
                Some(u) => (u, String::new()),
                None => return,
            },
        };
        // A user whose group lost it is taken out of the pairs too: one
        // action per user.
        self.member_pairs.retain(|(_, u)| *u != user);
        self.next_key += 1;
        let key = format!("crash-{}", self.next_key);
        let req = action_request(kind, &user, &group, &key, "CRASH-1");
        let Some(gl) = self.gl.as_ref() else { return };
        let call = async {
            let mut c = gl.client().await;
            c.submit_action(pb::SubmitActionRequest {
                source_id: "hr".into(),
                request: Some(req),
            })
            .await
        };
        match tokio::time::timeout(Duration::from_millis(RPC_MS), call).await {
            Ok(Ok(r)) => self.actions.push(Submitted {
                id: r.into_inner().action_id,
                kind,
                user,
                group,
            }),
            _ => self.unacknowledged += 1,
        }
    }

    async fn sleep_rand(&mut self, max_ms: u64) {
        let ms = self.rng.random_range(0..=max_ms);
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }

    fn pick(&mut self) -> Target {
        let total: u32 = TARGETS.iter().map(|t| t.1).sum();
        let mut x = self.rng.random_range(0..total);
        for (t, w) in TARGETS {
            if x < w {
                return t;
            }
            x -= w;
        }
        Target::ServeMidSync
    }

    /// Drives work, kills `target`, restarts what was killed. True when a
    /// kill landed on a live process.
    async fn round(&mut self, target: Target) -> bool {
        match target {
            Target::ServeMidSync => {
                self.trigger().await;
                let max = self.sync_ms * 6 / 5;
                self.sleep_rand(max).await;
                let data = self.kill_serve();
                self.restart_serve(data);
                true
            }
            Target::ServeMidAction => {
                for _ in 0..self.rng.random_range(1..=3) {
                    self.submit().await;
                }
                self.sleep_rand(150).await;
                let data = self.kill_serve();
                self.restart_serve(data);
                true
            }
            Target::ServeWhileFolding => self.kill_while_folding().await,
            Target::ExecutorFailpoint => self.executor_failpoint().await,
            Target::Projector => self.kill_replica(None).await,
            Target::ProjectorFailpoint => {
                let fp = if self.rng.random_bool(0.5) {
                    "projector-after-commit-before-flush"
                } else {
                    "projector-after-flush-before-ack"
                };
                self.kill_replica(Some(fp)).await
            }
            Target::Nats | Target::Both => {
                self.trigger().await;
                self.submit().await;
                let max = self.sync_ms;
                self.sleep_rand(max).await;
                self.nats.kill9();
                let data = (target == Target::Both).then(|| self.kill_serve());
                self.sleep_rand(400).await;
                self.nats.restart().await;
                if let Some(data) = data {
                    self.restart_serve(data);
                }
                true
            }
        }
    }

    /// A sync, then SIGKILL the moment the stream is ahead of the projection.
    async fn kill_while_folding(&mut self) -> bool {
        self.trigger().await;
        let deadline = Instant::now() + Duration::from_millis(self.sync_ms * 3);
        let mut lagging = false;
        {
            let mut c = self.gl().client().await;
            while Instant::now() < deadline {
                let req = pb::GetLedgerStatusRequest { with_digest: false };
                if let Ok(s) = c.get_ledger_status(req).await {
                    let s = s.into_inner();
                    if s.stream_last_seq > s.meta.unwrap_or_default().last_applied_seq {
                        lagging = true;
                        break;
                    }
                }
            }
        }
        let data = self.kill_serve();
        self.restart_serve(data);
        lagging
    }

    /// `serve` with `GOVLEDGER_FAILPOINT=executor-after-write`: it aborts
    /// right after its first write's attempt is recorded, before the read-back.
    async fn executor_failpoint(&mut self) -> bool {
        // Recovery of an open action would write (and abort) before the new
        // serve listens: every action is concluded first.
        self.wait_actions_concluded().await;
        let (mut gl, data) = self.take_serve();
        gl.stop();
        drop(gl);
        self.start_serve(data, &[("GOVLEDGER_FAILPOINT", "executor-after-write")]);
        let before = self.actions.len();
        self.submit().await;
        let mut gl = self.gl.take().expect("serve is running");
        let exited = tokio::task::block_in_place(|| gl.wait_exit(Duration::from_secs(10)));
        self.gl = Some(gl);
        let data = self.kill_serve();
        self.restart_serve(data);
        self.actions.len() > before && exited.is_some_and(|s| !s.success())
    }

    fn project_cmd(&self, dir: &Path) -> Command {
        let mut c = Command::new(govledger_bin());
        c.arg("project")
            .arg("--exit-at-end")
            .arg("--nats-url")
            .arg(self.nats.url())
            .arg("--data-dir")
            .arg(dir)
            .arg("--config")
            .arg(self.dir.path().join("project.toml"))
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        c
    }

    /// `project` on the replica folder, killed mid-stream (SIGKILL after a
    /// random time, or aborted at failpoint `fp`). A run that finished
    /// before its kill is no kill.
    async fn kill_replica(&mut self, fp: Option<&str>) -> bool {
        // Work for it: a whole sync it has not folded yet.
        self.sync_to_end().await;
        let mut cmd = self.project_cmd(&self.replica);
        if let Some(fp) = fp {
            let st = cmd.env("GOVLEDGER_FAILPOINT", fp).status().unwrap();
            return !st.success();
        }
        let mut child = cmd.spawn().unwrap();
        let ms = self.rng.random_range(0..=self.sync_ms.min(400));
        tokio::time::sleep(Duration::from_millis(ms)).await;
        let live = child.try_wait().unwrap().is_none();
        let _ = child.kill();
        let _ = child.wait();
        live
    }

    /// A whole sync: triggered once the source's running one (a round
    /// before may have left one going) is decided, then waited for.
    async fn sync_to_end(&mut self) -> pb::GetRunResponse {
        let deadline = Instant::now() + Duration::from_millis(RPC_MS * 4);
        let run_id = loop {
            let mut c = self.gl().client().await;
            let req = TriggerSyncRequest {
                source_id: "hr".into(),
                mode: SyncMode::Full as i32,
            };
            match c.trigger_sync(req).await {
                Ok(r) => break r.into_inner().run_id,
                Err(e) => assert!(
                    e.code() == tonic::Code::FailedPrecondition && Instant::now() < deadline,
                    "TriggerSync: {e}"
                ),
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        self.triggered.push(run_id.clone());
        self.gl()
            .wait_decided(&run_id, Duration::from_millis(RPC_MS * 4))
            .await
    }

    /// Waits until no submitted action is PENDING.
    async fn wait_actions_concluded(&self) {
        for a in &self.actions {
            self.gl().wait_action(&a.id).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkills_across_serve_projector_executor_and_nats_lose_and_inflate_nothing() {
    let kills = env_or("GOVLEDGER_CRASH_KILLS", KILLS_DEFAULT);
    let seed = env_or("GOVLEDGER_CRASH_SEED", SEED_DEFAULT);
    eprintln!("crash campaign: GOVLEDGER_CRASH_KILLS={kills} GOVLEDGER_CRASH_SEED={seed}");
    let started = Instant::now();
    let mut c = Campaign::start(seed).await;
    let mut tries = 0;
    while c.landed < kills {
        tries += 1;
        assert!(
            tries <= kills * TRIES_PER_KILL_MAX,
            "only {} of {kills} kills landed in {tries} tries: {:?}",
            c.landed,
            c.kills
        );
        let target = c.pick();
        if c.round(target).await {
            c.landed += 1;
            *c.kills.entry(target).or_default() += 1;
        }
    }
    let audit = settle_and_check(&mut c).await;
    eprintln!(
        "crash campaign seed {seed}: {} kills in {:?} {:?}; {}",
        c.landed,
        started.elapsed(),
        c.kills,
        audit.summary()
    );
}

/// Lets the last serve run to quiet, then checks the stream, the digests and
/// every run and action against what the fault server really holds.
async fn settle_and_check(c: &mut Campaign) -> Audit {
    c.wait_actions_concluded().await;
    // The last sync: the ledger works after the campaign.
    let last = c.gl().sync("hr").await;
    assert_eq!(last.verdict, Verdict::Complete as i32, "{:?}", last.reasons);
    c.triggered
        .push(last.run.clone().unwrap_or_default().run_id);

    let msgs = govledger_testkit::read_stream(&c.nats.client().await).await;
    let mut audit = crash::audit_stream(&msgs);
    c.gl().wait_applied(msgs.len() as u64).await;
    audit.unacknowledged_actions = c.unacknowledged;

    // Runs: every one the stream holds is decided; none cut is COMPLETE; a
    // COMPLETE one listed every user and group the server still holds.
    let users_now = c.scim.user_ids();
    let groups_now = c.scim.group_ids();
    for (run_id, seen) in &audit.runs {
        let r = c.gl().wait_decided(run_id, Duration::from_secs(60)).await;
        let v = Verdict::try_from(r.verdict).unwrap_or(Verdict::Unspecified);
        *audit.verdicts.entry(format!("{v:?}")).or_default() += 1;
        if seen.cut {
            assert_ne!(
                v,
                Verdict::Complete,
                "run {run_id} was cut by a kill: {r:?}"
            );
        }
        if v == Verdict::Complete {
            crash::assert_listed_everything(run_id, seen, &users_now, &groups_now, USERS, GROUPS);
        }
    }
    // A run id TriggerSync answered must be in the stream, or unknown to the
    // ledger (killed before its start was stored): never reported as anything.
    for id in &c.triggered {
        if !audit.runs.contains_key(id) {
            audit.triggered_unrecorded += 1;
            let mut cl = c.gl().client().await;
            let r = cl.get_run(pb::GetRunRequest { run_id: id.clone() }).await;
            assert!(
                r.is_err(),
                "run {id} is not in the stream yet answers {r:?}"
            );
        }
    }
    check_actions(c, &mut audit).await;

    // Digests: the live projection, the replica and a rebuild from sequence 1.
    let (mut gl, data) = c.take_serve();
    assert!(
        gl.stop().is_some_and(|s| s.success()),
        "serve did not stop cleanly"
    );
    let live = sled_digest(&data.path().join("data"));
    let st = c.project_cmd(&c.replica).status().unwrap();
    assert!(st.success(), "the replica's last project run failed");
    let replica = sled_digest(&c.replica);
    let fresh = c.dir.path().join("rebuild");
    install_test_producer_key(&fresh);
    assert!(c.project_cmd(&fresh).status().unwrap().success());
    let rebuilt = sled_digest(&fresh);
    assert_eq!(live, rebuilt, "the live projection differs from a rebuild");
    assert_eq!(
        replica, rebuilt,
        "the killed replica differs from a rebuild"
    );
    audit.digest_equal = true;
    audit.assert_clean();
    audit
}

/// Every action SubmitAction accepted is in the stream and concluded; one
/// CONFIRMED is in effect at the server after a write the server applied.
async fn check_actions(c: &Campaign, audit: &mut Audit) {
    let writes = c.scim.write_requests();
    for a in &c.actions {
        if !audit.actions.contains(&a.id) {
            audit.actions_lost.push(a.id.clone());
            continue;
        }
        let r = c.gl().wait_action(&a.id).await;
        let o = ActionOutcome::try_from(r.outcome).unwrap_or(ActionOutcome::Unspecified);
        *audit.outcomes.entry(format!("{o:?}")).or_default() += 1;
        let in_effect = match a.kind {
            ActionKind::Deactivate => c.scim.user_state(&a.user).is_some_and(|s| !s.0),
            ActionKind::Delete => !c.scim.user_exists(&a.user),
            _ => !c.scim.group_members(&a.group).contains(&a.user),
        };
        let resource = match a.kind {
            ActionKind::RemoveMembership => format!("/v2/Groups/{}", a.group),
            _ => format!("/v2/Users/{}", a.user),
        };
        let written = writes
            .iter()
            .any(|w| w.path_and_query.starts_with(&resource) && w.applied == Some(true));
        if o == ActionOutcome::Confirmed {
            assert!(
                in_effect && written,
                "action {} ({:?} {} {}) CONFIRMED, but in effect: {in_effect}, write applied: {written}",
                a.id,
                a.kind,
                a.user,
                a.group
            );
        } else if in_effect {
            audit
                .in_effect_not_confirmed
                .push(format!("{} {o:?}", a.id));
        }
    }
}

/// Found by the campaign (a NATS kill while SubmitAction was publishing): the
/// publisher's resend of an `ActionRequested` whose first ack was lost is
/// acknowledged as a duplicate of its own first copy, and SubmitAction took
/// that for a second submission of an action already queued: it answered OK
/// and queued nothing, so the action stayed PENDING until the next restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_action_whose_request_was_resent_after_a_lost_ack_is_still_executed() {
    use nix::{
        sys::signal::{Signal, kill},
        unistd::Pid,
    };
    let nats = NatsServer::start().await;
    let scim = FaultScim::start(5).await;
    let toml = format!(
        "[publisher]\nack_timeout_ms = 200\n{}",
        govledger_testkit::govledger::scim_source_toml(&scim.base_url, "")
    );
    let gl = Govledger::serve_with_config(&nats.url(), &toml);
    assert_eq!(gl.sync("hr").await.verdict, Verdict::Complete as i32);
    let user = scim.user_ids()[0].clone();
    // NATS paused past several ack timeouts: the request is sent, then resent;
    // resumed, it stores the first copy and answers the resends as duplicates.
    let pid = Pid::from_raw(nats.pid().unwrap() as i32);
    kill(pid, Signal::SIGSTOP).unwrap();
    let resume = async {
        tokio::time::sleep(Duration::from_millis(1_500)).await;
        kill(pid, Signal::SIGCONT).unwrap();
    };
    let req = action_request(ActionKind::Deactivate, &user, "", "resent-1", "T-1");
    let (id, ()) = tokio::join!(gl.submit_action("hr", req), resume);
    let r = gl.wait_action(&id).await;
    assert_eq!(r.outcome, ActionOutcome::Confirmed as i32, "{r:?}");
    assert_eq!(scim.user_state(&user), Some((false, 2)));
}
