# One image with every Sagaflow binary: orchestrator, sagaflow (CLI), payment-validator, charger,
# receipt-sender, flight-service, hotel-service, car-service. docker-compose.yml picks the binary
# per service with `command:`.
#
#   docker build -t sagaflow:local .
#   docker run --rm sagaflow:local sagaflow --help

FROM rust:1-bookworm AS builder
WORKDIR /src
COPY . .
# Release binaries without the test-only crash points (the `failpoints` features stay off).
RUN cargo build --release --locked --workspace --bins \
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
ENV RUST_LOG=info
CMD ["orchestrator"]
