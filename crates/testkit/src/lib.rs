//! Real services for Palisade's tests, the way redis-rs tests itself.
//!
//! - [`RedisServer`]: a private `redis-server` on a free loopback port, persistence
//!   off, killed on drop (also when the test panics); [`RedisServer::start_tls`]
//!   serves TLS only, with a CA made for it.
//! - [`RedisCluster`]: three such servers joined into a Redis Cluster with all 16384
//!   slots assigned, ready only once every node reports `cluster_state:ok`;
//!   [`RedisCluster::start_tls`] speaks TLS only, to clients and on the cluster bus.
//! - [`SoftHsm`]: one SoftHSM2 token per test process, with one shared, initialised
//!   `cryptoki` context.
//! - [`Kryoptic`]: a kryoptic token (PKCS#11 3.2, with ML-DSA) from the module
//!   `scripts/test.sh setup` builds.
//! - [`FreezingProxy`]: a TCP proxy whose connections can go silent without closing,
//!   as a server gone without a reset leaves them.
//!
//! Nothing here skips: if `redis-server` or the SoftHSM2 module is missing, the
//! fixture panics with a message that names `scripts/test.sh`, which installs them
//! (and builds kryoptic).
//! Fixtures panic rather than return errors because a broken fixture is a failed test.
#![forbid(unsafe_code)]

mod kryoptic;
mod proxy;
mod redis;
mod resp;
mod softhsm;
mod token;

pub use kryoptic::Kryoptic;
pub use proxy::FreezingProxy;
pub use redis::{RedisCluster, RedisServer, unrelated_ca_pem};
pub use resp::{Reply, command, command_unix};
pub use softhsm::SoftHsm;
pub use token::Pkcs11Token;

/// What to do when a required system tool is missing.
pub(crate) const INSTALL_HINT: &str =
    "run scripts/test.sh, which installs redis-server and softhsm2 (apt-get, as root)";
