//! Private `redis-server` processes and a 3-primary Redis Cluster on loopback.

use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::INSTALL_HINT;
use crate::resp::{Reply, command, command_unix};

/// How long a server may take to answer PING after start.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a cluster may take to reach `cluster_state:ok`.
const CLUSTER_TIMEOUT: Duration = Duration::from_secs(30);
/// Offset of the cluster bus port from the client port (fixed by Redis).
const CLUSTER_BUS_OFFSET: u16 = 10_000;

/// The `redis-server` binary: `$PALISADE_REDIS_SERVER`, else the first on `PATH`
/// (then `/usr/bin` and `/usr/sbin`, which a minimal `PATH` may lack).
fn redis_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("PALISADE_REDIS_SERVER") {
        let p = PathBuf::from(p);
        assert!(
            p.is_file(),
            "PALISADE_REDIS_SERVER={} is not a file; unset it or {INSTALL_HINT}",
            p.display()
        );
        return p;
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/bin"), PathBuf::from("/usr/sbin")])
        .map(|d| d.join("redis-server"))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("redis-server not found on PATH; {INSTALL_HINT}"))
}

fn port_is_free(port: u16) -> bool {
    TcpListener::bind(("127.0.0.1", port)).is_ok()
}

/// A loopback port that was free a moment ago (and, for cluster nodes, whose bus
/// port is free too). Another process may take it before we do; callers retry.
fn free_port(with_bus: bool) -> u16 {
    for _ in 0..1000 {
        let port = TcpListener::bind(("127.0.0.1", 0))
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap_or_else(|e| panic!("cannot bind a loopback port: {e}"));
        if !with_bus {
            return port;
        }
        if let Some(bus) = port.checked_add(CLUSTER_BUS_OFFSET)
            && port_is_free(bus)
        {
            return port;
        }
    }
    panic!("no free loopback port pair (port, port+10000) after 1000 tries");
}

/// A private `redis-server` on `127.0.0.1`, in its own temp dir, with persistence
/// off. It is killed when dropped, also while a test unwinds from a panic.
///
/// ```no_run
/// let mut server = palisade_testkit::RedisServer::start();
/// let url = server.url(); // redis://127.0.0.1:<port>/
/// server.stop();          // connections now fail
/// server.restart();       // same port, empty data set
/// # let _ = url;
/// ```
#[derive(Debug)]
pub struct RedisServer {
    binary: PathBuf,
    dir: TempDir,
    port: u16,
    extra_args: Vec<String>,
    child: Option<Child>,
    /// TLS only: the CA that signed the server's certificate (PEM).
    ca_pem: Option<String>,
}

/// A CA made for one fixture: it signs the certificates of the servers that share it.
struct TestCa {
    pem: String,
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
}

fn certificate_failure(e: rcgen::Error) -> ! {
    panic!("cannot make test certificates: {e}")
}

impl TestCa {
    fn new() -> TestCa {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
        let key = KeyPair::generate().unwrap_or_else(|e| certificate_failure(e));
        let mut ca =
            CertificateParams::new(Vec::<String>::new()).unwrap_or_else(|e| certificate_failure(e));
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(DnType::CommonName, "palisade testkit CA");
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let cert = ca
            .self_signed(&key)
            .unwrap_or_else(|e| certificate_failure(e));
        TestCa {
            pem: cert.pem(),
            issuer: rcgen::Issuer::new(ca, key),
        }
    }

    /// A certificate and key (PEM) for `localhost` and `127.0.0.1`. Also for client
    /// authentication: cluster nodes present it to each other on the TLS cluster bus.
    fn server_certificate(&self) -> (String, String) {
        use rcgen::{CertificateParams, DnType, ExtendedKeyUsagePurpose, KeyPair};
        let key = KeyPair::generate().unwrap_or_else(|e| certificate_failure(e));
        let mut server =
            CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
                .unwrap_or_else(|e| certificate_failure(e));
        server
            .distinguished_name
            .push(DnType::CommonName, "palisade testkit redis-server");
        server.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let cert = server
            .signed_by(&key, &self.issuer)
            .unwrap_or_else(|e| certificate_failure(e));
        (cert.pem(), key.serialize_pem())
    }
}

/// The PEM certificate of a CA that signed nothing any fixture serves: a client
/// that trusts only it must refuse every TLS server here.
pub fn unrelated_ca_pem() -> String {
    TestCa::new().pem
}

impl RedisServer {
    /// Starts a standalone server and waits until it answers PING.
    pub fn start() -> RedisServer {
        Self::start_with_args(&[])
    }

    /// Starts a server that speaks TLS only (`--port 0 --tls-port <port>`), with a
    /// server certificate for `localhost` and `127.0.0.1` signed by a CA made for it
    /// ([`ca_pem`](Self::ca_pem)); clients need no certificate. [`url`](Self::url) is
    /// `rediss://127.0.0.1:<port>/`; [`command`](Self::command) goes through a Unix
    /// socket in the server's directory, so tests can still set up and probe it.
    pub fn start_tls() -> RedisServer {
        Self::start_inner(&[], Some(&TestCa::new()))
    }

    /// Starts a server with extra `--name value` arguments.
    pub fn start_with_args(extra: &[&str]) -> RedisServer {
        Self::start_inner(extra, None)
    }

    /// With `ca`: TLS only, with a server certificate `ca` signs.
    fn start_inner(extra: &[&str], ca: Option<&TestCa>) -> RedisServer {
        let with_bus = extra.contains(&"--cluster-enabled");
        let binary = redis_binary();
        let mut last_log = String::new();
        // The port can be taken between our probe and redis' bind: retry on a new port.
        for _ in 0..5 {
            let dir = tempfile::Builder::new()
                .prefix("palisade-redis-")
                .tempdir()
                .unwrap_or_else(|e| panic!("cannot create a temp dir for redis-server: {e}"));
            let mut extra_args: Vec<String> = extra.iter().map(|s| (*s).to_owned()).collect();
            let ca_pem = ca.map(|ca| {
                let (cert, key) = ca.server_certificate();
                let file = |name: &str, pem: &str| {
                    let path = dir.path().join(name);
                    fs::write(&path, pem)
                        .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
                    path.display().to_string()
                };
                let socket = dir.path().join("redis.sock").display().to_string();
                extra_args.extend(
                    [
                        "--tls-cert-file",
                        &file("server.crt", &cert),
                        "--tls-key-file",
                        &file("server.key", &key),
                        "--tls-ca-cert-file",
                        &file("ca.crt", &ca.pem),
                        "--tls-auth-clients",
                        "no",
                        "--unixsocket",
                        &socket,
                        "--unixsocketperm",
                        "700",
                    ]
                    .map(str::to_owned),
                );
                ca.pem.clone()
            });
            let mut server = RedisServer {
                binary: binary.clone(),
                dir,
                port: free_port(with_bus),
                extra_args,
                child: None,
                ca_pem,
            };
            match server.spawn_and_wait() {
                Ok(()) => return server,
                Err(log) => last_log = log,
            }
        }
        panic!("redis-server did not start after 5 attempts; its last log:\n{last_log}");
    }

    /// Spawns the process and waits for PING; on failure returns the server's log.
    fn spawn_and_wait(&mut self) -> Result<(), String> {
        let log = self.dir.path().join("redis.log");
        let port = self.port.to_string();
        let mut cmd = Command::new(&self.binary);
        if self.ca_pem.is_some() {
            // TLS only: no plain-text TCP port at all.
            cmd.args(["--port", "0", "--tls-port", &port]);
        } else {
            cmd.args(["--port", &port]);
        }
        cmd.args(["--bind", "127.0.0.1", "--protected-mode", "no"])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .arg("--logfile")
            .arg(&log)
            .args(&self.extra_args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child = cmd.spawn().unwrap_or_else(|e| {
            panic!("cannot run {}: {e}; {INSTALL_HINT}", self.binary.display())
        });
        self.child = Some(child);
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if matches!(self.command(&["PING"]), Ok(Reply::Status(ref s)) if s == "PONG") {
                return Ok(());
            }
            let exited = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
                .is_some();
            if exited || Instant::now() > deadline {
                self.stop();
                return Err(fs::read_to_string(&log).unwrap_or_default());
            }
            sleep(Duration::from_millis(5));
        }
    }

    /// The TCP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:<port>/`, or `rediss://…` for a TLS server.
    pub fn url(&self) -> String {
        let scheme = if self.ca_pem.is_some() {
            "rediss"
        } else {
            "redis"
        };
        format!("{scheme}://127.0.0.1:{}/", self.port)
    }

    /// The PEM certificate of the CA that signed a TLS server's certificate (`None`
    /// for a plain-text server): what a client must trust.
    pub fn ca_pem(&self) -> Option<&str> {
        self.ca_pem.as_deref()
    }

    /// The server's working directory (its log is `redis.log` there).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The process id while running.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Whether the process has been started and not stopped.
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Kills the server (SIGKILL, like a crash) and waits for it to exit. Idempotent.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port, with an empty data set.
    pub fn restart(&mut self) {
        self.stop();
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            match self.spawn_and_wait() {
                Ok(()) => return,
                Err(log) if Instant::now() > deadline => {
                    panic!("redis-server did not restart on port {}:\n{log}", self.port)
                }
                Err(_) => sleep(Duration::from_millis(50)),
            }
        }
    }

    /// Sends one command on a fresh connection (for setup and probes in tests): over
    /// TCP, or for a TLS server over its Unix socket.
    pub fn command(&self, args: &[&str]) -> std::io::Result<Reply> {
        if self.ca_pem.is_some() {
            command_unix(&self.dir.path().join("redis.sock"), args)
        } else {
            command(self.port, args)
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A 3-primary Redis Cluster on loopback (no replicas), all 16384 slots assigned.
/// Every node is killed when the cluster is dropped.
#[derive(Debug)]
pub struct RedisCluster {
    nodes: Vec<RedisServer>,
}

impl RedisCluster {
    /// Number of primaries.
    pub const NODES: usize = 3;
    /// Redis Cluster's slot count.
    pub const SLOTS: u32 = 16_384;

    /// Starts three nodes, assigns them a third of the slots each, joins them, and
    /// returns once every node reports `cluster_state:ok` with all slots assigned and
    /// all nodes known.
    pub fn start() -> RedisCluster {
        Self::start_inner(None)
    }

    /// The same over TLS only: clients and the cluster bus (`--tls-cluster yes`) speak
    /// TLS, every node's certificate is signed by one CA ([`ca_pem`](Self::ca_pem)),
    /// [`urls`](Self::urls) are `rediss://`, and `CLUSTER SLOTS` names the TLS ports.
    pub fn start_tls() -> RedisCluster {
        Self::start_inner(Some(&TestCa::new()))
    }

    fn start_inner(ca: Option<&TestCa>) -> RedisCluster {
        let mut args = vec![
            "--cluster-enabled",
            "yes",
            "--cluster-config-file",
            "nodes.conf",
            "--cluster-node-timeout",
            "5000",
            "--cluster-announce-ip",
            "127.0.0.1",
        ];
        if ca.is_some() {
            args.extend(["--tls-cluster", "yes"]);
        }
        let nodes: Vec<RedisServer> = (0..Self::NODES)
            .map(|_| RedisServer::start_inner(&args, ca))
            .collect();
        let per_node = Self::SLOTS / Self::NODES as u32;
        for (i, node) in nodes.iter().enumerate() {
            let first = i as u32 * per_node;
            let last = if i + 1 == Self::NODES {
                Self::SLOTS - 1
            } else {
                first + per_node - 1
            };
            expect_ok(
                node,
                &[
                    "CLUSTER",
                    "ADDSLOTSRANGE",
                    &first.to_string(),
                    &last.to_string(),
                ],
            );
        }
        for other in &nodes[1..] {
            expect_ok(
                &nodes[0],
                &["CLUSTER", "MEET", "127.0.0.1", &other.port().to_string()],
            );
        }
        let cluster = RedisCluster { nodes };
        cluster.wait_until_ok();
        cluster
    }

    fn wait_until_ok(&self) {
        let deadline = Instant::now() + CLUSTER_TIMEOUT;
        let mut last = String::new();
        loop {
            let ready = self.nodes.iter().all(|n| {
                last = n
                    .command(&["CLUSTER", "INFO"])
                    .map(|r| r.text())
                    .unwrap_or_default();
                last.contains("cluster_state:ok")
                    && last.contains("cluster_slots_assigned:16384")
                    && last.contains(&format!("cluster_known_nodes:{}", Self::NODES))
            });
            if ready {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "Redis Cluster not ready after {CLUSTER_TIMEOUT:?}; last CLUSTER INFO:\n{last}"
            );
            sleep(Duration::from_millis(20));
        }
    }

    /// The nodes, for fault injection (stop one) or probes.
    pub fn nodes(&self) -> &[RedisServer] {
        &self.nodes
    }

    /// `redis://127.0.0.1:<port>/` (`rediss://` over TLS) of every node (seed URLs
    /// for a cluster client).
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(RedisServer::url).collect()
    }

    /// The PEM certificate of the CA that signed every node's certificate (`None` for
    /// a plain-text cluster).
    pub fn ca_pem(&self) -> Option<&str> {
        self.nodes.first().and_then(RedisServer::ca_pem)
    }
}

fn expect_ok(node: &RedisServer, args: &[&str]) {
    match node.command(args) {
        Ok(Reply::Status(s)) if s == "OK" => {}
        other => panic!("{args:?} on port {} answered {other:?}", node.port()),
    }
}
