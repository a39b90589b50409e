//! LDAP / Active Directory sources: what a directory source is ([`LdapSpec`]),
//! the one way to reach it ([`connect`]: TLS or StartTLS, a simple bind with
//! the secret from the configuration), and the pure reading of directory
//! entries into ledger records ([`record`]) and of LDAP result codes into the
//! engine's failure classes ([`classify`]).
//!
//! Stable ids: a record's id is the entry's `entryUUID` (OpenLDAP, RFC 4530)
//! or `objectGUID` (Active Directory, 16 bytes shown in AD's GUID form), never
//! its DN, which changes on a rename. Group members are DNs in the directory;
//! the sync maps them to ids (`sync::ldap`).
//!
//! An account's active state is read by the configured [`Disable`] rule, the
//! same rule the executor writes ([`crate::actions`] on an LDAP target): a
//! `pwdAccountLockedTime` (ppolicy), `nsAccountLock`, AD's
//! `userAccountControl` bit 2 (ACCOUNTDISABLE), or any attribute and value.

use std::{collections::BTreeMap, path::PathBuf, sync::Arc, time::Duration};

use govledger_proto::v1::{EntityType, ErrorClass, RecordObserved, RecordRejected, RejectReason};
use ldap3::{Ldap, LdapConnAsync, LdapConnSettings, Scope, SearchEntry};
use sha2::{Digest as _, Sha256};

use crate::{http::Secret, retry::Failure, scim::Item};

/// `pwdAccountLockedTime` meaning "locked until an administrator unlocks it"
/// (draft-behera-ldap-password-policy).
pub const LOCKED_FOREVER: &str = "000001010000Z";
/// The users' own list of their groups (AD; OpenLDAP's memberof overlay),
/// read when the source reads no groups.
pub const MEMBER_OF: &str = "memberOf";
/// AD `userAccountControl` ACCOUNTDISABLE.
pub const UAC_ACCOUNTDISABLE: u64 = 2;

/// How a disabled account shows in the directory, and how one is disabled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Disable {
    /// ppolicy: `pwdAccountLockedTime` present (written as [`LOCKED_FOREVER`]).
    PwdAccountLockedTime,
    /// 389-DS / Oracle: `nsAccountLock: TRUE`.
    NsAccountLock,
    /// Active Directory: `userAccountControl` with bit 2 set.
    AdUserAccountControl,
    /// Any attribute holding a value (`employeeStatus: disabled`).
    Attribute { name: String, value: String },
}

impl Disable {
    /// The attribute the rule reads.
    pub fn attribute(&self) -> &str {
        match self {
            Disable::PwdAccountLockedTime => "pwdAccountLockedTime",
            Disable::NsAccountLock => "nsAccountLock",
            Disable::AdUserAccountControl => "userAccountControl",
            Disable::Attribute { name, .. } => name,
        }
    }

    /// Whether the entry's values of [`Disable::attribute`] show the account
    /// active; `Err` when they cannot be read (a `userAccountControl` that is
    /// no number).
    pub fn active(&self, values: &[String]) -> Result<bool, String> {
        match self {
            Disable::PwdAccountLockedTime => Ok(values.is_empty()),
            Disable::NsAccountLock => Ok(!values.iter().any(|v| v.eq_ignore_ascii_case("true"))),
            Disable::AdUserAccountControl => match values.first() {
                None => Ok(true),
                Some(v) => v
                    .trim()
                    .parse::<u64>()
                    .map(|uac| uac & UAC_ACCOUNTDISABLE == 0)
                    .map_err(|_| format!("userAccountControl {v:?} is not a number")),
            },
            Disable::Attribute { value, .. } => {
                Ok(!values.iter().any(|v| v.eq_ignore_ascii_case(value)))
            }
        }
    }
}

/// One search: where, how deep, which entries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LdapQuery {
    pub base_dn: String,
    /// RFC 4515 filter, e.g. `(objectClass=inetOrgPerson)`.
    pub filter: String,
    /// `true` = the whole subtree, `false` = one level below the base.
    pub subtree: bool,
}

/// What a directory source is: where, how to bind, what to read.
#[derive(Debug, Clone)]
pub struct LdapSpec {
    /// `ldap://host:389` or `ldaps://host:636`.
    pub url: String,
    /// Upgrade an `ldap://` connection with StartTLS before binding.
    pub starttls: bool,
    /// PEM CA certificates to trust (else the system's roots).
    pub ca_file: Option<PathBuf>,
    /// Simple bind DN ("" = anonymous) and its password.
    pub bind_dn: String,
    pub bind_password: Secret,
    pub users: Option<LdapQuery>,
    pub groups: Option<LdapQuery>,
    /// `entryUUID` or `objectGUID`.
    pub id_attribute: String,
    /// The label: `uid`, `sAMAccountName`, `cn`.
    pub name_attribute: String,
    /// Group members: `member`, `uniqueMember`.
    pub member_attribute: String,
    pub disable: Disable,
    /// Kept attributes: (ledger name, LDAP attribute).
    pub attributes: Vec<(String, String)>,
    pub page_size: u32,
    pub timeout: Duration,
}

impl LdapSpec {
    /// The attributes a search of `entity_type` asks for.
    pub fn attrs(&self, entity_type: EntityType) -> Vec<String> {
        let mut a = vec![self.id_attribute.clone(), self.name_attribute.clone()];
        if entity_type == EntityType::Group {
            a.push(self.member_attribute.clone());
            a.push("cn".into());
        } else {
            a.push(self.disable.attribute().to_owned());
            if self.groups.is_none() {
                a.push(MEMBER_OF.into());
            }
        }
        a.extend(self.attributes.iter().map(|(_, attr)| attr.clone()));
        a.push("modifyTimestamp".into());
        a.sort_by_key(|s| s.to_ascii_lowercase());
        a.dedup_by(|x, y| x.eq_ignore_ascii_case(y));
        a
    }

    /// Where to write, for errors and events: the URL without credentials.
    pub fn shown_url(&self) -> String {
        govledger_stream::redact_url(&self.url)
    }
}

/// A failure of an LDAP operation, classified for the retry engine; the
/// message never carries the bind password (a server could echo it).
pub fn failure(class: ErrorClass, message: String, spec: &LdapSpec) -> Failure {
    Failure {
        class,
        http_status: 0,
        retry_after: None,
        message: scrub(&message, &spec.bind_password),
    }
}

/// `text` with every occurrence of the secret replaced by `***`.
pub fn scrub(text: &str, secret: &Secret) -> String {
    let s = secret.expose();
    if s.len() < 3 {
        return text.to_owned();
    }
    text.replace(s, "***")
}

/// The name of an LDAP result code (RFC 4511 Appendix A).
pub fn rc_name(rc: u32) -> &'static str {
    match rc {
        0 => "success",
        1 => "operationsError",
        2 => "protocolError",
        3 => "timeLimitExceeded",
        4 => "sizeLimitExceeded",
        10 => "referral",
        11 => "adminLimitExceeded",
        12 => "unavailableCriticalExtension",
        16 => "noSuchAttribute",
        17 => "undefinedAttributeType",
        19 => "constraintViolation",
        20 => "attributeOrValueExists",
        21 => "invalidAttributeSyntax",
        32 => "noSuchObject",
        34 => "invalidDNSyntax",
        48 => "inappropriateAuthentication",
        49 => "invalidCredentials",
        50 => "insufficientAccessRights",
        51 => "busy",
        52 => "unavailable",
        53 => "unwillingToPerform",
        64 => "namingViolation",
        65 => "objectClassViolation",
        66 => "notAllowedOnNonLeaf",
        68 => "entryAlreadyExists",
        80 => "other",
        _ => "unknown",
    }
}

/// `LDAP result 50 (insufficientAccessRights): text`.
pub fn rc_text(rc: u32, text: &str) -> String {
    let text = text.trim();
    if text.is_empty() {
        format!("LDAP result {rc} ({})", rc_name(rc))
    } else {
        format!("LDAP result {rc} ({}): {text}", rc_name(rc))
    }
}

/// The engine's class of a result code: limits are [`ErrorClass::Limit`]
/// (the answer is a part), busy / unavailable retriable, bind and access
/// problems [`ErrorClass::Auth`].
pub fn classify(rc: u32) -> ErrorClass {
    match rc {
        0 => ErrorClass::Unspecified,
        3 | 4 | 11 => ErrorClass::Limit,
        48..=50 => ErrorClass::Auth,
        32 => ErrorClass::NotFound,
        51 | 52 | 80 => ErrorClass::ServerError,
        _ => ErrorClass::ClientError,
    }
}

/// The class and text of an error from the `ldap3` client.
pub fn client_failure(e: &ldap3::LdapError, spec: &LdapSpec) -> Failure {
    use ldap3::LdapError as E;
    let (class, message) = match e {
        E::LdapResult { result } => (classify(result.rc), rc_text(result.rc, &result.text)),
        E::Timeout { .. } => (
            ErrorClass::Timeout,
            format!("{}: timed out", spec.shown_url()),
        ),
        E::Io { source } => (
            ErrorClass::Connect,
            format!("{}: {source}", spec.shown_url()),
        ),
        E::EndOfStream | E::OpSend { .. } | E::ResultRecv { .. } => (
            ErrorClass::Connect,
            format!("{}: the connection was lost ({e})", spec.shown_url()),
        ),
        other => (
            ErrorClass::Connect,
            format!("{}: {other}", spec.shown_url()),
        ),
    };
    failure(class, message, spec)
}

/// The TLS settings of `spec`: its CA file, else the system's roots (ldap3's
/// default), StartTLS when asked.
fn settings(spec: &LdapSpec) -> Result<LdapConnSettings, Failure> {
    let mut s = LdapConnSettings::new()
        .set_conn_timeout(spec.timeout)
        .set_starttls(spec.starttls);
    if let Some(path) = &spec.ca_file {
        use rustls::pki_types::{CertificateDer, pem::PemObject as _};
        crate::http::install_crypto_provider();
        let mut roots = rustls::RootCertStore::empty();
        let certs = CertificateDer::pem_file_iter(path).map_err(|e| {
            failure(
                ErrorClass::ClientError,
                format!("reading the CA file {}: {e}", path.display()),
                spec,
            )
        })?;
        for c in certs {
            let c = c.map_err(|e| {
                failure(
                    ErrorClass::ClientError,
                    format!("reading the CA file {}: {e}", path.display()),
                    spec,
                )
            })?;
            roots.add(c).map_err(|e| {
                failure(
                    ErrorClass::ClientError,
                    format!("a certificate in {} is not usable: {e}", path.display()),
                    spec,
                )
            })?;
        }
        let config = rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth();
        s = s.set_config(Arc::new(config));
    } else if spec.url.starts_with("ldaps://") || spec.starttls {
        crate::http::install_crypto_provider();
    }
    Ok(s)
}

/// Connects and binds. The connection's driver runs on its own task until
/// the returned handle and its clones are dropped.
pub async fn connect(spec: &LdapSpec) -> Result<Ldap, Failure> {
    let settings = settings(spec)?;
    let connecting = LdapConnAsync::with_settings(settings, &spec.url);
    let (conn, mut ldap) = tokio::time::timeout(spec.timeout, connecting)
        .await
        .map_err(|_| {
            failure(
                ErrorClass::Timeout,
                format!(
                    "{}: no connection within {} ms",
                    spec.shown_url(),
                    spec.timeout.as_millis()
                ),
                spec,
            )
        })?
        .map_err(|e| client_failure(&e, spec))?;
    tokio::spawn(async move {
        if let Err(e) = conn.drive().await {
            tracing::debug!(error = %e, "LDAP connection ended");
        }
    });
    ldap.with_timeout(spec.timeout);
    if !spec.bind_dn.is_empty() {
        let r = ldap
            .simple_bind(&spec.bind_dn, spec.bind_password.expose())
            .await
            .map_err(|e| client_failure(&e, spec))?;
        if r.rc != 0 {
            return Err(failure(
                classify(r.rc),
                format!("binding as {}: {}", spec.bind_dn, rc_text(r.rc, &r.text)),
                spec,
            ));
        }
    }
    Ok(ldap)
}

/// `ldap3`'s search scope for a query.
pub fn scope(q: &LdapQuery) -> Scope {
    if q.subtree {
        Scope::Subtree
    } else {
        Scope::OneLevel
    }
}

/// The values of `name` in an entry (attribute names are case-insensitive),
/// binary values as lowercase hex.
pub fn values(e: &SearchEntry, name: &str) -> Vec<String> {
    if let Some((_, v)) = e.attrs.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)) {
        return v.clone();
    }
    e.bin_attrs
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.iter().map(|b| hex(b)).collect())
        .unwrap_or_default()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// An AD `objectGUID` (16 bytes, the first three groups little-endian) in
/// its usual form, `{…}` left out.
pub fn guid(b: &[u8]) -> Option<String> {
    let b: &[u8; 16] = b.try_into().ok()?;
    Some(format!(
        "{:02x}{:02x}{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}-{}",
        b[3],
        b[2],
        b[1],
        b[0],
        b[5],
        b[4],
        b[7],
        b[6],
        b[8],
        b[9],
        hex(&b[10..])
    ))
}

/// The entry's stable id by `id_attribute`: a string `entryUUID`, or a binary
/// `objectGUID` in GUID form.
pub fn entry_id(e: &SearchEntry, id_attribute: &str) -> Option<String> {
    if id_attribute.eq_ignore_ascii_case("objectGUID") {
        // 16 bytes that happen to be UTF-8 arrive as text: the same bytes.
        let text = e
            .attrs
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(id_attribute))
            .and_then(|(_, v)| v.first())
            .map(|s| s.as_bytes().to_vec());
        let bin = e
            .bin_attrs
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(id_attribute))
            .and_then(|(_, v)| v.first().cloned());
        return bin.or(text).and_then(|b| guid(&b));
    }
    if let Some((_, v)) = e
        .attrs
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(id_attribute))
    {
        return v
            .first()
            .map(|s| s.trim().to_ascii_lowercase())
            .filter(|s| !s.is_empty());
    }
    let (_, v) = e
        .bin_attrs
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(id_attribute))?;
    v.first().and_then(|b| guid(b))
}

/// One ranged attribute of AD's ranged retrieval: `member;range=0-1499`
/// (`hi` = `Some(1499)`) or `member;range=1500-*` (the last chunk, `None`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ranged {
    pub attribute: String,
    pub lo: u64,
    pub hi: Option<u64>,
}

/// Reads an attribute description as a ranged one, if it is.
pub fn ranged(desc: &str) -> Option<Ranged> {
    let (attribute, opts) = desc.split_once(';')?;
    let range = opts.split(';').find_map(|o| {
        o.get(..6)
            .filter(|p| p.eq_ignore_ascii_case("range="))
            .map(|_| &o[6..])
    })?;
    let (lo, hi) = range.split_once('-')?;
    let lo = lo.trim().parse().ok()?;
    let hi = match hi.trim() {
        "*" => None,
        h => Some(h.parse().ok()?),
    };
    if hi.is_some_and(|h| h < lo) {
        return None;
    }
    Some(Ranged {
        attribute: attribute.to_owned(),
        lo,
        hi,
    })
}

/// The values of `attribute` on an entry, as the directory returned them:
/// all of them, or the first range of them (`Some(range)`: more follow
/// unless the range ends in `*`).
pub fn member_values(e: &SearchEntry, attribute: &str) -> (Vec<String>, Option<Ranged>) {
    for (k, v) in &e.attrs {
        if let Some(r) = ranged(k)
            && r.attribute.eq_ignore_ascii_case(attribute)
        {
            return (v.clone(), Some(r));
        }
    }
    (values(e, attribute), None)
}

/// A DN as a map key: RDN spacing and case do not make two entries.
pub fn dn_key(dn: &str) -> String {
    dn.split(',')
        .map(|rdn| rdn.trim().to_ascii_lowercase())
        .collect::<Vec<_>>()
        .join(",")
}

/// Hex SHA-256 over the entry's attributes, names lowercased and sorted,
/// values sorted: the same entry gives the same digest.
pub fn digest(e: &SearchEntry) -> String {
    let mut all: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (k, v) in &e.attrs {
        let mut v = v.clone();
        v.sort();
        all.insert(k.to_ascii_lowercase(), v);
    }
    for (k, v) in &e.bin_attrs {
        let mut v: Vec<String> = v.iter().map(|b| hex(b)).collect();
        v.sort();
        all.insert(k.to_ascii_lowercase(), v);
    }
    let mut h = Sha256::new();
    h.update(dn_key(&e.dn).as_bytes());
    for (k, v) in &all {
        h.update([0]);
        h.update(k.as_bytes());
        for x in v {
            h.update([1]);
            h.update(x.as_bytes());
        }
    }
    hex(&h.finalize())
}

/// An entry as a record of `entity_type` (`index`: its place in the page).
/// Group members are left for the caller to map (they are DNs here); a user
/// whose active state cannot be read, or any entry without its id, is
/// rejected, never guessed.
pub fn record(
    e: &SearchEntry,
    entity_type: EntityType,
    spec: &LdapSpec,
    page_key: &str,
    index: u32,
) -> Item {
    let raw = digest(e);
    let reject = |reason: RejectReason, detail: String| {
        Item::Rejected(RecordRejected {
            page_key: page_key.to_owned(),
            reason: reason as i32,
            detail,
            index_in_page: index,
            raw_digest: raw.clone(),
            entity_type: entity_type as i32,
        })
    };
    let Some(id) = entry_id(e, &spec.id_attribute) else {
        return reject(
            RejectReason::MissingId,
            format!("entry {} has no {}", e.dn, spec.id_attribute),
        );
    };
    let active = if entity_type == EntityType::User {
        match spec.disable.active(&values(e, spec.disable.attribute())) {
            Ok(a) => Some(a),
            Err(why) => return reject(RejectReason::BadType, format!("entry {}: {why}", e.dn)),
        }
    } else {
        None
    };
    // A group seldom has the users' name attribute: its `cn` then.
    let display_name = values(e, &spec.name_attribute)
        .into_iter()
        .chain(values(e, "cn"))
        .next()
        .unwrap_or_else(|| e.dn.clone());
    let attributes = spec
        .attributes
        .iter()
        .filter_map(|(name, attr)| {
            values(e, attr)
                .into_iter()
                .next()
                .map(|v| (name.clone(), v))
        })
        .collect();
    // Without groups read, a user's `memberOf` names its groups (by DN).
    let memberships = if entity_type == EntityType::User && spec.groups.is_none() {
        values(e, MEMBER_OF)
            .into_iter()
            .map(|dn| format!("dn:{dn}"))
            .collect()
    } else {
        Vec::new()
    };
    Item::Observed(RecordObserved {
        entity_type: entity_type as i32,
        external_id: id,
        active,
        attribute_digest: raw.clone(),
        memberships,
        version: values(e, "modifyTimestamp")
            .into_iter()
            .next()
            .unwrap_or_default(),
        page_key: page_key.to_owned(),
        display_name,
        memberships_incomplete: false,
        read_at_us: 0,
        attributes,
    })
}

/// Parses a raw search result entry without trusting the server: `ldap3`
/// panics on an entry whose structure is not an entry; here that is `None`.
pub fn construct(re: ldap3::ResultEntry) -> Option<SearchEntry> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| SearchEntry::construct(re))).ok()
}

/// The paged-results cookie of a search's response controls (empty = the
/// last page, or a server that does not page), without trusting the server.
pub fn paged_cookie(res: &ldap3::LdapResult) -> Result<Vec<u8>, String> {
    use ldap3::controls::{ControlType, PagedResults};
    for c in &res.ctrls {
        if let ldap3::controls::Control(Some(ControlType::PagedResults), raw) = c {
            let parsed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                raw.parse::<PagedResults>()
            }));
            return parsed
                .map(|p| p.cookie)
                .map_err(|_| "the server's paged-results control does not decode".to_owned());
        }
    }
    Ok(Vec::new())
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn entry(dn: &str, attrs: &[(&str, &[&str])]) -> SearchEntry {
        SearchEntry {
            dn: dn.into(),
            attrs: attrs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), v.iter().map(|s| (*s).to_owned()).collect()))
                .collect(),
            bin_attrs: HashMap::new(),
        }
    }

    fn spec(disable: Disable) -> LdapSpec {
        LdapSpec {
            url: "ldap://127.0.0.1:1".into(),
            starttls: false,
            ca_file: None,
            bind_dn: String::new(),
            bind_password: Secret::new("hunter22"),
            users: None,
            groups: None,
            id_attribute: "entryUUID".into(),
            name_attribute: "uid".into(),
            member_attribute: "member".into(),
            disable,
            attributes: vec![("employee_id".into(), "employeeNumber".into())],
            page_size: 100,
            timeout: Duration::from_secs(1),
        }
    }

    #[test]
    fn disable_rules_read_the_entry() {
        assert_eq!(Disable::PwdAccountLockedTime.active(&[]), Ok(true));
        assert_eq!(
            Disable::PwdAccountLockedTime.active(&[LOCKED_FOREVER.into()]),
            Ok(false)
        );
        assert_eq!(Disable::NsAccountLock.active(&["true".into()]), Ok(false));
        assert_eq!(Disable::NsAccountLock.active(&["FALSE".into()]), Ok(true));
        assert_eq!(
            Disable::AdUserAccountControl.active(&["512".into()]),
            Ok(true)
        );
        assert_eq!(
            Disable::AdUserAccountControl.active(&["514".into()]),
            Ok(false)
        );
        assert!(Disable::AdUserAccountControl.active(&["x".into()]).is_err());
        let a = Disable::Attribute {
            name: "employeeType".into(),
            value: "disabled".into(),
        };
        assert_eq!(a.active(&["Disabled".into()]), Ok(false));
        assert_eq!(a.active(&["staff".into()]), Ok(true));
    }

    #[test]
    fn ranges_parse() {
        assert_eq!(
            ranged("member;range=0-1499"),
            Some(Ranged {
                attribute: "member".into(),
                lo: 0,
                hi: Some(1499)
            })
        );
        assert_eq!(ranged("member;Range=1500-*").unwrap().hi, None);
        assert_eq!(ranged("member"), None);
        assert_eq!(ranged("member;range=5-2"), None);
        assert_eq!(ranged("member;range=a-*"), None);
        assert_eq!(ranged("member;binary"), None);
    }

    #[test]
    fn guid_is_shown_in_ad_order() {
        let b: Vec<u8> = (0u8..16).collect();
        assert_eq!(guid(&b).unwrap(), "03020100-0504-0706-0809-0a0b0c0d0e0f");
        assert_eq!(guid(&b[..3]), None);
    }

    #[test]
    fn entries_become_records_or_rejections() {
        let s = spec(Disable::PwdAccountLockedTime);
        let e = entry(
            "uid=ann,ou=people,dc=example,dc=org",
            &[
                ("entryUUID", &["6E1D6B5E-0000-1000-8000-000000000001"]),
                ("uid", &["ann"]),
                ("employeeNumber", &["E042"]),
                ("pwdAccountLockedTime", &[LOCKED_FOREVER]),
            ],
        );
        let Item::Observed(r) = record(&e, EntityType::User, &s, "p1", 0) else {
            panic!("rejected")
        };
        assert_eq!(r.external_id, "6e1d6b5e-0000-1000-8000-000000000001");
        assert_eq!(r.active, Some(false));
        assert_eq!(r.display_name, "ann");
        assert_eq!(
            r.attributes.get("employee_id").map(String::as_str),
            Some("E042")
        );
        let no_id = entry("uid=bob,ou=people,dc=example,dc=org", &[("uid", &["bob"])]);
        let Item::Rejected(r) = record(&no_id, EntityType::User, &s, "p1", 3) else {
            panic!("accepted an entry without id")
        };
        assert!(
            r.detail.contains("uid=bob") && r.detail.contains("entryUUID"),
            "{}",
            r.detail
        );
        let s = spec(Disable::AdUserAccountControl);
        let bad = entry(
            "cn=x",
            &[("entryUUID", &["u"]), ("userAccountControl", &["lots"])],
        );
        assert!(matches!(
            record(&bad, EntityType::User, &s, "p", 0),
            Item::Rejected(_)
        ));
    }

    #[test]
    fn object_guids_read_as_bytes_whatever_form_they_arrive_in() {
        let bytes: Vec<u8> = (0u8..16).collect();
        let text = String::from_utf8(bytes.clone()).unwrap();
        let as_text = entry("cn=a", &[("objectGUID", &[text.as_str()])]);
        let mut as_bin = entry("cn=a", &[]);
        as_bin.bin_attrs.insert("objectGUID".into(), vec![bytes]);
        let want = Some("03020100-0504-0706-0809-0a0b0c0d0e0f".to_owned());
        assert_eq!(entry_id(&as_text, "objectGUID"), want);
        assert_eq!(entry_id(&as_bin, "objectguid"), want);
    }

    #[test]
    fn users_carry_member_of_when_no_groups_are_read() {
        let mut s = spec(Disable::PwdAccountLockedTime);
        let e = entry(
            "uid=a,dc=x",
            &[("entryUUID", &["u1"]), ("memberOf", &["cn=vpn,dc=x"])],
        );
        let Item::Observed(r) = record(&e, EntityType::User, &s, "p", 0) else {
            panic!()
        };
        assert_eq!(r.memberships, vec!["dn:cn=vpn,dc=x".to_owned()]);
        assert!(s.attrs(EntityType::User).contains(&"memberOf".to_owned()));
        s.groups = Some(LdapQuery {
            base_dn: "ou=g".into(),
            filter: "(cn=*)".into(),
            subtree: true,
        });
        let Item::Observed(r) = record(&e, EntityType::User, &s, "p", 0) else {
            panic!()
        };
        assert!(r.memberships.is_empty());
    }

    #[test]
    fn digests_ignore_order_and_case() {
        let a = entry("uid=a, dc=x", &[("cn", &["a", "b"]), ("sn", &["s"])]);
        let b = entry("UID=a,dc=x", &[("SN", &["s"]), ("cn", &["b", "a"])]);
        assert_eq!(digest(&a), digest(&b));
        let c = entry("uid=a,dc=x", &[("cn", &["a"]), ("sn", &["s"])]);
        assert_ne!(digest(&a), digest(&c));
    }

    #[test]
    fn result_codes_classify() {
        assert_eq!(classify(4), ErrorClass::Limit);
        assert_eq!(classify(3), ErrorClass::Limit);
        assert_eq!(classify(49), ErrorClass::Auth);
        assert_eq!(classify(52), ErrorClass::ServerError);
        assert_eq!(classify(53), ErrorClass::ClientError);
        assert_eq!(
            rc_text(50, "no write access"),
            "LDAP result 50 (insufficientAccessRights): no write access"
        );
    }

    #[test]
    fn secrets_are_scrubbed() {
        let s = spec(Disable::NsAccountLock);
        let f = failure(ErrorClass::Auth, "bad password hunter22 given".into(), &s);
        assert!(!f.message.contains("hunter22"), "{}", f.message);
    }
}
