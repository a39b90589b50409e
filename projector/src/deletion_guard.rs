//! The deletion guard (R8), pure: a full run whose unique count of an entity
//! type dropped past that type's deletion threshold against the source's last
//! COMPLETE full run that read that type is SUSPECT. Each entity type is
//! judged on its own, so a source that lost every group is not waved through
//! by a stable user count.
//!
//! Only the entity types a run read are judged ([`types_read`]: it set out to
//! read them, declared a total for them or observed one of their records): a
//! run configured for users only says nothing about groups. The baseline
//! ([`baseline_for`], taken when the run is decided into
//! `RunState.previous_complete_entities`) is, type by type, the last COMPLETE
//! full run that read the type. Delta runs are never judged: they do not read
//! everything. Memberships are counted as the membership references on the
//! run's unique records (a user's groups, a group's members) of the types
//! judged, plus any records of type membership: a source whose groups came
//! back without members is caught though every group is there.
//!
//! accept-deletions: an operator may accept a SUSPECT run's drops
//! ([`acceptable`] says whether and which); an acceptance that names exactly
//! the run's drops ([`covers`]) makes it COMPLETE, its drops kept as
//! DELETIONS_ACCEPTED reasons ([`accepted_reasons`]) naming who accepted
//! which drop, when, why and under which ticket.

use govledger_proto::v1::{
    Acceptance, AcceptedDrop, EntityThreshold, EntityTotal, EntityType, Reason, ReasonCode,
    RunState, SyncMode, Verdict,
};

use crate::verdict::thousands;

/// One entity type's count past its deletion threshold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CountDrop {
    pub entity_type: i32,
    /// Unique records in the baseline run, and in this run.
    pub baseline: u64,
    pub now: u64,
    /// What dropped, by how much, past which bound (no advice).
    pub what: String,
}

impl CountDrop {
    /// The COUNT_DROP reason of a SUSPECT run.
    pub fn reason(&self) -> Reason {
        Reason {
            code: ReasonCode::CountDrop as i32,
            message: format!(
                "{}: confirm the deletions before trusting this run (govledger accept-deletions)",
                self.what
            ),
        }
    }

    /// The drop as an acceptance names it.
    pub fn accepted(&self) -> AcceptedDrop {
        AcceptedDrop {
            entity_type: self.entity_type,
            baseline: self.baseline,
            now: self.now,
        }
    }
}

/// The COUNT_DROP reasons of a run, one per entity type past its threshold,
/// in entity type order; empty when nothing dropped past a threshold.
pub fn count_drops(run: &RunState) -> Vec<Reason> {
    drops(run).iter().map(CountDrop::reason).collect()
}

/// The drops of a run, one per entity type it read that dropped past its
/// threshold against its baseline, in entity type order.
pub fn drops(run: &RunState) -> Vec<CountDrop> {
    if run.mode != SyncMode::Full as i32 {
        return Vec::new();
    }
    let read = types_read(run);
    let membership = EntityType::Membership as i32;
    let mut baseline = run.previous_complete_entities.clone();
    baseline.sort_by_key(|e| e.entity_type);
    baseline
        .iter()
        .filter(|prev| prev.entity_type == membership || read.contains(&prev.entity_type))
        .filter_map(|prev| {
            let now = now_of(run, prev.entity_type, &baseline);
            let limits = threshold_of(run, Some(prev.entity_type));
            drop_text(&label(prev.entity_type), prev.unique, now, &limits).map(|what| CountDrop {
                entity_type: prev.entity_type,
                baseline: prev.unique,
                now,
                what,
            })
        })
        .collect()
}

/// The entity types a run read, in order: those it set out to read
/// (`SyncRunStarted.entity_types`), declared a total for, or observed a
/// record of.
pub fn types_read(run: &RunState) -> Vec<i32> {
    let mut types: Vec<i32> = run
        .entity_types
        .iter()
        .copied()
        .chain(run.entities.iter().map(|e| e.entity_type))
        .collect();
    types.sort_unstable();
    types.dedup();
    types
}

/// The deletion guard's baseline for `run`: for each entity type it read,
/// the unique records of that type in `prev_of(type)` — the source's last
/// COMPLETE full run that read the type (`None`: no baseline, not judged) —
/// and the memberships: the references those runs' records of the same types
/// carried, plus records of type membership.
pub fn baseline_for<'a>(
    run: &RunState,
    prev_of: impl Fn(i32) -> Option<&'a RunState>,
) -> Vec<EntityTotal> {
    let membership = EntityType::Membership as i32;
    let read = types_read(run);
    let mut out = Vec::new();
    let mut memberships = 0u64;
    for &t in &read {
        let Some(prev) = prev_of(t) else { continue };
        if t == membership {
            memberships += unique_of(prev, membership);
            continue;
        }
        out.push(EntityTotal {
            entity_type: t,
            unique: unique_of(prev, t),
        });
        memberships += refs_of(prev, t);
    }
    if memberships > 0 {
        out.push(EntityTotal {
            entity_type: membership,
            unique: memberships,
        });
    }
    out
}

/// What a run counted of one entity type against `baseline`: its unique
/// records of that type; for memberships, also the membership references on
/// its unique records of the types in the baseline.
fn now_of(run: &RunState, entity_type: i32, baseline: &[EntityTotal]) -> u64 {
    let membership = EntityType::Membership as i32;
    let unique = unique_of(run, entity_type);
    if entity_type != membership {
        return unique;
    }
    baseline
        .iter()
        .filter(|e| e.entity_type != membership)
        .map(|e| refs_of(run, e.entity_type))
        .fold(unique, u64::saturating_add)
}

/// A run's unique records of one entity type.
fn unique_of(run: &RunState, entity_type: i32) -> u64 {
    run.entities
        .iter()
        .find(|e| e.entity_type == entity_type)
        .map_or(0, |e| e.unique)
}

/// The membership references on a run's unique records of one entity type.
fn refs_of(run: &RunState, entity_type: i32) -> u64 {
    run.membership_refs_by_type
        .iter()
        .find(|e| e.entity_type == entity_type)
        .map_or(0, |e| e.unique)
}

/// The threshold in effect for an entity type: its override if the run has
/// one, else the run's defaults (`None` = the whole run).
pub fn threshold_of(run: &RunState, entity_type: Option<i32>) -> EntityThreshold {
    entity_type
        .and_then(|t| {
            run.deletion_thresholds
                .iter()
                .find(|o| o.entity_type == t)
                .cloned()
        })
        .unwrap_or(EntityThreshold {
            entity_type: entity_type.unwrap_or_default(),
            pct: run.deletion_threshold_pct,
            abs: run.deletion_threshold_abs,
        })
}

/// Why a run's deletions cannot be accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotAcceptable {
    /// The ledger has not decided the run yet.
    NotDecided,
    /// The run's verdict is not SUSPECT (its reasons given).
    NotSuspect(Verdict, Vec<Reason>),
    /// SUSPECT for something else than count drops.
    NotOnlyDrops(Vec<Reason>),
}

/// The drops an acceptance of `run` names: the run is decided SUSPECT by the
/// deletion guard alone (COUNT_DROP reasons only), and these are its drops.
pub fn acceptable(run: &RunState) -> Result<Vec<AcceptedDrop>, NotAcceptable> {
    if !run.decided {
        return Err(NotAcceptable::NotDecided);
    }
    let v = Verdict::try_from(run.verdict).unwrap_or_default();
    if v != Verdict::Suspect {
        return Err(NotAcceptable::NotSuspect(v, run.reasons.clone()));
    }
    let only_drops = run
        .reasons
        .iter()
        .all(|r| r.code == ReasonCode::CountDrop as i32);
    let drops = drops(run);
    if !only_drops || drops.is_empty() {
        return Err(NotAcceptable::NotOnlyDrops(run.reasons.clone()));
    }
    Ok(drops.iter().map(CountDrop::accepted).collect())
}

/// Whether an acceptance names exactly these drops (same entity types,
/// baselines and counts): it accepts what the ledger decided, nothing else.
pub fn covers(acceptance: &Acceptance, drops: &[CountDrop]) -> bool {
    let Some(a) = &acceptance.accepted else {
        return false;
    };
    let mut named = a.drops.clone();
    named.sort_by_key(|d| d.entity_type);
    named.len() == drops.len() && named.iter().zip(drops).all(|(n, d)| *n == d.accepted())
}

/// The DELETIONS_ACCEPTED reasons of a run whose drops `acceptance` accepted:
/// each drop as it was decided, then who accepted it, when, under which
/// ticket and why.
pub fn accepted_reasons(drops: &[CountDrop], acceptance: &Acceptance) -> Vec<Reason> {
    let a = acceptance.accepted.clone().unwrap_or_default();
    let when = chrono::DateTime::from_timestamp_micros(acceptance.accepted_at_us)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_else(|| format!("{} µs", acceptance.accepted_at_us));
    drops
        .iter()
        .map(|d| Reason {
            code: ReasonCode::DeletionsAccepted as i32,
            message: format!(
                "{}: deletions accepted by {} at {when} under ticket {}: {:?}",
                d.what, a.accepted_by, a.ticket, a.reason
            ),
        })
        .collect()
}

/// Whether the run is COMPLETE because an acceptance covered its drops.
pub fn accepted(run: &RunState) -> bool {
    run.verdict == Verdict::Complete as i32
        && run
            .reasons
            .iter()
            .any(|r| r.code == ReasonCode::DeletionsAccepted as i32)
}

/// `"groups: "` — the prefix that names the entity type in the reason text
/// (none for records of no stated type).
fn label(entity_type: i32) -> String {
    match EntityType::try_from(entity_type).unwrap_or(EntityType::Unspecified) {
        EntityType::Unspecified => String::new(),
        _ => format!("{}s: ", crate::keys::entity_label(entity_type)),
    }
}

/// What dropped when `now` is below `prev` by more than `limits.pct` percent
/// of `prev` or by more than `limits.abs` records (a bound of 0 is off; a
/// `prev` of 0 has nothing to drop from).
fn drop_text(label: &str, prev: u64, now: u64, limits: &EntityThreshold) -> Option<String> {
    if prev == 0 || now >= prev {
        return None;
    }
    let drop = prev - now;
    let (pct, abs) = (limits.pct, limits.abs);
    let over_pct = pct > 0 && drop.saturating_mul(100) > u64::from(pct).saturating_mul(prev);
    let over_abs = abs > 0 && drop > abs;
    if !(over_pct || over_abs) {
        return None;
    }
    let mut bounds = Vec::new();
    if pct > 0 {
        bounds.push(format!("{pct}%"));
    }
    if abs > 0 {
        bounds.push(records(abs));
    }
    Some(format!(
        "{label}{} disappeared since the last complete run ({} → {}, −{:.1}%), past the deletion threshold ({})",
        records(drop),
        thousands(prev),
        thousands(now),
        drop as f64 * 100.0 / prev as f64,
        bounds.join(" or ")
    ))
}

/// `"1 record"`, `"1,200 records"`.
fn records(n: u64) -> String {
    format!(
        "{} {}",
        thousands(n),
        if n == 1 { "record" } else { "records" }
    )
}

#[cfg(test)]
mod tests {
    use govledger_proto::v1::EntityCounts;

    use super::*;

    const USER: i32 = EntityType::User as i32;
    const GROUP: i32 = EntityType::Group as i32;
    const MEMBERSHIP: i32 = EntityType::Membership as i32;
    const ENTITLEMENT: i32 = EntityType::Entitlement as i32;

    /// A full run with the given thresholds, baseline and current counts per type.
    fn run(pct: u32, abs: u64, prev: &[(i32, u64)], now: &[(i32, u64)]) -> RunState {
        RunState {
            mode: SyncMode::Full as i32,
            deletion_threshold_pct: pct,
            deletion_threshold_abs: abs,
            previous_complete_unique: prev.iter().map(|p| p.1).sum(),
            previous_complete_entities: prev
                .iter()
                .map(|&(entity_type, unique)| EntityTotal {
                    entity_type,
                    unique,
                })
                .collect(),
            records_unique: now.iter().map(|n| n.1).sum(),
            entities: now
                .iter()
                .map(|&(entity_type, unique)| EntityCounts {
                    entity_type,
                    unique,
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }
    }

    fn messages(run: &RunState) -> Vec<String> {
        count_drops(run)
            .into_iter()
            .inspect(|r| assert_eq!(r.code, ReasonCode::CountDrop as i32))
            .map(|r| r.message)
            .collect()
    }

    const TAIL: &str =
        ": confirm the deletions before trusting this run (govledger accept-deletions)";

    #[test]
    fn each_entity_type_is_judged_on_its_own() {
        // (pct, abs, previous, now, expected messages)
        type Row<'a> = (u32, u64, &'a [(i32, u64)], &'a [(i32, u64)], Vec<String>);
        let rows: Vec<Row> = vec![
            // Every group gone, users stable: 5 of 505 overall, 100% of groups.
            (
                20,
                0,
                &[(USER, 500), (GROUP, 5)],
                &[(USER, 500), (GROUP, 0)],
                vec![format!(
                    "groups: 5 records disappeared since the last complete run (5 → 0, −100.0%), past the deletion threshold (20%){TAIL}"
                )],
            ),
            // A type the run did not read is not judged (read with 0: above).
            (20, 0, &[(USER, 500), (GROUP, 5)], &[(USER, 500)], vec![]),
            // Exactly at the percentage: not past it.
            (
                20,
                0,
                &[(USER, 100), (GROUP, 10)],
                &[(USER, 80), (GROUP, 8)],
                vec![],
            ),
            // Just past it, in both types: one reason each, in type order.
            (
                20,
                0,
                &[(GROUP, 10), (USER, 100)],
                &[(USER, 79), (GROUP, 7)],
                vec![
                    format!(
                        "users: 21 records disappeared since the last complete run (100 → 79, −21.0%), past the deletion threshold (20%){TAIL}"
                    ),
                    format!(
                        "groups: 3 records disappeared since the last complete run (10 → 7, −30.0%), past the deletion threshold (20%){TAIL}"
                    ),
                ],
            ),
            // Absolute bound per type: 6 users and 6 groups gone, bound 10 → each under it.
            (
                0,
                10,
                &[(USER, 1000), (GROUP, 100)],
                &[(USER, 994), (GROUP, 94)],
                vec![],
            ),
            (
                0,
                10,
                &[(USER, 1000), (GROUP, 100)],
                &[(USER, 989), (GROUP, 100)],
                vec![format!(
                    "users: 11 records disappeared since the last complete run (1,000 → 989, −1.1%), past the deletion threshold (10 records){TAIL}"
                )],
            ),
            // Both bounds named; either one is enough.
            (
                50,
                2,
                &[(MEMBERSHIP, 40)],
                &[(MEMBERSHIP, 37)],
                vec![format!(
                    "memberships: 3 records disappeared since the last complete run (40 → 37, −7.5%), past the deletion threshold (50% or 2 records){TAIL}"
                )],
            ),
            (
                5,
                0,
                &[(ENTITLEMENT, 20)],
                &[(ENTITLEMENT, 18)],
                vec![format!(
                    "entitlements: 2 records disappeared since the last complete run (20 → 18, −10.0%), past the deletion threshold (5%){TAIL}"
                )],
            ),
            // Guard off.
            (
                0,
                0,
                &[(USER, 100), (GROUP, 5)],
                &[(USER, 0), (GROUP, 0)],
                vec![],
            ),
            // Zero previous: nothing to drop from; a new type has no baseline.
            (
                20,
                0,
                &[(USER, 100), (GROUP, 0)],
                &[(USER, 100), (GROUP, 0)],
                vec![],
            ),
            (20, 0, &[(USER, 100)], &[(USER, 100), (GROUP, 50)], vec![]),
            (20, 0, &[], &[(USER, 0), (GROUP, 0)], vec![]),
            // Growth is never a drop.
            (
                20,
                1,
                &[(USER, 100), (GROUP, 5)],
                &[(USER, 200), (GROUP, 9)],
                vec![],
            ),
            // Records of no stated type: no label.
            (
                20,
                0,
                &[(EntityType::Unspecified as i32, 100)],
                &[(EntityType::Unspecified as i32, 50)],
                vec![format!(
                    "50 records disappeared since the last complete run (100 → 50, −50.0%), past the deletion threshold (20%){TAIL}"
                )],
            ),
        ];
        for (i, (pct, abs, prev, now, want)) in rows.into_iter().enumerate() {
            assert_eq!(messages(&run(pct, abs, prev, now)), want, "row {i}");
        }
    }

    #[test]
    fn delta_runs_are_never_judged() {
        let mut r = run(20, 1, &[(USER, 500), (GROUP, 5)], &[(USER, 3), (GROUP, 0)]);
        r.mode = SyncMode::Delta as i32;
        assert!(count_drops(&r).is_empty());
        r.previous_complete_entities.clear();
        assert!(count_drops(&r).is_empty());
    }

    #[test]
    fn overrides_apply_to_their_type_only() {
        // Groups may churn (off), users keep the default 20%.
        let mut r = run(
            20,
            0,
            &[(USER, 100), (GROUP, 10)],
            &[(USER, 70), (GROUP, 0)],
        );
        r.deletion_thresholds = vec![EntityThreshold {
            entity_type: GROUP,
            pct: 0,
            abs: 0,
        }];
        assert_eq!(
            messages(&r),
            vec![format!(
                "users: 30 records disappeared since the last complete run (100 → 70, −30.0%), past the deletion threshold (20%){TAIL}"
            )]
        );
        // A stricter bound for groups than the default.
        r.deletion_thresholds[0].abs = 0;
        r.deletion_thresholds[0].pct = 5;
        r.entities[0].unique = 100;
        r.entities[1].unique = 9;
        assert_eq!(
            messages(&r),
            vec![format!(
                "groups: 1 record disappeared since the last complete run (10 → 9, −10.0%), past the deletion threshold (5%){TAIL}"
            )]
        );
    }

    fn refs(by_type: &[(i32, u64)]) -> Vec<EntityTotal> {
        by_type
            .iter()
            .map(|&(entity_type, unique)| EntityTotal {
                entity_type,
                unique,
            })
            .collect()
    }

    #[test]
    fn memberships_are_the_references_on_the_records() {
        // 10 groups of 3 members (and 30 users listing their group): 60 references.
        let prev = RunState {
            membership_refs_by_type: refs(&[(USER, 30), (GROUP, 30)]),
            ..run(20, 0, &[], &[(USER, 30), (GROUP, 10)])
        };
        let mut r = run(20, 0, &[], &[(USER, 30), (GROUP, 10)]);
        let baseline = baseline_for(&r, |_| Some(&prev));
        assert_eq!(baseline, refs(&[(USER, 30), (GROUP, 10), (MEMBERSHIP, 60)]));
        // Every group came back without members: users and groups are stable.
        r.previous_complete_entities = baseline;
        r.membership_refs_by_type = refs(&[(USER, 30)]);
        assert_eq!(
            messages(&r),
            vec![format!(
                "memberships: 30 records disappeared since the last complete run (60 → 30, −50.0%), past the deletion threshold (20%){TAIL}"
            )]
        );
        // Records of type membership count with the references.
        r.entities.push(EntityCounts {
            entity_type: MEMBERSHIP,
            unique: 30,
            ..Default::default()
        });
        assert!(messages(&r).is_empty());
        // No membership at all: no baseline entry.
        let users = run(20, 0, &[], &[(USER, 3)]);
        assert!(
            baseline_for(&users, |_| Some(&users))
                .iter()
                .all(|e| e.entity_type == USER)
        );
    }

    #[test]
    fn the_baseline_is_per_type_and_only_of_the_types_read() {
        // Users and groups, 30 references on each side, in the last run that read both.
        let both = RunState {
            membership_refs_by_type: refs(&[(USER, 30), (GROUP, 30)]),
            ..run(20, 0, &[], &[(USER, 30), (GROUP, 10)])
        };
        // A later complete run read users only (29 of them, 29 references).
        let users = RunState {
            membership_refs_by_type: refs(&[(USER, 29)]),
            ..run(20, 0, &[], &[(USER, 29)])
        };
        let prev_of = |t: i32| Some(if t == USER { &users } else { &both });
        // A run of users only: judged on users and their references only.
        let mut r = run(20, 0, &[], &[(USER, 29)]);
        r.membership_refs_by_type = refs(&[(USER, 29)]);
        let baseline = baseline_for(&r, prev_of);
        assert_eq!(baseline, refs(&[(USER, 29), (MEMBERSHIP, 29)]));
        r.previous_complete_entities = baseline;
        assert!(messages(&r).is_empty());
        // A run that set out to read groups and found none is judged against
        // the last run that read groups, however old.
        let mut r = run(20, 0, &[], &[(USER, 29)]);
        r.entity_types = vec![USER, GROUP];
        r.membership_refs_by_type = refs(&[(USER, 0)]);
        r.previous_complete_entities = baseline_for(&r, prev_of);
        assert_eq!(
            r.previous_complete_entities,
            refs(&[(USER, 29), (GROUP, 10), (MEMBERSHIP, 59)])
        );
        assert_eq!(
            messages(&r),
            vec![
                format!(
                    "groups: 10 records disappeared since the last complete run (10 → 0, −100.0%), past the deletion threshold (20%){TAIL}"
                ),
                format!(
                    "memberships: 59 records disappeared since the last complete run (59 → 0, −100.0%), past the deletion threshold (20%){TAIL}"
                ),
            ]
        );
        // A type without a baseline run is not judged.
        let mut r = run(20, 0, &[], &[(ENTITLEMENT, 0)]);
        r.previous_complete_entities = baseline_for(&r, |_| None);
        assert!(r.previous_complete_entities.is_empty());
        assert!(messages(&r).is_empty());
        // A baseline entry of a type the run did not read is never judged.
        let mut r = run(20, 0, &[(GROUP, 10)], &[(USER, 29)]);
        r.previous_complete_entities = refs(&[(GROUP, 10)]);
        assert!(messages(&r).is_empty());
    }

    fn acceptance(drops: &[(i32, u64, u64)]) -> Acceptance {
        Acceptance {
            run_id: "r2".into(),
            accepted: Some(govledger_proto::v1::DeletionsAccepted {
                accepted_by: "alice".into(),
                reason: "HR reorg removed every group".into(),
                ticket: "CHG-42".into(),
                drops: drops
                    .iter()
                    .map(|&(entity_type, baseline, now)| AcceptedDrop {
                        entity_type,
                        baseline,
                        now,
                    })
                    .collect(),
            }),
            accepted_at_us: 1_767_225_600_000_000,
            seq: 99,
        }
    }

    #[test]
    fn an_acceptance_covers_exactly_the_drops_decided() {
        let mut r = run(
            20,
            0,
            &[(USER, 100), (GROUP, 5)],
            &[(USER, 100), (GROUP, 0)],
        );
        let d = drops(&r);
        assert!(covers(&acceptance(&[(GROUP, 5, 0)]), &d));
        for wrong in [
            acceptance(&[]),
            acceptance(&[(GROUP, 5, 1)]),
            acceptance(&[(GROUP, 6, 0)]),
            acceptance(&[(USER, 5, 0)]),
            acceptance(&[(GROUP, 5, 0), (USER, 100, 10)]),
        ] {
            assert!(!covers(&wrong, &d), "{wrong:?}");
        }
        assert_eq!(
            accepted_reasons(&d, &acceptance(&[(GROUP, 5, 0)])),
            vec![Reason {
                code: ReasonCode::DeletionsAccepted as i32,
                message: "groups: 5 records disappeared since the last complete run (5 → 0, −100.0%), \
                          past the deletion threshold (20%): deletions accepted by alice at \
                          2026-01-01T00:00:00Z under ticket CHG-42: \"HR reorg removed every group\""
                    .into()
            }]
        );
        // Acceptable only once decided SUSPECT by the guard alone.
        assert_eq!(acceptable(&r), Err(NotAcceptable::NotDecided));
        r.decided = true;
        r.verdict = Verdict::Suspect as i32;
        r.reasons = count_drops(&r);
        assert_eq!(acceptable(&r), Ok(vec![d[0].accepted()]));
        let changed = Reason {
            code: ReasonCode::DeclaredTotalChanged as i32,
            message: "the declared total changed".into(),
        };
        r.reasons = vec![changed.clone()];
        assert_eq!(
            acceptable(&r),
            Err(NotAcceptable::NotOnlyDrops(vec![changed]))
        );
        r.verdict = Verdict::Complete as i32;
        r.reasons.clear();
        assert_eq!(
            acceptable(&r),
            Err(NotAcceptable::NotSuspect(Verdict::Complete, vec![]))
        );
    }
}
