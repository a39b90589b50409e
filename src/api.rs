//! The gRPC API (package `govledger.v1`): answers from the sled projections.
//!
//! API Boundary: every request is validated here; errors use the status code a
//! client can act on (`InvalidArgument` for a malformed request, `NotFound` for
//! an unknown id, `Unavailable` when the stream cannot be asked) and a message
//! saying what to do. Nothing here writes to sled.

use std::sync::Arc;

use govledger_projector::{Store, store::StoreError, verdict};
use govledger_proto::v1::{
    EntityType, GetIdentityRequest, GetIdentityResponse, GetLedgerStatusRequest, GetRunRequest,
    GetRunResponse, GetSourceRequest, GetSourceResponse, LedgerStatus, ListPoisonEventsRequest,
    ListPoisonEventsResponse, ListRunsRequest, ListRunsResponse, ListSourcesRequest,
    ListSourcesResponse, RunSummary, ledger_server::Ledger,
};
use tonic::{Request, Response, Status};

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
}

impl LedgerApi {
    pub fn new(
        store: Arc<Store>,
        js: Option<async_nats::jetstream::Context>,
        stream: String,
        abandon_after_ms: u64,
    ) -> Self {
        Self {
            store,
            js,
            stream,
            abandon_after_us: (abandon_after_ms as i64).saturating_mul(1_000),
        }
    }
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
        let sources = self.store.sources().map_err(internal)?;
        Ok(Response::new(ListSourcesResponse { sources }))
    }

    async fn get_source(
        &self,
        req: Request<GetSourceRequest>,
    ) -> Result<Response<GetSourceResponse>, Status> {
        let id = require("source_id", &req.get_ref().source_id)?;
        match self.store.source(id).map_err(internal)? {
            Some(source) => Ok(Response::new(GetSourceResponse {
                source: Some(source),
            })),
            None => Err(Status::not_found(format!(
                "no source {id:?} in the ledger yet (no event names it); ListSources shows the known ones"
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
        }))
    }

    async fn get_ledger_status(
        &self,
        req: Request<GetLedgerStatusRequest>,
    ) -> Result<Response<LedgerStatus>, Status> {
        let meta = self.store.meta().map_err(internal)?;
        let state_digest = if req.get_ref().with_digest {
            let store = self.store.clone();
            tokio::task::spawn_blocking(move || store.digest())
                .await
                .map_err(|e| Status::internal(format!("digest task failed: {e}")))?
                .map_err(internal)?
        } else {
            String::new()
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
        Ok(Response::new(LedgerStatus {
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
}
