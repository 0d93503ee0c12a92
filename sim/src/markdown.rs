//! `report.md`: a run's figures as text, tables and the plots beside it.

use std::fmt::Write as _;

use crate::report::{EclipseRun, Percentiles, Report};

/// A figure for a table: `-` when absent.
fn figure(value: Option<f64>, decimals: usize) -> String {
    value.map_or_else(|| "-".to_owned(), |v| format!("{v:.decimals$}"))
}

fn percentiles(p: Option<Percentiles>) -> String {
    p.map_or_else(
        || "-".to_owned(),
        |p| format!("{:.0} / {:.0} / {:.0}", p.p50, p.p90, p.p99),
    )
}

/// A row of the eclipse table: its name, and its figure of one run.
type EclipseRow = (&'static str, fn(&EclipseRun) -> String);

pub(crate) fn markdown(r: &Report) -> String {
    let mut md = String::new();
    let _ = writeln!(md, "# `cargo xtask sim --scenario {}`\n", r.scenario);
    let _ = writeln!(
        md,
        "{} nodes, seed {}, {} simulated minutes of workload at {} operations/s \
         (half PUTs, half GETs of keys written earlier), after {:.0} s of start-up; TLS \
         {}. \
         {:.0} simulated seconds took {:.0} s of wall time ({:.1} simulated s per wall \
         s); peak memory {:.0} MB, {:.0} kB per node.\n",
        r.nodes,
        r.seed,
        r.minutes,
        r.rate,
        r.startup_secs,
        if r.tls == "real" {
            "ran on every connection"
        } else {
            "simulated (the network proved the peers' keys, at TLS's cost in round trips)"
        },
        r.simulated_secs,
        r.wall_secs,
        r.sim_secs_per_wall_sec,
        r.peak_rss_bytes as f64 / 1e6,
        r.bytes_per_node as f64 / 1e3,
    );
    let _ = writeln!(md, "| figure | value |\n|---|---|");
    let rows = [
        ("GETs", r.gets.to_string()),
        ("GET success", format!("{:.4}", r.get_success)),
        (
            "GET latency p50 / p90 / p99, ms",
            percentiles(r.get_latency_ms),
        ),
        ("PUTs", r.puts.to_string()),
        (
            "PUT success (r replicas acknowledged)",
            format!("{:.4}", r.put_success),
        ),
        (
            "PUT latency p50 / p90 / p99, ms",
            percentiles(r.put_latency_ms),
        ),
        (
            "peers contacted per GET lookup",
            figure(r.peers_contacted_per_get, 1),
        ),
        (
            "messages per node per minute",
            format!("{:.1}", r.messages_per_node_per_min),
        ),
        (
            "connections per node at the end",
            format!("{:.1}", r.connections_per_node),
        ),
        (
            "fewest replicas of a tracked key at the end",
            r.min_replicas_final.to_string(),
        ),
    ];
    for (name, value) in rows {
        let _ = writeln!(md, "| {name} | {value} |");
    }
    if let Some(c) = &r.churn {
        let _ = writeln!(
            md,
            "\n## Churn\n\n{} nodes left (half shut down, half vanished) and as many \
             joined. At the end, {} tracked keys had no replica and {} fewer than r on \
             the live nodes nearest to them; {} times a key fell below r and came back, \
             the longest after {} s.",
            c.nodes_replaced,
            c.keys_lost_final,
            c.keys_below_r_final,
            c.replica_repairs,
            figure(c.replica_repair_secs_max, 0),
        );
    }
    if let Some(p) = &r.partition {
        let _ = writeln!(
            md,
            "\n## Partition\n\nThe halves were apart for {:.0} s. During the split, {} GETs \
             of keys written on the reader's side during it succeeded at {:.4}. After the \
             heal, {} GETs of keys written during the split (on either side) succeeded \
             at {:.4}, those written on the other side at {:.4}; {}.",
            p.split_secs,
            p.split_gets,
            p.split_get_success,
            p.after_heal_gets,
            p.after_heal_get_success,
            p.after_heal_across_get_success,
            match p.heal_secs {
                Some(s) =>
                    format!("every one that started more than {s:.0} s after the heal succeeded"),
                None =>
                    "the last of them failed: the run ended before the network healed".to_owned(),
            }
        );
    }
    if let Some(s) = &r.silent {
        let _ = writeln!(
            md,
            "\n## Silent nodes\n\n{} nodes hung (they answer nothing and close nothing). \
             Meanwhile {} GETs succeeded at {:.4}, latency p50 / p90 / p99 {} ms.",
            s.silent_nodes,
            s.gets,
            s.get_success,
            percentiles(s.get_latency_ms),
        );
    }
    if let Some(e) = &r.eclipse {
        let _ = writeln!(
            md,
            "\n## Eclipse\n\nOne key is written; from a fifth of the run on, an attacker \
             with a budget of 2^{} hashes mints ids as near to it as it can, runs a node for \
             each of the {} nearest, and those answer every lookup of the key with each \
             other and a forged value. Every GET reads that key.\n\n\
             | | with proof of work | without |\n|---|---|---|",
            e.attacker_budget_log2,
            crate::eclipse::SYBILS,
        );
        let rows: [EclipseRow; 9] = [
            ("difficulty, bits", |r| r.pow_difficulty.to_string()),
            ("ids the budget bought", |r| {
                r.attacker_valid_ids.to_string()
            }),
            ("bits the attacker's nearest id shares with the key", |r| {
                r.attacker_best_shared_bits.to_string()
            }),
            ("attacker's nodes among the 20 nearest at the end", |r| {
                r.attacker_near_key_final.to_string()
            }),
            ("GETs of the key under attack", |r| r.gets.to_string()),
            ("honest value returned", |r| {
                format!("{:.4}", r.honest_fraction)
            }),
            ("forged value returned", |r| {
                format!("{:.4}", r.forged_fraction)
            }),
            ("nothing found", |r| format!("{:.4}", r.failed_fraction)),
            ("attacker's nodes run", |r| r.attacker_nodes.to_string()),
        ];
        for (name, value) in rows {
            let _ = writeln!(
                md,
                "| {name} | {} | {} |",
                value(&e.pow_on),
                value(&e.pow_off)
            );
        }
    }
    if let Some(rows) = &r.transports {
        let _ = writeln!(
            md,
            "\n## Transports\n\nThe steady workload over each kind of connection. A dial \
             costs its round trips before TLS, then TLS's handshake its own (none for a \
             resumed session, whose first request rides in 0-RTT early data); the HELLO \
             exchange runs over the simulated bytes.\n\n\
             | transport | RTTs before the first request | GET success | GET p50 / p90 / p99, ms | \
             PUT p50 / p90 / p99, ms | peers per GET | connections per node | messages per node per min |\n\
             |---|---|---|---|---|---|---|---|"
        );
        for t in rows {
            let _ = writeln!(
                md,
                "| {} | {} | {:.4} | {} | {} | {} | {:.1} | {:.1} |",
                t.transport,
                if t.resume {
                    format!(
                        "{}, then {} within the hour",
                        t.connect_rtts + t.tls_rtts,
                        t.connect_rtts
                    )
                } else {
                    (t.connect_rtts + t.tls_rtts).to_string()
                },
                t.get_success,
                percentiles(t.get_latency_ms),
                percentiles(t.put_latency_ms),
                figure(t.peers_contacted_per_get, 1),
                t.connections_per_node,
                t.messages_per_node_per_min,
            );
        }
    }
    let _ = writeln!(
        md,
        "\n## Plots\n\n![GET latency](get_latency.svg)\n\n![The network over time](over_time.svg)\n\n\
         ## Over time\n\n\
         | t, s | live nodes | GETs | GET success | GET p50, ms | hops | peers per GET | \
         replicas min / mean | keys below r | connections per node | messages per node per min |\n\
         |---|---|---|---|---|---|---|---|---|---|---|"
    );
    for s in &r.series {
        let _ = writeln!(
            md,
            "| {:.0} | {} | {} | {} | {} | {} | {} | {} / {:.1} | {} | {:.1} | {:.1} |",
            s.t,
            s.live_nodes,
            s.gets,
            figure(s.get_success, 3),
            figure(s.get_p50_ms, 0),
            figure(s.hops_per_get, 1),
            figure(s.peers_per_get, 1),
            s.replicas_min,
            s.replicas_mean,
            s.keys_below_r,
            s.connections_per_node,
            s.messages_per_node_per_min,
        );
    }
    md
}
