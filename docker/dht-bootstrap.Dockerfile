# The dht-bootstrap image: one statically linked binary and nothing else.
# Built by `cargo xtask docker` from a context it prepares under
# target/docker/dht-bootstrap/ (the binary, this file and an empty data/); it cannot be
# built from the repository.
FROM scratch

LABEL org.voidphone.dht="1" \
      org.opencontainers.image.title="dht-bootstrap" \
      org.opencontainers.image.description="VoidPhone DHT bootstrap node (no client API)"

# The binary belongs to root and cannot be changed by the user it runs as.
COPY dht-bootstrap /dht-bootstrap
# The only writable place: host key, proof of work and record database (/data/db).
COPY --chown=10001:10001 data/ /data/

USER 10001:10001
WORKDIR /data
# tracing writes colour codes unless told not to; logs go to `docker logs`.
ENV NO_COLOR=1

# 7402: peers, 9100: Prometheus metrics (when configured so).
EXPOSE 7402 9100
ENTRYPOINT ["/dht-bootstrap"]
# The configuration is mounted here; see docker/README.md for what it must say.
CMD ["-c", "/config/node.toml"]
