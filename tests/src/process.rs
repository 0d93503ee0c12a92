//! Tests that run a node binary as a child process: free loopback ports, and a child
//! that is killed when dropped, so that a failing test leaves no process behind.

use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::{Child, Command, Stdio};

/// An address on 127.0.0.1 that nothing listens on right now.
pub fn free_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
}

/// A port on 127.0.0.1 that nothing listens on right now.
pub fn free_port() -> u16 {
    free_addr().port()
}

/// A running child, killed (SIGKILL) and reaped when dropped.
pub struct Running(pub Child);

impl Running {
    /// Kills the child with SIGKILL and waits for it.
    pub fn kill(&mut self) {
        self.0.kill().expect("SIGKILL");
        self.0.wait().expect("reaped");
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `binary -c config args...` with stdout and stderr appended to `log`, and
/// `RUST_LOG` set to `rust_log` (or removed, so that the configuration decides).
pub fn spawn_node(
    binary: &str,
    config: &Path,
    args: &[&str],
    log: &Path,
    rust_log: Option<&str>,
) -> Running {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .expect("log file");
    let mut command = Command::new(binary);
    command
        .arg("-c")
        .arg(config)
        .args(args)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("log file"))
        .stderr(log);
    if let Some(level) = rust_log {
        command.env("RUST_LOG", level);
    }
    Running(command.spawn().expect("the node binary starts"))
}
