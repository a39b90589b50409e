//! The command line's flags and subcommands (clap), with the typed values
//! (`act`'s action kind, `--type`) clap checks before any command runs: a value
//! outside them is a usage error (exit code 2).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use govledger_proto::v1::{ActionKind, EntityType};

use crate::config::DEFAULT_GRPC_ADDR;

/// The lifecycle action `govledger act` submits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ActionKindArg {
    Deactivate,
    Delete,
    RemoveMembership,
    AddMembership,
    SetAttribute,
}

impl From<ActionKindArg> for ActionKind {
    fn from(k: ActionKindArg) -> Self {
        match k {
            ActionKindArg::Deactivate => ActionKind::Deactivate,
            ActionKindArg::Delete => ActionKind::Delete,
            ActionKindArg::RemoveMembership => ActionKind::RemoveMembership,
            ActionKindArg::AddMembership => ActionKind::AddMembership,
            ActionKindArg::SetAttribute => ActionKind::SetAttribute,
        }
    }
}

/// The entity type `--type` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum EntityTypeArg {
    User,
    Group,
    Entitlement,
    Membership,
}

impl From<EntityTypeArg> for EntityType {
    fn from(t: EntityTypeArg) -> Self {
        match t {
            EntityTypeArg::User => EntityType::User,
            EntityTypeArg::Group => EntityType::Group,
            EntityTypeArg::Entitlement => EntityType::Entitlement,
            EntityTypeArg::Membership => EntityType::Membership,
        }
    }
}

#[derive(Parser)]
#[command(
    name = "govledger",
    version,
    about = "Event-sourced governance ledger for identity security"
)]
pub struct Cli {
    #[command(subcommand)]
    pub cmd: Cmd,
}

#[derive(Args, Clone)]
pub struct ServeArgs {
    #[command(flatten)]
    pub server: ServerFlags,
    /// Serve gRPC without TLS on a non-loopback address (only behind a proxy
    /// that terminates TLS; logged as INSECURE).
    #[arg(long)]
    pub insecure_plaintext: bool,
}

#[derive(Args, Clone)]
pub struct ServerFlags {
    /// TOML config file (every key optional; see README "Configuration").
    #[arg(long, env = "GOVLEDGER_CONFIG")]
    pub config: Option<PathBuf>,
    /// Data folder (sled projections; the embedded NATS store). Default ./govledger-data
    #[arg(long, env = "GOVLEDGER_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// gRPC listen address. Default 127.0.0.1:50051
    #[arg(long, env = "GOVLEDGER_GRPC_ADDR")]
    pub grpc_addr: Option<String>,
    /// Use this NATS server instead of starting an embedded one.
    #[arg(long, env = "GOVLEDGER_NATS_URL")]
    pub nats_url: Option<String>,
}

#[derive(Args, Clone)]
pub struct ClientFlags {
    /// Address of a running govledger.
    #[arg(long, env = "GOVLEDGER_GRPC_ADDR", default_value = DEFAULT_GRPC_ADDR)]
    pub grpc_addr: String,
    /// File holding the bearer token (else GOVLEDGER_TOKEN_FILE, GOVLEDGER_TOKEN,
    /// then ./govledger-data/admin.token, the local admin token of a serve here).
    #[arg(long)]
    pub token_file: Option<PathBuf>,
    /// PEM CA of the server's certificate: connect over TLS.
    #[arg(long, env = "GOVLEDGER_TLS_CA")]
    pub tls_ca: Option<PathBuf>,
    /// PEM client certificate for mTLS (with --tls-key and --tls-ca).
    #[arg(long, env = "GOVLEDGER_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// PEM client key for mTLS.
    #[arg(long, env = "GOVLEDGER_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// The name to check in the server's certificate (default: the host of --grpc-addr).
    #[arg(long, env = "GOVLEDGER_TLS_DOMAIN")]
    pub tls_domain: Option<String>,
    /// Print the answer as one JSON document (the API's protobuf JSON mapping:
    /// the field names of the .proto files in lowerCamelCase, enums by name)
    /// instead of a table. Exit codes are the same.
    #[arg(long)]
    pub json: bool,
}

#[derive(Subcommand)]
pub enum Cmd {
    /// Run every role (projector, gRPC API) in one process; NATS embedded unless --nats-url.
    Serve(ServeArgs),
    /// Cluster role: the sync workers and action executors (with the
    /// projection they decide from), sharing sources with the other ingest
    /// processes through leases. Needs `[cluster] node` and `nats.urls`.
    Ingest(ServeArgs),
    /// Cluster role: the gRPC (and HTTP) API over this node's own projection,
    /// read-your-writes with `govledger-min-seq`; triggers and actions go to
    /// the ingest processes. Needs `[cluster] node` and `nats.urls`.
    Api(ServeArgs),
    /// Run only the projector (stream → sled).
    Project(ProjectArgs),
    /// Publish synthetic sync runs (the demo source): one clean run and, with
    /// --fail-page, one whose page fails on every attempt.
    Simulate(SimulateArgs),
    /// Sources with their freshness and last verdict.
    Status(ClientFlags),
    /// Start a full sync of a configured source on a running govledger and follow
    /// it with a progress bar until the ledger decides its verdict. Exit code 0 when
    /// COMPLETE, 3 otherwise.
    Sync(SyncArgs),
    /// May a review over these sources close? (all sources when none given)
    /// Exit code 0 when ready, 3 when not.
    Readiness(ReadinessArgs),
    /// The runs of one source, newest first.
    Runs(RunsArgs),
    /// One run: verdict, reasons, counts.
    Run(RunArgs),
    /// Accept the count drops of a run the deletion guard made SUSPECT: records
    /// who accepted which drop, why and under which ticket; the run then counts
    /// as COMPLETE with the acceptance named. Exit code 0 when the run is
    /// COMPLETE afterwards, 3 when not, 1 when the ledger refuses (the run is
    /// unknown or not SUSPECT for count drops only).
    AcceptDeletions(AcceptDeletionsArgs),
    /// One identity's last observation at a source.
    Identity(IdentityArgs),
    /// One source: freshness and last verdict, now or as of a past point.
    Source(SourceArgs),
    /// Submit a lifecycle action on a running govledger and follow it until the
    /// ledger concludes it (read-back verified). Exit code 0 when CONFIRMED, 3 otherwise.
    Act(ActArgs),
    /// The actions of a source with their outcomes as of now.
    Actions(ActionsArgs),
    /// One action: outcome, per-step results, evidence.
    Action(ActionArgs),
    /// The events themselves, in stream order, as NDJSON (protobuf JSON mapping),
    /// each with its stream sequence and RFC 6962 leaf hash.
    Replay(ReplayArgs),
    /// Fold the whole stream from sequence 1 into a fresh sled folder and compare
    /// its state digest with the running govledger's. Exit code 0 when equal, 3 when not.
    Rebuild(RebuildArgs),
    /// Projection position, counters and (with --digest) the state digest.
    Ledger(LedgerArgs),
    /// Stream messages that could not be folded.
    Poison(PoisonArgs),
    /// The newest signed checkpoint (or a new one with --new) as a C2SP
    /// signed note: `<origin>`, tree size, base64 root, then the ledger's
    /// Ed25519 signature line (and any witness cosignatures). Any signed-note
    /// implementation verifies it with the verifier key (--verifier-key).
    Checkpoint(CheckpointArgs),
    /// Read a range of the stream again and compare every event with what the
    /// ledger folded and with the signed checkpoints; names the first bad
    /// sequence. Exit code 0 when intact, 3 when not.
    Verify(VerifyArgs),
    /// Write an evidence bundle for one identity (or a whole source) over a time
    /// range: the events with inclusion proofs, signed checkpoints, the state at
    /// the end and a signed manifest. `govledger verify-bundle` checks it offline.
    Export(ExportArgs),
    /// Check an evidence bundle offline (no NATS, no sled, no server): signed
    /// checkpoints, every event's inclusion proof, the signed manifest, and the
    /// state folded again from the events. Exit code 0 when it holds, 3 when not.
    VerifyBundle(VerifyBundleArgs),
    /// The auditor's completeness report for one source as of a point: one
    /// HTML page (population, how it was produced, actions and their
    /// read-back, open exceptions, checkpoint and the commands to verify it),
    /// rendered from a whole-source evidence bundle written beside it and
    /// verified first. `--bundle` renders it again offline from a bundle.
    Report(ReportArgs),
    /// Print (or write with --out, mode 0600) the read-only SIEM user's
    /// credential for the embedded NATS server: URL, user, password.
    Credentials(CredentialsArgs),
    /// Make a new API bearer token: writes it to --out (mode 0600) and prints
    /// the `[[auth.tokens]]` entry (its SHA-256, never the token) for the config.
    Token(TokenArgs),
    /// Check a config file: every key (errors name it, exit 2) and every
    /// secret it names; with --live also each source's first page, read
    /// without writing anything (auth accepted, the page parses, the total the
    /// source declares). Exit 3 when a live check fails.
    Config(ConfigArgs),
    /// Run only the OCSF feed (scale-out: instead of `[ocsf] enabled` in
    /// serve): every ledger event's OCSF records on `govledger.ocsf.v1.<class>`,
    /// with its own index of action requests in `<data_dir>/ocsf`. Until SIGINT/SIGTERM.
    Ocsf(OcsfArgs),
    /// Print the shell completion script for SHELL on stdout.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Pause or resume the projector of a running govledger (admin): while
    /// paused nothing is folded, events wait in the stream, and health says
    /// NOT_SERVING once the lag passes projector.lag_bound_events.
    Projector(ProjectorArgs),
}

/// The arguments of `govledger ocsf`.
#[derive(Args)]
pub struct OcsfArgs {
    #[command(flatten)]
    pub server: ServerFlags,
}

/// The arguments of `govledger config check`.
#[derive(Args)]
pub struct ConfigArgs {
    #[command(subcommand)]
    pub cmd: ConfigCmd,
}

#[derive(Subcommand)]
pub enum ConfigCmd {
    /// Validate the config (and with --live, probe each source).
    Check {
        #[command(flatten)]
        server: ServerFlags,
        /// Also read each source's first page (one record), writing nothing.
        #[arg(long)]
        live: bool,
    },
}

/// The arguments of `govledger projector pause|resume`.
#[derive(Args)]
pub struct ProjectorArgs {
    #[command(subcommand)]
    pub cmd: ProjectorCmd,
}

#[derive(Subcommand)]
pub enum ProjectorCmd {
    /// Stop folding until `resume` (or a restart).
    Pause {
        /// Why (logged with who asked).
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        client: ClientFlags,
    },
    /// Fold again.
    Resume {
        /// Why (logged with who asked).
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        client: ClientFlags,
    },
}

// The arguments of `govledger token new`.
#[derive(Args)]
pub struct TokenArgs {
    #[command(subcommand)]
    pub cmd: TokenCmd,
}

#[derive(Subcommand)]
pub enum TokenCmd {
    /// A new random token for PRINCIPAL with ROLES (reader, operator, auditor, admin).
    New {
        /// The name the ledger records for calls with this token.
        principal: String,
        /// Comma-separated roles: reader, operator, auditor, admin.
        #[arg(long, value_delimiter = ',', required = true)]
        roles: Vec<RoleArg>,
        /// The file the token is written to (mode 0600; must not exist).
        #[arg(long)]
        out: PathBuf,
    },
}

/// A role of `govledger token new --roles`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RoleArg {
    Reader,
    Operator,
    Auditor,
    Admin,
}

impl From<RoleArg> for crate::auth::Role {
    fn from(r: RoleArg) -> Self {
        match r {
            RoleArg::Reader => Self::Reader,
            RoleArg::Operator => Self::Operator,
            RoleArg::Auditor => Self::Auditor,
            RoleArg::Admin => Self::Admin,
        }
    }
}

/// Whose credential `govledger credentials` hands out.
#[derive(Clone, Copy, ValueEnum)]
pub enum CredentialUserArg {
    /// The read-only user: subscribe and read the ledger's stream, nothing else.
    Siem,
}

// The arguments of `govledger credentials`.
#[derive(Args)]
pub struct CredentialsArgs {
    #[arg(value_enum)]
    pub user: CredentialUserArg,
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// The data folder of the govledger whose embedded NATS the SIEM reads.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Write the credential to this file (mode 0600) instead of printing it.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

// The arguments of `govledger project`.
#[derive(Args)]
pub struct ProjectArgs {
    #[command(flatten)]
    pub server: ServerFlags,
    /// Exit once every event the stream held at start is applied.
    #[arg(long)]
    pub exit_at_end: bool,
}

// The arguments of `govledger simulate`.
#[derive(Args)]
pub struct SimulateArgs {
    #[command(flatten)]
    pub server: ServerFlags,
    /// Source id of the simulated runs.
    #[arg(long, default_value = "demo-hr")]
    pub source: String,
    /// Users the simulated source holds.
    #[arg(long, default_value_t = 250)]
    pub users: u64,
    /// Records per page.
    #[arg(long, default_value_t = 100)]
    pub page_size: u64,
    /// 0-based page index that fails on every attempt (repeatable).
    #[arg(long)]
    pub fail_page: Vec<u64>,
}

// The arguments of `govledger sync`.
#[derive(Args)]
pub struct SyncArgs {
    pub source: String,
    #[command(flatten)]
    pub client: ClientFlags,
    /// Give up following after this long, in seconds.
    #[arg(long, default_value_t = 3_600)]
    pub timeout_s: u64,
    /// Read only what changed since the last COMPLETE run (SCIM filter on
    /// meta.lastModified). Its absences are never evidence of removal.
    #[arg(long)]
    pub delta: bool,
}

// The arguments of `govledger readiness`.
#[derive(Args)]
pub struct ReadinessArgs {
    pub sources: Vec<String>,
    /// Only actions on these identities block (repeatable).
    #[arg(long = "identity")]
    pub identities: Vec<String>,
    #[command(flatten)]
    pub client: ClientFlags,
}

// The arguments of `govledger runs`.
#[derive(Args)]
pub struct RunsArgs {
    pub source: String,
    #[command(flatten)]
    pub client: ClientFlags,
    #[arg(long, default_value_t = 20)]
    pub limit: u32,
}

// The arguments of `govledger run`.
#[derive(Args)]
pub struct RunArgs {
    pub run_id: String,
    #[command(flatten)]
    pub client: ClientFlags,
}

// The arguments of `govledger accept-deletions`.
#[derive(Args)]
pub struct AcceptDeletionsArgs {
    /// The SUSPECT run whose count drops are accepted.
    pub run_id: String,
    /// Why the deletions are real (required).
    #[arg(long)]
    pub reason: String,
    /// The change or incident ticket that covers them (required).
    #[arg(long)]
    pub ticket: String,
    #[command(flatten)]
    pub client: ClientFlags,
}

// The arguments of `govledger identity`.
#[derive(Args)]
pub struct IdentityArgs {
    pub source: String,
    pub external_id: String,
    /// The entity type.
    #[arg(long, value_enum, default_value_t = EntityTypeArg::User)]
    pub r#type: EntityTypeArg,
    /// As it stood at this stream sequence or RFC 3339 time (folded again
    /// from its own events).
    #[arg(long)]
    pub as_of: Option<String>,
    #[command(flatten)]
    pub client: ClientFlags,
}

// The arguments of `govledger source`.
#[derive(Args)]
pub struct SourceArgs {
    pub source: String,
    /// As it stood at this stream sequence or RFC 3339 time (the source's
    /// events up to then are folded again).
    #[arg(long)]
    pub as_of: Option<String>,
    #[command(flatten)]
    pub client: ClientFlags,
}

// The arguments of `govledger act`.
#[derive(Args)]
pub struct ActArgs {
    pub source: String,
    /// The lifecycle action.
    #[arg(value_enum)]
    pub kind: ActionKindArg,
    /// The identity (user) external id.
    pub identity: String,
    #[arg(long)]
    pub group: Option<String>,
    #[arg(long)]
    pub attribute: Option<String>,
    #[arg(long)]
    pub value: Option<String>,
    /// The same key always means the same action (default: a new UUID).
    #[arg(long)]
    pub idempotency_key: Option<String>,
    #[arg(long, default_value = "")]
    pub reason: String,
    #[arg(long, default_value = "")]
    pub ticket: String,
    /// Deadline, seconds from now (0 = none).
    #[arg(long, default_value_t = 0)]
    pub deadline_s: u64,
    /// Accept the target's 404 as proof that a deactivate / delete is in
    /// effect. Without it a 404 counts only when a filtered list of the
    /// target agrees (a misrouted proxy or another tenant answers 404 too).
    #[arg(long)]
    pub absent_is_proof: bool,
    #[command(flatten)]
    pub client: ClientFlags,
}

// The arguments of `govledger actions`.
#[derive(Args)]
pub struct ActionsArgs {
    pub source: String,
    #[command(flatten)]
    pub client: ClientFlags,
    #[arg(long, default_value_t = 50)]
    pub limit: u32,
}

// The arguments of `govledger action`.
#[derive(Args)]
pub struct ActionArgs {
    pub action_id: String,
    /// As it stood at this stream sequence or RFC 3339 time.
    #[arg(long)]
    pub as_of: Option<String>,
    #[command(flatten)]
    pub client: ClientFlags,
}

// The arguments of `govledger replay`.
#[derive(Args)]
pub struct ReplayArgs {
    #[arg(long)]
    pub source: Option<String>,
    #[arg(long)]
    pub run: Option<String>,
    #[arg(long)]
    pub action: Option<String>,
    /// Observations of this identity and the actions requested on it.
    #[arg(long)]
    pub identity: Option<String>,
    #[arg(long, default_value_t = 0)]
    pub from_seq: u64,
    #[arg(long, default_value_t = 0)]
    pub to_seq: u64,
    /// Write here instead of standard output.
    #[arg(long)]
    pub out: Option<PathBuf>,
    #[command(flatten)]
    pub client: ClientFlags,
}

// The arguments of `govledger rebuild`.
#[derive(Args)]
pub struct RebuildArgs {
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Where the running govledger keeps its data (to find its embedded NATS).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    #[arg(long)]
    pub nats_url: Option<String>,
    /// Keep the rebuilt projection in this folder (default: a temporary one).
    #[arg(long)]
    pub keep: Option<PathBuf>,
    #[command(flatten)]
    pub client: ClientFlags,
}

// The arguments of `govledger ledger`.
#[derive(Args)]
pub struct LedgerArgs {
    #[command(flatten)]
    pub client: ClientFlags,
    #[arg(long)]
    pub digest: bool,
}

/// The arguments of `govledger checkpoint`.
#[derive(Args)]
pub struct CheckpointArgs {
    #[command(flatten)]
    pub client: ClientFlags,
    /// Sign a new checkpoint of the ledger as it is now (else: the newest one).
    #[arg(long)]
    pub new: bool,
    /// Print only the note's verifier key (`<origin>+<key id>+<base64 key>`),
    /// for auditors and witnesses to pin.
    #[arg(long)]
    pub verifier_key: bool,
    /// Hand the ledger this file: a checkpoint note cosigned by witnesses
    /// (their keys in audit.witness_keys); prints who cosigned what.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["new", "verifier_key"])]
    pub add_cosignature: Option<std::path::PathBuf>,
    /// Print the published key set: every checkpoint key of the chain,
    /// oldest first, as a signed-note verifier key with its validity period
    /// (from the handover that brought it in to the one that retired it).
    #[arg(long, conflicts_with_all = ["new", "verifier_key", "add_cosignature"])]
    pub keys: bool,
}

// The arguments of `govledger poison`.
#[derive(Args)]
pub struct PoisonArgs {
    #[command(flatten)]
    pub client: ClientFlags,
}

// The arguments of `govledger verify`.
#[derive(Args)]
pub struct VerifyArgs {
    /// First sequence (default 1).
    #[arg(long, default_value_t = 0)]
    pub from_seq: u64,
    /// Last sequence (default: the last applied).
    #[arg(long, default_value_t = 0)]
    pub to_seq: u64,
    /// Verify this stream (a copy or a restored backup) instead of the ledger's own.
    #[arg(long)]
    pub stream: Option<String>,
    #[command(flatten)]
    pub client: ClientFlags,
}

// The arguments of `govledger export`.
#[derive(Args)]
pub struct ExportArgs {
    #[arg(long)]
    pub source: String,
    /// The identity's external id (omit for the whole source).
    #[arg(long)]
    pub identity: Option<String>,
    /// The entity type.
    #[arg(long, value_enum, default_value_t = EntityTypeArg::User)]
    pub r#type: EntityTypeArg,
    /// Start of the range, RFC 3339 (default: the beginning).
    #[arg(long)]
    pub from: Option<String>,
    /// End of the range, RFC 3339 (default: now).
    #[arg(long)]
    pub to: Option<String>,
    /// The bundle file to write.
    #[arg(long)]
    pub out: PathBuf,
    #[command(flatten)]
    pub client: ClientFlags,
}

// The arguments of `govledger report`.
#[derive(Args)]
pub struct ReportArgs {
    /// The source (asks the ledger; not with --bundle).
    #[arg(long, required_unless_present = "bundle", conflicts_with = "bundle")]
    pub source: Option<String>,
    /// The point the report is as of, RFC 3339 (default: now).
    #[arg(long, conflicts_with = "bundle")]
    pub as_of: Option<String>,
    /// Render from this bundle instead of asking the ledger (offline).
    #[arg(long)]
    pub bundle: Option<PathBuf>,
    /// The HTML file to write; the bundle is written beside it
    /// (`<name>.bundle.json`) unless --bundle is given.
    #[arg(long)]
    pub out: PathBuf,
    /// The ledger's checkpoint key (hex) as its operator published it. Without
    /// it: the key the ledger serves (asked), or with --bundle, refused.
    #[arg(long)]
    pub public_key: Option<String>,
    #[command(flatten)]
    pub client: ClientFlags,
}

// The arguments of `govledger verify-bundle`.
#[derive(Args)]
pub struct VerifyBundleArgs {
    pub bundle: PathBuf,
    /// The ledger's checkpoint key as its operator published it (hex, or
    /// its signed-note verifier key from `govledger checkpoint --keys`), got
    /// through another channel than the bundle; any key of the ledger's key
    /// sequence pins it. Without it the verdict is UNPINNED (exit 4).
    #[arg(long)]
    pub public_key: Option<String>,
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory as _;

    use super::*;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn typed_values_parse_and_others_are_usage_errors() {
        let cli =
            Cli::try_parse_from(["govledger", "act", "hr", "remove-membership", "u1"]).unwrap();
        let Cmd::Act(a) = cli.cmd else {
            panic!("not act")
        };
        assert_eq!(ActionKind::from(a.kind), ActionKind::RemoveMembership);
        let cli =
            Cli::try_parse_from(["govledger", "identity", "hr", "g1", "--type", "group"]).unwrap();
        let Cmd::Identity(a) = cli.cmd else {
            panic!("not identity")
        };
        assert_eq!(EntityType::from(a.r#type), EntityType::Group);
        for args in [
            ["govledger", "act", "hr", "disable", "u1"].as_slice(),
            &["govledger", "identity", "hr", "u1", "--type", "robot"],
        ] {
            let e = Cli::try_parse_from(args).err().unwrap();
            assert_eq!(e.kind(), clap::error::ErrorKind::InvalidValue, "{args:?}");
            assert_eq!(e.exit_code(), 2, "{args:?}");
        }
    }
}
