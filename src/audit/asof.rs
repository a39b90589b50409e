//! Point-in-time answers: an identity, an action or a source as it stood at a
//! past stream sequence or time.
//!
//! The answer is never read from a snapshot: the events up to the point are read
//! again from JetStream and folded by the same pure fold the projector runs, so
//! it is what a fold of the prefix gives. What differs is which events are read:
//! - an identity: the sequences in its own history index (its observations, the
//!   actions requested on it, the confirmations that watch it) plus the events of
//!   those actions — the cost follows that identity's history, not the log;
//! - an action: its own history index;
//! - a source: the events on the source's subjects up to the point, folded into
//!   a scratch sled folder — from a copy of the nearest earlier snapshot when
//!   one holds ([`crate::audit::source_snapshots`]: the folder of an earlier
//!   answer, its digest and the log's root at its sequence checked), so the
//!   cost is the source's events since then; the folder is then kept as the
//!   next snapshot.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use async_nats::jetstream::{self, consumer::DeliverPolicy};
use futures::StreamExt as _;
use govledger_projector::{
    OwnedMsg, Store, fold,
    fold::hex,
    fold_in_memory,
    keys::{IdentityKey, entity_label},
};
use govledger_proto::v1::{ActionState, AsOfPoint, IdentityState, RunState, SourceState};

/// A source as it stood at a point, and its last run then.
type SourcedAnswer = (SourceState, Option<RunState>);

/// Events one point-in-time identity or action answer may fold, at most.
pub const HISTORY_EVENTS_MAX: usize = 100_000;
/// Messages folded per scratch commit of a source answer.
const SCRATCH_BATCH_EVENTS: usize = 1_000;
/// Sled cache of a scratch fold.
const SCRATCH_CACHE_BYTES: u64 = 16 * 1024 * 1024;
/// Longest wait for the next message of a source's slice.
const READ_IDLE_MS: u64 = 5_000;

/// Reads the stream and the projector's indexes for point-in-time answers.
pub struct AsOfReader {
    pub store: Arc<Store>,
    pub js: jetstream::Context,
    pub stream: String,
    /// Where scratch folds of a source live while they run.
    pub scratch_dir: PathBuf,
    /// One source fold at a time (each may read a source's whole history).
    pub source_folds: tokio::sync::Semaphore,
    /// The kept source answers later ones fold on from.
    pub snapshots: crate::audit::source_snapshots::Snapshots,
}

/// A validated point of an `AsOf`: a stream sequence (≥ 1) or a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PointAt {
    /// A stream sequence.
    Seq(std::num::NonZeroU64),
    /// The last event stored at or before this time (Unix microseconds).
    TimeUs(i64),
}

/// Why a point-in-time answer could not be given.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AsOfError {
    /// The stream cannot be read (NATS unreachable, a read stalled).
    #[error("cannot read stream {stream}: {reason}; is NATS reachable?")]
    Unavailable { stream: String, reason: String },
    /// The projection store failed.
    #[error("ledger store: {0}")]
    Store(String),
    /// `as_of.seq` is past the stream's last sequence.
    #[error("as_of.seq {seq} is past the end of the stream (last sequence {last})")]
    PastEnd { seq: u64, last: u64 },
    /// No event was stored at or before the asked time.
    #[error(
        "no event was stored at or before {}: the ledger's first event was stored {}",
        rfc3339(*at_us),
        first_stored(*first_us)
    )]
    NothingBefore {
        at_us: i64,
        /// When the first event was stored; `None`: the stream is empty.
        first_us: Option<i64>,
    },
    /// The projector has not applied the point yet.
    #[error("the projector has applied up to sequence {applied}, not yet {seq}; retry in a moment")]
    NotProjectedYet { applied: u64, seq: u64 },
    /// `as_of.time_us` is not a representable time.
    #[error("as_of.time_us is out of range")]
    TimeOutOfRange,
    /// `from_us` is not a representable time.
    #[error("from_us is out of range")]
    FromOutOfRange,
    /// A message the ledger's index names cannot be read from the stream.
    #[error("stream message {seq}, which the ledger's index names, cannot be read: {reason}")]
    IndexedMessageLost { seq: u64, reason: String },
    /// The history is over [`HISTORY_EVENTS_MAX`] events.
    #[error("this history has more than {HISTORY_EVENTS_MAX} events; read it with Replay instead")]
    HistoryTooLong,
    /// The identity, action or source did not exist at the point (the message
    /// says which, and when it first appears).
    #[error("{0}")]
    NotFound(String),
    /// An action's history folds to no action record.
    #[error("the history of action {action_id:?} folds to no action record")]
    ActionFoldEmpty { action_id: String },
    /// The process is shutting down.
    #[error("shutting down")]
    ShuttingDown,
}

fn unavailable(stream: &str, e: impl std::fmt::Display) -> AsOfError {
    AsOfError::Unavailable {
        stream: stream.to_owned(),
        reason: e.to_string(),
    }
}

fn internal(e: impl std::fmt::Display) -> AsOfError {
    AsOfError::Store(e.to_string())
}

fn first_stored(first_us: Option<i64>) -> String {
    match first_us {
        Some(us) => rfc3339(us),
        None => "never (the stream is empty)".to_owned(),
    }
}

fn rfc3339(us: i64) -> String {
    chrono::DateTime::from_timestamp_micros(us)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true))
        .unwrap_or_else(|| format!("{us} µs"))
}

fn ts_us(t: &time::OffsetDateTime) -> i64 {
    (t.unix_timestamp_nanos() / 1_000) as i64
}

/// The point's description for messages.
pub fn describe(p: &AsOfPoint) -> String {
    format!("sequence {} (stored {})", p.seq, rfc3339(p.stored_at_us))
}

impl AsOfReader {
    /// The stream sequence (and its stored time) a point names. A time names
    /// the last event stored at or before it. The point must be projected.
    pub async fn resolve(&self, point: PointAt) -> Result<AsOfPoint, AsOfError> {
        let mut stream = self
            .js
            .get_stream(&self.stream)
            .await
            .map_err(|e| unavailable(&self.stream, e))?;
        let state = stream
            .info()
            .await
            .map_err(|e| unavailable(&self.stream, e))?
            .state
            .clone();
        let seq = match point {
            PointAt::Seq(n) => {
                let n = n.get();
                if n > state.last_sequence {
                    return Err(AsOfError::PastEnd {
                        seq: n,
                        last: state.last_sequence,
                    });
                }
                n
            }
            PointAt::TimeUs(t) => {
                if state.messages == 0 || t < ts_us(&state.first_timestamp) {
                    return Err(AsOfError::NothingBefore {
                        at_us: t,
                        first_us: (state.messages != 0).then(|| ts_us(&state.first_timestamp)),
                    });
                }
                if t >= ts_us(&state.last_timestamp) {
                    state.last_sequence
                } else {
                    self.first_after(&stream, t).await?.saturating_sub(1)
                }
            }
        };
        let applied = self.store.meta().map_err(internal)?.last_applied_seq;
        if seq > applied {
            return Err(AsOfError::NotProjectedYet { applied, seq });
        }
        let msg = stream
            .get_raw_message(seq)
            .await
            .map_err(|e| unavailable(&self.stream, e))?;
        Ok(AsOfPoint {
            seq,
            stored_at_us: ts_us(&msg.time),
        })
    }

    /// The sequence of the first message stored after `t_us`.
    async fn first_after(
        &self,
        stream: &jetstream::stream::Stream,
        t_us: i64,
    ) -> Result<u64, AsOfError> {
        let start = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(t_us + 1) * 1_000)
            .map_err(|_| AsOfError::TimeOutOfRange)?;
        let mut msgs = crate::audit::replay::ordered_messages(
            stream,
            DeliverPolicy::ByStartTime { start_time: start },
            Vec::new(),
        )
        .await
        .map_err(|e| unavailable(&self.stream, e))?;
        let m = tokio::time::timeout(Duration::from_millis(READ_IDLE_MS), msgs.next())
            .await
            .map_err(|_| unavailable(&self.stream, "stream read stalled"))?
            .ok_or_else(|| unavailable(&self.stream, "stream ended"))?
            .map_err(|e| unavailable(&self.stream, e))?;
        Ok(m.info()
            .map_err(|e| unavailable(&self.stream, e))?
            .stream_sequence)
    }

    async fn stream(&self) -> Result<jetstream::stream::Stream, AsOfError> {
        self.js
            .get_stream(&self.stream)
            .await
            .map_err(|e| unavailable(&self.stream, e))
    }

    /// The stored messages at `seqs`, read one by one.
    async fn fetch(
        &self,
        stream: &jetstream::stream::Stream,
        seqs: impl IntoIterator<Item = u64>,
    ) -> Result<Vec<OwnedMsg>, AsOfError> {
        let mut out = Vec::new();
        for seq in seqs {
            let m =
                stream
                    .get_raw_message(seq)
                    .await
                    .map_err(|e| AsOfError::IndexedMessageLost {
                        seq,
                        reason: e.to_string(),
                    })?;
            out.push(OwnedMsg {
                seq,
                subject: m.subject.to_string(),
                stored_at_us: ts_us(&m.time),
                payload: m.payload,
                leaf: None,
            });
        }
        Ok(out)
    }

    /// Messages of the identity's history up to the point, with the events of
    /// every action named in it (an action's conclusion needs its read-backs).
    async fn identity_msgs(
        &self,
        key: &IdentityKey,
        upto: u64,
    ) -> Result<Vec<OwnedMsg>, AsOfError> {
        let stream = self.stream().await?;
        let seqs = self
            .store
            .identity_history(&key.0, key.1, &key.2, upto, HISTORY_EVENTS_MAX + 1)
            .map_err(internal)?;
        if seqs.len() > HISTORY_EVENTS_MAX {
            return Err(too_long());
        }
        let mut msgs: BTreeMap<u64, OwnedMsg> = self
            .fetch(&stream, seqs)
            .await?
            .into_iter()
            .map(|m| (m.seq, m))
            .collect();
        // The actions requested on it, and those whose confirmation watches it.
        let mut actions: BTreeSet<String> = self
            .store
            .identity_actions(&key.0, key.1, &key.2, HISTORY_EVENTS_MAX)
            .map_err(internal)?
            .into_iter()
            .collect();
        actions.extend(
            msgs.values()
                .filter_map(|m| fold::decode(&m.as_stream_msg()).ok())
                .map(|e| e.action_id)
                .filter(|a| !a.is_empty()),
        );
        for a in actions {
            let more: Vec<u64> = self
                .store
                .action_history(&a, upto, HISTORY_EVENTS_MAX + 1)
                .map_err(internal)?
                .into_iter()
                .filter(|s| !msgs.contains_key(s))
                .collect();
            for m in self.fetch(&stream, more).await? {
                msgs.insert(m.seq, m);
            }
            if msgs.len() > HISTORY_EVENTS_MAX {
                return Err(too_long());
            }
        }
        Ok(msgs.into_values().collect())
    }

    /// The identity as it stood at `p`, and the sequences folded for it.
    pub async fn identity(
        &self,
        key: &IdentityKey,
        p: &AsOfPoint,
    ) -> Result<(IdentityState, Vec<u64>), AsOfError> {
        let (identity, _, msgs) = self.identity_fold(key, p, p.seq).await?;
        Ok((identity, msgs.iter().map(|m| m.seq).collect()))
    }

    /// The identity as it stood at `p`, the fold it came from (which also holds
    /// the states of the actions on it at `p`) and its messages up to
    /// `through` (at least `p`: an evidence bundle holds them up to its
    /// anchor), of which those up to `p` were folded.
    pub async fn identity_fold(
        &self,
        key: &IdentityKey,
        p: &AsOfPoint,
        through: u64,
    ) -> Result<(IdentityState, fold::Working, Vec<OwnedMsg>), AsOfError> {
        let msgs = self.identity_msgs(key, through.max(p.seq)).await?;
        let mut w = fold::Working {
            trust: self.store.trust().clone(),
            ..Default::default()
        };
        let upto = msgs.partition_point(|m| m.seq <= p.seq);
        fold_in_memory(&mut w, &msgs[..upto]);
        match w.identities.get(key).cloned() {
            Some(i) => Ok((i, w, msgs)),
            None => {
                let first = self
                    .store
                    .identity_history(&key.0, key.1, &key.2, u64::MAX, 1)
                    .map_err(internal)?;
                Err(AsOfError::NotFound(format!(
                    "as of {}, source {:?} had not reported {} {}{}",
                    describe(p),
                    key.0,
                    entity_label(key.1),
                    crate::api::validate::excerpt(&key.2),
                    match first.first() {
                        Some(f) if *f > p.seq => format!("; its first event is at sequence {f}"),
                        Some(_) => String::new(),
                        None => "; it has no event in the ledger at all".to_owned(),
                    }
                )))
            }
        }
    }

    /// The action as it stood at `p`.
    pub async fn action(&self, action_id: &str, p: &AsOfPoint) -> Result<ActionState, AsOfError> {
        let seqs = self
            .store
            .action_history(action_id, p.seq, HISTORY_EVENTS_MAX + 1)
            .map_err(internal)?;
        if seqs.len() > HISTORY_EVENTS_MAX {
            return Err(too_long());
        }
        if seqs.is_empty() {
            let first = self
                .store
                .action_history(action_id, u64::MAX, 1)
                .map_err(internal)?;
            return Err(AsOfError::NotFound(format!(
                "as of {}, there was no action {}{}",
                describe(p),
                crate::api::validate::excerpt(action_id),
                match first.first() {
                    Some(f) => format!("; it was requested at sequence {f}"),
                    None => "; the ledger holds no event of it at all".to_owned(),
                }
            )));
        }
        let msgs = self.fetch(&self.stream().await?, seqs).await?;
        let mut w = fold::Working {
            trust: self.store.trust().clone(),
            ..Default::default()
        };
        fold_in_memory(&mut w, &msgs);
        w.actions
            .get(&action_id.to_owned())
            .cloned()
            .ok_or_else(|| AsOfError::ActionFoldEmpty {
                action_id: action_id.to_owned(),
            })
    }

    /// The source (and its last run) as it stood at `p`: the source's events
    /// up to `p` folded into a scratch sled folder, from the nearest earlier
    /// snapshot that holds; the folder is then kept as a snapshot.
    pub async fn source(
        &self,
        source_id: &str,
        p: &AsOfPoint,
    ) -> Result<(SourceState, Option<RunState>), AsOfError> {
        let _permit = self
            .source_folds
            .acquire()
            .await
            .map_err(|_| AsOfError::ShuttingDown)?;
        let dir = self
            .scratch_dir
            .join(format!("asof-{}", uuid::Uuid::now_v7()));
        let out = self.source_in(&dir, source_id, p).await.map(|(answer, record)| {
            if let Some(record) = record
                && let Err(e) = self.snapshots.keep(&dir, &record)
            {
                tracing::warn!(error = %e, "cannot keep a source snapshot; the next answer folds from the start");
            }
            answer
        });
        if let Err(e) = std::fs::remove_dir_all(&dir)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(dir = %dir.display(), error = %e, "cannot remove a scratch fold folder");
        }
        out
    }

    /// The answer, and the record to keep `dir` as a snapshot under (when
    /// it folded anything new).
    async fn source_in(
        &self,
        dir: &Path,
        source_id: &str,
        p: &AsOfPoint,
    ) -> Result<
        (
            SourcedAnswer,
            Option<crate::audit::source_snapshots::Record>,
        ),
        AsOfError,
    > {
        // Copying and checking a snapshot is blocking file work.
        let (store, after) =
            tokio::task::block_in_place(|| self.scratch_from_snapshot(dir, source_id, p))?;
        let mut meta = store.meta().map_err(internal)?;
        let mut batch = Vec::with_capacity(SCRATCH_BATCH_EVENTS);
        let found = self
            .source_slice(source_id, (0, after), p.seq, |m, last| {
                batch.push(m);
                if batch.len() >= SCRATCH_BATCH_EVENTS || last {
                    govledger_projector::process_batch(&store, &mut meta, &batch)
                        .map_err(internal)?;
                    batch.clear();
                }
                Ok(())
            })
            .await?;
        let src = match store.source(source_id).map_err(internal)? {
            Some(src) => src,
            None => {
                return Err(AsOfError::NotFound(format!(
                    "as of {}, the ledger held no event of source {source_id:?}",
                    describe(p)
                )));
            }
        };
        let run = if src.last_run_id.is_empty() {
            None
        } else {
            store.run(&src.last_run_id).map_err(internal)?
        };
        tracing::info!(source = %source_id, seq = p.seq, snapshot_seq = after, events_folded = found,
            "source answered as of a past point");
        let record = if found > 0 {
            Some(tokio::task::block_in_place(|| {
                self.snapshot_record(&store, source_id, p.seq)
            })?)
        } else {
            None
        };
        drop(store);
        Ok(((src, run), record))
    }

    /// What keeps `store` (the source folded up to `seq`) as a snapshot.
    fn snapshot_record(
        &self,
        store: &Store,
        source_id: &str,
        seq: u64,
    ) -> Result<crate::audit::source_snapshots::Record, AsOfError> {
        let root = govledger_projector::tiles::Tiles::new(self.store.as_ref())
            .root(seq)
            .map_err(internal)?;
        store.flush_blocking().map_err(internal)?;
        Ok(crate::audit::source_snapshots::Record {
            stream: self.stream.clone(),
            source_id: source_id.to_owned(),
            seq,
            root: hex(&root),
            digest: store.digest().map_err(internal)?,
            fold: self.snapshot_fold(),
        })
    }

    /// What this ledger's folds depend on besides the events (a snapshot
    /// made under another is not used).
    fn snapshot_fold(&self) -> String {
        crate::audit::source_snapshots::fold_identity(&self.store.trust().keys_hex())
    }

    /// A scratch store in `dir`: a copy of the nearest snapshot at or before
    /// `p` that still holds (same log, fold and digest), and its sequence; or
    /// an empty one and 0. A snapshot that does not hold is discarded.
    fn scratch_from_snapshot(
        &self,
        dir: &Path,
        source_id: &str,
        p: &AsOfPoint,
    ) -> Result<(Store, u64), AsOfError> {
        let open = |dir: &Path| {
            Store::open(dir, SCRATCH_CACHE_BYTES)
                .map(|s| s.with_trust(self.store.trust().clone()))
                .map_err(internal)
        };
        let snaps = &self.snapshots;
        let Some((record, at)) = snaps.nearest(source_id, p.seq) else {
            return Ok((open(dir)?, 0));
        };
        let root = govledger_projector::tiles::Tiles::new(self.store.as_ref())
            .root(record.seq)
            .map(|r| hex(&r));
        let fits = record.stream == self.stream
            && record.source_id == source_id
            && record.fold == self.snapshot_fold()
            && root.is_ok_and(|r| r == record.root);
        if fits
            && snaps.copy_out(&at, dir).is_ok()
            && let Ok(store) = open(dir)
        {
            if store.digest().is_ok_and(|d| d == record.digest) {
                return Ok((store, record.seq));
            }
            drop(store);
        }
        tracing::warn!(snapshot = %at.display(), "a source snapshot does not hold (altered, or of another log or build): discarded, folding from the start");
        snaps.discard(&at);
        let _ = std::fs::remove_dir_all(dir);
        Ok((open(dir)?, 0))
    }

    /// Visits, in order, every message on the source's subjects stored at or
    /// after `from_us` (0 = from the start) and after sequence `after` (0 =
    /// from the first) with a sequence up to `upto`; the visitor is told
    /// which one is the last. Returns how many were visited.
    pub async fn source_slice(
        &self,
        source_id: &str,
        (from_us, after): (i64, u64),
        upto: u64,
        mut visit: impl FnMut(OwnedMsg, bool) -> Result<(), AsOfError>,
    ) -> Result<u64, AsOfError> {
        let stream = self.stream().await?;
        let filters = govledger_stream::subject::source_filter_subjects(source_id);
        let prefix = format!("{}.{source_id}.", govledger_stream::subject::SUBJECT_PREFIX);
        let any = format!(
            "{}.{source_id}.*.*",
            govledger_stream::subject::SUBJECT_PREFIX
        );
        // An ordered consumer over an empty slice would only time out.
        let first = stream
            .get_first_raw_message_by_subject(&any, after + 1)
            .await
            .ok()
            .map(|m| m.sequence);
        if first.is_none_or(|f| f > upto) {
            return Ok(0);
        }
        let deliver_policy = if after > 0 {
            DeliverPolicy::ByStartSequence {
                start_sequence: after + 1,
            }
        } else if from_us > 0 {
            DeliverPolicy::ByStartTime {
                start_time: time::OffsetDateTime::from_unix_timestamp_nanos(
                    i128::from(from_us) * 1_000,
                )
                .map_err(|_| AsOfError::FromOutOfRange)?,
            }
        } else {
            DeliverPolicy::All
        };
        let mut msgs = crate::audit::replay::ordered_messages(&stream, deliver_policy, filters)
            .await
            .map_err(|e| unavailable(&self.stream, e))?;
        let mut held: Option<OwnedMsg> = None;
        let mut visited = 0;
        loop {
            let next = tokio::time::timeout(Duration::from_millis(READ_IDLE_MS), msgs.next()).await;
            let m = match next {
                // Nothing after the start time: nothing to visit.
                Err(_) if held.is_none() && (from_us > 0 || after > 0) => break,
                Err(_) => return Err(unavailable(&self.stream, "stream read stalled")),
                Ok(None) => break,
                Ok(Some(m)) => m.map_err(|e| unavailable(&self.stream, e))?,
            };
            let info = m.info().map_err(|e| unavailable(&self.stream, e))?;
            let (seq, pending) = (info.stream_sequence, info.pending);
            if seq > upto {
                break;
            }
            // A server older than 2.10 ignores `filter_subjects`: filter here too.
            if m.subject.as_str().starts_with(&prefix) {
                if let Some(h) = held.take() {
                    visit(h, false)?;
                    visited += 1;
                }
                held = Some(OwnedMsg {
                    seq,
                    subject: m.subject.to_string(),
                    stored_at_us: ts_us(&info.published),
                    payload: m.payload.clone(),
                    leaf: None,
                });
            }
            if pending == 0 || seq == upto {
                break;
            }
        }
        if let Some(h) = held {
            visit(h, true)?;
            visited += 1;
        }
        Ok(visited)
    }
}

fn too_long() -> AsOfError {
    AsOfError::HistoryTooLong
}
