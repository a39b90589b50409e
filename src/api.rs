//! The gRPC API (package `govledger.v1`): answers from the sled projections.
//!
//! API Boundary: every request is validated here; errors use the status code a
//! client can act on (`InvalidArgument` for a malformed request, `NotFound` for
//! an unknown id, `Unavailable` when the stream cannot be asked) and a message
//! saying what to do. Nothing here writes to sled.

use std::sync::Arc;

use futures::StreamExt as _;
use govledger_projector::merkle;
use govledger_projector::{Store, store::StoreError, verdict};
use govledger_proto::v1::{
    ActionAttempted, ActionOutcome, ActionState, Alert, GetActionRequest, GetActionResponse,
    ListActionsRequest, ListActionsResponse, ReportExternalAttemptRequest,
    ReportExternalAttemptResponse, SubmitActionRequest, SubmitActionResponse, WatchAlertsRequest,
};
use govledger_proto::v1::{
    Blocker, CheckReadinessRequest, CheckReadinessResponse, EntityType, Freshness,
    GetIdentityRequest, GetIdentityResponse, GetLedgerStatusRequest, GetRunRequest, GetRunResponse,
    GetSourceRequest, GetSourceResponse, LedgerStatus, ListPoisonEventsRequest,
    ListPoisonEventsResponse, ListRunsRequest, ListRunsResponse, ListSourcesRequest,
    ListSourcesResponse, RunState, RunSummary, SourceStatus, SyncMode, TriggerSyncRequest,
    TriggerSyncResponse, Verdict, ledger_server::Ledger,
};
use govledger_proto::v1::{
    Checkpoint, CreateCheckpointRequest, ListCheckpointsRequest, ListCheckpointsResponse,
};
use govledger_proto::v1::{
    ConsistencyProof, EvidenceChunk, ExportEvidenceRequest, GetConsistencyProofRequest,
    GetInclusionProofRequest, InclusionProof, ReplayItem, ReplayRequest, VerifyRangeRequest,
    VerifyRangeResponse,
};
use tonic::{Request, Response, Status};

use crate::{
    config::sources::DEFAULT_FRESHNESS_OBJECTIVE_MS,
    workers::action_intake::{ActionManager, SubmitError},
    workers::scheduler::{SyncManager, TriggerError},
};

/// Default and largest page sizes of list calls.
pub const LIST_RUNS_DEFAULT: u32 = 20;
pub const LIST_RUNS_MAX: u32 = 1_000;
pub const LIST_POISON_DEFAULT: u32 = 100;
pub const LIST_POISON_MAX: u32 = 1_000;

pub struct LedgerApi {
    store: Arc<Store>,
    js: Option<async_nats::jetstream::Context>,
    stream: String,
    abandon_after_us: i64,
    syncs: SyncManager,
    actions: ActionManager,
    alerts: tokio::sync::broadcast::Sender<Alert>,
    checkpointer: Option<Arc<crate::checkpoints::Checkpointer>>,
    asof: Option<crate::asof::AsOfReader>,
}

/// Everything the API answers from.
pub struct ApiParts {
    pub store: Arc<Store>,
    pub js: Option<async_nats::jetstream::Context>,
    pub stream: String,
    pub abandon_after_ms: u64,
    pub syncs: SyncManager,
    pub actions: ActionManager,
    pub alerts: tokio::sync::broadcast::Sender<Alert>,
    pub checkpointer: Option<Arc<crate::checkpoints::Checkpointer>>,
    /// Scratch space of point-in-time source answers (inside the data folder).
    pub scratch_dir: std::path::PathBuf,
}

impl LedgerApi {
    pub fn new(p: ApiParts) -> Self {
        let asof = p.js.clone().map(|js| crate::asof::AsOfReader {
            store: p.store.clone(),
            js,
            stream: p.stream.clone(),
            scratch_dir: p.scratch_dir.clone(),
            source_folds: tokio::sync::Semaphore::new(1),
        });
        Self {
            asof,
            store: p.store,
            js: p.js,
            stream: p.stream,
            abandon_after_us: (p.abandon_after_ms as i64).saturating_mul(1_000),
            syncs: p.syncs,
            actions: p.actions,
            alerts: p.alerts,
            checkpointer: p.checkpointer,
        }
    }

    /// The point-in-time reader and the point `as_of` names.
    async fn point(
        &self,
        as_of: &govledger_proto::v1::AsOf,
    ) -> Result<(&crate::asof::AsOfReader, govledger_proto::v1::AsOfPoint), Status> {
        let Some(r) = &self.asof else {
            return Err(Status::failed_precondition(
                "point-in-time answers read the stream, and this server has no NATS connection",
            ));
        };
        Ok((r, r.resolve(as_of).await?))
    }

    /// An action with its outcome as it stood at a past point (a deadline is
    /// judged at the point's time; drift from the watched identities then).
    async fn action_view_at(
        &self,
        id: &str,
        as_of: &govledger_proto::v1::AsOf,
    ) -> Result<GetActionResponse, Status> {
        let (r, p) = self.point(as_of).await?;
        let a = r.action(id, &p).await?;
        let mut drift = None;
        for wi in &a.watch {
            let key = (a.source_id.clone(), wi.entity_type, wi.external_id.clone());
            let (ident, _) = r.identity(&key, &p).await?;
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
            action: Some(a),
            outcome: outcome as i32,
            outcome_detail: detail,
            as_of: Some(p),
        })
    }

    /// A source as it stood at a past point: state, freshness at that time, and
    /// its last run with the verdict it had then.
    async fn source_at(
        &self,
        id: &str,
        as_of: &govledger_proto::v1::AsOf,
    ) -> Result<GetSourceResponse, Status> {
        let (r, p) = self.point(as_of).await?;
        let (state, last_run) = r.source(id, &p).await?;
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
    fn action_view(&self, a: ActionState, now: i64) -> Result<GetActionResponse, Status> {
        let mut drift = None;
        for wi in &a.watch {
            if let Some(ident) = self
                .store
                .identity(&a.source_id, wi.entity_type, &wi.external_id)
                .map_err(internal)?
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
            action: Some(a),
            outcome: outcome as i32,
            outcome_detail: detail,
            as_of: None,
        })
    }

    /// Blocking actions of a source (UNCONFIRMED, FAILED, OVERDUE, DRIFTED).
    fn action_blockers(
        &self,
        source_id: &str,
        identities: &[String],
        now: i64,
    ) -> Result<Vec<Blocker>, Status> {
        let mut out = Vec::new();
        for id in self
            .store
            .action_ids_of(source_id, READINESS_ACTIONS_MAX)
            .map_err(internal)?
        {
            let Some(a) = self.store.action(&id).map_err(internal)? else {
                continue;
            };
            let who = a
                .request
                .as_ref()
                .map(|r| r.identity_external_id.clone())
                .unwrap_or_default();
            if !identities.is_empty() && !identities.contains(&who) {
                continue;
            }
            let v = self.action_view(a, now)?;
            let o = ActionOutcome::try_from(v.outcome).unwrap_or_default();
            if matches!(
                o,
                ActionOutcome::Unconfirmed
                    | ActionOutcome::Failed
                    | ActionOutcome::Overdue
                    | ActionOutcome::Drifted
            ) {
                out.push(Blocker {
                    source_id: source_id.to_owned(),
                    code: format!(
                        "ACTION_{}",
                        o.as_str_name().trim_start_matches("ACTION_OUTCOME_")
                    ),
                    message: format!("action {id} on {who}: {}", v.outcome_detail),
                });
            }
        }
        Ok(out)
    }

    /// A source's status as of now; `None` when neither configured nor known.
    async fn status(&self, source_id: &str, now: i64) -> Result<Option<SourceStatus>, Status> {
        let state = self.store.source(source_id).map_err(internal)?;
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
    fn all_source_ids(&self) -> Result<Vec<String>, Status> {
        let mut ids: std::collections::BTreeSet<String> = self
            .store
            .sources()
            .map_err(internal)?
            .into_iter()
            .map(|s| s.source_id)
            .collect();
        ids.extend(self.syncs.configured().map(str::to_owned));
        Ok(ids.into_iter().collect())
    }
}

/// Actions of a source examined by a readiness check or a list, at most.
pub const READINESS_ACTIONS_MAX: usize = 10_000;

fn submit_status(e: SubmitError) -> Status {
    match e {
        SubmitError::NotConfigured(_) | SubmitError::NotFound(_) => {
            Status::not_found(e.to_string())
        }
        SubmitError::Invalid(_) => Status::invalid_argument(e.to_string()),
        SubmitError::NotWritable(_) | SubmitError::NotExternal(_) => {
            Status::failed_precondition(e.to_string())
        }
        SubmitError::Busy(_) | SubmitError::Publish(_) => Status::unavailable(e.to_string()),
    }
}

/// Why a scope is not ready: every blocking reason, in source order. Pure.
pub fn readiness_blockers(
    scope: &[(String, Option<SourceStatus>, Option<RunState>)],
) -> Vec<Blocker> {
    let mut out = Vec::new();
    let block = |out: &mut Vec<Blocker>, id: &str, code: &str, message: String| {
        out.push(Blocker {
            source_id: id.to_owned(),
            code: code.to_owned(),
            message,
        })
    };
    if scope.is_empty() {
        block(
            &mut out,
            "",
            "NO_SOURCES",
            "no source in scope: nothing shows the data is complete".into(),
        );
    }
    for (id, status, last_finished) in scope {
        let Some(st) = status else {
            block(
                &mut out,
                id,
                "UNKNOWN_SOURCE",
                format!("source {id:?} is neither configured nor in the ledger"),
            );
            continue;
        };
        match Freshness::try_from(st.freshness).unwrap_or_default() {
            Freshness::Fresh => {}
            Freshness::Stale => block(
                &mut out,
                id,
                "STALE",
                format!(
                    "last complete run is {} old, over its freshness objective of {}",
                    verdict::human_ms(st.last_complete_age_ms),
                    verdict::human_ms(st.freshness_objective_ms as i64)
                ),
            ),
            Freshness::NeverComplete | Freshness::Unspecified => block(
                &mut out,
                id,
                "NEVER_COMPLETE",
                "no COMPLETE run on record: run `govledger sync` and fix what it reports".into(),
            ),
        }
        if let Some(run) = last_finished
            && run.verdict != Verdict::Complete as i32
        {
            let why = run
                .reasons
                .iter()
                .map(|r| r.message.as_str())
                .collect::<Vec<_>>()
                .join("; ");
            block(
                &mut out,
                id,
                "LAST_RUN_NOT_COMPLETE",
                format!(
                    "last run {} ended {}: {why}",
                    run.run_id,
                    Verdict::try_from(run.verdict)
                        .map(|v| v.as_str_name().trim_start_matches("VERDICT_").to_owned())
                        .unwrap_or_default()
                ),
            );
        }
    }
    out
}

fn internal(e: StoreError) -> Status {
    tracing::error!(error = %e, "projection store error");
    Status::internal(format!(
        "projection store error: {e}; the projection can be rebuilt from the stream"
    ))
}

fn require<'a>(field: &str, value: &'a str) -> Result<&'a str, Status> {
    if value.trim().is_empty() {
        Err(Status::invalid_argument(format!(
            "{field} is required (got an empty string)"
        )))
    } else {
        Ok(value)
    }
}

fn now_us() -> i64 {
    chrono::Utc::now().timestamp_micros()
}

#[tonic::async_trait]
impl Ledger for LedgerApi {
    async fn list_sources(
        &self,
        _req: Request<ListSourcesRequest>,
    ) -> Result<Response<ListSourcesResponse>, Status> {
        let now = now_us();
        let mut sources = Vec::new();
        for id in self.all_source_ids()? {
            if let Some(st) = self.status(&id, now).await? {
                sources.push(st);
            }
        }
        Ok(Response::new(ListSourcesResponse { sources }))
    }

    async fn get_source(
        &self,
        req: Request<GetSourceRequest>,
    ) -> Result<Response<GetSourceResponse>, Status> {
        let id = require("source_id", &req.get_ref().source_id)?;
        if let Some(as_of) = &req.get_ref().as_of {
            return Ok(Response::new(self.source_at(id, as_of).await?));
        }
        match self.status(id, now_us()).await? {
            Some(status) => Ok(Response::new(GetSourceResponse {
                source: status.state.clone(),
                status: Some(status),
                ..Default::default()
            })),
            None => Err(Status::not_found(format!(
                "no source {id:?}: not configured and no event names it; ListSources shows the known ones"
            ))),
        }
    }

    async fn list_runs(
        &self,
        req: Request<ListRunsRequest>,
    ) -> Result<Response<ListRunsResponse>, Status> {
        let r = req.get_ref();
        let id = require("source_id", &r.source_id)?;
        if r.limit > LIST_RUNS_MAX {
            return Err(Status::invalid_argument(format!(
                "limit {} is over the maximum {LIST_RUNS_MAX}",
                r.limit
            )));
        }
        let limit = if r.limit == 0 {
            LIST_RUNS_DEFAULT
        } else {
            r.limit
        };
        if self.store.source(id).map_err(internal)?.is_none() {
            return Err(Status::not_found(format!(
                "no source {id:?} in the ledger yet; ListSources shows the known ones"
            )));
        }
        let now = now_us();
        let mut runs = Vec::new();
        for run_id in self
            .store
            .run_ids_of(id, limit as usize)
            .map_err(internal)?
        {
            if let Some(run) = self.store.run(&run_id).map_err(internal)? {
                let (v, _) = verdict::current(&run, now, self.abandon_after_us);
                runs.push(RunSummary {
                    run_id: run.run_id.clone(),
                    source_id: run.source_id.clone(),
                    verdict: v as i32,
                    started_at_us: run.started_at_us,
                    finished_at_us: run.finished_at_us,
                    records_unique: run.records_unique,
                    declared_total: run.declared_total_last.or(run.declared_total_at_start),
                });
            }
        }
        Ok(Response::new(ListRunsResponse { runs }))
    }

    async fn get_run(
        &self,
        req: Request<GetRunRequest>,
    ) -> Result<Response<GetRunResponse>, Status> {
        let id = require("run_id", &req.get_ref().run_id)?;
        let Some(run) = self.store.run(id).map_err(internal)? else {
            return Err(Status::not_found(format!(
                "no run {id:?} in the ledger (it may not be projected yet; ListRuns(source_id) lists a source's runs)"
            )));
        };
        let (v, reasons) = verdict::current(&run, now_us(), self.abandon_after_us);
        Ok(Response::new(GetRunResponse {
            run: Some(run),
            verdict: v as i32,
            reasons,
        }))
    }

    async fn get_identity(
        &self,
        req: Request<GetIdentityRequest>,
    ) -> Result<Response<GetIdentityResponse>, Status> {
        let r = req.get_ref();
        let source_id = require("source_id", &r.source_id)?;
        let external_id = require("external_id", &r.external_id)?;
        let entity_type = match EntityType::try_from(r.entity_type) {
            Ok(EntityType::Unspecified) => EntityType::User,
            Ok(t) => t,
            Err(_) => {
                return Err(Status::invalid_argument(format!(
                    "entity_type {} is not a known EntityType (USER=1, GROUP=2, ENTITLEMENT=3, MEMBERSHIP=4)",
                    r.entity_type
                )));
            }
        };
        if let Some(as_of) = &r.as_of {
            let (reader, p) = self.point(as_of).await?;
            let key = (
                source_id.to_owned(),
                entity_type as i32,
                external_id.to_owned(),
            );
            let (identity, history_seqs) = reader.identity(&key, &p).await?;
            return Ok(Response::new(GetIdentityResponse {
                identity: Some(identity),
                presence: govledger_proto::v1::PresenceStatus::Unspecified as i32,
                presence_reason: format!(
                    "presence as of {} depends on the source's runs then: ask GetSource with the same as_of",
                    crate::asof::describe(&p)
                ),
                as_of: Some(p),
                history_seqs,
            }));
        }
        let Some(source) = self.store.source(source_id).map_err(internal)? else {
            return Err(Status::not_found(format!(
                "no source {source_id:?} in the ledger yet; ListSources shows the known ones"
            )));
        };
        let Some(identity) = self
            .store
            .identity(source_id, entity_type as i32, external_id)
            .map_err(internal)?
        else {
            return Err(Status::not_found(format!(
                "source {source_id:?} never reported {} {external_id:?}",
                govledger_projector::keys::entity_label(entity_type as i32)
            )));
        };
        let (presence, why) = verdict::presence(&identity, &source);
        Ok(Response::new(GetIdentityResponse {
            identity: Some(identity),
            presence: presence as i32,
            presence_reason: why,
            ..Default::default()
        }))
    }

    async fn get_ledger_status(
        &self,
        req: Request<GetLedgerStatusRequest>,
    ) -> Result<Response<LedgerStatus>, Status> {
        let (meta, state_digest) = if req.get_ref().with_digest {
            let store = self.store.clone();
            tokio::task::spawn_blocking(move || store.digest_at())
                .await
                .map_err(|e| Status::internal(format!("digest task failed: {e}")))?
                .map_err(internal)?
        } else {
            (self.store.meta().map_err(internal)?, String::new())
        };
        let (mut stream_last_seq, mut stream_messages) = (0, 0);
        if let Some(js) = &self.js {
            let mut stream = js.get_stream(&self.stream).await.map_err(|e| {
                Status::unavailable(format!(
                    "cannot read stream {} from NATS: {e}; is NATS reachable?",
                    self.stream
                ))
            })?;
            let info = stream.info().await.map_err(|e| {
                Status::unavailable(format!("cannot read stream {} info: {e}", self.stream))
            })?;
            stream_last_seq = info.state.last_sequence;
            stream_messages = info.state.messages;
        }
        let tree =
            govledger_projector::merkle::Frontier::from_parts(meta.merkle_size, &meta.merkle_peaks)
                .ok_or_else(|| {
                    Status::internal(
                        "the stored Merkle frontier is inconsistent; rebuild the projection",
                    )
                })?;
        Ok(Response::new(LedgerStatus {
            merkle_root: govledger_projector::merkle::hex(&tree.root()),
            merkle_size: tree.size(),
            checkpoint_public_key: self
                .checkpointer
                .as_ref()
                .map(|c| c.public_key_hex())
                .unwrap_or_default(),
            meta: Some(meta),
            state_digest,
            stream_last_seq,
            stream_messages,
            stream_name: self.stream.clone(),
        }))
    }

    async fn list_poison_events(
        &self,
        req: Request<ListPoisonEventsRequest>,
    ) -> Result<Response<ListPoisonEventsResponse>, Status> {
        let r = req.get_ref();
        if r.limit > LIST_POISON_MAX {
            return Err(Status::invalid_argument(format!(
                "limit {} is over the maximum {LIST_POISON_MAX}",
                r.limit
            )));
        }
        let limit = if r.limit == 0 {
            LIST_POISON_DEFAULT
        } else {
            r.limit
        };
        let events = self
            .store
            .poison(r.after_seq, limit as usize)
            .map_err(internal)?;
        Ok(Response::new(ListPoisonEventsResponse { events }))
    }

    async fn trigger_sync(
        &self,
        req: Request<TriggerSyncRequest>,
    ) -> Result<Response<TriggerSyncResponse>, Status> {
        let r = req.get_ref();
        let id = require("source_id", &r.source_id)?;
        let mode = match SyncMode::try_from(r.mode) {
            Ok(SyncMode::Unspecified | SyncMode::Full) => SyncMode::Full,
            Ok(SyncMode::Delta) => SyncMode::Delta,
            Err(_) => {
                return Err(Status::invalid_argument(format!(
                    "mode {} is not a SyncMode (FULL=1, DELTA=2)",
                    r.mode
                )));
            }
        };
        match self.syncs.trigger(id, mode).await {
            Ok(run_id) => Ok(Response::new(TriggerSyncResponse { run_id })),
            Err(e @ TriggerError::NotConfigured(_)) => Err(Status::not_found(e.to_string())),
            Err(e @ TriggerError::AlreadyRunning { .. }) => {
                Err(Status::failed_precondition(e.to_string()))
            }
            Err(e @ TriggerError::Stopped(_)) => Err(Status::unavailable(e.to_string())),
            Err(e @ TriggerError::NoBaseline(_)) => Err(Status::failed_precondition(e.to_string())),
        }
    }

    async fn submit_action(
        &self,
        req: Request<SubmitActionRequest>,
    ) -> Result<Response<SubmitActionResponse>, Status> {
        let r = req.into_inner();
        let source = require("source_id", &r.source_id)?.to_owned();
        let Some(request) = r.request else {
            return Err(Status::invalid_argument(
                "request is required (an ActionRequested)",
            ));
        };
        match self.actions.submit(&self.store, &source, request).await {
            Ok((action_id, created)) => {
                Ok(Response::new(SubmitActionResponse { action_id, created }))
            }
            Err(e) => Err(submit_status(e)),
        }
    }

    async fn get_action(
        &self,
        req: Request<GetActionRequest>,
    ) -> Result<Response<GetActionResponse>, Status> {
        let id = require("action_id", &req.get_ref().action_id)?;
        if let Some(as_of) = &req.get_ref().as_of {
            return Ok(Response::new(self.action_view_at(id, as_of).await?));
        }
        let Some(a) = self.store.action(id).map_err(internal)? else {
            return Err(Status::not_found(format!(
                "no action {id:?} in the ledger (it may not be projected yet; ListActions(source_id) lists a source's actions)"
            )));
        };
        Ok(Response::new(self.action_view(a, now_us())?))
    }

    async fn list_actions(
        &self,
        req: Request<ListActionsRequest>,
    ) -> Result<Response<ListActionsResponse>, Status> {
        let r = req.get_ref();
        let source = require("source_id", &r.source_id)?;
        if r.limit > LIST_RUNS_MAX {
            return Err(Status::invalid_argument(format!(
                "limit {} is over the maximum {LIST_RUNS_MAX}",
                r.limit
            )));
        }
        let want = ActionOutcome::try_from(r.outcome).map_err(|_| {
            Status::invalid_argument(format!("outcome {} is not an ActionOutcome", r.outcome))
        })?;
        let limit = if r.limit == 0 { 100 } else { r.limit } as usize;
        let now = now_us();
        let mut actions = Vec::new();
        for id in self
            .store
            .action_ids_of(source, READINESS_ACTIONS_MAX)
            .map_err(internal)?
        {
            if actions.len() >= limit {
                break;
            }
            if let Some(a) = self.store.action(&id).map_err(internal)? {
                let v = self.action_view(a, now)?;
                if want == ActionOutcome::Unspecified || v.outcome == want as i32 {
                    actions.push(v);
                }
            }
        }
        Ok(Response::new(ListActionsResponse { actions }))
    }

    async fn report_external_attempt(
        &self,
        req: Request<ReportExternalAttemptRequest>,
    ) -> Result<Response<ReportExternalAttemptResponse>, Status> {
        let r = req.into_inner();
        let id = require("action_id", &r.action_id)?.to_owned();
        let Some(a) = self.store.action(&id).map_err(internal)? else {
            return Err(Status::not_found(format!(
                "no action {id:?}: submit it with external=true first (SubmitAction)"
            )));
        };
        if a.concluded_seq != 0 {
            return Err(Status::failed_precondition(format!(
                "action {id} is already concluded; submit a new action (new idempotency key) for a new write"
            )));
        }
        let class =
            crate::workers::action_intake::error_class(r.error_class).map_err(submit_status)?;
        let attempt = ActionAttempted {
            step: r.step.max(1),
            request_summary: r.request_summary,
            http_status: r.http_status,
            error_class: class,
            latency_ms: r.latency_ms,
            external: true,
        };
        self.actions
            .report_external(&self.store, &a, attempt)
            .await
            .map_err(submit_status)?;
        Ok(Response::new(ReportExternalAttemptResponse {}))
    }

    type WatchAlertsStream =
        std::pin::Pin<Box<dyn futures::Stream<Item = Result<Alert, Status>> + Send + 'static>>;

    async fn watch_alerts(
        &self,
        req: Request<WatchAlertsRequest>,
    ) -> Result<Response<Self::WatchAlertsStream>, Status> {
        let sources = req.into_inner().source_ids;
        let rx = self.alerts.subscribe();
        let stream = tokio_stream::wrappers::BroadcastStream::new(rx).filter_map(move |r| {
            let keep = match &r {
                Ok(a) => sources.is_empty() || sources.contains(&a.source_id),
                Err(_) => true,
            };
            let item = match r {
                Ok(a) => Ok(a),
                Err(tokio_stream::wrappers::errors::BroadcastStreamRecvError::Lagged(n)) => Ok(Alert {
                    message: format!("{n} alerts skipped: this watcher fell behind; the ledger still holds every decision"),
                    ..Default::default()
                }),
            };
            futures::future::ready(keep.then_some(item))
        });
        Ok(Response::new(Box::pin(stream)))
    }

    type ReplayStream = tokio_stream::wrappers::ReceiverStream<Result<ReplayItem, Status>>;

    async fn replay(
        &self,
        req: Request<ReplayRequest>,
    ) -> Result<Response<Self::ReplayStream>, Status> {
        let r = req.into_inner();
        if r.to_seq > 0 && r.from_seq > r.to_seq {
            return Err(Status::invalid_argument(format!(
                "from_seq {} is after to_seq {}",
                r.from_seq, r.to_seq
            )));
        }
        if r.to_us > 0 && r.from_us > r.to_us {
            return Err(Status::invalid_argument("from_us is after to_us"));
        }
        if !r.source_id.is_empty() {
            govledger_ingest::subject::validate_source_id(&r.source_id)
                .map_err(|e| Status::invalid_argument(format!("source_id: {e}")))?;
        }
        let Some(js) = self.js.clone() else {
            return Err(Status::unavailable(
                "this process has no NATS connection to replay from",
            ));
        };
        let (tx, rx) = tokio::sync::mpsc::channel(crate::replay::REPLAY_BUFFER);
        tokio::spawn(crate::replay::replay(js, self.stream.clone(), r, tx));
        Ok(Response::new(tokio_stream::wrappers::ReceiverStream::new(
            rx,
        )))
    }

    async fn get_inclusion_proof(
        &self,
        req: Request<GetInclusionProofRequest>,
    ) -> Result<Response<InclusionProof>, Status> {
        let r = req.into_inner();
        let size = if r.tree_size == 0 {
            self.store.meta().map_err(internal)?.merkle_size
        } else {
            r.tree_size
        };
        if r.seq == 0 || r.seq > size {
            return Err(Status::invalid_argument(format!(
                "seq {} is not within the tree of {size} messages (sequences start at 1)",
                r.seq
            )));
        }
        let Some(js) = &self.js else {
            return Err(Status::unavailable(
                "no NATS connection to read the stream from",
            ));
        };
        let leaves = crate::replay::leaves(js, &self.stream, size).await?;
        let m = (r.seq - 1) as usize;
        let proof = merkle::inclusion_proof(m, &leaves);
        Ok(Response::new(InclusionProof {
            seq: r.seq,
            tree_size: size,
            leaf_hash: merkle::hex(&leaves[m]),
            path: proof.iter().map(merkle::hex).collect(),
            root: merkle::hex(&merkle::root(&leaves)),
        }))
    }

    async fn get_consistency_proof(
        &self,
        req: Request<GetConsistencyProofRequest>,
    ) -> Result<Response<ConsistencyProof>, Status> {
        let r = req.into_inner();
        if r.size1 == 0 || r.size1 > r.size2 {
            return Err(Status::invalid_argument(format!(
                "need 0 < size1 <= size2 (got {} and {})",
                r.size1, r.size2
            )));
        }
        let Some(js) = &self.js else {
            return Err(Status::unavailable(
                "no NATS connection to read the stream from",
            ));
        };
        let leaves = crate::replay::leaves(js, &self.stream, r.size2).await?;
        let proof = merkle::consistency_proof(r.size1 as usize, &leaves);
        Ok(Response::new(ConsistencyProof {
            size1: r.size1,
            size2: r.size2,
            root1: merkle::hex(&merkle::root(&leaves[..r.size1 as usize])),
            root2: merkle::hex(&merkle::root(&leaves)),
            path: proof.iter().map(merkle::hex).collect(),
        }))
    }

    async fn create_checkpoint(
        &self,
        _req: Request<CreateCheckpointRequest>,
    ) -> Result<Response<Checkpoint>, Status> {
        let Some(c) = &self.checkpointer else {
            return Err(Status::unavailable(
                "checkpoints are not enabled in this process",
            ));
        };
        c.checkpoint()
            .await
            .map(Response::new)
            .map_err(|e| Status::unavailable(format!("could not publish the checkpoint: {e}")))
    }

    async fn list_checkpoints(
        &self,
        req: Request<ListCheckpointsRequest>,
    ) -> Result<Response<ListCheckpointsResponse>, Status> {
        let limit = req.get_ref().limit;
        if limit > crate::checkpoints::LIST_CHECKPOINTS_MAX {
            return Err(Status::invalid_argument(format!(
                "limit {limit} is over the maximum {}",
                crate::checkpoints::LIST_CHECKPOINTS_MAX
            )));
        }
        let Some(c) = &self.checkpointer else {
            return Err(Status::unavailable(
                "checkpoints are not enabled in this process",
            ));
        };
        let checkpoints = c
            .list(if limit == 0 { 20 } else { limit })
            .await
            .map_err(|e| Status::unavailable(format!("cannot read checkpoints: {e}")))?;
        Ok(Response::new(ListCheckpointsResponse { checkpoints }))
    }

    type ExportEvidenceStream =
        tokio_stream::wrappers::ReceiverStream<Result<EvidenceChunk, Status>>;

    async fn export_evidence(
        &self,
        req: Request<ExportEvidenceRequest>,
    ) -> Result<Response<Self::ExportEvidenceStream>, Status> {
        let mut r = req.into_inner();
        let source = require("source_id", &r.source_id)?;
        govledger_ingest::subject::validate_source_id(source)
            .map_err(|e| Status::invalid_argument(format!("source_id: {e}")))?;
        if r.external_id.is_empty() {
            if r.entity_type != 0 {
                return Err(Status::invalid_argument(
                    "entity_type without external_id: name the identity, or leave both empty to export the whole source",
                ));
            }
        } else {
            r.entity_type = match EntityType::try_from(r.entity_type) {
                Ok(EntityType::Unspecified) => EntityType::User as i32,
                Ok(t) => t as i32,
                Err(_) => {
                    return Err(Status::invalid_argument(format!(
                        "entity_type {} is not a known EntityType (USER=1, GROUP=2, ENTITLEMENT=3, MEMBERSHIP=4)",
                        r.entity_type
                    )));
                }
            };
        }
        if r.from_us < 0 || r.to_us < 0 || (r.to_us > 0 && r.from_us > r.to_us) {
            return Err(Status::invalid_argument(
                "from_us and to_us must be ≥ 0 and from_us ≤ to_us",
            ));
        }
        let (Some(reader), Some(c)) = (&self.asof, &self.checkpointer) else {
            return Err(Status::failed_precondition(
                "an export reads the stream and signs with the checkpoint key; this process has neither",
            ));
        };
        let bundle = crate::evidence::export(
            crate::evidence::ExportDeps {
                store: &self.store,
                reader,
                checkpointer: c,
                stream: &self.stream,
            },
            &r,
        )
        .await?;
        let bytes = serde_json::to_vec_pretty(&bundle)
            .map_err(|e| Status::internal(format!("cannot encode the bundle: {e}")))?;
        let chunks = crate::evidence::chunks(bytes);
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        tokio::spawn(async move {
            for data in chunks {
                if tx.send(Ok(EvidenceChunk { data })).await.is_err() {
                    return;
                }
            }
        });
        Ok(Response::new(tokio_stream::wrappers::ReceiverStream::new(
            rx,
        )))
    }

    async fn verify_range(
        &self,
        req: Request<VerifyRangeRequest>,
    ) -> Result<Response<VerifyRangeResponse>, Status> {
        let r = req.into_inner();
        let (Some(js), Some(c)) = (&self.js, &self.checkpointer) else {
            return Err(Status::failed_precondition(
                "verification reads the stream and the checkpoints; this process has neither",
            ));
        };
        let applied = self.store.meta().map_err(internal)?.last_applied_seq;
        let to = if r.to_seq == 0 { applied } else { r.to_seq };
        if to > applied {
            return Err(Status::failed_precondition(format!(
                "to_seq {to} is past what the projector has applied ({applied}); verify up to {applied} or retry later"
            )));
        }
        if to > crate::verify::VERIFY_MESSAGES_MAX {
            return Err(Status::invalid_argument(format!(
                "a verification reads at most {} messages; verify a shorter range",
                crate::verify::VERIFY_MESSAGES_MAX
            )));
        }
        let from = r.from_seq.max(1);
        if from > to && to > 0 {
            return Err(Status::invalid_argument(format!(
                "from_seq {from} is after to_seq {to}"
            )));
        }
        let stream = if r.stream.is_empty() {
            self.stream.clone()
        } else {
            if r.stream.contains(['.', '*', '>', ' ', '/', '\\']) {
                return Err(Status::invalid_argument(format!(
                    "stream {:?} is not a valid JetStream stream name",
                    r.stream
                )));
            }
            r.stream
        };
        let mut cps = c
            .all(crate::verify::VERIFY_CHECKPOINTS_MAX)
            .await
            .map_err(|e| Status::unavailable(format!("cannot read checkpoints: {e}")))?;
        cps.retain(|cp| cp.stream == self.stream);
        if let Err(e) = crate::checkpoints::verify_chain(&cps, &c.public_key_hex()) {
            return Ok(Response::new(VerifyRangeResponse {
                ok: false,
                problem: format!("the signed checkpoints do not verify: {e}"),
                stream,
                from_seq: from,
                to_seq: to,
                ..Default::default()
            }));
        }
        Ok(Response::new(
            crate::verify::verify_range(js, &self.store, cps, &stream, from, to).await,
        ))
    }

    async fn check_readiness(
        &self,
        req: Request<CheckReadinessRequest>,
    ) -> Result<Response<CheckReadinessResponse>, Status> {
        let req = req.into_inner();
        let identities = req.identity_external_ids;
        let mut ids = req.source_ids;
        if ids.len() > LIST_RUNS_MAX as usize {
            return Err(Status::invalid_argument(format!(
                "at most {LIST_RUNS_MAX} sources per readiness check"
            )));
        }
        if ids.iter().any(|i| i.trim().is_empty()) {
            return Err(Status::invalid_argument(
                "source_ids must not contain empty ids",
            ));
        }
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
                    self.store.run(&st.last_finished_run_id).map_err(internal)?
                }
                _ => None,
            };
            scope.push((id, status, last_finished));
        }
        let mut blockers = readiness_blockers(&scope);
        for (id, status, _) in &scope {
            if status.is_some() {
                blockers.extend(self.action_blockers(id, &identities, now)?);
            }
        }
        Ok(Response::new(CheckReadinessResponse {
            ready: blockers.is_empty(),
            blockers,
            sources: scope.into_iter().filter_map(|(_, s, _)| s).collect(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use govledger_proto::v1::{Reason, SourceState};

    fn status(freshness: Freshness, age_ms: i64) -> Option<SourceStatus> {
        Some(SourceStatus {
            source_id: "hr".into(),
            state: Some(SourceState::default()),
            freshness: freshness as i32,
            last_complete_age_ms: age_ms,
            freshness_objective_ms: 3_600_000,
            configured: true,
            running_run_id: String::new(),
        })
    }

    fn codes(scope: &[(String, Option<SourceStatus>, Option<RunState>)]) -> Vec<String> {
        readiness_blockers(scope)
            .into_iter()
            .map(|b| b.code)
            .collect()
    }

    #[test]
    fn readiness_rules() {
        let complete = RunState {
            run_id: "r1".into(),
            verdict: Verdict::Complete as i32,
            ..Default::default()
        };
        let incomplete = RunState {
            run_id: "r2".into(),
            verdict: Verdict::Incomplete as i32,
            reasons: vec![Reason {
                code: 1,
                message: "1 page failed".into(),
            }],
            ..Default::default()
        };
        let id = || "hr".to_string();
        assert!(codes(&[(id(), status(Freshness::Fresh, 10), Some(complete.clone()))]).is_empty());
        assert_eq!(codes(&[]), vec!["NO_SOURCES"]);
        assert_eq!(codes(&[(id(), None, None)]), vec!["UNKNOWN_SOURCE"]);
        assert_eq!(
            codes(&[(id(), status(Freshness::NeverComplete, 0), None)]),
            vec!["NEVER_COMPLETE"]
        );
        let b =
            readiness_blockers(&[(id(), status(Freshness::Stale, 7_200_000), Some(incomplete))]);
        let got: Vec<&str> = b.iter().map(|b| b.code.as_str()).collect();
        assert_eq!(got, vec!["STALE", "LAST_RUN_NOT_COMPLETE"]);
        assert!(b[0].message.contains("2h 0m old"), "{}", b[0].message);
        assert!(
            b[1].message.contains("r2 ended INCOMPLETE: 1 page failed"),
            "{}",
            b[1].message
        );
    }
}
