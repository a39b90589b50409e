//! Membership completeness: group member lists a source capped, ranged or
//! left out of its listing.
//!
//! Large directories cap `members` in list answers at some N. A capped list
//! taken as the whole membership loses members silently, so while a
//! resource of groups is listed, [`MemberCap`] (pure) holds back the groups
//! whose member count reaches the run's suspected cap: the largest member
//! count seen when several groups share it, or a count at the configured
//! `member_list_cap`. Groups with a ranged or object-shaped `members` (see
//! `scim::group_members`) are suspects too. A group below the largest count
//! seen cannot be capped (the cap is at least that large) and is published
//! at once, so only the groups at the current maximum are held.
//!
//! After the listing each suspect is read individually (`GET /Groups/{id}`,
//! then `?attributes=members` when that answer leaves `members` out), at
//! most `member_fetch_max` groups per run, and the longer answer is kept
//! ([`settle`]). A group stays *incomplete* (`memberships_incomplete`) when
//! its individual read could not be had (the bound, a failed read), was
//! ranged too, or came back with the same count at the configured cap
//! (capped too). Without a configured cap, a group whose individual read
//! agrees with its listed count has that many members: both answers say so.
//!
//! Some servers leave `members` out of list answers by design (shown only
//! on a single GET or asked for by name). A group listed without `members`
//! is taken as having none (RFC 7643 §2.5; scim2-server omits an empty
//! list) only once the listing has shown `members` on some group; until
//! then [`MemberCap`] holds such groups back. A listing that shows `members`
//! on no group at all left them out: its groups are suspects
//! ([`Suspicion::LeftOut`]), read individually under the same bound; a group
//! whose two individual answers both show no members has none (the answers
//! agree), one that could not be read stays incomplete.

use govledger_proto::v1::{EntityType, PageFetched, PageRole, RecordObserved, event::Body};

use super::{PageReq, Run, SyncError};
use crate::{
    http::{Fetched, percent_encode},
    scim::{Item, ListPage},
};

/// Groups held back at most while a listing runs; past it a candidate is
/// published at once, marked incomplete (it cannot be read individually
/// within any sensible bound anyway).
pub const HELD_MAX: usize = 10_000;

/// Default of `member_fetch_max`: groups read individually per run.
pub const DEFAULT_MEMBER_FETCH_MAX: u32 = 1_000;

/// The listing-time detector of capped member lists (pure).
#[derive(Debug, Default)]
pub struct MemberCap {
    /// The configured `member_list_cap` (a list of exactly that many is
    /// suspect; a longer one shows the cap is not applied to it).
    configured: Option<u32>,
    /// The largest member count seen so far in this listing.
    max: usize,
    /// Groups at `max` (candidates: suspects once two or more share it).
    at_max: Vec<RecordObserved>,
    /// Groups suspect on their own (ranged, or at the configured cap).
    definite: Vec<RecordObserved>,
    /// Whether some group of this listing carried `members` (in any form).
    shown: bool,
    /// Groups listed without `members` while no group has shown any.
    left_out: Vec<RecordObserved>,
}

/// Why a group is read individually.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Suspicion {
    /// Its `members` was ranged or not a list.
    Ranged,
    /// Its count reached the configured `member_list_cap`.
    AtConfiguredCap,
    /// Its count is the largest of the listing, shared with other groups.
    SharedMaximum,
    /// No group of the listing carried `members`: the server leaves them
    /// out of list answers.
    LeftOut,
}

impl MemberCap {
    pub fn new(configured: Option<u32>) -> Self {
        Self {
            configured: configured.filter(|c| *c > 0),
            ..Default::default()
        }
    }

    fn held(&self) -> usize {
        self.at_max.len() + self.definite.len() + self.left_out.len()
    }

    /// Takes one listed group (`members_shown`: it carried `members` in
    /// some form); returns the groups that can be published now.
    pub fn offer(&mut self, r: RecordObserved, members_shown: bool) -> Vec<RecordObserved> {
        if !members_shown {
            if self.shown {
                // The listing shows members: this group has none.
                return vec![r];
            }
            if self.held() >= HELD_MAX {
                return vec![mark_incomplete(r)];
            }
            self.left_out.push(r);
            return Vec::new();
        }
        let mut now = Vec::new();
        if !self.shown {
            // Members are shown in lists: the groups without them have none.
            self.shown = true;
            now = std::mem::take(&mut self.left_out);
        }
        now.extend(self.offer_shown(r));
        now
    }

    /// [`MemberCap::offer`] for a group that carried `members`.
    fn offer_shown(&mut self, r: RecordObserved) -> Vec<RecordObserved> {
        let n = r.memberships.len();
        let at_cap = self.configured.is_some_and(|c| n == c as usize);
        if r.memberships_incomplete || at_cap {
            if self.held() >= HELD_MAX {
                return vec![mark_incomplete(r)];
            }
            self.definite.push(r);
            return Vec::new();
        }
        if n == 0 || n < self.max {
            return vec![r];
        }
        if n > self.max {
            self.max = n;
            let released = std::mem::take(&mut self.at_max);
            self.at_max.push(r);
            return released;
        }
        if self.held() >= HELD_MAX {
            return vec![mark_incomplete(r)];
        }
        self.at_max.push(r);
        Vec::new()
    }

    /// The listing ended: the groups to publish as they are, and the
    /// suspects to read individually (in listing order per kind).
    pub fn finish(self) -> (Vec<RecordObserved>, Vec<(RecordObserved, Suspicion)>) {
        // Non-empty only while no group showed members (then nothing else is held).
        let mut suspects: Vec<(RecordObserved, Suspicion)> = self
            .left_out
            .into_iter()
            .map(|r| (r, Suspicion::LeftOut))
            .collect();
        suspects.extend(self.definite.into_iter().map(|r| {
            let why = if r.memberships_incomplete {
                Suspicion::Ranged
            } else {
                Suspicion::AtConfiguredCap
            };
            (r, why)
        }));
        if self.at_max.len() >= 2 {
            suspects.extend(
                self.at_max
                    .into_iter()
                    .map(|r| (r, Suspicion::SharedMaximum)),
            );
            (Vec::new(), suspects)
        } else {
            (self.at_max, suspects)
        }
    }
}

/// The group as listed, marked incomplete.
pub fn mark_incomplete(mut r: RecordObserved) -> RecordObserved {
    r.memberships_incomplete = true;
    r
}

/// What an individual read of a suspect gave.
#[derive(Debug, Clone, PartialEq)]
pub enum Reread {
    /// Its member list (and whether that was ranged too).
    Members(Vec<String>, bool),
    /// Both individual answers showed no members (not even asked for by
    /// name): empty for a group whose listing left them out, no evidence for
    /// a group listed with members.
    NoneShown,
    /// No usable answer: the bound was spent or the read failed.
    Unavailable,
}

/// The group to publish for a suspect: the longer of the two lists, and
/// incomplete unless the individual read settled it (module doc).
pub fn settle(listed: RecordObserved, why: Suspicion, reread: Reread) -> RecordObserved {
    let (members, ranged) = match reread {
        Reread::Members(members, ranged) => (members, ranged),
        Reread::NoneShown if why == Suspicion::LeftOut => (Vec::new(), false),
        Reread::NoneShown | Reread::Unavailable => return mark_incomplete(listed),
    };
    let longer = members.len() > listed.memberships.len();
    let agree = matches!(why, Suspicion::SharedMaximum | Suspicion::LeftOut);
    let complete = !ranged && (longer || agree);
    let mut r = listed;
    if longer {
        r.memberships = members;
    }
    r.memberships_incomplete = !complete;
    r
}

impl Run<'_> {
    /// Starts the capped-list detector for a SCIM resource of groups.
    pub(super) fn start_member_check(&mut self, et: EntityType) {
        if et == EntityType::Group && self.spec.rest.is_none() {
            self.members = Some(MemberCap::new(self.spec.member_list_cap));
        }
    }

    /// The listing of `endpoint` ended (`stopped`: the run cannot go on):
    /// publishes the held groups, each suspect read individually first
    /// while the bound allows and the run goes on.
    pub(super) async fn settle_members(
        &mut self,
        endpoint: &str,
        stopped: bool,
    ) -> Result<(), SyncError> {
        let Some(cap) = self.members.take() else {
            return Ok(());
        };
        let (now, suspects) = cap.finish();
        for r in now {
            self.observe(r).await?;
        }
        let mut usable = !stopped;
        for (listed, why) in suspects {
            let reread = if usable && self.member_reads < self.spec.member_fetch_max {
                self.member_reads += 1;
                let got = self.read_members(endpoint, &listed.external_id).await?;
                // A read that failed after its retries: the others would too.
                usable &= got.is_some();
                got.unwrap_or(Reread::Unavailable)
            } else {
                Reread::Unavailable
            };
            self.observe(settle(listed, why, reread)).await?;
        }
        Ok(())
    }

    /// `GET /{endpoint}/{id}`, then `?attributes=members` when that shows no
    /// members. `None` when a read failed after its retries.
    async fn read_members(
        &mut self,
        endpoint: &str,
        id: &str,
    ) -> Result<Option<Reread>, SyncError> {
        let base = format!(
            "{}/{endpoint}/{}",
            self.spec.base_url.trim_end_matches('/'),
            percent_encode(id)
        );
        for query in ["", "?attributes=members"] {
            let req = PageReq {
                url: format!("{base}{query}"),
                key: format!("{endpoint}/{id}{query}"),
                entity_type: EntityType::Group,
                role: PageRole::Data,
                page_index: 0,
                offset: None,
                count: 0,
                next_prefix: None,
                member_read: true,
            };
            let Ok(page) = self.fetch_page(req).await? else {
                return Ok(None);
            };
            if let Some(Item::Observed(g)) = page.items.first()
                && !g.memberships.is_empty()
            {
                return Ok(Some(Reread::Members(
                    g.memberships.clone(),
                    g.memberships_incomplete,
                )));
            }
        }
        Ok(Some(Reread::NoneShown))
    }

    /// The `PageFetched` of an individual group read (its record is
    /// published by [`Run::settle_members`]).
    pub(super) async fn publish_member_read(
        &mut self,
        req: &PageReq,
        fetched: &Fetched,
        page: &ListPage,
        attempt: u32,
    ) -> Result<(), SyncError> {
        let members = match page.items.first() {
            Some(Item::Observed(g)) => g.memberships.len(),
            _ => 0,
        };
        self.emit(
            attempt,
            Body::PageFetched(PageFetched {
                page_key: req.key.clone(),
                http_status: u32::from(fetched.status),
                item_count: u32::try_from(members).unwrap_or(u32::MAX),
                latency_ms: fetched.latency_ms,
                entity_type: req.entity_type as i32,
                member_read: true,
                ..Default::default()
            }),
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(id: &str, n: usize) -> RecordObserved {
        RecordObserved {
            external_id: id.into(),
            memberships: (0..n).map(|i| format!("u{i}")).collect(),
            ..Default::default()
        }
    }

    fn ids(rs: &[RecordObserved]) -> Vec<&str> {
        rs.iter().map(|r| r.external_id.as_str()).collect()
    }

    #[test]
    fn only_groups_at_the_shared_maximum_are_suspects() {
        let mut d = MemberCap::new(None);
        assert!(d.offer(group("a", 3), true).is_empty());
        assert_eq!(ids(&d.offer(group("b", 1), true)), vec!["b"]);
        assert!(d.offer(group("c", 3), true).is_empty());
        assert_eq!(ids(&d.offer(group("e", 0), true)), vec!["e"]);
        let (now, suspects) = d.finish();
        assert!(now.is_empty());
        let s: Vec<_> = suspects
            .iter()
            .map(|(r, w)| (r.external_id.as_str(), *w))
            .collect();
        assert_eq!(
            s,
            vec![
                ("a", Suspicion::SharedMaximum),
                ("c", Suspicion::SharedMaximum)
            ]
        );
    }

    #[test]
    fn a_larger_group_releases_the_held_ones() {
        let mut d = MemberCap::new(None);
        assert!(d.offer(group("a", 2), true).is_empty());
        assert!(d.offer(group("b", 2), true).is_empty());
        assert_eq!(ids(&d.offer(group("c", 5), true)), vec!["a", "b"]);
        let (now, suspects) = d.finish();
        assert_eq!(
            ids(&now),
            vec!["c"],
            "a maximum held by one group is no cap"
        );
        assert!(suspects.is_empty());
    }

    #[test]
    fn the_configured_cap_and_ranged_lists_make_suspects_on_their_own() {
        let mut d = MemberCap::new(Some(4));
        assert!(d.offer(group("a", 4), true).is_empty());
        let mut r = group("b", 1);
        r.memberships_incomplete = true;
        assert!(d.offer(r, true).is_empty());
        assert_eq!(
            ids(&d.offer(group("c", 2), true)),
            Vec::<&str>::new(),
            "held at max 2"
        );
        let (now, suspects) = d.finish();
        assert_eq!(ids(&now), vec!["c"]);
        let s: Vec<_> = suspects.iter().map(|(_, w)| *w).collect();
        assert_eq!(s, vec![Suspicion::AtConfiguredCap, Suspicion::Ranged]);
    }

    #[test]
    fn groups_without_members_wait_for_a_group_that_shows_some() {
        let mut d = MemberCap::new(None);
        assert!(d.offer(group("a", 0), false).is_empty());
        assert!(d.offer(group("b", 0), false).is_empty());
        // Members shown in lists: the groups without them have none.
        assert_eq!(ids(&d.offer(group("c", 0), true)), vec!["a", "b", "c"]);
        assert_eq!(ids(&d.offer(group("d", 0), false)), vec!["d"]);
        let (now, suspects) = d.finish();
        assert!(now.is_empty() && suspects.is_empty());
        // A ranged list shows members too (and is a suspect on its own).
        let mut d = MemberCap::new(None);
        assert!(d.offer(group("a", 0), false).is_empty());
        let mut r = group("r", 2);
        r.memberships_incomplete = true;
        assert_eq!(ids(&d.offer(r, true)), vec!["a"]);
    }

    #[test]
    fn a_listing_that_shows_no_members_makes_every_group_a_suspect() {
        let mut d = MemberCap::new(Some(3));
        for id in ["a", "b", "c"] {
            assert!(d.offer(group(id, 0), false).is_empty());
        }
        let (now, suspects) = d.finish();
        assert!(now.is_empty());
        let s: Vec<_> = suspects
            .iter()
            .map(|(r, w)| (r.external_id.as_str(), *w))
            .collect();
        assert_eq!(
            s,
            vec![
                ("a", Suspicion::LeftOut),
                ("b", Suspicion::LeftOut),
                ("c", Suspicion::LeftOut)
            ]
        );
    }

    #[test]
    fn groups_left_out_past_the_hold_bound_are_published_incomplete() {
        let mut d = MemberCap::new(None);
        for i in 0..HELD_MAX {
            assert!(d.offer(group(&format!("g{i}"), 0), false).is_empty());
        }
        let past = d.offer(group("last", 0), false);
        assert_eq!(ids(&past), vec!["last"]);
        assert!(past[0].memberships_incomplete);
        let (_, suspects) = d.finish();
        assert_eq!(suspects.len(), HELD_MAX);
    }

    #[test]
    fn settling_a_group_left_out_of_the_listing() {
        let read = Reread::Members(group("x", 3).memberships, false);
        let r = settle(group("g", 0), Suspicion::LeftOut, read);
        assert_eq!((r.memberships.len(), r.memberships_incomplete), (3, false));
        // Both individual answers show none: the group is empty.
        let r = settle(group("g", 0), Suspicion::LeftOut, Reread::NoneShown);
        assert_eq!((r.memberships.len(), r.memberships_incomplete), (0, false));
        // Not read (the bound, a failure) or ranged: unknown.
        let r = settle(group("g", 0), Suspicion::LeftOut, Reread::Unavailable);
        assert!(r.memberships_incomplete);
        let ranged = Reread::Members(group("x", 2).memberships, true);
        assert!(settle(group("g", 0), Suspicion::LeftOut, ranged).memberships_incomplete);
        // A group listed with members whose single reads show none: no evidence.
        let r = settle(group("g", 3), Suspicion::SharedMaximum, Reread::NoneShown);
        assert_eq!((r.memberships.len(), r.memberships_incomplete), (3, true));
    }

    #[test]
    fn settling_keeps_the_longer_list_and_says_when_it_is_incomplete() {
        let full = |n| Reread::Members(group("x", n).memberships, false);
        // Capped list, full individual read: complete with the longer list.
        let r = settle(group("g", 2), Suspicion::SharedMaximum, full(5));
        assert_eq!((r.memberships.len(), r.memberships_incomplete), (5, false));
        // Capped too at the configured cap: incomplete, the listed members kept.
        let r = settle(group("g", 4), Suspicion::AtConfiguredCap, full(4));
        assert_eq!((r.memberships.len(), r.memberships_incomplete), (4, true));
        // Shared maximum, both answers agree: that many members.
        let r = settle(group("g", 3), Suspicion::SharedMaximum, full(3));
        assert!(!r.memberships_incomplete);
        // Ranged again, or nothing to read: incomplete.
        let r = settle(
            group("g", 2),
            Suspicion::Ranged,
            Reread::Members(group("x", 3).memberships, true),
        );
        assert_eq!((r.memberships.len(), r.memberships_incomplete), (3, true));
        let r = settle(group("g", 2), Suspicion::SharedMaximum, Reread::Unavailable);
        assert_eq!((r.memberships.len(), r.memberships_incomplete), (2, true));
        // A ranged list read in full as a plain list: complete.
        let r = settle(group("g", 2), Suspicion::Ranged, full(7));
        assert_eq!((r.memberships.len(), r.memberships_incomplete), (7, false));
    }
}
