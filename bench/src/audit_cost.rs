//! Row 7: what an auditor's question costs, at each size of the scale run.
//! An inclusion proof (`GetInclusionProof` of the middle event) and the
//! export of one identity's evidence (`ExportEvidence`: anchor checkpoint
//! signed, the identity's history read, every proof from the tiles; the
//! median of [`EXPORT_CALLS`] identities, each exported twice: cold, then
//! the ledger's own work) on a
//! `govledger serve` child over the projected data — time, and the server's
//! peak resident memory above where it stood (the kernel's high-water mark,
//! reset before each measurement through `/proc/PID/clear_refs`). The
//! baseline is the way proofs were made before tiles, measured in this
//! process on the same sled folder: read every recorded leaf, hold them,
//! compute the root and the proof.
//!
//! Also a point-in-time source answer (`GetSource` with `as_of`): one at half
//! the stream (the source's history folded), then one at three quarters —
//! folded on from the first answer's snapshot — against the same question
//! with the snapshots removed (the source's history up to it folded again).

use std::{
    path::Path,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, anyhow};
use govledger::simulate::user_id;
use govledger_projector::merkle;
use govledger_proto::v1::{
    AsOf, EntityType, ExportEvidenceRequest, GetInclusionProofRequest, GetSourceRequest, as_of,
    ledger_client::LedgerClient,
};
use tonic::transport::Channel;

use crate::{
    events, procs,
    project::CACHE_CAPACITY_BYTES,
    query::ms,
    scale::{Scaled, mib},
};

/// Inclusion proofs asked per size (after one first, cold, call).
pub const PROOF_CALLS: usize = 200;
/// Identities exported per size (odd: the median is one of them).
pub const EXPORT_CALLS: usize = 5;

/// What one size gave.
#[derive(Debug, Clone)]
pub struct AuditPoint {
    pub identities: u64,
    pub events: u64,
    /// The first proof (cold caches) and the median of the next [`PROOF_CALLS`].
    pub proof_first: Duration,
    pub proof_p50: Duration,
    /// The server's peak RSS above its resident size, over all the proofs.
    pub proof_peak_bytes: u64,
    /// The median of [`EXPORT_CALLS`] identities' second exports (the
    /// ledger's work), and of their first (the identity's messages read cold).
    pub export: Duration,
    pub export_cold: Duration,
    /// The server's peak RSS above its resident size, the largest of the exports.
    pub export_peak_bytes: u64,
    pub export_events: usize,
    pub bundle_bytes: usize,
    /// Before tiles: every leaf read and held, the root and one proof.
    pub before: Duration,
    pub before_bytes: u64,
    /// `GetSource` as of half the stream (no snapshot: the source's history
    /// folded), then as of three quarters from that answer's snapshot, and
    /// as of three quarters again with the snapshots removed.
    pub pit_first: Duration,
    pub pit_next: Duration,
    pub pit_full: Duration,
}

/// Measures one size (the scale run's data, projected; no other child runs).
pub async fn measure(s: &Scaled, govledger_bin: &Path) -> Result<AuditPoint> {
    let sled = s.data_dir().join("sled");
    let (before, before_bytes, size) = tokio::task::block_in_place(|| before_tiles(&sled))?;
    procs::settle().await?;
    let mut serve = procs::start_serve(
        govledger_bin,
        &s.nats.url(),
        &s.data_dir(),
        &s.config(),
        &s.dir.path().join("serve-audit.log"),
    )
    .await?;
    let result = async {
        let pid = serve.guard.id().ok_or_else(|| anyhow!("serve is gone"))?;
        let token = std::fs::read_to_string(s.data_dir().join("admin.token"))
            .context("reading the local admin token of govledger serve")?;
        let token = govledger::cli::client::BearerToken::new(&token)?;
        let channel = Channel::from_shared(format!("http://{}", serve.addr))?
            .connect()
            .await?;
        let mut c = LedgerClient::with_interceptor(channel, token);
        let seq = (size / 2).max(1);
        let ask = GetInclusionProofRequest { seq, tree_size: 0 };

        let base = reset_peak(pid)?;
        let started = Instant::now();
        c.get_inclusion_proof(ask).await?;
        let proof_first = started.elapsed();
        let mut took = Vec::with_capacity(PROOF_CALLS);
        for _ in 0..PROOF_CALLS {
            let started = Instant::now();
            c.get_inclusion_proof(ask).await?;
            took.push(started.elapsed());
        }
        let proof_peak_bytes = peak_above(pid, base);
        took.sort();
        let proof_p50 = took[took.len() / 2];

        // Several identities, each exported twice: the first export reads
        // the identity's messages from JetStream's file store cold (what the
        // disk and page cache cost), the second measures the ledger's work.
        let users = s.plan.users_per_source.max(1);
        let (mut cold, mut warm) = (Vec::new(), Vec::new());
        let mut export_peak_bytes = 0;
        let mut bundle = Vec::new();
        for k in 0..EXPORT_CALLS as u64 {
            let req = ExportEvidenceRequest {
                source_id: events::source_id(k % events::SOURCES),
                entity_type: EntityType::User as i32,
                external_id: user_id((k * 7_919 + users / 2) % users),
                from_us: 0,
                to_us: 0,
                with_report: false,
            };
            for took in [&mut cold, &mut warm] {
                let base = reset_peak(pid)?;
                let started = Instant::now();
                let mut chunks = c.export_evidence(req.clone()).await?.into_inner();
                bundle.clear();
                while let Some(chunk) = chunks.message().await? {
                    bundle.extend_from_slice(&chunk.data);
                }
                took.push(started.elapsed());
                export_peak_bytes = export_peak_bytes.max(peak_above(pid, base));
            }
        }
        let (pit_first, pit_next, pit_full) = point_in_time(&mut c, s, size).await?;
        cold.sort();
        warm.sort();
        let export = warm[warm.len() / 2];
        let export_cold = cold[cold.len() / 2];
        let b: govledger::audit::evidence::Bundle =
            serde_json::from_slice(&bundle).context("the exported bundle")?;
        Ok::<_, anyhow::Error>(AuditPoint {
            identities: s.plan.identities(),
            events: size,
            proof_first,
            proof_p50,
            proof_peak_bytes,
            export,
            export_cold,
            export_peak_bytes,
            export_events: b.events.len(),
            bundle_bytes: bundle.len(),
            before,
            before_bytes,
            pit_first,
            pit_next,
            pit_full,
        })
    }
    .await;
    serve.guard.stop(Duration::from_secs(10)).await;
    let p = result?;
    crate::progress(format!(
        "  audit cost: proof p50 {:.3} ms (first {:.3} ms, peak +{:.1} MiB); export of one identity ({} events) median {:.1} ms (first export of an identity: {:.1} ms), peak +{:.1} MiB; before tiles: {:.1} ms holding {:.1} MiB of leaves",
        ms(p.proof_p50),
        ms(p.proof_first),
        mib(p.proof_peak_bytes),
        p.export_events,
        ms(p.export),
        ms(p.export_cold),
        mib(p.export_peak_bytes),
        ms(p.before),
        mib(p.before_bytes)
    ));
    crate::progress(format!(
        "  source as of: 1/2 of the stream {:.0} ms (folded from the start); 3/4 from that snapshot {:.0} ms, from the start {:.0} ms",
        ms(p.pit_first),
        ms(p.pit_next),
        ms(p.pit_full)
    ));
    Ok(p)
}

/// The three point-in-time source answers of [`AuditPoint`].
async fn point_in_time(
    c: &mut LedgerClient<
        tonic::service::interceptor::InterceptedService<
            Channel,
            govledger::cli::client::BearerToken,
        >,
    >,
    s: &Scaled,
    size: u64,
) -> Result<(Duration, Duration, Duration)> {
    let snapshots = s.data_dir().join("scratch/source-snapshots");
    let _ = std::fs::remove_dir_all(&snapshots);
    let mut ask = async |seq: u64| -> Result<Duration> {
        let started = Instant::now();
        c.get_source(GetSourceRequest {
            source_id: events::source_id(0),
            as_of: Some(AsOf {
                point: Some(as_of::Point::Seq(seq.max(1))),
            }),
        })
        .await?;
        Ok(started.elapsed())
    };
    let first = ask(size / 2).await?;
    let next = ask(3 * size / 4).await?;
    match std::fs::remove_dir_all(&snapshots) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(e).context("removing the source snapshots");
        }
        _ => {}
    }
    let full = ask(3 * size / 4).await?;
    Ok((first, next, full))
}

/// The proof as it was made before tiles: every recorded leaf read and held,
/// the root and the middle leaf's proof computed. (time, bytes held, size)
fn before_tiles(sled: &Path) -> Result<(Duration, u64, u64)> {
    let store = govledger_projector::Store::open(sled, CACHE_CAPACITY_BYTES)?;
    let size = store.meta()?.merkle_size;
    let started = Instant::now();
    let leaves = store
        .leaves_upto(size)?
        .map_err(|seq| anyhow!("no leaf for sequence {seq}"))?;
    let root = merkle::root(&leaves);
    let proof = merkle::inclusion_proof((size / 2).saturating_sub(1) as usize, &leaves);
    let took = started.elapsed();
    anyhow::ensure!(!proof.is_empty() || size <= 1, "no proof");
    std::hint::black_box(root);
    Ok((took, (leaves.len() * 32) as u64, size))
}

/// Resets the process's peak RSS to its resident size; returns that size.
fn reset_peak(pid: u32) -> Result<u64> {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5")
        .with_context(|| format!("resetting the peak RSS of process {pid}"))?;
    Ok(procs::rss_bytes(pid).unwrap_or(0))
}

/// How far the process's peak RSS rose above `base` since [`reset_peak`].
fn peak_above(pid: u32, base: u64) -> u64 {
    procs::peak_rss_bytes(pid).unwrap_or(0).saturating_sub(base)
}
