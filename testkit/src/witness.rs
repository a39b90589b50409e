//! A transparency-log witness speaking c2sp.org/tlog-witness `add-checkpoint`
//! over HTTP, in process, on its own port: it verifies the log's signature
//! with the log's verifier key, checks the old size against the last size it
//! cosigned (409 Conflict with that size, `text/x.tlog.size`, else), checks
//! the consistency proof (422 when it does not hold), records the new
//! checkpoint atomically and answers its `cosignature/v1` line. Unknown
//! origins get 404, unsigned notes 403, an old size past the new one 400.

use std::sync::{Arc, Mutex};

use axum::{
    Router,
    extract::State,
    http::{StatusCode, header},
    response::{IntoResponse, Response},
    routing::post,
};
use base64::{Engine as _, engine::general_purpose::STANDARD};
use ed25519_dalek::SigningKey;
use govledger::audit::note;
use govledger_projector::merkle;

struct Inner {
    name: String,
    key: SigningKey,
    log_vkey: String,
    /// The latest checkpoint it cosigned: size and root.
    latest: Mutex<Option<(u64, [u8; 32])>>,
    /// Requests whose consistency proof it checked (non-empty).
    proofs_checked: Mutex<u64>,
}

/// A running witness (stopped when dropped).
pub struct Witness {
    pub url: String,
    /// Its verifier key (`name+id+base64`), for `[[audit.witnesses]]`.
    pub key: String,
    inner: Arc<Inner>,
    task: tokio::task::JoinHandle<()>,
}

impl Witness {
    /// Starts a witness named `name` that trusts the log verifier key `log_vkey`.
    pub async fn start(name: &str, log_vkey: &str) -> Self {
        let key = SigningKey::from_bytes(&[0x5a; 32]);
        let inner = Arc::new(Inner {
            name: name.to_owned(),
            key: key.clone(),
            log_vkey: log_vkey.to_owned(),
            latest: Mutex::new(None),
            proofs_checked: Mutex::new(0),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let app = Router::new()
            .route("/add-checkpoint", post(add_checkpoint))
            .with_state(inner.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self {
            url,
            key: note::witness_key(name, &key.verifying_key()),
            inner,
            task,
        }
    }

    /// The size of the latest checkpoint it cosigned.
    pub fn latest_size(&self) -> Option<u64> {
        self.inner.latest.lock().unwrap().map(|(s, _)| s)
    }

    /// How many non-empty consistency proofs it checked.
    pub fn proofs_checked(&self) -> u64 {
        *self.inner.proofs_checked.lock().unwrap()
    }
}

impl Drop for Witness {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn answer(code: StatusCode, text: String) -> Response {
    (code, text).into_response()
}

async fn add_checkpoint(State(w): State<Arc<Inner>>, body: String) -> Response {
    let Some((head, cp)) = body.split_once("\n\n") else {
        return answer(StatusCode::BAD_REQUEST, "no blank line\n".into());
    };
    let mut lines = head.split('\n');
    let Some(old) = lines
        .next()
        .and_then(|l| l.strip_prefix("old "))
        .and_then(|n| n.parse::<u64>().ok())
    else {
        return answer(StatusCode::BAD_REQUEST, "no old size line\n".into());
    };
    let mut proof = Vec::new();
    for l in lines {
        match STANDARD
            .decode(l)
            .ok()
            .and_then(|v| merkle::Hash::try_from(v).ok())
        {
            Some(h) => proof.push(h),
            None => return answer(StatusCode::BAD_REQUEST, format!("bad proof line {l:?}\n")),
        }
    }
    let origin = cp.lines().next().unwrap_or_default();
    if !w.log_vkey.starts_with(&format!("{origin}+")) {
        return answer(StatusCode::NOT_FOUND, "unknown origin\n".into());
    }
    let opened = match note::open(cp, &w.log_vkey, &[]) {
        Ok(o) => o,
        Err(e) => return answer(StatusCode::FORBIDDEN, format!("{e}\n")),
    };
    if old > opened.size {
        return answer(
            StatusCode::BAD_REQUEST,
            "old size past the checkpoint\n".into(),
        );
    }
    // Checked and recorded under one lock (the spec's atomicity).
    let mut latest = w.latest.lock().unwrap();
    let (have, have_root) = latest.unwrap_or((0, [0; 32]));
    if old != have {
        return (
            StatusCode::CONFLICT,
            [(header::CONTENT_TYPE, "text/x.tlog.size")],
            format!("{have}\n"),
        )
            .into_response();
    }
    if old == 0 && !proof.is_empty() {
        return answer(
            StatusCode::UNPROCESSABLE_ENTITY,
            "a proof from size 0\n".into(),
        );
    }
    if old > 0 {
        if !merkle::verify_consistency(old, opened.size, &have_root, &opened.root, &proof) {
            return answer(
                StatusCode::UNPROCESSABLE_ENTITY,
                "the consistency proof fails\n".into(),
            );
        }
        if old == opened.size && have_root != opened.root {
            return answer(StatusCode::CONFLICT, "same size, another root\n".into());
        }
        if !proof.is_empty() {
            *w.proofs_checked.lock().unwrap() += 1;
        }
    }
    *latest = Some((opened.size, opened.root));
    drop(latest);
    let time = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    match note::cosign(cp, &w.name, &w.key, time) {
        // The cosigned note is the note plus one line: answer that line.
        Ok(cosigned) => answer(StatusCode::OK, cosigned[cp.len()..].to_owned()),
        Err(e) => answer(StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")),
    }
}
