#!/usr/bin/env bash
# Builds the daemon and runs it in the foreground in connect mode (-tcp -udp), with
# /etc/portsentry/portsentry.conf if it exists, else Debian's shipped settings built in.
# Extra arguments replace the default modes, e.g.: scripts/run.sh -c my.conf -tcp
# It says on stderr what it does: a first build (modules to download and compile)
# takes about a minute.
set -euo pipefail
cd "$(dirname "$0")/.."
say() { echo "run.sh: $*" >&2; }
say "checking the run-time packages (iproute2, nftables)"
scripts/install-deps.sh run
version=$(scripts/version.sh)
mkdir -p bin
say "Go modules: downloading those not yet in $(go env GOMODCACHE)"
go mod download
say "building bin/portsentry $version (the first build takes about a minute)"
start=$SECONDS
CGO_ENABLED=0 go build -trimpath -ldflags "-X main.version=$version" -o bin/portsentry ./cmd/portsentry
say "built in $((SECONDS - start)) s"
[ $# -gt 0 ] || set -- -tcp -udp
say "starting bin/portsentry $* (Ctrl-C stops it)"
exec bin/portsentry "$@"
