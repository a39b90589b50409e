//! Secrets never reach a log, an event or an error: a password in `nats.url`
//! is refused and redacted, and NATS credentials come from env/files only.

use govledger_proto::v1::{ActionKind, ActionOutcome, Verdict};
use govledger_testkit::{
    Govledger, NatsServer,
    fault_scim::{FaultScim, Faults, ScimConfig},
    govledger::{action_request, run_govledger, scim_source_toml},
    net,
    runs::outcome,
};

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

/// A config file in `dir` holding `toml`; its path.
fn config_file(dir: &std::path::Path, toml: &str) -> String {
    let path = dir.join("govledger.toml");
    std::fs::write(&path, toml).unwrap();
    path.to_str().unwrap().to_owned()
}

/// `govledger serve` against `url` with `toml`, expected to fail at once;
/// its stderr (which must name the auth problem and never `secret`).
fn serve_refused(url: &str, toml: &str, env: &[(&str, &str)], secret: &str) -> String {
    let data = tempfile::tempdir().unwrap();
    let cfg = config_file(data.path(), toml);
    let (status, stderr) = run_govledger(
        &[
            "serve",
            "--config",
            &cfg,
            "--nats-url",
            url,
            "--data-dir",
            data.path().join("data").to_str().unwrap(),
            "--grpc-addr",
            "127.0.0.1:0",
        ],
        env,
    );
    assert!(!status.success(), "{stderr}");
    assert_eq!(stderr.matches(secret).count(), 0, "{stderr}");
    stderr
}

/// `govledger serve` with `toml` and `env` against `nats` reaches the stream:
/// a synthetic run published through it is applied and listed.
async fn serves_with(nats: &NatsServer, toml: &str, env: &[(&str, &str)]) -> Govledger {
    let data = tempfile::tempdir().unwrap();
    let cfg = config_file(data.path(), toml);
    let gl = Govledger::serve_in_env(data, &nats.url(), &["--config", &cfg], env);
    let status = gl.ledger_status().await;
    assert!(status.meta.is_some(), "{status:?}");
    gl
}

#[tokio::test]
async fn serve_authenticates_with_user_and_password_from_env_and_file() {
    let nats = NatsServer::start_with_config(
        "authorization { user: \"alice\", password: \"S3cretPW-user\" }\n",
    )
    .await;
    // Unauthenticated connections are refused by this server.
    assert!(nats.try_client().await.is_err());
    let toml = "[nats]\nuser = \"alice\"\npassword_env = \"GL_TEST_NATS_PW\"\n";
    let gl = serves_with(&nats, toml, &[("GL_TEST_NATS_PW", "S3cretPW-user")]).await;
    assert_eq!(gl.log_text().matches("S3cretPW-user").count(), 0);
    drop(gl);

    let dir = tempfile::tempdir().unwrap();
    let pw = dir.path().join("nats.pw");
    std::fs::write(&pw, "S3cretPW-user\n").unwrap();
    let toml = format!(
        "[nats]\nuser = \"alice\"\npassword_file = {:?}\n",
        pw.to_str().unwrap()
    );
    drop(serves_with(&nats, &toml, &[]).await);

    let wrong = "[nats]\nuser = \"alice\"\npassword_env = \"GL_TEST_NATS_PW\"\n";
    let e = serve_refused(
        &nats.url(),
        wrong,
        &[("GL_TEST_NATS_PW", "Wr0ngPW-x")],
        "Wr0ngPW-x",
    );
    assert!(
        e.contains("authorization violation") && e.contains("nats.password_env"),
        "{e}"
    );
    // No credential at all: refused the same way.
    let e = serve_refused(&nats.url(), "", &[], "S3cretPW-user");
    assert!(e.contains("authorization violation"), "{e}");
}

#[tokio::test]
async fn serve_authenticates_with_a_token_and_names_the_key_when_it_is_wrong() {
    let nats = NatsServer::start_with_config("authorization { token: \"T0ken-s3cret\" }\n").await;
    let toml = "[nats]\ntoken_env = \"GL_TEST_NATS_TOKEN\"\n";
    let gl = serves_with(&nats, toml, &[("GL_TEST_NATS_TOKEN", "T0ken-s3cret")]).await;
    assert_eq!(gl.log_text().matches("T0ken-s3cret").count(), 0);
    drop(gl);
    let e = serve_refused(
        &nats.url(),
        toml,
        &[("GL_TEST_NATS_TOKEN", "T0ken-wr0ng")],
        "T0ken-wr0ng",
    );
    assert!(
        e.contains("authorization violation") && e.contains("nats.token_env"),
        "{e}"
    );
    // Both token and user: a config error naming both keys, before any connection.
    let both = "[nats]\ntoken_env = \"GL_TEST_NATS_TOKEN\"\nuser = \"a\"\npassword_env = \"X\"\n";
    let e = serve_refused(
        &nats.url(),
        both,
        &[("GL_TEST_NATS_TOKEN", "T0ken-s3cret")],
        "T0ken-s3cret",
    );
    assert!(e.contains("nats.user and nats.token_env"), "{e}");
}

#[tokio::test]
async fn serve_authenticates_with_an_nkey_seed_file() {
    let user = nkeys::KeyPair::new_user();
    let nats = NatsServer::start_with_config(&format!(
        "authorization {{ users: [ {{ nkey: \"{}\" }} ] }}\n",
        user.public_key()
    ))
    .await;
    let dir = tempfile::tempdir().unwrap();
    let seed_file = dir.path().join("govledger.nk");
    let seed = user.seed().unwrap();
    std::fs::write(&seed_file, &seed).unwrap();
    let toml = format!(
        "[nats]\nnkey_seed_file = {:?}\n",
        seed_file.to_str().unwrap()
    );
    let gl = serves_with(&nats, &toml, &[]).await;
    assert_eq!(gl.log_text().matches(&seed).count(), 0);
    drop(gl);
    let other = nkeys::KeyPair::new_user();
    std::fs::write(&seed_file, other.seed().unwrap()).unwrap();
    let e = serve_refused(&nats.url(), &toml, &[], &other.seed().unwrap());
    assert!(
        e.contains("authorization violation") && e.contains("nats.nkey_seed_file"),
        "{e}"
    );
}

/// Item 6 of issue #21: a full sync and an action with distinctive secrets
/// configured (the source's bearer token, the NATS password); every log line,
/// every replayed event, every answer and every error output is searched for
/// them: zero hits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sync_and_an_action_leave_no_secret_in_logs_events_or_errors() {
    const NATS_PW: &str = "NatsPW-distinct-7e1f";
    const SRC_TOKEN: &str = "SrcTok-distinct-9c4a";
    const API_TOKEN: &str = "glt_ApiTok-distinct-5d2b";
    const API_WRONG: &str = "glt_ApiTok-wrong-8f3c";
    let nats = NatsServer::start_with_config(&format!(
        "authorization {{ user: \"gov\", password: \"{NATS_PW}\" }}\n"
    ))
    .await;
    let scim = FaultScim::start_with(ScimConfig {
        users: 20,
        groups: 2,
        bearer_token: Some(SRC_TOKEN.into()),
        ..Default::default()
    })
    .await;
    let toml = format!(
        "[nats]\nuser = \"gov\"\npassword_env = \"GL_TEST_NATS_PW\"\n\
         [auth]\nlocal_admin_token = true\n[[auth.tokens]]\nprincipal = \"ops\"\n\
         sha256 = \"{}\"\nroles = [\"admin\"]\n{}\n[sources.auth]\n\
         kind = \"bearer\"\ntoken_env = \"GL_TEST_SRC_TOKEN\"\n",
        govledger::auth::identify::token_sha256_hex(API_TOKEN),
        scim_source_toml(&scim.base_url, "resources = [\"Users\", \"Groups\"]")
    );
    let env = [
        ("GL_TEST_NATS_PW", NATS_PW),
        ("GL_TEST_SRC_TOKEN", SRC_TOKEN),
    ];
    let data = tempfile::tempdir().unwrap();
    let cfg = config_file(data.path(), &toml);
    let gl = Govledger::serve_in_env(data, &nats.url(), &["--config", &cfg], &env);
    let mut seen = Vec::new();

    let run = gl.sync("hr").await;
    assert_eq!(run.verdict, Verdict::Complete as i32, "{:?}", run.reasons);
    seen.push(format!("{run:?}"));
    let u = scim.user_ids()[1].clone();
    // The action goes in with the API token (principal ops).
    let id = gl
        .client_with(API_TOKEN)
        .await
        .submit_action(govledger_proto::v1::SubmitActionRequest {
            source_id: "hr".into(),
            request: Some(action_request(
                ActionKind::Deactivate,
                &u,
                "",
                "k1",
                "SEC-1",
            )),
        })
        .await
        .unwrap()
        .into_inner()
        .action_id;
    let action = gl.wait_action(&id).await;
    assert_eq!(outcome(&action), ActionOutcome::Confirmed, "{action:?}");
    seen.push(format!("{action:?}"));

    // Errors: the source refuses the token mid-run (R11), so the run's reasons
    // and the events carry the failures' texts.
    // The target echoes the credential in its 401 body (header, bare, base64).
    scim.set_faults(Faults {
        auth_expire_after_requests: Some(1),
        echo_credentials_in_errors: true,
        ..Default::default()
    });
    let failed = gl.sync("hr").await;
    assert_ne!(failed.verdict, Verdict::Complete as i32, "{failed:?}");
    assert!(!failed.reasons.is_empty());
    seen.push(format!("{failed:?}"));

    // Every event of the stream, replayed through the CLI.
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("replay.ndjson");
    let (status, stderr) = run_govledger(
        &[
            "replay",
            "--source",
            "hr",
            "--grpc-addr",
            &gl.addr,
            "--out",
            out.to_str().unwrap(),
        ],
        &[("GOVLEDGER_TOKEN", API_TOKEN)],
    );
    assert!(status.success(), "{stderr}");
    let replayed = std::fs::read_to_string(&out).unwrap();
    assert!(replayed.lines().count() > 20, "{replayed}");
    assert!(
        replayed.contains("AUTH") || replayed.contains("401"),
        "no failure replayed"
    );
    seen.push(stderr);
    seen.push(replayed);
    // An evidence bundle, exported with the API token.
    let bundle = dir.path().join("bundle.json");
    let (status, stderr) = run_govledger(
        &[
            "export",
            "--source",
            "hr",
            "--grpc-addr",
            &gl.addr,
            "--out",
            bundle.to_str().unwrap(),
        ],
        &[("GOVLEDGER_TOKEN", API_TOKEN)],
    );
    assert!(status.success(), "{stderr}");
    seen.push(stderr);
    seen.push(std::fs::read_to_string(&bundle).unwrap());
    // A wrong API token: refused, and neither token is echoed.
    let (status, stderr) = run_govledger(
        &["status", "--grpc-addr", &gl.addr],
        &[("GOVLEDGER_TOKEN", API_WRONG)],
    );
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("not one this ledger knows"), "{stderr}");
    assert_eq!(stderr.matches(API_WRONG).count(), 0, "{stderr}");
    seen.push(stderr);
    // An error output of the CLI with the secrets configured: `simulate`
    // with a wrong NATS password is refused, naming the key, showing neither.
    let (status, stderr) = run_govledger(
        &[
            "simulate",
            "--config",
            &cfg,
            "--nats-url",
            &nats.url(),
            "--source",
            "demo",
        ],
        &[
            ("GL_TEST_NATS_PW", "Wr0ng-distinct-3b2"),
            ("GL_TEST_SRC_TOKEN", SRC_TOKEN),
        ],
    );
    assert!(
        !status.success() && stderr.contains("nats.password_env"),
        "{stderr}"
    );
    assert_eq!(stderr.matches("Wr0ng-distinct-3b2").count(), 0, "{stderr}");
    seen.push(stderr);
    seen.push(gl.log_text());
    for (i, text) in seen.iter().enumerate() {
        // The source token as base64 too (the target echoes that form).
        for secret in [
            NATS_PW,
            SRC_TOKEN,
            "U3JjVG9rLWRpc3RpbmN0LTljNGE",
            API_TOKEN,
            API_WRONG,
        ] {
            assert_eq!(
                text.matches(secret).count(),
                0,
                "output {i} holds {secret}:\n{text}"
            );
        }
    }
}

/// A CA and a server certificate for 127.0.0.1 / localhost, signed by it,
/// written into `dir`: (CA PEM path, server cert path, server key path).
fn tls_files(dir: &std::path::Path) -> (String, String, String) {
    let f = govledger_testkit::tls::TlsFiles::new(dir, "unused-client");
    (f.ca, f.server_cert, f.server_key)
}

/// TLS to an external NATS: with the CA named in `nats.tls_ca_file` serve
/// connects over TLS and applies events; without it (the server's
/// certificate is not trusted) serve refuses at start, naming the TLS keys.
#[tokio::test]
async fn serve_connects_over_tls_with_the_configured_ca_and_refuses_without_it() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = tls_files(dir.path());
    let nats = NatsServer::start_with_config(&format!(
        "tls {{\n  cert_file: {cert:?}\n  key_file: {key:?}\n}}\n"
    ))
    .await;
    // The server speaks TLS only: a plaintext client is refused.
    assert!(nats.try_client().await.is_err());
    let toml = format!("[nats]\ntls_ca_file = {ca:?}\ntls_required = true\n");
    let gl = serves_with(&nats, &toml, &[]).await;
    let sync = gl.ledger_status().await;
    assert!(sync.meta.is_some(), "{sync:?}");
    drop(gl);

    let e = serve_refused(&nats.url(), "", &[], "never-a-secret");
    // The certificate problem is named, with the keys that fix it (not
    // "start a server": one is running).
    assert!(
        e.contains("certificate")
            && e.contains("nats.tls_ca_file")
            && !e.contains("Start a server"),
        "{e}"
    );
}
