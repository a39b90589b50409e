//! Request validation: the one way the API checks required fields, page
//! limits, enum numbers, as-of points and ranges before anything is read.
//! Every failure is an [`Invalid`] (`InvalidArgument` on the wire) whose
//! message says what to send instead.

use govledger_proto::v1::{
    AcceptDeletionsRequest, ActionOutcome, ActionRequested, AsOf, EntityType,
    ExportEvidenceRequest, ReplayRequest, SyncMode, VerifyRangeRequest, as_of,
};

use crate::audit::{asof::PointAt, verify::VERIFY_MESSAGES_MAX};

/// A malformed request; the message says what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Invalid(pub String);

impl Invalid {
    fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }
}

/// Longest id a request may carry (source, run, action, identity, group,
/// idempotency key, stream), in bytes.
pub const ID_BYTES_MAX: usize = 1_024;
/// Longest stream name `VerifyRange` reads, in characters.
pub const STREAM_NAME_CHARS_MAX: usize = 128;
/// Longest action `reason` and external `request_summary`, in characters.
pub const REASON_CHARS_MAX: usize = 1_000;
/// Longest action `ticket`, in characters.
pub const TICKET_CHARS_MAX: usize = 200;
/// Longest attribute name of SET_ATTRIBUTE, in bytes.
pub const ATTRIBUTE_BYTES_MAX: usize = 256;
/// Longest attribute value of SET_ATTRIBUTE, in bytes.
pub const VALUE_BYTES_MAX: usize = 4_096;
/// Most steps of one action's plan.
pub const PLAN_STEPS_MAX: usize = 16;
/// Most ids in one list field (readiness scopes, alert filters).
pub const IDS_MAX: usize = 1_000;
/// How far ahead an action's deadline may be, in microseconds (one year).
pub const DEADLINE_AHEAD_US_MAX: i64 = 366 * 24 * 3_600 * 1_000_000;
/// Characters of a client's value an error message quotes, at most.
pub const EXCERPT_CHARS_MAX: usize = 48;

/// A client's value as an error quotes it: escaped, and cut to
/// [`EXCERPT_CHARS_MAX`] characters with its full length named.
pub fn excerpt(value: &str) -> String {
    let n = value.chars().count();
    if n <= EXCERPT_CHARS_MAX {
        return format!("{value:?}");
    }
    let head: String = value.chars().take(EXCERPT_CHARS_MAX).collect();
    format!("{head:?}… ({} bytes)", value.len())
}

/// `value` is at most `max` bytes.
fn bounded<'a>(field: &str, value: &'a str, max: usize) -> Result<&'a str, Invalid> {
    if value.len() > max {
        return Err(Invalid(format!(
            "{field} is {} bytes, over the maximum {max}",
            value.len()
        )));
    }
    Ok(value)
}

/// `value` is at most `max` characters and, unless `multiline`, one line.
fn text<'a>(field: &str, value: &'a str, max: usize, multiline: bool) -> Result<&'a str, Invalid> {
    let chars = value.chars().count();
    if chars > max {
        return Err(Invalid(format!(
            "{field} is {chars} characters, over the maximum {max}"
        )));
    }
    let control = |c: char| c.is_control() && !(multiline && matches!(c, '\n' | '\t'));
    if value.chars().any(control) {
        return Err(Invalid(format!(
            "{field} must be text without control characters"
        )));
    }
    Ok(value)
}

/// `value` is not blank and at most [`ID_BYTES_MAX`] bytes.
pub fn required<'a>(field: &str, value: &'a str) -> Result<&'a str, Invalid> {
    if value.trim().is_empty() {
        Err(Invalid(format!(
            "{field} is required (got an empty string)"
        )))
    } else {
        bounded(field, value, ID_BYTES_MAX)
    }
}

/// An optional id: empty, or at most [`ID_BYTES_MAX`] bytes.
pub fn optional_id<'a>(field: &str, value: &'a str) -> Result<&'a str, Invalid> {
    bounded(field, value, ID_BYTES_MAX)
}

/// A list of ids: at most [`IDS_MAX`], none blank or over [`ID_BYTES_MAX`].
pub fn id_list(field: &str, ids: &[String]) -> Result<(), Invalid> {
    if ids.len() > IDS_MAX {
        return Err(Invalid(format!(
            "{field} holds {} ids, over the maximum {IDS_MAX}",
            ids.len()
        )));
    }
    for id in ids {
        required(field, id)?;
    }
    Ok(())
}

/// Longest `accepted_by` and `ticket` of an acceptance, in characters.
pub const ACCEPT_NAME_CHARS_MAX: usize = 200;
/// Longest `reason` of an acceptance, in characters.
pub const ACCEPT_REASON_CHARS_MAX: usize = 1_000;

/// An acceptance of a run's deletions names the run, who accepts, why and
/// under which ticket; each within its bound, names on one line.
pub fn accept_deletions(r: &AcceptDeletionsRequest) -> Result<(), Invalid> {
    required("run_id", &r.run_id)?;
    let fields = [
        (
            "accepted_by",
            &r.accepted_by,
            ACCEPT_NAME_CHARS_MAX,
            "who accepts the deletions",
        ),
        (
            "reason",
            &r.reason,
            ACCEPT_REASON_CHARS_MAX,
            "why the deletions are real",
        ),
        (
            "ticket",
            &r.ticket,
            ACCEPT_NAME_CHARS_MAX,
            "the change or incident ticket that covers them",
        ),
    ];
    for (field, value, max, what) in fields {
        if value.trim().is_empty() {
            return Err(Invalid(format!(
                "{field} is required: {what} (got an empty string)"
            )));
        }
        let chars = value.chars().count();
        if chars > max {
            return Err(Invalid(format!(
                "{field} is {chars} characters, over the maximum {max}"
            )));
        }
        if field != "reason" && value.chars().any(char::is_control) {
            return Err(Invalid(format!(
                "{field} must be one line without control characters"
            )));
        }
    }
    Ok(())
}

/// Why an admin pauses or resumes the projector: required, one line, within
/// [`ACCEPT_REASON_CHARS_MAX`] characters.
pub fn reason(value: &str) -> Result<&str, Invalid> {
    if value.trim().is_empty() {
        return Err(Invalid(
            "reason is required: say why the projector is paused or resumed (it is logged with who asked)".into(),
        ));
    }
    let chars = value.chars().count();
    if chars > ACCEPT_REASON_CHARS_MAX {
        return Err(Invalid(format!(
            "reason is {chars} characters, over the maximum {ACCEPT_REASON_CHARS_MAX}"
        )));
    }
    if value.chars().any(char::is_control) {
        return Err(Invalid(
            "reason must be one line without control characters".into(),
        ));
    }
    Ok(value)
}

/// A submitted action: its request present and every field within its bound
/// (`now_us` judges the deadline). `steps` is the ledger's to set: a client
/// value other than 0 or the plan's length is refused.
pub fn action_request(r: Option<ActionRequested>, now_us: i64) -> Result<ActionRequested, Invalid> {
    let r = r.ok_or_else(|| Invalid::new("request is required (an ActionRequested)"))?;
    required("request.identity_external_id", &r.identity_external_id)?;
    required("request.idempotency_key", &r.idempotency_key)?;
    optional_id("request.group_external_id", &r.group_external_id)?;
    bounded("request.attribute", &r.attribute, ATTRIBUTE_BYTES_MAX)?;
    bounded("request.value", &r.value, VALUE_BYTES_MAX)?;
    text("request.reason", &r.reason, REASON_CHARS_MAX, true)?;
    text("request.ticket", &r.ticket, TICKET_CHARS_MAX, false)?;
    entity_type(r.entity_type).map_err(|e| Invalid(format!("request.{e}")))?;
    let kind_ok = |k: i32| {
        matches!(
            govledger_proto::v1::ActionKind::try_from(k),
            Ok(k) if k != govledger_proto::v1::ActionKind::Unspecified
        )
    };
    if r.plan.len() > PLAN_STEPS_MAX {
        return Err(Invalid(format!(
            "request.plan has {} steps, over the maximum {PLAN_STEPS_MAX}",
            r.plan.len()
        )));
    }
    let steps = r.plan.len().max(1);
    if r.steps != 0 && r.steps as usize != steps {
        return Err(Invalid(format!(
            "request.steps is {}: the ledger counts the steps itself; leave it 0",
            r.steps
        )));
    }
    if r.plan.is_empty() {
        if !kind_ok(r.kind) {
            return Err(Invalid(format!(
                "request.kind {} is not an action: DEACTIVATE=1, DELETE=2, REMOVE_MEMBERSHIP=3, ADD_MEMBERSHIP=4, SET_ATTRIBUTE=5",
                r.kind
            )));
        }
    } else {
        for (i, s) in r.plan.iter().enumerate() {
            if !kind_ok(s.kind) {
                return Err(Invalid(format!(
                    "request.plan[{i}].kind {} is not an action: DEACTIVATE=1, DELETE=2, REMOVE_MEMBERSHIP=3, ADD_MEMBERSHIP=4, SET_ATTRIBUTE=5",
                    s.kind
                )));
            }
            optional_id(
                &format!("request.plan[{i}].group_external_id"),
                &s.group_external_id,
            )?;
            bounded(
                &format!("request.plan[{i}].attribute"),
                &s.attribute,
                ATTRIBUTE_BYTES_MAX,
            )?;
            bounded(
                &format!("request.plan[{i}].value"),
                &s.value,
                VALUE_BYTES_MAX,
            )?;
        }
    }
    if r.deadline_us < 0 {
        return Err(Invalid::new(
            "request.deadline_us must be 0 (no deadline) or a time in microseconds since the epoch",
        ));
    }
    if r.deadline_us > 0 && r.deadline_us < now_us {
        return Err(Invalid::new(
            "request.deadline_us is in the past: give a future time (or 0 for no deadline)",
        ));
    }
    if r.deadline_us > now_us.saturating_add(DEADLINE_AHEAD_US_MAX) {
        return Err(Invalid::new(
            "request.deadline_us is more than a year ahead: give a nearer deadline (or 0 for none)",
        ));
    }
    Ok(r)
}

/// An external attempt: its step within the action's `steps`, its texts bounded.
pub fn external_attempt(
    step: u32,
    steps: usize,
    http_status: u32,
    summary: &str,
) -> Result<(), Invalid> {
    if step == 0 || step as usize > steps {
        return Err(Invalid(format!(
            "step {step} is not a step of this action: it has {steps} (steps count from 1)"
        )));
    }
    if http_status > 599 {
        return Err(Invalid(format!(
            "http_status {http_status} is not an HTTP status (0 = none, 100..=599)"
        )));
    }
    text("request_summary", summary, REASON_CHARS_MAX, true)?;
    Ok(())
}

/// A page size: at most `max`; 0 means `default`.
pub fn page_limit(limit: u32, default: u32, max: u32) -> Result<u32, Invalid> {
    if limit > max {
        return Err(Invalid(format!("limit {limit} is over the maximum {max}")));
    }
    Ok(if limit == 0 { default } else { limit })
}

/// A known `EntityType` number; unspecified (0) means a user.
pub fn entity_type(v: i32) -> Result<EntityType, Invalid> {
    match EntityType::try_from(v) {
        Ok(EntityType::Unspecified) => Ok(EntityType::User),
        Ok(t) => Ok(t),
        Err(_) => Err(Invalid(format!(
            "entity_type {v} is not a known EntityType (USER=1, GROUP=2, ENTITLEMENT=3, MEMBERSHIP=4)"
        ))),
    }
}

/// The point an `AsOf` names: a stream sequence ≥ 1 or a time.
pub fn as_of(a: &AsOf) -> Result<PointAt, Invalid> {
    match a.point {
        None => Err(Invalid::new(
            "as_of is set but names no point: give as_of.seq (a stream sequence ≥ 1) or as_of.time_us",
        )),
        Some(as_of::Point::Seq(n)) => std::num::NonZeroU64::new(n)
            .map(PointAt::Seq)
            .ok_or_else(|| Invalid::new("as_of.seq must be ≥ 1 (stream sequences start at 1)")),
        Some(as_of::Point::TimeUs(t)) => Ok(PointAt::TimeUs(t)),
    }
}

/// The point of an optional `AsOf` (`None`: answer as of now).
pub fn as_of_opt(a: Option<&AsOf>) -> Result<Option<PointAt>, Invalid> {
    a.map(as_of).transpose()
}

/// A source id that can name stream subjects: one NATS subject token (no
/// wildcard, dot, space or control character can reach a subject filter or a
/// lookup). The message quotes at most an excerpt of the id.
pub fn source_id(id: &str) -> Result<&str, Invalid> {
    use govledger_stream::subject::{SOURCE_ID_LEN_MAX, SourceIdError};
    match govledger_stream::subject::validate_source_id(id) {
        Ok(()) => Ok(id),
        Err(SourceIdError::Empty) => {
            Err(Invalid::new("source_id is required (got an empty string)"))
        }
        Err(SourceIdError::TooLong(_)) => Err(Invalid(format!(
            "source_id is {} bytes, over the maximum {SOURCE_ID_LEN_MAX}",
            id.len()
        ))),
        Err(SourceIdError::BadChar { ch, at, .. }) => Err(Invalid(format!(
            "source_id {} holds {ch:?} at byte {at}: a source id is ASCII letters, digits, '-' and '_' (one NATS subject token)",
            excerpt(id)
        ))),
    }
}

/// A list of source ids: at most `max`, each a [`source_id`].
pub fn source_ids(field: &str, ids: &[String], max: usize) -> Result<(), Invalid> {
    if ids.len() > max {
        return Err(Invalid(format!(
            "{field} holds {} ids, over the maximum {max}",
            ids.len()
        )));
    }
    for id in ids {
        source_id(id).map_err(|e| Invalid(format!("{field}: {e}")))?;
    }
    Ok(())
}

/// A `SyncMode` number; unspecified (0) means a full sync.
pub fn sync_mode(v: i32) -> Result<SyncMode, Invalid> {
    match SyncMode::try_from(v) {
        Ok(SyncMode::Unspecified | SyncMode::Full) => Ok(SyncMode::Full),
        Ok(SyncMode::Delta) => Ok(SyncMode::Delta),
        Err(_) => Err(Invalid(format!(
            "mode {v} is not a SyncMode (FULL=1, DELTA=2)"
        ))),
    }
}

/// An `ActionOutcome` number (unspecified = any outcome).
pub fn action_outcome(v: i32) -> Result<ActionOutcome, Invalid> {
    ActionOutcome::try_from(v).map_err(|_| Invalid(format!("outcome {v} is not an ActionOutcome")))
}

/// A readiness scope: at most `max` source ids, each a [`source_id`].
pub fn readiness_scope(ids: &[String], max: u32) -> Result<(), Invalid> {
    if ids.len() > max as usize {
        return Err(Invalid(format!(
            "at most {max} sources per readiness check"
        )));
    }
    source_ids("source_ids", ids, max as usize)
}

/// A replay's ranges are in order and its source id is valid.
pub fn replay(r: &ReplayRequest) -> Result<(), Invalid> {
    if r.to_seq > 0 && r.from_seq > r.to_seq {
        return Err(Invalid(format!(
            "from_seq {} is after to_seq {}",
            r.from_seq, r.to_seq
        )));
    }
    if r.to_us > 0 && r.from_us > r.to_us {
        return Err(Invalid::new("from_us is after to_us"));
    }
    if !r.source_id.is_empty() {
        source_id(&r.source_id)?;
    }
    for (field, v) in [
        ("run_id", &r.run_id),
        ("action_id", &r.action_id),
        ("identity_external_id", &r.identity_external_id),
    ] {
        optional_id(field, v)?;
    }
    Ok(())
}

/// An inclusion proof's sequence is inside the tree of `size` messages.
/// The largest tree size a proof may name (2^53: past any stream's
/// sequence, and exact in every JSON client).
pub const TREE_SIZE_MAX: u64 = 1 << 53;

fn tree_size(size: u64) -> Result<(), Invalid> {
    if size > TREE_SIZE_MAX {
        return Err(Invalid(format!(
            "tree size {size} is not one a stream holds (at most 2^53); ask for at most the ledger's size (GetLedgerStatus)"
        )));
    }
    Ok(())
}

pub fn inclusion_seq(seq: u64, size: u64) -> Result<(), Invalid> {
    tree_size(size)?;
    if seq == 0 || seq > size {
        return Err(Invalid(format!(
            "seq {seq} is not within the tree of {size} messages (sequences start at 1)"
        )));
    }
    Ok(())
}

/// A consistency proof's sizes: `0 < size1 <= size2`.
pub fn consistency_sizes(size1: u64, size2: u64) -> Result<(), Invalid> {
    tree_size(size2)?;
    if size1 == 0 || size1 > size2 {
        return Err(Invalid(format!(
            "need 0 < size1 <= size2 (got {size1} and {size2})"
        )));
    }
    Ok(())
}

/// An export's scope and range; normalizes `entity_type` (unspecified = user)
/// when an identity is named.
pub fn export(r: &mut ExportEvidenceRequest) -> Result<(), Invalid> {
    source_id(&r.source_id)?;
    optional_id("external_id", &r.external_id)?;
    if r.external_id.is_empty() {
        if r.entity_type != 0 {
            return Err(Invalid::new(
                "entity_type without external_id: name the identity, or leave both empty to export the whole source",
            ));
        }
    } else {
        r.entity_type = entity_type(r.entity_type)? as i32;
    }
    if r.from_us < 0 || r.to_us < 0 || (r.to_us > 0 && r.from_us > r.to_us) {
        return Err(Invalid::new(
            "from_us and to_us must be ≥ 0 and from_us ≤ to_us",
        ));
    }
    if r.with_report && (!r.external_id.is_empty() || r.from_us != 0) {
        return Err(Invalid::new(
            "with_report needs a whole-source bundle from the source's first event: leave external_id and from_us empty",
        ));
    }
    Ok(())
}

/// A verification's first sequence (≥ 1) and stream (`default_stream` when
/// not named), given its last sequence `to` (already within what is applied).
pub fn verify_range(
    r: &VerifyRangeRequest,
    to: u64,
    default_stream: &str,
) -> Result<(u64, String), Invalid> {
    if to > VERIFY_MESSAGES_MAX {
        return Err(Invalid(format!(
            "a verification reads at most {VERIFY_MESSAGES_MAX} messages; verify a shorter range"
        )));
    }
    let from = r.from_seq.max(1);
    if from > to && to > 0 {
        return Err(Invalid(format!("from_seq {from} is after to_seq {to}")));
    }
    if r.stream.is_empty() {
        return Ok((from, default_stream.to_owned()));
    }
    if r.stream.chars().count() > STREAM_NAME_CHARS_MAX
        || !r
            .stream
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(Invalid(format!(
            "stream {} is not a stream name this ledger reads: letters, digits, '-' and '_', at most {STREAM_NAME_CHARS_MAX}",
            excerpt(&r.stream)
        )));
    }
    Ok((from, r.stream.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_default_and_cap() {
        assert_eq!(page_limit(0, 20, 1_000), Ok(20));
        assert_eq!(page_limit(7, 20, 1_000), Ok(7));
        assert_eq!(
            page_limit(1_001, 20, 1_000).unwrap_err().0,
            "limit 1001 is over the maximum 1000"
        );
    }

    #[test]
    fn acceptances_name_run_who_why_and_ticket() {
        let ok = AcceptDeletionsRequest {
            run_id: "r1".into(),
            accepted_by: "alice".into(),
            reason: "HR reorg".into(),
            ticket: "CHG-1".into(),
        };
        assert_eq!(accept_deletions(&ok), Ok(()));
        let bad = |f: fn(&mut AcceptDeletionsRequest)| {
            let mut r = ok.clone();
            f(&mut r);
            accept_deletions(&r).unwrap_err().0
        };
        assert_eq!(
            bad(|r| r.reason = " ".into()),
            "reason is required: why the deletions are real (got an empty string)"
        );
        assert!(bad(|r| r.ticket.clear()).starts_with("ticket is required"));
        assert!(bad(|r| r.accepted_by.clear()).starts_with("accepted_by is required"));
        assert!(bad(|r| r.run_id.clear()).starts_with("run_id is required"));
        assert_eq!(
            bad(|r| r.reason = "x".repeat(1_001)),
            "reason is 1001 characters, over the maximum 1000"
        );
        assert!(bad(|r| r.ticket = "CHG-1\nCHG-2".into()).contains("one line"));
    }

    #[test]
    fn a_source_id_is_one_subject_token_and_never_quoted_whole() {
        assert_eq!(source_id("hr-eu_2"), Ok("hr-eu_2"));
        for bad in ["", "*", ">", "hr.read", "h r", "hr\0", "é"] {
            assert!(source_id(bad).is_err(), "{bad:?}");
        }
        let long = "s".repeat(ID_BYTES_MAX);
        assert_eq!(
            source_id(&long).unwrap_err().0,
            "source_id is 1024 bytes, over the maximum 64"
        );
        let dotted = format!("{}.x", "d".repeat(60));
        assert!(!source_id(&dotted).unwrap_err().0.contains(&dotted));
        assert!(
            source_ids("source_ids", &["hr".into(), "*".into()], 10)
                .unwrap_err()
                .0
                .starts_with("source_ids: source_id \"*\" holds '*' at byte 0")
        );
    }

    #[test]
    fn entity_types_and_points() {
        assert_eq!(entity_type(0), Ok(EntityType::User));
        assert_eq!(entity_type(2), Ok(EntityType::Group));
        assert!(entity_type(99).unwrap_err().0.contains("USER=1"));
        assert!(as_of(&AsOf { point: None }).is_err());
        assert!(
            as_of(&AsOf {
                point: Some(as_of::Point::Seq(0))
            })
            .unwrap_err()
            .0
            .contains("≥ 1")
        );
        assert_eq!(
            as_of(&AsOf {
                point: Some(as_of::Point::TimeUs(5))
            }),
            Ok(PointAt::TimeUs(5))
        );
    }
}
