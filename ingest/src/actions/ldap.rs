//! Lifecycle writes to a directory, and their read-backs: the LDAP side of
//! the executor (the steps, the verification window and the outcomes are
//! the executor's own, as for SCIM).
//!
//! Entries are found by their stable id (`entryUUID` / `objectGUID`), never a
//! stored DN (a rename would aim the write at nobody). A search by id is the
//! directory's own listing, so an entry it does not find is absent. A
//! membership is read back by a search that matches the group only while it
//! lists the user (`(&(entryUUID=G)(member=DN))`): exact for any group size,
//! AD's ranged groups included.
//!
//! Writes: deactivate by the source's [`Disable`] rule (AD's
//! `userAccountControl` is read first and written with bit 2 set), delete,
//! add / remove a group member, set an attribute. A result other than
//! success is a failed attempt carrying the LDAP result code and text.

use std::collections::HashSet;

use govledger_proto::v1::{ActionKind, ErrorClass};
use ldap3::{Ldap, Mod, Scope};

use super::{Executor, ReadBack, Shown, Step, readback::membership};
use crate::{
    ldap::{self, Disable, LOCKED_FOREVER, LdapSpec, UAC_ACCOUNTDISABLE},
    retry::Failure,
};

/// An RFC 4515 filter value: `*`, `(`, `)`, `\` and NUL escaped.
pub fn escape(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '*' => out.push_str("\\2a"),
            '(' => out.push_str("\\28"),
            ')' => out.push_str("\\29"),
            '\\' => out.push_str("\\5c"),
            '\0' => out.push_str("\\00"),
            c => out.push(c),
        }
    }
    out
}

/// The filter that matches the entry with stable id `id`: an `objectGUID`
/// as its 16 bytes in AD's order, each escaped; anything else as a string.
pub fn id_filter(spec: &LdapSpec, id: &str) -> Option<String> {
    if spec.id_attribute.eq_ignore_ascii_case("objectGUID") {
        let hex: String = id.chars().filter(|c| c.is_ascii_hexdigit()).collect();
        if hex.len() != 32 {
            return None;
        }
        let b: Vec<u8> = (0..16)
            .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap_or(0))
            .collect();
        let order = [3, 2, 1, 0, 5, 4, 7, 6, 8, 9, 10, 11, 12, 13, 14, 15];
        let esc: String = order.iter().map(|&i| format!("\\{:02x}", b[i])).collect();
        return Some(format!("(objectGUID={esc})"));
    }
    Some(format!("({}={})", spec.id_attribute, escape(id)))
}

/// An entry found by id: its DN and the values of the attributes asked.
struct Found {
    dn: String,
    attrs: ldap3::SearchEntry,
}

fn not_found(spec: &LdapSpec, what: &str, id: &str) -> Failure {
    ldap::failure(
        ErrorClass::NotFound,
        format!("no {what} with {} {id}", spec.id_attribute),
        spec,
    )
}

/// The bases an entry of `kind` is searched under (users, then groups: a
/// member may be a group).
fn bases(spec: &LdapSpec, group: bool) -> Vec<&str> {
    let (first, second) = if group {
        (&spec.groups, &spec.users)
    } else {
        (&spec.users, &spec.groups)
    };
    [first, second]
        .into_iter()
        .flatten()
        .map(|q| q.base_dn.as_str())
        .collect()
}

/// Finds the entry with id `id` (`extra` ANDed to the filter), or `None`
/// when the directory holds none under the source's bases.
async fn find(
    l: &mut Ldap,
    spec: &LdapSpec,
    id: &str,
    group: bool,
    extra: Option<String>,
    attrs: Vec<String>,
) -> Result<Option<Found>, Failure> {
    let Some(f) = id_filter(spec, id) else {
        return Err(ldap::failure(
            ErrorClass::ClientError,
            format!("{id:?} is not an objectGUID"),
            spec,
        ));
    };
    let filter = match extra {
        Some(x) => format!("(&{f}{x})"),
        None => f,
    };
    for base in bases(spec, group) {
        let r = l
            .with_timeout(spec.timeout)
            .search(base, Scope::Subtree, &filter, attrs.clone())
            .await
            .map_err(|e| ldap::client_failure(&e, spec))?;
        let (entries, res) = (r.0, r.1);
        if res.rc != 0 && res.rc != 32 {
            return Err(ldap::failure(
                ldap::classify(res.rc),
                format!("searching {base}: {}", ldap::rc_text(res.rc, &res.text)),
                spec,
            ));
        }
        if let Some(e) = entries.into_iter().next().and_then(ldap::construct) {
            return Ok(Some(Found {
                dn: e.dn.clone(),
                attrs: e,
            }));
        }
    }
    Ok(None)
}

impl Executor<'_> {
    /// Reads a step back from the directory.
    pub(super) async fn ldap_read(
        &mut self,
        spec: &LdapSpec,
        step: &Step,
    ) -> Result<ReadBack, Failure> {
        self.limiter.acquire().await;
        let mut l = ldap::connect(spec).await?;
        let rb = |shown: Shown, observed: String, absent: bool| ReadBack {
            shown,
            absent,
            http_status: 0,
            observed,
        };
        match step.kind {
            ActionKind::RemoveMembership | ActionKind::AddMembership => {
                let Some(group) =
                    find(&mut l, spec, &step.group_id, true, None, vec!["1.1".into()]).await?
                else {
                    let (shown, observed) = super::in_effect(step, None);
                    return Ok(rb(
                        shown,
                        format!(
                            "{observed}: no group with {} {}",
                            spec.id_attribute, step.group_id
                        ),
                        true,
                    ));
                };
                let Some(user) =
                    find(&mut l, spec, &step.user_id, false, None, vec!["1.1".into()]).await?
                else {
                    // Without the user's entry its DN is unknown: a group
                    // cannot be asked whether it lists it.
                    let (shown, observed) = if step.kind == ActionKind::RemoveMembership {
                        (
                            Shown::Unknown,
                            "the user's entry is gone; the group cannot be asked for it by DN"
                                .to_owned(),
                        )
                    } else {
                        (Shown::NotInEffect, "no user entry to add".to_owned())
                    };
                    return Ok(rb(shown, observed, false));
                };
                let lists = format!("({}={})", spec.member_attribute, escape(&user.dn));
                let member = find(
                    &mut l,
                    spec,
                    &step.group_id,
                    true,
                    Some(lists),
                    vec!["1.1".into()],
                )
                .await?
                .is_some();
                let (shown, observed) = membership(
                    step,
                    member,
                    &format!(
                        "{} of {} searched for {}",
                        spec.member_attribute, group.dn, user.dn
                    ),
                );
                Ok(rb(shown, observed, false))
            }
            _ => {
                let attr = match step.kind {
                    ActionKind::SetAttribute => step.attribute.clone(),
                    _ => spec.disable.attribute().to_owned(),
                };
                let Some(user) =
                    find(&mut l, spec, &step.user_id, false, None, vec![attr.clone()]).await?
                else {
                    let (shown, observed) = super::in_effect(step, None);
                    return Ok(rb(
                        shown,
                        format!(
                            "{observed}: no entry with {} {} (searched by id)",
                            spec.id_attribute, step.user_id
                        )
                        .replace(" (404)", ""),
                        true,
                    ));
                };
                let values = ldap::values(&user.attrs, &attr);
                let shown_values = if values.is_empty() {
                    format!("{attr} absent")
                } else {
                    format!("{attr}={}", values.join(","))
                };
                let (shown, observed) = match step.kind {
                    ActionKind::Deactivate => match spec.disable.active(&values) {
                        Ok(false) => (
                            Shown::InEffect,
                            format!("{} disabled ({shown_values})", user.dn),
                        ),
                        Ok(true) => (
                            Shown::NotInEffect,
                            format!("{} active ({shown_values})", user.dn),
                        ),
                        Err(why) => (Shown::Unknown, why),
                    },
                    ActionKind::Delete => (Shown::NotInEffect, format!("{} still exists", user.dn)),
                    ActionKind::SetAttribute => (
                        if values.contains(&step.value) {
                            Shown::InEffect
                        } else {
                            Shown::NotInEffect
                        },
                        format!("{} {shown_values}", user.dn),
                    ),
                    _ => (Shown::NotInEffect, "nothing to check".into()),
                };
                Ok(rb(shown, observed, false))
            }
        }
    }

    /// One write to the directory: `(summary, Ok(0))` when the server
    /// answered success, `Err` with the LDAP result otherwise.
    pub(super) async fn ldap_write(
        &mut self,
        spec: &LdapSpec,
        step: &Step,
    ) -> (String, Result<u16, Failure>) {
        self.limiter.acquire().await;
        let mut summary = format!("LDAP {} ({})", spec.shown_url(), step.label());
        let r = async {
            let mut l = ldap::connect(spec).await?;
            let user_attrs = vec![spec.disable.attribute().to_owned()];
            let user = find(&mut l, spec, &step.user_id, false, None, user_attrs)
                .await?
                .ok_or_else(|| not_found(spec, "user entry", &step.user_id))?;
            let set = |v: &str| HashSet::from([v.to_owned()]);
            let res = match step.kind {
                ActionKind::Deactivate => {
                    let (attr, value) = match &spec.disable {
                        Disable::PwdAccountLockedTime => (
                            spec.disable.attribute().to_owned(),
                            LOCKED_FOREVER.to_owned(),
                        ),
                        Disable::NsAccountLock => {
                            (spec.disable.attribute().to_owned(), "TRUE".to_owned())
                        }
                        Disable::AdUserAccountControl => {
                            let now = ldap::values(&user.attrs, "userAccountControl");
                            let uac: u64 = now
                                .first()
                                .and_then(|v| v.trim().parse().ok())
                                .unwrap_or(512);
                            (
                                "userAccountControl".to_owned(),
                                (uac | UAC_ACCOUNTDISABLE).to_string(),
                            )
                        }
                        Disable::Attribute { name, value } => (name.clone(), value.clone()),
                    };
                    summary = format!(
                        "LDAP modify {}: replace {attr}: {value} ({})",
                        user.dn,
                        step.label()
                    );
                    l.modify(&user.dn, vec![Mod::Replace(attr, set(&value))])
                        .await
                }
                ActionKind::Delete => {
                    summary = format!("LDAP delete {} ({})", user.dn, step.label());
                    l.delete(&user.dn).await
                }
                ActionKind::RemoveMembership | ActionKind::AddMembership => {
                    let group = find(&mut l, spec, &step.group_id, true, None, vec!["1.1".into()])
                        .await?
                        .ok_or_else(|| not_found(spec, "group entry", &step.group_id))?;
                    let m = spec.member_attribute.clone();
                    let (verb, op) = if step.kind == ActionKind::AddMembership {
                        ("add", Mod::Add(m.clone(), set(&user.dn)))
                    } else {
                        ("delete", Mod::Delete(m.clone(), set(&user.dn)))
                    };
                    summary = format!(
                        "LDAP modify {}: {verb} {m}: {} ({})",
                        group.dn,
                        user.dn,
                        step.label()
                    );
                    l.modify(&group.dn, vec![op]).await
                }
                ActionKind::SetAttribute => {
                    summary = format!(
                        "LDAP modify {}: replace {} ({})",
                        user.dn,
                        step.attribute,
                        step.label()
                    );
                    l.modify(
                        &user.dn,
                        vec![Mod::Replace(step.attribute.clone(), set(&step.value))],
                    )
                    .await
                }
                ActionKind::Unspecified => {
                    return Err(ldap::failure(
                        ErrorClass::ClientError,
                        "no write for an unspecified step".into(),
                        spec,
                    ));
                }
            };
            let res = res.map_err(|e| ldap::client_failure(&e, spec))?;
            if res.rc == 0 {
                Ok(0)
            } else {
                Err(ldap::failure(
                    ldap::classify(res.rc),
                    ldap::rc_text(res.rc, &res.text),
                    spec,
                ))
            }
        }
        .await;
        (summary, r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filter_values_are_escaped() {
        assert_eq!(escape("a*(b)\\c"), "a\\2a\\28b\\29\\5cc");
        assert_eq!(escape("cn=ann,ou=x"), "cn=ann,ou=x");
    }
}
