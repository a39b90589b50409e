//! The ledger stream's position (last sequence, message count) for
//! GetLedgerStatus, read from NATS at most once at a time.
//!
//! Every answer is fresh: a caller gets a reading requested from NATS *after*
//! the moment it names (the end of its own read of the projection), so the
//! stream position it reports is never older than the projection position it
//! reports beside it (`stream_last_seq >= meta.last_seq`, as with a read per
//! call). Callers share a reading requested after their moment (its answer or
//! its failure); the others wait for the next one. Under load this turns one
//! JetStream round trip per call into about one per round trip's time,
//! whatever the number of callers; a NATS that does not answer costs a
//! caller at most two bounded waits (the reading under way, then its own),
//! never one per caller ahead of it.

use std::time::Instant;

use async_nats::jetstream;

/// The stream's position as NATS gave it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    pub last_seq: u64,
    pub messages: u64,
}

/// Reads the stream's position, one reading at a time, shared by the callers
/// it is fresh enough for.
pub struct StreamState {
    js: jetstream::Context,
    stream: String,
    /// The newest reading (or why it failed) and when it was requested.
    latest: std::sync::Mutex<Option<(Instant, Result<Position, String>)>>,
    /// Held while a reading is under way.
    reading: tokio::sync::Mutex<()>,
}

impl StreamState {
    pub fn new(js: jetstream::Context, stream: String) -> Self {
        StreamState {
            js,
            stream,
            latest: std::sync::Mutex::new(None),
            reading: tokio::sync::Mutex::new(()),
        }
    }

    /// A reading requested from NATS after `since` (pass the moment the
    /// caller finished reading what it reports beside it); `Err` says why NATS
    /// did not give it.
    pub async fn position(&self, since: Instant) -> Result<Position, String> {
        if let Some(r) = self.fresh(since) {
            return r;
        }
        let _turn = self.reading.lock().await;
        // While this caller waited, a reading requested after `since` may
        // have come back.
        if let Some(r) = self.fresh(since) {
            return r;
        }
        let asked = Instant::now();
        // `get_stream` is one STREAM.INFO round trip; its answer is the info.
        let r = match self.js.get_stream(&self.stream).await {
            Ok(stream) => {
                let state = &stream.cached_info().state;
                Ok(Position {
                    last_seq: state.last_sequence,
                    messages: state.messages,
                })
            }
            Err(e) => Err(e.to_string()),
        };
        if let Ok(mut latest) = self.latest.lock() {
            *latest = Some((asked, r.clone()));
        }
        r
    }

    fn fresh(&self, since: Instant) -> Option<Result<Position, String>> {
        let latest = self.latest.lock().ok()?;
        match &*latest {
            Some((asked, r)) if *asked >= since => Some(r.clone()),
            _ => None,
        }
    }
}
