//! `quickfreeze web` and TLS, through the real binary: HTTPS with a certificate made at test
//! time (named in `node.toml`'s `[web]`), and the refusals: a non-loopback address without TLS,
//! a file that is not a certificate, half a pair of flags. No node is needed for any of this
//! (the login page does not ask the node anything), so no node is started.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;

use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use rustls::pki_types::{CertificateDer, ServerName};

fn binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_quickfreeze-under-test"))
}

/// Kills the console when the test ends, also on failure.
struct Console(Child);

impl Drop for Console {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs `quickfreeze web ARGS` expecting it to stop at once; returns what it said.
fn refused(data_dir: &Path, args: &[&str]) -> Output {
    let output = Command::new(binary())
        .args(["web", "--data-dir"])
        .arg(data_dir)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run quickfreeze web");
    assert!(
        !output.status.success(),
        "`web {args:?}` should have been refused; it said {}",
        String::from_utf8_lossy(&output.stdout)
    );
    output
}

fn certificate(dir: &Path) -> CertificateDer<'static> {
    let made = rcgen::generate_simple_self_signed(vec!["localhost".to_string()])
        .expect("test certificate");
    std::fs::write(dir.join("web.crt"), made.cert.pem()).expect("write cert");
    std::fs::write(dir.join("web.key"), made.key_pair.serialize_pem()).expect("write key");
    made.cert.der().clone()
}

#[test]
fn a_non_loopback_address_without_tls_and_bad_certificates_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Refused before it binds anything.
    let output = refused(dir.path(), &["--listen", "0.0.0.0:0"]);
    let said = String::from_utf8_lossy(&output.stderr);
    assert!(said.contains("without TLS"), "{said}");
    assert!(said.contains("--tls-cert FILE --tls-key FILE"), "{said}");

    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, "not a certificate\n").expect("write");
    let garbage = garbage.to_str().expect("utf-8 path");
    let output = refused(
        dir.path(),
        &[
            "--listen",
            "127.0.0.1:0",
            "--tls-cert",
            garbage,
            "--tls-key",
            garbage,
        ],
    );
    let said = String::from_utf8_lossy(&output.stderr);
    assert!(said.contains("holds no certificate"), "{said}");
    assert!(said.contains("garbage.pem"), "{said}");

    let output = refused(dir.path(), &["--tls-cert", garbage]);
    let said = String::from_utf8_lossy(&output.stderr);
    assert!(said.contains("--tls-key"), "{said}");

    // Half a pair in node.toml.
    std::fs::write(
        dir.path().join("node.toml"),
        "[web]\ntls_cert = \"web.crt\"\n",
    )
    .expect("write config");
    let output = refused(dir.path(), &["--listen", "127.0.0.1:0"]);
    let said = String::from_utf8_lossy(&output.stderr);
    assert!(said.contains("needs both tls_cert and tls_key"), "{said}");
}

#[tokio::test]
async fn the_console_serves_https_with_the_certificate_named_in_node_toml() {
    let dir = tempfile::tempdir().expect("tempdir");
    let der = certificate(dir.path());
    // Relative to the config file's directory.
    std::fs::write(
        dir.path().join("node.toml"),
        "[web]\ntls_cert = \"web.crt\"\ntls_key = \"web.key\"\n",
    )
    .expect("write config");
    let mut child = Command::new(binary())
        .args(["web", "--data-dir"])
        .arg(dir.path())
        .args(["--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start quickfreeze web");
    let stdout = child.stdout.take().expect("stdout");
    let console = Console(child);
    let line = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("the console prints its address");
        line
    })
    .await
    .expect("read");
    let address = line
        .trim()
        .strip_prefix("web console listening on https://")
        .unwrap_or_else(|| panic!("expected an https address, got: {line}"))
        .trim_end_matches('/')
        .to_string();

    let mut roots = rustls::RootCertStore::empty();
    roots.add(der).expect("root");
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(&address)
        .await
        .expect("connect");
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("localhost").expect("name"), tcp)
        .await
        .expect("TLS handshake with the console's certificate");
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .expect("HTTP over TLS");
    tokio::spawn(connection);
    let response = sender
        .send_request(
            hyper::Request::get("/login")
                .header(hyper::header::HOST, "localhost")
                .body(Empty::<hyper::body::Bytes>::new())
                .expect("request"),
        )
        .await
        .expect("response");
    assert_eq!(response.status(), hyper::StatusCode::OK);
    let cookie = response
        .headers()
        .get(hyper::header::SET_COOKIE)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_string();
    assert!(
        cookie.contains("; Secure"),
        "cookie without Secure: {cookie}"
    );
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    assert!(String::from_utf8_lossy(&body).contains("type=\"password\""));
    drop(console);
}
