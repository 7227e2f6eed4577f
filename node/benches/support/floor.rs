//! The physical floor of one request and its receipt, measured in the same process run as the
//! project figures it is compared with (issue 17): absolute times on two shared cores move by
//! tens of percent from one hour to the next, a ratio to a floor measured beside them does not.
//!
//! Four floors, each with the real code or the plain operating-system operation:
//! - **crypto + codec**: `seal` a 2 KiB preservation request, `to_bytes`, `from_bytes`, `open`,
//!   sign the delivery receipt, encode and decode it, `verify_for` — the proto functions the
//!   daemon calls, on one thread;
//! - **fdatasync** of a small (256 B) write into a preallocated file on the filesystem the
//!   nodes' stores live on (data only, as for sled's preallocated segments);
//! - **store**: sled inserts of 2.3 KB records, 100 per `flush` + `sync_data` (group commit),
//!   per record;
//! - **raw TCP request + receipt** on loopback, no libp2p: the sender appends the request to a
//!   log and fdatasyncs it, sends 2 KiB; the receiver appends and fdatasyncs, answers 200 B; the
//!   sender writes the receipt and fdatasyncs (preallocated logs, written in place). Three durable writes in series, as the project
//!   makes (accept, store at the receiver, store the receipt), one flush per message.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use quickfreeze_keys::roster::{Member, Role, Roster};
use quickfreeze_keys::{CountryCode, EncryptionKey, Identity, Timestamp};
use quickfreeze_proto::envelope::{digest_bytes, open, seal, AcceptPolicy, Envelope, SealParams};
use quickfreeze_proto::payload::{example_preservation, Payload};
use quickfreeze_proto::receipt::{Receipt, ReceiptBody, ReceiptKind};
use quickfreeze_proto::{MessageId, Priority};
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;

/// Encoded size of the request payload.
pub(crate) const REQUEST_BYTES: usize = 2048;
/// Size of the raw-TCP floor's receipt.
pub(crate) const RECEIPT_BYTES: usize = 200;
/// libp2p's own CPU per request/response on the reference machine (performance-floor.md:
/// ≈ 7,500 small request/responses per second over TCP on 2 cores ≈ 0.27 ms each), scaled to
/// this run by the ratio of the crypto floor measured now to the reference one.
pub(crate) const LIBP2P_REFERENCE_US: f64 = 270.0;
/// The reference machine's crypto + codec floor (performance-floor.md, middle of 296–313 µs).
pub(crate) const CRYPTO_REFERENCE_US: f64 = 305.0;

/// A latency distribution in microseconds.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Spread {
    /// Median.
    pub(crate) p50_us: f64,
    /// 99th percentile.
    pub(crate) p99_us: f64,
}

impl Spread {
    fn of(histogram: &Histogram<u64>) -> Spread {
        // Recorded in nanoseconds for resolution.
        Spread {
            p50_us: histogram.value_at_quantile(0.5) as f64 / 1000.0,
            p99_us: histogram.value_at_quantile(0.99) as f64 / 1000.0,
        }
    }
}

/// Everything measured by [`measure`].
#[derive(Clone, Copy, Debug)]
pub(crate) struct Floor {
    /// seal (encode payload, ephemeral X25519, DH, HKDF, AEAD, Ed25519 sign) + `to_bytes`.
    pub(crate) seal: Spread,
    /// `from_bytes` + open (verify, DH, HKDF, AEAD, decode) + sign receipt + encode it.
    pub(crate) open_and_receipt: Spread,
    /// receipt `from_bytes` + `verify_for`.
    pub(crate) verify_receipt: Spread,
    /// The whole path of one request and receipt, one core.
    pub(crate) crypto_path: Spread,
    /// fdatasync of a 256 B write into a preallocated file.
    pub(crate) fdatasync: Spread,
    /// sled: per record, 100 inserts per flush + sync_data.
    pub(crate) store_per_message_us: f64,
    /// Loopback TCP 2 KiB / 200 B round trip, no disk.
    pub(crate) tcp_round_trip: Spread,
    /// Raw TCP request + receipt with a durable write per message at each step.
    pub(crate) tcp_request_receipt: Spread,
    /// Cores this process may use.
    pub(crate) cores: usize,
}

impl Floor {
    /// The mean of two measurements (before and after a run), field by field.
    pub(crate) fn mean(&self, other: &Floor) -> Floor {
        let spread = |a: Spread, b: Spread| Spread {
            p50_us: (a.p50_us + b.p50_us) / 2.0,
            p99_us: (a.p99_us + b.p99_us) / 2.0,
        };
        Floor {
            seal: spread(self.seal, other.seal),
            open_and_receipt: spread(self.open_and_receipt, other.open_and_receipt),
            verify_receipt: spread(self.verify_receipt, other.verify_receipt),
            crypto_path: spread(self.crypto_path, other.crypto_path),
            fdatasync: spread(self.fdatasync, other.fdatasync),
            store_per_message_us: (self.store_per_message_us + other.store_per_message_us) / 2.0,
            tcp_round_trip: spread(self.tcp_round_trip, other.tcp_round_trip),
            tcp_request_receipt: spread(self.tcp_request_receipt, other.tcp_request_receipt),
            cores: self.cores,
        }
    }

    /// The realistic two-node ceiling in requests per second on this machine now: every core
    /// busy with the crypto floor, libp2p's share (reference figure scaled by this run's crypto
    /// floor against the reference one) and the group-committed store, per request.
    pub(crate) fn ceiling_per_s(&self) -> f64 {
        self.cores as f64 * 1e6 / self.ceiling_cpu_us()
    }

    /// CPU per request behind [`Floor::ceiling_per_s`], microseconds.
    pub(crate) fn ceiling_cpu_us(&self) -> f64 {
        let speed = self.crypto_path.p50_us / CRYPTO_REFERENCE_US;
        // Each request is stored twice (sender, receiver) and its receipt once more.
        self.crypto_path.p50_us + LIBP2P_REFERENCE_US * speed + 3.0 * self.store_per_message_us
    }

    /// The floor as markdown table rows (`| what | p50 | p99 |`).
    pub(crate) fn table(&self) -> String {
        let rows = [
            ("seal + encode (sender)", self.seal),
            (
                "decode + open + sign receipt + encode (receiver)",
                self.open_and_receipt,
            ),
            ("decode + verify receipt (sender)", self.verify_receipt),
            (
                "**crypto + codec path, one request and receipt, one core**",
                self.crypto_path,
            ),
            (
                "fdatasync of a 256 B write, preallocated file, store filesystem",
                self.fdatasync,
            ),
            ("loopback TCP round trip 2 KiB / 200 B", self.tcp_round_trip),
            (
                "**raw TCP request + receipt, fdatasync per message (3 in series)**",
                self.tcp_request_receipt,
            ),
        ];
        let mut text = String::from("| floor | p50 µs | p99 µs |\n|---|---:|---:|\n");
        for (what, spread) in rows {
            text.push_str(&format!(
                "| {what} | {:.1} | {:.1} |\n",
                spread.p50_us, spread.p99_us
            ));
        }
        text.push_str(&format!(
            "| sled, 100 inserts of 2.3 KB per flush + sync_data, per record | {:.1} | — |\n",
            self.store_per_message_us
        ));
        text.push_str(&format!(
            "| realistic ceiling: {} cores / (crypto {:.0} + libp2p {:.0} (scaled) + 3 × store {:.1}) µs | {:.0} req/s | — |\n",
            self.cores,
            self.crypto_path.p50_us,
            LIBP2P_REFERENCE_US * self.crypto_path.p50_us / CRYPTO_REFERENCE_US,
            self.store_per_message_us,
            self.ceiling_per_s()
        ));
        text
    }
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("histogram bounds")
}

fn record(histogram: &mut Histogram<u64>, elapsed: Duration) {
    histogram.saturating_record(elapsed.as_nanos().min(u64::MAX as u128) as u64);
}

/// Measures every floor; `dir` must be on the filesystem the nodes' stores use. `samples` per
/// measurement (a few hundred take about ten seconds in all).
pub(crate) fn measure(dir: &Path, samples: usize) -> Floor {
    let (seal, open_and_receipt, verify_receipt, crypto_path) = crypto(samples);
    let fdatasync = fdatasync(dir, samples);
    let store_per_message_us = store(dir, samples.max(100));
    let tcp_round_trip = tcp(dir, samples, false);
    let tcp_request_receipt = tcp(dir, samples, true);
    Floor {
        seal,
        open_and_receipt,
        verify_receipt,
        crypto_path,
        fdatasync,
        store_per_message_us,
        tcp_round_trip,
        tcp_request_receipt,
        cores: std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get),
    }
}

fn member(who: &Identity, country: &str, now: Timestamp) -> Member {
    Member {
        node_id: who.node_id(),
        country: CountryCode::parse(country).expect("valid country"),
        authority_name: format!("floor {country}"),
        role: Role::PointOfContact,
        encryption_key: EncryptionKey(who.encryption_public()),
        addresses: vec!["/ip4/127.0.0.1/tcp/4001".into()],
        relays: vec![],
        valid_from: Timestamp(now.0 - 86_400_000),
        valid_until: now.plus_ms(86_400_000),
        on_duty_contact: "+00 555 0100".into(),
        signing_key: None,
        previous_keys: Vec::new(),
    }
}

/// The example preservation request padded to exactly [`REQUEST_BYTES`] encoded.
pub(crate) fn request_2k() -> Payload {
    let mut request = example_preservation();
    let base = Payload::Preservation(request.clone())
        .to_bytes()
        .expect("encode")
        .len();
    assert!(base <= REQUEST_BYTES, "example is {base} bytes");
    request
        .facts_summary
        .push_str(&" details".repeat(REQUEST_BYTES)[..REQUEST_BYTES - base]);
    Payload::Preservation(request)
}

fn crypto(samples: usize) -> (Spread, Spread, Spread, Spread) {
    let mut rng = ChaCha20Rng::from_seed([17; 32]);
    let sender = Identity::generate(&mut rng);
    let recipient = Identity::generate(&mut rng);
    let now = Timestamp::now();
    let roster = Roster {
        network: "floor".into(),
        serial: 1,
        issued_at: now,
        expires_at: now.plus_ms(86_400_000),
        threshold: 1,
        authorities: vec![],
        members: vec![member(&sender, "BE", now), member(&recipient, "DE", now)],
    };
    let to = roster.member(&recipient.node_id()).expect("member").clone();
    let payload = request_2k();
    let policy = AcceptPolicy::default();
    let (mut seal_h, mut open_h, mut verify_h, mut path_h) =
        (histogram(), histogram(), histogram(), histogram());
    // A few unrecorded rounds first: caches, lazy tables.
    for round in 0..samples + 20 {
        let params = SealParams {
            message_id: MessageId::random(&mut rng),
            created_at: now,
            expires_at: now.plus_ms(3_600_000),
            priority: Priority::Urgent,
        };
        let started = Instant::now();
        let wire = seal(&sender, &to, &payload, params, &mut rng)
            .expect("seal")
            .to_bytes();
        let sealed = Instant::now();
        let envelope = Envelope::from_bytes(&wire).expect("decode envelope");
        open(&recipient, &roster, &envelope, now, &policy).expect("open");
        let digest = digest_bytes(&wire);
        let receipt = Receipt::sign(
            &recipient,
            ReceiptBody {
                message_id: envelope.header.message_id,
                envelope_digest: digest,
                sender: envelope.header.sender,
                recipient: envelope.header.recipient,
                signer: recipient.node_id(),
                received_at: now,
                kind: ReceiptKind::Delivered,
            },
        )
        .to_bytes();
        let opened = Instant::now();
        Receipt::from_bytes(&receipt)
            .expect("decode receipt")
            .verify_for(
                &roster,
                now,
                &envelope.header.message_id,
                &envelope.header.sender,
                &envelope.header.recipient,
                &digest,
            )
            .expect("verify receipt");
        let verified = Instant::now();
        if round >= 20 {
            record(&mut seal_h, sealed - started);
            record(&mut open_h, opened - sealed);
            record(&mut verify_h, verified - opened);
            record(&mut path_h, verified - started);
        }
    }
    (
        Spread::of(&seal_h),
        Spread::of(&open_h),
        Spread::of(&verify_h),
        Spread::of(&path_h),
    )
}

/// A preallocated log file overwritten in place, so that `fdatasync` commits data only (as for
/// sled's preallocated segments), not a file-size change through the filesystem journal.
struct DurableLog {
    file: std::fs::File,
    offset: u64,
}

const LOG_BYTES: u64 = 1 << 20;

fn durable_log(dir: &Path, name: &str) -> DurableLog {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(dir.join(name))
        .expect("floor log file");
    use std::os::unix::fs::FileExt;
    file.write_all_at(&vec![0u8; LOG_BYTES as usize], 0)
        .expect("preallocate floor log");
    file.sync_all().expect("sync floor log");
    DurableLog { file, offset: 0 }
}

fn durable_append(log: &mut DurableLog, bytes: &[u8]) {
    use std::os::unix::fs::FileExt;
    if log.offset + bytes.len() as u64 > LOG_BYTES {
        log.offset = 0;
    }
    log.file
        .write_all_at(bytes, log.offset)
        .expect("write floor log");
    log.offset += bytes.len() as u64;
    log.file.sync_data().expect("fdatasync");
}

fn fdatasync(dir: &Path, samples: usize) -> Spread {
    let mut file = durable_log(dir, "floor-fdatasync.log");
    let record_bytes = [0x5a_u8; 256];
    let mut h = histogram();
    for round in 0..samples + 10 {
        let started = Instant::now();
        durable_append(&mut file, &record_bytes);
        if round >= 10 {
            record(&mut h, started.elapsed());
        }
    }
    Spread::of(&h)
}

fn store(dir: &Path, records: usize) -> f64 {
    let path = dir.join("floor-sled");
    let db = sled::Config::new()
        .path(&path)
        .cache_capacity(4 << 20)
        .open()
        .expect("sled");
    let tree = db.open_tree("floor").expect("tree");
    let value = vec![0xa5_u8; 2300];
    let db_file = std::fs::File::open(path.join("db")).expect("sled db file");
    let batches = records.div_ceil(100).max(3);
    let started = Instant::now();
    for batch in 0..batches {
        for index in 0..100u64 {
            tree.insert(
                ((batch as u64) * 100 + index).to_be_bytes(),
                value.as_slice(),
            )
            .expect("insert");
        }
        db.flush().expect("flush");
        db_file.sync_data().expect("sync_data");
    }
    started.elapsed().as_secs_f64() * 1e6 / (batches * 100) as f64
}

fn tcp(dir: &Path, samples: usize, durable: bool) -> Spread {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    let address = listener.local_addr().expect("address");
    let receiver_log = dir.to_path_buf();
    let server = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().expect("accept");
        stream.set_nodelay(true).expect("nodelay");
        let mut log = durable.then(|| durable_log(&receiver_log, "floor-receiver.log"));
        let mut request = vec![0u8; REQUEST_BYTES];
        let receipt = [0x33_u8; RECEIPT_BYTES];
        while stream.read_exact(&mut request).is_ok() {
            if let Some(log) = log.as_mut() {
                durable_append(log, &request);
            }
            if stream.write_all(&receipt).is_err() {
                break;
            }
        }
    });
    let mut stream = TcpStream::connect(address).expect("connect");
    stream.set_nodelay(true).expect("nodelay");
    let mut log = durable.then(|| durable_log(dir, "floor-sender.log"));
    let request = [0x44_u8; REQUEST_BYTES];
    let mut receipt = [0u8; RECEIPT_BYTES];
    let mut h = histogram();
    for round in 0..samples + 20 {
        let started = Instant::now();
        if let Some(log) = log.as_mut() {
            durable_append(log, &request);
        }
        stream.write_all(&request).expect("send request");
        stream.read_exact(&mut receipt).expect("read receipt");
        if let Some(log) = log.as_mut() {
            durable_append(log, &receipt);
        }
        if round >= 20 {
            record(&mut h, started.elapsed());
        }
    }
    drop(stream);
    server.join().expect("floor server");
    Spread::of(&h)
}
