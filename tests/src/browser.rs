//! Pages in a real browser: headless Chromium (Debian's `chromium`, which `.ci/run`
//! installs) loads a URL, and the test gets the DOM it built and a screenshot, kept in
//! `target/screenshots/` (and, with `DHT_UPDATE_DOCS_SCREENSHOTS=1`, in `docs/images/`
//! for the README).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, ensure};

use crate::http::required_program;
use crate::workspace;

/// What Chromium made of a page.
#[derive(Debug)]
pub struct Rendered {
    /// The DOM after loading, as HTML.
    pub dom: String,
    /// The screenshot, a PNG.
    pub png: Vec<u8>,
    /// Where the screenshot was written.
    pub path: PathBuf,
}

fn chromium(program: &Path, profile: &Path, args: &[&str], url: &str) -> anyhow::Result<String> {
    let output = Command::new(program)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--no-first-run",
            "--virtual-time-budget=2000",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .arg(url)
        .output()
        .with_context(|| format!("running {}", program.display()))?;
    ensure!(
        output.status.success(),
        "chromium failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Loads `url` in headless Chromium: its DOM, and a screenshot of a `width`×`height`
/// window written to `target/screenshots/<name>.png`. `None` when Chromium is not
/// installed outside CI (see [`required_program`]). Blocking: run it off async workers.
pub fn render(url: &str, name: &str, width: u32, height: u32) -> anyhow::Result<Option<Rendered>> {
    let Some(program) = required_program(&["chromium", "chromium-browser"], "chromium") else {
        return Ok(None);
    };
    let out = workspace().join("target").join("screenshots");
    std::fs::create_dir_all(&out)?;
    // One profile per page and process: two tests (or two runs) may run Chromium at once.
    let profile = out.join(format!("chromium-profile-{name}-{}", std::process::id()));
    let path = out.join(format!("{name}.png"));
    let _ = std::fs::remove_file(&path);
    let dom = chromium(&program, &profile, &["--dump-dom"], url)?;
    chromium(
        &program,
        &profile,
        &[
            &format!("--window-size={width},{height}"),
            &format!("--screenshot={}", path.display()),
        ],
        url,
    )?;
    let png = std::fs::read(&path).context("reading the screenshot")?;
    let _ = std::fs::remove_dir_all(&profile);
    if std::env::var_os("DHT_UPDATE_DOCS_SCREENSHOTS").is_some() {
        let docs = workspace().join("docs").join("images");
        std::fs::create_dir_all(&docs)?;
        std::fs::copy(&path, docs.join(format!("{name}.png")))?;
    }
    Ok(Some(Rendered { dom, png, path }))
}

/// The width and height of a PNG, from its header.
pub fn png_size(png: &[u8]) -> Option<(u32, u32)> {
    if png.len() < 24 || &png[..8] != b"\x89PNG\r\n\x1a\n" || &png[12..16] != b"IHDR" {
        return None;
    }
    let word = |at: usize| u32::from_be_bytes([png[at], png[at + 1], png[at + 2], png[at + 3]]);
    Some((word(16), word(20)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn png_sizes_are_read_from_the_header() {
        let mut png = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR".to_vec();
        png.extend_from_slice(&1280u32.to_be_bytes());
        png.extend_from_slice(&1500u32.to_be_bytes());
        assert_eq!(png_size(&png), Some((1280, 1500)));
        assert_eq!(png_size(b"GIF89a"), None);
    }
}
