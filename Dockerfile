# syntax=docker/dockerfile:1
#
# pgrelay images: one static binary each, on distroless (no shell), as the
# non-root user 65532.
#
#   docker build --target relay -t pgrelay/relay .
#   docker build --target edge  -t pgrelay/edge  .
#
# skaffold.yaml builds both. The build stages run on the build machine's
# platform and cross-compile for the target one (--platform linux/arm64 works
# without emulation).

ARG GO_VERSION=1.26

FROM --platform=$BUILDPLATFORM golang:${GO_VERSION} AS deps
WORKDIR /src
ENV CGO_ENABLED=0 GOFLAGS=-trimpath
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download

FROM deps AS build-relay
ARG TARGETOS TARGETARCH
RUN --mount=type=bind,target=. \
    --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    GOOS=$TARGETOS GOARCH=$TARGETARCH go build -ldflags="-s -w" -o /out/relay ./cmd/relay

FROM deps AS build-edge
ARG TARGETOS TARGETARCH
RUN --mount=type=bind,target=. \
    --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    GOOS=$TARGETOS GOARCH=$TARGETARCH go build -ldflags="-s -w" -o /out/edge ./cmd/edge

# relay: holds the PostgreSQL LISTEN connection; /healthz and /readyz on :8081.
FROM gcr.io/distroless/static-debian12:nonroot AS relay
COPY --from=build-relay /out/relay /relay
USER 65532:65532
EXPOSE 8081
ENTRYPOINT ["/relay"]

# edge: WebSocket fan-out and the demo page on :8080; `edge check` is the Helm test.
FROM gcr.io/distroless/static-debian12:nonroot AS edge
COPY --from=build-edge /out/edge /edge
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/edge"]
