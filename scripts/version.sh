#!/usr/bin/env bash
# Prints the version to stamp into the binary. The one source is the top entry of
# packaging/debian/changelog (e.g. 2.0.0-1).
#   scripts/version.sh          that version, plus "+g<commit>" (and ".dirty") when run in
#                               a git checkout: what `make build` stamps
#   scripts/version.sh -release exactly the changelog's version: what `make deb` stamps,
#                               so a package build does not depend on the git state
set -euo pipefail
cd "$(dirname "$0")/.."
v=$(sed -n '1s/^[^(]*(\([^)]*\)).*/\1/p' packaging/debian/changelog)
[ -n "$v" ] || { echo "version.sh: no version in packaging/debian/changelog" >&2; exit 1; }
if [ "${1:-}" != -release ] && sha=$(git rev-parse --short HEAD 2>/dev/null); then
  v="$v+g$sha"
  git diff --quiet HEAD 2>/dev/null || v="$v.dirty"
fi
echo "$v"
