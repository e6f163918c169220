//! Redis servers for the Redis tests, on loopback only.
//!
//! - [`shared`]: the URL in `GAVAT_TEST_REDIS_URL`, else `127.0.0.1:6379` if it answers
//!   `PING`, else a private server of the test's own. Tests on it use a [`Prefix`] of their
//!   own and never flush, pause, kill or reconfigure it.
//! - [`PrivateRedis`]: a `redis-server` on a free port (`--save '' --appendonly no`,
//!   `noeviction`), killed on drop: for every test that restarts, pauses, fills, flushes or
//!   reconfigures Redis (RELIABILITY.md 7.1).
//! - [`Cluster`]: three private `--cluster-enabled` nodes joined with `redis-cli --cluster
//!   create`, waited for until `cluster_state:ok`.
//!
//! A missing `redis-server` is an error with a clear message, never a silent skip.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// A test helper's error: what failed, for the test's `?`.
pub type Error = Box<dyn std::error::Error + Send + Sync>;

/// Whether a Redis server answers `PING` at `127.0.0.1:port`.
fn answers_ping(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(200)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
    if s.write_all(b"PING\r\n").is_err() {
        return false;
    }
    let mut buf = [0u8; 16];
    // A server with a password answers `-NOAUTH`: it is up all the same.
    matches!(s.read(&mut buf), Ok(n) if buf[..n].starts_with(b"+PONG") || buf[..n].starts_with(b"-NOAUTH"))
}

/// A port nobody listens on now (and, for a cluster node, whose bus port +10000 is free too).
fn free_port() -> Result<u16, Error> {
    for _ in 0..50 {
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        if port < 55_000 && TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok() {
            return Ok(port);
        }
    }
    Err("no free loopback port pair found".into())
}

/// The shared server's URL, or a private server when none answers (kept alive by the
/// returned guard).
pub fn shared() -> Result<(String, Option<PrivateRedis>), Error> {
    if let Ok(url) = std::env::var("GAVAT_TEST_REDIS_URL") {
        return Ok((url, None));
    }
    if answers_ping(6379) {
        return Ok(("redis://127.0.0.1:6379".to_string(), None));
    }
    let own = PrivateRedis::start(&[])?;
    Ok((own.url(), Some(own)))
}

/// A key prefix no other test (nor another run of this one) uses; its keys are deleted on
/// drop.
#[derive(Debug)]
pub struct Prefix {
    /// The prefix, e.g. `gavat-test:conformance:4242:3:`.
    pub text: String,
    url: String,
}

impl Prefix {
    /// A fresh prefix for test `name` on the server at `url`.
    pub fn new(url: &str, name: &str) -> Prefix {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        Prefix { text: format!("gavat-test:{name}:{}:{n}:", std::process::id()), url: url.to_string() }
    }
}

impl Drop for Prefix {
    fn drop(&mut self) {
        let Ok(client) = redis::Client::open(self.url.as_str()) else { return };
        let Ok(mut conn) = client.get_connection_with_timeout(Duration::from_secs(2)) else { return };
        let pattern = format!("{}*", self.text);
        let mut cursor = 0u64;
        loop {
            let Ok((next, keys)): Result<(u64, Vec<String>), _> =
                redis::cmd("SCAN").arg(cursor).arg("MATCH").arg(&pattern).arg("COUNT").arg(1000).query(&mut conn)
            else {
                return;
            };
            if !keys.is_empty() {
                let _: Result<i64, _> = redis::cmd("UNLINK").arg(&keys).query(&mut conn);
            }
            if next == 0 {
                return;
            }
            cursor = next;
        }
    }
}

/// A private `redis-server` on a free loopback port; killed on drop.
#[derive(Debug)]
pub struct PrivateRedis {
    /// Its port.
    pub port: u16,
    args: Vec<String>,
    child: Option<Child>,
    dir: tempfile::TempDir,
}

impl PrivateRedis {
    /// Starts one with the base settings plus `extra` arguments (e.g. `["--maxmemory-policy",
    /// "allkeys-lru"]`).
    pub fn start(extra: &[&str]) -> Result<PrivateRedis, Error> {
        let dir = tempfile::tempdir()?;
        let port = free_port()?;
        let mut server = PrivateRedis { port, args: extra.iter().map(|s| s.to_string()).collect(), child: None, dir };
        server.spawn()?;
        Ok(server)
    }

    fn spawn(&mut self) -> Result<(), Error> {
        let port = self.port.to_string();
        let mut cmd = Command::new("redis-server");
        cmd.args(["--port", &port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .args(["--maxmemory-policy", "noeviction", "--enable-debug-command", "local"])
            .arg("--dir")
            .arg(self.dir.path())
            .args(&self.args)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child = cmd.spawn().map_err(|e| -> Error {
            format!(
                "cannot start redis-server ({e}): the Redis tests need redis-server and redis-cli on PATH \
                 (apt-get install redis-server); they are never skipped"
            )
            .into()
        })?;
        self.child = Some(child);
        for _ in 0..200 {
            if answers_ping(self.port) {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        Err(format!("redis-server on port {} did not answer PING within 5 s", self.port).into())
    }

    /// Its URL.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Kills it (SIGKILL) and waits for it to go.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Kills it and starts it again on the same port (no persistence: empty).
    pub fn restart(&mut self) -> Result<(), Error> {
        self.kill();
        self.spawn()
    }

    /// Runs `redis-cli -p PORT args…` and returns its output.
    pub fn cli(&self, args: &[&str]) -> Result<String, Error> {
        cli(self.port, args)
    }

    /// Its data directory (the AOF directory `appendonlydir` sits in it).
    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// Its socket address.
    pub fn addr(&self) -> std::net::SocketAddr {
        ([127, 0, 0, 1], self.port).into()
    }

    /// `SHUTDOWN SAVE` (a clean stop that writes its data) and waits for the process to end;
    /// [`PrivateRedis::restart`] starts it again on the same directory.
    pub fn shutdown_save(&mut self) -> Result<(), Error> {
        // The server closes the connection as it stops: redis-cli's exit status means nothing.
        let _ = Command::new("redis-cli")
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "SHUTDOWN", "SAVE"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()?;
        if let Some(mut child) = self.child.take() {
            child.wait()?;
        }
        Ok(())
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Runs `redis-cli -h 127.0.0.1 -p port args…`, failing on a non-zero exit.
pub fn cli(port: u16, args: &[&str]) -> Result<String, Error> {
    let out = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .output()
        .map_err(|e| -> Error { format!("cannot run redis-cli ({e}): install redis-tools").into() })?;
    if !out.status.success() {
        return Err(format!("redis-cli {args:?}: {}", String::from_utf8_lossy(&out.stderr)).into());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A three-node Redis Cluster of private servers (no replicas); killed on drop.
#[derive(Debug)]
pub struct Cluster {
    /// The nodes.
    pub nodes: Vec<PrivateRedis>,
}

impl Cluster {
    /// Starts three `--cluster-enabled` nodes, joins them and waits for `cluster_state:ok`.
    pub fn start() -> Result<Cluster, Error> {
        let mut nodes = Vec::new();
        for _ in 0..3 {
            nodes.push(PrivateRedis::start(&[
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                "nodes.conf",
                "--cluster-node-timeout",
                "5000",
            ])?);
        }
        let addresses: Vec<String> = nodes.iter().map(|n| format!("127.0.0.1:{}", n.port)).collect();
        let mut args = vec!["--cluster", "create"];
        args.extend(addresses.iter().map(String::as_str));
        args.extend(["--cluster-replicas", "0", "--cluster-yes"]);
        cli(nodes[0].port, &args)?;
        for _ in 0..400 {
            let ok = nodes
                .iter()
                .all(|n| n.cli(&["CLUSTER", "INFO"]).map(|s| s.contains("cluster_state:ok")).unwrap_or(false));
            if ok {
                return Ok(Cluster { nodes });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err("the three-node cluster did not reach cluster_state:ok within 20 s".into())
    }

    /// The URL of the first node (the client discovers the others).
    pub fn url(&self) -> String {
        self.nodes[0].url()
    }
}
