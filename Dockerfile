# Multi-stage: a static (musl) release binary on a distroless, non-root base.
#   docker build -t ghcr.io/cronwarden/cronwarden:dev .
FROM rust:1.95-bookworm AS build
RUN rustup target add x86_64-unknown-linux-musl \
 && apt-get update && apt-get install -y --no-install-recommends musl-tools \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# Dependencies first, so source edits reuse the cached layer.
COPY Cargo.toml Cargo.lock ./
RUN mkdir -p src benches e2e \
 && echo 'fn main() {}' > src/main.rs && touch src/lib.rs \
 && echo 'fn main() {}' > benches/engine.rs && echo 'fn main() {}' > e2e/main.rs \
 && cargo build --release --locked --target x86_64-unknown-linux-musl --bin cronwarden \
 && rm -rf src benches e2e
COPY . .
RUN touch src/main.rs src/lib.rs \
 && cargo build --release --locked --target x86_64-unknown-linux-musl --bin cronwarden \
 && cp target/x86_64-unknown-linux-musl/release/cronwarden /cronwarden

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /cronwarden /cronwarden
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/cronwarden"]
CMD ["run"]
