//! `[leavers]`: the leaver check across sources. People the authoritative
//! HR source shows as gone (terminated, past their end date, or absent from
//! a COMPLETE HR run) who are still active — or still hold group
//! memberships — in a target source block readiness (`LEAVER_STILL_ACTIVE`).
//! People are matched by one kept attribute (`[sources.attributes]`, or an
//! HR file's columns) that every source involved keeps.

use serde::Deserialize;

use super::{
    error::{ConfigError, invalid},
    sources::{SourceConfig, SourceKind},
};

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LeaversConfig {
    /// The authoritative HR source's id (unset: no leaver check).
    pub hr_source: Option<String>,
    /// The kept attribute people are matched on (e.g. `employee_id`, `email`).
    pub match_on: Option<String>,
    /// Sources to check (default: every other source that keeps `match_on`).
    pub targets: Vec<String>,
}

/// The leaver check as resolved: which source is authoritative, the
/// attribute people are matched on, the sources checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaverRule {
    pub hr_source: String,
    pub match_on: String,
    pub targets: Vec<String>,
}

/// Whether `source` keeps attribute `name` on its records.
fn keeps(source: &SourceConfig, name: &str) -> bool {
    let from_columns = source.kind == SourceKind::File
        && source.file.as_ref().is_some_and(|f| {
            let c = &f.columns;
            match name {
                "email" => c.email.is_some(),
                "manager" => c.manager.is_some(),
                "status" => c.status.is_some(),
                "end_date" => c.end_date.is_some(),
                _ => false,
            }
        });
    from_columns || source.attributes.contains_key(name)
}

impl LeaversConfig {
    /// The rule, checked against the sources of the file; `None` when no
    /// `hr_source` is set.
    pub fn resolve(&self, sources: &[SourceConfig]) -> Result<Option<LeaverRule>, ConfigError> {
        let Some(hr) = &self.hr_source else {
            if self.match_on.is_some() || !self.targets.is_empty() {
                return Err(invalid(
                    "leavers.hr_source",
                    "required with match_on / targets",
                ));
            }
            return Ok(None);
        };
        let Some(hr_cfg) = sources.iter().find(|s| &s.id == hr) else {
            return Err(invalid(
                "leavers.hr_source",
                format!("{hr:?} is not a configured source id"),
            ));
        };
        let Some(match_on) = self.match_on.clone() else {
            return Err(invalid(
                "leavers.match_on",
                "required: the kept attribute people are matched on, e.g. \"employee_id\"",
            ));
        };
        if !keeps(hr_cfg, &match_on) {
            return Err(invalid(
                "leavers.match_on",
                format!(
                    "the HR source {hr:?} does not keep {match_on:?}: add it to its [sources.attributes]"
                ),
            ));
        }
        let targets: Vec<String> = if self.targets.is_empty() {
            sources
                .iter()
                .filter(|s| &s.id != hr && keeps(s, &match_on))
                .map(|s| s.id.clone())
                .collect()
        } else {
            for t in &self.targets {
                let Some(s) = sources.iter().find(|s| &s.id == t) else {
                    return Err(invalid(
                        "leavers.targets",
                        format!("{t:?} is not a configured source id"),
                    ));
                };
                if t == hr {
                    return Err(invalid(
                        "leavers.targets",
                        "the HR source is not its own target",
                    ));
                }
                if !keeps(s, &match_on) {
                    return Err(invalid(
                        "leavers.targets",
                        format!(
                            "{t:?} does not keep {match_on:?}: add it to its [sources.attributes]"
                        ),
                    ));
                }
            }
            self.targets.clone()
        };
        if targets.is_empty() {
            return Err(invalid(
                "leavers.targets",
                format!(
                    "no other source keeps {match_on:?}: add it to a target's [sources.attributes]"
                ),
            ));
        }
        Ok(Some(LeaverRule {
            hr_source: hr.clone(),
            match_on,
            targets,
        }))
    }
}

#[cfg(test)]
mod tests {
    use crate::config::{Config, secrets::TestEnv as Env};

    const SOURCES: &str = "[[sources]]\nid = \"hr\"\nkind = \"file\"\n[sources.file]\ndir = \"/d\"\n\
        [sources.file.columns]\nid = \"employee_id\"\nemail = \"mail\"\n[sources.attributes]\nemployee_id = \"employee_id\"\n\
        [[sources]]\nid = \"dir\"\nkind = \"ldap\"\nbase_url = \"ldap://h\"\n[sources.ldap]\nusers_base = \"ou=p\"\n\
        [sources.attributes]\nemployee_id = \"employeeNumber\"\n\
        [[sources]]\nid = \"app\"\nbase_url = \"http://h/v2\"\n";

    fn resolve(leavers: &str) -> Result<Option<super::LeaverRule>, String> {
        Config::from_toml(&format!("{SOURCES}[leavers]\n{leavers}"), "t.toml")
            .and_then(|c| c.resolve(&Env(vec![])))
            .map(|r| r.leavers)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn targets_default_to_sources_that_keep_the_attribute() {
        let r = resolve("hr_source = \"hr\"\nmatch_on = \"employee_id\"")
            .unwrap()
            .unwrap();
        assert_eq!(r.targets, vec!["dir".to_owned()]);
        assert_eq!(resolve("").unwrap(), None);
        // A file's columns count as kept (email here).
        let e = resolve("hr_source = \"hr\"\nmatch_on = \"email\"").unwrap_err();
        assert!(
            e.contains("`leavers.targets`") && e.contains("no other source keeps"),
            "{e}"
        );
    }

    #[test]
    fn errors_name_the_key() {
        for (lines, key) in [
            ("match_on = \"employee_id\"", "leavers.hr_source"),
            (
                "hr_source = \"payroll\"\nmatch_on = \"x\"",
                "leavers.hr_source",
            ),
            ("hr_source = \"hr\"", "leavers.match_on"),
            (
                "hr_source = \"hr\"\nmatch_on = \"badge\"",
                "leavers.match_on",
            ),
            (
                "hr_source = \"hr\"\nmatch_on = \"employee_id\"\ntargets = [\"app\"]",
                "leavers.targets",
            ),
            (
                "hr_source = \"hr\"\nmatch_on = \"employee_id\"\ntargets = [\"nope\"]",
                "leavers.targets",
            ),
            (
                "hr_source = \"hr\"\nmatch_on = \"employee_id\"\ntargets = [\"hr\"]",
                "leavers.targets",
            ),
        ] {
            let e = resolve(lines).unwrap_err();
            assert!(e.contains(&format!("`{key}`")), "{lines}: {e}");
        }
    }
}
