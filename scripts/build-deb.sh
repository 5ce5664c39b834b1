#!/usr/bin/env bash
# Builds the Debian package dist/portsentry_<version>_<arch>.deb for each ARCH given
# (default: amd64 arm64), from a staged tree with dpkg-deb --root-owner-group; no
# debhelper, no Go from Debian. The binary is cross-compiled (CGO_ENABLED=0).
#
# Reproducible: with the same SOURCE_DATE_EPOCH (default: the date of the top entry of
# packaging/debian/changelog) and the same Go, two builds are byte-identical. Every
# mtime is set to it, gzip runs with -n, the binary is built with -trimpath and without
# VCS stamps, and the version comes from the changelog, not from git.
#
# When lintian is installed, each package is checked and an error (E:) fails the build;
# when systemd-analyze is, the unit is verified and its exposure score must be <= 3.0;
# when groff is, the man pages must render without a warning.
#   scripts/build-deb.sh [ARCH...]
set -euo pipefail
cd "$(dirname "$0")/.."

arches=("$@")
[ ${#arches[@]} -gt 0 ] || arches=(amd64 arm64)
pkg=packaging/debian
version=$(scripts/version.sh -release)
trailer=$(sed -n '/^ -- /{s/^ -- \(.*\)  \(.*\)$/\1|\2/p;q}' $pkg/changelog)
maintainer=${trailer%%|*}
changelog_date=${trailer#*|}
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(date -d "$changelog_date" +%s)}
export TZ=UTC LC_ALL=C.UTF-8
umask 022

for tool in dpkg-deb gzip go; do
  command -v $tool >/dev/null || { echo "build-deb: $tool not found (scripts/install-deps.sh deb)" >&2; exit 1; }
done

mkdir -p dist/build
mdman=dist/build/mdman
go build -trimpath -o $mdman ./tools/mdman
man_date=$(date -u -d "@$SOURCE_DATE_EPOCH" +%Y-%m-%d)

# install MODE SRC DEST: copy a file into the staged tree.
install_file() { install -D -m "$1" "$2" "$root/$3"; }
# gzip_file MODE SRC DEST: the same, compressed reproducibly.
gzip_file() { mkdir -p "$(dirname "$root/$3")"; gzip -9n <"$2" >"$root/$3"; chmod "$1" "$root/$3"; }

for arch in "${arches[@]}"; do
  case $arch in
    amd64|arm64|armhf|i386|ppc64el|s390x|riscv64) ;;
    *) echo "build-deb: unknown architecture $arch" >&2; exit 2 ;;
  esac
  goarch=$arch
  case $arch in armhf) goarch=arm; export GOARM=7 ;; i386) goarch=386 ;; ppc64el) goarch=ppc64le ;; esac
  build=dist/build/$arch
  root=$build/root
  rm -rf "$build"
  mkdir -p "$root/DEBIAN"

  echo "build-deb: portsentry $version $arch"
  CGO_ENABLED=0 GOOS=linux GOARCH=$goarch go build -trimpath -buildvcs=false \
    -ldflags "-s -w -buildid= -X main.version=$version" \
    -o "$root/usr/sbin/portsentry" ./cmd/portsentry
  chmod 755 "$root/usr/sbin/portsentry"

  install_file 755 $pkg/start usr/lib/portsentry/start
  install_file 755 $pkg/init etc/init.d/portsentry
  install_file 644 $pkg/portsentry.service usr/lib/systemd/system/portsentry.service
  install_file 644 $pkg/portsentry.conf etc/portsentry/portsentry.conf
  install_file 644 $pkg/portsentry.ignore.static etc/portsentry/portsentry.ignore.static
  install_file 644 $pkg/logrotate etc/logrotate.d/portsentry
  install_file 644 $pkg/default usr/share/portsentry/default
  install_file 644 $pkg/portsentry.bash-completion usr/share/bash-completion/completions/portsentry
  install_file 644 $pkg/lintian-overrides usr/share/lintian/overrides/portsentry

  $mdman -name portsentry -section 8 -desc "detect port scans and respond to them" \
    -date "$man_date" -source "portsentry $version" -manual "System Administration" \
    docs/portsentry.8.md >"$build/portsentry.8"
  $mdman -name portsentry.conf -section 5 -desc "configuration file of portsentry" \
    -date "$man_date" -source "portsentry $version" -manual "File Formats" \
    docs/configuration.md >"$build/portsentry.conf.5"
  if command -v groff >/dev/null; then
    for page in "$build/portsentry.8" "$build/portsentry.conf.5"; do
      warnings=$(groff -man -ww -z -Tutf8 "$page" 2>&1)
      [ -z "$warnings" ] || { echo "build-deb: groff warns about $page:" >&2; echo "$warnings" >&2; exit 1; }
    done
  fi
  gzip_file 644 "$build/portsentry.8" usr/share/man/man8/portsentry.8.gz
  gzip_file 644 "$build/portsentry.conf.5" usr/share/man/man5/portsentry.conf.5.gz

  doc=usr/share/doc/portsentry
  gzip_file 644 $pkg/changelog $doc/changelog.Debian.gz
  install_file 644 README.md $doc/README.md
  for f in compatibility configuration packaging dashboard api report fleet; do
    install_file 644 docs/$f.md $doc/$f.md
  done
  install_file 644 $pkg/jail-portsentry.conf $doc/examples/jail-portsentry.conf
  install_file 644 $pkg/nats-fleet.conf $doc/examples/nats-fleet.conf

  # copyright: ours, then every Go module linked into the binary with its license.
  {
    sed "s/@MAINTAINER_NAME@/${maintainer%% <*}/" $pkg/copyright
    go version -m "$root/usr/sbin/portsentry" | awk '$1 == "dep" { print $2, $3 }' |
      while read -r mod ver; do
        dir=$(go env GOMODCACHE)/$(echo "$mod" | sed 's/[A-Z]/!\L&/g')@$ver
        lic=$(ls "$dir" | grep -E -i -m1 '^(license|copying)')
        echo
        echo "Files: vendor/$mod/*"
        if grep -q 'Apache License' "$dir/$lic" && grep -q 'Version 2.0' "$dir/$lic"; then
          echo "Copyright: the authors of $mod (see its NOTICE and AUTHORS files)"
          echo "License: Apache-2.0"
          echo " On Debian systems, the complete text of the Apache License 2.0 can be"
          echo " found in /usr/share/common-licenses/Apache-2.0."
        else
          holders=$(grep -E -i -m3 '^[# ]*copyright' "$dir/$lic" | sed 's/^[# ]*[Cc]opyright *//; s/^(c) *//; s/^(C) *//' |
            paste -sd';' | sed 's/;/\n           /g')
          echo "Copyright: ${holders:-the authors of $mod}"
          echo "License: $(basename "$mod")-license"
          # A dual license (libcap: BSD-3-Clause or GPL-2) may carry the whole GPL:
          # Debian has it in common-licenses, so the text stops there.
          awk '/^[[:space:]]*GNU GENERAL PUBLIC LICENSE/ { gpl = 1; exit } { print }
            END { if (gpl) print "\nOn Debian systems, the complete text of the GNU General Public License\nversion 2 can be found in /usr/share/common-licenses/GPL-2." }' "$dir/$lic" |
            sed -e 's/[[:space:]]*$//' -e 's/^$/./' -e 's/^/ /'
        fi
      done
  } >"$root/$doc/copyright"
  chmod 644 "$root/$doc/copyright"

  # The unit: systemd-analyze verify (with ExecStart pointed into the staged tree) and
  # an exposure score of at most 3.0 in systemd-analyze security.
  if command -v systemd-analyze >/dev/null; then
    mkdir -p "$build/unit"
    sed "s#/usr/lib/portsentry/start#$PWD/$root/usr/lib/portsentry/start#" \
      $pkg/portsentry.service >"$build/unit/portsentry.service"
    systemd-analyze verify --man=no "$build/unit/portsentry.service" ||
      { echo "build-deb: systemd-analyze verify failed" >&2; exit 1; }
    score=$(systemd-analyze security --offline=true --threshold=30 "$build/unit/portsentry.service" | tail -1) ||
      { echo "build-deb: $score (above 3.0)" >&2; exit 1; }
    echo "build-deb: systemd-analyze security: ${score#→ }"
  fi

  # Control files.
  for s in preinst postinst prerm postrm; do install -m 755 $pkg/$s "$root/DEBIAN/$s"; done
  install -m 644 $pkg/conffiles "$root/DEBIAN/conffiles"
  (cd "$root" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | sort -z |
    xargs -0 md5sum) >"$root/DEBIAN/md5sums"
  chmod 644 "$root/DEBIAN/md5sums"
  size=$(du -s -k --apparent-size --exclude=DEBIAN "$root" | cut -f1)
  sed -e "s/@VERSION@/$version/" -e "s/@ARCH@/$arch/" -e "s/@SIZE@/$size/" \
    -e "s/@MAINTAINER@/$maintainer/" $pkg/control >"$root/DEBIAN/control"
  chmod 644 "$root/DEBIAN/control"

  find "$root" -type d -exec chmod 755 {} +
  find "$root" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
  deb=dist/portsentry_${version}_${arch}.deb
  dpkg-deb --root-owner-group -Zxz --build "$root" "$deb" >/dev/null
  echo "build-deb: $deb ($(stat -c %s "$deb") bytes)"

  if command -v lintian >/dev/null; then
    lintian --allow-root --fail-on error --tag-display-limit 0 "$deb" || { echo "build-deb: lintian found errors in $deb" >&2; exit 1; }
  fi
done
