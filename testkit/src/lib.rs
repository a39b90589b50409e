//! govledger-testkit: the one harness of the end-to-end tests (`tests/`) and
//! the benchmark (`bench/`). Real processes only: nothing here mocks NATS,
//! sled or a SCIM server's protocol.
//!
//! Layout:
//! - [`net`]: the free-port probe and the one wait-for-port loop;
//! - [`browser`]: headless Chromium (dump the DOM, screenshot, print to PDF);
//! - [`nats`]: a `nats-server -js` on its own port and store, a thin wrapper
//!   over the production launcher `govledger::serve::nats_embed::EmbeddedNats`;
//! - [`nats_cluster`]: three `nats-server -js` nodes routed into one JetStream
//!   cluster on loopback, each killable and restartable;
//! - [`scim2`]: the real third-party `scim2-server` and its HTTP client;
//! - [`govledger`]: the `govledger` binary as a child (`serve`, one-shot runs);
//! - [`stream`]: stream-side helpers (publisher, stream contract, publishing a
//!   simulated run, reading the stream back, a stopped ledger's digest);
//! - [`runs`]: a run's verdict and reasons, an action's outcome, and
//!   assertions on them that print the evidence;
//! - [`fault_scim`]: the in-process fault-injecting SCIM/REST server, split by
//!   fault family;
//! - [`crash`]: the crash campaign's audit of the stream after the kills;
//! - [`cut_proxy`]: a TCP proxy that cuts every n-th connection short (a
//!   source whose network drops answers);
//! - [`tls`]: test certificates (CA, server, client) made with rcgen;
//! - [`saas`]: test servers that behave like the GitHub, Okta, Microsoft
//!   Graph and Slack users APIs (the worked examples' servers);
//! - [`slapd`]: a real OpenLDAP `slapd` on its own port and config folder,
//!   seeded with LDIF through `ldapadd` (the LDAP connector's server);
//! - [`ad_range_proxy`]: an LDAP proxy in front of slapd that returns `member`
//!   in ranges (`member;range=0-1499`), as Active Directory does;
//! - [`witness`]: a transparency-log witness speaking tlog-witness
//!   `add-checkpoint` (the ledger asks it to cosign checkpoints);
//! - [`go_c2sp`]: the independent C2SP checker over Go's sumdb/note and tlog.
//!
//! Launchers come in two forms: `try_*` returning [`Error`] (the benchmark's),
//! and the plain form that panics with the same message (the tests').
// Unsafe code is denied, and allowed at one site: the `pre_exec` that ties a
// child server's life to the test's (`scim2::spawn`).
#![deny(unsafe_code)]

pub mod ad_range_proxy;
pub mod browser;
pub mod crash;
pub mod cut_proxy;
pub mod fault_scim;
pub mod go_c2sp;
pub mod govledger;
pub mod nats;
pub mod nats_cluster;
pub mod net;
pub mod runs;
pub mod saas;
pub mod scim2;
pub mod slapd;
pub mod stream;
pub mod tls;
pub mod witness;

pub use govledger::{Govledger, govledger_bin, run_govledger};
pub use nats::NatsServer;
pub use net::free_port;
pub use stream::{ensure_stream, publish_events, publish_sim, publisher, read_stream, sled_digest};

/// Why a harness process could not be started or talked to.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Nats(#[from] ::govledger::serve::nats_embed::EmbedError),
    #[error("connecting to {url}: {source}")]
    NatsConnect {
        url: String,
        #[source]
        source: async_nats::ConnectError,
    },
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{what}: {source}")]
    Http {
        what: String,
        #[source]
        source: reqwest::Error,
    },
    /// A child did not come up, or a server answered something unexpected.
    #[error("{0}")]
    Failed(String),
}

impl Error {
    /// An [`Error::Io`] saying what was being done.
    pub fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Self {
        let what = what.into();
        move |source| Self::Io { what, source }
    }
}
