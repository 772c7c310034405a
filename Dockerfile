# Portcullis container image: a static-enough binary on a distroless base, non-root, no shell.
#
#   docker build -t portcullis:0.1.0 \
#     --build-arg REVISION="$(git rev-parse HEAD)" --build-arg CREATED="$(date -u +%FT%TZ)" .
#   docker run --rm -p 8080:8080 -p 8443:8443 \
#     -v "$PWD/gateways:/etc/portcullis/gateways:ro" -v "$PWD/certs:/etc/portcullis/certs:ro" \
#     portcullis:0.1.0
#
# No config is baked in: /etc/portcullis/gateways (Istio YAML) and /etc/portcullis/certs
# (credentialName folders) are empty mount points, and the gateway says so at start-up when
# nothing is mounted. The admin listener stays on 127.0.0.1:15000 inside the container; probes
# use the status port 15021. deploy/ has the Kubernetes manifests.
#
# Layers: the dependencies (Pingora, OpenSSL vendored, ...) are compiled in their own layer from
# a recipe of the manifests (cargo-chef), so a source change rebuilds only this crate.

ARG RUST_VERSION=1.95.0

FROM rust:${RUST_VERSION}-bookworm AS chef
# cmake: libz-ng-sys (pulled in by Pingora) builds zlib-ng with it.
RUN apt-get update \
    && apt-get install -y --no-install-recommends cmake=3.25.1-1 \
    && rm -rf /var/lib/apt/lists/* \
    && cargo install cargo-chef --locked --version 0.1.78
WORKDIR /src

# The recipe: Cargo.toml, Cargo.lock and the target list, nothing else. It only changes when
# the dependencies do, so the `cook` layer below stays cached across source changes.
FROM chef AS planner
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY benches ./benches
COPY examples ./examples
COPY tests ./tests
RUN cargo chef prepare --recipe-path recipe.json

FROM chef AS build
COPY --from=planner /src/recipe.json recipe.json
RUN cargo chef cook --release --locked --bin portcullis --recipe-path recipe.json
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY benches ./benches
COPY examples ./examples
COPY tests ./tests
RUN cargo build --release --locked --bin portcullis \
    && strip target/release/portcullis \
    && mkdir -p /out/etc/portcullis/gateways /out/etc/portcullis/certs

# glibc, libgcc and CA certificates, nothing else; user 65532 (nonroot).
FROM gcr.io/distroless/cc-debian12:nonroot
ARG VERSION=0.1.0
ARG REVISION=unknown
ARG CREATED=unknown
ARG SOURCE=""
LABEL org.opencontainers.image.title="portcullis" \
      org.opencontainers.image.description="Edge gateway on Pingora serving Istio Gateway, VirtualService, ServiceEntry and DestinationRule YAML from a watched directory" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.base.name="gcr.io/distroless/cc-debian12:nonroot"
COPY --from=build /out/etc/portcullis /etc/portcullis
COPY --from=build /src/target/release/portcullis /usr/local/bin/portcullis
USER 65532:65532
# HTTP and HTTPS (istio-ingressgateway's 8080/8443: `--port-map 80:8080,443:8443`), status
# (/healthz/ready), Prometheus (Envoy's 15090 and the merged 15020). Not the admin port.
EXPOSE 8080 8443 15021 15090 15020
ENTRYPOINT ["/usr/local/bin/portcullis"]
CMD ["run", "--config=/etc/portcullis/gateways", "--certs=/etc/portcullis/certs"]
