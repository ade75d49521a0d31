//! A TCP proxy on 127.0.0.1 between a deployment's processes and one server, with network faults
//! on command: delay every byte, blackhole (hold every byte, as a network that drops packets
//! does to TCP until it heals: the peers see silence, then what was retransmitted), and cut every
//! open connection with a reset.
//!
//! Hand-written rather than a crate: the Rust ports of Toxiproxy are not maintained, and what the
//! tests need is a hundred lines of tokio.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// What the proxy does to the bytes it carries, in both directions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Forwarded at once.
    Pass,
    /// Every byte arrives this much later than it was sent (bandwidth is not limited). New
    /// connections reach the server this much later too.
    Delay(Duration),
    /// Nothing is forwarded; what is sent is held and delivered when the fault ends, as TCP
    /// retransmits over a network that drops every packet for a while. New connections are
    /// accepted but reach the server only when the fault ends. A peer notices only by its own
    /// deadlines (heartbeats, confirm and statement timeouts).
    Blackhole,
}

/// A running proxy to one server. Dropping it closes every connection.
pub struct Proxy {
    addr: SocketAddr,
    upstream: SocketAddr,
    fault: watch::Sender<Fault>,
    /// Bumped by [`Proxy::cut`]: every connection open at that moment is reset.
    cuts: watch::Sender<u64>,
    /// Bumped by [`Proxy::stall_open`]: every connection open at that moment goes silent.
    stalls: watch::Sender<u64>,
    counters: Arc<Counters>,
    accept: JoinHandle<()>,
}

#[derive(Default)]
struct Counters {
    accepted: AtomicU64,
    open: AtomicU64,
}

impl Proxy {
    /// Listens on a free port of 127.0.0.1 and forwards every connection to `upstream`.
    pub async fn start(upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("the proxy can listen on 127.0.0.1");
        let addr = listener.local_addr().expect("the listener has an address");
        let (fault, fault_rx) = watch::channel(Fault::Pass);
        let (cuts, cuts_rx) = watch::channel(0);
        let (stalls, stalls_rx) = watch::channel(0);
        let counters = Arc::new(Counters::default());
        let accept = tokio::spawn(accept_loop(
            listener,
            upstream,
            fault_rx,
            cuts_rx,
            stalls_rx,
            counters.clone(),
        ));
        Proxy {
            addr,
            upstream,
            fault,
            cuts,
            stalls,
            counters,
            accept,
        }
    }

    /// Where the processes connect instead of the server.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The server behind the proxy.
    pub fn upstream(&self) -> SocketAddr {
        self.upstream
    }

    /// Applies `fault` from now on, to open connections and new ones. Bytes held by a blackhole
    /// are delivered when it is lifted.
    pub fn set(&self, fault: Fault) {
        log_fault(&format!(
            "proxy {} -> {}: {fault:?}",
            self.addr, self.upstream
        ));
        self.fault.send_replace(fault);
    }

    /// Resets every open connection (the peers see ECONNRESET); new connections go through.
    pub fn cut(&self) {
        log_fault(&format!(
            "proxy {} -> {}: cut {} connections",
            self.addr,
            self.upstream,
            self.open_connections()
        ));
        self.cuts.send_modify(|generation| *generation += 1);
    }

    /// Every connection open now goes silent for good: nothing more is forwarded on it in either
    /// direction and it is never closed (until [`Proxy::cut`]), while new connections pass. What
    /// a failover behind a moved address, or a firewall that lost its connection table, does to
    /// the connections of the moment: only a client's own deadlines notice.
    pub fn stall_open(&self) {
        log_fault(&format!(
            "proxy {} -> {}: stall {} connections",
            self.addr,
            self.upstream,
            self.open_connections()
        ));
        self.stalls.send_modify(|generation| *generation += 1);
    }

    /// Connections accepted since the start.
    pub fn accepted(&self) -> u64 {
        self.counters.accepted.load(Ordering::Relaxed)
    }

    /// Connections open now.
    pub fn open_connections(&self) -> u64 {
        self.counters.open.load(Ordering::Relaxed)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
        // Every connection task ends when the cut sender is gone.
        self.cuts.send_modify(|generation| *generation += 1);
    }
}

/// The test's output, so that a failure shows when each fault began (`--nocapture` or a failing
/// test's captured output).
fn log_fault(line: &str) {
    eprintln!("{} {line}", chrono::Utc::now().format("%H:%M:%S%.3f"));
}

async fn accept_loop(
    listener: TcpListener,
    upstream: SocketAddr,
    fault: watch::Receiver<Fault>,
    cuts: watch::Receiver<u64>,
    stalls: watch::Receiver<u64>,
    counters: Arc<Counters>,
) {
    loop {
        let client = match listener.accept().await {
            Ok((client, _)) => client,
            // Out of file descriptors, most likely: let some connections end.
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        counters.accepted.fetch_add(1, Ordering::Relaxed);
        // A connection accepted now is not touched by a cut or a stall made before it.
        let mut cuts = cuts.clone();
        cuts.mark_unchanged();
        let mut stalls = stalls.clone();
        stalls.mark_unchanged();
        tokio::spawn(serve(
            client,
            upstream,
            fault.clone(),
            cuts,
            stalls,
            counters.clone(),
        ));
    }
}

/// Carries one connection until either side closes it or it is cut.
async fn serve(
    mut client: TcpStream,
    upstream: SocketAddr,
    mut fault: watch::Receiver<Fault>,
    mut cuts: watch::Receiver<u64>,
    mut stalls: watch::Receiver<u64>,
    counters: Arc<Counters>,
) {
    counters.open.fetch_add(1, Ordering::Relaxed);
    let _open = OpenGuard(counters);
    let connect = async {
        let current = lifted(&mut fault).await?;
        if let Fault::Delay(delay) = current {
            tokio::time::sleep(delay).await;
        }
        TcpStream::connect(upstream).await.ok()
    };
    let server = tokio::select! {
        server = connect => server,
        _ = cuts.changed() => None,
    };
    let Some(mut server) = server else {
        reset(&client);
        return;
    };
    let _ = server.set_nodelay(true);
    let _ = client.set_nodelay(true);
    let cut = {
        let (client_read, client_write) = client.split();
        let (server_read, server_write) = server.split();
        let both = async {
            tokio::join!(
                pump(client_read, server_write, fault.clone()),
                pump(server_read, client_write, fault.clone()),
            )
        };
        tokio::select! {
            _ = both => false,
            _ = cuts.changed() => true,
            // Stop forwarding and keep both sockets open: silence until a cut.
            _ = stalls.changed() => {
                let _ = cuts.changed().await;
                true
            }
        }
    };
    if cut {
        reset(&client);
        reset(&server);
    }
}

/// Waits until no blackhole is in force; the fault then, or `None` if the proxy is gone.
async fn lifted(fault: &mut watch::Receiver<Fault>) -> Option<Fault> {
    let current = fault.wait_for(|fault| *fault != Fault::Blackhole).await;
    current.ok().map(|current| *current)
}

/// Closing a socket with a zero linger sends RST instead of FIN: the peer's next read fails at
/// once, as when a middlebox or a failover drops the connection.
fn reset(stream: &TcpStream) {
    let _ = socket2::SockRef::from(stream).set_linger(Some(Duration::ZERO));
}

struct OpenGuard(Arc<Counters>);

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Chunks read but not yet written, per direction: a bound on what a blackhole holds in memory
/// (then the reader stops and TCP's own flow control pushes back on the sender).
const HELD_CHUNKS: usize = 64;

/// Copies `from` to `to` under the current fault until `from` ends, then closes `to`'s write
/// side. Reading and writing are apart so that a delay is latency, not a limit on throughput.
async fn pump(
    mut from: impl AsyncRead + Unpin,
    mut to: impl AsyncWrite + Unpin,
    mut fault: watch::Receiver<Fault>,
) {
    let (held, mut to_write) = mpsc::channel::<(Instant, Vec<u8>)>(HELD_CHUNKS);
    let read = async move {
        let mut buffer = vec![0; 64 * 1024];
        while let Ok(n @ 1..) = from.read(&mut buffer).await {
            if held
                .send((Instant::now(), buffer[..n].to_vec()))
                .await
                .is_err()
            {
                break;
            }
        }
    };
    let write = async move {
        while let Some((read_at, bytes)) = to_write.recv().await {
            let Some(current) = lifted(&mut fault).await else {
                break;
            };
            if let Fault::Delay(delay) = current {
                tokio::time::sleep_until(read_at + delay).await;
            }
            if to.write_all(&bytes).await.is_err() {
                break;
            }
        }
        let _ = to.shutdown().await;
    };
    tokio::join!(read, write);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A server that echoes every byte back.
    async fn echo_server() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let (mut r, mut w) = stream.split();
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                });
            }
        });
        addr
    }

    async fn round_trip(stream: &mut TcpStream, message: &[u8]) -> std::io::Result<Vec<u8>> {
        stream.write_all(message).await?;
        let mut answer = vec![0; message.len()];
        stream.read_exact(&mut answer).await?;
        Ok(answer)
    }

    #[tokio::test]
    async fn bytes_pass_and_are_delayed() {
        let proxy = Proxy::start(echo_server().await).await;
        let mut stream = TcpStream::connect(proxy.addr()).await.unwrap();
        assert_eq!(round_trip(&mut stream, b"hello").await.unwrap(), b"hello");
        proxy.set(Fault::Delay(Duration::from_millis(200)));
        let sent = Instant::now();
        assert_eq!(round_trip(&mut stream, b"again").await.unwrap(), b"again");
        // Both directions are delayed.
        assert!(sent.elapsed() >= Duration::from_millis(400));
    }

    #[tokio::test]
    async fn a_blackhole_holds_bytes_until_it_is_lifted() {
        let proxy = Proxy::start(echo_server().await).await;
        let mut stream = TcpStream::connect(proxy.addr()).await.unwrap();
        proxy.set(Fault::Blackhole);
        stream.write_all(b"held").await.unwrap();
        let mut answer = [0; 4];
        let read = tokio::time::timeout(Duration::from_millis(300), stream.read_exact(&mut answer));
        assert!(read.await.is_err(), "nothing passes a blackhole");
        // A connection made during the blackhole is accepted but not carried.
        let mut late = TcpStream::connect(proxy.addr()).await.unwrap();
        late.write_all(b"late").await.unwrap();
        proxy.set(Fault::Pass);
        stream.read_exact(&mut answer).await.unwrap();
        assert_eq!(&answer, b"held");
        late.read_exact(&mut answer).await.unwrap();
        assert_eq!(&answer, b"late");
    }

    #[tokio::test]
    async fn a_cut_resets_open_connections_only() {
        let proxy = Proxy::start(echo_server().await).await;
        let mut stream = TcpStream::connect(proxy.addr()).await.unwrap();
        round_trip(&mut stream, b"up").await.unwrap();
        assert_eq!(proxy.open_connections(), 1);
        proxy.cut();
        let mut buffer = [0; 1];
        let read = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buffer))
            .await
            .expect("a cut connection does not hang");
        assert!(
            matches!(read, Err(_) | Ok(0)),
            "a cut connection is closed: {read:?}"
        );
        let mut again = TcpStream::connect(proxy.addr()).await.unwrap();
        assert_eq!(round_trip(&mut again, b"new").await.unwrap(), b"new");
        assert_eq!(proxy.accepted(), 2);
    }

    #[tokio::test]
    async fn a_stall_silences_open_connections_only() {
        let proxy = Proxy::start(echo_server().await).await;
        let mut stream = TcpStream::connect(proxy.addr()).await.unwrap();
        round_trip(&mut stream, b"up").await.unwrap();
        proxy.stall_open();
        let silent =
            tokio::time::timeout(Duration::from_millis(300), round_trip(&mut stream, b"lost"));
        assert!(
            silent.await.is_err(),
            "a stalled connection carries nothing"
        );
        let mut again = TcpStream::connect(proxy.addr()).await.unwrap();
        assert_eq!(round_trip(&mut again, b"new").await.unwrap(), b"new");
        proxy.cut();
        let mut buffer = [0; 1];
        let read = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buffer))
            .await
            .expect("a cut ends a stalled connection");
        assert!(matches!(read, Err(_) | Ok(0)), "{read:?}");
    }
}
