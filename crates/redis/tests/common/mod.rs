//! Helpers shared by the Redis integration tests (each test crate uses some).
#![allow(dead_code)]

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A `redis-server` child process, killed (by its own PID) when dropped.
pub struct Server {
    child: Option<Child>,
}

impl Server {
    /// A server that keeps nothing on disk.
    pub fn start(port: u16) -> Server {
        Server::spawn(port, &["--save", "", "--appendonly", "no"])
    }

    /// A server that writes every command to an append-only file in `dir`
    /// before answering, so a killed and restarted server keeps what it acknowledged.
    pub fn start_durable(port: u16, dir: &std::path::Path) -> Server {
        let dir = dir.to_str().expect("temp dir is UTF-8");
        Server::spawn(port, &["--save", "", "--appendonly", "yes", "--appendfsync", "always", "--dir", dir])
    }

    /// A TLS-only server (plain port off) with a certificate for 127.0.0.1
    /// signed by a fresh test CA, all made in `dir` with the `openssl` CLI;
    /// returns the server and the CA's PEM file.
    pub fn start_tls(port: u16, dir: &std::path::Path) -> (Server, PathBuf) {
        let certs = palisade_conformance::certs::issue(dir);
        let (cert, key) = (certs.cert.to_str().expect("UTF-8"), certs.key.to_str().expect("UTF-8"));
        let port_text = port.to_string();
        let args = ["--port", "0", "--tls-port", &port_text, "--tls-cert-file", cert, "--tls-key-file", key];
        let server = Server::spawn(
            port,
            &[&args[..], &["--tls-auth-clients", "no", "--save", "", "--appendonly", "no"]].concat(),
        );
        (server, certs.ca)
    }

    pub fn spawn(port: u16, persistence: &[&str]) -> Server {
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(persistence)
            .args(["--daemonize", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server must be installed (scripts/start-services.sh installs it)");
        let server = Server { child: Some(child) };
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server on port {port} did not come up");
            std::thread::sleep(Duration::from_millis(50));
        }
        server
    }

    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A fresh directory under the system temp dir, removed when dropped.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(name: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("palisade-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
