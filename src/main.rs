//! The `govledger` binary: a thin edge over the library. Parses flags, sets up
//! logging, runs one command ([`govledger::cli`]), maps errors to exit codes
//! (2 = bad config or usage, 3 = a "not OK" answer, 1 = anything else).
#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::Parser;
use govledger::{
    cli::{
        actions,
        args::Cli,
        args::Cmd,
        audit,
        client::{NotOk, Unpinned, UsageError},
        credentials, deletions, report, server, status, token,
    },
    config::ConfigError,
    serve::ServeError,
};

/// sled's copy-on-write pages allocate and free at a high rate; with glibc's
/// allocator the projector spent a third of its time in malloc (BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

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

/// Runs the function of `cmd`'s subcommand.
async fn dispatch(cmd: Cmd) -> anyhow::Result<()> {
    match cmd {
        Cmd::Serve(f) => server::serve(f, govledger::serve::roles::Roles::ALL).await,
        Cmd::Ingest(f) => server::serve(f, govledger::serve::roles::Roles::INGEST).await,
        Cmd::Api(f) => server::serve(f, govledger::serve::roles::Roles::API).await,
        Cmd::Project(a) => server::project(a).await,
        Cmd::Simulate(a) => server::simulate(a).await,
        Cmd::Rebuild(a) => server::rebuild(a).await,
        Cmd::Status(f) => status::status(f).await,
        Cmd::Sync(a) => status::sync(a).await,
        Cmd::Readiness(a) => status::readiness(a).await,
        Cmd::Runs(a) => status::runs(a).await,
        Cmd::Run(a) => status::run(a).await,
        Cmd::AcceptDeletions(a) => deletions::accept_deletions(a).await,
        Cmd::Identity(a) => status::identity(a).await,
        Cmd::Source(a) => status::source(a).await,
        Cmd::Act(a) => actions::act(a).await,
        Cmd::Actions(a) => actions::actions(a).await,
        Cmd::Action(a) => actions::action(a).await,
        Cmd::Ledger(a) => audit::ledger(a).await,
        Cmd::Poison(a) => audit::poison(a).await,
        Cmd::Checkpoint(a) => audit::checkpoint(a).await,
        Cmd::Replay(a) => audit::replay(a).await,
        Cmd::Verify(a) => audit::verify(a).await,
        Cmd::Export(a) => audit::export(a).await,
        Cmd::VerifyBundle(a) => audit::verify_bundle(a),
        Cmd::Report(a) => report::report(a).await,
        Cmd::Credentials(a) => credentials::credentials(a),
        Cmd::Token(a) => token::token(a),
        Cmd::Projector(a) => server::projector(a).await,
        Cmd::Config(a) => server::config_check(a).await,
        Cmd::Ocsf(a) => server::ocsf(a).await,
        Cmd::Completions { shell } => {
            use clap::CommandFactory as _;
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "govledger",
                &mut std::io::stdout(),
            );
            Ok(())
        }
    }
}

/// Exit code 2 for a bad config, 3 for a verdict about the stream (a
/// sequence missing: the projection cannot go on), 1 for any other error
/// (the message is printed).
fn exit_code_of(e: &anyhow::Error) -> ExitCode {
    let gap = e.downcast_ref::<ServeError>().is_some_and(|s| {
        matches!(
            s,
            ServeError::Projector(govledger_projector::runner::ProjectorError::Gap { .. })
        )
    });
    if gap {
        eprintln!("govledger: {e:#}");
        return ExitCode::from(3);
    }
    let usage = e.downcast_ref::<ServeError>().is_some_and(|s| {
        matches!(
            s,
            ServeError::Config(_) | ServeError::Tls { .. } | ServeError::Plaintext { .. }
        )
    }) || e.downcast_ref::<ConfigError>().is_some()
        || e.downcast_ref::<UsageError>().is_some();
    eprintln!("govledger: error: {e:#}");
    if usage {
        ExitCode::from(2)
    } else {
        ExitCode::FAILURE
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    // A usage error (an unknown flag, a value outside its set) exits 2 here.
    let cli = Cli::parse();
    init_logging();
    govledger_ingest::http::install_crypto_provider();
    match dispatch(cli.cmd).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.downcast_ref::<NotOk>().is_some() => ExitCode::from(3),
        Err(e) if e.downcast_ref::<Unpinned>().is_some() => ExitCode::from(4),
        Err(e) => exit_code_of(&e),
    }
}
