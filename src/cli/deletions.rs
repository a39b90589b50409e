//! The command that accepts a SUSPECT run's count drops: `accept-deletions`.

use std::time::Duration;

use govledger_proto::v1::{AcceptDeletionsRequest, GetRunRequest, GetRunResponse, Verdict};

use super::{
    args::AcceptDeletionsArgs,
    client::{NotOk, connect, status_err},
    output,
};

/// How long `accept-deletions` waits for the ledger to show the acceptance.
const FOLLOW_TIMEOUT_MS: u64 = 30_000;
/// How often it asks.
const FOLLOW_POLL_MS: u64 = 100;

/// `govledger accept-deletions`: records the acceptance, then shows the run
/// (exit 3 unless it is COMPLETE afterwards).
pub async fn accept_deletions(a: AcceptDeletionsArgs) -> anyhow::Result<()> {
    let mut c = connect(&a.client).await?;
    let r = c
        .accept_deletions(AcceptDeletionsRequest {
            run_id: a.run_id.clone(),
            // The ledger records the authenticated principal (the token's).
            accepted_by: String::new(),
            reason: a.reason,
            ticket: a.ticket,
        })
        .await
        .map_err(status_err)?
        .into_inner();
    print!("{}", output::acceptance(&r));
    let run = follow(&mut c, &a.run_id, r.seq).await?;
    print!("{}", output::run_detail(&run));
    if run.verdict != Verdict::Complete as i32 {
        return Err(NotOk.into());
    }
    Ok(())
}

/// Polls the run until the ledger shows an acceptance at or after `seq`'s
/// (bounded); then its answer.
async fn follow(
    c: &mut crate::cli::client::Client,
    run_id: &str,
    seq: u64,
) -> anyhow::Result<GetRunResponse> {
    let deadline = tokio::time::Instant::now() + Duration::from_millis(FOLLOW_TIMEOUT_MS);
    loop {
        let r = c
            .get_run(GetRunRequest {
                run_id: run_id.to_owned(),
            })
            .await
            .map_err(status_err)?
            .into_inner();
        let shown = r
            .run
            .as_ref()
            .and_then(|x| x.acceptance.as_ref())
            .is_some_and(|x| x.seq <= seq);
        if shown {
            return Ok(r);
        }
        if tokio::time::Instant::now() > deadline {
            anyhow::bail!(
                "the acceptance is stored at stream sequence {seq} but the ledger does not show it yet; \
                 follow it with `govledger run {run_id}`"
            );
        }
        tokio::time::sleep(Duration::from_millis(FOLLOW_POLL_MS)).await;
    }
}
