//! The gRPC endpoint: the ledger service with health and reflection, served on
//! a listener the caller bound.

use govledger_proto::v1::ledger_server::LedgerServer;
use tonic::transport::server::Router;
use tonic_health::server::HealthReporter;

use super::ServeError;
use crate::api::LedgerApi;

/// The tonic router of `api` plus the health service (reporting it SERVING) and
/// reflection v1 and v1alpha, with the health reporter (kept for as long as the
/// router serves). `addr` names the endpoint in errors.
pub async fn router(api: LedgerApi, addr: &str) -> Result<(Router, HealthReporter), ServeError> {
    let (health_reporter, health) = tonic_health::server::health_reporter();
    health_reporter
        .set_serving::<LedgerServer<LedgerApi>>()
        .await;
    // Reflection v1 and v1alpha, so grpcurl and every language's reflection client work.
    let reflection_err = |e: tonic_reflection::server::Error| ServeError::Bind {
        addr: addr.to_owned(),
        source: std::io::Error::other(e.to_string()),
    };
    let reflection_v1 = reflection().build_v1().map_err(reflection_err)?;
    let reflection_v1alpha = reflection().build_v1alpha().map_err(reflection_err)?;
    let router = tonic::transport::Server::builder()
        .add_service(health)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(LedgerServer::new(api));
    Ok((router, health_reporter))
}

/// A reflection builder that knows govledger's and the health service's protos.
fn reflection() -> tonic_reflection::server::Builder<'static> {
    tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(govledger_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
}
