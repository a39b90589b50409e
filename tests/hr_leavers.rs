//! HR file drops as a source (clean, cut short, a bad row, a count that does
//! not match, a file not landed yet), and the leaver check across an HR
//! file, a real SCIM server (`scim2-server`) and a real directory (`slapd`):
//! people HR shows gone who are still active in a target block readiness
//! with LEAVER_STILL_ACTIVE, until the target shows them disabled; someone
//! left out of an HR export is gone only when that export's run is COMPLETE.

use std::path::Path;

use govledger_proto::v1::{
    ActionKind, ActionOutcome, ActionRequested, CheckReadinessRequest, CheckReadinessResponse,
    EntityType, ReasonCode, Verdict,
};
use govledger_testkit::{
    Govledger, NatsServer,
    runs::{assert_run, assert_verdict},
    scim2::Scim2Server,
    slapd::Slapd,
};
use serde_json::json;

const HEAD: &str = "employee_id,email,status,end_date\n";

fn hr_source(dir: &Path, completeness: &str) -> String {
    format!(
        r#"
[[sources]]
id = "hr"
kind = "file"
[sources.file]
dir = "{}"
pattern = "workers_*.csv"
completeness = "{completeness}"
[sources.file.columns]
id = "employee_id"
email = "email"
status = "status"
end_date = "end_date"
[sources.attributes]
employee_id = "employee_id"
"#,
        dir.display()
    )
}

/// Writes a file of the folder, its modification time `age_s` seconds ago
/// (so the newest file is the one meant, whatever the clock's resolution).
fn drop_file(dir: &Path, name: &str, text: &str, age_s: u64) {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    let t = std::time::SystemTime::now() - std::time::Duration::from_secs(age_s);
    std::fs::File::options()
        .write(true)
        .open(&p)
        .unwrap()
        .set_modified(t)
        .unwrap();
}

/// Every reason's message of a run, in one line.
fn reasons(r: &govledger_proto::v1::GetRunResponse) -> String {
    r.reasons
        .iter()
        .map(|x| x.message.as_str())
        .collect::<Vec<_>>()
        .join(" | ")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hr_files_are_judged_by_their_own_counts() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let nats = NatsServer::start().await;
    let gl = Govledger::serve_with_config(&nats.url(), &hr_source(d, "trailer"));

    drop_file(
        d,
        "workers_1.csv",
        &format!("{HEAD}E1,a@x,active,\nE2,b@x,terminated,2026-11-30\nTRAILER,2\n"),
        50,
    );
    let r = gl.sync("hr").await;
    assert_verdict(&r, Verdict::Complete);
    assert_eq!(r.run.as_ref().unwrap().records_unique, 2);
    let e2 = gl.user("hr", "E2").await.identity.unwrap();
    assert_eq!(e2.active, Some(false));
    assert_eq!(
        e2.attributes.get("end_date").map(String::as_str),
        Some("2026-11-30")
    );

    // Cut short: the newest file ends inside a row.
    drop_file(
        d,
        "workers_2.csv",
        &format!("{HEAD}E1,a@x,active,\nE2,b@x,termin"),
        40,
    );
    let r = gl.sync("hr").await;
    assert_run(&r, Verdict::Incomplete, &[ReasonCode::EngineFailed]);
    let all = reasons(&r);
    assert!(
        all.contains("workers_2.csv line 3") && all.contains("truncated"),
        "{all}"
    );

    // A bad row: named by its line.
    drop_file(
        d,
        "workers_3.csv",
        &format!("{HEAD}E1,a@x,active,\nE2,b@x,on leave,\nTRAILER,2\n"),
        30,
    );
    let r = gl.sync("hr").await;
    assert_run(&r, Verdict::Incomplete, &[ReasonCode::RecordsRejected]);
    let all = reasons(&r);
    assert!(
        all.contains("workers_3.csv line 3: E2: status \"on leave\""),
        "{all}"
    );

    // The trailer declares more rows than the file holds.
    drop_file(
        d,
        "workers_4.csv",
        &format!("{HEAD}E1,a@x,active,\nTRAILER,3\n"),
        20,
    );
    let r = gl.sync("hr").await;
    assert_run(
        &r,
        Verdict::Incomplete,
        &[ReasonCode::CountShort, ReasonCode::EngineFailed],
    );
    let all = reasons(&r);
    assert!(
        all.contains("workers_4.csv line 3 (the trailer) declares 3 rows, the file holds 1"),
        "{all}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_control_file_says_which_file_has_landed() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let nats = NatsServer::start().await;
    let gl = Govledger::serve_with_config(&nats.url(), &hr_source(d, "control-file"));
    let r = gl.sync("hr").await;
    assert_eq!(r.verdict, Verdict::Failed as i32, "{:?}", r.reasons);
    assert!(
        r.reasons[0].message.contains("no file matching"),
        "{:?}",
        r.reasons
    );

    drop_file(
        d,
        "workers_1.csv",
        &format!("{HEAD}E1,a@x,active,\nE2,b@x,active,\n"),
        50,
    );
    drop_file(d, "workers_1.csv.ctl", "2\n", 50);
    // Newer, but its control file is not there yet: still being written.
    drop_file(d, "workers_2.csv", &format!("{HEAD}E1,a@x,active,\n"), 10);
    let r = gl.sync("hr").await;
    assert_verdict(&r, Verdict::Complete);
    assert_eq!(r.run.unwrap().records_unique, 2);
    drop_file(d, "workers_2.csv.ctl", "rows=2\n", 5);
    let r = gl.sync("hr").await;
    assert_run(&r, Verdict::Incomplete, &[ReasonCode::CountShort]);
}

async fn readiness(gl: &Govledger) -> CheckReadinessResponse {
    gl.client()
        .await
        .check_readiness(CheckReadinessRequest::default())
        .await
        .unwrap()
        .into_inner()
}

fn leaver_messages(r: &CheckReadinessResponse, source: &str) -> Vec<String> {
    r.blockers
        .iter()
        .filter(|b| b.code == "LEAVER_STILL_ACTIVE" && b.source_id == source)
        .map(|b| b.message.clone())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leavers_still_active_in_targets_block_readiness() {
    // HR: E000001 active, E000002 terminated, E000003 past the end date;
    // E000004 absent from the (COMPLETE) file.
    let dir = tempfile::tempdir().unwrap();
    drop_file(
        dir.path(),
        "workers_1.csv",
        &format!(
            "{HEAD}E000001,u1@example.org,active,\nE000002,u2@example.org,terminated,\nE000003,u3@example.org,active,2026-01-31\nTRAILER,3\n"
        ),
        5,
    );
    // The directory: u1..u4 with employeeNumber E000001..E000004 (u0 is E000000).
    let slapd = Slapd::start();
    slapd.add_users("u", 5);
    slapd.add_group("vpn", &["u3"]);
    // A SCIM app: the same people by the enterprise extension's employeeNumber.
    let scim = Scim2Server::start();
    let mut scim_ids = Vec::new();
    for i in 1..=2 {
        let body = json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User",
                        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"],
            "userName": format!("u{i}"),
            "active": true,
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"employeeNumber": format!("E00000{i}")},
        });
        let (_, v) = scim
            .call(
                "POST",
                "/Users",
                Some(serde_json::to_vec(&body).unwrap()),
                &[201],
            )
            .await;
        scim_ids.push(v["id"].as_str().unwrap().to_owned());
    }
    let cfg = format!(
        r#"{hr}
[[sources]]
id = "dir"
kind = "ldap"
base_url = "{ldap}"
verify_window_ms = 0
[sources.ldap]
users_base = "{people}"
groups_base = "{groups}"
[sources.auth]
kind = "basic"
username = "{admin}"
password_env = "GL_TEST_LDAP_PW"
[sources.attributes]
employee_id = "employeeNumber"

[[sources]]
id = "app"
base_url = "{scim}"
[sources.attributes]
employee_id = "employeeNumber"

[leavers]
hr_source = "hr"
match_on = "employee_id"
"#,
        hr = hr_source(dir.path(), "trailer"),
        ldap = slapd.url(),
        people = slapd.people_dn(),
        groups = slapd.groups_dn(),
        admin = slapd.admin_dn(),
        scim = scim.base_url,
    );
    let nats = NatsServer::start().await;
    let gl = Govledger::serve_with_config_env(
        &nats.url(),
        &cfg,
        &[("GL_TEST_LDAP_PW", slapd.admin_password())],
    );
    for s in ["hr", "dir", "app"] {
        assert_verdict(&gl.sync(s).await, Verdict::Complete);
    }
    let r = readiness(&gl).await;
    assert!(!r.ready);
    let dir_b = leaver_messages(&r, "dir");
    let app_b = leaver_messages(&r, "app");
    // dir: u2 (terminated), u3 (end date passed); app: u2. E000001 is active;
    // E000004 is in no HR row, but the HR run saw nobody go: nothing to say.
    assert_eq!(dir_b.len(), 2, "{dir_b:#?}");
    assert_eq!(app_b.len(), 1, "{app_b:#?}");
    assert!(
        dir_b.iter().any(|m| m.contains("E000002")
            && m.contains("status \"terminated\"")
            && m.contains("is still active")),
        "{dir_b:#?}"
    );
    assert!(
        dir_b
            .iter()
            .any(|m| m.contains("E000003") && m.contains("end date 2026-01-31 passed")),
        "{dir_b:#?}"
    );
    assert!(
        app_b[0].contains(&scim_ids[1]) && app_b[0].contains("E000002"),
        "{app_b:#?}"
    );

    // Disable u2 and u3 in the directory: u3 still holds the vpn group.
    let uuid_of = |uid: &str| {
        let out = std::process::Command::new("ldapsearch")
            .args([
                "-x",
                "-LLL",
                "-H",
                slapd.url(),
                "-D",
                slapd.admin_dn(),
                "-w",
                slapd.admin_password(),
            ])
            .args([
                "-b",
                &slapd.user_dn(uid),
                "-s",
                "base",
                "(objectClass=*)",
                "entryUUID",
            ])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .find_map(|l| l.strip_prefix("entryUUID: ").map(str::to_owned))
            .unwrap()
    };
    for uid in ["u2", "u3"] {
        let a = gl
            .act(
                "dir",
                ActionRequested {
                    kind: ActionKind::Deactivate as i32,
                    entity_type: EntityType::User as i32,
                    identity_external_id: uuid_of(uid),
                    requested_by: "test".into(),
                    reason: "leaver".into(),
                    ticket: "T-2".into(),
                    idempotency_key: format!("leaver-{uid}"),
                    ..Default::default()
                },
            )
            .await;
        assert_eq!(a.outcome, ActionOutcome::Confirmed as i32, "{a:?}");
    }
    assert_verdict(&gl.sync("dir").await, Verdict::Complete);
    let r = readiness(&gl).await;
    let dir_b = leaver_messages(&r, "dir");
    assert_eq!(dir_b.len(), 1, "{dir_b:#?}");
    assert!(
        dir_b[0].contains("is disabled but still a member of 1 group(s): vpn"),
        "{dir_b:#?}"
    );
    assert_eq!(leaver_messages(&r, "app").len(), 1);

    // Only a COMPLETE HR run is evidence of absence. An export that leaves
    // E000001 out but is cut short (its trailer declares a row it lacks)
    // proves nothing about E000001 ...
    let rows = "E000002,u2@example.org,terminated,\nE000003,u3@example.org,active,2026-01-31\n";
    drop_file(
        dir.path(),
        "workers_2.csv",
        &format!("{HEAD}{rows}TRAILER,3\n"),
        2,
    );
    assert_eq!(gl.sync("hr").await.verdict, Verdict::Incomplete as i32);
    let r = readiness(&gl).await;
    let all: Vec<&str> = r.blockers.iter().map(|b| b.message.as_str()).collect();
    assert!(!all.iter().any(|m| m.contains("E000001")), "{all:#?}");
    // ... a COMPLETE one that leaves E000001 out shows the person gone, and
    // u1 (active in both targets) blocks, named as absent from HR.
    drop_file(
        dir.path(),
        "workers_3.csv",
        &format!("{HEAD}{rows}TRAILER,2\n"),
        0,
    );
    assert_verdict(&gl.sync("hr").await, Verdict::Complete);
    let r = readiness(&gl).await;
    for target in ["dir", "app"] {
        let gone: Vec<String> = leaver_messages(&r, target)
            .into_iter()
            .filter(|m| m.contains("E000001"))
            .collect();
        assert_eq!(gone.len(), 1, "{target}: {gone:#?}");
        assert!(
            gone[0].contains("absent from HR") && gone[0].contains("is still active"),
            "{gone:#?}"
        );
    }
}
