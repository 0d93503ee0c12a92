//! `cargo xtask docker`: the images `voidphone-dht-node` and `voidphone-dht-bootstrap`,
//! and the `docker` command line the other Docker commands share.
//!
//! No base image can be pulled on our machines, so each image is `FROM scratch` around
//! one statically linked binary (glibc's `crt-static`; it needs an explicit `--target`,
//! or proc-macro crates fail to build). The build context is a fresh folder under
//! `target/docker/` holding only the Dockerfile, the binary and an empty `data/`, never
//! the repository. After building, each image is started once to check that it runs
//! and to measure how long it takes to be ready.

use std::ffi::OsString;
use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};

use crate::layout::Layout;
use crate::startup::strip_ansi;

/// Usage of the `docker` command.
pub(crate) const USAGE: &str = "  docker
      Build dht-node and dht-bootstrap statically linked (release, target/<host triple>/)
      and the images voidphone-dht-node:latest and voidphone-dht-bootstrap:latest from
      docker/*.Dockerfile (FROM scratch, user 10001), then start each image once to
      check that it runs; prints their sizes and start-up times.";

/// The label every image and everything a deployment creates carries.
pub(crate) const LABEL: &str = "org.voidphone.dht";
/// The label naming the deployment a container or network belongs to.
pub(crate) const DEPLOYMENT_LABEL: &str = "org.voidphone.dht.deployment";
/// How long a started image may take to log that it is ready.
const SMOKE_DEADLINE: Duration = Duration::from_secs(20);
/// How often a starting container's log is read.
const SMOKE_POLL: Duration = Duration::from_millis(20);

/// One image: the binary it runs and its tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Image {
    /// The binary (and its Dockerfile's name, `docker/<binary>.Dockerfile`).
    pub(crate) binary: &'static str,
    /// The image's tag.
    pub(crate) tag: &'static str,
}

/// The `dht-node` image.
pub(crate) const NODE_IMAGE: Image = Image {
    binary: "dht-node",
    tag: "voidphone-dht-node:latest",
};
/// The `dht-bootstrap` image.
pub(crate) const BOOTSTRAP_IMAGE: Image = Image {
    binary: "dht-bootstrap",
    tag: "voidphone-dht-bootstrap:latest",
};

/// What building and trying an image measured.
#[derive(Debug, Clone)]
pub(crate) struct Built {
    /// Which image.
    pub(crate) image: Image,
    /// Its size as `docker images` counts it, in bytes.
    pub(crate) size: u64,
    /// From `docker run` to its "ready" log line.
    pub(crate) ready_after: Duration,
}

/// `cargo xtask docker`.
pub(crate) fn command() -> anyhow::Result<()> {
    check_engine("docker")?;
    build_images(&Layout::new()?)?;
    Ok(())
}

/// Builds both images and tries each; prints what it measured.
pub(crate) fn build_images(layout: &Layout) -> anyhow::Result<Vec<Built>> {
    let started = Instant::now();
    let binaries = build_static(layout)?;
    let compiled = started.elapsed();
    let mut built = Vec::new();
    for image in [NODE_IMAGE, BOOTSTRAP_IMAGE] {
        let binary = binaries.join(image.binary);
        check_static(&binary)?;
        build_image(layout, image, &binary)?;
        let size = image_size(image.tag)?;
        let ready_after = try_image(layout, image)?;
        built.push(Built {
            image,
            size,
            ready_after,
        });
    }
    println!(
        "images built in {:.1} s (static build {:.1} s):",
        started.elapsed().as_secs_f64(),
        compiled.as_secs_f64()
    );
    for b in &built {
        println!(
            "  {:<32} {:>5.1} MiB   user 10001   ready {:.2} s after docker run",
            b.image.tag,
            mib(b.size),
            b.ready_after.as_secs_f64()
        );
    }
    Ok(built)
}

/// Bytes in MiB, for messages.
pub(crate) fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// Fails with one line unless a Docker engine answers `docker info`; `what` is the
/// command that needs it.
pub(crate) fn check_engine(what: &str) -> anyhow::Result<()> {
    let output = match docker_command(&["info", "--format", "{{.ServerVersion}}"]).output() {
        Ok(output) => output,
        Err(e) if e.kind() == ErrorKind::NotFound => {
            bail!("{what} needs Docker, and there is no docker command on this machine")
        }
        Err(e) => bail!("{what} needs Docker, and running docker failed: {e}"),
    };
    // `docker info` may print the client's part and fail only for the server's.
    let version = String::from_utf8_lossy(&output.stdout).trim().to_string();
    if !output.status.success() || version.is_empty() {
        bail!(
            "{what} needs a running Docker engine, and `docker info` failed: {}",
            first_line(&output)
        );
    }
    Ok(())
}

/// `docker <args>`, with nothing to read on standard input.
fn docker_command(args: &[&str]) -> Command {
    let mut command = Command::new("docker");
    command.args(args).stdin(Stdio::null());
    command
}

/// Runs `docker <args>` and returns its standard output. A failure is one line: the
/// docker command and the first line it printed to standard error.
pub(crate) fn docker(args: &[&str]) -> anyhow::Result<String> {
    let output = docker_output(args)?;
    if !output.status.success() {
        bail!("{} failed: {}", shown(args), first_line(&output));
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Runs `docker <args>` and returns what it did, successful or not.
pub(crate) fn docker_output(args: &[&str]) -> anyhow::Result<Output> {
    docker_command(args)
        .output()
        .with_context(|| format!("running {}", shown(args)))
}

/// The command for messages: `docker` and its first two arguments.
fn shown(args: &[&str]) -> String {
    let mut text = "docker".to_string();
    for arg in args.iter().take(2) {
        text.push(' ');
        text.push_str(arg);
    }
    text
}

/// The first non-empty line of a command's standard error (else its status).
pub(crate) fn first_line(output: &Output) -> String {
    let stderr = String::from_utf8_lossy(&output.stderr);
    stderr
        .lines()
        .map(str::trim)
        .find(|line| !line.is_empty())
        .map_or_else(|| output.status.to_string(), str::to_string)
}

/// Everything a container has logged (standard output, then standard error), without
/// colour codes; empty when it cannot be read.
pub(crate) fn container_log(container: &str) -> String {
    match docker_output(&["logs", container]) {
        Ok(output) if output.status.success() => {
            let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
            text.push_str(&String::from_utf8_lossy(&output.stderr));
            strip_ansi(&text)
        }
        _ => String::new(),
    }
}

/// A random lowercase hex string of `len` digits (at most 16), from std's randomly
/// seeded hasher: names that differ between runs.
pub(crate) fn random_hex(len: usize) -> String {
    use std::hash::{BuildHasher, Hasher, RandomState};
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    hasher.write_u32(std::process::id());
    let hex = format!("{:016x}", hasher.finish());
    hex[..len.min(16)].to_string()
}

/// The host's target triple (`rustc -vV`); images are built for the machine the
/// engine runs on, which must be Linux with glibc.
fn host_triple() -> anyhow::Result<String> {
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| OsString::from("rustc"));
    let output = Command::new(&rustc)
        .arg("-vV")
        .output()
        .with_context(|| format!("running {} -vV", rustc.to_string_lossy()))?;
    let text = String::from_utf8_lossy(&output.stdout);
    let triple = text
        .lines()
        .find_map(|line| line.strip_prefix("host: "))
        .context("rustc -vV names no host triple")?
        .trim()
        .to_string();
    ensure!(
        triple.ends_with("-linux-gnu"),
        "the images need a Linux glibc host to link static binaries, and this one is {triple}"
    );
    Ok(triple)
}

/// Builds both binaries statically linked and stripped; returns their folder.
///
/// `--target` puts them in `target/<triple>/release/`, apart from the normal build,
/// and RUSTFLAGS then apply to them only, not to build scripts and proc macros, whose
/// builds stay shared with the normal release build (nothing is rebuilt twice).
fn build_static(layout: &Layout) -> anyhow::Result<PathBuf> {
    let triple = host_triple()?;
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| OsString::from("cargo"));
    let mut command = Command::new(&cargo);
    command
        .current_dir(&layout.root)
        .args(["build", "--release", "--target", &triple])
        .args(["-p", "dht-node", "-p", "dht-bootstrap"])
        .env(
            "RUSTFLAGS",
            "-C target-feature=+crt-static -C strip=symbols",
        )
        // It would win over RUSTFLAGS.
        .env_remove("CARGO_ENCODED_RUSTFLAGS");
    if let Some(target) = &layout.target_env {
        command.env("CARGO_TARGET_DIR", target);
    }
    println!("building static binaries for {triple}");
    let status = command
        .status()
        .with_context(|| format!("running {}", cargo.to_string_lossy()))?;
    ensure!(status.success(), "the static cargo build failed ({status})");
    Ok(layout.target.join(&triple).join("release"))
}

/// Checks that `path` is a static executable: a 64-bit little-endian ELF file without
/// a program interpreter, so that it runs in an image that holds nothing else.
fn check_static(path: &Path) -> anyhow::Result<()> {
    let bytes = fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    elf_is_static(&bytes).map_err(|why| anyhow::anyhow!("{}: {why}", path.display()))
}

/// The ELF check of [`check_static`]: the header, then every program header, looking
/// for `PT_INTERP` (the dynamic loader a dynamically linked program names).
fn elf_is_static(bytes: &[u8]) -> Result<(), String> {
    const PT_INTERP: u32 = 3;
    const ET_EXEC: u16 = 2;
    const ET_DYN: u16 = 3;
    let u16_at = |at: usize| -> Option<u16> {
        Some(u16::from_le_bytes(bytes.get(at..at + 2)?.try_into().ok()?))
    };
    let u32_at = |at: usize| -> Option<u32> {
        Some(u32::from_le_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
    };
    let u64_at = |at: usize| -> Option<u64> {
        Some(u64::from_le_bytes(bytes.get(at..at + 8)?.try_into().ok()?))
    };
    if bytes.get(..4) != Some(b"\x7fELF".as_slice()) {
        return Err("not an ELF file".into());
    }
    if bytes.get(4..6) != Some([2u8, 1].as_slice()) {
        return Err("not a 64-bit little-endian ELF file".into());
    }
    let truncated = || "truncated ELF header".to_string();
    let kind = u16_at(16).ok_or_else(truncated)?;
    if kind != ET_EXEC && kind != ET_DYN {
        return Err(format!("ELF type {kind} is not an executable"));
    }
    let phoff = usize::try_from(u64_at(0x20).ok_or_else(truncated)?).map_err(|e| e.to_string())?;
    let phentsize = usize::from(u16_at(0x36).ok_or_else(truncated)?);
    let phnum = usize::from(u16_at(0x38).ok_or_else(truncated)?);
    if phnum == 0 || phentsize < 4 {
        return Err("no program headers".into());
    }
    for i in 0..phnum {
        let at = phoff
            .checked_add(i * phentsize)
            .ok_or("program header offset overflows")?;
        let kind = u32_at(at).ok_or("truncated program headers")?;
        if kind == PT_INTERP {
            return Err("dynamically linked (it names a program interpreter)".into());
        }
    }
    Ok(())
}

/// Builds one image from a fresh context `target/docker/<binary>/`; removes the image
/// the tag named before, if nothing else uses it.
fn build_image(layout: &Layout, image: Image, binary: &Path) -> anyhow::Result<()> {
    let context = layout.target.join("docker").join(image.binary);
    if context.exists() {
        fs::remove_dir_all(&context).with_context(|| format!("removing {}", context.display()))?;
    }
    // `data/` becomes /data, owned by the user the image runs as.
    fs::create_dir_all(context.join("data"))
        .with_context(|| format!("creating {}", context.display()))?;
    let dockerfile = layout
        .root
        .join("docker")
        .join(format!("{}.Dockerfile", image.binary));
    fs::copy(&dockerfile, context.join("Dockerfile"))
        .with_context(|| format!("copying {}", dockerfile.display()))?;
    fs::copy(binary, context.join(image.binary))
        .with_context(|| format!("copying {}", binary.display()))?;

    let previous = image_id(image.tag);
    let context_arg = context.to_string_lossy();
    let id = docker(&["build", "--quiet", "--tag", image.tag, &context_arg])
        .with_context(|| format!("building {} from {}", image.tag, layout.show(&context)))?;
    let id = id.trim();
    if let Some(previous) = previous.filter(|p| p != id) {
        // In use by a container, or tagged elsewhere too: then it stays, and that is fine.
        let _ = docker_output(&["rmi", &previous]);
    }
    Ok(())
}

/// The id of the image `tag` names, if any.
fn image_id(tag: &str) -> Option<String> {
    let id = docker(&["image", "inspect", "--format", "{{.Id}}", tag]).ok()?;
    Some(id.trim().to_string()).filter(|id| !id.is_empty())
}

/// The size of an image in bytes.
fn image_size(tag: &str) -> anyhow::Result<u64> {
    let size = docker(&["image", "inspect", "--format", "{{.Size}}", tag])?;
    size.trim()
        .parse()
        .with_context(|| format!("the size of {tag} is not a number: {size:?}"))
}

/// Starts `image` once, without a network, with a configuration that needs nothing
/// outside the container; returns the time from `docker run` to its ready line. The
/// container is removed whatever happens.
fn try_image(layout: &Layout, image: Image) -> anyhow::Result<Duration> {
    let user = docker(&[
        "image",
        "inspect",
        "--format",
        "{{.Config.User}}",
        image.tag,
    ])?;
    ensure!(
        user.trim() == "10001:10001",
        "{} runs as {:?}, not as user 10001:10001",
        image.tag,
        user.trim()
    );
    let config = layout
        .target
        .join("docker")
        .join(format!("try-{}.toml", image.binary));
    fs::write(&config, TRY_CONFIG).with_context(|| format!("writing {}", config.display()))?;
    let name = format!("dht-try-{}-{}", random_hex(6), image.binary);
    let mount = format!("{}:/config/node.toml:ro", config.display());
    let label = format!("{LABEL}=1");
    let started = Instant::now();
    docker(&[
        "run",
        "--detach",
        "--name",
        &name,
        "--label",
        &label,
        "--network",
        "none",
        "--volume",
        &mount,
        image.tag,
    ])
    .with_context(|| format!("starting {}", image.tag))?;
    let waited = wait_for_line(&name, &format!("{} ready", image.binary), started);
    let removed = docker(&["rm", "--force", "--volumes", &name]);
    let ready_after = waited.with_context(|| format!("trying {}", image.tag))?;
    removed?;
    Ok(ready_after)
}

/// The configuration [`try_image`] starts an image with: everything inside the
/// container, storage in the writable `/data`.
const TRY_CONFIG: &str = "# generated by cargo xtask docker: one start of the image.\n\
hostkey = \"/data/hostkey.pem\"\n\
\n\
[dht]\n\
p2p_address = \"0.0.0.0:7402\"\n\
api_address = \"0.0.0.0:7401\"\n\
\n\
[storage]\n\
data_dir = \"/data/db\"\n";

/// Waits until `container` has logged `marker`; fails when it stops first or after
/// [`SMOKE_DEADLINE`]. Returns the time since `started`.
fn wait_for_line(container: &str, marker: &str, started: Instant) -> anyhow::Result<Duration> {
    loop {
        let log = container_log(container);
        if log.contains(marker) {
            return Ok(started.elapsed());
        }
        let state = docker(&["inspect", "--format", "{{.State.Status}}", container])?;
        if state.trim() == "exited" || state.trim() == "dead" {
            bail!(
                "the container stopped before logging {marker:?}; its log:\n{}",
                crate::startup::tail(&container_log(container), 20)
            );
        }
        if started.elapsed() >= SMOKE_DEADLINE {
            bail!(
                "no {marker:?} in its log after {} s; its log:\n{}",
                SMOKE_DEADLINE.as_secs(),
                crate::startup::tail(&log, 20)
            );
        }
        std::thread::sleep(SMOKE_POLL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal ELF64 header with `phnum` program headers of the given types.
    fn elf(types: &[u32]) -> Vec<u8> {
        let mut bytes = vec![0u8; 64];
        bytes[..4].copy_from_slice(b"\x7fELF");
        bytes[4] = 2; // 64-bit
        bytes[5] = 1; // little-endian
        bytes[16..18].copy_from_slice(&3u16.to_le_bytes()); // ET_DYN (static-pie)
        bytes[0x20..0x28].copy_from_slice(&64u64.to_le_bytes());
        bytes[0x36..0x38].copy_from_slice(&56u16.to_le_bytes());
        bytes[0x38..0x3a].copy_from_slice(&(types.len() as u16).to_le_bytes());
        for &t in types {
            let mut header = vec![0u8; 56];
            header[..4].copy_from_slice(&t.to_le_bytes());
            bytes.extend_from_slice(&header);
        }
        bytes
    }

    #[test]
    fn static_and_dynamic_elf() {
        // PT_LOAD, PT_DYNAMIC, PT_TLS: a static-pie binary.
        assert_eq!(elf_is_static(&elf(&[1, 2, 7])), Ok(()));
        // PT_PHDR, PT_INTERP, PT_LOAD: dynamically linked.
        let dynamic = elf_is_static(&elf(&[6, 3, 1])).unwrap_err();
        assert!(dynamic.contains("dynamically linked"), "{dynamic}");
        assert!(elf_is_static(b"#!/bin/sh\n").is_err());
        assert!(elf_is_static(&elf(&[])).is_err(), "no program headers");
        let mut short = elf(&[1, 3]);
        short.truncate(64 + 56 + 2);
        assert!(elf_is_static(&short).is_err(), "truncated");
        let mut object = elf(&[1]);
        object[16] = 1; // ET_REL
        assert!(elf_is_static(&object).is_err());
    }

    #[test]
    fn a_real_binary_is_read_right() {
        // This test binary: static only when built with crt-static, like the images'.
        let me = std::env::current_exe().unwrap();
        let result = check_static(&me);
        if cfg!(target_feature = "crt-static") {
            result.unwrap();
        } else {
            let error = result.unwrap_err().to_string();
            assert!(error.contains("dynamically linked"), "{error}");
        }
    }

    #[test]
    fn names_and_messages() {
        let a = random_hex(6);
        assert_eq!(a.len(), 6);
        assert!(
            a.bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        );
        assert_ne!(random_hex(16), random_hex(16));
        assert_eq!(shown(&["run", "--detach", "x"]), "docker run --detach");
        assert!((mib(3 * 1024 * 1024) - 3.0).abs() < f64::EPSILON);
    }
}
