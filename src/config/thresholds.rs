//! `[sources.deletion_thresholds]`: per entity type overrides of the deletion
//! guard. The guard is judged per entity type; a type without an override uses
//! the source's `deletion_threshold_pct` / `deletion_threshold_abs`.

use govledger_proto::v1::{EntityThreshold, EntityType};
use serde::Deserialize;

use super::error::{ConfigError, invalid};

/// Per entity type overrides (each key optional; 0 = off for that bound).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeletionThresholds {
    pub users_pct: Option<u32>,
    pub users_abs: Option<u64>,
    pub groups_pct: Option<u32>,
    pub groups_abs: Option<u64>,
    pub memberships_pct: Option<u32>,
    pub memberships_abs: Option<u64>,
    pub entitlements_pct: Option<u32>,
    pub entitlements_abs: Option<u64>,
}

impl DeletionThresholds {
    /// The overrides in effect, one per entity type that has any, with the
    /// source's defaults (`pct`, `abs`) filled in for the bound not overridden.
    /// `k` names keys for errors (`sources[0].deletion_thresholds.users_pct`).
    pub fn resolve(
        &self,
        pct: u32,
        abs: u64,
        k: &dyn Fn(&str) -> String,
    ) -> Result<Vec<EntityThreshold>, ConfigError> {
        let rows = [
            ("users", EntityType::User, self.users_pct, self.users_abs),
            (
                "groups",
                EntityType::Group,
                self.groups_pct,
                self.groups_abs,
            ),
            (
                "memberships",
                EntityType::Membership,
                self.memberships_pct,
                self.memberships_abs,
            ),
            (
                "entitlements",
                EntityType::Entitlement,
                self.entitlements_pct,
                self.entitlements_abs,
            ),
        ];
        let mut out = Vec::new();
        for (name, entity_type, p, a) in rows {
            if p.is_some_and(|p| p > 100) {
                return Err(invalid(
                    k(&format!("deletion_thresholds.{name}_pct")),
                    "must be within 0..=100",
                ));
            }
            if p.is_some() || a.is_some() {
                out.push(EntityThreshold {
                    entity_type: entity_type as i32,
                    pct: p.unwrap_or(pct),
                    abs: a.unwrap_or(abs),
                });
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn k(name: &str) -> String {
        format!("sources[0].{name}")
    }

    #[test]
    fn overrides_fill_in_the_defaults_per_type() {
        let t: DeletionThresholds = toml::from_str("groups_pct = 0\nusers_abs = 50").unwrap();
        let got = t.resolve(20, 0, &k).unwrap();
        assert_eq!(
            got,
            vec![
                EntityThreshold {
                    entity_type: EntityType::User as i32,
                    pct: 20,
                    abs: 50
                },
                EntityThreshold {
                    entity_type: EntityType::Group as i32,
                    pct: 0,
                    abs: 0
                },
            ]
        );
        assert!(
            DeletionThresholds::default()
                .resolve(20, 5, &k)
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn a_percentage_past_100_names_its_key() {
        let t: DeletionThresholds = toml::from_str("memberships_pct = 101").unwrap();
        let e = t.resolve(20, 0, &k).unwrap_err().to_string();
        assert!(
            e.contains("sources[0].deletion_thresholds.memberships_pct"),
            "{e}"
        );
        assert!(toml::from_str::<DeletionThresholds>("user_pct = 1").is_err());
    }
}
