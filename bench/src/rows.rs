//! The table's rows: which measurements run, in table order, and how each
//! measurement becomes rows (labels, figures, ratio and target).

use std::{
    path::Path,
    time::{Duration, Instant},
};

use anyhow::{Result, anyhow};

use crate::{
    BEST_OF_ROUNDS, Cli, Group, Params, audit_cost, events, govledger_bin, procs, progress,
    project, publish, query,
    report::{Row, rate, secs, short, thousands},
    scale, sync,
};

/// The rows, and one line of details per measured size.
pub type Rows = (Vec<Row>, Vec<String>);

/// The rows of the table and the per-size details: the groups `--only` asks
/// for (all by default), in table order.
pub async fn run(cli: &Cli) -> Result<Rows> {
    let p = cli.scale.params();
    let nats_bin = procs::nats_server_bin()?;
    let scim_bin = procs::scim2_server_bin()?;
    let govledger = govledger_bin(cli)?;
    let wanted = |g: Group| cli.only.is_empty() || cli.only.contains(&g);
    let mut rows = Vec::new();
    if wanted(Group::Project) {
        rows.extend(publish_and_project(&p, &nats_bin).await?);
    }
    if wanted(Group::Sync) {
        rows.push(sync_overhead(&p, &nats_bin, &scim_bin).await?);
    }
    if !wanted(Group::Scale) {
        return Ok((rows, Vec::new()));
    }
    let (scale_rows, details) = scale_query_growth(&p, &nats_bin, &govledger).await?;
    rows.extend(scale_rows);
    Ok((rows, details))
}

/// Rows 1 and 2: one server; the last publish stream is projected.
async fn publish_and_project(p: &Params, nats_bin: &Path) -> Result<Vec<Row>> {
    let mut rows = Vec::new();
    progress(format!(
        "row 1: publish {} events",
        thousands(p.publish_events as u64)
    ));
    let nats = procs::NatsServer::start(nats_bin).await?;
    let evs = events::event_set(p.publish_events);
    let r = publish::bench(&nats, &evs, BEST_OF_ROUNDS).await?;
    drop(evs);
    let n = r.events as u64;
    rows.push(
        Row::new(
            "1",
            format!(
                "publish {} events: `Publisher` (encode, Nats-Msg-Id, pipelined, ack) vs raw async-nats publish loop, ≤ {} acks in flight",
                thousands(n),
                publish::RAW_INFLIGHT_MAX
            ),
        )
        .figures(rate(n, r.govledger), rate(n, r.raw))
        .at_least(r.raw.as_secs_f64() / r.govledger.as_secs_f64(), 0.8),
    );
    progress("row 2: projection");
    let pr = project::bench(&nats, &r.stream, BEST_OF_ROUNDS).await?;
    rows.push(
        Row::new(
            "2",
            format!(
                "projection of {} events: `runner::run` (fold, sled batch, flush, ack per 1,000) vs raw pull fetch + ack per 1,000",
                thousands(pr.events)
            ),
        )
        .figures(rate(pr.events, pr.govledger), rate(pr.events, pr.raw))
        .at_least(pr.raw.as_secs_f64() / pr.govledger.as_secs_f64(), 0.5),
    );
    let mut sorted = pr.round_ratios.clone();
    sorted.sort_by(f64::total_cmp);
    rows.push(
        Row::new(
            "2",
            format!(
                "projection vs raw pull fetch + ack, each round's pair (the two run back to back), {} events; ratio = their median",
                thousands(pr.events)
            ),
        )
        .figures(
            pr.round_ratios
                .iter()
                .map(|r| format!("{r:.2}"))
                .collect::<Vec<_>>()
                .join(", "),
            "-",
        )
        .informational(sorted.get(sorted.len() / 2).copied().unwrap_or(f64::NAN)),
    );
    rows.push(
        Row::new(
            "2",
            format!(
                "projection of {} events, storage side: `runner::run` vs a raw sled loop ({}), no reads, no fold, no NATS",
                thousands(pr.events),
                RAW_SLED_KEYS
            ),
        )
        .figures(rate(pr.events, pr.govledger), rate(pr.events, pr.raw_sled))
        .informational(pr.raw_sled.as_secs_f64() / pr.govledger.as_secs_f64()),
    );
    rows.push(
        Row::new(
            "2",
            format!(
                "ceiling on sled: the raw sled floor (above) vs raw pull fetch + ack, {} events — the best ratio any projection writing these records to sled could reach against row 2's baseline",
                thousands(pr.events)
            ),
        )
        .figures(rate(pr.events, pr.raw_sled), rate(pr.events, pr.raw))
        .informational(pr.raw.as_secs_f64() / pr.raw_sled.as_secs_f64()),
    );
    rows.push(
        Row::new(
            "2",
            format!(
                "ceiling on sled with reads: the sled floor plus one `get` before each write (the event-id block, the identity read of a read-modify-write) vs raw pull fetch + ack, {} events",
                thousands(pr.events)
            ),
        )
        .figures(rate(pr.events, pr.raw_sled_reads), rate(pr.events, pr.raw))
        .informational(pr.raw.as_secs_f64() / pr.raw_sled_reads.as_secs_f64()),
    );
    rows.extend(cpu_rows(
        "2",
        &format!("{} events", thousands(pr.events)),
        pr.events,
        pr.govledger_cpu_s,
        pr.raw_cpu_s,
        pr.raw,
    ));
    Ok(rows)
}

/// Row 3: a full sync of a real SCIM server against a bare read of its pages.
async fn sync_overhead(p: &Params, nats_bin: &Path, scim_bin: &Path) -> Result<Row> {
    progress(format!(
        "row 3: sync {} users from scim2-server",
        thousands(p.sync_users as u64)
    ));
    let scim = procs::Scim2Server::try_start(scim_bin, None)?;
    let seeded = Instant::now();
    let ids = scim.try_seed_users(p.sync_users).await?;
    progress(format!(
        "  seeded {} users through /Bulk in {:.2} s",
        ids.len(),
        seeded.elapsed().as_secs_f64()
    ));
    let nats = procs::NatsServer::start(nats_bin).await?;
    let r = sync::bench(&nats, &scim, p.sync_users, 2).await?;
    Ok(Row::new(
        "3",
            format!(
                "full sync of {} users from scim2-server (page {}): `run_sync` until its {} events are stored vs bare GET + JSON parse of every page",
                thousands(r.users as u64),
                sync::PAGE_SIZE,
                thousands(r.events)
            ),
        )
        .figures(secs(r.govledger), secs(r.bare))
        .at_most(
            r.govledger.as_secs_f64() / r.bare.as_secs_f64(),
            1.15,
            "×",
        ),
    )
}

/// Rows 6 (smaller sizes first, each on its own server), then 4 and 5 at the
/// full size, and the per-size details.
async fn scale_query_growth(p: &Params, nats_bin: &Path, govledger: &Path) -> Result<Rows> {
    let mut rows = Vec::new();
    let per_identity = (p.events / p.identities.max(1)).max(1);
    let mut points = Vec::new();
    let mut audits = Vec::new();
    for &g in p.growth.iter().filter(|&&g| g != p.identities) {
        progress(format!("row 6: growth at {} identities", short(g)));
        let s = scale::measure(nats_bin, govledger, g, g * per_identity).await?;
        points.push(s.point.clone());
        progress(format!("row 7: audit cost at {} identities", short(g)));
        audits.push(audit_cost::measure(&s, govledger).await?);
    }
    progress(format!(
        "row 4: scale {} identities / {} events",
        short(p.identities),
        short(p.events)
    ));
    let scaled = scale::measure(nats_bin, govledger, p.identities, p.events).await?;
    let pt = scaled.point.clone();
    rows.extend(scale_rows(&pt));
    points.push(pt.clone());

    progress(format!(
        "row 5: query latency, {} calls per RPC",
        thousands(p.calls as u64)
    ));
    let lat = query::bench(&scaled, govledger, p.calls).await?;
    progress(format!(
        "row 7: audit cost at {} identities",
        short(p.identities)
    ));
    audits.push(audit_cost::measure(&scaled, govledger).await?);
    drop(scaled);
    rows.extend(query_rows(&lat, &pt)?);

    points.sort_by_key(|x| x.identities);
    rows.extend(growth_rows(&points));
    audits.sort_by_key(|a| a.identities);
    rows.extend(audit_rows(&audits));
    let details = points.iter().map(point_detail).collect();
    Ok((rows, details))
}

/// What the raw sled baseline writes, for the row labels.
const RAW_SLED_KEYS: &str = "the sled floor: identity record per RecordObserved + per batch one record per event-id block touched (UUID v7 ids packed 16 bytes each, as the projector keeps them), what a deduplicating projection with one record per identity writes (govledger keeps 16 identities to a record); one batch + flush_async per 1,000; the projector's default cache, HighThroughput";

fn scale_label(pt: &scale::Point) -> String {
    format!(
        "{} identities / {} events",
        short(pt.identities),
        thousands(pt.events)
    )
}

/// What the projection costs in CPU against the raw fetch + ack, and the
/// best ratio against the raw time that CPU allows on this machine's cores
/// if every core worked all the time: `raw time ÷ (projection CPU ÷ cores)`.
/// CPU = the projecting process (all threads) plus nats-server.
pub(crate) fn cpu_rows(
    id: &str,
    label: &str,
    events: u64,
    projection_cpu_s: f64,
    raw_cpu_s: f64,
    raw: Duration,
) -> [Row; 2] {
    let per_event_us = |cpu_s: f64| cpu_s * 1e6 / events.max(1) as f64;
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    [
        Row::new(
            id,
            format!(
                "CPU per event, projecting process + nats-server, all threads: projection vs raw pull fetch + ack, {label} (ratio = projection ÷ raw)"
            ),
        )
        .figures(
            format!("{:.2} µs", per_event_us(projection_cpu_s)),
            format!("{:.2} µs", per_event_us(raw_cpu_s)),
        )
        .informational(projection_cpu_s / raw_cpu_s.max(1e-9)),
        Row::new(
            id,
            format!(
                "bound from CPU, {label}: the best ratio against the raw fetch + ack that the projection's CPU allows on this machine's {cores} cores, all busy all the time (raw time ÷ (projection CPU ÷ {cores}))"
            ),
        )
        .figures(format!("{projection_cpu_s:.2} s CPU ÷ {cores}"), secs(raw))
        .informational(raw.as_secs_f64() * cores as f64 / projection_cpu_s.max(1e-9)),
    ]
}

fn scale_rows(pt: &scale::Point) -> Vec<Row> {
    let label = scale_label(pt);
    let rss_max = pt.project.peak_rss.max(pt.rebuild.peak_rss);
    let [cpu, bound] = cpu_rows(
        "4",
        &label,
        pt.events,
        pt.project_cpu_s,
        pt.raw_fetch_cpu_s,
        pt.raw_fetch,
    );
    vec![
        Row::new("4", format!("ingest of {label} through `Publisher`"))
            .figures(format!("{} ({})", secs(pt.ingest), rate(pt.events, pt.ingest)), "-"),
        Row::new(
            "4",
            format!("projection of {label}: `govledger project --exit-at-end` (child) vs raw pull fetch + ack"),
        )
        .figures(
            format!("{} ({})", secs(pt.project.elapsed), rate(pt.events, pt.project.elapsed)),
            format!("{} ({})", secs(pt.raw_fetch), rate(pt.events, pt.raw_fetch)),
        )
        .at_least(pt.raw_fetch.as_secs_f64() / pt.project.elapsed.as_secs_f64(), 0.5),
        Row::new(
            "4",
            format!("projection of {label}, storage side: `govledger project` (child) vs the raw sled floor (as row 2)"),
        )
        .figures(
            format!("{} ({})", secs(pt.project.elapsed), rate(pt.events, pt.project.elapsed)),
            format!("{} ({})", secs(pt.raw_sled), rate(pt.events, pt.raw_sled)),
        )
        .informational(pt.raw_sled.as_secs_f64() / pt.project.elapsed.as_secs_f64()),
        Row::new(
            "4",
            format!("ceiling on sled, {label}: the raw sled floor vs raw pull fetch + ack"),
        )
        .figures(
            format!("{} ({})", secs(pt.raw_sled), rate(pt.events, pt.raw_sled)),
            format!("{} ({})", secs(pt.raw_fetch), rate(pt.events, pt.raw_fetch)),
        )
        .informational(pt.raw_fetch.as_secs_f64() / pt.raw_sled.as_secs_f64()),
        cpu,
        bound,
        Row::new(
            "4",
            format!(
                "peak RSS of `govledger project` (projection / rebuild), sled cache {} MiB, {label}",
                project::CACHE_CAPACITY_BYTES >> 20
            ),
        )
        .figures(
            format!(
                "{:.0} / {:.0} MiB",
                scale::mib(pt.project.peak_rss),
                scale::mib(pt.rebuild.peak_rss)
            ),
            "-",
        )
        .target("≤ 300 MiB", scale::mib(rss_max) <= 300.0),
        Row::new("4", format!("sled folder size (du), {label}")).figures(
            format!(
                "{:.1} MiB ({:.0} B/event)",
                scale::mib(pt.disk_bytes),
                pt.disk_bytes as f64 / pt.events.max(1) as f64
            ),
            "-",
        ),
        Row::new(
            "4",
            format!("full rebuild from the stream (sled deleted, `project --exit-at-end` again), {label}; baseline: first projection"),
        )
        .figures(
            format!("{} ({})", secs(pt.rebuild.elapsed), rate(pt.events, pt.rebuild.elapsed)),
            secs(pt.project.elapsed),
        )
        .ratio(pt.rebuild.elapsed.as_secs_f64() / pt.project.elapsed.as_secs_f64()),
    ]
}

fn query_rows(rounds: &[Vec<query::Latency>], pt: &scale::Point) -> Result<Vec<Row>> {
    let ms = query::ms;
    query::Rpc::ALL
        .into_iter()
        .filter(|rpc| *rpc != query::Rpc::Health)
        .map(|rpc| {
            let query::MedianRound {
                ratios,
                ratio,
                rpc: l,
                health,
            } = query::median_round(rounds, rpc)
                .ok_or_else(|| anyhow!("no round measured {} and the health check", rpc.name()))?;
            let ratios = ratios
                .iter()
                .map(|r| format!("{r:.2}"))
                .collect::<Vec<_>>()
                .join(", ");
            Ok(Row::new(
                "5",
                format!(
                    "{} p50 / p99, {} clients, {} calls, at {}; the median of {} rounds' ratios ({ratios}), each to its own round's health check",
                    rpc.name(),
                    query::TASKS,
                    thousands(l.calls as u64),
                    scale_label(pt),
                    rounds.len()
                ),
            )
            .figures(
                format!("{:.3} / {:.3} ms", ms(l.p50), ms(l.p99)),
                format!(
                    "Health/Check {:.3} / {:.3} ms",
                    ms(health.p50),
                    ms(health.p99)
                ),
            )
            .at_most(ratio, 3.0, "× (p99)"))
        })
        .collect()
}

fn growth_rows(points: &[scale::Point]) -> Vec<Row> {
    let (Some(first), Some(last)) = (points.first(), points.last()) else {
        return Vec::new();
    };
    if points.len() < 2 {
        return Vec::new();
    }
    let sizes = points
        .iter()
        .map(|p| short(p.identities))
        .collect::<Vec<_>>()
        .join(" → ");
    let per_event = |d: Duration, p: &scale::Point| d.as_secs_f64() * 1e6 / p.events.max(1) as f64;
    let list = |f: &dyn Fn(&scale::Point) -> f64, unit: &str| {
        points
            .iter()
            .map(|p| format!("{}: {:.1}", short(p.identities), f(p)))
            .collect::<Vec<_>>()
            .join(" · ")
            + " "
            + unit
    };
    let linear = |name: &str, f: &dyn Fn(&scale::Point) -> f64, unit: &str| {
        Row::new("6", format!("growth {sizes} identities: {name}"))
            .figures(list(f, unit), "-")
            .at_most(f(last) / f(first).max(1e-12), 1.5, " (≈ linear)")
    };
    let ingest = |p: &scale::Point| per_event(p.ingest, p);
    let projection = |p: &scale::Point| per_event(p.project.elapsed, p);
    let rebuild = |p: &scale::Point| per_event(p.rebuild.elapsed, p);
    let disk = |p: &scale::Point| p.disk_bytes as f64 / p.events.max(1) as f64;
    let rss = |p: &scale::Point| scale::mib(p.project.peak_rss.max(p.rebuild.peak_rss));
    let rss_ok = points.iter().all(|p| rss(p) <= 300.0);
    let worst_vs_raw = points
        .iter()
        .map(scale::Point::rate)
        .fold(f64::INFINITY, f64::min);
    // The storage baseline's own growth: a B-tree deepens and outgrows its
    // cache, so sled's cost per write rises with the data whatever writes it.
    let floor = |p: &scale::Point| per_event(p.raw_sled, p);
    let projection_vs_floor = |p: &scale::Point| projection(p) / floor(p).max(1e-12);
    let rebuild_vs_floor = |p: &scale::Point| rebuild(p) / floor(p).max(1e-12);
    vec![
        linear("ingest time per event", &ingest, "µs/ev"),
        linear("projection time per event", &projection, "µs/ev"),
        linear("rebuild time per event", &rebuild, "µs/ev"),
        Row::new(
            "6",
            format!("growth {sizes} identities: raw sled floor time per event (the storage baseline alone, informational)"),
        )
        .figures(list(&floor, "µs/ev"), "-")
        .informational(floor(last) / floor(first).max(1e-12)),
        linear(
            "projection time per event ÷ the raw sled floor's at the same size",
            &projection_vs_floor,
            "×",
        ),
        linear(
            "rebuild time per event ÷ the raw sled floor's at the same size",
            &rebuild_vs_floor,
            "×",
        ),
        linear("sled bytes per event", &disk, "B/ev"),
        Row::new(
            "6",
            format!("growth {sizes} identities: projection rate / raw fetch rate (a point whose raw fetch takes under 10 s: the median of 3 rounds, listed)"),
        )
        .figures(
            points
                .iter()
                .map(|p| {
                    let rounds = if p.rate_rounds.len() > 1 {
                        format!(" ({})", scale::rounds_label(&p.rate_rounds))
                    } else {
                        String::new()
                    };
                    format!("{}: {:.2}{rounds}", short(p.identities), p.rate())
                })
                .collect::<Vec<_>>()
                .join(" · "),
            "-",
        )
        .at_least(worst_vs_raw, 0.5),
        Row::new("6", format!("growth {sizes} identities: peak RSS"))
            .figures(list(&rss, "MiB"), "-")
            .ratio(rss(last) / rss(first).max(1e-9))
            .target("≤ 300 MiB at every size", rss_ok),
    ]
}

fn point_detail(p: &scale::Point) -> String {
    format!(
        "{} identities, {} events: ingest {}, projection {} (peak RSS {:.0} MiB), sled {:.1} MiB, rebuild {} (peak RSS {:.0} MiB), raw fetch + ack {}, raw sled writes {}",
        short(p.identities),
        thousands(p.events),
        secs(p.ingest),
        secs(p.project.elapsed),
        scale::mib(p.project.peak_rss),
        scale::mib(p.disk_bytes),
        secs(p.rebuild.elapsed),
        scale::mib(p.rebuild.peak_rss),
        secs(p.raw_fetch),
        secs(p.raw_sled)
    )
}

/// Row 7: a point-in-time source answer folded on from an earlier answer's
/// snapshot, against the same answer folded from the start.
fn point_in_time_row(a: &audit_cost::AuditPoint, at: &str) -> Row {
    use crate::query::ms;
    Row::new(
        "7",
        format!(
            "point-in-time source answer at {at}: `GetSource` as of 3/4 of the stream after one as of 1/2 (folded on from that answer's checked snapshot: a third of the source's events up to the point; the first answer took {:.0} ms) vs the same question with no snapshot (the source's history up to the point folded)",
            ms(a.pit_first)
        ),
    )
    .figures(
        format!("{:.0} ms", ms(a.pit_next)),
        format!("{:.0} ms", ms(a.pit_full)),
    )
    .at_most(
        ms(a.pit_next) / ms(a.pit_full).max(1e-9),
        0.75,
        " of the fold from the start",
    )
}

/// Row 7: an inclusion proof and one identity's export at each size, against
/// the way before tiles; and their growth across sizes, which must stay flat.
fn audit_rows(points: &[audit_cost::AuditPoint]) -> Vec<Row> {
    use crate::{query::ms, scale::mib};
    let mut rows = Vec::new();
    for a in points {
        let at = format!(
            "{} identities / {} events",
            short(a.identities),
            thousands(a.events)
        );
        let before = format!(
            "{:.1} ms, {:.1} MiB of leaves held",
            ms(a.before),
            mib(a.before_bytes)
        );
        rows.push(
            Row::new(
                "7",
                format!(
                    "inclusion proof of the middle event at {at}: `GetInclusionProof` from the tiles (median of {} calls; the first call; serve's peak RSS above resident) vs before tiles: every recorded leaf read and held, root and proof computed (in process)",
                    audit_cost::PROOF_CALLS
                ),
            )
            .figures(
                format!(
                    "{:.3} ms (first {:.3} ms), +{:.1} MiB",
                    ms(a.proof_p50),
                    ms(a.proof_first),
                    mib(a.proof_peak_bytes)
                ),
                before.clone(),
            )
            .informational(ms(a.proof_p50) / ms(a.before).max(1e-9)),
        );
        rows.push(
            Row::new(
                "7",
                format!(
                    "export of one identity ({} events, bundle {:.0} KiB) at {at}: `ExportEvidence` (anchor checkpoint signed, its history read from JetStream, proofs from the tiles; median of {} identities each exported twice — the second export, and the first, which reads the identity's messages from JetStream's file store cold; serve's peak RSS above resident) vs before tiles: the leaves the export read and held first",
                    a.export_events,
                    a.bundle_bytes as f64 / 1024.0,
                    audit_cost::EXPORT_CALLS
                ),
            )
            .figures(
                format!(
                    "{:.1} ms (first: {:.1} ms), +{:.1} MiB",
                    ms(a.export),
                    ms(a.export_cold),
                    mib(a.export_peak_bytes)
                ),
                before,
            )
            .informational(ms(a.export) / ms(a.before).max(1e-9)),
        );
        rows.push(point_in_time_row(a, &at));
    }
    let (Some(first), Some(last)) = (points.first(), points.last()) else {
        return rows;
    };
    if points.len() < 2 {
        return rows;
    }
    let sizes = points
        .iter()
        .map(|a| short(a.identities))
        .collect::<Vec<_>>()
        .join(" → ");
    let list = |f: &dyn Fn(&audit_cost::AuditPoint) -> f64, unit: &str| {
        points
            .iter()
            .map(|a| format!("{}: {:.2}", short(a.identities), f(a)))
            .collect::<Vec<_>>()
            .join(" · ")
            + " "
            + unit
    };
    let flat = |name: &str, f: &dyn Fn(&audit_cost::AuditPoint) -> f64, unit: &str| {
        Row::new("7", format!("growth {sizes} identities: {name}"))
            .figures(list(f, unit), "-")
            .at_most(f(last) / f(first).max(1e-12), 1.5, " (independent of size)")
    };
    let proof = |a: &audit_cost::AuditPoint| ms(a.proof_p50);
    let export = |a: &audit_cost::AuditPoint| ms(a.export);
    let peak = |a: &audit_cost::AuditPoint| mib(a.proof_peak_bytes.max(a.export_peak_bytes));
    let peak_ok = points.iter().all(|a| peak(a) <= 64.0);
    rows.push(flat("inclusion proof time (median)", &proof, "ms"));
    let export_cold = |a: &audit_cost::AuditPoint| ms(a.export_cold);
    rows.push(flat("export time of one identity (median)", &export, "ms"));
    rows.push(
        Row::new(
            "7",
            format!("growth {sizes} identities: first export of an identity (its messages read from JetStream's file store cold: the disk and page cache, informational)"),
        )
        .figures(list(&export_cold, "ms"), "-")
        .informational(export_cold(last) / export_cold(first).max(1e-12)),
    );
    rows.push(
        Row::new(
            "7",
            format!("growth {sizes} identities: serve's peak RSS above resident for a proof or an export (before tiles: 32 B per event, {:.1} MiB at the largest)", mib(last.before_bytes)),
        )
        .figures(list(&peak, "MiB"), "-")
        .target("≤ 64 MiB at every size", peak_ok),
    );
    rows
}
