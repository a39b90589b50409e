//! Lifecycle writes to a REST source, declared per action kind in the
//! configuration (`[sources.rest.actions.<kind>]`): the request (method,
//! path, body) and the read-back that proves it (a GET and what it must
//! show). The steps, retries, verification window and outcomes are the
//! executor's own: a 2xx whose read-back does not show the intent is
//! UNCONFIRMED, as on SCIM.
//!
//! Templates name `{user}`, `{group}`, `{attribute}` and `{value}`: in a
//! path they are percent-encoded, in a body JSON-escaped (without quotes:
//! the template writes them, `"{value}"`).

use std::collections::BTreeMap;

use govledger_proto::v1::{ActionKind, ErrorClass};
use reqwest::Method;
use serde_json::Value;

use super::{Executor, ReadBack, Shown, Step};
use crate::{http::percent_encode, retry::Failure};

/// What a read-back GET must show for the intent to be in effect.
#[derive(Debug, Clone, PartialEq)]
pub enum RestCheck {
    /// The JSON value at `pointer` equals `value` (`/active` = `false`).
    Equals { pointer: String, value: Value },
    /// The GET answers 404 (a deleted user, a membership removed).
    Absent,
    /// The GET answers 2xx (a membership added).
    Present,
}

/// One action kind's request and its read-back.
#[derive(Debug, Clone, PartialEq)]
pub struct RestAction {
    pub method: Method,
    /// Below the source's `base_url`, with placeholders.
    pub path: String,
    pub body: Option<String>,
    pub verify_path: String,
    pub check: RestCheck,
}

/// The templates of a REST source, by action kind.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RestActions(pub BTreeMap<i32, RestAction>);

impl RestActions {
    pub fn get(&self, kind: ActionKind) -> Option<&RestAction> {
        self.0.get(&(kind as i32))
    }

    /// The kinds a template exists for.
    pub fn kinds(&self) -> Vec<ActionKind> {
        self.0
            .keys()
            .filter_map(|k| ActionKind::try_from(*k).ok())
            .collect()
    }
}

/// `template` with the step's values in: percent-encoded (`json` false) or
/// JSON-escaped without quotes (`json` true).
pub fn fill(template: &str, step: &Step, json: bool) -> String {
    let enc = |v: &str| {
        if json {
            let q = serde_json::to_string(v).unwrap_or_default();
            q.get(1..q.len().saturating_sub(1))
                .unwrap_or_default()
                .to_owned()
        } else {
            percent_encode(v)
        }
    };
    template
        .replace("{user}", &enc(&step.user_id))
        .replace("{group}", &enc(&step.group_id))
        .replace("{attribute}", &enc(&step.attribute))
        .replace("{value}", &enc(&step.value))
}

/// What a read-back answer shows: `body` `None` = 404.
pub fn shows(check: &RestCheck, body: Option<&[u8]>) -> (Shown, String) {
    match (check, body) {
        (RestCheck::Absent, None) => (Shown::InEffect, "absent (404)".into()),
        (RestCheck::Absent, Some(_)) => (Shown::NotInEffect, "still there (2xx)".into()),
        (RestCheck::Present, Some(_)) => (Shown::InEffect, "present (2xx)".into()),
        (RestCheck::Present, None) => (Shown::NotInEffect, "absent (404)".into()),
        (RestCheck::Equals { .. }, None) => (
            Shown::Uncorroborated,
            "the read-back answered 404: the resource cannot show the intent".into(),
        ),
        (RestCheck::Equals { pointer, value }, Some(b)) => {
            let Ok(v) = serde_json::from_slice::<Value>(b) else {
                return (Shown::Unknown, "the read-back is not JSON".into());
            };
            match v.pointer(pointer) {
                None => (Shown::Unknown, format!("the read-back has no {pointer}")),
                Some(got) if got == value => (Shown::InEffect, format!("{pointer}={got}")),
                Some(got) => (
                    Shown::NotInEffect,
                    format!("{pointer}={got} (want {value})"),
                ),
            }
        }
    }
}

impl Executor<'_> {
    fn rest_url(&self, path: &str) -> String {
        format!(
            "{}/{}",
            self.target.base_url.trim_end_matches('/'),
            path.trim_start_matches('/')
        )
    }

    fn template(&self, step: &Step) -> Result<RestAction, Failure> {
        self.target
            .rest_actions
            .as_ref()
            .and_then(|a| a.get(step.kind))
            .cloned()
            .ok_or_else(|| Failure {
                class: ErrorClass::ClientError,
                http_status: 0,
                retry_after: None,
                message: format!("no [sources.rest.actions] template for {}", step.label()),
            })
    }

    /// Reads a step back by its template's GET.
    pub(super) async fn rest_read(&mut self, step: &Step) -> Result<ReadBack, Failure> {
        let t = self.template(step)?;
        let url = self.rest_url(&fill(&t.verify_path, step, false));
        self.limiter.acquire().await;
        let (body, status) = match self.target.http.get(&url).await {
            Ok(f) => (Some(f.body), f.status),
            Err(f) if f.class == ErrorClass::NotFound => (None, 404),
            Err(f) => return Err(f),
        };
        let (shown, observed) = shows(&t.check, body.as_deref());
        Ok(ReadBack {
            shown,
            absent: body.is_none(),
            http_status: status,
            observed: format!("GET {url}: {observed}"),
        })
    }

    /// One write by the step's template: `(summary, Ok(status))` on 2xx.
    pub(super) async fn rest_write(&mut self, step: &Step) -> (String, Result<u16, Failure>) {
        let t = match self.template(step) {
            Ok(t) => t,
            Err(f) => return (format!("({})", step.label()), Err(f)),
        };
        let url = self.rest_url(&fill(&t.path, step, false));
        let body = t.body.as_ref().map(|b| fill(b, step, true).into_bytes());
        let summary = format!("{} {url} ({})", t.method, step.label());
        self.limiter.acquire().await;
        let r = self
            .target
            .http
            .send(t.method.clone(), &url, body, None)
            .await
            .map(|f| f.status);
        (summary, r)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn step() -> Step {
        Step {
            kind: ActionKind::SetAttribute,
            user_id: "a b/c".into(),
            group_id: "g1".into(),
            attribute: "title".into(),
            value: "say \"hi\"".into(),
            absent_is_proof: false,
        }
    }

    #[test]
    fn placeholders_are_encoded_for_where_they_go() {
        assert_eq!(
            fill("users/{user}/groups/{group}", &step(), false),
            "users/a%20b%2Fc/groups/g1"
        );
        assert_eq!(
            fill(r#"{"{attribute}": "{value}"}"#, &step(), true),
            r#"{"title": "say \"hi\""}"#
        );
    }

    #[test]
    fn checks_read_the_answer() {
        let eq = RestCheck::Equals {
            pointer: "/active".into(),
            value: json!(false),
        };
        assert_eq!(shows(&eq, Some(br#"{"active": false}"#)).0, Shown::InEffect);
        assert_eq!(
            shows(&eq, Some(br#"{"active": true}"#)).0,
            Shown::NotInEffect
        );
        assert_eq!(shows(&eq, Some(br#"{"status": 1}"#)).0, Shown::Unknown);
        assert_eq!(shows(&eq, Some(b"<html>")).0, Shown::Unknown);
        assert_eq!(shows(&eq, None).0, Shown::Uncorroborated);
        assert_eq!(shows(&RestCheck::Absent, None).0, Shown::InEffect);
        assert_eq!(shows(&RestCheck::Absent, Some(b"")).0, Shown::NotInEffect);
        assert_eq!(shows(&RestCheck::Present, Some(b"")).0, Shown::InEffect);
        assert_eq!(shows(&RestCheck::Present, None).0, Shown::NotInEffect);
    }
}
