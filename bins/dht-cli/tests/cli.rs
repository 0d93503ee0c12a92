//! The `dht-cli` binary against a real node (started in-process by `dht-tests`) and
//! against small fake API servers that misbehave on purpose: values from the argument,
//! a file and stdin, raw and hex output, string keys, exit statuses 0, 1 and 2 with
//! their one-line reasons, `--confirm`, and the help.

use std::time::{Duration, Instant};

use bytes::Bytes;
use dht_id::Key;
use dht_wire::{ApiCodec, ApiMessage, MAX_VALUE_LEN};
use futures::{SinkExt, StreamExt};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::codec::Framed;

mod common;

use common::{cli, cli_with, lone_node};

/// A file under the test's temporary directory holding `bytes`.
fn temp_file(name: &str, bytes: &[u8]) -> String {
    let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("dht-cli-{}-{name}", std::process::id()));
    std::fs::write(&path, bytes).expect("temp file written");
    path.display().to_string()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// An API server on 127.0.0.1 that serves one connection with `behaviour`; the task
/// returns what `behaviour` returns (the messages it received).
async fn fake_api<F, Fut>(behaviour: F) -> (String, tokio::task::JoinHandle<Vec<ApiMessage>>)
where
    F: FnOnce(Framed<TcpStream, ApiCodec>) -> Fut + Send + 'static,
    Fut: Future<Output = Vec<ApiMessage>> + Send,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("address").to_string();
    let task = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.expect("accept");
        behaviour(Framed::new(stream, ApiCodec)).await
    });
    (addr, task)
}

/// Reads messages until the client closes, answering each GET with `answer(key)`.
async fn answer_gets(
    mut framed: Framed<TcpStream, ApiCodec>,
    answer: impl Fn(Key) -> ApiMessage,
) -> Vec<ApiMessage> {
    let mut seen = Vec::new();
    while let Some(Ok(message)) = framed.next().await {
        if let ApiMessage::Get { key } = message {
            if framed.send(answer(key)).await.is_err() {
                break;
            }
        }
        seen.push(message);
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn values_from_argument_file_and_stdin_come_back_raw_and_hex() {
    let node = lone_node().await;
    let api = node.api_addr().to_string();
    let api = api.as_str();

    cli(&["--api", api, "put", "from-argument", "hello world"])
        .await
        .ok();
    let got = cli(&["--api", api, "get", "from-argument"]).await;
    assert_eq!(
        got.ok().stdout,
        b"hello world",
        "raw: the bytes, nothing added"
    );
    let got = cli(&["get", "from-argument", "--raw", "--api", api]).await;
    assert_eq!(got.ok().stdout, b"hello world");
    let got = cli(&["--api", api, "get", "from-argument", "--hex"]).await;
    assert_eq!(
        got.ok().stdout,
        format!("{}\n", hex(b"hello world")).as_bytes()
    );

    // The largest value, every byte value, from a file.
    let largest: Vec<u8> = (0..MAX_VALUE_LEN).map(|i| (i % 251) as u8).collect();
    let path = temp_file("largest", &largest);
    cli(&["--api", api, "put", "from-file", "--file", &path])
        .await
        .ok();
    let got = cli(&["--api", api, "get", "from-file"]).await;
    assert!(got.ok().stdout == largest, "file value differs");
    let _ = std::fs::remove_file(&path);

    // Standard input: VALUE omitted, and VALUE `-`; binary bytes with a newline inside.
    let binary = vec![0u8, 10, 255, 13, 10, 0];
    cli_with(
        &["--api", api, "put", "from-stdin"],
        Some(binary.clone()),
        None,
    )
    .await
    .ok();
    cli_with(
        &["--api", api, "put", "from-dash", "-", "--ttl", "60"],
        Some(b"dashed".to_vec()),
        None,
    )
    .await
    .ok();
    let got = cli(&["--api", api, "get", "from-stdin"]).await;
    assert_eq!(got.ok().stdout, binary);
    let got = cli(&["--api", api, "get", "from-stdin", "--hex"]).await;
    assert_eq!(got.ok().stdout, b"000aff0d0a00\n");
    let got = cli(&["--api", api, "get", "from-dash"]).await;
    assert_eq!(got.ok().stdout, b"dashed");

    // A name is resolved (localhost may resolve to ::1 first, which refuses: the next
    // address is tried), and DHT_API names the node when --api is absent.
    let port = node.api_addr().port();
    let got = cli(&["--api", &format!("localhost:{port}"), "get", "from-dash"]).await;
    assert_eq!(got.ok().stdout, b"dashed");
    let got = cli_with(&["get", "from-dash"], None, Some(api.to_string())).await;
    assert_eq!(got.ok().stdout, b"dashed");
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_string_key_is_its_sha256() {
    let node = lone_node().await;
    let api = node.api_addr().to_string();
    let api = api.as_str();
    let digest = Key::sha256(b"greeting").to_string();

    let shown = cli(&["key", "greeting"]).await;
    assert_eq!(shown.ok().stdout, format!("{digest}\n").as_bytes());

    cli(&["--api", api, "put", "greeting", "hello"]).await.ok();
    for args in [
        &["get", digest.as_str()][..],
        &["get", "--key-hex", digest.as_str()],
        &["get", "--key-hex", digest.to_uppercase().as_str()],
        &["get", "--key-string", "greeting"],
    ] {
        let got = cli(&[&["--api", api][..], args].concat()).await;
        assert_eq!(got.ok().stdout, b"hello", "{args:?}");
    }

    // --key-string hashes even 64 hex digits: another key, another value.
    cli(&["--api", api, "put", "--key-string", &digest, "other"])
        .await
        .ok();
    let got = cli(&["--api", api, "get", "--key-string", &digest]).await;
    assert_eq!(got.ok().stdout, b"other");
    let got = cli(&["--api", api, "get", &digest]).await;
    assert_eq!(got.ok().stdout, b"hello");
    let hashed_again = Key::sha256(digest.as_bytes()).to_string();
    let got = cli(&["--api", api, "get", &hashed_again]).await;
    assert_eq!(got.ok().stdout, b"other");
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_key_exits_1() {
    let node = lone_node().await;
    let api = node.api_addr().to_string();
    let run = cli(&["--api", &api, "get", "never stored"]).await;
    let key = Key::sha256(b"never stored").to_string();
    run.failed(1, &format!("not found: no value under key {key}"));
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn confirm_reads_the_value_back_on_the_same_connection() {
    let node = lone_node().await;
    let api = node.api_addr().to_string();
    cli(&["--api", &api, "put", "confirmed", "v1", "--confirm"])
        .await
        .ok();
    let got = cli(&["--api", &api, "get", "confirmed"]).await;
    assert_eq!(got.ok().stdout, b"v1");
    node.stop().await;

    // A node that never has the value: exit 2 once --timeout has passed.
    let (fake, task) =
        fake_api(|framed| answer_gets(framed, |key| ApiMessage::Failure { key })).await;
    let started = Instant::now();
    let run = cli(&[
        "--api",
        &fake,
        "--timeout",
        "1",
        "put",
        "k",
        "v",
        "--confirm",
    ])
    .await;
    let elapsed = started.elapsed();
    run.failed(
        2,
        "not confirmed: the node did not return the value within 1 s (last answer: DHT_FAILURE)",
    );
    assert!(
        elapsed >= Duration::from_secs(1),
        "gave up early: {elapsed:?}"
    );
    let seen = task.await.expect("fake server");
    let key = Key::sha256(b"k");
    assert_eq!(
        seen[0],
        ApiMessage::Put {
            ttl: 3600,
            replication: 3,
            key,
            value: Bytes::from_static(b"v")
        }
    );
    assert!(seen.len() >= 3, "asked again: {seen:?}");
    assert!(seen[1..].iter().all(|m| *m == ApiMessage::Get { key }));

    // A node answering with another value is not a confirmation either.
    let (fake, _task) = fake_api(|framed| {
        answer_gets(framed, |key| ApiMessage::Success {
            key,
            value: Bytes::from_static(b"older"),
        })
    })
    .await;
    cli(&[
        "--api",
        &fake,
        "--timeout",
        "0.5",
        "put",
        "k",
        "new",
        "--confirm",
    ])
    .await
    .failed(2, "(last answer: another value)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_api_exits_2_with_one_line() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let closed = listener.local_addr().expect("address").to_string();
    drop(listener);
    let refused = format!("cannot connect to the DHT API at {closed}");
    cli(&["--api", &closed, "get", "k"])
        .await
        .failed(2, &refused);
    cli(&["--api", &closed, "put", "k", "v"])
        .await
        .failed(2, &refused);
    cli_with(&["get", "k"], None, Some(closed.clone()))
        .await
        .failed(2, &refused);
    cli(&[
        "--api",
        "no-such-host.invalid:7401",
        "--timeout",
        "3",
        "get",
        "k",
    ])
    .await
    .failed(2, "no-such-host.invalid:7401");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_arguments_exit_2_without_connecting() {
    // Every refusal happens before a connection: the listener must see none.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.set_nonblocking(true).expect("non-blocking");
    let api = listener.local_addr().expect("address").to_string();
    let api = api.as_str();
    let too_large = temp_file("too-large", &vec![1u8; MAX_VALUE_LEN + 1]);
    let empty = temp_file("empty", b"");
    let cases: [(&[&str], &str); 12] = [
        (&[], "no command given"),
        (&["frobnicate"], "unrecognized subcommand 'frobnicate'"),
        (&["get", "k", "--bogus"], "unexpected argument '--bogus'"),
        (
            &["put", "k", "v", "--ttl", "70000"],
            "70000 is not in 0..=65535",
        ),
        (
            &["put", "k", "v", "--replication", "300"],
            "300 is not in 0..=255",
        ),
        (&["get", "--key-hex", "abc"], "KEY is not 64 hex digits"),
        (&["get", ""], "KEY is empty"),
        (
            &["put", "k", "--file", &too_large],
            "larger than 65495 bytes",
        ),
        (&["put", "k", "--file", &empty], "is empty"),
        (
            &["put", "k", "--file", "/nonexistent/v"],
            "cannot read the value from file",
        ),
        (&["put", "k"], "the value from standard input is empty"),
        (&["get", "k", "--timeout", "0"], "seconds above 0"),
    ];
    for (args, reason) in cases {
        let run = cli(&[&["--api", api][..], args].concat()).await;
        run.failed(2, reason);
    }
    cli(&["--api", "nowhere", "get", "k"])
        .await
        .failed(2, "expected HOST:PORT, got 'nowhere'");
    let _ = std::fs::remove_file(&too_large);
    let _ = std::fs::remove_file(&empty);
    assert_eq!(
        listener.accept().map_err(|e| e.kind()).err(),
        Some(std::io::ErrorKind::WouldBlock),
        "a refused command line connected"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_misbehaving_node_is_an_error_never_a_success() {
    // Answers a GET about another key.
    let (fake, _task) = fake_api(|framed| {
        answer_gets(framed, |_| ApiMessage::Failure {
            key: Key::sha256(b"another"),
        })
    })
    .await;
    cli(&["--api", &fake, "get", "k"])
        .await
        .failed(2, "an answer about key");

    // Answers with bytes that are no API message.
    let (fake, _task) = fake_api(|framed| async move {
        let mut stream = framed.into_inner();
        let _ = stream.write_all(&[0, 2, 0, 0]).await;
        let _ = stream.shutdown().await;
        Vec::new()
    })
    .await;
    cli(&["--api", &fake, "get", "k"])
        .await
        .failed(2, "malformed message: message size 2");

    // Never answers: the deadline ends the wait.
    let (fake, _task) = fake_api(|mut framed| async move {
        let first = framed.next().await;
        tokio::time::sleep(Duration::from_secs(10)).await;
        first.into_iter().flatten().collect()
    })
    .await;
    cli(&["--api", &fake, "--timeout", "0.5", "get", "k"])
        .await
        .failed(2, "timed out after 0.5 s waiting for the answer to DHT_GET");

    // Answers a PUT, which the API forbids.
    let (fake, _task) = fake_api(|mut framed| async move {
        let first = framed.next().await;
        let key = Key::sha256(b"k");
        let _ = framed.send(ApiMessage::Failure { key }).await;
        first.into_iter().flatten().collect()
    })
    .await;
    cli(&["--api", &fake, "put", "k", "v"])
        .await
        .failed(2, "DHT_FAILURE although no answer was due");

    // Reads the PUT but never closes: not acknowledged.
    let (fake, _task) = fake_api(|mut framed| async move {
        let first = framed.next().await;
        tokio::time::sleep(Duration::from_secs(10)).await;
        first.into_iter().flatten().collect()
    })
    .await;
    cli(&["--api", &fake, "--timeout", "0.5", "put", "k", "v"])
        .await
        .failed(2, "the node did not close the connection");

    // Closes at once, as a node at its connection limit does.
    let (fake, _task) = fake_api(|framed| async move {
        drop(framed);
        Vec::new()
    })
    .await;
    let run = cli(&["--api", &fake, "get", "k"]).await;
    run.failed(2, "");
    assert!(
        run.stderr
            .contains("closed the connection before answering")
            || run.stderr.contains("connection to the node failed"),
        "{}",
        run.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn help_shows_examples() {
    for args in [
        &["--help"][..],
        &["-h"],
        &["put", "--help"],
        &["get", "--help"],
        &["key", "--help"],
        &["help", "put"],
    ] {
        let run = cli(args).await;
        run.ok();
        let text = String::from_utf8(run.stdout).expect("UTF-8 help");
        assert!(text.contains("Examples:\n  dht-cli "), "{args:?}:\n{text}");
    }
    let run = cli(&["--help"]).await;
    let text = String::from_utf8_lossy(&run.stdout);
    for needle in [
        "whose SHA-256",
        "Exit status: 0 found or stored, 1 not found",
        "else 127.0.0.1:7401",
        "--node <NAME>",
    ] {
        assert!(text.contains(needle), "--help lacks {needle:?}:\n{text}");
    }
    let run = cli(&["put", "--help"]).await;
    let text = String::from_utf8_lossy(&run.stdout);
    for needle in ["acknowledged only by being read", "--confirm", "--timeout"] {
        assert!(
            text.contains(needle),
            "put --help lacks {needle:?}:\n{text}"
        );
    }
}
