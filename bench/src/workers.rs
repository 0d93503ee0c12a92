//! The driver's side of the worker processes: spawning `dht-bench worker`, sending a
//! command and reading its reply, stopping them (and killing any that do not stop).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout};

use crate::protocol::{Command, Reply};

/// How long a worker may take to answer one command (starting 100 nodes at the
/// default proof of work on a loaded machine is the slowest).
const REPLY_TIMEOUT: Duration = Duration::from_secs(300);

/// One worker process.
pub struct Worker {
    /// Its number in the network (names its log file).
    pub number: usize,
    child: Child,
    stdin: ChildStdin,
    stdout: Lines<BufReader<ChildStdout>>,
    /// Runs under a profiler, whose own messages share its stdout.
    profiled: bool,
}

impl Worker {
    /// Starts `exe worker`, its stderr (logs) appended to `log`. With
    /// `DHT_BENCH_PROFILE="<worker number> <command...>"` (say `1 heaptrack -o
    /// target/bench/worker-1`), that one worker runs under the command: the heap
    /// breakdown of docs/BENCHMARKS.md is taken that way.
    pub fn spawn(exe: &Path, number: usize, log: &Path) -> anyhow::Result<Worker> {
        let log_file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .with_context(|| format!("opening {}", log.display()))?;
        let profiler = std::env::var(PROFILE_VAR).ok();
        let wrapper = profiler_of(profiler.as_deref(), number);
        let profiled = wrapper.is_some();
        let mut command = match wrapper {
            Some(wrapper) => {
                let mut command = tokio::process::Command::new(wrapper[0]);
                command.args(&wrapper[1..]).arg(exe);
                command
            }
            None => tokio::process::Command::new(exe),
        };
        let mut child = command
            .arg("worker")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log_file))
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {} worker", exe.display()))?;
        let stdin = child.stdin.take().context("worker stdin")?;
        let stdout = child.stdout.take().context("worker stdout")?;
        Ok(Worker {
            number,
            child,
            stdin,
            stdout: BufReader::new(stdout).lines(),
            profiled,
        })
    }

    /// Sends `command` and waits for the reply; a worker's `Error` reply is an error.
    pub async fn call(&mut self, command: &Command) -> anyhow::Result<Reply> {
        let mut line = serde_json::to_string(command).context("encoding a command")?;
        line.push('\n');
        let number = self.number;
        self.stdin
            .write_all(line.as_bytes())
            .await
            .with_context(|| format!("worker {number} is gone (writing its stdin)"))?;
        self.stdin.flush().await?;
        let reply = loop {
            let line = tokio::time::timeout(REPLY_TIMEOUT, self.stdout.next_line())
                .await
                .with_context(|| format!("worker {number}: no reply within {REPLY_TIMEOUT:?}"))?
                .with_context(|| format!("worker {number}: reading its stdout"))?
                .with_context(|| format!("worker {number} exited (see its log)"))?;
            // A profiler's messages are not replies (replies are JSON objects).
            if self.profiled && !line.starts_with('{') {
                eprintln!("worker {number}'s profiler: {line}");
                continue;
            }
            break line;
        };
        match serde_json::from_str::<Reply>(&reply)
            .with_context(|| format!("worker {number}: unreadable reply {reply:?}"))?
        {
            Reply::Error { message } => bail!("worker {number}: {message}"),
            reply => Ok(reply),
        }
    }

    /// Asks the worker to stop its nodes and waits for it to exit (killing it after
    /// 30 s).
    pub async fn stop(mut self) {
        let _ = tokio::time::timeout(Duration::from_secs(30), self.call(&Command::Stop)).await;
        if tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
    }
}

/// The environment variable naming a worker to run under a profiler.
pub const PROFILE_VAR: &str = "DHT_BENCH_PROFILE";

/// The profiler command of worker `number`, if `setting` (`"<number> <command...>"`)
/// names it.
fn profiler_of(setting: Option<&str>, number: usize) -> Option<Vec<&str>> {
    let mut words = setting?.split_whitespace();
    let chosen: usize = words.next()?.parse().ok()?;
    let command: Vec<&str> = words.collect();
    (chosen == number && !command.is_empty()).then_some(command)
}

/// The log file of worker `number` under `dir`.
pub fn log_path(dir: &Path, number: usize) -> PathBuf {
    dir.join(format!("worker-{number}.log"))
}

#[cfg(test)]
mod tests {
    use super::profiler_of;

    #[test]
    fn only_the_named_worker_runs_under_the_profiler() {
        let setting = Some("1 heaptrack -o out");
        assert_eq!(
            profiler_of(setting, 1),
            Some(vec!["heaptrack", "-o", "out"])
        );
        assert_eq!(profiler_of(setting, 0), None);
        assert_eq!(profiler_of(Some("1"), 1), None);
        assert_eq!(profiler_of(Some("x heaptrack"), 1), None);
        assert_eq!(profiler_of(None, 1), None);
    }
}
