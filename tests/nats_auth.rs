//! The embedded NATS server requires a credential: a real `govledger serve`
//! without `--nats-url` starts its own nats-server with the generated users
//! `govledger` (every role; never delete, purge or update the stream) and
//! `siem` (read-only). Unauthenticated connections are refused, the SIEM's
//! credential reads the ledger's events but publishes nothing, the
//! `govledger` credential cannot delete or purge the stream, restarts reuse
//! the passwords, the files are private and no password reaches a log.

use std::{os::unix::fs::PermissionsExt as _, path::Path, time::Duration};

use async_nats::{ConnectOptions, Event, ServerError, jetstream};
use futures::StreamExt as _;
use govledger_testkit::{Govledger, fault_scim, govledger::scim_source_toml, run_govledger};

const STREAM: &str = "GOVLEDGER";

/// A serve on the embedded server in a fresh data folder, with a SCIM source
/// `hr` (a fault-free in-process SCIM server of 30 users).
async fn serve_embedded() -> (fault_scim::FaultScim, Govledger) {
    let scim = fault_scim::FaultScim::start_with(fault_scim::ScimConfig {
        users: 30,
        ..Default::default()
    })
    .await;
    let data = tempfile::tempdir().unwrap();
    let cfg = data.path().join("govledger.toml");
    std::fs::write(&cfg, scim_source_toml(&scim.base_url, "")).unwrap();
    let gl = Govledger::serve_embedded(data, &["--config", cfg.to_str().unwrap()]);
    (scim, gl)
}

/// A client of `url` as `user`/`password` whose server errors (permission
/// violations) arrive on the returned channel.
async fn connect_as(
    url: &str,
    user: &str,
    password: &str,
) -> (
    async_nats::Client,
    tokio::sync::mpsc::UnboundedReceiver<String>,
) {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let client = ConnectOptions::new()
        .user_and_password(user.into(), password.into())
        .event_callback(move |e| {
            let tx = tx.clone();
            async move {
                if let Event::ServerError(ServerError::Other(text)) = e {
                    let _ = tx.send(text);
                }
            }
        })
        .connect(url)
        .await
        .unwrap_or_else(|e| panic!("connect as {user}: {e}"));
    (client, rx)
}

/// Waits (bounded) for a server error naming `subject` as a permissions violation.
async fn expect_violation(rx: &mut tokio::sync::mpsc::UnboundedReceiver<String>, subject: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let e = tokio::time::timeout_at(deadline, rx.recv())
            .await
            .unwrap_or_else(|_| panic!("no permissions violation for {subject}"))
            .unwrap();
        if e.to_lowercase().contains("permissions violation") && e.contains(subject) {
            return;
        }
    }
}

/// The number of messages in the ledger's stream, read by `client`.
async fn stream_messages(client: &async_nats::Client) -> u64 {
    let js = jetstream::new(client.clone());
    let mut stream = js.get_stream(STREAM).await.unwrap();
    stream.info().await.unwrap().state.messages
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

/// `key=value` lines of a credential file.
fn field(text: &str, key: &str) -> String {
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("no {key}= in:\n{text}"))
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unauthenticated_connections_to_the_embedded_server_are_refused() {
    let (_scim, gl) = serve_embedded().await;
    let url = gl.embedded_nats_url();
    let e = async_nats::connect(&url).await.unwrap_err();
    assert_eq!(
        e.kind(),
        async_nats::ConnectErrorKind::AuthorizationViolation,
        "{e}"
    );
    let wrong = ConnectOptions::new()
        .user_and_password("govledger".into(), "not-the-password".into())
        .connect(&url)
        .await
        .unwrap_err();
    assert_eq!(
        wrong.kind(),
        async_nats::ConnectErrorKind::AuthorizationViolation,
        "{wrong}"
    );
    // govledger itself got in: a sync over the embedded server is decided.
    let r = gl.sync("hr").await;
    assert!(r.run.unwrap().decided);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_siem_credential_reads_ledger_events_and_publishes_nothing() {
    let (_scim, gl) = serve_embedded().await;
    let data = gl.data_dir();
    let out = gl.data.path().join("siem.cred");
    let (st, err) = run_govledger(
        &[
            "credentials",
            "siem",
            "--data-dir",
            data.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ],
        &[],
    );
    assert!(st.success(), "{err}");
    assert_eq!(mode(&out), 0o600);
    let cred = std::fs::read_to_string(&out).unwrap();
    assert!(cred.contains("READ-ONLY"), "{cred}");
    assert_eq!(field(&cred, "user"), "siem");
    assert_eq!(field(&cred, "url"), gl.embedded_nats_url());
    let password = field(&cred, "password");
    assert_eq!(password, gl.embedded_password("siem"));

    let (siem, mut errors) = connect_as(&field(&cred, "url"), "siem", &password).await;
    let mut live = siem.subscribe("govledger.v1.*.read.*").await.unwrap();
    siem.flush().await.unwrap();
    let r = gl.sync("hr").await;
    let run_id = r.run.unwrap().run_id;
    // Core subscription: the run's events arrive live.
    let first = tokio::time::timeout(Duration::from_secs(10), live.next())
        .await
        .expect("no live event for the SIEM")
        .unwrap();
    assert!(first.subject.as_str().starts_with("govledger.v1.hr.read."));

    // JetStream: the SIEM reads the whole stream with its own consumer.
    let total = stream_messages(&siem).await;
    assert!(total > 0);
    let js = jetstream::new(siem.clone());
    let stream = js.get_stream(STREAM).await.unwrap();
    let consumer = stream
        .create_consumer(jetstream::consumer::pull::OrderedConfig::default())
        .await
        .unwrap();
    let mut msgs = consumer.messages().await.unwrap();
    let mut read = 0u64;
    let mut saw_run = false;
    while read < total {
        let m = tokio::time::timeout(Duration::from_secs(10), msgs.next())
            .await
            .expect("the SIEM's consumer stalled")
            .unwrap()
            .unwrap();
        saw_run |= String::from_utf8_lossy(&m.payload).contains(&run_id);
        read += 1;
    }
    assert!(saw_run, "the run id {run_id} in none of {read} events");

    // Publishing to a ledger subject is a permissions violation and stores nothing.
    let forged = "govledger.v1.hr.read.run_started";
    siem.publish(forged, "forged".into()).await.unwrap();
    siem.flush().await.unwrap();
    expect_violation(&mut errors, forged).await;
    // Nor take the projector's messages from its durable consumer.
    let projector_next = "$JS.API.CONSUMER.MSG.NEXT.GOVLEDGER.govledger-projector";
    siem.publish(projector_next, "1".into()).await.unwrap();
    siem.flush().await.unwrap();
    expect_violation(&mut errors, projector_next).await;
    // Nor may it delete or purge.
    let mut js = jetstream::new(siem.clone());
    js.set_timeout(Duration::from_secs(2));
    assert!(js.delete_stream(STREAM).await.is_err());
    expect_violation(&mut errors, "$JS.API.STREAM.DELETE.GOVLEDGER").await;
    assert_eq!(stream_messages(&siem).await, total);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_govledger_credential_cannot_delete_or_purge_the_stream() {
    let (_scim, gl) = serve_embedded().await;
    gl.sync("hr").await;
    let url = gl.embedded_nats_url();
    let (client, mut errors) =
        connect_as(&url, "govledger", &gl.embedded_password("govledger")).await;
    let before = stream_messages(&client).await;
    assert!(before > 0);
    let mut js = jetstream::new(client.clone());
    js.set_timeout(Duration::from_secs(2));

    assert!(js.delete_stream(STREAM).await.is_err());
    expect_violation(&mut errors, "$JS.API.STREAM.DELETE.GOVLEDGER").await;
    let stream = js.get_stream(STREAM).await.unwrap();
    assert!(stream.purge().await.is_err());
    expect_violation(&mut errors, "$JS.API.STREAM.PURGE.GOVLEDGER").await;
    assert!(stream.delete_message(1).await.is_err());
    expect_violation(&mut errors, "$JS.API.STREAM.MSG.DELETE.GOVLEDGER").await;
    let mut weaker = stream.cached_info().config.clone();
    weaker.max_messages = 1;
    assert!(js.update_stream(&weaker).await.is_err());
    expect_violation(&mut errors, "$JS.API.STREAM.UPDATE.GOVLEDGER").await;

    assert_eq!(stream_messages(&client).await, before);
    // The ledger still reads its stream whole.
    let token = gl.token_env();
    let (st, err) = run_govledger(&["verify", "--grpc-addr", &gl.addr], &[(token.0, &token.1)]);
    assert!(st.success(), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_reuses_the_credentials_and_no_password_reaches_a_log() {
    let (_scim, mut gl) = serve_embedded().await;
    let dir = gl.data_dir().join("nats");
    let gov_pw = gl.embedded_password("govledger");
    let siem_pw = gl.embedded_password("siem");
    assert_ne!(gov_pw, siem_pw);
    for f in ["server.conf", "govledger.password", "siem.password"] {
        assert_eq!(mode(&dir.join(f)), 0o600, "{f}");
    }
    let conf = std::fs::read_to_string(dir.join("server.conf")).unwrap();
    assert!(conf.contains(&gov_pw) && conf.contains(&siem_pw));

    // Every local path works as the govledger user: a sync, simulate, verify,
    // rebuild, an evidence export (checkpoints).
    gl.sync("hr").await;
    let data = gl.data_dir();
    let data = data.to_str().unwrap();
    let (st, err) = run_govledger(&["simulate", "--data-dir", data, "--users", "20"], &[]);
    assert!(st.success(), "{err}");
    let mut logs = vec![err];
    let token = gl.token_env();
    let token = [(token.0, token.1.as_str())];
    for args in [
        vec!["verify", "--grpc-addr", &gl.addr],
        vec!["rebuild", "--data-dir", data, "--grpc-addr", &gl.addr],
    ] {
        let (st, err) = run_govledger(&args, &token);
        assert!(st.success(), "{args:?}: {err}");
        logs.push(err);
    }
    let bundle = gl.data.path().join("bundle.json");
    let (st, err) = run_govledger(
        &[
            "export",
            "--source",
            "hr",
            "--out",
            bundle.to_str().unwrap(),
            "--grpc-addr",
            &gl.addr,
        ],
        &token,
    );
    assert!(st.success(), "{err}");
    logs.push(err);
    let (st, err) = run_govledger(&["credentials", "siem", "--data-dir", data], &[]);
    assert!(st.success(), "{err}");
    logs.push(err);
    // None of it needed a permission the govledger user lacks.
    let nats_log = std::fs::read_to_string(dir.join("nats-server.log")).unwrap();
    assert!(!nats_log.to_lowercase().contains("violation"), "{nats_log}");
    let applied = gl.ledger_status().await.meta.unwrap().last_applied_seq;
    logs.push(gl.log_text());
    assert!(gl.stop().unwrap().success());
    logs.push(gl.log_text());

    // Restarted on the same folder: same passwords, and everything still works.
    let data_dir = gl.take_data();
    let cfg = data_dir.path().join("govledger.toml");
    let gl = Govledger::serve_embedded(data_dir, &["--config", cfg.to_str().unwrap()]);
    assert_eq!(gl.embedded_password("govledger"), gov_pw);
    assert_eq!(gl.embedded_password("siem"), siem_pw);
    gl.wait_applied(applied).await;
    let r = gl.sync("hr").await;
    assert!(r.run.unwrap().decided);
    let (siem, _errors) = connect_as(&gl.embedded_nats_url(), "siem", &siem_pw).await;
    assert!(stream_messages(&siem).await > applied);
    logs.push(gl.log_text());
    logs.push(std::fs::read_to_string(dir.join("nats-server.log")).unwrap());

    // Secrets sweep: serve's log (both runs), the commands' stderr and the
    // nats-server log never show a password.
    let all = logs.join("\n");
    assert!(all.contains("embedded nats-server started"), "{all}");
    assert!(
        all.contains("server.conf"),
        "the start line names the config file"
    );
    for pw in [&gov_pw, &siem_pw] {
        assert!(!all.contains(pw.as_str()), "a password leaked into a log");
    }
}
