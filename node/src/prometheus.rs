//! The Prometheus endpoint: `GET /metrics` in the text exposition format (version 0.0.4).
//!
//! Enabled by `metrics_listen` in `node.toml`. The serving task owns no state: for each scrape
//! it asks the daemon task for a [`Snapshot`] over the same command channel the console uses,
//! and renders it here. The HTTP side is deliberately small and strict, because anything that
//! can reach the port can talk to it:
//!
//! - at most [`MAX_CONNECTIONS`] connections at once (others get `503` and are closed);
//! - the request head must arrive within [`READ_TIMEOUT`] and fit in [`MAX_HEAD_BYTES`]
//!   (otherwise `408` / `431`); a request body is never read;
//! - only `GET /metrics` (a query string is ignored) gets `200`; another path is `404`, another
//!   method `405`; every answer closes the connection.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

/// Largest request head read (request line and headers).
pub const MAX_HEAD_BYTES: usize = 8 * 1024;
/// Time allowed for the head to arrive, and for the answer to be written.
pub const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// Connections served at once.
pub const MAX_CONNECTIONS: usize = 4;

/// Upper bounds (seconds) of the time-to-receipt histogram.
pub const RECEIPT_BUCKETS: [f64; 11] = [
    0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 600.0, 1800.0, 3600.0,
];
/// Upper bounds (seconds) of the time-to-acknowledge histogram.
pub const ACK_BUCKETS: [f64; 9] = [
    60.0, 300.0, 900.0, 1800.0, 3600.0, 7200.0, 21600.0, 86400.0, 604800.0,
];

/// A cumulative-on-output histogram with fixed bounds.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Histogram {
    /// Upper bounds, ascending.
    pub bounds: Vec<f64>,
    /// Observations per bucket (not cumulative); one more than `bounds` (the `+Inf` bucket).
    pub counts: Vec<u64>,
    /// Sum of all observations.
    pub sum: f64,
    /// Number of observations.
    pub count: u64,
}

impl Histogram {
    /// An empty histogram with these upper bounds.
    pub fn new(bounds: &[f64]) -> Histogram {
        Histogram {
            bounds: bounds.to_vec(),
            counts: vec![0; bounds.len() + 1],
            sum: 0.0,
            count: 0,
        }
    }

    /// Adds one observation.
    pub fn observe(&mut self, value: f64) {
        let index = self
            .bounds
            .iter()
            .position(|bound| value <= *bound)
            .unwrap_or(self.bounds.len());
        if let Some(slot) = self.counts.get_mut(index) {
            *slot += 1;
        }
        self.sum += value;
        self.count += 1;
    }
}

/// What one scrape shows, taken by the daemon task in one go.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    /// Peers with a connection up.
    pub connected_peers: u64,
    /// Undelivered outbox messages: emergency, urgent, routine.
    pub outbox_pending: [u64; 3],
    /// Relay role: messages held.
    pub relay_held: u64,
    /// Relay role: bytes held.
    pub relay_held_bytes: u64,
    /// Delivery receipts verified since start.
    pub delivered_total: u64,
    /// Messages expired undelivered since start.
    pub expired_total: u64,
    /// Messages refused by their recipient since start.
    pub rejected_total: u64,
    /// New inbound messages since start.
    pub received_total: u64,
    /// Submission → verified delivery receipt.
    pub time_to_receipt: Histogram,
    /// Inbound request stored → acknowledged by an officer here.
    pub time_to_acknowledge: Histogram,
    /// Roster serial in use.
    pub roster_serial: u64,
    /// Seconds until the roster expires (negative once expired).
    pub roster_expires_in_s: i64,
    /// Seconds since the key file was written, if readable.
    pub key_file_age_s: Option<u64>,
    /// Overdue messages per clock: receipt, acknowledge, status.
    pub overdue: [u64; 3],
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

fn float(value: f64) -> String {
    if value.is_infinite() {
        "+Inf".into()
    } else {
        format!("{value}")
    }
}

fn histogram(out: &mut String, name: &str, help: &str, histogram: &Histogram) {
    header(out, name, "histogram", help);
    let mut cumulative = 0;
    for (index, count) in histogram.counts.iter().enumerate() {
        cumulative += count;
        let bound = histogram
            .bounds
            .get(index)
            .copied()
            .unwrap_or(f64::INFINITY);
        let _ = writeln!(out, "{name}_bucket{{le=\"{}\"}} {cumulative}", float(bound));
    }
    let _ = writeln!(out, "{name}_sum {}", float(histogram.sum));
    let _ = writeln!(out, "{name}_count {}", histogram.count);
}

/// The text exposition of `snapshot`.
pub fn render(snapshot: &Snapshot) -> String {
    let mut out = String::new();
    let gauge = |out: &mut String, name: &str, help: &str, value: String| {
        header(out, name, "gauge", help);
        let _ = writeln!(out, "{name} {value}");
    };
    let counter = |out: &mut String, name: &str, help: &str, value: u64| {
        header(out, name, "counter", help);
        let _ = writeln!(out, "{name} {value}");
    };
    gauge(
        &mut out,
        "quickfreeze_connected_peers",
        "Roster members with a connection up.",
        snapshot.connected_peers.to_string(),
    );
    header(
        &mut out,
        "quickfreeze_outbox_pending",
        "gauge",
        "Outbox messages without a delivery receipt, by priority.",
    );
    for (priority, value) in ["emergency", "urgent", "routine"]
        .iter()
        .zip(snapshot.outbox_pending)
    {
        let _ = writeln!(
            out,
            "quickfreeze_outbox_pending{{priority=\"{priority}\"}} {value}"
        );
    }
    gauge(
        &mut out,
        "quickfreeze_relay_held_messages",
        "Relay role: messages held for members.",
        snapshot.relay_held.to_string(),
    );
    gauge(
        &mut out,
        "quickfreeze_relay_held_bytes",
        "Relay role: envelope bytes held for members.",
        snapshot.relay_held_bytes.to_string(),
    );
    counter(
        &mut out,
        "quickfreeze_delivered_total",
        "Delivery receipts verified since the node started.",
        snapshot.delivered_total,
    );
    counter(
        &mut out,
        "quickfreeze_expired_total",
        "Messages that expired without a delivery receipt since the node started.",
        snapshot.expired_total,
    );
    counter(
        &mut out,
        "quickfreeze_rejected_total",
        "Messages refused by their recipient since the node started.",
        snapshot.rejected_total,
    );
    counter(
        &mut out,
        "quickfreeze_received_total",
        "New inbound messages stored since the node started.",
        snapshot.received_total,
    );
    histogram(
        &mut out,
        "quickfreeze_time_to_receipt_seconds",
        "Submission to verified delivery receipt.",
        &snapshot.time_to_receipt,
    );
    histogram(
        &mut out,
        "quickfreeze_time_to_acknowledge_seconds",
        "Inbound request stored to acknowledgement by an officer of this node.",
        &snapshot.time_to_acknowledge,
    );
    gauge(
        &mut out,
        "quickfreeze_roster_serial",
        "Serial number of the roster in use.",
        snapshot.roster_serial.to_string(),
    );
    gauge(
        &mut out,
        "quickfreeze_roster_expires_in_seconds",
        "Seconds until the roster in use expires (negative once expired).",
        snapshot.roster_expires_in_s.to_string(),
    );
    if let Some(age) = snapshot.key_file_age_s {
        gauge(
            &mut out,
            "quickfreeze_key_file_age_seconds",
            "Seconds since the node key file was written.",
            age.to_string(),
        );
    }
    header(
        &mut out,
        "quickfreeze_overdue",
        "gauge",
        "Messages past a deadline, by clock (receipt T1, acknowledge T2, status T3).",
    );
    for (clock, value) in ["receipt", "acknowledge", "status"]
        .iter()
        .zip(snapshot.overdue)
    {
        let _ = writeln!(out, "quickfreeze_overdue{{clock=\"{clock}\"}} {value}");
    }
    out
}

/// Serves `GET /metrics` on `listener`; `snapshot` asks the daemon task for the figures
/// (`None` when the node is stopping).
pub async fn serve<F, Fut>(listener: TcpListener, snapshot: F)
where
    F: Fn() -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = Option<Snapshot>> + Send,
{
    let limit = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut connections = JoinSet::new();
    loop {
        while connections.try_join_next().is_some() {}
        let Ok((mut stream, _)) = listener.accept().await else {
            // Out of file descriptors and the like: do not spin.
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        match limit.clone().try_acquire_owned() {
            Ok(permit) => {
                let snapshot = snapshot.clone();
                connections.spawn(async move {
                    let _ = handle(&mut stream, snapshot).await;
                    drop(permit);
                });
            }
            Err(_) => {
                let _ = tokio::time::timeout(
                    READ_TIMEOUT,
                    respond(&mut stream, "503 Service Unavailable", "busy\n"),
                )
                .await;
            }
        }
    }
}

/// Reads the request head: `Ok(None)` if it grew past [`MAX_HEAD_BYTES`].
async fn read_head(stream: &mut TcpStream) -> std::io::Result<Option<Vec<u8>>> {
    let mut head = Vec::with_capacity(1024);
    let mut buffer = [0u8; 1024];
    loop {
        let read = stream.read(&mut buffer).await?;
        if read == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        head.extend_from_slice(&buffer[..read]);
        if head.windows(4).any(|window| window == b"\r\n\r\n") {
            return Ok(Some(head));
        }
        if head.len() > MAX_HEAD_BYTES {
            return Ok(None);
        }
    }
}

async fn respond(stream: &mut TcpStream, status: &str, body: &str) -> std::io::Result<()> {
    let mut answer = format!(
        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    if status.starts_with("200") {
        answer.push_str("Content-Type: text/plain; version=0.0.4; charset=utf-8\r\n");
    } else {
        answer.push_str("Content-Type: text/plain; charset=utf-8\r\n");
    }
    if status.starts_with("405") {
        answer.push_str("Allow: GET\r\n");
    }
    answer.push_str("\r\n");
    answer.push_str(body);
    stream.write_all(answer.as_bytes()).await?;
    stream.shutdown().await
}

/// What to answer to a request head.
fn route(head: &[u8]) -> Result<(), (&'static str, &'static str)> {
    let line_end = head
        .windows(2)
        .position(|window| window == b"\r\n")
        .unwrap_or(head.len());
    let line = std::str::from_utf8(&head[..line_end])
        .map_err(|_| ("400 Bad Request", "request line is not UTF-8\n"))?;
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(("400 Bad Request", "malformed request line\n"));
    };
    if !version.starts_with("HTTP/1.") {
        return Err(("400 Bad Request", "HTTP/1.x only\n"));
    }
    let path = target.split('?').next().unwrap_or(target);
    if path != "/metrics" {
        return Err(("404 Not Found", "only /metrics is served here\n"));
    }
    if method != "GET" {
        return Err(("405 Method Not Allowed", "use GET\n"));
    }
    Ok(())
}

async fn handle<F, Fut>(stream: &mut TcpStream, snapshot: F) -> std::io::Result<()>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Option<Snapshot>>,
{
    let head = match tokio::time::timeout(READ_TIMEOUT, read_head(stream)).await {
        Err(_) => {
            return tokio::time::timeout(
                READ_TIMEOUT,
                respond(stream, "408 Request Timeout", "request head too slow\n"),
            )
            .await
            .unwrap_or(Ok(()))
        }
        Ok(Err(error)) => return Err(error),
        Ok(Ok(None)) => {
            let answered = tokio::time::timeout(
                READ_TIMEOUT,
                respond(
                    stream,
                    "431 Request Header Fields Too Large",
                    "request head over 8 KiB\n",
                ),
            )
            .await
            .unwrap_or(Ok(()));
            // Read (and drop) a little of what the client is still sending, so that closing
            // with unread data does not reset the connection before it reads the answer.
            let mut sink = [0u8; 4096];
            let _ = tokio::time::timeout(Duration::from_millis(500), async {
                let mut drained = 0;
                while drained < 64 * 1024 {
                    match stream.read(&mut sink).await {
                        Ok(0) | Err(_) => break,
                        Ok(read) => drained += read,
                    }
                }
            })
            .await;
            return answered;
        }
        Ok(Ok(Some(head))) => head,
    };
    let (status, body) = match route(&head) {
        Err((status, body)) => (status, body.to_string()),
        Ok(()) => match snapshot().await {
            Some(snapshot) => ("200 OK", render(&snapshot)),
            None => ("503 Service Unavailable", "the node is stopping\n".into()),
        },
    };
    tokio::time::timeout(READ_TIMEOUT, respond(stream, status, &body))
        .await
        .unwrap_or(Ok(()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative_in_the_text() {
        let mut snapshot = Snapshot {
            time_to_receipt: Histogram::new(&RECEIPT_BUCKETS),
            time_to_acknowledge: Histogram::new(&ACK_BUCKETS),
            ..Snapshot::default()
        };
        snapshot.time_to_receipt.observe(0.05);
        snapshot.time_to_receipt.observe(0.7);
        snapshot.time_to_receipt.observe(99_999.0);
        let text = render(&snapshot);
        assert!(text.contains("quickfreeze_time_to_receipt_seconds_bucket{le=\"0.1\"} 1\n"));
        assert!(text.contains("quickfreeze_time_to_receipt_seconds_bucket{le=\"1\"} 2\n"));
        assert!(text.contains("quickfreeze_time_to_receipt_seconds_bucket{le=\"3600\"} 2\n"));
        assert!(text.contains("quickfreeze_time_to_receipt_seconds_bucket{le=\"+Inf\"} 3\n"));
        assert!(text.contains("quickfreeze_time_to_receipt_seconds_count 3\n"));
        // Every sample line is `name[{labels}] number`, and every family has HELP and TYPE.
        for line in text.lines().filter(|line| !line.starts_with('#')) {
            let (_, value) = line.rsplit_once(' ').expect("two fields");
            assert!(value.parse::<f64>().is_ok(), "{line}");
        }
        let families = text
            .lines()
            .filter(|line| line.starts_with("# TYPE"))
            .count();
        assert_eq!(
            families,
            text.lines()
                .filter(|line| line.starts_with("# HELP"))
                .count()
        );
    }

    #[test]
    fn only_get_metrics_is_served() {
        assert!(route(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").is_ok());
        assert!(route(b"GET /metrics?x=1 HTTP/1.0\r\n\r\n").is_ok());
        assert_eq!(
            route(b"GET / HTTP/1.1\r\n\r\n").map_err(|e| e.0),
            Err("404 Not Found")
        );
        assert_eq!(
            route(b"POST /metrics HTTP/1.1\r\n\r\n").map_err(|e| e.0),
            Err("405 Method Not Allowed")
        );
        assert_eq!(
            route(b"GET /metrics SPDY/3\r\n\r\n").map_err(|e| e.0),
            Err("400 Bad Request")
        );
        assert_eq!(
            route(b"\xff\xfe\r\n\r\n").map_err(|e| e.0),
            Err("400 Bad Request")
        );
    }
}
