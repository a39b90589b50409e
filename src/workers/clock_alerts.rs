//! Decisions the clock makes: an action passing its deadline unconcluded,
//! or concluded UNVERIFIED and not confirmed since (OVERDUE) and a source whose last COMPLETE run falls outside its freshness
//! objective (STALE). A bounded scan on a fixed cadence turns each transition into
//! one alert, stored in the alerts stream (`crate::alerts`); the ledger itself
//! computes both at query time, so nothing here is state. An alert that could
//! not be stored is tried again at the next scan; one told before a restart is
//! told again after it and stored once (its id is the decision's).

use std::{collections::HashSet, sync::Arc, time::Duration};

use govledger_projector::{Store, verdict};
use govledger_proto::v1::{Alert, Freshness, alert};
use tokio_util::sync::CancellationToken;

use crate::workers::scheduler::SyncManager;

/// How often the clock's decisions are looked for.
pub const CLOCK_SCAN_INTERVAL_MS: u64 = 1_000;
/// Open actions examined per source per scan.
pub const CLOCK_SCAN_ACTIONS_MAX: usize = 10_000;

pub async fn run(
    store: Arc<Store>,
    syncs: SyncManager,
    js: async_nats::jetstream::Context,
    cancel: CancellationToken,
) {
    let mut overdue_sent: HashSet<String> = HashSet::new();
    let mut stale: HashSet<String> = HashSet::new();
    let mut tick = tokio::time::interval(Duration::from_millis(CLOCK_SCAN_INTERVAL_MS));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = cancel.cancelled() => return,
        }
        let now = chrono::Utc::now().timestamp_micros();
        let sources: Vec<String> = syncs.configured().map(str::to_owned).collect();
        for source_id in sources {
            for a in store
                .open_actions(&source_id, CLOCK_SCAN_ACTIONS_MAX)
                .unwrap_or_default()
            {
                let (o, detail) = verdict::action_outcome(&a, None, now);
                if o == govledger_proto::v1::ActionOutcome::Overdue
                    && !overdue_sent.contains(&a.action_id)
                {
                    let told = Alert {
                        kind: alert::Kind::ActionOverdue as i32,
                        source_id: source_id.clone(),
                        action_id: a.action_id.clone(),
                        outcome: o as i32,
                        message: detail,
                        ..Default::default()
                    };
                    if tell(&js, &told).await {
                        overdue_sent.insert(a.action_id.clone());
                    }
                }
            }
            let objective = syncs.freshness_objective_ms(&source_id).unwrap_or(u64::MAX);
            let state = store.source(&source_id).ok().flatten();
            let (f, age_ms) = verdict::freshness(state.as_ref(), objective, now);
            if f == Freshness::Stale {
                if !stale.contains(&source_id) {
                    let told = Alert {
                        kind: alert::Kind::SourceStale as i32,
                        source_id: source_id.clone(),
                        // The staleness of this last COMPLETE run: its id names the decision.
                        run_id: state
                            .as_ref()
                            .map(|s| s.last_complete_run_id.clone())
                            .unwrap_or_default(),
                        message: format!(
                            "last complete run is {} old, over its objective of {}",
                            verdict::human_ms(age_ms),
                            verdict::human_ms(objective as i64)
                        ),
                        ..Default::default()
                    };
                    if tell(&js, &told).await {
                        stale.insert(source_id.clone());
                    }
                }
            } else {
                stale.remove(&source_id);
            }
        }
    }
}

/// Stores a clock decision in the alerts stream; whether it is stored (now
/// or before). A failure is logged and tried again at the next scan.
async fn tell(js: &async_nats::jetstream::Context, a: &Alert) -> bool {
    match crate::alerts::publish(js, a).await {
        Ok(_) => true,
        Err(e) => {
            tracing::warn!("{e}");
            false
        }
    }
}
