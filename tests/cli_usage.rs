//! Exit codes of the CLI as the README states them: a bad flag value is a
//! usage error (exit 2) named by its flag and found before anything is
//! reached; a server that cannot be reached is a runtime failure (exit 1).
//! No server runs here: a command that got as far as connecting would say
//! "cannot reach" and exit 1.

use std::process::Command;

/// A port nothing listens on (bound, then released).
fn closed_addr() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().to_string()
}

fn run(args: &[&str]) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_govledger"))
        .args(args)
        // No local admin token or env token may change what is read.
        .current_dir(dir.path())
        .env_remove("GOVLEDGER_TOKEN_FILE")
        .env_remove("GOVLEDGER_TOKEN")
        .env_remove("GOVLEDGER_TLS_CA")
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Exit 2, the message names `flag`, and nothing was connected to.
fn usage(args: &[&str], flag: &str) {
    let (code, err) = run(args);
    assert_eq!(code, Some(2), "{args:?}: {err}");
    assert!(err.contains(flag), "{args:?} should name {flag}: {err}");
    assert!(
        !err.contains("cannot reach"),
        "{args:?} connected first: {err}"
    );
}

#[test]
fn bad_client_flags_are_usage_errors_named_by_their_flag() {
    let addr = closed_addr();
    usage(&["status", "--grpc-addr", "not:an:addr"], "--grpc-addr");
    usage(
        &["status", "--grpc-addr", "127.0.0.1:50051/x"],
        "--grpc-addr",
    );
    usage(
        &[
            "status",
            "--grpc-addr",
            &addr,
            "--token-file",
            "/nonexistent/token",
        ],
        "token file",
    );
    usage(
        &[
            "status",
            "--grpc-addr",
            &addr,
            "--tls-ca",
            "/nonexistent/ca.pem",
        ],
        "--tls-ca",
    );
    // mTLS flags without a CA would silently connect in plaintext.
    usage(
        &[
            "status",
            "--grpc-addr",
            &addr,
            "--tls-cert",
            "c.pem",
            "--tls-key",
            "k.pem",
        ],
        "--tls-ca",
    );
    usage(
        &[
            "status",
            "--grpc-addr",
            &addr,
            "--tls-domain",
            "ledger.example",
        ],
        "--tls-ca",
    );
    usage(
        &[
            "status",
            "--grpc-addr",
            &addr,
            "--tls-ca",
            "ca.pem",
            "--tls-cert",
            "c.pem",
        ],
        "--tls-key",
    );
}

#[test]
fn a_reversed_sequence_range_is_a_usage_error() {
    let addr = closed_addr();
    for cmd in ["verify", "replay"] {
        usage(
            &[
                cmd,
                "--grpc-addr",
                &addr,
                "--from-seq",
                "5",
                "--to-seq",
                "2",
            ],
            "--to-seq",
        );
    }
}

#[test]
fn an_unreachable_server_is_a_runtime_failure() {
    let addr = closed_addr();
    let (code, err) = run(&["status", "--grpc-addr", &addr]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("cannot reach"), "{err}");
    // The same range in order goes as far as connecting.
    let (code, err) = run(&[
        "verify",
        "--grpc-addr",
        &addr,
        "--from-seq",
        "2",
        "--to-seq",
        "5",
    ]);
    assert_eq!(code, Some(1), "{err}");
}

#[test]
fn a_missing_config_file_is_named_once() {
    let (code, err) = run(&["serve", "--config", "/nonexistent/govledger.toml"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("/nonexistent/govledger.toml"), "{err}");
    assert_eq!(
        err.matches("os error 2").count(),
        1,
        "the cause once: {err}"
    );
}

/// `govledger completions SHELL` prints a script the shell itself accepts,
/// naming the subcommands.
#[test]
fn completions_are_a_script_the_shell_parses() {
    let (status, out, err) =
        govledger_testkit::govledger::run_govledger_out(&["completions", "bash"], &[]);
    assert!(status.success(), "{err}");
    assert!(
        out.contains("_govledger") && out.contains("readiness") && out.contains("verify-bundle"),
        "{out}"
    );
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("govledger.bash");
    std::fs::write(&f, &out).unwrap();
    let checked = std::process::Command::new("bash")
        .arg("-n")
        .arg(&f)
        .output()
        .unwrap();
    assert!(
        checked.status.success(),
        "{}",
        String::from_utf8_lossy(&checked.stderr)
    );
    let (status, _, err) =
        govledger_testkit::govledger::run_govledger_out(&["completions", "tcsh"], &[]);
    assert_eq!(
        status.code(),
        Some(2),
        "an unknown shell is a usage error: {err}"
    );
}
