//! The gRPC trust settings: `[tls]` (the listener's certificate, and the CA of
//! client certificates for mTLS) and `[auth]` (bearer token hashes and client
//! certificate subjects, each mapped to a principal with roles).
//!
//! The file holds only SHA-256 hashes of tokens, never tokens, so it is not a
//! secret. Files are read when `serve` starts, not here.

use std::path::PathBuf;

use serde::Deserialize;

use super::error::{ConfigError, invalid};
use crate::auth::Role;

/// `[tls]`: serve gRPC over TLS (tonic's rustls). Both files or neither.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// PEM certificate chain of the listener.
    pub cert_file: Option<PathBuf>,
    /// PEM private key of the listener.
    pub key_file: Option<PathBuf>,
    /// PEM CA whose client certificates are required (mTLS); a client without
    /// one is refused during the handshake.
    pub client_ca_file: Option<PathBuf>,
}

impl TlsConfig {
    pub fn enabled(&self) -> bool {
        self.cert_file.is_some()
    }
}

/// `[auth]`: who may call the API.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// `[[auth.tokens]]`: bearer tokens, by their SHA-256.
    pub tokens: Vec<TokenEntry>,
    /// `[[auth.clients]]`: client certificate subjects (with `tls.client_ca_file`).
    pub clients: Vec<ClientEntry>,
    /// Keep a local admin token in `<data_dir>/admin.token` (mode 0600) for
    /// the CLI on this machine. Default: only when no token or client is
    /// configured.
    pub local_admin_token: Option<bool>,
}

impl AuthConfig {
    /// Whether `serve` keeps the local admin token.
    pub fn wants_local_admin_token(&self) -> bool {
        self.local_admin_token
            .unwrap_or(self.tokens.is_empty() && self.clients.is_empty())
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenEntry {
    /// Who holds the token: the name the ledger records (e.g. `alice`, `siem-prod`).
    pub principal: String,
    /// Hex SHA-256 of the token (`printf %s "$TOKEN" | sha256sum`, or `govledger token new`).
    pub sha256: String,
    pub roles: Vec<Role>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientEntry {
    /// The certificate's subject as govledger prints it (e.g. `CN=review-bot, O=Example`);
    /// an unknown subject is named in the refusal, so it can be copied from there.
    pub subject: String,
    /// The name the ledger records; defaults to the subject.
    pub principal: Option<String>,
    pub roles: Vec<Role>,
}

/// Longest principal name.
pub const PRINCIPAL_MAX_CHARS: usize = 128;

fn check_principal(key: &str, p: &str) -> Result<(), ConfigError> {
    if p.is_empty() || p.chars().count() > PRINCIPAL_MAX_CHARS || p.chars().any(char::is_control) {
        return Err(invalid(
            key,
            format!("{p:?}: 1..={PRINCIPAL_MAX_CHARS} printable characters"),
        ));
    }
    Ok(())
}

/// Checks `[tls]` and `[auth]` together; the first problem names its key.
pub fn validate(tls: &TlsConfig, auth: &AuthConfig) -> Result<(), ConfigError> {
    match (&tls.cert_file, &tls.key_file) {
        (Some(_), None) => return Err(invalid("tls.key_file", "tls.cert_file needs a key file")),
        (None, Some(_)) => {
            return Err(invalid("tls.cert_file", "tls.key_file needs a certificate"));
        }
        _ => {}
    }
    if tls.client_ca_file.is_some() && !tls.enabled() {
        return Err(invalid(
            "tls.client_ca_file",
            "client certificates need TLS: set tls.cert_file and tls.key_file",
        ));
    }
    if auth.tokens.is_empty() && auth.clients.is_empty() && auth.local_admin_token == Some(false) {
        return Err(invalid(
            "auth.local_admin_token",
            "false with no auth.tokens and no auth.clients leaves nobody able to call: add a token or drop the key",
        ));
    }
    let mut names = std::collections::HashSet::new();
    let mut hashes = std::collections::HashSet::new();
    for (i, t) in auth.tokens.iter().enumerate() {
        check_principal(&format!("auth.tokens[{i}].principal"), &t.principal)?;
        let h = t.sha256.trim().to_ascii_lowercase();
        if h.len() != 64 || !h.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(invalid(
                format!("auth.tokens[{i}].sha256"),
                "must be 64 hex characters: the SHA-256 of the token (printf %s \"$TOKEN\" | sha256sum), never the token itself",
            ));
        }
        if !hashes.insert(h) {
            return Err(invalid(
                format!("auth.tokens[{i}].sha256"),
                "the same token hash appears twice",
            ));
        }
        if t.roles.is_empty() {
            return Err(invalid(
                format!("auth.tokens[{i}].roles"),
                "give at least one of reader, operator, auditor, admin",
            ));
        }
        if !names.insert(t.principal.clone()) {
            return Err(invalid(
                format!("auth.tokens[{i}].principal"),
                format!("{:?} appears twice", t.principal),
            ));
        }
    }
    if !auth.clients.is_empty() && tls.client_ca_file.is_none() {
        return Err(invalid(
            "auth.clients",
            "client certificate subjects need tls.client_ca_file (the CA that issued them)",
        ));
    }
    for (i, c) in auth.clients.iter().enumerate() {
        if c.subject.trim().is_empty() {
            return Err(invalid(
                format!("auth.clients[{i}].subject"),
                "must not be empty",
            ));
        }
        let p = c.principal.clone().unwrap_or_else(|| c.subject.clone());
        check_principal(&format!("auth.clients[{i}].principal"), &p)?;
        if c.roles.is_empty() {
            return Err(invalid(
                format!("auth.clients[{i}].roles"),
                "give at least one of reader, operator, auditor, admin",
            ));
        }
        if !names.insert(p.clone()) {
            return Err(invalid(
                format!("auth.clients[{i}].principal"),
                format!("{p:?} appears twice"),
            ));
        }
    }
    Ok(())
}
