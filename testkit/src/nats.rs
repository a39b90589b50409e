//! A real JetStream server owned by one test or benchmark: `nats-server -js`
//! on its own free port with its own store folder, killable with SIGKILL and
//! restartable on the same port and store. A thin wrapper over the production
//! launcher `govledger::serve::nats_embed::EmbeddedNats` (the one `govledger serve`
//! uses), so there is one way to start a nats-server in the tree.

use std::path::{Path, PathBuf};

use ::govledger::serve::nats_embed::{self, EmbeddedNats};

use crate::{Error, net};

/// How many free ports [`NatsServer::try_start`] tries (one can be taken
/// between the probe and the server's bind).
const START_TRIES: usize = 5;

/// The `nats-server` binary: `GOVLEDGER_NATS_SERVER`, else the project's
/// pinned install (`scripts/install-tools.sh`), else `PATH`
/// (`govledger::serve::nats_embed::find_binary`).
pub fn nats_server_bin() -> Result<PathBuf, Error> {
    Ok(nats_embed::find_binary(None)?)
}

/// A real JetStream server; dropping it kills the server (SIGKILL) and removes
/// its store.
pub struct NatsServer {
    server: Option<EmbeddedNats>,
    pub port: u16,
    /// Holds the store, the log and the pid file (`EmbeddedNats`'s layout).
    pub store: tempfile::TempDir,
    bin: PathBuf,
    /// The nats-server config file it was started with, if any.
    config: Option<PathBuf>,
}

impl NatsServer {
    /// [`Self::try_start`], panicking on failure (for tests).
    pub async fn start() -> Self {
        Self::try_start().await.unwrap_or_else(|e| panic!("{e}"))
    }

    /// [`Self::try_start_with`] the binary [`nats_server_bin`] finds.
    pub async fn try_start() -> Result<Self, Error> {
        Self::try_start_with(&nats_server_bin()?).await
    }

    /// Starts `bin` on a free port with a fresh store and waits until it
    /// accepts connections.
    pub async fn try_start_with(bin: &Path) -> Result<Self, Error> {
        Self::try_start_configured(bin, None).await
    }

    /// Starts a server whose nats-server config is `config_text` (e.g.
    /// `authorization { token: "…" }`: a server that requires a credential).
    /// The default [`Self::start`] stays unauthenticated.
    pub async fn start_with_config(config_text: &str) -> Self {
        let run =
            async { Self::try_start_configured(&nats_server_bin()?, Some(config_text)).await };
        run.await.unwrap_or_else(|e| panic!("{e}"))
    }

    /// Starts a server on `port` whose nats-server config is `config_text`
    /// (one node of a cluster: its `cluster {}` block names the others).
    pub async fn try_start_at(port: u16, config_text: &str) -> Result<Self, Error> {
        let bin = nats_server_bin()?;
        let store = tempfile::Builder::new()
            .prefix("govledger-nats-node-")
            .tempdir()
            .map_err(Error::io("creating the nats-server store folder"))?;
        let path = store.path().join("server.conf");
        std::fs::write(&path, config_text).map_err(Error::io("writing the nats-server config"))?;
        let server = EmbeddedNats::start_with_config(&bin, store.path(), port, Some(&path)).await?;
        Ok(Self {
            server: Some(server),
            port,
            store,
            bin,
            config: Some(path),
        })
    }

    async fn try_start_configured(bin: &Path, config_text: Option<&str>) -> Result<Self, Error> {
        let bin = bin.to_path_buf();
        let store = tempfile::Builder::new()
            .prefix("govledger-nats-")
            .tempdir()
            .map_err(Error::io("creating the nats-server store folder"))?;
        let config = match config_text {
            Some(text) => {
                let path = store.path().join("server.conf");
                std::fs::write(&path, text).map_err(Error::io("writing the nats-server config"))?;
                Some(path)
            }
            None => None,
        };
        let mut last = None;
        for _ in 0..START_TRIES {
            let port = net::try_free_port()?;
            match EmbeddedNats::start_with_config(&bin, store.path(), port, config.as_deref()).await
            {
                Ok(server) => {
                    return Ok(Self {
                        server: Some(server),
                        port,
                        store,
                        bin,
                        config,
                    });
                }
                Err(e) => last = Some(e),
            }
        }
        Err(last.map_or_else(
            || Error::Failed("nats-server did not start".into()),
            Error::from,
        ))
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// The server's process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.server.as_ref().and_then(EmbeddedNats::pid)
    }

    /// SIGKILL: no flush, no goodbye.
    pub fn kill9(&mut self) {
        if let Some(s) = self.server.take() {
            s.kill();
        }
    }

    /// SIGTERM and wait: a clean stop.
    pub async fn stop(&mut self) {
        if let Some(s) = self.server.take() {
            s.stop().await;
        }
    }

    /// Starts again on the same port and store (SIGKILLing a running one).
    pub async fn restart(&mut self) {
        self.kill9();
        let server = EmbeddedNats::start_with_config(
            &self.bin,
            self.store.path(),
            self.port,
            self.config.as_deref(),
        )
        .await
        .unwrap_or_else(|e| panic!("restarting nats-server on port {}: {e}", self.port));
        self.server = Some(server);
    }

    /// Damages the store so that stream `stream` loses message `seq`, as a
    /// bad disk block does: the server is stopped, one byte of the message's
    /// payload is flipped in its block file (its checksum no longer holds),
    /// and the server is started again. NATS then delivers the messages
    /// around it and answers "no message found" for it, while its stream
    /// state still counts it.
    pub async fn lose_message(&mut self, stream: &str, seq: u64) {
        let client = self.client().await;
        let js = async_nats::jetstream::new(client.clone());
        let payload = js
            .get_stream(stream)
            .await
            .unwrap()
            .get_raw_message(seq)
            .await
            .unwrap_or_else(|e| panic!("message {seq} of {stream}: {e}"))
            .payload;
        drop(client);
        self.stop().await;
        let dir = self
            .store
            .path()
            .join("store/jetstream/$G/streams")
            .join(stream)
            .join("msgs");
        let mut flipped = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_none_or(|e| e != "blk") {
                continue;
            }
            let mut bytes = std::fs::read(&path).unwrap();
            if let Some(at) = bytes
                .windows(payload.len())
                .position(|w| w == payload.as_ref())
            {
                bytes[at + payload.len() / 2] ^= 0x5a;
                std::fs::write(&path, bytes).unwrap();
                flipped += 1;
            }
        }
        assert_eq!(flipped, 1, "message {seq}'s payload in {}", dir.display());
        self.restart().await;
    }

    /// A client connected to this server.
    pub async fn try_client(&self) -> Result<async_nats::Client, Error> {
        let url = self.url();
        async_nats::connect(&url)
            .await
            .map_err(|source| Error::NatsConnect { url, source })
    }

    /// [`Self::try_client`], panicking on failure (for tests).
    pub async fn client(&self) -> async_nats::Client {
        self.try_client().await.unwrap_or_else(|e| panic!("{e}"))
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill9();
    }
}
