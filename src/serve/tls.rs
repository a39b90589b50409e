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

fn read(key: &str, path: &Path) -> Result<Vec<u8>, ServeError> {
    std::fs::read(path).map_err(|e| ServeError::Tls {
        key: key.to_owned(),
        message: format!("cannot read {}: {e}", path.display()),
    })
}

/// `[tls]` as tonic wants it, or `None` for plaintext.
pub fn server_tls(cfg: &Config) -> Result<Option<ServerTlsConfig>, ServeError> {
    let (Some(cert), Some(key)) = (&cfg.tls.cert_file, &cfg.tls.key_file) else {
        return Ok(None);
    };
    let cert_pem = read("tls.cert_file", cert)?;
    let key_pem = read("tls.key_file", key)?;
    for (k, pem, what) in [
        ("tls.cert_file", &cert_pem, "CERTIFICATE"),
        ("tls.key_file", &key_pem, "PRIVATE KEY"),
    ] {
        if !String::from_utf8_lossy(pem).contains(&format!("{what}-----")) {
            return Err(ServeError::Tls {
                key: k.to_owned(),
                message: format!("{} holds no PEM {what}", cfg_path(cfg, k)),
            });
        }
    }
    let mut tls = ServerTlsConfig::new().identity(Identity::from_pem(cert_pem, key_pem));
    if let Some(ca) = &cfg.tls.client_ca_file {
        let ca_pem = read("tls.client_ca_file", ca)?;
        if !String::from_utf8_lossy(&ca_pem).contains("CERTIFICATE-----") {
            return Err(ServeError::Tls {
                key: "tls.client_ca_file".into(),
                message: format!("{} holds no PEM CERTIFICATE", ca.display()),
            });
        }
        tls = tls.client_ca_root(Certificate::from_pem(ca_pem));
    }
    Ok(Some(tls))
}

fn cfg_path(cfg: &Config, key: &str) -> String {
    let p = match key {
        "tls.cert_file" => &cfg.tls.cert_file,
        "tls.key_file" => &cfg.tls.key_file,
        _ => &cfg.tls.client_ca_file,
    };
    p.as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_default()
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
