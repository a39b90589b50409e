//! Row 3: sync overhead. A full sync of `Users` from a seeded `scim2-server`
//! through the real engine ([`run_sync`], page size 100, every event published
//! and stored before it returns) against a bare paginated read of the same
//! server (GET + JSON parse of every page, same page size, same HTTP client
//! library). Run twice, alternating; the best of each counts.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use govledger_ingest::{
    Publisher,
    http::{Auth, HttpSource},
    retry::RetryPolicy,
    sync::{Paging, Resource, SyncContext, SyncProgress, SyncSpec, run_sync},
};
use govledger_proto::v1::{EngineOutcome, EntityType, SyncMode};
use govledger_stream::{StreamSpec, ensure_stream};
use serde_json::Value;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::procs::{NatsServer, Scim2Server};

pub const PAGE_SIZE: u32 = 100;

#[derive(Debug, Clone)]
pub struct SyncResult {
    pub users: usize,
    pub govledger: Duration,
    pub bare: Duration,
    /// Events the best sync published.
    pub events: u64,
}

pub async fn bench(
    nats: &NatsServer,
    scim: &Scim2Server,
    users: usize,
    rounds: usize,
) -> Result<SyncResult> {
    let client = nats.client().await?;
    ensure_stream(
        &async_nats::jetstream::new(client.clone()),
        &StreamSpec::default(),
    )
    .await?;
    let stop = CancellationToken::new();
    let publisher = Publisher::new(client, crate::events::sealing(), stop.clone());
    let http = Arc::new(HttpSource::new(Auth::None, Duration::from_secs(30))?);
    govledger_ingest::http::install_crypto_provider();
    let bare_client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .context("building the bare HTTP client")?;
    let spec = SyncSpec {
        source_id: "bench-scim".into(),
        base_url: scim.base_url.clone(),
        resources: vec![Resource {
            endpoint: "Users".into(),
            entity_type: EntityType::User,
        }],
        paging: Paging::Index,
        page_size: PAGE_SIZE,
        retry: RetryPolicy::default(),
        rate_per_s: 0.0,
        burst: 10,
        deletion_threshold_pct: 0,
        deletion_threshold_abs: 0,
        deletion_thresholds: Vec::new(),
        rest: None,
        member_list_cap: None,
        member_fetch_max: govledger_ingest::sync::DEFAULT_MEMBER_FETCH_MAX,
        ldap: None,
        file: None,
        keep: Vec::new(),
    };
    let mut best = SyncResult {
        users,
        govledger: Duration::MAX,
        bare: Duration::MAX,
        events: 0,
    };
    for round in 0..rounds.max(1) {
        let (progress, _rx) = watch::channel(SyncProgress::default());
        let ctx = SyncContext {
            publisher: publisher.clone(),
            producer: crate::events::producer(),
            http: http.clone(),
            progress,
            cancel: CancellationToken::new(),
        };
        let run_id = uuid_v7();
        let started = Instant::now();
        let report = run_sync(&spec, &ctx, &run_id, SyncMode::Full, None, "bench").await?;
        let took = started.elapsed();
        if report.outcome != EngineOutcome::Succeeded as i32 || report.unique != users as u64 {
            bail!(
                "sync did not read every user: outcome {}, {} unique of {users}: {}",
                report.outcome,
                report.unique,
                report.message
            );
        }
        crate::progress(format!(
            "  sync govledger round {}: {users} users, {} events in {:.2} s",
            round + 1,
            report.events,
            took.as_secs_f64()
        ));
        if took < best.govledger {
            best.govledger = took;
            best.events = report.events;
        }
        let (read, bare) = bare_read(&bare_client, &scim.base_url, "Users", PAGE_SIZE).await?;
        if read != users {
            bail!("bare read saw {read} of {users} users");
        }
        crate::progress(format!(
            "  sync bare read round {}: {read} users in {:.2} s",
            round + 1,
            bare.as_secs_f64()
        ));
        best.bare = best.bare.min(bare);
    }
    publisher.flush().await;
    stop.cancel();
    Ok(best)
}

fn uuid_v7() -> String {
    govledger_ingest::event::new_event_id()
}

/// GET + JSON parse of every page of `{base_url}/{resource}` by
/// `startIndex`/`count`, advancing by what each page held; stops on an empty
/// page or at `totalResults`. Returns (records read, wall time).
pub async fn bare_read(
    http: &reqwest::Client,
    base_url: &str,
    resource: &str,
    page_size: u32,
) -> Result<(usize, Duration)> {
    let started = Instant::now();
    let mut start = 1usize;
    let mut read = 0usize;
    loop {
        let url = format!("{base_url}/{resource}?startIndex={start}&count={page_size}");
        let resp = http
            .get(&url)
            .header("accept", "application/scim+json, application/json")
            .send()
            .await
            .with_context(|| format!("GET {url}"))?;
        let status = resp.status();
        let body = resp.bytes().await?;
        if !status.is_success() {
            bail!("GET {url}: HTTP {status}");
        }
        let page: Value = serde_json::from_slice(&body).with_context(|| format!("GET {url}"))?;
        let total = page["totalResults"].as_u64().unwrap_or(0) as usize;
        let n = page["Resources"].as_array().map_or(0, Vec::len);
        read += n;
        if n == 0 || start - 1 + n >= total {
            break;
        }
        start += n;
    }
    Ok((read, started.elapsed()))
}
