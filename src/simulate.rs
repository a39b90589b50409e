//! Synthetic sync runs, published through the real publisher: the demo source of
//! the quick start and the event generator of the end-to-end tests.
//!
//! A simulated run is what a connector would emit: `SyncRunStarted`, one
//! `PageFetched` per page followed by its `RecordObserved` events, `PageFailed`
//! attempts for pages told to fail (retried, then given up), and `SyncRunFinished`
//! with the engine's own (optimistic) view. The ledger, not the simulator, decides
//! the verdict.
//!
//! Provenance: a run is sealed by the publisher it goes through (its
//! `seal_key`, see `govledger_ingest::publisher`); [`publish_all`] publishes the
//! finish last, so a sealing publisher seals it over the run's stored events.
//! The tests pass a key their ledger trusts; `govledger simulate` has none, so
//! its runs are UNVERIFIED_PRODUCER.

use govledger_ingest::{
    Publisher,
    event::{ProducerId, Scope, stamp},
    publisher::{PublishError, Receipt},
};
use govledger_proto::v1::{
    EngineOutcome, EntityType, ErrorClass, Event, PageFailed, PageFetched, RecordObserved,
    SyncMode, SyncRunFinished, SyncRunStarted, event::Body,
};

/// Retries the simulated engine spends on a failing page before giving up.
pub const SIM_PAGE_ATTEMPTS: u32 = 3;

#[derive(Debug, Clone)]
pub struct SimRun {
    pub source_id: String,
    pub run_id: String,
    pub users: u64,
    pub page_size: u64,
    /// 0-based indexes of pages that fail on every attempt.
    pub failing_pages: Vec<u64>,
}

impl SimRun {
    pub fn new(source_id: &str, users: u64, page_size: u64) -> Self {
        Self {
            source_id: source_id.to_owned(),
            run_id: uuid::Uuid::now_v7().to_string(),
            users,
            page_size: page_size.max(1),
            failing_pages: Vec::new(),
        }
    }
}

/// A stable external id for simulated user `n`.
pub fn user_id(n: u64) -> String {
    format!("u{n:07}")
}

/// The events of one simulated run, in the order a connector would emit them.
pub fn run_events(producer: &ProducerId, sim: &SimRun) -> Vec<Event> {
    let scope = Scope::run(&sim.source_id, &sim.run_id);
    let pages = sim.users.div_ceil(sim.page_size);
    let mut out = vec![stamp(
        producer,
        &scope,
        1,
        Body::SyncRunStarted(SyncRunStarted {
            mode: SyncMode::Full as i32,
            declared_total: Some(sim.users),
            page_size: sim.page_size as u32,
            paging: "scim-index".into(),
            entity_types: vec![EntityType::User as i32],
            ..Default::default()
        }),
    )];
    let (mut ok, mut failed, mut observed) = (0u64, 0u64, 0u64);
    for page in 0..pages {
        let start = page * sim.page_size;
        let page_key = format!("startIndex={}", start + 1);
        if sim.failing_pages.contains(&page) {
            for attempt in 1..=SIM_PAGE_ATTEMPTS {
                out.push(stamp(
                    producer,
                    &scope,
                    attempt,
                    Body::PageFailed(PageFailed {
                        page_key: page_key.clone(),
                        page_index: page,
                        error_class: ErrorClass::ServerError as i32,
                        http_status: 503,
                        retry_after_ms: None,
                        will_retry: attempt < SIM_PAGE_ATTEMPTS,
                        message: "503 Service Unavailable".into(),
                        latency_ms: 12,
                        entity_type: EntityType::User as i32,
                        role: 0,
                    }),
                ));
            }
            failed += 1;
            continue;
        }
        let end = (start + sim.page_size).min(sim.users);
        out.push(stamp(
            producer,
            &scope,
            1,
            Body::PageFetched(PageFetched {
                page_key: page_key.clone(),
                page_index: page,
                http_status: 200,
                item_count: (end - start) as u32,
                declared_total: Some(sim.users),
                latency_ms: 8,
                next_page_key: String::new(),
                last_page: page + 1 == pages,
                entity_type: EntityType::User as i32,
                requested_count: sim.page_size as u32,
                offset: Some(start),
                role: 0,
                ..Default::default()
            }),
        ));
        ok += 1;
        for n in start..end {
            observed += 1;
            out.push(stamp(
                producer,
                &scope,
                1,
                Body::RecordObserved(RecordObserved {
                    entity_type: EntityType::User as i32,
                    external_id: user_id(n),
                    active: Some(true),
                    attribute_digest: format!("{:064x}", n),
                    memberships: vec![],
                    version: format!("W/\"{n}\""),
                    page_key: page_key.clone(),
                    display_name: format!("user{n}@example.test"),
                    ..Default::default()
                }),
            ));
        }
    }
    let events_emitted = out.len() as u64;
    out.push(stamp(
        producer,
        &scope,
        1,
        Body::SyncRunFinished(SyncRunFinished {
            events_emitted,
            // The engine's own view is optimistic on purpose: it "succeeded".
            engine_outcome: EngineOutcome::Succeeded as i32,
            observed,
            unique: observed,
            duplicates: 0,
            declared_total: Some(sim.users),
            pages_ok: ok,
            pages_failed: failed,
            rejected: 0,
            error_class: ErrorClass::Unspecified as i32,
            message: String::new(),
        }),
    ));
    out
}

/// Publishes `events` pipelined and waits until every one is stored.
pub async fn publish_all(
    publisher: &Publisher,
    events: &[Event],
) -> Result<Vec<Receipt>, PublishError> {
    let mut pending = Vec::with_capacity(events.len());
    for ev in events {
        pending.push(publisher.publish(ev).await?);
    }
    let mut receipts = Vec::with_capacity(pending.len());
    for p in pending {
        receipts.push(p.wait().await?);
    }
    Ok(receipts)
}
