//! The typed map on shared memory, a file and Redis: every operation, Python's key equality,
//! and the typed errors. (The bytes Python writes and reads: python/tests/test_cross_language.py.)

use serde::{Deserialize, Serialize};
use shmap_testkit::names::TestName as Named;
use shmap_testkit::redis_server::{self, LocalServer};
use shmap_typed::{Error, Json, Options, Place, SharedHashMap};

/// Runs `f` on a fresh place of each storage there is (Redis when a server is installed).
fn on_every_storage(tag: &str, f: impl Fn(&Place)) {
    let name = Named::new(tag);
    f(&Place::shm(name.as_str()));
    let dir = tempfile::tempdir().unwrap();
    f(&Place::file(dir.path().join("map")));
    if redis_server::available_for_tests() {
        let server = LocalServer::start().unwrap();
        f(&Place::redis(server.url(), tag));
    }
}

fn create<K, V>(place: &Place) -> SharedHashMap<K, V>
where
    K: shmap_typed::Encode + shmap_typed::Decode,
    V: shmap_typed::Encode + shmap_typed::Decode,
{
    SharedHashMap::open(place, &Options::new().exist_ok(true)).unwrap()
}

#[test]
fn every_operation_round_trips_its_types() {
    on_every_storage("typed-ops", |place| {
        let m = create::<String, String>(place);
        assert!(m.insert("a", "x").unwrap());
        assert!(!m.insert("a", "y").unwrap());
        assert_eq!(m.get("a").unwrap().as_deref(), Some("y"));
        assert!(m.contains_key("a").unwrap());
        assert_eq!(m.get_or_insert("a", "z").unwrap(), "y");
        assert_eq!(m.get_or_insert("b", "z").unwrap(), "z");
        assert!(!m.compare_and_set("a", "x", "w").unwrap());
        assert!(m.compare_and_set("a", "y", "w").unwrap());
        assert_eq!(m.pop("a").unwrap().as_deref(), Some("w"));
        assert_eq!(m.pop("a").unwrap(), None);
        m.update([("c".to_string(), "1".to_string()), ("d".into(), "2".into())])
            .unwrap();
        let mut all: Vec<(String, String)> = m.iter().unwrap().map(Result::unwrap).collect();
        all.sort();
        assert_eq!(
            all,
            [
                ("b".into(), "z".into()),
                ("c".into(), "1".into()),
                ("d".into(), "2".into())
            ]
        );
        assert_eq!(m.len().unwrap(), 3);
        assert!(m.remove("b").unwrap());
        assert!(!m.remove("b").unwrap());

        let t = create::<(String, i64), (Option<bool>, f64, Vec<u8>, u128)>(place);
        let v = (Some(true), -0.5, vec![0, 255], u128::MAX);
        t.insert(&("k".to_string(), -3), &v).unwrap();
        assert_eq!(t.get(&("k".to_string(), -3)).unwrap(), Some(v.clone()));
        // Borrowed parts ask for the same entry, and write the same bytes.
        assert_eq!(t.get(&("k", -3)).unwrap(), Some(v.clone()));
        assert!(t.contains_key(&(&"k".to_string(), &-3)).unwrap());
        let borrowed = (Some(&true), -0.5, &[0u8, 255][..], u128::MAX);
        assert!(t.compare_and_set(&("k", -3), &borrowed, &borrowed).unwrap());
        t.update([(("l", 1), borrowed)]).unwrap();
        assert_eq!(t.pop(&("l", 1)).unwrap(), Some(v));
        let o = create::<Option<String>, String>(place);
        o.insert(&Some("x"), "some").unwrap();
        o.insert(&None::<&str>, "none").unwrap();
        assert_eq!(
            o.get(&Some("x".to_string())).unwrap().as_deref(),
            Some("some")
        );
        assert_eq!(o.get(&None::<String>).unwrap().as_deref(), Some("none"));
        m.unlink().unwrap();
    });
}

#[test]
fn one_one_point_zero_and_true_are_one_key_as_in_python() {
    on_every_storage("typed-keys", |place| {
        let ints = create::<i64, String>(place);
        ints.insert(&1, "one").unwrap();
        let floats = create::<f64, String>(place);
        let bools = create::<bool, String>(place);
        assert_eq!(floats.get(&1.0).unwrap().as_deref(), Some("one"));
        assert_eq!(bools.get(&true).unwrap().as_deref(), Some("one"));
        floats.insert(&1e20, "big").unwrap();
        let big = create::<i128, String>(place);
        assert_eq!(
            big.get(&100_000_000_000_000_000_000).unwrap().as_deref(),
            Some("big")
        );
        // Keys read back as the type asked for.
        let keys: Vec<f64> = floats.iter().unwrap().map(|e| e.unwrap().0).collect();
        assert!(keys.contains(&1.0) && keys.contains(&1e20));
        floats.insert(&0.5, "half").unwrap();
        assert_eq!(floats.get(&0.5).unwrap().as_deref(), Some("half"));
        // Read as ints: 0.5 is of another type, 1e20 does not fit an i64.
        let errors: Vec<_> = ints.iter().unwrap().filter_map(Result::err).collect();
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(errors
            .iter()
            .any(|e| matches!(e, Error::WrongType { found: "float", .. })));
        assert!(errors.iter().any(|e| matches!(e, Error::OutOfRange { .. })));
        ints.unlink().unwrap();
    });
}

#[test]
fn a_value_of_another_type_is_an_error_naming_both() {
    on_every_storage("typed-types", |place| {
        let strings = create::<String, String>(place);
        strings.insert("k", "text").unwrap();
        let ints = create::<String, i64>(place);
        let e = ints.get("k").unwrap_err();
        assert!(
            matches!(
                e,
                Error::WrongType {
                    expected: "i64",
                    found: "str"
                }
            ),
            "{e:?}"
        );
        assert_eq!(e.to_string(), "expected i64, found a Python str in the map");
        ints.insert("n", &300).unwrap();
        let bytes = create::<String, u8>(place);
        let e = bytes.get("n").unwrap_err();
        assert_eq!(
            e.to_string(),
            "expected u8, found 300, which does not fit it"
        );
        let pairs = create::<String, (i64, i64)>(place);
        assert!(matches!(pairs.get("n"), Err(Error::WrongType { .. })));
        // A pop of another type: the error, and the value stays.
        assert!(matches!(ints.pop("k"), Err(Error::WrongType { .. })));
        assert_eq!(strings.get("k").unwrap().as_deref(), Some("text"));
        strings.unlink().unwrap();
    });
}

#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct Point {
    x: f64,
    tags: Vec<String>,
}

#[test]
fn serde_values_are_json() {
    on_every_storage("typed-json", |place| {
        let m = create::<String, Json<Point>>(place);
        let p = Point {
            x: 1.5,
            tags: vec!["a".into()],
        };
        m.insert("p", &Json(p)).unwrap();
        assert_eq!(m.get("p").unwrap().unwrap().0.tags, ["a"]);
        let raw = create::<String, Json<serde_json::Value>>(place);
        assert_eq!(raw.get("p").unwrap().unwrap().0["x"], 1.5);
        let e = create::<Json<Point>, i64>(place).get(&Json(Point {
            x: 0.0,
            tags: vec![],
        }));
        assert!(matches!(e, Err(Error::Unstorable(_))), "{e:?}");
        m.unlink().unwrap();
    });
}

#[test]
fn incr_is_python_arithmetic_and_refuses_without_changing() {
    on_every_storage("typed-incr", |place| {
        let ints = create::<String, i64>(place);
        assert_eq!(ints.incr("c", 5).unwrap(), 5);
        assert_eq!(ints.incr("c", -7).unwrap(), -2);
        let floats = create::<String, f64>(place);
        floats.insert("f", &0.5).unwrap();
        // A float at the key of an int map: an error, and the float is still there.
        assert!(matches!(ints.incr("f", 1), Err(Error::NotANumber(t)) if t == "float"));
        assert_eq!(floats.get("f").unwrap(), Some(0.5));
        // An int plus a float is a float, as in Python.
        assert_eq!(floats.incr("c", 0.5).unwrap(), -1.5);
        let big = create::<String, i128>(place);
        big.insert("max", &i128::MAX).unwrap();
        assert!(matches!(big.incr("max", 1), Err(Error::Overflow)));
        assert_eq!(big.get("max").unwrap(), Some(i128::MAX));
        let text = create::<String, String>(place);
        text.insert("s", "x").unwrap();
        assert!(matches!(ints.incr("s", 1), Err(Error::NotANumber(t)) if t == "str"));
        // A sum the map's type cannot hold: an error, and the value stays.
        let small = create::<String, u8>(place);
        small.insert("b", &255).unwrap();
        assert!(matches!(small.incr("b", 1), Err(Error::OutOfRange { .. })));
        assert_eq!(small.get("b").unwrap(), Some(255));
        assert_eq!(small.incr("b", -5_i64).unwrap(), 250); // a delta of another type
        let counts = create::<String, u64>(place);
        assert!(matches!(
            counts.incr("fresh", -1_i64),
            Err(Error::OutOfRange { .. })
        ));
        assert_eq!(counts.get("fresh").unwrap(), None);
        let wide = create::<String, i64>(place);
        wide.insert("top", &i64::MAX).unwrap();
        assert!(matches!(wide.incr("top", 1), Err(Error::OutOfRange { .. })));
        assert_eq!(wide.get("top").unwrap(), Some(i64::MAX));
        ints.unlink().unwrap();
    });
}

#[test]
fn options_are_pythons_and_exist_ok_checks_them() {
    let name = Named::new("typed-opts");
    let place = Place::shm(name.as_str());
    let m = SharedHashMap::<String, String>::open(&place, &Options::new().max_value_size(Some(8)))
        .unwrap();
    assert_eq!(m.params().max_value_size, 8);
    assert!(m.insert("k", "12345678").is_ok());
    assert!(matches!(m.insert("k", "123456789"), Err(Error::Map(_))));
    assert!(matches!(
        SharedHashMap::<String, String>::create(&place),
        Err(Error::Map(shmap::Error::AlreadyExists(_)))
    ));
    let other = Options::new().exist_ok(true).max_value_size(Some(9));
    assert!(matches!(
        SharedHashMap::<String, String>::open(&place, &other),
        Err(Error::Map(shmap::Error::InvalidParameter { .. }))
    ));
    let unlimited = Options::new().exist_ok(true).max_value_size(None);
    let n = Named::new("typed-opts-none");
    let big = SharedHashMap::<String, Vec<u8>>::open(&Place::shm(n.as_str()), &unlimited).unwrap();
    big.insert("v", &vec![7u8; 3 << 20]).unwrap();
    assert_eq!(big.get("v").unwrap().map(|v| v.len()), Some(3 << 20));
    big.unlink().unwrap();
    m.unlink().unwrap();
    assert!(matches!(
        SharedHashMap::<String, String>::attach(&place),
        Err(Error::Map(shmap::Error::NotFound(_)))
    ));
}

/// A tuple value an older Python stored pickled (`pickle.dumps(("a", 7))`, protocol 4) reads
/// as the tuple, and `compare_and_set` replaces it; a pickled list stays `Error::Pickled`.
#[test]
fn tuples_an_older_python_pickled_read_and_swap_from_rust() {
    use shmap::{MapBackend, MapOps};
    use shmap_typed::codec::Tag;
    let name = Named::new("typed-legacy");
    let m = create::<String, (String, i64)>(&Place::shm(name.as_str()));
    let bytes = shmap_backends::LockFreeMap::attach(name.as_str()).unwrap();
    let pickled = |hex: &str| {
        let mut v = vec![Tag::Pickle as u8];
        v.extend(
            (0..hex.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap()),
        );
        v
    };
    let key = |k: &str| [&[Tag::Str as u8][..], k.as_bytes()].concat();
    let old = pickled("80049509000000000000008c0161944b0786942e");
    bytes.insert(&key("t"), &old).unwrap();
    assert_eq!(m.get("t").unwrap(), Some(("a".into(), 7)));
    assert!(!m.compare_and_set("t", &("a", 8), &("b", 9)).unwrap());
    assert_eq!(
        bytes.get(&key("t")).unwrap(),
        Some(old),
        "a miss changes nothing"
    );
    assert!(m.compare_and_set("t", &("a", 7), &("b", 9)).unwrap());
    assert_eq!(m.get("t").unwrap(), Some(("b".into(), 9)));
    assert_eq!(bytes.get(&key("t")).unwrap().unwrap()[0], Tag::Tuple as u8);

    bytes
        .insert(&key("l"), &pickled("80049506000000000000005d944b01612e"))
        .unwrap();
    assert!(
        matches!(m.get("l"), Err(Error::Pickled { .. })),
        "{:?}",
        m.get("l")
    );
    m.unlink().unwrap();
}
