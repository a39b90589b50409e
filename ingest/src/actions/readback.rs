//! What a read-back shows, decided from the target's answer alone (pure): the
//! intent in effect, not in effect, or *unknown*. An attribute the target
//! leaves out is unknown, never empty: a group answered without `members`
//! proves nothing about a membership. A membership is proved by the group's
//! `members` ([`members_show`]), a filtered list of groups ([`filter_shows`],
//! RFC 7644 §3.4.2.2) or the user's `groups` ([`user_groups_show`], RFC 7643
//! §4.1.2); each says `None` / `Err` when its answer cannot tell.

use govledger_proto::v1::ActionKind;
use serde_json::Value;

use super::Step;

/// What one read-back shows about a step's intent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shown {
    InEffect,
    NotInEffect,
    /// The answer cannot prove it either way (e.g. `members` left out).
    Unknown,
    /// The single GET answered 404, which would show the intent, but no
    /// listing of the target agrees (see `absence`): nothing is known.
    Uncorroborated,
}

impl Shown {
    fn from(b: bool) -> Self {
        if b {
            Shown::InEffect
        } else {
            Shown::NotInEffect
        }
    }
}

/// Whether a 404 of the step's single GET would show its intent in effect
/// (a deactivate / delete of a user, a removal from a group): such a 404
/// needs a listing to agree before it counts (see [`absence`]).
pub fn absence_confirms(step: &Step) -> bool {
    matches!(
        step.kind,
        ActionKind::Deactivate | ActionKind::Delete | ActionKind::RemoveMembership
    )
}

/// What a list answer to the plain id filter (`id eq "X"`, [`id_filter`])
/// shows about resource X.
#[derive(Debug, Clone, PartialEq)]
pub enum Listing {
    /// Nothing matched: the target's own listing says X does not exist.
    Empty,
    /// X, as the listing shows it.
    Shows(Value),
    /// The answer cannot tell, and why (no list answer, the filter refused
    /// or not applied).
    CannotTell(String),
}

/// The filter that matches resource `id` only (RFC 7644 §3.4.2.2), the
/// value escaped as JSON strings are.
pub fn id_filter(id: &str) -> String {
    format!("id eq {}", quote(id))
}

fn quote(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| format!("\"{s}\""))
}

/// What a `ListResponse` answering a filter that can match at most resource
/// `id` shows (pure): nothing matched, `id` itself, or it cannot tell (no
/// `totalResults`, more than one resource, or another resource: the target
/// did not apply the filter). `what` names the resource kind for the reason.
pub fn id_listing(id: &str, list: &Value, what: &str) -> Listing {
    let Some(total) = list.get("totalResults").and_then(Value::as_u64) else {
        return Listing::CannotTell("its answer has no totalResults".into());
    };
    let resources = list
        .get("Resources")
        .and_then(Value::as_array)
        .map_or(&[][..], Vec::as_slice);
    match total {
        0 if resources.is_empty() => Listing::Empty,
        0 => Listing::CannotTell(format!(
            "its answer says totalResults 0 but lists {} resource(s)",
            resources.len()
        )),
        1 => match resources {
            [r] if r.get("id").and_then(Value::as_str) == Some(id) => Listing::Shows(r.clone()),
            [] => {
                Listing::CannotTell("its answer says totalResults 1 but lists no resource".into())
            }
            _ => Listing::CannotTell(format!(
                "its answer lists another {what}: the filter was not applied"
            )),
        },
        n => Listing::CannotTell(format!(
            "{n} {what}s matched one id: the filter was not applied"
        )),
    }
}

/// What a 404 of the step's single GET shows once a filtered list of the
/// target (`listing`) has been asked (pure), and whether the target is
/// absent: in effect only when the listing agrees nothing matches; what the
/// listing shows when it shows the resource (the GET's 404 was wrong);
/// [`Shown::Uncorroborated`] when it cannot tell. `cap` as in
/// [`members_show`].
pub fn absence(step: &Step, listing: &Listing, cap: Option<u32>) -> (Shown, String, bool) {
    let (_, what, id) = step.resource();
    match listing {
        Listing::Empty => {
            let (shown, observed) = in_effect(step, None);
            (
                shown,
                format!(
                    "{observed}; a filtered list (id eq {}) agrees: no such {what}",
                    quote(id)
                ),
                true,
            )
        }
        Listing::Shows(body) => {
            let (shown, observed) = match step.kind {
                ActionKind::RemoveMembership | ActionKind::AddMembership => {
                    members_show(step, body, cap).unwrap_or_else(|| {
                        (Shown::Unknown, "the group's members are not shown".into())
                    })
                }
                _ => in_effect(step, Some(body)),
            };
            (
                shown,
                format!("the {what}'s GET answered 404 but a filtered list shows it: {observed}"),
                false,
            )
        }
        Listing::CannotTell(why) => (
            Shown::Uncorroborated,
            format!(
                "the {what}'s GET answered 404, but no listing agrees (a filtered list, id eq {}: {why}); \
                 a 404 alone is not proof: a misrouted proxy or another tenant answers 404 too",
                quote(id)
            ),
            true,
        ),
    }
}

/// Decides from a read-back body (`None` = 404) whether `step` is in effect,
/// with what the body showed (secret-free). A 404 that shows the intent
/// counts only when a listing agrees or the action accepts it (`absence`).
pub fn in_effect(step: &Step, body: Option<&Value>) -> (Shown, String) {
    let Some(b) = body else {
        return match step.kind {
            ActionKind::Deactivate | ActionKind::Delete => {
                (Shown::InEffect, "already absent (404)".into())
            }
            ActionKind::RemoveMembership => {
                (Shown::InEffect, "group absent (404): no membership".into())
            }
            _ => (Shown::NotInEffect, "target absent (404)".into()),
        };
    };
    match step.kind {
        ActionKind::Deactivate => match b.get("active") {
            Some(Value::Bool(false)) => (Shown::InEffect, "active=false".into()),
            Some(v) => (Shown::NotInEffect, format!("active={v}")),
            None => (Shown::NotInEffect, "no active attribute".into()),
        },
        ActionKind::Delete => (Shown::NotInEffect, "still exists".into()),
        ActionKind::RemoveMembership | ActionKind::AddMembership => members_show(step, b, None)
            .unwrap_or_else(|| {
                (
                    Shown::Unknown,
                    "the target does not show group memberships (no members attribute)".into(),
                )
            }),
        ActionKind::SetAttribute => {
            let got = b.get(&step.attribute);
            let ok = match got {
                Some(Value::String(s)) => *s == step.value,
                Some(Value::Bool(v)) => v.to_string() == step.value,
                Some(Value::Number(n)) => n.to_string() == step.value,
                _ => false,
            };
            (
                Shown::from(ok),
                format!(
                    "{}={}",
                    step.attribute,
                    got.map_or("absent".into(), |v| v.to_string())
                ),
            )
        }
        ActionKind::Unspecified => (Shown::NotInEffect, "nothing to check".into()),
    }
}

/// A membership step's outcome from whether the user `is` a member, shown
/// by `how`.
pub fn membership(step: &Step, is: bool, how: &str) -> (Shown, String) {
    let want = step.kind == ActionKind::AddMembership;
    let what = if is { "a member" } else { "not a member" };
    (Shown::from(is == want), format!("{what} ({how})"))
}

/// What a group resource shows about a membership step: `None` when it
/// leaves `members` out (or it is not a list): unknown, never empty. A user
/// the list shows is a member whatever else; a user it does not show is not
/// a member only when the list can be the whole: not when the group also
/// carries a ranged member attribute (`members;range=…`), nor when the list
/// is as long as the source's `member_list_cap` (a capped list, see
/// `list_may_be_capped`). Then `None` too: the next query decides.
pub fn members_show(step: &Step, group: &Value, cap: Option<u32>) -> Option<(Shown, String)> {
    let members = group.get("members")?.as_array()?;
    let is = members
        .iter()
        .any(|m| m.get("value").and_then(Value::as_str) == Some(step.user_id.as_str()));
    if !is && list_may_be_capped(group, members.len(), cap) {
        return None;
    }
    Some(membership(step, is, "the group's members"))
}

/// Whether a group's `members` list of `len` may be cut short: a ranged
/// member attribute beside it, or `len` at least the configured cap.
pub fn list_may_be_capped(group: &Value, len: usize, cap: Option<u32>) -> bool {
    let ranged = group
        .as_object()
        .is_some_and(|o| o.keys().any(|k| crate::scim::is_ranged_members_key(k)));
    ranged || cap.is_some_and(|c| len >= c as usize)
}

/// What a user resource's `groups` attribute (read-only, RFC 7643 §4.1.2)
/// shows about a membership step: `None` when the user has no `groups`
/// attribute (or it is not a list).
pub fn user_groups_show(step: &Step, user: &Value) -> Option<(Shown, String)> {
    let groups = user.get("groups")?.as_array()?;
    let is = groups
        .iter()
        .any(|g| g.get("value").and_then(Value::as_str) == Some(step.group_id.as_str()));
    Some(membership(step, is, "the user's groups"))
}

/// A filter that matches group `group_id` only if `member` is one of its
/// members (RFC 7644 §3.4.2.2), string values escaped as JSON strings are.
pub fn member_filter(group_id: &str, member: &str) -> String {
    format!(
        "id eq {} and members.value eq {}",
        quote(group_id),
        quote(member)
    )
}

/// What a `ListResponse` answering [`member_filter`] for `group_id` shows:
/// `Ok(true)` the group matched (the member is in it), `Ok(false)` nothing
/// matched; `Err(why)` when the answer cannot tell (no `totalResults`, more
/// than one group, or a group other than the one asked for: the target did
/// not apply the filter).
pub fn filter_shows(group_id: &str, list: &Value) -> Result<bool, String> {
    match id_listing(group_id, list, "group") {
        Listing::Empty => Ok(false),
        Listing::Shows(_) => Ok(true),
        Listing::CannotTell(why) => Err(why),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use serde_json::json;

    use super::*;

    /// A step of `kind` on user u1 / group g1 / title "Engineer" (the
    /// executor's tests use it too).
    pub(crate) fn step(kind: ActionKind) -> Step {
        Step {
            kind,
            user_id: "u1".into(),
            group_id: "g1".into(),
            attribute: "title".into(),
            value: "Engineer".into(),
            absent_is_proof: false,
        }
    }

    #[test]
    fn a_404_counts_only_when_the_listing_agrees() {
        let cannot = Listing::CannotTell("it was refused (HTTP 400)".into());
        for kind in [
            ActionKind::Deactivate,
            ActionKind::Delete,
            ActionKind::RemoveMembership,
        ] {
            let s = step(kind);
            assert!(absence_confirms(&s));
            let (shown, observed, absent) = absence(&s, &Listing::Empty, None);
            assert_eq!((shown, absent), (Shown::InEffect, true), "{kind:?}");
            assert!(observed.contains("agrees: no such"), "{observed}");
            let (shown, observed, absent) = absence(&s, &cannot, None);
            assert_eq!((shown, absent), (Shown::Uncorroborated, true), "{kind:?}");
            assert!(
                observed.contains("no listing agrees") && observed.contains("HTTP 400"),
                "{observed}"
            );
        }
        // A 404 that would show the intent NOT in effect needs nothing.
        for kind in [ActionKind::AddMembership, ActionKind::SetAttribute] {
            assert!(!absence_confirms(&step(kind)), "{kind:?}");
        }
        // The listing shows the resource: read it from there.
        let d = step(ActionKind::Deactivate);
        let listed = |active: bool| Listing::Shows(json!({"id": "u1", "active": active}));
        assert_eq!(absence(&d, &listed(true), None).0, Shown::NotInEffect);
        let (shown, observed, absent) = absence(&d, &listed(false), None);
        assert_eq!((shown, absent), (Shown::InEffect, false));
        assert!(
            observed.contains("a filtered list shows it: active=false"),
            "{observed}"
        );
        assert_eq!(
            absence(&step(ActionKind::Delete), &listed(false), None).0,
            Shown::NotInEffect
        );
        let r = step(ActionKind::RemoveMembership);
        let group = |members: Value| Listing::Shows(json!({"id": "g1", "members": members}));
        assert_eq!(
            absence(&r, &group(json!([{"value": "u1"}])), None).0,
            Shown::NotInEffect
        );
        assert_eq!(absence(&r, &group(json!([])), None).0, Shown::InEffect);
        assert_eq!(
            absence(&r, &Listing::Shows(json!({"id": "g1"})), None).0,
            Shown::Unknown
        );
    }

    #[test]
    fn an_id_listing_tells_only_when_the_filter_was_applied() {
        let list = |total: u64, ids: &[&str]| {
            json!({"totalResults": total,
                   "Resources": ids.iter().map(|i| json!({"id": i})).collect::<Vec<_>>()})
        };
        assert_eq!(id_listing("u1", &list(0, &[]), "user"), Listing::Empty);
        assert_eq!(
            id_listing("u1", &list(1, &["u1"]), "user"),
            Listing::Shows(json!({"id": "u1"}))
        );
        for bad in [
            json!({"Resources": []}),
            list(1, &["u2"]),
            list(2, &["u1", "u2"]),
            list(0, &["u1"]),
            list(1, &[]),
            json!("not a list"),
        ] {
            assert!(
                matches!(id_listing("u1", &bad, "user"), Listing::CannotTell(_)),
                "{bad}"
            );
        }
        assert_eq!(id_filter("u\"1"), r#"id eq "u\"1""#);
    }

    #[test]
    fn read_back_rules() {
        use Shown::*;
        let check = |kind, body: Option<Value>, want: Shown| {
            let (got, why) = in_effect(&step(kind), body.as_ref());
            assert_eq!(got, want, "{kind:?} {body:?}: {why}");
        };
        check(
            ActionKind::Deactivate,
            Some(json!({"active": false})),
            InEffect,
        );
        check(
            ActionKind::Deactivate,
            Some(json!({"active": true})),
            NotInEffect,
        );
        check(ActionKind::Deactivate, Some(json!({})), NotInEffect);
        check(ActionKind::Deactivate, None, InEffect);
        check(ActionKind::Delete, None, InEffect);
        check(ActionKind::Delete, Some(json!({"id": "u1"})), NotInEffect);
        let rm = ActionKind::RemoveMembership;
        check(rm, Some(json!({"members": [{"value": "u2"}]})), InEffect);
        check(rm, Some(json!({"members": []})), InEffect);
        check(rm, Some(json!({"members": [{"value": "u1"}]})), NotInEffect);
        check(rm, None, InEffect);
        let add = ActionKind::AddMembership;
        check(add, Some(json!({"members": [{"value": "u1"}]})), InEffect);
        check(add, Some(json!({"members": []})), NotInEffect);
        check(add, None, NotInEffect);
        check(
            ActionKind::SetAttribute,
            Some(json!({"title": "Engineer"})),
            InEffect,
        );
        check(
            ActionKind::SetAttribute,
            Some(json!({"title": "Intern"})),
            NotInEffect,
        );
    }

    #[test]
    fn a_user_without_groups_and_a_filter_not_applied_prove_nothing() {
        let add = step(ActionKind::AddMembership);
        let rm = step(ActionKind::RemoveMembership);
        assert_eq!(user_groups_show(&add, &json!({"id": "u1"})), None);
        let shows = json!({"groups": [{"value": "g1"}]});
        assert_eq!(user_groups_show(&add, &shows).unwrap().0, Shown::InEffect);
        assert_eq!(user_groups_show(&rm, &shows).unwrap().0, Shown::NotInEffect);
        let other = json!({"groups": [{"value": "g2"}]});
        assert_eq!(user_groups_show(&rm, &other).unwrap().0, Shown::InEffect);

        assert_eq!(
            member_filter("g\"1", "u1"),
            r#"id eq "g\"1" and members.value eq "u1""#
        );
        let list = |total: u64, ids: &[&str]| {
            json!({"totalResults": total,
                   "Resources": ids.iter().map(|i| json!({"id": i})).collect::<Vec<_>>()})
        };
        assert_eq!(filter_shows("g1", &list(1, &["g1"])), Ok(true));
        assert_eq!(filter_shows("g1", &list(0, &[])), Ok(false));
        assert_eq!(filter_shows("g1", &json!({"totalResults": 0})), Ok(false));
        for bad in [
            list(1, &["g2"]),
            list(3, &["g1", "g2", "g3"]),
            list(0, &["g1"]),
            list(1, &[]),
            json!({"Resources": []}),
        ] {
            assert!(filter_shows("g1", &bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_capped_or_ranged_list_proves_only_the_members_it_shows() {
        let remove = step(ActionKind::RemoveMembership);
        let group = |ids: &[&str]| json!({"id": "g1", "members": ids.iter().map(|i| json!({"value": i})).collect::<Vec<_>>()});
        // Below the cap (or none configured) the list is the whole.
        let short = group(&["u2"]);
        assert_eq!(
            members_show(&remove, &short, Some(2)).map(|s| s.0),
            Some(Shown::InEffect)
        );
        let full = group(&["u2", "u3"]);
        assert_eq!(
            members_show(&remove, &full, None).map(|s| s.0),
            Some(Shown::InEffect)
        );
        // At the cap, absence proves nothing; presence still does.
        assert!(members_show(&remove, &full, Some(2)).is_none());
        let with_user = group(&["u1", "u3"]);
        assert_eq!(
            members_show(&remove, &with_user, Some(2)).map(|s| s.0),
            Some(Shown::NotInEffect)
        );
        // A ranged member attribute beside the list: absence proves nothing.
        let mut ranged = group(&["u2"]);
        ranged["members;range=0-0"] = json!([{"value": "u2"}]);
        assert!(members_show(&remove, &ranged, None).is_none());
    }

    #[test]
    fn an_absent_members_attribute_is_unknown_never_empty() {
        for kind in [ActionKind::RemoveMembership, ActionKind::AddMembership] {
            let body = json!({"id": "g1", "displayName": "Admins"});
            let (got, why) = in_effect(&step(kind), Some(&body));
            assert_eq!(got, Shown::Unknown, "{kind:?}: {why}");
            assert!(why.contains("does not show group memberships"), "{why}");
            assert!(members_show(&step(kind), &body, None).is_none());
            // A non-list members value proves nothing either.
            let odd = json!({"members": "u1"});
            assert_eq!(in_effect(&step(kind), Some(&odd)).0, Shown::Unknown);
        }
    }
}
