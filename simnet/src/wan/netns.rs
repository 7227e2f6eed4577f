//! Network namespaces for the WAN benchmark: one per node and a middle one they all hang off,
//! joined by veth pairs, with nftables loss in the middle; torn down by a guard's `Drop`, by a
//! Ctrl-C handler, and (for runs that were killed) by a sweep of stale names at start.
//!
//! Layout for node `i` (names carry the harness's process id, so concurrent runs do not meet
//! and a later run can tell a dead run's leftovers from a live one's):
//!
//! ```text
//! qfw<pid>n<i>   veth qfw<pid>v<i>  10.201.<i>.2/24, default route via 10.201.<i>.1
//! qfw<pid>m      veth qfw<pid>p<i>  10.201.<i>.1/24 (the delaying relay listens here)
//! ```
//!
//! Loss: `table inet qfw` in the middle drops `N` % of the packets that arrive there from the
//! veths (`numgen random mod 100 < N drop`). Every path between two nodes crosses the middle
//! once in each direction, so each direction of it loses `N` % of its packets, data and ACKs,
//! and TCP retransmits for real.

use std::process::{Command, Stdio};
use std::sync::Mutex;

/// Prefix of every namespace and interface name this harness creates.
pub const PREFIX: &str = "qfw";

/// Child processes to kill on Ctrl-C before the namespaces go (a namespace with a process in
/// it outlives `ip netns del`).
static CHILDREN: Mutex<Vec<u32>> = Mutex::new(Vec::new());

/// Registers a child process to be killed by the Ctrl-C handler.
pub fn register_child(pid: u32) {
    if let Ok(mut children) = CHILDREN.lock() {
        children.push(pid);
    }
}

/// Runs a command, failing with its stderr.
pub fn run(program: &str, args: &[&str]) -> Result<String, String> {
    let output = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|error| format!("{program}: {error}"))?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(format!(
            "`{program} {}` failed ({}): {}",
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

/// Runs an nft script inside a namespace.
fn nft(namespace: &str, script: &str) -> Result<(), String> {
    use std::io::Write;
    let mut child = Command::new("ip")
        .args(["netns", "exec", namespace, "nft", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|error| format!("ip netns exec … nft: {error}"))?;
    child
        .stdin
        .take()
        .ok_or("nft: no stdin")?
        .write_all(script.as_bytes())
        .map_err(|error| format!("nft: {error}"))?;
    let output = child
        .wait_with_output()
        .map_err(|error| format!("nft: {error}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "nft in {namespace} failed: {}; script:\n{script}",
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

/// Checks what the harness needs (root, `ip`, `nft`) and says what to install otherwise.
pub fn preflight() -> Result<(), String> {
    let uid = run("id", &["-u"])?;
    if uid.trim() != "0" {
        return Err(
            "the WAN benchmark creates network namespaces and needs root (run it as root, e.g. with sudo)"
                .into(),
        );
    }
    if run("ip", &["-V"]).is_err() {
        return Err("`ip` not found: install iproute2 (apt-get install -y iproute2)".into());
    }
    if run("nft", &["--version"]).is_err() {
        return Err("`nft` not found: install nftables (apt-get install -y nftables)".into());
    }
    Ok(())
}

fn alive(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

/// The pid embedded in a name this harness made (`qfw<pid>…`), if it is one.
fn owner(name: &str) -> Option<u32> {
    let rest = name.strip_prefix(PREFIX)?;
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

fn namespaces() -> Vec<String> {
    run("ip", &["netns", "list"])
        .unwrap_or_default()
        .lines()
        .filter_map(|line| line.split_whitespace().next().map(str::to_owned))
        .collect()
}

/// Deletes a namespace after killing whatever still runs in it.
fn delete_namespace(name: &str) {
    if let Ok(pids) = run("ip", &["netns", "pids", name]) {
        for pid in pids.split_whitespace() {
            let _ = run("kill", &["-9", pid]);
        }
    }
    let _ = run("ip", &["netns", "del", name]);
}

/// Removes namespaces and root-namespace veths left by harness runs whose process is gone.
/// Returns how many namespaces it removed.
pub fn sweep_stale() -> usize {
    let mut removed = 0;
    for name in namespaces() {
        if owner(&name).is_some_and(|pid| !alive(pid)) {
            delete_namespace(&name);
            removed += 1;
        }
    }
    // A veth is created in the root namespace and then moved; a run killed in between leaves it.
    let links = run("ip", &["-o", "link", "show"]).unwrap_or_default();
    for line in links.lines() {
        let Some(name) = line.split(':').nth(1).map(str::trim) else {
            continue;
        };
        let name = name.split('@').next().unwrap_or(name);
        if owner(name).is_some_and(|pid| !alive(pid)) {
            let _ = run("ip", &["link", "del", name]);
        }
    }
    removed
}

/// The namespaces of this run; dropping it deletes them (and the nft table with the middle).
pub struct WanNet {
    tag: String,
    /// The middle namespace.
    pub middle: String,
    /// One namespace per node, in node order.
    pub nodes: Vec<String>,
}

impl WanNet {
    /// Creates the middle namespace and `count` node namespaces, each joined to the middle by a
    /// veth pair, with the loss table installed at 0 %.
    pub fn create(count: usize) -> Result<WanNet, String> {
        if count > 250 {
            return Err(format!("{count} nodes: the address plan has room for 250"));
        }
        let tag = format!("{PREFIX}{}", std::process::id());
        let mut net = WanNet {
            middle: format!("{tag}m"),
            nodes: Vec::new(),
            tag,
        };
        run("ip", &["netns", "add", &net.middle])?;
        run("ip", &["-n", &net.middle, "link", "set", "lo", "up"])?;
        for index in 0..count {
            let namespace = format!("{}n{index}", net.tag);
            run("ip", &["netns", "add", &namespace])?;
            net.nodes.push(namespace.clone());
            let inner = format!("{}v{index}", net.tag);
            let outer = format!("{}p{index}", net.tag);
            run(
                "ip",
                &[
                    "link", "add", &inner, "type", "veth", "peer", "name", &outer,
                ],
            )?;
            run("ip", &["link", "set", &inner, "netns", &namespace])?;
            run("ip", &["link", "set", &outer, "netns", &net.middle])?;
            let node_address = format!("{}/24", WanNet::node_ip(index));
            let middle_address = format!("{}/24", WanNet::middle_ip(index));
            run(
                "ip",
                &[
                    "-n",
                    &namespace,
                    "addr",
                    "add",
                    &node_address,
                    "dev",
                    &inner,
                ],
            )?;
            run(
                "ip",
                &[
                    "-n",
                    &net.middle,
                    "addr",
                    "add",
                    &middle_address,
                    "dev",
                    &outer,
                ],
            )?;
            run("ip", &["-n", &namespace, "link", "set", "lo", "up"])?;
            run("ip", &["-n", &namespace, "link", "set", &inner, "up"])?;
            run("ip", &["-n", &net.middle, "link", "set", &outer, "up"])?;
            run(
                "ip",
                &[
                    "-n",
                    &namespace,
                    "route",
                    "add",
                    "default",
                    "via",
                    &WanNet::middle_ip(index),
                ],
            )?;
        }
        net.set_loss(0)?;
        Ok(net)
    }

    /// Node `index`'s own address.
    pub fn node_ip(index: usize) -> String {
        format!("10.201.{index}.2")
    }

    /// The middle's address on node `index`'s link (where node `index`'s relay listens).
    pub fn middle_ip(index: usize) -> String {
        format!("10.201.{index}.1")
    }

    /// Drops `percent` % of the packets arriving in the middle from the nodes.
    pub fn set_loss(&self, percent: u8) -> Result<(), String> {
        if percent > 100 {
            return Err(format!("loss {percent} %: use 0 to 100"));
        }
        // Create-then-delete makes the script work whether or not the table exists.
        let rule = if percent == 0 {
            String::new()
        } else {
            format!(
                "    iifname \"{}p*\" numgen random mod 100 < {percent} counter drop\n",
                self.tag
            )
        };
        let script = format!(
            "table inet qfw {{\n}}\ndelete table inet qfw\ntable inet qfw {{\n  chain input {{\n    type filter hook input priority 0; policy accept;\n{rule}  }}\n}}\n"
        );
        nft(&self.middle, &script)
    }

    /// Packets the loss rule has dropped since it was installed.
    pub fn dropped_packets(&self) -> u64 {
        let listing = run(
            "ip",
            &[
                "netns",
                "exec",
                &self.middle,
                "nft",
                "list",
                "table",
                "inet",
                "qfw",
            ],
        )
        .unwrap_or_default();
        listing
            .split("packets ")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|count| count.parse().ok())
            .unwrap_or(0)
    }

    /// The names this run made (for the test that checks they are gone).
    pub fn tag(&self) -> &str {
        &self.tag
    }

    fn teardown(&self) {
        let _ = nft(&self.middle, "table inet qfw {\n}\ndelete table inet qfw\n");
        for namespace in self.nodes.iter().chain(std::iter::once(&self.middle)) {
            delete_namespace(namespace);
        }
    }
}

impl Drop for WanNet {
    fn drop(&mut self) {
        self.teardown();
    }
}

/// Whether any namespace of the run with this tag is still there.
pub fn leftovers(tag: &str) -> Vec<String> {
    namespaces()
        .into_iter()
        .filter(|name| {
            name.strip_prefix(tag)
                .is_some_and(|rest| rest.starts_with(['m', 'n']))
        })
        .collect()
}

/// On Ctrl-C or SIGTERM: kill the registered children, delete this process's namespaces, exit
/// 130. Runs on its own thread with a small runtime.
pub fn install_interrupt_cleanup() -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|error| format!("signal runtime: {error}"))?;
    std::thread::Builder::new()
        .name("wan-interrupt".into())
        .spawn(move || {
            runtime.block_on(async {
                let mut term =
                    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                    {
                        Ok(term) => term,
                        Err(_) => return,
                    };
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            });
            eprintln!("interrupted: tearing down the WAN namespaces");
            if let Ok(children) = CHILDREN.lock() {
                for pid in children.iter() {
                    let _ = run("kill", &["-9", &pid.to_string()]);
                }
            }
            let tag = format!("{PREFIX}{}", std::process::id());
            for name in leftovers(&tag) {
                delete_namespace(&name);
            }
            std::process::exit(130);
        })
        .map_err(|error| format!("signal thread: {error}"))?;
    Ok(())
}
