//! Reading an HR file drop: the newest landed file of the folder
//! ([`crate::hrfile::pick`]) as one page, its rows as records.
//!
//! The page declares the count the export declared (trailer, manifest or
//! control file), so a count mismatch is COUNT_SHORT / COUNT_OVER; rows that
//! do not read are RecordRejected naming their line; a file cut short, or a
//! declared count that differs from the rows in the file, ends the run
//! FAILED in the engine's words naming the line — INCOMPLETE, never
//! COMPLETE. A folder with no landed file is a run that could not run.

use std::sync::Arc;

use govledger_proto::v1::{EntityType, ErrorClass, PageFetched, PageRole, event::Body};
use tokio::time::Instant;

use super::{Run, Stop, SyncError};
use crate::{
    hrfile::{self, FileSpec},
    scim::Item,
};

impl Run<'_> {
    /// Reads the folder of `spec`; `Some(stop)` when the run is not whole.
    pub(super) async fn read_file(
        &mut self,
        spec: &Arc<FileSpec>,
    ) -> Result<Option<Stop>, SyncError> {
        let began = Instant::now();
        let owned = spec.clone();
        let read = tokio::task::spawn_blocking(move || hrfile::read_newest(&owned)).await;
        let hrfile::Newest {
            name: picked_name,
            parsed,
            side_count,
            ..
        } = match read {
            Ok(Ok(r)) => r,
            Ok(Err((class, why))) => return Ok(Some(Stop::Abort(class, why))),
            Err(e) => {
                return Ok(Some(Stop::Abort(
                    ErrorClass::Other,
                    format!("reading the file stopped: {e}"),
                )));
            }
        };
        let declared = side_count.map(|n| (n, 0)).or(parsed.declared);
        self.emit(
            1,
            Body::PageFetched(PageFetched {
                page_key: picked_name.clone(),
                item_count: u32::try_from(parsed.data_rows).unwrap_or(u32::MAX),
                declared_total: declared.map(|(n, _)| n),
                latency_ms: began.elapsed().as_millis().min(u128::from(u32::MAX)) as u32,
                entity_type: EntityType::User as i32,
                role: PageRole::Data as i32,
                last_page: true,
                ..Default::default()
            }),
        )
        .await?;
        self.report.pages_ok += 1;
        self.declared = declared.map(|(n, _)| n);
        let read_at_us = crate::event::now_us();
        for item in parsed.items {
            match item {
                Item::Observed(mut r) => {
                    r.read_at_us = read_at_us;
                    self.observe(r).await?;
                }
                Item::Rejected(r) => {
                    self.report.rejected += 1;
                    self.emit(1, Body::RecordRejected(r)).await?;
                }
            }
        }
        let mut p = self.ctx.progress.borrow().clone();
        p.pages = 1;
        p.records = self.report.unique;
        p.declared = self.declared;
        self.ctx.progress.send_replace(p);
        if let Some(why) = parsed.truncated {
            return Ok(Some(Stop::Abort(ErrorClass::Limit, why)));
        }
        if let Some((n, line)) = declared
            && n != parsed.data_rows
        {
            let by = match line {
                0 => format!("{picked_name}: its {} declares", side_name(spec)),
                l => format!("{picked_name} line {l} (the trailer) declares"),
            };
            return Ok(Some(Stop::Abort(
                ErrorClass::Limit,
                format!("{by} {n} rows, the file holds {}", parsed.data_rows),
            )));
        }
        Ok(None)
    }
}

fn side_name(spec: &FileSpec) -> &'static str {
    match spec.completeness {
        hrfile::Completeness::Manifest { .. } => "manifest",
        _ => "control file",
    }
}
