#!/usr/bin/env bash
# Builds the daemon and runs it in the foreground in connect mode (-tcp -udp), with
# /etc/portsentry/portsentry.conf if it exists, else Debian's shipped settings built in.
# Extra arguments replace the default modes, e.g.: scripts/run.sh -c my.conf -tcp
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh run
mkdir -p bin
CGO_ENABLED=0 go build -trimpath -ldflags "-X main.version=$(git describe --always --dirty 2>/dev/null || echo dev)" -o bin/portsentry ./cmd/portsentry
[ $# -gt 0 ] || set -- -tcp -udp
exec bin/portsentry "$@"
