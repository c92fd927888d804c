//! `harness ls` and `harness rm`: the shared-memory maps on this machine, and removing one
//! (a map whose creator died, or that a killed run left behind).
//!
//! `ls` reads only the first words of each segment with `pread` (never attaching, so a
//! corrupt or foreign segment cannot hurt it) and counts the processes that map each one
//! from `/proc/*/maps`.

use std::collections::BTreeMap;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::Path;

use shmap::heap::HEAP_MAGIC;
use shmap::{BackendKind, MAGIC};

const SHM: &str = "/dev/shm";

/// One segment in `/dev/shm`.
#[derive(Debug)]
pub struct Entry {
    pub name: String,
    pub owner: String,
    pub mode: u32,
    pub bytes: u64,
    /// `lockfree`, `spinlock`, `mutex` (a map of ours), or what else it is.
    pub kind: String,
    /// Processes that have it mapped now.
    pub attached: usize,
}

/// What the header words say the segment is.
fn kind_of(path: &Path) -> String {
    let mut words = [0u8; 24];
    let read = std::fs::File::open(path).and_then(|f| f.read_at(&mut words, 0));
    let word = |i: usize| u64::from_le_bytes(words[8 * i..8 * i + 8].try_into().expect("8 bytes"));
    match read {
        Err(e) => format!("unreadable ({e})"),
        Ok(n) if n < 24 || word(0) == 0 => {
            "no header: being created, or its creator died (harness rm removes it)".into()
        }
        Ok(_) if word(0) == HEAP_MAGIC => "a shmap map's heap (its entries)".into(),
        Ok(_) if word(0) != MAGIC => "not a shmap map".into(),
        Ok(_) => match BackendKind::from_code(word(2)) {
            Some(k) => format!("{} (layout v{})", k.name(), word(1)),
            None => format!(
                "shmap map of unknown backend {} (layout v{})",
                word(2),
                word(1)
            ),
        },
    }
}

/// uid -> user name, from /etc/passwd.
fn users() -> BTreeMap<u32, String> {
    std::fs::read_to_string("/etc/passwd")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            Some((f.get(2)?.parse().ok()?, f.first()?.to_string()))
        })
        .collect()
}

/// name -> processes that map `/dev/shm/name`.
fn attachments() -> BTreeMap<String, usize> {
    let mut count = BTreeMap::new();
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return count;
    };
    for p in procs.flatten() {
        let Ok(maps) = std::fs::read_to_string(p.path().join("maps")) else {
            continue;
        };
        let mut names: Vec<&str> = maps
            .lines()
            .filter_map(|l| l.split_once("/dev/shm/").map(|(_, n)| n))
            .map(|n| n.trim_end_matches(" (deleted)"))
            .collect();
        names.sort_unstable();
        names.dedup();
        for n in names {
            *count.entry(n.to_owned()).or_insert(0) += 1;
        }
    }
    count
}

/// Every regular file in `/dev/shm`, by name.
pub fn list() -> Result<Vec<Entry>, String> {
    let users = users();
    let attached = attachments();
    let mut entries = Vec::new();
    for e in std::fs::read_dir(SHM)
        .map_err(|e| format!("read {SHM}: {e}"))?
        .flatten()
    {
        let (Ok(meta), Ok(name)) = (e.metadata(), e.file_name().into_string()) else {
            continue;
        };
        if !meta.is_file() {
            continue;
        }
        entries.push(Entry {
            owner: users
                .get(&meta.uid())
                .cloned()
                .unwrap_or_else(|| meta.uid().to_string()),
            mode: meta.mode() & 0o777,
            bytes: meta.len(),
            kind: kind_of(&e.path()),
            attached: attached.get(&name).copied().unwrap_or(0),
            name,
        });
    }
    entries.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(entries)
}

/// The `ls` table.
pub fn text(entries: &[Entry]) -> String {
    let mut s = format!(
        "{:<40} {:<10} {:>5} {:>12} {:>8}  kind\n",
        "name", "owner", "mode", "bytes", "attached"
    );
    for e in entries {
        s.push_str(&format!(
            "{:<40} {:<10} {:>5o} {:>12} {:>8}  {}\n",
            e.name, e.owner, e.mode, e.bytes, e.attached, e.kind
        ));
    }
    s
}

/// Removes each named segment; stops at the first that cannot be removed.
pub fn remove(names: &[String]) -> Result<(), String> {
    for name in names {
        shmap::unlink(name).map_err(|e| e.to_string())?;
        println!("removed {name}");
    }
    Ok(())
}
