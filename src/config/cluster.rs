//! `[cluster]` and `[stream]`: running govledger as several processes on a
//! NATS JetStream cluster.
//!
//! `[stream] replicas` (1, 3 or 5) and `placement_tags` are what the ledger's
//! stream (and the alerts, OCSF and lease stores) are created with, and what an
//! existing stream is checked against: a stream with fewer replicas than
//! configured is refused, never silently accepted. More than one replica needs
//! an external cluster (`nats.urls`): the embedded server is one node.
//!
//! `[cluster] node` names this process in a cluster. With it, syncs and
//! actions run under leases in a JetStream KV bucket (so any number of
//! `govledger ingest` / `serve` copies share the sources, each run and each
//! source's actions held by one process at a time), a trigger travels to
//! whichever ingest process takes it, and the projector's durable consumer is
//! this node's own (`govledger-projector-<node>`, unless `projector.durable` is
//! set).

use serde::Deserialize;

use super::error::{ConfigError, invalid};

/// Default lease time to live: a dead holder's work is taken over this long
/// after its last renewal. Longer than a NATS node's failover (a few seconds),
/// so a holder that lost its server for a moment keeps its lease.
pub const DEFAULT_LEASE_TTL_MS: u64 = 15_000;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StreamConfig {
    /// Copies of every stream govledger creates (1, 3 or 5), kept by
    /// JetStream's RAFT across the cluster's servers.
    pub replicas: usize,
    /// JetStream placement tags: the servers the streams' replicas go to
    /// (e.g. `["az:a"]`, as the servers' `server_tags` name them).
    pub placement_tags: Vec<String>,
}

impl Default for StreamConfig {
    fn default() -> Self {
        Self {
            replicas: 1,
            placement_tags: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterConfig {
    /// This process's name in the cluster (unique per process: it names
    /// its leases and its projector's durable consumer). Unset: one process
    /// owns the ledger (`serve` alone).
    pub node: Option<String>,
    /// How long a lease holds without renewal, in milliseconds.
    pub lease_ttl_ms: u64,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        Self {
            node: None,
            lease_ttl_ms: DEFAULT_LEASE_TTL_MS,
        }
    }
}

/// A name NATS accepts inside a subject token and a consumer name.
fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

impl StreamConfig {
    pub fn validate(&self, external_nats: bool) -> Result<(), ConfigError> {
        if ![1, 3, 5].contains(&self.replicas) {
            return Err(invalid(
                "stream.replicas",
                format!(
                    "{} is not 1, 3 or 5 (an odd count, so a RAFT majority survives the loss of a server)",
                    self.replicas
                ),
            ));
        }
        if self.replicas > 1 && !external_nats {
            return Err(invalid(
                "stream.replicas",
                format!(
                    "{} replicas need a NATS cluster of at least {} servers: set nats.urls to the \
                     cluster's servers (the embedded nats-server is a single node)",
                    self.replicas, self.replicas
                ),
            ));
        }
        if let Some(t) = self
            .placement_tags
            .iter()
            .find(|t| t.trim().is_empty() || t.len() > 128)
        {
            return Err(invalid(
                "stream.placement_tags",
                format!("{t:?} is not a tag (1 to 128 characters)"),
            ));
        }
        if !self.placement_tags.is_empty() && !external_nats {
            return Err(invalid(
                "stream.placement_tags",
                "placement needs an external NATS cluster whose servers carry server_tags: set nats.urls",
            ));
        }
        Ok(())
    }
}

impl ClusterConfig {
    pub fn validate(&self, external_nats: bool) -> Result<(), ConfigError> {
        if let Some(n) = &self.node {
            if !is_name(n) {
                return Err(invalid(
                    "cluster.node",
                    format!("{n:?}: use 1 to 64 letters, digits, '-' or '_'"),
                ));
            }
            if !external_nats {
                return Err(invalid(
                    "cluster.node",
                    "a cluster's processes share one NATS: set nats.url or nats.urls (the embedded \
                     nats-server belongs to one process)",
                ));
            }
        }
        if !(1_000..=600_000).contains(&self.lease_ttl_ms) {
            return Err(invalid(
                "cluster.lease_ttl_ms",
                "must be within 1000..=600000 (and longer than a NATS server's failover)",
            ));
        }
        Ok(())
    }

    /// The projector's durable consumer: `projector.durable` when it was set,
    /// else this node's own in a cluster, else the default.
    pub fn durable(&self, configured: &str) -> String {
        match &self.node {
            Some(n) if configured == govledger_projector::runner::DEFAULT_DURABLE => {
                format!("{configured}-{n}")
            }
            _ => configured.to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replicas_are_odd_and_need_a_cluster() {
        let s = |replicas| StreamConfig {
            replicas,
            placement_tags: vec![],
        };
        assert!(s(1).validate(false).is_ok());
        assert!(s(3).validate(true).is_ok());
        assert!(s(5).validate(true).is_ok());
        for bad in [0, 2, 4, 7] {
            let e = s(bad).validate(true).unwrap_err().to_string();
            assert!(
                e.contains("stream.replicas") && e.contains("1, 3 or 5"),
                "{e}"
            );
        }
        let e = s(3).validate(false).unwrap_err().to_string();
        assert!(
            e.contains("stream.replicas") && e.contains("nats.urls"),
            "{e}"
        );
        let tagged = StreamConfig {
            replicas: 1,
            placement_tags: vec!["az:a".into()],
        };
        assert!(tagged.validate(true).is_ok());
        assert!(
            tagged
                .validate(false)
                .unwrap_err()
                .to_string()
                .contains("stream.placement_tags")
        );
        let empty = StreamConfig {
            replicas: 1,
            placement_tags: vec![" ".into()],
        };
        assert!(
            empty
                .validate(true)
                .unwrap_err()
                .to_string()
                .contains("stream.placement_tags")
        );
    }

    #[test]
    fn a_node_is_a_name_on_a_shared_nats() {
        let c = |node: &str| ClusterConfig {
            node: Some(node.into()),
            ..Default::default()
        };
        assert!(c("ingest-1").validate(true).is_ok());
        for bad in ["", "a.b", "a b", "x>"] {
            let e = c(bad).validate(true).unwrap_err().to_string();
            assert!(e.contains("cluster.node"), "{e}");
        }
        let e = c("a").validate(false).unwrap_err().to_string();
        assert!(e.contains("cluster.node") && e.contains("nats.url"), "{e}");
        let ttl = ClusterConfig {
            lease_ttl_ms: 10,
            ..Default::default()
        };
        assert!(
            ttl.validate(true)
                .unwrap_err()
                .to_string()
                .contains("cluster.lease_ttl_ms")
        );
    }

    #[test]
    fn each_node_folds_with_its_own_durable_unless_one_is_set() {
        let d = govledger_projector::runner::DEFAULT_DURABLE;
        let alone = ClusterConfig::default();
        assert_eq!(alone.durable(d), d);
        let node = ClusterConfig {
            node: Some("api-2".into()),
            ..Default::default()
        };
        assert_eq!(node.durable(d), format!("{d}-api-2"));
        assert_eq!(node.durable("mine"), "mine");
    }
}
