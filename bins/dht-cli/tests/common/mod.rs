//! What the tests of the `dht-cli` binary share: running it, and a node to run it against.
// Each test binary uses only some of these.
#![allow(dead_code)]

use std::io::Write;
use std::process::{Command, Stdio};

use dht_tests::{TestNode, test_config};

/// What one run of the binary did.
pub(crate) struct Run {
    pub(crate) code: i32,
    pub(crate) stdout: Vec<u8>,
    pub(crate) stderr: String,
}

impl Run {
    /// Asserts exit 0 and nothing on stderr.
    pub(crate) fn ok(&self) -> &Run {
        assert_eq!(self.code, 0, "exit status; stderr: {}", self.stderr);
        assert_eq!(self.stderr, "", "stderr of a success");
        self
    }

    /// Asserts `code`, nothing on stdout and exactly one stderr line
    /// `dht-cli: ...` containing `reason`.
    pub(crate) fn failed(&self, code: i32, reason: &str) {
        assert_eq!(self.code, code, "exit status; stderr: {}", self.stderr);
        assert!(
            self.stdout.is_empty(),
            "stdout: {:?}",
            String::from_utf8_lossy(&self.stdout)
        );
        assert_eq!(
            self.stderr.lines().count(),
            1,
            "one line: {:?}",
            self.stderr
        );
        assert!(self.stderr.starts_with("dht-cli: "), "{:?}", self.stderr);
        assert!(
            self.stderr.contains(reason),
            "{:?} lacks {reason:?}",
            self.stderr
        );
    }
}

/// A folder with no deployment record in it or above it (the system's temporary folder).
fn no_deployment() -> std::path::PathBuf {
    std::env::temp_dir()
}

/// Runs `dht-cli args...` with `stdin` (or an empty, non-terminal stdin) and `DHT_API`
/// as given (unset otherwise), off the runtime's threads, in a folder without a
/// deployment record.
pub(crate) async fn cli_with(
    args: &[&str],
    stdin: Option<Vec<u8>>,
    dht_api: Option<String>,
) -> Run {
    cli_in(&no_deployment(), args, stdin, dht_api).await
}

/// [`cli_with`] in the folder `dir`.
pub(crate) async fn cli_in(
    dir: &std::path::Path,
    args: &[&str],
    stdin: Option<Vec<u8>>,
    dht_api: Option<String>,
) -> Run {
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    let dir = dir.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let mut command = Command::new(env!("CARGO_BIN_EXE_dht-cli"));
        command
            .args(&args)
            .current_dir(&dir)
            .env_remove("DHT_API")
            .env_remove("DHT_DEPLOY_DIR")
            .env_remove("CARGO_TARGET_DIR")
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(api) = dht_api {
            command.env("DHT_API", api);
        }
        let mut child = command.spawn().expect("dht-cli starts");
        let writer = stdin.map(|bytes| {
            let mut pipe = child.stdin.take().expect("stdin piped");
            // The child may refuse early and close its stdin: a write error is fine.
            std::thread::spawn(move || {
                let _ = pipe.write_all(&bytes);
            })
        });
        let output = child.wait_with_output().expect("dht-cli runs");
        if let Some(writer) = writer {
            writer.join().expect("stdin writer");
        }
        Run {
            code: output.status.code().expect("exited, not killed"),
            stdout: output.stdout,
            stderr: String::from_utf8(output.stderr).expect("UTF-8 stderr"),
        }
    })
    .await
    .expect("runner thread")
}

pub(crate) async fn cli(args: &[&str]) -> Run {
    cli_with(args, None, None).await
}

pub(crate) async fn lone_node() -> TestNode {
    dht_tests::init_tracing();
    TestNode::start(test_config(&[]), true)
        .await
        .expect("node starts")
}
