//! Storage faults surface (issue 22, item 4): the embedded NATS store's disk
//! fills up (a small tmpfs mounted on `D/nats`, filled by a ballast file)
//! while a sync runs. govledger says so with the cause (log, alert, health
//! NOT_SERVING), refuses writes with UNAVAILABLE (back-pressure, nothing
//! taken and lost), and when the ballast is removed it recovers by itself:
//! the embedded nats-server is restarted (it keeps its store's write error
//! until then), the events held back are stored, and the run is decided —
//! never left RUNNING. Needs to mount a tmpfs (root, as CI runs).

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use govledger_proto::v1::{self as pb, Verdict, alert};
use govledger_testkit::{
    Govledger,
    fault_scim::{FaultScim, Faults, ScimConfig},
    govledger::scim_source_toml,
};
use tonic::Code;

/// A tmpfs mounted for the test's life; unmounted on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, size_mb: u32) -> Self {
        std::fs::create_dir_all(at).unwrap();
        let st = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size_mb}m"), "tmpfs"])
            .arg(at)
            .status()
            .unwrap();
        assert!(
            st.success(),
            "this test mounts a {size_mb} MiB tmpfs at {} to fill it: it needs root (CI runs as root)",
            at.display()
        );
        Self(at.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Fills the disk of `dir` with a ballast file until nothing is left.
fn fill(dir: &Path) -> PathBuf {
    let ballast = dir.join("ballast");
    let _ = Command::new("dd")
        .args(["if=/dev/zero", "bs=1M", "count=4096", "status=none"])
        .arg(format!("of={}", ballast.display()))
        .status();
    ballast
}

const SERVING: i32 = tonic_health::pb::health_check_response::ServingStatus::Serving as i32;
const NOT_SERVING: i32 = tonic_health::pb::health_check_response::ServingStatus::NotServing as i32;

async fn next_alert(alerts: &mut tonic::Streaming<pb::Alert>, kind: alert::Kind) -> pb::Alert {
    loop {
        let a = tokio::time::timeout(Duration::from_secs(60), alerts.message())
            .await
            .unwrap_or_else(|_| panic!("no {kind:?} alert"))
            .unwrap()
            .unwrap();
        if a.kind == kind as i32 {
            return a;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_nats_disk_is_reported_refuses_writes_and_recovers_when_space_returns() {
    let scim = FaultScim::start_with(ScimConfig {
        users: 3_000,
        groups: 10,
        ..Default::default()
    })
    .await;
    let data = tempfile::tempdir().unwrap();
    let nats_dir = data.path().join("data").join("nats");
    let _tmpfs = Tmpfs::mount(&nats_dir, 48);
    let cfg = data.path().join("govledger.toml");
    std::fs::write(
        &cfg,
        scim_source_toml(&scim.base_url, "resources = [\"Users\", \"Groups\"]"),
    )
    .unwrap();
    let gl = Govledger::serve_embedded(data, &["--config", &cfg.display().to_string()]);
    assert_eq!(gl.sync("hr").await.verdict, Verdict::Complete as i32);
    let mut alerts = gl.watch_alerts().await;
    let mut c = gl.client().await;

    // A slow sync is under way when the disk fills up.
    scim.set_faults(Faults {
        latency_ms: 20,
        ..Default::default()
    });
    let run_id = c
        .trigger_sync(pb::TriggerSyncRequest {
            source_id: "hr".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .run_id;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let ballast = fill(&nats_dir);

    // Reported with its cause.
    let a = next_alert(&mut alerts, alert::Kind::StorageFull).await;
    assert!(
        a.message.contains("storage full") && a.message.contains(&nats_dir.display().to_string()),
        "{a:?}"
    );
    gl.wait_health(NOT_SERVING, Duration::from_secs(10)).await;
    assert!(gl.log_text().contains("storage full"), "{}", gl.log_text());
    // Writes are refused with back-pressure: nothing is taken and lost.
    let refused = c
        .submit_action(pb::SubmitActionRequest {
            source_id: "hr".into(),
            request: Some(govledger_testkit::govledger::action_request(
                pb::ActionKind::Deactivate,
                &scim.user_ids()[0],
                "",
                "while-full",
                "T-1",
            )),
        })
        .await
        .expect_err("a write while the disk is full");
    assert_eq!(refused.code(), Code::Unavailable, "{refused:?}");
    assert!(
        refused.message().contains("storage full") && refused.message().contains("retry"),
        "{refused:?}"
    );

    // Space returns: recovered without anyone restarting anything.
    scim.set_faults(Faults::default());
    std::fs::remove_file(&ballast).unwrap();
    let a = next_alert(&mut alerts, alert::Kind::StorageRecovered).await;
    assert!(a.message.contains("restarted"), "{a:?}");
    gl.wait_health(SERVING, Duration::from_secs(30)).await;
    // The run caught by the full disk is decided: COMPLETE (its events were
    // held back and stored) or ABANDONED — never left RUNNING.
    let r = {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let r = gl.run(&run_id).await;
            if r.verdict != Verdict::Running as i32 {
                break r;
            }
            assert!(
                Instant::now() < deadline,
                "run {run_id} still RUNNING 120 s after space returned: {:?}\nlog:\n{}",
                r.reasons,
                gl.log_text()
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    };
    assert!(
        [Verdict::Complete as i32, Verdict::Abandoned as i32].contains(&r.verdict),
        "{r:?}"
    );
    // And the ledger takes writes again: a new sync is COMPLETE.
    assert_eq!(gl.sync("hr").await.verdict, Verdict::Complete as i32);
}

/// sled's disk fills up (a tmpfs on `D/sled`) while events keep arriving:
/// the projector pauses before it writes instead of meeting the full disk
/// (sled keeps a write error for the life of the process: the old projector
/// stopped for good), the events wait in the stream, and it catches up by
/// itself when space returns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_sled_disk_pauses_the_projector_until_space_returns() {
    let nats = govledger_testkit::NatsServer::start().await;
    let client = nats.client().await;
    let data = tempfile::tempdir().unwrap();
    let sled_dir = data.path().join("data").join("sled");
    let _tmpfs = Tmpfs::mount(&sled_dir, 48);
    let gl = Govledger::serve_in(data, &nats.url(), &[]);
    let sim = |users| govledger::simulate::SimRun::new("hr", users, 100);
    let first = govledger_testkit::publish_sim(&client, "disk-test", &sim(500)).await;
    gl.wait_applied(first).await;
    let mut alerts = gl.watch_alerts().await;

    let ballast = fill(&sled_dir);
    let a = next_alert(&mut alerts, alert::Kind::StorageFull).await;
    assert!(a.message.contains(&sled_dir.display().to_string()), "{a:?}");
    // Events keep arriving (another producer): they wait in the stream.
    let last = govledger_testkit::publish_sim(&client, "disk-test", &sim(2_000)).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let s = gl.ledger_status().await;
    let applied = s.meta.clone().unwrap_or_default().last_applied_seq;
    assert!(
        applied < last,
        "folded onto a full disk: {applied} of {last}"
    );
    assert!(s.projector_stopped.is_empty(), "{}", s.projector_stopped);
    assert!(
        gl.log_text().contains("projector paused: storage full"),
        "{}",
        gl.log_text()
    );

    std::fs::remove_file(&ballast).unwrap();
    next_alert(&mut alerts, alert::Kind::StorageRecovered).await;
    gl.wait_applied(last).await;
    let s = gl.ledger_status().await;
    assert!(s.projector_stopped.is_empty(), "{}", s.projector_stopped);
    gl.wait_health(SERVING, Duration::from_secs(10)).await;
    assert!(
        !gl.log_text().contains("No space left"),
        "sled met the full disk:\n{}",
        gl.log_text()
    );
}
