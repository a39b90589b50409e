//! The gRPC endpoint: the ledger service (behind the auth guard and the
//! read-your-writes wait) with health
//! and reflection (open), over TLS when configured, served on a listener the
//! caller bound.

use std::sync::Arc;

use govledger_proto::v1::ledger_server::LedgerServer;
use tonic::transport::ServerTlsConfig;
use tonic::transport::server::Router;
use tonic_health::server::HealthReporter;

use super::ServeError;
use crate::{
    api::LedgerApi,
    auth::{guard::Guarded, identify::Authenticator},
    cluster::consistency::Consistent,
};

/// The tonic router of `api` plus the health service (reporting it SERVING) and
/// reflection v1 and v1alpha, with the health reporter (kept for as long as the
/// router serves). `addr` names the endpoint in errors.
pub async fn router(
    api: LedgerApi,
    auth: Arc<Authenticator>,
    tls: Option<ServerTlsConfig>,
    calls: crate::observe::grpc::GrpcMetrics,
    (applied, min_seq_wait_ms): (tokio::sync::watch::Receiver<u64>, u64),
    addr: &str,
) -> Result<(Router, HealthReporter), ServeError> {
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
    let mut builder = tonic::transport::Server::builder();
    if let Some(tls) = tls {
        builder = builder.tls_config(tls).map_err(|e| ServeError::Tls {
            key: "tls.cert_file".into(),
            message: format!(
                "the certificate and key (tls.cert_file, tls.key_file) or tls.client_ca_file cannot be used: {e}"
            ),
        })?;
    }
    let router = builder
        .add_service(health)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        // Health and reflection stay open; the ledger is behind the guard,
        // then waits for the sequence a call names (read-your-writes).
        .add_service(crate::observe::grpc::Metered::new(
            Guarded::new(
                Consistent::new(LedgerServer::new(api), applied, min_seq_wait_ms),
                auth,
            ),
            calls,
        ));
    Ok((router, health_reporter))
}

/// A reflection builder that knows govledger's and the health service's protos.
fn reflection() -> tonic_reflection::server::Builder<'static> {
    tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(govledger_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
}
