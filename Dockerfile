# notarium container image.
#
#   docker build -t notarium .
#
# builds the binary in a Rust stage and ships it alone in the runtime stage.
# Machines that cannot pull images build the same runtime stage from a local
# Debian base and a binary built on the host (tests/deploy_compose.rs does):
#
#   docker build --target runtime \
#     --build-arg RUST_IMAGE=<local bookworm image> \
#     --build-arg RUNTIME_BASE=<local bookworm image> \
#     --build-arg PREBUILT=<path of the binary inside the build context> \
#     -f Dockerfile -t notarium <context holding the binary and deploy/image/>
#
# With PREBUILT set, the build stage only copies that file (nothing is
# compiled, so any image with a shell will do as RUST_IMAGE).
ARG RUST_IMAGE=rust:1.95-bookworm
ARG RUNTIME_BASE=debian:bookworm-slim

FROM ${RUST_IMAGE} AS build
# Lets `docker image prune --filter label=…` find this stage's leftover image.
LABEL org.notarium.stage=build
ARG PREBUILT=
WORKDIR /src
COPY . .
RUN set -eu; \
    if [ -n "$PREBUILT" ]; then \
      install -D -m 0755 "$PREBUILT" /out/notarium; \
    else \
      cargo build --release --locked --bin notarium; \
      install -D -m 0755 target/release/notarium /out/notarium; \
    fi

FROM ${RUNTIME_BASE} AS runtime
# A fixed UID/GID, so that mounted secrets and volumes can be owned by it.
RUN set -eu; \
    groupadd --system --gid 10001 notarium; \
    useradd --system --uid 10001 --gid notarium --home-dir /var/lib/notarium \
      --no-create-home --shell /usr/sbin/nologin notarium; \
    install -d -m 0700 -o notarium -g notarium /var/lib/notarium /var/lib/notarium/data /var/lib/notarium/keys; \
    install -d -m 0755 /etc/notarium
COPY --from=build /out/notarium /usr/local/bin/notarium
# The default configuration: every interface on 4443, SQLite and keys in the
# volume, JSON logs. A file, not ENV: NOTARIUM_* variables would beat the
# user's own configuration file. Listening beyond loopback, notarium refuses
# to start until auth is configured (or NOTARIUM_INSECURE_NO_AUTH=true says
# that something in front authenticates).
COPY deploy/image/notarium.json /etc/notarium/notarium.json
USER notarium
WORKDIR /var/lib/notarium
# SQLite database, and the generated key passphrase and development
# certificates when none are given: losing the passphrase loses the keys.
VOLUME ["/var/lib/notarium"]
EXPOSE 4443
HEALTHCHECK --interval=10s --timeout=6s --start-period=20s --retries=3 \
  CMD ["notarium", "health"]
ENTRYPOINT ["notarium"]
CMD ["serve", "--config", "/etc/notarium/notarium.json"]
