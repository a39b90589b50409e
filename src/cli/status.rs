//! The commands about sources and their runs: `status`, `sync`, `readiness`,
//! `runs`, `run`, `identity`, `source`.

use std::time::Duration;

use govledger_projector::verdict::plural;
use govledger_proto::v1::{
    CheckReadinessRequest, GetIdentityRequest, GetRunRequest, GetRunResponse, GetSourceRequest,
    ListRunsRequest, ListSourcesRequest, SyncMode, TriggerSyncRequest, Verdict,
};

use super::{
    args::{ClientFlags, IdentityArgs, ReadinessArgs, RunArgs, RunsArgs, SourceArgs, SyncArgs},
    client::{NotOk, as_of_arg, connect, status_err},
    output,
};

/// How often `sync` asks whether its run is decided.
const FOLLOW_POLL_MS: u64 = 200;

/// `govledger status`: sources with their freshness and last verdict.
pub async fn status(f: ClientFlags) -> anyhow::Result<()> {
    let mut c = connect(&f).await?;
    let r = c
        .list_sources(ListSourcesRequest {})
        .await
        .map_err(status_err)?;
    super::emit::emit(
        f.json,
        &r.into_inner(),
        "govledger.v1.ListSourcesResponse",
        |r| output::sources_table(&r.sources),
    )?;
    Ok(())
}

/// `govledger sync`: triggers a run and follows it (exit 3 unless COMPLETE).
pub async fn sync(a: SyncArgs) -> anyhow::Result<()> {
    let mut c = connect(&a.client).await?;
    let started = c
        .trigger_sync(TriggerSyncRequest {
            source_id: a.source.clone(),
            mode: if a.delta {
                SyncMode::Delta as i32
            } else {
                SyncMode::Full as i32
            },
        })
        .await
        .map_err(status_err)?
        .into_inner();
    let run_id = started.run_id;
    println!("sync of {} started: run {run_id}", a.source);
    let follow = (Duration::from_secs(a.timeout_s), started.seq);
    let run = follow_run(&mut c, &run_id, follow).await?;
    print!("{}", output::run_detail(&run));
    if run.verdict != Verdict::Complete as i32 {
        return Err(NotOk.into());
    }
    Ok(())
}

/// Polls a run until the ledger has decided its verdict, with a progress bar
/// (records seen of records declared) on a terminal.
/// `seq` is the run start's stream sequence: any node of a cluster answers
/// once it has applied it.
async fn follow_run(
    c: &mut crate::cli::client::Client,
    run_id: &str,
    (timeout, seq): (Duration, u64),
) -> anyhow::Result<GetRunResponse> {
    use indicatif::{ProgressBar, ProgressStyle};
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} {elapsed_precise} [{bar:40}] {pos}/{len} records  {msg}",
        )?
        .progress_chars("=> "),
    );
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        match c
            .get_run(crate::cli::client::at_least(
                GetRunRequest {
                    run_id: run_id.to_owned(),
                },
                seq,
            ))
            .await
        {
            Ok(r) => {
                let r = r.into_inner();
                if let Some(run) = &r.run {
                    bar.set_length(run.declared_total_last.unwrap_or(0).max(run.records_unique));
                    bar.set_position(run.records_unique);
                    bar.set_message(format!(
                        "{}, {}",
                        plural(run.pages_fetched, "page", "pages"),
                        plural(run.page_failures, "failed attempt", "failed attempts")
                    ));
                    if run.decided {
                        bar.finish_and_clear();
                        return Ok(r);
                    }
                }
            }
            Err(s) if s.code() == tonic::Code::NotFound => {}
            Err(s) if seq > 0 && s.code() == tonic::Code::Unavailable => {}
            Err(s) => return Err(status_err(s)),
        }
        if tokio::time::Instant::now() > deadline {
            bar.abandon();
            anyhow::bail!(
                "run {run_id} not decided after {} s; follow it with `govledger run {run_id}`",
                timeout.as_secs()
            );
        }
        bar.tick();
        tokio::time::sleep(Duration::from_millis(FOLLOW_POLL_MS)).await;
    }
}

/// `govledger readiness`: may a review close? (exit 3 when not)
pub async fn readiness(a: ReadinessArgs) -> anyhow::Result<()> {
    let mut c = connect(&a.client).await?;
    let r = c
        .check_readiness(CheckReadinessRequest {
            source_ids: a.sources,
            identity_external_ids: a.identities,
        })
        .await
        .map_err(status_err)?
        .into_inner();
    super::emit::emit(
        a.client.json,
        &r,
        "govledger.v1.CheckReadinessResponse",
        output::readiness,
    )?;
    if !r.ready {
        return Err(NotOk.into());
    }
    Ok(())
}

/// `govledger runs`: the runs of one source, newest first.
pub async fn runs(a: RunsArgs) -> anyhow::Result<()> {
    let json = a.client.json;
    let mut c = connect(&a.client).await?;
    let r = c
        .list_runs(ListRunsRequest {
            source_id: a.source,
            limit: a.limit,
        })
        .await
        .map_err(status_err)?;
    super::emit::emit(
        json,
        &r.into_inner(),
        "govledger.v1.ListRunsResponse",
        |r| output::runs_table(&r.runs),
    )?;
    Ok(())
}

/// `govledger run`: one run's verdict, reasons and counts.
pub async fn run(a: RunArgs) -> anyhow::Result<()> {
    let mut c = connect(&a.client).await?;
    let r = c
        .get_run(GetRunRequest { run_id: a.run_id })
        .await
        .map_err(status_err)?;
    super::emit::emit(
        a.client.json,
        &r.into_inner(),
        "govledger.v1.GetRunResponse",
        output::run_detail,
    )?;
    Ok(())
}

/// `govledger identity`: one identity's last observation (or as of a point).
pub async fn identity(a: IdentityArgs) -> anyhow::Result<()> {
    let json = a.client.json;
    let as_of = as_of_arg(a.as_of.as_deref())?;
    let entity_type: govledger_proto::v1::EntityType = a.r#type.into();
    let mut c = connect(&a.client).await?;
    let r = c
        .get_identity(GetIdentityRequest {
            source_id: a.source,
            entity_type: entity_type as i32,
            external_id: a.external_id,
            as_of,
        })
        .await
        .map_err(status_err)?;
    super::emit::emit(
        json,
        &r.into_inner(),
        "govledger.v1.GetIdentityResponse",
        output::identity_detail,
    )?;
    Ok(())
}

/// `govledger source`: one source's freshness and last verdict (or as of a point).
pub async fn source(a: SourceArgs) -> anyhow::Result<()> {
    let json = a.client.json;
    let as_of = as_of_arg(a.as_of.as_deref())?;
    let mut c = connect(&a.client).await?;
    let r = c
        .get_source(GetSourceRequest {
            source_id: a.source,
            as_of,
        })
        .await
        .map_err(status_err)?;
    super::emit::emit(
        json,
        &r.into_inner(),
        "govledger.v1.GetSourceResponse",
        output::source_detail,
    )?;
    Ok(())
}
