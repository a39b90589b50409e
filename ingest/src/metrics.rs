//! What ingestion counts for `/metrics`: per source, the page attempts the
//! sync engine recorded (each a `PageFetched` or `PageFailed` event), the
//! retries among them and the rate-limit (429) answers; and how long a
//! publish waits for JetStream's ack. Counted in the publisher, where every
//! event passes once: a count and the event it counts come from one place.
//!
//! The families are shared handles; [`IngestMetrics::register`] puts them in a
//! registry, an unregistered one counts into nothing anyone reads.

use govledger_proto::v1::{ErrorClass, Event, event::Body};
use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, histogram::Histogram},
    registry::{Registry, Unit},
};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SourceLabel {
    pub source: String,
}

/// Ingestion's series.
#[derive(Clone, Debug)]
pub struct IngestMetrics {
    pub page_attempts: Family<SourceLabel, Counter>,
    pub page_retries: Family<SourceLabel, Counter>,
    pub rate_limited: Family<SourceLabel, Counter>,
    pub publish_seconds: Histogram,
}

impl Default for IngestMetrics {
    fn default() -> Self {
        Self {
            page_attempts: Family::default(),
            page_retries: Family::default(),
            rate_limited: Family::default(),
            // 0.5 ms to ~4 s.
            publish_seconds: Histogram::new(
                prometheus_client::metrics::histogram::exponential_buckets(0.0005, 2.0, 14),
            ),
        }
    }
}

impl IngestMetrics {
    /// Registers every series under `govledger_`.
    pub fn register(&self, r: &mut Registry) {
        r.register(
            "govledger_page_attempts",
            "Page reads the sync engine recorded (fetched or failed), by source",
            self.page_attempts.clone(),
        );
        r.register(
            "govledger_page_retries",
            "Failed page reads the engine tried again, by source",
            self.page_retries.clone(),
        );
        r.register(
            "govledger_rate_limited_waits",
            "Page reads answered 429 (rate limited) that the engine waited out, by source",
            self.rate_limited.clone(),
        );
        r.register_with_unit(
            "govledger_publish",
            "Time from queueing an event to JetStream's ack (retries included)",
            Unit::Seconds,
            self.publish_seconds.clone(),
        );
    }

    /// Counts what `event` records, if it is a page read.
    pub fn event_queued(&self, event: &Event) {
        let label = || SourceLabel {
            source: event.source_id.clone(),
        };
        match &event.body {
            Some(Body::PageFetched(_)) => {
                self.page_attempts.get_or_create(&label()).inc();
            }
            Some(Body::PageFailed(f)) => {
                let l = label();
                self.page_attempts.get_or_create(&l).inc();
                if f.will_retry {
                    self.page_retries.get_or_create(&l).inc();
                }
                if f.error_class == ErrorClass::RateLimited as i32 {
                    self.rate_limited.get_or_create(&l).inc();
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use govledger_proto::v1::{PageFailed, PageFetched};

    #[test]
    fn page_reads_are_counted_per_source() {
        let m = IngestMetrics::default();
        let ev = |body| Event {
            source_id: "hr".into(),
            body: Some(body),
            ..Default::default()
        };
        m.event_queued(&ev(Body::PageFetched(PageFetched::default())));
        m.event_queued(&ev(Body::PageFailed(PageFailed {
            error_class: ErrorClass::RateLimited as i32,
            will_retry: true,
            ..Default::default()
        })));
        m.event_queued(&ev(Body::PageFailed(PageFailed::default())));
        let hr = SourceLabel {
            source: "hr".into(),
        };
        assert_eq!(m.page_attempts.get_or_create(&hr).get(), 3);
        assert_eq!(m.page_retries.get_or_create(&hr).get(), 1);
        assert_eq!(m.rate_limited.get_or_create(&hr).get(), 1);
    }
}
