# Portcullis: multi-stage build, small non-root runtime image.
#   docker build -t portcullis .
#   docker run -p 8080:8080 -p 8443:8443 portcullis
# Mount your own config at /etc/portcullis/gateways and credentials at /etc/portcullis/certs.

FROM rust:1-bookworm AS build
RUN apt-get update -qq && apt-get install -y -qq --no-install-recommends cmake && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY benches ./benches
COPY tests ./tests
RUN cargo build --release --locked --bin portcullis && strip target/release/portcullis

FROM debian:bookworm-slim
RUN apt-get update -qq && apt-get install -y -qq --no-install-recommends ca-certificates && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin portcullis
COPY --from=build /src/target/release/portcullis /usr/local/bin/portcullis
COPY gateways /etc/portcullis/gateways
COPY certs/demo /etc/portcullis/certs/demo
USER 10001
EXPOSE 8080 8443 15000
ENTRYPOINT ["portcullis", "run", "--config", "/etc/portcullis/gateways", "--certs", "/etc/portcullis/certs"]
# The admin listener binds loopback by default; in a container probes must reach it.
CMD ["--admin", "0.0.0.0:15000"]
