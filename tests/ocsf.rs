//! The OCSF feed against a real nats-server, the real `govledger serve`
//! binary and a SCIM server speaking the real protocol: a sync, a
//! deactivation and a membership removal come out as OCSF records on
//! `govledger.ocsf.v1.<class>`, each validated by the official OCSF schema
//! of its version (PyPI ocsf-json-schema + jsonschema), for 1.1.0 and 1.8.0.

use std::time::Duration;

use futures::StreamExt as _;
use govledger_proto::v1::{ActionKind, ActionOutcome, Verdict};
use govledger_testkit::{
    Govledger, NatsServer,
    fault_scim::{FaultScim, ScimConfig},
    govledger::{action_request, scim_source_toml},
};
use serde_json::Value;

/// Every record of the GOVLEDGER_OCSF stream, waiting until `want` holds (30 s at most).
async fn records(nats: &NatsServer, want: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let js = async_nats::jetstream::new(nats.client().await);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        // A feed just started may not have made its stream yet.
        let Ok(stream) = js.get_stream("GOVLEDGER_OCSF").await else {
            assert!(
                tokio::time::Instant::now() < deadline,
                "no GOVLEDGER_OCSF stream"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        let consumer = stream
            .create_consumer(async_nats::jetstream::consumer::pull::OrderedConfig::default())
            .await
            .unwrap();
        let total = stream.cached_info().state.messages;
        let mut msgs = consumer.messages().await.unwrap();
        let mut out = Vec::new();
        while (out.len() as u64) < total {
            let m = tokio::time::timeout(Duration::from_secs(5), msgs.next())
                .await
                .unwrap()
                .unwrap()
                .unwrap();
            let v: Value = serde_json::from_slice(&m.payload).unwrap();
            let class = m.subject.rsplit('.').next().unwrap().to_owned();
            assert_eq!(
                v["class_uid"].as_u64(),
                Some(match class.as_str() {
                    "api_activity" => 6003,
                    "account_change" => 3001,
                    "group_management" => 3006,
                    other => panic!("unexpected subject class {other}"),
                }),
                "{}: {v}",
                m.subject
            );
            out.push(v);
        }
        if want(&out) {
            return out;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the feed never showed what was expected: {out:#?}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

fn validate(records: &[Value]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("records.ndjson");
    let text: String = records.iter().map(|r| format!("{r}\n")).collect();
    std::fs::write(&file, text).unwrap();
    let py = concat!(env!("CARGO_MANIFEST_DIR"), "/.tools/venv/bin/python");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/py/validate_ocsf.py");
    let out = std::process::Command::new(py)
        .arg(script)
        .arg(&file)
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "records the official OCSF schema rejects:\n{report}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    report
}

fn lifecycle(records: &[Value], class_uid: u64, activity_id: u64) -> Vec<&Value> {
    records
        .iter()
        .filter(|r| r["class_uid"] == class_uid && r["activity_id"] == activity_id)
        .collect()
}

/// What a ledger did that the feed must show.
struct Done {
    leaver: String,
    concluded_seq: u64,
    group: String,
    member: String,
}

/// A ledger (with `top` above its source) that synced, deactivated a
/// leaver and removed a member from a group, all CONFIRMED.
async fn a_ledger_that_acted(top: &str) -> (NatsServer, FaultScim, Govledger, Done) {
    let nats = NatsServer::start().await;
    let scim = FaultScim::start_with(ScimConfig {
        users: 20,
        groups: 2,
        ..Default::default()
    })
    .await;
    let toml = format!(
        "{top}{}",
        scim_source_toml(&scim.base_url, "resources = [\"Users\", \"Groups\"]")
    );
    let gl = Govledger::serve_with_config(&nats.url(), &toml);
    assert_eq!(gl.sync("hr").await.verdict, Verdict::Complete as i32);
    let leaver = scim.user_ids()[2].clone();
    let a = gl
        .act(
            "hr",
            action_request(ActionKind::Deactivate, &leaver, "", "o-1", "HR-9"),
        )
        .await;
    assert_eq!(
        a.outcome,
        ActionOutcome::Confirmed as i32,
        "{}",
        a.outcome_detail
    );
    let group = scim.group_ids()[0].clone();
    let member = scim.group_members(&group)[0].clone();
    let m = gl
        .act(
            "hr",
            action_request(ActionKind::RemoveMembership, &member, &group, "o-2", "HR-9"),
        )
        .await;
    assert_eq!(
        m.outcome,
        ActionOutcome::Confirmed as i32,
        "{}",
        m.outcome_detail
    );
    let concluded_seq = a.action.as_ref().unwrap().concluded_seq;
    (
        nats,
        scim,
        gl,
        Done {
            leaver,
            concluded_seq,
            group,
            member,
        },
    )
}

/// The feed's records validate and show what the ledger did.
async fn the_feed_shows(nats: &NatsServer, done: &Done, version: &str) {
    let recs = records(nats, |r| {
        !lifecycle(r, 3001, 5).is_empty() && !lifecycle(r, 3006, 4).is_empty()
    })
    .await;
    let report = validate(&recs);
    for class in [6003, 3001, 3006] {
        assert!(
            report.lines().any(|l| l == format!("OK {class} {version}")),
            "no {class} record validated:\n{report}"
        );
    }
    // The deactivation: Account Change / Disable, succeeded, naming the user.
    let d = lifecycle(&recs, 3001, 5);
    assert_eq!(d.len(), 1, "{d:#?}");
    assert_eq!(d[0]["status_id"], 1);
    assert_eq!(d[0]["type_uid"], 300105);
    assert_eq!(d[0]["user"]["uid"], done.leaver.as_str());
    assert_eq!(d[0]["unmapped"]["outcome"], "CONFIRMED");
    assert_eq!(d[0]["unmapped"]["ticket"], "HR-9");
    assert_eq!(d[0]["metadata"]["product"]["name"], "govledger");
    assert_eq!(d[0]["metadata"]["version"], version);
    // Its metadata.uid is the conclusion's stream sequence.
    let uid: u64 = d[0]["metadata"]["uid"].as_str().unwrap().parse().unwrap();
    assert_eq!(uid, done.concluded_seq);
    // The removal: Group Management / Remove User.
    let r = lifecycle(&recs, 3006, 4);
    assert_eq!(r.len(), 1, "{r:#?}");
    assert_eq!(r[0]["status_id"], 1);
    assert_eq!(r[0]["group"]["uid"], done.group.as_str());
    assert_eq!(r[0]["user"]["uid"], done.member.as_str());
    // Every page read and write attempt is API Activity.
    let reads = recs
        .iter()
        .filter(|r| r["class_uid"] == 6003 && r["activity_id"] == 2)
        .count();
    assert!(reads >= 2, "{reads} reads");
    assert!(
        recs.iter()
            .any(|r| r["class_uid"] == 6003 && r["activity_id"] == 3),
        "no write attempt"
    );
}

async fn feed_validates(version: &str) {
    let top = format!("[ocsf]\nenabled = true\nversion = \"{version}\"\n");
    let (nats, _scim, _gl, done) = a_ledger_that_acted(&top).await;
    the_feed_shows(&nats, &done, version).await;
}

/// Scale-out: `govledger ocsf` alone, beside a serve without the feed,
/// started after the facts, keeps its own request index and shows the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_standalone_feed_shows_the_same_records() {
    let (nats, _scim, _gl, done) = a_ledger_that_acted("").await;
    let data = tempfile::tempdir().unwrap();
    let mut feed = std::process::Command::new(govledger_testkit::govledger::govledger_bin())
        .args(["ocsf", "--nats-url", &nats.url(), "--data-dir"])
        .arg(data.path())
        .env("RUST_LOG", "info")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    the_feed_shows(&nats, &done, "1.1.0").await;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(feed.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let status = feed.wait().unwrap();
    assert!(status.success(), "govledger ocsf exited {status}");
    assert!(
        data.path().join("ocsf/requests").exists(),
        "no request index"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_feed_validates_against_ocsf_1_1() {
    feed_validates("1.1.0").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_feed_validates_against_ocsf_1_8() {
    feed_validates("1.8.0").await;
}
