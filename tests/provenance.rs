//! Provenance of facts (issue 21), end to end over a real nats-server and the
//! real `govledger serve`: publishing rights to the stream are not enough. A
//! run not sealed by a trusted producer (no seal, an untrusted key, events
//! altered or injected after sealing) is UNVERIFIED_PRODUCER, never COMPLETE,
//! and readiness is not READY; forged action events never make an action
//! CONFIRMED; `govledger simulate` cannot make a configured source COMPLETE;
//! a real sync and a real action still are COMPLETE and CONFIRMED, and a
//! rebuild gives the same state.

use std::process::{Command, Stdio};

use govledger::simulate::{SimRun, publish_all, run_events};
use govledger_ingest::event::{ProducerId, Scope, stamp};
use govledger_proto::v1::{
    ActionAttempted, ActionConcluded, ActionKind, ActionOutcome, ActionVerified,
    CheckReadinessRequest, Event, ReasonCode, SealStatus, Verdict, event::Body,
};
use govledger_stream::seal::{self, ProducerKey};
use govledger_testkit::{
    Govledger, NatsServer, ensure_stream, govledger_bin, publisher, read_stream,
    runs::{assert_outcome, assert_verdict, codes},
    stream::publisher_sealed_by,
};
use prost::Message as _;

/// A key no ledger here trusts.
fn forger_key() -> std::sync::Arc<ProducerKey> {
    std::sync::Arc::new(ProducerKey::from_seed([0x66; 32]))
}

/// Publishes `events` as they are (no sealing publisher) and waits until the
/// ledger applied them.
async fn publish_raw(nats: &NatsServer, gl: &Govledger, events: &[Event]) -> Vec<u64> {
    let client = nats.client().await;
    ensure_stream(&client).await;
    let p = publisher_sealed_by(client, 2_000, None);
    let receipts = publish_all(&p, events).await.unwrap();
    let seqs: Vec<u64> = receipts.iter().map(|r| r.seq).collect();
    gl.wait_applied(*seqs.last().unwrap()).await;
    seqs
}

/// Asserts the run is UNVERIFIED_PRODUCER with the producer problem named
/// first (and `status` recorded), and that readiness over `hr` is not READY.
async fn assert_unverified(gl: &Govledger, run_id: &str, status: SealStatus, says: &str) {
    let r = gl.run(run_id).await;
    assert_verdict(&r, Verdict::UnverifiedProducer);
    assert_eq!(
        codes(&r)[0],
        ReasonCode::UnverifiedProducer,
        "{:?}",
        r.reasons
    );
    let msg = &r.reasons[0].message;
    assert!(msg.contains("not sealed by a trusted producer"), "{msg}");
    assert!(msg.contains(says), "{msg}");
    assert_eq!(r.run.unwrap().seal_status, status as i32);
    let src = gl.source("hr").await.source.unwrap();
    assert_ne!(src.last_complete_run_id, run_id);
    let ready = gl
        .client()
        .await
        .check_readiness(CheckReadinessRequest {
            source_ids: vec!["hr".into()],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!ready.ready, "READY on a run no trusted producer sealed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_without_a_seal_or_sealed_by_an_untrusted_key_is_never_complete() {
    let nats = NatsServer::start().await;
    let gl = Govledger::serve(&nats.url(), &[]);
    let client = nats.client().await;
    ensure_stream(&client).await;

    // The control: the same kind of run sealed by the ledger's own key.
    let sealed = SimRun::new("hr", 120, 50);
    let last = govledger_testkit::publish_sim(&client, "test", &sealed).await;
    gl.wait_applied(last).await;
    let r = gl.run(&sealed.run_id).await;
    assert_verdict(&r, Verdict::Complete);
    assert_eq!(r.run.unwrap().seal_status, SealStatus::Verified as i32);

    // Straight to NATS, a valid-looking run, no seal.
    let bare = SimRun::new("hr", 120, 50);
    publish_raw(&nats, &gl, &run_events(&ProducerId::new("x"), &bare)).await;
    assert_unverified(&gl, &bare.run_id, SealStatus::Missing, "no seal").await;

    // A perfect seal, by a key the ledger does not trust.
    let untrusted = SimRun::new("hr", 120, 50);
    let p = publisher_sealed_by(client.clone(), 2_000, Some(forger_key()));
    let receipts = publish_all(&p, &run_events(&ProducerId::new("x"), &untrusted))
        .await
        .unwrap();
    gl.wait_applied(receipts.last().unwrap().seq).await;
    assert_unverified(
        &gl,
        &untrusted.run_id,
        SealStatus::UntrustedKey,
        "provenance.trusted_keys",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_altered_or_injected_under_a_valid_seal_is_never_complete() {
    let nats = NatsServer::start().await;
    let gl = Govledger::serve(&nats.url(), &[]);
    let client = nats.client().await;
    ensure_stream(&client).await;
    let key = govledger_testkit::stream::test_producer_key();

    // Altered: the producer sealed the original events, the stream holds one
    // changed (a record made inactive).
    let sim = SimRun::new("hr", 60, 20);
    let events = run_events(&ProducerId::new("x"), &sim);
    let (body, finish) = events.split_at(events.len() - 1);
    let mut altered = body.to_vec();
    if let Some(Body::RecordObserved(o)) = altered[5].body.as_mut() {
        o.active = Some(false);
    } else {
        panic!("event 5 is not a record: {:?}", altered[5].body);
    }
    let seqs = publish_raw(&nats, &gl, &altered).await;
    let leaves = seqs
        .iter()
        .zip(body)
        .map(|(s, e)| (*s, seal::leaf(*s, &e.encode_to_vec())))
        .collect::<Vec<_>>();
    let mut finish = finish[0].clone();
    key.seal_run(&mut finish, leaves.len() as u64, seal::chain_of(leaves));
    publish_raw(&nats, &gl, &[finish]).await;
    assert_unverified(&gl, &sim.run_id, SealStatus::EventsDiffer, "differ").await;

    // Injected: a trusted producer seals its run; someone else slips one more
    // record into it before the finish.
    let sim = SimRun::new("hr", 60, 20);
    let events = run_events(&ProducerId::new("x"), &sim);
    let (body, finish) = events.split_at(events.len() - 1);
    let p = publisher(client.clone(), 2_000);
    publish_all(&p, body).await.unwrap();
    let mut extra = body[2].clone();
    extra.event_id = uuid::Uuid::now_v7().to_string();
    publish_raw(&nats, &gl, &[extra]).await;
    let last = publish_all(&p, finish).await.unwrap()[0].seq;
    gl.wait_applied(last).await;
    assert_unverified(&gl, &sim.run_id, SealStatus::EventsDiffer, "injected").await;

    // An event injected after a valid seal downgrades the run, never upgrades it.
    let sim = SimRun::new("hr", 60, 20);
    let events = run_events(&ProducerId::new("x"), &sim);
    let last = publish_all(&p, &events).await.unwrap().last().unwrap().seq;
    gl.wait_applied(last).await;
    assert_verdict(&gl.run(&sim.run_id).await, Verdict::Complete);
    let mut late = events[3].clone();
    late.event_id = uuid::Uuid::now_v7().to_string();
    publish_raw(&nats, &gl, &[late]).await;
    assert_verdict(&gl.run(&sim.run_id).await, Verdict::Incomplete);
}

/// Forged write-path events for `action_id` at `hr`, claiming the intent in effect.
fn forged_confirmation(action_id: &str) -> Vec<Event> {
    let p = ProducerId::new("forger");
    let scope = Scope::action("hr", action_id);
    vec![
        stamp(
            &p,
            &scope,
            2,
            Body::ActionAttempted(ActionAttempted {
                step: 1,
                http_status: 204,
                ..Default::default()
            }),
        ),
        stamp(
            &p,
            &scope,
            2,
            Body::ActionVerified(ActionVerified {
                step: 1,
                in_effect: true,
                http_status: 200,
                observed: "active=false".into(),
                ..Default::default()
            }),
        ),
        stamp(
            &p,
            &scope,
            2,
            Body::ActionConcluded(ActionConcluded {
                outcome: ActionOutcome::Confirmed as i32,
                detail: "forged".into(),
                ..Default::default()
            }),
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_action_events_never_confirm_an_action() {
    let (nats, scim, gl) = govledger_testkit::govledger::serve_fault_scim(20, 2, "").await;
    // A real action the target does not apply (W1): the executor concludes UNCONFIRMED.
    scim.set_faults(govledger_testkit::fault_scim::Faults {
        write_noop: true,
        ..Default::default()
    });
    let u = scim.user_ids()[3].clone();
    let request =
        govledger_testkit::govledger::action_request(ActionKind::Deactivate, &u, "", "p1", "T-1");
    let id = gl.submit_action("hr", request).await;
    let r = gl.wait_action(&id).await;
    assert_outcome(&r, ActionOutcome::Unconfirmed);
    assert_eq!(
        r.action.unwrap().seal_status,
        SealStatus::Verified as i32,
        "the executor seals its conclusion"
    );
    // Forged attempt, read-back and CONFIRMED conclusion: unsealed, then sealed
    // by an untrusted key.
    publish_raw(&nats, &gl, &forged_confirmation(&id)).await;
    let mut by_forger = forged_confirmation(&id);
    for e in &mut by_forger {
        e.event_id = uuid::Uuid::now_v7().to_string();
        forger_key().seal_event(e);
    }
    publish_raw(&nats, &gl, &by_forger).await;
    let r = gl.wait_action(&id).await;
    assert_outcome(&r, ActionOutcome::Unconfirmed);

    // A forged conclusion for an action no executor concluded yet (an external
    // action: govledger waits for a report): UNVERIFIED_PRODUCER, blocking readiness.
    let mut ext = govledger_testkit::govledger::action_request(
        ActionKind::Deactivate,
        &scim.user_ids()[4],
        "",
        "p2",
        "T-2",
    );
    ext.external = true;
    let ext_id = gl.submit_action("hr", ext).await;
    publish_raw(&nats, &gl, &forged_confirmation(&ext_id)).await;
    let r = gl
        .wait_action_until(&ext_id, |r| {
            r.outcome == ActionOutcome::UnverifiedProducer as i32
        })
        .await;
    assert!(
        r.outcome_detail
            .contains("not sealed by a trusted producer"),
        "{}",
        r.outcome_detail
    );
    let a = r.action.unwrap();
    assert_eq!(a.unsealed_conclusions, 1);
    assert!(
        a.verified_steps.contains(&1),
        "the forged read-back is folded, proves nothing"
    );
    let ready = gl
        .client()
        .await
        .check_readiness(CheckReadinessRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(!ready.ready);
    assert!(
        ready
            .blockers
            .iter()
            .any(|b| b.code == "ACTION_UNVERIFIED_PRODUCER"),
        "{:?}",
        ready.blockers
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_sync_and_action_stay_complete_and_confirmed_and_a_rebuild_agrees() {
    // serve_fault_scim asserts its first real sync COMPLETE.
    let (nats, scim, gl) = govledger_testkit::govledger::serve_fault_scim(20, 2, "").await;
    let src = gl.source("hr").await.source.unwrap();
    let run = gl.run(&src.last_complete_run_id).await.run.unwrap();
    assert_eq!(run.seal_status, SealStatus::Verified as i32);
    assert!(run.seal_events > 0);
    let u = scim.user_ids()[1].clone();
    let r = gl
        .act(
            "hr",
            govledger_testkit::govledger::action_request(ActionKind::Deactivate, &u, "", "k", "T"),
        )
        .await;
    assert_outcome(&r, ActionOutcome::Confirmed);
    assert_eq!(r.action.unwrap().seal_status, SealStatus::Verified as i32);

    let last = read_stream(&nats.client().await).await.last().unwrap().seq;
    gl.wait_applied(last).await;
    let o = Command::new(govledger_bin())
        .args([
            "rebuild",
            "--nats-url",
            &nats.url(),
            "--grpc-addr",
            &gl.addr,
        ])
        .arg("--data-dir")
        .arg(gl.data_dir())
        .env("NO_COLOR", "1")
        .env("GOVLEDGER_TOKEN_FILE", gl.token_file())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{out}");
    assert!(
        out.contains("MATCH: the live projection is exactly the fold of the stream"),
        "{out}"
    );
    // serve logs its producer key (what other ledgers list in trusted_keys).
    let own = govledger_testkit::stream::test_producer_key().public_hex();
    assert!(gl.log_text().contains(&own), "no producer key in the log");
    let seed = "5e".repeat(32); // the tests' producer seed: a secret
    assert!(
        !gl.log_text().contains(&seed),
        "the producer seed reached the log"
    );

    // Without serve's data folder a rebuild does not guess (nor create) a key.
    let elsewhere = tempfile::tempdir().unwrap();
    let o = Command::new(govledger_bin())
        .args([
            "rebuild",
            "--nats-url",
            &nats.url(),
            "--grpc-addr",
            &gl.addr,
        ])
        .current_dir(elsewhere.path())
        .env("NO_COLOR", "1")
        .env("GOVLEDGER_TOKEN_FILE", gl.token_file())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "{out}");
    assert!(
        out.contains("provenance.key_file") && out.contains("--data-dir"),
        "{out}"
    );
    assert!(
        !elsewhere
            .path()
            .join("govledger-data/producer.key")
            .exists()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn govledger_simulate_cannot_make_a_configured_source_complete() {
    let nats = NatsServer::start().await;
    let scim = govledger_testkit::fault_scim::FaultScim::start_with(
        govledger_testkit::fault_scim::ScimConfig {
            users: 5,
            ..Default::default()
        },
    )
    .await;
    let toml = govledger_testkit::govledger::scim_source_toml(&scim.base_url, "");
    let gl = Govledger::serve_with_config(&nats.url(), &toml);
    let cfg = gl.data.path().join("govledger.toml");
    let o = Command::new(govledger_bin())
        .args(["simulate", "--source", "hr", "--nats-url", &nats.url()])
        .arg("--config")
        .arg(&cfg)
        .env("NO_COLOR", "1")
        .env("GOVLEDGER_TOKEN_FILE", gl.token_file())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{out}");
    assert!(out.contains("UNVERIFIED_PRODUCER"), "{out}");
    let last = read_stream(&nats.client().await).await.last().unwrap().seq;
    gl.wait_applied(last).await;
    let src = gl.source("hr").await.source.unwrap();
    assert!(
        src.last_complete_run_id.is_empty(),
        "simulate made hr COMPLETE"
    );
    let r = gl.run(&src.last_run_id).await;
    assert_verdict(&r, Verdict::UnverifiedProducer);
    assert_eq!(r.run.unwrap().seal_status, SealStatus::Missing as i32);
}

/// `govledger verify-bundle FILE --public-key KEY`: exit code and output.
fn verify_bundle_cli(path: &std::path::Path, key: &str) -> (Option<i32>, String) {
    let o = Command::new(govledger_bin())
        .arg("verify-bundle")
        .arg(path)
        .args(["--public-key", key])
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        o.status.code(),
        String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_bundle_shows_and_checks_the_seals() {
    use govledger::audit::evidence::{Bundle, verify_bundle};
    let (nats, _scim, gl) = govledger_testkit::govledger::serve_fault_scim(8, 1, "").await;
    let sealed_run = gl.source("hr").await.source.unwrap().last_complete_run_id;
    let bare = SimRun::new("hr", 10, 10);
    publish_raw(&nats, &gl, &run_events(&ProducerId::new("x"), &bare)).await;
    let key = gl.ledger_status().await.checkpoint_public_key;

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("evidence.json");
    let o = Command::new(govledger_bin())
        .args(["export", "--grpc-addr", &gl.addr, "--source", "hr"])
        .arg("--out")
        .arg(&path)
        .env("NO_COLOR", "1")
        .env("GOVLEDGER_TOKEN_FILE", gl.token_file())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let (code, out) = verify_bundle_cli(&path, &key);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("VERIFIED"), "{out}");
    let own = govledger_testkit::stream::test_producer_key().key_id();
    assert!(
        out.contains(&format!(
            "provenance: run {sealed_run}: sealed by producer key {own}"
        )),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "provenance: run {}: not sealed by a trusted producer (no seal)",
            bare.run_id
        )),
        "{out}"
    );

    let text = std::fs::read_to_string(&path).unwrap();
    assert!(
        !text.contains(&"5e".repeat(32)),
        "the producer seed reached the bundle"
    );
    let original: Bundle = serde_json::from_slice(text.as_bytes()).unwrap();
    assert_eq!(
        original.producer_keys,
        vec![govledger_testkit::stream::test_producer_key().public_hex()]
    );
    let check = |b: &Bundle| verify_bundle(&serde_json::to_vec(b).unwrap(), Some(&key));
    assert!(check(&original).ok);

    // The seal of the sealed run's finish, edited in the event's bytes: TAMPERED.
    let i = original
        .events
        .iter()
        .position(|e| {
            let raw = govledger::audit::checkpoints::unhex(&e.raw).unwrap();
            let ev = Event::decode(raw.as_slice()).unwrap();
            ev.run_id == sealed_run && ev.seal.is_some()
        })
        .expect("the sealed finish is in the bundle");
    let mut b = original.clone();
    let raw = govledger::audit::checkpoints::unhex(&b.events[i].raw).unwrap();
    let mut ev = Event::decode(raw.as_slice()).unwrap();
    if let Some(s) = ev.seal.as_mut() {
        s.signature[0] ^= 1;
    }
    b.events[i].raw = govledger_projector::fold::hex(&ev.encode_to_vec());
    let r = check(&b);
    assert!(!r.ok, "{r:?}");
    assert_eq!(r.first_bad_seq, Some(b.events[i].seq), "{r:?}");

    // A forger's key added to the producer keys (so its runs would look
    // sealed): the manifest no longer verifies.
    let mut b = original.clone();
    b.producer_keys.push(forger_key().public_hex());
    let r = check(&b);
    assert!(!r.ok && r.problem.contains("manifest"), "{r:?}");
    let mut b = original.clone();
    b.producer_keys.clear();
    assert!(!check(&b).ok);
}
