# One image with every Sagaflow binary: orchestrator, sagaflow (CLI), payment-validator, charger,
# receipt-sender, flight-service, hotel-service, car-service. docker-compose.yml picks the binary
# per service with `command:`.
#
#   docker build -t sagaflow:local .
#   docker run --rm sagaflow:local sagaflow --help
#
# Dependencies are built in their own layer from the manifests and Cargo.lock alone (with empty
# stand-ins for our crates), so a change to our code rebuilds only our crates.

FROM rust:1.95-bookworm AS builder
WORKDIR /src
ENV CARGO_TERM_COLOR=never
ARG PACKAGES="-p sagaflow-orchestrator -p payment-validator -p charger -p receipt-sender"

# 1. Dependencies: the manifests, empty crates, one build. Cached until a Cargo.toml or
#    Cargo.lock changes.
COPY Cargo.toml Cargo.lock ./
COPY contracts/Cargo.toml contracts/
COPY engine/Cargo.toml engine/
COPY amqp/Cargo.toml amqp/
COPY process/Cargo.toml process/
COPY orchestrator/Cargo.toml orchestrator/
COPY activity-services/sdk/Cargo.toml activity-services/sdk/
COPY activity-services/payment-validator/Cargo.toml activity-services/payment-validator/
COPY activity-services/charger/Cargo.toml activity-services/charger/
COPY activity-services/receipt-sender/Cargo.toml activity-services/receipt-sender/
COPY tests/Cargo.toml tests/
RUN set -eu; \
    for lib in contracts engine amqp process orchestrator activity-services/sdk tests; do \
        mkdir -p "$lib/src" && touch "$lib/src/lib.rs"; \
    done; \
    for main in activity-services/payment-validator activity-services/charger activity-services/receipt-sender \
                contracts/src/bin/generate_schemas orchestrator/src/bin/orchestrator orchestrator/src/bin/sagaflow \
                tests/src/bin/test_orchestrator tests/src/bin/bench; do \
        case "$main" in */src/bin/*) file="$main.rs" ;; *) file="$main/src/main.rs" ;; esac; \
        mkdir -p "$(dirname "$file")" && echo 'fn main() {}' > "$file"; \
    done; \
    cargo build --release --locked $PACKAGES --bins

# 2. Our code. COPY keeps the files' old modification times, so touch them: cargo must not take
#    the empty stand-ins of step 1 for an up-to-date build.
COPY . .
# Release binaries without the test-only crash points (the `failpoints` features stay off).
RUN find . -path ./target -prune -o -name '*.rs' -exec touch {} + \
 && cargo build --release --locked $PACKAGES --bins \
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
