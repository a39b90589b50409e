//! `[provenance]`: which producers' seals the ledger trusts (issue 21).
//!
//! Every govledger process that publishes has an ed25519 producer key
//! (`provenance.key_file`, default `<data_dir>/producer.key`, created on first
//! start with mode 0600). The ledger trusts its own key and the public keys
//! listed in `provenance.trusted_keys` (64 hex characters each): a run sealed
//! by any other key, or by none, is UNVERIFIED_PRODUCER, never COMPLETE; an
//! action concluded that way is never CONFIRMED. `govledger serve` logs its
//! own public key at start, for the other processes' `trusted_keys`.

use std::{path::PathBuf, sync::Arc};

use govledger_stream::seal::{ProducerKey, Trust, parse_public_key};
use serde::Deserialize;

use super::{Config, ConfigError, error::invalid};

/// The file name of the producer key in the data folder.
pub const PRODUCER_KEY_FILE: &str = "producer.key";

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct ProvenanceConfig {
    /// Public keys (64 hex characters) of other producers whose seals count.
    pub trusted_keys: Vec<String>,
    /// This process's producer key (a 32-byte ed25519 seed, 64 hex
    /// characters). Default: `<data_dir>/producer.key`, created on first start.
    pub key_file: Option<PathBuf>,
}

impl ProvenanceConfig {
    /// Each trusted key is an ed25519 public key fit to verify with.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.trusted().map(|_| ())
    }

    fn trusted(&self) -> Result<Vec<ed25519_dalek::VerifyingKey>, ConfigError> {
        self.trusted_keys
            .iter()
            .enumerate()
            .map(|(i, k)| {
                parse_public_key(k).map_err(|p| {
                    invalid(
                        format!("provenance.trusted_keys[{i}]"),
                        format!(
                            "{k:?} is {p}; list the producer's public key as `govledger serve` logs it at start (\"producer key …\")"
                        ),
                    )
                })
            })
            .collect()
    }
}

/// The process's producer key and the keys the fold trusts.
#[derive(Debug, Clone)]
pub struct Provenance {
    pub key: Arc<ProducerKey>,
    pub trust: Arc<Trust>,
}

/// Where the producer key of `cfg` lives.
pub fn key_path(cfg: &Config) -> PathBuf {
    cfg.provenance
        .key_file
        .clone()
        .unwrap_or_else(|| cfg.data_dir().join(PRODUCER_KEY_FILE))
}

/// Loads (or creates) the producer key and builds the trusted set: the
/// configured keys and the process's own.
pub fn load(cfg: &Config) -> Result<Provenance, ConfigError> {
    load_with(cfg, true)
}

/// Like [`load`], for a fold that must trust what the live ledger trusts
/// (`rebuild`): the key must exist already, none is created.
pub fn load_existing(cfg: &Config) -> Result<Provenance, ConfigError> {
    load_with(cfg, false)
}

fn load_with(cfg: &Config, create: bool) -> Result<Provenance, ConfigError> {
    let path = key_path(cfg);
    if !create && !path.exists() {
        return Err(invalid(
            "provenance.key_file",
            format!(
                "no producer key at {}: a rebuild trusts what the live ledger trusts; run it with serve's --config and --data-dir",
                path.display()
            ),
        ));
    }
    let key = ProducerKey::load_or_create(&path)
        .map_err(|e| invalid("provenance.key_file", e.to_string()))?;
    let mut keys = cfg.provenance.trusted()?;
    keys.push(key.public_key());
    Ok(Provenance {
        key: Arc::new(key),
        trust: Arc::new(Trust::new(keys)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_malformed_trusted_key_is_named_with_its_index() {
        let c =
            Config::from_toml("[provenance]\ntrusted_keys = [\"00\", \"zz\"]\n", "t.toml").unwrap();
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("provenance.trusted_keys[0]"), "{e}");
        assert!(e.contains("\"00\""), "{e}");
        let weak = format!("[provenance]\ntrusted_keys = [\"{}\"]\n", "00".repeat(32));
        let e = Config::from_toml(&weak, "t.toml")
            .unwrap()
            .validate()
            .unwrap_err()
            .to_string();
        assert!(e.contains("weak"), "{e}");
    }

    #[test]
    fn the_own_key_is_created_private_and_trusted() {
        let dir = tempfile::tempdir().unwrap();
        let other = ProducerKey::from_seed([5; 32]);
        let c = Config::from_toml(
            &format!(
                "data_dir = {:?}\n[provenance]\ntrusted_keys = [\"{}\"]\n",
                dir.path().display().to_string(),
                other.public_hex()
            ),
            "t.toml",
        )
        .unwrap();
        c.validate().unwrap();
        let p = load(&c).unwrap();
        assert!(dir.path().join(PRODUCER_KEY_FILE).exists());
        assert!(p.trust.trusts(p.key.public_key().as_bytes()));
        assert!(p.trust.trusts(other.public_key().as_bytes()));
        assert_eq!(
            load(&c).unwrap().key.public_hex(),
            p.key.public_hex(),
            "the same key on every start"
        );
        std::fs::remove_file(dir.path().join(PRODUCER_KEY_FILE)).unwrap();
        let e = load_existing(&c).unwrap_err().to_string();
        assert!(e.contains("--data-dir"), "{e}");
        assert!(
            !dir.path().join(PRODUCER_KEY_FILE).exists(),
            "a rebuild creates no key"
        );
    }
}
