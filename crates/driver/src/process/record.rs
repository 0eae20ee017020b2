//! Run records: `{data_dir}/run/{service}/{version}-{replica}.json`, one
//! per replica, written the moment its process exists.
//!
//! The controller records a version's instances in the event log once a
//! deploy returns, which is after the replicas listen. A crash of backout
//! in between would leave replicas nobody knows about: the next start
//! would deploy the version again beside them, and they would run forever.
//! The run record closes that gap, so [`adopt`](super::ProcessDriver) finds
//! them too.
//!
//! A record is only a hint: a replica is taken over only if its pid still
//! leads its own process group and carries the environment the driver gave
//! this very replica (service, version, replica, port), so a reused pid is
//! never mistaken for one. The environment, unlike the command line, stays
//! the same when a `sh -c` wrapper execs the app.

use std::path::PathBuf;

use super::{Instance, Shared};
use crate::group;

impl Shared {
    fn record_dir(&self, service: &str) -> PathBuf {
        self.run_dir.join(service)
    }

    fn record_path(&self, inst: &Instance) -> PathBuf {
        self.record_dir(&inst.service)
            .join(format!("{}-{}.json", inst.version, inst.replica))
    }

    /// Writes (or replaces) a replica's record. Best effort: without it
    /// the replica still runs, it only cannot be found after a crash that
    /// comes before the event log has it.
    pub(super) fn write_record(&self, inst: &Instance) {
        let path = self.record_path(inst);
        let Ok(text) = serde_json::to_vec(inst) else {
            return;
        };
        // Written aside and renamed, so a reader never sees half a record.
        let tmp = path.with_extension("json.tmp");
        let written = std::fs::create_dir_all(self.record_dir(&inst.service))
            .and_then(|()| std::fs::write(&tmp, text))
            .and_then(|()| std::fs::rename(&tmp, &path));
        if let Err(e) = written {
            tracing::warn!(instance = %inst.id, error = %e, "cannot write the run record {}", path.display());
        }
    }

    /// Forgets a replica that was stopped.
    pub(super) fn remove_record(&self, inst: &Instance) {
        let _ = std::fs::remove_file(self.record_path(inst));
    }

    /// The replicas of a version whose records name a process that is
    /// still that replica.
    pub(super) fn recorded_alive(&self, service: &str, version: &str) -> Vec<Instance> {
        let Ok(dir) = std::fs::read_dir(self.record_dir(service)) else {
            return Vec::new();
        };
        let mut found: Vec<Instance> = dir
            .flatten()
            .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
            .filter_map(|e| std::fs::read(e.path()).ok())
            .filter_map(|bytes| serde_json::from_slice::<Instance>(&bytes).ok())
            .filter(|i| i.service == service && i.version == version && is_replica(i))
            .collect();
        found.sort_by_key(|i| i.replica);
        found
    }
}

/// Whether the record's pid is still the replica it names.
fn is_replica(inst: &Instance) -> bool {
    let (Some(pid), Some(port)) = (inst.pid, inst.endpoint.authority().port_u16()) else {
        return false;
    };
    if !group::alive(pid) || group::pgid_of(pid) != Some(pid) {
        return false;
    }
    let Some(env) = group::environ(pid) else {
        return false;
    };
    let want = [
        format!("BACKOUT_SERVICE={}", inst.service),
        format!("BACKOUT_VERSION={}", inst.version),
        format!("BACKOUT_REPLICA={}", inst.replica),
        format!("PORT={port}"),
    ];
    want.iter().all(|w| env.contains(w))
}
