//! The latency phases of a run: PUTs through the embedded node (until `r` replicas
//! acknowledged), GETs through the embedded node and through a worker node's API from
//! nodes that hold no replica, and PUTs through one node's API until a GET through
//! another node's API finds the value.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use dht_core::{Key, PutOptions};
use rand::RngCore;

use crate::client::ApiClient;
use crate::driver::Run;
use crate::stats::{Summary, lookup_counters};

/// How long a PUT through the API may take to be found by a GET elsewhere.
const FOUND_DEADLINE: Duration = Duration::from_secs(10);

/// A fresh 100-byte value.
pub fn value() -> Bytes {
    let mut v = vec![0u8; 100];
    rand::thread_rng().fill_bytes(&mut v);
    Bytes::from(v)
}

/// PUTs of every chosen key through the embedded writer, with replication `r`; the
/// latency is until `r` replicas acknowledged (or the PUT gave up).
pub async fn puts(run: &mut Run, r: u8, keys: &[Key]) -> anyhow::Result<()> {
    let before = lookup_counters(&run.writer.node);
    let mut latencies = Vec::with_capacity(keys.len());
    let mut replicated = 0;
    for key in keys {
        let value = value();
        let options = PutOptions {
            ttl: Duration::from_secs(3600),
            replication: r,
        };
        let started = Instant::now();
        let report = run.writer.node.put(*key, value.clone(), options).await?;
        latencies.push(started.elapsed());
        replicated += usize::from(report.replicas >= usize::from(r));
        run.values.insert(*key, value);
    }
    let after = lookup_counters(&run.writer.node);
    let key = format!("put.core.r{r}");
    let label = format!("PUT until {r} replicas acked (dht-core)");
    run.result.latency(&key, &label, Summary::of(&latencies));
    run.result.figure(
        &format!("{key}.replicated"),
        &format!("{label}: PUTs that reached {r} replicas"),
        Some(replicated as f64),
        "count",
    );
    let (_, rounds, contacted) = after.find_node.since(&before.find_node);
    run.result.figure(
        &format!("lookup.put.r{r}.rounds"),
        &format!("PUT r={r}: rounds per FIND_NODE lookup (writer, mean)"),
        rounds,
        "count",
    );
    run.result.figure(
        &format!("lookup.put.r{r}.contacted"),
        &format!("PUT r={r}: peers contacted per FIND_NODE lookup (writer, mean)"),
        contacted,
        "count",
    );
    Ok(())
}

/// GETs through the embedded reader of keys stored with replication `r` on other
/// nodes; keys the reader turns out to hold are skipped and counted.
pub async fn core_gets(run: &mut Run, r: u8, keys: &[Key]) -> anyhow::Result<()> {
    let before = lookup_counters(&run.reader.node);
    let (mut latencies, mut found, mut held) = (Vec::new(), 0, 0);
    for key in keys {
        if run.reader.node.holds(key) {
            held += 1;
            continue;
        }
        let started = Instant::now();
        let answer = run.reader.node.get(*key).await;
        latencies.push(started.elapsed());
        found += usize::from(matches!(&answer, Ok(Some(v)) if run.values.get(key) == Some(v)));
    }
    let after = lookup_counters(&run.reader.node);
    let (_, rounds, contacted) = after.find_value.since(&before.find_value);
    let series = format!("get.core.r{r}");
    let label = format!("GET r={r} (dht-core, reader holds no replica)");
    record_gets(
        run, &series, &label, &latencies, found, held, rounds, contacted,
    );
    Ok(())
}

/// GETs through the API of worker node `run.api_index` (a separate process; it holds
/// no replica) of keys stored with replication `r`, on one connection.
pub async fn api_gets(run: &mut Run, r: u8, keys: &[Key]) -> anyhow::Result<()> {
    let index = run.api_index;
    let held_flags = run.net.holds(index, keys).await?;
    let before = run.net.lookups(index).await?;
    let mut client = ApiClient::connect(run.net.nodes[index].api).await?;
    let (mut latencies, mut found, mut held) = (Vec::new(), 0, 0);
    for (key, is_held) in keys.iter().zip(held_flags) {
        if is_held {
            held += 1;
            continue;
        }
        let started = Instant::now();
        let answer = client.get(*key).await?;
        latencies.push(started.elapsed());
        found += usize::from(answer.is_some() && answer.as_ref() == run.values.get(key));
    }
    let after = run.net.lookups(index).await?;
    let (_, rounds, contacted) = after.find_value.since(&before.find_value);
    let series = format!("get.api.r{r}");
    let label = format!("GET r={r} (VoidPhone API of a worker node holding no replica)");
    record_gets(
        run, &series, &label, &latencies, found, held, rounds, contacted,
    );
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn record_gets(
    run: &mut Run,
    series: &str,
    label: &str,
    latencies: &[Duration],
    found: usize,
    held: usize,
    rounds: Option<f64>,
    contacted: Option<f64>,
) {
    run.result.latency(series, label, Summary::of(latencies));
    run.result.figure(
        &format!("{series}.found"),
        &format!("{label}: found with the right value"),
        Some(found as f64),
        "count",
    );
    run.result.figure(
        &format!("{series}.held"),
        &format!("{label}: keys skipped because the node held them"),
        Some(held as f64),
        "count",
    );
    let lookup = series.replacen("get.", "lookup.get.", 1);
    run.result.figure(
        &format!("{lookup}.rounds"),
        &format!("{label}: rounds per FIND_VALUE lookup (mean)"),
        rounds,
        "count",
    );
    run.result.figure(
        &format!("{lookup}.contacted"),
        &format!("{label}: peers contacted per FIND_VALUE lookup (mean)"),
        contacted,
        "count",
    );
    run.result.samples.push(crate::results::Samples {
        key: series.into(),
        label: label.into(),
        ms: latencies.iter().map(|d| d.as_secs_f64() * 1e3).collect(),
    });
}

/// PUTs through the API of worker node `run.api_index`, each timed until a GET
/// through the API of worker node `run.other_index` (which is not among the key's `r`
/// closest) returns the value; GETs are repeated back to back until then.
pub async fn api_put_until_found(run: &mut Run, r: u8, keys: &[Key]) -> anyhow::Result<()> {
    let mut put_client = ApiClient::connect(run.net.nodes[run.api_index].api).await?;
    let mut get_client = ApiClient::connect(run.net.nodes[run.other_index].api).await?;
    let (mut latencies, mut missed, mut gets) = (Vec::new(), 0, 0usize);
    let mut values = HashMap::new();
    for key in keys {
        let value = value();
        let started = Instant::now();
        put_client.put(*key, value.clone(), r).await?;
        loop {
            gets += 1;
            if get_client.get(*key).await?.as_ref() == Some(&value) {
                latencies.push(started.elapsed());
                break;
            }
            if started.elapsed() > FOUND_DEADLINE {
                missed += 1;
                break;
            }
        }
        values.insert(*key, value);
    }
    run.values.extend(values);
    let key = format!("put.api.r{r}");
    let label = format!("PUT r={r} via API until a GET via another node's API finds it");
    run.result.latency(&key, &label, Summary::of(&latencies));
    run.result.figure(
        &format!("{key}.missed"),
        &format!("{label}: not found within {FOUND_DEADLINE:?}"),
        Some(missed as f64),
        "count",
    );
    run.result.figure(
        &format!("{key}.gets"),
        &format!("{label}: GETs sent per PUT (mean)"),
        (!keys.is_empty()).then(|| gets as f64 / keys.len() as f64),
        "count",
    );
    Ok(())
}
