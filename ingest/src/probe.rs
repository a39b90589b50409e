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
    if let Some(l) = &spec.ldap {
        return probe_ldap(l).await;
    }
    if let Some(f) = &spec.file {
        let f = f.clone();
        let r = tokio::task::spawn_blocking(move || probe_file(&f)).await;
        return vec![r.unwrap_or_else(|e| Probed {
            collection: "file".into(),
            problem: Some((ErrorClass::Other, e.to_string())),
            http_status: 0,
            items: 0,
            declared_total: None,
        })];
    }
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

/// A directory: bind, then one entry of each search asked for.
async fn probe_ldap(spec: &crate::ldap::LdapSpec) -> Vec<Probed> {
    let mut out = Vec::new();
    let queries = [&spec.users, &spec.groups];
    let mut conn = match crate::ldap::connect(spec).await {
        Ok(c) => c,
        Err(f) => {
            return vec![Probed {
                collection: spec.shown_url(),
                problem: Some((f.class, f.message)),
                http_status: 0,
                items: 0,
                declared_total: None,
            }];
        }
    };
    for q in queries.into_iter().flatten() {
        let mut p = Probed {
            collection: q.base_dn.clone(),
            problem: None,
            http_status: 0,
            items: 0,
            declared_total: None,
        };
        let r = conn
            .with_controls(ldap3::controls::PagedResults {
                size: 1,
                cookie: Vec::new(),
            })
            .search(
                &q.base_dn,
                crate::ldap::scope(q),
                &q.filter,
                vec![spec.id_attribute.clone()],
            )
            .await;
        match r {
            Ok(ldap3::SearchResult(entries, res)) if res.rc == 0 || res.rc == 4 => {
                p.items = entries.len();
            }
            Ok(ldap3::SearchResult(_, res)) => {
                p.problem = Some((
                    crate::ldap::classify(res.rc),
                    crate::ldap::rc_text(res.rc, &res.text),
                ));
            }
            Err(e) => {
                let f = crate::ldap::client_failure(&e, spec);
                p.problem = Some((f.class, f.message));
            }
        }
        out.push(p);
    }
    out
}

/// An HR drop folder: the file a run would read, parsed.
fn probe_file(spec: &crate::hrfile::FileSpec) -> Probed {
    let mut p = Probed {
        collection: spec.dir.join(&spec.pattern).display().to_string(),
        problem: None,
        http_status: 0,
        items: 0,
        declared_total: None,
    };
    match crate::hrfile::read_newest(spec) {
        Err((class, why)) => p.problem = Some((class, why)),
        Ok(n) => {
            p.collection = n.path.display().to_string();
            p.items = usize::try_from(n.parsed.data_rows).unwrap_or(usize::MAX);
            p.declared_total = n.side_count.or(n.parsed.declared.map(|(c, _)| c));
            if let Some(t) = n.parsed.truncated {
                p.problem = Some((ErrorClass::Limit, t));
            }
        }
    }
    p
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
