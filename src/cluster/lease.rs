//! Leases in a JetStream KV bucket: one holder per key at a time, taken and
//! renewed with revision checks, lost when not renewed within the TTL.
//!
//! A lease value names its holder (`<node>/<instance>`: a restarted process
//! is a new holder, so it never mistakes its dead predecessor's lease for its
//! own) and the wall-clock time it holds until. Every write is conditional on
//! the revision read (`create` when the key is new, `update` with the revision
//! otherwise): of two processes racing for one key, JetStream stores exactly
//! one write, and the other learns it lost. Expiry compares wall clocks, so
//! the cluster's clocks must agree to well within the TTL (NTP does).
//!
//! [`decide`] is the pure rule; [`Leases`] does the I/O; [`Holding`] renews a
//! held lease in the background and says when it was lost.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use async_nats::jetstream::{self, kv};
use serde::{Deserialize, Serialize};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// The bucket's name for the ledger stream `stream`.
pub fn bucket_name(stream: &str) -> String {
    format!("govledger_leases_{stream}")
}

#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    #[error("cannot open the lease bucket {bucket}: {reason} (is JetStream reachable?)")]
    Open { bucket: String, reason: String },
    #[error("cannot read or write lease {key}: {reason} (NATS slow or down; retried)")]
    Io { key: String, reason: String },
    #[error("lease {key} was taken over by {by} (this process did not renew it in time)")]
    Lost { key: String, by: String },
}

/// What a lease key holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseValue {
    pub holder: String,
    /// Unix milliseconds; at or after it the lease is free. 0: released.
    pub until_ms: i64,
}

/// What to do about a key, given what it holds now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Nobody ever held it: create it.
    Create,
    /// Free (expired, released) or ours: write over `revision`.
    Replace { revision: u64 },
    /// Someone else holds it until `until_ms`.
    Held { holder: String, until_ms: i64 },
}

/// The rule, pure: `found` is the key's value and revision (`None`: never
/// written, or unreadable garbage is treated as free only through its revision).
pub fn decide(found: Option<(Option<&LeaseValue>, u64)>, me: &str, now_ms: i64) -> Step {
    match found {
        None => Step::Create,
        // A value that does not parse (or a deleted key) holds nothing.
        Some((None, revision)) => Step::Replace { revision },
        Some((Some(v), revision)) if v.holder == me || v.until_ms <= now_ms => {
            Step::Replace { revision }
        }
        Some((Some(v), _)) => Step::Held {
            holder: v.holder.clone(),
            until_ms: v.until_ms,
        },
    }
}

/// A lease this process holds.
#[derive(Debug, Clone)]
pub struct Lease {
    pub key: String,
    revision: u64,
    pub until_ms: i64,
}

/// What an attempt to take a lease found.
#[derive(Debug)]
pub enum Acquired {
    Held(Lease),
    Busy { holder: String, until_ms: i64 },
}

/// The lease bucket and who this process is in it.
pub struct Leases {
    kv: kv::Store,
    pub holder: String,
    pub ttl_ms: u64,
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

impl Leases {
    /// Opens (or creates) the bucket of `stream`, with `replication`.
    pub async fn open(
        js: &jetstream::Context,
        stream: &str,
        replication: &govledger_stream::contract::Replication,
        node: &str,
        ttl_ms: u64,
    ) -> Result<Self, LeaseError> {
        let bucket = bucket_name(stream);
        let kv = match js.get_key_value(&bucket).await {
            Ok(kv) => kv,
            Err(_) => js
                .create_key_value(kv::Config {
                    bucket: bucket.clone(),
                    description: "govledger: who runs which source's syncs and actions".into(),
                    history: 1,
                    storage: jetstream::stream::StorageType::File,
                    num_replicas: replication.replicas.max(1),
                    placement: (!replication.placement_tags.is_empty()).then(|| {
                        jetstream::stream::Placement {
                            tags: replication.placement_tags.clone(),
                            ..Default::default()
                        }
                    }),
                    ..Default::default()
                })
                .await
                .map_err(|e| LeaseError::Open {
                    bucket: bucket.clone(),
                    reason: e.to_string(),
                })?,
        };
        Ok(Self {
            kv,
            holder: format!(
                "{node}/{}-{:08x}",
                std::process::id(),
                rand::random::<u32>()
            ),
            ttl_ms,
        })
    }

    fn io(key: &str, e: impl std::fmt::Display) -> LeaseError {
        LeaseError::Io {
            key: key.to_owned(),
            reason: e.to_string(),
        }
    }

    fn value(&self, until_ms: i64) -> bytes::Bytes {
        let v = LeaseValue {
            holder: self.holder.clone(),
            until_ms,
        };
        // Serialising two plain fields cannot fail.
        serde_json::to_vec(&v).unwrap_or_default().into()
    }

    /// What `key` holds now: (value, revision), `None` if never written.
    pub async fn read(&self, key: &str) -> Result<Option<(Option<LeaseValue>, u64)>, LeaseError> {
        let entry = self.kv.entry(key).await.map_err(|e| Self::io(key, e))?;
        Ok(entry.map(|e| {
            let v = match e.operation {
                kv::Operation::Put => serde_json::from_slice::<LeaseValue>(&e.value).ok(),
                _ => None,
            };
            (v, e.revision)
        }))
    }

    /// Takes `key` if it is free (or already ours).
    pub async fn try_acquire(&self, key: &str) -> Result<Acquired, LeaseError> {
        let found = self.read(key).await?;
        let now = now_ms();
        let until_ms = now + self.ttl_ms as i64;
        let step = decide(
            found.as_ref().map(|(v, r)| (v.as_ref(), *r)),
            &self.holder,
            now,
        );
        let written = match step {
            Step::Held { holder, until_ms } => return Ok(Acquired::Busy { holder, until_ms }),
            Step::Create => self.kv.create(key, self.value(until_ms)).await.ok(),
            Step::Replace { revision } => self
                .kv
                .update(key, self.value(until_ms), revision)
                .await
                .ok(),
        };
        match written {
            Some(revision) => Ok(Acquired::Held(Lease {
                key: key.to_owned(),
                revision,
                until_ms,
            })),
            // Another process wrote first: it holds the lease (or the write
            // failed; reading again tells which next time).
            None => Ok(match self.read(key).await? {
                Some((Some(v), _)) if v.holder != self.holder => Acquired::Busy {
                    holder: v.holder,
                    until_ms: v.until_ms,
                },
                _ => Acquired::Busy {
                    holder: "unknown (a write raced this one)".into(),
                    until_ms: now,
                },
            }),
        }
    }

    /// Extends `lease` by the TTL. `Lost` when another holder wrote over it.
    pub async fn renew(&self, lease: &mut Lease) -> Result<(), LeaseError> {
        let until_ms = now_ms() + self.ttl_ms as i64;
        match self
            .kv
            .update(&lease.key, self.value(until_ms), lease.revision)
            .await
        {
            Ok(revision) => {
                lease.revision = revision;
                lease.until_ms = until_ms;
                Ok(())
            }
            Err(e) => match self.read(&lease.key).await? {
                Some((Some(v), _)) if v.holder != self.holder => Err(LeaseError::Lost {
                    key: lease.key.clone(),
                    by: v.holder,
                }),
                Some((_, r)) if r != lease.revision => Err(LeaseError::Lost {
                    key: lease.key.clone(),
                    by: "another write".into(),
                }),
                _ => Err(Self::io(&lease.key, e)),
            },
        }
    }

    /// Gives `lease` up (best effort: unreleased, it expires).
    pub async fn release(&self, lease: &Lease) {
        if let Err(e) = self
            .kv
            .update(&lease.key, self.value(0), lease.revision)
            .await
        {
            tracing::debug!(key = %lease.key, error = %e, "lease not released; it expires");
        }
    }
}

/// A held lease, renewed every third of the TTL until released. `lost` is
/// cancelled when it is lost (taken over, or not renewed before it ran out):
/// the work under it must stop.
pub struct Holding {
    /// Set once the lease is lost (a shutdown that cancels the work under
    /// it is not a loss: the lease is then released for the next holder).
    lost: Arc<AtomicBool>,
    stop: CancellationToken,
    task: JoinHandle<Lease>,
    leases: Arc<Leases>,
}

impl Holding {
    /// Renews `lease` until released; cancels `lost` if it is lost.
    pub fn start(leases: Arc<Leases>, lease: Lease, lost: CancellationToken) -> Self {
        let stop = CancellationToken::new();
        let flag = Arc::new(AtomicBool::new(false));
        let every = Duration::from_millis((leases.ttl_ms / 3).max(100));
        let task = tokio::spawn(renew_loop(
            leases.clone(),
            lease,
            every,
            (lost, flag.clone()),
            stop.clone(),
        ));
        Self {
            lost: flag,
            stop,
            task,
            leases,
        }
    }

    /// Stops renewing and releases the lease (unless it was lost).
    pub async fn release(self) {
        self.stop.cancel();
        if let Ok(lease) = self.task.await
            && !self.lost.load(Ordering::SeqCst)
        {
            self.leases.release(&lease).await;
        }
    }
}

async fn renew_loop(
    leases: Arc<Leases>,
    mut lease: Lease,
    every: Duration,
    (lost, flag): (CancellationToken, Arc<AtomicBool>),
    stop: CancellationToken,
) -> Lease {
    let lose = || {
        flag.store(true, Ordering::SeqCst);
        lost.cancel();
    };
    loop {
        tokio::select! {
            _ = stop.cancelled() => return lease,
            _ = tokio::time::sleep(every) => {}
        }
        match leases.renew(&mut lease).await {
            Ok(()) => {}
            Err(e @ LeaseError::Lost { .. }) => {
                tracing::warn!(error = %e, "lease lost; stopping the work under it");
                lose();
                return lease;
            }
            Err(e) => {
                // Not renewed this time (NATS failing over): held until it
                // runs out; past that, another process may take it.
                if now_ms() + every.as_millis() as i64 >= lease.until_ms {
                    tracing::warn!(error = %e, key = %lease.key,
                        "lease not renewed before it ran out; stopping the work under it");
                    lose();
                    return lease;
                }
                tracing::debug!(error = %e, "lease renewal failed; trying again");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(holder: &str, until_ms: i64) -> LeaseValue {
        LeaseValue {
            holder: holder.into(),
            until_ms,
        }
    }

    #[test]
    fn a_new_key_is_created_a_free_one_replaced_a_held_one_left() {
        assert_eq!(decide(None, "a/1", 100), Step::Create);
        let mine = v("a/1", 500);
        assert_eq!(
            decide(Some((Some(&mine), 7)), "a/1", 100),
            Step::Replace { revision: 7 }
        );
        let theirs = v("b/2", 500);
        assert_eq!(
            decide(Some((Some(&theirs), 7)), "a/1", 100),
            Step::Held {
                holder: "b/2".into(),
                until_ms: 500
            }
        );
        // Expired (at its instant, too) or released: free.
        assert_eq!(
            decide(Some((Some(&theirs), 7)), "a/1", 500),
            Step::Replace { revision: 7 }
        );
        let released = v("b/2", 0);
        assert_eq!(
            decide(Some((Some(&released), 9)), "a/1", 100),
            Step::Replace { revision: 9 }
        );
        assert_eq!(
            decide(Some((None, 3)), "a/1", 100),
            Step::Replace { revision: 3 }
        );
    }

    #[test]
    fn a_restarted_process_is_a_new_holder() {
        // Same node name, other instance: it waits for the old lease to run out.
        let old = v("ingest-1/100-0000abcd", 500);
        assert!(matches!(
            decide(Some((Some(&old), 1)), "ingest-1/200-00001234", 100),
            Step::Held { .. }
        ));
    }
}
