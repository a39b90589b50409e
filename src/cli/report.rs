//! `govledger report`: the auditor's completeness report. Online it exports
//! the source's whole-history bundle as of the point (written beside the
//! page), verifies it, and renders [`crate::audit::report`] from it;
//! `--bundle` renders again offline from a bundle (the same bytes).

use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use govledger_projector::fold::hex;
use govledger_proto::v1::{Checkpoint, ExportEvidenceRequest, GetLedgerStatusRequest};
use prost::Message as _;
use sha2::{Digest as _, Sha256};

use super::{
    args::ReportArgs,
    client::{NotOk, connect, status_err, time_arg},
};
use crate::audit::{
    checkpoints::unhex,
    evidence::{self, fold_bundle},
    report::{ReportInput, render},
};

/// `govledger report` (see the module doc).
pub async fn report(a: ReportArgs) -> anyhow::Result<()> {
    let (bundle_path, data, key) = match &a.bundle {
        Some(path) => {
            let Some(key) = a.public_key.clone() else {
                bail!(
                    "--bundle needs --public-key: the ledger's checkpoint key as its operator published it (the report is made of verified evidence only)"
                );
            };
            (path.clone(), super::audit::read_bundle_file(path)?, key)
        }
        None => {
            let source = a.source.clone().unwrap_or_default();
            let mut c = connect(&a.client).await?;
            let key = match &a.public_key {
                Some(k) => k.clone(),
                None => {
                    c.get_ledger_status(GetLedgerStatusRequest { with_digest: false })
                        .await
                        .map_err(status_err)?
                        .into_inner()
                        .checkpoint_public_key
                }
            };
            let req = ExportEvidenceRequest {
                source_id: source,
                entity_type: 0,
                external_id: String::new(),
                from_us: 0,
                to_us: time_arg("--as-of", a.as_of.as_deref())?,
            };
            let data = super::audit::fetch_bundle(&mut c, req).await?;
            let path = beside(&a.out);
            std::fs::write(&path, &data)
                .with_context(|| format!("cannot write {}", path.display()))?;
            (path, data, key)
        }
    };
    let verification = evidence::verify_bundle(&data, Some(&key));
    if verification.verdict != evidence::Verdict::Verified {
        eprintln!(
            "{}: {:?}: {}",
            bundle_path.display(),
            verification.verdict,
            verification.problem
        );
        return Err(NotOk.into());
    }
    let b: evidence::Bundle = serde_json::from_slice(&data).context("the bundle")?;
    let folded = fold_bundle(&b).map_err(anyhow::Error::msg)?;
    let verifier_key = b
        .checkpoints
        .last()
        .and_then(|c| unhex(c))
        .and_then(|bytes| Checkpoint::decode(bytes.as_slice()).ok())
        .map(|c| c.verifier_key)
        .unwrap_or_default();
    let sha = hex(&Sha256::digest(&data));
    let file = bundle_path
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default();
    let page = render(&ReportInput {
        bundle: &b,
        bundle_sha256: &sha,
        verification: &verification,
        folded: &folded,
        verifier_key: &verifier_key,
        bundle_file: &file,
    })?;
    std::fs::write(&a.out, &page).with_context(|| format!("cannot write {}", a.out.display()))?;
    println!(
        "wrote {} (SHA-256 {}) from bundle {} (SHA-256 {sha}), verified under key {}",
        a.out.display(),
        hex(&Sha256::digest(page.as_bytes())),
        bundle_path.display(),
        verification.key_id
    );
    if a.public_key.is_none() && a.bundle.is_none() {
        println!(
            "  the key was the one the ledger serves: pin the key its operator published with --public-key"
        );
    }
    Ok(())
}

/// `report.html` → `report.bundle.json`, in the same folder.
fn beside(out: &Path) -> PathBuf {
    let stem = out
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "report".into());
    out.with_file_name(format!("{stem}.bundle.json"))
}
