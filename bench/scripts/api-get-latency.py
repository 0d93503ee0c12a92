#!/usr/bin/env python3
"""GET latency through the VoidPhone API of deployments side by side.

Usage: api-get-latency.py NAME CLUSTER_JSON [NAME CLUSTER_JSON ...]
  e.g. DHT_DEPLOY_DIR=target/lat-release cargo xtask deploy --nodes 50
       DHT_DEPLOY_DIR=target/lat-debug cargo xtask deploy --nodes 50 --debug
       bench/scripts/api-get-latency.py debug target/lat-debug/cluster.json \
           release target/lat-release/cluster.json

PUTs 100 values through each deployment's first node, then (ROUNDS, default 600)
GETs through its other nodes over open connections, alternating between the
deployments (the order flips every round), and prints p50/p90/p99 per deployment.
How docs/OPERATIONS.md#build-profile was measured.
"""
import json, os, socket, struct, sys, time, statistics

def members(path):
    with open(path) as f:
        return [tuple(m["api_address"].rsplit(":", 1)) for m in json.load(f)["nodes"] if m.get("api_address")]

def recv_exact(s, n):
    b = b""
    while len(b) < n:
        c = s.recv(n - len(b))
        if not c: raise EOFError
        b += c
    return b

def get(s, key):
    s.sendall(struct.pack(">HH", 36, 651) + key)
    size, kind = struct.unpack(">HH", recv_exact(s, 4))
    recv_exact(s, size - 4)
    return kind

def put(s, key, value):
    s.sendall(struct.pack(">HHHBB", 40 + len(value), 650, 3600, 3, 0) + key + value)

clusters = {name: members(p) for name, p in zip(sys.argv[1::2], sys.argv[2::2])}
conns = {name: [socket.create_connection((h, int(p))) for h, p in ms] for name, ms in clusters.items()}
for cs in conns.values():
    for c in cs: c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
keys = [os.urandom(32) for _ in range(100)]
for name, cs in conns.items():
    for k in keys: put(cs[0], k, b"v" * 64)
time.sleep(3)
lat = {name: [] for name in conns}
found = {name: 0 for name in conns}
rounds = int(os.environ.get("ROUNDS", "600"))
for i in range(rounds):
    order = list(conns) if i % 2 == 0 else list(reversed(list(conns)))
    for name in order:
        cs = conns[name]
        c = cs[1 + (i * 7) % (len(cs) - 1)]
        t = time.perf_counter()
        kind = get(c, keys[i % len(keys)])
        lat[name].append((time.perf_counter() - t) * 1000)
        found[name] += kind == 652
for name, l in lat.items():
    l.sort()
    q = lambda p: l[min(len(l) - 1, int(len(l) * p))]
    print(f"{name}: n={len(l)} found={found[name]} p50={q(0.5):.3f} ms p90={q(0.9):.3f} ms p99={q(0.99):.3f} ms mean={statistics.mean(l):.3f} ms")
