//! The `govledger` binary: a thin edge over the library. Parses flags, sets up
//! logging, runs one command, maps errors to exit codes (2 = bad config or usage).
#![forbid(unsafe_code)]

use std::{path::PathBuf, process::ExitCode, time::Duration};

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use govledger::{
    cli::output as cli,
    config::{Config, DEFAULT_GRPC_ADDR},
    serve::{self, ServeError},
    simulate,
};
use govledger_ingest::{Publisher, event::ProducerId};
use govledger_proto::v1::{
    ActionKind, ActionOutcome, ActionRequested, CheckReadinessRequest, EntityType,
    GetActionRequest, GetIdentityRequest, GetLedgerStatusRequest, GetRunRequest,
    ListActionsRequest, ListPoisonEventsRequest, ListRunsRequest, ListSourcesRequest,
    ReplayRequest, SubmitActionRequest, SyncMode, TriggerSyncRequest, Verdict,
    ledger_client::LedgerClient,
};
use tokio_util::sync::CancellationToken;

/// sled's copy-on-write pages allocate and free at a high rate; with glibc's
/// allocator the projector spent a third of its time in malloc (BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "govledger",
    version,
    about = "Event-sourced governance ledger for identity security"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Args, Clone)]
struct ServerFlags {
    /// TOML config file (every key optional; see README "Configuration").
    #[arg(long)]
    config: Option<PathBuf>,
    /// Data folder (sled projections; the embedded NATS store). Default ./govledger-data
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// gRPC listen address. Default 127.0.0.1:50051
    #[arg(long)]
    grpc_addr: Option<String>,
    /// Use this NATS server instead of starting an embedded one.
    #[arg(long)]
    nats_url: Option<String>,
}

#[derive(Args, Clone)]
struct ClientFlags {
    /// Address of a running govledger.
    #[arg(long, default_value = DEFAULT_GRPC_ADDR)]
    grpc_addr: String,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run every role (projector, gRPC API) in one process; NATS embedded unless --nats-url.
    Serve(ServerFlags),
    /// Run only the projector (stream → sled).
    Project {
        #[command(flatten)]
        server: ServerFlags,
        /// Exit once every event the stream held at start is applied.
        #[arg(long)]
        exit_at_end: bool,
    },
    /// Publish synthetic sync runs (the demo source): one clean run and, with
    /// --fail-page, one whose page fails on every attempt.
    Simulate {
        #[command(flatten)]
        server: ServerFlags,
        /// Source id of the simulated runs.
        #[arg(long, default_value = "demo-hr")]
        source: String,
        /// Users the simulated source holds.
        #[arg(long, default_value_t = 250)]
        users: u64,
        /// Records per page.
        #[arg(long, default_value_t = 100)]
        page_size: u64,
        /// 0-based page index that fails on every attempt (repeatable).
        #[arg(long)]
        fail_page: Vec<u64>,
    },
    /// Sources with their freshness and last verdict.
    Status(ClientFlags),
    /// Start a full sync of a configured source on a running govledger and follow
    /// it with a progress bar until the ledger decides its verdict. Exit code 0 when
    /// COMPLETE, 3 otherwise.
    Sync {
        source: String,
        #[command(flatten)]
        client: ClientFlags,
        /// Give up following after this long, in seconds.
        #[arg(long, default_value_t = 3_600)]
        timeout_s: u64,
        /// Read only what changed since the last COMPLETE run (SCIM filter on
        /// meta.lastModified). Its absences are never evidence of removal.
        #[arg(long)]
        delta: bool,
    },
    /// May a review over these sources close? (all sources when none given)
    /// Exit code 0 when ready, 3 when not.
    Readiness {
        sources: Vec<String>,
        /// Only actions on these identities block (repeatable).
        #[arg(long = "identity")]
        identities: Vec<String>,
        #[command(flatten)]
        client: ClientFlags,
    },
    /// The runs of one source, newest first.
    Runs {
        source: String,
        #[command(flatten)]
        client: ClientFlags,
        #[arg(long, default_value_t = 20)]
        limit: u32,
    },
    /// One run: verdict, reasons, counts.
    Run {
        run_id: String,
        #[command(flatten)]
        client: ClientFlags,
    },
    /// One identity's last observation at a source.
    Identity {
        source: String,
        external_id: String,
        /// user, group, entitlement or membership
        #[arg(long, default_value = "user")]
        r#type: String,
        /// As it stood at this stream sequence or RFC 3339 time (folded again
        /// from its own events).
        #[arg(long)]
        as_of: Option<String>,
        #[command(flatten)]
        client: ClientFlags,
    },
    /// One source: freshness and last verdict, now or as of a past point.
    Source {
        source: String,
        /// As it stood at this stream sequence or RFC 3339 time (the source's
        /// events up to then are folded again).
        #[arg(long)]
        as_of: Option<String>,
        #[command(flatten)]
        client: ClientFlags,
    },
    /// Submit a lifecycle action on a running govledger and follow it until the
    /// ledger concludes it (read-back verified). Exit code 0 when CONFIRMED, 3 otherwise.
    Act {
        source: String,
        /// deactivate, delete, remove-membership, add-membership or set-attribute
        kind: String,
        /// The identity (user) external id.
        identity: String,
        #[arg(long)]
        group: Option<String>,
        #[arg(long)]
        attribute: Option<String>,
        #[arg(long)]
        value: Option<String>,
        /// The same key always means the same action (default: a new UUID).
        #[arg(long)]
        idempotency_key: Option<String>,
        #[arg(long, default_value = "cli")]
        requested_by: String,
        #[arg(long, default_value = "")]
        reason: String,
        #[arg(long, default_value = "")]
        ticket: String,
        /// Deadline, seconds from now (0 = none).
        #[arg(long, default_value_t = 0)]
        deadline_s: u64,
        #[command(flatten)]
        client: ClientFlags,
    },
    /// The actions of a source with their outcomes as of now.
    Actions {
        source: String,
        #[command(flatten)]
        client: ClientFlags,
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// One action: outcome, per-step results, evidence.
    Action {
        action_id: String,
        /// As it stood at this stream sequence or RFC 3339 time.
        #[arg(long)]
        as_of: Option<String>,
        #[command(flatten)]
        client: ClientFlags,
    },
    /// The events themselves, in stream order, as NDJSON (protobuf JSON mapping),
    /// each with its stream sequence and RFC 6962 leaf hash.
    Replay {
        #[arg(long)]
        source: Option<String>,
        #[arg(long)]
        run: Option<String>,
        #[arg(long)]
        action: Option<String>,
        /// Observations of this identity and the actions requested on it.
        #[arg(long)]
        identity: Option<String>,
        #[arg(long, default_value_t = 0)]
        from_seq: u64,
        #[arg(long, default_value_t = 0)]
        to_seq: u64,
        /// Write here instead of standard output.
        #[arg(long)]
        out: Option<PathBuf>,
        #[command(flatten)]
        client: ClientFlags,
    },
    /// Fold the whole stream from sequence 1 into a fresh sled folder and compare
    /// its state digest with the running govledger's. Exit code 0 when equal, 3 when not.
    Rebuild {
        #[arg(long)]
        config: Option<PathBuf>,
        /// Where the running govledger keeps its data (to find its embedded NATS).
        #[arg(long)]
        data_dir: Option<PathBuf>,
        #[arg(long)]
        nats_url: Option<String>,
        /// Keep the rebuilt projection in this folder (default: a temporary one).
        #[arg(long)]
        keep: Option<PathBuf>,
        #[command(flatten)]
        client: ClientFlags,
    },
    /// Projection position, counters and (with --digest) the state digest.
    Ledger {
        #[command(flatten)]
        client: ClientFlags,
        #[arg(long)]
        digest: bool,
    },
    /// Stream messages that could not be folded.
    Poison {
        #[command(flatten)]
        client: ClientFlags,
    },
    /// Read a range of the stream again and compare every event with what the
    /// ledger folded and with the signed checkpoints; names the first bad
    /// sequence. Exit code 0 when intact, 3 when not.
    Verify {
        /// First sequence (default 1).
        #[arg(long, default_value_t = 0)]
        from_seq: u64,
        /// Last sequence (default: the last applied).
        #[arg(long, default_value_t = 0)]
        to_seq: u64,
        /// Verify this stream (a copy or a restored backup) instead of the ledger's own.
        #[arg(long)]
        stream: Option<String>,
        #[command(flatten)]
        client: ClientFlags,
    },
    /// Write an evidence bundle for one identity (or a whole source) over a time
    /// range: the events with inclusion proofs, signed checkpoints, the state at
    /// the end and a signed manifest. `govledger verify-bundle` checks it offline.
    Export {
        #[arg(long)]
        source: String,
        /// The identity's external id (omit for the whole source).
        #[arg(long)]
        identity: Option<String>,
        /// user, group, entitlement or membership
        #[arg(long, default_value = "user")]
        r#type: String,
        /// Start of the range, RFC 3339 (default: the beginning).
        #[arg(long)]
        from: Option<String>,
        /// End of the range, RFC 3339 (default: now).
        #[arg(long)]
        to: Option<String>,
        /// The bundle file to write.
        #[arg(long)]
        out: PathBuf,
        #[command(flatten)]
        client: ClientFlags,
    },
    /// Check an evidence bundle offline (no NATS, no sled, no server): signed
    /// checkpoints, every event's inclusion proof, the signed manifest, and the
    /// state folded again from the events. Exit code 0 when it holds, 3 when not.
    VerifyBundle {
        bundle: PathBuf,
        /// The ledger's public key (hex) as its operator published it; without
        /// it the bundle's own key is used and the report says so.
        #[arg(long)]
        public_key: Option<String>,
    },
}

fn entity_type_arg(t: &str) -> anyhow::Result<EntityType> {
    Ok(match t {
        "user" => EntityType::User,
        "group" => EntityType::Group,
        "entitlement" => EntityType::Entitlement,
        "membership" => EntityType::Membership,
        other => {
            anyhow::bail!("--type {other:?} is not one of user, group, entitlement, membership")
        }
    })
}

/// `--as-of` (a stream sequence or an RFC 3339 time), when given.
fn as_of_arg(v: Option<&str>) -> anyhow::Result<Option<govledger_proto::v1::AsOf>> {
    v.map(cli::parse_as_of)
        .transpose()
        .map_err(|e| anyhow::anyhow!(e))
}

fn time_arg(flag: &str, v: Option<&str>) -> anyhow::Result<i64> {
    match v {
        None => Ok(0),
        Some(s) => chrono::DateTime::parse_from_rfc3339(s)
            .map(|t| t.timestamp_micros())
            .map_err(|e| {
                anyhow::anyhow!(
                    "{flag} {s:?} is not an RFC 3339 time such as 2026-10-31T23:59:59Z ({e})"
                )
            }),
    }
}

fn load_config(f: &ServerFlags) -> Result<Config, govledger::config::ConfigError> {
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
    cfg.validate()?;
    Ok(cfg)
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,async_nats=warn,sled=warn"));
    use std::io::IsTerminal as _;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none())
        .init();
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    govledger_ingest::http::install_crypto_provider();
    match run(cli.cmd).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.downcast_ref::<NotOk>().is_some() => ExitCode::from(3),
        Err(e) => {
            let usage = e
                .downcast_ref::<ServeError>()
                .is_some_and(|s| matches!(s, ServeError::Config(_)))
                || e.downcast_ref::<govledger::config::ConfigError>().is_some();
            eprintln!("govledger: error: {e:#}");
            if usage {
                ExitCode::from(2)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

/// A negative answer (not COMPLETE, not ready): exit code 3, nothing more to print.
#[derive(Debug)]
struct NotOk;

impl std::fmt::Display for NotOk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("not ok")
    }
}

impl std::error::Error for NotOk {}

/// Polls a run until the ledger has decided its verdict, with a progress bar
/// (records seen of records declared) on a terminal.
async fn follow_run(
    c: &mut LedgerClient<tonic::transport::Channel>,
    run_id: &str,
    timeout: Duration,
) -> anyhow::Result<govledger_proto::v1::GetRunResponse> {
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
            .get_run(GetRunRequest {
                run_id: run_id.to_owned(),
            })
            .await
        {
            Ok(r) => {
                let r = r.into_inner();
                if let Some(run) = &r.run {
                    bar.set_length(run.declared_total_last.unwrap_or(0).max(run.records_unique));
                    bar.set_position(run.records_unique);
                    bar.set_message(format!(
                        "{} pages, {} failed attempts",
                        run.pages_fetched, run.page_failures
                    ));
                    if run.decided {
                        bar.finish_and_clear();
                        return Ok(r);
                    }
                }
            }
            Err(s) if s.code() == tonic::Code::NotFound => {}
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
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn client(f: &ClientFlags) -> anyhow::Result<LedgerClient<tonic::transport::Channel>> {
    let url = format!("http://{}", f.grpc_addr);
    let ch = tonic::transport::Endpoint::from_shared(url.clone())?
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await
        .with_context(|| {
            format!("cannot reach govledger at {url}; is `govledger serve` running?")
        })?;
    Ok(LedgerClient::new(ch))
}

fn status_err(s: tonic::Status) -> anyhow::Error {
    anyhow::anyhow!("{}: {}", s.code(), s.message())
}

async fn run(cmd: Cmd) -> anyhow::Result<()> {
    match cmd {
        Cmd::Serve(f) => {
            let cfg = load_config(&f)?;
            let shutdown = CancellationToken::new();
            serve::cancel_on_signals(shutdown.clone());
            serve::serve(cfg, shutdown).await?;
        }
        Cmd::Project {
            server: f,
            exit_at_end,
        } => {
            let cfg = load_config(&f)?;
            let shutdown = CancellationToken::new();
            serve::cancel_on_signals(shutdown.clone());
            serve::project(cfg, exit_at_end, shutdown).await?;
        }
        Cmd::Simulate {
            server,
            source,
            users,
            page_size,
            fail_page,
        } => {
            govledger_ingest::subject::validate_source_id(&source)
                .context("--source is not a valid source id")?;
            let mut cfg = load_config(&server)?;
            if cfg.nats.url.is_none() {
                let f = cfg.data_dir().join("nats.url");
                let url = std::fs::read_to_string(&f).with_context(|| {
                    format!(
                        "no --nats-url given and {} not found; start `govledger serve` first",
                        f.display()
                    )
                })?;
                cfg.nats.url = Some(url.trim().to_owned());
            }
            let url = cfg.nats.url.clone().unwrap_or_default();
            let nats = serve::connect(&cfg, &url).await?;
            let shutdown = CancellationToken::new();
            serve::cancel_on_signals(shutdown.clone());
            let js = async_nats::jetstream::new(nats.clone());
            govledger_ingest::ensure_stream(&js, &cfg.stream_spec()).await?;
            let publisher = Publisher::new(nats, cfg.publisher_config(), shutdown);
            let producer = ProducerId::new("simulate");
            let mut sims = vec![simulate::SimRun::new(&source, users, page_size)];
            if !fail_page.is_empty() {
                let mut broken = simulate::SimRun::new(&source, users, page_size);
                broken.failing_pages = fail_page;
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
        }
        Cmd::Status(f) => {
            let mut c = client(&f).await?;
            let r = c
                .list_sources(ListSourcesRequest {})
                .await
                .map_err(status_err)?;
            print!("{}", cli::sources_table(&r.into_inner().sources));
        }
        Cmd::Sync {
            source,
            client: f,
            timeout_s,
            delta,
        } => {
            let mut c = client(&f).await?;
            let run_id = c
                .trigger_sync(TriggerSyncRequest {
                    source_id: source.clone(),
                    mode: if delta {
                        SyncMode::Delta as i32
                    } else {
                        SyncMode::Full as i32
                    },
                })
                .await
                .map_err(status_err)?
                .into_inner()
                .run_id;
            println!("sync of {source} started: run {run_id}");
            let run = follow_run(&mut c, &run_id, Duration::from_secs(timeout_s)).await?;
            print!("{}", cli::run_detail(&run));
            if run.verdict != Verdict::Complete as i32 {
                return Err(NotOk.into());
            }
        }
        Cmd::Act {
            source,
            kind,
            identity,
            group,
            attribute,
            value,
            idempotency_key,
            requested_by,
            reason,
            ticket,
            deadline_s,
            client: f,
        } => {
            let kind = match kind.as_str() {
                "deactivate" => ActionKind::Deactivate,
                "delete" => ActionKind::Delete,
                "remove-membership" => ActionKind::RemoveMembership,
                "add-membership" => ActionKind::AddMembership,
                "set-attribute" => ActionKind::SetAttribute,
                other => anyhow::bail!(
                    "{other:?} is not one of deactivate, delete, remove-membership, add-membership, set-attribute"
                ),
            };
            let mut c = client(&f).await?;
            let deadline_us = if deadline_s == 0 {
                0
            } else {
                chrono::Utc::now().timestamp_micros() + (deadline_s as i64) * 1_000_000
            };
            let r = c
                .submit_action(SubmitActionRequest {
                    source_id: source,
                    request: Some(ActionRequested {
                        kind: kind as i32,
                        identity_external_id: identity,
                        group_external_id: group.unwrap_or_default(),
                        attribute: attribute.unwrap_or_default(),
                        value: value.unwrap_or_default(),
                        requested_by,
                        reason,
                        ticket,
                        deadline_us,
                        idempotency_key: idempotency_key
                            .unwrap_or_else(|| uuid::Uuid::now_v7().to_string()),
                        ..Default::default()
                    }),
                })
                .await
                .map_err(status_err)?
                .into_inner();
            println!(
                "action {} {}",
                r.action_id,
                if r.created {
                    "submitted"
                } else {
                    "already existed (same idempotency key)"
                }
            );
            let deadline = tokio::time::Instant::now() + Duration::from_secs(300);
            let a = loop {
                match c
                    .get_action(GetActionRequest {
                        action_id: r.action_id.clone(),
                        as_of: None,
                    })
                    .await
                {
                    Ok(a) if a.get_ref().outcome != ActionOutcome::Pending as i32 => {
                        break a.into_inner();
                    }
                    Ok(_) => {}
                    Err(s) if s.code() == tonic::Code::NotFound => {}
                    Err(s) => return Err(status_err(s)),
                }
                if tokio::time::Instant::now() > deadline {
                    anyhow::bail!(
                        "action {} still pending; follow it with `govledger action {}`",
                        r.action_id,
                        r.action_id
                    );
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            };
            print!("{}", cli::action_detail(&a));
            if a.outcome != ActionOutcome::Confirmed as i32 {
                return Err(NotOk.into());
            }
        }
        Cmd::Rebuild {
            config,
            data_dir,
            nats_url,
            keep,
            client: f,
        } => {
            let mut cfg = load_config(&ServerFlags {
                config,
                data_dir,
                grpc_addr: None,
                nats_url,
            })?;
            if cfg.nats.url.is_none() {
                let p = cfg.data_dir().join("nats.url");
                let url = std::fs::read_to_string(&p).with_context(|| {
                    format!("no --nats-url given and {} not found", p.display())
                })?;
                cfg.nats.url = Some(url.trim().to_owned());
            }
            let url = cfg.nats.url.clone().unwrap_or_default();
            let mut c = client(&f).await?;
            let live = c
                .get_ledger_status(GetLedgerStatusRequest { with_digest: true })
                .await
                .map_err(status_err)?
                .into_inner();
            let seq = live.meta.unwrap_or_default().last_applied_seq;
            let tmp = tempfile::tempdir()?;
            let dir = keep.unwrap_or_else(|| tmp.path().join("sled"));
            println!("rebuilding sequences 1..={seq} into {}", dir.display());
            let r = serve::rebuild(&cfg, &url, (seq, live.state_digest), &dir).await?;
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
            println!("MATCH: the live projection is exactly the fold of the stream");
        }
        Cmd::Replay {
            source,
            run,
            action,
            identity,
            from_seq,
            to_seq,
            out,
            client: f,
        } => {
            use std::io::Write as _;
            let pool = prost_reflect::DescriptorPool::decode(govledger_proto::FILE_DESCRIPTOR_SET)?;
            let desc = pool
                .get_message_by_name("govledger.v1.ReplayItem")
                .context("descriptor of govledger.v1.ReplayItem missing")?;
            let mut c = client(&f).await?;
            let mut stream = c
                .replay(ReplayRequest {
                    source_id: source.unwrap_or_default(),
                    run_id: run.unwrap_or_default(),
                    action_id: action.unwrap_or_default(),
                    identity_external_id: identity.unwrap_or_default(),
                    from_seq,
                    to_seq,
                    ..Default::default()
                })
                .await
                .map_err(status_err)?
                .into_inner();
            let mut w: Box<dyn std::io::Write> = match &out {
                Some(p) => Box::new(std::io::BufWriter::new(
                    std::fs::File::create(p)
                        .with_context(|| format!("cannot create {}", p.display()))?,
                )),
                None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
            };
            // A bar over the sequence range the replay walks (the stream's end as
            // of now when no --to-seq), counting matched events in the message.
            let end = if to_seq > 0 {
                to_seq
            } else {
                c.get_ledger_status(GetLedgerStatusRequest { with_digest: false })
                    .await
                    .map_err(status_err)?
                    .into_inner()
                    .stream_last_seq
            };
            let start = from_seq.max(1);
            let bar = indicatif::ProgressBar::new(end.saturating_sub(start) + 1);
            bar.set_style(indicatif::ProgressStyle::with_template(
                "{bar:40} {percent:>3}% seq {msg} {elapsed_precise} eta {eta}",
            )?);
            let mut replayed: u64 = 0;
            while let Some(item) = stream.message().await.map_err(status_err)? {
                let dm = prost_reflect::DynamicMessage::decode(
                    desc.clone(),
                    prost::Message::encode_to_vec(&item).as_slice(),
                )?;
                serde_json::to_writer(&mut w, &dm)?;
                w.write_all(b"\n")?;
                replayed += 1;
                bar.set_position(item.seq.saturating_sub(start) + 1);
                bar.set_message(format!("{} ({replayed} events)", item.seq));
            }
            w.flush()?;
            bar.finish_and_clear();
            eprintln!("replayed {replayed} events");
        }
        Cmd::Actions {
            source,
            client: f,
            limit,
        } => {
            let mut c = client(&f).await?;
            let r = c
                .list_actions(ListActionsRequest {
                    source_id: source,
                    outcome: 0,
                    limit,
                })
                .await
                .map_err(status_err)?;
            print!("{}", cli::actions_table(&r.into_inner().actions));
        }
        Cmd::Action {
            action_id,
            as_of,
            client: f,
        } => {
            let as_of = as_of_arg(as_of.as_deref())?;
            let mut c = client(&f).await?;
            let r = c
                .get_action(GetActionRequest { action_id, as_of })
                .await
                .map_err(status_err)?;
            print!("{}", cli::action_detail(&r.into_inner()));
        }
        Cmd::Readiness {
            sources,
            identities,
            client: f,
        } => {
            let mut c = client(&f).await?;
            let r = c
                .check_readiness(CheckReadinessRequest {
                    source_ids: sources,
                    identity_external_ids: identities,
                })
                .await
                .map_err(status_err)?
                .into_inner();
            print!("{}", cli::readiness(&r));
            if !r.ready {
                return Err(NotOk.into());
            }
        }
        Cmd::Runs {
            source,
            client: f,
            limit,
        } => {
            let mut c = client(&f).await?;
            let r = c
                .list_runs(ListRunsRequest {
                    source_id: source,
                    limit,
                })
                .await
                .map_err(status_err)?;
            print!("{}", cli::runs_table(&r.into_inner().runs));
        }
        Cmd::Run { run_id, client: f } => {
            let mut c = client(&f).await?;
            let r = c
                .get_run(GetRunRequest { run_id })
                .await
                .map_err(status_err)?;
            print!("{}", cli::run_detail(&r.into_inner()));
        }
        Cmd::Identity {
            source,
            external_id,
            r#type,
            as_of,
            client: f,
        } => {
            let as_of = as_of_arg(as_of.as_deref())?;
            let entity_type = entity_type_arg(&r#type)?;
            let mut c = client(&f).await?;
            let r = c
                .get_identity(GetIdentityRequest {
                    source_id: source,
                    entity_type: entity_type as i32,
                    external_id,
                    as_of,
                })
                .await
                .map_err(status_err)?;
            print!("{}", cli::identity_detail(&r.into_inner()));
        }
        Cmd::Source {
            source,
            as_of,
            client: f,
        } => {
            let as_of = as_of_arg(as_of.as_deref())?;
            let mut c = client(&f).await?;
            let r = c
                .get_source(govledger_proto::v1::GetSourceRequest {
                    source_id: source,
                    as_of,
                })
                .await
                .map_err(status_err)?;
            print!("{}", cli::source_detail(&r.into_inner()));
        }
        Cmd::Ledger { client: f, digest } => {
            let mut c = client(&f).await?;
            let r = c
                .get_ledger_status(GetLedgerStatusRequest {
                    with_digest: digest,
                })
                .await
                .map_err(status_err)?;
            print!("{}", cli::ledger_status(&r.into_inner()));
        }
        Cmd::Verify {
            from_seq,
            to_seq,
            stream,
            client: f,
        } => {
            let mut c = client(&f).await?;
            let r = c
                .verify_range(govledger_proto::v1::VerifyRangeRequest {
                    from_seq,
                    to_seq,
                    stream: stream.unwrap_or_default(),
                })
                .await
                .map_err(status_err)?
                .into_inner();
            print!("{}", cli::verify_report(&r));
            if !r.ok {
                return Err(NotOk.into());
            }
        }
        Cmd::Export {
            source,
            identity,
            r#type,
            from,
            to,
            out,
            client: f,
        } => {
            let entity_type = match &identity {
                Some(_) => entity_type_arg(&r#type)? as i32,
                None => 0,
            };
            let req = govledger_proto::v1::ExportEvidenceRequest {
                source_id: source,
                entity_type,
                external_id: identity.unwrap_or_default(),
                from_us: time_arg("--from", from.as_deref())?,
                to_us: time_arg("--to", to.as_deref())?,
            };
            let mut c = client(&f).await?;
            let mut stream = c
                .export_evidence(req)
                .await
                .map_err(status_err)?
                .into_inner();
            let mut data = Vec::new();
            while let Some(chunk) = stream.message().await.map_err(status_err)? {
                data.extend_from_slice(&chunk.data);
            }
            let b: govledger::evidence::Bundle =
                serde_json::from_slice(&data).context("the server sent a malformed bundle")?;
            std::fs::write(&out, &data)
                .with_context(|| format!("cannot write {}", out.display()))?;
            print!("{}", cli::export_summary(&b, &out));
        }
        Cmd::VerifyBundle { bundle, public_key } => {
            let data = std::fs::read(&bundle)
                .with_context(|| format!("cannot read {}", bundle.display()))?;
            let r = govledger::evidence::verify_bundle(&data, public_key.as_deref());
            print!("{}", cli::bundle_report(&r));
            if !r.ok {
                return Err(NotOk.into());
            }
        }
        Cmd::Poison { client: f } => {
            let mut c = client(&f).await?;
            let r = c
                .list_poison_events(ListPoisonEventsRequest {
                    after_seq: 0,
                    limit: 100,
                })
                .await
                .map_err(status_err)?;
            print!("{}", cli::poison_table(&r.into_inner().events));
        }
    }
    Ok(())
}
