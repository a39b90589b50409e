//! A real OpenLDAP server (Debian's `slapd` 2.5, installed by
//! `scripts/install-tools.sh`) for the LDAP connector's tests: one plain
//! process per test with its own `cn=config` folder, database and port,
//! killed on drop, seeded through `ldapadd`/`ldapmodify` (ldap-utils).
//!
//! The directory: suffix `dc=example,dc=org`, root DN
//! `cn=admin,dc=example,dc=org` (plain-text password `admin-secret`),
//! `ou=people`, `ou=groups` and `ou=policies` under it; schemas core, cosine,
//! nis and inetorgperson; overlays memberof (`member`/`memberOf` on
//! `groupOfNames`), refint (on `member`) and ppolicy, whose default policy is
//! `cn=default,ou=policies,dc=example,dc=org`.
//!
//! What slapd 2.5 does that a connector must cope with (2.5.13, checked by
//! hand and partly by `tests/slapd_selftest.rs`):
//! - Limits never apply to the root DN: a size limit only shows for anonymous
//!   binds and ordinary users (bind as a seeded user, see [`user_password`]).
//! - With [`SlapdOptions::size_limit`] = N, an unpaged search returns N
//!   entries and then result 4 (Size limit exceeded; `ldapsearch` exits 4),
//!   while a paged search (RFC 2696) returns everything, whatever its page
//!   size (`size.prtotal=unlimited`; `size.pr` is left unset).
//! - `memberOf` is operational: it is returned only when asked by name (or
//!   with `+`), and is maintained by the overlay on writes to `member`
//!   (entries loaded before the overlay would not have it; none are here).
//!   Deleting a user removes it from its groups (refint + memberof).
//! - The ppolicy schema (`pwdPolicy`, `pwdAccountLockedTime`, ...) is built
//!   into the 2.5 overlay module: nothing to include, but the module must be
//!   loaded before the entries use it. The root DN may write
//!   `pwdAccountLockedTime` (`000001010000Z` locks for good); a locked user's
//!   bind fails with 49 (Invalid credentials), as a wrong password does. The
//!   default policy locks after 5 failed binds until an admin unlocks.
//! - `-d 0` makes slapd print nothing, not even why it stopped; the harness
//!   runs it with `-d none`, which prints the errors only (into the log).
//! - The database is written with `olcDbNoSync`: seeding 2,000 users in one
//!   `ldapadd` takes well under a second instead of several (one fsync per
//!   entry otherwise). A killed server may lose its last writes.

use std::{
    fmt::Write as _,
    io::Write as _,
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
};

use crate::{
    Error,
    net::{self, PortWait},
};

/// The directory's suffix.
pub const BASE_DN: &str = "dc=example,dc=org";
/// The root DN (no limits and no ACL apply to it).
pub const ADMIN_DN: &str = "cn=admin,dc=example,dc=org";
/// The root DN's password (plain text in `olcRootPW`).
pub const ADMIN_PASSWORD: &str = "admin-secret";
/// The ppolicy overlay's default policy entry.
pub const DEFAULT_POLICY_DN: &str = "cn=default,ou=policies,dc=example,dc=org";
/// Debian's slapd.
const DEFAULT_SLAPD: &str = "/usr/sbin/slapd";
/// util-linux's `setpriv`: ties slapd's life to the test's without unsafe code.
const SETPRIV: &str = "/usr/bin/setpriv";
/// Debian's modules and schemas.
const MODULE_PATH: &str = "/usr/lib/ldap";
const SCHEMA_DIR: &str = "/etc/ldap/schema";
const SCHEMAS: [&str; 4] = ["core", "cosine", "nis", "inetorgperson"];
/// The mdb map size: 1 GiB of address space (the file grows as needed).
const DB_MAX_SIZE: u64 = 1 << 30;
/// How many free ports a start tries ("Address already in use" retries).
const START_TRIES: usize = 5;
/// How long slapd may take to accept connections.
const READY_TIMEOUT_MS: u64 = 20_000;
const LOG_FILE: &str = "slapd.log";

/// The `slapd` binary: `GOVLEDGER_SLAPD`, else Debian's `/usr/sbin/slapd`.
pub fn slapd_bin() -> Result<PathBuf, Error> {
    let bin =
        std::env::var_os("GOVLEDGER_SLAPD").map_or_else(|| DEFAULT_SLAPD.into(), PathBuf::from);
    if bin.is_file() {
        return Ok(bin);
    }
    Err(Error::Failed(format!(
        "no slapd at {}: run scripts/install-tools.sh (installs Debian's slapd and ldap-utils), \
         or set GOVLEDGER_SLAPD",
        bin.display()
    )))
}

/// The password [`Slapd::add_users`] gives user `uid`.
pub fn user_password(uid: &str) -> String {
    format!("{uid}-password")
}

/// How a [`Slapd`] is configured.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SlapdOptions {
    /// `olcSizeLimit: size.soft=N size.hard=N size.prtotal=unlimited` on the
    /// frontend and the database: an unpaged search stops at N entries with
    /// "Size limit exceeded", a paged one reads everything. `None`: slapd's
    /// default (500, soft and hard).
    pub size_limit: Option<u32>,
    /// With a `size_limit`, paged searches stop at it too
    /// (`size.prtotal=N`): the server's limit a paging connector meets.
    pub limit_paged: bool,
    /// TLS: StartTLS on the `ldap://` port and a second `ldaps://` port,
    /// with this certificate, key and CA (PEM paths).
    pub tls: Option<SlapdTls>,
}

/// The PEM files slapd serves TLS with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlapdTls {
    pub cert: String,
    pub key: String,
    pub ca: String,
}

impl SlapdOptions {
    /// These options with paged searches limited too (see [`Self::limit_paged`]).
    pub fn limit_paged(mut self) -> Self {
        self.limit_paged = true;
        self
    }

    /// These options with [`Self::size_limit`] = `n`.
    pub fn size_limit(mut self, n: u32) -> Self {
        self.size_limit = Some(n);
        self
    }
}

/// A real `slapd` owned by one test; dropping it kills the process.
pub struct Slapd {
    port: u16,
    url: String,
    /// `ldaps://127.0.0.1:PORT` when started with TLS.
    ldaps_url: Option<String>,
    child: Option<Child>,
    dir: tempfile::TempDir,
}

impl Slapd {
    /// Starts a slapd with the default options on a free port, with the base
    /// entries (people, groups, policies) in place.
    pub fn start() -> Self {
        Self::start_with(&SlapdOptions::default())
    }

    /// [`Self::start`] with `options`.
    pub fn start_with(options: &SlapdOptions) -> Self {
        slapd_bin()
            .and_then(|bin| Self::try_start(&bin, options))
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// Writes the configuration, starts `bin` on a free port, waits until it
    /// accepts connections and adds the base entries. Blocking; call it from
    /// the thread that owns the server (slapd dies with that thread).
    pub fn try_start(bin: &Path, options: &SlapdOptions) -> Result<Self, Error> {
        let dir = tempfile::Builder::new()
            .prefix("govledger-slapd-")
            .tempdir()
            .map_err(Error::io("creating the slapd folder"))?;
        configure(bin, dir.path(), options)?;
        let log = dir.path().join(LOG_FILE);
        // A free port can be taken between the probe and the bind: retry.
        for _ in 0..START_TRIES {
            let port = net::try_free_port()?;
            let tls_port = match options.tls {
                Some(_) => Some(net::try_free_port()?),
                None => None,
            };
            let mut child = spawn(bin, dir.path(), (port, tls_port), &log)?;
            let ready = net::wait_port(port, READY_TIMEOUT_MS, || {
                matches!(child.try_wait(), Ok(None))
            });
            if ready.is_ok() {
                let server = Self {
                    port,
                    url: format!("ldap://127.0.0.1:{port}"),
                    ldaps_url: tls_port.map(|p| format!("ldaps://127.0.0.1:{p}")),
                    child: Some(child),
                    dir,
                };
                server.try_add_ldif(&base_ldif())?;
                return Ok(server);
            }
            let _ = child.kill();
            let _ = child.wait();
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if ready == Err(PortWait::Exited) && text.contains("Address already in use") {
                continue;
            }
            return Err(Error::Failed(format!(
                "slapd did not come up on port {port}; log:\n{text}"
            )));
        }
        Err(Error::Failed(format!(
            "slapd: no free port after {START_TRIES} tries"
        )))
    }

    /// `ldap://127.0.0.1:PORT`
    pub fn url(&self) -> &str {
        &self.url
    }

    /// `ldaps://127.0.0.1:PORT`, when started with [`SlapdOptions::tls`].
    pub fn ldaps_url(&self) -> Option<&str> {
        self.ldaps_url.as_deref()
    }

    /// The port slapd listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:PORT`, e.g. the upstream of an
    /// [`AdRangeProxy`](crate::ad_range_proxy::AdRangeProxy).
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// `dc=example,dc=org`
    pub fn base_dn(&self) -> &'static str {
        BASE_DN
    }

    /// `ou=people,dc=example,dc=org`
    pub fn people_dn(&self) -> String {
        format!("ou=people,{BASE_DN}")
    }

    /// `ou=groups,dc=example,dc=org`
    pub fn groups_dn(&self) -> String {
        format!("ou=groups,{BASE_DN}")
    }

    /// The DN of user `uid` under [`Self::people_dn`].
    pub fn user_dn(&self, uid: &str) -> String {
        format!("uid={uid},ou=people,{BASE_DN}")
    }

    /// The DN of group `cn` under [`Self::groups_dn`].
    pub fn group_dn(&self, cn: &str) -> String {
        format!("cn={cn},ou=groups,{BASE_DN}")
    }

    /// The root DN (limits do not apply to it).
    pub fn admin_dn(&self) -> &'static str {
        ADMIN_DN
    }

    /// The root DN's password.
    pub fn admin_password(&self) -> &'static str {
        ADMIN_PASSWORD
    }

    /// What slapd printed (`-d none`: its errors).
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(self.dir.path().join(LOG_FILE)).unwrap_or_default()
    }

    /// SIGKILL and wait; the server no longer answers (its folder stays until
    /// drop).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// [`Self::try_add_ldif`], panicking on failure (for tests).
    pub fn add_ldif(&self, ldif: &str) {
        self.try_add_ldif(ldif).unwrap_or_else(|e| panic!("{e}"));
    }

    /// Adds the entries of `ldif` as the root DN (`ldapadd`, one call).
    pub fn try_add_ldif(&self, ldif: &str) -> Result<(), Error> {
        self.ldap_tool("ldapadd", ldif)
    }

    /// [`Self::try_modify_ldif`], panicking on failure (for tests).
    pub fn modify_ldif(&self, ldif: &str) {
        self.try_modify_ldif(ldif).unwrap_or_else(|e| panic!("{e}"));
    }

    /// Applies the change records of `ldif` (`changetype: ...`) as the root
    /// DN (`ldapmodify`, one call).
    pub fn try_modify_ldif(&self, ldif: &str) -> Result<(), Error> {
        self.ldap_tool("ldapmodify", ldif)
    }

    /// [`Self::try_add_users`], panicking on failure (for tests).
    pub fn add_users(&self, prefix: &str, n: usize) -> Vec<String> {
        self.try_add_users(prefix, n)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// Adds `n` `inetOrgPerson` users `uid=PREFIXi,ou=people,...` (i in
    /// 0..n) with cn, sn, mail `PREFIXi@example.org`, employeeNumber `E`
    /// followed by i on six digits, and userPassword [`user_password`]; one
    /// `ldapadd`. Returns their DNs in order of i.
    pub fn try_add_users(&self, prefix: &str, n: usize) -> Result<Vec<String>, Error> {
        let mut ldif = String::with_capacity(n * 256);
        let mut dns = Vec::with_capacity(n);
        for i in 0..n {
            let uid = format!("{prefix}{i}");
            let dn = self.user_dn(&uid);
            // Writing into a String cannot fail.
            let _ = write!(
                ldif,
                "dn: {dn}\nobjectClass: inetOrgPerson\nuid: {uid}\ncn: Test {uid}\nsn: {uid}\n\
                 mail: {uid}@example.org\nemployeeNumber: E{i:06}\nuserPassword: {}\n\n",
                user_password(&uid)
            );
            dns.push(dn);
        }
        if n > 0 {
            self.try_add_ldif(&ldif)?;
        }
        Ok(dns)
    }

    /// [`Self::try_add_group`], panicking on failure (for tests).
    pub fn add_group<S: AsRef<str>>(&self, cn: &str, member_uids: &[S]) -> String {
        self.try_add_group(cn, member_uids)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// Adds the `groupOfNames` `cn=CN,ou=groups,...` whose `member`s are the
    /// users `member_uids` (at least one: the class demands a member).
    /// Returns its DN.
    pub fn try_add_group<S: AsRef<str>>(
        &self,
        cn: &str,
        member_uids: &[S],
    ) -> Result<String, Error> {
        if member_uids.is_empty() {
            return Err(Error::Failed(format!(
                "group {cn}: a groupOfNames needs at least one member"
            )));
        }
        let dn = self.group_dn(cn);
        let mut ldif = format!("dn: {dn}\nobjectClass: groupOfNames\ncn: {cn}\n");
        for uid in member_uids {
            let _ = writeln!(ldif, "member: {}", self.user_dn(uid.as_ref()));
        }
        self.try_add_ldif(&ldif)?;
        Ok(dn)
    }

    /// Runs `tool` (`ldapadd`, `ldapmodify`) as the root DN with `ldif` on
    /// its stdin; a non-zero exit is an error carrying its output.
    fn ldap_tool(&self, tool: &str, ldif: &str) -> Result<(), Error> {
        let mut child = Command::new(tool)
            .args(["-x", "-H", &self.url, "-D", ADMIN_DN, "-w", ADMIN_PASSWORD])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(Error::io(format!(
                "cannot start {tool} (ldap-utils; run scripts/install-tools.sh)"
            )))?;
        let stdin = child.stdin.take();
        // Written from a second thread: the tool prints a line per entry, and
        // a full stdout pipe would otherwise block it while we block on stdin.
        let out = std::thread::scope(|s| {
            s.spawn(move || {
                if let Some(mut stdin) = stdin {
                    // A tool that stopped early closes its stdin; its exit
                    // status and stderr say why.
                    let _ = stdin.write_all(ldif.as_bytes());
                }
            });
            child.wait_with_output()
        })
        .map_err(Error::io(format!("waiting for {tool}")))?;
        if out.status.success() {
            return Ok(());
        }
        let stdout = String::from_utf8_lossy(&out.stdout);
        let last: Vec<&str> = stdout.lines().rev().take(3).collect();
        Err(Error::Failed(format!(
            "{tool} against {} failed ({}): {}\nlast output: {}\nslapd log:\n{}",
            self.url,
            out.status,
            String::from_utf8_lossy(&out.stderr).trim(),
            last.into_iter().rev().collect::<Vec<_>>().join(" | "),
            self.log_text()
        )))
    }
}

impl Drop for Slapd {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Writes `DIR/config.ldif` and loads it into `DIR/slapd.d` with
/// `slapadd -n0` (run as `slapd -T add`: slapadd is slapd in tool mode).
fn configure(bin: &Path, dir: &Path, options: &SlapdOptions) -> Result<(), Error> {
    let conf = dir.join("slapd.d");
    let data = dir.join("data");
    for d in [&conf, &data] {
        std::fs::create_dir(d).map_err(Error::io(format!("creating {}", d.display())))?;
    }
    let ldif = dir.join("config.ldif");
    std::fs::write(&ldif, config_ldif(&data, options))
        .map_err(Error::io(format!("writing {}", ldif.display())))?;
    let out = Command::new(bin)
        .args(["-T", "add", "-n0", "-F"])
        .arg(&conf)
        .arg("-l")
        .arg(&ldif)
        .stdin(Stdio::null())
        .output()
        .map_err(Error::io(format!(
            "cannot run {} as slapadd (run scripts/install-tools.sh)",
            bin.display()
        )))?;
    if !out.status.success() {
        return Err(Error::Failed(format!(
            "slapadd -n0 of {} failed ({}): {}{}",
            ldif.display(),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    Ok(())
}

/// The `cn=config` tree: modules, schemas, frontend, config database and the
/// mdb database in `data` with its overlays.
fn config_ldif(data: &Path, options: &SlapdOptions) -> String {
    let limit = options
        .size_limit
        .map(|n| {
            let prtotal = if options.limit_paged {
                n.to_string()
            } else {
                "unlimited".to_owned()
            };
            format!("olcSizeLimit: size.soft={n} size.hard={n} size.prtotal={prtotal}\n")
        })
        .unwrap_or_default();
    let tls = options
        .tls
        .as_ref()
        .map(|t| {
            format!(
                "olcTLSCertificateFile: {}\nolcTLSCertificateKeyFile: {}\nolcTLSCACertificateFile: {}\n",
                t.cert, t.key, t.ca
            )
        })
        .unwrap_or_default();
    let mut s = format!(
        "dn: cn=config\nobjectClass: olcGlobal\ncn: config\n{tls}\n\
         dn: cn=module{{0}},cn=config\nobjectClass: olcModuleList\ncn: module{{0}}\n\
         olcModulePath: {MODULE_PATH}\nolcModuleLoad: back_mdb\nolcModuleLoad: memberof\n\
         olcModuleLoad: refint\nolcModuleLoad: ppolicy\n\n\
         dn: cn=schema,cn=config\nobjectClass: olcSchemaConfig\ncn: schema\n\n"
    );
    for schema in SCHEMAS {
        let _ = write!(s, "include: file://{SCHEMA_DIR}/{schema}.ldif\n\n");
    }
    let _ = write!(
        s,
        "dn: olcDatabase={{-1}}frontend,cn=config\nobjectClass: olcDatabaseConfig\n\
         objectClass: olcFrontendConfig\nolcDatabase: {{-1}}frontend\n{limit}\n\
         dn: olcDatabase={{0}}config,cn=config\nobjectClass: olcDatabaseConfig\n\
         olcDatabase: {{0}}config\nolcAccess: {{0}}to * by * none\n\n\
         dn: olcDatabase={{1}}mdb,cn=config\nobjectClass: olcDatabaseConfig\n\
         objectClass: olcMdbConfig\nolcDatabase: {{1}}mdb\nolcDbDirectory: {data}\n\
         olcSuffix: {BASE_DN}\nolcRootDN: {ADMIN_DN}\nolcRootPW: {ADMIN_PASSWORD}\n\
         olcDbMaxSize: {DB_MAX_SIZE}\nolcDbNoSync: TRUE\nolcDbIndex: objectClass eq\n\
         olcDbIndex: uid eq\nolcDbIndex: member eq\n{limit}\
         olcAccess: {{0}}to attrs=userPassword by self write by anonymous auth by * none\n\
         olcAccess: {{1}}to * by * read\n\n\
         dn: olcOverlay={{0}}memberof,olcDatabase={{1}}mdb,cn=config\n\
         objectClass: olcOverlayConfig\nobjectClass: olcMemberOf\nolcOverlay: {{0}}memberof\n\
         olcMemberOfRefInt: TRUE\nolcMemberOfGroupOC: groupOfNames\n\
         olcMemberOfMemberAD: member\nolcMemberOfMemberOfAD: memberOf\n\n\
         dn: olcOverlay={{1}}refint,olcDatabase={{1}}mdb,cn=config\n\
         objectClass: olcOverlayConfig\nobjectClass: olcRefintConfig\n\
         olcOverlay: {{1}}refint\nolcRefintAttribute: member\n\n\
         dn: olcOverlay={{2}}ppolicy,olcDatabase={{1}}mdb,cn=config\n\
         objectClass: olcOverlayConfig\nobjectClass: olcPPolicyConfig\n\
         olcOverlay: {{2}}ppolicy\nolcPPolicyDefault: {DEFAULT_POLICY_DN}\n",
        data = data.display()
    );
    s
}

/// The suffix, the three branches and the default password policy (a
/// `device` carrying the auxiliary `pwdPolicy`).
fn base_ldif() -> String {
    let mut s = format!(
        "dn: {BASE_DN}\nobjectClass: dcObject\nobjectClass: organization\ndc: example\n\
         o: example\n\n"
    );
    for ou in ["people", "groups", "policies"] {
        let _ = write!(
            s,
            "dn: ou={ou},{BASE_DN}\nobjectClass: organizationalUnit\nou: {ou}\n\n"
        );
    }
    let _ = write!(
        s,
        "dn: {DEFAULT_POLICY_DN}\nobjectClass: device\nobjectClass: pwdPolicy\ncn: default\n\
         pwdAttribute: userPassword\npwdLockout: TRUE\npwdMaxFailure: 5\n\
         pwdLockoutDuration: 0\n"
    );
    s
}

/// Spawns slapd in the foreground on `127.0.0.1:port` with the config in
/// `dir/slapd.d`, its output into `log`. Through `setpriv --pdeathsig KILL`
/// (util-linux, on every Debian) when present: slapd then dies with the
/// spawning thread even when the test is SIGKILLed, with no unsafe code here.
fn spawn(bin: &Path, dir: &Path, ports: (u16, Option<u16>), log: &Path) -> Result<Child, Error> {
    let (port, tls_port) = ports;
    let mut urls = format!("ldap://127.0.0.1:{port}/");
    if let Some(p) = tls_port {
        urls.push_str(&format!(" ldaps://127.0.0.1:{p}/"));
    }
    let out =
        std::fs::File::create(log).map_err(Error::io(format!("creating {}", log.display())))?;
    let err = out
        .try_clone()
        .map_err(Error::io("cloning the log handle"))?;
    let mut cmd = if Path::new(SETPRIV).is_file() {
        let mut c = Command::new(SETPRIV);
        c.args(["--pdeathsig", "KILL", "--"]).arg(bin);
        c
    } else {
        Command::new(bin)
    };
    cmd.args(["-d", "none", "-h", &urls, "-F"])
        .arg(dir.join("slapd.d"))
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .map_err(Error::io(format!(
            "cannot start {} (run scripts/install-tools.sh)",
            bin.display()
        )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_limit_goes_to_frontend_and_database() {
        let plain = config_ldif(Path::new("/x"), &SlapdOptions::default());
        assert!(!plain.contains("olcSizeLimit"));
        let limited = config_ldif(Path::new("/x"), &SlapdOptions::default().size_limit(50));
        let line = "olcSizeLimit: size.soft=50 size.hard=50 size.prtotal=unlimited\n";
        assert_eq!(limited.matches(line).count(), 2, "{limited}");
        assert!(limited.contains("olcDbDirectory: /x\n"));
    }

    #[test]
    fn base_entries_are_separated_records() {
        let ldif = base_ldif();
        assert_eq!(ldif.matches("\ndn: ").count() + 1, 5, "{ldif}");
        assert!(!ldif.contains("\n\n\n"));
    }
}
