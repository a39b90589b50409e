//! What govledger tells Prometheus: one registry holding the projector's and
//! ingestion's counters (counted where their facts happen), the gRPC calls
//! by method and code ([`grpc`]), and gauges set from the ledger and the
//! health watch at each scrape ([`Metrics::refresh`]).
//!
//! Names follow Prometheus conventions: `govledger_..._total` for counters,
//! `_seconds` for durations, labels bounded by what is configured or known
//! (sources, verdicts, outcomes, RPC methods).
//!
//! Layout:
//! - this file: [`Metrics`] (the registry, the gauges, the scrape);
//! - [`grpc`]: the tower wrapper counting gRPC calls by method and code.

pub mod grpc;

use std::sync::atomic::AtomicU64;

use govledger_ingest::metrics::IngestMetrics;
use govledger_projector::metrics::FoldMetrics;
use govledger_proto::v1::{ActionOutcome, Freshness, SourceStatus, Verdict};
use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{family::Family, gauge::Gauge},
    registry::{Registry, Unit},
};

use crate::serve::health::HealthState;

/// The `Content-Type` of a scrape (Prometheus text format 0.0.4).
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SourceLabel {
    pub source: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SourceVerdict {
    pub source: String,
    pub verdict: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SourceOutcome {
    pub source: String,
    pub outcome: String,
}

type F64Gauge = Gauge<f64, AtomicU64>;

/// Gauges read from the ledger and the health watch at each scrape.
#[derive(Default)]
struct Gauges {
    stream_last_seq: Gauge,
    projected_seq: Gauge,
    lag: Gauge,
    lag_bound: Gauge,
    ready: Gauge,
    nats_up: Gauge,
    paused: Gauge,
    ledger_events: Gauge,
    ledger_poison: Gauge,
    last_complete_age: Family<SourceLabel, F64Gauge>,
    objective: Family<SourceLabel, F64Gauge>,
    fresh: Family<SourceLabel, Gauge>,
    last_verdict: Family<SourceVerdict, Gauge>,
    actions_open: Family<SourceOutcome, Gauge>,
}

/// Every series `/metrics` serves.
pub struct Metrics {
    registry: Registry,
    pub fold: FoldMetrics,
    pub ingest: IngestMetrics,
    pub grpc: grpc::GrpcMetrics,
    g: Gauges,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let fold = FoldMetrics::default();
        let ingest = IngestMetrics::default();
        let grpc = grpc::GrpcMetrics::default();
        let g = Gauges::default();
        fold.register(&mut registry);
        ingest.register(&mut registry);
        grpc.register(&mut registry);
        let r = &mut registry;
        r.register(
            "govledger_stream_last_sequence",
            "The ledger stream's last sequence, as NATS last answered",
            g.stream_last_seq.clone(),
        );
        r.register(
            "govledger_projected_sequence",
            "The last stream sequence the projection applied (every answer is as of it)",
            g.projected_seq.clone(),
        );
        r.register(
            "govledger_projector_lag_events",
            "Stream events not yet applied (stream last sequence minus projected sequence)",
            g.lag.clone(),
        );
        r.register(
            "govledger_projector_lag_bound_events",
            "The lag past which govledger reports itself not ready (projector.lag_bound_events)",
            g.lag_bound.clone(),
        );
        r.register(
            "govledger_projector_paused",
            "1 while an admin paused the projector",
            g.paused.clone(),
        );
        r.register(
            "govledger_ready",
            "1 when NATS answers, the projector runs within its lag bound and the disks have room (/readyz)",
            g.ready.clone(),
        );
        r.register(
            "govledger_nats_up",
            "1 when NATS answered the last probe",
            g.nats_up.clone(),
        );
        r.register(
            "govledger_ledger_events",
            "Events the projection holds (applied since the stream began, every process)",
            g.ledger_events.clone(),
        );
        r.register(
            "govledger_ledger_poison_events",
            "Events the projection holds that could not be folded (ListPoisonEvents)",
            g.ledger_poison.clone(),
        );
        r.register_with_unit(
            "govledger_source_last_complete_age",
            "Age of the source's last COMPLETE run (absent: never complete)",
            Unit::Seconds,
            g.last_complete_age.clone(),
        );
        r.register_with_unit(
            "govledger_source_freshness_objective",
            "How recent the source's last COMPLETE run must be to count as fresh",
            Unit::Seconds,
            g.objective.clone(),
        );
        r.register(
            "govledger_source_fresh",
            "1 when the source's last COMPLETE run is within its objective",
            g.fresh.clone(),
        );
        r.register(
            "govledger_source_last_verdict",
            "1 for the verdict of the source's last finished run",
            g.last_verdict.clone(),
        );
        r.register(
            "govledger_actions_open",
            "Actions not confirmed (they block a review), by source and current outcome",
            g.actions_open.clone(),
        );
        Self {
            registry,
            fold,
            ingest,
            grpc,
            g,
        }
    }

    /// Sets the gauges from a reading of the ledger (`sources`, the open
    /// actions' outcomes, the meta's counts) and of the health watch.
    pub fn refresh(&self, r: &Reading) {
        let h = &r.health;
        let g = &self.g;
        if let Some(s) = h.stream_last_seq {
            g.stream_last_seq.set(clamp(s));
        }
        g.projected_seq.set(clamp(h.applied_seq));
        g.lag.set(clamp(h.lag().unwrap_or(0)));
        g.lag_bound.set(clamp(h.lag_bound_events));
        g.paused.set(i64::from(h.paused));
        g.ready.set(i64::from(h.problems().is_empty()));
        g.nats_up.set(i64::from(h.nats_down.is_none()));
        g.ledger_events.set(clamp(r.ledger_events));
        g.ledger_poison.set(clamp(r.ledger_poison));
        // Sources can be removed from the config: series are rebuilt each time.
        g.last_complete_age.clear();
        g.objective.clear();
        g.fresh.clear();
        g.last_verdict.clear();
        for s in &r.sources {
            let l = SourceLabel {
                source: s.source_id.clone(),
            };
            let fresh = s.freshness == Freshness::Fresh as i32;
            g.fresh.get_or_create(&l).set(i64::from(fresh));
            g.objective
                .get_or_create(&l)
                .set(s.freshness_objective_ms as f64 / 1_000.0);
            let complete_at = s.state.as_ref().map_or(0, |st| st.last_complete_at_us);
            if complete_at != 0 {
                g.last_complete_age
                    .get_or_create(&l)
                    .set(s.last_complete_age_ms as f64 / 1_000.0);
            }
            if let Some(st) = &s.state
                && !st.last_finished_run_id.is_empty()
            {
                let verdict = Verdict::try_from(st.last_finished_verdict)
                    .map_or("UNKNOWN", |v| v.as_str_name())
                    .trim_start_matches("VERDICT_")
                    .to_owned();
                g.last_verdict
                    .get_or_create(&SourceVerdict {
                        source: l.source.clone(),
                        verdict,
                    })
                    .set(1);
            }
        }
        g.actions_open.clear();
        for (source, outcome, n) in &r.open_actions {
            let outcome = outcome.as_str_name().trim_start_matches("ACTION_OUTCOME_");
            g.actions_open
                .get_or_create(&SourceOutcome {
                    source: source.clone(),
                    outcome: outcome.to_owned(),
                })
                .set(clamp(*n));
        }
    }

    /// The scrape, in Prometheus text format.
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::with_capacity(16 * 1024);
        prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

/// A reading of the ledger for [`Metrics::refresh`].
#[derive(Debug, Clone, Default)]
pub struct Reading {
    pub health: HealthState,
    pub sources: Vec<SourceStatus>,
    /// (source, outcome, count) of the actions that are not confirmed.
    pub open_actions: Vec<(String, ActionOutcome, u64)>,
    pub ledger_events: u64,
    pub ledger_poison: u64,
}

fn clamp(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scrape_names_every_family_and_counts_with_total() {
        let m = Metrics::new();
        m.fold.poison_events.inc();
        m.refresh(&Reading {
            health: HealthState {
                stream_last_seq: Some(10),
                applied_seq: 7,
                lag_bound_events: 100,
                ..Default::default()
            },
            ..Default::default()
        });
        let text = m.encode().expect("encode");
        for line in [
            "govledger_poison_events_total 1",
            "govledger_stream_last_sequence 10",
            "govledger_projected_sequence 7",
            "govledger_projector_lag_events 3",
            "govledger_ready 1",
            "# TYPE govledger_fold_batch_seconds histogram",
            "# TYPE govledger_publish_seconds histogram",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing in\n{text}");
        }
    }
}
