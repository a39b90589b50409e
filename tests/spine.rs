//! End to end over a real nats-server and the real `govledger serve` binary:
//! synthetic runs published through the publisher come back over gRPC with the
//! right counts and verdicts; reflection and health work; bad requests get the
//! right status codes; bad stream settings and bad config stop `serve` with a
//! message naming the setting.

use govledger::simulate::SimRun;
use govledger_proto::v1::{
    EntityType, GetIdentityRequest, GetRunRequest, GetSourceRequest, ListRunsRequest,
    PresenceStatus, Verdict,
};
use govledger_testkit::{
    Govledger, NatsServer, publish_sim, run_govledger,
    runs::{assert_lost_second_page, assert_verdict},
};
use tonic::Code;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clean_run_of_three_pages_is_complete_with_exact_counts() {
    let nats = NatsServer::start().await;
    let gl = Govledger::serve(&nats.url(), &[]);
    let sim = SimRun::new("hr", 250, 100);
    let last = publish_sim(&nats.client().await, "test", &sim).await;
    gl.wait_applied(last).await;

    let r = gl.run(&sim.run_id).await;
    assert_verdict(&r, Verdict::Complete);
    assert!(r.reasons.is_empty());
    let run = r.run.unwrap();
    assert_eq!(run.pages_fetched, 3);
    assert_eq!(run.pages_failed_final, 0);
    assert_eq!(run.records_observed, 250);
    assert_eq!(run.records_unique, 250);
    assert_eq!(run.declared_total_last, Some(250));
    assert_eq!(run.duplicates, 0);
    assert!(run.finished);

    let src = gl.source("hr").await.source.unwrap();
    assert_eq!(src.last_complete_run_id, sim.run_id);
    assert_eq!(src.last_complete_unique, 250);
    assert_eq!(src.runs_total, 1);

    let id = gl.user("hr", &govledger::simulate::user_id(42)).await;
    assert_eq!(
        PresenceStatus::try_from(id.presence).unwrap(),
        PresenceStatus::Present
    );
    assert_eq!(id.identity.unwrap().last_observed_run_id, sim.run_id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_page_makes_the_run_incomplete_and_names_the_page() {
    let nats = NatsServer::start().await;
    let gl = Govledger::serve(&nats.url(), &[]);
    let mut sim = SimRun::new("hr", 250, 100);
    sim.failing_pages = vec![1];
    let last = publish_sim(&nats.client().await, "test", &sim).await;
    gl.wait_applied(last).await;

    let r = gl.run(&sim.run_id).await;
    assert_lost_second_page(&r, "startIndex=101");
    let run = r.run.unwrap();
    assert_eq!(
        (run.pages_fetched, run.pages_failed_final, run.page_failures),
        (2, 1, 3)
    );

    // The engine said "succeeded"; the ledger did not believe it.
    let src = gl.source("hr").await.source.unwrap();
    assert!(src.last_complete_run_id.is_empty());
    assert_eq!(src.consecutive_failures, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_actionable_status_codes() {
    let nats = NatsServer::start().await;
    let gl = Govledger::serve(&nats.url(), &[]);
    let sim = SimRun::new("hr", 10, 10);
    let last = publish_sim(&nats.client().await, "test", &sim).await;
    gl.wait_applied(last).await;
    let mut c = gl.client().await;

    let e = c
        .get_run(GetRunRequest { run_id: "".into() })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(
        e.message().contains("run_id is required"),
        "{}",
        e.message()
    );

    let e = c
        .get_run(GetRunRequest {
            run_id: "no-such-run".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    assert!(e.message().contains("ListRuns"), "{}", e.message());

    let e = c
        .get_identity(GetIdentityRequest {
            as_of: None,
            source_id: "hr".into(),
            entity_type: 99,
            external_id: "x".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);

    let e = c
        .get_identity(GetIdentityRequest {
            as_of: None,
            source_id: "hr".into(),
            entity_type: EntityType::User as i32,
            external_id: "nobody".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    assert!(e.message().contains("nobody"));

    let e = c
        .list_runs(ListRunsRequest {
            source_id: "hr".into(),
            limit: 1_000_000,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().contains("maximum"));

    let e = c
        .get_source(GetSourceRequest {
            as_of: None,
            source_id: "unknown".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reflection_v1_and_v1alpha_and_health_work() {
    use futures::StreamExt as _;
    let nats = NatsServer::start().await;
    let gl = Govledger::serve(&nats.url(), &[]);
    let ch = tonic::transport::Endpoint::from_shared(format!("http://{}", gl.addr))
        .unwrap()
        .connect()
        .await
        .unwrap();

    // The same ListServices exchange over both reflection protocol versions.
    macro_rules! list_services {
        ($pb:path) => {{
            use $pb as pb;
            let mut rc = pb::server_reflection_client::ServerReflectionClient::new(ch.clone());
            let req = pb::ServerReflectionRequest {
                host: String::new(),
                message_request: Some(pb::server_reflection_request::MessageRequest::ListServices(
                    String::new(),
                )),
            };
            let mut resp = rc
                .server_reflection_info(futures::stream::iter(vec![req]))
                .await
                .unwrap()
                .into_inner();
            let msg = resp.next().await.unwrap().unwrap();
            let Some(pb::server_reflection_response::MessageResponse::ListServicesResponse(list)) =
                msg.message_response
            else {
                panic!("unexpected reflection answer");
            };
            list.service
                .into_iter()
                .map(|s| s.name)
                .collect::<Vec<String>>()
        }};
    }
    for names in [
        list_services!(tonic_reflection::pb::v1),
        list_services!(tonic_reflection::pb::v1alpha),
    ] {
        for want in ["govledger.v1.Ledger", "grpc.health.v1.Health"] {
            assert!(
                names.iter().any(|n| n == want),
                "{want} missing from {names:?}"
            );
        }
    }
    // The file containing a symbol resolves (what grpcurl `describe` does).
    {
        use tonic_reflection::pb::v1::{
            ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
            server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
        };
        let mut rc = ServerReflectionClient::new(ch.clone());
        let req = ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::FileContainingSymbol(
                "govledger.v1.Ledger".into(),
            )),
        };
        let mut resp = rc
            .server_reflection_info(futures::stream::iter(vec![req]))
            .await
            .unwrap()
            .into_inner();
        let msg = resp.next().await.unwrap().unwrap();
        assert!(matches!(
            msg.message_response,
            Some(MessageResponse::FileDescriptorResponse(_))
        ));
    }
    // health
    {
        use tonic_health::pb::{
            HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
        };
        let mut hc = HealthClient::new(ch);
        let r = hc
            .check(HealthCheckRequest {
                service: "govledger.v1.Ledger".into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(r.status(), ServingStatus::Serving);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_refuses_a_stream_that_allows_delete_and_purge() {
    let nats = NatsServer::start().await;
    let client = nats.client().await;
    let js = async_nats::jetstream::new(client.clone());
    let mut weak = govledger_stream::StreamSpec::default().config();
    weak.deny_delete = false;
    weak.deny_purge = false;
    js.create_stream(weak).await.unwrap();

    let data = tempfile::tempdir().unwrap();
    let (status, stderr) = run_govledger(
        &[
            "serve",
            "--nats-url",
            &nats.url(),
            "--grpc-addr",
            "127.0.0.1:0",
            "--data-dir",
            data.path().to_str().unwrap(),
        ],
        &[],
    );
    assert!(!status.success(), "serve started on a weak stream");
    assert!(stderr.contains("deny_delete is false"), "{stderr}");
    assert!(stderr.contains("deny_purge is false"), "{stderr}");
    assert!(!stderr.contains("gRPC listening"), "{stderr}");
    // govledger never changed the stream.
    let mut s = js.get_stream("GOVLEDGER").await.unwrap();
    let cfg = s.info().await.unwrap().config.clone();
    assert!(!cfg.deny_delete && !cfg.deny_purge);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_config_exits_2_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("govledger.toml");
    std::fs::write(&cfg, "[projector]\nbatch_events_max = 0\n").unwrap();
    let (status, stderr) = run_govledger(&["serve", "--config", cfg.to_str().unwrap()], &[]);
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("`projector.batch_events_max`"), "{stderr}");

    std::fs::write(&cfg, "[nats]\nurl = \"nats://127.0.0.1:1\"\nsurprise = 1\n").unwrap();
    let (status, stderr) = run_govledger(&["serve", "--config", cfg.to_str().unwrap()], &[]);
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("surprise"), "{stderr}");

    // An unreachable NATS is reported with what to do, not a panic.
    let (status, stderr) = run_govledger(
        &[
            "serve",
            "--nats-url",
            "nats://127.0.0.1:1",
            "--grpc-addr",
            "127.0.0.1:0",
            "--data-dir",
            dir.path().join("d").to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("cannot reach NATS at nats://127.0.0.1:1"),
        "{stderr}"
    );
}
