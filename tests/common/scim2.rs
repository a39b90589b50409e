//! The real third-party SCIM server (PyPI `scim2-server`, pinned by
//! `scripts/install-tools.sh`) for tests: one in-memory server per test on its
//! own port, killed on drop, plus fast seeding through the Bulk endpoint and a
//! bare paginated reader that is the baseline the ledger's sync is measured
//! against.
//!
//! What the server does that a SCIM client must cope with (0.8.3, checked by
//! hand and partly by `tests/scim2_selftest.rs`):
//! - HTTP/1.0 answers, one connection per request; a threaded WSGI server in
//!   one Python process, so concurrency does not add throughput.
//! - List: `count` above 1000 (`filter.maxResults`) is cut to 1000 without an
//!   error, no `count` means 1000, `count=0` gives only `totalResults`, a
//!   negative `count` counts as 0, `startIndex` below 1 counts as 1, and a
//!   `startIndex` past the end gives an empty page (`itemsPerPage` 0, an empty
//!   `Resources`). Pages are ordered by `id`, a random 32-hex string, so
//!   resources created during a paginated read land at random offsets.
//! - `meta.version` is a weak ETag `W/"N"` drawn from one server-wide counter
//!   (Users and Groups share it); a write that changes nothing keeps it.
//! - PATCH answers 204 with no body (the new version is in the `ETag` header);
//!   PUT answers 200 with the resource.
//! - Group `members` are kept as sent: `[{"value": id}]` stays that (the
//!   server adds no `$ref`, `type` or `display`; it echoes them if a client
//!   sent them). Member ids are not checked, deleting a user leaves it in its
//!   groups (the group's version does not move), and users carry no `groups`
//!   attribute.
//! - Bulk: `maxOperations` 1000 and `maxPayloadSize` 1 MiB (413 past either);
//!   each result has `status` (a string), `location` and `version`, no
//!   `response` body on success, so ids come from `location`.
//! - Request bodies must be `application/scim+json` or `application/json`
//!   (415 otherwise). With `--bearer-token`, discovery endpoints
//!   (`/ServiceProviderConfig`) stay open; the rest answer 401.

use std::{
    collections::HashMap,
    io::{Read as _, Write as _},
    net::TcpStream,
    os::unix::process::CommandExt as _,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

const USER_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
const GROUP_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
const PATCH_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
const BULK_REQUEST_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:BulkRequest";
const SCIM_JSON: &str = "application/scim+json";

/// The `scim2-server` console script: `GOVLEDGER_SCIM2_SERVER`, else the
/// project's pinned install in `.tools/venv`.
pub fn scim2_server_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("GOVLEDGER_SCIM2_SERVER") {
        return PathBuf::from(p);
    }
    let local = Path::new(env!("CARGO_MANIFEST_DIR")).join(".tools/venv/bin/scim2-server");
    if local.is_file() {
        return local;
    }
    panic!(
        "no scim2-server at {}: run scripts/install-tools.sh (installs the pinned one into .tools/)",
        local.display()
    );
}

/// A real `scim2-server` owned by one test; dropping it kills the process.
pub struct Scim2Server {
    /// `http://127.0.0.1:PORT/v2`
    pub base_url: String,
    pub port: u16,
    /// The bearer token the server demands, if any.
    pub token: Option<String>,
    child: Option<Child>,
    dir: tempfile::TempDir,
}

impl Scim2Server {
    /// Starts an open server (no authentication) on a free port.
    pub fn start() -> Self {
        Self::spawn(None)
    }

    /// Starts a server that demands `Authorization: Bearer TOKEN`.
    pub fn start_with_token(token: &str) -> Self {
        Self::spawn(Some(token.to_owned()))
    }

    fn spawn(token: Option<String>) -> Self {
        let bin = scim2_server_bin();
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("scim2-server.log");
        // A free port can be taken between the probe and the bind: retry.
        for _ in 0..5 {
            let port = super::free_port();
            let out = std::fs::File::create(&log).unwrap();
            let mut cmd = Command::new(&bin);
            cmd.args(["--hostname", "127.0.0.1", "--port", &port.to_string()]);
            if let Some(t) = &token {
                cmd.args(["--bearer-token", t]);
            }
            // The server dies with the test even when the test is SIGKILLed
            // (strictly: with the spawning thread, so start it from the test's
            // own thread, not from a short-lived `spawn_blocking` one).
            // SAFETY: prctl is async-signal-safe and touches no shared state.
            unsafe {
                cmd.pre_exec(|| {
                    nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)
                        .map_err(std::io::Error::from)
                });
            }
            let mut child = cmd
                .env("PYTHONUNBUFFERED", "1")
                .stdin(Stdio::null())
                .stdout(out.try_clone().unwrap())
                .stderr(out)
                .spawn()
                .unwrap_or_else(|e| {
                    panic!(
                        "cannot start {}: {e} (run scripts/install-tools.sh)",
                        bin.display()
                    )
                });
            match wait_ready(&mut child, port, Duration::from_secs(20)) {
                Ok(()) => {
                    return Self {
                        base_url: format!("http://127.0.0.1:{port}/v2"),
                        port,
                        token,
                        child: Some(child),
                        dir,
                    };
                }
                Err(exited) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    let text = std::fs::read_to_string(&log).unwrap_or_default();
                    if exited && text.contains("Address already in use") {
                        continue;
                    }
                    panic!("scim2-server did not come up on port {port}; log:\n{text}");
                }
            }
        }
        panic!("scim2-server: no free port after 5 tries");
    }

    /// What the server printed (its request log and errors).
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("scim2-server.log")).unwrap_or_default()
    }

    /// SIGKILL and wait; the server's data is gone (it keeps nothing on disk).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Sends `method path` (path under `/v2`) with this server's token and an
    /// optional SCIM JSON body; returns the status and the body (Null if empty).
    pub async fn request(&self, method: &str, path: &str, body: Option<Vec<u8>>) -> (u16, Value) {
        let resp = http_request(
            &self.base_url,
            self.token.as_deref(),
            method,
            path,
            body.as_deref(),
        )
        .await
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let v = if resp.body.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&resp.body).unwrap_or_else(|e| {
                panic!(
                    "{method} {path}: bad JSON ({e}): {}",
                    String::from_utf8_lossy(&resp.body)
                )
            })
        };
        (resp.status, v)
    }

    /// [`Self::request`], panicking unless the status is one of `ok`.
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<Vec<u8>>,
        ok: &[u16],
    ) -> (u16, Value) {
        let (status, v) = self.request(method, path, body).await;
        assert!(ok.contains(&status), "{method} {path}: HTTP {status}: {v}");
        (status, v)
    }

    /// GET `path` (under `/v2`), expecting 200.
    pub async fn get(&self, path: &str) -> Value {
        self.call("GET", path, None, &[200]).await.1
    }

    /// `GET /Users/{id}`.
    pub async fn get_user(&self, id: &str) -> Value {
        self.get(&format!("/Users/{id}")).await
    }

    /// `GET /Groups/{id}`.
    pub async fn get_group(&self, id: &str) -> Value {
        self.get(&format!("/Groups/{id}")).await
    }

    /// The announced Bulk limits: (maxOperations, maxPayloadSize in bytes).
    pub async fn bulk_limits(&self) -> (usize, usize) {
        let spc = self.get("/ServiceProviderConfig").await;
        let bulk = &spc["bulk"];
        assert_eq!(bulk["supported"], json!(true), "bulk not supported: {spc}");
        (
            bulk["maxOperations"].as_u64().unwrap() as usize,
            bulk["maxPayloadSize"].as_u64().unwrap() as usize,
        )
    }

    /// Runs POST operations (each `{"method","path","bulkId","data"}`) through
    /// `/Bulk` in as few requests as the announced limits allow, and returns
    /// the created ids in the order of `ops`.
    async fn bulk_create(&self, ops: Vec<Value>) -> Vec<String> {
        let (max_ops, max_bytes) = self.bulk_limits().await;
        let head =
            format!(r#"{{"schemas":["{BULK_REQUEST_SCHEMA}"],"failOnErrors":1,"Operations":["#);
        let tail = "]}";
        // A request body stays 1 KiB under the announced size.
        let limit = max_bytes.saturating_sub(tail.len() + 1024);
        let encoded: Vec<(String, String)> = ops
            .iter()
            .map(|op| {
                (
                    op["bulkId"].as_str().unwrap().to_owned(),
                    serde_json::to_string(op).unwrap(),
                )
            })
            .collect();
        let mut ids = HashMap::with_capacity(encoded.len());
        let mut i = 0;
        while i < encoded.len() {
            let mut body = head.clone();
            let mut n = 0;
            while i + n < encoded.len() && n < max_ops {
                let op = &encoded[i + n].1;
                if n > 0 && body.len() + 1 + op.len() > limit {
                    break;
                }
                if n > 0 {
                    body.push(',');
                }
                body.push_str(op);
                n += 1;
            }
            body.push_str(tail);
            let (_, resp) = self
                .call("POST", "/Bulk", Some(body.into_bytes()), &[200])
                .await;
            let results = resp["Operations"]
                .as_array()
                .expect("BulkResponse without Operations");
            assert_eq!(
                results.len(),
                n,
                "bulk answered {} of {n} operations",
                results.len()
            );
            for r in results {
                let status = match &r["status"] {
                    Value::String(s) => s.parse::<u16>().unwrap_or(0),
                    Value::Number(x) => x.as_u64().unwrap_or(0) as u16,
                    _ => 0,
                };
                assert_eq!(status, 201, "bulk operation failed: {r}");
                let location = r["location"]
                    .as_str()
                    .expect("bulk result without location");
                let id = location.rsplit('/').next().unwrap().to_owned();
                ids.insert(r["bulkId"].as_str().unwrap().to_owned(), id);
            }
            i += n;
        }
        encoded
            .iter()
            .map(|(bulk_id, _)| ids.remove(bulk_id).expect("bulkId missing from the answer"))
            .collect()
    }

    /// Creates users `user{i}@example.test` (i in 0..n), active, through
    /// `/Bulk`; returns their server-assigned ids in order of i.
    pub async fn seed_users(&self, n: usize) -> Vec<String> {
        let ops = (0..n)
            .map(|i| {
                json!({
                    "method": "POST",
                    "path": "/Users",
                    "bulkId": format!("u{i}"),
                    "data": {
                        "schemas": [USER_SCHEMA],
                        "userName": format!("user{i}@example.test"),
                        "active": true,
                    },
                })
            })
            .collect();
        self.bulk_create(ops).await
    }

    /// Creates groups `group{g}` (g in 0..n), group g holding the
    /// `members_per_group` users that follow `user_ids[g * members_per_group]`
    /// (wrapping around); returns the group ids in order of g.
    pub async fn seed_groups(
        &self,
        n: usize,
        members_per_group: usize,
        user_ids: &[String],
    ) -> Vec<String> {
        assert!(
            members_per_group == 0 || !user_ids.is_empty(),
            "members wanted but no user ids given"
        );
        let ops = (0..n)
            .map(|g| {
                let members: Vec<Value> = (0..members_per_group)
                    .map(|j| json!({ "value": user_ids[(g * members_per_group + j) % user_ids.len()] }))
                    .collect();
                json!({
                    "method": "POST",
                    "path": "/Groups",
                    "bulkId": format!("g{g}"),
                    "data": {
                        "schemas": [GROUP_SCHEMA],
                        "displayName": format!("group{g}"),
                        "members": members,
                    },
                })
            })
            .collect();
        self.bulk_create(ops).await
    }

    /// Creates one user; returns its id.
    pub async fn create_user(&self, user_name: &str, active: bool) -> String {
        let body = json!({ "schemas": [USER_SCHEMA], "userName": user_name, "active": active });
        let (_, v) = self
            .call(
                "POST",
                "/Users",
                Some(serde_json::to_vec(&body).unwrap()),
                &[201],
            )
            .await;
        v["id"].as_str().unwrap().to_owned()
    }

    /// `DELETE /Users/{id}`, expecting 204.
    pub async fn delete_user(&self, id: &str) {
        self.call("DELETE", &format!("/Users/{id}"), None, &[204])
            .await;
    }

    /// `PATCH /Users/{id}` replacing `active`.
    pub async fn set_active(&self, id: &str, active: bool) {
        let body = json!({
            "schemas": [PATCH_SCHEMA],
            "Operations": [{ "op": "replace", "path": "active", "value": active }],
        });
        self.call(
            "PATCH",
            &format!("/Users/{id}"),
            Some(serde_json::to_vec(&body).unwrap()),
            &[200, 204],
        )
        .await;
    }

    /// `PATCH /Groups/{id}` adding and removing members by user id.
    pub async fn patch_members(&self, group_id: &str, add: &[String], remove: &[String]) {
        let mut ops: Vec<Value> = remove
            .iter()
            .map(|id| json!({ "op": "remove", "path": format!("members[value eq \"{id}\"]") }))
            .collect();
        if !add.is_empty() {
            let members: Vec<Value> = add.iter().map(|id| json!({ "value": id })).collect();
            ops.push(json!({ "op": "add", "path": "members", "value": members }));
        }
        let body = json!({ "schemas": [PATCH_SCHEMA], "Operations": ops });
        self.call(
            "PATCH",
            &format!("/Groups/{group_id}"),
            Some(serde_json::to_vec(&body).unwrap()),
            &[200, 204],
        )
        .await;
    }

    /// `GET /Users?count=0` → `totalResults`.
    pub async fn count_users(&self) -> u64 {
        self.total("Users").await
    }

    /// `GET /Groups?count=0` → `totalResults`.
    pub async fn count_groups(&self) -> u64 {
        self.total("Groups").await
    }

    async fn total(&self, resource: &str) -> u64 {
        let v = self.get(&format!("/{resource}?count=0")).await;
        v["totalResults"]
            .as_u64()
            .unwrap_or_else(|| panic!("no totalResults: {v}"))
    }

    /// Every id of `resource` (`Users`, `Groups`), read page by page.
    pub async fn paginated_ids(&self, resource: &str, page_size: usize) -> (Vec<String>, Duration) {
        paginated_ids_auth(&self.base_url, self.token.as_deref(), resource, page_size).await
    }
}

impl Drop for Scim2Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Waits until `GET /v2/ServiceProviderConfig` answers (any HTTP status).
/// `Err(true)` when the process exited first, `Err(false)` on timeout.
fn wait_ready(child: &mut Child, port: u16, timeout: Duration) -> Result<(), bool> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return Err(true);
        }
        if probe(port) {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    Err(false)
}

/// One HTTP/1.0 GET of the discovery document over a plain socket (this runs
/// before and outside any async runtime the test has).
fn probe(port: u16) -> bool {
    let Ok(mut s) =
        TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(200))
    else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let req = format!(
        "GET /v2/ServiceProviderConfig HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\nAccept: {SCIM_JSON}\r\n\r\n"
    );
    if s.write_all(req.as_bytes()).is_err() {
        return false;
    }
    let mut buf = [0u8; 16];
    let mut got = 0;
    while got < buf.len() {
        match s.read(&mut buf[got..]) {
            Ok(0) | Err(_) => break,
            Ok(k) => got += k,
        }
    }
    buf[..got].starts_with(b"HTTP/")
}

/// Reads every page of `{base_url}/{resource}` with `startIndex`/`count`,
/// handing each resource to `each`; returns the number read and the time.
/// Advances by what each page really held (the server cuts `count` to its
/// maximum) and stops on an empty page or at `totalResults`.
async fn read_pages(
    base_url: &str,
    token: Option<&str>,
    resource: &str,
    page_size: usize,
    mut each: impl FnMut(&Value),
) -> (usize, Duration) {
    let t0 = Instant::now();
    let mut start = 1usize;
    let mut read = 0usize;
    loop {
        let path = format!("/{resource}?startIndex={start}&count={page_size}");
        let resp = http_request(base_url, token, "GET", &path, None)
            .await
            .unwrap_or_else(|e| panic!("GET {base_url}{path}: {e}"));
        assert!(
            resp.status == 200,
            "GET {base_url}{path}: HTTP {}: {}",
            resp.status,
            String::from_utf8_lossy(&resp.body)
        );
        let bytes = resp.body;
        let page: Value = serde_json::from_slice(&bytes).unwrap();
        let total = page["totalResults"].as_u64().expect("no totalResults") as usize;
        let resources = page["Resources"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        resources.iter().for_each(&mut each);
        read += resources.len();
        if resources.is_empty() || start - 1 + resources.len() >= total {
            break;
        }
        start += resources.len();
    }
    (read, t0.elapsed())
}

/// The no-ledger baseline: GET + JSON parse of every page of
/// `{base_url}/{resource}` (e.g. `Users`) by `startIndex`/`count`.
/// Returns (records read, wall time).
pub async fn bare_paginated_read(
    base_url: &str,
    resource: &str,
    page_size: usize,
) -> (usize, Duration) {
    bare_paginated_read_auth(base_url, None, resource, page_size).await
}

/// [`bare_paginated_read`] with an optional bearer token.
pub async fn bare_paginated_read_auth(
    base_url: &str,
    token: Option<&str>,
    resource: &str,
    page_size: usize,
) -> (usize, Duration) {
    read_pages(base_url, token, resource, page_size, |_| {}).await
}

/// The same read as [`bare_paginated_read`], keeping each resource's `id`.
pub async fn paginated_ids_auth(
    base_url: &str,
    token: Option<&str>,
    resource: &str,
    page_size: usize,
) -> (Vec<String>, Duration) {
    let mut ids = Vec::new();
    let (_, took) = read_pages(base_url, token, resource, page_size, |r| {
        ids.push(r["id"].as_str().expect("resource without id").to_owned());
    })
    .await;
    (ids, took)
}

/// One answer of [`http_request`].
#[derive(Debug)]
pub struct HttpResponse {
    pub status: u16,
    /// Header names in lower case.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// The first value of header `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A minimal HTTP client for `scim2-server`, which answers HTTP/1.0 and closes
/// every connection: one request per TCP connection, `Connection: close`,
/// the answer read to EOF. `base_url` is `http://HOST:PORT/PREFIX` (no TLS);
/// `path` goes after it. Bodies are sent as `application/scim+json`.
///
/// (Plain tokio rather than reqwest: reqwest's TLS features are unified
/// across the workspace, and with `rustls-no-provider` a `Client` cannot even
/// be built for plain HTTP without a crypto provider installed.)
pub async fn http_request(
    base_url: &str,
    token: Option<&str>,
    method: &str,
    path: &str,
    body: Option<&[u8]>,
) -> std::io::Result<HttpResponse> {
    let bad = |m: String| std::io::Error::new(std::io::ErrorKind::InvalidData, m);
    let rest = base_url
        .strip_prefix("http://")
        .ok_or_else(|| bad(format!("not an http:// URL: {base_url}")))?;
    let (host, prefix) = match rest.find('/') {
        Some(i) => (&rest[..i], rest[i..].trim_end_matches('/')),
        None => (rest, ""),
    };
    let mut head = format!(
        "{method} {prefix}{path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nAccept: {SCIM_JSON}\r\n"
    );
    if let Some(t) = token {
        head.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    if let Some(b) = body {
        head.push_str(&format!(
            "Content-Type: {SCIM_JSON}\r\nContent-Length: {}\r\n",
            b.len()
        ));
    }
    head.push_str("\r\n");
    let exchange = async {
        let mut s = tokio::net::TcpStream::connect(host).await?;
        s.set_nodelay(true)?;
        let mut out = head.into_bytes();
        if let Some(b) = body {
            out.extend_from_slice(b);
        }
        s.write_all(&out).await?;
        let mut raw = Vec::with_capacity(64 * 1024);
        s.read_to_end(&mut raw).await?;
        Ok::<_, std::io::Error>(raw)
    };
    let raw = tokio::time::timeout(Duration::from_secs(120), exchange)
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "no answer in 120 s"))??;
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| bad(format!("no header end in {} bytes", raw.len())))?;
    let head = std::str::from_utf8(&raw[..end]).map_err(|e| bad(e.to_string()))?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse::<u16>().ok())
        .ok_or_else(|| bad(format!("bad status line {status_line:?}")))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let mut resp = HttpResponse {
        status,
        headers,
        body: raw[end + 4..].to_vec(),
    };
    if resp
        .header("transfer-encoding")
        .is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
    {
        return Err(bad("chunked answers are not supported".into()));
    }
    if let Some(len) = resp
        .header("content-length")
        .and_then(|v| v.parse::<usize>().ok())
    {
        if resp.body.len() < len {
            return Err(bad(format!(
                "short body: {} of {len} bytes",
                resp.body.len()
            )));
        }
        resp.body.truncate(len);
    }
    Ok(resp)
}
