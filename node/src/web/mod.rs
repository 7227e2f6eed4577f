//! `quickfreeze web`: the duty officer's console in a browser.
//!
//! A process beside the node, like the terminal console: it talks to the daemon over the control
//! socket in the data directory ([`backend::SocketBackend`]), so it runs as the node's user, needs
//! no new privileges in the daemon, and a crash of either leaves the other running.
//!
//! - [`routes`]: the axum router and its handlers (login, inbox/outbox with live updates over
//!   server-sent events, message view, acknowledge, reply, compose, status, statistics).
//! - [`pages`]: the HTML (maud, compiled into the binary; no external assets).
//! - [`sessions`]: sessions, CSRF tokens, idle timeout, login rate limits.
//! - [`officers`]: officer accounts (`quickfreeze officer add|remove|passwd`), argon2 hashes.
//! - [`compose`]: the request forms as fields, and their conversion into payloads.
//! - [`form`]: strict urlencoded parsing (bad UTF-8 is refused, not replaced).
//! - [`backend`]: how the console reaches the node (the socket, or a fake in unit tests).
//!
//! It listens on loopback only. TLS is not built in yet, so a non-loopback address is refused
//! with an explanation ([`check_listen`]); cookies are therefore not marked `Secure`.

pub mod backend;
pub mod compose;
pub mod form;
pub mod officers;
pub mod pages;
pub mod routes;
pub mod sessions;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context, Result};

/// Largest request body the console reads (a full preservation form is a few KiB).
pub const MAX_FORM_BYTES: usize = 64 * 1024;
/// The default listen address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8480";

/// `quickfreeze web` arguments.
#[derive(Debug, clap::Args)]
pub struct WebArgs {
    /// The node's data directory (holds the control socket and the officer accounts).
    #[arg(long, env = "QUICKFREEZE_DATA_DIR", default_value = ".")]
    pub data_dir: PathBuf,
    /// Address and port to listen on (loopback only; port 0 picks a free one).
    #[arg(long, default_value = DEFAULT_LISTEN)]
    pub listen: String,
}

/// `quickfreeze officer` commands. Passwords are read from the terminal without echo, or from
/// the first line of standard input when it is not a terminal.
#[derive(Debug, clap::Subcommand)]
pub enum OfficerCommand {
    /// Add an officer account.
    Add {
        /// The officer's name, as shown on every action.
        name: String,
        /// The node's data directory.
        #[arg(long, env = "QUICKFREEZE_DATA_DIR", default_value = ".")]
        data_dir: PathBuf,
    },
    /// Remove an officer account (their open sessions end).
    Remove {
        /// The officer's name.
        name: String,
        /// The node's data directory.
        #[arg(long, env = "QUICKFREEZE_DATA_DIR", default_value = ".")]
        data_dir: PathBuf,
    },
    /// Change an officer's password (their open sessions end).
    Passwd {
        /// The officer's name.
        name: String,
        /// The node's data directory.
        #[arg(long, env = "QUICKFREEZE_DATA_DIR", default_value = ".")]
        data_dir: PathBuf,
    },
}

/// Runs `quickfreeze web`.
pub fn execute(args: WebArgs) -> Result<()> {
    run(&args.data_dir, &args.listen)
}

/// Runs `quickfreeze officer ...`.
pub fn officer_command(command: OfficerCommand) -> Result<()> {
    match command {
        OfficerCommand::Add { name, data_dir } => officers::add(&data_dir, &name),
        OfficerCommand::Remove { name, data_dir } => officers::remove(&data_dir, &name),
        OfficerCommand::Passwd { name, data_dir } => officers::passwd(&data_dir, &name),
    }
}

/// Refuses an address the console must not listen on.
pub fn check_listen(address: SocketAddr) -> Result<()> {
    if !address.ip().is_loopback() {
        bail!(
            "refusing to listen on {address}: the web console serves plain HTTP (TLS is not built in \
             yet), so it listens on loopback only. Listen on 127.0.0.1 and reach it through an SSH \
             tunnel (ssh -L 8480:127.0.0.1:8480 NODE) or a TLS-terminating proxy on the same machine"
        );
    }
    Ok(())
}

/// Runs the web console for the node whose data directory is `data_dir` until Ctrl-C or SIGTERM.
pub fn run(data_dir: &Path, listen: &str) -> Result<()> {
    let address: SocketAddr = listen
        .parse()
        .with_context(|| format!("`{listen}` is not an address such as 127.0.0.1:8480"))?;
    check_listen(address)?;
    let accounts = officers::Officers::load(data_dir)?;
    if accounts.officers.is_empty() {
        eprintln!(
            "warning: no officer accounts yet; add one with `quickfreeze officer add NAME --data-dir {}`",
            data_dir.display()
        );
    }
    let backend = Arc::new(backend::SocketBackend::new(data_dir));
    let state = routes::WebState::new(backend, data_dir, false);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(address)
            .await
            .with_context(|| format!("cannot listen on {address}"))?;
        let bound = listener.local_addr()?;
        // Scripts and tests read this line to learn the port (with --listen 127.0.0.1:0).
        println!("web console listening on http://{bound}/");
        use std::io::Write;
        let _ = std::io::stdout().flush();
        let app = routes::router(state).into_make_service_with_connect_info::<SocketAddr>();
        axum::serve(listener, app)
            .with_graceful_shutdown(shutdown())
            .await
            .context("the web console stopped")
    })
}

async fn shutdown() {
    let mut terminate =
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(signal) => signal,
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
                return;
            }
        };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
}

#[cfg(test)]
mod tests;
