//! The benchmark behind `cargo xtask bench`: networks of real nodes on 127.0.0.1 (TCP +
//! mutual TLS, proof of work at its default, the durable store as `dht-node` uses it),
//! measured from the outside.
//!
//! The binary has three modes. `dht-bench run` is the driver: it starts worker processes
//! ([`network`]), joins a writer and a reader node of its own (embedded `dht-core`), and
//! measures ([`driver`], [`measure`], [`throughput`]): GET and PUT latency through
//! `dht-core` and through the VoidPhone API, lookup rounds and peers contacted, one
//! node's API throughput, memory, connections and idle CPU per node, start-up times. It
//! prints a [`results::NetworkResult`] as JSON. `dht-bench worker` ([`worker`]) hosts a
//! share of the nodes and answers the driver's commands ([`protocol`]) on stdin/stdout.
//! `dht-bench echo` ([`echo`]) is the throughput measurement's ceiling: a server of the
//! same API that does nothing but answer.
//!
//! Several processes are needed because the file-descriptor limit (20,000 per process
//! here) cannot be raised: a worker hosts at most 50 nodes, each bounded to a share of
//! the descriptors by `max_connections`. Nothing here is a timed assertion: the tests
//! run the whole pipeline on a small network and check counts, not times.

pub mod client;
pub mod driver;
pub mod echo;
pub mod keys;
pub mod measure;
pub mod network;
pub mod nodes;
pub mod procfs;
pub mod protocol;
pub mod results;
pub mod stats;
pub mod throughput;
pub mod worker;
pub mod workers;
