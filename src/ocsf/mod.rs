//! The OCSF feed: every read and write attempt and every lifecycle outcome
//! of the ledger as an OCSF JSON record, for SIEMs that parse OCSF and not
//! our .proto files.
//!
//! - [`records`] (pure) maps one ledger event to its records: a page read
//!   (`PageFetched` / `PageFailed`), a write attempt (`ActionAttempted`) and a
//!   read-back (`ActionVerified`) are API Activity (6003); an action's
//!   conclusion is Account Change (3001: deactivate = Disable, delete =
//!   Delete, set-attribute = Other) or Group Management (3006: add / remove
//!   membership = Add / Remove User), its status from the outcome.
//!   `metadata.uid` is the event's stream sequence; what OCSF has no field
//!   for (the outcome's name and detail, the source, run and action ids, the
//!   ticket) is in `unmapped`.
//! - OCSF 1.1.0 by default (the classes most SIEMs parse today); 1.8.0 (the
//!   newest the official schema package validates) with `ocsf.version`.
//!   Every record validates against its class's schema (tests/ocsf.rs).
//!
//! Layout:
//! - this file: the mapping, [`records`] (pure);
//! - `tests`: the records, field by field;
//! - [`feed`]: the role that reads the stream, waits for the projection
//!   (a conclusion's request comes from it), and publishes.

pub mod feed;

use govledger_proto::v1::{
    ActionKind, ActionOutcome, ActionRequested, EntityType, Event, event::Body,
};
use serde_json::{Value, json};

/// The OCSF versions govledger emits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
pub enum Version {
    #[default]
    #[serde(rename = "1.1.0")]
    V1_1,
    #[serde(rename = "1.8.0")]
    V1_8,
}

impl Version {
    pub fn as_str(self) -> &'static str {
        match self {
            Version::V1_1 => "1.1.0",
            Version::V1_8 => "1.8.0",
        }
    }
}

/// One OCSF record and the subject token of its class.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// `api_activity`, `account_change` or `group_management`.
    pub class: &'static str,
    pub json: Value,
}

const API_ACTIVITY: (u32, &str) = (6003, "API Activity");
const ACCOUNT_CHANGE: (u32, &str) = (3001, "Account Change");
const GROUP_MANAGEMENT: (u32, &str) = (3006, "Group Management");

/// OCSF status: (status_id, status).
const SUCCESS: (u32, &str) = (1, "Success");
const FAILURE: (u32, &str) = (2, "Failure");
const UNKNOWN: (u32, &str) = (0, "Unknown");

/// OCSF severity: (severity_id, severity).
const INFORMATIONAL: (u32, &str) = (1, "Informational");
const LOW: (u32, &str) = (2, "Low");
const MEDIUM: (u32, &str) = (3, "Medium");
const HIGH: (u32, &str) = (4, "High");

/// Where an event sits in the ledger.
#[derive(Debug, Clone, Copy)]
pub struct At {
    /// Its stream sequence (`metadata.uid`).
    pub seq: u64,
    /// When the stream stored it (Unix microseconds).
    pub stored_at_us: i64,
}

fn short(name: &str, prefix: &str) -> String {
    name.strip_prefix(prefix).unwrap_or(name).to_owned()
}

fn entity(t: i32) -> String {
    EntityType::try_from(t).map_or("records".into(), |t| {
        short(t.as_str_name(), "ENTITY_TYPE_").to_lowercase()
    })
}

fn kind_name(k: ActionKind) -> String {
    short(k.as_str_name(), "ACTION_KIND_")
        .to_lowercase()
        .replace('_', "-")
}

/// The fields every record has.
#[allow(clippy::too_many_arguments)]
fn base(
    class: (u32, &str),
    activity: (u32, &str),
    status: (u32, &str),
    severity: (u32, &str),
    ev: &Event,
    at: At,
    v: Version,
    message: String,
) -> serde_json::Map<String, Value> {
    let (class_uid, class_name) = class;
    let category = class_uid / 1000;
    let category_name = match category {
        3 => "Identity & Access Management",
        _ => "Application Activity",
    };
    let mut metadata = json!({
        "product": {
            "name": "govledger",
            "vendor_name": "govledger",
            "version": env!("CARGO_PKG_VERSION"),
        },
        "version": v.as_str(),
        "uid": at.seq.to_string(),
        "logged_time": at.stored_at_us / 1_000,
    });
    let correlation = if ev.action_id.is_empty() {
        &ev.run_id
    } else {
        &ev.action_id
    };
    if !correlation.is_empty() {
        metadata["correlation_uid"] = json!(correlation);
    }
    let mut m = serde_json::Map::new();
    for (k, val) in [
        ("class_uid", json!(class_uid)),
        ("class_name", json!(class_name)),
        ("category_uid", json!(category)),
        ("category_name", json!(category_name)),
        ("activity_id", json!(activity.0)),
        ("activity_name", json!(activity.1)),
        (
            "type_uid",
            json!(u64::from(class_uid) * 100 + u64::from(activity.0)),
        ),
        ("type_name", json!(format!("{class_name}: {}", activity.1))),
        ("time", json!(ev.occurred_at_us / 1_000)),
        ("status_id", json!(status.0)),
        ("status", json!(status.1)),
        ("severity_id", json!(severity.0)),
        ("severity", json!(severity.1)),
        ("message", json!(message)),
        ("metadata", metadata),
    ] {
        m.insert(k.to_owned(), val);
    }
    m
}

/// What the ledger knows of the event beside OCSF's fields.
fn unmapped(ev: &Event, extra: Value) -> Value {
    let mut u = json!({
        "source_id": ev.source_id,
        "event_id": ev.event_id,
        "attempt": ev.attempt,
    });
    for (k, id) in [("run_id", &ev.run_id), ("action_id", &ev.action_id)] {
        if !id.is_empty() {
            u[k] = json!(id);
        }
    }
    if let (Value::Object(u), Value::Object(extra)) = (&mut u, extra) {
        u.extend(extra);
    }
    u
}

/// govledger, the caller of every API the ledger records.
fn govledger_endpoint() -> Value {
    json!({ "svc_name": "govledger", "name": "govledger" })
}

/// The records of one event (none for events that are neither an attempt
/// nor a lifecycle outcome). `request`: the action's request, for write-path
/// events (from the projection).
pub fn records(ev: &Event, at: At, request: Option<&ActionRequested>, v: Version) -> Vec<Record> {
    let Some(body) = &ev.body else {
        return Vec::new();
    };
    match body {
        Body::PageFetched(p) => vec![page_fetched(ev, at, p, v)],
        Body::PageFailed(p) => vec![page_failed(ev, at, p, v)],
        Body::ActionAttempted(a) => vec![attempted(ev, at, request, a, v)],
        Body::ActionVerified(a) => vec![verified(ev, at, request, a, v)],
        Body::ActionConcluded(c) => concluded(ev, at, request, c, v),
        _ => Vec::new(),
    }
}

/// One API call, as its API Activity record describes it.
struct Call<'a> {
    activity: (u32, &'static str),
    status: (u32, &'static str),
    severity: (u32, &'static str),
    /// `api.operation`.
    op: String,
    message: String,
    /// The action's request (the actor's name), for write-path calls.
    request: Option<&'a ActionRequested>,
    /// `status_detail`, when the call failed with a reason.
    detail: Option<String>,
    /// `status_code`: the HTTP answer, when it is worth naming (0 = none).
    status_code: u32,
    /// What OCSF has no field for (`unmapped`, beside the event's ids).
    extra: Value,
}

/// The API Activity record of `c`: the common fields, the call, who made it
/// (govledger, for the requester when known), from where and to which source.
fn api_record(ev: &Event, at: At, v: Version, c: Call<'_>) -> Record {
    let mut r = base(
        API_ACTIVITY,
        c.activity,
        c.status,
        c.severity,
        ev,
        at,
        v,
        c.message,
    );
    r.insert(
        "api".into(),
        json!({ "operation": c.op, "service": { "name": ev.source_id } }),
    );
    r.insert("actor".into(), actor(c.request));
    r.insert("src_endpoint".into(), govledger_endpoint());
    r.insert(
        "dst_endpoint".into(),
        json!({ "svc_name": ev.source_id, "name": ev.source_id }),
    );
    if let Some(d) = c.detail {
        r.insert("status_detail".into(), json!(d));
    }
    if c.status_code != 0 {
        r.insert("status_code".into(), json!(c.status_code.to_string()));
    }
    r.insert("unmapped".into(), unmapped(ev, c.extra));
    Record {
        class: "api_activity",
        json: Value::Object(r),
    }
}

/// A page read: API Activity / Read, succeeded.
fn page_fetched(ev: &Event, at: At, p: &govledger_proto::v1::PageFetched, v: Version) -> Record {
    let op = format!("list {}", entity(p.entity_type));
    let message = format!(
        "{op} at {}: page {} read, {} items",
        ev.source_id, p.page_index, p.item_count
    );
    api_record(
        ev,
        at,
        v,
        Call {
            activity: (2, "Read"),
            status: SUCCESS,
            severity: INFORMATIONAL,
            op,
            message,
            request: None,
            detail: None,
            status_code: 0,
            extra: json!({
                "page_key": p.page_key,
                "page_index": p.page_index,
                "http_status": p.http_status,
                "item_count": p.item_count,
                "declared_total": p.declared_total,
                "latency_ms": p.latency_ms,
                "last_page": p.last_page,
            }),
        },
    )
}

/// A page read that failed: API Activity / Read, failed (retried or given up).
fn page_failed(ev: &Event, at: At, p: &govledger_proto::v1::PageFailed, v: Version) -> Record {
    let op = format!("list {}", entity(p.entity_type));
    let then = if p.will_retry {
        "; retried"
    } else {
        "; given up"
    };
    let message = format!(
        "{op} at {}: page {} failed ({}){then}",
        ev.source_id, p.page_index, p.message
    );
    api_record(
        ev,
        at,
        v,
        Call {
            activity: (2, "Read"),
            status: FAILURE,
            severity: if p.will_retry { LOW } else { MEDIUM },
            op,
            message,
            request: None,
            detail: Some(p.message.clone()),
            status_code: p.http_status,
            extra: json!({
                "page_key": p.page_key,
                "page_index": p.page_index,
                "http_status": p.http_status,
                "error_class": short(
                    govledger_proto::v1::ErrorClass::try_from(p.error_class)
                        .map_or("ERROR_CLASS_UNSPECIFIED", |c| c.as_str_name()),
                    "ERROR_CLASS_"
                ),
                "retry_after_ms": p.retry_after_ms,
                "will_retry": p.will_retry,
            }),
        },
    )
}

/// A write attempt: API Activity / Update (Delete for a delete), by its HTTP answer.
fn attempted(
    ev: &Event,
    at: At,
    request: Option<&ActionRequested>,
    a: &govledger_proto::v1::ActionAttempted,
    v: Version,
) -> Record {
    let kind = step_kind(request, a.step);
    // A directory's write has no HTTP status: its error class says (none = success).
    let unspecified = govledger_proto::v1::ErrorClass::Unspecified as i32;
    let ok =
        (200..300).contains(&a.http_status) || (a.http_status == 0 && a.error_class == unspecified);
    let op = format!("{} {}", kind_name(kind), target(request));
    let answer = match (a.http_status, a.error_class) {
        (0, c) if c == unspecified => "success".to_owned(),
        (0, c) => govledger_proto::v1::ErrorClass::try_from(c)
            .map(|c| {
                c.as_str_name()
                    .trim_start_matches("ERROR_CLASS_")
                    .to_owned()
            })
            .unwrap_or_else(|_| "nothing".to_owned()),
        (n, _) => format!("HTTP {n}"),
    };
    let message = format!(
        "{op} at {}: write attempt {} answered {answer}",
        ev.source_id, ev.attempt
    );
    api_record(
        ev,
        at,
        v,
        Call {
            activity: match kind {
                ActionKind::Delete => (4, "Delete"),
                _ => (3, "Update"),
            },
            status: if ok { SUCCESS } else { FAILURE },
            severity: if ok { INFORMATIONAL } else { MEDIUM },
            op,
            message,
            request,
            detail: None,
            status_code: a.http_status,
            extra: json!({
                "step": a.step,
                "request_summary": a.request_summary,
                "http_status": a.http_status,
                "latency_ms": a.latency_ms,
                "external": a.external,
                "reported_by": a.reported_by,
            }),
        },
    )
}

/// A read-back: API Activity / Read; whether it shows the intent is in `unmapped`.
fn verified(
    ev: &Event,
    at: At,
    request: Option<&ActionRequested>,
    a: &govledger_proto::v1::ActionVerified,
    v: Version,
) -> Record {
    let kind = step_kind(request, a.step);
    let op = format!("read back {} {}", kind_name(kind), target(request));
    // A read-back is published only when answered; 0 = not HTTP (a directory).
    let answered = (200..300).contains(&a.http_status) || a.target_absent || a.http_status == 0;
    let shows = if a.unknown {
        "cannot show whether it is in effect"
    } else if a.in_effect {
        "shows it in effect"
    } else {
        "shows it NOT in effect"
    };
    let message = format!("{op} at {}: the read-back {shows}", ev.source_id);
    api_record(
        ev,
        at,
        v,
        Call {
            activity: (2, "Read"),
            status: if answered { SUCCESS } else { FAILURE },
            severity: if answered && a.in_effect {
                INFORMATIONAL
            } else {
                MEDIUM
            },
            op,
            message,
            request,
            detail: None,
            status_code: 0,
            extra: json!({
                "step": a.step,
                "in_effect": a.in_effect,
                "target_absent": a.target_absent,
                "unknown": a.unknown,
                "http_status": a.http_status,
                "observed": a.observed,
            }),
        },
    )
}

/// govledger acting for the requester (when known).
fn actor(request: Option<&ActionRequested>) -> Value {
    match request.filter(|r| !r.requested_by.is_empty()) {
        Some(r) => json!({ "invoked_by": "govledger", "user": { "name": r.requested_by } }),
        None => json!({ "invoked_by": "govledger" }),
    }
}

/// The kind of step `step` (0-based) of a request.
fn step_kind(request: Option<&ActionRequested>, step: u32) -> ActionKind {
    let Some(r) = request else {
        return ActionKind::Unspecified;
    };
    r.plan
        .get(step as usize)
        .map_or(r.kind, |s| s.kind)
        .try_into()
        .unwrap_or(ActionKind::Unspecified)
}

fn target(request: Option<&ActionRequested>) -> String {
    request.map_or_else(
        || "(request not known)".to_owned(),
        |r| format!("user {}", r.identity_external_id),
    )
}

/// (status, severity) of an action's outcome: only CONFIRMED is a success;
/// FAILED, OVERDUE and DRIFTED are failures; what the evidence cannot
/// settle (UNCONFIRMED, UNVERIFIED, UNVERIFIABLE, ...) is Unknown.
fn outcome_status(o: ActionOutcome) -> ((u32, &'static str), (u32, &'static str)) {
    match o {
        ActionOutcome::Confirmed => (SUCCESS, INFORMATIONAL),
        ActionOutcome::Failed | ActionOutcome::Overdue | ActionOutcome::Drifted => (FAILURE, HIGH),
        _ => (UNKNOWN, HIGH),
    }
}

/// The lifecycle records of a conclusion: one per step of the action.
fn concluded(
    ev: &Event,
    at: At,
    request: Option<&ActionRequested>,
    c: &govledger_proto::v1::ActionConcluded,
    v: Version,
) -> Vec<Record> {
    let Some(req) = request else {
        // Without its request the record would name no user: OCSF needs one.
        tracing::warn!(seq = at.seq, action_id = %ev.action_id,
            "OCSF: the conclusion's request is not in the projection; no lifecycle record");
        return Vec::new();
    };
    let overall = ActionOutcome::try_from(c.outcome).unwrap_or_default();
    let steps: Vec<(ActionKind, String)> = if req.plan.is_empty() {
        vec![(
            ActionKind::try_from(req.kind).unwrap_or_default(),
            req.group_external_id.clone(),
        )]
    } else {
        req.plan
            .iter()
            .map(|s| {
                (
                    ActionKind::try_from(s.kind).unwrap_or_default(),
                    s.group_external_id.clone(),
                )
            })
            .collect()
    };
    let mut out = Vec::new();
    for (i, (kind, group)) in steps.into_iter().enumerate() {
        let step = c.steps.iter().find(|s| s.step as usize == i);
        let outcome = step
            .and_then(|s| ActionOutcome::try_from(s.outcome).ok())
            .filter(|o| *o != ActionOutcome::Unspecified)
            .unwrap_or(overall);
        let detail = step.map_or(c.detail.as_str(), |s| s.detail.as_str());
        let (status, severity) = outcome_status(outcome);
        let outcome_name = short(outcome.as_str_name(), "ACTION_OUTCOME_");
        let (class, activity, class_token) = match kind {
            ActionKind::Deactivate => (ACCOUNT_CHANGE, (5, "Disable"), "account_change"),
            ActionKind::Delete => (ACCOUNT_CHANGE, (6, "Delete"), "account_change"),
            ActionKind::AddMembership => (GROUP_MANAGEMENT, (3, "Add User"), "group_management"),
            ActionKind::RemoveMembership => {
                (GROUP_MANAGEMENT, (4, "Remove User"), "group_management")
            }
            _ => (ACCOUNT_CHANGE, (99, "Other"), "account_change"),
        };
        let user = &req.identity_external_id;
        let message = match kind {
            ActionKind::AddMembership | ActionKind::RemoveMembership => format!(
                "{} user {user} {} group {group} at {}: {outcome_name}",
                kind_name(kind),
                if kind == ActionKind::AddMembership {
                    "to"
                } else {
                    "from"
                },
                ev.source_id
            ),
            _ => format!(
                "{} user {user} at {}: {outcome_name}",
                kind_name(kind),
                ev.source_id
            ),
        };
        let mut r = base(class, activity, status, severity, ev, at, v, message);
        r.insert("user".into(), json!({ "uid": user }));
        r.insert("status_detail".into(), json!(detail));
        let in_class_actor = class_token == "account_change" || v == Version::V1_8;
        if class_token == "group_management" {
            r.insert("group".into(), json!({ "uid": group }));
        }
        if in_class_actor {
            r.insert("actor".into(), actor(Some(req)));
        }
        let mut extra = json!({
            "action_kind": kind_name(kind),
            "step": i,
            "outcome": outcome_name,
            "outcome_detail": detail,
            "action_outcome": short(overall.as_str_name(), "ACTION_OUTCOME_"),
            "requested_by": req.requested_by,
            "reason": req.reason,
            "ticket": req.ticket,
        });
        if kind == ActionKind::SetAttribute {
            extra["attribute"] = json!(req.attribute);
        }
        r.insert("unmapped".into(), unmapped(ev, extra));
        out.push(Record {
            class: class_token,
            json: Value::Object(r),
        });
    }
    out
}

#[cfg(test)]
mod tests;
