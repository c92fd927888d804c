//! The Redis map under a server's users and passwords (Redis 6 ACLs): a user who may only read
//! attaches and reads, and each write of theirs is [`Error::PermissionDenied`] naming what was
//! missing; a wrong password is the same error; and no password ever shows in a message, a
//! label or a `Debug`.
//!
//! Each test starts a private server, adds its users as the default user, then switches the
//! default user off, as a production server would run.

use shmap::{Error, MapOps, MapParams};
use shmap_backends::redis_map::redact;
use shmap_backends::{RedisMap, RedisOptions};
use shmap_testkit::redis_server::{LocalCluster, LocalServer};

const ADMIN_PASS: &str = "adm1n-S3cret";
const READER_PASS: &str = "r3ader-S3cret";

/// Reads the map's shape with plain commands: no script rights at all.
const READER_RULES: &[&str] = &[
    "~shmap:*", "+@read", "+hget", "+hgetall", "+hscan", "+hlen", "+hexists", "+exists",
];

/// Adds a user on one server (or node: each node of a cluster keeps its own users).
fn set_user(s: &LocalServer, user: &str, pass: &str, rules: &[&str]) {
    let mut c = redis::Client::open(s.url())
        .unwrap()
        .get_connection()
        .unwrap();
    redis::cmd("ACL")
        .arg("SETUSER")
        .arg(user)
        .arg("on")
        .arg(format!(">{pass}"))
        .arg(rules)
        .query::<()>(&mut c)
        .unwrap();
}

/// A server with users `admin` (everything) and `reader` (read only), the default user off.
fn server() -> Option<LocalServer> {
    if !shmap_testkit::redis_server::available_for_tests() {
        return None;
    }
    let s = LocalServer::start().expect("start redis-server");
    set_user(&s, "admin", ADMIN_PASS, &["~*", "+@all"]);
    set_user(&s, "reader", READER_PASS, READER_RULES);
    let mut c = redis::Client::open(s.url())
        .unwrap()
        .get_connection()
        .unwrap();
    redis::cmd("ACL")
        .arg("SETUSER")
        .arg("default")
        .arg("off")
        .query::<()>(&mut c)
        .unwrap();
    Some(s)
}

fn url_as(s: &LocalServer, user: &str, pass: &str) -> String {
    format!("redis://{user}:{pass}@127.0.0.1:{}/0", s.port())
}

fn opts() -> RedisOptions {
    RedisOptions::default()
}

fn with_user(user: &str, pass: &str) -> RedisOptions {
    RedisOptions {
        username: Some(user.into()),
        password: Some(pass.into()),
        ..RedisOptions::default()
    }
}

fn denied(e: &Error, needle: &str) {
    assert!(matches!(e, Error::PermissionDenied { .. }), "{e:?}");
    let text = e.to_string();
    assert!(text.contains(needle), "{text}");
    assert!(
        !text.contains(ADMIN_PASS) && !text.contains(READER_PASS),
        "{text}"
    );
}

#[test]
fn a_reader_attaches_and_reads_and_each_write_is_permission_denied() {
    let Some(s) = server() else { return };
    let admin = RedisMap::create(
        &url_as(&s, "admin", ADMIN_PASS),
        "acl",
        MapParams::with_capacity(64),
        opts(),
    )
    .unwrap();
    admin.insert(b"a", b"1").unwrap();
    admin.insert(b"b", b"2").unwrap();

    // By URL, and by options on a URL without credentials.
    let plain = s.url();
    for (url, o) in [
        (url_as(&s, "reader", READER_PASS), opts()),
        (plain.clone(), with_user("reader", READER_PASS)),
    ] {
        let r = RedisMap::attach(&url, "acl", o).unwrap();
        assert_eq!(r.params(), admin.params());
        assert_eq!(r.get(b"a").unwrap().as_deref(), Some(&b"1"[..]));
        assert!(r.contains_key(b"b").unwrap());
        assert_eq!(r.len().unwrap(), 2);
        let mut all = r.entries().unwrap();
        all.sort();
        assert_eq!(
            all,
            [
                (b"a".to_vec(), b"1".to_vec()),
                (b"b".to_vec(), b"2".to_vec())
            ]
        );

        // A write runs a script: the reader may not, and the error says what it lacked.
        denied(&r.insert(b"c", b"3").unwrap_err(), "evalsha");
        denied(&r.get_or_insert(b"c", b"3").unwrap_err(), "evalsha");
        denied(&r.remove(b"a").unwrap_err(), "evalsha");
        denied(&r.clear().unwrap_err(), "del");
        // Creating a map that exists says so, without needing the rights to create.
        let e = RedisMap::create(
            &url,
            "acl",
            MapParams::default(),
            with_opts_of(&url, &plain),
        )
        .unwrap_err();
        assert!(matches!(e, Error::AlreadyExists(_)), "{e}");
        let e = RedisMap::create(
            &url,
            "new",
            MapParams::default(),
            with_opts_of(&url, &plain),
        )
        .unwrap_err();
        denied(&e, "evalsha");
    }
    assert_eq!(
        admin.len().unwrap(),
        2,
        "nothing the reader tried changed the map"
    );
}

/// The options a URL of the test needs: credentials unless the URL has them.
fn with_opts_of(url: &str, plain: &str) -> RedisOptions {
    if url == plain {
        with_user("reader", READER_PASS)
    } else {
        opts()
    }
}

#[test]
fn a_wrong_or_missing_password_is_permission_denied() {
    let Some(s) = server() else { return };
    RedisMap::create(
        &url_as(&s, "admin", ADMIN_PASS),
        "pw",
        MapParams::default(),
        opts(),
    )
    .unwrap();
    let wrong = "not-the-Password";
    let cases = [
        (url_as(&s, "reader", wrong), opts()),
        (s.url(), with_user("reader", wrong)),
        (s.url(), with_user("nobody", wrong)),
        // The default user is off: no credentials at all is refused too.
        (s.url(), opts()),
    ];
    for (url, o) in cases {
        let e = RedisMap::attach(&url, "pw", o).unwrap_err();
        assert!(matches!(e, Error::PermissionDenied { .. }), "{url}: {e:?}");
        assert!(!e.to_string().contains(wrong), "{e}");
    }
}

#[test]
fn a_password_in_the_url_and_in_the_options_is_refused() {
    let Some(s) = server() else { return };
    let e = RedisMap::attach(
        &url_as(&s, "reader", READER_PASS),
        "m",
        with_user("reader", READER_PASS),
    )
    .unwrap_err();
    assert!(
        matches!(
            e,
            Error::InvalidParameter {
                what: "password",
                ..
            }
        ),
        "{e}"
    );
    assert!(!e.to_string().contains(READER_PASS), "{e}");
}

#[test]
fn passwords_never_show() {
    // Passwords with the characters that confuse a naive split, and in a unix URL's query.
    for (url, shown) in [
        ("redis://u:p4ss@host:6379/0", "redis://u:***@host:6379/0"),
        ("redis://:p4ss@host/0", "redis://:***@host/0"),
        ("rediss://u:p@ss:w/rd@host:6380", "rediss://u:***@host:6380"),
        (
            "redis+unix:///tmp/r.sock?db=0&pass=p4ss",
            "redis+unix:///tmp/r.sock?db=0&pass=***",
        ),
        (
            "unix:///tmp/r.sock?password=p4ss&db=1",
            "unix:///tmp/r.sock?password=***&db=1",
        ),
    ] {
        assert_eq!(redact(url), shown, "{url}");
    }
    assert_eq!(redact("redis://host:6379/0"), "redis://host:6379/0");
    assert_eq!(redact("redis://u@host/0"), "redis://u@host/0");
    let o = with_user("reader", READER_PASS);
    assert!(!format!("{o:?}").contains(READER_PASS), "{o:?}");

    let Some(s) = server() else { return };
    RedisMap::create(
        &url_as(&s, "admin", ADMIN_PASS),
        "shown",
        MapParams::default(),
        opts(),
    )
    .unwrap();
    let r = RedisMap::attach(&url_as(&s, "reader", READER_PASS), "shown", opts()).unwrap();
    for text in [r.label(), r.url().to_owned(), format!("{r:?}")] {
        assert!(!text.contains(READER_PASS), "{text}");
    }
}

/// On a cluster the client learns the nodes with `PING` and `CLUSTER SLOTS`: a reader with them
/// attaches (to the node that owns the map's slot, wherever the URL points) and reads; one
/// without is told which right it lacks, rather than getting a `Connection` error.
#[test]
fn a_reader_on_a_cluster_reads_and_is_told_what_it_lacks() {
    if !shmap_testkit::redis_server::available_for_tests() {
        return;
    }
    let cluster = LocalCluster::start(3).expect("start a 3-node cluster");
    let mut rules = READER_RULES.to_vec();
    for node in cluster.nodes() {
        set_user(node, "bare", READER_PASS, &rules);
    }
    rules.extend(["+ping", "+cluster|slots"]);
    for node in cluster.nodes() {
        set_user(node, "reader", READER_PASS, &rules);
    }
    let admin = RedisMap::create(&cluster.url(), "acl", MapParams::default(), opts()).unwrap();
    for i in 0..50u8 {
        admin.insert(&[i], b"v").unwrap();
    }
    let e = RedisMap::attach(&cluster.url(), "acl", with_user("bare", READER_PASS)).unwrap_err();
    denied(&e, "'ping'");
    let e = RedisMap::attach(&cluster.url(), "acl", with_user("reader", "wrong")).unwrap_err();
    assert!(matches!(e, Error::PermissionDenied { .. }), "{e:?}");
    for node in cluster.nodes() {
        let r = RedisMap::attach(&node.url(), "acl", with_user("reader", READER_PASS)).unwrap();
        assert!(r.is_cluster());
        assert_eq!(r.len().unwrap(), 50);
        assert_eq!(r.get(&[7]).unwrap().as_deref(), Some(&b"v"[..]));
        assert_eq!(r.entries().unwrap().len(), 50);
        denied(&r.insert(b"x", b"y").unwrap_err(), "evalsha");
    }
}
