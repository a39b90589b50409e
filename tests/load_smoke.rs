//! The CI-sized load campaign (issue 22 item 8; the full one is
//! `govledger-bench --only load`): 50 clients on the read mix for about 10 s
//! while a small source is synced back to back and actions are submitted;
//! no call fails and every answer agrees with what the ledger holds.

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use govledger_proto::v1::{self as pb, ActionKind, ActionOutcome, Verdict};
use govledger_testkit::{
    NatsServer,
    fault_scim::FaultScim,
    govledger::{Govledger, action_request, scim_source_toml},
};

const CLIENTS: usize = 50;
const USERS: usize = 500;
/// How long the clients run (the syncs and actions run meanwhile).
const LOAD_MS: u64 = 10_000;
/// One action submitted this often.
const ACTION_EVERY_MS: u64 = 400;

/// What the mix asks about.
struct Targets {
    users: Vec<String>,
    complete_run: String,
    seed_action: String,
}

/// One call of the mix; `Err` = the call failed, `Ok(Some)` = a wrong answer.
async fn one_call(
    c: &mut govledger::cli::client::Client,
    k: usize,
    t: &Targets,
) -> Result<Option<String>, tonic::Status> {
    let user = &t.users[k.wrapping_mul(7_919) % t.users.len()];
    let wrong = match k % 7 {
        0 => {
            let r = c
                .get_source(pb::GetSourceRequest {
                    source_id: "hr".into(),
                    as_of: None,
                })
                .await?
                .into_inner();
            r.source
                .is_none_or(|s| s.source_id != "hr")
                .then(|| "GetSource: no state".to_owned())
        }
        1 => {
            let r = c
                .get_run(pb::GetRunRequest {
                    run_id: t.complete_run.clone(),
                })
                .await?
                .into_inner();
            (r.verdict != Verdict::Complete as i32)
                .then(|| format!("GetRun: a COMPLETE run is now {}", r.verdict))
        }
        2 => {
            let r = c
                .get_identity(pb::GetIdentityRequest {
                    source_id: "hr".into(),
                    entity_type: pb::EntityType::User as i32,
                    external_id: user.clone(),
                    as_of: None,
                })
                .await?
                .into_inner();
            r.identity
                .is_none_or(|i| &i.external_id != user)
                .then(|| format!("GetIdentity {user}: missing or another"))
        }
        3 => {
            let r = c
                .check_readiness(pb::CheckReadinessRequest {
                    source_ids: vec!["hr".into()],
                    ..Default::default()
                })
                .await?
                .into_inner();
            (r.sources.len() != 1).then(|| format!("CheckReadiness: {} sources", r.sources.len()))
        }
        4 => {
            let r = c
                .list_actions(pb::ListActionsRequest {
                    source_id: "hr".into(),
                    outcome: 0,
                    limit: 20,
                })
                .await?
                .into_inner();
            (r.actions.is_empty() || r.actions.len() > 20)
                .then(|| format!("ListActions: {} actions", r.actions.len()))
        }
        5 => {
            let r = c
                .get_action(pb::GetActionRequest {
                    action_id: t.seed_action.clone(),
                    as_of: None,
                })
                .await?
                .into_inner();
            (r.outcome != ActionOutcome::Confirmed as i32)
                .then(|| format!("GetAction: the seed action is now {}", r.outcome))
        }
        _ => {
            let r = c
                .get_ledger_status(pb::GetLedgerStatusRequest { with_digest: false })
                .await?
                .into_inner();
            r.meta
                .is_none_or(|m| m.last_applied_seq == 0)
                .then(|| "GetLedgerStatus: nothing applied".to_owned())
        }
    };
    Ok(wrong)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_clients_during_syncs_and_actions_see_no_error_and_consistent_answers() {
    let nats = NatsServer::start().await;
    let scim = FaultScim::start(USERS).await;
    let toml = scim_source_toml(&scim.base_url, "resources = [\"Users\"]");
    let gl = Arc::new(Govledger::serve_with_config(&nats.url(), &toml));
    let first = gl.sync("hr").await;
    assert_eq!(first.verdict, Verdict::Complete as i32, "{first:?}");
    let users = scim.user_ids();
    // The seed action's user is never synced active again by anyone.
    let seed_action = gl
        .act(
            "hr",
            action_request(ActionKind::Deactivate, &users[0], "", "seed", "T-0"),
        )
        .await;
    assert_eq!(
        seed_action.outcome,
        ActionOutcome::Confirmed as i32,
        "{seed_action:?}"
    );
    let targets = Arc::new(Targets {
        users: users.clone(),
        complete_run: first.run.unwrap().run_id,
        seed_action: seed_action.action.unwrap().action_id,
    });

    let stop = Arc::new(AtomicBool::new(false));
    let failures: Arc<Mutex<Vec<String>>> = Arc::default();
    let mut clients = Vec::with_capacity(CLIENTS);
    for i in 0..CLIENTS {
        let mut c = gl.client().await;
        let (t, stop, failures) = (targets.clone(), stop.clone(), failures.clone());
        clients.push(tokio::spawn(async move {
            let mut k = i;
            while !stop.load(Ordering::Relaxed) {
                match one_call(&mut c, k, &t).await {
                    Ok(None) => {}
                    Ok(Some(wrong)) => failures.lock().unwrap().push(wrong),
                    Err(s) => failures
                        .lock()
                        .unwrap()
                        .push(format!("call {} failed: {s}", k % 7)),
                }
                k += 1;
            }
            k - i
        }));
    }
    let syncs = {
        let (gl, stop) = (gl.clone(), stop.clone());
        tokio::spawn(async move {
            let mut runs = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                runs.push(gl.sync("hr").await);
            }
            runs
        })
    };
    let actions = {
        let (gl, stop, users) = (gl.clone(), stop.clone(), users.clone());
        tokio::spawn(async move {
            let mut ids = Vec::new();
            let mut n = 1;
            while !stop.load(Ordering::Relaxed) {
                let r = action_request(
                    ActionKind::Deactivate,
                    &users[n % USERS],
                    "",
                    &format!("load-{n}"),
                    "T",
                );
                ids.push(gl.submit_action("hr", r).await);
                n += 1;
                tokio::time::sleep(Duration::from_millis(ACTION_EVERY_MS)).await;
            }
            ids
        })
    };
    tokio::time::sleep(Duration::from_millis(LOAD_MS)).await;
    stop.store(true, Ordering::Relaxed);
    let mut calls = Vec::new();
    for c in clients {
        calls.push(c.await.unwrap());
    }
    let runs = syncs.await.unwrap();
    let action_ids = actions.await.unwrap();

    let failures = failures.lock().unwrap().clone();
    assert!(
        failures.is_empty(),
        "{} failed or wrong answers, e.g. {:?}",
        failures.len(),
        &failures[..failures.len().min(10)]
    );
    assert!(
        calls.iter().all(|&n| n > 0),
        "a client made no call: {calls:?}"
    );
    assert!(!runs.is_empty());
    for r in &runs {
        let run = r.run.as_ref().unwrap();
        assert_eq!(r.verdict, Verdict::Complete as i32, "{r:?}");
        assert_eq!(run.records_unique, USERS as u64, "{run:?}");
    }
    assert!(action_ids.len() >= 2, "{action_ids:?}");
    let mut drifted = 0;
    for id in &action_ids {
        let a = gl.wait_action(id).await;
        let state = a.action.as_ref().unwrap();
        // The read-back showed each deactivation in effect.
        assert!(state.verified && state.in_effect, "{a:?}");
        if a.outcome == ActionOutcome::Drifted as i32 {
            drifted += 1;
            // Known (left to the fold's owner): drift is judged by stream
            // order, so a page read before the write but stored after the
            // confirmation reads as "active again". Nobody reactivates a
            // user here, so a drift must come from a run already started
            // when the action was concluded.
            let run_id = a
                .outcome_detail
                .split("(run ")
                .nth(1)
                .and_then(|s| s.split(')').next())
                .unwrap_or_else(|| panic!("drift names no run: {a:?}"));
            let run = gl.run(run_id).await.run.unwrap();
            assert!(
                run.started_at_us <= state.concluded_at_us,
                "drift from run {run_id} started after the action was concluded: {a:?}"
            );
        } else {
            assert_eq!(a.outcome, ActionOutcome::Confirmed as i32, "{a:?}");
        }
    }
    let total: usize = calls.iter().sum();
    eprintln!(
        "load smoke: {total} calls from {CLIENTS} clients, {} syncs, {} actions ({drifted} DRIFTED by a run started before their confirmation), no error",
        runs.len(),
        action_ids.len()
    );
}
