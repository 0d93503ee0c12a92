//! A small steady run: every PUT reaches its replicas, every GET finds its value, and
//! the figures are those of a WAN (round trips of tens to hundreds of ms), not of
//! loopback.

use dht_sim::{Options, Scenario, run};

#[test]
fn a_steady_network_on_a_wan_serves_every_put_and_get() -> anyhow::Result<()> {
    let options = Options {
        nodes: 60,
        seed: 3,
        minutes: 1.0,
        rate: 4.0,
        pow: 4,
        ..Options::default()
    };
    let report = run(&options)?;
    assert_eq!(report.nodes, 60);
    assert_eq!(report.puts + report.gets, 240, "{report:?}");
    assert_eq!(report.put_success, 1.0, "{report:?}");
    assert!(report.get_success >= 0.99, "{report:?}");
    assert!(report.min_replicas_final >= 3, "{report:?}");
    let get = report.get_latency_ms.expect("GETs succeeded");
    // A GET that goes to the network costs at least a round trip within a region
    // (20 ms and more); on loopback it would cost a fraction of one.
    assert!(get.p90 >= 20.0, "{report:?}");
    assert!(report.simulated_secs >= 60.0, "{report:?}");
    Ok(())
}

/// One seed, one run: the same figures byte for byte (apart from wall time and memory,
/// and what is measured by them), in every scenario; another seed, other figures.
#[test]
fn a_seed_repeats_a_run_exactly() -> anyhow::Result<()> {
    for scenario in Scenario::ALL {
        repeats(Options {
            scenario,
            nodes: 40,
            seed: 11,
            minutes: 0.5,
            rate: 4.0,
            pow: 4,
            attacker_budget_log2: 16,
            ..Options::default()
        })?;
    }
    Ok(())
}

fn repeats(options: Options) -> anyhow::Result<()> {
    let figures = |options: &Options| -> anyhow::Result<String> {
        let mut report = run(options)?;
        report.wall_secs = 0.0;
        report.sim_secs_per_wall_sec = 0.0;
        report.peak_rss_bytes = 0;
        report.bytes_per_node = 0;
        Ok(serde_json::to_string(&report)?)
    };
    let first = figures(&options)?;
    assert_eq!(first, figures(&options)?, "{:?}", options.scenario);
    let other = Options {
        seed: 12,
        ..options
    };
    assert_ne!(first, figures(&other)?);
    Ok(())
}
