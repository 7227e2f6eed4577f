//! A full disk, with real `quickfreeze run` processes: the receiving node's data directory is on
//! a small tmpfs that this test mounts (tests run as root here) and unmounts again in a guard,
//! also when the test fails.
//!
//! 1. Below the low-water mark the node refuses new submissions (a clear, retryable error) and
//!    incoming deliveries (retryable: the sender keeps them), answers `status` within 2 s
//!    throughout, and takes everything once space returns; nothing acknowledged is lost and
//!    nothing is stored twice.
//! 2. With the low-water mark off, a disk that really fills makes the node stop with a log line
//!    (a failed or stalled commit), never hang.
//!
//! Mounting needs root. Without it the tests fail with a clear message, unless
//! `QF_SKIP_MOUNT_TESTS=1` is set, which skips them.

mod common;

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use quickfreeze_node::config::{files, NodeConfig};
use quickfreeze_node::control::{ControlClient, ControlRequest, ControlResponse};
use quickfreeze_proto::payload::{example_free_text, Payload};

use common::NodeProcess;

const MIB: u64 = 1024 * 1024;

/// A tmpfs mounted for the test; unmounted (lazily, so a busy mount cannot keep it) on drop.
struct Tmpfs {
    path: PathBuf,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size_mib` at `path`; `None` when mounting is not permitted and
    /// `QF_SKIP_MOUNT_TESTS=1` says to skip.
    fn mount(path: &Path, size_mib: u64) -> Option<Tmpfs> {
        std::fs::create_dir_all(path).expect("mount point");
        let output = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size_mib}m,mode=0700"),
                "tmpfs",
            ])
            .arg(path)
            .output();
        match output {
            Ok(output) if output.status.success() => Some(Tmpfs {
                path: path.to_path_buf(),
            }),
            other => {
                let why = match other {
                    Ok(output) => String::from_utf8_lossy(&output.stderr).into_owned(),
                    Err(error) => error.to_string(),
                };
                if std::env::var("QF_SKIP_MOUNT_TESTS").as_deref() == Ok("1") {
                    eprintln!("skipped: cannot mount a tmpfs ({why}) and QF_SKIP_MOUNT_TESTS=1");
                    return None;
                }
                panic!(
                    "this test mounts a small tmpfs and needs root (or CAP_SYS_ADMIN): mount said {why}. Run it as root, or set QF_SKIP_MOUNT_TESTS=1 to skip it"
                );
            }
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

/// Copies `dir` onto the tmpfs (its config names "." as its data directory, so the copy runs
/// on its own store) and sets the disk options.
fn move_onto(dir: &Path, mount: &Path, low_water_mib: u64, commit_timeout_s: u64) -> PathBuf {
    let target = mount.join(dir.file_name().expect("name"));
    let status = Command::new("cp")
        .arg("-a")
        .arg(dir)
        .arg(&target)
        .status()
        .expect("cp");
    assert!(status.success(), "cp -a to the tmpfs failed");
    let path = target.join(files::CONFIG);
    let mut config = NodeConfig::load(&path).expect("config");
    config.data_dir = PathBuf::from(".");
    config.store.low_water_mib = low_water_mib;
    config.store.low_water_percent = 0;
    config.store.commit_timeout_s = commit_timeout_s;
    config.store.cache_capacity_bytes = 4 * MIB;
    std::fs::write(&path, toml::to_string(&config).expect("toml")).expect("config");
    target
}

/// Bytes available on the filesystem holding `path` (`df`).
fn available(path: &Path) -> u64 {
    let output = Command::new("df")
        .args(["-B1", "--output=avail"])
        .arg(path)
        .output()
        .expect("df");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .nth(1)
        .and_then(|line| line.trim().parse().ok())
        .expect("df prints the available bytes")
}

/// Writes real bytes (tmpfs allocates on write) until at most `leave` bytes are available, or
/// the disk is full.
fn fill(path: &Path, leave: u64) {
    let mut file = std::fs::File::create(path).expect("filler");
    let chunk = vec![0x5a_u8; 64 * 1024];
    loop {
        let free = available(path);
        if free <= leave {
            break;
        }
        let step = usize::try_from((free - leave).min(MIB)).expect("fits");
        let mut left = step;
        while left > 0 {
            let n = left.min(chunk.len());
            if file.write_all(&chunk[..n]).is_err() {
                return; // full
            }
            left -= n;
        }
        let _ = file.flush();
    }
}

fn free_text(subject: &str) -> Payload {
    let mut text = example_free_text();
    text.subject = subject.into();
    Payload::FreeText(text)
}

fn request(dir: &Path, request: &ControlRequest) -> Result<ControlResponse, String> {
    let mut client =
        ControlClient::connect(dir, Duration::from_secs(10)).map_err(|error| error.to_string())?;
    client.request(request).map_err(|error| error.to_string())
}

fn submit(dir: &Path, to: &str, subject: &str) -> ControlResponse {
    request(
        dir,
        &ControlRequest::Submit {
            recipient: to.into(),
            payload: Box::new(free_text(subject)),
        },
    )
    .expect("console answers")
}

fn inbox_ids(dir: &Path) -> Vec<String> {
    match request(dir, &ControlRequest::Inbox { limit: 10_000 }).expect("inbox") {
        ControlResponse::Inbox { rows } => rows.into_iter().map(|row| row.message_id).collect(),
        other => panic!("inbox: {other:?}"),
    }
}

fn outbox_states(dir: &Path) -> Vec<(String, String)> {
    match request(dir, &ControlRequest::Outbox { limit: 10_000 }).expect("outbox") {
        ControlResponse::Outbox { rows } => rows
            .into_iter()
            .map(|row| (row.message_id, row.state))
            .collect(),
        other => panic!("outbox: {other:?}"),
    }
}

fn disk_low(dir: &Path) -> Option<String> {
    match request(dir, &ControlRequest::Status).expect("status") {
        ControlResponse::Status { report } => report.disk_low,
        other => panic!("status: {other:?}"),
    }
}

fn disk_refusals(dir: &Path) -> u64 {
    match request(dir, &ControlRequest::MetricsSnapshot).expect("snapshot") {
        ControlResponse::MetricsSnapshot { snapshot } => snapshot.disk_refusals_total,
        other => panic!("snapshot: {other:?}"),
    }
}

/// Waits for `condition` with a bounded deadline; panics with `what` when it runs out.
fn wait_for(what: &str, timeout: Duration, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !condition() {
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?}: {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Asks `status` every 100 ms from its own thread and keeps the slowest answer and any failure.
struct StatusProbe {
    stop: Arc<AtomicBool>,
    worst: Arc<Mutex<(Duration, Vec<String>)>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl StatusProbe {
    fn start(dir: &Path) -> StatusProbe {
        let stop = Arc::new(AtomicBool::new(false));
        let worst = Arc::new(Mutex::new((Duration::ZERO, Vec::new())));
        let (dir, flag, record) = (dir.to_path_buf(), stop.clone(), worst.clone());
        let thread = std::thread::spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                let started = Instant::now();
                let answer = request(&dir, &ControlRequest::Status);
                let took = started.elapsed();
                let mut record = record.lock().expect("lock");
                record.0 = record.0.max(took);
                match answer {
                    Ok(ControlResponse::Status { .. }) => {}
                    other => record.1.push(format!("{other:?}")),
                }
                drop(record);
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        StatusProbe {
            stop,
            worst,
            thread: Some(thread),
        }
    }

    fn finish(mut self) -> (Duration, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            thread.join().expect("probe thread");
        }
        self.worst.lock().expect("lock").clone()
    }
}

impl Drop for StatusProbe {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

#[test]
fn below_the_low_water_mark_the_node_refuses_retryably_answers_and_resumes() {
    let root = tempfile::tempdir().expect("tempdir");
    let dirs = common::network(root.path(), "diskfull", &["DE", "FR"]);
    let Some(tmpfs) = Tmpfs::mount(&root.path().join("small"), 24) else {
        return;
    };
    let de_dir = dirs[0].clone();
    let fr_dir = move_onto(&dirs[1], &tmpfs.path, 4, 10);
    let de = NodeProcess::start(&de_dir);
    let fr = NodeProcess::start(&fr_dir);
    let probe = StatusProbe::start(&fr_dir);

    // Before: deliveries go through.
    let mut sent = Vec::new();
    for index in 0..5 {
        match submit(&de_dir, "FR", &format!("before {index}")) {
            ControlResponse::Submitted { message_id, .. } => sent.push(message_id),
            other => panic!("submit: {other:?}"),
        }
    }
    wait_for(
        "the first 5 requests reach FR",
        Duration::from_secs(60),
        || inbox_ids(&fr_dir).len() == 5,
    );
    assert!(disk_low(&fr_dir).is_none(), "plenty of space yet");

    // Fill the disk to below the mark (4 MiB): 2 MiB left.
    let filler = tmpfs.path.join("filler");
    fill(&filler, 2 * MIB);
    wait_for("FR notices the low disk", Duration::from_secs(10), || {
        disk_low(&fr_dir).is_some()
    });
    let refusal = disk_low(&fr_dir).expect("low");
    assert!(refusal.contains("disk nearly full"), "{refusal}");
    assert!(refusal.contains("free space and retry"), "{refusal}");

    // A new submission at FR is refused with that message.
    match submit(&fr_dir, "DE", "while full") {
        ControlResponse::Error { message } => {
            assert!(message.contains("disk nearly full"), "{message}");
        }
        other => panic!("a submission on a full disk was not refused: {other:?}"),
    }

    // Requests in flight to FR: refused retryably, kept and retried by DE.
    let refusals_before = disk_refusals(&fr_dir);
    let mut in_flight = Vec::new();
    for index in 0..5 {
        match submit(&de_dir, "FR", &format!("during {index}")) {
            ControlResponse::Submitted { message_id, .. } => in_flight.push(message_id),
            other => panic!("submit at DE: {other:?}"),
        }
    }
    wait_for(
        "FR refuses DE's deliveries at least twice (DE retries)",
        Duration::from_secs(30),
        || disk_refusals(&fr_dir) >= refusals_before + 2,
    );
    assert_eq!(inbox_ids(&fr_dir).len(), 5, "nothing stored while full");
    for (id, state) in outbox_states(&de_dir) {
        if in_flight.contains(&id) {
            assert!(
                !state.contains("deliver")
                    && !state.contains("reject")
                    && !state.contains("expire"),
                "{id} is {state} while FR's disk is full"
            );
        }
    }

    // Space returns: FR resumes by itself and takes everything, once each.
    std::fs::remove_file(&filler).expect("remove filler");
    wait_for("FR resumes", Duration::from_secs(10), || {
        disk_low(&fr_dir).is_none()
    });
    sent.extend(in_flight.iter().cloned());
    wait_for("all 10 requests reach FR", Duration::from_secs(90), || {
        inbox_ids(&fr_dir).len() >= 10
    });
    wait_for(
        "DE holds a delivery receipt for all 10",
        Duration::from_secs(60),
        || {
            let states = outbox_states(&de_dir);
            sent.iter().all(|id| {
                states
                    .iter()
                    .any(|(row, state)| row == id && state.contains("delivered"))
            })
        },
    );
    let inbox = inbox_ids(&fr_dir);
    let unique: BTreeSet<&String> = inbox.iter().collect();
    assert_eq!(inbox.len(), 10, "each request exactly once: {inbox:?}");
    assert_eq!(unique.len(), 10);
    for id in &sent {
        assert!(unique.contains(id), "{id} lost");
    }
    let (worst, failures) = probe.finish();
    eprintln!(
        "status answered within {worst:?} at worst; FR refused {} deliveries or submissions while full",
        disk_refusals(&fr_dir)
    );
    assert!(failures.is_empty(), "status failed: {failures:?}");
    assert!(
        worst < Duration::from_secs(2),
        "status took {worst:?} at worst"
    );
    let log = std::fs::read_to_string(fr_dir.join("node.log")).unwrap_or_default();
    assert!(log.contains("DISK LOW"), "the low disk is logged");
    drop((de, fr));
}

/// A child process killed (if still running) on drop.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_disk_that_really_fills_stops_the_node_with_a_log_line_instead_of_a_hang() {
    let root = tempfile::tempdir().expect("tempdir");
    let dirs = common::network(root.path(), "diskstall", &["DE", "FR"]);
    let Some(tmpfs) = Tmpfs::mount(&root.path().join("small"), 16) else {
        return;
    };
    // No low-water mark: the disk really fills; the commit bound is 3 s.
    let fr_dir = move_onto(&dirs[1], &tmpfs.path, 0, 3);
    // The log goes to the test's own disk, not the full one.
    let log_path = root.path().join("fr-stall.log");
    let mut fr = Child(
        Command::new(common::binary())
            .args(["run", "--data-dir"])
            .arg(&fr_dir)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&log_path).expect("log"))
            .spawn()
            .expect("FR starts"),
    );
    wait_for("FR's console answers", Duration::from_secs(30), || {
        request(&fr_dir, &ControlRequest::Status).is_ok()
    });
    fill(&tmpfs.path.join("filler"), 0);
    // Submissions write to the full disk until a commit fails or stalls.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut index = 0;
    let status = loop {
        if let Some(status) = fr.0.try_wait().expect("wait") {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "the node neither failed nor stopped on a full disk within 60 s"
        );
        let _ = request(
            &fr_dir,
            &ControlRequest::Submit {
                recipient: "DE".into(),
                payload: Box::new(free_text(&format!("filling {index}"))),
            },
        );
        index += 1;
        std::thread::sleep(Duration::from_millis(20));
    };
    eprintln!("FR stopped after {index} submissions on a full disk: {status}");
    assert!(!status.success(), "stopped with an error status: {status}");
    let log = std::fs::read_to_string(&log_path).unwrap_or_default();
    assert!(
        log.contains("group commit failed") || log.contains("did not finish within"),
        "the stop is logged; log:\n{log}"
    );
    for line in log.lines().filter(|line| line.contains("ERROR")) {
        eprintln!("{line}");
    }
    drop(fr);
}

/// A small ext4 filesystem on a loop device, for `fsfreeze` (tmpfs cannot be frozen); unmounted
/// on drop.
struct LoopFs {
    path: PathBuf,
}

impl LoopFs {
    fn mount(image: &Path, path: &Path, size_mib: u64) -> Option<LoopFs> {
        std::fs::create_dir_all(path).expect("mount point");
        std::fs::File::create(image)
            .and_then(|file| file.set_len(size_mib * MIB))
            .expect("image");
        let made = Command::new("mkfs.ext4")
            .args(["-q", "-F"])
            .arg(image)
            .output();
        let mounted = made.and_then(|made| {
            if !made.status.success() {
                return Ok(made);
            }
            Command::new("mount")
                .args(["-o", "loop"])
                .arg(image)
                .arg(path)
                .output()
        });
        match mounted {
            Ok(output) if output.status.success() => Some(LoopFs {
                path: path.to_path_buf(),
            }),
            other => {
                let why = match other {
                    Ok(output) => String::from_utf8_lossy(&output.stderr).into_owned(),
                    Err(error) => error.to_string(),
                };
                if std::env::var("QF_SKIP_MOUNT_TESTS").as_deref() == Ok("1") {
                    eprintln!(
                        "skipped: cannot mount a loop device ({why}) and QF_SKIP_MOUNT_TESTS=1"
                    );
                    return None;
                }
                panic!(
                    "this test mounts an ext4 image on a loop device and needs root with mkfs.ext4 and fsfreeze: {why}. Run it as root, or set QF_SKIP_MOUNT_TESTS=1 to skip it"
                );
            }
        }
    }
}

impl Drop for LoopFs {
    fn drop(&mut self) {
        let _ = Command::new("fsfreeze")
            .arg("-u")
            .arg(&self.path)
            .stderr(std::process::Stdio::null())
            .status();
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

/// Freezes a filesystem (every write blocks, as on a stalled disk) until dropped.
struct Frozen(PathBuf);

impl Frozen {
    fn freeze(path: &Path) -> Frozen {
        let status = Command::new("fsfreeze")
            .arg("-f")
            .arg(path)
            .status()
            .expect("fsfreeze");
        assert!(status.success(), "fsfreeze -f failed");
        Frozen(path.to_path_buf())
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        let _ = Command::new("fsfreeze").arg("-u").arg(&self.0).status();
    }
}

fn spawn_node(dir: &Path, log: &Path) -> Child {
    let child = Child(
        Command::new(common::binary())
            .args(["run", "--data-dir"])
            .arg(dir)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(log).expect("log"))
            .spawn()
            .expect("node starts"),
    );
    wait_for("the console answers", Duration::from_secs(30), || {
        request(dir, &ControlRequest::Status).is_ok()
    });
    child
}

/// Submits from a thread of its own: on a stalled disk the answer never comes.
fn submit_in_background(dir: &Path) {
    let dir = dir.to_path_buf();
    std::thread::spawn(move || {
        let _ = request(
            &dir,
            &ControlRequest::Submit {
                recipient: "DE".into(),
                payload: Box::new(free_text("on a stalled disk")),
            },
        );
    });
}

fn wait_for_log(log: &Path, needles: &[&str], timeout: Duration) {
    wait_for(
        &format!("one of {needles:?} in {}", log.display()),
        timeout,
        || {
            let text = std::fs::read_to_string(log).unwrap_or_default();
            needles.iter().any(|needle| text.contains(needle))
        },
    );
}

#[test]
fn a_stalled_commit_stops_the_node_and_sigterm_always_works() {
    let root = tempfile::tempdir().expect("tempdir");
    let dirs = common::network(root.path(), "diskfreeze", &["DE", "FR"]);
    let Some(disk) = LoopFs::mount(&root.path().join("disk.img"), &root.path().join("disk"), 32)
    else {
        return;
    };
    let fr_dir = move_onto(&dirs[1], &disk.path, 4, 3);

    // The watchdog: a commit on a frozen disk stops the node after the 3 s bound.
    let log = root.path().join("fr-1.log");
    let mut fr = spawn_node(&fr_dir, &log);
    let started = Instant::now();
    {
        let _frozen = Frozen::freeze(&disk.path);
        submit_in_background(&fr_dir);
        wait_for_log(
            &log,
            &["did not finish within 3 s"],
            Duration::from_secs(30),
        );
        eprintln!("watchdog fired after {:?}", started.elapsed());
    }
    wait_for(
        "the node exits once the disk thaws",
        Duration::from_secs(30),
        || fr.0.try_wait().expect("wait").is_some(),
    );
    let status = fr.0.try_wait().expect("wait").expect("exited");
    assert_eq!(status.code(), Some(75), "exit status of a stalled node");
    drop(fr);

    // SIGTERM while a commit is stuck: the node still stops.
    let log = root.path().join("fr-2.log");
    let mut fr = spawn_node(&fr_dir, &log);
    {
        let _frozen = Frozen::freeze(&disk.path);
        submit_in_background(&fr_dir);
        std::thread::sleep(Duration::from_millis(300));
        let pid = libc::pid_t::try_from(fr.0.id()).expect("pid");
        let status = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
        // The commit bound (3 s) at shutdown, or the grace after the signal (2 × 3 + 5 s).
        wait_for_log(
            &log,
            &["did not finish within", "did not stop within"],
            Duration::from_secs(30),
        );
    }
    wait_for(
        "the node exits after SIGTERM",
        Duration::from_secs(30),
        || fr.0.try_wait().expect("wait").is_some(),
    );
    let status = fr.0.try_wait().expect("wait").expect("exited");
    assert!(!status.success(), "{status}");
    drop(fr);
    drop(disk);
}
