//! Running one command: reading the value, talking to the node under one deadline,
//! printing the answer, and the exit status (0 found or stored, 1 not found, 2 error).
//!
//! Everything that can be checked without the network (arguments, key, value) is checked
//! first, so a bad command line never opens a connection.

use std::ffi::OsString;
use std::fmt::Write as _;
use std::io::{self, IsTerminal, Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use bytes::Bytes;
use clap::Parser;
use clap::error::ErrorKind;
use dht_id::Key;
use dht_wire::MAX_VALUE_LEN;
use tokio::time::{Instant, timeout_at};

use crate::args::{ApiAddress, Cli, Command, GetArgs, PutArgs};
use crate::client::{Client, ClientError, PutOptions};
use crate::deployment;

/// How often `put --confirm` asks again while the node does not return the value.
const CONFIRM_INTERVAL: Duration = Duration::from_millis(200);

/// How a command ended, when it did not fail.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    /// Stored, found, or printed.
    Done,
    /// The node answered DHT_FAILURE for this key.
    NotFound(Key),
}

/// Runs `dht-cli` with these arguments (the first is the program name) and returns its
/// exit status. Failures are printed as one line `dht-cli: <reason>` on stderr.
pub fn run<I, T>(args: I) -> ExitCode
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) => {
            // Help and version go to stdout; failing to print them is not worth a status.
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => return fail(&usage_error(&e)),
    };
    match execute(cli) {
        Ok(Outcome::Done) => ExitCode::SUCCESS,
        Ok(Outcome::NotFound(key)) => {
            eprintln!("dht-cli: not found: no value under key {key}");
            ExitCode::from(1)
        }
        Err(reason) => fail(&reason),
    }
}

/// Prints `reason` as one line on stderr and returns status 2.
fn fail(reason: &str) -> ExitCode {
    let one_line = reason.split_whitespace().collect::<Vec<_>>().join(" ");
    eprintln!("dht-cli: {one_line}");
    ExitCode::from(2)
}

/// clap's message in one line: its first paragraph (without the `error: ` prefix; tips
/// and usage follow after a blank line) and where to look.
fn usage_error(e: &clap::Error) -> String {
    if matches!(
        e.kind(),
        ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand | ErrorKind::MissingSubcommand
    ) {
        return "no command given: put, get or key (see dht-cli --help)".into();
    }
    let text = e.render().to_string();
    let paragraph: Vec<&str> = text
        .trim_start()
        .lines()
        .take_while(|line| !line.trim().is_empty())
        .map(str::trim)
        .collect();
    let message = paragraph.join(" ");
    let message = message.strip_prefix("error: ").unwrap_or(&message);
    format!("{message} (see dht-cli --help)")
}

/// The API address the command talks to (see [`deployment::choose`]); says on stderr
/// when a deployment's record chose it.
fn api_address(api: Option<ApiAddress>, node: Option<&str>) -> Result<ApiAddress, String> {
    let cwd = std::env::current_dir().map_err(|e| format!("no current folder: {e}"))?;
    let chosen = deployment::choose(api, node, &cwd, &deployment::Places::from_env())?;
    if let Some(from) = &chosen.from {
        eprintln!("dht-cli: using {from} at {}", chosen.api);
    }
    Ok(chosen.api)
}

fn execute(cli: Cli) -> Result<Outcome, String> {
    match cli.command {
        Command::Key(key) => {
            let key = key.to_key()?;
            write_stdout(format!("{key}\n").as_bytes())?;
            Ok(Outcome::Done)
        }
        Command::Put(put) => {
            let key = put.key.to_key()?;
            let source = value_source(&put, io::stdin().is_terminal())?;
            let value = read_value(&source, &mut io::stdin().lock())?;
            let api = api_address(cli.api, cli.node.as_deref())?;
            in_runtime(cli.timeout, |deadline| {
                do_put(api, cli.timeout, deadline, key, value, &put)
            })
        }
        Command::Get(get) => {
            let key = get.key.to_key()?;
            let api = api_address(cli.api, cli.node.as_deref())?;
            let found = in_runtime(cli.timeout, |deadline| {
                do_get(api, cli.timeout, deadline, key)
            })?;
            match found {
                Some(value) => {
                    write_stdout(&format_value(&value, &get))?;
                    Ok(Outcome::Done)
                }
                None => Ok(Outcome::NotFound(key)),
            }
        }
    }
}

/// Runs `work` on a current-thread runtime; its deadline starts now.
fn in_runtime<F, Fut, T>(timeout: Duration, work: F) -> Result<T, String>
where
    F: FnOnce(Instant) -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?;
    let result = runtime.block_on(async move { work(Instant::now() + timeout).await });
    // A name lookup runs on a blocking thread that a timeout cannot stop; dropping the
    // runtime would wait for it, so the deadline would not hold.
    runtime.shutdown_background();
    result
}

async fn connect(api: &ApiAddress, timeout: Duration, deadline: Instant) -> Result<Client, String> {
    timeout_at(deadline, Client::connect(api.as_str()))
        .await
        .map_err(|_| format!("timed out after {} connecting to {api}", secs(timeout)))?
        .map_err(|e| e.to_string())
}

async fn do_get(
    api: ApiAddress,
    timeout: Duration,
    deadline: Instant,
    key: Key,
) -> Result<Option<Bytes>, String> {
    let mut client = connect(&api, timeout, deadline).await?;
    timeout_at(deadline, client.get(key))
        .await
        .map_err(|_| {
            format!(
                "timed out after {} waiting for the answer to DHT_GET from {api}",
                secs(timeout)
            )
        })?
        .map_err(|e| e.to_string())
}

async fn do_put(
    api: ApiAddress,
    timeout: Duration,
    deadline: Instant,
    key: Key,
    value: Bytes,
    put: &PutArgs,
) -> Result<Outcome, String> {
    let options = PutOptions {
        ttl: put.ttl,
        replication: put.replication,
    };
    let mut client = connect(&api, timeout, deadline).await?;
    let sent = timeout_at(deadline, client.put(key, value.clone(), options)).await;
    sent.map_err(|_| format!("timed out after {} sending the DHT_PUT", secs(timeout)))?
        .map_err(|e| e.to_string())?;
    if put.confirm {
        confirm(&mut client, timeout, deadline, key, &value).await?;
        return Ok(Outcome::Done);
    }
    match timeout_at(deadline, client.close()).await {
        Ok(Ok(())) => Ok(Outcome::Done),
        Ok(Err(ClientError::Io(e))) => Err(format!(
            "the connection failed before the node had read the DHT_PUT ({e}); it may not be stored"
        )),
        Ok(Err(e)) => Err(format!("after the DHT_PUT: {e}")),
        Err(_) => Err(format!(
            "timed out after {}: the node did not close the connection, so it may not have read the DHT_PUT",
            secs(timeout)
        )),
    }
}

/// GETs `key` on the PUT's connection until the node returns `value` or the deadline.
async fn confirm(
    client: &mut Client,
    timeout: Duration,
    deadline: Instant,
    key: Key,
    value: &Bytes,
) -> Result<(), String> {
    let mut last = "no answer yet";
    loop {
        match timeout_at(deadline, client.get(key)).await {
            Ok(Ok(Some(found))) if found == *value => return Ok(()),
            Ok(Ok(Some(_))) => last = "another value",
            Ok(Ok(None)) => last = "DHT_FAILURE",
            Ok(Err(e)) => return Err(format!("confirming the DHT_PUT: {e}")),
            Err(_) => break,
        }
        if timeout_at(deadline, tokio::time::sleep(CONFIRM_INTERVAL))
            .await
            .is_err()
        {
            break;
        }
    }
    Err(format!(
        "not confirmed: the node did not return the value within {} (last answer: {last})",
        secs(timeout)
    ))
}

/// Where the value of a PUT comes from.
#[derive(Debug, PartialEq, Eq)]
enum ValueSource {
    /// The VALUE argument.
    Argument(String),
    /// A file (`--file PATH`).
    File(PathBuf),
    /// Standard input.
    Stdin,
}

/// VALUE, else `--file`, else stdin when it is not a terminal (or VALUE / PATH is `-`).
fn value_source(put: &PutArgs, stdin_is_terminal: bool) -> Result<ValueSource, String> {
    match (&put.value, &put.file) {
        (Some(value), _) if value == "-" => Ok(ValueSource::Stdin),
        (Some(value), _) => Ok(ValueSource::Argument(value.clone())),
        (None, Some(path)) if path.as_os_str() == "-" => Ok(ValueSource::Stdin),
        (None, Some(path)) => Ok(ValueSource::File(path.clone())),
        (None, None) if stdin_is_terminal => {
            Err("no value: give VALUE, --file PATH, or pipe the value into standard input".into())
        }
        (None, None) => Ok(ValueSource::Stdin),
    }
}

/// Reads the value, refusing an empty one and one larger than a DHT_PUT carries
/// (reading at most one byte more than that, whatever the input's size).
fn read_value(source: &ValueSource, stdin: &mut impl Read) -> Result<Bytes, String> {
    let limit = MAX_VALUE_LEN as u64 + 1;
    let mut buf = Vec::new();
    let (what, read) = match source {
        ValueSource::Argument(value) => {
            buf.extend_from_slice(value.as_bytes());
            ("VALUE".to_string(), Ok(()))
        }
        ValueSource::File(path) => {
            let what = format!("file {}", path.display());
            let read = std::fs::File::open(path)
                .and_then(|file| file.take(limit).read_to_end(&mut buf).map(drop));
            (what, read)
        }
        ValueSource::Stdin => {
            let read = stdin.take(limit).read_to_end(&mut buf).map(drop);
            ("standard input".to_string(), read)
        }
    };
    read.map_err(|e| format!("cannot read the value from {what}: {e}"))?;
    check_value_len(&what, buf.len())?;
    Ok(Bytes::from(buf))
}

fn check_value_len(what: &str, len: usize) -> Result<(), String> {
    if len == 0 {
        Err(format!(
            "the value from {what} is empty; the API cannot store an empty value"
        ))
    } else if len > MAX_VALUE_LEN {
        Err(format!(
            "the value from {what} is larger than {MAX_VALUE_LEN} bytes, the most one DHT_PUT carries"
        ))
    } else {
        Ok(())
    }
}

/// The bytes `get` prints: the value itself, or with `--hex` its hex digits and a newline.
fn format_value(value: &[u8], get: &GetArgs) -> Vec<u8> {
    if get.hex {
        let mut text = String::with_capacity(2 * value.len() + 1);
        for byte in value {
            let _ = write!(text, "{byte:02x}");
        }
        text.push('\n');
        text.into_bytes()
    } else {
        value.to_vec()
    }
}

fn write_stdout(bytes: &[u8]) -> Result<(), String> {
    let mut out = io::stdout().lock();
    out.write_all(bytes)
        .and_then(|()| out.flush())
        .map_err(|e| format!("cannot write to standard output: {e}"))
}

/// `10 s`, `0.5 s`.
fn secs(duration: Duration) -> String {
    format!("{} s", duration.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::args::KeyArgs;

    fn put_args(value: Option<&str>, file: Option<&str>) -> PutArgs {
        PutArgs {
            key: KeyArgs {
                key: "k".into(),
                key_hex: false,
                key_string: false,
            },
            value: value.map(str::to_string),
            file: file.map(PathBuf::from),
            ttl: 3600,
            replication: 3,
            confirm: false,
        }
    }

    #[test]
    fn value_sources() {
        let cases = [
            (Some("v"), None, true, Ok(ValueSource::Argument("v".into()))),
            (
                Some("v"),
                None,
                false,
                Ok(ValueSource::Argument("v".into())),
            ),
            (Some("-"), None, true, Ok(ValueSource::Stdin)),
            (None, Some("p"), true, Ok(ValueSource::File("p".into()))),
            (None, Some("p"), false, Ok(ValueSource::File("p".into()))),
            (None, Some("-"), false, Ok(ValueSource::Stdin)),
            (None, None, false, Ok(ValueSource::Stdin)),
        ];
        for (value, file, terminal, expected) in cases {
            assert_eq!(
                value_source(&put_args(value, file), terminal),
                expected,
                "{value:?} {file:?} {terminal}"
            );
        }
        let err = value_source(&put_args(None, None), true).unwrap_err();
        assert!(err.starts_with("no value"), "{err}");
    }

    #[test]
    fn values_are_read_whole_and_bounded() {
        let mut no_stdin = io::empty();
        let v = read_value(&ValueSource::Argument("héllo".into()), &mut no_stdin).unwrap();
        assert_eq!(&v[..], "héllo".as_bytes());

        let largest = vec![7u8; MAX_VALUE_LEN];
        let v = read_value(&ValueSource::Stdin, &mut &largest[..]).unwrap();
        assert_eq!(v.len(), MAX_VALUE_LEN);

        let too_large = vec![7u8; MAX_VALUE_LEN + 1];
        let err = read_value(&ValueSource::Stdin, &mut &too_large[..]).unwrap_err();
        assert!(err.contains("larger than 65495 bytes"), "{err}");
        // An endless input is cut after one byte too many.
        let err = read_value(&ValueSource::Stdin, &mut io::repeat(1)).unwrap_err();
        assert!(err.contains("larger than"), "{err}");

        let err = read_value(&ValueSource::Stdin, &mut io::empty()).unwrap_err();
        assert!(err.contains("empty"), "{err}");
        let err = read_value(&ValueSource::Argument(String::new()), &mut no_stdin).unwrap_err();
        assert!(err.contains("empty"), "{err}");

        let missing = ValueSource::File("/nonexistent/dht-cli-value".into());
        let err = read_value(&missing, &mut no_stdin).unwrap_err();
        assert!(
            err.starts_with("cannot read the value from file /nonexistent/dht-cli-value"),
            "{err}"
        );
    }

    #[test]
    fn output_formats() {
        let get = |hex| GetArgs {
            key: KeyArgs {
                key: "k".into(),
                key_hex: false,
                key_string: false,
            },
            hex,
            raw: false,
        };
        let value = [0x00, 0xab, b'\n', 0xff];
        assert_eq!(format_value(&value, &get(false)), value.to_vec());
        assert_eq!(format_value(&value, &get(true)), b"00ab0aff\n".to_vec());
    }

    #[test]
    fn usage_errors_are_one_line() {
        let cases: [(&[&str], &str); 5] = [
            (
                &["get", "k", "--bogus"],
                "unexpected argument '--bogus' found",
            ),
            (&["put"], "required arguments were not provided: <KEY>"),
            (
                &["put", "k", "--ttl", "x"],
                "invalid value 'x' for '--ttl <SECS>'",
            ),
            (&[], "no command given"),
            (&["--timeout", "1"], "no command given"),
        ];
        for (args, expected) in cases {
            let e = Cli::try_parse_from(std::iter::once("dht-cli").chain(args.iter().copied()))
                .unwrap_err();
            let line = usage_error(&e);
            assert!(!line.contains('\n'), "{line}");
            assert!(line.contains(expected), "{args:?}: {line}");
            assert!(line.ends_with("(see dht-cli --help)"), "{line}");
            assert!(!line.starts_with("error:"), "{line}");
        }
    }

    #[test]
    fn durations_read_as_seconds() {
        assert_eq!(secs(Duration::from_secs(10)), "10 s");
        assert_eq!(secs(Duration::from_millis(500)), "0.5 s");
    }
}
