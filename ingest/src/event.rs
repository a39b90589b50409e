//! Stamping envelopes: every event gets a fresh UUID v7 id, the current time,
//! the producer and the schema version.

use govledger_proto::v1::{Event, Producer, event::Body};

/// Who produces events: goes into every envelope.
#[derive(Debug, Clone)]
pub struct ProducerId {
    pub worker_id: String,
    pub version: String,
}

impl ProducerId {
    pub fn new(worker_id: impl Into<String>) -> Self {
        Self {
            worker_id: worker_id.into(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
        }
    }
}

/// Current time in Unix microseconds.
pub fn now_us() -> i64 {
    chrono::Utc::now().timestamp_micros()
}

/// A new event id: UUID v7 (time-ordered), text form.
pub fn new_event_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// Where an event belongs: a run of a source, or an action at a source.
#[derive(Debug, Clone, Default)]
pub struct Scope {
    pub source_id: String,
    pub run_id: String,
    pub action_id: String,
}

impl Scope {
    pub fn run(source_id: impl Into<String>, run_id: impl Into<String>) -> Self {
        Self {
            source_id: source_id.into(),
            run_id: run_id.into(),
            action_id: String::new(),
        }
    }
    pub fn action(source_id: impl Into<String>, action_id: impl Into<String>) -> Self {
        Self {
            source_id: source_id.into(),
            run_id: String::new(),
            action_id: action_id.into(),
        }
    }
}

/// Builds a complete envelope around `body`.
pub fn stamp(producer: &ProducerId, scope: &Scope, attempt: u32, body: Body) -> Event {
    Event {
        event_id: new_event_id(),
        occurred_at_us: now_us(),
        source_id: scope.source_id.clone(),
        run_id: scope.run_id.clone(),
        action_id: scope.action_id.clone(),
        producer: Some(Producer {
            worker_id: producer.worker_id.clone(),
            version: producer.version.clone(),
        }),
        attempt: attempt.max(1),
        schema_version: govledger_proto::SCHEMA_VERSION,
        seal: None,
        body: Some(body),
    }
}
