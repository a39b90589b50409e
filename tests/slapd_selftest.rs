//! Self-test of the LDAP harness against a real OpenLDAP `slapd`, read back
//! with the real `ldapsearch`/`ldapwhoami` (ldap-utils): seeding
//! (`testkit/src/slapd.rs`), memberOf, a ppolicy lock, the size limit with
//! and without paging, and Active Directory's ranged `member` retrieval
//! through the proxy (`testkit/src/ad_range_proxy.rs`).
use std::{process::Command, time::Instant};

use govledger_testkit::{
    ad_range_proxy::AdRangeProxy,
    slapd::{Slapd, SlapdOptions, user_password},
};

/// One `ldapsearch`/`ldapwhoami` run.
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Run {
    /// The values of `attr` (exact name, e.g. `member;range=0-49`).
    fn values(&self, attr: &str) -> Vec<String> {
        let prefix = format!("{attr}: ");
        self.stdout
            .lines()
            .filter_map(|l| l.strip_prefix(&prefix))
            .map(str::to_owned)
            .collect()
    }

    /// The attribute names in the output (`name: value` lines).
    fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .stdout
            .lines()
            .filter_map(|l| l.split_once(": ").map(|(n, _)| n.to_owned()))
            .collect();
        names.dedup();
        names
    }

    fn entries(&self) -> usize {
        self.values("dn").len()
    }
}

fn run(tool: &str, args: &[&str]) -> Run {
    let out = Command::new(tool)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{tool} (run scripts/install-tools.sh): {e}"));
    Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// An anonymous `ldapsearch -LLL` (no line wrapping) of `base` at `url`.
fn search(url: &str, base: &str, extra: &[&str]) -> Run {
    let mut args = vec!["-x", "-LLL", "-o", "ldif_wrap=no", "-H", url, "-b", base];
    args.extend_from_slice(extra);
    run("ldapsearch", &args)
}

/// The `member` values of `group` at `url`, asking for `attr`.
fn members(url: &str, group: &str, attr: &str) -> Run {
    let r = search(url, group, &["-s", "base", "(objectClass=*)", attr]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    r
}

#[test]
fn ranged_member_through_the_ad_range_proxy() {
    let slapd = Slapd::start();
    let users = slapd.add_users("user", 200);
    let uids: Vec<String> = (0..120).map(|i| format!("user{i}")).collect();
    let group = slapd.add_group("big", &uids);
    let small = slapd.add_group("small", &["user0", "user1", "user2"]);
    let proxy = AdRangeProxy::start(slapd.addr(), 50);

    // slapd itself: all 120 at once, in the order they were added.
    let direct = members(slapd.url(), &group, "member");
    assert_eq!(direct.values("member"), users[..120]);

    let url = proxy.url();
    let first = members(&url, &group, "member");
    assert_eq!(
        first.names(),
        ["dn", "member;range=0-49"],
        "{}",
        first.stdout
    );
    assert_eq!(first.values("member;range=0-49"), users[..50]);

    let second = members(&url, &group, "member;range=50-*");
    assert_eq!(second.names(), ["dn", "member;range=50-99"]);
    assert_eq!(second.values("member;range=50-99"), users[50..100]);
    let asked = members(&url, &group, "member;range=50-99");
    assert_eq!(asked.values("member;range=50-99"), users[50..100]);

    let last = members(&url, &group, "Member;Range=100-*");
    assert_eq!(
        last.names(),
        ["dn", "member;range=100-*"],
        "{}",
        last.stdout
    );
    assert_eq!(last.values("member;range=100-*"), users[100..120]);

    // Small groups pass unchanged; other attributes too.
    let plain = members(&url, &small, "member");
    assert_eq!(plain.names(), ["dn", "member"]);
    assert_eq!(plain.values("member").len(), 3);
    let cn = members(&url, &group, "cn");
    assert_eq!(cn.values("cn"), ["big"]);
    // A ranged entry per chunk served above (not the small group or `cn`).
    assert_eq!(proxy.ranged_entries(), 4);

    // memberOf (operational: asked by name) is kept by the overlay.
    let user = search(
        slapd.url(),
        &users[1],
        &["-s", "base", "(objectClass=*)", "memberOf"],
    );
    assert_eq!(user.values("memberOf"), [group.clone(), small.clone()]);
    let outside = search(
        slapd.url(),
        &users[150],
        &["-s", "base", "(objectClass=*)", "memberOf"],
    );
    assert!(outside.values("memberOf").is_empty(), "{}", outside.stdout);
}

#[test]
fn paged_search_reads_every_user() {
    let slapd = Slapd::start();
    slapd.add_users("p", 200);
    let r = search(
        slapd.url(),
        &slapd.people_dn(),
        &["-E", "pr=50/noprompt", "(objectClass=inetOrgPerson)", "uid"],
    );
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert_eq!(r.entries(), 200);
    let mut uids = r.values("uid");
    uids.sort();
    uids.dedup();
    assert_eq!(uids.len(), 200);
}

#[test]
fn size_limit_cuts_unpaged_searches_only() {
    let slapd = Slapd::start_with(&SlapdOptions::default().size_limit(50));
    slapd.add_users("s", 200);
    let people = slapd.people_dn();
    let filter = "(objectClass=inetOrgPerson)";

    let unpaged = search(slapd.url(), &people, &[filter, "uid"]);
    assert_eq!(unpaged.code, Some(4), "{}", unpaged.stderr);
    assert!(
        unpaged.stderr.contains("Size limit exceeded"),
        "{}",
        unpaged.stderr
    );
    assert_eq!(unpaged.entries(), 50);

    // Paged: everything, whether pages are under or over the limit.
    for page in ["pr=10/noprompt", "pr=100/noprompt"] {
        let paged = search(slapd.url(), &people, &["-E", page, filter, "uid"]);
        assert_eq!(paged.code, Some(0), "{page}: {}", paged.stderr);
        assert_eq!(paged.entries(), 200, "{page}");
    }

    // An ordinary user is limited too; the root DN never is.
    let pw = user_password("s7");
    let user_dn = slapd.user_dn("s7");
    let as_user = search(
        slapd.url(),
        &people,
        &["-D", &user_dn, "-w", &pw, filter, "uid"],
    );
    assert_eq!(
        (as_user.code, as_user.entries()),
        (Some(4), 50),
        "{}",
        as_user.stderr
    );
    let as_root = search(
        slapd.url(),
        &people,
        &[
            "-D",
            slapd.admin_dn(),
            "-w",
            slapd.admin_password(),
            filter,
            "uid",
        ],
    );
    assert_eq!(
        (as_root.code, as_root.entries()),
        (Some(0), 200),
        "{}",
        as_root.stderr
    );
}

#[test]
fn seeding_two_thousand_users_and_locking_one() {
    let mut slapd = Slapd::start();
    let t = Instant::now();
    let dns = slapd.add_users("bulk", 2000);
    let took = t.elapsed();
    eprintln!("add_users(2000): {took:.2?}");
    assert!(took.as_secs() < 20, "seeding 2,000 users took {took:.2?}");
    assert_eq!(dns.len(), 2000);

    let one = search(
        slapd.url(),
        &dns[42],
        &["-s", "base", "(objectClass=*)", "mail", "employeeNumber"],
    );
    assert_eq!(one.values("mail"), ["bulk42@example.org"]);
    assert_eq!(one.values("employeeNumber"), ["E000042"]);

    let whoami = |uid: &str| {
        let dn = slapd.user_dn(uid);
        let pw = user_password(uid);
        run(
            "ldapwhoami",
            &["-x", "-H", slapd.url(), "-D", &dn, "-w", &pw],
        )
    };
    assert_eq!(whoami("bulk1").code, Some(0), "{}", whoami("bulk1").stderr);
    slapd.modify_ldif(&format!(
        "dn: {}\nchangetype: modify\nadd: pwdAccountLockedTime\npwdAccountLockedTime: 000001010000Z\n",
        dns[1]
    ));
    let locked = whoami("bulk1");
    assert_eq!(
        locked.code,
        Some(49),
        "a locked user binds: {}",
        locked.stdout
    );
    assert_eq!(whoami("bulk2").code, Some(0));
    let attr = search(
        slapd.url(),
        &dns[1],
        &[
            "-D",
            slapd.admin_dn(),
            "-w",
            slapd.admin_password(),
            "-s",
            "base",
            "(objectClass=*)",
            "pwdAccountLockedTime",
        ],
    );
    assert_eq!(attr.values("pwdAccountLockedTime"), ["000001010000Z"]);

    // A bad seed is an error carrying ldapadd's words.
    let err = slapd.try_add_ldif(&format!(
        "dn: {}\nobjectClass: inetOrgPerson\nuid: x\ncn: x\nsn: x\n",
        dns[0]
    ));
    let msg = err.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(msg.contains("Already exists"), "{msg}");

    slapd.kill();
    let gone = search(slapd.url(), slapd.base_dn(), &["-s", "base"]);
    assert_ne!(gone.code, Some(0), "slapd still answers after kill");
}
