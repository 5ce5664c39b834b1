#!/usr/bin/env bash
# Installs the Debian packages the daemon and its test suite need. Idempotent.
# Debian's portsentry is installed only as a reference oracle for differential tests:
# its service is never started (policy-rc.d refuses all service starts during install).
set -euo pipefail

need=(iproute2 nmap hping3 nftables tcpdump iptables ipset portsentry procps psmisc)
missing=()
for p in "${need[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "install-deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  policy=/usr/sbin/policy-rc.d
  had_policy=0; [ -e "$policy" ] && had_policy=1
  if [ $had_policy = 0 ]; then printf '#!/bin/sh\nexit 101\n' >"$policy"; chmod 755 "$policy"; fi
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  [ $had_policy = 0 ] && rm -f "$policy"
fi
