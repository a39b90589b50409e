//! `--only cluster`: throughput of one vs two ingest workers and of one vs two
//! query nodes on a three-node JetStream cluster (R3), every process on this
//! machine. Its report goes to stdout (the figures of issue 25's note), never
//! into BENCHMARKS.md's table: on one machine the "nodes" share its cores, so
//! the numbers say what the roles cost, not what more machines would give.
//!
//! Ingest: `SOURCES` sources on one fault SCIM server (in this process),
//! each listing the same users; every source triggered at once through an
//! `api` node; the time from the first trigger to the last run decided, and
//! the events stored per second, with one and with two `govledger ingest`.
//! Query: `TASKS` clients call GetSource and GetIdentity back to back for a
//! fixed time against one `api` node, then spread over two.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, anyhow};
use govledger_proto::v1::{
    EntityType, GetIdentityRequest, GetSourceRequest, TriggerSyncRequest, Verdict,
};
use govledger_testkit::{
    Govledger,
    fault_scim::{FaultScim, ScimConfig},
    nats_cluster::NatsCluster,
};

/// Sources synced at once (a worker per source: what two workers can share).
const SOURCES: usize = 4;
/// Concurrent query clients.
const TASKS: usize = 16;
/// How long each query phase calls.
const QUERY_PHASE: Duration = Duration::from_secs(20);

/// What to size.
#[derive(Debug, Clone, Copy)]
pub struct ClusterParams {
    /// Users each source lists.
    pub users: usize,
    pub page_size: u32,
}

fn toml(cluster: &NatsCluster, node: &str, stream: &str, scim: &FaultScim, page: u32) -> String {
    let urls: Vec<String> = cluster.urls().iter().map(|u| format!("{u:?}")).collect();
    let mut t = format!(
        "[nats]\nurls = [{}]\nstream = \"{stream}\"\n\n[stream]\nreplicas = 3\n\n\
         [cluster]\nnode = \"{node}\"\n\n[audit]\ncheckpoint_interval_ms = 0\n\n\
         [api]\nbackground_nice = 0\n",
        urls.join(", ")
    );
    for i in 0..SOURCES {
        t.push_str(&format!(
            "\n[[sources]]\nid = \"src{i}\"\nbase_url = \"{}\"\npage_size = {page}\nresources = [\"Users\"]\n",
            scim.base_url
        ));
    }
    t
}

/// One ingest measurement: `workers` ingest processes sync every source once.
async fn ingest_once(
    cluster: &NatsCluster,
    scim: &FaultScim,
    p: ClusterParams,
    workers: usize,
) -> Result<(Duration, u64, String)> {
    let stream = format!("GLBENCH_I{workers}");
    let ingest: Vec<Govledger> = (0..workers)
        .map(|i| {
            Govledger::role_with_config(
                "ingest",
                &toml(cluster, &format!("ingest-{i}"), &stream, scim, p.page_size),
            )
        })
        .collect();
    let api = Govledger::role_with_config(
        "api",
        &toml(cluster, "api-ingest", &stream, scim, p.page_size),
    );
    let started = Instant::now();
    let mut runs = Vec::new();
    for i in 0..SOURCES {
        let mut c = api.client().await;
        let run = c
            .trigger_sync(TriggerSyncRequest {
                source_id: format!("src{i}"),
                mode: 0,
            })
            .await
            .map_err(|s| anyhow!("TriggerSync src{i}: {s:?}"))?
            .into_inner();
        runs.push(run.run_id);
    }
    for run in &runs {
        let r = api.wait_decided(run, Duration::from_secs(1_800)).await;
        if r.verdict != Verdict::Complete as i32 {
            return Err(anyhow!("run {run} was not COMPLETE: {:?}", r.reasons));
        }
    }
    let took = started.elapsed();
    let js = async_nats::jetstream::new(cluster.client().await);
    let events = js
        .get_stream(&stream)
        .await
        .context("the bench stream")?
        .info()
        .await
        .context("stream info")?
        .state
        .messages;
    // Which worker ran how many of the runs (each says so in its log).
    let split = ingest
        .iter()
        .map(|g| g.log_text().matches("sync started").count().to_string())
        .collect::<Vec<_>>()
        .join(" + ");
    drop((ingest, api));
    Ok((took, events, split))
}

/// Calls per second (and p99) of `TASKS` clients over `nodes`, round robin.
async fn query_once(nodes: &[&Govledger], users: usize) -> Result<(f64, Duration)> {
    let calls = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + QUERY_PHASE;
    let mut tasks = Vec::new();
    for t in 0..TASKS {
        let node = nodes[t % nodes.len()];
        let mut c = node.client().await;
        let calls = calls.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut k = t;
            while Instant::now() < deadline {
                let at = Instant::now();
                let ok = if k % 2 == 0 {
                    c.get_source(GetSourceRequest {
                        source_id: format!("src{}", k % SOURCES),
                        ..Default::default()
                    })
                    .await
                    .is_ok()
                } else {
                    c.get_identity(GetIdentityRequest {
                        source_id: format!("src{}", k % SOURCES),
                        external_id: format!("u{:07}", k % users),
                        entity_type: EntityType::User as i32,
                        ..Default::default()
                    })
                    .await
                    .is_ok()
                };
                if ok {
                    lat.push(at.elapsed());
                    calls.fetch_add(1, Ordering::Relaxed);
                }
                k += TASKS;
            }
            lat
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await?);
    }
    all.sort();
    let p99 = all
        .get(all.len().saturating_mul(99) / 100)
        .copied()
        .unwrap_or_default();
    Ok((
        calls.load(Ordering::Relaxed) as f64 / QUERY_PHASE.as_secs_f64(),
        p99,
    ))
}

/// Runs both measurements; the report as markdown.
pub async fn run(p: ClusterParams) -> Result<String> {
    let cluster = NatsCluster::try_start(3)
        .await
        .map_err(|e| anyhow!("{e}"))?;
    let scim = FaultScim::start_with(ScimConfig {
        users: p.users,
        ..Default::default()
    })
    .await;
    crate::progress("cluster: one ingest worker");
    let one = ingest_once(&cluster, &scim, p, 1).await?;
    // One stream at a time holds the ledger's subjects.
    let js = async_nats::jetstream::new(cluster.client().await);
    js.delete_stream("GLBENCH_I1")
        .await
        .map_err(|e| anyhow!("deleting the first phase's stream: {e}"))?;
    crate::progress("cluster: two ingest workers");
    let two = ingest_once(&cluster, &scim, p, 2).await?;
    // Query nodes over the stream the two workers wrote.
    let stream = "GLBENCH_I2";
    let a = Govledger::role_with_config("api", &toml(&cluster, "api-a", stream, &scim, 100));
    let b = Govledger::role_with_config("api", &toml(&cluster, "api-b", stream, &scim, 100));
    a.wait_applied(two.1).await;
    b.wait_applied(two.1).await;
    crate::progress("cluster: queries on one api node");
    let q1 = query_once(&[&a], p.users).await?;
    crate::progress("cluster: queries on two api nodes");
    let q2 = query_once(&[&a, &b], p.users).await?;
    let rate = |(d, n, _): &(Duration, u64, String)| *n as f64 / d.as_secs_f64();
    Ok(format!(
        "## Cluster throughput (3 nats-server nodes, R3, all on this machine's cores)\n\n\
         - sources: {SOURCES} × {users} users (fault SCIM server in the bench process, pages of {page}); \
         queries: {TASKS} clients for {qs} s, GetSource and GetIdentity alternating\n\n\
         | what | 1 | 2 | 2 ÷ 1 |\n|---|---:|---:|---:|\n\
         | ingest workers: {SOURCES} full syncs, first trigger → last run decided (runs per worker) | {d1:.1} s ({e1} events, {r1:.0} ev/s; {s1}) | {d2:.1} s ({e2} events, {r2:.0} ev/s; {s2}) | {x1:.2} |\n\
         | query nodes: calls/s (p99) | {c1:.0} ({p1:.1} ms) | {c2:.0} ({p2:.1} ms) | {x2:.2} |\n",
        users = p.users,
        page = p.page_size,
        qs = QUERY_PHASE.as_secs(),
        d1 = one.0.as_secs_f64(),
        e1 = one.1,
        r1 = rate(&one),
        s1 = one.2,
        d2 = two.0.as_secs_f64(),
        e2 = two.1,
        r2 = rate(&two),
        s2 = two.2,
        x1 = rate(&two) / rate(&one),
        c1 = q1.0,
        p1 = q1.1.as_secs_f64() * 1e3,
        c2 = q2.0,
        p2 = q2.1.as_secs_f64() * 1e3,
        x2 = q2.0 / q1.0,
    ))
}
