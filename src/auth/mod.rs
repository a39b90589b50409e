//! Who may call what: roles, the authenticated principal, and the one table
//! that maps every RPC of `govledger.v1.Ledger` to the roles allowed to call it.
//!
//! Layout:
//! - this file: [`Role`], [`Principal`], [`allowed_roles`] (the table) and
//!   [`authorize`] — pure, tested exhaustively;
//! - [`identify`]: credentials → principal (token hashes compared in constant
//!   time, client certificate subjects), the local admin token;
//! - [`guard`]: the tower service in front of the ledger service that
//!   authenticates, authorises, writes the denial to the access log and hands
//!   the principal to the handlers.
//!
//! Health and reflection are not behind the guard: they say nothing about
//! identities.

pub mod guard;
pub mod identify;

use serde::Deserialize;

/// What a principal may do. `reader` answers questions; `operator` makes the
/// ledger act (syncs, writes to targets, accepting deletions); `auditor`
/// replays, proves, checkpoints and exports evidence. `operator` and `auditor`
/// may also read; `admin` may do everything.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Reader,
    Operator,
    Auditor,
    Admin,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Reader, Role::Operator, Role::Auditor, Role::Admin];

    pub fn name(self) -> &'static str {
        match self {
            Role::Reader => "reader",
            Role::Operator => "operator",
            Role::Auditor => "auditor",
            Role::Admin => "admin",
        }
    }
}

/// How a principal proved who it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    Token,
    ClientCertificate,
}

/// The authenticated caller: the name the ledger records and its roles.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub name: String,
    pub roles: Vec<Role>,
    pub via: Via,
}

/// The service every guarded RPC belongs to.
pub const LEDGER_SERVICE: &str = "govledger.v1.Ledger";

/// The names the HTTP listener authorises its data pages under.
pub const HTTP_METRICS: &str = "http:/metrics";
pub const HTTP_STATUS_PAGE: &str = "http:/";
/// The tlog-tiles read API (`/checkpoint`, `/tile/…`): the log's hashes, like the proofs.
pub const HTTP_TILES: &str = "http:/tile";

const READ: &[Role] = &[Role::Reader, Role::Operator, Role::Auditor, Role::Admin];
const OPERATE: &[Role] = &[Role::Operator, Role::Admin];
const AUDIT: &[Role] = &[Role::Auditor, Role::Admin];
const ADMIN: &[Role] = &[Role::Admin];

/// RPCs only an admin may call, on purpose (every other RPC is in the table).
pub const ADMIN_METHODS: &[&str] = &["SetProjectorPaused"];

/// The one table: the roles that may call `method` of the ledger service.
/// A method not listed (one added later and forgotten here) is admin-only.
pub fn allowed_roles(method: &str) -> &'static [Role] {
    match method {
        "ListSources" | "GetSource" | "ListRuns" | "GetRun" | "GetIdentity" | "GetLedgerStatus"
        | "ListPoisonEvents" | "CheckReadiness" | "GetAction" | "ListActions" | "WatchAlerts"
        | "ListCheckpoints" => READ,
        // The HTTP listener's data pages (not RPCs): `/metrics` and the status page.
        HTTP_METRICS | HTTP_STATUS_PAGE => READ,
        "TriggerSync" | "SubmitAction" | "ReportExternalAttempt" | "AcceptDeletions" => OPERATE,
        "Replay"
        | "GetInclusionProof"
        | "GetConsistencyProof"
        | "CreateCheckpoint"
        | "AddCosignature"
        | "VerifyRange"
        | "ExportEvidence"
        | HTTP_TILES => AUDIT,
        _ => ADMIN,
    }
}

/// Methods that change what the ledger holds or does: each call writes one
/// access-log line with its result.
pub fn is_mutating(method: &str) -> bool {
    matches!(
        method,
        "TriggerSync"
            | "SubmitAction"
            | "ReportExternalAttempt"
            | "AcceptDeletions"
            | "CreateCheckpoint"
            | "AddCosignature"
            | "SetProjectorPaused"
    )
}

/// Every RPC of the ledger service, read once from the compiled descriptor.
pub fn ledger_methods() -> &'static [String] {
    static METHODS: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    METHODS.get_or_init(|| {
        crate::audit::evidence::descriptors()
            .ok()
            .and_then(|p| p.get_service_by_name(LEDGER_SERVICE))
            .map(|s| s.methods().map(|m| m.name().to_owned()).collect())
            .unwrap_or_default()
    })
}

/// Why a call was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    #[error(
        "{method} needs role {needed}; principal {principal:?} has {held} (ask an admin for a token or certificate with that role)"
    )]
    Role {
        method: String,
        needed: String,
        principal: String,
        held: String,
    },
}

/// May `p` call `method`? The refusal names the role needed.
pub fn authorize(p: &Principal, method: &str) -> Result<(), Denied> {
    let allowed = allowed_roles(method);
    if p.roles.iter().any(|r| allowed.contains(r)) {
        return Ok(());
    }
    // The least role that would do (the table lists the narrowest first).
    let needed = match allowed.first() {
        Some(r) if *r == Role::Admin => "admin".to_owned(),
        Some(r) => format!("{} (or admin)", r.name()),
        None => "admin".to_owned(),
    };
    let held = if p.roles.is_empty() {
        "no role".to_owned()
    } else {
        p.roles
            .iter()
            .map(|r| r.name())
            .collect::<Vec<_>>()
            .join(", ")
    };
    Err(Denied::Role {
        method: method.to_owned(),
        needed,
        principal: p.name.clone(),
        held,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every RPC of the proto, read from the compiled descriptor: none may
    /// fall through to the admin-only default by accident.
    fn methods() -> Vec<String> {
        ledger_methods().to_vec()
    }

    fn p(roles: &[Role]) -> Principal {
        Principal {
            name: "t".into(),
            roles: roles.to_vec(),
            via: Via::Token,
        }
    }

    #[test]
    fn every_rpc_is_in_the_table_and_admin_may_call_it() {
        let ms = methods();
        assert!(ms.len() >= 22, "{ms:?}");
        for m in &ms {
            let allowed = allowed_roles(m);
            if !ADMIN_METHODS.contains(&m.as_str()) {
                assert_ne!(allowed, ADMIN, "{m} is not in the role table");
            }
            assert!(authorize(&p(&[Role::Admin]), m).is_ok(), "{m}");
            assert!(authorize(&p(&[]), m).is_err(), "{m}");
        }
    }

    #[test]
    fn the_roles_matrix() {
        for m in methods() {
            let reader = authorize(&p(&[Role::Reader]), &m).is_ok();
            let operator = authorize(&p(&[Role::Operator]), &m).is_ok();
            let auditor = authorize(&p(&[Role::Auditor]), &m).is_ok();
            match allowed_roles(&m) {
                READ => assert!(reader && operator && auditor, "{m}"),
                OPERATE => assert!(!reader && operator && !auditor, "{m}"),
                AUDIT => assert!(!reader && !operator && auditor, "{m}"),
                ADMIN => assert!(
                    !reader && !operator && !auditor && ADMIN_METHODS.contains(&m.as_str()),
                    "{m}"
                ),
                other => panic!("{m}: unexpected {other:?}"),
            }
        }
    }

    #[test]
    fn a_refusal_names_the_role_needed_and_the_one_held() {
        let e = authorize(&p(&[Role::Reader]), "SubmitAction").unwrap_err();
        let s = e.to_string();
        assert!(
            s.contains("SubmitAction needs role operator (or admin)"),
            "{s}"
        );
        assert!(s.contains("has reader"), "{s}");
        let e = authorize(&p(&[Role::Operator]), "ExportEvidence").unwrap_err();
        assert!(e.to_string().contains("needs role auditor"), "{e}");
        let e = authorize(&p(&[Role::Auditor]), "NotARealMethod").unwrap_err();
        assert!(e.to_string().contains("needs role admin"), "{e}");
    }

    #[test]
    fn mutating_methods_are_all_guarded_above_reader() {
        for m in methods() {
            if is_mutating(&m) {
                assert!(authorize(&p(&[Role::Reader]), &m).is_err(), "{m}");
            }
        }
    }
}
