//! Realistic event histories: simulated full sync runs
//! ([`govledger::simulate::run_events`]) of a user set split over
//! [`SOURCES`] sources, generated and published one run at a time so memory
//! stays bounded whatever the scale.

use std::collections::VecDeque;

use anyhow::{Context as _, Result};
use govledger::simulate::{SimRun, run_events};
use govledger_ingest::{Publisher, event::ProducerId, publisher::Pending};
use govledger_proto::v1::Event;

/// Sources every history is spread over (CheckReadiness asks about all of them).
pub const SOURCES: u64 = 10;
/// Records per page of the simulated runs.
pub const PAGE_SIZE: u64 = 100;
/// Publishes awaited lazily while publishing a large history.
const UNCONFIRMED_MAX: usize = 65_536;

pub fn source_id(i: u64) -> String {
    format!("bench-{i:02}")
}

/// The benchmark's producer key: its publishers seal as production does
/// (provenance), and its projections trust it.
pub fn producer_key() -> std::sync::Arc<govledger_stream::seal::ProducerKey> {
    std::sync::Arc::new(govledger_stream::seal::ProducerKey::from_seed([0xbe; 32]))
}

/// A publisher config that seals with [`producer_key`].
pub fn sealing() -> govledger_ingest::PublisherConfig {
    govledger_ingest::PublisherConfig {
        seal_key: Some(producer_key()),
        ..Default::default()
    }
}

/// The trust of the benchmark's projections: [`producer_key`].
pub fn trust() -> std::sync::Arc<govledger_stream::seal::Trust> {
    std::sync::Arc::new(govledger_stream::seal::Trust::new([
        producer_key().public_key()
    ]))
}

pub fn producer() -> ProducerId {
    ProducerId::new(format!("govledger-bench-{}", std::process::id()))
}

/// `identities` users split evenly over [`SOURCES`] sources, each source synced
/// `rounds` times in full.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    pub users_per_source: u64,
    pub rounds: u64,
}

impl Plan {
    /// About `events` events over `identities` identities: `events / identities`
    /// full runs of every source (at least one).
    pub fn new(identities: u64, events: u64) -> Self {
        Self {
            users_per_source: (identities / SOURCES).max(1),
            rounds: (events / identities.max(1)).max(1),
        }
    }

    pub fn identities(&self) -> u64 {
        self.users_per_source * SOURCES
    }
}

/// What was published.
#[derive(Debug, Default)]
pub struct Published {
    pub events: u64,
    /// `(source id, run id)` of every run, in publish order.
    pub runs: Vec<(String, String)>,
}

/// Publishes the whole `plan` through `publisher`, one run at a time, keeping at
/// most [`UNCONFIRMED_MAX`] publishes unconfirmed; returns once all are stored.
pub async fn publish_plan(publisher: &Publisher, plan: Plan) -> Result<Published> {
    let producer = producer();
    let mut out = Published::default();
    let mut unconfirmed: VecDeque<Pending> = VecDeque::new();
    for round in 0..plan.rounds {
        for s in 0..SOURCES {
            let sim = SimRun::new(&source_id(s), plan.users_per_source, PAGE_SIZE);
            out.runs.push((sim.source_id.clone(), sim.run_id.clone()));
            for ev in run_events(&producer, &sim) {
                unconfirmed.push_back(publisher.publish(&ev).await?);
                out.events += 1;
                while unconfirmed.len() > UNCONFIRMED_MAX {
                    if let Some(p) = unconfirmed.pop_front() {
                        p.wait().await?;
                    }
                }
            }
        }
        crate::progress(format!(
            "  published round {}/{} ({} events)",
            round + 1,
            plan.rounds,
            out.events
        ));
    }
    while let Some(p) = unconfirmed.pop_front() {
        p.wait().await.context("waiting for the last acks")?;
    }
    Ok(out)
}

/// At least `n` events (whole runs of 1,000 users, round-robin over the
/// sources), in memory: the publish benchmark's input.
pub fn event_set(n: usize) -> Vec<Event> {
    let producer = producer();
    let mut out = Vec::with_capacity(n + 2_000);
    let mut s = 0;
    while out.len() < n {
        let sim = SimRun::new(&source_id(s % SOURCES), 1_000, PAGE_SIZE);
        out.extend(run_events(&producer, &sim));
        s += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_splits_identities_over_sources() {
        let p = Plan::new(100_000, 500_000);
        assert_eq!(p.users_per_source, 10_000);
        assert_eq!(p.rounds, 5);
        assert_eq!(p.identities(), 100_000);
        let tiny = Plan::new(5, 1);
        assert_eq!((tiny.users_per_source, tiny.rounds), (1, 1));
    }

    #[test]
    fn event_set_holds_whole_runs() {
        let evs = event_set(1_500);
        // Two runs of 1,000 users: start + 10 pages + 1,000 records + finish each.
        assert_eq!(evs.len(), 2 * 1_012);
        let sources: std::collections::BTreeSet<_> = evs.iter().map(|e| &e.source_id).collect();
        assert_eq!(sources.len(), 2);
    }
}
