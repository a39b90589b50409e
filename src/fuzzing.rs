//! Fuzz bodies: one `pub fn <target>(data: &[u8])` per fuzz target, each
//! driving the real production entry points with untrusted bytes. A body
//! returns normally on any input; a panic or a hang is a finding.
//!
//! The `fuzz/` crate (cargo-fuzz, nightly) and `tests/fuzz_smoke.rs` (stable,
//! CI) call these same functions, so the campaign and CI fuzz one code path.
//! Not an API: hidden from the docs, its input layouts may change freely.
//!
//! Input layouts (chosen so that a mutation of one part leaves the others
//! intact, which keeps libFuzzer's corpus meaningful):
//! - [`events`]: stream message payloads separated by [`MSG_SEP`];
//! - [`scim`]: one mode byte, then the response body;
//! - [`rest`]: one shape byte, the `Link` header line, `\n`, the total
//!   header (empty = none), `\n`, then the response body;
//! - [`config`]: the TOML text;
//! - [`grpc`]: one request-type byte (index into [`GRPC_REQUESTS`]), then
//!   the protobuf bytes of that request;
//! - [`bundle`]: the bundle's JSON;
//! - [`hrfile`]: one mode byte (CSV with a trailer, JSON Lines with a
//!   trailer, CSV counted by a control file), then the file's bytes.

use std::sync::{Arc, OnceLock};

use govledger_ingest::{
    rest::{RestShape, next_link},
    scim,
};
use govledger_projector::{
    Folded, OwnedMsg, Store, fold, fold_batch, fold_in_memory, store::digest_of_working,
};
use govledger_proto::v1::{
    AcceptDeletionsRequest, CheckReadinessRequest, CreateCheckpointRequest, EntityType,
    ExportEvidenceRequest, GetActionRequest, GetConsistencyProofRequest, GetIdentityRequest,
    GetInclusionProofRequest, GetLedgerStatusRequest, GetRunRequest, GetSourceRequest, LedgerMeta,
    ListActionsRequest, ListCheckpointsRequest, ListPoisonEventsRequest, ListRunsRequest,
    ListSourcesRequest, ReplayRequest, ReportExternalAttemptRequest, SetProjectorPausedRequest,
    SubmitActionRequest, TriggerSyncRequest, VerifyRangeRequest, WatchAlertsRequest,
};
use govledger_stream::seal::{ProducerKey, Trust};
use prost::Message as _;

use crate::{
    api::{service, validate},
    audit::{checkpoints::LIST_CHECKPOINTS_MAX, evidence},
    config::{Config, secrets::SecretSource},
    workers::action_intake,
};

/// Separates the stream messages of one [`events`] input.
pub const MSG_SEP: &[u8] = b"\n--govledger-msg--\n";
/// Most messages one [`events`] input folds (the rest is ignored): bounds a
/// body's work per input.
pub const MSGS_MAX: usize = 256;
/// The seed of the producer key the seed corpora were sealed with (the
/// testkit's test producer key): the fold trusts it, so a seed's runs
/// reach their verdicts and a mutation can break or keep a seal.
pub const SEED_PRODUCER_SEED: [u8; 32] = [0x5e; 32];
/// The `now` (µs since the epoch) an action request is validated against:
/// fixed, so a body's answer does not depend on the clock.
pub const NOW_US: i64 = 1_790_000_000_000_000;
/// The tree size and stream end the proof and verify requests are checked
/// against (the API reads them from the store; any fixed one will do).
pub const TREE_SIZE: u64 = 1_000;

/// A fuzz body: any bytes, returns normally.
pub type Body = fn(&[u8]);

/// Every fuzz target: its name (the `fuzz/fuzz_targets/<name>.rs` file and
/// the `fuzz/corpus/<name>/` folder) and its body.
pub const TARGETS: &[(&str, Body)] = &[
    ("events", events),
    ("scim", scim),
    ("rest", rest),
    ("config", config),
    ("grpc", grpc),
    ("bundle", bundle),
    ("hrfile", hrfile),
];

fn trust() -> Arc<Trust> {
    static TRUST: OnceLock<Arc<Trust>> = OnceLock::new();
    TRUST
        .get_or_init(|| {
            Arc::new(Trust::new([
                ProducerKey::from_seed(SEED_PRODUCER_SEED).public_key()
            ]))
        })
        .clone()
}

/// Splits an [`events`] input into stream messages (sequences from 1).
pub fn messages(data: &[u8]) -> Vec<OwnedMsg> {
    let mut out = Vec::new();
    let mut rest = data;
    while out.len() < MSGS_MAX {
        let (payload, next) = match find(rest, MSG_SEP) {
            Some(i) => (&rest[..i], Some(&rest[i + MSG_SEP.len()..])),
            None => (rest, None),
        };
        let seq = out.len() as u64 + 1;
        out.push(OwnedMsg {
            seq,
            subject: format!("govledger.fuzz.{seq}"),
            stored_at_us: seq as i64 * 1_000,
            payload: payload.to_vec().into(),
            leaf: None,
        });
        match next {
            Some(n) => rest = n,
            None => break,
        }
    }
    out
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The inverse of [`messages`]: payloads joined into one [`events`] input.
pub fn join_messages<'a>(payloads: impl IntoIterator<Item = &'a [u8]>) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, p) in payloads.into_iter().enumerate() {
        if i > 0 {
            out.extend_from_slice(MSG_SEP);
        }
        out.extend_from_slice(p);
    }
    out
}

/// The store [`events`] folds against when no caller gives one: empty, opened
/// once per process in a temporary folder (kept until the process exits).
fn shared_store() -> Option<&'static Store> {
    static STORE: OnceLock<Option<(tempfile::TempDir, Store)>> = OnceLock::new();
    STORE
        .get_or_init(|| {
            let dir = tempfile::Builder::new()
                .prefix("govledger-fuzz-store-")
                .tempdir()
                .ok()?;
            let store = Store::open(dir.path(), 8 << 20).ok()?.with_trust(trust());
            Some((dir, store))
        })
        .as_ref()
        .map(|(_, s)| s)
}

/// Event decoding and folding: the messages folded in memory (the reference
/// fold) and as a batch over an empty sled store (the projector's path,
/// without the commit) must give the same records.
pub fn events(data: &[u8]) {
    match shared_store() {
        Some(store) => events_in(store, data),
        None => drop(events_in_memory(data)),
    }
}

fn events_in_memory(data: &[u8]) -> fold::Working {
    let msgs = messages(data);
    let mut w = fold::Working {
        trust: trust(),
        ..Default::default()
    };
    fold_in_memory(&mut w, &msgs);
    // What a commit writes: every changed record encoded.
    let _ = w.changes();
    let _ = w.identity_changes();
    let _ = w.new_identities();
    w
}

/// [`events`] against `store`, which must be empty (it is only read).
pub fn events_in(store: &Store, data: &[u8]) {
    let model = events_in_memory(data);
    let msgs = messages(data);
    let batch = match fold_batch(store, &LedgerMeta::default(), &msgs) {
        Ok(Folded::Batch(b)) => b,
        Ok(Folded::Nothing { .. }) => panic!("a batch from sequence 1 folded nothing"),
        // sled could not read: not the input's doing.
        Err(_) => return,
    };
    let _ = batch.working.changes();
    let digest = |w: &fold::Working| digest_of_working(w).map_err(|e| e.to_string());
    assert_eq!(
        digest(&batch.working),
        digest(&model),
        "the batched fold and the in-memory fold differ"
    );
    assert_eq!(
        batch.meta.last_applied_seq,
        msgs.len() as u64,
        "a batch must apply (or poison) every message"
    );
}

/// SCIM response parsing. The mode byte: 0 a Users list, 1 a Groups list,
/// 2 one Group resource (a group read for its members), 3 a
/// `/ServiceProviderConfig` answer.
pub fn scim(data: &[u8]) {
    let Some((&mode, body)) = data.split_first() else {
        return;
    };
    match mode % 4 {
        0 => {
            let _ = scim::parse_list(body, EntityType::User, "Users:startIndex=1");
        }
        1 => {
            let _ = scim::parse_list(body, EntityType::Group, "Groups:startIndex=1");
        }
        2 => {
            let _ = scim::parse_resource(body, EntityType::Group, "Groups:member_read");
        }
        _ => {
            let _ = scim::parse_service_provider_config(body);
        }
    }
}

/// An HR export as the file connector parses it (`hrfile::parse`): any
/// bytes give records and rejections, never a panic, and what it says holds
/// together: every record has an id, every rejection names its line, the
/// rows counted are the records and the rejected rows before a trailer.
pub fn hrfile(data: &[u8]) {
    use govledger_ingest::hrfile::{Columns, Completeness, FileSpec, Format, parse};
    let Some((&mode, body)) = data.split_first() else {
        return;
    };
    let (format, completeness) = match mode % 3 {
        0 => (Format::Csv, Completeness::Trailer("TRAILER".into())),
        1 => (Format::JsonLines, Completeness::Trailer("TRAILER".into())),
        _ => (Format::Csv, Completeness::ControlFile(".ctl".into())),
    };
    let spec = FileSpec {
        dir: std::path::PathBuf::new(),
        pattern: "*".into(),
        format,
        columns: Columns {
            id: "employee_id".into(),
            status: Some("status".into()),
            email: Some("email".into()),
            manager: Some("manager".into()),
            end_date: Some("end_date".into()),
            name: Some("name".into()),
        },
        status_words: govledger_ingest::rest::ActiveWords {
            inverted: false,
            active: vec!["active".into()],
            inactive: vec!["terminated".into()],
        },
        completeness,
        attributes: vec![("employee_id".into(), "employee_id".into())],
        delimiter: b',',
    };
    let Ok(p) = parse(&spec, "f.csv", std::io::Cursor::new(body)) else {
        return;
    };
    for item in &p.items {
        match item {
            scim::Item::Observed(r) => {
                assert!(!r.external_id.trim().is_empty(), "a record without id")
            }
            scim::Item::Rejected(r) => assert!(
                r.page_key.contains(" line "),
                "a rejection names no line: {r:?}"
            ),
        }
    }
}

/// The REST shapes the [`rest`] target parses with: the worked examples
/// (Link headers, a next URL in the body, a cursor in the body, page
/// numbers) and a page-number source with its total in a header. Each with
/// the URL its first page is asked with.
pub fn rest_shapes() -> &'static [(RestShape, String)] {
    static SHAPES: OnceLock<Vec<(RestShape, String)>> = OnceLock::new();
    SHAPES.get_or_init(|| {
        let mut out = Vec::new();
        for text in [
            include_str!("../examples/github.toml"),
            include_str!("../examples/okta.toml"),
            include_str!("../examples/graph.toml"),
            include_str!("../examples/slack.toml"),
            REST_TOTAL_HEADER_TOML,
        ] {
            let Ok(cfg) = Config::from_toml(text, "fuzz") else {
                continue;
            };
            for (i, s) in cfg.sources.iter().enumerate() {
                if let Ok(src) = s.resolve(i, &AnySecret)
                    && let Some(shape) = src.spec.rest
                {
                    let url = format!(
                        "{}/{}?{}",
                        src.spec.base_url.trim_end_matches('/'),
                        shape.path,
                        shape.query_with(&format!("{}=100", shape.size_param))
                    );
                    out.push((shape, url));
                }
            }
        }
        out
    })
}

/// A REST source paged by numbers whose total is a response header.
const REST_TOTAL_HEADER_TOML: &str = r#"
[[sources]]
id = "api"
kind = "rest"
base_url = "http://127.0.0.1:9/api"
paging = "page-number"
[sources.rest]
path = "users"
entity = "user"
items_pointer = ""
id_field = "id"
active_field = "active"
total_header = "X-Total-Count"
"#;

/// REST page parsing, next links and cursors included.
pub fn rest(data: &[u8]) {
    let shapes = rest_shapes();
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    let Some((shape, url)) = shapes.get(usize::from(which) % shapes.len().max(1)) else {
        return;
    };
    let (link, rest) = line(rest);
    let (total, body) = line(rest);
    let link = String::from_utf8_lossy(link);
    let total = String::from_utf8_lossy(total);
    let links: Vec<&str> = link.split('\r').filter(|l| !l.is_empty()).collect();
    for l in &links {
        let _ = next_link(l);
    }
    let total = (!total.is_empty()).then_some(total.as_ref());
    if let Ok(page) = govledger_ingest::rest::parse_page(body, total, &links, url, shape, "fuzz")
        && let Some(next) = page.next_cursor
    {
        // How the engine keys and logs the next page.
        let _ = govledger_stream::redact_url(&next);
    }
}

fn line(data: &[u8]) -> (&[u8], &[u8]) {
    match data.iter().position(|b| *b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[]),
    }
}

/// Every environment variable a fuzzed config names is set: resolution goes
/// on past the secrets to everything after them.
struct AnySecret;

impl SecretSource for AnySecret {
    fn env(&self, name: &str) -> Option<String> {
        Some(format!("fuzz-secret-of-{name}"))
    }
}

/// A file the config names as a secret is read from here instead: a fuzzed
/// path must never make the body read the host's files (`/proc/kmsg`
/// blocks).
const SECRET_FILE: &str = "/dev/null";

/// Config parsing, validation and resolution, as `govledger serve` runs them
/// (without reading any file a config names).
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(mut cfg) = Config::from_toml(text, "fuzz.toml") else {
        return;
    };
    let _ = cfg.validate();
    let _ = cfg.nats.external_url();
    let _ = cfg.stream_spec();
    let _ = cfg.publisher_config();
    let _ = cfg.runner_config();
    let null = || Some(std::path::PathBuf::from(SECRET_FILE));
    for s in &mut cfg.sources {
        let a = &mut s.auth;
        for f in [
            &mut a.token_file,
            &mut a.password_file,
            &mut a.client_secret_file,
        ] {
            if f.is_some() {
                *f = null();
            }
        }
    }
    let n = &mut cfg.nats;
    for f in [&mut n.password_file, &mut n.token_file] {
        if f.is_some() {
            *f = null();
        }
    }
    // Validation requires it to be a regular file, which /dev/null is not.
    n.nkey_seed_file = None;
    if let Ok(resolved) = cfg.resolve(&AnySecret) {
        for s in &resolved.sources {
            let _ = s.writable();
        }
    }
}

/// The request types of the `Ledger` service, in [`grpc`]'s selector order.
pub const GRPC_REQUESTS: &[&str] = &[
    "ListSources",
    "GetSource",
    "ListRuns",
    "GetRun",
    "GetIdentity",
    "GetLedgerStatus",
    "ListPoisonEvents",
    "TriggerSync",
    "CheckReadiness",
    "SubmitAction",
    "GetAction",
    "ListActions",
    "ReportExternalAttempt",
    "WatchAlerts",
    "Replay",
    "GetInclusionProof",
    "GetConsistencyProof",
    "CreateCheckpoint",
    "ListCheckpoints",
    "VerifyRange",
    "ExportEvidence",
    "AcceptDeletions",
    "SetProjectorPaused",
];

/// Every gRPC request decoder: the bytes decoded as the selected request
/// type (what tonic's prost codec does) and run through the validation its
/// RPC runs before it reads anything (the checks of `api/service.rs`, in
/// its order).
pub fn grpc(data: &[u8]) {
    let Some((&which, b)) = data.split_first() else {
        return;
    };
    // Each arm: decode, then the same `validate` calls as the RPC.
    let checked = match usize::from(which) % GRPC_REQUESTS.len() {
        0 => ListSourcesRequest::decode(b).map(|_| Ok(())),
        1 => GetSourceRequest::decode(b).map(|r| {
            validate::required("source_id", &r.source_id)?;
            validate::as_of_opt(r.as_of.as_ref()).map(|_| ())
        }),
        2 => ListRunsRequest::decode(b).map(|r| {
            validate::required("source_id", &r.source_id)?;
            validate::page_limit(r.limit, service::LIST_RUNS_DEFAULT, service::LIST_RUNS_MAX)
                .map(|_| ())
        }),
        3 => GetRunRequest::decode(b).map(|r| validate::required("run_id", &r.run_id).map(|_| ())),
        4 => GetIdentityRequest::decode(b).map(|r| {
            validate::required("source_id", &r.source_id)?;
            validate::required("external_id", &r.external_id)?;
            validate::entity_type(r.entity_type)?;
            validate::as_of_opt(r.as_of.as_ref()).map(|_| ())
        }),
        5 => GetLedgerStatusRequest::decode(b).map(|_| Ok(())),
        6 => ListPoisonEventsRequest::decode(b).map(|r| {
            validate::page_limit(
                r.limit,
                service::LIST_POISON_DEFAULT,
                service::LIST_POISON_MAX,
            )
            .map(|_| ())
        }),
        7 => TriggerSyncRequest::decode(b).map(|r| {
            validate::required("source_id", &r.source_id)?;
            validate::sync_mode(r.mode).map(|_| ())
        }),
        8 => CheckReadinessRequest::decode(b).map(|r| {
            validate::readiness_scope(&r.source_ids, service::LIST_RUNS_MAX)?;
            validate::id_list("identity_external_ids", &r.identity_external_ids)
        }),
        9 => SubmitActionRequest::decode(b).map(|r| {
            validate::required("source_id", &r.source_id)?;
            let request = validate::action_request(r.request, NOW_US)?;
            let _ = action_intake::steps_of(&request);
            Ok(())
        }),
        10 => GetActionRequest::decode(b).map(|r| {
            validate::required("action_id", &r.action_id)?;
            validate::as_of_opt(r.as_of.as_ref()).map(|_| ())
        }),
        11 => ListActionsRequest::decode(b).map(|r| {
            validate::required("source_id", &r.source_id)?;
            validate::page_limit(
                r.limit,
                service::LIST_ACTIONS_DEFAULT,
                service::LIST_RUNS_MAX,
            )?;
            validate::action_outcome(r.outcome).map(|_| ())
        }),
        12 => ReportExternalAttemptRequest::decode(b).map(|r| {
            validate::required("action_id", &r.action_id)?;
            // The action's step count comes from the store: one step.
            validate::external_attempt(r.step, 1, r.http_status, &r.request_summary)?;
            action_intake::error_class(r.error_class)
                .map(|_| ())
                .map_err(|e| validate::Invalid(e.to_string()))
        }),
        13 => WatchAlertsRequest::decode(b).map(|r| validate::id_list("source_ids", &r.source_ids)),
        14 => ReplayRequest::decode(b).map(|r| validate::replay(&r)),
        15 => GetInclusionProofRequest::decode(b).map(|r| {
            let size = if r.tree_size == 0 {
                TREE_SIZE
            } else {
                r.tree_size
            };
            validate::inclusion_seq(r.seq, size)
        }),
        16 => GetConsistencyProofRequest::decode(b)
            .map(|r| validate::consistency_sizes(r.size1, r.size2)),
        17 => CreateCheckpointRequest::decode(b).map(|_| Ok(())),
        18 => ListCheckpointsRequest::decode(b).map(|r| {
            validate::page_limit(
                r.limit,
                service::LIST_CHECKPOINTS_DEFAULT,
                LIST_CHECKPOINTS_MAX,
            )
            .map(|_| ())
        }),
        19 => VerifyRangeRequest::decode(b).map(|r| {
            let to = if r.to_seq == 0 { TREE_SIZE } else { r.to_seq };
            validate::verify_range(&r, to, "GOVLEDGER").map(|_| ())
        }),
        20 => ExportEvidenceRequest::decode(b).map(|mut r| validate::export(&mut r)),
        21 => AcceptDeletionsRequest::decode(b).map(|mut r| {
            // The RPC overwrites it with the caller's name.
            r.accepted_by = "fuzz".into();
            validate::accept_deletions(&r)
        }),
        _ => SetProjectorPausedRequest::decode(b).map(|r| validate::reason(&r.reason).map(|_| ())),
    };
    // A refusal reaches the client as the status the RPC's `?` makes of it.
    if let Ok(Err(invalid)) = checked {
        let _ = tonic::Status::from(invalid);
    }
}

/// The bundle verifier (`govledger verify-bundle`): never panics, and says
/// `ok` exactly when its verdict is VERIFIED.
pub fn bundle(data: &[u8]) {
    for key in [None, Some(PINNED_KEY)] {
        let r = evidence::verify::verify_bundle(data, key);
        assert_eq!(
            r.ok,
            r.verdict == evidence::verify::Verdict::Verified,
            "ok and verdict disagree: {r:?}"
        );
    }
}

/// A well-formed public key no bundle is signed with: the pinned-key path.
const PINNED_KEY: &str = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";
