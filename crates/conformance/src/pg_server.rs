//! A Postgres server of a test's own, for the scenarios that stop and
//! start the server ([`restart`](crate::restart)): every Postgres backend's
//! crash test runs against one.

use std::process::{Command, Stdio};

/// A throwaway Postgres server of the test's own (initdb into a temp dir, a
/// spare loopback port), so it can be stopped and started without touching
/// the shared one. Run as the `postgres` user when the tests run as root
/// (Postgres refuses root). Stopped and removed when dropped.
pub struct PgServer {
    dir: std::path::PathBuf,
    port: u16,
    bin: std::path::PathBuf,
    as_postgres: bool,
}

impl PgServer {
    /// Initializes a data directory for a server on `port` (not started).
    pub fn init(port: u16) -> PgServer {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .ok()
            .and_then(|versions| versions.filter_map(|v| v.ok()).map(|v| v.path().join("bin")).max())
            .unwrap_or_default();
        let as_postgres = Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout.starts_with(b"0\n"));
        let dir = std::env::temp_dir().join(format!("palisade-pg-{port}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        let server = PgServer { dir, port, bin, as_postgres };
        if as_postgres {
            let chown = Command::new("chown").args(["-R", "postgres"]).arg(&server.dir).status();
            assert!(chown.is_ok_and(|s| s.success()), "chown of the data directory");
        }
        let data = server.dir.join("data");
        server.run("initdb", &["-D", path(&data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"]);
        server
    }

    /// Turns TLS on (before [`start`](Self::start)) with a certificate for
    /// 127.0.0.1 from a fresh test CA ([`crate::certs`]); plain-text
    /// connections stay allowed. Returns the CA's PEM file, for `sslrootcert`.
    pub fn enable_tls(&self) -> std::path::PathBuf {
        let certs = crate::certs::issue(&self.dir);
        for file in [&certs.key, &certs.cert] {
            let mut perms = std::fs::metadata(file).expect("certificate files").permissions();
            std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o600);
            std::fs::set_permissions(file, perms).expect("chmod the key");
        }
        if self.as_postgres {
            let chown = Command::new("chown").args(["-R", "postgres"]).arg(&self.dir).status();
            assert!(chown.is_ok_and(|s| s.success()), "chown of the certificates");
        }
        let conf = self.dir.join("data").join("postgresql.conf");
        let mut text = std::fs::read_to_string(&conf).expect("postgresql.conf");
        text.push_str(&format!(
            "\nssl = on\nssl_cert_file = '{}'\nssl_key_file = '{}'\n",
            path(&certs.cert),
            path(&certs.key)
        ));
        std::fs::write(&conf, text).expect("write postgresql.conf");
        certs.ca
    }

    /// Starts the server and waits until it accepts connections.
    pub fn start(&self) {
        let data = self.dir.join("data");
        let options = format!("-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off", self.port, path(&self.dir));
        let log = self.dir.join("log");
        self.run("pg_ctl", &["-D", path(&data), "-w", "-t", "30", "-o", &options, "-l", path(&log), "start"]);
    }

    /// Stops the server at once, as a crash would (no shutdown checkpoint).
    pub fn crash(&self) {
        self.run("pg_ctl", &["-D", path(&self.dir.join("data")), "-m", "immediate", "stop"]);
    }

    /// The URL of the server's `postgres` database.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// `tool` from the server's bin directory, as the user the server runs as.
    fn command(&self, tool: &str) -> Command {
        let program = self.bin.join(tool);
        if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(program);
            c
        } else {
            Command::new(program)
        }
    }

    fn run(&self, tool: &str, args: &[&str]) {
        let out =
            self.command(tool).args(args).stdin(Stdio::null()).output().expect("postgres server tools are installed");
        assert!(out.status.success(), "{tool} failed: {}", String::from_utf8_lossy(&out.stderr));
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        let data = self.dir.join("data");
        if data.join("postmaster.pid").exists() {
            let _ = self.command("pg_ctl").args(["-D", path(&data), "-m", "immediate", "stop"]).output();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn path(p: &std::path::Path) -> &str {
    p.to_str().expect("temp paths are UTF-8")
}
