//! `govledger report`: the auditor's completeness report. Online it exports
//! the source's whole-history bundle as of the point with the ledger's seal
//! of its report (written beside the page), verifies it, renders
//! [`crate::audit::report`] from it and checks the page is the one whose
//! digest the ledger signed; `--bundle` renders again offline from a bundle
//! (the same bytes, checked against the same signed digest).

use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use govledger_proto::v1::{ExportEvidenceRequest, GetLedgerStatusRequest};

use super::{
    args::ReportArgs,
    client::{NotOk, connect, status_err, time_arg},
};
use crate::audit::{
    evidence,
    report::{page, page_sha256},
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
                with_report: true,
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
    let page = page(&b, &verification)?;
    let sha = page_sha256(&page);
    // verify_bundle checked the seal's signature; the page must be the one sealed.
    if !verification.report_sha256.is_empty() && verification.report_sha256 != sha {
        eprintln!(
            "{}: the page rendered here (SHA-256 {sha}) is not the one the ledger signed for this bundle (SHA-256 {}): use the govledger version that exported it",
            bundle_path.display(),
            verification.report_sha256
        );
        return Err(NotOk.into());
    }
    std::fs::write(&a.out, &page).with_context(|| format!("cannot write {}", a.out.display()))?;
    println!(
        "wrote {} (SHA-256 {sha}) from bundle {}, verified under key {}",
        a.out.display(),
        bundle_path.display(),
        verification.key_id
    );
    if verification.report_sha256.is_empty() {
        println!(
            "  the bundle carries no signed report digest (exported without with_report): the page is bound to it only by rendering it again"
        );
    } else {
        println!("  the page's SHA-256 is the one the ledger's manifest key signed in the bundle");
    }
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
