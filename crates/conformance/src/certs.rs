//! Throwaway TLS certificates for the TLS tests of every backend: a fresh
//! CA and a server certificate for `127.0.0.1` it signed, made with the
//! `openssl` CLI (valid for a day).

use std::path::{Path, PathBuf};
use std::process::Command;

/// PEM files made by [`issue`].
#[derive(Debug, Clone)]
pub struct TestCerts {
    /// The CA's certificate (what clients trust).
    pub ca: PathBuf,
    /// The server's certificate (subject alternative name `IP:127.0.0.1`).
    pub cert: PathBuf,
    /// The server's private key (unencrypted).
    pub key: PathBuf,
}

/// Makes a CA and a server certificate for `127.0.0.1` in `dir`.
///
/// # Panics
/// When `openssl` is missing or fails (this is test support).
pub fn issue(dir: &Path) -> TestCerts {
    let file = |name: &str| dir.join(name);
    let text = |p: &Path| p.to_str().expect("temp dir is UTF-8").to_owned();
    let (ca, ca_key, key, csr, cert, ext) =
        (file("ca.pem"), file("ca.key"), file("srv.key"), file("srv.csr"), file("srv.pem"), file("ext"));
    std::fs::write(&ext, "subjectAltName=IP:127.0.0.1\n").expect("write ext");
    let openssl = |args: &[&str]| {
        let out = Command::new("openssl").args(args).output().expect("openssl must be installed");
        assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    let (ca_t, ca_key_t, key_t, csr_t, cert_t, ext_t) =
        (text(&ca), text(&ca_key), text(&key), text(&csr), text(&cert), text(&ext));
    let subject = ["-days", "1", "-subj", "/CN=palisade-test-ca"];
    openssl(
        &[&["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", &ca_key_t, "-out", &ca_t][..], &subject]
            .concat(),
    );
    openssl(&["req", "-newkey", "rsa:2048", "-nodes", "-keyout", &key_t, "-out", &csr_t, "-subj", "/CN=127.0.0.1"]);
    let sign = ["x509", "-req", "-in", &csr_t, "-CA", &ca_t, "-CAkey", &ca_key_t, "-CAcreateserial", "-out", &cert_t];
    openssl(&[&sign[..], &["-days", "1", "-extfile", &ext_t]].concat());
    TestCerts { ca, cert, key }
}
