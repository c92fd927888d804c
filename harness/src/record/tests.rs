//! Records through CSV: the header, round trips, and the CSVs of earlier harnesses.

use super::*;
use std::time::{Duration, UNIX_EPOCH};

#[test]
fn timestamps_are_rfc3339_utc() {
    assert_eq!(rfc3339_utc(UNIX_EPOCH), "1970-01-01T00:00:00Z");
    let t = UNIX_EPOCH + Duration::from_secs(1_795_599_465);
    assert_eq!(rfc3339_utc(t), "2026-11-25T09:37:45Z");
    let leap = UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
    assert_eq!(rfc3339_utc(leap), "2000-02-29T00:00:00Z");
}

#[test]
fn a_record_round_trips_through_csv_with_the_documented_header() {
    let header = csv_header();
    for col in [
        "backend",
        "status",
        "message",
        "commit",
        "timestamp",
        "machine",
        "seed",
    ] {
        assert!(header.iter().any(|h| h == col), "no {col} in {header:?}");
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("runs.csv");
    let r = Record {
        backend: "lockfree".into(),
        status: Status::Errors,
        message: "x".into(),
        value_size: ValueSize::LogUniform { min: 8, max: 16384 },
        bytes_per_entry: Some(2583.5),
        ..Record::default()
    };
    let mut w = csv::Writer::from_path(&path).unwrap();
    w.serialize(&r).unwrap();
    drop(w);
    assert_eq!(read_csv(&path).unwrap(), vec![r]);
}

/// Reads back a one-row CSV written without the columns `dropped`.
fn read_without(dropped: &[&str]) -> Record {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("runs.csv");
    let mut w = csv::Writer::from_path(&path).unwrap();
    let header: Vec<String> = csv_header()
        .into_iter()
        .filter(|c| !dropped.contains(&c.as_str()))
        .collect();
    w.write_record(&header).unwrap();
    let row: Vec<String> = header
        .iter()
        .map(|c| match c.as_str() {
            "backend" => "lockfree".into(),
            "status" => "ok".into(),
            "storage" => "file:/tmp".into(),
            "bytes_per_entry" => "88.5".into(),
            "procs" | "repeat" | "ops" | "p50_ns" | "p99_ns" | "p999_ns" | "max_ns" | "errors"
            | "kills" | "violations" | "keys" | "key_size" | "value_size" | "capacity"
            | "read_pct" | "absent_pct" | "seed" | "kill_every_ms" => "1".into(),
            "ops_per_sec"
            | "ns_per_op"
            | "min_worker_ops_per_sec"
            | "max_worker_ops_per_sec"
            | "duration_s"
            | "warmup_s" => "1.0".into(),
            _ => "x".into(),
        })
        .collect();
    w.write_record(&row).unwrap();
    drop(w);
    let mut rows = read_csv(&path).unwrap();
    assert_eq!(rows.len(), 1);
    rows.remove(0)
}

#[test]
fn csvs_of_earlier_harnesses_read_their_missing_columns_as_the_defaults() {
    let neither = read_without(&["storage", "absent_pct", "bytes_per_entry"]);
    assert_eq!(neither.bytes_per_entry, None);
    assert_eq!(
        (
            neither.backend.as_str(),
            neither.storage.as_str(),
            neither.absent_pct
        ),
        ("lockfree", "shm", 0)
    );
    // The committed sweeps have `storage` but not `absent_pct`.
    let storage_only = read_without(&["absent_pct"]);
    assert_eq!(
        (storage_only.storage.as_str(), storage_only.absent_pct),
        ("file:/tmp", 0)
    );
    let current = read_without(&[]);
    assert_eq!(
        (current.storage.as_str(), current.absent_pct),
        ("file:/tmp", 1)
    );
    assert_eq!(current.bytes_per_entry, Some(88.5));
}

#[test]
fn a_csv_missing_a_column_that_was_always_written_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("runs.csv");
    let header: Vec<String> = csv_header().into_iter().filter(|c| c != "seed").collect();
    std::fs::write(&path, format!("{}\n", header.join(","))).unwrap();
    let e = read_csv(&path).unwrap_err();
    assert!(e.contains("missing columns: seed"), "{e}");
}

#[test]
fn foreign_or_empty_csvs_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("other.csv");
    std::fs::write(&path, "a,b\n1,2\n").unwrap();
    let e = read_csv(&path).unwrap_err();
    assert!(
        e.contains("not a harness runs.csv") && e.contains("missing columns"),
        "{e}"
    );
    std::fs::write(&path, csv_header().join(",") + "\n").unwrap();
    assert!(read_csv(&path).unwrap_err().contains("no rows"));
}

/// The sweeps committed under results/ were written when `value_size` was a number: they
/// still read, as the fixed size they were run with.
#[test]
fn the_committed_sweeps_read_with_their_numeric_value_sizes() {
    let results = Path::new(env!("CARGO_MANIFEST_DIR")).join("../results");
    for csv in [
        "2026-11-25-epyc-2cpu-redis/runs.csv",
        "2026-11-26-epyc-2cpu/runs.csv",
        "2026-12-06-epyc-2cpu/sweep-layout7/runs.csv",
    ] {
        let rows = read_csv(&results.join(csv)).unwrap_or_else(|e| panic!("{csv}: {e}"));
        assert!(rows.len() > 100, "{csv}");
        assert!(
            rows.iter().all(|r| r.value_size == ValueSize::Fixed(64)),
            "{csv}"
        );
    }
}
