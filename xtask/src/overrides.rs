//! `--set section.key=value`: configuration overrides applied to every configuration
//! file `deploy` writes, so that any key can be tuned for a whole local network (short
//! upkeep intervals for a demo, a lower proof-of-work difficulty, ...).

use anyhow::{Context, bail};

/// One `--set section.key=value` (a key without a section is a top-level key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Override {
    section: String,
    key: String,
    /// A TOML value, ready to write.
    value: String,
}

impl Override {
    /// Parses `section.key=value`. A value that is not a TOML value (a number, a
    /// boolean, a quoted string, an array) is written as a string.
    pub(crate) fn parse(text: &str) -> anyhow::Result<Override> {
        let (path, value) = text
            .split_once('=')
            .with_context(|| format!("--set {text:?}: expected section.key=value"))?;
        let (section, key) = match path.trim().rsplit_once('.') {
            Some((section, key)) => (section.trim(), key.trim()),
            None => ("", path.trim()),
        };
        let bare = |s: &str| {
            !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        };
        if !bare(key) || !(section.is_empty() || bare(section)) {
            bail!("--set {text:?}: section and key must be plain names");
        }
        let value = value.trim();
        let value = if toml::from_str::<toml::Table>(&format!("v = {value}")).is_ok() {
            value.to_string()
        } else {
            toml::Value::String(value.to_string()).to_string()
        };
        Ok(Override {
            section: section.to_string(),
            key: key.to_string(),
            value,
        })
    }
}

/// Applies `overrides` to a configuration text made of `key = value` lines under
/// `[section]` headers: an existing key is replaced, a new one is added to its section
/// (created at the end when missing; top-level keys go before the first section).
pub(crate) fn apply(text: &str, overrides: &[Override]) -> String {
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    for o in overrides {
        let line = format!("{} = {}", o.key, o.value);
        let (start, end) = section_span(&lines, &o.section).unwrap_or_else(|| {
            lines.push(String::new());
            lines.push(format!("[{}]", o.section));
            (lines.len(), lines.len())
        });
        let existing = (start..end).find(|&i| {
            lines[i]
                .split_once('=')
                .is_some_and(|(k, _)| k.trim() == o.key)
        });
        match existing {
            Some(i) => lines[i] = line,
            None => lines.insert(end, line),
        }
    }
    let mut out = lines.join("\n");
    out.push('\n');
    out
}

/// The lines of `section` (after its header, up to the next header or the end, not
/// counting trailing blank lines); the top-level section "" runs up to the first header.
fn section_span(lines: &[String], section: &str) -> Option<(usize, usize)> {
    let is_header = |l: &String| l.trim_start().starts_with('[');
    let start = if section.is_empty() {
        0
    } else {
        lines
            .iter()
            .position(|l| l.trim() == format!("[{section}]"))?
            + 1
    };
    let mut end = lines[start..]
        .iter()
        .position(is_header)
        .map_or(lines.len(), |i| start + i);
    while end > start && lines[end - 1].trim().is_empty() {
        end -= 1;
    }
    Some((start, end))
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "# generated\n\n[dht]\np2p_address = \"127.0.0.1:1\"\nk = 20\n";

    #[test]
    fn parses_and_quotes() {
        let o = Override::parse("dht.replicate_interval_secs=5").unwrap();
        assert_eq!(o.value, "5");
        let o = Override::parse("dht.limit_local_addresses = true").unwrap();
        assert_eq!((o.section.as_str(), o.value.as_str()), ("dht", "true"));
        let o = Override::parse("hostkey=keys/a.pem").unwrap();
        assert_eq!(
            (o.section.as_str(), o.value.as_str()),
            ("", "\"keys/a.pem\"")
        );
        let o = Override::parse("dht.bootstrap_peers=[\"a:1\"]").unwrap();
        assert_eq!(o.value, "[\"a:1\"]");
        assert!(Override::parse("dht.k").is_err());
        assert!(Override::parse("dht.=1").is_err());
        assert!(Override::parse("d ht.k=1").is_err());
    }

    #[test]
    fn replaces_adds_and_creates() {
        let set = |list: &[&str]| -> Vec<Override> {
            list.iter().map(|s| Override::parse(s).unwrap()).collect()
        };
        let out = apply(
            TEXT,
            &set(&[
                "dht.k=8",
                "dht.alpha=2",
                "storage.data_dir=d",
                "hostkey=h.pem",
            ]),
        );
        let parsed: toml::Table = toml::from_str(&out).expect("valid TOML");
        assert_eq!(parsed["dht"]["k"].as_integer(), Some(8));
        assert_eq!(parsed["dht"]["alpha"].as_integer(), Some(2));
        assert_eq!(parsed["dht"]["p2p_address"].as_str(), Some("127.0.0.1:1"));
        assert_eq!(parsed["storage"]["data_dir"].as_str(), Some("d"));
        assert_eq!(parsed["hostkey"].as_str(), Some("h.pem"));
        assert!(out.starts_with("# generated"));
    }
}
