//! Source ids and subjects.
//!
//! Events live on `govledger.v1.<source>.read.<kind>` and
//! `govledger.v1.<source>.write.<kind>`, so a SIEM can subscribe to exactly the
//! slice it wants (`govledger.v1.hr.write.>`). A source id is one NATS subject
//! token: it must not contain `.`, `*`, `>` or white space, so it is restricted to
//! ASCII letters, digits, `-` and `_`.

use govledger_proto::v1::event::Body;

/// Prefix of every event subject.
pub const SUBJECT_PREFIX: &str = "govledger.v1";
/// Longest accepted source id, in bytes.
pub const SOURCE_ID_LEN_MAX: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SourceIdError {
    #[error("source id is empty; use letters, digits, '-' or '_'")]
    Empty,
    #[error("source id {0:?} is longer than {SOURCE_ID_LEN_MAX} bytes")]
    TooLong(String),
    #[error(
        "source id {id:?} contains {ch:?} at byte {at}; only ASCII letters, digits, '-' and '_' are allowed (it becomes a NATS subject token)"
    )]
    BadChar { id: String, ch: char, at: usize },
}

/// Checks that `id` can be used as one subject token.
pub fn validate_source_id(id: &str) -> Result<(), SourceIdError> {
    if id.is_empty() {
        return Err(SourceIdError::Empty);
    }
    if id.len() > SOURCE_ID_LEN_MAX {
        return Err(SourceIdError::TooLong(id.to_owned()));
    }
    if let Some((at, ch)) = id
        .char_indices()
        .find(|(_, c)| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_'))
    {
        return Err(SourceIdError::BadChar {
            id: id.to_owned(),
            ch,
            at,
        });
    }
    Ok(())
}

/// `read` or `write` and the kind token of an event body.
pub fn body_path(body: &Body) -> (&'static str, &'static str) {
    match body {
        Body::SyncRunStarted(_) => ("read", "run_started"),
        Body::PageFetched(_) => ("read", "page_fetched"),
        Body::PageFailed(_) => ("read", "page_failed"),
        Body::RecordObserved(_) => ("read", "record_observed"),
        Body::RecordRejected(_) => ("read", "record_rejected"),
        Body::SyncRunFinished(_) => ("read", "run_finished"),
        Body::DeletionsAccepted(_) => ("read", "deletions_accepted"),
        Body::ActionRequested(_) => ("write", "action_requested"),
        Body::ActionAttempted(_) => ("write", "action_attempted"),
        Body::ActionVerified(_) => ("write", "action_verified"),
        Body::ActionConcluded(_) => ("write", "action_concluded"),
    }
}

/// The subject an event with this source and body is published on.
pub fn event_subject(source_id: &str, body: &Body) -> String {
    let (path, kind) = body_path(body);
    format!("{SUBJECT_PREFIX}.{source_id}.{path}.{kind}")
}

/// Subjects the stream must capture.
pub fn stream_subjects() -> Vec<String> {
    vec![
        format!("{SUBJECT_PREFIX}.*.read.*"),
        format!("{SUBJECT_PREFIX}.*.write.*"),
    ]
}

/// Consumer filters selecting exactly one source's events: one per stream
/// subject, so each is a strict subset of the stream's interest.
pub fn source_filter_subjects(source_id: &str) -> Vec<String> {
    vec![
        format!("{SUBJECT_PREFIX}.{source_id}.read.*"),
        format!("{SUBJECT_PREFIX}.{source_id}.write.*"),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(id: &str, ok: bool) {
        assert_eq!(validate_source_id(id).is_ok(), ok, "{id:?}");
    }

    #[test]
    fn source_ids() {
        check("hr", true);
        check("okta-prod_2", true);
        check(&"a".repeat(SOURCE_ID_LEN_MAX), true);
        check(&"a".repeat(SOURCE_ID_LEN_MAX + 1), false);
        check("", false);
        check("a.b", false);
        check("a*", false);
        check("a>", false);
        check("a b", false);
        check("é", false);
    }

    #[test]
    fn bad_char_message_names_the_char() {
        let e = validate_source_id("hr.eu").unwrap_err().to_string();
        assert!(e.contains("'.'") && e.contains("byte 2"), "{e}");
    }

    #[test]
    fn subjects() {
        let body = Body::PageFetched(Default::default());
        assert_eq!(
            event_subject("hr", &body),
            "govledger.v1.hr.read.page_fetched"
        );
        let body = Body::ActionConcluded(Default::default());
        assert_eq!(
            event_subject("okta", &body),
            "govledger.v1.okta.write.action_concluded"
        );
    }
}
