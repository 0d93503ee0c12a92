//! The status page a node serves at `/` of its `metrics_address`: one HTML document,
//! rendered on the server from [`NodeStatus`], with its style and drawings (inline SVG)
//! inside it: no script, no external asset. It shows the node's id, uptime and
//! readiness, its routing table as buckets with their fill and replacement caches, its
//! store against its limits, the latency of its recent lookups as a histogram, and its
//! recent upkeep rounds. It never shows a stored value.

use std::fmt::Write;
use std::time::Duration;

use dht_core::{NodeStatus, RecentLookup};

/// The page reloads itself this often (seconds).
const REFRESH_SECS: u32 = 5;
/// The upper edges of the latency histogram's bins, in milliseconds (doubling); one
/// more bin holds everything slower.
const LATENCY_EDGES_MS: [f64; 16] = [
    0.125, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 2048.0,
    4096.0,
];

const STYLE: &str = "
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:0;background:#f5f6f8;color:#1d2330}
header{background:#1d2330;color:#fff;padding:14px 24px;display:flex;align-items:center;gap:16px;flex-wrap:wrap}
header h1{font-size:20px;margin:0;font-weight:600}
main{padding:16px 24px;display:grid;grid-template-columns:repeat(auto-fit,minmax(520px,1fr));gap:16px}
section{background:#fff;border-radius:8px;padding:14px 18px;box-shadow:0 1px 2px rgba(0,0,0,.08)}
h2{font-size:16px;margin:0 0 10px}
code{font-family:ui-monospace,'DejaVu Sans Mono',monospace;font-size:13px;word-break:break-all}
dl{display:grid;grid-template-columns:max-content 1fr;gap:4px 14px;margin:0}
dt{color:#5b6475}dd{margin:0}
.badge{border-radius:12px;padding:3px 12px;font-size:14px;font-weight:600}
.ready{background:#2e7d32;color:#fff}.not-ready{background:#c62828;color:#fff}
table{border-collapse:collapse;width:100%;font-size:14px}
th,td{text-align:left;padding:3px 8px;border-bottom:1px solid #e3e6eb}
th{color:#5b6475;font-weight:600}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
.muted{color:#5b6475;font-size:13px}
svg text{font-family:system-ui,sans-serif;font-size:11px;fill:#1d2330}
footer{padding:0 24px 16px;color:#5b6475;font-size:13px}
a{color:#1a5fb4}
";

/// Text for HTML: `&`, `<`, `>` and quotes escaped.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A latency: `0.42 ms`, `12.3 ms`, `1.25 s`.
fn latency(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1000.0;
    if ms < 10.0 {
        format!("{ms:.2} ms")
    } else if ms < 1000.0 {
        format!("{ms:.1} ms")
    } else {
        format!("{:.2} s", d.as_secs_f64())
    }
}

/// A span of time for people: `42 s`, `7 min 3 s`, `5 h 12 min`, `3 d 4 h`.
fn span(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..60 => format!("{s} s"),
        60..3600 => format!("{} min {} s", s / 60, s % 60),
        3600..86400 => format!("{} h {} min", s / 3600, s % 3600 / 60),
        _ => format!("{} d {} h", s / 86400, s % 86400 / 3600),
    }
}

/// A size: `512 B`, `1.5 KiB`, `256.0 MiB`.
fn bytes(n: usize) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut value = n as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

fn percent(part: usize, whole: usize) -> f64 {
    if whole == 0 {
        0.0
    } else {
        (part as f64 / whole as f64 * 100.0).min(100.0)
    }
}

/// The status page of a node run by `program` (`dht-node`, `dht-bootstrap`).
pub(crate) fn render(program: &str, status: &NodeStatus) -> String {
    let id = status.id.to_string();
    let short = id.get(..16).unwrap_or(&id);
    let program = escape(program);
    let mut page = String::with_capacity(16 * 1024);
    let _ = write!(
        page,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta http-equiv=\"refresh\" content=\"{REFRESH_SECS}\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <title>{program} {short} status</title><style>{STYLE}</style></head><body>\n"
    );
    let badge = match &status.not_ready {
        None => "<span class=\"badge ready\" id=\"readiness\">ready</span>".to_string(),
        Some(reason) => format!(
            "<span class=\"badge not-ready\" id=\"readiness\">not ready: {}</span>",
            escape(&reason.to_string())
        ),
    };
    let _ = write!(
        page,
        "<header><h1>{program} <code>{short}</code></h1>{badge}</header>\n<main>\n"
    );
    node_section(&mut page, status, &id);
    routing_section(&mut page, status);
    store_section(&mut page, status);
    lookup_section(&mut page, status);
    upkeep_section(&mut page, status);
    let _ = write!(
        page,
        "</main>\n<footer>Reloads every {REFRESH_SECS} s. Also served here: \
         <a href=\"/metrics\">/metrics</a> (Prometheus), <a href=\"/healthz\">/healthz</a>, \
         <a href=\"/readyz\">/readyz</a>. Stored values are never shown.</footer>\n</body></html>\n"
    );
    page
}

fn node_section(page: &mut String, status: &NodeStatus, id: &str) {
    let _ = write!(
        page,
        "<section id=\"node\"><h2>Node</h2><dl>\
         <dt>id</dt><dd><code>{id}</code></dd>\
         <dt>address</dt><dd><code>{}</code></dd>\
         <dt>uptime</dt><dd>{}</dd>\
         <dt>joined</dt><dd>{}</dd>\
         <dt>peer connections</dt><dd>{}</dd></dl></section>",
        escape(&status.advertised_addr.to_string()),
        span(status.uptime),
        if status.joined { "yes" } else { "not yet" },
        status.open_connections,
    );
    page.push('\n');
}

fn routing_section(page: &mut String, status: &NodeStatus) {
    let k = status.k;
    let replacements: usize = status.buckets.iter().map(|b| b.replacements).sum();
    let filled = status.buckets.iter().filter(|b| b.contacts > 0).count();
    let _ = write!(
        page,
        "<section id=\"routing\"><h2>Routing table</h2>\
         <p>{} contacts in {filled} buckets (k = {k}); {replacements} waiting in replacement caches.</p>",
        status.routing_table_len
    );
    page.push('\n');
    if status.buckets.is_empty() {
        page.push_str("<p class=\"muted\">No contact yet.</p></section>\n");
        return;
    }
    // One row per bucket: its label, its capacity in cells (a contact fills one; a wide
    // bucket's cells are narrower, so every row is as long), then the replacement cache
    // (k cells).
    let (cell, gap, label, between, row) = (10, 2, 44, 24, 14);
    let span = k * (cell + gap);
    let width = label + 2 * span + between;
    let height = 18 + status.buckets.len() * row;
    let cache_x = label + span + between;
    let _ = write!(
        page,
        "<svg class=\"buckets\" role=\"img\" aria-label=\"routing table buckets\" \
         viewBox=\"0 0 {width} {height}\" width=\"100%\" style=\"max-width:{width}px\">\
         <text x=\"{label}\" y=\"11\">contacts (of k = {k}; more in the far buckets)</text>\
         <text x=\"{cache_x}\" y=\"11\">replacement cache</text>"
    );
    for (i, bucket) in status.buckets.iter().enumerate() {
        let y = 18 + i * row;
        let _ = write!(
            page,
            "<g class=\"bucket\" data-index=\"{}\" data-contacts=\"{}\" data-capacity=\"{}\" data-replacements=\"{}\">\
             <text x=\"0\" y=\"{}\">{:>3}</text>",
            bucket.index,
            bucket.contacts,
            bucket.capacity,
            bucket.replacements,
            y + 9,
            bucket.index
        );
        let capacity = bucket.capacity.max(1);
        let pitch = span as f64 / capacity as f64;
        let width = (pitch * cell as f64 / (cell + gap) as f64).max(0.5);
        for slot in 0..capacity {
            let x = label as f64 + slot as f64 * pitch;
            let fill = if slot < bucket.contacts {
                "#2e7d32"
            } else {
                "#eef0f3"
            };
            let _ = write!(
                page,
                "<rect x=\"{x:.1}\" y=\"{y}\" width=\"{width:.1}\" height=\"{cell}\" rx=\"1\" fill=\"{fill}\"/>"
            );
        }
        for slot in 0..bucket.replacements.min(k) {
            let x = cache_x + slot * (cell + gap);
            let _ = write!(
                page,
                "<rect x=\"{x}\" y=\"{y}\" width=\"{cell}\" height=\"{cell}\" rx=\"2\" fill=\"#ef6c00\"/>"
            );
        }
        page.push_str("</g>");
    }
    page.push_str(
        "</svg><p class=\"muted\">Row n: contacts sharing n leading bits with this node's id. \
         Green: contacts; orange: candidates waiting for a place.</p></section>\n",
    );
}

/// A horizontal bar of `part` out of `whole`.
fn meter(page: &mut String, what: &str, part: usize, whole: usize, text: &str) {
    let share = percent(part, whole);
    let colour = if share >= 80.0 { "#c62828" } else { "#1a5fb4" };
    let _ = write!(
        page,
        "<div class=\"meter\" data-what=\"{what}\"><div>{what}: {text} ({share:.1} %)</div>\
         <svg viewBox=\"0 0 400 14\" width=\"100%\" style=\"max-width:400px\" role=\"img\" \
         aria-label=\"{what} {share:.1} percent\">\
         <rect width=\"400\" height=\"14\" rx=\"3\" fill=\"#eef0f3\"/>\
         <rect width=\"{:.1}\" height=\"14\" rx=\"3\" fill=\"{colour}\"/></svg></div>",
        share * 4.0
    );
}

fn store_section(page: &mut String, status: &NodeStatus) {
    page.push_str("<section id=\"store\"><h2>Store</h2>");
    meter(
        page,
        "records",
        status.stored_records,
        status.max_records,
        &format!("{} of {}", status.stored_records, status.max_records),
    );
    meter(
        page,
        "bytes",
        status.stored_bytes,
        status.max_bytes,
        &format!(
            "{} of {}",
            bytes(status.stored_bytes),
            bytes(status.max_bytes)
        ),
    );
    page.push_str(
        "<p class=\"muted\">Over 80 % full, one peer may hold at most 5 % of the store; \
         a full store refuses new records.</p></section>\n",
    );
}

/// The value at quantile `q` of sorted durations.
fn quantile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// Which histogram bin a latency falls in.
fn bin(elapsed: Duration) -> usize {
    let ms = elapsed.as_secs_f64() * 1000.0;
    LATENCY_EDGES_MS
        .iter()
        .position(|&edge| ms <= edge)
        .unwrap_or(LATENCY_EDGES_MS.len())
}

fn lookup_section(page: &mut String, status: &NodeStatus) {
    let minute = status.lookups_last_minute;
    let total = minute.succeeded + minute.failed;
    let rate = if total == 0 {
        "no lookup".to_string()
    } else {
        format!(
            "{:.1} % succeeded",
            minute.succeeded as f64 / total as f64 * 100.0
        )
    };
    let _ = write!(
        page,
        "<section id=\"lookups\"><h2>Lookups</h2>\
         <p>Last minute: {} succeeded, {} found no peer to answer ({rate}).</p>",
        minute.succeeded, minute.failed
    );
    let lookups = &status.lookups;
    if lookups.is_empty() {
        page.push_str("<p class=\"muted\">No lookup in the last ten minutes.</p></section>\n");
        return;
    }
    let mut sorted: Vec<Duration> = lookups.iter().map(|l| l.elapsed).collect();
    sorted.sort_unstable();
    let _ = write!(
        page,
        "<p>Latency of the last {} lookups: p50 {}, p90 {}, p99 {}, max {}.</p>",
        lookups.len(),
        latency(quantile(&sorted, 0.5)),
        latency(quantile(&sorted, 0.9)),
        latency(quantile(&sorted, 0.99)),
        latency(quantile(&sorted, 1.0)),
    );
    histogram(page, lookups);
    page.push_str("</section>\n");
}

/// The latency histogram: one bar per doubling of latency, failed lookups on top in red.
fn histogram(page: &mut String, lookups: &[RecentLookup]) {
    let bins = LATENCY_EDGES_MS.len() + 1;
    let mut ok = vec![0usize; bins];
    let mut failed = vec![0usize; bins];
    for lookup in lookups {
        let counts = if lookup.succeeded {
            &mut ok
        } else {
            &mut failed
        };
        counts[bin(lookup.elapsed)] += 1;
    }
    let tallest = (0..bins)
        .map(|i| ok[i] + failed[i])
        .max()
        .unwrap_or(1)
        .max(1);
    let (left, bar, gap, plot_h, top) = (34.0, 28.0, 4.0, 140.0, 14.0);
    let width = left + bins as f64 * (bar + gap) + 8.0;
    let height = top + plot_h + 40.0;
    let _ = write!(
        page,
        "<svg id=\"latency-histogram\" role=\"img\" aria-label=\"lookup latency histogram\" \
         viewBox=\"0 0 {width} {height}\" width=\"100%\" style=\"max-width:{width}px\">\
         <text x=\"0\" y=\"{}\">{tallest}</text><text x=\"0\" y=\"{}\">0</text>\
         <line x1=\"{left}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"#9aa3b2\"/>",
        top + 4.0,
        top + plot_h,
        top + plot_h,
        width - 4.0,
        top + plot_h,
    );
    for i in 0..bins {
        let x = left + i as f64 * (bar + gap) + gap;
        let scale = |n: usize| n as f64 / tallest as f64 * plot_h;
        let (h_ok, h_failed) = (scale(ok[i]), scale(failed[i]));
        let y_ok = top + plot_h - h_ok;
        let _ = write!(
            page,
            "<rect class=\"bin\" data-count=\"{}\" x=\"{x}\" y=\"{y_ok:.1}\" width=\"{bar}\" \
             height=\"{h_ok:.1}\" fill=\"#1a5fb4\"/>",
            ok[i] + failed[i]
        );
        if failed[i] > 0 {
            let _ = write!(
                page,
                "<rect x=\"{x}\" y=\"{:.1}\" width=\"{bar}\" height=\"{h_failed:.1}\" fill=\"#c62828\"/>",
                y_ok - h_failed
            );
        }
        // Every other edge is labelled, so that the labels never overlap.
        if i % 2 == 0 {
            let label = match LATENCY_EDGES_MS.get(i) {
                Some(&edge) if edge < 1.0 => format!("≤{edge}"),
                Some(&edge) if edge < 1000.0 => format!("≤{edge:.0}"),
                Some(&edge) => format!("≤{:.0}s", edge / 1000.0),
                None => format!(
                    ">{:.0}s",
                    LATENCY_EDGES_MS[LATENCY_EDGES_MS.len() - 1] / 1000.0
                ),
            };
            let _ = write!(
                page,
                "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{label}</text>",
                x + bar / 2.0,
                top + plot_h + 14.0
            );
        }
    }
    let _ = write!(
        page,
        "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">latency, ms (blue: answered, red: nobody answered)</text></svg>",
        width / 2.0,
        top + plot_h + 32.0
    );
}

fn upkeep_section(page: &mut String, status: &NodeStatus) {
    page.push_str("<section id=\"upkeep\"><h2>Upkeep rounds</h2>");
    if status.upkeep.is_empty() {
        page.push_str(
            "<p class=\"muted\">No upkeep round has had work yet (pings of quiet contacts, \
             bucket refreshes, replication).</p></section>\n",
        );
        return;
    }
    page.push_str(
        "<table><thead><tr><th>round</th><th class=\"num\">ended</th><th class=\"num\">took</th>\
         <th class=\"num\">items</th><th class=\"num\">failed</th><th>items are</th></tr></thead><tbody>",
    );
    for round in &status.upkeep {
        let what = match round.kind {
            dht_core::UpkeepKind::Join => "contacts known after joining",
            dht_core::UpkeepKind::Liveness => "quiet contacts pinged",
            dht_core::UpkeepKind::Refresh => "idle buckets refreshed",
            dht_core::UpkeepKind::Replication => "records stored again",
        };
        let _ = write!(
            page,
            "<tr class=\"round\"><td>{}</td><td class=\"num\">{} ago</td><td class=\"num\">{}</td>\
             <td class=\"num\">{}</td><td class=\"num\">{}</td><td>{what}</td></tr>",
            round.kind.as_str(),
            span(round.age),
            latency(round.elapsed),
            round.items,
            round.failed,
        );
    }
    page.push_str("</tbody></table></section>\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped() {
        assert_eq!(
            escape("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }

    #[test]
    fn figures_read_as_people_write_them() {
        assert_eq!(latency(Duration::from_micros(420)), "0.42 ms");
        assert_eq!(latency(Duration::from_micros(12_340)), "12.3 ms");
        assert_eq!(latency(Duration::from_millis(1250)), "1.25 s");
        assert_eq!(span(Duration::from_secs(42)), "42 s");
        assert_eq!(span(Duration::from_secs(423)), "7 min 3 s");
        assert_eq!(span(Duration::from_secs(5 * 3600 + 720)), "5 h 12 min");
        assert_eq!(span(Duration::from_secs(3 * 86400 + 4 * 3600)), "3 d 4 h");
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(256 * 1024 * 1024), "256.0 MiB");
        assert_eq!(percent(5, 0), 0.0);
        assert_eq!(percent(1, 4), 25.0);
    }

    #[test]
    fn latencies_fall_in_doubling_bins() {
        assert_eq!(bin(Duration::from_micros(100)), 0);
        assert_eq!(bin(Duration::from_micros(125)), 0);
        assert_eq!(bin(Duration::from_micros(126)), 1);
        assert_eq!(bin(Duration::from_millis(3)), 5);
        assert_eq!(bin(Duration::from_secs(60)), LATENCY_EDGES_MS.len());
        let sorted: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(quantile(&sorted, 0.5), Duration::from_millis(50));
        assert_eq!(quantile(&sorted, 0.99), Duration::from_millis(99));
        assert_eq!(quantile(&sorted, 1.0), Duration::from_millis(100));
        assert_eq!(quantile(&[], 0.5), Duration::ZERO);
    }
}
