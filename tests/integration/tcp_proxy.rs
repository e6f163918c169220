//! A TCP proxy on `127.0.0.1:0` between a client (the engine) and a server (Redis), with a
//! fault the test switches at run time (RELIABILITY.md row 21): pass bytes through, delay
//! every chunk, blackhole (bytes vanish, connections stay open), or reset every open
//! connection (RST, as a dropped NAT entry or a restarted middlebox does).
//!
//! It runs on a current-thread tokio runtime of its own, on a thread of its own, so a
//! synchronous test drives it; dropping the proxy stops the runtime and closes everything.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// What the proxy does to the bytes it carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Bytes pass unchanged.
    Pass,
    /// Every chunk waits this long before it is passed on.
    Delay(Duration),
    /// Bytes are read and dropped; connections stay open (a silent network).
    Blackhole,
}

/// The proxy; stopped on drop.
#[derive(Debug)]
pub struct TcpProxy {
    /// Where clients connect.
    pub addr: SocketAddr,
    fault: Arc<Mutex<Fault>>,
    /// Bumped by [`TcpProxy::reset_all`]: every connection open at that moment is reset.
    generation: watch::Sender<u64>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    /// Connections accepted so far.
    accepted: Arc<std::sync::atomic::AtomicU64>,
}

impl TcpProxy {
    /// Starts a proxy to `upstream`, passing bytes through.
    pub fn start(upstream: SocketAddr) -> std::io::Result<TcpProxy> {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        std_listener.set_nonblocking(true)?;
        let addr = std_listener.local_addr()?;
        let fault = Arc::new(Mutex::new(Fault::Pass));
        let (generation, _) = watch::channel(0u64);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let accepted = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let (fault2, generation2, accepted2) = (Arc::clone(&fault), generation.clone(), Arc::clone(&accepted));
        let thread = std::thread::Builder::new().name("tcp-proxy".into()).spawn(move || {
            runtime.block_on(async move {
                let Ok(listener) = TcpListener::from_std(std_listener) else { return };
                let serve = async {
                    loop {
                        let Ok((client, _)) = listener.accept().await else { continue };
                        accepted2.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let (fault, resets) = (Arc::clone(&fault2), generation2.subscribe());
                        tokio::spawn(async move {
                            if let Ok(server) = TcpStream::connect(upstream).await {
                                carry(client, server, fault, resets).await;
                            }
                        });
                    }
                };
                tokio::select! {
                    biased;
                    _ = stopped => {}
                    () = serve => {}
                }
            });
        })?;
        Ok(TcpProxy { addr, fault, generation, stop: Some(stop), thread: Some(thread), accepted })
    }

    /// Switches the fault for every chunk from now on.
    pub fn set(&self, fault: Fault) {
        *self.fault.lock().unwrap_or_else(|p| p.into_inner()) = fault;
    }

    /// Resets (RST) every connection open now; new ones are carried as before.
    pub fn reset_all(&self) {
        self.generation.send_modify(|g| *g += 1);
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> u64 {
        self.accepted.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The URL of a Redis reached through the proxy.
    pub fn redis_url(&self) -> String {
        format!("redis://{}", self.addr)
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Carries bytes both ways until either side closes or a reset is asked for; a reset
/// closes both sockets with `SO_LINGER 0`, which sends RST.
async fn carry(client: TcpStream, server: TcpStream, fault: Arc<Mutex<Fault>>, mut resets: watch::Receiver<u64>) {
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let was_reset = {
        let up = pump(&mut client_read, &mut server_write, &fault);
        let down = pump(&mut server_read, &mut client_write, &fault);
        tokio::select! {
            biased;
            _ = resets.changed() => true,
            () = up => false,
            () = down => false,
        }
    };
    if was_reset
        && let (Ok(client), Ok(server)) = (client_read.reunite(client_write), server_read.reunite(server_write))
    {
        #[allow(deprecated)]
        let _ = client.set_linger(Some(Duration::ZERO));
        #[allow(deprecated)]
        let _ = server.set_linger(Some(Duration::ZERO));
    }
}

/// Copies one direction, applying the fault to every chunk.
async fn pump(
    from: &mut tokio::net::tcp::OwnedReadHalf,
    to: &mut tokio::net::tcp::OwnedWriteHalf,
    fault: &Mutex<Fault>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        let now = *fault.lock().unwrap_or_else(|p| p.into_inner());
        match now {
            Fault::Pass => {}
            Fault::Delay(d) => tokio::time::sleep(d).await,
            Fault::Blackhole => continue,
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}
