//! A plain HTTP/1.1 GET for what xtask reads from the members of a deployment (their
//! `/metrics`, `/readyz`), and the samples of an OpenMetrics text.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use anyhow::{Context, bail};

/// What a server answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Answer {
    /// The status code.
    pub(crate) status: u16,
    /// The body.
    pub(crate) body: String,
}

/// `GET path` from `address`, the whole exchange within about `timeout` per step.
pub(crate) fn get(address: SocketAddr, path: &str, timeout: Duration) -> anyhow::Result<Answer> {
    let mut stream = TcpStream::connect_timeout(&address, timeout)
        .with_context(|| format!("connecting to {address}"))?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    // One write: a request in pieces could be answered, and the connection closed,
    // before its last piece arrives.
    let request = format!("GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes())?;
    let mut response = Vec::new();
    stream
        .read_to_end(&mut response)
        .with_context(|| format!("reading the answer of {address}"))?;
    let response = String::from_utf8_lossy(&response);
    let status_line = response.lines().next().unwrap_or_default();
    let Some(status) = status_line
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
    else {
        bail!("GET {path} at {address} answered {status_line:?}, not HTTP/1.1");
    };
    let body = response
        .split_once("\r\n\r\n")
        .map_or("", |(_, body)| body)
        .to_string();
    Ok(Answer { status, body })
}

/// The samples of an OpenMetrics (or Prometheus) text: `name{labels}` → value.
pub(crate) fn samples(text: &str) -> HashMap<String, f64> {
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            Some((series.to_string(), value.parse().ok()?))
        })
        .collect()
}

/// The sum of the samples of metric `name` whose labels contain none of `except`.
pub(crate) fn sum(samples: &HashMap<String, f64>, name: &str, except: &[&str]) -> Option<f64> {
    let mut found = None;
    for (series, value) in samples {
        let metric = series.split_once('{').map_or(series.as_str(), |(m, _)| m);
        if metric == name && !except.iter().any(|e| series.contains(e)) {
            *found.get_or_insert(0.0) += value;
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_and_sums() {
        let text = "# TYPE a counter\na_total{t=\"get\"} 2\na_total{t=\"put\"} 3\n\
                    a_total{t=\"invalid\"} 7\nb 1.5\nbroken\n# EOF\n";
        let s = samples(text);
        assert_eq!(s.len(), 4);
        assert_eq!(s["b"], 1.5);
        assert_eq!(sum(&s, "a_total", &[]), Some(12.0));
        assert_eq!(sum(&s, "a_total", &["t=\"invalid\""]), Some(5.0));
        assert_eq!(sum(&s, "a", &[]), None, "a prefix is not the metric");
        assert_eq!(sum(&s, "missing", &[]), None);
    }
}
