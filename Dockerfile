# Multi-stage build of the three Triggerflow services and the CLI.
# docker build -t triggerflow .
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/ \
      ./cmd/watcher ./cmd/ingest ./cmd/worker ./cmd/triggerflow

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/ /usr/local/bin/
USER nonroot:nonroot
# Each service picks its binary with `command:`; the ops port serves
# /metrics, /healthz and /readyz.
ENTRYPOINT []
