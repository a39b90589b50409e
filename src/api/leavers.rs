//! The leaver check (`[leavers]`): people the authoritative HR source shows
//! as gone who still have access in a target source, as readiness blockers
//! `LEAVER_STILL_ACTIVE` carrying both sides' evidence.
//!
//! Gone, in HR: marked inactive (a status word such as `terminated`), past
//! their end date, or absent from a COMPLETE full HR run that read people
//! (absence is evidence only from a COMPLETE run, as everywhere: an HR run
//! that was not COMPLETE removes nobody). Still having access, in a target:
//! a user record matched on the configured attribute that is not shown
//! disabled (active, or its state unknown) and not proved removed at the
//! target; or one shown disabled that a group still lists as a member.
//!
//! The rules are pure ([`hr_leavers`], [`target_blockers`]); the scans of
//! the sources' identities are in `Queries::leaver_blockers`. Cost: one
//! scan of the HR source's identities and one of each target's, per check
//! (no index is kept yet).
//!
//! Layout: this file; `tests` (the rules over the cases that decide them).

use std::collections::{BTreeMap, HashMap};

use govledger_ingest::attributes::correlation_key;
use govledger_projector::verdict;
use govledger_proto::v1::{Blocker, EntityType, IdentityState, PresenceStatus, SourceState};

use super::queries::{Queries, QueryError};

/// Blockers a check names per target at most; past it one more says how many.
pub const LEAVER_BLOCKERS_MAX: usize = 100;

/// One person HR shows as gone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leaver {
    pub hr_id: String,
    pub label: String,
    /// Why HR shows them gone, with the evidence (run, sequence).
    pub why: String,
}

/// Why HR shows `p` gone as of `today` (`YYYY-MM-DD`), if it does.
pub fn gone(p: &IdentityState, hr: &SourceState, today: &str) -> Option<String> {
    let seen = || {
        format!(
            "last observed by run {} at stream sequence {}",
            p.last_observed_run_id, p.last_observed_seq
        )
    };
    let (presence, how) = verdict::presence(p, hr);
    if presence == PresenceStatus::RemovedAtSource {
        return Some(format!("absent from HR: {how}"));
    }
    if p.active == Some(false) {
        let status = p
            .attributes
            .get("status")
            .map_or("inactive".to_owned(), |s| format!("status {s:?}"));
        return Some(format!("marked {status} in HR ({})", seen()));
    }
    if let Some(end) = p.attributes.get("end_date")
        && end.as_str() < today
    {
        return Some(format!("end date {end} passed in HR ({})", seen()));
    }
    None
}

/// The people HR shows gone, by their matching value (as correlation
/// compares it). People without the value cannot be matched and are left out.
pub fn hr_leavers(
    people: impl IntoIterator<Item = IdentityState>,
    hr: &SourceState,
    match_on: &str,
    today: &str,
) -> HashMap<String, Leaver> {
    let mut out = HashMap::new();
    for p in people {
        if p.entity_type != EntityType::User as i32 {
            continue;
        }
        let Some(v) = p.attributes.get(match_on) else {
            continue;
        };
        if let Some(why) = gone(&p, hr, today) {
            out.insert(
                correlation_key(v),
                Leaver {
                    hr_id: p.external_id.clone(),
                    label: p.display_name.clone(),
                    why,
                },
            );
        }
    }
    out
}

/// The blockers of one target source: its users matched to a leaver that
/// still have access there (see the module doc).
pub fn target_blockers(
    leavers: &HashMap<String, Leaver>,
    rule: &crate::config::leavers::LeaverRule,
    target: &SourceState,
    identities: &[IdentityState],
) -> Vec<Blocker> {
    // Who each group lists (users' own `memberships` too).
    let mut member_of: HashMap<&str, Vec<&str>> = HashMap::new();
    for g in identities
        .iter()
        .filter(|g| g.entity_type == EntityType::Group as i32)
    {
        if verdict::presence(g, target).0 == PresenceStatus::RemovedAtSource {
            continue;
        }
        for m in &g.memberships {
            let label = if g.display_name.is_empty() {
                g.external_id.as_str()
            } else {
                g.display_name.as_str()
            };
            member_of.entry(m.as_str()).or_default().push(label);
        }
    }
    let mut found: BTreeMap<String, Blocker> = BTreeMap::new();
    for u in identities
        .iter()
        .filter(|u| u.entity_type == EntityType::User as i32)
    {
        let Some(leaver) = u
            .attributes
            .get(&rule.match_on)
            .and_then(|v| leavers.get(&correlation_key(v)))
        else {
            continue;
        };
        if verdict::presence(u, target).0 == PresenceStatus::RemovedAtSource {
            continue;
        }
        let mut groups: Vec<&str> = member_of
            .get(u.external_id.as_str())
            .cloned()
            .unwrap_or_default();
        groups.extend(u.memberships.iter().map(String::as_str));
        groups.sort_unstable();
        groups.dedup();
        let access = match u.active {
            Some(false) if groups.is_empty() => continue,
            Some(false) => format!(
                "is disabled but still a member of {} group(s): {}",
                groups.len(),
                groups.join(", ")
            ),
            Some(true) => "is still active".to_owned(),
            None => "is not shown disabled (the source says nothing of its state)".to_owned(),
        };
        let hr_side = format!(
            "{} {:?} ({} {}) is gone: {}",
            rule.hr_source,
            leaver.label,
            rule.match_on,
            u.attributes.get(&rule.match_on).map_or("", String::as_str),
            leaver.why
        );
        let target_side = format!(
            "in {} the account {:?} (id {}) {access}, last observed by run {} at stream sequence {}",
            target.source_id,
            u.display_name,
            u.external_id,
            u.last_observed_run_id,
            u.last_observed_seq
        );
        found.insert(
            u.external_id.clone(),
            Blocker {
                source_id: target.source_id.clone(),
                code: "LEAVER_STILL_ACTIVE".into(),
                message: format!("{hr_side}; {target_side}: disable it, or correct HR"),
            },
        );
    }
    let n = found.len();
    let mut out: Vec<Blocker> = found.into_values().take(LEAVER_BLOCKERS_MAX).collect();
    if n > LEAVER_BLOCKERS_MAX {
        out.push(Blocker {
            source_id: target.source_id.clone(),
            code: "LEAVER_STILL_ACTIVE".into(),
            message: format!(
                "and {} more leaver(s) with access in {}",
                n - LEAVER_BLOCKERS_MAX,
                target.source_id
            ),
        });
    }
    out
}

impl Queries {
    /// The leaver check's blockers, when `[leavers]` is set and the scope
    /// holds its HR source or one of its targets (targets in scope only,
    /// or all of them when only the HR source is).
    pub(super) fn leaver_blockers(
        &self,
        scope: &[&str],
        now_us: i64,
    ) -> Result<Vec<Blocker>, QueryError> {
        let Some(rule) = &self.leavers else {
            return Ok(Vec::new());
        };
        let hr_in_scope = scope.contains(&rule.hr_source.as_str());
        let targets: Vec<&String> = rule
            .targets
            .iter()
            .filter(|t| hr_in_scope || scope.contains(&t.as_str()))
            .collect();
        if targets.is_empty() {
            return Ok(Vec::new());
        }
        let Some(hr) = self.store.source(&rule.hr_source)? else {
            return Ok(Vec::new());
        };
        let today = chrono::DateTime::from_timestamp_micros(now_us)
            .unwrap_or_default()
            .format("%Y-%m-%d")
            .to_string();
        let mut people = Vec::new();
        self.store
            .for_each_identity(&rule.hr_source, |p| people.push(p))?;
        let leavers = hr_leavers(people, &hr, &rule.match_on, &today);
        if leavers.is_empty() {
            return Ok(Vec::new());
        }
        let mut out = Vec::new();
        for t in targets {
            let Some(state) = self.store.source(t)? else {
                continue;
            };
            let mut ids = Vec::new();
            self.store.for_each_identity(t, |i| ids.push(i))?;
            out.extend(target_blockers(&leavers, rule, &state, &ids));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests;
