# syntax=docker/dockerfile:1
# Multi-stage build: a static binary on distroless (CA certificates, non-root).
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
ARG COMMIT=unknown
RUN CGO_ENABLED=0 go build -trimpath \
      -ldflags="-s -w -X main.version=${VERSION} -X main.commit=${COMMIT}" \
      -o /out/aviso-bridge ./cmd/aviso-bridge \
 && mkdir -p /out/data

FROM gcr.io/distroless/static-debian12:nonroot
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
