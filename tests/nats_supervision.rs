//! When NATS stops answering or dies (issue 22, item 3): every RPC that needs
//! NATS answers within a named deadline with UNAVAILABLE, health says
//! NOT_SERVING, SIGTERM still stops `serve` within its bound, and the embedded
//! nats-server is restarted (and reported) when it dies.

use std::time::{Duration, Instant};

use govledger_proto::v1 as pb;
use govledger_testkit::{
    Govledger,
    fault_scim::{FaultScim, ScimConfig},
    govledger::{scim_source_toml, serve_fault_scim},
    runs::assert_verdict,
};
use nix::{
    sys::signal::{Signal, kill},
    unistd::Pid,
};
use tonic::Code;

/// How long an RPC may take while NATS is silent: the API's deadline plus slack.
const ANSWER_WITHIN: Duration = Duration::from_secs(9);

fn signal(pid: u32, s: Signal) {
    kill(Pid::from_raw(pid as i32), s).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_nats_gets_unavailable_in_bounded_time_and_sigterm_still_stops_serve() {
    let (nats, _scim, mut gl) = serve_fault_scim(5, 0, "").await;
    assert_eq!(gl.health().await, 1, "SERVING");

    let mut alerts = gl.watch_alerts().await;
    // NATS stops answering (SIGSTOP: connections stay open, nothing answers).
    let pid = nats.pid().unwrap();
    signal(pid, Signal::SIGSTOP);
    let mut c = gl.client().await;
    for (what, call) in [
        ("GetLedgerStatus", 0),
        ("VerifyRange", 1),
        ("ListCheckpoints", 2),
        ("Replay", 3),
    ] {
        let started = Instant::now();
        let r = tokio::time::timeout(Duration::from_secs(30), async {
            match call {
                0 => c
                    .get_ledger_status(pb::GetLedgerStatusRequest { with_digest: false })
                    .await
                    .map(drop),
                1 => c
                    .verify_range(pb::VerifyRangeRequest::default())
                    .await
                    .map(drop),
                2 => c
                    .list_checkpoints(pb::ListCheckpointsRequest::default())
                    .await
                    .map(drop),
                _ => {
                    let mut s = c.replay(pb::ReplayRequest::default()).await?.into_inner();
                    loop {
                        match s.message().await? {
                            Some(_) => continue,
                            None => break Ok(()),
                        }
                    }
                }
            }
        })
        .await
        .unwrap_or_else(|_| panic!("{what} hung 30 s while NATS was silent"));
        let took = started.elapsed();
        let e = r.expect_err(what);
        assert_eq!(e.code(), Code::Unavailable, "{what}: {e:?}");
        assert!(took < ANSWER_WITHIN, "{what} took {took:?}");
        assert!(e.message().contains("NATS"), "{what}: {e:?}");
    }
    // Health follows: NOT_SERVING while NATS is silent.
    let deadline = Instant::now() + Duration::from_secs(20);
    while gl.health().await != 2 {
        assert!(Instant::now() < deadline, "health never said NOT_SERVING");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // And an alert says so.
    let alert = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let a = alerts.message().await.unwrap().unwrap();
            if a.kind == pb::alert::Kind::NatsUnavailable as i32 {
                return a;
            }
        }
    })
    .await
    .expect("a NATS_UNAVAILABLE alert");
    assert!(alert.message.contains("NATS does not answer"), "{alert:?}");
    // SIGTERM stops serve within its bound although NATS is silent.
    let started = Instant::now();
    let status = tokio::task::spawn_blocking(move || {
        let st = gl.stop();
        (st, gl)
    });
    let (st, _gl) = tokio::time::timeout(Duration::from_secs(40), status)
        .await
        .expect("serve did not stop within 40 s of SIGTERM while NATS was silent")
        .unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );
    assert!(st.is_some());
    signal(pid, Signal::SIGCONT);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_nats_server_is_restarted_when_it_dies_and_it_is_reported() {
    let scim = FaultScim::start_with(ScimConfig {
        users: 5,
        ..Default::default()
    })
    .await;
    let data = tempfile::tempdir().unwrap();
    let cfg = data.path().join("govledger.toml");
    std::fs::write(&cfg, scim_source_toml(&scim.base_url, "")).unwrap();
    let gl = Govledger::serve_embedded(data, &["--config", cfg.to_str().unwrap()]);
    assert_verdict(&gl.sync("hr").await, pb::Verdict::Complete);
    let before = gl.ledger_status().await.meta.unwrap().last_applied_seq;
    let pid_file = gl.data_dir().join("nats").join("nats-server.pid");
    let pid: u32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    signal(pid, Signal::SIGKILL);

    // Reported in the log, then restarted; the ledger works again.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let log = gl.log_text();
        if log.contains("embedded nats-server exited")
            && log.contains("embedded nats-server restarted")
        {
            break;
        }
        assert!(Instant::now() < deadline, "no restart reported:\n{log}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let new_pid: u32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_ne!(new_pid, pid);
    let deadline = Instant::now() + Duration::from_secs(20);
    while gl.health().await != 1 {
        assert!(
            Instant::now() < deadline,
            "health never came back to SERVING"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let r = gl.sync("hr").await;
    assert_verdict(&r, pb::Verdict::Complete);
    let after = gl.ledger_status().await.meta.unwrap().last_applied_seq;
    assert!(after > before, "{after} <= {before}");
}

/// A run id is a record, not a promise: TriggerSync answers with one only
/// once the run's start is stored. While NATS is silent it answers
/// UNAVAILABLE in bounded time (the old code answered at once with an id the
/// ledger never heard of: a kill then left it unknown forever); the run goes
/// on and is recorded when NATS answers again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_id_is_given_only_once_its_start_is_stored() {
    let (nats, _scim, gl) = serve_fault_scim(5, 0, "").await;
    let mut c = gl.client().await;
    let runs_before = runs_of_hr(&mut c).await.len();
    let pid = nats.pid().unwrap();
    signal(pid, Signal::SIGSTOP);
    let started = Instant::now();
    let r = c
        .trigger_sync(pb::TriggerSyncRequest {
            source_id: "hr".into(),
            ..Default::default()
        })
        .await;
    let took = started.elapsed();
    match r {
        Ok(resp) => {
            let run_id = resp.into_inner().run_id;
            let known = c
                .get_run(pb::GetRunRequest {
                    run_id: run_id.clone(),
                })
                .await;
            signal(pid, Signal::SIGCONT);
            panic!("TriggerSync named run {run_id} while NATS stored nothing; GetRun: {known:?}");
        }
        Err(e) => {
            signal(pid, Signal::SIGCONT);
            assert_eq!(e.code(), Code::Unavailable, "{e:?}");
            assert!(e.message().contains("has not stored its start"), "{e:?}");
            assert!(took < ANSWER_WITHIN, "answered after {took:?}");
        }
    }
    // Recorded once NATS answers, and decided.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let runs = runs_of_hr(&mut c).await;
        if runs.len() > runs_before
            && runs
                .iter()
                .all(|r| r.verdict != pb::Verdict::Running as i32)
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the run started while NATS was silent was never recorded and decided: {runs:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Source `hr`'s runs (at most 100).
async fn runs_of_hr(c: &mut govledger::cli::client::Client) -> Vec<pb::RunSummary> {
    c.list_runs(pb::ListRunsRequest {
        source_id: "hr".into(),
        limit: 100,
    })
    .await
    .unwrap()
    .into_inner()
    .runs
}
