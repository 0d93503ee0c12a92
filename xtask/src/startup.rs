//! Watching a freshly started cluster come up: every member running, its log saying it
//! is ready (and, for a node, that it joined), every API answering; then the probe, a
//! value PUT through node-1 and read back through every other node. The members may be
//! local processes or containers: a [`Watch`] says how to see them.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail, ensure};

use crate::api_probe::{self, Answer, Key};
use crate::cluster::{self, Cluster, Member, POLL, Role};
use crate::layout::Layout;

/// Start-up deadline of a small cluster: processes ready, nodes joined, APIs answering.
const READY_DEADLINE: Duration = Duration::from_secs(60);
/// What each member adds to it: 500 nodes took 38 s on 2 cores.
const READY_PER_MEMBER: Duration = Duration::from_millis(100);

/// The start-up deadline of a cluster of `members`.
pub(crate) fn ready_deadline(members: usize) -> Duration {
    READY_DEADLINE + READY_PER_MEMBER * u32::try_from(members).unwrap_or(u32::MAX)
}
/// Deadline for the probe value to be readable through every node.
const PROBE_DEADLINE: Duration = Duration::from_secs(30);
/// Connect/read/write timeout of one API request; above the nodes' 5 s GET deadline,
/// so a slow GET ends with DHT_FAILURE rather than a timeout.
pub(crate) const API_TIMEOUT: Duration = Duration::from_secs(6);
/// The value of the probe PUT.
const PROBE_VALUE: &[u8] = b"deploy-probe";
/// Lines of a log shown when its process fails.
const TAIL_LINES: usize = 20;

/// How far one process is in its start-up.
#[derive(Debug, Default, Clone, Copy)]
struct Progress {
    ready: bool,
    joined: bool,
    api: bool,
}

impl Progress {
    fn done(self) -> bool {
        self.ready && self.joined && self.api
    }

    fn missing(self, member: &Member) -> String {
        let ready = match member.role {
            Role::Bootstrap => "\"dht-bootstrap ready\" in its log",
            Role::Node => "\"dht-node ready\" in its log",
        };
        let mut missing = Vec::new();
        if !self.ready {
            missing.push(ready);
        }
        if !self.joined {
            missing.push("\"joined the network\" in its log");
        }
        if !self.api {
            missing.push("an answer of its API to DHT_GET");
        }
        missing.join(", ")
    }
}

/// How start-up watching sees the members of a cluster, wherever they run.
pub(crate) trait Watch {
    /// Called at the start of every polling round, before the questions below: the
    /// place to ask about all members at once.
    fn refresh(&mut self, cluster: &Cluster) -> anyhow::Result<()>;
    /// Whether member `index` still runs.
    fn running(&self, index: usize, member: &Member) -> bool;
    /// What member `index` has logged since it was started, without colour codes.
    fn log(&self, index: usize, member: &Member) -> String;
    /// What the member is, for messages: "pid 42", "container dht-0a1b2c-node-1".
    fn describe(&self, member: &Member) -> String;
    /// Where its log can be read, for messages.
    fn log_source(&self, member: &Member) -> String;
}

/// The [`Watch`] of local processes: their pids, and their log files from the offsets
/// they had when the processes were started (a log is appended to by every run).
pub(crate) struct ProcessWatch<'a> {
    /// For showing paths.
    pub(crate) layout: &'a Layout,
    /// Per member, the size of its log before it was started.
    pub(crate) log_offsets: Vec<u64>,
}

impl Watch for ProcessWatch<'_> {
    fn refresh(&mut self, _cluster: &Cluster) -> anyhow::Result<()> {
        Ok(())
    }

    fn running(&self, _index: usize, member: &Member) -> bool {
        member.pid().is_some_and(cluster::is_alive)
    }

    fn log(&self, index: usize, member: &Member) -> String {
        match (&member.runs, self.log_offsets.get(index)) {
            (cluster::Runs::Process { log, .. }, Some(&offset)) => read_log(log, offset),
            _ => String::new(),
        }
    }

    fn describe(&self, member: &Member) -> String {
        member
            .pid()
            .map_or_else(|| "no process".to_string(), |pid| format!("pid {pid}"))
    }

    fn log_source(&self, member: &Member) -> String {
        match &member.runs {
            cluster::Runs::Process { log, .. } => self.layout.show(log).to_string(),
            cluster::Runs::Container { .. } => "(no log file)".to_string(),
        }
    }
}

/// Waits until every member runs and is ready, every node has joined and answers a
/// DHT_GET; fills in the node ids. `started` is when the deployment began: the
/// deadline counts from it.
pub(crate) fn wait_ready(
    watch: &mut impl Watch,
    cluster: &mut Cluster,
    started: Instant,
) -> anyhow::Result<()> {
    let within = ready_deadline(cluster.nodes.len());
    let deadline = started + within;
    let check_key = random_key(1);
    let mut progress: Vec<Progress> = cluster
        .nodes
        .iter()
        .map(|m| Progress {
            joined: m.role == Role::Bootstrap,
            api: m.api_address.is_none(),
            ..Progress::default()
        })
        .collect();
    let mut shown = crate::progress::Progress::new("members ready", cluster.nodes.len());
    let outcome = wait_loop(
        watch,
        cluster,
        &mut progress,
        deadline,
        &check_key,
        &mut shown,
    );
    shown.finish();
    outcome
}

fn wait_loop(
    watch: &mut impl Watch,
    cluster: &mut Cluster,
    progress: &mut [Progress],
    deadline: Instant,
    check_key: &Key,
    shown: &mut crate::progress::Progress,
) -> anyhow::Result<()> {
    loop {
        watch.refresh(cluster)?;
        for (index, member) in cluster.nodes.iter().enumerate() {
            if !watch.running(index, member) {
                bail!(
                    "{} ({}, {}) exited during start-up; the end of {}:\n{}",
                    member.name,
                    member.role.as_str(),
                    watch.describe(member),
                    watch.log_source(member),
                    tail(&watch.log(index, member), TAIL_LINES)
                );
            }
        }
        for (index, (member, progress)) in cluster
            .nodes
            .iter_mut()
            .zip(progress.iter_mut())
            .enumerate()
        {
            if progress.done() {
                continue;
            }
            let log = watch.log(index, member);
            if !progress.ready {
                let marker = match member.role {
                    Role::Bootstrap => "dht-bootstrap ready",
                    Role::Node => "dht-node ready",
                };
                if let Some(line) = log.lines().find(|line| line.contains(marker)) {
                    let id = parse_node_id(line).with_context(|| {
                        format!("{}: no id=<64 hex digits> in {line:?}", member.name)
                    })?;
                    member.node_id = Some(id);
                    progress.ready = true;
                }
            }
            progress.joined |= log.contains("joined the network");
            if let (true, true, false, Some(api)) = (
                progress.ready,
                progress.joined,
                progress.api,
                member.api_address,
            ) {
                progress.api = api_probe::get(api, check_key, API_TIMEOUT).is_ok();
            }
        }
        shown.set(progress.iter().filter(|p| p.done()).count());
        if progress.iter().all(|p| p.done()) {
            return Ok(());
        }
        if Instant::now() >= deadline {
            let mut message = format!(
                "the cluster was not up after {} s",
                ready_deadline(cluster.nodes.len()).as_secs()
            );
            let pending = cluster.nodes.iter().enumerate().zip(progress.iter());
            let pending = pending.filter(|(_, p)| !p.done());
            for (shown, ((index, member), p)) in pending.enumerate() {
                message += &format!("\n{} is missing {}", member.name, p.missing(member));
                // The logs of the first few tell the story; the names of all are listed.
                if shown < 3 {
                    message += &format!(
                        "; the end of {}:\n{}",
                        watch.log_source(member),
                        tail(&watch.log(index, member), TAIL_LINES)
                    );
                }
            }
            bail!(message);
        }
        std::thread::sleep(POLL);
    }
}

/// PUTs [`PROBE_VALUE`] under a fresh key through node-1, then waits until a GET
/// through every other node (through node-1 if it is the only one) returns it.
pub(crate) fn probe(cluster: &Cluster) -> anyhow::Result<()> {
    let nodes: Vec<(&str, SocketAddr)> = cluster
        .nodes
        .iter()
        .filter_map(|m| Some((m.name.as_str(), m.api_address?)))
        .collect();
    let Some(&(first, first_api)) = nodes.first() else {
        bail!("no node with an API to probe");
    };
    let key = random_key(2);
    api_probe::put(first_api, &key, PROBE_VALUE, 600, 3, API_TIMEOUT)
        .with_context(|| format!("probe: PUT through {first}"))?;
    let readers = if nodes.len() > 1 {
        &nodes[1..]
    } else {
        &nodes[..]
    };
    let deadline = Instant::now() + PROBE_DEADLINE;
    let failures: Vec<String> = std::thread::scope(|scope| {
        let polls: Vec<_> = readers
            .iter()
            .map(|&(name, api)| {
                (
                    name,
                    scope.spawn(move || poll_value(api, &key, PROBE_VALUE, deadline)),
                )
            })
            .collect();
        polls
            .into_iter()
            .filter_map(|(name, poll)| match poll.join() {
                Ok(Ok(())) => None,
                Ok(Err(last)) => Some(format!("{name}: {last}")),
                Err(_) => Some(format!("{name}: the probe thread panicked")),
            })
            .collect()
    });
    ensure!(
        failures.is_empty(),
        "the probe value PUT through {first} was not readable within {} s through:\n  {}",
        PROBE_DEADLINE.as_secs(),
        failures.join("\n  ")
    );
    Ok(())
}

/// Prints how long a deployment took: until every member was `what` ready (nodes
/// joined, APIs answering), and until the probe value was read back.
pub(crate) fn report_up(what: &str, nodes: usize, ready: Duration, total: Duration) {
    println!(
        "cluster up in {:.2} s: {what} ready, nodes joined and APIs answering after {:.2} s; \
         the probe value PUT through node-1 was read back through {} {:.2} s later",
        total.as_secs_f64(),
        ready.as_secs_f64(),
        if nodes > 1 {
            "every other node"
        } else {
            "node-1"
        },
        (total - ready).as_secs_f64()
    );
}

/// GETs `key` through `api` until the answer is `expected`; the error is the last
/// answer seen.
pub(crate) fn poll_value(
    api: SocketAddr,
    key: &Key,
    expected: &[u8],
    deadline: Instant,
) -> Result<(), String> {
    loop {
        let timeout = API_TIMEOUT.min(deadline.saturating_duration_since(Instant::now()));
        let last = match api_probe::get(api, key, timeout.max(POLL)) {
            Ok(Answer::Success { value, .. }) if value == expected => return Ok(()),
            Ok(Answer::Success { value, .. }) => {
                format!("DHT_SUCCESS with another value ({} bytes)", value.len())
            }
            Ok(Answer::Failure { .. }) => "DHT_FAILURE".to_string(),
            Err(e) => format!("{e:#}"),
        };
        if Instant::now() + POLL >= deadline {
            return Err(format!("last answer: {last}"));
        }
        std::thread::sleep(POLL);
    }
}

/// A key nobody has used: hashes of the time, the process id and `salt` with
/// std's randomly seeded hasher.
pub(crate) fn random_key(salt: u64) -> Key {
    use std::hash::{BuildHasher, Hasher, RandomState};
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let mut key = [0u8; 32];
    for (i, chunk) in key.chunks_exact_mut(8).enumerate() {
        let mut hasher = RandomState::new().build_hasher();
        hasher.write_u128(nanos);
        hasher.write_u32(std::process::id());
        hasher.write_u64(salt);
        hasher.write_usize(i);
        chunk.copy_from_slice(&hasher.finish().to_be_bytes());
    }
    key
}

/// What a log holds after byte `offset`, without ANSI colour codes; empty if it cannot
/// be read.
fn read_log(path: &Path, offset: u64) -> String {
    let mut bytes = Vec::new();
    let read = File::open(path).and_then(|mut file| {
        file.seek(SeekFrom::Start(offset))?;
        file.read_to_end(&mut bytes)
    });
    match read {
        Ok(_) => strip_ansi(&String::from_utf8_lossy(&bytes)),
        Err(_) => String::new(),
    }
}

/// Removes ANSI escape sequences (`ESC [ ... final byte`).
pub(crate) fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c != '\x1b' {
            out.push(c);
            continue;
        }
        let mut rest = chars.clone();
        if rest.next() == Some('[') {
            chars = rest;
            for c in chars.by_ref() {
                if ('\x40'..='\x7e').contains(&c) {
                    break;
                }
            }
        }
    }
    out
}

/// The last `n` lines of `text`, indented, or a note that it is empty.
pub(crate) fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    if lines.is_empty() {
        return "    (nothing logged)".to_string();
    }
    lines[lines.len().saturating_sub(n)..]
        .iter()
        .map(|line| format!("    {line}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The node id in a log line: `id=` (not part of a longer name) and 64 hex digits.
fn parse_node_id(line: &str) -> Option<String> {
    let bytes = line.as_bytes();
    line.match_indices("id=").find_map(|(at, _)| {
        let start = at + 3;
        let hex = line.get(start..start + 64)?;
        let own_name = at == 0 || !(bytes[at - 1].is_ascii_alphanumeric() || bytes[at - 1] == b'_');
        let whole = bytes.get(start + 64).is_none_or(|b| !b.is_ascii_hexdigit());
        (own_name && whole && hex.bytes().all(|b| b.is_ascii_hexdigit()))
            .then(|| hex.to_ascii_lowercase())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_id_from_ready_line() {
        let id = "0123456789abcdef".repeat(4);
        let line = format!(
            "2025-01-01T00:00:00.000000Z  INFO dht_node: dht-node ready id={id} p2p=127.0.0.1:1 api=127.0.0.1:2"
        );
        assert_eq!(parse_node_id(&line), Some(id.clone()));
        assert_eq!(parse_node_id(&format!("id={id}")), Some(id.clone()));
        assert_eq!(
            parse_node_id(&format!("pid={id} x")),
            None,
            "pid= is not id="
        );
        assert_eq!(parse_node_id(&format!("id={}", &id[..63])), None, "short");
        assert_eq!(parse_node_id(&format!("id={id}0")), None, "long");
        assert_eq!(
            parse_node_id(&format!("peer_id=x id={}", id.to_uppercase())),
            Some(id)
        );
    }

    #[test]
    fn ansi_codes_are_removed() {
        let coloured = "\x1b[2m2025\x1b[0m \x1b[32m INFO\x1b[0m \x1b[3mid\x1b[0m\x1b[2m=\x1b[0mab";
        assert_eq!(strip_ansi(coloured), "2025  INFO id=ab");
        assert_eq!(strip_ansi("plain \x1b"), "plain ");
    }

    #[test]
    fn tail_keeps_last_lines() {
        assert_eq!(tail("a\nb\nc\n", 2), "    b\n    c");
        assert_eq!(tail("a", 20), "    a");
        assert_eq!(tail("", 20), "    (nothing logged)");
    }

    #[test]
    fn log_is_read_from_the_offset() {
        let file = std::env::temp_dir().join(format!("xtask-log-{}", std::process::id()));
        std::fs::write(&file, "old run\n\x1b[1mnew\x1b[0m run\n").unwrap();
        assert_eq!(read_log(&file, 8), "new run\n");
        std::fs::remove_file(&file).unwrap();
        assert_eq!(read_log(&file, 0), "");
    }

    #[test]
    fn keys_differ() {
        assert_ne!(random_key(1), random_key(1));
        assert_ne!(random_key(1), [0u8; 32]);
    }
}
