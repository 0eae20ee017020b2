//! Replica logs: `{data_dir}/logs/{service}/{version}-{replica}.log`.
//!
//! The replica writes to the file itself (opened for appending and handed
//! over as its stdout and stderr), so its output survives a crash of
//! backout and costs backout nothing to copy. The size is capped by
//! copy-and-truncate, as logrotate's `copytruncate` does: the file is
//! copied to `.log.1` and cut to zero, and the replica's next append lands
//! at the new end. Lines written between the copy and the cut are lost;
//! that is the price of never interrupting the replica.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use super::Shared;

/// How much of the end of a log an error shows.
const TAIL_BYTES: u64 = 4096;
const TAIL_LINES: usize = 15;

impl Shared {
    pub(super) fn log_path(&self, service: &str, version: &str, replica: u32) -> PathBuf {
        self.log_dir
            .join(service)
            .join(format!("{version}-{replica}.log"))
    }
}

/// Opens (creating it and its directory) a log for appending, and notes
/// the start of a new incarnation in it.
pub(super) fn open(path: &Path, header: &str) -> std::io::Result<File> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut file = OpenOptions::new().create(true).append(true).open(path)?;
    writeln!(file, "--- backout: {header}")?;
    Ok(file)
}

/// Cuts the log when it grew past `max` bytes, keeping the old part as
/// `.log.1` (replacing the one before).
pub(super) async fn cap(path: &Path, max: u64) -> std::io::Result<()> {
    let len = match tokio::fs::metadata(path).await {
        Ok(m) => m.len(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    if len <= max {
        return Ok(());
    }
    let mut old = path.as_os_str().to_owned();
    old.push(".1");
    tokio::fs::copy(path, PathBuf::from(old)).await?;
    OpenOptions::new().write(true).open(path)?.set_len(0)
}

/// The last lines of a log, indented, for an error's detail.
pub(super) fn tail(path: &Path) -> Option<String> {
    let mut file = File::open(path).ok()?;
    let len = file.metadata().ok()?.len();
    file.seek(SeekFrom::Start(len.saturating_sub(TAIL_BYTES)))
        .ok()?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes).ok()?;
    let text = String::from_utf8_lossy(&bytes);
    Some(format!(
        "last lines of {}:\n{}",
        path.display(),
        super::super::tail(&text, TAIL_LINES)
    ))
}
