//! Certificates for TLS tests, made by the `openssl` command line in a directory of their own
//! (removed on drop): a test CA, a server certificate it signed for `127.0.0.1` and
//! `localhost`, a client certificate it signed (mutual TLS), and a second CA that signed
//! nothing the server shows (a CA the client trusts while the server's is not among them).
//! Elliptic-curve keys: each takes milliseconds to make, where RSA keys take a good part of a
//! second on these machines.

use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

static MADE: AtomicUsize = AtomicUsize::new(0);

/// For tests: whether the `openssl` command is there to make certificates. Missing, it is a
/// skip (said on stderr), or a failure under `SHMAP_REQUIRE_OPENSSL=1` (set by `make test` once
/// it installed it, beside redis-server).
pub fn available_for_tests() -> bool {
    if openssl().is_some() {
        return true;
    }
    let reason = "no openssl command on PATH (make test installs it)";
    assert!(
        std::env::var_os("SHMAP_REQUIRE_OPENSSL").is_none_or(|v| v != "1"),
        "{reason}, and SHMAP_REQUIRE_OPENSSL=1"
    );
    eprintln!("SKIPPED: {reason}");
    false
}

fn openssl() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join("openssl"))
        .find(|p| p.is_file())
}

/// A test CA and the certificates it signed, in a directory removed on drop.
#[derive(Debug)]
pub struct TestCerts {
    dir: PathBuf,
}

impl TestCerts {
    /// Makes them all; `NotFound` without the `openssl` command.
    pub fn generate() -> io::Result<Self> {
        let bin = openssl().ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                "the openssl command is not on PATH",
            )
        })?;
        let n = MADE.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("shmap-tls-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let certs = Self { dir };
        let run = |args: &[&str]| -> io::Result<()> {
            let out = Command::new(&bin)
                .args(args)
                .current_dir(&certs.dir)
                .stdin(Stdio::null())
                .output()?;
            if out.status.success() {
                return Ok(());
            }
            Err(io::Error::other(format!(
                "openssl {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr)
            )))
        };
        const EC: [&str; 4] = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"];
        for ca in ["ca", "other-ca"] {
            let subj = format!("/CN=shmap test {ca}");
            let (key, crt) = (format!("{ca}.key"), format!("{ca}.crt"));
            let mut args = vec!["req", "-x509", "-nodes", "-days", "2", "-subj", &subj];
            args.extend(EC);
            args.extend(["-keyout", &key, "-out", &crt]);
            args.extend(["-addext", "basicConstraints=critical,CA:TRUE"]);
            args.extend(["-addext", "keyUsage=critical,keyCertSign,cRLSign"]);
            run(&args)?;
        }
        // The server's certificate also serves as the client one between cluster nodes
        // (`tls-cluster`), hence both uses.
        std::fs::write(
            certs.dir.join("leaf.ext"),
            "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\n\
             extendedKeyUsage=serverAuth,clientAuth\n\
             subjectAltName=IP:127.0.0.1,DNS:localhost\n",
        )?;
        for leaf in ["server", "client"] {
            let subj = format!("/CN=shmap test {leaf}");
            let (key, csr, crt) = (
                format!("{leaf}.key"),
                format!("{leaf}.csr"),
                format!("{leaf}.crt"),
            );
            let mut args = vec!["req", "-nodes", "-subj", &subj];
            args.extend(EC);
            args.extend(["-keyout", &key, "-out", &csr]);
            run(&args)?;
            run(&[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "ca.crt",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                "2",
                "-extfile",
                "leaf.ext",
                "-out",
                &crt,
            ])?;
        }
        Ok(certs)
    }

    /// The directory they are in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The test CA (PEM): what a client gives as `ssl_ca_certs` to trust the server.
    pub fn ca(&self) -> PathBuf {
        self.dir.join("ca.crt")
    }

    /// A CA that signed nothing the server shows: trusting it alone, a client must refuse it.
    pub fn other_ca(&self) -> PathBuf {
        self.dir.join("other-ca.crt")
    }

    /// The server's certificate, for `127.0.0.1` and `localhost`, and its key.
    pub fn server(&self) -> (PathBuf, PathBuf) {
        (self.dir.join("server.crt"), self.dir.join("server.key"))
    }

    /// A client certificate the test CA signed, and its key (mutual TLS).
    pub fn client(&self) -> (PathBuf, PathBuf) {
        (self.dir.join("client.crt"), self.dir.join("client.key"))
    }
}

impl Drop for TestCerts {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
