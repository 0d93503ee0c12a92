//! The status page in a real browser: headless Chromium (Debian's `chromium`, which
//! `.ci/run` installs) loads a node's `/`, its DOM must hold every part of the page
//! with its drawings, and a screenshot of it is taken (into `target/screenshots/`; with
//! `DHT_UPDATE_DOCS_SCREENSHOTS=1`, also into `docs/images/` for the README; see
//! `dht_tests::browser`).

use std::time::Duration;

use dht_core::Key;
use dht_tests::browser::{png_size, render};
use dht_tests::http::serve_endpoint;
use dht_tests::{ApiClient, init_tracing, start_network, wait_for};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_page_renders_in_chromium() -> anyhow::Result<()> {
    init_tracing();
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
    let rendered =
        tokio::task::spawn_blocking(move || render(&url, "status-page", 1280, 1500)).await??;
    let Some(rendered) = rendered else {
        return Ok(()); // No Chromium here, outside CI: said so on stderr.
    };
    let (dom, screenshot) = (rendered.dom, rendered.png);

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
    endpoint.shutdown().await;
    for n in &nodes {
        n.stop().await;
    }
    bootstrap.stop().await;
    Ok(())
}
