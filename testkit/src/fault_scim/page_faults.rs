//! The page-fault family: for one list request, which page faults fire
//! (fail, rate limit, malformed, short, empty, bad records, slow, total
//! results, mutation, cursor cycle) and what the page then holds. Shared by
//! SCIM and REST listing.

use super::*;

impl Inner {
    /// Counts one list request (unless `count` is 0, a SCIM probe) and decides
    /// every page fault for the page of `count` items at `offset`: the common
    /// part of SCIM and REST listing. The caller has checked auth expiry.
    /// `rest` picks the item form (REST items are always Users).
    pub(super) fn serve_page(
        &mut self,
        kind: ResourceType,
        offset: usize,
        count: usize,
        rest: bool,
    ) -> Page {
        let probe = count == 0;
        let applies = self.applies(kind);
        let mut page_no = None;
        if !probe {
            let n = self.page_no.entry(kind).or_insert(0);
            *n += 1;
            page_no = Some(*n);
            if applies {
                self.c.list_requests += 1;
            }
        }
        let request_no = self.c.list_requests;
        let start_index = offset + 1;
        let pf = applies && !probe; // page faults apply
        let f = self.faults.clone();
        let delay = match f.slow {
            Some((si, ms)) if pf && si == start_index => ms,
            _ => 0,
        } + if probe { 0 } else { f.page_latency_ms };

        let mut injected = None;
        let mut malformed = None;
        if pf {
            for (i, x) in f.fail.iter().enumerate() {
                if injected.is_none()
                    && x.start_index == start_index
                    && self.take(kind, Family::Fail, i, x.times)
                {
                    injected = Some(Injected::Status(x.status));
                }
            }
            for (i, x) in f.rate_limit.iter().enumerate() {
                if injected.is_none()
                    && x.start_index == start_index
                    && self.take(kind, Family::Rate, i, x.times)
                {
                    injected = Some(Injected::RateLimit(x.retry_after));
                }
            }
            for (i, x) in f.malformed.iter().enumerate() {
                if injected.is_none()
                    && malformed.is_none()
                    && x.start_index == start_index
                    && self.take(kind, Family::Malformed, i, x.times)
                {
                    malformed = Some(x.kind);
                }
            }
        }
        let true_total = self.total(kind);
        let mut items = if rest {
            self.users
                .values()
                .skip(offset)
                .take(count)
                .map(Self::rest_user_json)
                .collect()
        } else {
            self.slice(kind, offset, count)
        };
        if let (ResourceType::Groups, false, Some(mc)) = (kind, rest, f.members_capped) {
            for item in &mut items {
                cap_members(item, mc.list, mc.ranged);
            }
        }
        if kind == ResourceType::Groups && !rest && f.members_left_out_of_lists {
            for item in &mut items {
                if let Some(o) = item.as_object_mut() {
                    o.remove("members");
                }
            }
        }
        if pf {
            if f.short_page == Some(start_index) {
                items.truncate(items.len() / 2);
            }
            if f.empty_page == Some(start_index) {
                items.clear();
            }
            if f.bad_records == Some(start_index) {
                if let Some(Value::Object(o)) = items.get_mut(0) {
                    o.remove("id");
                }
                if let Some(Value::Object(o)) = items.get_mut(1) {
                    o.insert("active".into(), json!("yes"));
                }
            }
        }
        let shifted = |off: i64| (true_total as i64 + off).max(0) as u64;
        let total: u64 = if !applies {
            true_total as u64
        } else {
            match f.total_results {
                TotalResults::Honest => true_total as u64,
                TotalResults::Fixed(n) => n,
                TotalResults::Offset(o) => shifted(o),
                TotalResults::Absent => true_total as u64,
                TotalResults::EqualsPageSize if probe => true_total as u64,
                TotalResults::EqualsPageSize => count as u64,
                TotalResults::ChangeAfter { requests, offset } => {
                    let honest = if probe {
                        request_no < requests
                    } else {
                        request_no <= requests
                    };
                    if honest {
                        true_total as u64
                    } else {
                        shifted(offset)
                    }
                }
            }
        };
        Page {
            page_no,
            delay,
            injected,
            malformed,
            items,
            total,
            true_total,
            pf,
        }
    }

    pub(super) fn total(&self, kind: ResourceType) -> usize {
        match kind {
            ResourceType::Users => self.users.len(),
            ResourceType::Groups => self.groups.len(),
        }
    }

    /// Resources `offset..offset+count` in id order.
    pub(super) fn slice(&self, kind: ResourceType, offset: usize, count: usize) -> Vec<Value> {
        match kind {
            ResourceType::Users => self
                .users
                .values()
                .skip(offset)
                .take(count)
                .map(|u| self.user_json(u))
                .collect(),
            ResourceType::Groups => self
                .groups
                .values()
                .skip(offset)
                .take(count)
                .map(|g| self.group_json(g))
                .collect(),
        }
    }
}

/// Keeps the first `n` of a group's `members`; `ranged` renames a cut list
/// `members;range=0-<n-1>`.
pub(super) fn cap_members(group: &mut Value, n: usize, ranged: bool) {
    let Some(o) = group.as_object_mut() else {
        return;
    };
    let Some(Value::Array(members)) = o.get_mut("members") else {
        return;
    };
    if members.len() <= n {
        return;
    }
    members.truncate(n);
    if ranged && let Some(list) = o.remove("members") {
        o.insert(format!("members;range=0-{}", n.saturating_sub(1)), list);
    }
}

/// An injected error answer instead of a page.
#[derive(Clone, Copy)]
pub(super) enum Injected {
    /// R1: this HTTP status.
    Status(u16),
    /// R2: 429 with this `Retry-After`.
    RateLimit(RetryAfter),
}

/// What [`Inner::serve_page`] decided for one list request.
pub(super) struct Page {
    pub(super) page_no: Option<usize>,
    /// Extra delay (`Faults::slow`).
    pub(super) delay: u64,
    /// If set, answer this error instead of the page.
    pub(super) injected: Option<Injected>,
    pub(super) malformed: Option<Malformed>,
    /// The page's items, after short / empty / bad-record faults.
    pub(super) items: Vec<Value>,
    /// What the total says (after `total_results`).
    pub(super) total: u64,
    /// The true number of resources.
    pub(super) true_total: usize,
    /// Whether page faults apply to this request.
    pub(super) pf: bool,
}
