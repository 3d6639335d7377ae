FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/hookrun /usr/local/bin/hookrun
ENV HOOKRUN_DATA_DIR=/var/lib/hookrun
EXPOSE 8080
CMD ["hookrun", "serve"]
