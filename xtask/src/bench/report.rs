//! The benchmark's table (each figure for us, mainline, libp2p and the ratios), the
//! targets of issue 7 checked against it, and `report.md` / `docs/BENCHMARKS.md`.

use std::collections::BTreeMap;
use std::fmt::Write;

use serde::Deserialize;

use super::anchors::Figures;
use super::rows::ROWS;

/// One network size's result as `dht-bench run` writes it (the fields used here).
#[derive(Debug, Clone, Default, Deserialize)]
pub(crate) struct Ours {
    /// Nodes.
    pub(crate) n: usize,
    /// Operations per series.
    pub(crate) ops: usize,
    /// Every figure.
    pub(crate) figures: Vec<OurFigure>,
    /// GET latency samples.
    #[serde(default)]
    pub(crate) samples: Vec<OurSamples>,
    /// What ran where.
    #[serde(default)]
    pub(crate) notes: Vec<String>,
}

/// One of our figures.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct OurFigure {
    /// Dotted name.
    pub(crate) key: String,
    /// Its value, when measured.
    pub(crate) value: Option<f64>,
}

/// One of our latency series.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct OurSamples {
    /// The series (`get.core.r3`).
    pub(crate) key: String,
    /// Latencies, ms.
    pub(crate) ms: Vec<f64>,
}

impl Ours {
    /// Figure `key`, if measured.
    pub(crate) fn value(&self, key: &str) -> Option<f64> {
        self.figures
            .iter()
            .find(|f| f.key == key)
            .and_then(|f| f.value)
    }
}

/// Everything measured at one network size.
#[derive(Debug, Clone)]
pub(crate) struct Network {
    /// Nodes.
    pub(crate) n: usize,
    /// Our figures, or why there are none.
    pub(crate) ours: Result<Ours, String>,
    /// mainline's, when run.
    pub(crate) mainline: Option<Figures>,
    /// libp2p's, when run.
    pub(crate) libp2p: Option<Figures>,
}

/// A number with about three significant digits.
pub(crate) fn number(value: f64) -> String {
    let a = value.abs();
    if a >= 1000.0 || a == 0.0 {
        format!("{value:.0}")
    } else if a >= 100.0 {
        format!("{value:.1}")
    } else if a >= 1.0 {
        format!("{value:.2}")
    } else {
        format!("{value:.3}")
    }
}

fn anchor_cell(figures: Option<&Figures>, key: Option<&str>) -> (String, Option<f64>) {
    match (figures, key) {
        (None, _) => ("not run".into(), None),
        (Some(Err(reason)), _) => (format!("n/a ({reason})"), None),
        (Some(Ok(_)), None) => ("—".into(), None),
        (Some(Ok(f)), Some(key)) => match f.get(key) {
            Some(&v) => (number(v), Some(v)),
            None => ("—".into(), None),
        },
    }
}

fn ratio(ours: Option<f64>, anchor: Option<f64>) -> String {
    match (ours, anchor) {
        (Some(o), Some(a)) if a > 0.0 => format!("{}×", number(o / a)),
        _ => String::new(),
    }
}

/// The Markdown table of one network size.
pub(crate) fn table(net: &Network, libp2p_seed: &str) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "| figure (N={}) | unit | us | mainline | libp2p ({libp2p_seed}) | us/mainline | us/libp2p |",
        net.n
    );
    out.push_str("|---|---|---:|---:|---:|---:|---:|\n");
    if let Err(reason) = &net.ours {
        let _ = writeln!(out, "| (all) | | n/a ({reason}) | | | | |");
        return out;
    }
    for r in ROWS {
        let ours = net.ours.as_ref().ok().and_then(|o| o.value(r.ours));
        let ours_cell = ours.map_or_else(|| "n/a".to_string(), number);
        // An anchor's "n/a (reason)" is said once, on the first row.
        let first = std::ptr::eq(r, &ROWS[0]);
        let cell = |figures: Option<&Figures>| {
            let (text, value) = anchor_cell(figures, r.anchor);
            if text.starts_with("n/a") && !first {
                ("n/a".to_string(), value)
            } else {
                (text, value)
            }
        };
        let (m, mv) = cell(net.mainline.as_ref());
        let (l, lv) = cell(net.libp2p.as_ref());
        let _ = writeln!(
            out,
            "| {} | {} | {ours_cell} | {m} | {l} | {} | {} |",
            r.label,
            r.unit,
            ratio(ours, mv),
            ratio(ours, lv)
        );
    }
    out
}

/// The floor: loopback round trips measured by `tcp-pingpong` and `tls-pingpong`.
pub(crate) fn floor_table(tcp: Option<&Figures>, tls: Option<&Figures>) -> String {
    let mut out = String::from("| floor (one network hop) | µs |\n|---|---:|\n");
    let rows = [
        (tcp, "tcp.p50_us", "TCP round trip p50 (tokio, 2 threads)"),
        (tcp, "tcp.p99_us", "TCP round trip p99"),
        (tcp, "udp.p50_us", "UDP round trip p50"),
        (
            tls,
            "tls.p50_us",
            "mutual TLS 1.3 round trip p50, established session",
        ),
        (tls, "tls.p99_us", "mutual TLS 1.3 round trip p99"),
        (
            tls,
            "tls.handshake_p50_us",
            "new TLS connection + handshake + round trip p50",
        ),
    ];
    for (figures, key, label) in rows {
        let (cell, _) = anchor_cell(figures, Some(key));
        let _ = writeln!(out, "| {label} | {cell} |");
    }
    out
}

fn mainline_of(net: &Network) -> Option<&Figures> {
    net.mainline.as_ref()
}

fn libp2p_of(net: &Network) -> Option<&Figures> {
    net.libp2p.as_ref()
}

/// Issue 7's targets, each with the figures it compares and whether it is met.
pub(crate) fn targets(nets: &[Network]) -> String {
    let at = |n: usize| nets.iter().find(|x| x.n == n);
    let ours = |n: usize, key: &str| {
        at(n)
            .and_then(|x| x.ours.as_ref().ok())
            .and_then(|o| o.value(key))
    };
    let anchor = |n: usize, which: fn(&Network) -> Option<&Figures>, key: &str| {
        at(n)
            .and_then(which)
            .and_then(|f| f.as_ref().ok())
            .and_then(|f| f.get(key).copied())
    };
    let mut out = String::from("| target | measured | met |\n|---|---|---|\n");
    let mut check = |target: &str, measured: String, met: Option<bool>| {
        let met = match met {
            Some(true) => "yes",
            Some(false) => "no",
            None => "n/a",
        };
        let _ = writeln!(out, "| {target} | {measured} | {met} |");
    };
    let show = |v: Option<f64>| v.map_or_else(|| "n/a".into(), number);
    let p50 = ours(100, "get.core.r3.p50");
    let m = anchor(100, mainline_of, "get.p50");
    let l = anchor(100, libp2p_of, "get.p50");
    check(
        "GET p50 at 100 nodes (r=3) ≤ 1/3 of mainline's",
        format!("{} ms vs {} ms", show(p50), show(m)),
        p50.zip(m).map(|(o, a)| o <= a / 3.0),
    );
    check(
        "GET p50 at 100 nodes (r=3) ≤ 1/9 of libp2p's",
        format!("{} ms vs {} ms", show(p50), show(l)),
        p50.zip(l).map(|(o, a)| o <= a / 9.0),
    );
    let p99 = ours(100, "get.core.r3.p99");
    check(
        "GET p99 at 100 nodes (r=3) < 3 ms",
        format!("{} ms", show(p99)),
        p99.map(|v| v < 3.0),
    );
    let p50_500 = ours(500, "get.core.r3.p50");
    check(
        "GET p50 at 500 nodes (r=3) < 1 ms",
        format!("{} ms", show(p50_500)),
        p50_500.map(|v| v < 1.0),
    );
    let put = ours(100, "put.core.r3.p50");
    check(
        "PUT p50 at 100 nodes (r=3, durable) < 2 ms",
        format!("{} ms", show(put)),
        put.map(|v| v < 2.0),
    );
    let tput = nets
        .iter()
        .filter_map(|x| x.ours.as_ref().ok()?.value("tput.get_local.c64"))
        .reduce(f64::max);
    // What a server that only answers reaches with the same client, in the same run.
    let ceiling = nets
        .iter()
        .filter_map(|x| x.ours.as_ref().ok()?.value("tput.echo.c64"))
        .reduce(f64::max);
    check(
        "≥ 100,000 GET/s, local keys, 64 connections",
        format!(
            "{}/s (best N); a server that only answers: {}/s",
            show(tput),
            show(ceiling)
        ),
        tput.map(|v| v >= 100_000.0),
    );
    let mem = ours(100, "mem.after_latency_kb");
    let lmem = anchor(100, libp2p_of, "mem.kb");
    check(
        "memory per node at 100 nodes ≤ 1/3 of libp2p's",
        format!("{} kB vs {} kB", show(mem), show(lmem)),
        mem.zip(lmem).map(|(o, a)| o <= a / 3.0),
    );
    let contacted: Vec<String> = [20, 100, 500]
        .iter()
        .map(|&n| format!("N={n}: {}", show(ours(n, "lookup.get.core.r3.contacted"))))
        .collect();
    check(
        "peers contacted per GET lookup grow with log N",
        contacted.join(", "),
        None,
    );
    out
}

/// Facts about the machine and the code the figures came from.
#[derive(Debug, Clone, Default)]
pub(crate) struct Machine {
    /// `nproc`.
    pub(crate) cpus: usize,
    /// From /proc/cpuinfo.
    pub(crate) cpu_model: String,
    /// The kernel release.
    pub(crate) kernel: String,
    /// When (UTC).
    pub(crate) date: String,
    /// The commit, and whether the tree had changes.
    pub(crate) commit: String,
}

impl Machine {
    /// One line.
    pub(crate) fn line(&self) -> String {
        format!(
            "{} CPUs ({}), Linux {}, {} UTC, commit {}",
            self.cpus, self.cpu_model, self.kernel, self.date, self.commit
        )
    }
}

/// The whole report: machine, tables per network size, floor, targets, notes.
pub(crate) fn markdown(
    nets: &[Network],
    libp2p_seed: &str,
    floor: Option<(Option<&Figures>, Option<&Figures>)>,
    machine: &Machine,
    extra: &BTreeMap<String, String>,
) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "Machine: {}\n", machine.line());
    for net in nets {
        out.push_str(&table(net, libp2p_seed));
        out.push('\n');
    }
    if let Some((tcp, tls)) = floor {
        out.push_str(&floor_table(tcp, tls));
        out.push('\n');
    }
    out.push_str("Targets of issue 7 (for the tuning to come):\n\n");
    out.push_str(&targets(nets));
    for (title, text) in extra {
        let _ = write!(out, "\n{title}\n\n{text}\n");
    }
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A network of `n` nodes where we measured `get_p50` and the anchors what is
    /// given.
    pub(crate) fn network(n: usize, get_p50: f64, mainline: Option<Figures>) -> Network {
        let figures = [
            ("get.core.r20.p50", get_p50),
            ("get.core.r3.p50", get_p50),
            ("get.core.r3.p99", 2.0),
            ("mem.after_latency_kb", 1000.0),
            ("lookup.get.core.r3.contacted", 3.0),
        ]
        .iter()
        .map(|&(key, value)| OurFigure {
            key: key.into(),
            value: Some(value),
        })
        .collect();
        Network {
            n,
            ours: Ok(Ours {
                n,
                ops: 10,
                figures,
                samples: vec![OurSamples {
                    key: "get.core.r3".into(),
                    ms: vec![0.4, 0.5, 0.9],
                }],
                notes: vec!["ran here".into()],
            }),
            mainline,
            libp2p: Some(Err("hit its 280 s watchdog".into())),
        }
    }

    #[test]
    fn table_rows_ratios_and_reasons() {
        let mainline =
            BTreeMap::from([("get.p50".to_string(), 2.0), ("mem.kb".to_string(), 174.4)]);
        let text = table(&network(100, 0.5, Some(Ok(mainline))), "full");
        assert!(text.starts_with("| figure (N=100) | unit | us | mainline | libp2p (full) |"));
        let row = text
            .lines()
            .find(|l| l.starts_with("| GET p50, dht-core, r=20 |"))
            .unwrap();
        assert_eq!(
            row,
            "| GET p50, dht-core, r=20 | ms | 0.500 | 2.00 | n/a | 0.250× |  |"
        );
        let memory = text
            .lines()
            .find(|l| l.contains("after the PUT/GET series"))
            .unwrap();
        assert!(memory.contains("| 1000 | 174.4 |"), "{memory}");
        // The anchor's reason is given once, on the first row.
        assert_eq!(text.matches("n/a (hit its 280 s watchdog)").count(), 1);
        assert!(
            text.lines()
                .any(|l| l.starts_with("| API GET/s local keys, 64 conns | /s | n/a | — |"))
        );
        let failed = Network {
            ours: Err("dht-bench failed".into()),
            ..network(20, 1.0, None)
        };
        assert!(table(&failed, "full").contains("n/a (dht-bench failed)"));
    }

    #[test]
    fn targets_and_report() {
        let mainline = BTreeMap::from([("get.p50".to_string(), 1.56)]);
        let nets = [
            network(20, 0.4, None),
            network(100, 0.5, Some(Ok(mainline))),
        ];
        let t = targets(&nets);
        assert!(
            t.contains(
                "| GET p50 at 100 nodes (r=3) ≤ 1/3 of mainline's | 0.500 ms vs 1.56 ms | yes |"
            ),
            "{t}"
        );
        assert!(t.contains("| GET p99 at 100 nodes (r=3) < 3 ms | 2.00 ms | yes |"));
        assert!(t.contains("| GET p50 at 500 nodes (r=3) < 1 ms | n/a ms | n/a |"));
        assert!(t.contains("N=20: 3.00, N=100: 3.00, N=500: n/a"));
        let machine = Machine {
            cpus: 2,
            cpu_model: "AMD EPYC".into(),
            kernel: "6.1".into(),
            date: "2026-11-25 16:00".into(),
            commit: "abc1234".into(),
        };
        let extra = BTreeMap::from([("Notes".to_string(), "- ran here".to_string())]);
        let md = markdown(&nets, "full", None, &machine, &extra);
        assert!(md.starts_with(
            "Machine: 2 CPUs (AMD EPYC), Linux 6.1, 2026-11-25 16:00 UTC, commit abc1234"
        ));
        assert_eq!(md.matches("| figure (N=").count(), 2);
        assert!(md.contains("Targets of issue 7"));
        assert!(md.ends_with("Notes\n\n- ran here\n"));
        assert_eq!(number(123_456.7), "123457");
        assert_eq!(number(0.01234), "0.012");
    }
}
