//! Walking a REST listing whose pages are addressed by position: page
//! numbers (from 0 or 1, `page_start`) or offsets (`offset`/`limit`). Progress
//! is counted by the records received, never by the page size asked (an API
//! may serve fewer); the listing ends at an empty page, at a page that brings
//! no new records ([`Run::repeat_end`]) or once the declared total is read,
//! then a probe past the end.

use govledger_proto::v1::{ErrorClass, PageRole};

use super::{PAGES_MAX, Paging, Run, Stop, SyncError, paging::Flow};
use crate::rest::RestShape;

/// Where a page is: a page number or an offset.
#[derive(Clone, Copy)]
enum Position {
    Page(u64),
    Offset(u64),
}

impl Position {
    /// The query parameters asking for this page of `count` records.
    fn params(self, shape: &RestShape, count: u32) -> String {
        match self {
            Self::Page(n) => format!("{}={n}&{}={count}", shape.page_param, shape.size_param),
            Self::Offset(o) => format!("{}={o}&{}={count}", shape.offset_param, shape.size_param),
        }
    }

    /// How page keys name it: `page=2`, `offset=100`.
    fn label(self) -> String {
        match self {
            Self::Page(n) => format!("page={n}"),
            Self::Offset(o) => format!("offset={o}"),
        }
    }
}

impl Run<'_> {
    /// Why a REST listing ends at the page `key` that brought no new records,
    /// `received` records in: the end when all declared records (or, without a
    /// total, every record the API serves) were read; else the run stops.
    pub(super) fn repeat_end(key: &str, received: u64, declared: Option<u64>) -> Result<(), Stop> {
        match declared {
            Some(d) if received < d => Err(Stop::Abort(
                ErrorClass::Other,
                format!(
                    "{key} brought no new records (it repeats records already read) \
                     after {received} of {d} declared records: the API answers past \
                     its end with records already read, so the rest cannot be located"
                ),
            )),
            _ => Ok(()),
        }
    }

    /// Pages by number (from `page_start`) or by offset (advanced by the
    /// records received). A lost page is skipped by the page size the server
    /// serves (its first page shows a cap) when the declared total still
    /// locates the pages after it; else the run stops.
    pub(super) async fn page_by_position(
        &mut self,
        shape: &RestShape,
        count: u32,
    ) -> Result<Result<(), Stop>, SyncError> {
        let name = shape.path.as_str();
        let et = shape.entity_type;
        let offsets = self.spec.paging == Paging::Offset;
        let at = |page_no: u64, received: u64| match offsets {
            true => Position::Offset(received),
            false => Position::Page(page_no),
        };
        let mut page_no: u64 = shape.page_start;
        let mut received: u64 = 0;
        let mut served = u64::from(count);
        let mut declared: Option<u64> = None;
        for page_index in 0..PAGES_MAX {
            let pos = at(page_no, received);
            let key = format!("{name}:{}", pos.label());
            let query = shape.query_with(&pos.params(shape, count));
            let mut req = self.page_req(name, &query, key.clone(), et);
            (req.page_index, req.offset, req.count) = (page_index, Some(received), count);
            page_no += 1;
            match self.fetch_page(req).await? {
                Ok(page) => {
                    if page.total_results.is_some() && declared.is_none() {
                        self.add_declared(page.total_results);
                    }
                    declared = page.total_results.or(declared);
                    if page.items.is_empty() {
                        // An empty page is the end itself: no probe needed.
                        return Ok(Ok(()));
                    }
                    if self.repeated {
                        return Ok(Self::repeat_end(&key, received, declared));
                    }
                    let n = page.items.len() as u64;
                    if page_index == 0 && n < served {
                        served = n;
                    }
                    received += n;
                    if declared.is_some_and(|d| received >= d) {
                        break;
                    }
                }
                Err(stop) => {
                    received += served;
                    match Self::after_lost_page(
                        stop,
                        declared,
                        received,
                        self.ctx.cancel.is_cancelled(),
                    ) {
                        Flow::Next => {}
                        Flow::End => break,
                        Flow::Stop(s) => return Ok(Err(s)),
                    }
                }
            }
        }
        let pos = at(page_no, received);
        let query = shape.query_with(&pos.params(shape, count));
        let mut req = self.page_req(name, &query, format!("{name}:probe {}", pos.label()), et);
        (req.role, req.offset, req.count) = (PageRole::ProbePastEnd, Some(received), count);
        Ok(self.fetch_page(req).await?.map(|_| ()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repeated_page_ends_the_listing_or_stops_the_run() {
        assert!(Run::repeat_end("users:page=6", 250, None).is_ok());
        assert!(Run::repeat_end("users:page=4", 250, Some(250)).is_ok());
        assert!(Run::repeat_end("users:page=4", 260, Some(250)).is_ok());
        let Err(Stop::Abort(class, msg)) = Run::repeat_end("users:page=4", 250, Some(310)) else {
            panic!("a repeat before the declared end must stop the run");
        };
        assert_eq!(class, ErrorClass::Other);
        assert_eq!(
            msg,
            "users:page=4 brought no new records (it repeats records already read) after 250 \
             of 310 declared records: the API answers past its end with records already read, \
             so the rest cannot be located"
        );
    }

    #[test]
    fn positions_name_their_parameters() {
        let shape = RestShape {
            path: "users".into(),
            entity_type: govledger_proto::v1::EntityType::User,
            items_pointer: String::new(),
            id_field: "id".into(),
            active_field: None,
            active_words: Default::default(),
            label_field: None,
            total_pointer: None,
            total_header: None,
            next_pointer: None,
            cursor_pointer: None,
            page_param: "pageNumber".into(),
            size_param: "limit".into(),
            offset_param: "skip".into(),
            cursor_param: "cursor".into(),
            page_start: 0,
            query: Vec::new(),
            headers: Vec::new(),
        };
        assert_eq!(
            Position::Page(0).params(&shape, 50),
            "pageNumber=0&limit=50"
        );
        assert_eq!(
            Position::Offset(150).params(&shape, 50),
            "skip=150&limit=50"
        );
        assert_eq!(Position::Offset(150).label(), "offset=150");
    }
}
