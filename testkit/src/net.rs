//! Ports on 127.0.0.1 for the harness's children: the one free-port probe and
//! the one wait-for-port loop every launcher in tests and the benchmark uses.

use std::time::{Duration, Instant};

use crate::Error;

/// The NATS port that belongs to somebody else's server: never handed out.
pub const RESERVED_PORT: u16 = 4222;
/// How often [`wait_port`] tries to connect.
const POLL_MS: u64 = 10;
/// How long one connection attempt of [`wait_port`] may take.
const CONNECT_TIMEOUT_MS: u64 = 200;

/// A free TCP port on 127.0.0.1 (never [`RESERVED_PORT`]), probed with the
/// production probe `govledger::serve::nats_embed::free_port`; released before
/// returning, so a launcher that loses the race retries.
pub fn try_free_port() -> Result<u16, Error> {
    for _ in 0..10 {
        let port = ::govledger::serve::nats_embed::free_port()
            .map_err(Error::io("binding a probe socket on 127.0.0.1"))?;
        if port != RESERVED_PORT {
            return Ok(port);
        }
    }
    Err(Error::Failed("no free port found".into()))
}

/// [`try_free_port`], panicking on failure (for tests).
pub fn free_port() -> u16 {
    try_free_port().unwrap_or_else(|e| panic!("{e}"))
}

/// Why [`wait_port`] gave up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PortWait {
    /// `alive` said the child is gone.
    Exited,
    /// Nothing accepted connections within the timeout.
    TimedOut,
}

/// Waits until something accepts TCP connections on `127.0.0.1:port`, asking
/// `alive` before each try whether the child that should listen still runs.
/// Blocking (it runs before or beside any runtime a caller has).
pub fn wait_port(
    port: u16,
    timeout_ms: u64,
    mut alive: impl FnMut() -> bool,
) -> Result<(), PortWait> {
    let deadline = Instant::now() + Duration::from_millis(timeout_ms);
    let addr = ([127, 0, 0, 1], port).into();
    while Instant::now() < deadline {
        if !alive() {
            return Err(PortWait::Exited);
        }
        let connect = Duration::from_millis(CONNECT_TIMEOUT_MS);
        if std::net::TcpStream::connect_timeout(&addr, connect).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(POLL_MS));
    }
    Err(PortWait::TimedOut)
}
