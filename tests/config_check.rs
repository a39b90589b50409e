//! `govledger config check [--live]` as an operator runs it before a
//! deploy: a good config is OK and says what it found; `--live` reads each
//! source's first page with the source's own credential, writing nothing
//! (no NATS is needed), and says whether the auth is accepted, the page
//! parses and what total the source declares; a rejected credential fails
//! (exit 3) without ever printing it; a bad key or a missing secret is a
//! config error naming the key (exit 2).

use govledger_testkit::{
    fault_scim::{FaultScim, ScimConfig},
    govledger::{rest_source_toml, run_govledger_out, scim_source_toml},
};

const TOKEN: &str = "src-T0ken-9f2c";

fn check(toml: &str, envs: &[(&str, &str)], live: bool) -> (i32, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("govledger.toml");
    std::fs::write(&cfg, toml).unwrap();
    let cfg = cfg.to_str().unwrap().to_owned();
    let data = dir.path().join("data");
    let mut args = vec![
        "config",
        "check",
        "--config",
        &cfg,
        "--data-dir",
        data.to_str().unwrap(),
    ];
    if live {
        args.push("--live");
    }
    let (status, out, err) = run_govledger_out(&args, envs);
    assert!(!data.exists(), "config check wrote the data folder");
    (status.code().unwrap_or(-1), out, err)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_check_reads_each_first_page_and_names_what_fails() {
    let scim = FaultScim::start_with(ScimConfig {
        users: 20,
        groups: 3,
        bearer_token: Some(TOKEN.into()),
        ..Default::default()
    })
    .await;
    let toml = format!(
        "[http]\naddr = \"127.0.0.1:9464\"\n{}\n[sources.auth]\nkind = \"bearer\"\ntoken_env = \"GL_CC_TOKEN\"\n",
        scim_source_toml(&scim.base_url, "resources = [\"Users\", \"Groups\"]")
    );
    let (code, out, err) = check(&toml, &[("GL_CC_TOKEN", TOKEN)], false);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.starts_with("config OK: 1 source(s)"), "{out}");
    assert!(out.contains("HTTP 127.0.0.1:9464"), "{out}");
    assert_eq!(scim.requests().len(), 0, "without --live nothing is asked");

    let (code, out, err) = check(&toml, &[("GL_CC_TOKEN", TOKEN)], true);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("Users: OK: HTTP 200, 1 record(s) on the first page, declared total 20"),
        "{out}"
    );
    assert!(
        out.contains("Groups: OK: HTTP 200, 1 record(s) on the first page, declared total 3"),
        "{out}"
    );
    assert!(
        scim.requests().iter().all(|r| r.method == "GET"),
        "a live check only reads"
    );

    // A credential the source refuses: exit 3, named, never printed.
    let (code, out, err) = check(&toml, &[("GL_CC_TOKEN", "wrong-s3cret-token")], true);
    assert_eq!(code, 3, "{out}{err}");
    assert!(out.contains("Users: FAILED (AUTH, HTTP 401)"), "{out}");
    assert!(!out.contains("wrong-s3cret-token") && !err.contains("wrong-s3cret-token"));

    // The secret's variable unset: a config error naming its key.
    let (code, out, err) = check(&toml, &[], true);
    assert_eq!(code, 2, "{out}{err}");
    assert!(err.contains("GL_CC_TOKEN"), "{err}");

    // An unknown key: named, exit 2.
    let (code, _, err) = check("[projector]\nbatch_event_max = 5\n", &[], false);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("batch_event_max"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_check_of_a_rest_source_reads_its_total() {
    let scim = FaultScim::start_with(ScimConfig {
        users: 30,
        ..Default::default()
    })
    .await;
    let api = scim.base_url.trim_end_matches("/v2").to_owned() + "/api";
    let toml = rest_source_toml(
        &api,
        "page-number",
        "users",
        "items_pointer = \"/users\"\ntotal_pointer = \"/total\"",
        10,
    );
    let (code, out, err) = check(&toml, &[], true);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("users: OK: HTTP 200, 1 record(s) on the first page, declared total 30"),
        "{out}"
    );
}

/// A directory and an HR drop checked live: the bind and one entry of each
/// base; the file a run would read, its rows and declared count. A wrong
/// bind password fails (exit 3) and is never printed; a cut file is named.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_check_reads_a_directory_and_an_hr_drop() {
    let slapd = govledger_testkit::slapd::Slapd::start();
    slapd.add_users("u", 3);
    let drop = tempfile::tempdir().unwrap();
    std::fs::write(
        drop.path().join("workers_1.csv"),
        "employee_id,status\nE1,active\nE2,terminated\nTRAILER,2\n",
    )
    .unwrap();
    let toml = format!(
        "[[sources]]\nid = \"dir\"\nkind = \"ldap\"\nbase_url = \"{}\"\n[sources.ldap]\nusers_base = \"{}\"\n\
         [sources.auth]\nkind = \"basic\"\nusername = \"{}\"\npassword_env = \"GL_CC_LDAP\"\n\
         [[sources]]\nid = \"hr\"\nkind = \"file\"\n[sources.file]\ndir = \"{}\"\npattern = \"workers_*.csv\"\n\
         [sources.file.columns]\nid = \"employee_id\"\nstatus = \"status\"\n",
        slapd.url(),
        slapd.people_dn(),
        slapd.admin_dn(),
        drop.path().display()
    );
    let (code, out, err) = check(&toml, &[("GL_CC_LDAP", slapd.admin_password())], true);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("source dir (ldap, ldap-paged-results)"),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "{}: OK: 1 record(s) on the first page",
            slapd.people_dn()
        )),
        "{out}"
    );
    assert!(
        out.contains("workers_1.csv: OK: 2 record(s) on the first page, declared total 2"),
        "{out}"
    );

    let wrong = "not-the-Passw0rd";
    let (code, out, err) = check(&toml, &[("GL_CC_LDAP", wrong)], true);
    assert_eq!(code, 3, "{out}{err}");
    assert!(
        out.contains("FAILED (AUTH)") && out.contains("invalidCredentials"),
        "{out}"
    );
    assert!(!out.contains(wrong) && !err.contains(wrong), "{out}{err}");

    std::fs::write(
        drop.path().join("workers_2.csv"),
        "employee_id,status\nE1,act",
    )
    .unwrap();
    let (code, out, _) = check(&toml, &[("GL_CC_LDAP", slapd.admin_password())], true);
    assert_eq!(code, 3, "{out}");
    assert!(
        out.contains("FAILED (LIMIT)") && out.contains("line 2") && out.contains("truncated"),
        "{out}"
    );
}
