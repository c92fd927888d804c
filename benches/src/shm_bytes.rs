//! What the kernel holds for a map's files, as its examples measure memory.

/// Bytes the kernel holds for the files in `/dev/shm` whose name is `name` or starts with
/// `name.` (the root, `name.heap`, `name.t<g>`): `st_blocks` of each.
pub fn shm_bytes(name: &str) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let dotted = format!("{name}.");
    std::fs::read_dir("/dev/shm")
        .map(|dir| {
            dir.filter_map(|e| e.ok())
                .filter(|e| {
                    let f = e.file_name();
                    let f = f.to_string_lossy();
                    f == name || f.starts_with(&dotted)
                })
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.blocks() * 512)
                .sum()
        })
        .unwrap_or(0)
}
