#!/usr/bin/env bash
# Installs the Debian packages the project needs. Idempotent; run as root.
#   scripts/install-deps.sh run    what the daemon needs at run time
#   scripts/install-deps.sh test   that plus every tool the test suite and benchmarks use
#   scripts/install-deps.sh deb    the tools that build and check the .deb (make deb,
#                                  scripts/test-deb.sh): lintian, mmdebstrap, man-db,
#                                  systemd-nspawn, piuparts
# Debian's own portsentry is installed for tests only, as a reference oracle; its service
# is never started (a policy-rc.d that refuses service starts is in place during install).
set -euo pipefail

run=(iproute2 nftables)
test=(nmap hping3 tcpdump iptables ipset portsentry tcpd procps psmisc util-linux chromium nats-server)
deb=(dpkg-dev lintian mmdebstrap man-db systemd systemd-container piuparts)
case "${1:-test}" in
  run) need=("${run[@]}") ;;
  test) need=("${run[@]}" "${test[@]}") ;;
  deb) need=("${deb[@]}") ;;
  *) echo "usage: $0 run|test|deb" >&2; exit 2 ;;
esac

if ! command -v go >/dev/null; then
  echo "install-deps: Go 1.26 or newer is required (https://go.dev/dl/); not found on PATH" >&2
  exit 1
fi

missing=()
for p in "${need[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
policy=/usr/sbin/policy-rc.d
cleanup_policy=0
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' >"$policy"; chmod 755 "$policy"; cleanup_policy=1
fi
trap '[ $cleanup_policy = 1 ] && rm -f "$policy"' EXIT
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
