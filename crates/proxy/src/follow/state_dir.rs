//! The state directory: one file per service with the last snapshot the
//! proxy accepted, written so that a crash at any moment leaves either the
//! old file or the new one, never a mix (temporary file, fsync, rename,
//! fsync of the directory).

use std::io::Write;
use std::path::{Path, PathBuf};

use backout_fleet::Snapshot;
use backout_fleet::state::{self, Saved};

/// A state file that could not be used, with its path.
#[derive(Debug, thiserror::Error)]
#[error("state file {}: {detail}", path.display())]
pub struct StateFileError {
    pub path: PathBuf,
    pub detail: String,
}

#[derive(Debug, Clone)]
pub struct StateDir {
    dir: PathBuf,
}

const SUFFIX: &str = ".snapshot";

impl StateDir {
    /// Creates the directory if needed.
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self, StateFileError> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir).map_err(|e| StateFileError {
            path: dir.clone(),
            detail: format!("cannot create the state directory: {e}"),
        })?;
        Ok(StateDir { dir })
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }

    fn file(&self, service: &str) -> PathBuf {
        self.dir.join(format!("{service}{SUFFIX}"))
    }

    /// Every state file: the readable ones, and the refusals of the others
    /// (damaged, cut short, unknown format), each with its path.
    pub fn load(&self) -> (Vec<Saved>, Vec<StateFileError>) {
        let mut saved = Vec::new();
        let mut errors = Vec::new();
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) => {
                errors.push(StateFileError {
                    path: self.dir.clone(),
                    detail: format!("cannot read the state directory: {e}"),
                });
                return (saved, errors);
            }
        };
        let mut paths: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.to_str().is_some_and(|s| s.ends_with(SUFFIX)))
            .collect();
        paths.sort();
        for path in paths {
            let bytes = match std::fs::read(&path) {
                Ok(b) => b,
                Err(e) => {
                    errors.push(StateFileError {
                        path,
                        detail: format!("cannot read it: {e}"),
                    });
                    continue;
                }
            };
            match state::decode(&bytes) {
                Ok(s) if self.file(&s.snapshot.service) == path => saved.push(s),
                Ok(s) => errors.push(StateFileError {
                    path,
                    detail: format!(
                        "it holds service {:?}, which belongs in another file",
                        s.snapshot.service
                    ),
                }),
                Err(e) => errors.push(StateFileError {
                    path,
                    detail: format!("{e}; it is ignored and the proxy waits for the control plane"),
                }),
            }
        }
        (saved, errors)
    }

    /// Replaces a service's state file atomically and durably.
    pub fn save(
        &self,
        snapshot: &Snapshot,
        received_at_ms: u64,
        control_plane: &str,
    ) -> Result<(), StateFileError> {
        let path = self.file(&snapshot.service);
        let tmp = self.dir.join(format!(".{}{SUFFIX}.tmp", snapshot.service));
        let bytes = state::encode(snapshot, received_at_ms, control_plane);
        let fail = |what: &str, e: std::io::Error| StateFileError {
            path: path.clone(),
            detail: format!("cannot {what}: {e}"),
        };
        let mut f =
            std::fs::File::create(&tmp).map_err(|e| fail("create its temporary file", e))?;
        f.write_all(&bytes)
            .map_err(|e| fail("write its temporary file", e))?;
        f.sync_all()
            .map_err(|e| fail("sync its temporary file", e))?;
        drop(f);
        std::fs::rename(&tmp, &path).map_err(|e| fail("rename its temporary file", e))?;
        // The rename is durable once the directory is.
        std::fs::File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| fail("sync the state directory", e))?;
        Ok(())
    }
}
