//! Running one hook script once: its own process group, stdout and stderr
//! captured, killed with its group when it outlasts the timeout.

use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustix::process::Signal;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::Command;
use tokio::task::JoinHandle;

use crate::group;

/// Output kept per stream: the end matters (the endpoints line, the last
/// error), so older bytes are dropped beyond this.
const KEEP: usize = 1 << 20;
/// After the script exits, how long its output may still take to arrive.
/// A background job it started can hold the pipes open for ever; its
/// output after this is not the script's answer.
const DRAIN: Duration = Duration::from_millis(200);

/// Why one run failed.
#[derive(Debug)]
pub(super) enum Failure {
    /// The script could not be started at all.
    Spawn(String),
    /// It exited with a failure status.
    Exit { status: String, stderr: String },
    /// It ran past the timeout and was killed.
    Timeout { after: Duration, stderr: String },
    /// It succeeded but printed something that is not an answer.
    Output { problem: String, stdout: String },
}

impl Failure {
    pub(super) fn summary(&self) -> String {
        match self {
            Failure::Spawn(e) => format!("could not be started: {e}"),
            Failure::Exit { status, .. } => format!("exited with {status}"),
            Failure::Timeout { after, .. } => {
                format!("ran longer than {after:?} and was killed")
            }
            Failure::Output { problem, .. } => problem.clone(),
        }
    }

    /// The evidence: the end of stderr, or of stdout for a bad answer.
    pub(super) fn evidence(&self) -> Option<String> {
        let (what, text) = match self {
            Failure::Spawn(_) => return None,
            Failure::Exit { stderr, .. } | Failure::Timeout { stderr, .. } => ("stderr", stderr),
            Failure::Output { stdout, .. } => ("stdout", stdout),
        };
        let tail = crate::tail(text, 15);
        (!tail.is_empty()).then(|| format!("last lines of its {what}:\n{tail}"))
    }
}

/// What a successful run printed.
pub(super) struct Output {
    pub(super) stdout: String,
}

pub(super) async fn run_once(
    argv: &[String],
    env: &[(String, String)],
    workdir: &Path,
    timeout: Duration,
) -> Result<Output, Failure> {
    let Some((program, args)) = argv.split_first() else {
        return Err(Failure::Spawn("the command is empty".into()));
    };
    let mut child = Command::new(program)
        .args(args)
        .current_dir(workdir)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| Failure::Spawn(format!("`{program}`: {e}")))?;
    let pgid = child.id();
    let stdout = capture(child.stdout.take());
    let stderr = capture(child.stderr.take());

    let waited = tokio::time::timeout(timeout, child.wait()).await;
    let timed_out = waited.is_err();
    if timed_out && let Some(pgid) = pgid {
        group::signal(pgid, Signal::KILL);
    }
    let status = match waited {
        Ok(status) => status,
        Err(_) => child.wait().await,
    };
    if timed_out && let Some(pgid) = pgid {
        // Whatever the script left in its group goes too. After a normal
        // exit, background jobs it started are its own business.
        group::kill_remains(pgid).await;
    }
    let stdout = stdout.finish().await;
    let stderr = stderr.finish().await;
    match status {
        _ if timed_out => Err(Failure::Timeout {
            after: timeout,
            stderr,
        }),
        Err(e) => Err(Failure::Spawn(format!("waiting for `{program}`: {e}"))),
        Ok(status) if !status.success() => Err(Failure::Exit {
            status: status.to_string(),
            stderr,
        }),
        Ok(_) => Ok(Output { stdout }),
    }
}

/// A stream being read into memory while the script runs (so a chatty
/// script never blocks on a full pipe).
struct Capture {
    buf: Arc<Mutex<Vec<u8>>>,
    task: Option<JoinHandle<()>>,
}

fn capture<R: AsyncRead + Unpin + Send + 'static>(stream: Option<R>) -> Capture {
    let buf = Arc::new(Mutex::new(Vec::new()));
    let task = stream.map(|mut stream| {
        let buf = Arc::clone(&buf);
        tokio::spawn(async move {
            let mut chunk = [0u8; 8192];
            while let Ok(n) = stream.read(&mut chunk).await {
                if n == 0 {
                    break;
                }
                let mut b = buf.lock().unwrap_or_else(|e| e.into_inner());
                b.extend_from_slice(&chunk[..n]);
                if b.len() > KEEP {
                    let excess = b.len() - KEEP;
                    b.drain(..excess);
                }
            }
        })
    });
    Capture { buf, task }
}

impl Capture {
    async fn finish(mut self) -> String {
        if let Some(task) = self.task.take() {
            let abort = task.abort_handle();
            if tokio::time::timeout(DRAIN, task).await.is_err() {
                abort.abort();
            }
        }
        let b = self.buf.lock().unwrap_or_else(|e| e.into_inner());
        String::from_utf8_lossy(&b).into_owned()
    }
}
