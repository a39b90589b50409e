//! The one map from the domain's errors to gRPC statuses: the code a client
//! can act on (`InvalidArgument` for a malformed request, `NotFound` for an
//! unknown id, `FailedPrecondition` when the ledger is not in the state the
//! call needs, `Unavailable` when the stream cannot be asked, `DataLoss` when
//! the log is not what was recorded, `Internal` for the store) and the error's
//! own message, which says what to do.

use govledger_projector::tiles::TileError;
use tonic::Status;

use super::{queries::QueryError, validate::Invalid};
use crate::{
    audit::{
        asof::AsOfError, checkpoints::AuditStreamError, evidence::ExportError, replay::ReplayError,
    },
    workers::action_intake::SubmitError,
    workers::deletions::AcceptError,
    workers::scheduler::TriggerError,
};

impl From<Invalid> for Status {
    fn from(e: Invalid) -> Self {
        Status::invalid_argument(e.0)
    }
}

impl From<AsOfError> for Status {
    fn from(e: AsOfError) -> Self {
        let m = e.to_string();
        match e {
            AsOfError::Unavailable { .. }
            | AsOfError::NotProjectedYet { .. }
            | AsOfError::ShuttingDown => Status::unavailable(m),
            AsOfError::Store(_) | AsOfError::ActionFoldEmpty { .. } => Status::internal(m),
            AsOfError::PastEnd { .. } | AsOfError::TimeOutOfRange | AsOfError::FromOutOfRange => {
                Status::invalid_argument(m)
            }
            AsOfError::NothingBefore { .. } | AsOfError::NotFound(_) => Status::not_found(m),
            AsOfError::IndexedMessageLost { .. } => Status::data_loss(m),
            AsOfError::HistoryTooLong => Status::failed_precondition(m),
        }
    }
}

impl From<ReplayError> for Status {
    fn from(e: ReplayError) -> Self {
        let m = e.to_string();
        match e {
            ReplayError::Unavailable { .. } => Status::unavailable(m),
            ReplayError::FromOutOfRange => Status::invalid_argument(m),
            ReplayError::SequenceMissing { .. } => Status::data_loss(m),
        }
    }
}

impl From<ExportError> for Status {
    fn from(e: ExportError) -> Self {
        let m = e.to_string();
        match e {
            ExportError::AsOf(e) => e.into(),
            ExportError::Descriptors(_) | ExportError::Store(_) | ExportError::Encode(_) => {
                Status::internal(m)
            }
            ExportError::AnchorNotSigned(AuditStreamError::KeyRetired { .. }) => {
                Status::failed_precondition(m)
            }
            ExportError::AnchorNotSigned(_)
            | ExportError::Checkpoints(_)
            | ExportError::AnchorNotInStream => Status::unavailable(m),
            ExportError::SourceRangeTooLong { .. }
            | ExportError::IdentityHistoryTooLong
            | ExportError::BundleTooLarge { .. } => Status::failed_precondition(m),
            ExportError::Tiles(TileError::Store(_) | TileError::Proof(_)) => Status::internal(m),
            ExportError::Tiles(TileError::Missing(_))
            | ExportError::RootMismatch
            | ExportError::LeafMismatch { .. } => Status::data_loss(m),
        }
    }
}

impl From<QueryError> for Status {
    fn from(e: QueryError) -> Self {
        let m = e.to_string();
        match e {
            QueryError::Store(e) => {
                tracing::error!(error = %e, "projection store error");
                Status::internal(m)
            }
            QueryError::AsOf(e) => e.into(),
            QueryError::Replay(e) => e.into(),
            QueryError::NoSource { .. }
            | QueryError::SourceNotInLedger { .. }
            | QueryError::NoRun { .. }
            | QueryError::NeverReported { .. }
            | QueryError::NoAction { .. }
            | QueryError::NoActionToReport { .. }
            | QueryError::NoStream { .. } => Status::not_found(m),
            QueryError::CheckpointPublish(AuditStreamError::KeyRetired { .. }) => {
                Status::failed_precondition(m)
            }
            QueryError::ActionConcluded { .. }
            | QueryError::PastApplied { .. }
            | QueryError::TreePastApplied { .. } => Status::failed_precondition(m),
            QueryError::Cosignature(_) => Status::invalid_argument(m),
            QueryError::DigestTask(_) | QueryError::FrontierInconsistent | QueryError::Tiles(_) => {
                Status::internal(m)
            }
            QueryError::StreamUnreachable { .. }
            | QueryError::CheckpointPublish(_)
            | QueryError::CheckpointRead(_) => Status::unavailable(m),
        }
    }
}

impl From<SubmitError> for Status {
    fn from(e: SubmitError) -> Self {
        match e {
            SubmitError::NotConfigured(_) | SubmitError::NotFound(_) => {
                Status::not_found(e.to_string())
            }
            SubmitError::Invalid(_) => Status::invalid_argument(e.to_string()),
            SubmitError::NotWritable(_)
            | SubmitError::NoTemplate { .. }
            | SubmitError::NotExternal(_) => Status::failed_precondition(e.to_string()),
            SubmitError::Busy(_) | SubmitError::Publish(_) => Status::unavailable(e.to_string()),
        }
    }
}

impl From<AcceptError> for Status {
    fn from(e: AcceptError) -> Self {
        let m = e.to_string();
        match e {
            AcceptError::NoRun(_) => Status::not_found(m),
            AcceptError::NotAcceptable(_) => Status::failed_precondition(m),
            AcceptError::Store(_) => Status::internal(m),
            AcceptError::Publish(_) => Status::unavailable(m),
        }
    }
}

impl From<TriggerError> for Status {
    fn from(e: TriggerError) -> Self {
        match e {
            TriggerError::NotConfigured(_) => Status::not_found(e.to_string()),
            TriggerError::AlreadyRunning { .. } | TriggerError::NoBaseline(_) => {
                Status::failed_precondition(e.to_string())
            }
            TriggerError::Stopped(_) | TriggerError::NotRecorded(_) | TriggerError::NoIngest(_) => {
                Status::unavailable(e.to_string())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_and_messages_are_kept() {
        let s = Status::from(AsOfError::HistoryTooLong);
        assert_eq!(s.code(), tonic::Code::FailedPrecondition);
        assert_eq!(
            s.message(),
            "this history has more than 100000 events; read it with Replay instead"
        );
        let s = Status::from(AsOfError::NothingBefore {
            at_us: 0,
            first_us: None,
        });
        assert_eq!(s.code(), tonic::Code::NotFound);
        assert!(
            s.message()
                .ends_with("first event was stored never (the stream is empty)"),
            "{}",
            s.message()
        );
        let s = Status::from(ExportError::AsOf(AsOfError::NotProjectedYet {
            applied: 3,
            seq: 9,
        }));
        assert_eq!(s.code(), tonic::Code::Unavailable);
        let s = Status::from(ReplayError::SequenceMissing { missing: 4, got: 6 });
        assert_eq!(s.code(), tonic::Code::DataLoss);
        assert_eq!(
            s.message(),
            "stream sequence 4 is missing (got 6): the stream is not the immutable log govledger requires"
        );
        let s = Status::from(QueryError::PastApplied { to: 9, applied: 3 });
        assert_eq!(s.code(), tonic::Code::FailedPrecondition);
    }
}
