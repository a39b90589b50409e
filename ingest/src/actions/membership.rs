//! Membership read-backs: the queries that can PROVE whether a user is a
//! member of a group, asked in order until one can answer:
//!
//! 1. the group, `GET /Groups/G` — its `members`;
//! 2. the group with `members` asked for by name, `?attributes=members`;
//! 3. a filtered list, `GET /Groups?filter=id eq "G" and members.value eq "U"`
//!    (RFC 7644 §3.4.2.2): `totalResults` 1 = a member, 0 = not; a "member"
//!    answer is checked against the same filter for a member that cannot
//!    exist, which must match nothing (a target that ignores the member
//!    clause would match the group either way);
//! 4. the user's `groups` attribute, `GET /Users/U` (RFC 7643 §4.1.2).
//!
//! A query the target refuses (400 `invalidFilter`, 403, 404, 501, any other
//! 4xx but 401 / 408 / 429) or answers without the attribute cannot answer: the next
//! one is asked. When none can, the read-back is *unknown* and its `observed`
//! names every query tried and what it answered (the step is UNVERIFIABLE).
//! A transient failure (5xx, timeout, 429) of any query fails the whole
//! read-back: it is retried like any other, never read as "cannot answer".

use govledger_proto::v1::ErrorClass;

use super::{
    Executor, ReadBack, Shown, Step,
    readback::{filter_shows, member_filter, members_show, user_groups_show},
};
use crate::{http::percent_encode, retry::Failure};

/// The member value of the control query (no user has it).
const CONTROL_MEMBER: &str = "govledger-control-no-such-member";

/// Whether a failed query means "this target cannot answer this way" (as
/// opposed to a transient failure or an authentication problem).
pub(super) fn cannot_answer(f: &Failure) -> bool {
    f.http_status == 501
        || (f.class == ErrorClass::Auth && f.http_status == 403)
        || (matches!(f.class, ErrorClass::ClientError | ErrorClass::NotFound)
            && !matches!(f.http_status, 401 | 408 | 429))
}

/// What a group answer that could not prove the membership did, for the
/// list of what was tried: left `members` out, or showed a list that may be
/// capped without the user.
fn left_out(what: &str, group: &serde_json::Value, cap: Option<u32>) -> String {
    match group.get("members").and_then(serde_json::Value::as_array) {
        Some(list) => format!(
            "{what} showed {} member(s), a list that may be capped ({}), without the user",
            list.len(),
            match cap {
                Some(c) if list.len() >= c as usize => format!("member_list_cap = {c}"),
                _ => "ranged".to_owned(),
            }
        ),
        None if what == "the group" => "the group left out members".to_owned(),
        None => format!("{what}, left them out"),
    }
}

/// `HTTP 400 (…)` for the list of what was tried.
fn refused(f: &Failure) -> String {
    format!("refused it ({})", f.message)
}

impl Executor<'_> {
    /// The membership read-back of `step` (see the module doc) with the
    /// group's ETag (for `If-Match`). `Err` only on a transient failure.
    pub(super) async fn read_membership(
        &mut self,
        step: &Step,
    ) -> Result<(ReadBack, Option<String>), Failure> {
        let group_url = self.url(step);
        let (body, etag, status) = self.get(&group_url).await?;
        let shown = |(shown, observed): (Shown, String), status: u16| ReadBack {
            shown,
            absent: false,
            http_status: status,
            observed,
        };
        let Some(group) = body else {
            return Ok((self.not_found(step).await?, None));
        };
        let cap = self.target.member_list_cap;
        if let Some(s) = members_show(step, &group, cap) {
            return Ok((shown(s, status), etag));
        }
        let mut tried = vec![left_out("the group", &group, cap)];

        // 2. asked for by name.
        match self.get(&format!("{group_url}?attributes=members")).await {
            Ok((Some(v), _, st)) => match members_show(step, &v, cap) {
                Some(s) => return Ok((shown(s, st), etag)),
                None => tried.push(left_out("asked for by name (?attributes=members)", &v, cap)),
            },
            Ok((None, _, _)) => tried.push("asked for by name, answered 404".into()),
            Err(f) if cannot_answer(&f) => {
                tried.push(format!("asked for by name, {}", refused(&f)))
            }
            Err(f) => return Err(f),
        }

        // 3. a filtered list of groups.
        match self.filtered(step, &step.user_id).await {
            Ok(Ok(true)) => match self.filtered(step, CONTROL_MEMBER).await {
                Ok(Ok(false)) => {
                    let how = "a filtered list: id and members.value matched";
                    return Ok((
                        shown(super::readback::membership(step, true, how), 200),
                        etag,
                    ));
                }
                Ok(Ok(true)) => tried.push(
                    "a filtered list (members.value eq) matched a member that does not exist: \
                     the target ignores the member clause"
                        .into(),
                ),
                Ok(Err(why)) => tried.push(format!("a filtered list: {why}")),
                Err(f) if cannot_answer(&f) => {
                    tried.push(format!("a filtered list: {}", refused(&f)))
                }
                Err(f) => return Err(f),
            },
            Ok(Ok(false)) => {
                let how = "a filtered list: id and members.value matched no group";
                return Ok((
                    shown(super::readback::membership(step, false, how), 200),
                    etag,
                ));
            }
            Ok(Err(why)) => tried.push(format!("a filtered list: {why}")),
            Err(f) if cannot_answer(&f) => tried.push(format!(
                "a filtered list (filter members.value eq): {}",
                refused(&f)
            )),
            Err(f) => return Err(f),
        }

        // 4. the user's groups.
        let user_url = format!(
            "{}/Users/{}",
            self.target.base_url.trim_end_matches('/'),
            percent_encode(&step.user_id)
        );
        match self.get(&user_url).await {
            Ok((Some(u), _, st)) => match user_groups_show(step, &u) {
                Some(s) => return Ok((shown(s, st), etag)),
                None => tried.push("the user has no groups attribute".into()),
            },
            Ok((None, _, _)) => tried.push(
                "the user answered 404 (not proof: some targets keep a deleted user in its groups)"
                    .into(),
            ),
            Err(f) if cannot_answer(&f) => {
                tried.push(format!("the user's groups: {}", refused(&f)))
            }
            Err(f) => return Err(f),
        }
        Ok((
            ReadBack {
                shown: Shown::Unknown,
                absent: false,
                http_status: status,
                observed: format!(
                    "the target does not show group memberships by any query it supports: {}",
                    tried.join("; ")
                ),
            },
            etag,
        ))
    }

    /// `GET /Groups?filter=id eq "G" and members.value eq "M"`: `Ok(Ok(b))`
    /// whether the group matched, `Ok(Err(why))` when the answer cannot tell.
    async fn filtered(
        &mut self,
        step: &Step,
        member: &str,
    ) -> Result<Result<bool, String>, Failure> {
        let url = format!(
            "{}/Groups?filter={}",
            self.target.base_url.trim_end_matches('/'),
            percent_encode(&member_filter(&step.group_id, member))
        );
        Ok(match self.get(&url).await? {
            (Some(list), _, _) => filter_shows(&step.group_id, &list),
            (None, _, _) => Err("the list answered 404".into()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failure(class: ErrorClass, http_status: u16) -> Failure {
        Failure {
            class,
            http_status,
            retry_after: None,
            message: format!("HTTP {http_status}"),
        }
    }

    #[test]
    fn only_a_refusal_means_the_target_cannot_answer() {
        for (class, status) in [
            (ErrorClass::ClientError, 400),
            (ErrorClass::NotFound, 404),
            (ErrorClass::ClientError, 422),
            (ErrorClass::ServerError, 501),
            (ErrorClass::Auth, 403),
        ] {
            assert!(cannot_answer(&failure(class, status)), "{status}");
        }
        for (class, status) in [
            (ErrorClass::ServerError, 500),
            (ErrorClass::ServerError, 503),
            (ErrorClass::Timeout, 0),
            (ErrorClass::Connect, 0),
            (ErrorClass::RateLimited, 429),
            (ErrorClass::Auth, 401),
            (ErrorClass::ClientError, 408),
            (ErrorClass::Parse, 200),
        ] {
            assert!(!cannot_answer(&failure(class, status)), "{status}");
        }
    }
}
