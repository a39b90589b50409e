//! A source probed without writing anything (`govledger config check
//! --live`): the first page of each collection, asked for one record, read
//! with the source's own auth and parsed as a sync would parse it. Says
//! whether the credentials are accepted, whether the answer parses, and the
//! total the source declares (if it declares one). No event is published.

use govledger_proto::v1::ErrorClass;

use crate::{
    http::HttpSource,
    rest, scim,
    sync::{Paging, SyncSpec},
};

/// What one collection's first page showed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probed {
    /// The collection (`Users`, `Groups`, or the REST path).
    pub collection: String,
    /// What went wrong, if anything: an error class and a secret-free sentence.
    pub problem: Option<(ErrorClass, String)>,
    pub http_status: u16,
    /// Records on the page (one asked for).
    pub items: usize,
    /// The total the source declared, if it declares one.
    pub declared_total: Option<u64>,
}

/// The first page of every collection of `spec`, one record asked for.
pub async fn probe(spec: &SyncSpec, http: &HttpSource) -> Vec<Probed> {
    let base = spec.base_url.trim_end_matches('/');
    let mut out = Vec::new();
    match &spec.rest {
        None => {
            for r in &spec.resources {
                let query = match spec.paging {
                    Paging::Cursor => "cursor=&count=1".to_owned(),
                    _ => "startIndex=1&count=1".to_owned(),
                };
                let url = format!("{base}/{}?{query}", r.endpoint);
                let got = http.get(&url).await;
                out.push(judge(&r.endpoint, got, |f| {
                    scim::parse_list(&f.body, r.entity_type, "probe")
                }));
            }
        }
        Some(shape) => {
            let query = match spec.paging {
                Paging::PageNumber => format!(
                    "{}={}&{}=1",
                    shape.page_param, shape.page_start, shape.size_param
                ),
                Paging::Offset => format!("{}=0&{}=1", shape.offset_param, shape.size_param),
                _ => format!("{}=1", shape.size_param),
            };
            let url = format!(
                "{base}/{}?{}",
                shape.path.trim_start_matches('/'),
                shape.query_with(&query)
            );
            let got = http.get(&url).await;
            out.push(judge(&shape.path, got, |f| {
                rest::parse_fetched(f, &url, shape, "probe")
            }));
        }
    }
    out
}

fn judge(
    collection: &str,
    got: Result<crate::http::Fetched, crate::retry::Failure>,
    parse: impl FnOnce(&crate::http::Fetched) -> Result<scim::ListPage, scim::ParseError>,
) -> Probed {
    let mut p = Probed {
        collection: collection.to_owned(),
        problem: None,
        http_status: 0,
        items: 0,
        declared_total: None,
    };
    match got {
        Err(f) => {
            p.http_status = f.http_status;
            p.problem = Some((f.class, f.message));
        }
        Ok(f) => {
            p.http_status = f.status;
            match parse(&f) {
                Ok(page) => {
                    p.items = page.items.len();
                    p.declared_total = page.total_results;
                }
                Err(e) => p.problem = Some((ErrorClass::Parse, e.to_string())),
            }
        }
    }
    p
}
