//! The tonic adapter: `impl Ledger for LedgerApi`. Each RPC validates its
//! request ([`super::validate`]), calls one query or domain function
//! ([`super::queries`], the action and sync managers, the deletions desk,
//! `crate::audit`) and
//! maps the result; errors become statuses in one place ([`super::status`]).
//! Nothing here writes to sled.

use std::sync::Arc;

use futures::StreamExt as _;
use govledger_projector::Store;
use govledger_proto::v1::{
    AcceptDeletionsRequest, AcceptDeletionsResponse, ActionAttempted, AddCosignatureRequest,
    AddCosignatureResponse, Alert, CheckReadinessRequest, CheckReadinessResponse, Checkpoint,
    ConsistencyProof, CreateCheckpointRequest, EvidenceChunk, ExportEvidenceRequest,
    GetActionRequest, GetActionResponse, GetConsistencyProofRequest, GetIdentityRequest,
    GetIdentityResponse, GetInclusionProofRequest, GetLedgerStatusRequest, GetRunRequest,
    GetRunResponse, GetSourceRequest, GetSourceResponse, InclusionProof, LedgerStatus,
    ListActionsRequest, ListActionsResponse, ListCheckpointsRequest, ListCheckpointsResponse,
    ListPoisonEventsRequest, ListPoisonEventsResponse, ListRunsRequest, ListRunsResponse,
    ListSourcesRequest, ListSourcesResponse, ReplayItem, ReplayRequest,
    ReportExternalAttemptRequest, ReportExternalAttemptResponse, SetProjectorPausedRequest,
    SetProjectorPausedResponse, SubmitActionRequest, SubmitActionResponse, TriggerSyncRequest,
    TriggerSyncResponse, VerifyRangeRequest, VerifyRangeResponse, WatchAlertsRequest,
    ledger_server::Ledger,
};
use tonic::{Request, Response, Status};

use super::{queries::Queries, validate};
use crate::{
    audit::{
        asof::AsOfReader,
        checkpoints::{Checkpointer, LIST_CHECKPOINTS_MAX},
        evidence::{self, ExportDeps},
        replay,
    },
    auth::guard::{log_call, principal},
    workers::action_intake::ActionManager,
    workers::deletions::DeletionsDesk,
    workers::scheduler::SyncManager,
};

/// Default and largest page sizes of list calls.
pub const LIST_RUNS_DEFAULT: u32 = 20;
pub const LIST_RUNS_MAX: u32 = 1_000;
pub const LIST_POISON_DEFAULT: u32 = 100;
pub const LIST_POISON_MAX: u32 = 1_000;
/// Default page size of `ListActions` (its largest is [`LIST_RUNS_MAX`]).
pub const LIST_ACTIONS_DEFAULT: u32 = 100;
/// Default page size of `ListCheckpoints`.
pub const LIST_CHECKPOINTS_DEFAULT: u32 = 20;

/// The `govledger.v1.Ledger` service.
pub struct LedgerApi {
    q: Arc<Queries>,
    /// The projector's pause switch (SetProjectorPaused).
    pause: tokio::sync::watch::Sender<bool>,
    actions: ActionManager,
    deletions: DeletionsDesk,
    alerts: tokio::sync::broadcast::Sender<Alert>,
    storage_full: tokio::sync::watch::Receiver<Option<String>>,
}

impl LedgerApi {
    /// Back-pressure while a store's disk is full: a write is refused with
    /// UNAVAILABLE (retry once space returns) instead of being taken and lost.
    fn writable(&self) -> Result<(), Status> {
        match self.storage_full.borrow().as_deref() {
            Some(why) => Err(Status::unavailable(format!(
                "{why}; this write is refused until space returns (retry then); nothing was recorded"
            ))),
            None => Ok(()),
        }
    }
}

/// Everything the API answers from.
pub struct ApiParts {
    /// The leaver check (`[leavers]`), if configured.
    pub leavers: Option<crate::config::leavers::LeaverRule>,
    pub store: Arc<Store>,
    pub js: async_nats::jetstream::Context,
    pub stream: String,
    pub abandon_after_ms: u64,
    pub syncs: SyncManager,
    pub actions: ActionManager,
    pub deletions: DeletionsDesk,
    pub alerts: tokio::sync::broadcast::Sender<Alert>,
    pub checkpointer: Arc<Checkpointer>,
    /// Scratch space of point-in-time source answers (inside the data folder).
    pub scratch_dir: std::path::PathBuf,
    /// `audit.source_snapshots_kept`.
    pub source_snapshots_kept: usize,
    /// Why the projector stopped, once it has (GetLedgerStatus says it).
    pub projector_stopped: tokio::sync::watch::Receiver<Option<String>>,
    /// `Some(why)` while a store's disk is full: writes are refused.
    pub storage_full: tokio::sync::watch::Receiver<Option<String>>,
    /// The projector's pause switch.
    pub pause: tokio::sync::watch::Sender<bool>,
    /// What the health watch last found (the stream's position, the lag).
    pub health: tokio::sync::watch::Receiver<crate::serve::health::HealthState>,
}

impl LedgerApi {
    pub fn new(p: ApiParts) -> Self {
        let asof = AsOfReader {
            store: p.store.clone(),
            js: p.js.clone(),
            stream: p.stream.clone(),
            snapshots: crate::audit::source_snapshots::Snapshots {
                dir: p.scratch_dir.join("source-snapshots"),
                kept: p.source_snapshots_kept,
            },
            scratch_dir: p.scratch_dir,
            source_folds: tokio::sync::Semaphore::new(1),
        };
        let stream_state =
            crate::api::stream_state::StreamState::new(p.js.clone(), p.stream.clone());
        Self {
            pause: p.pause,
            q: Arc::new(Queries {
                store: p.store,
                js: p.js,
                stream: p.stream,
                abandon_after_us: (p.abandon_after_ms as i64).saturating_mul(1_000),
                syncs: p.syncs,
                asof,
                stream_state,
                checkpointer: p.checkpointer,
                projector_stopped: p.projector_stopped,
                health: p.health,
                leavers: p.leavers,
            }),
            actions: p.actions,
            deletions: p.deletions,
            alerts: p.alerts,
            storage_full: p.storage_full,
        }
    }
}

impl LedgerApi {
    /// The queries, shared with the HTTP listener.
    pub fn queries(&self) -> Arc<Queries> {
        self.q.clone()
    }
}

#[tonic::async_trait]
impl Ledger for LedgerApi {
    async fn set_projector_paused(
        &self,
        req: Request<SetProjectorPausedRequest>,
    ) -> Result<Response<SetProjectorPausedResponse>, Status> {
        let p = principal(&req)?;
        let r = req.get_ref();
        let result = validate::reason(&r.reason)
            .map_err(Status::from)
            .map(|reason| {
                self.pause.send_replace(r.paused);
                let applied_seq = self.q.store.meta().map_or(0, |m| m.last_applied_seq);
                tracing::warn!(principal = %p.name, paused = r.paused, reason, applied_seq,
                "projector {} by an admin", if r.paused { "paused" } else { "resumed" });
                Response::new(SetProjectorPausedResponse {
                    paused: r.paused,
                    applied_seq,
                })
            });
        log_call(
            &p,
            "SetProjectorPaused",
            if r.paused { "pause" } else { "resume" },
            &result,
        );
        result
    }

    async fn list_sources(
        &self,
        _req: Request<ListSourcesRequest>,
    ) -> Result<Response<ListSourcesResponse>, Status> {
        let sources = self.q.list_sources().await?;
        Ok(Response::new(ListSourcesResponse { sources }))
    }

    async fn get_source(
        &self,
        req: Request<GetSourceRequest>,
    ) -> Result<Response<GetSourceResponse>, Status> {
        let r = req.get_ref();
        let id = validate::source_id(&r.source_id)?;
        let at = validate::as_of_opt(r.as_of.as_ref())?;
        Ok(Response::new(self.q.source(id, at).await?))
    }

    async fn list_runs(
        &self,
        req: Request<ListRunsRequest>,
    ) -> Result<Response<ListRunsResponse>, Status> {
        let r = req.get_ref();
        let id = validate::source_id(&r.source_id)?;
        let limit = validate::page_limit(r.limit, LIST_RUNS_DEFAULT, LIST_RUNS_MAX)?;
        let runs = self.q.runs(id, limit).await?;
        Ok(Response::new(ListRunsResponse { runs }))
    }

    async fn get_run(
        &self,
        req: Request<GetRunRequest>,
    ) -> Result<Response<GetRunResponse>, Status> {
        let id = validate::required("run_id", &req.get_ref().run_id)?;
        Ok(Response::new(self.q.run(id)?))
    }

    async fn get_identity(
        &self,
        req: Request<GetIdentityRequest>,
    ) -> Result<Response<GetIdentityResponse>, Status> {
        let r = req.get_ref();
        let source_id = validate::source_id(&r.source_id)?;
        let external_id = validate::required("external_id", &r.external_id)?;
        let entity_type = validate::entity_type(r.entity_type)?;
        let at = validate::as_of_opt(r.as_of.as_ref())?;
        let answer = self
            .q
            .identity(source_id, entity_type, external_id, at)
            .await?;
        Ok(Response::new(answer))
    }

    async fn get_ledger_status(
        &self,
        req: Request<GetLedgerStatusRequest>,
    ) -> Result<Response<LedgerStatus>, Status> {
        let status = self.q.ledger_status(req.get_ref().with_digest).await?;
        Ok(Response::new(status))
    }

    async fn list_poison_events(
        &self,
        req: Request<ListPoisonEventsRequest>,
    ) -> Result<Response<ListPoisonEventsResponse>, Status> {
        let r = req.get_ref();
        let limit = validate::page_limit(r.limit, LIST_POISON_DEFAULT, LIST_POISON_MAX)?;
        let events = self.q.poison(r.after_seq, limit)?;
        Ok(Response::new(ListPoisonEventsResponse { events }))
    }

    async fn trigger_sync(
        &self,
        req: Request<TriggerSyncRequest>,
    ) -> Result<Response<TriggerSyncResponse>, Status> {
        self.writable()?;
        let p = principal(&req)?;
        let r = req.get_ref();
        let result = async {
            let id = validate::source_id(&r.source_id)?;
            let mode = validate::sync_mode(r.mode)?;
            let t = self.q.syncs.trigger(id, mode, &p.name).await?;
            Ok(Response::new(TriggerSyncResponse {
                run_id: t.run_id,
                seq: t.seq,
            }))
        }
        .await;
        log_call(&p, "TriggerSync", &r.source_id, &result);
        result
    }

    async fn submit_action(
        &self,
        req: Request<SubmitActionRequest>,
    ) -> Result<Response<SubmitActionResponse>, Status> {
        self.writable()?;
        let p = principal(&req)?;
        let mut r = req.into_inner();
        let target = format!(
            "{}/{}",
            r.source_id,
            r.request
                .as_ref()
                .map_or("", |a| a.identity_external_id.as_str())
        );
        let result = async {
            let source = validate::source_id(&r.source_id)?.to_owned();
            // Who asked is who authenticated, never what the client wrote.
            if let Some(a) = r.request.as_mut() {
                a.requested_by = p.name.clone();
            }
            let now_us = chrono::Utc::now().timestamp_micros();
            let request = validate::action_request(r.request, now_us)?;
            let (action_id, created, seq) =
                self.actions.submit(&self.q.store, &source, request).await?;
            Ok(Response::new(SubmitActionResponse {
                action_id,
                created,
                seq,
            }))
        }
        .await;
        log_call(&p, "SubmitAction", &target, &result);
        result
    }

    async fn get_action(
        &self,
        req: Request<GetActionRequest>,
    ) -> Result<Response<GetActionResponse>, Status> {
        let r = req.get_ref();
        let id = validate::required("action_id", &r.action_id)?;
        let at = validate::as_of_opt(r.as_of.as_ref())?;
        Ok(Response::new(self.q.action(id, at).await?))
    }

    async fn list_actions(
        &self,
        req: Request<ListActionsRequest>,
    ) -> Result<Response<ListActionsResponse>, Status> {
        let r = req.get_ref();
        let source = validate::source_id(&r.source_id)?;
        let limit = validate::page_limit(r.limit, LIST_ACTIONS_DEFAULT, LIST_RUNS_MAX)?;
        let want = validate::action_outcome(r.outcome)?;
        let actions = self.q.actions(source, want, limit as usize)?;
        Ok(Response::new(ListActionsResponse { actions }))
    }

    async fn report_external_attempt(
        &self,
        req: Request<ReportExternalAttemptRequest>,
    ) -> Result<Response<ReportExternalAttemptResponse>, Status> {
        self.writable()?;
        let p = principal(&req)?;
        let r = req.into_inner();
        let target = r.action_id.clone();
        let result = async {
            let id = validate::required("action_id", &r.action_id)?.to_owned();
            let a = self.q.action_open_for_report(&id)?;
            let steps = a
                .request
                .as_ref()
                .map_or(1, |q| crate::workers::action_intake::steps_of(q).len());
            validate::external_attempt(r.step, steps, r.http_status, &r.request_summary)?;
            let class = crate::workers::action_intake::error_class(r.error_class)?;
            let attempt = ActionAttempted {
                step: r.step,
                request_summary: r.request_summary,
                http_status: r.http_status,
                error_class: class,
                latency_ms: r.latency_ms,
                external: true,
                reported_by: p.name.clone(),
            };
            self.actions
                .report_external(&self.q.store, &a, attempt)
                .await?;
            Ok(Response::new(ReportExternalAttemptResponse {}))
        }
        .await;
        log_call(&p, "ReportExternalAttempt", &target, &result);
        result
    }

    type WatchAlertsStream =
        std::pin::Pin<Box<dyn futures::Stream<Item = Result<Alert, Status>> + Send + 'static>>;

    async fn watch_alerts(
        &self,
        req: Request<WatchAlertsRequest>,
    ) -> Result<Response<Self::WatchAlertsStream>, Status> {
        let r = req.into_inner();
        let sources = r.source_ids;
        validate::source_ids("source_ids", &sources, validate::IDS_MAX)?;
        // Operational alerts (NATS, storage, the projector) come live from
        // this process; decisions from the alerts stream, where each is
        // stored once (from `after_alert_seq` on, so a reconnecting client
        // misses none).
        let rx = self.alerts.subscribe();
        let stored = crate::alerts::watch(&self.q.js, r.after_alert_seq)
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?;
        // A standing condition is told at once to a watcher that connects
        // after it began: the projector has stopped and will not fold again.
        let standing: Vec<Result<Alert, Status>> = self
            .q
            .projector_stopped
            .borrow()
            .iter()
            .map(|message| {
                Ok(Alert {
                    kind: govledger_proto::v1::alert::Kind::ProjectorStopped as i32,
                    message: message.clone(),
                    ..Default::default()
                })
            })
            .collect();
        let operational = tokio_stream::wrappers::BroadcastStream::new(rx).filter_map(|r| {
            let item = match r {
                // Decisions reach watchers from the alerts stream.
                Ok(a) if crate::alerts::is_decision(&a) => None,
                Ok(a) => Some(Ok(a)),
                Err(tokio_stream::wrappers::errors::BroadcastStreamRecvError::Lagged(n)) => {
                    Some(Ok(Alert {
                        message: format!(
                            "{n} operational alerts skipped: this watcher fell behind"
                        ),
                        ..Default::default()
                    }))
                }
            };
            futures::future::ready(item)
        });
        let live = futures::stream::select(operational, stored.map(Ok)).filter(move |r| {
            // Ledger-wide alerts (no source: NATS, the projector, poison) reach every watcher.
            let keep = match r {
                Ok(a) => {
                    sources.is_empty() || a.source_id.is_empty() || sources.contains(&a.source_id)
                }
                Err(_) => true,
            };
            futures::future::ready(keep)
        });
        Ok(Response::new(Box::pin(
            futures::stream::iter(standing).chain(live),
        )))
    }

    type ReplayStream = tokio_stream::wrappers::ReceiverStream<Result<ReplayItem, Status>>;

    async fn replay(
        &self,
        req: Request<ReplayRequest>,
    ) -> Result<Response<Self::ReplayStream>, Status> {
        let r = req.into_inner();
        validate::replay(&r)?;
        let (tx, rx) = tokio::sync::mpsc::channel(replay::REPLAY_BUFFER);
        tokio::spawn(replay::replay(
            self.q.js.clone(),
            self.q.stream.clone(),
            r,
            tx,
        ));
        Ok(Response::new(tokio_stream::wrappers::ReceiverStream::new(
            rx,
        )))
    }

    async fn get_inclusion_proof(
        &self,
        req: Request<GetInclusionProofRequest>,
    ) -> Result<Response<InclusionProof>, Status> {
        let r = req.into_inner();
        let size = self.q.tree_size(r.tree_size)?;
        validate::inclusion_seq(r.seq, size)?;
        Ok(Response::new(self.q.inclusion_proof(r.seq, size).await?))
    }

    async fn get_consistency_proof(
        &self,
        req: Request<GetConsistencyProofRequest>,
    ) -> Result<Response<ConsistencyProof>, Status> {
        let r = req.into_inner();
        validate::consistency_sizes(r.size1, r.size2)?;
        let proof = self.q.consistency_proof(r.size1, r.size2).await?;
        Ok(Response::new(proof))
    }

    async fn create_checkpoint(
        &self,
        req: Request<CreateCheckpointRequest>,
    ) -> Result<Response<Checkpoint>, Status> {
        let p = principal(&req)?;
        let result = async { Ok(Response::new(self.q.checkpoint(&p.name).await?)) }.await;
        log_call(&p, "CreateCheckpoint", &self.q.stream, &result);
        result
    }

    async fn add_cosignature(
        &self,
        req: Request<AddCosignatureRequest>,
    ) -> Result<Response<AddCosignatureResponse>, Status> {
        let p = principal(&req)?;
        let note = &req.get_ref().note;
        let result = async {
            if note.is_empty() || note.len() > 64 * 1024 {
                return Err(Status::invalid_argument(
                    "note is required: the checkpoint's signed note with the witnesses' cosignature lines (at most 64 KiB)",
                ));
            }
            let w = self.q.add_cosignature(note).await?;
            Ok(Response::new(AddCosignatureResponse {
                tree_size: w.size,
                root: w.root,
                witnesses: w.witnesses,
            }))
        }
        .await;
        log_call(&p, "AddCosignature", &self.q.stream, &result);
        result
    }

    async fn list_checkpoints(
        &self,
        req: Request<ListCheckpointsRequest>,
    ) -> Result<Response<ListCheckpointsResponse>, Status> {
        let limit = validate::page_limit(
            req.get_ref().limit,
            LIST_CHECKPOINTS_DEFAULT,
            LIST_CHECKPOINTS_MAX,
        )?;
        let checkpoints = if req.get_ref().key_handovers {
            self.q.key_handovers(limit).await?
        } else {
            self.q.checkpoints(limit).await?
        };
        Ok(Response::new(ListCheckpointsResponse { checkpoints }))
    }

    type ExportEvidenceStream =
        tokio_stream::wrappers::ReceiverStream<Result<EvidenceChunk, Status>>;

    async fn export_evidence(
        &self,
        req: Request<ExportEvidenceRequest>,
    ) -> Result<Response<Self::ExportEvidenceStream>, Status> {
        let p = principal(&req)?;
        let mut r = req.into_inner();
        validate::export(&mut r)?;
        let deps = ExportDeps {
            requested_by: &p.name,
            store: &self.q.store,
            reader: &self.q.asof,
            checkpointer: &self.q.checkpointer,
            stream: &self.q.stream,
        };
        let mut bundle = evidence::export(deps, &r).await?;
        if r.with_report {
            // Signed after the manifest: the page names the manifest's signature.
            let seal =
                crate::audit::report::seal(&bundle, |m| self.q.checkpointer.sign_manifest(m))
                    .map_err(|e| {
                        Status::internal(format!("rendering the report to seal it: {e}"))
                    })?;
            bundle.report = Some(seal);
        }
        let chunks = evidence::export::encode(&bundle)?;
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
        let to = self.q.verify_end(r.to_seq)?;
        let (from, stream) = validate::verify_range(&r, to, &self.q.stream)?;
        Ok(Response::new(self.q.verify_range(stream, from, to).await?))
    }

    async fn accept_deletions(
        &self,
        req: Request<AcceptDeletionsRequest>,
    ) -> Result<Response<AcceptDeletionsResponse>, Status> {
        self.writable()?;
        let p = principal(&req)?;
        let mut r = req.into_inner();
        // Who accepts is who authenticated, never what the client wrote.
        r.accepted_by = p.name.clone();
        let target = r.run_id.clone();
        let result = async {
            validate::accept_deletions(&r)?;
            Ok(Response::new(self.deletions.accept(r).await?))
        }
        .await;
        log_call(&p, "AcceptDeletions", &target, &result);
        result
    }

    async fn check_readiness(
        &self,
        req: Request<CheckReadinessRequest>,
    ) -> Result<Response<CheckReadinessResponse>, Status> {
        let req = req.into_inner();
        validate::readiness_scope(&req.source_ids, LIST_RUNS_MAX)?;
        validate::id_list("identity_external_ids", &req.identity_external_ids)?;
        let answer = self
            .q
            .readiness(req.source_ids, &req.identity_external_ids)
            .await?;
        Ok(Response::new(answer))
    }
}
