//! Secrets never reach a log, an event or an error: a password in `nats.url`
//! is refused and redacted, and NATS credentials come from env/files only.

use govledger_testkit::{govledger::run_govledger, net};

/// `serve --nats-url` with a password: refused at config time, and the
/// password appears nowhere in what the process prints.
#[test]
fn a_password_in_the_nats_url_is_refused_and_never_printed() {
    let port = net::free_port();
    let data = tempfile::tempdir().unwrap();
    let url = format!("nats://alice:S3cretPW@127.0.0.1:{port}");
    let (status, stderr) = run_govledger(
        &[
            "serve",
            "--nats-url",
            &url,
            "--data-dir",
            data.path().to_str().unwrap(),
            "--grpc-addr",
            "127.0.0.1:0",
        ],
        &[],
    );
    assert!(!status.success(), "{stderr}");
    assert_eq!(stderr.matches("S3cretPW").count(), 0, "{stderr}");
    assert!(stderr.contains("nats.url"), "{stderr}");
}
