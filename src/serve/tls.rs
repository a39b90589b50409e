//! The gRPC listener's trust settings at start: the TLS identity and client CA
//! read from their files, the refusal to serve plaintext beyond loopback, and
//! who may call ([`crate::auth::identify::Authenticator`], with the local admin
//! token when no `[auth]` is configured).

use std::{net::SocketAddr, path::Path, sync::Arc};

use tonic::transport::{Certificate, Identity, ServerTlsConfig};

use super::ServeError;
use crate::{
    auth::identify::{Authenticator, local_admin_token},
    config::Config,
};

/// The PEM file of config key `key`, which must hold a `what` block
/// (`CERTIFICATE`, `PRIVATE KEY`); errors name the key and the file.
fn read_pem(key: &str, path: &Path, what: &str) -> Result<Vec<u8>, ServeError> {
    let fail = |message: String| ServeError::Tls {
        key: key.to_owned(),
        message,
    };
    let pem =
        std::fs::read(path).map_err(|e| fail(format!("cannot read {}: {e}", path.display())))?;
    if !String::from_utf8_lossy(&pem).contains(&format!("{what}-----")) {
        return Err(fail(format!("{} holds no PEM {what}", path.display())));
    }
    Ok(pem)
}

/// `[tls]` as tonic wants it, or `None` for plaintext.
pub fn server_tls(cfg: &Config) -> Result<Option<ServerTlsConfig>, ServeError> {
    let (Some(cert), Some(key)) = (&cfg.tls.cert_file, &cfg.tls.key_file) else {
        return Ok(None);
    };
    let cert_pem = read_pem("tls.cert_file", cert, "CERTIFICATE")?;
    let key_pem = read_pem("tls.key_file", key, "PRIVATE KEY")?;
    let mut tls = ServerTlsConfig::new().identity(Identity::from_pem(cert_pem, key_pem));
    if let Some(ca) = &cfg.tls.client_ca_file {
        let ca_pem = read_pem("tls.client_ca_file", ca, "CERTIFICATE")?;
        tls = tls.client_ca_root(Certificate::from_pem(ca_pem));
    }
    Ok(Some(tls))
}

/// Plaintext gRPC is for loopback only, unless the operator says otherwise
/// with `--insecure-plaintext` (then a loud warning).
pub fn check_plaintext(cfg: &Config, addr: SocketAddr) -> Result<(), ServeError> {
    if cfg.tls.enabled() || addr.ip().is_loopback() {
        return Ok(());
    }
    if cfg.grpc.insecure_plaintext {
        tracing::warn!(
            "INSECURE: gRPC on {addr} is plaintext (--insecure-plaintext): tokens and evidence cross the network unencrypted; \
             set tls.cert_file and tls.key_file"
        );
        return Ok(());
    }
    Err(ServeError::Plaintext {
        addr: addr.to_string(),
    })
}

/// Who may call: `[auth]`, or when it is empty the local admin token of the
/// data folder (made on first start, mode 0600).
pub fn authenticator(cfg: &Config) -> Result<Arc<Authenticator>, ServeError> {
    if !cfg.auth.wants_local_admin_token() {
        return Ok(Arc::new(Authenticator::new(&cfg.auth, None)));
    }
    let dir = cfg.data_dir();
    let (path, hash) = local_admin_token(&dir).map_err(|source| ServeError::DataDir {
        path: dir.display().to_string(),
        source,
    })?;
    tracing::info!(
        token_file = %path.display(),
        "the local admin token is in {} (mode 0600); the CLI on this machine uses it by default; \
         configure [[auth.tokens]] to give others roles (README: Security)",
        path.display()
    );
    Ok(Arc::new(Authenticator::new(&cfg.auth, Some(hash))))
}
