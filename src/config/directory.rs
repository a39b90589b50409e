//! `[sources.ldap]` and `[sources.file]`: a directory (OpenLDAP, Active
//! Directory) and an HR file drop folder, checked once into the specs the
//! sync engine reads with. Errors name the key.

use std::{path::PathBuf, sync::Arc, time::Duration};

use govledger_ingest::{
    hrfile::{Columns, Completeness, FileSpec, Format},
    http::{Auth, Secret},
    ldap::{Disable, LdapQuery, LdapSpec},
    rest::ActiveWords,
};
use serde::Deserialize;

use super::error::{ConfigError, invalid};

/// Which directory server: sets the defaults of the keys below.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Directory {
    /// OpenLDAP and friends: `entryUUID`, `uid`, `member`, ppolicy locks.
    #[default]
    Openldap,
    /// Active Directory: `objectGUID`, `sAMAccountName`, `member` (ranged),
    /// `userAccountControl` bit 2.
    ActiveDirectory,
}

/// How a disabled account shows, and how the executor disables one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DisableSetting {
    PwdAccountLockedTime,
    NsAccountLock,
    AdUserAccountControl,
    /// `disable_attribute` holds `disable_value`.
    Attribute,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ScopeSetting {
    #[default]
    Subtree,
    One,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LdapConfig {
    /// `openldap` (default) or `active-directory`: the defaults below.
    pub directory: Directory,
    /// Where users are, e.g. `ou=people,dc=example,dc=org` (unset: no users read).
    pub users_base: Option<String>,
    pub users_filter: Option<String>,
    /// Where groups are (unset: no groups read).
    pub groups_base: Option<String>,
    pub groups_filter: Option<String>,
    /// `subtree` (default) or `one` (one level below the base).
    pub scope: ScopeSetting,
    /// The stable id: `entryUUID` (OpenLDAP) or `objectGUID` (AD).
    pub id_attribute: Option<String>,
    /// The label: `uid`, `sAMAccountName`.
    pub name_attribute: Option<String>,
    /// Group members: `member`, `uniqueMember`.
    pub member_attribute: Option<String>,
    /// `pwd-account-locked-time`, `ns-account-lock`, `ad-user-account-control`
    /// or `attribute` (with `disable_attribute` and `disable_value`).
    pub disable: Option<DisableSetting>,
    pub disable_attribute: Option<String>,
    pub disable_value: Option<String>,
    /// Upgrade `ldap://` with StartTLS before binding.
    pub starttls: bool,
    /// PEM CA certificates to trust for `ldaps://` / StartTLS (else the system's).
    pub ca_file: Option<PathBuf>,
}

impl LdapConfig {
    /// The directory spec of the source at `k`, bound with `auth` (none, or
    /// basic: the bind DN as `username`, its password from env or file).
    #[allow(clippy::too_many_arguments)]
    pub fn spec(
        &self,
        k: &dyn Fn(&str) -> String,
        url: &str,
        auth: &Auth,
        attributes: Vec<(String, String)>,
        page_size: u32,
        timeout: Duration,
    ) -> Result<Arc<LdapSpec>, ConfigError> {
        if !(url.starts_with("ldap://") || url.starts_with("ldaps://")) {
            return Err(invalid(
                k("base_url"),
                format!(
                    "{:?} is not an ldap:// or ldaps:// URL",
                    govledger_stream::redact_url(url)
                ),
            ));
        }
        if self.starttls && url.starts_with("ldaps://") {
            return Err(invalid(
                k("ldap.starttls"),
                "only for ldap:// URLs (ldaps:// is TLS already)",
            ));
        }
        let (bind_dn, bind_password) = match auth {
            Auth::None => (String::new(), Secret::new("")),
            Auth::Basic { username, password } => (username.clone(), password.clone()),
            _ => {
                return Err(invalid(
                    k("auth.kind"),
                    "an LDAP source binds with kind = \"basic\" (username = the bind DN) or \"none\"",
                ));
            }
        };
        let ad = self.directory == Directory::ActiveDirectory;
        let pick = |v: &Option<String>, openldap: &str, active_directory: &str| {
            v.clone()
                .unwrap_or_else(|| if ad { active_directory } else { openldap }.to_owned())
        };
        let query = |base: &Option<String>,
                     filter: &Option<String>,
                     key: &str,
                     dflt: (&str, &str)| {
            base.as_ref()
                .map(|b| -> Result<LdapQuery, ConfigError> {
                    let filter = pick(filter, dflt.0, dflt.1);
                    if !(filter.starts_with('(') && filter.ends_with(')')) {
                        return Err(invalid(
                            k(&format!("ldap.{key}_filter")),
                            format!("{filter:?} is not an LDAP filter: write it in parentheses, e.g. \"(objectClass=person)\""),
                        ));
                    }
                    if b.trim().is_empty() {
                        return Err(invalid(k(&format!("ldap.{key}_base")), "must not be empty"));
                    }
                    Ok(LdapQuery {
                        base_dn: b.trim().to_owned(),
                        filter,
                        subtree: self.scope == ScopeSetting::Subtree,
                    })
                })
                .transpose()
        };
        let users = query(
            &self.users_base,
            &self.users_filter,
            "users",
            (
                "(objectClass=inetOrgPerson)",
                "(&(objectCategory=person)(objectClass=user))",
            ),
        )?;
        let groups = query(
            &self.groups_base,
            &self.groups_filter,
            "groups",
            ("(objectClass=groupOfNames)", "(objectClass=group)"),
        )?;
        if users.is_none() && groups.is_none() {
            return Err(invalid(
                k("ldap.users_base"),
                "say where to read: users_base and/or groups_base",
            ));
        }
        let disable = self.disable_rule(k, ad)?;
        Ok(Arc::new(LdapSpec {
            url: url.to_owned(),
            starttls: self.starttls,
            ca_file: self.ca_file.clone(),
            bind_dn,
            bind_password,
            users,
            groups,
            id_attribute: pick(&self.id_attribute, "entryUUID", "objectGUID"),
            name_attribute: pick(&self.name_attribute, "uid", "sAMAccountName"),
            member_attribute: pick(&self.member_attribute, "member", "member"),
            disable,
            attributes,
            page_size,
            timeout,
        }))
    }

    /// How disabled accounts show (and are disabled): the setting, else the
    /// directory's usual rule.
    fn disable_rule(&self, k: &dyn Fn(&str) -> String, ad: bool) -> Result<Disable, ConfigError> {
        let disable = match (self.disable, ad) {
            (Some(DisableSetting::PwdAccountLockedTime), _) | (None, false) => {
                Disable::PwdAccountLockedTime
            }
            (Some(DisableSetting::NsAccountLock), _) => Disable::NsAccountLock,
            (Some(DisableSetting::AdUserAccountControl), _) | (None, true) => {
                Disable::AdUserAccountControl
            }
            (Some(DisableSetting::Attribute), _) => {
                match (&self.disable_attribute, &self.disable_value) {
                    (Some(name), Some(value)) if !name.trim().is_empty() && !value.is_empty() => {
                        Disable::Attribute {
                            name: name.trim().to_owned(),
                            value: value.clone(),
                        }
                    }
                    _ => {
                        return Err(invalid(
                            k("ldap.disable_attribute"),
                            "disable = \"attribute\" needs disable_attribute and disable_value",
                        ));
                    }
                }
            }
        };
        if self.disable != Some(DisableSetting::Attribute)
            && (self.disable_attribute.is_some() || self.disable_value.is_some())
        {
            return Err(invalid(
                k("ldap.disable_attribute"),
                "only with disable = \"attribute\"",
            ));
        }
        Ok(disable)
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FormatSetting {
    #[default]
    Csv,
    Jsonl,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CompletenessSetting {
    /// The last row: `trailer_word,COUNT`.
    #[default]
    Trailer,
    /// `<file><control_suffix>` holds the count.
    ControlFile,
    /// `<file><manifest_suffix>`: JSON with the count at `manifest_count_pointer`.
    Manifest,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ColumnsConfig {
    /// The person's id (required).
    pub id: Option<String>,
    pub status: Option<String>,
    pub email: Option<String>,
    pub manager: Option<String>,
    /// `YYYY-MM-DD`: past it, the person has left.
    pub end_date: Option<String>,
    pub name: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FileConfig {
    /// The folder the exports land in.
    pub dir: Option<PathBuf>,
    /// File names with one `*`, e.g. `workers_*.csv`.
    pub pattern: Option<String>,
    /// `csv` (default, with a header row) or `jsonl` (JSON Lines).
    pub format: FormatSetting,
    /// CSV field delimiter (one ASCII character; default `,`).
    pub delimiter: Option<String>,
    /// `trailer` (default), `control-file` or `manifest`: where the row count comes from.
    pub completeness: CompletenessSetting,
    pub trailer_word: Option<String>,
    pub control_suffix: Option<String>,
    pub manifest_suffix: Option<String>,
    pub manifest_count_pointer: Option<String>,
    pub columns: ColumnsConfig,
    /// Status words (case-insensitive); any other word rejects the row.
    pub active_words: Option<Vec<String>>,
    pub inactive_words: Option<Vec<String>>,
}

impl FileConfig {
    /// The file-drop spec of the source at `k`.
    pub fn spec(
        &self,
        k: &dyn Fn(&str) -> String,
        attributes: Vec<(String, String)>,
    ) -> Result<Arc<FileSpec>, ConfigError> {
        let Some(dir) = &self.dir else {
            return Err(invalid(
                k("file.dir"),
                "required: the folder the exports land in",
            ));
        };
        let pattern = self.pattern.clone().unwrap_or_else(|| "*.csv".into());
        if pattern.matches('*').count() > 1 || pattern.contains('/') {
            return Err(invalid(
                k("file.pattern"),
                format!("{pattern:?}: a file name with at most one '*', e.g. \"workers_*.csv\""),
            ));
        }
        let Some(id) = self.columns.id.clone().filter(|c| !c.trim().is_empty()) else {
            return Err(invalid(
                k("file.columns.id"),
                "required: the column of the person's id",
            ));
        };
        let delimiter = match self.delimiter.as_deref() {
            None => b',',
            Some(d) if d.len() == 1 && d.is_ascii() => d.as_bytes()[0],
            Some("\\t") | Some("tab") => b'\t',
            Some(d) => {
                return Err(invalid(
                    k("file.delimiter"),
                    format!("{d:?} is not one ASCII character"),
                ));
            }
        };
        let suffix = |v: &Option<String>, dflt: &str, key: &str| -> Result<String, ConfigError> {
            let s = v.clone().unwrap_or_else(|| dflt.to_owned());
            if s.is_empty() || s.contains('/') {
                return Err(invalid(
                    k(&format!("file.{key}")),
                    "a file name suffix such as \".ctl\"",
                ));
            }
            Ok(s)
        };
        let completeness = match self.completeness {
            CompletenessSetting::Trailer => Completeness::Trailer(
                self.trailer_word
                    .clone()
                    .unwrap_or_else(|| "TRAILER".into()),
            ),
            CompletenessSetting::ControlFile => {
                Completeness::ControlFile(suffix(&self.control_suffix, ".ctl", "control_suffix")?)
            }
            CompletenessSetting::Manifest => {
                let pointer = self
                    .manifest_count_pointer
                    .clone()
                    .unwrap_or_else(|| "/row_count".into());
                if !pointer.starts_with('/') {
                    return Err(invalid(
                        k("file.manifest_count_pointer"),
                        format!("{pointer:?} is not a JSON pointer: write \"/{pointer}\""),
                    ));
                }
                Completeness::Manifest {
                    suffix: suffix(&self.manifest_suffix, ".manifest.json", "manifest_suffix")?,
                    pointer,
                }
            }
        };
        let words = |v: &Option<Vec<String>>, dflt: &[&str]| {
            v.clone()
                .unwrap_or_else(|| dflt.iter().map(|s| (*s).to_owned()).collect())
        };
        let status_words = ActiveWords {
            inverted: false,
            active: words(&self.active_words, &["active"]),
            inactive: words(
                &self.inactive_words,
                &["terminated", "inactive", "leaver", "left", "disabled"],
            ),
        };
        if let Some(w) = status_words.active.iter().find(|w| {
            status_words
                .inactive
                .iter()
                .any(|x| x.eq_ignore_ascii_case(w))
        }) {
            return Err(invalid(
                k("file.inactive_words"),
                format!("{w:?} is in active_words too"),
            ));
        }
        let c = &self.columns;
        Ok(Arc::new(FileSpec {
            dir: dir.clone(),
            pattern,
            format: match self.format {
                FormatSetting::Csv => Format::Csv,
                FormatSetting::Jsonl => Format::JsonLines,
            },
            columns: Columns {
                id,
                status: c.status.clone(),
                email: c.email.clone(),
                manager: c.manager.clone(),
                end_date: c.end_date.clone(),
                name: c.name.clone(),
            },
            status_words,
            completeness,
            attributes,
            delimiter,
        }))
    }
}

#[cfg(test)]
mod tests {
    use govledger_ingest::{hrfile::Completeness, ldap::Disable};

    use crate::config::{Config, ConfigError, secrets::TestEnv as Env, sources::Source};

    fn source(text: &str) -> Result<Source, ConfigError> {
        let env = Env(vec![("LDAP_PW", "s3cr3t-bind")]);
        Config::from_toml(text, "t.toml")?
            .resolve(&env)
            .map(|mut r| r.sources.remove(0))
    }

    fn err(text: &str) -> String {
        match source(text) {
            Ok(_) => panic!("accepted {text}"),
            Err(e) => e.to_string(),
        }
    }

    const LDAP: &str =
        "[[sources]]\nid = \"dir\"\nkind = \"ldap\"\nbase_url = \"ldap://127.0.0.1:3389\"\n";

    #[test]
    fn a_directory_resolves_with_its_defaults() {
        let s = source(&format!(
            "{LDAP}[sources.ldap]\nusers_base = \"ou=people,dc=x\"\ngroups_base = \"ou=groups,dc=x\"\n\
             [sources.auth]\nkind = \"basic\"\nusername = \"cn=admin,dc=x\"\npassword_env = \"LDAP_PW\"\n\
             [sources.attributes]\nemployee_id = \"employeeNumber\""
        ))
        .unwrap();
        let l = s.spec.ldap.clone().unwrap();
        assert_eq!(
            (
                l.id_attribute.as_str(),
                l.name_attribute.as_str(),
                l.member_attribute.as_str()
            ),
            ("entryUUID", "uid", "member")
        );
        assert_eq!(l.disable, Disable::PwdAccountLockedTime);
        assert_eq!(
            l.users.as_ref().unwrap().filter,
            "(objectClass=inetOrgPerson)"
        );
        assert_eq!(l.bind_dn, "cn=admin,dc=x");
        assert_eq!(
            l.attributes,
            vec![("employee_id".into(), "employeeNumber".into())]
        );
        assert!(s.writable() && s.kind_name() == "ldap");
        assert!(!format!("{s:?}").contains("s3cr3t-bind"));
        let ad = source(&format!(
            "{LDAP}[sources.ldap]\ndirectory = \"active-directory\"\nusers_base = \"CN=Users,DC=corp\""
        ))
        .unwrap();
        let l = ad.spec.ldap.unwrap();
        assert_eq!(
            (l.id_attribute.as_str(), l.disable.clone()),
            ("objectGUID", Disable::AdUserAccountControl)
        );
        assert!(l.groups.is_none());
    }

    #[test]
    fn directory_errors_name_the_key() {
        for (extra, key) in [
            ("", "sources[0].ldap.users_base"),
            (
                "users_base = \"ou=p\"\nusers_filter = \"objectClass=person\"",
                "sources[0].ldap.users_filter",
            ),
            (
                "users_base = \"ou=p\"\ndisable = \"attribute\"",
                "sources[0].ldap.disable_attribute",
            ),
            (
                "users_base = \"ou=p\"\ndisable_value = \"x\"",
                "sources[0].ldap.disable_attribute",
            ),
            (
                "users_base = \"ou=p\"\ndisable = \"frozen\"",
                "sources[0].ldap.disable",
            ),
        ] {
            let e = err(&format!("{LDAP}[sources.ldap]\n{extra}"));
            assert!(e.contains(&format!("`{key}`")), "{extra}: {e}");
        }
        let e = err(&format!(
            "{}[sources.ldap]\nusers_base = \"ou=p\"",
            LDAP.replace("ldap://", "http://")
        ));
        assert!(
            e.contains("`sources[0].base_url`") && e.contains("ldap://"),
            "{e}"
        );
        let e = err(&format!(
            "{LDAP}paging = \"cursor\"\n[sources.ldap]\nusers_base = \"ou=p\""
        ));
        assert!(e.contains("`sources[0].paging`"), "{e}");
        let e = err(&format!(
            "{LDAP}[sources.ldap]\nusers_base = \"ou=p\"\n[sources.auth]\nkind = \"bearer\"\ntoken_env = \"LDAP_PW\""
        ));
        assert!(e.contains("`sources[0].auth.kind`"), "{e}");
        let e = err(
            "[[sources]]\nid = \"x\"\nbase_url = \"http://a/v2\"\n[sources.ldap]\nusers_base = \"ou=p\"",
        );
        assert!(
            e.contains("`sources[0].ldap`") && e.contains("only for"),
            "{e}"
        );
    }

    const FILE: &str = "[[sources]]\nid = \"hr\"\nkind = \"file\"\n";

    #[test]
    fn a_file_drop_resolves() {
        let s = source(&format!(
            "{FILE}[sources.file]\ndir = \"/data/hr\"\npattern = \"workers_*.csv\"\ncompleteness = \"control-file\"\n\
             [sources.file.columns]\nid = \"employee_id\"\nstatus = \"status\"\nend_date = \"end_date\"\n\
             [sources.attributes]\nemployee_id = \"employee_id\""
        ))
        .unwrap();
        let f = s.spec.file.clone().unwrap();
        assert_eq!(f.completeness, Completeness::ControlFile(".ctl".into()));
        assert_eq!(f.columns.id, "employee_id");
        assert!(f.status_words.inactive.contains(&"terminated".to_owned()));
        assert!(!s.writable() && s.kind_name() == "file");
    }

    #[test]
    fn file_errors_name_the_key() {
        for (extra, key) in [
            ("", "sources[0].file.dir"),
            ("dir = \"/d\"", "sources[0].file.columns.id"),
            (
                "dir = \"/d\"\npattern = \"a*b*\"\n[sources.file.columns]\nid = \"i\"",
                "sources[0].file.pattern",
            ),
            (
                "dir = \"/d\"\ndelimiter = \";;\"\n[sources.file.columns]\nid = \"i\"",
                "sources[0].file.delimiter",
            ),
            (
                "dir = \"/d\"\ncompleteness = \"manifest\"\nmanifest_count_pointer = \"rows\"\n[sources.file.columns]\nid = \"i\"",
                "sources[0].file.manifest_count_pointer",
            ),
            (
                "dir = \"/d\"\nactive_words = [\"ok\"]\ninactive_words = [\"OK\"]\n[sources.file.columns]\nid = \"i\"",
                "sources[0].file.inactive_words",
            ),
            (
                "dir = \"/d\"\ncompleteness = \"vibes\"",
                "sources[0].file.completeness",
            ),
        ] {
            let e = err(&format!("{FILE}[sources.file]\n{extra}"));
            assert!(e.contains(&format!("`{key}`")), "{extra}: {e}");
        }
        let e = err(&format!(
            "{FILE}base_url = \"http://x\"\n[sources.file]\ndir = \"/d\"\n[sources.file.columns]\nid = \"i\""
        ));
        assert!(e.contains("`sources[0].base_url`"), "{e}");
        let e = err(&format!(
            "{FILE}[sources.file]\ndir = \"/d\"\n[sources.file.columns]\nid = \"i\"\n[sources.attributes]\nstatus = \"s\""
        ));
        assert!(e.contains("`sources[0].attributes.status`"), "{e}");
    }
}
