#!/usr/bin/env bash
# Runs piuparts on the package: installation and purge on a clean Debian 12, then
# Debian's portsentry 1.2 from the mirror upgraded to ours and purged; piuparts fails on
# files left behind, broken maintainer scripts and processes left running. Takes about
# 50 s and needs the Debian mirror (piuparts runs apt in its chroots), so it is not part
# of scripts/test.sh. The base tarball (minbase bookworm, ~35 s to make) is cached in
# dist/cache/. Builds the package for this machine's architecture unless DEB= names one.
# Needs root and piuparts and mmdebstrap (scripts/install-deps.sh deb).
#   scripts/piuparts-deb.sh      # or: make piuparts
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "piuparts-deb: needs root" >&2; exit 1; }
for t in piuparts mmdebstrap; do
  command -v $t >/dev/null || { echo "piuparts-deb: $t not installed (scripts/install-deps.sh deb)" >&2; exit 1; }
done
arch=$(dpkg --print-architecture)
base=dist/cache/bookworm-minbase-$arch.tar.gz
if [ ! -s "$base" ]; then
  mkdir -p dist/cache
  echo "piuparts-deb: making $base"
  mmdebstrap --quiet --variant=minbase --format=tar bookworm "$base.tmp.tar"
  gzip -1 "$base.tmp.tar"
  mv "$base.tmp.tar.gz" "$base"
fi
deb=${DEB:-}
if [ -z "$deb" ]; then
  scripts/build-deb.sh "$arch" >/dev/null
  deb=dist/portsentry_$(scripts/version.sh -release)_$arch.deb
fi
log=dist/piuparts.log
if piuparts --basetgz="$base" --distribution=bookworm "$deb" >"$log" 2>&1; then
  grep 'INFO: PASS' "$log"
else
  grep -E 'ERROR|FAIL' "$log" | head -40
  echo "piuparts-deb: FAIL (the whole log is $log)" >&2
  exit 1
fi
