# syntax=docker/dockerfile:1
# One image with every Sagaflow binary: orchestrator, sagaflow (CLI), payment-validator, charger,
# receipt-sender, flight-service, hotel-service, car-service. docker-compose.yml picks the binary
# per service with `command:`.
#
#   docker build -t sagaflow:local .
#   docker run --rm sagaflow:local sagaflow --help
#
# BuildKit cache mounts keep the cargo registry and the target directory between builds, so a
# change to our code rebuilds only our crates (Docker 23+ builds with BuildKit by default).

FROM rust:1.95-bookworm AS builder
WORKDIR /src
ENV CARGO_TERM_COLOR=never
COPY . .
# Release binaries without the test-only crash points (the `failpoints` features stay off).
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bins \
        -p sagaflow-orchestrator -p payment-validator -p charger -p receipt-sender \
        -p travel-services \
 && mkdir /out \
 && cp target/release/orchestrator target/release/sagaflow target/release/payment-validator \
       target/release/charger target/release/receipt-sender \
       target/release/flight-service target/release/hotel-service target/release/car-service /out/

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin sagaflow
COPY --from=builder /out/ /usr/local/bin/
USER sagaflow
# The binaries' own default, so `docker run` logs like a local run.
ENV RUST_LOG=info,sqlx=warn
CMD ["orchestrator"]
