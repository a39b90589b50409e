//! The JetStream stream contract, which ingest and projector both rely on.
//!
//! The stream is the ledger's source of truth, so its settings are part of the
//! contract: file storage, no max age, discard **new** (never old) at limits,
//! delete and purge denied, no rollup, no per-message TTL, an explicit duplicate
//! window, at least the configured replicas (on the configured placement
//! tags). [`ensure_stream`] creates the stream with exactly these settings or
//! checks an existing one, and refuses (never silently changes) a weaker stream.

use std::time::Duration;

use async_nats::jetstream::{
    self,
    stream::{Config, DiscardPolicy, RetentionPolicy, StorageType},
};

use crate::subject::stream_subjects;

/// Default stream name.
pub const DEFAULT_STREAM_NAME: &str = "GOVLEDGER";
/// Default duplicate window: a publish retried within it is stored once.
pub const DEFAULT_DUPLICATE_WINDOW_MS: u64 = 120_000;

/// How many copies of a stream JetStream keeps, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replication {
    /// 1, 3 or 5.
    pub replicas: usize,
    /// Placement tags (empty: any server).
    pub placement_tags: Vec<String>,
}

impl Default for Replication {
    fn default() -> Self {
        Self {
            replicas: 1,
            placement_tags: Vec::new(),
        }
    }
}

impl StreamSpec {
    /// This spec placed as `r` says.
    pub fn replicated(self, r: &Replication) -> Self {
        Self {
            replicas: r.replicas,
            placement_tags: r.placement_tags.clone(),
            ..self
        }
    }
}

/// What govledger requires of its stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamSpec {
    pub name: String,
    pub duplicate_window: Duration,
    /// Byte limit of the stream (`-1` = unlimited). At the limit, new events are refused.
    pub max_bytes: i64,
    /// Message limit of the stream (`-1` = unlimited).
    pub max_messages: i64,
    /// Subjects the stream captures.
    pub subjects: Vec<String>,
    /// At most one message per subject, a second refused (the alerts
    /// stream: one subject per alert id, so a decision is stored once
    /// however often it is published, inside the duplicate window or not).
    pub one_per_subject: bool,
    /// Copies JetStream keeps (1, 3 or 5); an existing stream with fewer is refused.
    pub replicas: usize,
    /// Placement tags its replicas must be on (empty: anywhere).
    pub placement_tags: Vec<String>,
}

impl Default for StreamSpec {
    fn default() -> Self {
        Self {
            name: DEFAULT_STREAM_NAME.to_owned(),
            duplicate_window: Duration::from_millis(DEFAULT_DUPLICATE_WINDOW_MS),
            max_bytes: -1,
            max_messages: -1,
            subjects: stream_subjects(),
            one_per_subject: false,
            replicas: 1,
            placement_tags: Vec::new(),
        }
    }
}

impl StreamSpec {
    /// The config govledger creates its stream with.
    pub fn config(&self) -> Config {
        Config {
            name: self.name.clone(),
            description: Some("govledger: immutable identity governance events".to_owned()),
            subjects: self.subjects.clone(),
            storage: StorageType::File,
            retention: RetentionPolicy::Limits,
            discard: DiscardPolicy::New,
            max_age: Duration::ZERO,
            max_bytes: self.max_bytes,
            max_messages: self.max_messages,
            max_messages_per_subject: if self.one_per_subject { 1 } else { -1 },
            discard_new_per_subject: self.one_per_subject,
            duplicate_window: self.duplicate_window,
            deny_delete: true,
            deny_purge: true,
            allow_rollup: false,
            allow_message_ttl: false,
            num_replicas: self.replicas.max(1),
            placement: (!self.placement_tags.is_empty()).then(|| jetstream::stream::Placement {
                tags: self.placement_tags.clone(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }
}

/// One way an existing stream is weaker than the contract.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// The stream setting, as `nats stream info` names it.
    pub setting: &'static str,
    pub found: String,
    pub required: String,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} is {} but govledger requires {}",
            self.setting, self.found, self.required
        )
    }
}

/// Every way `found` is weaker than `spec` requires. Pure; empty means acceptable.
pub fn check(spec: &StreamSpec, found: &Config) -> Vec<Violation> {
    let mut v = Vec::new();
    let mut push = |setting, found: String, required: &str| {
        v.push(Violation {
            setting,
            found,
            required: required.to_owned(),
        })
    };
    if !found.deny_delete {
        push(
            "deny_delete",
            "false".into(),
            "true (events are never deleted)",
        );
    }
    if !found.deny_purge {
        push(
            "deny_purge",
            "false".into(),
            "true (the stream is never purged)",
        );
    }
    if spec.one_per_subject
        && (found.max_messages_per_subject != 1 || !found.discard_new_per_subject)
    {
        push(
            "max_msgs_per_subject",
            format!(
                "{} (discard_new_per_subject {})",
                found.max_messages_per_subject, found.discard_new_per_subject
            ),
            "1 with discard_new_per_subject (each alert is stored once)",
        );
    }
    if found.discard != DiscardPolicy::New {
        push(
            "discard",
            format!("{:?}", found.discard),
            "New (at a limit, refuse new events; never drop old ones)",
        );
    }
    if !found.max_age.is_zero() {
        push("max_age", format!("{:?}", found.max_age), "0 (no expiry)");
    }
    if found.storage != StorageType::File {
        push("storage", format!("{:?}", found.storage), "File");
    }
    if found.retention != RetentionPolicy::Limits {
        push("retention", format!("{:?}", found.retention), "Limits");
    }
    if found.allow_rollup {
        push("allow_rollup", "true".into(), "false");
    }
    if found.allow_message_ttl {
        push("allow_msg_ttl", "true".into(), "false");
    }
    if !spec.one_per_subject && found.max_messages_per_subject != -1 {
        push(
            "max_msgs_per_subject",
            found.max_messages_per_subject.to_string(),
            "-1 (unlimited)",
        );
    }
    if found.duplicate_window < spec.duplicate_window {
        push(
            "duplicate_window",
            format!("{} ms", found.duplicate_window.as_millis()),
            &format!(">= {} ms", spec.duplicate_window.as_millis()),
        );
    }
    for s in &spec.subjects {
        if !found.subjects.contains(s) {
            push(
                "subjects",
                format!("{:?}", found.subjects),
                &format!("to include {s:?}"),
            );
        }
    }
    if found.sealed {
        push("sealed", "true".into(), "false");
    }
    if found.num_replicas < spec.replicas {
        push(
            "replicas",
            found.num_replicas.to_string(),
            &format!(
                ">= {} (stream.replicas: copies that survive the loss of a server)",
                spec.replicas
            ),
        );
    }
    let tags = found
        .placement
        .as_ref()
        .map(|p| p.tags.clone())
        .unwrap_or_default();
    if let Some(t) = spec.placement_tags.iter().find(|t| !tags.contains(t)) {
        push(
            "placement.tags",
            format!("{tags:?}"),
            &format!("to include {t:?} (stream.placement_tags)"),
        );
    }
    v
}

#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error(
        "JetStream stream {name} exists with settings weaker than govledger requires: {}. \
         govledger never changes an existing stream; fix it by hand (e.g. `nats stream edit {name}`) \
         or point govledger at another stream name (config key nats.stream)",
        .violations.iter().map(|v| v.to_string()).collect::<Vec<_>>().join("; ")
    )]
    Weaker {
        name: String,
        violations: Vec<Violation>,
    },
    #[error("could not read JetStream stream {name}: {source}")]
    Get {
        name: String,
        #[source]
        source: jetstream::context::GetStreamError,
    },
    #[error(
        "could not create JetStream stream {name}: {source} (is JetStream enabled on the server? `nats-server -js`)"
    )]
    Create {
        name: String,
        #[source]
        source: jetstream::context::CreateStreamError,
    },
}

/// Creates the stream, or checks the existing one against the contract.
pub async fn ensure_stream(
    js: &jetstream::Context,
    spec: &StreamSpec,
) -> Result<jetstream::stream::Info, StreamError> {
    use jetstream::context::GetStreamErrorKind;
    match js.get_stream(&spec.name).await {
        Ok(mut stream) => {
            let info = stream.info().await.map_err(|e| StreamError::Get {
                name: spec.name.clone(),
                source: jetstream::context::GetStreamError::with_source(
                    GetStreamErrorKind::Request,
                    e,
                ),
            })?;
            let violations = check(spec, &info.config);
            if violations.is_empty() {
                Ok(info.clone())
            } else {
                Err(StreamError::Weaker {
                    name: spec.name.clone(),
                    violations,
                })
            }
        }
        Err(e) if is_not_found(&e) => {
            let stream =
                js.create_stream(spec.config())
                    .await
                    .map_err(|source| StreamError::Create {
                        name: spec.name.clone(),
                        source,
                    })?;
            Ok(stream.cached_info().clone())
        }
        Err(source) => Err(StreamError::Get {
            name: spec.name.clone(),
            source,
        }),
    }
}

fn is_not_found(e: &jetstream::context::GetStreamError) -> bool {
    use jetstream::context::GetStreamErrorKind;
    match e.kind() {
        GetStreamErrorKind::JetStream(js) => {
            js.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(v: &[Violation]) -> Vec<&'static str> {
        v.iter().map(|v| v.setting).collect()
    }

    #[test]
    fn own_config_passes() {
        let spec = StreamSpec::default();
        assert!(check(&spec, &spec.config()).is_empty());
    }

    #[test]
    fn a_one_per_subject_stream_must_keep_one_and_refuse_the_second() {
        let spec = StreamSpec {
            one_per_subject: true,
            ..Default::default()
        };
        assert!(check(&spec, &spec.config()).is_empty());
        let mut c = spec.config();
        c.discard_new_per_subject = false;
        assert_eq!(settings(&check(&spec, &c)), ["max_msgs_per_subject"]);
        let mut c = spec.config();
        c.max_messages_per_subject = -1;
        assert_eq!(settings(&check(&spec, &c)), ["max_msgs_per_subject"]);
    }

    #[test]
    fn each_weakening_is_named() {
        let spec = StreamSpec::default();
        type Weaken = Box<dyn Fn(&mut Config)>;
        let cases: Vec<(&str, Weaken)> = vec![
            ("deny_delete", Box::new(|c| c.deny_delete = false)),
            ("deny_purge", Box::new(|c| c.deny_purge = false)),
            ("discard", Box::new(|c| c.discard = DiscardPolicy::Old)),
            ("max_age", Box::new(|c| c.max_age = Duration::from_secs(60))),
            ("storage", Box::new(|c| c.storage = StorageType::Memory)),
            (
                "retention",
                Box::new(|c| c.retention = RetentionPolicy::WorkQueue),
            ),
            ("allow_rollup", Box::new(|c| c.allow_rollup = true)),
            ("allow_msg_ttl", Box::new(|c| c.allow_message_ttl = true)),
            (
                "max_msgs_per_subject",
                Box::new(|c| c.max_messages_per_subject = 10),
            ),
            (
                "duplicate_window",
                Box::new(|c| c.duplicate_window = Duration::from_secs(1)),
            ),
            (
                "subjects",
                Box::new(|c| c.subjects = vec!["other.>".into()]),
            ),
            ("sealed", Box::new(|c| c.sealed = true)),
        ];
        for (name, weaken) in cases {
            let mut c = spec.config();
            weaken(&mut c);
            let v = check(&spec, &c);
            assert!(settings(&v).contains(&name), "{name}: {v:?}");
        }
    }

    #[test]
    fn fewer_replicas_or_other_placement_is_refused_more_is_fine() {
        let spec = StreamSpec {
            replicas: 3,
            placement_tags: vec!["az:a".into()],
            ..Default::default()
        };
        let own = spec.config();
        assert_eq!(own.num_replicas, 3);
        assert!(check(&spec, &own).is_empty());
        let mut one = spec.config();
        one.num_replicas = 1;
        let v = check(&spec, &one);
        assert_eq!(settings(&v), ["replicas"]);
        assert!(v[0].to_string().contains("replicas is 1"), "{}", v[0]);
        let mut five = spec.config();
        five.num_replicas = 5;
        assert!(check(&spec, &five).is_empty());
        let mut untagged = spec.config();
        untagged.placement = None;
        assert_eq!(settings(&check(&spec, &untagged)), ["placement.tags"]);
    }

    #[test]
    fn longer_duplicate_window_is_fine() {
        let spec = StreamSpec::default();
        let mut c = spec.config();
        c.duplicate_window = spec.duplicate_window * 2;
        assert!(check(&spec, &c).is_empty());
    }

    #[test]
    fn error_message_names_setting_and_fix() {
        let e = StreamError::Weaker {
            name: "GOVLEDGER".into(),
            violations: vec![Violation {
                setting: "deny_delete",
                found: "false".into(),
                required: "true".into(),
            }],
        };
        let s = e.to_string();
        assert!(
            s.contains("deny_delete is false") && s.contains("nats.stream"),
            "{s}"
        );
    }
}
