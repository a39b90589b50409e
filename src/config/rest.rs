//! `[sources.rest]`: where a generic JSON API keeps its data, and how its
//! pages are addressed. [`RestConfig::shape`] checks every key against the
//! source's `paging` once and builds the [`RestShape`] the sync engine reads
//! with; errors name the key (`sources[0].rest.cursor_pointer`) and say what
//! to write instead.

use std::collections::BTreeMap;

use govledger_ingest::rest::{ActiveWords, RestShape};
use govledger_proto::v1::EntityType;
use serde::Deserialize;

use super::{
    error::{ConfigError, invalid},
    sources::PagingSetting,
};

/// What a REST source's items are.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RestEntity {
    #[default]
    User,
    Group,
}

impl From<RestEntity> for EntityType {
    fn from(e: RestEntity) -> Self {
        match e {
            RestEntity::User => EntityType::User,
            RestEntity::Group => EntityType::Group,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestConfig {
    /// Path below base_url, e.g. `users`.
    pub path: String,
    /// `user` or `group`.
    #[serde(default)]
    pub entity: RestEntity,
    /// JSON pointer to the items array; empty = the body is the array.
    #[serde(default)]
    pub items_pointer: String,
    #[serde(default = "default_id_field")]
    pub id_field: String,
    pub active_field: Option<String>,
    /// The active field says *inactive* when true (`suspended`, `disabled`).
    #[serde(default)]
    pub active_inverted: bool,
    /// Status words of the active field meaning active / inactive.
    #[serde(default)]
    pub active_words: Vec<String>,
    #[serde(default)]
    pub inactive_words: Vec<String>,
    pub label_field: Option<String>,
    /// JSON pointer to the total in the body (e.g. `/total`, `/@odata.count`).
    pub total_pointer: Option<String>,
    /// Header with the total (e.g. `X-Total-Count`).
    pub total_header: Option<String>,
    /// `paging = "link"`: JSON pointer to the next URL in the body, not the
    /// `Link` header (e.g. `/@odata.nextLink`).
    pub next_pointer: Option<String>,
    /// `paging = "cursor"`: JSON pointer to the next cursor in the body
    /// (e.g. `/response_metadata/next_cursor`).
    pub cursor_pointer: Option<String>,
    /// `paging = "cursor"`: the query parameter the cursor goes back in
    /// (default `cursor`).
    pub cursor_param: Option<String>,
    /// `paging = "page-number"`: the page number's parameter (default `page`).
    pub page_param: Option<String>,
    /// `paging = "page-number"`: the first page's number, 0 or 1 (default 1).
    pub page_start: Option<u64>,
    /// `paging = "offset"`: the offset's parameter (default `offset`).
    pub offset_param: Option<String>,
    /// The page size's parameter (default `per_page` for page-number and
    /// link paging, `limit` for offset and cursor paging).
    #[serde(alias = "limit_param")]
    pub size_param: Option<String>,
    /// Query parameters of every request the engine builds (`$select`,
    /// `search`); next links carry their own.
    #[serde(default)]
    pub query: BTreeMap<String, String>,
    /// Request headers sent with every request (`ConsistencyLevel`,
    /// `Accept`); never credentials: those go in `[sources.auth]`.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// `[sources.rest.actions.<kind>]`: the lifecycle writes this API
    /// accepts, each with its read-back (none: the source is read only).
    #[serde(default)]
    pub actions: BTreeMap<String, super::rest_actions::RestActionConfig>,
}

fn default_id_field() -> String {
    "id".into()
}

/// Headers that carry credentials: `[sources.auth]` sends those.
const CREDENTIAL_HEADERS: [&str; 3] = ["authorization", "proxy-authorization", "cookie"];

impl RestConfig {
    /// Checks the table at `key` (e.g. `sources[0].rest`) against the
    /// source's `paging` and builds the engine's [`RestShape`].
    pub fn shape(&self, key: &str, paging: PagingSetting) -> Result<RestShape, ConfigError> {
        let k = |name: &str| format!("{key}.{name}");
        let path = self.path.trim_matches('/');
        if path.is_empty() || path.contains('?') {
            return Err(invalid(
                k("path"),
                "a path below base_url without a query (put parameters in [sources.rest.query]), \
                 e.g. \"users\"",
            ));
        }
        self.check_pointers(&k)?;
        self.check_active(&k)?;
        self.check_paging_keys(&k, paging)?;
        let size_default = match paging {
            PagingSetting::Offset | PagingSetting::Cursor => "limit",
            _ => "per_page",
        };
        let param = |v: &Option<String>, default: &str| v.clone().unwrap_or_else(|| default.into());
        let shape = RestShape {
            path: path.to_owned(),
            entity_type: self.entity.into(),
            items_pointer: self.items_pointer.clone(),
            id_field: self.id_field.clone(),
            active_field: self.active_field.clone(),
            active_words: ActiveWords {
                inverted: self.active_inverted,
                active: self.active_words.clone(),
                inactive: self.inactive_words.clone(),
            },
            label_field: self.label_field.clone(),
            total_pointer: self.total_pointer.clone(),
            total_header: self.total_header.as_ref().map(|h| h.to_ascii_lowercase()),
            next_pointer: self.next_pointer.clone(),
            cursor_pointer: self.cursor_pointer.clone(),
            page_param: param(&self.page_param, "page"),
            size_param: param(&self.size_param, size_default),
            offset_param: param(&self.offset_param, "offset"),
            cursor_param: param(&self.cursor_param, "cursor"),
            page_start: self.page_start.unwrap_or(1),
            query: self
                .query
                .iter()
                .map(|(n, v)| (n.clone(), v.clone()))
                .collect(),
            headers: self
                .headers
                .iter()
                .map(|(n, v)| (n.clone(), v.clone()))
                .collect(),
        };
        check_params(&k, &shape, paging)?;
        self.check_headers(&k)?;
        Ok(shape)
    }

    /// Every pointer is an RFC 6901 JSON pointer (`items_pointer` may be "").
    fn check_pointers(&self, k: &dyn Fn(&str) -> String) -> Result<(), ConfigError> {
        for (name, p) in [
            ("items_pointer", Some(&self.items_pointer)),
            ("total_pointer", self.total_pointer.as_ref()),
            ("next_pointer", self.next_pointer.as_ref()),
            ("cursor_pointer", self.cursor_pointer.as_ref()),
        ] {
            let Some(p) = p else { continue };
            if p.is_empty() && name == "items_pointer" {
                continue;
            }
            if !p.starts_with('/') {
                return Err(invalid(
                    k(name),
                    format!(
                        "{p:?} is not a JSON pointer: write \"/{}\" (RFC 6901: it starts with '/'; \
                         '~' and '/' inside a key are written ~0 and ~1)",
                        p.trim_start_matches('/')
                    ),
                ));
            }
        }
        Ok(())
    }

    fn check_active(&self, k: &dyn Fn(&str) -> String) -> Result<(), ConfigError> {
        let words = !self.active_words.is_empty() || !self.inactive_words.is_empty();
        if (self.active_inverted || words) && self.active_field.is_none() {
            return Err(invalid(
                k("active_field"),
                "required with active_inverted / active_words / inactive_words",
            ));
        }
        if let Some(w) = self.active_words.iter().find(|w| {
            self.inactive_words
                .iter()
                .any(|x| x.trim().eq_ignore_ascii_case(w.trim()))
        }) {
            return Err(invalid(
                k("inactive_words"),
                format!("{w:?} is in active_words too"),
            ));
        }
        Ok(())
    }

    /// Each paging style's keys only with that style; the cursor style needs
    /// its pointer.
    fn check_paging_keys(
        &self,
        k: &dyn Fn(&str) -> String,
        paging: PagingSetting,
    ) -> Result<(), ConfigError> {
        let page_number = matches!(paging, PagingSetting::PageNumber | PagingSetting::Index);
        let only = |name: &str, set: bool, ok: bool, style: &str| match set && !ok {
            true => Err(invalid(
                k(name),
                format!(
                    "only for paging = \"{style}\" (this source's paging is \"{}\")",
                    paging.name()
                ),
            )),
            false => Ok(()),
        };
        only(
            "page_start",
            self.page_start.is_some(),
            page_number,
            "page-number",
        )?;
        only(
            "page_param",
            self.page_param.is_some(),
            page_number,
            "page-number",
        )?;
        only(
            "offset_param",
            self.offset_param.is_some(),
            paging == PagingSetting::Offset,
            "offset",
        )?;
        only(
            "next_pointer",
            self.next_pointer.is_some(),
            paging == PagingSetting::Link,
            "link",
        )?;
        if self.cursor_param.is_some() && self.cursor_pointer.is_none() {
            return Err(invalid(
                k("cursor_pointer"),
                "required with cursor_param: the JSON pointer to the next cursor in the body, \
                 e.g. \"/response_metadata/next_cursor\"",
            ));
        }
        only(
            "cursor_pointer",
            self.cursor_pointer.is_some(),
            paging == PagingSetting::Cursor,
            "cursor",
        )?;
        if paging == PagingSetting::Cursor && self.cursor_pointer.is_none() {
            return Err(invalid(
                k("cursor_pointer"),
                "required for paging = \"cursor\": the JSON pointer to the next cursor in the \
                 body, e.g. \"/nextPageToken\" or \"/response_metadata/next_cursor\"",
            ));
        }
        if let Some(s) = self.page_start
            && s > 1
        {
            return Err(invalid(
                k("page_start"),
                format!("{s}: must be 0 or 1 (the number of the first page)"),
            ));
        }
        Ok(())
    }

    fn check_headers(&self, k: &dyn Fn(&str) -> String) -> Result<(), ConfigError> {
        for (name, value) in &self.headers {
            if CREDENTIAL_HEADERS
                .iter()
                .any(|c| c.eq_ignore_ascii_case(name.trim()))
            {
                return Err(invalid(
                    k("headers"),
                    format!("{name}: credentials go in [sources.auth], never in this file"),
                ));
            }
            if let Err(e) = govledger_ingest::http::header(name, value) {
                return Err(invalid(k("headers"), e.to_string()));
            }
        }
        Ok(())
    }
}

/// Parameter names are plain query names, and the configured `query` sets
/// none the engine sets itself.
fn check_params(
    k: &dyn Fn(&str) -> String,
    shape: &RestShape,
    paging: PagingSetting,
) -> Result<(), ConfigError> {
    let plain = |n: &str| {
        !n.is_empty()
            && !n
                .chars()
                .any(|c| c.is_whitespace() || c.is_control() || "&=#?+%".contains(c))
    };
    let mut engine = vec![("size_param", &shape.size_param)];
    match paging {
        PagingSetting::Offset => engine.push(("offset_param", &shape.offset_param)),
        PagingSetting::Cursor => engine.push(("cursor_param", &shape.cursor_param)),
        PagingSetting::Link => {}
        PagingSetting::PageNumber | PagingSetting::Index => {
            engine.push(("page_param", &shape.page_param));
        }
    }
    for (key, name) in &engine {
        if !plain(name) {
            return Err(invalid(
                k(key),
                format!("{name:?} is not a query parameter name"),
            ));
        }
    }
    for (name, _) in &shape.query {
        if !plain(name) {
            return Err(invalid(
                k("query"),
                format!("{name:?} is not a query parameter name"),
            ));
        }
        if let Some((key, _)) = engine.iter().find(|(_, n)| *n == name) {
            return Err(invalid(
                k("query"),
                format!("{name:?} is set by the engine on every page ({key}): remove it here"),
            ));
        }
    }
    Ok(())
}
