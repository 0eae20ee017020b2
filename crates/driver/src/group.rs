//! Process groups: every replica and every hook script runs as the leader
//! of its own group, so that stopping it stops whatever it started too (a
//! `sh -c` wrapper and its app, a script's background jobs).
//!
//! Liveness is read from `/proc` where there is one: a zombie (exited but
//! not yet reaped by its parent) counts as gone, because it runs nothing
//! and holds no port, and after a control-plane crash nobody may be left
//! to reap it. Elsewhere `kill(pid, 0)` is the fallback.

use std::time::Duration;

use rustix::process::{Pid, Signal};
use tokio::process::Child;
use tokio::time::Instant;

/// How long to wait for a group to vanish after SIGKILL before giving up.
const KILL_WAIT: Duration = Duration::from_secs(5);
const POLL: Duration = Duration::from_millis(20);

/// Sends `signal` to every process of the group. A group that is gone
/// already is not an error.
pub(super) fn signal(pgid: u32, signal: Signal) {
    if let Some(pid) = pid(pgid) {
        // ESRCH (no such group) is the expected outcome once it exited;
        // EPERM cannot happen for our own children. Either way there is
        // nothing more to do here: callers check liveness afterwards.
        let _ = rustix::process::kill_process_group(pid, signal);
    }
}

/// Whether the process runs (zombies do not count).
pub(super) fn alive(pid_: u32) -> bool {
    match stat(pid_) {
        Some(s) => !s.zombie,
        None if proc_mounted() => false,
        None => pid(pid_).is_some_and(|p| rustix::process::test_kill_process(p).is_ok()),
    }
}

/// Whether any process of the group still runs (zombies do not count).
pub(super) fn group_alive(pgid: u32) -> bool {
    match std::fs::read_dir("/proc") {
        Ok(dir) => dir.flatten().any(|entry| {
            entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<u32>().ok())
                .and_then(stat)
                .is_some_and(|s| s.pgrp == pgid && !s.zombie)
        }),
        Err(_) => pid(pgid).is_some_and(|p| rustix::process::test_kill_process_group(p).is_ok()),
    }
}

/// The process group of `pid`, if it runs.
pub(super) fn pgid_of(pid: u32) -> Option<u32> {
    stat(pid).filter(|s| !s.zombie).map(|s| s.pgrp)
}

/// The command line of a running process, from `/proc`.
pub(super) fn cmdline(pid: u32) -> Option<Vec<String>> {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    if raw.is_empty() {
        return None; // a zombie or a kernel thread
    }
    Some(
        raw.strip_suffix(b"\0")
            .unwrap_or(&raw)
            .split(|b| *b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect(),
    )
}

/// The environment of a running process (`NAME=value` entries), from
/// `/proc`; `None` where it cannot be read.
pub(super) fn environ(pid: u32) -> Option<Vec<String>> {
    let raw = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
    Some(
        raw.split(|b| *b == 0)
            .filter(|e| !e.is_empty())
            .map(|e| String::from_utf8_lossy(e).into_owned())
            .collect(),
    )
}

/// Stops a group: SIGTERM, up to `grace` for it to exit, then SIGKILL.
/// `child` (when the leader is our own child) is reaped along the way.
/// Fails only if the group survives SIGKILL, which takes a process stuck
/// in the kernel.
pub(super) async fn terminate(
    pgid: u32,
    mut child: Option<&mut Child>,
    grace: Duration,
) -> Result<(), String> {
    signal(pgid, Signal::TERM);
    if wait_gone(pgid, child.as_deref_mut(), grace).await {
        return Ok(());
    }
    signal(pgid, Signal::KILL);
    if wait_gone(pgid, child, KILL_WAIT).await {
        return Ok(());
    }
    Err(format!(
        "process group {pgid} still runs {KILL_WAIT:?} after SIGKILL (a process stuck in the kernel?)"
    ))
}

/// Kills what is left of a group whose leader exited (a `sh -c` wrapper's
/// app, background jobs), so a restart finds its port free.
pub(super) async fn kill_remains(pgid: u32) {
    if group_alive(pgid) {
        signal(pgid, Signal::KILL);
        wait_gone(pgid, None, KILL_WAIT).await;
    }
}

async fn wait_gone(pgid: u32, mut child: Option<&mut Child>, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if let Some(c) = child.as_deref_mut() {
            // Reaps the leader as soon as it exits; errors mean it was
            // reaped already.
            let _ = c.try_wait();
        }
        if !group_alive(pgid) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(POLL).await;
    }
}

fn pid(raw: u32) -> Option<Pid> {
    i32::try_from(raw).ok().and_then(Pid::from_raw)
}

fn proc_mounted() -> bool {
    std::path::Path::new("/proc/self/stat").exists()
}

struct Stat {
    zombie: bool,
    pgrp: u32,
}

/// Reads `/proc/PID/stat`: `pid (comm) state ppid pgrp ...`. The command
/// name may contain spaces and parentheses, so fields are counted from the
/// last `)`.
fn stat(pid: u32) -> Option<Stat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &text[text.rfind(')')? + 1..];
    let mut fields = after.split_whitespace();
    let state = fields.next()?;
    let _ppid = fields.next()?;
    let pgrp = fields.next()?.parse().ok()?;
    Some(Stat {
        zombie: matches!(state, "Z" | "X" | "x"),
        pgrp,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_own_process_is_alive_and_reads_back() {
        let me = std::process::id();
        assert!(alive(me));
        assert!(pgid_of(me).is_some());
        let argv = cmdline(me).unwrap_or_default();
        assert!(!argv.is_empty());
        assert!(environ(me).is_some_and(|env| env.iter().any(|e| e.starts_with("PATH="))));
        assert!(!alive(u32::MAX - 1));
        assert!(!group_alive(u32::MAX - 1));
    }
}
