# aviso-bridge: a static binary on distroless (CA certificates, non-root).
#
#   docker build -t aviso-bridge:dev --build-arg VERSION=1.2.3 --build-arg COMMIT=$(git rev-parse HEAD) .
#
# Multi-arch (amd64 and arm64, as aviso-server publishes) in one command; the
# build stage runs on the build machine's platform and cross-compiles for each
# target (TARGETOS/TARGETARCH), so no emulation is involved:
#
#   docker buildx build --platform linux/amd64,linux/arm64 \
#     --build-arg VERSION=1.2.3 --build-arg COMMIT=$(git rev-parse HEAD) \
#     -t registry.example.int/aviso-bridge:1.2.3 --push .
#
# The process runs as uid:gid 65532:65532 (distroless "nonroot"). The file
# checkpoint store writes CHECKPOINT_FILE=/data/checkpoint.json (and its lock
# files beside it), so /data must be writable by uid 65532: the image's /data
# is, and so is a fresh named volume (Docker copies the ownership); a bind
# mount or a Kubernetes volume must be made so (chown 65532:65532, or
# securityContext.fsGroup: 65532).
#
# On SIGTERM the bridge drains for up to BRIDGE_SHUTDOWN_TIMEOUT (20s): give
# it a longer stop timeout (`docker run --stop-timeout 30`, compose
# stop_grace_period, Kubernetes terminationGracePeriodSeconds).
# BuildKit (buildx) sets BUILDPLATFORM, TARGETOS and TARGETARCH; the legacy
# builder (DOCKER_BUILDKIT=0) sets none of them, so the build stage then runs
# on linux/amd64 and builds for the Go defaults (the build machine).
FROM --platform=${BUILDPLATFORM:-linux/amd64} golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG TARGETOS
ARG TARGETARCH
ARG VERSION=dev
ARG COMMIT=unknown
RUN CGO_ENABLED=0 GOOS=${TARGETOS} GOARCH=${TARGETARCH} go build -trimpath \
      -ldflags="-s -w -X main.version=${VERSION} -X main.commit=${COMMIT}" \
      -o /out/aviso-bridge ./cmd/aviso-bridge \
 && mkdir -p /out/data

FROM gcr.io/distroless/static-debian12:nonroot
ARG VERSION=dev
ARG COMMIT=unknown
LABEL org.opencontainers.image.title="aviso-bridge" \
      org.opencontainers.image.description="Forwards aviso-server notifications to NATS, JetStream or Kafka, at least once and in order" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${COMMIT}" \
      org.opencontainers.image.source="https://github.com/aviso-bridge/aviso-bridge" \
      org.opencontainers.image.url="https://github.com/aviso-bridge/aviso-bridge" \
      org.opencontainers.image.documentation="https://github.com/aviso-bridge/aviso-bridge#deployment" \
      org.opencontainers.image.base.name="gcr.io/distroless/static-debian12:nonroot"
COPY --from=build /out/aviso-bridge /usr/local/bin/aviso-bridge
COPY --from=build --chown=65532:65532 /out/data /data
ENV CHECKPOINT_FILE=/data/checkpoint.json
VOLUME ["/data"]
USER 65532:65532
EXPOSE 8080
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
  CMD ["/usr/local/bin/aviso-bridge", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/aviso-bridge"]
CMD ["run"]
