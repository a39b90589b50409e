//! The deletion guard (R8), pure: a full run whose unique count of an entity
//! type dropped past that type's deletion threshold against the source's last
//! COMPLETE full run is SUSPECT. Each entity type is judged on its own, so a
//! source that lost every group is not waved through by a stable user count.
//!
//! The baseline is `RunState.previous_complete_entities` (per type); a run
//! decided without one (its store predates per-type baselines) falls back to
//! the run's total (`previous_complete_unique`). Delta runs are never judged:
//! they do not read everything. Memberships are counted as the membership
//! references on the run's unique records (a user's groups, a group's
//! members), plus any records of type membership: a source whose groups came
//! back without members is caught though every group is there.

use govledger_proto::v1::{
    EntityThreshold, EntityTotal, EntityType, Reason, ReasonCode, RunState, SyncMode,
};

use crate::verdict::thousands;

/// The COUNT_DROP reasons of a run, one per entity type past its threshold,
/// in entity type order; empty when nothing dropped past a threshold.
pub fn count_drops(run: &RunState) -> Vec<Reason> {
    if run.mode != SyncMode::Full as i32 {
        return Vec::new();
    }
    if run.previous_complete_entities.is_empty() {
        let limits = threshold_of(run, None);
        return drop_reason(
            "",
            run.previous_complete_unique,
            run.records_unique,
            &limits,
        )
        .into_iter()
        .collect();
    }
    let mut baseline = run.previous_complete_entities.clone();
    baseline.sort_by_key(|e| e.entity_type);
    baseline
        .iter()
        .filter_map(|prev| {
            let now = count_of(run, prev.entity_type);
            let limits = threshold_of(run, Some(prev.entity_type));
            drop_reason(&label(prev.entity_type), prev.unique, now, &limits)
        })
        .collect()
}

/// The deletion guard's baseline taken from a COMPLETE full run: its unique
/// records per entity type, memberships counted as [`count_of`] does.
pub fn baseline_of(prev: &RunState) -> Vec<EntityTotal> {
    let membership = EntityType::Membership as i32;
    let mut out: Vec<EntityTotal> = prev
        .entities
        .iter()
        .filter(|e| e.entity_type != membership)
        .map(|e| EntityTotal {
            entity_type: e.entity_type,
            unique: e.unique,
        })
        .collect();
    let memberships = count_of(prev, membership);
    if memberships > 0 {
        out.push(EntityTotal {
            entity_type: membership,
            unique: memberships,
        });
    }
    out
}

/// What a run counted of one entity type: its unique records of that type;
/// for memberships, also the membership references on its unique records.
pub fn count_of(run: &RunState, entity_type: i32) -> u64 {
    let unique = run
        .entities
        .iter()
        .find(|e| e.entity_type == entity_type)
        .map_or(0, |e| e.unique);
    if entity_type == EntityType::Membership as i32 {
        unique + run.membership_refs
    } else {
        unique
    }
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

/// `"groups: "` — the prefix that names the entity type in the reason text
/// (none for records of no stated type).
fn label(entity_type: i32) -> String {
    match EntityType::try_from(entity_type).unwrap_or(EntityType::Unspecified) {
        EntityType::Unspecified => String::new(),
        _ => format!("{}s: ", crate::keys::entity_label(entity_type)),
    }
}

/// COUNT_DROP when `now` is below `prev` by more than `limits.pct` percent of
/// `prev` or by more than `limits.abs` records (a bound of 0 is off; a `prev`
/// of 0 has nothing to drop from).
fn drop_reason(label: &str, prev: u64, now: u64, limits: &EntityThreshold) -> Option<Reason> {
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
    Some(Reason {
        code: ReasonCode::CountDrop as i32,
        message: format!(
            "{label}{} disappeared since the last complete run ({} → {}, −{:.1}%), past the deletion threshold ({}): confirm the deletions before trusting this run",
            records(drop),
            thousands(prev),
            thousands(now),
            drop as f64 * 100.0 / prev as f64,
            bounds.join(" or ")
        ),
    })
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

    const TAIL: &str = ": confirm the deletions before trusting this run";

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
            // A type absent from the run counts as 0.
            (
                20,
                0,
                &[(USER, 500), (GROUP, 5)],
                &[(USER, 500)],
                vec![format!(
                    "groups: 5 records disappeared since the last complete run (5 → 0, −100.0%), past the deletion threshold (20%){TAIL}"
                )],
            ),
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

    #[test]
    fn memberships_are_the_references_on_the_records() {
        // 10 groups of 3 members (and 30 users listing their group): 60 references.
        let prev = RunState {
            membership_refs: 60,
            ..run(20, 0, &[], &[(USER, 30), (GROUP, 10)])
        };
        let baseline = baseline_of(&prev);
        assert_eq!(
            baseline,
            vec![
                EntityTotal {
                    entity_type: USER,
                    unique: 30
                },
                EntityTotal {
                    entity_type: GROUP,
                    unique: 10
                },
                EntityTotal {
                    entity_type: MEMBERSHIP,
                    unique: 60
                },
            ]
        );
        // Every group came back without members: users and groups are stable.
        let mut r = run(20, 0, &[], &[(USER, 30), (GROUP, 10)]);
        r.previous_complete_entities = baseline;
        r.membership_refs = 30;
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
        assert_eq!(count_of(&r, MEMBERSHIP), 60);
        // No membership at all: no baseline entry.
        assert!(
            baseline_of(&run(20, 0, &[], &[(USER, 3)]))
                .iter()
                .all(|e| e.entity_type == USER)
        );
    }

    #[test]
    fn without_a_per_type_baseline_the_total_is_judged() {
        let mut r = run(20, 0, &[], &[(USER, 70)]);
        r.previous_complete_unique = 100;
        assert_eq!(
            messages(&r),
            vec![format!(
                "30 records disappeared since the last complete run (100 → 70, −30.0%), past the deletion threshold (20%){TAIL}"
            )]
        );
    }
}
