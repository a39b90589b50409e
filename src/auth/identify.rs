//! Credentials → principal. Bearer tokens are compared by their SHA-256 in
//! constant time (every configured hash is compared, whatever matched); client
//! certificates by their subject. Also the local admin token `serve` writes when
//! no `[auth]` is configured, and `govledger token new`.

use std::{
    io::Write as _,
    path::{Path, PathBuf},
};

use sha2::{Digest as _, Sha256};

use super::{Principal, Role, Via};
use crate::audit::checkpoints::unhex;
use crate::config::security::AuthConfig;
use govledger_stream::seal::hex;

/// The file name of the local admin token in the data folder.
pub const LOCAL_ADMIN_TOKEN_FILE: &str = "admin.token";
/// The principal the local admin token records.
pub const LOCAL_ADMIN_PRINCIPAL: &str = "local-admin";
/// Every token govledger makes starts with this (secret scanners can find them).
pub const TOKEN_PREFIX: &str = "glt_";
/// Longest token accepted in a request (longer ones are refused unhashed).
pub const TOKEN_MAX_BYTES: usize = 512;

/// Who the configured credentials name.
#[derive(Debug, Clone, Default)]
pub struct Authenticator {
    tokens: Vec<([u8; 32], Principal)>,
    clients: Vec<(String, Principal)>,
}

/// SHA-256 of a token as configured (`auth.tokens[].sha256`).
pub fn token_sha256(token: &str) -> [u8; 32] {
    Sha256::digest(token.trim().as_bytes()).into()
}

/// A configured hash as 32 bytes (`None` unless 64 hex characters).
fn unhex32(s: &str) -> Option<[u8; 32]> {
    unhex(s.trim())?.try_into().ok()
}

/// Constant time in the length of `a` (both are 32 bytes).
fn ct_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl Authenticator {
    /// From `[auth]` (validated: every hash is 64 hex characters) plus, when
    /// given, the local admin token's hash.
    pub fn new(cfg: &AuthConfig, local_admin: Option<[u8; 32]>) -> Self {
        let mut tokens: Vec<([u8; 32], Principal)> = cfg
            .tokens
            .iter()
            .filter_map(|t| {
                Some((
                    unhex32(&t.sha256)?,
                    Principal {
                        name: t.principal.clone(),
                        roles: t.roles.clone(),
                        via: Via::Token,
                    },
                ))
            })
            .collect();
        if let Some(h) = local_admin {
            tokens.push((
                h,
                Principal {
                    name: LOCAL_ADMIN_PRINCIPAL.to_owned(),
                    roles: vec![Role::Admin],
                    via: Via::Token,
                },
            ));
        }
        let clients = cfg
            .clients
            .iter()
            .map(|c| {
                (
                    c.subject.trim().to_owned(),
                    Principal {
                        name: c.principal.clone().unwrap_or_else(|| c.subject.clone()),
                        roles: c.roles.clone(),
                        via: Via::ClientCertificate,
                    },
                )
            })
            .collect();
        Self { tokens, clients }
    }

    /// The principal holding `token`, if any. Every configured hash is
    /// compared (no early exit), so the time does not say which one matched.
    pub fn by_token(&self, token: &str) -> Option<Principal> {
        if token.len() > TOKEN_MAX_BYTES {
            return None;
        }
        let h = token_sha256(token);
        let mut found = None;
        for (want, p) in &self.tokens {
            if ct_eq(want, &h) && found.is_none() {
                found = Some(p.clone());
            }
        }
        found
    }

    /// The principal a client certificate subject maps to, if any.
    pub fn by_subject(&self, subject: &str) -> Option<Principal> {
        self.clients
            .iter()
            .find(|(s, _)| s == subject)
            .map(|(_, p)| p.clone())
    }
}

/// The subject of a DER certificate as configured in `auth.clients[].subject`
/// (e.g. `CN=review-bot, O=Example`).
pub fn subject_of(der: &[u8]) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    Some(cert.subject().to_string())
}

/// A new random token (`glt_` + 64 hex characters).
pub fn new_token() -> String {
    use rand::RngCore as _;
    let mut b = [0u8; 32];
    rand::rng().fill_bytes(&mut b);
    format!("{TOKEN_PREFIX}{}", hex(&b))
}

/// Hex SHA-256 of a token, as `auth.tokens[].sha256` wants it.
pub fn token_sha256_hex(token: &str) -> String {
    hex(&token_sha256(token))
}

/// Writes `text` to a new file only the owner may read (mode 0600).
pub fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()
}

/// The local admin token of `data_dir`: read when it exists, else made (mode
/// 0600). Returns its path and hash; the token itself never leaves the file.
pub fn local_admin_token(data_dir: &Path) -> std::io::Result<(PathBuf, [u8; 32])> {
    std::fs::create_dir_all(data_dir)?;
    let path = data_dir.join(LOCAL_ADMIN_TOKEN_FILE);
    match std::fs::read_to_string(&path) {
        Ok(t) if !t.trim().is_empty() => return Ok((path, token_sha256(&t))),
        Ok(_) => std::fs::remove_file(&path)?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let token = new_token();
    write_private(&path, &format!("{token}\n"))?;
    Ok((path, token_sha256(&token)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::security::{ClientEntry, TokenEntry};

    fn cfg() -> AuthConfig {
        AuthConfig {
            tokens: vec![
                TokenEntry {
                    principal: "alice".into(),
                    sha256: token_sha256_hex("glt_alice"),
                    roles: vec![Role::Operator],
                },
                TokenEntry {
                    principal: "bob".into(),
                    sha256: token_sha256_hex("glt_bob").to_uppercase(),
                    roles: vec![Role::Reader, Role::Auditor],
                },
            ],
            clients: vec![ClientEntry {
                subject: "CN=bot".into(),
                principal: Some("review-bot".into()),
                roles: vec![Role::Reader],
            }],
            local_admin_token: None,
        }
    }

    #[test]
    fn tokens_map_to_their_principal_and_nothing_else_does() {
        let a = Authenticator::new(&cfg(), None);
        assert_eq!(a.by_token("glt_alice").unwrap().name, "alice");
        assert_eq!(a.by_token(" glt_alice\n").unwrap().name, "alice");
        let bob = a.by_token("glt_bob").unwrap();
        assert_eq!(bob.roles, vec![Role::Reader, Role::Auditor]);
        assert!(a.by_token("glt_alicE").is_none());
        assert!(a.by_token("").is_none());
        assert!(a.by_token(&token_sha256_hex("glt_alice")).is_none());
        assert!(a.by_token(&"x".repeat(TOKEN_MAX_BYTES + 1)).is_none());
        assert_eq!(a.by_subject("CN=bot").unwrap().name, "review-bot");
        assert!(a.by_subject("CN=bot2").is_none());
    }

    #[test]
    fn the_local_admin_token_is_private_stable_and_admin() {
        use std::os::unix::fs::PermissionsExt as _;
        let d = tempfile::tempdir().unwrap();
        let (path, h1) = local_admin_token(d.path()).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let (_, h2) = local_admin_token(d.path()).unwrap();
        assert_eq!(h1, h2, "reused on restart");
        let token = std::fs::read_to_string(&path).unwrap();
        assert!(token.starts_with(TOKEN_PREFIX));
        let a = Authenticator::new(&AuthConfig::default(), Some(h1));
        assert!(AuthConfig::default().wants_local_admin_token());
        let p = a.by_token(&token).unwrap();
        assert_eq!(
            (p.name.as_str(), p.roles.as_slice()),
            ("local-admin", &[Role::Admin][..])
        );
    }
}
