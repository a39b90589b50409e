//! The commands that run roles or talk to NATS themselves: `serve`, `project`,
//! `simulate`, `rebuild`; and the one place the config file and the flags that
//! override it become a [`Config`], and the one place `nats.url` is read.

use anyhow::Context as _;
use govledger_ingest::{Publisher, event::ProducerId};
use govledger_proto::v1::GetLedgerStatusRequest;
use govledger_stream::connect::ConnectSpec;
use tokio_util::sync::CancellationToken;

use super::{
    args::{ProjectArgs, RebuildArgs, ServeArgs, ServerFlags, SimulateArgs},
    client::{NotOk, connect, status_err},
};
use crate::{
    config::{Config, ConfigError, secrets::ProcessEnv},
    serve, simulate,
};

/// The config file (or the embedded default) with the flags applied, not yet validated.
pub(super) fn settings(f: &ServerFlags) -> Result<Config, ConfigError> {
    let mut cfg = match &f.config {
        Some(p) => Config::load(p)?,
        None => Config::default(),
    };
    if let Some(d) = &f.data_dir {
        cfg.data_dir = Some(d.clone());
    }
    if let Some(a) = &f.grpc_addr {
        cfg.grpc.addr = Some(a.clone());
    }
    if let Some(u) = &f.nats_url {
        cfg.nats.url = Some(u.clone());
    }
    Ok(cfg)
}

/// The validated config of a command that needs no source (no source's
/// secret is read), with how it connects to NATS (the NATS credential read once).
fn load_config(f: &ServerFlags) -> Result<(Config, ConnectSpec), ConfigError> {
    let cfg = settings(f)?;
    cfg.validate()?;
    let spec = cfg.nats.connect_spec(&ProcessEnv)?;
    Ok((cfg, spec))
}

/// The URL of the NATS a running govledger uses: `nats.url` / `nats.urls` (or `--nats-url`),
/// else the one its embedded server wrote to `<data_dir>/nats.url`. `hint` ends
/// the error when neither is there.
pub(super) fn running_nats_url(cfg: &Config, hint: &str) -> anyhow::Result<String> {
    if let Some(url) = cfg.nats.external_url() {
        return Ok(url);
    }
    let f = cfg.data_dir().join("nats.url");
    let url = std::fs::read_to_string(&f)
        .with_context(|| format!("no --nats-url given and {} not found{hint}", f.display()))?;
    Ok(url.trim().to_owned())
}

/// A shutdown token that SIGINT/SIGTERM cancel.
fn shutdown_on_signals() -> CancellationToken {
    let shutdown = CancellationToken::new();
    serve::cancel_on_signals(shutdown.clone());
    shutdown
}

/// `govledger serve`: the config resolved once (sources built, secrets read),
/// the gRPC address bound, then every role until a signal.
pub async fn serve(a: ServeArgs, roles: serve::roles::Roles) -> anyhow::Result<()> {
    let mut cfg = settings(&a.server)?;
    cfg.grpc.insecure_plaintext = a.insecure_plaintext;
    let resolved = cfg.resolve(&ProcessEnv)?;
    let listener = serve::bind(&resolved.config).await?;
    serve::serve_roles(resolved, roles, listener, shutdown_on_signals()).await?;
    Ok(())
}

/// `govledger project`: only the projector.
pub async fn project(a: ProjectArgs) -> anyhow::Result<()> {
    let (cfg, spec) = load_config(&a.server)?;
    serve::project(cfg, &spec, a.exit_at_end, shutdown_on_signals()).await?;
    Ok(())
}

/// `govledger simulate`: publishes synthetic runs to a running govledger's stream.
pub async fn simulate(a: SimulateArgs) -> anyhow::Result<()> {
    govledger_stream::subject::validate_source_id(&a.source)
        .context("--source is not a valid source id")?;
    let (cfg, spec) = load_config(&a.server)?;
    let url = running_nats_url(&cfg, "; start `govledger serve` first")?;
    let nats = serve::connect(&serve::nats::local_spec(&cfg, &spec)?, &url).await?;
    let shutdown = shutdown_on_signals();
    let js = async_nats::jetstream::new(nats.clone());
    govledger_stream::ensure_stream(&js, &cfg.stream_spec()).await?;
    // A demo tool: it has no trusted producer key, so it seals nothing and
    // the ledger decides its runs UNVERIFIED_PRODUCER (never COMPLETE).
    let publisher = Publisher::new(nats, cfg.publisher_config(), shutdown);
    let producer = ProducerId::new("simulate");
    let mut sims = vec![simulate::SimRun::new(&a.source, a.users, a.page_size)];
    if !a.fail_page.is_empty() {
        let mut broken = simulate::SimRun::new(&a.source, a.users, a.page_size);
        broken.failing_pages = a.fail_page;
        sims.push(broken);
    }
    for sim in &sims {
        let events = simulate::run_events(&producer, sim);
        let receipts = simulate::publish_all(&publisher, &events).await?;
        let last = receipts.last().map(|r| r.seq).unwrap_or(0);
        println!(
            "published run {} of source {}: {} events (last stream seq {last})",
            sim.run_id,
            sim.source_id,
            events.len()
        );
    }
    println!(
        "note: simulated runs are not sealed by a trusted producer; the ledger decides them UNVERIFIED_PRODUCER (a demo never makes a source COMPLETE)"
    );
    Ok(())
}

/// `govledger rebuild`: folds the stream again and compares digests (exit 3 on a mismatch).
pub async fn rebuild(a: RebuildArgs) -> anyhow::Result<()> {
    let (cfg, spec) = load_config(&ServerFlags {
        config: a.config,
        data_dir: a.data_dir,
        grpc_addr: None,
        nats_url: a.nats_url,
    })?;
    let url = running_nats_url(&cfg, "")?;
    let mut c = connect(&a.client).await?;
    let live = c
        .get_ledger_status(GetLedgerStatusRequest { with_digest: true })
        .await
        .map_err(status_err)?
        .into_inner();
    let seq = live.meta.unwrap_or_default().last_applied_seq;
    if !live.projector_stopped.is_empty() {
        // The live projection cannot be complete: say why, and fold what it
        // folded (the comparison below still tells whether that part is right).
        println!(
            "the live projector stopped at seq {seq}: {}",
            live.projector_stopped
        );
    }
    let tmp = tempfile::tempdir()?;
    let dir = a.keep.unwrap_or_else(|| tmp.path().join("sled"));
    println!("rebuilding sequences 1..={seq} into {}", dir.display());
    let r = serve::rebuild(&cfg, &spec, &url, (seq, live.state_digest), &dir).await?;
    println!(
        "folded {} events up to seq {} in {:.1?} ({:.0} events/s)",
        r.events,
        r.seq,
        r.elapsed,
        r.events as f64 / r.elapsed.as_secs_f64().max(1e-9)
    );
    println!(
        "live digest:    {}\nrebuilt digest: {}",
        r.live_digest, r.rebuilt_digest
    );
    if r.live_digest != r.rebuilt_digest || r.seq != seq {
        println!("MISMATCH: the live projection differs from the stream's fold");
        return Err(NotOk.into());
    }
    println!("MATCH: the live projection is exactly the fold of the stream up to seq {seq}");
    if !live.projector_stopped.is_empty() {
        println!("STOPPED: the live projector folds nothing after seq {seq} (see above)");
        return Err(NotOk.into());
    }
    Ok(())
}

/// `govledger projector pause|resume`: flips the projector's pause switch on
/// a running govledger and says where it stands.
pub async fn projector(a: super::args::ProjectorArgs) -> anyhow::Result<()> {
    use super::args::ProjectorCmd;
    let (paused, reason, client) = match a.cmd {
        ProjectorCmd::Pause { reason, client } => (true, reason, client),
        ProjectorCmd::Resume { reason, client } => (false, reason, client),
    };
    let mut c = super::client::connect(&client).await?;
    let r = c
        .set_projector_paused(govledger_proto::v1::SetProjectorPausedRequest { paused, reason })
        .await
        .map_err(super::client::status_err)?
        .into_inner();
    if r.paused {
        println!(
            "projector paused at stream sequence {}: nothing is folded until `govledger projector resume`",
            r.applied_seq
        );
    } else {
        println!(
            "projector resumed (it had applied up to stream sequence {})",
            r.applied_seq
        );
    }
    Ok(())
}

/// `govledger config check [--live]`: the config validated and resolved
/// (every secret read once, never printed); with `--live` each source's first
/// page read without writing. Exit 2 for a bad config, 3 when a live check fails.
pub async fn config_check(a: super::args::ConfigArgs) -> anyhow::Result<()> {
    let super::args::ConfigCmd::Check { server, live } = a.cmd;
    let cfg = settings(&server)?;
    let resolved = cfg.resolve(&ProcessEnv)?;
    let c = &resolved.config;
    let nats = c
        .nats
        .external_url()
        .unwrap_or_else(|| "embedded nats-server".to_owned());
    println!(
        "config OK: {} source(s); NATS {nats}, stream {}; gRPC {}; HTTP {}; OCSF {}",
        resolved.sources.len(),
        c.nats.stream,
        c.grpc_addr()?,
        c.http_addr()?.map_or("off".to_owned(), |a| a.to_string()),
        if c.ocsf.enabled {
            c.ocsf.version.as_str()
        } else {
            "off"
        },
    );
    let mut failed = 0;
    for s in &resolved.sources {
        let kind = s.kind_name();
        let location = match &s.spec.file {
            Some(f) => f.dir.join(&f.pattern).display().to_string(),
            None => govledger_stream::redact_url(&s.spec.base_url),
        };
        println!(
            "source {} ({kind}, {}): {location}",
            s.spec.source_id,
            govledger_ingest::sync::paging_name(&s.spec),
        );
        if !live {
            continue;
        }
        let http = s.http()?;
        for p in govledger_ingest::probe::probe(&s.spec, &http).await {
            match &p.problem {
                None => println!(
                    "  {}: OK: {}{} record(s) on the first page, declared total {}",
                    p.collection,
                    http_part(p.http_status),
                    p.items,
                    p.declared_total
                        .map_or("none (the run is judged by its pages)".to_owned(), |t| t
                            .to_string())
                ),
                Some((class, why)) => {
                    failed += 1;
                    let class = class.as_str_name().trim_start_matches("ERROR_CLASS_");
                    let http = match p.http_status {
                        0 => String::new(),
                        n => format!(", HTTP {n}"),
                    };
                    println!("  {}: FAILED ({class}{http}): {why}", p.collection);
                }
            }
        }
    }
    if failed > 0 {
        return Err(NotOk.into());
    }
    Ok(())
}

/// `HTTP 200, ` for an HTTP source's answer; nothing for a directory or a file.
fn http_part(status: u16) -> String {
    match status {
        0 => String::new(),
        n => format!("HTTP {n}, "),
    }
}

/// `govledger ocsf`: the OCSF feed alone, keeping its own request index in
/// `<data_dir>/ocsf`, until SIGINT/SIGTERM.
pub async fn ocsf(a: super::args::OcsfArgs) -> anyhow::Result<()> {
    let (cfg, spec) = load_config(&a.server)?;
    let url = running_nats_url(&cfg, "; give --nats-url, or start `govledger serve` first")?;
    let nats = serve::connect(&serve::nats::local_spec(&cfg, &spec)?, &url).await?;
    let js = async_nats::jetstream::new(nats);
    crate::ocsf::feed::ensure_stream(&js, &cfg.replication()).await?;
    let dir = cfg.data_dir().join("ocsf");
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let db = sled::Config::new()
        .path(dir.join("requests"))
        .cache_capacity(8 * 1024 * 1024)
        .open()
        .with_context(|| format!("cannot open the request index in {}", dir.display()))?;
    let tree = db.open_tree("requests")?;
    tracing::info!(
        version = cfg.ocsf.version.as_str(),
        "OCSF feed (standalone): {} on {}",
        crate::ocsf::feed::OCSF_SUBJECTS,
        crate::ocsf::feed::OCSF_STREAM
    );
    let feed = crate::ocsf::feed::Feed {
        js,
        stream: cfg.nats.stream.clone(),
        requests: crate::ocsf::feed::Requests::Own(tree),
        version: cfg.ocsf.version,
    };
    feed.run(shutdown_on_signals()).await;
    db.flush_async().await?;
    Ok(())
}
