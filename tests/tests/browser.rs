//! The status page in a real browser: headless Chromium (Debian's `chromium`, which
//! `.ci/run` installs) loads a node's `/`, its DOM must hold every part of the page
//! with its drawings, and a screenshot of it is taken (into `target/screenshots/`; with
//! `DHT_UPDATE_DOCS_SCREENSHOTS=1`, also into `docs/images/` for the README).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, ensure};
use dht_core::Key;
use dht_tests::http::{required_program, serve_endpoint};
use dht_tests::{ApiClient, init_tracing, start_network, wait_for};

/// Runs headless Chromium on `url` with `args`; its stdout.
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

/// The width and height of a PNG file, from its header.
fn png_size(png: &[u8]) -> Option<(u32, u32)> {
    if png.len() < 24 || &png[..8] != b"\x89PNG\r\n\x1a\n" || &png[12..16] != b"IHDR" {
        return None;
    }
    let word = |at: usize| u32::from_be_bytes([png[at], png[at + 1], png[at + 2], png[at + 3]]);
    Some((word(16), word(20)))
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_page_renders_in_chromium() -> anyhow::Result<()> {
    init_tracing();
    let Some(program) = required_program(&["chromium", "chromium-browser"], "chromium") else {
        return Ok(());
    };
    let (bootstrap, nodes) = start_network(8).await?;
    let a = &nodes[0];
    let endpoint = serve_endpoint(a).await?;
    // Records and lookups, so that every part of the page has something to draw.
    let mut client = ApiClient::connect(a.api_addr()).await?;
    for i in 0..20 {
        let key = Key::sha256(format!("browser/{i}").as_bytes());
        client.put(key, b"value", 600, 3).await?;
        client
            .get(Key::sha256(format!("browser/missing/{i}").as_bytes()))
            .await?;
    }
    assert!(
        wait_for(Duration::from_secs(20), || async {
            a.node.stored_records() >= 20
        })
        .await,
        "the PUTs were not stored"
    );
    let url = format!("http://{}/", endpoint.local_addr());
    let out = workspace().join("target").join("screenshots");
    std::fs::create_dir_all(&out)?;
    let profile = out.join("chromium-profile");
    let shot = out.join("status-page.png");
    let _ = std::fs::remove_file(&shot);

    let (dom, screenshot) = {
        let (program, profile, url, shot) =
            (program.clone(), profile.clone(), url.clone(), shot.clone());
        tokio::task::spawn_blocking(move || -> anyhow::Result<(String, Vec<u8>)> {
            let dom = chromium(&program, &profile, &["--dump-dom"], &url)?;
            chromium(
                &program,
                &profile,
                &[
                    "--window-size=1280,1500",
                    &format!("--screenshot={}", shot.display()),
                ],
                &url,
            )?;
            Ok((dom, std::fs::read(&shot).context("reading the screenshot")?))
        })
        .await??
    };

    // The DOM the browser built holds every part, with its drawings.
    for part in [
        "<section id=\"node\">",
        "<section id=\"routing\">",
        "<section id=\"store\">",
        "<section id=\"lookups\">",
        "<section id=\"upkeep\">",
        "id=\"latency-histogram\"",
        "<g class=\"bucket\"",
        "class=\"bin\"",
        "<td>join</td>",
    ] {
        assert!(
            dom.contains(part),
            "the rendered page has no {part}:\n{dom}"
        );
    }
    assert!(dom.contains(&a.node.id().to_string()));
    assert!(dom.contains("records: 20 of 100000"), "{dom}");
    // A picture of the whole window, and not a blank one: a white 1280×1500 PNG takes
    // a few kilobytes, the page's text and drawings many more.
    assert_eq!(png_size(&screenshot), Some((1280, 1500)));
    assert!(
        screenshot.len() > 40_000,
        "the screenshot is nearly empty ({} bytes)",
        screenshot.len()
    );
    if std::env::var_os("DHT_UPDATE_DOCS_SCREENSHOTS").is_some() {
        let docs = workspace().join("docs").join("images");
        std::fs::create_dir_all(&docs)?;
        std::fs::copy(&shot, docs.join("status-page.png"))?;
    }

    endpoint.shutdown().await;
    for n in &nodes {
        n.stop().await;
    }
    bootstrap.stop().await;
    Ok(())
}

#[test]
fn png_sizes_are_read_from_the_header() {
    let mut png = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR".to_vec();
    png.extend_from_slice(&1280u32.to_be_bytes());
    png.extend_from_slice(&1500u32.to_be_bytes());
    assert_eq!(png_size(&png), Some((1280, 1500)));
    assert_eq!(png_size(b"GIF89a"), None);
}
