//! `dht-cli` without `--api`: the record of a local deployment (`cargo xtask deploy`'s
//! `target/deploy/cluster.json`, found from the current folder up) names the node, and
//! `--node NAME` picks a member; `DHT_API` and errors behave as documented.

mod common;

use common::{cli_in, cli_with, lone_node};

/// Writes a deployment record naming `api` as node-1's API (and a bootstrap node without
/// one) under `<dir>/target/deploy/`.
fn write_record(dir: &std::path::Path, api: &str) {
    let deploy = dir.join("target").join("deploy");
    std::fs::create_dir_all(&deploy).expect("record folder");
    let record = format!(
        r#"{{"mode":"local","nodes":[
        {{"name":"bootstrap","role":"bootstrap","node_id":null,"api_address":null,
          "p2p_address":"127.0.0.1:1","pid":1,"log":"/l","config":"/c"}},
        {{"name":"node-1","role":"node","node_id":null,"api_address":"{api}",
          "p2p_address":"127.0.0.1:2","pid":2,"log":"/l","config":"/c"}}]}}"#
    );
    std::fs::write(deploy.join("cluster.json"), record).expect("record");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_an_address_the_deployment_record_names_the_node() {
    let node = lone_node().await;
    let api = node.api_addr().to_string();
    let dir = std::env::temp_dir().join(format!("dht-cli-record-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    write_record(&dir, &api);
    let below = dir.join("crates").join("x");
    std::fs::create_dir_all(&below).expect("subfolder");

    // From a folder below the record's: node-1 is used, and dht-cli says so.
    let put = cli_in(&below, &["put", "greeting", "hello world"], None, None).await;
    assert_eq!(put.code, 0, "{}", put.stderr);
    assert_eq!(
        put.stderr,
        format!(
            "dht-cli: using node-1 of {} at {api}\n",
            dir.join("target/deploy/cluster.json").display()
        )
    );
    let got = cli_in(&dir, &["get", "greeting"], None, None).await;
    assert_eq!((got.code, got.stdout.as_slice()), (0, &b"hello world"[..]));
    assert_eq!(
        got.stderr,
        format!("dht-cli: using node-1 of target/deploy/cluster.json at {api}\n")
    );
    // --node picks a member by name, even over DHT_API; a bootstrap node has no API.
    let got = cli_in(
        &dir,
        &["--node", "node-1", "get", "greeting"],
        None,
        Some("127.0.0.1:1".into()),
    )
    .await;
    assert_eq!((got.code, got.stdout.as_slice()), (0, &b"hello world"[..]));
    cli_in(
        &dir,
        &["--node", "bootstrap", "get", "greeting"],
        None,
        None,
    )
    .await
    .failed(2, "serves no API");
    cli_in(&dir, &["--node", "node-7", "get", "greeting"], None, None)
        .await
        .failed(2, "no member \"node-7\"");
    // DHT_API wins over the record; without a record, --node is an error.
    let got = cli_in(&dir, &["get", "greeting"], None, Some(api.clone())).await;
    assert_eq!(got.ok().stdout, b"hello world");
    assert_eq!(got.stderr, "");
    cli_with(&["--node", "node-1", "get", "greeting"], None, None)
        .await
        .failed(2, "no deployment record found");
    // A broken record is an error that names it, not a silent fallback.
    std::fs::write(dir.join("target/deploy/cluster.json"), "{").expect("write");
    cli_in(&dir, &["get", "greeting"], None, None)
        .await
        .failed(2, "is not a deployment record");
    std::fs::remove_dir_all(&dir).expect("cleanup");
    node.stop().await;
}
