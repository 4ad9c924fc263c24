# Multi-stage build of the three Triggerflow services and the CLI.
# docker build -t triggerflow .
# Name the build (--version, triggerflow_build_info) where the go command
# cannot read it from .git:
# docker build --build-arg VERSION=v1.2.0 --build-arg REVISION=$(git rev-parse HEAD) -t triggerflow .
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
# Empty values keep what the go command stamped (the tag or pseudo-version
# and commit of the .git in the context, when there is one).
ARG VERSION=""
ARG REVISION=""
RUN CGO_ENABLED=0 go build -trimpath \
      -ldflags="-s -w -X github.com/triggerflow/triggerflow/internal/service.version=${VERSION} -X github.com/triggerflow/triggerflow/internal/service.revision=${REVISION}" \
      -o /out/ ./cmd/watcher ./cmd/ingest ./cmd/worker ./cmd/triggerflow

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/ /usr/local/bin/
USER nonroot:nonroot
# Each service picks its binary with `command:`; the ops port serves
# /metrics, /healthz and /readyz.
ENTRYPOINT []
