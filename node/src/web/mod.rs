//! `quickfreeze web`: the duty officer's console in a browser.
//!
//! A process beside the node, like the terminal console: it talks to the daemon over the control
//! socket in the data directory ([`backend::SocketBackend`]), so it runs as the node's user, needs
//! no new privileges in the daemon, and a crash of either leaves the other running.
//!
//! - [`routes`]: the axum router and its handlers (login, inbox/outbox by case thread with live
//!   updates over server-sent events, message view with its thread, attachment download,
//!   acknowledge, reply, compose of all five kinds, status, statistics).
//! - [`pages`]: the HTML (maud, compiled into the binary; no external assets).
//! - [`sessions`]: sessions, CSRF tokens, idle timeout, login rate limits.
//! - [`officers`]: officer accounts (`quickfreeze officer add|remove|passwd`), argon2 hashes.
//! - [`compose`]: the request forms as fields, and their conversion into payloads.
//! - [`form`]: strict urlencoded parsing (bad UTF-8 is refused, not replaced).
//! - [`backend`]: how the console reaches the node (the socket, or a fake in unit tests).
//! - [`tls`]: HTTPS (rustls), from `--tls-cert`/`--tls-key` or `[web]` in `node.toml`.
//!
//! Without TLS it serves plain HTTP and listens on loopback only: a non-loopback address is
//! refused with an explanation ([`check_listen`]). With TLS it serves HTTPS only, on any address,
//! and marks its cookies `Secure`.

pub mod backend;
pub mod compose;
pub mod form;
pub mod officers;
pub mod pages;
pub mod routes;
pub mod sessions;
pub mod tls;

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
    /// Address and port to listen on (port 0 picks a free one). Loopback only unless TLS is
    /// configured.
    #[arg(long, default_value = DEFAULT_LISTEN)]
    pub listen: String,
    /// PEM certificate chain: serve HTTPS (overrides `[web] tls_cert` in node.toml).
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of the certificate (overrides `[web] tls_key` in node.toml).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
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
    let tls = tls_files(&args)?;
    run(&args.data_dir, &args.listen, tls.as_ref())
}

/// The TLS files to use: the flags, else `[web]` in the data directory's `node.toml`, else none.
/// Half a pair (a certificate without a key) is refused.
pub fn tls_files(args: &WebArgs) -> Result<Option<tls::TlsFiles>> {
    if let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) {
        return Ok(Some(tls::TlsFiles {
            cert: cert.clone(),
            key: key.clone(),
        }));
    }
    let path = args.data_dir.join(crate::config::files::CONFIG);
    if !path.exists() {
        return Ok(None);
    }
    let config = crate::config::NodeConfig::load(&path).with_context(|| {
        format!(
            "cannot read the web console's settings from {}",
            path.display()
        )
    })?;
    match (config.web.tls_cert, config.web.tls_key) {
        (Some(cert), Some(key)) => Ok(Some(tls::TlsFiles { cert, key })),
        (None, None) => Ok(None),
        _ => bail!(
            "{}: [web] needs both tls_cert and tls_key (or neither, for plain HTTP on loopback)",
            path.display()
        ),
    }
}

/// Runs `quickfreeze officer ...`.
pub fn officer_command(command: OfficerCommand) -> Result<()> {
    match command {
        OfficerCommand::Add { name, data_dir } => officers::add(&data_dir, &name),
        OfficerCommand::Remove { name, data_dir } => officers::remove(&data_dir, &name),
        OfficerCommand::Passwd { name, data_dir } => officers::passwd(&data_dir, &name),
    }
}

/// Refuses an address the console must not listen on: without TLS, anything but loopback.
pub fn check_listen(address: SocketAddr, tls: bool) -> Result<()> {
    if !tls && !address.ip().is_loopback() {
        bail!(
            "refusing to listen on {address} without TLS: passwords and requests would cross the \
             network in clear. Give a certificate and key (--tls-cert FILE --tls-key FILE, or \
             tls_cert/tls_key under [web] in node.toml), or listen on 127.0.0.1 and reach it through \
             an SSH tunnel (ssh -L 8480:127.0.0.1:8480 NODE)"
        );
    }
    Ok(())
}

/// Runs the web console for the node whose data directory is `data_dir` until Ctrl-C or SIGTERM,
/// over HTTPS when `tls` names a certificate and key.
pub fn run(data_dir: &Path, listen: &str, tls: Option<&tls::TlsFiles>) -> Result<()> {
    let address: SocketAddr = listen
        .parse()
        .with_context(|| format!("`{listen}` is not an address such as 127.0.0.1:8480"))?;
    check_listen(address, tls.is_some())?;
    // Read the certificate before anything else, so a bad file stops the console at once.
    let tls_config = tls.map(tls::server_config).transpose()?;
    let accounts = officers::Officers::load(data_dir)?;
    if accounts.officers.is_empty() {
        eprintln!(
            "warning: no officer accounts yet; add one with `quickfreeze officer add NAME --data-dir {}`",
            data_dir.display()
        );
    }
    let backend = Arc::new(backend::SocketBackend::new(data_dir));
    let state = routes::WebState::new(backend, data_dir, tls_config.is_some());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(address)
            .await
            .with_context(|| format!("cannot listen on {address}"))?;
        let bound = listener.local_addr()?;
        let scheme = if tls_config.is_some() {
            "https"
        } else {
            "http"
        };
        // Scripts and tests read this line to learn the port (with --listen 127.0.0.1:0).
        println!("web console listening on {scheme}://{bound}/");
        use std::io::Write;
        let _ = std::io::stdout().flush();
        let app = routes::router(state).into_make_service_with_connect_info::<SocketAddr>();
        match tls_config {
            Some(config) => {
                use axum::serve::ListenerExt;
                // `tap_io` only lends axum's `ConnectInfo<SocketAddr>` to a listener of our own.
                let listener = tls::TlsListener::new(listener, config)?.tap_io(|_| {});
                axum::serve(listener, app)
                    .with_graceful_shutdown(shutdown())
                    .await
            }
            None => {
                axum::serve(listener, app)
                    .with_graceful_shutdown(shutdown())
                    .await
            }
        }
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
