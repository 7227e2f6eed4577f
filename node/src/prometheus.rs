//! The Prometheus endpoint: `GET /metrics`, encoded by `prometheus-client` and served by axum on
//! hyper.
//!
//! Enabled by `metrics_listen` in `node.toml`. The serving task owns no state: for each scrape
//! it asks the daemon task for a [`Snapshot`] over the same command channel the console uses,
//! turns it into typed metrics in a `prometheus-client` registry, and encodes that. A scraper
//! that asks for OpenMetrics (`Accept: application/openmetrics-text`, as Prometheus does) gets
//! OpenMetrics 1.0 with its `# EOF`; anyone else gets the same lines as the classic text format
//! (version 0.0.4) without it. The HTTP side stays small and strict, because anything that can
//! reach the port can talk to it:
//!
//! - at most [`MAX_CONNECTIONS`] connections are served at once; up to as many more are told
//!   `503` once their request has arrived, and any beyond that are closed at once;
//! - the request head must arrive within [`READ_TIMEOUT`] (otherwise the connection is closed)
//!   and fit in [`MAX_HEAD_BYTES`] (otherwise `431`); a request body is never read;
//! - the daemon's answer must come within [`READ_TIMEOUT`] (otherwise `503`), and a connection
//!   lives at most [`CONNECTION_DEADLINE`] in all, so a client that does not read cannot hold it;
//! - only `GET /metrics` (a query string is ignored; `HEAD` too) gets `200`; another path is
//!   `404`, another method `405`; every answer closes the connection (no keep-alive).

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::http::{header, HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use prometheus_client::encoding::{text, EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::exemplar::Exemplar;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

/// Largest request head read (request line and headers): hyper's read buffer limit, which
/// hyper does not allow below 8 KiB.
pub const MAX_HEAD_BYTES: usize = 8 * 1024;
/// Time allowed for the request head to arrive, and for the daemon's figures.
pub const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest a connection lives, from accept to close, whatever the client does.
pub const CONNECTION_DEADLINE: Duration = Duration::from_secs(15);
/// Connections served at once (as many more get `503`).
pub const MAX_CONNECTIONS: usize = 4;

/// The classic text format's content type.
const TEXT_0_0_4: &str = "text/plain; version=0.0.4; charset=utf-8";
/// OpenMetrics' content type.
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

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
    /// Bytes free on the data directory's filesystem at the last measurement.
    #[serde(default)]
    pub disk_free_bytes: Option<u64>,
    /// 1 while free space is below the low-water mark (submissions and deliveries refused).
    #[serde(default)]
    pub disk_low: u64,
    /// Submissions and inbound batches refused for low disk space since start.
    #[serde(default)]
    pub disk_refusals_total: u64,
    /// What this node refused from each roster member since start, by kind (the same counts
    /// `peers` shows): one row per member and kind with a count above zero. Bounded by the
    /// roster size times the kinds.
    #[serde(default)]
    pub member_misbehaviour: Vec<MemberMisbehaviour>,
    /// What this node refused from everyone outside the roster since start, summed over all
    /// sources, by kind (no per-address labels: strangers must not grow the metric).
    #[serde(default)]
    pub stranger_refusals: Vec<(String, u64)>,
}

/// One member's count of one kind of refused traffic.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberMisbehaviour {
    /// The member's NodeId.
    pub peer: String,
    /// Its country.
    pub country: String,
    /// The kind (`junk_frame`, `oversized_frame`, ...).
    pub kind: String,
    /// How many since start.
    pub count: u64,
}

/// A [`Histogram`] already counted by the daemon, encoded as a Prometheus histogram.
#[derive(Debug)]
struct CountedHistogram(Histogram);

impl EncodeMetric for CountedHistogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        // Per-bucket (not cumulative) counts; the encoder adds them up. The last bucket is +Inf.
        let buckets: Vec<(f64, u64)> = self
            .0
            .counts
            .iter()
            .enumerate()
            .map(|(index, count)| {
                let bound = self.0.bounds.get(index).copied().unwrap_or(f64::INFINITY);
                (bound, *count)
            })
            .collect();
        encoder.encode_histogram::<NoLabelSet>(
            self.0.sum,
            self.0.count,
            &buckets,
            None::<&HashMap<usize, Exemplar<NoLabelSet, f64>>>,
        )
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

/// One label per series, e.g. `priority`, in a fixed order (a `Family` would list them in
/// hash order, which changes from scrape to scrape).
#[derive(Debug)]
struct GaugesBy {
    label: &'static str,
    series: Vec<(&'static str, u64)>,
}

impl EncodeMetric for GaugesBy {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        for (value_name, value) in &self.series {
            let labels = [(self.label, *value_name)];
            encoder.encode_family(&labels)?.encode_gauge(value)?;
        }
        Ok(())
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Gauge
    }
}

/// Counters with several labels per series, in the order given.
#[derive(Debug)]
struct CountersBy {
    series: Vec<(Vec<(&'static str, String)>, u64)>,
}

impl EncodeMetric for CountersBy {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        for (labels, value) in &self.series {
            encoder
                .encode_family(labels)?
                .encode_counter::<NoLabelSet, _, u64>(value, None)?;
        }
        Ok(())
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Counter
    }
}

/// The figures of `snapshot` as typed metrics. Help texts are given without their final
/// full stop: the registry adds it.
fn registry(snapshot: &Snapshot) -> Registry {
    let mut registry = Registry::default();
    registry.register(
        "quickfreeze_connected_peers",
        "Roster members with a connection up",
        ConstGauge::new(snapshot.connected_peers),
    );
    registry.register(
        "quickfreeze_outbox_pending",
        "Outbox messages without a delivery receipt, by priority",
        GaugesBy {
            label: "priority",
            series: ["emergency", "urgent", "routine"]
                .into_iter()
                .zip(snapshot.outbox_pending)
                .collect(),
        },
    );
    registry.register(
        "quickfreeze_relay_held_messages",
        "Relay role: messages held for members",
        ConstGauge::new(snapshot.relay_held),
    );
    registry.register(
        "quickfreeze_relay_held_bytes",
        "Relay role: envelope bytes held for members",
        ConstGauge::new(snapshot.relay_held_bytes),
    );
    // Counters are registered without `_total`: the encoder appends it to the sample name.
    registry.register(
        "quickfreeze_delivered",
        "Delivery receipts verified since the node started",
        ConstCounter::new(snapshot.delivered_total),
    );
    registry.register(
        "quickfreeze_expired",
        "Messages that expired without a delivery receipt since the node started",
        ConstCounter::new(snapshot.expired_total),
    );
    registry.register(
        "quickfreeze_rejected",
        "Messages refused by their recipient since the node started",
        ConstCounter::new(snapshot.rejected_total),
    );
    registry.register(
        "quickfreeze_received",
        "New inbound messages stored since the node started",
        ConstCounter::new(snapshot.received_total),
    );
    registry.register(
        "quickfreeze_time_to_receipt_seconds",
        "Submission to verified delivery receipt",
        CountedHistogram(snapshot.time_to_receipt.clone()),
    );
    registry.register(
        "quickfreeze_time_to_acknowledge_seconds",
        "Inbound request stored to acknowledgement by an officer of this node",
        CountedHistogram(snapshot.time_to_acknowledge.clone()),
    );
    registry.register(
        "quickfreeze_roster_serial",
        "Serial number of the roster in use",
        ConstGauge::new(snapshot.roster_serial),
    );
    registry.register(
        "quickfreeze_roster_expires_in_seconds",
        "Seconds until the roster in use expires (negative once expired)",
        ConstGauge::new(snapshot.roster_expires_in_s),
    );
    if let Some(free) = snapshot.disk_free_bytes {
        registry.register(
            "quickfreeze_disk_free_bytes",
            "Bytes free on the data directory's filesystem",
            ConstGauge::new(free),
        );
    }
    registry.register(
        "quickfreeze_disk_low",
        "1 while free space is below the low-water mark and submissions and deliveries are refused",
        ConstGauge::new(snapshot.disk_low),
    );
    registry.register(
        "quickfreeze_disk_refusals",
        "Submissions and inbound batches refused for low disk space",
        ConstCounter::new(snapshot.disk_refusals_total),
    );
    registry.register(
        "quickfreeze_member_misbehaviour",
        "Traffic refused from each roster member since the node started, by kind",
        CountersBy {
            series: snapshot
                .member_misbehaviour
                .iter()
                .map(|row| {
                    (
                        vec![
                            ("peer", row.peer.clone()),
                            ("country", row.country.clone()),
                            ("kind", row.kind.clone()),
                        ],
                        row.count,
                    )
                })
                .collect(),
        },
    );
    registry.register(
        "quickfreeze_stranger_refusals",
        "Connections and traffic refused from outside the roster since the node started, all sources together, by kind",
        CountersBy {
            series: snapshot
                .stranger_refusals
                .iter()
                .map(|(kind, count)| (vec![("kind", kind.clone())], *count))
                .collect(),
        },
    );
    if let Some(age) = snapshot.key_file_age_s {
        registry.register(
            "quickfreeze_key_file_age_seconds",
            "Seconds since the node key file was written",
            ConstGauge::new(age),
        );
    }
    registry.register(
        "quickfreeze_overdue",
        "Messages past a deadline, by clock (receipt T1, acknowledge T2, status T3)",
        GaugesBy {
            label: "clock",
            series: ["receipt", "acknowledge", "status"]
                .into_iter()
                .zip(snapshot.overdue)
                .collect(),
        },
    );
    registry
}

/// The exposition of `snapshot`: OpenMetrics with its `# EOF` when `openmetrics`, else the
/// same lines without it, which the classic text format (0.0.4) reads too.
fn exposition(snapshot: &Snapshot, openmetrics: bool) -> Result<String, std::fmt::Error> {
    let registry = registry(snapshot);
    let mut out = String::new();
    text::encode_registry(&mut out, &registry)?;
    if openmetrics {
        text::encode_eof(&mut out)?;
    }
    Ok(out)
}

/// The text exposition of `snapshot` (classic text format, no `# EOF`).
pub fn render(snapshot: &Snapshot) -> String {
    // Encoding into a String cannot fail: every metric here encodes without error.
    exposition(snapshot, false).unwrap_or_default()
}

/// The limits one endpoint enforces; the constants above in production, shorter in tests.
#[derive(Clone, Copy, Debug)]
struct Limits {
    header_timeout: Duration,
    answer_timeout: Duration,
    connection_deadline: Duration,
    max_connections: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            header_timeout: READ_TIMEOUT,
            answer_timeout: READ_TIMEOUT,
            connection_deadline: CONNECTION_DEADLINE,
            max_connections: MAX_CONNECTIONS,
        }
    }
}

/// Whether the scraper asked for OpenMetrics.
fn wants_openmetrics(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .any(|value| value.contains("application/openmetrics-text"))
}

/// The routes: `GET /metrics` asks `snapshot` for the figures; everything else is refused with
/// a one-line reason.
fn router<F, Fut>(snapshot: F, answer_timeout: Duration) -> Router
where
    F: Fn() -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Option<Snapshot>> + Send + 'static,
{
    let scrape = move |headers: HeaderMap| async move {
        let openmetrics = wants_openmetrics(&headers);
        let figures = tokio::time::timeout(answer_timeout, snapshot()).await;
        let Ok(Some(figures)) = figures else {
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                "the node is stopping or too busy to answer; try again\n",
            )
                .into_response();
        };
        match exposition(&figures, openmetrics) {
            Ok(body) => (
                [(
                    header::CONTENT_TYPE,
                    if openmetrics { OPENMETRICS } else { TEXT_0_0_4 },
                )],
                body,
            )
                .into_response(),
            Err(_) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "the metrics could not be encoded\n",
            )
                .into_response(),
        }
    };
    Router::new()
        .route("/metrics", get(scrape))
        .fallback(|| async { (StatusCode::NOT_FOUND, "only /metrics is served here\n") })
        .method_not_allowed_fallback(|| async { (StatusCode::METHOD_NOT_ALLOWED, "use GET\n") })
}

/// What a connection over the limit is told, once its request has arrived.
fn busy_router() -> Router {
    Router::new().fallback(|| async {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "busy: too many connections to the metrics endpoint\n",
        )
            .into_response()
    })
}

/// Serves `GET /metrics` on `listener`; `snapshot` asks the daemon task for the figures
/// (`None` when the node is stopping).
pub async fn serve<F, Fut>(listener: TcpListener, snapshot: F)
where
    F: Fn() -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Option<Snapshot>> + Send + 'static,
{
    serve_with(listener, snapshot, Limits::default()).await;
}

async fn serve_with<F, Fut>(listener: TcpListener, snapshot: F, limits: Limits)
where
    F: Fn() -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Option<Snapshot>> + Send + 'static,
{
    let metrics = router(snapshot, limits.answer_timeout);
    let busy = busy_router();
    let served = Arc::new(Semaphore::new(limits.max_connections));
    let refused = Arc::new(Semaphore::new(limits.max_connections));
    let mut connections = JoinSet::new();
    loop {
        while connections.try_join_next().is_some() {}
        let Ok((stream, _)) = listener.accept().await else {
            // Out of file descriptors and the like: do not spin.
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let (service, permit) = match served.clone().try_acquire_owned() {
            Ok(permit) => (metrics.clone(), permit),
            Err(_) => match refused.clone().try_acquire_owned() {
                Ok(permit) => (busy.clone(), permit),
                // Over both limits: closed at once, unread.
                Err(_) => continue,
            },
        };
        connections.spawn(async move {
            connection(stream, service, limits).await;
            drop(permit);
        });
    }
}

/// Serves one request on `stream` with `service`, within the limits, then closes.
async fn connection(mut stream: TcpStream, service: Router, limits: Limits) {
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(MAX_HEAD_BYTES)
        .keep_alive(false);
    let served = tokio::time::timeout(
        limits.connection_deadline,
        builder.serve_connection(TokioIo::new(&mut stream), TowerToHyperService::new(service)),
    )
    .await;
    if !matches!(served, Ok(Ok(()))) {
        // Refused (head too large or too slow, deadline passed): read and drop a little of what
        // the client may still be sending, so that closing with unread data does not reset the
        // connection before it reads the answer. Our side is shut first, so the client sees the
        // end of the answer at once.
        let _ = stream.shutdown().await;
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
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;

    fn sample() -> Snapshot {
        let mut snapshot = Snapshot {
            connected_peers: 2,
            outbox_pending: [1, 0, 4],
            delivered_total: 3,
            roster_serial: 7,
            roster_expires_in_s: -20,
            key_file_age_s: Some(60),
            overdue: [0, 1, 0],
            time_to_receipt: Histogram::new(&RECEIPT_BUCKETS),
            time_to_acknowledge: Histogram::new(&ACK_BUCKETS),
            ..Snapshot::default()
        };
        snapshot.time_to_receipt.observe(0.05);
        snapshot.time_to_receipt.observe(0.7);
        snapshot.time_to_receipt.observe(99_999.0);
        snapshot
    }

    #[test]
    fn histogram_buckets_are_cumulative_in_the_text() {
        let text = render(&sample());
        assert!(text.contains("quickfreeze_time_to_receipt_seconds_bucket{le=\"0.1\"} 1\n"));
        assert!(text.contains("quickfreeze_time_to_receipt_seconds_bucket{le=\"1.0\"} 2\n"));
        assert!(text.contains("quickfreeze_time_to_receipt_seconds_bucket{le=\"3600.0\"} 2\n"));
        assert!(text.contains("quickfreeze_time_to_receipt_seconds_bucket{le=\"+Inf\"} 3\n"));
        assert!(text.contains("quickfreeze_time_to_receipt_seconds_count 3\n"));
        assert!(text.contains("quickfreeze_time_to_acknowledge_seconds_count 0\n"));
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
            families, 18,
            "with quickfreeze_disk_low, quickfreeze_disk_refusals, \
             quickfreeze_member_misbehaviour and quickfreeze_stranger_refusals"
        );
        assert_eq!(
            families,
            text.lines()
                .filter(|line| line.starts_with("# HELP"))
                .count()
        );
        assert!(
            !text.contains("# EOF"),
            "the classic text has no EOF marker"
        );
    }

    #[test]
    fn sample_names_labels_and_help_are_kept() {
        let text = render(&sample());
        for line in [
            "quickfreeze_connected_peers 2\n",
            "quickfreeze_outbox_pending{priority=\"emergency\"} 1\n",
            "quickfreeze_outbox_pending{priority=\"urgent\"} 0\n",
            "quickfreeze_outbox_pending{priority=\"routine\"} 4\n",
            "quickfreeze_delivered_total 3\n",
            "quickfreeze_expired_total 0\n",
            "quickfreeze_rejected_total 0\n",
            "quickfreeze_received_total 0\n",
            "quickfreeze_roster_serial 7\n",
            "quickfreeze_roster_expires_in_seconds -20\n",
            "quickfreeze_key_file_age_seconds 60\n",
            "quickfreeze_overdue{clock=\"acknowledge\"} 1\n",
            "# HELP quickfreeze_connected_peers Roster members with a connection up.\n",
            "# TYPE quickfreeze_delivered counter\n",
            "# TYPE quickfreeze_time_to_receipt_seconds histogram\n",
        ] {
            assert!(text.contains(line), "missing {line:?} in\n{text}");
        }
        // Labelled series come in a fixed order, scrape after scrape.
        let emergency = text.find("priority=\"emergency\"").expect("emergency");
        let routine = text.find("priority=\"routine\"").expect("routine");
        assert!(emergency < routine);
        assert_eq!(text, render(&sample()));
        // No help text ends in two full stops.
        assert!(!text.contains(".."), "{text}");
        let without_key = Snapshot {
            key_file_age_s: None,
            ..sample()
        };
        assert!(!render(&without_key).contains("quickfreeze_key_file_age_seconds"));
    }

    #[test]
    fn refusals_are_labelled_by_member_and_strangers_are_summed() {
        let mut snapshot = sample();
        snapshot.member_misbehaviour = vec![
            MemberMisbehaviour {
                peer: "12D3KooWpeer".into(),
                country: "BR".into(),
                kind: "junk_frame".into(),
                count: 7,
            },
            MemberMisbehaviour {
                peer: "12D3KooWpeer".into(),
                country: "BR".into(),
                kind: "oversized_frame".into(),
                count: 2,
            },
        ];
        snapshot.stranger_refusals = vec![("pending_limit".into(), 300)];
        let text = render(&snapshot);
        for line in [
            "# TYPE quickfreeze_member_misbehaviour counter",
            r#"quickfreeze_member_misbehaviour_total{peer="12D3KooWpeer",country="BR",kind="junk_frame"} 7"#,
            r#"quickfreeze_member_misbehaviour_total{peer="12D3KooWpeer",country="BR",kind="oversized_frame"} 2"#,
            r#"quickfreeze_stranger_refusals_total{kind="pending_limit"} 300"#,
        ] {
            assert!(text.contains(line), "missing `{line}` in:\n{text}");
        }
        // Nothing refused: the metrics are declared, with no series.
        let quiet = render(&sample());
        assert!(quiet.contains("# TYPE quickfreeze_stranger_refusals counter"));
        assert!(!quiet.contains("quickfreeze_stranger_refusals_total{"));
    }

    #[test]
    fn openmetrics_ends_with_eof() {
        let text = exposition(&sample(), true).expect("encode");
        assert!(
            text.ends_with("quickfreeze_overdue{clock=\"status\"} 0\n# EOF\n"),
            "{text}"
        );
    }

    /// Starts an endpoint on a free loopback port; it stops when the returned task is dropped.
    async fn start<F, Fut>(snapshot: F, limits: Limits) -> (SocketAddr, AbortOnDrop)
    where
        F: Fn() -> Fut + Clone + Send + Sync + 'static,
        Fut: Future<Output = Option<Snapshot>> + Send + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address");
        let task = tokio::spawn(serve_with(listener, snapshot, limits));
        (address, AbortOnDrop(task))
    }

    /// Stops the endpoint also when a test fails.
    struct AbortOnDrop(tokio::task::JoinHandle<()>);

    impl Drop for AbortOnDrop {
        fn drop(&mut self) {
            self.0.abort();
        }
    }

    fn figures() -> impl Fn() -> std::future::Ready<Option<Snapshot>> + Clone + Send + Sync {
        || std::future::ready(Some(sample()))
    }

    /// Sends `request` and reads the answer until the server closes (bounded).
    async fn exchange(address: SocketAddr, request: &[u8]) -> String {
        let mut stream = TcpStream::connect(address).await.expect("connect");
        stream.write_all(request).await.expect("write");
        read_to_close(&mut stream).await
    }

    async fn read_to_close(stream: &mut TcpStream) -> String {
        let mut answer = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer))
            .await
            .expect("the server answers and closes within 10 s")
            .expect("read");
        String::from_utf8_lossy(&answer).into_owned()
    }

    fn status_line(answer: &str) -> &str {
        answer.lines().next().unwrap_or_default()
    }

    fn short() -> Limits {
        Limits {
            header_timeout: Duration::from_millis(300),
            answer_timeout: Duration::from_millis(300),
            connection_deadline: Duration::from_secs(5),
            max_connections: 1,
        }
    }

    #[tokio::test]
    async fn only_get_metrics_is_served() {
        let (address, _server) = start(figures(), Limits::default()).await;
        let ok = exchange(address, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert_eq!(status_line(&ok), "HTTP/1.1 200 OK", "{ok}");
        let lower = ok.to_ascii_lowercase();
        assert!(
            lower.contains("content-type: text/plain; version=0.0.4"),
            "{ok}"
        );
        assert!(lower.contains("connection: close"), "{ok}");
        assert!(
            ok.contains("\r\n\r\n# HELP quickfreeze_connected_peers"),
            "{ok}"
        );
        assert!(!ok.contains("# EOF"));

        let query = exchange(address, b"GET /metrics?x=1 HTTP/1.0\r\n\r\n").await;
        assert_eq!(status_line(&query), "HTTP/1.0 200 OK", "{query}");

        let open = exchange(
            address,
            b"GET /metrics HTTP/1.1\r\nAccept: application/openmetrics-text;version=1.0.0,text/plain;q=0.5\r\n\r\n",
        )
        .await;
        assert!(open
            .to_ascii_lowercase()
            .contains("content-type: application/openmetrics-text; version=1.0.0"));
        assert!(open.ends_with("# EOF\n"), "{open}");

        let not_found = exchange(address, b"GET / HTTP/1.1\r\n\r\n").await;
        assert_eq!(status_line(&not_found), "HTTP/1.1 404 Not Found");
        assert!(not_found.ends_with("only /metrics is served here\n"));
        let wrong_method = exchange(address, b"POST /metrics HTTP/1.1\r\n\r\n").await;
        assert_eq!(
            status_line(&wrong_method),
            "HTTP/1.1 405 Method Not Allowed"
        );
        assert!(
            wrong_method.to_ascii_lowercase().contains("allow: get"),
            "{wrong_method}"
        );
        let spdy = exchange(address, b"GET /metrics SPDY/3\r\n\r\n").await;
        assert_eq!(status_line(&spdy), "HTTP/1.1 400 Bad Request");
        let binary = exchange(address, b"\xff\xfe\r\n\r\n").await;
        assert_eq!(status_line(&binary), "HTTP/1.1 400 Bad Request");
    }

    #[tokio::test]
    async fn an_oversized_head_is_refused_with_431() {
        let (address, _server) = start(figures(), Limits::default()).await;
        let huge = format!(
            "GET /metrics HTTP/1.1\r\nX: {}\r\n\r\n",
            "a".repeat(MAX_HEAD_BYTES + 2_000)
        );
        let answer = exchange(address, huge.as_bytes()).await;
        assert_eq!(
            status_line(&answer),
            "HTTP/1.1 431 Request Header Fields Too Large"
        );
        // Just under the limit is still served.
        let fits = format!(
            "GET /metrics HTTP/1.1\r\nX: {}\r\n\r\n",
            "a".repeat(MAX_HEAD_BYTES - 200)
        );
        let answer = exchange(address, fits.as_bytes()).await;
        assert_eq!(status_line(&answer), "HTTP/1.1 200 OK");
    }

    #[tokio::test]
    async fn a_slow_client_is_closed_after_the_header_timeout() {
        let (address, _server) = start(figures(), short()).await;
        let mut stream = TcpStream::connect(address).await.expect("connect");
        stream
            .write_all(b"GET /metrics HTTP/1.1\r\nHost:")
            .await
            .expect("write");
        let started = tokio::time::Instant::now();
        let answer = read_to_close(&mut stream).await;
        assert!(!answer.contains("200 OK"), "{answer}");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "closed after {:?}",
            started.elapsed()
        );
        // The slot comes back: a prompt client is served.
        drop(stream);
        until_served(address).await;
    }

    /// Asks until a scrape gets `200` (a freed slot is returned when its task ends); bounded.
    async fn until_served(address: SocketAddr) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let answer = exchange(address, b"GET /metrics HTTP/1.1\r\n\r\n").await;
            if status_line(&answer) == "HTTP/1.1 200 OK" {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "slot not freed: {answer}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    #[tokio::test]
    async fn connections_over_the_limit_get_503_then_are_closed_unread() {
        let limits = Limits {
            header_timeout: Duration::from_secs(20),
            connection_deadline: Duration::from_secs(30),
            ..short()
        };
        let (address, _server) = start(figures(), limits).await;
        // Holds the one served slot without sending anything.
        let mut holder = TcpStream::connect(address).await.expect("connect");
        // The next one is over the limit: told 503 once its request is in. (Accept order is
        // connect order, so the holder has the served slot; the loop only rides out a race.)
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        let busy = loop {
            let answer = exchange(address, b"GET /metrics HTTP/1.1\r\n\r\n").await;
            if status_line(&answer) == "HTTP/1.1 503 Service Unavailable" {
                break answer;
            }
            assert!(tokio::time::Instant::now() < deadline, "no 503: {answer}");
            tokio::task::yield_now().await;
        };
        assert!(busy.contains("too many connections"), "{busy}");
        // Holding the 503 slot too, a third connection is closed at once without an answer.
        let mut second = TcpStream::connect(address).await.expect("connect");
        let mut third = TcpStream::connect(address).await.expect("connect");
        let answer = read_to_close(&mut third).await;
        assert!(answer.is_empty(), "{answer}");
        // Once the holders leave, their slots come back.
        holder.shutdown().await.expect("shutdown");
        second.shutdown().await.expect("shutdown");
        drop((holder, second));
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let answer = exchange(address, b"GET /metrics HTTP/1.1\r\n\r\n").await;
            if status_line(&answer) == "HTTP/1.1 200 OK" {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "slot not freed: {answer}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    #[tokio::test]
    async fn a_stopping_or_silent_daemon_gets_503() {
        let (address, _server) = start(|| std::future::ready(None), short()).await;
        let answer = exchange(address, b"GET /metrics HTTP/1.1\r\n\r\n").await;
        assert_eq!(status_line(&answer), "HTTP/1.1 503 Service Unavailable");
        let (address, _server) = start(std::future::pending, short()).await;
        let answer = exchange(address, b"GET /metrics HTTP/1.1\r\n\r\n").await;
        assert_eq!(status_line(&answer), "HTTP/1.1 503 Service Unavailable");
    }
}
