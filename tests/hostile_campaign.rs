//! The hostile-request campaign (issue 22 item 8): every RPC of the `Ledger`
//! service, each sent an empty request, oversized fields, bytes that are not
//! its protobuf message, and hostile values (NATS wildcards, dots, spaces,
//! control characters, NUL, negative or huge numbers, unknown enum numbers,
//! deadlines past and far ahead), must answer the code a client can act on,
//! with a short message that never quotes a long value whole; after each
//! batch the server still answers a health check and a normal call, and its
//! NATS connection is the one it started with (never dropped or redialled).

use std::{collections::BTreeMap, future::Future, pin::Pin, time::Duration};

use bytes::{Buf as _, BufMut as _, Bytes};
use govledger::api::validate::{EXCERPT_CHARS_MAX, ID_BYTES_MAX};
use govledger_proto::v1::{self as pb, ActionKind};
use govledger_testkit::{
    NatsServer, fault_scim,
    govledger::{Govledger, action_request, scim_source_toml},
};
use tonic::{
    Code, Status,
    codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder},
    codegen::http::uri::PathAndQuery,
    transport::Channel,
};

/// A call of the campaign, its answer reduced to success or a status.
type Call = Pin<Box<dyn Future<Output = Result<(), Status>> + Send>>;

/// One case: which RPC, what is hostile about it, the code it must get, and
/// the hostile value (when long, the message must not quote it whole).
struct Case {
    rpc: &'static str,
    what: String,
    want: Code,
    /// Another acceptable code, where timing decides between two.
    alt: Option<Code>,
    call: Call,
    value: Option<String>,
}

/// Longest status message any case may get, in bytes.
const MESSAGE_BYTES_MAX: usize = 400;

/// Sends request `$req` to `$method` on a clone of `$cl`; the answer as `Call`.
macro_rules! unary {
    ($cl:expr, $method:ident, $req:expr) => {{
        let mut cl = $cl.clone();
        let req = $req;
        Box::pin(async move { cl.$method(req).await.map(|_| ()) }) as Call
    }};
}

/// As [`unary!`] for a server-streaming RPC: the whole stream is read.
macro_rules! streaming {
    ($cl:expr, $method:ident, $req:expr) => {{
        let mut cl = $cl.clone();
        let req = $req;
        Box::pin(async move {
            let mut s = cl.$method(req).await?.into_inner();
            while s.message().await?.is_some() {}
            Ok(())
        }) as Call
    }};
}

/// Bytes in, bytes out: puts arbitrary bytes on a gRPC path.
#[derive(Clone, Default)]
struct RawCodec;

impl Codec for RawCodec {
    type Encode = Bytes;
    type Decode = Bytes;
    type Encoder = RawCodec;
    type Decoder = RawCodec;
    fn encoder(&mut self) -> Self::Encoder {
        RawCodec
    }
    fn decoder(&mut self) -> Self::Decoder {
        RawCodec
    }
}

impl Encoder for RawCodec {
    type Item = Bytes;
    type Error = Status;
    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for RawCodec {
    type Item = Bytes;
    type Error = Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}

/// `body` sent as the request of `/govledger.v1.Ledger/<rpc>` (or any other
/// full `path`), with the admin token and `metadata`; a streaming answer is
/// read to its end.
async fn raw(
    ch: Channel,
    token: String,
    path: String,
    body: Bytes,
    metadata: Vec<(&'static str, String)>,
    streaming: bool,
) -> Result<Bytes, Status> {
    let mut grpc = tonic::client::Grpc::new(ch);
    grpc.ready()
        .await
        .map_err(|e| Status::unavailable(format!("not ready: {e}")))?;
    let mut req = tonic::Request::new(body);
    let auth = format!("Bearer {token}")
        .parse()
        .map_err(|_| Status::internal("token"))?;
    req.metadata_mut().insert("authorization", auth);
    for (k, v) in metadata {
        let v = v.parse().map_err(|_| Status::internal("metadata"))?;
        req.metadata_mut().insert(k, v);
    }
    let path = PathAndQuery::try_from(path).map_err(|_| Status::internal("path"))?;
    if streaming {
        let mut s = grpc
            .server_streaming(req, path, RawCodec)
            .await?
            .into_inner();
        let mut last = Bytes::new();
        while let Some(m) = s.message().await? {
            last = m;
        }
        Ok(last)
    } else {
        Ok(grpc.unary(req, path, RawCodec).await?.into_inner())
    }
}

/// Every rpc of `service Ledger` in proto/govledger/v1/api.proto.
fn rpcs_in_proto() -> Vec<String> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/proto/govledger/v1/api.proto");
    let text = std::fs::read_to_string(path).unwrap();
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("rpc "))
        .map(|l| l.split('(').next().unwrap().trim().to_owned())
        .collect()
}

const STREAMING: [&str; 3] = ["WatchAlerts", "Replay", "ExportEvidence"];
/// Requests without fields: unknown fields are skipped, so a well-framed
/// unknown field is a valid (empty) request.
const NO_FIELDS: [&str; 2] = ["ListSources", "CreateCheckpoint"];

/// The ids of the ledger's connections to NATS (from nats-server's `/connz`).
async fn nats_connections(monitor: &str) -> Vec<u64> {
    govledger_ingest::http::install_crypto_provider();
    let text = reqwest::get(format!("{monitor}/connz"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let body: serde_json::Value = serde_json::from_str(&text).unwrap();
    let mut cids: Vec<u64> = body["connections"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["name"].as_str().is_some_and(|n| n.contains("govledger")))
        .map(|c| c["cid"].as_u64().unwrap())
        .collect();
    cids.sort_unstable();
    cids
}

/// One health check (SERVING) and one normal call (GetSource hr) succeed.
async fn still_serving(gl: &Govledger, ch: &Channel, token: &str) {
    let answer = raw(
        ch.clone(),
        token.to_owned(),
        "/grpc.health.v1.Health/Check".into(),
        Bytes::new(),
        Vec::new(),
        false,
    )
    .await
    .expect("health check after a batch");
    // HealthCheckResponse { status: SERVING (1) }.
    assert_eq!(answer.as_ref(), [0x08, 0x01], "health: {answer:?}");
    let s = gl.source("hr").await;
    assert!(s.source.is_some(), "{s:?}");
}

/// Runs `cases`; tallies them by rpc and code into `tally`.
async fn run_batch(
    batch: &str,
    cases: Vec<Case>,
    tally: &mut BTreeMap<(&'static str, String), usize>,
    failures: &mut Vec<String>,
) {
    for c in cases {
        let got = tokio::time::timeout(Duration::from_secs(60), c.call)
            .await
            .unwrap_or_else(|_| Err(Status::deadline_exceeded("the test's 60 s bound")));
        let (code, msg) = match &got {
            Ok(()) => (Code::Ok, String::new()),
            Err(s) => (s.code(), s.message().to_owned()),
        };
        let label = format!("[{batch}] {} / {}", c.rpc, c.what);
        if code != c.want && Some(code) != c.alt {
            failures.push(format!(
                "{label}: want {:?}, got {code:?}: {}",
                c.want,
                msg.chars().take(200).collect::<String>()
            ));
        }
        if msg.len() > MESSAGE_BYTES_MAX {
            failures.push(format!("{label}: a {}-byte message", msg.len()));
        }
        if let Some(v) = &c.value
            && v.chars().count() > EXCERPT_CHARS_MAX
            && msg.contains(v.as_str())
        {
            failures.push(format!("{label}: the message quotes the value whole"));
        }
        *tally.entry((c.rpc, format!("{code:?}"))).or_default() += 1;
    }
}

fn case(rpc: &'static str, what: impl Into<String>, want: Code, call: Call) -> Case {
    Case {
        rpc,
        what: what.into(),
        want,
        alt: None,
        call,
        value: None,
    }
}

fn case_v(rpc: &'static str, what: impl Into<String>, want: Code, value: &str, call: Call) -> Case {
    Case {
        value: Some(value.to_owned()),
        ..case(rpc, what, want, call)
    }
}

/// Source ids that are not one NATS subject token, or hold what a log or a
/// terminal must not get raw.
fn hostile_source_ids() -> Vec<(&'static str, String)> {
    vec![
        ("wildcard *", "*".into()),
        ("wildcard >", ">".into()),
        ("a dotted id", "hr.read".into()),
        ("a dotted wildcard", "hr.*".into()),
        ("a space", "h r".into()),
        ("NUL", "hr\0".into()),
        ("an escape sequence", "\u{1b}[31mhr".into()),
        ("a newline", "hr\nx".into()),
        ("an id of 1,024 bytes", "s".repeat(ID_BYTES_MAX)),
        ("non-ASCII", "hr\u{202e}".into()),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_rpc_answers_hostile_requests_with_the_right_code() {
    let monitor_port = govledger_testkit::free_port();
    let nats = NatsServer::start_with_config(&format!("http_port: {monitor_port}\n")).await;
    let monitor = format!("http://127.0.0.1:{monitor_port}");
    let scim = fault_scim::FaultScim::start_with(fault_scim::ScimConfig {
        users: 3,
        groups: 1,
        ..Default::default()
    })
    .await;
    let toml = scim_source_toml(&scim.base_url, "resources = [\"Users\", \"Groups\"]");
    let gl = Govledger::serve_with_config(&nats.url(), &toml);
    let run = gl.sync("hr").await;
    assert_eq!(run.verdict, pb::Verdict::Complete as i32, "{run:?}");
    let run_id = run.run.as_ref().unwrap().run_id.clone();
    let user = scim.user_ids()[0].clone();
    let token = std::fs::read_to_string(gl.token_file())
        .unwrap()
        .trim()
        .to_owned();
    let ch = tonic::transport::Endpoint::from_shared(format!("http://{}", gl.addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let cl = gl.client().await;
    // An external action (for ReportExternalAttempt) and a performed one.
    let mut ext = action_request(ActionKind::Deactivate, &user, "", "camp-ext", "T-1");
    ext.external = true;
    let ext_id = gl.submit_action("hr", ext).await;
    let own_id = gl
        .submit_action(
            "hr",
            action_request(ActionKind::Deactivate, &user, "", "camp-own", "T-2"),
        )
        .await;
    gl.wait_action_until(&ext_id, |a| a.action.is_some()).await;
    gl.wait_action(&own_id).await;
    let status = gl.ledger_status().await;
    let applied = status.meta.as_ref().unwrap().last_applied_seq;
    assert!(applied > 5, "{status:?}");
    let conns = nats_connections(&monitor).await;
    assert!(
        !conns.is_empty(),
        "the ledger's NATS connection is not in /connz"
    );

    let huge = "x".repeat(1_000_000);
    let long_id = "i".repeat(ID_BYTES_MAX);
    let mut tally = BTreeMap::new();
    let mut failures = Vec::new();
    let ia = Code::InvalidArgument;
    let nf = Code::NotFound;

    // ---- Batch 1: empty requests.
    let mut empty = vec![
        case(
            "ListSources",
            "empty",
            Code::Ok,
            unary!(cl, list_sources, pb::ListSourcesRequest::default()),
        ),
        case(
            "GetSource",
            "empty",
            ia,
            unary!(cl, get_source, pb::GetSourceRequest::default()),
        ),
        case(
            "ListRuns",
            "empty",
            ia,
            unary!(cl, list_runs, pb::ListRunsRequest::default()),
        ),
        case(
            "GetRun",
            "empty",
            ia,
            unary!(cl, get_run, pb::GetRunRequest::default()),
        ),
        case(
            "GetIdentity",
            "empty",
            ia,
            unary!(cl, get_identity, pb::GetIdentityRequest::default()),
        ),
        case(
            "GetLedgerStatus",
            "empty",
            Code::Ok,
            unary!(cl, get_ledger_status, pb::GetLedgerStatusRequest::default()),
        ),
        case(
            "ListPoisonEvents",
            "empty",
            Code::Ok,
            unary!(
                cl,
                list_poison_events,
                pb::ListPoisonEventsRequest::default()
            ),
        ),
        case(
            "TriggerSync",
            "empty",
            ia,
            unary!(cl, trigger_sync, pb::TriggerSyncRequest::default()),
        ),
        case(
            "CheckReadiness",
            "empty (every source)",
            Code::Ok,
            unary!(cl, check_readiness, pb::CheckReadinessRequest::default()),
        ),
        case(
            "SubmitAction",
            "empty",
            ia,
            unary!(cl, submit_action, pb::SubmitActionRequest::default()),
        ),
        case(
            "SubmitAction",
            "an empty ActionRequested",
            ia,
            unary!(
                cl,
                submit_action,
                pb::SubmitActionRequest {
                    source_id: "hr".into(),
                    request: Some(Default::default())
                }
            ),
        ),
        case(
            "GetAction",
            "empty",
            ia,
            unary!(cl, get_action, pb::GetActionRequest::default()),
        ),
        case(
            "ListActions",
            "empty",
            ia,
            unary!(cl, list_actions, pb::ListActionsRequest::default()),
        ),
        case(
            "ReportExternalAttempt",
            "empty",
            ia,
            unary!(
                cl,
                report_external_attempt,
                pb::ReportExternalAttemptRequest::default()
            ),
        ),
        case(
            "WatchAlerts",
            "empty (every source)",
            Code::Ok,
            unary!(cl, watch_alerts, pb::WatchAlertsRequest::default()),
        ),
        case(
            "Replay",
            "empty (the whole stream)",
            Code::Ok,
            streaming!(cl, replay, pb::ReplayRequest::default()),
        ),
        case(
            "GetInclusionProof",
            "empty (seq 0)",
            ia,
            unary!(
                cl,
                get_inclusion_proof,
                pb::GetInclusionProofRequest::default()
            ),
        ),
        case(
            "GetConsistencyProof",
            "empty (sizes 0)",
            ia,
            unary!(
                cl,
                get_consistency_proof,
                pb::GetConsistencyProofRequest::default()
            ),
        ),
        case(
            "CreateCheckpoint",
            "empty",
            Code::Ok,
            unary!(
                cl,
                create_checkpoint,
                pb::CreateCheckpointRequest::default()
            ),
        ),
        case(
            "ListCheckpoints",
            "empty",
            Code::Ok,
            unary!(cl, list_checkpoints, pb::ListCheckpointsRequest::default()),
        ),
        case(
            "VerifyRange",
            "empty (the whole stream)",
            Code::Ok,
            unary!(cl, verify_range, pb::VerifyRangeRequest::default()),
        ),
        case(
            "ExportEvidence",
            "empty",
            ia,
            streaming!(cl, export_evidence, pb::ExportEvidenceRequest::default()),
        ),
        case(
            "AcceptDeletions",
            "empty",
            ia,
            unary!(cl, accept_deletions, pb::AcceptDeletionsRequest::default()),
        ),
    ];
    empty.push(case(
        "AddCosignature",
        "empty (no note)",
        ia,
        unary!(cl, add_cosignature, pb::AddCosignatureRequest::default()),
    ));
    empty.push(case(
        "SetProjectorPaused",
        "empty (no reason)",
        ia,
        unary!(
            cl,
            set_projector_paused,
            pb::SetProjectorPausedRequest::default()
        ),
    ));
    run_batch("empty", empty, &mut tally, &mut failures).await;
    still_serving(&gl, &ch, &token).await;

    // ---- Batch 2: oversized fields.
    let many: Vec<String> = (0..1_001).map(|i| format!("s{i}")).collect();
    let mut big = vec![
        case_v(
            "GetSource",
            "a 1 MB source_id",
            ia,
            &huge,
            unary!(
                cl,
                get_source,
                pb::GetSourceRequest {
                    source_id: huge.clone(),
                    as_of: None
                }
            ),
        ),
        case_v(
            "ListRuns",
            "a 1 MB source_id",
            ia,
            &huge,
            unary!(
                cl,
                list_runs,
                pb::ListRunsRequest {
                    source_id: huge.clone(),
                    limit: 0
                }
            ),
        ),
        case(
            "ListRuns",
            "limit 1001",
            ia,
            unary!(
                cl,
                list_runs,
                pb::ListRunsRequest {
                    source_id: "hr".into(),
                    limit: 1_001
                }
            ),
        ),
        case(
            "ListRuns",
            "limit u32::MAX",
            ia,
            unary!(
                cl,
                list_runs,
                pb::ListRunsRequest {
                    source_id: "hr".into(),
                    limit: u32::MAX
                }
            ),
        ),
        case_v(
            "GetRun",
            "a 1 MB run_id",
            ia,
            &huge,
            unary!(
                cl,
                get_run,
                pb::GetRunRequest {
                    run_id: huge.clone()
                }
            ),
        ),
        case_v(
            "GetRun",
            "a run_id of 1,024 bytes",
            nf,
            &long_id,
            unary!(
                cl,
                get_run,
                pb::GetRunRequest {
                    run_id: long_id.clone()
                }
            ),
        ),
        case_v(
            "GetIdentity",
            "a 1 MB external_id",
            ia,
            &huge,
            unary!(
                cl,
                get_identity,
                pb::GetIdentityRequest {
                    source_id: "hr".into(),
                    external_id: huge.clone(),
                    ..Default::default()
                }
            ),
        ),
        case_v(
            "GetIdentity",
            "an external_id of 1,024 bytes",
            nf,
            &long_id,
            unary!(
                cl,
                get_identity,
                pb::GetIdentityRequest {
                    source_id: "hr".into(),
                    external_id: long_id.clone(),
                    ..Default::default()
                }
            ),
        ),
        case_v(
            "GetIdentity",
            "a 1 MB source_id",
            ia,
            &huge,
            unary!(
                cl,
                get_identity,
                pb::GetIdentityRequest {
                    source_id: huge.clone(),
                    external_id: user.clone(),
                    ..Default::default()
                }
            ),
        ),
        case(
            "ListPoisonEvents",
            "limit 1001",
            ia,
            unary!(
                cl,
                list_poison_events,
                pb::ListPoisonEventsRequest {
                    after_seq: 0,
                    limit: 1_001
                }
            ),
        ),
        case_v(
            "TriggerSync",
            "a 1 MB source_id",
            ia,
            &huge,
            unary!(
                cl,
                trigger_sync,
                pb::TriggerSyncRequest {
                    source_id: huge.clone(),
                    mode: 0
                }
            ),
        ),
        case(
            "CheckReadiness",
            "1,001 source ids",
            ia,
            unary!(
                cl,
                check_readiness,
                pb::CheckReadinessRequest {
                    source_ids: many.clone(),
                    ..Default::default()
                }
            ),
        ),
        case(
            "CheckReadiness",
            "1,001 identity ids",
            ia,
            unary!(
                cl,
                check_readiness,
                pb::CheckReadinessRequest {
                    identity_external_ids: many.clone(),
                    ..Default::default()
                }
            ),
        ),
        case_v(
            "CheckReadiness",
            "a 1 MB identity id",
            ia,
            &huge,
            unary!(
                cl,
                check_readiness,
                pb::CheckReadinessRequest {
                    identity_external_ids: vec![huge.clone()],
                    ..Default::default()
                }
            ),
        ),
        case_v(
            "SubmitAction",
            "a 1 MB source_id",
            ia,
            &huge,
            unary!(
                cl,
                submit_action,
                pb::SubmitActionRequest {
                    source_id: huge.clone(),
                    request: Some(action_request(
                        ActionKind::Deactivate,
                        &user,
                        "",
                        "big-src",
                        "T"
                    ))
                }
            ),
        ),
        case_v(
            "GetAction",
            "a 1 MB action_id",
            ia,
            &huge,
            unary!(
                cl,
                get_action,
                pb::GetActionRequest {
                    action_id: huge.clone(),
                    as_of: None
                }
            ),
        ),
        case_v(
            "GetAction",
            "an action_id of 1,024 bytes",
            nf,
            &long_id,
            unary!(
                cl,
                get_action,
                pb::GetActionRequest {
                    action_id: long_id.clone(),
                    as_of: None
                }
            ),
        ),
        case_v(
            "ListActions",
            "a 1 MB source_id",
            ia,
            &huge,
            unary!(
                cl,
                list_actions,
                pb::ListActionsRequest {
                    source_id: huge.clone(),
                    ..Default::default()
                }
            ),
        ),
        case(
            "ListActions",
            "limit 1001",
            ia,
            unary!(
                cl,
                list_actions,
                pb::ListActionsRequest {
                    source_id: "hr".into(),
                    limit: 1_001,
                    outcome: 0
                }
            ),
        ),
        case_v(
            "ReportExternalAttempt",
            "a 1 MB action_id",
            ia,
            &huge,
            unary!(
                cl,
                report_external_attempt,
                pb::ReportExternalAttemptRequest {
                    action_id: huge.clone(),
                    step: 1,
                    ..Default::default()
                }
            ),
        ),
        case_v(
            "ReportExternalAttempt",
            "an action_id of 1,024 bytes",
            nf,
            &long_id,
            unary!(
                cl,
                report_external_attempt,
                pb::ReportExternalAttemptRequest {
                    action_id: long_id.clone(),
                    step: 1,
                    ..Default::default()
                }
            ),
        ),
        case_v(
            "ReportExternalAttempt",
            "a 1 MB request_summary",
            ia,
            &huge,
            unary!(
                cl,
                report_external_attempt,
                pb::ReportExternalAttemptRequest {
                    action_id: ext_id.clone(),
                    step: 1,
                    request_summary: huge.clone(),
                    ..Default::default()
                }
            ),
        ),
        case(
            "WatchAlerts",
            "1,001 source ids",
            ia,
            unary!(
                cl,
                watch_alerts,
                pb::WatchAlertsRequest {
                    after_alert_seq: 0,
                    source_ids: many.clone()
                }
            ),
        ),
        case_v(
            "WatchAlerts",
            "a 1 MB source id",
            ia,
            &huge,
            unary!(
                cl,
                watch_alerts,
                pb::WatchAlertsRequest {
                    after_alert_seq: 0,
                    source_ids: vec![huge.clone()]
                }
            ),
        ),
        case_v(
            "Replay",
            "a 1 MB source_id",
            ia,
            &huge,
            streaming!(
                cl,
                replay,
                pb::ReplayRequest {
                    source_id: huge.clone(),
                    ..Default::default()
                }
            ),
        ),
        case_v(
            "Replay",
            "a 1 MB run_id",
            ia,
            &huge,
            streaming!(
                cl,
                replay,
                pb::ReplayRequest {
                    run_id: huge.clone(),
                    ..Default::default()
                }
            ),
        ),
        case_v(
            "Replay",
            "a 1 MB identity_external_id",
            ia,
            &huge,
            streaming!(
                cl,
                replay,
                pb::ReplayRequest {
                    identity_external_id: huge.clone(),
                    ..Default::default()
                }
            ),
        ),
        case(
            "Replay",
            "limit u64::MAX",
            Code::Ok,
            streaming!(
                cl,
                replay,
                pb::ReplayRequest {
                    limit: u64::MAX,
                    ..Default::default()
                }
            ),
        ),
        case(
            "GetInclusionProof",
            "seq u64::MAX",
            ia,
            unary!(
                cl,
                get_inclusion_proof,
                pb::GetInclusionProofRequest {
                    seq: u64::MAX,
                    tree_size: 0
                }
            ),
        ),
        case(
            "GetInclusionProof",
            "tree_size u64::MAX",
            ia,
            unary!(
                cl,
                get_inclusion_proof,
                pb::GetInclusionProofRequest {
                    seq: 1,
                    tree_size: u64::MAX
                }
            ),
        ),
        case(
            "GetConsistencyProof",
            "size2 u64::MAX",
            ia,
            unary!(
                cl,
                get_consistency_proof,
                pb::GetConsistencyProofRequest {
                    size1: 1,
                    size2: u64::MAX
                }
            ),
        ),
        case(
            "ListCheckpoints",
            "limit 1001",
            ia,
            unary!(
                cl,
                list_checkpoints,
                pb::ListCheckpointsRequest {
                    limit: 1_001,
                    ..Default::default()
                }
            ),
        ),
        case(
            "ListCheckpoints",
            "limit u32::MAX",
            ia,
            unary!(
                cl,
                list_checkpoints,
                pb::ListCheckpointsRequest {
                    limit: u32::MAX,
                    ..Default::default()
                }
            ),
        ),
        case(
            "VerifyRange",
            "to_seq u64::MAX",
            Code::FailedPrecondition,
            unary!(
                cl,
                verify_range,
                pb::VerifyRangeRequest {
                    to_seq: u64::MAX,
                    ..Default::default()
                }
            ),
        ),
        case_v(
            "VerifyRange",
            "a 1 MB stream name",
            ia,
            &huge,
            unary!(
                cl,
                verify_range,
                pb::VerifyRangeRequest {
                    stream: huge.clone(),
                    ..Default::default()
                }
            ),
        ),
        case_v(
            "ExportEvidence",
            "a 1 MB source_id",
            ia,
            &huge,
            streaming!(
                cl,
                export_evidence,
                pb::ExportEvidenceRequest {
                    source_id: huge.clone(),
                    ..Default::default()
                }
            ),
        ),
        case_v(
            "ExportEvidence",
            "a 1 MB external_id",
            ia,
            &huge,
            streaming!(
                cl,
                export_evidence,
                pb::ExportEvidenceRequest {
                    source_id: "hr".into(),
                    external_id: huge.clone(),
                    ..Default::default()
                }
            ),
        ),
        case_v(
            "AcceptDeletions",
            "a 1 MB run_id",
            ia,
            &huge,
            unary!(
                cl,
                accept_deletions,
                pb::AcceptDeletionsRequest {
                    run_id: huge.clone(),
                    reason: "r".into(),
                    ticket: "T".into(),
                    accepted_by: String::new()
                }
            ),
        ),
        case_v(
            "AcceptDeletions",
            "a run_id of 1,024 bytes",
            nf,
            &long_id,
            unary!(
                cl,
                accept_deletions,
                pb::AcceptDeletionsRequest {
                    run_id: long_id.clone(),
                    reason: "r".into(),
                    ticket: "T".into(),
                    accepted_by: String::new()
                }
            ),
        ),
        case_v(
            "AcceptDeletions",
            "a 1 MB reason",
            ia,
            &huge,
            unary!(
                cl,
                accept_deletions,
                pb::AcceptDeletionsRequest {
                    run_id: run_id.clone(),
                    reason: huge.clone(),
                    ticket: "T".into(),
                    accepted_by: String::new()
                }
            ),
        ),
        case_v(
            "AcceptDeletions",
            "a 1 MB ticket",
            ia,
            &huge,
            unary!(
                cl,
                accept_deletions,
                pb::AcceptDeletionsRequest {
                    run_id: run_id.clone(),
                    reason: "r".into(),
                    ticket: huge.clone(),
                    accepted_by: String::new()
                }
            ),
        ),
    ];
    // SubmitAction: each field of the action past its bound.
    type Mutate = fn(&mut pb::ActionRequested, &str);
    let action_fields: Vec<(&str, Mutate)> = vec![
        ("a 1 MB identity_external_id", |r, h| {
            r.identity_external_id = h.into()
        }),
        ("a 1 MB group_external_id", |r, h| {
            r.group_external_id = h.into()
        }),
        ("a 1 MB attribute", |r, h| r.attribute = h.into()),
        ("a 1 MB value", |r, h| r.value = h.into()),
        ("a 1 MB reason", |r, h| r.reason = h.into()),
        ("a 1 MB ticket", |r, h| r.ticket = h.into()),
        ("a 1 MB idempotency_key", |r, h| {
            r.idempotency_key = h.into()
        }),
        ("a plan of 1,000 steps", |r, _| {
            r.plan = vec![
                pb::ActionStep {
                    kind: 1,
                    ..Default::default()
                };
                1_000
            ]
        }),
        ("a plan step with a 1 MB value", |r, h| {
            r.plan = vec![pb::ActionStep {
                kind: 5,
                attribute: "a".into(),
                value: h.into(),
                ..Default::default()
            }]
        }),
    ];
    for (what, mutate) in action_fields {
        let mut r = action_request(ActionKind::Deactivate, &user, "", "big", "T");
        mutate(&mut r, &huge);
        big.push(case_v(
            "SubmitAction",
            what,
            ia,
            &huge,
            unary!(
                cl,
                submit_action,
                pb::SubmitActionRequest {
                    source_id: "hr".into(),
                    request: Some(r)
                }
            ),
        ));
    }
    big.push(case_v(
        "AddCosignature",
        "a 1 MB note",
        ia,
        &huge,
        unary!(
            cl,
            add_cosignature,
            pb::AddCosignatureRequest { note: huge.clone() }
        ),
    ));
    big.push(case_v(
        "SetProjectorPaused",
        "a 1 MB reason",
        ia,
        &huge,
        unary!(
            cl,
            set_projector_paused,
            pb::SetProjectorPausedRequest {
                paused: true,
                reason: huge.clone()
            }
        ),
    ));
    run_batch("oversized", big, &mut tally, &mut failures).await;
    still_serving(&gl, &ch, &token).await;

    // ---- Batch 3: hostile values.
    let mut hostile = Vec::new();
    for (what, id) in hostile_source_ids() {
        let what = format!("source_id: {what}");
        hostile.extend([
            case_v(
                "GetSource",
                &what,
                ia,
                &id,
                unary!(
                    cl,
                    get_source,
                    pb::GetSourceRequest {
                        source_id: id.clone(),
                        as_of: None
                    }
                ),
            ),
            case_v(
                "GetSource",
                format!("{what}, as of seq 1"),
                ia,
                &id,
                unary!(
                    cl,
                    get_source,
                    pb::GetSourceRequest {
                        source_id: id.clone(),
                        as_of: Some(pb::AsOf {
                            point: Some(pb::as_of::Point::Seq(1))
                        })
                    }
                ),
            ),
            case_v(
                "ListRuns",
                &what,
                ia,
                &id,
                unary!(
                    cl,
                    list_runs,
                    pb::ListRunsRequest {
                        source_id: id.clone(),
                        limit: 0
                    }
                ),
            ),
            case_v(
                "GetIdentity",
                &what,
                ia,
                &id,
                unary!(
                    cl,
                    get_identity,
                    pb::GetIdentityRequest {
                        source_id: id.clone(),
                        external_id: user.clone(),
                        ..Default::default()
                    }
                ),
            ),
            case_v(
                "GetIdentity",
                format!("{what}, as of seq {applied}"),
                ia,
                &id,
                unary!(
                    cl,
                    get_identity,
                    pb::GetIdentityRequest {
                        source_id: id.clone(),
                        external_id: user.clone(),
                        as_of: Some(pb::AsOf {
                            point: Some(pb::as_of::Point::Seq(applied))
                        }),
                        ..Default::default()
                    }
                ),
            ),
            case_v(
                "TriggerSync",
                &what,
                ia,
                &id,
                unary!(
                    cl,
                    trigger_sync,
                    pb::TriggerSyncRequest {
                        source_id: id.clone(),
                        mode: 0
                    }
                ),
            ),
            case_v(
                "CheckReadiness",
                &what,
                ia,
                &id,
                unary!(
                    cl,
                    check_readiness,
                    pb::CheckReadinessRequest {
                        source_ids: vec![id.clone()],
                        ..Default::default()
                    }
                ),
            ),
            case_v(
                "SubmitAction",
                &what,
                ia,
                &id,
                unary!(
                    cl,
                    submit_action,
                    pb::SubmitActionRequest {
                        source_id: id.clone(),
                        request: Some(action_request(
                            ActionKind::Deactivate,
                            &user,
                            "",
                            "hostile-src",
                            "T"
                        ))
                    }
                ),
            ),
            case_v(
                "ListActions",
                &what,
                ia,
                &id,
                unary!(
                    cl,
                    list_actions,
                    pb::ListActionsRequest {
                        source_id: id.clone(),
                        ..Default::default()
                    }
                ),
            ),
            case_v(
                "WatchAlerts",
                &what,
                ia,
                &id,
                unary!(
                    cl,
                    watch_alerts,
                    pb::WatchAlertsRequest {
                        after_alert_seq: 0,
                        source_ids: vec![id.clone()]
                    }
                ),
            ),
            case_v(
                "Replay",
                &what,
                ia,
                &id,
                streaming!(
                    cl,
                    replay,
                    pb::ReplayRequest {
                        source_id: id.clone(),
                        ..Default::default()
                    }
                ),
            ),
            case_v(
                "ExportEvidence",
                &what,
                ia,
                &id,
                streaming!(
                    cl,
                    export_evidence,
                    pb::ExportEvidenceRequest {
                        source_id: id.clone(),
                        ..Default::default()
                    }
                ),
            ),
            case_v(
                "VerifyRange",
                format!("stream: {what}"),
                ia,
                &id,
                unary!(
                    cl,
                    verify_range,
                    pb::VerifyRangeRequest {
                        stream: id.clone(),
                        ..Default::default()
                    }
                ),
            ),
        ]);
    }
    // Ids the server made (runs, actions) or a source's own (identities) may
    // hold anything; a hostile one is simply not there.
    for (what, id) in [
        ("wildcard >", ">".to_owned()),
        ("NUL", "a\0b".into()),
        ("an escape sequence", "\u{1b}[2J".into()),
        ("dots and spaces", "a.b c".into()),
    ] {
        hostile.extend([
            case_v(
                "GetRun",
                format!("run_id: {what}"),
                nf,
                &id,
                unary!(cl, get_run, pb::GetRunRequest { run_id: id.clone() }),
            ),
            case_v(
                "GetIdentity",
                format!("external_id: {what}"),
                nf,
                &id,
                unary!(
                    cl,
                    get_identity,
                    pb::GetIdentityRequest {
                        source_id: "hr".into(),
                        external_id: id.clone(),
                        ..Default::default()
                    }
                ),
            ),
            case_v(
                "GetAction",
                format!("action_id: {what}"),
                nf,
                &id,
                unary!(
                    cl,
                    get_action,
                    pb::GetActionRequest {
                        action_id: id.clone(),
                        as_of: None
                    }
                ),
            ),
            case_v(
                "ReportExternalAttempt",
                format!("action_id: {what}"),
                nf,
                &id,
                unary!(
                    cl,
                    report_external_attempt,
                    pb::ReportExternalAttemptRequest {
                        action_id: id.clone(),
                        step: 1,
                        ..Default::default()
                    }
                ),
            ),
            case_v(
                "AcceptDeletions",
                format!("run_id: {what}"),
                nf,
                &id,
                unary!(
                    cl,
                    accept_deletions,
                    pb::AcceptDeletionsRequest {
                        run_id: id.clone(),
                        reason: "r".into(),
                        ticket: "T".into(),
                        accepted_by: String::new()
                    }
                ),
            ),
            case_v(
                "Replay",
                format!("action_id: {what}"),
                Code::Ok,
                &id,
                streaming!(
                    cl,
                    replay,
                    pb::ReplayRequest {
                        action_id: id.clone(),
                        ..Default::default()
                    }
                ),
            ),
        ]);
    }
    let seq = |n: u64| {
        Some(pb::AsOf {
            point: Some(pb::as_of::Point::Seq(n)),
        })
    };
    let at_us = |t: i64| {
        Some(pb::AsOf {
            point: Some(pb::as_of::Point::TimeUs(t)),
        })
    };
    let no_point = Some(pb::AsOf { point: None });
    hostile.extend([
        case(
            "GetSource",
            "unknown source",
            nf,
            unary!(
                cl,
                get_source,
                pb::GetSourceRequest {
                    source_id: "nosuch".into(),
                    as_of: None
                }
            ),
        ),
        case(
            "GetSource",
            "as_of naming no point",
            ia,
            unary!(
                cl,
                get_source,
                pb::GetSourceRequest {
                    source_id: "hr".into(),
                    as_of: no_point
                }
            ),
        ),
        case(
            "GetSource",
            "as_of seq 0",
            ia,
            unary!(
                cl,
                get_source,
                pb::GetSourceRequest {
                    source_id: "hr".into(),
                    as_of: seq(0)
                }
            ),
        ),
        case(
            "GetSource",
            "as_of seq u64::MAX",
            ia,
            unary!(
                cl,
                get_source,
                pb::GetSourceRequest {
                    source_id: "hr".into(),
                    as_of: seq(u64::MAX)
                }
            ),
        ),
        case(
            "GetSource",
            "as_of time i64::MIN",
            nf,
            unary!(
                cl,
                get_source,
                pb::GetSourceRequest {
                    source_id: "hr".into(),
                    as_of: at_us(i64::MIN)
                }
            ),
        ),
        case(
            "GetSource",
            "as_of time -1 µs",
            nf,
            unary!(
                cl,
                get_source,
                pb::GetSourceRequest {
                    source_id: "hr".into(),
                    as_of: at_us(-1)
                }
            ),
        ),
        case(
            "GetSource",
            "as_of time i64::MAX (now)",
            Code::Ok,
            unary!(
                cl,
                get_source,
                pb::GetSourceRequest {
                    source_id: "hr".into(),
                    as_of: at_us(i64::MAX)
                }
            ),
        ),
        case(
            "ListRuns",
            "unknown source",
            nf,
            unary!(
                cl,
                list_runs,
                pb::ListRunsRequest {
                    source_id: "nosuch".into(),
                    limit: 0
                }
            ),
        ),
        case(
            "GetIdentity",
            "entity_type 99",
            ia,
            unary!(
                cl,
                get_identity,
                pb::GetIdentityRequest {
                    source_id: "hr".into(),
                    external_id: user.clone(),
                    entity_type: 99,
                    as_of: None
                }
            ),
        ),
        case(
            "GetIdentity",
            "entity_type -1",
            ia,
            unary!(
                cl,
                get_identity,
                pb::GetIdentityRequest {
                    source_id: "hr".into(),
                    external_id: user.clone(),
                    entity_type: -1,
                    as_of: None
                }
            ),
        ),
        case(
            "GetIdentity",
            "as_of seq 0",
            ia,
            unary!(
                cl,
                get_identity,
                pb::GetIdentityRequest {
                    source_id: "hr".into(),
                    external_id: user.clone(),
                    entity_type: 0,
                    as_of: seq(0)
                }
            ),
        ),
        case(
            "GetIdentity",
            "unknown source",
            nf,
            unary!(
                cl,
                get_identity,
                pb::GetIdentityRequest {
                    source_id: "nosuch".into(),
                    external_id: user.clone(),
                    ..Default::default()
                }
            ),
        ),
        case(
            "GetLedgerStatus",
            "with_digest",
            Code::Ok,
            unary!(
                cl,
                get_ledger_status,
                pb::GetLedgerStatusRequest { with_digest: true }
            ),
        ),
        case(
            "ListPoisonEvents",
            "after_seq u64::MAX",
            Code::Ok,
            unary!(
                cl,
                list_poison_events,
                pb::ListPoisonEventsRequest {
                    after_seq: u64::MAX,
                    limit: 0
                }
            ),
        ),
        case(
            "TriggerSync",
            "mode 99",
            ia,
            unary!(
                cl,
                trigger_sync,
                pb::TriggerSyncRequest {
                    source_id: "hr".into(),
                    mode: 99
                }
            ),
        ),
        case(
            "TriggerSync",
            "mode -1",
            ia,
            unary!(
                cl,
                trigger_sync,
                pb::TriggerSyncRequest {
                    source_id: "hr".into(),
                    mode: -1
                }
            ),
        ),
        case(
            "TriggerSync",
            "unknown source",
            nf,
            unary!(
                cl,
                trigger_sync,
                pb::TriggerSyncRequest {
                    source_id: "nosuch".into(),
                    mode: 0
                }
            ),
        ),
        case(
            "CheckReadiness",
            "an empty id in the scope",
            ia,
            unary!(
                cl,
                check_readiness,
                pb::CheckReadinessRequest {
                    source_ids: vec!["hr".into(), " ".into()],
                    ..Default::default()
                }
            ),
        ),
        case(
            "SubmitAction",
            "unknown source",
            nf,
            unary!(
                cl,
                submit_action,
                pb::SubmitActionRequest {
                    source_id: "nosuch".into(),
                    request: Some(action_request(
                        ActionKind::Deactivate,
                        &user,
                        "",
                        "nosuch-src",
                        "T"
                    ))
                }
            ),
        ),
        case(
            "GetAction",
            "as_of naming no point",
            ia,
            unary!(
                cl,
                get_action,
                pb::GetActionRequest {
                    action_id: own_id.clone(),
                    as_of: Some(pb::AsOf { point: None })
                }
            ),
        ),
        case(
            "GetAction",
            "as_of seq u64::MAX",
            ia,
            unary!(
                cl,
                get_action,
                pb::GetActionRequest {
                    action_id: own_id.clone(),
                    as_of: seq(u64::MAX)
                }
            ),
        ),
        case(
            "ListActions",
            "outcome 99",
            ia,
            unary!(
                cl,
                list_actions,
                pb::ListActionsRequest {
                    source_id: "hr".into(),
                    outcome: 99,
                    limit: 0
                }
            ),
        ),
        case(
            "ListActions",
            "outcome -1",
            ia,
            unary!(
                cl,
                list_actions,
                pb::ListActionsRequest {
                    source_id: "hr".into(),
                    outcome: -1,
                    limit: 0
                }
            ),
        ),
        case(
            "ReportExternalAttempt",
            "step 0",
            ia,
            unary!(
                cl,
                report_external_attempt,
                pb::ReportExternalAttemptRequest {
                    action_id: ext_id.clone(),
                    step: 0,
                    http_status: 204,
                    ..Default::default()
                }
            ),
        ),
        case(
            "ReportExternalAttempt",
            "step u32::MAX",
            ia,
            unary!(
                cl,
                report_external_attempt,
                pb::ReportExternalAttemptRequest {
                    action_id: ext_id.clone(),
                    step: u32::MAX,
                    http_status: 204,
                    ..Default::default()
                }
            ),
        ),
        case(
            "ReportExternalAttempt",
            "http_status u32::MAX",
            ia,
            unary!(
                cl,
                report_external_attempt,
                pb::ReportExternalAttemptRequest {
                    action_id: ext_id.clone(),
                    step: 1,
                    http_status: u32::MAX,
                    ..Default::default()
                }
            ),
        ),
        case(
            "ReportExternalAttempt",
            "error_class 99",
            ia,
            unary!(
                cl,
                report_external_attempt,
                pb::ReportExternalAttemptRequest {
                    action_id: ext_id.clone(),
                    step: 1,
                    http_status: 204,
                    error_class: 99,
                    ..Default::default()
                }
            ),
        ),
        case(
            "ReportExternalAttempt",
            "a summary with NUL",
            ia,
            unary!(
                cl,
                report_external_attempt,
                pb::ReportExternalAttemptRequest {
                    action_id: ext_id.clone(),
                    step: 1,
                    http_status: 204,
                    request_summary: "PATCH\0x".into(),
                    ..Default::default()
                }
            ),
        ),
        case(
            "ReportExternalAttempt",
            "an action govledger performs itself",
            Code::FailedPrecondition,
            unary!(
                cl,
                report_external_attempt,
                pb::ReportExternalAttemptRequest {
                    action_id: own_id.clone(),
                    step: 1,
                    http_status: 204,
                    ..Default::default()
                }
            ),
        ),
        case(
            "Replay",
            "from_seq after to_seq",
            ia,
            streaming!(
                cl,
                replay,
                pb::ReplayRequest {
                    from_seq: 9,
                    to_seq: 3,
                    ..Default::default()
                }
            ),
        ),
        case(
            "Replay",
            "from_us after to_us",
            ia,
            streaming!(
                cl,
                replay,
                pb::ReplayRequest {
                    from_us: 9,
                    to_us: 3,
                    ..Default::default()
                }
            ),
        ),
        case(
            "Replay",
            "from_us i64::MIN",
            Code::Ok,
            streaming!(
                cl,
                replay,
                pb::ReplayRequest {
                    from_us: i64::MIN,
                    ..Default::default()
                }
            ),
        ),
        case(
            "Replay",
            "from_us i64::MAX",
            ia,
            streaming!(
                cl,
                replay,
                pb::ReplayRequest {
                    from_us: i64::MAX,
                    ..Default::default()
                }
            ),
        ),
        case(
            "GetInclusionProof",
            "seq past the tree",
            ia,
            unary!(
                cl,
                get_inclusion_proof,
                pb::GetInclusionProofRequest {
                    seq: applied + 1,
                    tree_size: applied
                }
            ),
        ),
        case(
            "GetConsistencyProof",
            "size1 after size2",
            ia,
            unary!(
                cl,
                get_consistency_proof,
                pb::GetConsistencyProofRequest { size1: 3, size2: 2 }
            ),
        ),
        case(
            "GetConsistencyProof",
            "size1 0",
            ia,
            unary!(
                cl,
                get_consistency_proof,
                pb::GetConsistencyProofRequest { size1: 0, size2: 2 }
            ),
        ),
        case(
            "VerifyRange",
            "from_seq after to_seq",
            ia,
            unary!(
                cl,
                verify_range,
                pb::VerifyRangeRequest {
                    from_seq: 5,
                    to_seq: 2,
                    ..Default::default()
                }
            ),
        ),
        case(
            "VerifyRange",
            "an unknown stream",
            nf,
            unary!(
                cl,
                verify_range,
                pb::VerifyRangeRequest {
                    stream: "NO_SUCH_COPY".into(),
                    ..Default::default()
                }
            ),
        ),
        case(
            "ExportEvidence",
            "an unknown source",
            nf,
            streaming!(
                cl,
                export_evidence,
                pb::ExportEvidenceRequest {
                    source_id: "nosuch".into(),
                    ..Default::default()
                }
            ),
        ),
        case(
            "ExportEvidence",
            "entity_type without external_id",
            ia,
            streaming!(
                cl,
                export_evidence,
                pb::ExportEvidenceRequest {
                    source_id: "hr".into(),
                    entity_type: 2,
                    ..Default::default()
                }
            ),
        ),
        case(
            "ExportEvidence",
            "entity_type 99",
            ia,
            streaming!(
                cl,
                export_evidence,
                pb::ExportEvidenceRequest {
                    source_id: "hr".into(),
                    external_id: user.clone(),
                    entity_type: 99,
                    ..Default::default()
                }
            ),
        ),
        case(
            "ExportEvidence",
            "a negative from_us",
            ia,
            streaming!(
                cl,
                export_evidence,
                pb::ExportEvidenceRequest {
                    source_id: "hr".into(),
                    from_us: -1,
                    ..Default::default()
                }
            ),
        ),
        case(
            "ExportEvidence",
            "from_us after to_us",
            ia,
            streaming!(
                cl,
                export_evidence,
                pb::ExportEvidenceRequest {
                    source_id: "hr".into(),
                    from_us: 9,
                    to_us: 3,
                    ..Default::default()
                }
            ),
        ),
        case(
            "ExportEvidence",
            "a report of one identity",
            ia,
            streaming!(
                cl,
                export_evidence,
                pb::ExportEvidenceRequest {
                    source_id: "hr".into(),
                    external_id: "u1".into(),
                    with_report: true,
                    ..Default::default()
                }
            ),
        ),
        case(
            "AcceptDeletions",
            "a blank reason",
            ia,
            unary!(
                cl,
                accept_deletions,
                pb::AcceptDeletionsRequest {
                    run_id: run_id.clone(),
                    reason: " \t".into(),
                    ticket: "T".into(),
                    accepted_by: String::new()
                }
            ),
        ),
        case(
            "AcceptDeletions",
            "a ticket with NUL",
            ia,
            unary!(
                cl,
                accept_deletions,
                pb::AcceptDeletionsRequest {
                    run_id: run_id.clone(),
                    reason: "r".into(),
                    ticket: "T\0".into(),
                    accepted_by: String::new()
                }
            ),
        ),
        case(
            "AcceptDeletions",
            "a COMPLETE run (nothing to accept)",
            Code::FailedPrecondition,
            unary!(
                cl,
                accept_deletions,
                pb::AcceptDeletionsRequest {
                    run_id: run_id.clone(),
                    reason: "r".into(),
                    ticket: "T".into(),
                    accepted_by: String::new()
                }
            ),
        ),
    ]);
    // SubmitAction: hostile values in the action itself.
    let now_us = chrono_now_us();
    type Edit = Box<dyn Fn(&mut pb::ActionRequested)>;
    let action_values: Vec<(&str, Code, Edit)> = vec![
        ("kind 99", ia, Box::new(|r| r.kind = 99)),
        ("kind -1", ia, Box::new(|r| r.kind = -1)),
        ("entity_type -7", ia, Box::new(|r| r.entity_type = -7)),
        (
            "a plan step of kind 0",
            ia,
            Box::new(|r| r.plan = vec![pb::ActionStep::default()]),
        ),
        (
            "deadline i64::MIN",
            ia,
            Box::new(|r| r.deadline_us = i64::MIN),
        ),
        (
            "a deadline a second ago",
            ia,
            Box::new(move |r| r.deadline_us = now_us - 1_000_000),
        ),
        (
            "deadline i64::MAX",
            ia,
            Box::new(|r| r.deadline_us = i64::MAX),
        ),
        ("steps 7 for one step", ia, Box::new(|r| r.steps = 7)),
        (
            "a ticket with NUL",
            ia,
            Box::new(|r| r.ticket = "T\0-1".into()),
        ),
        (
            "a reason with an escape sequence",
            ia,
            Box::new(|r| r.reason = "leaver \u{1b}[2J".into()),
        ),
        (
            "a blank identity",
            ia,
            Box::new(|r| r.identity_external_id = " ".into()),
        ),
        (
            "a blank idempotency key",
            ia,
            Box::new(|r| r.idempotency_key = "\t".into()),
        ),
        (
            "an identity the source never reported",
            nf,
            Box::new(|r| r.identity_external_id = "*.>".into()),
        ),
    ];
    for (what, want, mutate) in action_values {
        let mut r = action_request(
            ActionKind::Deactivate,
            &user,
            "",
            &format!("hostile-{what}"),
            "T",
        );
        mutate(&mut r);
        hostile.push(case(
            "SubmitAction",
            what,
            want,
            unary!(
                cl,
                submit_action,
                pb::SubmitActionRequest {
                    source_id: "hr".into(),
                    request: Some(r)
                }
            ),
        ));
    }
    hostile.push(case(
        "WatchAlerts",
        "after_alert_seq u64::MAX (past any alert: a watch that waits)",
        Code::Ok,
        unary!(
            cl,
            watch_alerts,
            pb::WatchAlertsRequest {
                after_alert_seq: u64::MAX,
                source_ids: vec![]
            }
        ),
    ));
    hostile.push(case(
        "AddCosignature",
        "a note that is none (a NUL, line breaks, a fake signature line)",
        ia,
        unary!(
            cl,
            add_cosignature,
            pb::AddCosignatureRequest {
                note: "origin\u{0}\n1\nAAAA\n\n— origin AAAA\nFAKE LOG LINE\n".into()
            }
        ),
    ));
    hostile.push(case(
        "SetProjectorPaused",
        "a reason with a NUL and a line break (log injection)",
        ia,
        unary!(
            cl,
            set_projector_paused,
            pb::SetProjectorPausedRequest {
                paused: true,
                reason: "ok\u{0}\nFAKE LOG LINE".into()
            }
        ),
    ));
    run_batch("hostile", hostile, &mut tally, &mut failures).await;
    still_serving(&gl, &ch, &token).await;

    // ---- Batch 4: bytes on the gRPC path that are not the request message.
    let rpcs = rpcs_in_proto();
    let mut malformed = Vec::new();
    let five_mib = {
        // A GetRun-shaped message (field 1, 5 MiB string): over tonic's 4 MiB.
        let mut b = vec![0x0a, 0x80, 0x80, 0xc0, 0x02];
        b.resize(5 + 5 * 1024 * 1024, b'r');
        Bytes::from(b)
    };
    let payloads: Vec<(&str, Bytes, bool)> = vec![
        (
            "a varint that never ends",
            Bytes::from_static(&[0xff; 11]),
            false,
        ),
        (
            "a field longer than the message",
            Bytes::from_static(&[0x0a, 0x10, b'a']),
            false,
        ),
        (
            "field 1 holding invalid UTF-8",
            Bytes::from_static(&[0x0a, 0x02, 0xff, 0xfe]),
            true,
        ),
        (
            "wire type 7 (none such)",
            Bytes::from_static(&[0x0f, 0x00]),
            false,
        ),
        ("field number 0", Bytes::from_static(&[0x00, 0x01]), false),
    ];
    for rpc in &rpcs {
        let rpc: &'static str = Box::leak(rpc.clone().into_boxed_str());
        let streaming = STREAMING.contains(&rpc);
        for (what, body, fieldless_ok) in &payloads {
            let want = if *fieldless_ok && NO_FIELDS.contains(&rpc) {
                Code::Ok
            } else {
                ia
            };
            let call = raw(
                ch.clone(),
                token.clone(),
                format!("/govledger.v1.Ledger/{rpc}"),
                body.clone(),
                Vec::new(),
                streaming,
            );
            malformed.push(case(
                rpc,
                format!("raw bytes: {what}"),
                want,
                Box::pin(async move { call.await.map(|_| ()) }),
            ));
        }
        // Past tonic's 4 MiB limit: refused by size before decoding (tonic's
        // code is OUT_OF_RANGE).
        let call = raw(
            ch.clone(),
            token.clone(),
            format!("/govledger.v1.Ledger/{rpc}"),
            five_mib.clone(),
            Vec::new(),
            streaming,
        );
        malformed.push(case(
            rpc,
            "a 5 MiB message",
            Code::OutOfRange,
            Box::pin(async move { call.await.map(|_| ()) }),
        ));
    }
    // Deadlines: 1 ns ahead (tonic ends the call, CANCELLED "Timeout
    // expired", unless the answer was quicker) and 11,000 years ahead.
    for (what, timeout, want, alt) in [
        (
            "a deadline 1 ns ahead",
            "1n",
            Code::Cancelled,
            Some(Code::Ok),
        ),
        (
            "a deadline 99,999,999 hours ahead",
            "99999999H",
            Code::Ok,
            None,
        ),
    ] {
        let body = Bytes::from(prost::Message::encode_to_vec(&pb::GetSourceRequest {
            source_id: "hr".into(),
            as_of: None,
        }));
        let call = raw(
            ch.clone(),
            token.clone(),
            "/govledger.v1.Ledger/GetSource".into(),
            body,
            vec![("grpc-timeout", timeout.to_owned())],
            false,
        );
        malformed.push(Case {
            alt,
            ..case(
                "GetSource",
                what,
                want,
                Box::pin(async move { call.await.map(|_| ()) }),
            )
        });
    }
    let call = raw(
        ch.clone(),
        token.clone(),
        "/govledger.v1.Ledger/NoSuchRpc".into(),
        Bytes::new(),
        Vec::new(),
        false,
    );
    malformed.push(case(
        "(unknown rpc)",
        "/govledger.v1.Ledger/NoSuchRpc",
        Code::Unimplemented,
        Box::pin(async move { call.await.map(|_| ()) }),
    ));
    run_batch("malformed", malformed, &mut tally, &mut failures).await;
    still_serving(&gl, &ch, &token).await;

    // Every RPC of the proto was asked something in every batch but the
    // last, and the ledger kept its NATS connection.
    for rpc in &rpcs {
        let n: usize = tally
            .iter()
            .filter(|((r, _), _)| r == rpc)
            .map(|(_, n)| n)
            .sum();
        assert!(n >= 7, "{rpc}: only {n} cases");
    }
    assert_eq!(
        nats_connections(&monitor).await,
        conns,
        "the ledger's NATS connection changed"
    );
    let total: usize = tally.values().sum();
    let mut table = format!("hostile campaign: {total} cases\n");
    let mut by_rpc: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for ((rpc, code), n) in &tally {
        by_rpc.entry(rpc).or_default().push(format!("{code} {n}"));
    }
    for (rpc, codes) in by_rpc {
        table.push_str(&format!("  {rpc}: {}\n", codes.join(", ")));
    }
    eprintln!("{table}");
    assert!(
        failures.is_empty(),
        "{} of {total} cases answered wrongly:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

fn chrono_now_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}
