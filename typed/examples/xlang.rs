//! The Rust side of the cross-language tests (`python/tests/test_cross_language.py`): writes
//! one entry of every supported type, checks the same entries as Python wrote them, or adds to
//! a counter that Python processes add to at the same time.
//!
//! ```text
//! xlang write PLACE        write the entries (the map exists)
//! xlang check PLACE        check the entries Python wrote, bytes included
//! xlang incr PLACE N       add 1 to "counter" N times
//! PLACE: shm:NAME | file:PATH | redis:URL#NAME
//! ```
//!
//! The entries, in Python (the test has the same list):
//! `{"str": "héllo wörld ✓", b"bytes\0": b"\0\xff\x10", "int": -5, "i64min": -2**63,
//! "big": 2**100, "negbig": -2**120, "u128max": 2**128 - 1, "float": 2.5, "negzero": -0.0,
//! "bool": True, "none": None, "some": 3, ("tuple", 1): ("a", 1, 1.5, False, None, b"b"),
//! 1: "one", 2.5: "two and a half", "json": {"id": 7, "args": ["--fast", "-v"],
//! "nested": {"x": [1.0, 2.5, None], "ok": True}}}`, and from Python only, `"pickled"`: a set.

use std::fmt::Debug;
use std::process::ExitCode;

use serde::{Deserialize, Serialize};
use shmap_typed::{Decode, Encode, EncodesAs, Error, Json, Place, SharedHashMap};

#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct Job {
    id: u32,
    args: Vec<String>,
    nested: Nested,
}

#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct Nested {
    x: Vec<Option<f64>>,
    ok: bool,
}

fn job() -> Job {
    Job {
        id: 7,
        args: vec!["--fast".into(), "-v".into()],
        nested: Nested {
            x: vec![Some(1.0), Some(2.5), None],
            ok: true,
        },
    }
}

type Tuple = (String, i64, f64, bool, Option<String>, Vec<u8>);

fn tuple() -> Tuple {
    ("a".into(), 1, 1.5, false, None, b"b".to_vec())
}

fn place(arg: &str) -> Result<Place, String> {
    match arg.split_once(':') {
        Some(("shm", name)) => Ok(Place::shm(name)),
        Some(("file", path)) => Ok(Place::file(path)),
        Some(("redis", rest)) => match rest.rsplit_once('#') {
            Some((url, name)) => Ok(Place::redis(url, name)),
            None => Err(format!("{arg}: redis:URL#NAME")),
        },
        _ => Err(format!("{arg}: shm:NAME, file:PATH or redis:URL#NAME")),
    }
}

fn open<K: Encode + Decode, V: Encode + Decode>(
    place: &Place,
) -> Result<SharedHashMap<K, V>, Error> {
    SharedHashMap::attach(place)
}

/// Writes `value` at `key` on a handle of these types.
fn put<K, V>(place: &Place, key: K, value: V) -> Result<(), Error>
where
    K: EncodesAs<K> + Decode,
    V: EncodesAs<V> + Decode,
{
    open::<K, V>(place)?.insert(&key, &value).map(drop)
}

/// Checks that `key` holds `value` (typed), and that its bytes are the ones this side writes
/// (a compare-and-set of the value with itself succeeds only on equal bytes).
fn expect<K, V>(place: &Place, key: K, value: V) -> Result<(), String>
where
    K: EncodesAs<K> + Decode + Debug,
    V: EncodesAs<V> + Decode + PartialEq + Debug,
{
    let map = open::<K, V>(place).map_err(|e| e.to_string())?;
    let got = map.get(&key).map_err(|e| format!("{key:?}: {e}"))?;
    if got.as_ref() != Some(&value) {
        return Err(format!("{key:?}: expected {value:?}, got {got:?}"));
    }
    match map.compare_and_set(&key, &value, &value) {
        Ok(true) => Ok(()),
        Ok(false) => Err(format!("{key:?}: equal value, other bytes than Rust's")),
        Err(e) => Err(format!("{key:?}: {e}")),
    }
}

/// `$f(place, key, value)?` for each entry whose typed value both sides compare the same way
/// (every entry but `negzero` and `json`, which `check` looks at by hand).
macro_rules! compared_entries {
    ($f:ident, $p:expr) => {
        $f($p, "str".to_string(), "héllo wörld ✓".to_string())?;
        $f($p, b"bytes\0".to_vec(), b"\0\xff\x10".to_vec())?;
        $f($p, "int".to_string(), -5_i64)?;
        $f($p, "i64min".to_string(), i64::MIN)?;
        $f($p, "big".to_string(), 1_i128 << 100)?;
        $f($p, "negbig".to_string(), -(1_i128 << 120))?;
        $f($p, "u128max".to_string(), u128::MAX)?;
        $f($p, "float".to_string(), 2.5_f64)?;
        $f($p, "bool".to_string(), true)?;
        $f($p, "none".to_string(), None::<i64>)?;
        $f($p, "some".to_string(), Some(3_i64))?;
        $f($p, ("tuple".to_string(), 1_i64), tuple())?;
        $f($p, 1_i64, "one".to_string())?;
        $f($p, 2.5_f64, "two and a half".to_string())?;
    };
}

fn write(p: &Place) -> Result<(), Error> {
    compared_entries!(put, p);
    put(p, "negzero".to_string(), -0.0_f64)?;
    put(p, "json".to_string(), Json(job()))
}

fn check(p: &Place) -> Result<(), String> {
    compared_entries!(expect, p);
    // -0.0 == 0.0: look at the sign too.
    let negzero = open::<String, f64>(p).map_err(|e| e.to_string())?;
    match negzero.get("negzero") {
        Ok(Some(z)) if z == 0.0 && z.is_sign_negative() => {}
        other => return Err(format!("negzero: {other:?}")),
    }
    // Python's key 1 is Rust's 1_i64 (above), 1.0_f64 and true: one key.
    expect(p, 1.0_f64, "one".to_string())?;
    expect(p, true, "one".to_string())?;
    // JSON: the document Python's json wrote, read by serde (its bytes may differ in layout).
    let jobs = open::<String, Json<Job>>(p).map_err(|e| e.to_string())?;
    match jobs.get("json") {
        Ok(Some(Json(j))) if j == job() => {}
        other => return Err(format!("json: {other:?}")),
    }
    // What Python pickled: a clear error, not a panic or garbage.
    let strings = open::<String, String>(p).map_err(|e| e.to_string())?;
    match strings.get("pickled") {
        Err(e @ Error::Pickled { .. }) => eprintln!("as it should: {e}"),
        other => return Err(format!("pickled: expected Error::Pickled, got {other:?}")),
    }
    // A value of another type names both.
    match strings.get("int") {
        Err(e @ Error::WrongType { .. }) => eprintln!("as it should: {e}"),
        other => return Err(format!("int as String: expected WrongType, got {other:?}")),
    }
    let n = strings.len().map_err(|e| e.to_string())?;
    if n != 17 {
        return Err(format!("expected 17 entries, found {n}"));
    }
    Ok(())
}

fn incr(p: &Place, n: u64) -> Result<(), Error> {
    let counter = open::<String, i64>(p)?;
    for _ in 0..n {
        counter.incr("counter", 1)?;
    }
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let run = || -> Result<(), String> {
        let [cmd, where_, rest @ ..] = args.as_slice() else {
            return Err("usage: xlang (write|check|incr N) PLACE".into());
        };
        let p = place(where_)?;
        match (cmd.as_str(), rest) {
            ("write", []) => write(&p).map_err(|e| e.to_string()),
            ("check", []) => check(&p),
            ("incr", [n]) => {
                incr(&p, n.parse().map_err(|e| format!("N: {e}"))?).map_err(|e| e.to_string())
            }
            _ => Err(format!("unknown command {cmd:?}")),
        }
    };
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xlang: {e}");
            ExitCode::FAILURE
        }
    }
}
