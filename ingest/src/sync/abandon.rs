//! Ending a run explicitly ABANDONED (a worker restarted mid-run, or its
//! events could not be stored): one deterministic event id per run's
//! abandonment, so retries and a second worker store it once.

use govledger_proto::v1::{EngineOutcome, SyncRunFinished, event::Body};

use crate::{
    Publisher,
    event::{ProducerId, Scope, stamp},
    publisher::PublishError,
};

/// Namespace of abandonment event ids (UUID v5).
const ABANDON_NS: uuid::Uuid = uuid::Uuid::from_u128(0x2b7c_41d0_8f3e_4a19_9c65_d1e2_f3a4_b5c6);

/// Records `run_id` ABANDONED (`why`): a run a worker will not finish,
/// ended explicitly so it never looks complete (R10).
pub async fn abandon_run(
    publisher: &Publisher,
    producer: &ProducerId,
    source_id: &str,
    run_id: &str,
    why: &str,
) -> Result<(), PublishError> {
    let mut ev = stamp(
        producer,
        &Scope::run(source_id, run_id),
        1,
        Body::SyncRunFinished(SyncRunFinished {
            engine_outcome: EngineOutcome::Abandoned as i32,
            message: why.to_owned(),
            ..Default::default()
        }),
    );
    // One id per run's abandonment: a retry, or a second worker abandoning
    // the same run, stores it once (JetStream's and the fold's dedup).
    ev.event_id = uuid::Uuid::new_v5(
        &ABANDON_NS,
        format!("{source_id}\0{run_id}\0abandoned").as_bytes(),
    )
    .to_string();
    publisher.publish_wait(&ev).await.map(|_| ())
}
