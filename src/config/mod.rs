//! Configuration: one TOML file, validated once, before anything binds a port,
//! into the [`Resolved`] form every role receives.
//!
//! Every key has a default, so an empty file (or none) is the embedded default.
//! Unknown keys are errors. Errors name the key and say what to do. Secrets are
//! never stored here in clear: they come from files or the environment, are
//! read once by [`Config::resolve`], and are never logged (see `Secret`).
//!
//! Layout:
//! - this file: [`Config`] (the file's shape, its checks) and [`Resolved`];
//! - [`sources`]: `[[sources]]`, typed, resolved into a [`sources::Source`] each;
//! - [`nats`]: `[nats]`, the server(s), the stream, credentials and TLS;
//! - [`cluster`]: `[cluster]` and `[stream]`, replicas, placement, this node's name and leases;
//! - [`rest`]: `[sources.rest]`, a generic JSON API's shape and paging keys;
//! - [`rest_actions`]: `[sources.rest.actions.<kind>]`, a REST source's write templates;
//! - [`directory`]: `[sources.ldap]` and `[sources.file]`, a directory and an HR file drop;
//! - [`leavers`]: `[leavers]`, the leaver check across sources;
//! - [`secrets`]: `[sources.auth]` and where secrets are read from;
//! - [`thresholds`]: `[sources.deletion_thresholds]`, the deletion guard per entity type;
//! - [`security`]: `[tls]` and `[auth]`, the gRPC listener's trust settings;
//! - [`provenance`]: `[provenance]`, the producer key and the trusted producer keys;
//! - [`error`]: the one error type, [`ConfigError`].

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use serde::Deserialize;

pub mod cluster;
pub mod directory;
pub mod error;
pub mod leavers;
pub mod nats;
pub mod provenance;
pub mod rest;
pub mod rest_actions;
pub mod secrets;
pub mod security;
pub mod sources;
pub mod thresholds;

pub use error::ConfigError;
use error::invalid;
pub use nats::NatsConfig;
use secrets::SecretSource;
use sources::Source;

pub const DEFAULT_DATA_DIR: &str = "./govledger-data";
pub const DEFAULT_GRPC_ADDR: &str = "127.0.0.1:50051";
/// The default `projector.lag_bound_events`: a few seconds of a large sync's
/// events (the projector applies tens of thousands a second).
pub const DEFAULT_LAG_BOUND_EVENTS: u64 = 200_000;

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Folder for the sled projections and, when NATS is embedded, its store.
    pub data_dir: Option<PathBuf>,
    pub grpc: GrpcConfig,
    /// `[http]`: `/metrics`, `/healthz`, `/readyz` and the status page (off unless `http.addr` is set).
    pub http: HttpConfig,
    /// `[ocsf]`: the OCSF feed for SIEMs (off unless `ocsf.enabled`).
    pub ocsf: OcsfConfig,
    /// `[tls]`: gRPC over TLS, and mTLS.
    pub tls: security::TlsConfig,
    /// `[auth]`: bearer token hashes and client certificate subjects, with roles.
    pub auth: security::AuthConfig,
    pub nats: NatsConfig,
    /// `[stream]`: replicas and placement of the streams govledger creates.
    pub stream: cluster::StreamConfig,
    /// `[cluster]`: this process's node name and its leases.
    pub cluster: cluster::ClusterConfig,
    pub projector: ProjectorConfig,
    pub publisher: PublisherConfig,
    pub api: ApiConfig,
    /// The sources govledger syncs (`[[sources]]`).
    pub sources: Vec<sources::SourceConfig>,
    pub audit: AuditConfig,
    pub provenance: provenance::ProvenanceConfig,
    /// `[leavers]`: people gone in HR and still active in a target block readiness.
    pub leavers: leavers::LeaversConfig,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditConfig {
    /// The ed25519 seed (64 hex chars) that signs checkpoints. Default:
    /// `<data_dir>/audit/signing.key`, created on first start (mode 0600).
    pub signing_key_file: Option<PathBuf>,
    /// Key rotation: the seed file of the checkpoint key `signing_key_file`
    /// replaces. While the chain's last checkpoint is that key's, the next
    /// one hands over (signed by it, naming the new key, countersigned by
    /// the new key); from then on the old key is retired. Must exist.
    pub previous_signing_key_file: Option<PathBuf>,
    /// Sign a checkpoint this often, in milliseconds (0 = only on demand).
    pub checkpoint_interval_ms: u64,
    /// Answer each source as of the ledger's head this often, in
    /// milliseconds, keeping the answer as a snapshot point-in-time source
    /// answers fold on from (0 = only the snapshots questions leave).
    pub source_snapshot_interval_ms: u64,
    /// Source snapshots kept per source (2..=64), spread over its history:
    /// more cost disk (each about the source's state) and narrow the gaps a
    /// point-in-time answer folds across.
    pub source_snapshots_kept: usize,
    /// The origin line of the checkpoints' signed notes, unique per
    /// deployment (e.g. `ledger.example.com/identity`). Default
    /// `govledger/<stream>/<key id>`.
    pub origin: Option<String>,
    /// Verifier keys of the witnesses whose cosignatures count
    /// (`name+id+base64`, c2sp.org/tlog-cosignature Ed25519).
    pub witness_keys: Vec<String>,
    /// Witnesses the ledger asks to cosign each checkpoint (tlog-witness
    /// `add-checkpoint`); their keys count like `witness_keys`.
    pub witnesses: Vec<crate::audit::witness_client::WitnessConfig>,
    /// The ed25519 seed (64 hex chars) that signs evidence bundles'
    /// manifests (a key apart from the checkpoint key, which endorses it).
    /// Default: `<data_dir>/audit/manifest.key`, created on first start.
    pub manifest_key_file: Option<PathBuf>,
    /// How long each endorsement of the manifest key holds, in days (renewed
    /// when it runs out; a bundle exported outside it proves nothing).
    pub manifest_key_validity_days: u64,
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self {
            signing_key_file: None,
            previous_signing_key_file: None,
            checkpoint_interval_ms: crate::audit::checkpoints::DEFAULT_CHECKPOINT_INTERVAL_MS,
            source_snapshot_interval_ms:
                crate::audit::source_snapshots::DEFAULT_SNAPSHOT_INTERVAL_MS,
            source_snapshots_kept: crate::audit::source_snapshots::DEFAULT_SNAPSHOTS_KEPT,
            origin: None,
            witness_keys: Vec::new(),
            witnesses: Vec::new(),
            manifest_key_file: None,
            manifest_key_validity_days: crate::audit::keys::MANIFEST_KEY_VALIDITY_DAYS_DEFAULT,
        }
    }
}

impl AuditConfig {
    /// The `[audit]` keys; the error names the key.
    fn validate(&self) -> Result<(), ConfigError> {
        let every = self.source_snapshot_interval_ms;
        if every != 0 && every < crate::audit::source_snapshots::SNAPSHOT_INTERVAL_MIN_MS {
            return Err(invalid(
                "audit.source_snapshot_interval_ms",
                format!(
                    "{every} ms is too often: use 0 (off) or at least {} ms",
                    crate::audit::source_snapshots::SNAPSHOT_INTERVAL_MIN_MS
                ),
            ));
        }
        use crate::audit::source_snapshots::{SNAPSHOTS_KEPT_MAX, SNAPSHOTS_KEPT_MIN};
        if !(SNAPSHOTS_KEPT_MIN..=SNAPSHOTS_KEPT_MAX).contains(&self.source_snapshots_kept) {
            return Err(invalid(
                "audit.source_snapshots_kept",
                format!(
                    "{} is out of range: keep {SNAPSHOTS_KEPT_MIN} to {SNAPSHOTS_KEPT_MAX} snapshots per source",
                    self.source_snapshots_kept
                ),
            ));
        }
        if let Some(o) = &self.origin
            && (!crate::audit::note::is_name(o) || o.len() > 256)
        {
            return Err(invalid(
                "audit.origin",
                format!(
                    "{o:?} cannot name a signed note: use up to 256 characters without spaces or '+' \
                 (e.g. ledger.example.com/identity)"
                ),
            ));
        }
        for (i, k) in self.witness_keys.iter().enumerate() {
            crate::audit::note::check_witness_key(k).map_err(|_| {
            invalid(
                format!("audit.witness_keys[{i}]"),
                "not a witness verifier key (`<name>+<8 hex id>+<base64 of 0x04 and the Ed25519 key>`, \
                 as the witness publishes it)",
            )
        })?;
        }
        if self.witnesses.len() > crate::audit::witness_client::WITNESSES_MAX {
            return Err(invalid(
                "audit.witnesses",
                format!(
                    "lists {} witnesses; at most {}",
                    self.witnesses.len(),
                    crate::audit::witness_client::WITNESSES_MAX
                ),
            ));
        }
        for (i, w) in self.witnesses.iter().enumerate() {
            let ok_url = (w.url.starts_with("https://") || w.url.starts_with("http://"))
                && w.url.len() <= 2048
                && !w.url.chars().any(|c| c.is_whitespace() || c.is_control());
            if !ok_url {
                return Err(invalid(
                    format!("audit.witnesses[{i}].url"),
                    "must be the witness's http(s) submission prefix (requests go to <url>/add-checkpoint)",
                ));
            }
            crate::audit::note::check_witness_key(&w.key).map_err(|_| {
                invalid(
                    format!("audit.witnesses[{i}].key"),
                    "not a witness verifier key (`<name>+<8 hex id>+<base64 of 0x04 and the Ed25519 key>`)",
                )
            })?;
        }
        if !(1..=crate::audit::keys::MANIFEST_KEY_VALIDITY_DAYS_MAX)
            .contains(&self.manifest_key_validity_days)
        {
            return Err(invalid(
                "audit.manifest_key_validity_days",
                format!(
                    "must be 1 to {} (days an endorsement of the manifest key holds)",
                    crate::audit::keys::MANIFEST_KEY_VALIDITY_DAYS_MAX
                ),
            ));
        }
        if self.checkpoint_interval_ms != 0 && self.checkpoint_interval_ms < 100 {
            return Err(invalid(
                "audit.checkpoint_interval_ms",
                "must be 0 (only on demand) or at least 100",
            ));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct GrpcConfig {
    /// Listen address, `HOST:PORT` (port 0 picks a free port; the log says which).
    pub addr: Option<String>,
    /// `serve --insecure-plaintext`: plaintext beyond loopback (not a file key).
    #[serde(skip)]
    pub insecure_plaintext: bool,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct OcsfConfig {
    /// Publish every read and write attempt and every lifecycle outcome as
    /// OCSF JSON on `govledger.ocsf.v1.<class>` (stream GOVLEDGER_OCSF).
    pub enabled: bool,
    /// The OCSF version of the records: "1.1.0" (default) or "1.8.0".
    pub version: crate::ocsf::Version,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Listen address, `HOST:PORT` (port 0 picks a free port; the log says
    /// which). Unset: no HTTP listener. Plaintext: a loopback address, or
    /// behind a TLS proxy with `serve --insecure-plaintext`.
    pub addr: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProjectorConfig {
    /// Messages folded per sled commit (and per flush and ack).
    pub batch_events_max: usize,
    /// When caught up, how long one pull waits, in milliseconds.
    pub idle_wait_ms: u64,
    /// sled page cache, in bytes.
    pub cache_capacity_bytes: u64,
    /// Durable consumer name.
    pub durable: String,
    /// Events the projector may be behind the stream before health says
    /// NOT_SERVING and `/readyz` 503 (0 = no bound).
    pub lag_bound_events: u64,
}

impl Default for ProjectorConfig {
    fn default() -> Self {
        Self {
            batch_events_max: govledger_projector::runner::DEFAULT_BATCH_EVENTS_MAX,
            idle_wait_ms: govledger_projector::runner::DEFAULT_IDLE_WAIT_MS,
            cache_capacity_bytes: govledger_projector::store::DEFAULT_CACHE_CAPACITY_BYTES,
            durable: govledger_projector::runner::DEFAULT_DURABLE.to_owned(),
            lag_bound_events: DEFAULT_LAG_BOUND_EVENTS,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PublisherConfig {
    /// Publishes awaiting their ack at once.
    pub inflight_max: usize,
    /// Ack wait per attempt, in milliseconds, before the publish is retried.
    pub ack_timeout_ms: u64,
}

impl Default for PublisherConfig {
    fn default() -> Self {
        Self {
            inflight_max: govledger_ingest::publisher::DEFAULT_INFLIGHT_MAX,
            ack_timeout_ms: govledger_ingest::publisher::DEFAULT_ACK_TIMEOUT_MS,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiConfig {
    /// An unfinished run with no event for this long is ABANDONED, in milliseconds.
    pub abandon_after_ms: u64,
    /// How much lower than the API's the CPU priority of the background work
    /// (projector, syncs, actions) is, as a Unix nice increment, 0-19
    /// (0 = the same): calls stay fast while a large sync folds.
    pub background_nice: u8,
    /// How long a call carrying `govledger-min-seq` waits for this node's
    /// projection to reach it before answering UNAVAILABLE, in milliseconds.
    pub min_seq_wait_ms: u64,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            abandon_after_ms: (govledger_projector::verdict::DEFAULT_ABANDON_AFTER_US / 1_000)
                as u64,
            background_nice: crate::serve::background::DEFAULT_BACKGROUND_NICE,
            min_seq_wait_ms: crate::cluster::consistency::DEFAULT_MIN_SEQ_WAIT_MS,
        }
    }
}

/// The config validated, with every source resolved (its spec built, its secrets
/// read): what `serve`, the sync scheduler and the action workers receive.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub config: Config,
    /// One per `[[sources]]` entry, in file order.
    pub sources: Vec<Source>,
    /// How every role connects to NATS (its credential read).
    pub nats: govledger_stream::connect::ConnectSpec,
    /// The leaver check, when `[leavers]` names an HR source.
    pub leavers: Option<leavers::LeaverRule>,
}

impl Config {
    /// Parses a TOML document; `origin` names it in errors. A value outside a
    /// setting's fixed set (`kind = "ldap"`) is reported as the key it is at,
    /// with serde's list of the allowed values.
    pub fn from_toml(text: &str, origin: &str) -> Result<Self, ConfigError> {
        // The position and what is wrong, never the offending line: it may
        // hold a value someone pasted inline (a token).
        let parse_err = |e: toml::de::Error| ConfigError::Parse {
            path: origin.to_owned(),
            message: match e.span() {
                Some(span) => {
                    let before = &text[..span.start.min(text.len())];
                    let line = before.matches('\n').count() + 1;
                    let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
                    format!("line {line}, column {column}: {}", e.message().trim_end())
                }
                None => e.message().trim_end().to_owned(),
            }
            .replace('\n', " "),
        };
        let de = toml::Deserializer::parse(text).map_err(parse_err)?;
        serde_path_to_error::deserialize(de).map_err(|e| {
            let key = e.path().to_string();
            let e = e.into_inner();
            if e.message().starts_with("unknown variant") {
                invalid(key, e.message())
            } else {
                match parse_err(e) {
                    ConfigError::Parse { path, message } if key != "." && !key.is_empty() => {
                        ConfigError::Parse {
                            path,
                            message: format!("key `{key}`: {message}"),
                        }
                    }
                    other => other,
                }
            }
        })
    }

    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Read {
            path: path.display().to_string(),
            error,
        })?;
        Self::from_toml(&text, &path.display().to_string())
    }

    pub fn data_dir(&self) -> PathBuf {
        self.data_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR))
    }

    pub fn grpc_addr(&self) -> Result<SocketAddr, ConfigError> {
        let s = self.grpc.addr.as_deref().unwrap_or(DEFAULT_GRPC_ADDR);
        s.parse().map_err(|_| {
            invalid(
                "grpc.addr",
                format!("{s:?} is not HOST:PORT with an IP host (e.g. 127.0.0.1:50051)"),
            )
        })
    }

    /// `http.addr` parsed (`None`: no HTTP listener).
    pub fn http_addr(&self) -> Result<Option<SocketAddr>, ConfigError> {
        let Some(s) = self.http.addr.as_deref() else {
            return Ok(None);
        };
        s.parse().map(Some).map_err(|_| {
            invalid(
                "http.addr",
                format!("{s:?} is not HOST:PORT with an IP host (e.g. 127.0.0.1:9464)"),
            )
        })
    }

    /// Checks every value; the first problem is returned, naming its key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.grpc_addr()?;
        self.http_addr()?;
        security::validate(&self.tls, &self.auth)?;
        self.nats.validate()?;
        let external = self.nats.external_url().is_some();
        self.stream.validate(external)?;
        self.cluster.validate(external)?;
        self.provenance.validate()?;
        self.audit.validate()?;
        let s = &self.nats.stream;
        if s.is_empty()
            || !s
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(invalid(
                "nats.stream",
                format!("{s:?}: use letters, digits, '-' or '_'"),
            ));
        }
        if self.nats.duplicate_window_ms < 1_000 {
            return Err(invalid(
                "nats.duplicate_window_ms",
                "must be at least 1000 (a retried publish must fall inside it)",
            ));
        }
        if self.nats.connect_timeout_ms == 0 {
            return Err(invalid("nats.connect_timeout_ms", "must be > 0"));
        }
        let d = &self.projector.durable;
        if d.is_empty()
            || !d
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(invalid(
                "projector.durable",
                format!("{d:?}: use letters, digits, '-' or '_'"),
            ));
        }
        if !(1..=100_000).contains(&self.projector.batch_events_max) {
            return Err(invalid(
                "projector.batch_events_max",
                "must be within 1..=100000",
            ));
        }
        if !(1..=60_000).contains(&self.projector.idle_wait_ms) {
            return Err(invalid(
                "projector.idle_wait_ms",
                "must be within 1..=60000",
            ));
        }
        if self.projector.cache_capacity_bytes < 1024 * 1024 {
            return Err(invalid(
                "projector.cache_capacity_bytes",
                "must be at least 1048576 (1 MiB)",
            ));
        }
        if !(1..=1_000_000).contains(&self.publisher.inflight_max) {
            return Err(invalid(
                "publisher.inflight_max",
                "must be within 1..=1000000",
            ));
        }
        if self.publisher.ack_timeout_ms < 10 {
            return Err(invalid("publisher.ack_timeout_ms", "must be at least 10"));
        }
        if self.api.abandon_after_ms < 1_000 {
            return Err(invalid("api.abandon_after_ms", "must be at least 1000"));
        }
        if self.api.min_seq_wait_ms > 60_000 {
            return Err(invalid(
                "api.min_seq_wait_ms",
                "must be at most 60000 (a client retries or asks another node)",
            ));
        }
        if self.api.background_nice > crate::serve::background::BACKGROUND_NICE_MAX {
            return Err(invalid(
                "api.background_nice",
                "must be 0 (the API's priority) to 19 (the lowest)",
            ));
        }
        let mut ids = std::collections::HashSet::new();
        for (i, s) in self.sources.iter().enumerate() {
            if !ids.insert(s.id.as_str()) {
                return Err(ConfigError::Invalid {
                    key: "sources".into(),
                    message: format!("source id {:?} appears twice (sources[{i}])", s.id),
                });
            }
        }
        Ok(())
    }

    /// Validates the whole config and resolves every source: each source's
    /// spec is built and its secrets are read, here and only here.
    pub fn resolve(self, env: &dyn SecretSource) -> Result<Resolved, ConfigError> {
        self.validate()?;
        let sources = self
            .sources
            .iter()
            .enumerate()
            .map(|(i, s)| s.resolve(i, env))
            .collect::<Result<_, _>>()?;
        let nats = self.nats.connect_spec(env)?;
        let leavers = self.leavers.resolve(&self.sources)?;
        Ok(Resolved {
            config: self,
            sources,
            nats,
            leavers,
        })
    }

    pub fn stream_spec(&self) -> govledger_stream::StreamSpec {
        govledger_stream::StreamSpec {
            name: self.nats.stream.clone(),
            duplicate_window: Duration::from_millis(self.nats.duplicate_window_ms),
            replicas: self.stream.replicas,
            placement_tags: self.stream.placement_tags.clone(),
            ..Default::default()
        }
    }

    /// Replicas and placement of every stream govledger creates.
    pub fn replication(&self) -> govledger_stream::contract::Replication {
        govledger_stream::contract::Replication {
            replicas: self.stream.replicas,
            placement_tags: self.stream.placement_tags.clone(),
        }
    }

    /// The projector's durable consumer (this node's own in a cluster).
    pub fn projector_durable(&self) -> String {
        self.cluster.durable(&self.projector.durable)
    }

    pub fn publisher_config(&self) -> govledger_ingest::PublisherConfig {
        govledger_ingest::PublisherConfig {
            inflight_max: self.publisher.inflight_max,
            ack_timeout: Duration::from_millis(self.publisher.ack_timeout_ms),
            ..Default::default()
        }
    }

    pub fn runner_config(&self) -> govledger_projector::runner::RunnerConfig {
        govledger_projector::runner::RunnerConfig {
            stream: self.nats.stream.clone(),
            durable: self.projector_durable(),
            batch_events_max: self.projector.batch_events_max,
            idle_wait: Duration::from_millis(self.projector.idle_wait_ms),
            stop_at_seq: None,
            alerts: None,
            // sled's disk: the projector pauses while it is full.
            storage_paths: vec![self.data_dir().join("sled")],
            ..Default::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(toml: &str) -> String {
        match Config::from_toml(toml, "t.toml").and_then(|c| c.validate().map(|_| c)) {
            Ok(_) => panic!("accepted: {toml}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn empty_file_is_the_embedded_default() {
        let c = Config::from_toml("", "t.toml").unwrap();
        c.validate().unwrap();
        assert!(c.nats.url.is_none());
        assert_eq!(c.data_dir(), PathBuf::from(DEFAULT_DATA_DIR));
        assert_eq!(c.grpc_addr().unwrap().to_string(), DEFAULT_GRPC_ADDR);
    }

    /// A parse error names the line and column, never the line's text: it may
    /// hold a token pasted inline.
    #[test]
    fn a_parse_error_never_echoes_the_offending_line() {
        let toml = "[[sources]]\nid = \"hr\"\n[sources.auth]\nkind = \"bearer\"\ntoken = \"Inl1ne-S3cret-token\n";
        let e = Config::from_toml(toml, "g.toml").unwrap_err().to_string();
        assert!(!e.contains("Inl1ne-S3cret"), "{e}");
        assert!(e.starts_with("config file g.toml: line 5, column"), "{e}");
        let e = Config::from_toml("[grpc]\naddr = 5 x\n", "g.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 2"), "{e}");
    }

    #[test]
    fn errors_name_the_key() {
        let cases = [
            ("[grpc]\naddr = \"localhost\"", "grpc.addr"),
            ("[nats]\nurl = \"http://x\"", "nats.url"),
            ("[nats]\nstream = \"a.b\"", "nats.stream"),
            (
                "[audit]\nmanifest_key_validity_days = 0",
                "audit.manifest_key_validity_days",
            ),
            (
                "[[audit.witnesses]]\nurl = \"ftp://w\"\nkey = \"k\"",
                "audit.witnesses[0].url",
            ),
            (
                "[[audit.witnesses]]\nurl = \"https://w\"\nkey = \"k\"",
                "audit.witnesses[0].key",
            ),
            (
                "[nats]\nduplicate_window_ms = 5",
                "nats.duplicate_window_ms",
            ),
            (
                "[projector]\nbatch_events_max = 0",
                "projector.batch_events_max",
            ),
            ("[publisher]\ninflight_max = 0", "publisher.inflight_max"),
            ("[api]\nbackground_nice = 20", "api.background_nice"),
            (
                "[nats]\ncredentials_file = \"/nonexistent.creds\"",
                "nats.credentials_file",
            ),
        ];
        for (toml, key) in cases {
            let e = err(toml);
            assert!(e.contains(&format!("`{key}`")), "{toml}: {e}");
        }
    }

    #[test]
    fn unknown_and_mistyped_keys_are_named() {
        let e = err("[nats]\nurll = \"nats://x\"");
        assert!(e.contains("urll"), "{e}");
        let e = err("[projector]\nbatch_events_max = \"many\"");
        assert!(e.contains("batch_events_max"), "{e}");
    }

    /// Counts the secrets read.
    struct CountingEnv(std::cell::Cell<u32>);
    impl SecretSource for CountingEnv {
        fn env(&self, _name: &str) -> Option<String> {
            self.0.set(self.0.get() + 1);
            Some("t0ken".into())
        }
    }

    #[test]
    fn resolve_builds_every_source_and_reads_each_secret_once() {
        let text = "[[sources]]\nid = \"a\"\nbase_url = \"http://127.0.0.1:1/v2/\"\n\
                    [sources.auth]\nkind = \"bearer\"\ntoken_env = \"A_TOKEN\"\n\
                    [[sources]]\nid = \"b\"\nbase_url = \"http://127.0.0.1:2\"\nkind = \"rest\"\n\
                    schedule_interval_ms = 60000\n[sources.rest]\npath = \"users\"\n";
        let env = CountingEnv(std::cell::Cell::new(0));
        let r = Config::from_toml(text, "t.toml")
            .unwrap()
            .resolve(&env)
            .unwrap();
        assert_eq!(env.0.get(), 1);
        let ids: Vec<_> = r
            .sources
            .iter()
            .map(|s| s.spec.source_id.as_str())
            .collect();
        assert_eq!(ids, ["a", "b"]);
        assert_eq!(r.sources[0].spec.base_url, "http://127.0.0.1:1/v2");
        assert!(r.sources[0].writable() && !r.sources[1].writable());
        assert_eq!(
            r.sources[1].schedule_interval,
            Some(Duration::from_millis(60_000))
        );
        assert_eq!(r.config.sources.len(), 2);
    }
}
