//! The queries the API answers: source status and readiness, runs, identities,
//! actions with their outcomes, the ledger's status, proofs and verification —
//! each as of now or at a past point. No gRPC types here: every query returns
//! a proto message or a [`QueryError`], and `super::status` maps the error.

use std::sync::Arc;

use async_nats::jetstream;
use govledger_projector::{Store, merkle, store::StoreError, verdict};
use govledger_proto::v1::{
    ActionOutcome, ActionState, AsOfPoint, CheckReadinessResponse, EntityType, GetActionResponse,
    GetIdentityResponse, GetRunResponse, GetSourceResponse, LedgerStatus, PoisonEvent, RunSummary,
    SourceStatus, Verdict,
};

use super::readiness::readiness_blockers;
use crate::{
    audit::{
        asof::{self, AsOfError, AsOfReader, PointAt},
        checkpoints::{AuditStreamError, Checkpointer},
        replay::ReplayError,
    },
    config::sources::DEFAULT_FRESHNESS_OBJECTIVE_MS,
    workers::scheduler::SyncManager,
};

/// Actions of a source examined by a readiness check or a list, at most.
pub const READINESS_ACTIONS_MAX: usize = 10_000;

/// Why a query could not be answered.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// The projection store failed.
    #[error("projection store error: {0}; the projection can be rebuilt from the stream")]
    Store(#[from] StoreError),
    /// A point-in-time answer failed.
    #[error(transparent)]
    AsOf(#[from] AsOfError),
    /// The stream's leaves could not be read for a proof.
    #[error(transparent)]
    Replay(#[from] ReplayError),
    /// The source is neither configured nor named by any event.
    #[error(
        "no source {id:?}: not configured and no event names it; ListSources shows the known ones"
    )]
    NoSource { id: String },
    /// The source has no event in the ledger yet.
    #[error("no source {id:?} in the ledger yet; ListSources shows the known ones")]
    SourceNotInLedger { id: String },
    /// No such run (yet).
    #[error(
        "no run {} in the ledger (it may not be projected yet; ListRuns(source_id) lists a source's runs)",
        crate::api::validate::excerpt(.id)
    )]
    NoRun { id: String },
    /// The source never reported this identity.
    #[error("source {source_id:?} never reported {label} {}", crate::api::validate::excerpt(.external_id))]
    NeverReported {
        source_id: String,
        label: &'static str,
        external_id: String,
    },
    /// No such action (yet).
    #[error(
        "no action {} in the ledger (it may not be projected yet; ListActions(source_id) lists a source's actions)",
        crate::api::validate::excerpt(.id)
    )]
    NoAction { id: String },
    /// An external attempt names an action that was never submitted.
    #[error(
        "no action {}: submit it with external=true first (SubmitAction)",
        crate::api::validate::excerpt(.id)
    )]
    NoActionToReport { id: String },
    /// `VerifyRange` names a stream the NATS server does not have.
    #[error(
        "no stream {} on the ledger's NATS server: name the stream that holds the copy (or leave stream empty to verify the ledger's own)",
        crate::api::validate::excerpt(.name)
    )]
    NoStream { name: String },
    /// An external attempt names a concluded action.
    #[error(
        "action {id} is already concluded; submit a new action (new idempotency key) for a new write"
    )]
    ActionConcluded { id: String },
    /// The digest task panicked or was cancelled.
    #[error("digest task failed: {0}")]
    DigestTask(String),
    /// The stream cannot be opened.
    #[error("cannot read stream {stream} from NATS: {reason}; is NATS reachable?")]
    StreamUnreachable { stream: String, reason: String },
    /// The stored Merkle frontier does not decode.
    #[error("the stored Merkle frontier is inconsistent; rebuild the projection")]
    FrontierInconsistent,
    /// A checkpoint could not be signed and published.
    #[error("could not publish the checkpoint to NATS: {0}")]
    CheckpointPublish(AuditStreamError),
    /// A cosigned note was refused (not ours, no configured witness, forged).
    #[error("cosignature refused: {0}")]
    Cosignature(crate::audit::witness::CosignError),
    /// The audit stream's checkpoints could not be read.
    #[error("cannot read checkpoints from NATS: {0}; is NATS reachable?")]
    CheckpointRead(AuditStreamError),
    /// A verification asks for more than the projector has applied.
    #[error(
        "to_seq {to} is past what the projector has applied ({applied}); verify up to {applied} or retry later"
    )]
    PastApplied { to: u64, applied: u64 },
    /// A proof asks for a tree larger than the projection holds.
    #[error(
        "tree size {size} is past what the projector has applied ({applied}); ask for a size up to {applied} or retry later"
    )]
    TreePastApplied { size: u64, applied: u64 },
    /// The tiles a proof needs could not be read.
    #[error("cannot build the proof from the tiles: {0}")]
    Tiles(govledger_projector::tiles::TileError),
}

/// What the queries read: the projections, the stream and the configured sources.
pub struct Queries {
    pub store: Arc<Store>,
    pub js: jetstream::Context,
    pub stream: String,
    pub abandon_after_us: i64,
    pub syncs: SyncManager,
    pub asof: AsOfReader,
    /// The stream's position, read at most once at a time.
    pub stream_state: crate::api::stream_state::StreamState,
    pub checkpointer: Arc<Checkpointer>,
    /// Why the projector stopped, once it has.
    pub projector_stopped: tokio::sync::watch::Receiver<Option<String>>,
    /// What the health watch last found (the stream's position, the lag).
    pub health: tokio::sync::watch::Receiver<crate::serve::health::HealthState>,
    /// The leaver check (`[leavers]`), if configured.
    pub leavers: Option<crate::config::leavers::LeaverRule>,
}

/// Now, in Unix microseconds.
pub fn now_us() -> i64 {
    chrono::Utc::now().timestamp_micros()
}

impl Queries {
    /// Every source's status as of now, sorted by id.
    pub async fn list_sources(&self) -> Result<Vec<SourceStatus>, QueryError> {
        let now = now_us();
        let mut sources = Vec::new();
        for id in self.all_source_ids()? {
            if let Some(st) = self.status(&id, now).await? {
                sources.push(st);
            }
        }
        Ok(sources)
    }

    /// A source as of now, or as it stood at `at`.
    pub async fn source(
        &self,
        id: &str,
        at: Option<PointAt>,
    ) -> Result<GetSourceResponse, QueryError> {
        if let Some(at) = at {
            return self.source_at(id, at).await;
        }
        match self.status(id, now_us()).await? {
            Some(status) => Ok(GetSourceResponse {
                source: status.state.clone(),
                status: Some(status),
                ..Default::default()
            }),
            None => Err(QueryError::NoSource { id: id.to_owned() }),
        }
    }

    /// The newest `limit` runs of a source with their verdicts now.
    pub async fn runs(&self, id: &str, limit: u32) -> Result<Vec<RunSummary>, QueryError> {
        if self.store.source(id)?.is_none() {
            return Err(QueryError::SourceNotInLedger { id: id.to_owned() });
        }
        let now = now_us();
        let mut runs = Vec::new();
        for run_id in self.store.run_ids_of(id, limit as usize)? {
            if let Some(run) = self.store.run(&run_id)? {
                let (v, _) = verdict::current(&run, now, self.abandon_after_us);
                runs.push(RunSummary {
                    run_id: run.run_id.clone(),
                    source_id: run.source_id.clone(),
                    verdict: v as i32,
                    started_at_us: run.started_at_us,
                    finished_at_us: run.finished_at_us,
                    records_unique: run.records_unique,
                    declared_total: run.declared_total_last.or(run.declared_total_at_start),
                    deletions_accepted: v == Verdict::Complete
                        && govledger_projector::deletion_guard::accepted(&run),
                });
            }
        }
        Ok(runs)
    }

    /// A run with its verdict now.
    pub fn run(&self, id: &str) -> Result<GetRunResponse, QueryError> {
        let Some(run) = self.store.run(id)? else {
            return Err(QueryError::NoRun { id: id.to_owned() });
        };
        let (v, reasons) = verdict::current(&run, now_us(), self.abandon_after_us);
        Ok(GetRunResponse {
            run: Some(run),
            verdict: v as i32,
            reasons,
        })
    }

    /// An identity with its presence now, or as it stood at `at`.
    pub async fn identity(
        &self,
        source_id: &str,
        entity_type: EntityType,
        external_id: &str,
        at: Option<PointAt>,
    ) -> Result<GetIdentityResponse, QueryError> {
        if let Some(at) = at {
            let p = self.asof.resolve(at).await?;
            let key = (
                source_id.to_owned(),
                entity_type as i32,
                external_id.to_owned(),
            );
            let (identity, history_seqs) = self.asof.identity(&key, &p).await?;
            return Ok(GetIdentityResponse {
                identity: Some(identity),
                presence: govledger_proto::v1::PresenceStatus::Unspecified as i32,
                presence_reason: format!(
                    "presence as of {} depends on the source's runs then: ask GetSource with the same as_of",
                    asof::describe(&p)
                ),
                as_of: Some(p),
                history_seqs,
            });
        }
        let Some(source) = self.store.source(source_id)? else {
            return Err(QueryError::SourceNotInLedger {
                id: source_id.to_owned(),
            });
        };
        let Some(identity) = self
            .store
            .identity(source_id, entity_type as i32, external_id)?
        else {
            return Err(QueryError::NeverReported {
                source_id: source_id.to_owned(),
                label: govledger_projector::keys::entity_label(entity_type as i32),
                external_id: external_id.to_owned(),
            });
        };
        let (presence, why) = verdict::presence(&identity, &source);
        Ok(GetIdentityResponse {
            identity: Some(identity),
            presence: presence as i32,
            presence_reason: why,
            ..Default::default()
        })
    }

    /// The ledger's meta, Merkle root and stream position (and, when asked,
    /// the state digest).
    pub async fn ledger_status(&self, with_digest: bool) -> Result<LedgerStatus, QueryError> {
        let (meta, state_digest) = if with_digest {
            let store = self.store.clone();
            tokio::task::spawn_blocking(move || store.digest_at())
                .await
                .map_err(|e| QueryError::DigestTask(e.to_string()))??
        } else {
            (self.store.meta()?, String::new())
        };
        // Asked after the projection was read: the stream is never behind it.
        let position = self
            .stream_state
            .position(std::time::Instant::now())
            .await
            .map_err(|reason| QueryError::StreamUnreachable {
                stream: self.stream.clone(),
                reason,
            })?;
        let (stream_last_seq, stream_messages) = (position.last_seq, position.messages);
        let tree = merkle::Frontier::from_parts(meta.merkle_size, &meta.merkle_peaks)
            .ok_or(QueryError::FrontierInconsistent)?;
        Ok(LedgerStatus {
            merkle_root: merkle::hex(&tree.root()),
            merkle_size: tree.size(),
            checkpoint_public_key: self.checkpointer.public_key_hex(),
            meta: Some(meta),
            state_digest,
            stream_last_seq,
            stream_messages,
            stream_name: self.stream.clone(),
            projector_stopped: self.projector_stopped.borrow().clone().unwrap_or_default(),
        })
    }

    /// Poison events after `after_seq`, at most `limit`.
    pub fn poison(&self, after_seq: u64, limit: u32) -> Result<Vec<PoisonEvent>, QueryError> {
        Ok(self.store.poison(after_seq, limit as usize)?)
    }

    /// An action with its outcome now, or as it stood at `at`.
    pub async fn action(
        &self,
        id: &str,
        at: Option<PointAt>,
    ) -> Result<GetActionResponse, QueryError> {
        if let Some(at) = at {
            return self.action_view_at(id, at).await;
        }
        let Some(a) = self.store.action(id)? else {
            return Err(QueryError::NoAction { id: id.to_owned() });
        };
        self.action_view(a, now_us())
    }

    /// A source's actions with their outcomes now (`want` unspecified = any),
    /// at most `limit`.
    pub fn actions(
        &self,
        source: &str,
        want: ActionOutcome,
        limit: usize,
    ) -> Result<Vec<GetActionResponse>, QueryError> {
        let now = now_us();
        let mut actions = Vec::new();
        // Any outcome: the newest `limit`. CONFIRMED: a scan of the newest.
        // Anything else: only actions that are not confirmed can have it
        // (the blocking-action index), however many are confirmed.
        let ids = match want {
            ActionOutcome::Unspecified => self.store.action_ids_of(source, limit)?,
            ActionOutcome::Confirmed => self.store.action_ids_of(source, READINESS_ACTIONS_MAX)?,
            _ => self
                .store
                .blocking_action_ids(source, READINESS_ACTIONS_MAX)?,
        };
        for id in ids {
            if actions.len() >= limit {
                break;
            }
            if let Some(a) = self.store.action(&id)? {
                let v = self.action_view(a, now)?;
                if want == ActionOutcome::Unspecified || v.outcome == want as i32 {
                    actions.push(v);
                }
            }
        }
        Ok(actions)
    }

    /// The action an external attempt is reported for: it exists and has not
    /// concluded.
    pub fn action_open_for_report(&self, id: &str) -> Result<ActionState, QueryError> {
        let Some(a) = self.store.action(id)? else {
            return Err(QueryError::NoActionToReport { id: id.to_owned() });
        };
        if a.concluded_seq != 0 {
            return Err(QueryError::ActionConcluded { id: id.to_owned() });
        }
        Ok(a)
    }

    /// Whether the sources `ids` (empty = every known one) are ready, and why
    /// not; actions only on `identities` (empty = all) can block.
    pub async fn readiness(
        &self,
        mut ids: Vec<String>,
        identities: &[String],
    ) -> Result<CheckReadinessResponse, QueryError> {
        if ids.is_empty() {
            ids = self.all_source_ids()?;
        }
        ids.sort();
        ids.dedup();
        let now = now_us();
        let mut scope = Vec::with_capacity(ids.len());
        for id in ids {
            let status = self.status(&id, now).await?;
            let last_finished = match status.as_ref().and_then(|s| s.state.as_ref()) {
                Some(st) if !st.last_finished_run_id.is_empty() => {
                    self.store.run(&st.last_finished_run_id)?
                }
                _ => None,
            };
            scope.push((id, status, last_finished));
        }
        let mut blockers = readiness_blockers(&scope);
        for (id, status, _) in &scope {
            if status.is_some() {
                blockers.extend(self.action_blockers(id, identities, now)?);
            }
        }
        let in_scope: Vec<&str> = scope.iter().map(|(id, _, _)| id.as_str()).collect();
        blockers.extend(self.leaver_blockers(&in_scope, now)?);
        // Where the answer stands: the projection read above, the stream as
        // the health watch last saw it.
        let as_of_seq = self.store.meta()?.last_applied_seq;
        let health = self.health.borrow().clone().at_applied(as_of_seq);
        blockers.extend(crate::api::readiness::projection_blockers(&health));
        Ok(CheckReadinessResponse {
            ready: blockers.is_empty(),
            blockers,
            sources: scope.into_iter().filter_map(|(_, s, _)| s).collect(),
            as_of_seq,
            stream_last_seq: health.stream_last_seq.unwrap_or(as_of_seq),
        })
    }

    /// An action with its outcome as it stood at a past point (a deadline is
    /// judged at the point's time; drift from the watched identities then).
    async fn action_view_at(&self, id: &str, at: PointAt) -> Result<GetActionResponse, QueryError> {
        let p = self.asof.resolve(at).await?;
        let a = self.asof.action(id, &p).await?;
        let mut drift = None;
        for wi in &a.watch {
            let key = (a.source_id.clone(), wi.entity_type, wi.external_id.clone());
            let (ident, _) = self.asof.identity(&key, &p).await?;
            if let Some(w) = ident
                .watched
                .into_iter()
                .find(|w| w.action_id == a.action_id && w.drifted)
            {
                drift = Some(w);
                break;
            }
        }
        let (outcome, detail) = verdict::action_outcome(&a, drift.as_ref(), p.stored_at_us);
        Ok(GetActionResponse {
            action: Some(drifted_steps(a, outcome)),
            outcome: outcome as i32,
            outcome_detail: detail,
            as_of: Some(p),
        })
    }

    /// A source as it stood at a past point: state, freshness at that time, and
    /// its last run with the verdict it had then.
    async fn source_at(&self, id: &str, at: PointAt) -> Result<GetSourceResponse, QueryError> {
        let p: AsOfPoint = self.asof.resolve(at).await?;
        let (state, last_run) = self.asof.source(id, &p).await?;
        let objective_ms = self
            .syncs
            .freshness_objective_ms(id)
            .unwrap_or(DEFAULT_FRESHNESS_OBJECTIVE_MS);
        let (freshness, age_ms) = verdict::freshness(Some(&state), objective_ms, p.stored_at_us);
        let (last_run_verdict, running) = match &last_run {
            Some(run) => {
                let (v, _) = verdict::current(run, p.stored_at_us, self.abandon_after_us);
                let running = (v == Verdict::Running).then(|| run.run_id.clone());
                (v, running)
            }
            None => (Verdict::Unspecified, None),
        };
        Ok(GetSourceResponse {
            source: Some(state.clone()),
            status: Some(SourceStatus {
                source_id: id.to_owned(),
                state: Some(state),
                freshness: freshness as i32,
                last_complete_age_ms: age_ms,
                freshness_objective_ms: objective_ms,
                configured: self.syncs.is_configured(id),
                running_run_id: running.unwrap_or_default(),
            }),
            as_of: Some(p),
            last_run,
            last_run_verdict: last_run_verdict as i32,
        })
    }

    /// An action with its outcome as of `now` (DRIFTED from the watched identities).
    pub(super) fn action_view(
        &self,
        a: ActionState,
        now: i64,
    ) -> Result<GetActionResponse, QueryError> {
        let mut drift = None;
        for wi in &a.watch {
            if let Some(ident) =
                self.store
                    .identity(&a.source_id, wi.entity_type, &wi.external_id)?
                && let Some(w) = ident
                    .watched
                    .into_iter()
                    .find(|w| w.action_id == a.action_id && w.drifted)
            {
                drift = Some(w);
                break;
            }
        }
        let (outcome, detail) = verdict::action_outcome(&a, drift.as_ref(), now);
        Ok(GetActionResponse {
            action: Some(drifted_steps(a, outcome)),
            outcome: outcome as i32,
            outcome_detail: detail,
            as_of: None,
        })
    }

    /// A source's status as of now; `None` when neither configured nor known.
    async fn status(&self, source_id: &str, now: i64) -> Result<Option<SourceStatus>, QueryError> {
        let state = self.store.source(source_id)?;
        let configured = self.syncs.is_configured(source_id);
        if state.is_none() && !configured {
            return Ok(None);
        }
        let objective_ms = self
            .syncs
            .freshness_objective_ms(source_id)
            .unwrap_or(DEFAULT_FRESHNESS_OBJECTIVE_MS);
        let (freshness, age_ms) = verdict::freshness(state.as_ref(), objective_ms, now);
        Ok(Some(SourceStatus {
            source_id: source_id.to_owned(),
            state,
            freshness: freshness as i32,
            last_complete_age_ms: age_ms,
            freshness_objective_ms: objective_ms,
            configured,
            running_run_id: self.syncs.running(source_id).await.unwrap_or_default(),
        }))
    }

    /// Every configured or known source id, sorted.
    fn all_source_ids(&self) -> Result<Vec<String>, QueryError> {
        let mut ids: std::collections::BTreeSet<String> = self
            .store
            .sources()?
            .into_iter()
            .map(|s| s.source_id)
            .collect();
        ids.extend(self.syncs.configured().map(str::to_owned));
        Ok(ids.into_iter().collect())
    }
}

/// The steps as the action's outcome reads: an action confirmed late has
/// the steps that awaited an observation (UNCONFIRMED, UNVERIFIED,
/// UNVERIFIABLE) read CONFIRMED (`; confirmed late by a later observation`
/// added); a DRIFTED action, confirmed then undone, has its confirmed steps
/// read DRIFTED (`; since undone` added). The stored action and its events
/// are unchanged. A point-in-time answer is this view of a fold of the prefix.
pub fn drifted_steps(mut a: ActionState, outcome: ActionOutcome) -> ActionState {
    if a.late_confirmed_seq != 0
        && matches!(outcome, ActionOutcome::Confirmed | ActionOutcome::Drifted)
    {
        for s in &mut a.steps {
            let awaited = matches!(
                ActionOutcome::try_from(s.outcome).unwrap_or_default(),
                ActionOutcome::Unconfirmed
                    | ActionOutcome::Unverified
                    | ActionOutcome::Unverifiable
            );
            if awaited {
                s.outcome = ActionOutcome::Confirmed as i32;
                s.detail.push_str("; confirmed late by a later observation");
            }
        }
    }
    if outcome == ActionOutcome::Drifted {
        for s in &mut a.steps {
            if s.outcome == ActionOutcome::Confirmed as i32 {
                s.outcome = ActionOutcome::Drifted as i32;
                s.detail.push_str("; since undone");
            }
        }
    }
    a
}
