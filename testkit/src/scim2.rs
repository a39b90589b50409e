//! The real third-party SCIM server (PyPI `scim2-server`, pinned by
//! `scripts/install-tools.sh`) for tests and the benchmark: one in-memory
//! server per test on its own port, killed on drop, plus fast seeding through
//! the Bulk endpoint and a bare paginated reader that is the baseline the
//! ledger's sync is measured against. Requests go through `reqwest`.
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
    os::unix::process::CommandExt as _,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use serde_json::{Value, json};

use crate::{
    Error,
    net::{self, PortWait},
};

const USER_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
const GROUP_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
const PATCH_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
const BULK_REQUEST_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:BulkRequest";
const SCIM_JSON: &str = "application/scim+json";
/// How many free ports a start tries ("Address already in use" retries).
const START_TRIES: usize = 5;
/// How long the server may take to accept connections.
const READY_TIMEOUT_MS: u64 = 20_000;
/// How long one request may take.
const REQUEST_TIMEOUT_MS: u64 = 120_000;

/// The `scim2-server` console script: `GOVLEDGER_SCIM2_SERVER`, else the
/// project's pinned install in `.tools/venv`.
pub fn scim2_server_bin() -> Result<PathBuf, Error> {
    if let Some(p) = std::env::var_os("GOVLEDGER_SCIM2_SERVER") {
        return Ok(PathBuf::from(p));
    }
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let root = manifest.parent().unwrap_or(manifest);
    let local = root.join(".tools/venv/bin/scim2-server");
    if local.is_file() {
        return Ok(local);
    }
    Err(Error::Failed(format!(
        "no scim2-server at {}: run scripts/install-tools.sh (installs the pinned one into .tools/)",
        local.display()
    )))
}

/// A plain-HTTP client for `scim2-server` (HTTP/1.0, one connection per
/// request, so nothing is pooled).
fn http_client() -> Result<reqwest::Client, Error> {
    // reqwest is built with `rustls-no-provider`: even a plain-HTTP client
    // needs the process-wide crypto provider installed first.
    govledger_ingest::http::install_crypto_provider();
    reqwest::Client::builder()
        .timeout(Duration::from_millis(REQUEST_TIMEOUT_MS))
        .pool_max_idle_per_host(0)
        .build()
        .map_err(|source| Error::Http {
            what: "building an HTTP client".into(),
            source,
        })
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
    http: reqwest::Client,
}

impl Scim2Server {
    /// Starts an open server (no authentication) on a free port.
    pub fn start() -> Self {
        scim2_server_bin()
            .and_then(|bin| Self::try_start(&bin, None))
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// Starts a server that demands `Authorization: Bearer TOKEN`.
    pub fn start_with_token(token: &str) -> Self {
        scim2_server_bin()
            .and_then(|bin| Self::try_start(&bin, Some(token.to_owned())))
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// Starts an open server announcing (and applying) `filter.maxResults`
    /// = `max_results`: the server then serves at most that many resources
    /// per page, and says so in `/ServiceProviderConfig` (without RFC 9865's
    /// `pagination` block, as its default one).
    pub fn start_with_max_results(max_results: usize) -> Self {
        let spc = json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"],
            "patch": {"supported": true},
            "bulk": {"supported": true, "maxOperations": 1000, "maxPayloadSize": 1_048_576},
            "filter": {"supported": true, "maxResults": max_results},
            "changePassword": {"supported": true},
            "sort": {"supported": true},
            "etag": {"supported": true},
            "authenticationSchemes": [],
        });
        scim2_server_bin()
            .and_then(|bin| Self::try_start_with(&bin, None, Some(&spc)))
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// Starts `bin` (demanding `token` if given) on a free port and waits
    /// until it accepts connections. Blocking; call it from the thread that
    /// owns the server (see the `pdeathsig` note in `spawn`).
    pub fn try_start(bin: &Path, token: Option<String>) -> Result<Self, Error> {
        Self::try_start_with(bin, token, None)
    }

    /// [`Self::try_start`], announcing `spc` as its `/ServiceProviderConfig`
    /// (`--service-provider-config`) when given.
    pub fn try_start_with(
        bin: &Path,
        token: Option<String>,
        spc: Option<&Value>,
    ) -> Result<Self, Error> {
        let http = http_client()?;
        let dir = tempfile::Builder::new()
            .prefix("govledger-scim2-")
            .tempdir()
            .map_err(Error::io("creating the scim2-server folder"))?;
        let log = dir.path().join("scim2-server.log");
        let spc_file = match spc {
            Some(v) => {
                let f = dir.path().join("service-provider-config.json");
                std::fs::write(&f, v.to_string())
                    .map_err(Error::io(format!("writing {}", f.display())))?;
                Some(f)
            }
            None => None,
        };
        // A free port can be taken between the probe and the bind: retry.
        for _ in 0..START_TRIES {
            let port = net::try_free_port()?;
            let mut child = spawn(bin, port, token.as_deref(), spc_file.as_deref(), &log)?;
            let ready = net::wait_port(port, READY_TIMEOUT_MS, || {
                matches!(child.try_wait(), Ok(None))
            });
            if ready.is_ok() {
                return Ok(Self {
                    base_url: format!("http://127.0.0.1:{port}/v2"),
                    port,
                    token,
                    child: Some(child),
                    dir,
                    http,
                });
            }
            let _ = child.kill();
            let _ = child.wait();
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if ready == Err(PortWait::Exited) && text.contains("Address already in use") {
                continue;
            }
            return Err(Error::Failed(format!(
                "scim2-server did not come up on port {port}; log:\n{text}"
            )));
        }
        Err(Error::Failed(format!(
            "scim2-server: no free port after {START_TRIES} tries"
        )))
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
        self.try_request(method, path, body)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// [`Self::request`], returning errors instead of panicking.
    pub async fn try_request(
        &self,
        method: &str,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<(u16, Value), Error> {
        let resp = send(
            &self.http,
            &self.base_url,
            self.token.as_deref(),
            method,
            path,
            body,
        )
        .await?;
        let v = if resp.body.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&resp.body).map_err(|e| {
                Error::Failed(format!(
                    "{method} {path}: bad JSON ({e}): {}",
                    String::from_utf8_lossy(&resp.body)
                ))
            })?
        };
        Ok((resp.status, v))
    }

    /// [`Self::try_request`], failing unless the status is one of `ok`.
    async fn try_call(
        &self,
        method: &str,
        path: &str,
        body: Option<Vec<u8>>,
        ok: &[u16],
    ) -> Result<(u16, Value), Error> {
        let (status, v) = self.try_request(method, path, body).await?;
        if !ok.contains(&status) {
            return Err(Error::Failed(format!(
                "{method} {path}: HTTP {status}: {v}"
            )));
        }
        Ok((status, v))
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
        self.try_bulk_limits()
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    }

    async fn try_bulk_limits(&self) -> Result<(usize, usize), Error> {
        let (_, spc) = self
            .try_call("GET", "/ServiceProviderConfig", None, &[200])
            .await?;
        let bulk = &spc["bulk"];
        let limit = |key: &str| bulk[key].as_u64().and_then(|n| usize::try_from(n).ok());
        match (
            &bulk["supported"],
            limit("maxOperations"),
            limit("maxPayloadSize"),
        ) {
            (Value::Bool(true), Some(ops), Some(bytes)) => Ok((ops, bytes)),
            _ => Err(Error::Failed(format!("bulk not supported: {spc}"))),
        }
    }

    /// Runs POST operations (each `{"method","path","bulkId","data"}`) through
    /// `/Bulk` in as few requests as the announced limits allow, and returns
    /// the created ids in the order of `ops`.
    async fn bulk_create(&self, ops: Vec<Value>) -> Result<Vec<String>, Error> {
        let (max_ops, max_bytes) = self.try_bulk_limits().await?;
        let head =
            format!(r#"{{"schemas":["{BULK_REQUEST_SCHEMA}"],"failOnErrors":1,"Operations":["#);
        let tail = "]}";
        // A request body stays 1 KiB under the announced size.
        let limit = max_bytes.saturating_sub(tail.len() + 1024);
        let encoded: Vec<(String, String)> = ops
            .iter()
            .map(|op| {
                (
                    op["bulkId"].as_str().unwrap_or_default().to_owned(),
                    op.to_string(),
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
                .try_call("POST", "/Bulk", Some(body.into_bytes()), &[200])
                .await?;
            bulk_ids(&resp, n, &mut ids)?;
            i += n;
        }
        encoded
            .iter()
            .map(|(bulk_id, _)| {
                ids.remove(bulk_id).ok_or_else(|| {
                    Error::Failed(format!("bulkId {bulk_id} missing from the answer"))
                })
            })
            .collect()
    }

    /// [`Self::try_seed_users`], panicking on failure (for tests).
    pub async fn seed_users(&self, n: usize) -> Vec<String> {
        self.try_seed_users(n)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// Creates users `user{i}@example.test` (i in 0..n), active, through
    /// `/Bulk`; returns their server-assigned ids in order of i.
    pub async fn try_seed_users(&self, n: usize) -> Result<Vec<String>, Error> {
        let ops = (0..n)
            .map(|i| {
                let user = json!({
                    "schemas": [USER_SCHEMA],
                    "userName": format!("user{i}@example.test"),
                    "active": true,
                });
                bulk_post("/Users", format!("u{i}"), user)
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
                let group = json!({
                    "schemas": [GROUP_SCHEMA],
                    "displayName": format!("group{g}"),
                    "members": members,
                });
                bulk_post("/Groups", format!("g{g}"), group)
            })
            .collect();
        self.bulk_create(ops)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
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

/// Spawns `bin` on `port` (demanding `token` if given), its output into `log`.
#[allow(unsafe_code)]
fn spawn(
    bin: &Path,
    port: u16,
    token: Option<&str>,
    spc: Option<&Path>,
    log: &Path,
) -> Result<Child, Error> {
    let out =
        std::fs::File::create(log).map_err(Error::io(format!("creating {}", log.display())))?;
    let err = out
        .try_clone()
        .map_err(Error::io("cloning the log handle"))?;
    let mut cmd = Command::new(bin);
    cmd.args(["--hostname", "127.0.0.1", "--port", &port.to_string()]);
    if let Some(t) = token {
        cmd.args(["--bearer-token", t]);
    }
    if let Some(f) = spc {
        cmd.arg("--service-provider-config").arg(f);
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
    cmd.env("PYTHONUNBUFFERED", "1")
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .map_err(Error::io(format!(
            "cannot start {} (run scripts/install-tools.sh)",
            bin.display()
        )))
}

/// One Bulk operation creating `data` under `path`, answered under `bulk_id`.
fn bulk_post(path: &str, bulk_id: String, data: Value) -> Value {
    json!({"method": "POST", "path": path, "bulkId": bulk_id, "data": data})
}

/// Checks one BulkResponse holding `n` results and files each created id
/// (from its `location`) under its `bulkId`.
fn bulk_ids(resp: &Value, n: usize, ids: &mut HashMap<String, String>) -> Result<(), Error> {
    let results = resp["Operations"]
        .as_array()
        .ok_or_else(|| Error::Failed("BulkResponse without Operations".into()))?;
    if results.len() != n {
        return Err(Error::Failed(format!(
            "bulk answered {} of {n} operations",
            results.len()
        )));
    }
    for r in results {
        let status = match &r["status"] {
            Value::String(s) => s.parse::<u16>().unwrap_or(0),
            Value::Number(x) => x.as_u64().unwrap_or(0) as u16,
            _ => 0,
        };
        let id = r["location"]
            .as_str()
            .and_then(|l| l.rsplit('/').next())
            .filter(|id| !id.is_empty());
        match (status, id, r["bulkId"].as_str()) {
            (201, Some(id), Some(bulk_id)) => {
                ids.insert(bulk_id.to_owned(), id.to_owned());
            }
            _ => return Err(Error::Failed(format!("bulk operation failed: {r}"))),
        }
    }
    Ok(())
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
    let client = http_client().unwrap_or_else(|e| panic!("{e}"));
    let t0 = Instant::now();
    let mut start = 1usize;
    let mut read = 0usize;
    loop {
        let path = format!("/{resource}?startIndex={start}&count={page_size}");
        let resp = send(&client, base_url, token, "GET", &path, None)
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

/// One request to a `scim2-server` on a fresh client: `method base_url+path`
/// with an optional bearer token, `Accept` and (with a body) `Content-Type`
/// `application/scim+json`. `base_url` is `http://HOST:PORT/PREFIX`.
pub async fn http_request(
    base_url: &str,
    token: Option<&str>,
    method: &str,
    path: &str,
    body: Option<Vec<u8>>,
) -> Result<HttpResponse, Error> {
    send(&http_client()?, base_url, token, method, path, body).await
}

/// [`http_request`] on `client`.
async fn send(
    client: &reqwest::Client,
    base_url: &str,
    token: Option<&str>,
    method: &str,
    path: &str,
    body: Option<Vec<u8>>,
) -> Result<HttpResponse, Error> {
    let what = format!("{method} {base_url}{path}");
    let method = reqwest::Method::from_bytes(method.as_bytes())
        .map_err(|e| Error::Failed(format!("{what}: bad method: {e}")))?;
    let mut req = client
        .request(method, format!("{base_url}{path}"))
        .header(reqwest::header::ACCEPT, SCIM_JSON);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req.header(reqwest::header::CONTENT_TYPE, SCIM_JSON).body(b);
    }
    let http = |source| Error::Http {
        what: what.clone(),
        source,
    };
    let resp = req.send().await.map_err(http)?;
    let status = resp.status().as_u16();
    let headers = resp
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_owned(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let body = resp.bytes().await.map_err(http)?.to_vec();
    Ok(HttpResponse {
        status,
        headers,
        body,
    })
}
