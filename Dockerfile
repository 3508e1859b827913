# syntax=docker/dockerfile:1
# Build: a static binary (no cgo: the embedded SQLite is pure Go).
# The Go of go.mod's `toolchain` line (the image's own Go would otherwise
# build it: the image sets GOTOOLCHAIN=local).
FROM golang:1.27.3-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath \
      -ldflags "-s -w -X github.com/tollgate-dev/tollgate/app.Version=${VERSION}" \
      -o /out/tollgate ./cmd/tollgate \
 && mkdir -p /out/state/data

# Run: distroless static, non-root.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/tollgate /usr/local/bin/tollgate
COPY config/tollgate.yaml /etc/tollgate/tollgate.yaml
# The working directory holds ./data/tollgate.db when no database URL is
# set (the embedded SQLite store): writable by the nonroot user (65532).
COPY --from=build --chown=65532:65532 /out/state /var/lib/tollgate
ENV TOLLGATE_CONFIG=/etc/tollgate/tollgate.yaml \
    TOLLGATE_ADDR=:8080
WORKDIR /var/lib/tollgate
USER nonroot:nonroot
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/tollgate"]
CMD ["serve"]
