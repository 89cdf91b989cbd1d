# syntax=docker/dockerfile:1
#
# dcrship container image: the agent (`dcrship run`) for sidecars and DaemonSets.
#
#   docker build -t dcrship:dev .
#   az acr build --registry <acr-name> --image dcrship:0.1.0 .     # no local Docker needed
#
# The entrypoint is `dcrship run`; arguments are appended to it:
#   flag-only:  docker run --rm -e DCRSHIP_ENDPOINT -e DCRSHIP_DCR -e DCRSHIP_STREAM \
#                 -v /var/log/app:/var/log/app:ro dcrship:dev --path '/var/log/app/*.log'
#   stdin:      my-app | docker run --rm -i -e DCRSHIP_ENDPOINT ... dcrship:dev      (the default)
#   config:     docker run --rm -v "$PWD/agent.toml:/etc/dcrship/agent.toml:ro" \
#                 dcrship:dev --config /etc/dcrship/agent.toml
# Give it time to drain on stop: `docker run --stop-timeout 45` ([agent] shutdown_timeout is 30s).

ARG RUST_VERSION=1

FROM rust:${RUST_VERSION}-bookworm AS build
WORKDIR /src

# 1. Dependencies, in their own layer: rebuilt only when Cargo.toml, Cargo.lock or benches/
#    change. The [[bench]] targets are declared in Cargo.toml, so cargo needs their files to
#    exist even though `cargo build` does not compile them.
COPY Cargo.toml Cargo.lock ./
COPY benches ./benches
RUN mkdir src \
 && echo 'fn main() {}' > src/main.rs \
 && touch src/lib.rs \
 && cargo build --profile dist --locked \
 && rm -rf src

# 2. The crate itself. COPY keeps the files' own modification times, which may be older than
#    the placeholder build above; touch them so cargo rebuilds the crate.
COPY src ./src
RUN touch src/lib.rs src/main.rs \
 && cargo build --profile dist --locked \
 && install -D -m 0755 target/dist/dcrship /out/dcrship \
 && mkdir -p /out/state \
 && /out/dcrship --version | grep '^dcrship '


# Runtime: glibc, libgcc, CA certificates and tzdata, no shell; user nonroot = 65532:65532.
FROM gcr.io/distroless/cc-debian12:nonroot

LABEL org.opencontainers.image.title="dcrship" \
      org.opencontainers.image.description="Log shipper for the Azure Monitor Logs Ingestion API" \
      org.opencontainers.image.licenses="MIT"

COPY --from=build /out/dcrship /usr/local/bin/dcrship
# Checkpoints and the disk spool ([agent] state_dir). COPY --chown creates the directory owned
# by the runtime user. Mount a volume here to keep them across container restarts.
COPY --from=build --chown=65532:65532 /out/state /var/lib/dcrship

# dcrship's own logs on stderr, one JSON object per line, for the container runtime.
ENV DCRSHIP_LOG_FORMAT=json

USER 65532:65532

# /metrics and /health. The default listen address is 127.0.0.1:9465, which is not reachable
# from outside the container: set [agent] http_listen = "0.0.0.0:9465" in the config file, or
# DCRSHIP_HTTP_LISTEN=0.0.0.0:9465 in flag-only mode.
EXPOSE 9465

# SIGTERM: deliver what has been read (up to [agent] shutdown_timeout), save state, exit 0.
STOPSIGNAL SIGTERM

ENTRYPOINT ["/usr/local/bin/dcrship", "run"]
# With no arguments: read stdin and ship it to the output named by DCRSHIP_ENDPOINT,
# DCRSHIP_DCR and DCRSHIP_STREAM (auth: DCRSHIP_AUTH, AZURE_*), until stdin ends.
# Replace with e.g. `--path /var/log/app/*.log` or `--config /etc/dcrship/agent.toml`.
CMD ["--stdin"]
