//! Row 5: query latency. A `govledger serve` child on the projected data of the
//! scale run answers GetSource, GetRun, CheckReadiness (every source) and
//! GetIdentity from concurrent clients; `grpc.health.v1.Health/Check` on the
//! same server, measured the same way, is the baseline. A round measures every
//! RPC in its own phase, health check first; [`ROUNDS`] rounds run back to
//! back. Each RPC's ratio is taken within a round (its p99 over that round's
//! health-check p99, measured seconds apart under the same conditions), and
//! the median round counts, as in row 2.

use std::{
    path::Path,
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, anyhow};
use govledger::simulate::user_id;
use govledger_proto::v1::{
    CheckReadinessRequest, EntityType, GetIdentityRequest, GetRunRequest, GetSourceRequest,
    ledger_client::LedgerClient,
};
use tonic::transport::Channel;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

use crate::{events, procs, scale::Scaled};

/// Concurrent client tasks (each with its own connection).
pub const TASKS: usize = 16;

/// Measured rounds (odd: the median is one of them).
pub const ROUNDS: usize = 5;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rpc {
    Health,
    GetSource,
    GetRun,
    CheckReadiness,
    GetIdentity,
}

impl Rpc {
    pub const ALL: [Rpc; 5] = [
        Rpc::Health,
        Rpc::GetSource,
        Rpc::GetRun,
        Rpc::CheckReadiness,
        Rpc::GetIdentity,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Rpc::Health => "Health/Check",
            Rpc::GetSource => "GetSource",
            Rpc::GetRun => "GetRun",
            Rpc::CheckReadiness => "CheckReadiness(10 sources)",
            Rpc::GetIdentity => "GetIdentity",
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub struct Latency {
    pub rpc: Rpc,
    pub calls: usize,
    pub p50: Duration,
    pub p99: Duration,
}

/// What the clients ask about.
struct Targets {
    sources: Vec<String>,
    runs: Vec<String>,
    users_per_source: u64,
}

/// Every round's latencies, in [`Rpc::ALL`] order, rounds in the order run.
pub async fn bench(
    scaled: &Scaled,
    govledger_bin: &Path,
    calls: usize,
) -> Result<Vec<Vec<Latency>>> {
    let url = scaled.nats.url();
    let data = scaled.data_dir();
    let config = scaled.config();
    procs::settle().await?;
    let mut serve = procs::start_serve(
        govledger_bin,
        &url,
        &data,
        &config,
        &scaled.dir.path().join("serve.log"),
    )
    .await?;
    crate::progress(format!("  govledger serve on {}", serve.addr));
    // The local admin token serve wrote (no [auth] in the bench config): every
    // call carries it, as every real client's does.
    let token = std::fs::read_to_string(data.join("admin.token"))
        .context("reading the local admin token of govledger serve")?;
    let token = govledger::cli::client::BearerToken::new(&token)?;
    let targets = Arc::new(Targets {
        sources: (0..events::SOURCES).map(events::source_id).collect(),
        runs: scaled
            .published
            .runs
            .iter()
            .map(|(_, r)| r.clone())
            .collect(),
        users_per_source: scaled.plan.users_per_source,
    });
    let result = async {
        // Warm-up: connections, sled's cache for the keys asked about.
        for rpc in Rpc::ALL {
            phase(&serve.addr, &token, rpc, (calls / 10).max(TASKS), &targets).await?;
        }
        let mut rounds = Vec::with_capacity(ROUNDS);
        for round in 0..ROUNDS {
            let mut this = Vec::with_capacity(Rpc::ALL.len());
            for rpc in Rpc::ALL {
                let l = phase(&serve.addr, &token, rpc, calls, &targets).await?;
                crate::progress(format!(
                    "  {} round {}: p50 {:.3} ms, p99 {:.3} ms ({} calls)",
                    rpc.name(),
                    round + 1,
                    ms(l.p50),
                    ms(l.p99),
                    l.calls
                ));
                this.push(l);
            }
            rounds.push(this);
        }
        Ok::<_, anyhow::Error>(rounds)
    }
    .await;
    serve.guard.stop(Duration::from_secs(10)).await;
    result
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// `calls` calls of `rpc` from [`TASKS`] concurrent clients; per-call latency.
async fn phase(
    addr: &str,
    token: &govledger::cli::client::BearerToken,
    rpc: Rpc,
    calls: usize,
    targets: &Arc<Targets>,
) -> Result<Latency> {
    let per_task = calls.div_ceil(TASKS);
    let mut tasks = Vec::with_capacity(TASKS);
    for t in 0..TASKS {
        let endpoint = format!("http://{addr}");
        let targets = targets.clone();
        let token = token.clone();
        tasks.push(tokio::spawn(async move {
            let channel = Channel::from_shared(endpoint)?
                .connect()
                .await
                .context("connecting to govledger serve")?;
            let mut ledger = LedgerClient::with_interceptor(channel.clone(), token);
            let mut health = HealthClient::new(channel);
            let mut took = Vec::with_capacity(per_task);
            for i in 0..per_task {
                let k = t + i * TASKS;
                let started = Instant::now();
                call(rpc, k, &targets, &mut ledger, &mut health).await?;
                took.push(started.elapsed());
            }
            Ok::<_, anyhow::Error>(took)
        }));
    }
    let mut all = Vec::with_capacity(per_task * TASKS);
    for t in tasks {
        all.extend(t.await.map_err(|e| anyhow!("client task: {e}"))??);
    }
    all.sort_unstable();
    Ok(Latency {
        rpc,
        calls: all.len(),
        p50: percentile(&all, 50.0),
        p99: percentile(&all, 99.0),
    })
}

/// One RPC's figures in its median round.
#[derive(Debug, Clone)]
pub struct MedianRound {
    /// Every round's p99 over the same round's health-check p99, in round order.
    pub ratios: Vec<f64>,
    /// The median of `ratios`.
    pub ratio: f64,
    /// The median round's latencies of the RPC and of its health check.
    pub rpc: Latency,
    pub health: Latency,
}

/// `rpc`'s [`MedianRound`]; `None` when no round measured both it and the
/// health check.
pub fn median_round(rounds: &[Vec<Latency>], rpc: Rpc) -> Option<MedianRound> {
    let mut per: Vec<(f64, Latency, Latency)> = rounds
        .iter()
        .filter_map(|r| {
            let h = r.iter().find(|l| l.rpc == Rpc::Health)?;
            let l = r.iter().find(|l| l.rpc == rpc)?;
            Some((l.p99.as_secs_f64() / h.p99.as_secs_f64().max(1e-9), *l, *h))
        })
        .collect();
    let in_order = per.iter().map(|p| p.0).collect();
    per.sort_by(|a, b| a.0.total_cmp(&b.0));
    let (ratio, l, h) = *per.get(per.len().checked_sub(1)? / 2)?;
    Some(MedianRound {
        ratios: in_order,
        ratio,
        rpc: l,
        health: h,
    })
}

/// The `p`-th percentile of sorted `xs` (nearest rank).
pub fn percentile(xs: &[Duration], p: f64) -> Duration {
    if xs.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * xs.len() as f64).ceil() as usize;
    xs[rank.clamp(1, xs.len()) - 1]
}

/// One call; the `k`-th of its phase picks which source, run or user.
async fn call(
    rpc: Rpc,
    k: usize,
    t: &Targets,
    ledger: &mut govledger::cli::client::Client,
    health: &mut HealthClient<Channel>,
) -> Result<()> {
    let source = || t.sources[k % t.sources.len()].clone();
    match rpc {
        Rpc::Health => {
            health
                .check(HealthCheckRequest {
                    service: String::new(),
                })
                .await?;
        }
        Rpc::GetSource => {
            ledger
                .get_source(GetSourceRequest {
                    as_of: None,
                    source_id: source(),
                })
                .await?;
        }
        Rpc::GetRun => {
            let run_id = t
                .runs
                .get(k.wrapping_mul(7_919) % t.runs.len().max(1))
                .cloned()
                .unwrap_or_default();
            ledger.get_run(GetRunRequest { run_id }).await?;
        }
        Rpc::CheckReadiness => {
            ledger
                .check_readiness(CheckReadinessRequest {
                    source_ids: t.sources.clone(),
                    ..Default::default()
                })
                .await?;
        }
        Rpc::GetIdentity => {
            // A spread of users (a multiplicative stride), not a hot few.
            let n = (k as u64).wrapping_mul(104_729) % t.users_per_source.max(1);
            let r = ledger
                .get_identity(GetIdentityRequest {
                    as_of: None,
                    source_id: source(),
                    entity_type: EntityType::User as i32,
                    external_id: user_id(n),
                })
                .await?
                .into_inner();
            if r.identity.is_none() {
                return Err(anyhow!("identity {} of {} not found", user_id(n), source()));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentile_nearest_rank() {
        let xs: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(percentile(&xs, 50.0), Duration::from_millis(50));
        assert_eq!(percentile(&xs, 99.0), Duration::from_millis(99));
        assert_eq!(percentile(&xs[..1], 99.0), Duration::from_millis(1));
        assert_eq!(percentile(&[], 99.0), Duration::ZERO);
    }

    fn lat(rpc: Rpc, p99_ms: u64) -> Latency {
        Latency {
            rpc,
            calls: 1,
            p50: Duration::from_millis(1),
            p99: Duration::from_millis(p99_ms),
        }
    }

    #[test]
    fn the_median_round_pairs_each_rpc_with_its_own_rounds_health_check() {
        // Round 2's health check is unusually fast: taking the best p99 of
        // each RPC separately would divide by it; per-round ratios do not.
        let rounds = vec![
            vec![lat(Rpc::Health, 10), lat(Rpc::GetSource, 20)],
            vec![lat(Rpc::Health, 2), lat(Rpc::GetSource, 18)],
            vec![lat(Rpc::Health, 10), lat(Rpc::GetSource, 15)],
        ];
        let m = median_round(&rounds, Rpc::GetSource).unwrap();
        assert_eq!(m.ratios, vec![2.0, 9.0, 1.5]);
        assert_eq!(m.ratio, 2.0);
        assert_eq!(m.rpc.p99, Duration::from_millis(20));
        assert_eq!(m.health.p99, Duration::from_millis(10));
        assert!(median_round(&rounds, Rpc::GetIdentity).is_none());
        assert!(median_round(&[], Rpc::GetSource).is_none());
    }
}
