//! The delaying TCP relay: the WAN's latency, added in user space because this kernel has no
//! netem. It runs as its own process in the middle namespace (`simnet wan --serve-proxy …`),
//! listens on one address per node, and forwards each accepted connection to that node; every
//! chunk read from either side is timestamped and written to the other side when it is due
//! (one-way delay = RTT/2, plus a uniform jitter in `[0, jitter]`), never before the chunk read
//! before it, so order is kept. Half-closes are forwarded after the same delay.
//!
//! Controlled over a Unix socket with one-line commands:
//!
//! ```text
//! delay <one-way µs> <jitter µs>   → ok
//! cut <ip>                         → ok <connections cut>   (every connection from or to <ip>)
//! cut all                          → ok <connections cut>
//! ```
//!
//! What it does not model: the two TCP legs (node → middle, middle → node) each have the
//! loopback-like RTT of a veth, so a lost packet is retransmitted after that short leg's
//! timeout, not after a real long-haul RTO; congestion windows grow at veth speed. Delay and
//! order are end to end; loss recovery is faster than on a real long path.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::{RngExt, SeedableRng};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream, UnixListener};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

/// One forward: accept on `listen`, connect to `target`.
#[derive(Clone, Copy, Debug)]
pub struct Forward {
    /// Where the relay listens (an address of the middle namespace).
    pub listen: SocketAddr,
    /// The node behind it.
    pub target: SocketAddr,
}

impl std::str::FromStr for Forward {
    type Err = String;

    fn from_str(text: &str) -> Result<Forward, String> {
        let (listen, target) = text.split_once('=').ok_or_else(|| {
            format!("`{text}`: write LISTEN=TARGET, e.g. 10.201.0.1:9000=10.201.0.2:4100")
        })?;
        Ok(Forward {
            listen: listen
                .parse()
                .map_err(|error| format!("`{listen}`: {error}"))?,
            target: target
                .parse()
                .map_err(|error| format!("`{target}`: {error}"))?,
        })
    }
}

/// A live relayed connection: the dialer's and the target's address, and its closer.
type Live = (IpAddr, IpAddr, oneshot::Sender<()>);

struct Shared {
    one_way_us: AtomicU64,
    jitter_us: AtomicU64,
    /// Live connections: id → (the two peers' addresses, a way to close it).
    connections: Mutex<HashMap<u64, Live>>,
    next_id: AtomicU64,
}

impl Shared {
    fn delay(&self, rng: &mut rand_chacha::ChaCha8Rng) -> Duration {
        let base = self.one_way_us.load(Ordering::Relaxed);
        let jitter = self.jitter_us.load(Ordering::Relaxed);
        let extra = if jitter == 0 {
            0
        } else {
            rng.random_range(0..=jitter)
        };
        Duration::from_micros(base + extra)
    }
}

/// Serves the forwards until the process is killed. Writes nothing to stdout; the control socket
/// appears at `control` once every listener is bound.
pub fn serve(forwards: &[Forward], control: &Path) -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .map_err(|error| format!("proxy runtime: {error}"))?;
    runtime.block_on(async {
        let shared = Arc::new(Shared {
            one_way_us: AtomicU64::new(0),
            jitter_us: AtomicU64::new(0),
            connections: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(0),
        });
        for forward in forwards {
            let listener = TcpListener::bind(forward.listen)
                .await
                .map_err(|error| format!("proxy bind {}: {error}", forward.listen))?;
            tokio::spawn(accept_loop(listener, forward.target, shared.clone()));
        }
        let _ = std::fs::remove_file(control);
        let control_listener = UnixListener::bind(control)
            .map_err(|error| format!("proxy control {}: {error}", control.display()))?;
        loop {
            let Ok((stream, _)) = control_listener.accept().await else {
                continue;
            };
            tokio::spawn(control_session(stream, shared.clone()));
        }
    })
}

async fn control_session(stream: tokio::net::UnixStream, shared: Arc<Shared>) {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        let words: Vec<&str> = line.split_whitespace().collect();
        let answer = match words.as_slice() {
            ["delay", one_way, jitter] => match (one_way.parse(), jitter.parse()) {
                (Ok(one_way), Ok(jitter)) => {
                    shared.one_way_us.store(one_way, Ordering::Relaxed);
                    shared.jitter_us.store(jitter, Ordering::Relaxed);
                    "ok".to_owned()
                }
                _ => "error: delay <one-way µs> <jitter µs>".to_owned(),
            },
            ["cut", who] => {
                let who: Option<IpAddr> = who.parse().ok();
                let mut connections = match shared.connections.lock() {
                    Ok(connections) => connections,
                    Err(poisoned) => poisoned.into_inner(),
                };
                let chosen: Vec<u64> = connections
                    .iter()
                    .filter(|(_, (a, b, _))| who.is_none_or(|ip| *a == ip || *b == ip))
                    .map(|(id, _)| *id)
                    .collect();
                for id in &chosen {
                    if let Some((_, _, close)) = connections.remove(id) {
                        let _ = close.send(());
                    }
                }
                format!("ok {}", chosen.len())
            }
            _ => format!("error: unknown command `{line}`"),
        };
        if write
            .write_all(format!("{answer}\n").as_bytes())
            .await
            .is_err()
        {
            return;
        }
    }
}

async fn accept_loop(listener: TcpListener, target: SocketAddr, shared: Arc<Shared>) {
    loop {
        let Ok((inbound, from)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            // The dialer's TCP handshake was answered here at once; on a real path its first
            // bytes could leave only after SYN and SYN-ACK, one RTT. So nothing it sends arrives
            // before one RTT plus the one-way delay after its connect.
            let one_way = Duration::from_micros(shared.one_way_us.load(Ordering::Relaxed));
            let handshake_done = Instant::now() + one_way * 2;
            let Ok(outbound) = TcpStream::connect(target).await else {
                return;
            };
            let _ = inbound.set_nodelay(true);
            let _ = outbound.set_nodelay(true);
            let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
            let (close_tx, close_rx) = oneshot::channel();
            if let Ok(mut connections) = shared.connections.lock() {
                connections.insert(id, (from.ip(), target.ip(), close_tx));
            }
            let (in_read, in_write) = inbound.into_split();
            let (out_read, out_write) = outbound.into_split();
            let forward = pump(in_read, out_write, shared.clone(), id * 2, handshake_done);
            let backward = pump(
                out_read,
                in_write,
                shared.clone(),
                id * 2 + 1,
                Instant::now(),
            );
            tokio::select! {
                _ = async { tokio::join!(forward, backward) } => {}
                _ = close_rx => {}
            }
            if let Ok(mut connections) = shared.connections.lock() {
                connections.remove(&id);
            }
            // Dropping the halves closes both sockets.
        });
    }
}

enum Chunk {
    Bytes(Vec<u8>),
    Eof,
}

/// Copies `from` to `to`, each chunk written when its delay has passed (counted from
/// `not_before` at the earliest), in order.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    shared: Arc<Shared>,
    seed: u64,
    not_before: Instant,
) {
    // Bounded: a writer that cannot keep up holds the reader back, as a full pipe would.
    let (tx, mut rx) = mpsc::channel::<(Instant, Chunk)>(4096);
    let reader = {
        let shared = shared.clone();
        async move {
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
            let mut last_due = Instant::now();
            let mut buffer = vec![0u8; 64 * 1024];
            loop {
                let read = from.read(&mut buffer).await;
                let sent = Instant::now().max(not_before);
                let due = (sent + shared.delay(&mut rng)).max(last_due);
                last_due = due;
                let chunk = match read {
                    Ok(0) | Err(_) => Chunk::Eof,
                    Ok(count) => Chunk::Bytes(buffer[..count].to_vec()),
                };
                let eof = matches!(chunk, Chunk::Eof);
                if tx.send((due, chunk)).await.is_err() || eof {
                    return;
                }
            }
        }
    };
    let writer = async move {
        while let Some((due, chunk)) = rx.recv().await {
            tokio::time::sleep_until(due).await;
            match chunk {
                Chunk::Bytes(bytes) => {
                    if to.write_all(&bytes).await.is_err() {
                        return;
                    }
                }
                Chunk::Eof => {
                    let _ = to.shutdown().await;
                    return;
                }
            }
        }
    };
    tokio::join!(reader, writer);
}

/// A client of a running relay's control socket.
pub struct ProxyControl {
    stream: std::io::BufReader<std::os::unix::net::UnixStream>,
}

impl ProxyControl {
    /// Connects, waiting up to `timeout` for the socket to appear.
    pub fn connect(path: &Path, timeout: Duration) -> Result<ProxyControl, String> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            match std::os::unix::net::UnixStream::connect(path) {
                Ok(stream) => {
                    stream
                        .set_read_timeout(Some(Duration::from_secs(10)))
                        .map_err(|error| error.to_string())?;
                    return Ok(ProxyControl {
                        stream: std::io::BufReader::new(stream),
                    });
                }
                Err(error) if std::time::Instant::now() > deadline => {
                    return Err(format!(
                        "the delaying relay's control socket {} did not appear within {timeout:?}: {error}",
                        path.display()
                    ))
                }
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    }

    fn command(&mut self, line: &str) -> Result<String, String> {
        use std::io::{BufRead, Write};
        self.stream
            .get_mut()
            .write_all(format!("{line}\n").as_bytes())
            .map_err(|error| format!("relay control: {error}"))?;
        let mut answer = String::new();
        self.stream
            .read_line(&mut answer)
            .map_err(|error| format!("relay control: {error}"))?;
        let answer = answer.trim().to_owned();
        if answer.starts_with("ok") {
            Ok(answer)
        } else {
            Err(format!("relay control `{line}`: {answer}"))
        }
    }

    /// Sets the round-trip time (half of it each way) and the jitter added to each direction.
    pub fn set_delay(&mut self, rtt: Duration, jitter: Duration) -> Result<(), String> {
        self.command(&format!(
            "delay {} {}",
            rtt.as_micros() / 2,
            jitter.as_micros()
        ))
        .map(|_| ())
    }

    /// Closes every relayed connection from or to `ip`; returns how many.
    pub fn cut(&mut self, ip: &str) -> Result<usize, String> {
        let answer = self.command(&format!("cut {ip}"))?;
        answer
            .trim_start_matches("ok")
            .trim()
            .parse()
            .map_err(|_| format!("relay control: unexpected answer `{answer}`"))
    }
}
