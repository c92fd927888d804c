//! The Redis map over TLS (`rediss://`), as managed services run it: against real
//! `redis-server`s that listen on a TLS port only (`--port 0`), with certificates the tests make
//! (`openssl`, `shmap_testkit::tls_certs`). The operations work with the test CA given as
//! `ssl_ca_certs` (in the options or the URL's query), with verification turned off when asked,
//! with a client certificate where the server wants one (mutual TLS), and on a TLS cluster; a
//! server the client does not trust, one that wants a client certificate, and a port without
//! TLS are errors that name the cause at once, never a hang; bad TLS options are typed errors.
//!
//! Without `redis-server` or `openssl` every test says so and passes; `make test` installs
//! both first, so CI runs them.

mod common;

use std::cell::Cell;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::ops::Maker;
use shmap::{Error, MapOps, MapParams};
use shmap_backends::{CertReqs, RedisMap, RedisOptions};
use shmap_testkit::redis_server::{LocalCluster, LocalServer};
use shmap_testkit::tls_certs::{self, TestCerts};

/// Certificates, or `None` (said on stderr) without a server or `openssl`.
fn certs() -> Option<TestCerts> {
    if !shmap_testkit::redis_server::available_for_tests() || !tls_certs::available_for_tests() {
        return None;
    }
    Some(TestCerts::generate().expect("make test certificates"))
}

/// A TLS-only server and its certificates.
fn tls_server(extra: &[&str]) -> Option<(LocalServer, TestCerts)> {
    let certs = certs()?;
    let s = LocalServer::start_tls(&certs, extra).expect("start a TLS redis-server");
    Some((s, certs))
}

fn with_ca(ca: PathBuf) -> RedisOptions {
    RedisOptions {
        ssl_ca_certs: Some(ca),
        timeout: Duration::from_secs(3),
        ..RedisOptions::default()
    }
}

struct TlsMaker {
    url: String,
    opts: RedisOptions,
    next: Cell<usize>,
}

impl Maker for TlsMaker {
    type Map = RedisMap;

    fn create_named(&self, name: &str, p: MapParams) -> shmap::Result<RedisMap> {
        RedisMap::create(&self.url, name, p, self.opts.clone())
    }

    fn attach(&self, name: &str) -> shmap::Result<RedisMap> {
        RedisMap::attach(&self.url, name, self.opts.clone())
    }

    fn unused_name(&self, tag: &str) -> String {
        self.next.set(self.next.get() + 1);
        format!("{tag}-{}", self.next.get())
    }
}

fn suite(mk: &TlsMaker) {
    use common::ops::*;
    insert_get_replace_remove(mk);
    len_tracks_inserts_and_removes(mk);
    full_table_is_an_error_and_changes_nothing(mk);
    attach_sees_data_and_reads_params_back(mk);
    create_existing_name_is_an_error(mk);
    entries_snapshot_matches(mk);
    handles_are_shared_by_threads_with_exact_counts(mk);
    atomic_operations_do_what_they_say(mk);
}

#[test]
fn the_operations_work_over_tls_with_the_servers_ca() {
    let Some((s, certs)) = tls_server(&[]) else {
        return;
    };
    assert!(s.url().starts_with("rediss://"));
    suite(&TlsMaker {
        url: s.url(),
        opts: with_ca(certs.ca()),
        next: Cell::new(0),
    });
    // The options in the URL's query, as redis-py's from_url takes them; a handle made so
    // sees what one made with the options wrote.
    let m = RedisMap::create(&s.url(), "q", MapParams::default(), with_ca(certs.ca())).unwrap();
    m.insert(b"k", b"v").unwrap();
    let url = format!("{}?ssl_ca_certs={}", s.url(), certs.ca().display());
    let other = RedisMap::attach(&url, "q", RedisOptions::default()).unwrap();
    assert_eq!(other.get(b"k").unwrap().as_deref(), Some(&b"v"[..]));
    other.unlink().unwrap();
}

/// A connection error that names certificate verification, within the timeout.
fn untrusted(e: &Error, started: Instant) {
    assert!(matches!(e, Error::Connection { .. }), "{e:?}");
    let text = e.to_string();
    assert!(
        text.contains("certificate verification failed")
            && text.contains("not signed by a CA this client trusts")
            && text.contains("ssl_ca_certs"),
        "{text}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn a_server_the_client_does_not_trust_is_a_clear_error_at_once() {
    let Some((s, certs)) = tls_server(&[]) else {
        return;
    };
    // The system's roots (the default) do not know the test CA; nor does another CA.
    let started = Instant::now();
    let e = RedisMap::create(&s.url(), "m", MapParams::default(), RedisOptions::default());
    untrusted(&e.unwrap_err(), started);
    let started = Instant::now();
    let e = RedisMap::attach(&s.url(), "m", with_ca(certs.other_ca()));
    untrusted(&e.unwrap_err(), started);
    // Nothing was made on the server by the refused creates.
    let m = RedisMap::attach(&s.url(), "m", with_ca(certs.ca()));
    assert!(matches!(m, Err(Error::NotFound(_))), "{m:?}");
}

#[test]
fn verification_is_off_only_when_asked() {
    let Some((s, _certs)) = tls_server(&[]) else {
        return;
    };
    let off = RedisOptions {
        ssl_cert_reqs: Some(CertReqs::None),
        ..RedisOptions::default()
    };
    let m = RedisMap::create(&s.url(), "m", MapParams::default(), off).unwrap();
    m.insert(b"k", b"v").unwrap();
    for reqs in ["none", "NONE"] {
        let url = format!("{}?ssl_cert_reqs={reqs}", s.url());
        let m = RedisMap::attach(&url, "m", RedisOptions::default()).unwrap();
        assert_eq!(m.get(b"k").unwrap().as_deref(), Some(&b"v"[..]));
    }
    let url = format!("{}?ssl_cert_reqs=required", s.url());
    let e = RedisMap::attach(&url, "m", RedisOptions::default()).unwrap_err();
    untrusted(&e, Instant::now() - Duration::from_millis(1));
    m.unlink().unwrap();
}

#[test]
fn mutual_tls_needs_the_client_certificate() {
    let Some((s, certs)) = tls_server(&["--tls-auth-clients", "yes"]) else {
        return;
    };
    let started = Instant::now();
    let e = RedisMap::create(&s.url(), "m", MapParams::default(), with_ca(certs.ca()));
    let e = e.unwrap_err();
    assert!(matches!(e, Error::PermissionDenied { .. }), "{e:?}");
    assert!(e.to_string().contains("client certificate"), "{e}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );

    let (cert, key) = certs.client();
    let opts = RedisOptions {
        ssl_certfile: Some(cert.clone()),
        ssl_keyfile: Some(key.clone()),
        ..with_ca(certs.ca())
    };
    let m = RedisMap::create(&s.url(), "m", MapParams::default(), opts).unwrap();
    m.insert(b"k", b"v").unwrap();
    // The key in the certificate's own file (Python's ssl takes it so), and all three in the
    // URL's query.
    let both = certs.dir().join("client-and-key.pem");
    let pem = [std::fs::read(&cert).unwrap(), std::fs::read(&key).unwrap()].concat();
    std::fs::write(&both, pem).unwrap();
    let opts = RedisOptions {
        ssl_certfile: Some(both),
        ..with_ca(certs.ca())
    };
    let other = RedisMap::attach(&s.url(), "m", opts).unwrap();
    assert_eq!(other.len().unwrap(), 1);
    let url = format!(
        "{}?ssl_ca_certs={}&ssl_certfile={}&ssl_keyfile={}",
        s.url(),
        certs.ca().display(),
        cert.display(),
        key.display()
    );
    let third = RedisMap::attach(&url, "m", RedisOptions::default()).unwrap();
    assert_eq!(third.get(b"k").unwrap().as_deref(), Some(&b"v"[..]));
    third.unlink().unwrap();
}

#[test]
fn a_port_without_tls_and_tls_on_a_plain_url_are_errors_not_hangs() {
    let Some((tls, certs)) = tls_server(&[]) else {
        return;
    };
    let plain = LocalServer::start().expect("start redis-server");
    let rediss_to_plain = plain.url().replace("redis://", "rediss://");
    // The plain server waits for the end of what it takes for a command: the timeout ends it.
    let opts = RedisOptions {
        timeout: Duration::from_secs(1),
        ..with_ca(certs.ca())
    };
    let started = Instant::now();
    let e = RedisMap::attach(&rediss_to_plain, "m", opts.clone()).unwrap_err();
    assert!(matches!(e, Error::Connection { .. }), "{e:?}");
    assert!(e.to_string().contains("does not speak TLS"), "{e}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    // A plain client on the TLS port: the server drops it (or our timeout ends the wait).
    let plain_to_tls = tls.url().replace("rediss://", "redis://");
    let started = Instant::now();
    let opts = RedisOptions {
        ssl_ca_certs: None,
        ..opts
    };
    let e = RedisMap::attach(&plain_to_tls, "m", opts).unwrap_err();
    assert!(e.to_string().contains("rediss://"), "{e}");
    assert!(matches!(e, Error::Connection { .. }), "{e:?}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn bad_tls_options_are_typed_errors() {
    let Some((s, certs)) = tls_server(&[]) else {
        return;
    };
    let invalid = |url: &str, opts: RedisOptions, what: &str, needle: &str| {
        let e = RedisMap::attach(url, "m", opts).unwrap_err();
        match &e {
            Error::InvalidParameter { what: w, .. } if *w == what => {}
            _ => panic!("{url}: expected InvalidParameter {what}, got {e:?}"),
        }
        assert!(e.to_string().contains(needle), "{e}");
    };
    let plain = "redis://127.0.0.1:1/0";
    invalid(
        plain,
        with_ca(certs.ca()),
        "ssl_ca_certs",
        "is for rediss://",
    );
    invalid(
        &format!("{plain}?ssl_cert_reqs=none"),
        RedisOptions::default(),
        "ssl_cert_reqs",
        "is for rediss://",
    );
    let missing = certs.dir().join("no-such.pem");
    invalid(&s.url(), with_ca(missing), "ssl_ca_certs", "no-such.pem");
    let (cert, key) = certs.client();
    invalid(
        &s.url(),
        with_ca(key.clone()),
        "ssl_ca_certs",
        "no PEM certificate",
    );
    let key_alone = RedisOptions {
        ssl_keyfile: Some(key),
        ..RedisOptions::default()
    };
    invalid(&s.url(), key_alone, "ssl_keyfile", "ssl_certfile");
    let cert_alone = RedisOptions {
        ssl_certfile: Some(cert),
        ..RedisOptions::default()
    };
    invalid(&s.url(), cert_alone, "ssl_certfile", "private key");
    let url = format!("{}?ssl_ca_certs={}", s.url(), certs.ca().display());
    invalid(&url, with_ca(certs.ca()), "ssl_ca_certs", "not both");
    invalid(
        &format!("{}?ssl_cert_reqs=maybe", s.url()),
        RedisOptions::default(),
        "ssl_cert_reqs",
        "\"none\"",
    );
    assert_eq!(CertReqs::parse("optional").unwrap(), CertReqs::Required);
}

#[test]
fn the_operations_work_on_a_tls_cluster() {
    let Some(certs) = certs() else { return };
    let cluster = LocalCluster::start_tls(3, &certs).expect("start a 3-node TLS cluster");
    let mk = TlsMaker {
        url: cluster.url(),
        opts: with_ca(certs.ca()),
        next: Cell::new(0),
    };
    assert!(mk.url.starts_with("rediss://"));
    assert!(mk.create("probe", MapParams::default()).is_cluster());
    suite(&mk);
    // Names that hash to every node: the client follows the slot map to each over TLS.
    for i in 0..30 {
        let m = mk.create(&format!("spread-{i}"), MapParams::with_capacity(4));
        m.insert(b"k", b"v").unwrap();
        assert_eq!(m.len().unwrap(), 1);
        m.unlink().unwrap();
    }
    // An untrusted cluster is refused as a single server is.
    let started = Instant::now();
    let e = RedisMap::attach(&cluster.url(), "probe", RedisOptions::default()).unwrap_err();
    untrusted(&e, started);
}
