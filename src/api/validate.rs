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

/// `value` is not blank.
pub fn required<'a>(field: &str, value: &'a str) -> Result<&'a str, Invalid> {
    if value.trim().is_empty() {
        Err(Invalid(format!(
            "{field} is required (got an empty string)"
        )))
    } else {
        Ok(value)
    }
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

/// A submitted action names its request.
pub fn action_request(r: Option<ActionRequested>) -> Result<ActionRequested, Invalid> {
    r.ok_or_else(|| Invalid::new("request is required (an ActionRequested)"))
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

/// A source id that can name stream subjects.
pub fn source_id(id: &str) -> Result<&str, Invalid> {
    govledger_stream::subject::validate_source_id(id)
        .map_err(|e| Invalid(format!("source_id: {e}")))?;
    Ok(id)
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

/// A readiness scope: at most `max` source ids, none blank.
pub fn readiness_scope(ids: &[String], max: u32) -> Result<(), Invalid> {
    if ids.len() > max as usize {
        return Err(Invalid(format!(
            "at most {max} sources per readiness check"
        )));
    }
    if ids.iter().any(|i| i.trim().is_empty()) {
        return Err(Invalid::new("source_ids must not contain empty ids"));
    }
    Ok(())
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
    Ok(())
}

/// An inclusion proof's sequence is inside the tree of `size` messages.
pub fn inclusion_seq(seq: u64, size: u64) -> Result<(), Invalid> {
    if seq == 0 || seq > size {
        return Err(Invalid(format!(
            "seq {seq} is not within the tree of {size} messages (sequences start at 1)"
        )));
    }
    Ok(())
}

/// A consistency proof's sizes: `0 < size1 <= size2`.
pub fn consistency_sizes(size1: u64, size2: u64) -> Result<(), Invalid> {
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
    source_id(required("source_id", &r.source_id)?)?;
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
    if r.stream.contains(['.', '*', '>', ' ', '/', '\\']) {
        return Err(Invalid(format!(
            "stream {:?} is not a valid JetStream stream name",
            r.stream
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
