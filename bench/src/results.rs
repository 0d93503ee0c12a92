//! What one benchmark run of one network size produces, as JSON for `cargo xtask
//! bench`: a flat list of named figures, the latency samples behind the GET figures
//! (for the plot), and notes saying what ran where.
//!
//! Figure keys are dotted names (`get.core.r3.p50`); `xtask/src/bench` reads them by
//! these names, so a renamed key must be renamed there too.

use serde::{Deserialize, Serialize};

use crate::stats::Summary;

/// The results of one network size.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct NetworkResult {
    /// Nodes in the worker processes.
    pub n: usize,
    /// Operations per measured series.
    pub ops: usize,
    /// Every figure measured.
    pub figures: Vec<Figure>,
    /// Latency samples of the GET series, ms.
    pub samples: Vec<Samples>,
    /// What ran where, settings, and anything that went wrong.
    pub notes: Vec<String>,
}

/// One measured figure.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Figure {
    /// Dotted name, e.g. `get.core.r3.p50`.
    pub key: String,
    /// What it is, for people.
    pub label: String,
    /// The value; `None` when it could not be measured (the notes say why).
    pub value: Option<f64>,
    /// `ms`, `kB`, `/s`, `count`, `ratio`, `ms/s`.
    pub unit: String,
}

/// The latencies of one series.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Samples {
    /// The series' key prefix, e.g. `get.core.r3`.
    pub key: String,
    /// What it is, for people.
    pub label: String,
    /// Latencies, ms, in the order measured.
    pub ms: Vec<f64>,
}

impl NetworkResult {
    /// Adds one figure.
    pub fn figure(&mut self, key: &str, label: &str, value: Option<f64>, unit: &str) {
        self.figures.push(Figure {
            key: key.into(),
            label: label.into(),
            value,
            unit: unit.into(),
        });
    }

    /// Adds `<key>.p50`, `.p90`, `.p99`, `.max`, `.mean` (ms) and `<key>.count`.
    pub fn latency(&mut self, key: &str, label: &str, summary: Option<Summary>) {
        let s = summary.as_ref();
        for (suffix, value) in [
            ("p50", s.map(|s| s.p50)),
            ("p90", s.map(|s| s.p90)),
            ("p99", s.map(|s| s.p99)),
            ("max", s.map(|s| s.max)),
            ("mean", s.map(|s| s.mean)),
        ] {
            self.figure(
                &format!("{key}.{suffix}"),
                &format!("{label}, {suffix}"),
                value,
                "ms",
            );
        }
        self.figure(
            &format!("{key}.count"),
            &format!("{label}, samples"),
            s.map(|s| s.count as f64),
            "count",
        );
    }

    /// Adds a note.
    pub fn note(&mut self, text: impl Into<String>) {
        self.notes.push(text.into());
    }

    /// The value of figure `key`, if measured.
    pub fn value(&self, key: &str) -> Option<f64> {
        self.figures
            .iter()
            .find(|f| f.key == key)
            .and_then(|f| f.value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_figures_and_json() {
        let mut r = NetworkResult {
            n: 20,
            ops: 3,
            ..NetworkResult::default()
        };
        r.latency("get.core.r3", "GET", Summary::of_ms(&[1.0, 2.0, 3.0]));
        r.latency("get.api.r3", "GET via API", None);
        assert_eq!(r.value("get.core.r3.p50"), Some(2.0));
        assert_eq!(r.value("get.core.r3.count"), Some(3.0));
        assert_eq!(r.value("get.api.r3.p50"), None);
        let json = serde_json::to_string(&r).unwrap();
        let back: NetworkResult = serde_json::from_str(&json).unwrap();
        assert_eq!(back.figures, r.figures);
    }
}
