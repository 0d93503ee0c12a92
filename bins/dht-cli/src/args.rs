//! The command line of `dht-cli`: clap definitions, the help texts with their examples,
//! and the parsing of keys, API addresses and durations.
//!
//! Parsing is pure (no IO), so that every rule here is unit-tested; reading the value and
//! talking to the node happen in `run`.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use dht_id::{KEY_LEN, Key};

/// The API address used when neither `--api` nor `DHT_API` gives one: the default
/// `api_address` of a node.
pub const DEFAULT_API: &str = "127.0.0.1:7401";

const ABOUT: &str = "Stores and looks up values in the VoidPhone DHT through a node's API.";

const LONG_ABOUT: &str = "\
Stores and looks up values in the VoidPhone DHT through a node's API.

dht-cli speaks only the VoidPhone DHT API (DHT_PUT, DHT_GET, DHT_SUCCESS, DHT_FAILURE),
so it works against any node's api_address and doubles as a reference client for the
authors of other modules (its Client is in bins/dht-cli/src/client.rs).

The node: --api HOST:PORT, else $DHT_API, else the first node of the local deployment
when `cargo xtask deploy` left its record (target/deploy/cluster.json in this folder or
one above; dht-cli says on stderr which node it took), else 127.0.0.1:7401. --node NAME
picks a member of that deployment by name.

KEY is 64 hex digits, used as the 32 bytes of the key, or any other text, whose SHA-256
(of its UTF-8 bytes) is the key. --key-hex and --key-string force one of the two.

--timeout bounds the whole command: connecting, the answer, and --confirm. Its default,
10 s, is above a node's own GET deadline (get_deadline_ms, 5 s), so that a slow search
that finds nothing still ends in exit 1, not in a timeout.

Exit status: 0 found or stored, 1 not found (the node answered DHT_FAILURE), 2 any
error (bad arguments, connection refused, timeout, malformed answer), with one line
`dht-cli: <reason>` on stderr.";

const EXAMPLES: &str = "\
Examples:
  dht-cli put greeting 'hello world'          store under the key SHA-256(\"greeting\")
  dht-cli get greeting                        print the value's bytes
  dht-cli get greeting --hex                  print it as hex digits
  dht-cli put photo --file photo.jpg --ttl 86400 --replication 5
  echo hello | dht-cli put greeting           the value from stdin
  dht-cli put greeting hello --confirm        exit 0 only once a GET returns the value
  dht-cli --api node1.example:7401 get 2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824
  dht-cli --node node-3 get greeting          through node-3 of the local deployment
  dht-cli key greeting                        print the 64 hex digits of a key";

const PUT_LONG_ABOUT: &str = "\
Stores VALUE under KEY (DHT_PUT).

The value is VALUE, or the contents of --file PATH, or standard input when VALUE is `-`
or when VALUE is omitted and standard input is not a terminal. It must be 1 to 65495
bytes (the most one DHT_PUT carries). --ttl and --replication are hints that the node
clamps to its own limits.

The API never answers a DHT_PUT: a PUT is acknowledged only by being read. dht-cli
writes it, closes its side of the connection and waits for the node to close the other
side, which the node does only after reading every request sent before; it has stored
its own copy by then and goes on storing the replicas in the background. So exit 0
means \"the node read the PUT\". A node at its connection limit closes new connections
without reading them, which can look the same.

With --confirm, dht-cli sends DHT_GET for the key on the same connection instead (again
every 200 ms) until the node returns the value (exit 0) or --timeout passes (exit 2).";

const PUT_EXAMPLES: &str = "\
Examples:
  dht-cli put greeting 'hello world'
  dht-cli put greeting 'hello world' --ttl 600 --replication 5 --confirm
  dht-cli put photo --file photo.jpg
  tar c notes | dht-cli put notes.tar         the value from stdin
  dht-cli put --key-string 2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824 x
  dht-cli put key -- -5                       a value starting with '-'";

const GET_LONG_ABOUT: &str = "\
Looks up KEY (DHT_GET) and prints its value.

By default the value's bytes are written to stdout exactly as stored, nothing added;
--hex writes them as lowercase hex digits and a newline instead. The default does not
depend on where stdout goes, so a command behaves the same at a terminal and in a
script. Exit 1 when the node answers DHT_FAILURE (nothing found).";

const GET_EXAMPLES: &str = "\
Examples:
  dht-cli get greeting
  dht-cli get greeting --hex
  dht-cli get photo > photo.jpg
  dht-cli get 2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824
  dht-cli get greeting || echo \"missing or failed: exit $?\"";

const KEY_LONG_ABOUT: &str = "\
Prints the 64 hex digits of the key KEY stands for, without contacting a node.

KEY is 64 hex digits, taken as they are, or any other text, which is hashed with SHA-256.";

const KEY_EXAMPLES: &str = "\
Examples:
  dht-cli key hello           2cf24dba... is SHA-256(\"hello\")
  dht-cli key --key-string 2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";

/// `dht-cli [--api HOST:PORT] [--timeout SECS] <command>`.
#[derive(Debug, Parser)]
#[command(
    name = "dht-cli",
    version,
    about = ABOUT,
    long_about = LONG_ABOUT,
    after_help = EXAMPLES
)]
pub struct Cli {
    /// The node's API address; HOST is a name or an IP address ([v6] in brackets).
    /// Default: node-1 of the local deployment (target/deploy/cluster.json in this
    /// folder or one above) when there is one, else 127.0.0.1:7401
    #[arg(
        long,
        global = true,
        env = "DHT_API",
        value_name = "HOST:PORT",
        value_parser = parse_api_address
    )]
    pub api: Option<ApiAddress>,

    /// A member of the local deployment by name (node-3), its API address read from
    /// target/deploy/cluster.json (in this folder or one above); wins over --api
    #[arg(long, global = true, value_name = "NAME")]
    pub node: Option<String>,

    /// Seconds (fractions allowed) the whole command may wait for the node
    #[arg(
        long,
        global = true,
        default_value = "10",
        value_name = "SECS",
        value_parser = parse_timeout
    )]
    pub timeout: Duration,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Store a value under a key (DHT_PUT)
    #[command(long_about = PUT_LONG_ABOUT, after_help = PUT_EXAMPLES)]
    Put(PutArgs),
    /// Look up a key (DHT_GET) and print its value
    #[command(long_about = GET_LONG_ABOUT, after_help = GET_EXAMPLES)]
    Get(GetArgs),
    /// Print the 64 hex digits of a key, without contacting a node
    #[command(long_about = KEY_LONG_ABOUT, after_help = KEY_EXAMPLES)]
    Key(KeyArgs),
}

/// A key on the command line and how to read it.
#[derive(Debug, Args)]
pub struct KeyArgs {
    /// 64 hex digits, or any other text, which is hashed with SHA-256
    #[arg(value_name = "KEY")]
    pub key: String,
    /// Take KEY as 64 hex digits (an error otherwise)
    #[arg(long, conflicts_with = "key_string")]
    pub key_hex: bool,
    /// Hash KEY with SHA-256 even when it is 64 hex digits
    #[arg(long)]
    pub key_string: bool,
}

impl KeyArgs {
    /// How the flags say KEY is read.
    pub fn mode(&self) -> KeyMode {
        if self.key_hex {
            KeyMode::Hex
        } else if self.key_string {
            KeyMode::String
        } else {
            KeyMode::Auto
        }
    }

    /// The key KEY stands for.
    pub fn to_key(&self) -> Result<Key, String> {
        parse_key(&self.key, self.mode())
    }
}

/// Arguments of `put`.
#[derive(Debug, Args)]
pub struct PutArgs {
    /// The key.
    #[command(flatten)]
    pub key: KeyArgs,
    /// The value; `-` or omitted: standard input (unless it is a terminal)
    #[arg(value_name = "VALUE", conflicts_with = "file")]
    pub value: Option<String>,
    /// Read the value from this file (`-`: standard input)
    #[arg(long, short = 'f', value_name = "PATH")]
    pub file: Option<PathBuf>,
    /// Requested lifetime in seconds (a hint the node clamps, by default to 60..86400)
    #[arg(long, value_name = "SECS", default_value_t = 3600)]
    pub ttl: u16,
    /// Requested number of copies (a hint the node clamps, by default to 3..20)
    #[arg(long, value_name = "N", default_value_t = 3)]
    pub replication: u8,
    /// Read the value back with DHT_GET until the node returns it, or fail at --timeout
    #[arg(long)]
    pub confirm: bool,
}

/// Arguments of `get`.
#[derive(Debug, Args)]
pub struct GetArgs {
    /// The key.
    #[command(flatten)]
    pub key: KeyArgs,
    /// Print the value as lowercase hex digits and a newline
    #[arg(long, conflicts_with = "raw")]
    pub hex: bool,
    /// Print the value's bytes exactly as stored (the default)
    #[arg(long)]
    pub raw: bool,
}

/// How KEY is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyMode {
    /// Exactly 64 hex digits are the key's bytes; anything else is hashed.
    Auto,
    /// Must be 64 hex digits.
    Hex,
    /// Always hashed with SHA-256.
    String,
}

/// The key `text` stands for under `mode`.
///
/// The automatic reading takes only exactly 64 hex digits (either case, nothing around
/// them) as a key; any other non-empty text is hashed, so `" ab…"` with a space is a name.
pub fn parse_key(text: &str, mode: KeyMode) -> Result<Key, String> {
    if text.is_empty() {
        return Err("KEY is empty".to_string());
    }
    let looks_hex = text.len() == 2 * KEY_LEN && text.bytes().all(|b| b.is_ascii_hexdigit());
    match mode {
        KeyMode::String => Ok(Key::sha256(text.as_bytes())),
        KeyMode::Auto if !looks_hex => Ok(Key::sha256(text.as_bytes())),
        KeyMode::Auto | KeyMode::Hex => text
            .parse::<Key>()
            .map_err(|e| format!("KEY is not 64 hex digits (--key-hex): {e}")),
    }
}

/// A node's API address as given: `HOST:PORT`, HOST a name, an IPv4 address or an IPv6
/// address in brackets. Names are resolved when connecting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiAddress(String);

impl ApiAddress {
    /// The address as given, `HOST:PORT`, as `tokio::net::lookup_host` takes it.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ApiAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Checks the form `HOST:PORT` (port 1..=65535, IPv6 in brackets).
pub fn parse_api_address(text: &str) -> Result<ApiAddress, String> {
    let expected = || format!("expected HOST:PORT, got '{text}'");
    let (host, port) = text.rsplit_once(':').ok_or_else(expected)?;
    if host.is_empty() {
        return Err(expected());
    }
    match port.parse::<u16>() {
        Ok(0) => return Err(format!("port 0 in '{text}' cannot be connected to")),
        Ok(_) => {}
        Err(_) => return Err(format!("'{port}' in '{text}' is not a port (1..65535)")),
    }
    let bracketed = host.starts_with('[') || host.ends_with(']');
    if bracketed {
        let inner = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .ok_or_else(expected)?;
        if inner.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(format!("'{inner}' in '{text}' is not an IPv6 address"));
        }
    } else if host.contains(':') {
        return Err(format!(
            "'{text}': an IPv6 address goes in brackets, as [::1]:7401"
        ));
    }
    Ok(ApiAddress(text.to_string()))
}

/// A positive number of seconds, fractions allowed, at most a day.
pub fn parse_timeout(text: &str) -> Result<Duration, String> {
    let bad = || format!("expected a number of seconds above 0 and at most 86400, got '{text}'");
    let secs: f64 = text.trim().parse().map_err(|_| bad())?;
    if !(secs > 0.0 && secs <= 86_400.0) {
        return Err(bad());
    }
    Duration::try_from_secs_f64(secs).map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    const HELLO_SHA256: &str = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("dht-cli").chain(args.iter().copied()))
    }

    #[test]
    fn clap_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn keys_hex_or_hashed() {
        let hex = Key::sha256(b"hello");
        assert_eq!(hex.to_string(), HELLO_SHA256);
        assert_eq!(parse_key(HELLO_SHA256, KeyMode::Auto), Ok(hex));
        assert_eq!(
            parse_key(&HELLO_SHA256.to_uppercase(), KeyMode::Auto),
            Ok(hex)
        );
        assert_eq!(parse_key(HELLO_SHA256, KeyMode::Hex), Ok(hex));
        // Forced string: the 64 characters themselves are hashed.
        assert_eq!(
            parse_key(HELLO_SHA256, KeyMode::String),
            Ok(Key::sha256(HELLO_SHA256.as_bytes()))
        );
        assert_eq!(parse_key("hello", KeyMode::Auto), Ok(hex));
        assert_eq!(parse_key("hello", KeyMode::String), Ok(hex));
        // Almost hex: 63 digits, a non-digit, surrounding space: names, hashed.
        for name in [
            &HELLO_SHA256[1..],
            &format!("{}g", &HELLO_SHA256[1..]),
            &format!(" {HELLO_SHA256}"),
        ] {
            assert_eq!(
                parse_key(name, KeyMode::Auto),
                Ok(Key::sha256(name.as_bytes()))
            );
        }
        // UTF-8 text is hashed as its bytes.
        assert_eq!(
            parse_key("grüße", KeyMode::Auto),
            Ok(Key::sha256("grüße".as_bytes()))
        );
    }

    #[test]
    fn key_errors() {
        assert_eq!(parse_key("", KeyMode::Auto), Err("KEY is empty".into()));
        let err = parse_key("hello", KeyMode::Hex).unwrap_err();
        assert!(err.contains("64 hex digits"), "{err}");
        let bad = format!("{}x", &HELLO_SHA256[1..]);
        assert!(parse_key(&bad, KeyMode::Hex).is_err());
    }

    #[test]
    fn api_addresses() {
        for ok in [
            "127.0.0.1:7401",
            "localhost:1",
            "node1.example:65535",
            "[::1]:7401",
        ] {
            assert_eq!(parse_api_address(ok).map(|a| a.to_string()), Ok(ok.into()));
        }
        for bad in [
            "127.0.0.1",
            ":7401",
            "host:",
            "host:0",
            "host:65536",
            "host:x",
            "::1:7401",
            "[::1:7401",
            "[nothex]:1",
        ] {
            assert!(parse_api_address(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn timeouts() {
        assert_eq!(parse_timeout("5"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_timeout("0.25"), Ok(Duration::from_millis(250)));
        for bad in ["0", "-1", "x", "NaN", "inf", "86401", ""] {
            assert!(parse_timeout(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn put_with_defaults() {
        let cli = parse(&["put", "greeting", "hello"]).unwrap();
        // The environment may name a node; else the address is chosen when run.
        let api = std::env::var("DHT_API").ok();
        assert_eq!(cli.api.as_ref().map(|a| a.as_str().to_string()), api);
        assert_eq!(cli.node, None);
        assert_eq!(cli.timeout, Duration::from_secs(10));
        let Command::Put(put) = cli.command else {
            panic!("not put")
        };
        assert_eq!(put.key.key, "greeting");
        assert_eq!(put.key.mode(), KeyMode::Auto);
        assert_eq!(put.value.as_deref(), Some("hello"));
        assert_eq!(put.file, None);
        assert_eq!((put.ttl, put.replication, put.confirm), (3600, 3, false));
    }

    #[test]
    fn put_with_everything_and_global_flags_after_the_command() {
        let cli = parse(&[
            "put",
            "k",
            "--file",
            "v.bin",
            "--ttl",
            "65535",
            "--replication",
            "255",
            "--confirm",
            "--key-string",
            "--api",
            "[::1]:9",
            "--timeout",
            "1.5",
        ])
        .unwrap();
        assert_eq!(
            cli.api.as_ref().map(|a| a.as_str()).unwrap_or_default(),
            "[::1]:9"
        );
        assert_eq!(cli.timeout, Duration::from_millis(1500));
        let Command::Put(put) = cli.command else {
            panic!("not put")
        };
        assert_eq!(put.value, None);
        assert_eq!(put.file, Some(PathBuf::from("v.bin")));
        assert_eq!((put.ttl, put.replication, put.confirm), (65535, 255, true));
        assert_eq!(put.key.mode(), KeyMode::String);
        // A value starting with '-' after `--`.
        let cli = parse(&["put", "k", "--", "-5"]).unwrap();
        let Command::Put(put) = cli.command else {
            panic!("not put")
        };
        assert_eq!(put.value.as_deref(), Some("-5"));
    }

    #[test]
    fn get_output_flags() {
        let cli = parse(&["--api", "h:1", "get", "k", "--hex", "--key-hex"]).unwrap();
        let Command::Get(get) = cli.command else {
            panic!("not get")
        };
        assert!(get.hex && !get.raw);
        assert_eq!(get.key.mode(), KeyMode::Hex);
        let cli = parse(&["get", "k"]).unwrap();
        let Command::Get(get) = cli.command else {
            panic!("not get")
        };
        assert!(!get.hex && !get.raw);
    }

    #[test]
    fn bad_command_lines_are_errors() {
        for args in [
            &[][..],
            &["put"],
            &["put", "k", "v", "--file", "f"],
            &["put", "k", "--ttl", "65536"],
            &["put", "k", "--ttl", "-1"],
            &["put", "k", "v", "--replication", "256"],
            &["put", "k", "v", "extra"],
            &["get"],
            &["get", "k", "--hex", "--raw"],
            &["get", "k", "--key-hex", "--key-string"],
            &["get", "k", "--api", "nowhere"],
            &["get", "k", "--timeout", "0"],
            &["get", "k", "--bogus"],
            &["frobnicate"],
        ] {
            assert!(parse(args).is_err(), "{args:?} parsed");
        }
    }

    #[test]
    fn help_has_examples_and_explains_keys_and_exit_codes() {
        let help = Cli::command().render_long_help().to_string();
        for needle in [
            "Examples:",
            "SHA-256",
            "Exit status",
            "DHT_API",
            "127.0.0.1:7401",
        ] {
            assert!(
                help.contains(needle),
                "top-level help lacks {needle}:\n{help}"
            );
        }
        let mut cmd = Cli::command();
        let put = cmd
            .find_subcommand_mut("put")
            .expect("put")
            .render_long_help()
            .to_string();
        for needle in ["Examples:", "acknowledged only by being read", "--confirm"] {
            assert!(put.contains(needle), "put help lacks {needle}:\n{put}");
        }
    }
}
