//! HTTPS for the web console: the certificate and key files, and a listener that hands axum
//! only finished TLS connections.
//!
//! rustls does TLS with its `ring` provider (its default, aws-lc-rs, needs cmake and nasm to
//! build); tokio-rustls runs each handshake; axum (hyper) does all of HTTP. [`TlsListener`]
//! implements [`axum::serve::Listener`]: a task accepts TCP connections and runs each handshake
//! in a task of its own, under a deadline ([`HANDSHAKE_TIMEOUT`]) and a cap on handshakes in
//! progress ([`MAX_PENDING_HANDSHAKES`]), so a silent or slow client never holds up the others
//! and strangers cannot make the console hold unbounded half-open connections.

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Semaphore};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

/// How long a client may take to finish the TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// TLS handshakes in progress at once; a connection beyond this is closed at once.
pub const MAX_PENDING_HANDSHAKES: usize = 64;
/// Largest certificate or key file read (a chain of a few certificates is a few KiB).
pub const MAX_PEM_BYTES: u64 = 1024 * 1024;

/// The certificate chain and private key files (PEM).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    /// The certificate, followed by any intermediate certificates.
    pub cert: PathBuf,
    /// The private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

fn read_pem(path: &Path, what: &str, flag: &str) -> Result<Vec<u8>> {
    let file = std::fs::File::open(path).with_context(|| {
        format!(
            "cannot read the TLS {what} file {}; give a readable PEM file with {flag} or `[web]` in node.toml",
            path.display()
        )
    })?;
    let mut bytes = Vec::new();
    use std::io::Read;
    file.take(MAX_PEM_BYTES + 1)
        .read_to_end(&mut bytes)
        .with_context(|| format!("cannot read the TLS {what} file {}", path.display()))?;
    if bytes.len() as u64 > MAX_PEM_BYTES {
        return Err(anyhow!(
            "the TLS {what} file {} is larger than {} KiB, so it is not a PEM {what}; check the path",
            path.display(),
            MAX_PEM_BYTES / 1024
        ));
    }
    Ok(bytes)
}

/// Reads the files and builds the server configuration. Every error names the file and says
/// what to do: unreadable, not PEM, no certificate, no key, or a key that does not belong to
/// the certificate.
pub fn server_config(files: &TlsFiles) -> Result<Arc<ServerConfig>> {
    let cert_bytes = read_pem(&files.cert, "certificate", "--tls-cert")?;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_bytes)
        .collect::<Result<_, _>>()
        .map_err(|error| {
            anyhow!(
                "the TLS certificate file {} is not valid PEM ({error}); give the certificate as PEM (-----BEGIN CERTIFICATE-----)",
                files.cert.display()
            )
        })?;
    if certs.is_empty() {
        return Err(anyhow!(
            "the TLS certificate file {} holds no certificate; it must contain a -----BEGIN CERTIFICATE----- block (was the key given as the certificate?)",
            files.cert.display()
        ));
    }
    let key_bytes = read_pem(&files.key, "key", "--tls-key")?;
    let key = PrivateKeyDer::from_pem_slice(&key_bytes).map_err(|error| {
        anyhow!(
            "the TLS key file {} holds no usable private key ({error}); give the private key as PEM (PKCS#8, PKCS#1 or SEC1, not encrypted)",
            files.key.display()
        )
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("the TLS library refused its own default protocol versions")?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|error| {
            anyhow!(
                "the TLS key {} does not fit the certificate {} ({error}); give the key that was made with this certificate",
                files.key.display(),
                files.cert.display()
            )
        })?;
    // axum serves HTTP/1.1 only (the workspace builds hyper without http2).
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Accepted TLS connections, ready for HTTP.
pub struct TlsListener {
    incoming: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
    accept_task: tokio::task::JoinHandle<()>,
}

impl TlsListener {
    /// Serves TLS with `config` on `tcp`. Must be called inside a tokio runtime.
    pub fn new(tcp: TcpListener, config: Arc<ServerConfig>) -> io::Result<TlsListener> {
        let local = tcp.local_addr()?;
        let (sender, incoming) = mpsc::channel(MAX_PENDING_HANDSHAKES);
        let acceptor = TlsAcceptor::from(config);
        let accept_task = tokio::spawn(accept_loop(tcp, acceptor, sender));
        Ok(TlsListener {
            incoming,
            local,
            accept_task,
        })
    }
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        self.accept_task.abort();
    }
}

async fn accept_loop(
    tcp: TcpListener,
    acceptor: TlsAcceptor,
    sender: mpsc::Sender<(TlsStream<TcpStream>, SocketAddr)>,
) {
    let pending = Arc::new(Semaphore::new(MAX_PENDING_HANDSHAKES));
    let mut refused: u64 = 0;
    while !sender.is_closed() {
        let (stream, address) = match tcp.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                // Out of file descriptors and the like: wait a little rather than spin.
                tracing::warn!(%error, "the web console cannot accept a connection");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = pending.clone().try_acquire_owned() else {
            refused += 1;
            if refused.is_power_of_two() {
                tracing::warn!(
                    refused,
                    limit = MAX_PENDING_HANDSHAKES,
                    "web console: too many TLS handshakes in progress; connections closed"
                );
            }
            continue;
        };
        let acceptor = acceptor.clone();
        let sender = sender.clone();
        tokio::spawn(async move {
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => {
                    drop(permit);
                    let _ = sender.send((tls, address)).await;
                }
                Ok(Err(error)) => {
                    tracing::debug!(%address, %error, "web console: TLS handshake failed")
                }
                Err(_) => tracing::debug!(%address, "web console: TLS handshake timed out"),
            }
        });
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.incoming.recv().await {
            Some(connection) => connection,
            // The accept task ended (it only does when the listener is dropped).
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Ok(self.local)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use http_body_util::{BodyExt, Empty};
    use hyper_util::rt::TokioIo;
    use rustls::pki_types::ServerName;

    use super::*;
    use crate::web::backend::Backend;
    use crate::web::routes::{router, WebState, LOGIN_COOKIE};

    struct NoNode;

    impl Backend for NoNode {
        fn request(
            &self,
            _: crate::control::ControlRequest,
        ) -> Result<crate::control::ControlResponse, String> {
            Err("no node in this test".into())
        }
    }

    /// A self-signed certificate for localhost, written as PEM files into `dir`.
    fn make_cert(dir: &Path, name: &str) -> (TlsFiles, CertificateDer<'static>) {
        let made = rcgen::generate_simple_self_signed(vec!["localhost".to_string()])
            .expect("test certificate");
        let files = TlsFiles {
            cert: dir.join(format!("{name}.crt")),
            key: dir.join(format!("{name}.key")),
        };
        std::fs::write(&files.cert, made.cert.pem()).expect("write cert");
        std::fs::write(&files.key, made.key_pair.serialize_pem()).expect("write key");
        (files, made.cert.der().clone())
    }

    #[tokio::test]
    async fn the_console_answers_over_https_with_secure_cookies() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (files, der) = make_cert(dir.path(), "web");
        let config = server_config(&files).expect("config from the test certificate");
        let tcp = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        use axum::serve::ListenerExt;
        let listener = TlsListener::new(tcp, config)
            .expect("listener")
            .tap_io(|_| {});
        let address = axum::serve::Listener::local_addr(&listener).expect("address");
        let state = WebState::new(Arc::new(NoNode), dir.path(), true);
        let app = router(state).into_make_service_with_connect_info::<SocketAddr>();
        let server = tokio::spawn(async move { axum::serve(listener, app).await });

        // A client that trusts only the test certificate.
        let mut roots = rustls::RootCertStore::empty();
        roots.add(der).expect("root");
        let client = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
        let connector = tokio_rustls::TlsConnector::from(Arc::new(client));
        let tcp = TcpStream::connect(address).await.expect("connect");
        let tls = connector
            .connect(ServerName::try_from("localhost").expect("name"), tcp)
            .await
            .expect("TLS handshake with the console");
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .expect("HTTP over TLS");
        tokio::spawn(connection);
        let request = hyper::Request::get("/login")
            .header(hyper::header::HOST, "localhost")
            .body(Empty::<axum::body::Bytes>::new())
            .expect("request");
        let response = sender.send_request(request).await.expect("response");
        assert_eq!(response.status(), hyper::StatusCode::OK);
        let cookie = response
            .headers()
            .get(hyper::header::SET_COOKIE)
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default()
            .to_string();
        assert!(cookie.starts_with(LOGIN_COOKIE), "{cookie}");
        assert!(
            cookie.contains("; Secure"),
            "cookie not Secure under TLS: {cookie}"
        );
        let body = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        assert!(String::from_utf8_lossy(&body).contains("password"));

        // Plain HTTP to the HTTPS port gets no page.
        let mut plain = TcpStream::connect(address).await.expect("connect");
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        plain
            .write_all(b"GET /login HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .await
            .expect("write");
        let mut answer = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), plain.read_to_end(&mut answer)).await;
        assert!(!String::from_utf8_lossy(&answer).contains("HTTP/1.1 200"));
        server.abort();
    }

    #[test]
    fn missing_unreadable_non_pem_and_mismatched_files_are_refused_with_the_reason() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (good, _) = make_cert(dir.path(), "good");
        let (other, _) = make_cert(dir.path(), "other");
        let error = |files: &TlsFiles| format!("{:#}", server_config(files).expect_err("refused"));

        let missing = TlsFiles {
            cert: dir.path().join("absent.crt"),
            key: good.key.clone(),
        };
        let text = error(&missing);
        assert!(
            text.contains("cannot read the TLS certificate file"),
            "{text}"
        );
        assert!(text.contains("absent.crt"), "{text}");

        let garbage = dir.path().join("garbage.crt");
        std::fs::write(&garbage, b"this is not a certificate\n").expect("write");
        let text = error(&TlsFiles {
            cert: garbage,
            key: good.key.clone(),
        });
        assert!(text.contains("holds no certificate"), "{text}");

        // The key given as the certificate.
        let text = error(&TlsFiles {
            cert: good.key.clone(),
            key: good.key.clone(),
        });
        assert!(text.contains("holds no certificate"), "{text}");

        // The certificate given as the key.
        let text = error(&TlsFiles {
            cert: good.cert.clone(),
            key: good.cert.clone(),
        });
        assert!(text.contains("no usable private key"), "{text}");

        // Another certificate's key.
        let text = error(&TlsFiles {
            cert: good.cert.clone(),
            key: other.key.clone(),
        });
        assert!(text.contains("does not fit the certificate"), "{text}");

        assert!(server_config(&good).is_ok());
    }

    #[test]
    fn only_loopback_without_tls() {
        let public: SocketAddr = "192.0.2.10:8480".parse().expect("address");
        let any: SocketAddr = "0.0.0.0:8480".parse().expect("address");
        let local: SocketAddr = "127.0.0.1:8480".parse().expect("address");
        let text = format!(
            "{:#}",
            crate::web::check_listen(public, false).expect_err("refused")
        );
        assert!(text.contains("--tls-cert"), "{text}");
        assert!(crate::web::check_listen(any, false).is_err());
        assert!(crate::web::check_listen(public, true).is_ok());
        assert!(crate::web::check_listen(local, false).is_ok());
    }
}
