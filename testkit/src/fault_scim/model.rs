//! The server's state: users and groups with their versions, the fault
//! counters, the request log, and how a resource is rendered (SCIM and REST).

use super::*;

#[derive(Clone, Debug)]
pub(super) struct UserRec {
    pub(super) id: String,
    pub(super) user_name: String,
    pub(super) active: bool,
    pub(super) display_name: Option<String>,
    pub(super) title: Option<String>,
    pub(super) version: u64,
}

#[derive(Clone, Debug)]
pub(super) struct GroupRec {
    pub(super) id: String,
    pub(super) display_name: String,
    pub(super) members: Vec<String>,
    pub(super) version: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(super) enum Family {
    Fail,
    Rate,
    Malformed,
}

#[derive(Default)]
pub(super) struct Counters {
    /// List requests since `set_faults`, of the resource types faults apply to.
    pub(super) list_requests: usize,
    /// Page faults consumed, keyed by resource type, family and index in its Vec.
    pub(super) hits: HashMap<(ResourceType, Family, usize), u32>,
    pub(super) mutation_done: bool,
    /// `write_fail` entries consumed, keyed by index in the Vec.
    pub(super) write_hits: HashMap<usize, u32>,
    /// W10: a write was applied while `down_after_write` was set.
    pub(super) down: bool,
    /// `RestQuirks::rate_window`: (requests used, the window's end in epoch seconds).
    pub(super) rate_window: Option<(usize, u64)>,
}

/// W7: what a single-resource GET shows until `until` (`None` = 404).
#[derive(Clone, Debug)]
pub(super) struct Lagged {
    pub(super) body: Option<(Value, u64)>,
    pub(super) until: Instant,
}

pub(super) struct Inner {
    pub(super) cfg: ScimConfig,
    pub(super) base_url: String,
    pub(super) users: BTreeMap<String, UserRec>,
    pub(super) groups: BTreeMap<String, GroupRec>,
    pub(super) next_user: usize,
    pub(super) next_front: usize,
    pub(super) faults: Faults,
    pub(super) c: Counters,
    pub(super) page_no: HashMap<ResourceType, usize>,
    pub(super) log: Vec<RequestRecord>,
    /// W7: the old views of recently written resources, by (`User`/`Group`, id).
    pub(super) lagged: HashMap<(&'static str, String), Lagged>,
}

pub(super) type Shared = Arc<Mutex<Inner>>;

pub(super) fn lock(s: &Shared) -> MutexGuard<'_, Inner> {
    s.lock().unwrap_or_else(|e| e.into_inner())
}

impl Inner {
    pub(super) fn new(cfg: ScimConfig, base_url: String) -> Self {
        let mut users = BTreeMap::new();
        for n in 0..cfg.users {
            let u = new_user(format!("u{n:07}"), format!("user{n}@example.test"));
            users.insert(u.id.clone(), u);
        }
        let mut groups = BTreeMap::new();
        for n in 0..cfg.groups {
            let mut members = Vec::new();
            if cfg.users > 0 {
                for k in 0..3 {
                    let id = format!("u{:07}", (n * 3 + k) % cfg.users);
                    if !members.contains(&id) {
                        members.push(id);
                    }
                }
            }
            let g = GroupRec {
                id: format!("g{n:07}"),
                display_name: format!("group{n}"),
                members,
                version: 1,
            };
            groups.insert(g.id.clone(), g);
        }
        Self {
            next_user: cfg.users,
            cfg,
            base_url,
            users,
            groups,
            next_front: 0,
            faults: Faults::default(),
            c: Counters::default(),
            page_no: HashMap::new(),
            log: Vec::new(),
            lagged: HashMap::new(),
        }
    }

    /// Consumes one of a page fault's `times`; false once they are used up.
    pub(super) fn take(&mut self, kind: ResourceType, fam: Family, i: usize, times: u32) -> bool {
        let h = self.c.hits.entry((kind, fam, i)).or_insert(0);
        if *h < times {
            *h = h.saturating_add(1);
            true
        } else {
            false
        }
    }

    pub(super) fn applies(&self, kind: ResourceType) -> bool {
        self.faults.only.is_none_or(|o| o == kind)
    }

    pub(super) fn auth_expired(&self) -> bool {
        self.faults
            .auth_expire_after_requests
            .is_some_and(|n| self.c.list_requests >= n)
    }

    pub(super) fn maybe_mutate(&mut self) {
        let Some(m) = self.faults.mutate_after_page else {
            return;
        };
        if self.c.mutation_done || self.c.list_requests < m.after_requests {
            return;
        }
        self.c.mutation_done = true;
        let victims: Vec<String> = self.users.keys().take(m.delete_front).cloned().collect();
        for v in victims {
            self.remove_user(&v);
        }
        for _ in 0..m.insert_front {
            let n = self.next_front;
            self.next_front += 1;
            let u = new_user(format!("a{n:07}"), format!("front{n}@example.test"));
            self.users.insert(u.id.clone(), u);
        }
    }

    pub(super) fn remove_user(&mut self, id: &str) -> bool {
        if self.users.remove(id).is_none() {
            return false;
        }
        for g in self.groups.values_mut() {
            let before = g.members.len();
            g.members.retain(|m| m != id);
            if g.members.len() != before {
                g.version += 1;
            }
        }
        true
    }

    pub(super) fn user_json(&self, u: &UserRec) -> Value {
        let mut v = json!({
            "schemas": [USER_SCHEMA],
            "id": u.id,
            "userName": u.user_name,
            "active": u.active,
            "meta": {
                "resourceType": "User",
                "version": weak_etag(u.version),
                "location": format!("{}/Users/{}", self.base_url, u.id),
            },
        });
        if let Some(d) = &u.display_name {
            v["displayName"] = json!(d);
        }
        if let Some(t) = &u.title {
            v["title"] = json!(t);
        }
        if self.cfg.user_groups || self.faults.user_groups {
            let groups: Vec<Value> = self
                .groups
                .values()
                .filter(|g| g.members.contains(&u.id))
                .map(|g| {
                    json!({
                        "value": g.id,
                        "display": g.display_name,
                        "$ref": format!("{}/Groups/{}", self.base_url, g.id),
                        "type": "direct",
                    })
                })
                .collect();
            v["groups"] = json!(groups);
        }
        v
    }

    pub(super) fn group_json(&self, g: &GroupRec) -> Value {
        let members: Vec<Value> = g
            .members
            .iter()
            .map(|m| {
                json!({
                    "value": m,
                    "type": "User",
                    "$ref": format!("{}/Users/{}", self.base_url, m),
                })
            })
            .collect();
        json!({
            "schemas": [GROUP_SCHEMA],
            "id": g.id,
            "displayName": g.display_name,
            "members": members,
            "meta": {
                "resourceType": "Group",
                "version": weak_etag(g.version),
                "location": format!("{}/Groups/{}", self.base_url, g.id),
            },
        })
    }

    /// A user as the REST API shows it.
    pub(super) fn rest_user_json(u: &UserRec) -> Value {
        json!({"id": u.id, "email": u.user_name, "active": u.active})
    }
}

pub(super) fn new_user(id: String, user_name: String) -> UserRec {
    UserRec {
        id,
        user_name,
        active: true,
        display_name: None,
        title: None,
        version: 1,
    }
}

pub(super) fn weak_etag(v: u64) -> String {
    format!("W/\"{v}\"")
}
