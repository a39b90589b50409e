//! The gRPC trust boundary end to end, against a real `govledger serve`:
//! every RPC × {no token, a bad token, reader, operator, auditor, admin} gets
//! the right code; the authenticated principal (never the client's string) is
//! what the ledger records; TLS and mTLS with tonic's client, the CLI and an
//! independent client (Python grpcio); plaintext refused beyond loopback.

use std::{
    io::{BufRead as _, BufReader},
    process::{Command, Stdio},
    time::Duration,
};

use govledger::{auth::identify::token_sha256_hex, cli::client::BearerToken};
use govledger_proto::v1::{self as pb, ledger_client::LedgerClient};
use govledger_testkit::{
    Govledger, NatsServer,
    fault_scim::{FaultScim, ScimConfig},
    govledger::{action_request, scim_source_toml},
    govledger_bin, read_stream, run_govledger,
    tls::TlsFiles,
};
use prost::Message as _;
use tonic::Code;

/// (principal, role, token): one token per role.
const PRINCIPALS: [(&str, &str, &str); 4] = [
    ("rita", "reader", "glt_rita-reads"),
    ("otto", "operator", "glt_otto-operates"),
    ("aude", "auditor", "glt_aude-audits"),
    ("adam", "admin", "glt_adam-administers"),
];

fn auth_toml(local_admin_token: bool) -> String {
    let mut s = format!("\n[auth]\nlocal_admin_token = {local_admin_token}\n");
    for (p, role, token) in PRINCIPALS {
        s.push_str(&format!(
            "[[auth.tokens]]\nprincipal = \"{p}\"\nsha256 = \"{}\"\nroles = [\"{role}\"]\n",
            token_sha256_hex(token)
        ));
    }
    s
}

/// The roles each RPC admits, as the issue states them (written out here,
/// not read from the code's table).
fn expected_roles(method: &str) -> &'static [&'static str] {
    const READ: [&str; 4] = ["reader", "operator", "auditor", "admin"];
    match method {
        "ListSources" | "GetSource" | "ListRuns" | "GetRun" | "GetIdentity" | "GetLedgerStatus"
        | "ListPoisonEvents" | "CheckReadiness" | "GetAction" | "ListActions" | "WatchAlerts"
        | "ListCheckpoints" => &READ,
        "TriggerSync" | "SubmitAction" | "ReportExternalAttempt" | "AcceptDeletions" => {
            &["operator", "admin"]
        }
        "Replay"
        | "GetInclusionProof"
        | "GetConsistencyProof"
        | "CreateCheckpoint"
        | "AddCosignature"
        | "VerifyRange"
        | "ExportEvidence" => &["auditor", "admin"],
        "SetProjectorPaused" => &["admin"],
        other => panic!("{other}: a new RPC needs its row in the role matrix"),
    }
}

/// Every method of govledger.v1.Ledger, from the compiled descriptor.
fn methods() -> Vec<String> {
    let pool = prost_reflect::DescriptorPool::decode(govledger_proto::FILE_DESCRIPTOR_SET).unwrap();
    let svc = pool.get_service_by_name("govledger.v1.Ledger").unwrap();
    svc.methods().map(|m| m.name().to_owned()).collect()
}

type Client = govledger::cli::client::Client;

/// Calls `method` with an empty request; the status (Ok = allowed through).
async fn call(c: &mut Client, method: &str) -> Result<(), tonic::Status> {
    match method {
        "ListSources" => c
            .list_sources(pb::ListSourcesRequest::default())
            .await
            .map(drop),
        "GetSource" => c
            .get_source(pb::GetSourceRequest::default())
            .await
            .map(drop),
        "ListRuns" => c.list_runs(pb::ListRunsRequest::default()).await.map(drop),
        "GetRun" => c.get_run(pb::GetRunRequest::default()).await.map(drop),
        "GetIdentity" => c
            .get_identity(pb::GetIdentityRequest::default())
            .await
            .map(drop),
        "GetLedgerStatus" => c
            .get_ledger_status(pb::GetLedgerStatusRequest::default())
            .await
            .map(drop),
        "ListPoisonEvents" => c
            .list_poison_events(pb::ListPoisonEventsRequest::default())
            .await
            .map(drop),
        "TriggerSync" => c
            .trigger_sync(pb::TriggerSyncRequest::default())
            .await
            .map(drop),
        "CheckReadiness" => c
            .check_readiness(pb::CheckReadinessRequest::default())
            .await
            .map(drop),
        "SubmitAction" => c
            .submit_action(pb::SubmitActionRequest::default())
            .await
            .map(drop),
        "GetAction" => c
            .get_action(pb::GetActionRequest::default())
            .await
            .map(drop),
        "ListActions" => c
            .list_actions(pb::ListActionsRequest::default())
            .await
            .map(drop),
        "ReportExternalAttempt" => c
            .report_external_attempt(pb::ReportExternalAttemptRequest::default())
            .await
            .map(drop),
        "WatchAlerts" => c
            .watch_alerts(pb::WatchAlertsRequest::default())
            .await
            .map(drop),
        "Replay" => c.replay(pb::ReplayRequest::default()).await.map(drop),
        "GetInclusionProof" => c
            .get_inclusion_proof(pb::GetInclusionProofRequest::default())
            .await
            .map(drop),
        "GetConsistencyProof" => c
            .get_consistency_proof(pb::GetConsistencyProofRequest::default())
            .await
            .map(drop),
        "CreateCheckpoint" => c
            .create_checkpoint(pb::CreateCheckpointRequest::default())
            .await
            .map(drop),
        // An empty note: an auditor gets InvalidArgument (nothing is kept).
        "AddCosignature" => c
            .add_cosignature(pb::AddCosignatureRequest::default())
            .await
            .map(drop),
        "ListCheckpoints" => c
            .list_checkpoints(pb::ListCheckpointsRequest::default())
            .await
            .map(drop),
        "VerifyRange" => c
            .verify_range(pb::VerifyRangeRequest::default())
            .await
            .map(drop),
        "ExportEvidence" => c
            .export_evidence(pb::ExportEvidenceRequest::default())
            .await
            .map(drop),
        "AcceptDeletions" => c
            .accept_deletions(pb::AcceptDeletionsRequest::default())
            .await
            .map(drop),
        // An empty reason: an admin gets InvalidArgument (nothing is paused).
        "SetProjectorPaused" => c
            .set_projector_paused(pb::SetProjectorPausedRequest::default())
            .await
            .map(drop),
        other => panic!("{other}: a new RPC needs a call in the role matrix"),
    }
}

#[tokio::test]
async fn the_role_matrix_every_rpc_for_every_kind_of_caller() {
    let nats = NatsServer::start().await;
    let gl = Govledger::serve_with_config(&nats.url(), &auth_toml(false));
    assert!(
        !gl.token_file().exists(),
        "no local admin token when [auth] says so"
    );
    let ms = methods();
    assert_eq!(ms.len(), 24, "{ms:?}");
    let mut callers: Vec<(String, Client)> = vec![
        ("no token".into(), gl.client_with("").await),
        (
            "a bad token".into(),
            gl.client_with("glt_not-a-known-token").await,
        ),
    ];
    for (_, role, token) in PRINCIPALS {
        callers.push((role.to_owned(), gl.client_with(token).await));
    }
    let mut checked = 0;
    for m in &ms {
        for (who, c) in callers.iter_mut() {
            let got = call(c, m).await;
            let code = got.as_ref().map_or_else(|s| s.code(), |_| Code::Ok);
            let msg = got
                .as_ref()
                .err()
                .map(|s| s.message().to_owned())
                .unwrap_or_default();
            match who.as_str() {
                "no token" | "a bad token" => {
                    assert_eq!(code, Code::Unauthenticated, "{m} with {who}: {msg}");
                }
                role if expected_roles(m).contains(&role) => assert!(
                    !matches!(code, Code::Unauthenticated | Code::PermissionDenied),
                    "{m} as {role} was refused: {code:?} {msg}"
                ),
                role => {
                    assert_eq!(code, Code::PermissionDenied, "{m} as {role}: {msg}");
                    let needed = expected_roles(m)[0];
                    assert!(
                        msg.contains(&format!("{m} needs role {needed}")),
                        "{m} as {role}: {msg}"
                    );
                }
            }
            checked += 1;
        }
    }
    assert_eq!(checked, 24 * 6);
    // Health and reflection stay open.
    let ch = tonic::transport::Endpoint::from_shared(format!("http://{}", gl.addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let health = tonic_health::pb::health_client::HealthClient::new(ch)
        .check(tonic_health::pb::HealthCheckRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(health.status, 1, "SERVING");
    // Refusals are in the access log, without the token.
    let log = gl.log_text();
    assert!(
        log.lines().any(|l| l.contains("govledger::access")
            && l.contains("PERMISSION_DENIED")
            && l.contains("rita")),
        "{log}"
    );
    for (_, _, token) in PRINCIPALS {
        assert!(!log.contains(token), "a token reached the log");
    }
    assert!(
        !log.contains("glt_not-a-known-token"),
        "a token reached the log"
    );
}

#[tokio::test]
async fn the_ledger_records_the_authenticated_principal_not_the_clients_words() {
    let nats = NatsServer::start().await;
    let scim = FaultScim::start_with(ScimConfig {
        users: 3,
        ..Default::default()
    })
    .await;
    let toml = format!(
        "{}{}",
        auth_toml(true),
        scim_source_toml(&scim.base_url, "")
    );
    let gl = Govledger::serve_with_config(&nats.url(), &toml);
    let mut otto = gl.client_with(PRINCIPALS[1].2).await;
    let run_id = otto
        .trigger_sync(pb::TriggerSyncRequest {
            source_id: "hr".into(),
            mode: pb::SyncMode::Full as i32,
        })
        .await
        .unwrap()
        .into_inner()
        .run_id;
    gl.wait_decided(&run_id, Duration::from_secs(60)).await;

    // The client claims to be someone else; the ledger records otto.
    let user = scim.user_ids()[0].clone();
    let mut req = action_request(pb::ActionKind::Deactivate, &user, "", "k-1", "CHG-7");
    req.requested_by = "mallory@elsewhere".into();
    let action_id = otto
        .submit_action(pb::SubmitActionRequest {
            source_id: "hr".into(),
            request: Some(req),
        })
        .await
        .unwrap()
        .into_inner()
        .action_id;
    let a = gl.wait_action(&action_id).await;
    let requested_by = a.action.unwrap().request.unwrap().requested_by;
    assert_eq!(requested_by, "otto");

    // A checkpoint names (and signs) who asked for it.
    let cp = gl
        .client_with(PRINCIPALS[2].2)
        .await
        .create_checkpoint(pb::CreateCheckpointRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(cp.requested_by, "aude");
    govledger::audit::checkpoints::verify(&cp, &cp.public_key).unwrap();

    // The run's start names who triggered it; the stream never holds "mallory".
    let msgs = read_stream(&nats.client().await).await;
    let mut started_by = None;
    for m in &msgs {
        let Ok(ev) = pb::Event::decode(m.payload.as_ref()) else {
            continue;
        };
        if let Some(pb::event::Body::SyncRunStarted(s)) = &ev.body
            && ev.run_id == run_id
        {
            started_by = Some(s.triggered_by.clone());
        }
        if let Some(pb::event::Body::ActionRequested(r)) = &ev.body {
            assert_eq!(r.requested_by, "otto");
        }
    }
    assert_eq!(started_by.as_deref(), Some("otto"));

    // One access-log line per mutating call: principal, method, target, result.
    let log = gl.log_text();
    let access: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("govledger::access"))
        .collect();
    for (who, method, target) in [
        ("otto", "TriggerSync", "hr"),
        ("otto", "SubmitAction", "hr/"),
        ("aude", "CreateCheckpoint", "GOVLEDGER"),
    ] {
        assert!(
            access.iter().any(|l| l.contains(who)
                && l.contains(method)
                && l.contains(target)
                && l.contains("Ok")),
            "no access line for {who} {method}: {access:#?}"
        );
    }
    assert!(
        !access.iter().any(|l| l.contains("GetAction")),
        "reads are not in the access log: {access:#?}"
    );
}

/// A CLI command against `addr`; (exit code, stdout + stderr).
fn cli(args: &[&str]) -> (Option<i32>, String) {
    // Away from any ./govledger-data/admin.token (a demo's) the CLI would send.
    let here = tempfile::tempdir().unwrap();
    let o = Command::new(govledger_bin())
        .args(args)
        .current_dir(here.path())
        .env("NO_COLOR", "1")
        .env_remove("GOVLEDGER_TOKEN")
        .env_remove("GOVLEDGER_TOKEN_FILE")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        o.status.code(),
        String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr),
    )
}

/// The independent client: Python grpcio from the project's tools.
fn python_call(addr: &str, ca: &str, token: &str, client: Option<(&str, &str)>) -> String {
    let py = concat!(env!("CARGO_MANIFEST_DIR"), "/.tools/venv/bin/python");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/py/grpc_client.py");
    let mut c = Command::new(py);
    c.arg(script).arg(addr).arg(ca).arg(token);
    if let Some((cert, key)) = client {
        c.arg(cert).arg(key);
    }
    let o = c
        .output()
        .expect("run scripts/install-tools.sh (python grpcio)");
    String::from_utf8_lossy(&o.stdout).trim().to_owned() + &String::from_utf8_lossy(&o.stderr)
}

async fn tls_client(
    addr: &str,
    ca: &str,
    identity: Option<(&str, &str)>,
    token: &str,
) -> Result<Client, tonic::transport::Error> {
    let mut tls = tonic::transport::ClientTlsConfig::new().ca_certificate(
        tonic::transport::Certificate::from_pem(std::fs::read(ca).unwrap()),
    );
    if let Some((c, k)) = identity {
        tls = tls.identity(tonic::transport::Identity::from_pem(
            std::fs::read(c).unwrap(),
            std::fs::read(k).unwrap(),
        ));
    }
    let ch = tonic::transport::Endpoint::from_shared(format!("https://{addr}"))
        .unwrap()
        .tls_config(tls)?
        .connect()
        .await?;
    let token = if token.is_empty() {
        BearerToken::none()
    } else {
        BearerToken::new(token).unwrap()
    };
    Ok(LedgerClient::with_interceptor(ch, token))
}

#[tokio::test]
async fn tls_with_tokens_for_tonic_the_cli_and_python_grpcio() {
    let nats = NatsServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let f = TlsFiles::new(dir.path(), "unused");
    let toml = format!(
        "[tls]\ncert_file = {:?}\nkey_file = {:?}\n{}",
        f.server_cert,
        f.server_key,
        auth_toml(false)
    );
    let gl = Govledger::serve_with_config(&nats.url(), &toml);
    assert!(
        gl.log_text().contains("TLS gRPC listening on"),
        "{}",
        gl.log_text()
    );
    let admin = PRINCIPALS[3].2;

    // tonic over TLS with the CA and a token.
    let mut c = tls_client(&gl.addr, &f.ca, None, admin).await.unwrap();
    c.list_sources(pb::ListSourcesRequest::default())
        .await
        .unwrap();
    // Over TLS without a token: UNAUTHENTICATED.
    let mut anon = tls_client(&gl.addr, &f.ca, None, "").await.unwrap();
    let e = anon
        .list_sources(pb::ListSourcesRequest::default())
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated, "{e:?}");
    // Plaintext to the TLS port fails.
    let plain = gl
        .client_with(admin)
        .await
        .list_sources(pb::ListSourcesRequest::default())
        .await;
    assert!(plain.is_err(), "plaintext call to a TLS port answered");

    // The CLI with --tls-ca and a token file.
    let token_file = dir.path().join("adam.token");
    std::fs::write(&token_file, format!("{admin}\n")).unwrap();
    let token_path = token_file.to_str().unwrap();
    let (code, out) = cli(&[
        "status",
        "--grpc-addr",
        &gl.addr,
        "--tls-ca",
        &f.ca,
        "--token-file",
        token_path,
    ]);
    assert_eq!(code, Some(0), "{out}");
    // The CLI without --tls-ca says what to do.
    let (code, out) = cli(&[
        "status",
        "--grpc-addr",
        &gl.addr,
        "--token-file",
        token_path,
    ]);
    assert_ne!(code, Some(0), "{out}");
    // Without a token: the refusal says how to send one.
    let (code, out) = cli(&["status", "--grpc-addr", &gl.addr, "--tls-ca", &f.ca]);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("no credentials") && out.contains("--token-file"),
        "{out}"
    );
    // The token from the environment.
    let o = Command::new(govledger_bin())
        .args(["status", "--grpc-addr", &gl.addr, "--tls-ca", &f.ca])
        .env("GOVLEDGER_TOKEN", admin)
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

    // An independent client: Python grpcio with the CA and the token.
    let out = python_call(&gl.addr, &f.ca, admin, None);
    assert!(out.starts_with("OK "), "{out}");
    let out = python_call(&gl.addr, &f.ca, PRINCIPALS[0].2, None);
    assert!(out.starts_with("OK "), "reader may list sources: {out}");
    let out = python_call(&gl.addr, &f.ca, "", None);
    assert!(out.starts_with("UNAUTHENTICATED"), "{out}");
    let out = python_call(&gl.addr, &f.ca, "glt_wrong", None);
    assert!(out.starts_with("UNAUTHENTICATED"), "{out}");
}

#[tokio::test]
async fn mtls_requires_a_client_certificate_and_maps_its_subject_to_roles() {
    let nats = NatsServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let f = TlsFiles::new(dir.path(), "review-bot");
    let toml = format!(
        "[tls]\ncert_file = {:?}\nkey_file = {:?}\nclient_ca_file = {:?}\n{}\
         [[auth.clients]]\nsubject = \"CN=review-bot\"\nroles = [\"reader\"]\n",
        f.server_cert,
        f.server_key,
        f.ca,
        auth_toml(false)
    );
    let gl = Govledger::serve_with_config(&nats.url(), &toml);
    let client = Some((f.client_cert.as_str(), f.client_key.as_str()));

    // Without a client certificate the handshake fails.
    let no_cert = async {
        let mut c = tls_client(&gl.addr, &f.ca, None, PRINCIPALS[3].2).await?;
        Ok::<_, Box<dyn std::error::Error>>(
            c.list_sources(pb::ListSourcesRequest::default()).await?,
        )
    }
    .await;
    assert!(
        no_cert.is_err(),
        "mTLS without a client certificate answered"
    );
    let out = python_call(&gl.addr, &f.ca, PRINCIPALS[3].2, None);
    assert!(!out.starts_with("OK"), "{out}");

    // The certificate alone: principal review-bot, a reader.
    let mut bot = tls_client(&gl.addr, &f.ca, client, "").await.unwrap();
    bot.list_sources(pb::ListSourcesRequest::default())
        .await
        .unwrap();
    let e = bot
        .trigger_sync(pb::TriggerSyncRequest::default())
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    assert!(
        e.message()
            .contains("principal \"CN=review-bot\" has reader"),
        "{e:?}"
    );
    let out = python_call(&gl.addr, &f.ca, "", client);
    assert!(out.starts_with("OK "), "{out}");
    // A token with the certificate: the token's principal.
    let mut adam = tls_client(&gl.addr, &f.ca, client, PRINCIPALS[3].2)
        .await
        .unwrap();
    let cp = adam
        .create_checkpoint(pb::CreateCheckpointRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(cp.requested_by, "adam");
    // The CLI with the client certificate.
    let (code, out) = cli(&[
        "status",
        "--grpc-addr",
        &gl.addr,
        "--tls-ca",
        &f.ca,
        "--tls-cert",
        &f.client_cert,
        "--tls-key",
        &f.client_key,
    ]);
    assert_eq!(code, Some(0), "{out}");
}

/// Starts `serve` with `args` and returns its log once it listens (or exits).
fn serve_log(args: &[&str]) -> (Option<i32>, String) {
    let mut child = Command::new(govledger_bin())
        .arg("serve")
        .args(args)
        .env("NO_COLOR", "1")
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut log = String::new();
    for line in BufReader::new(child.stderr.take().unwrap()).lines() {
        let Ok(line) = line else { break };
        log.push_str(&line);
        log.push('\n');
        if line.contains("gRPC listening on") {
            let _ = child.kill();
            break;
        }
    }
    let status = child.wait().unwrap();
    (status.code(), log)
}

#[tokio::test]
async fn plaintext_beyond_loopback_is_refused_unless_the_operator_insists() {
    let nats = NatsServer::start().await;
    let data = tempfile::tempdir().unwrap();
    let url = nats.url();
    let base = [
        "--nats-url",
        url.as_str(),
        "--data-dir",
        data.path().to_str().unwrap(),
        "--grpc-addr",
        "0.0.0.0:0",
    ];
    let (code, log) = serve_log(&base);
    assert_eq!(code, Some(2), "{log}");
    assert!(
        log.contains("refusing to serve gRPC in plaintext on 0.0.0.0:0")
            && log.contains("tls.cert_file")
            && log.contains("--insecure-plaintext"),
        "{log}"
    );
    let mut args = base.to_vec();
    args.push("--insecure-plaintext");
    let (_, log) = serve_log(&args);
    assert!(
        log.contains("INSECURE") && log.contains("plaintext gRPC listening on"),
        "{log}"
    );

    // Config errors name the key (exit 2) and never echo a token.
    let data_dir = data.path().to_str().unwrap();
    let cfg = data.path().join("bad.toml");
    for (toml, named, never) in [
        // One TLS file without the other.
        (
            "[tls]\ncert_file = \"/nonexistent.pem\"\n",
            "tls.key_file",
            "\u{0}",
        ),
        // A certificate file that is not there.
        (
            "[tls]\ncert_file = \"/nonexistent.pem\"\nkey_file = \"/nonexistent-key.pem\"\n",
            "tls.cert_file",
            "\u{0}",
        ),
        // A token where its hash belongs.
        (
            "[[auth.tokens]]\nprincipal = \"x\"\nsha256 = \"glt_my-secret-token\"\nroles = [\"admin\"]\n",
            "auth.tokens[0].sha256",
            "glt_my-secret-token",
        ),
    ] {
        std::fs::write(&cfg, toml).unwrap();
        let (status, err) = run_govledger(
            &[
                "serve",
                "--config",
                cfg.to_str().unwrap(),
                "--nats-url",
                &url,
                "--grpc-addr",
                "127.0.0.1:0",
                "--data-dir",
                data_dir,
            ],
            &[],
        );
        assert_eq!(status.code(), Some(2), "{toml}: {err}");
        assert!(err.contains(named) && !err.contains(never), "{toml}: {err}");
    }
}

#[tokio::test]
async fn a_token_made_by_token_new_authenticates_as_its_principal() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("alice.token");
    let o = Command::new(govledger_bin())
        .args(["token", "new", "alice", "--roles", "auditor", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let entry = String::from_utf8(o.stdout).unwrap();
    let token = std::fs::read_to_string(&out).unwrap();
    assert!(token.starts_with("glt_"));
    assert!(
        !entry.contains(token.trim()),
        "the entry holds the token: {entry}"
    );
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&out).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
    let nats = NatsServer::start().await;
    let gl = Govledger::serve_with_config(&nats.url(), &entry);
    let cp = gl
        .client_with(token.trim())
        .await
        .create_checkpoint(pb::CreateCheckpointRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(cp.requested_by, "alice");
    // An existing file is never overwritten.
    let (status, err) = run_govledger(
        &[
            "token",
            "new",
            "bob",
            "--roles",
            "admin",
            "--out",
            out.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(status.code(), Some(1), "{err}");
    assert_eq!(std::fs::read_to_string(&out).unwrap(), token);
}
