#!/usr/bin/env bash
# Installs the package over Debian's PortSentry 1.2 in throwaway Debian 12 systems and
# checks the upgrade, a fresh install and the purges:
#   - 1.2's edited portsentry.conf, portsentry.ignore.static, /etc/default/portsentry and
#     history survive the upgrade; its ppp hooks, the empty ppp directories and its
#     debconf note are gone, its init script is ours (rc.d links kept); without systemd
#     the init script starts the daemon detached, restarts and stops it;
#     /usr/sbin/portsentry is ours and accepts the admin's config; the installed daemon
#     starts with it and stops cleanly;
#   - purge leaves no file of the package, no /etc/default/portsentry, no history, and
#     no nftables table, tagged route or ipset (with its iptables rule) of the daemon;
#   - booted with systemd-nspawn, the upgraded system runs portsentry.service with the
#     admin's modes and settings, hardened, and it detects and blocks a probe from a
#     network namespace and an nmap SYN scan (scripts/test-deb-boot-check.sh runs inside).
# The chroot runs in its own network, mount and PID namespaces, the container in a
# private network: nothing they start can touch the host's network. Needs root,
# mmdebstrap and systemd-nspawn (scripts/install-deps.sh deb). The base tarball (minbase
# bookworm with Debian's portsentry, systemd and nmap, ~60 s to make, needs the mirror)
# is cached in dist/cache/; without it and without the mirror the test is skipped.
# Builds the amd64 package first unless DEB= names one.
#   scripts/test-deb.sh
set -euo pipefail
cd "$(dirname "$0")/.."

skip() { echo "test-deb: SKIP: $*"; exit 0; }
fail() { echo "test-deb: FAIL: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || skip "needs root (chroot, namespaces)"
command -v unshare >/dev/null || skip "unshare not found"
arch=$(dpkg --print-architecture)

# What the base has besides minbase; the cache's name changes with the list.
include=portsentry,nftables,iproute2,systemd,nmap,ipset,iptables
cache=dist/cache/bookworm-minbase-$(echo "$include" | md5sum | cut -c1-8)-$arch.tar
if [ ! -s "$cache" ]; then
  command -v mmdebstrap >/dev/null || skip "mmdebstrap not installed (scripts/install-deps.sh deb)"
  mkdir -p dist/cache
  echo "test-deb: making $cache (minbase bookworm with $include)"
  if ! mmdebstrap --quiet --variant=minbase --format=tar --include="$include" \
    bookworm "$cache.tmp" >dist/cache/mmdebstrap.log 2>&1; then
    rm -f "$cache.tmp"
    skip "mmdebstrap could not build the base (no Debian mirror?): see dist/cache/mmdebstrap.log"
  fi
  mv "$cache.tmp" "$cache"
fi

deb=${DEB:-}
if [ -z "$deb" ]; then
  scripts/build-deb.sh "$arch" >/dev/null
  deb=dist/portsentry_$(scripts/version.sh -release)_$arch.deb
fi
[ -s "$deb" ] || fail "no package $deb"
version=$(dpkg-deb -f "$deb" Version)

root=$(mktemp -d /tmp/test-deb.XXXXXX)
trap 'rm -rf "$root"' EXIT
tar -C "$root" -xf "$cache"
cp "$deb" "$root/tmp/portsentry.deb"
dpkg-deb -c "$deb" | awk '$1 !~ /^d/ { sub(/^\./, "", $6); print $6 }' >"$root/tmp/files"

cat >"$root/tmp/test.sh" <<'EOF'
set -eu
fail() { echo "test-deb: FAIL: $*" >&2; exit 1; }
ok() { echo "test-deb: ok: $*"; }
export DEBIAN_FRONTEND=noninteractive PATH=/usr/sbin:/usr/bin:/sbin:/bin
ip link set lo up

old=$(dpkg-query -W -f='${Version}' portsentry)
case $old in 1.2-*) ok "Debian's portsentry $old installed" ;; *) fail "base has portsentry $old" ;; esac
[ -x /etc/init.d/portsentry ] && [ -e /etc/ppp/ip-up.d/portsentry ] || fail "1.2's init script or ppp hook missing"
ls /etc/rc2.d/S*portsentry >/dev/null || fail "1.2 left no rc.d links"
debconf-show portsentry | grep -q warn_no_block || echo "test-deb: note: no debconf note of 1.2 to remove"

# The admin's edits.
sed -i 's/^SCAN_TRIGGER="0"/SCAN_TRIGGER="2"/' /etc/portsentry/portsentry.conf
echo "192.0.2.7" >>/etc/portsentry/portsentry.ignore.static
sed -i 's/^TCP_MODE=.*/TCP_MODE="stcp"/' /etc/default/portsentry
line="1795535595 - 11/24/2026 15:53:15 Host: 10.99.0.2/10.99.0.2 Port: 143 TCP Blocked"
mkdir -p /var/lib/portsentry
echo "$line" >>/var/lib/portsentry/portsentry.history

# The upgrade, as the README has it (apt, offline: every dependency is there).
apt-get install -y -q -o Dpkg::Options::=--force-confold /tmp/portsentry.deb >/tmp/apt.log 2>&1 ||
  { cat /tmp/apt.log; fail "apt-get install of our package"; }
new=$(dpkg-query -W -f='${Version} ${db:Status-Abbrev}' portsentry)
[ "$new" = "$VERSION ii " ] || fail "after the upgrade dpkg says: $new"
ok "upgraded to $new"
/usr/sbin/portsentry version | grep -q "portsentry $VERSION " || fail "portsentry version: $(/usr/sbin/portsentry version)"
ok "$(/usr/sbin/portsentry version)"
grep -q '^SCAN_TRIGGER="2"' /etc/portsentry/portsentry.conf || fail "edited portsentry.conf lost"
grep -q '^192.0.2.7$' /etc/portsentry/portsentry.ignore.static || fail "edited ignore.static lost"
grep -q '^TCP_MODE="stcp"' /etc/default/portsentry || fail "edited /etc/default/portsentry lost"
grep -qxF "$line" /var/lib/portsentry/portsentry.history || fail "history lost"
ok "the admin's portsentry.conf, ignore.static, /etc/default/portsentry and history kept"
for f in /etc/ppp/ip-up.d/portsentry /etc/ppp/ip-down.d/portsentry \
  /usr/lib/portsentry/portsentry-build-ignore-file; do
  [ ! -e "$f" ] || fail "$f still there"
done
[ ! -e /etc/ppp ] || fail "/etc/ppp left: $(find /etc/ppp)"
[ -z "$(debconf-show portsentry 2>/dev/null)" ] || fail "debconf still has: $(debconf-show portsentry)"
ok "1.2's ppp hooks and directories and debconf note removed"
grep -q 'portsentry 2 (Go) init script' /etc/init.d/portsentry || fail "/etc/init.d/portsentry is not ours"
ls /etc/rc2.d/S*portsentry >/dev/null || fail "the rc.d links are gone"
ok "/etc/init.d/portsentry replaced by ours; its rc.d links kept"

# Without systemd, the init script (as sysvinit runs it at boot; invoke-rc.d in
# postinst does not start services in a chroot, which has no runlevel): it returns at
# once, and one detached process runs both modes.
timeout 20 /etc/init.d/portsentry start >/tmp/start.log 2>&1 || { cat /tmp/start.log; fail "init script start"; }
/etc/init.d/portsentry status >/tmp/status.log || { cat /tmp/status.log; fail "init script: not running after start"; }
ipid=$(cat /run/portsentry/portsentry.pid)
cmd=$(tr '\0' ' ' </proc/"$ipid"/cmdline)
[ "$cmd" = "/usr/sbin/portsentry -stcp -udp -syslog " ] || fail "init script started: $cmd"
portsentry status >/tmp/pstatus.log 2>&1 || { cat /tmp/pstatus.log; fail "portsentry status with the init script's daemon"; }
ok "init script: $(cat /tmp/status.log): $cmd"
timeout 20 /etc/init.d/portsentry restart >/dev/null || fail "init script restart"
[ "$(cat /run/portsentry/portsentry.pid)" != "$ipid" ] || fail "restart kept pid $ipid"
timeout 20 /etc/init.d/portsentry stop >/dev/null || fail "init script stop"
rc=0
/etc/init.d/portsentry status >/dev/null || rc=$?
[ $rc = 3 ] || fail "init script status after stop: $rc, want 3"
left=$(for p in /proc/[0-9]*; do [ "$(readlink "$p/exe" 2>/dev/null)" != /usr/sbin/portsentry ] || echo "${p#/proc/}"; done)
[ -z "$left" ] || fail "a daemon is left after stop: pid $left"
ok "init script restart and stop; status 3 after it"
[ -e /etc/systemd/system/multi-user.target.wants/portsentry.service ] || fail "service not enabled"
ok "portsentry.service enabled"

/usr/sbin/portsentry check-config -stcp -udp >/tmp/check.log 2>&1 || { cat /tmp/check.log; fail "check-config rejects the admin's config"; }
grep -q 'SCAN_TRIGGER="2"' /tmp/check.log || fail "check-config does not show the admin's SCAN_TRIGGER"
ok "check-config accepts the admin's config"
args=$(PORTSENTRY_DAEMON=/bin/echo /usr/lib/portsentry/start)
[ "$args" = "-stcp -udp" ] || fail "the service would run: portsentry $args"
ok "the service runs: portsentry $args (from /etc/default/portsentry)"

# The installed daemon, with the admin's config and modes, in this network namespace.
/usr/sbin/portsentry -stcp -udp >/tmp/daemon.log 2>&1 &
pid=$!
for _ in $(seq 50); do grep -q "is now active" /tmp/daemon.log && break; sleep 0.1; done
grep -q "is now active" /tmp/daemon.log || { cat /tmp/daemon.log; fail "the daemon did not come up"; }
kill -TERM $pid
wait $pid || { cat /tmp/daemon.log; fail "the daemon exited with $?"; }
ok "the installed daemon came up with -stcp -udp and stopped cleanly on SIGTERM"

# Kernel state the daemon's native backends leave: purge must take it away.
# A second process's (Debian's -udp beside -tcp) are named after its modes.
nft add table inet portsentry
nft add table inet portsentry_udp
nft add table inet other
ip route add blackhole 198.51.100.7 proto 181
ip route add blackhole 198.51.100.9 proto 180 metric 1253872004
ip route add blackhole 198.51.100.8 proto static
for f in 4 6; do
  if [ $f = 4 ]; then ipt=iptables fam=inet; else ipt=ip6tables fam=inet6; fi
  for set in portsentry$f portsentry-udp$f; do
    ipset create $set hash:net family $fam timeout 0
    $ipt -I INPUT -m set --match-set $set src -j DROP
  done
done
ipset create other4 hash:net
dpkg --purge portsentry >/tmp/purge.log 2>&1 || { cat /tmp/purge.log; fail "purge"; }
dpkg-query -W -f='${db:Status-Abbrev}' portsentry 2>/dev/null | grep -q '^i' && fail "still installed"
left=$(while read -r f; do [ ! -e "$f" ] || echo "$f"; done </tmp/files)
[ -z "$left" ] || fail "purge left: $left"
for f in /etc/portsentry /etc/default/portsentry /var/lib/portsentry /run/portsentry; do
  [ ! -e "$f" ] || fail "purge left $f: $(find $f)"
done
nft list table inet portsentry >/dev/null 2>&1 && fail "purge left table inet portsentry"
nft list table inet portsentry_udp >/dev/null 2>&1 && fail "purge left table inet portsentry_udp"
nft list table inet other >/dev/null 2>&1 || fail "purge removed someone else's table"
ip route show proto 181 | grep -q . && fail "purge left routes with proto 181"
ip route show proto 180 | grep -q . && fail "purge left routes with proto 180"
ip route show | grep -q 198.51.100.8 || fail "purge removed someone else's route"
ipset list -n | grep -q '^portsentry' && fail "purge left ipsets: $(ipset list -n)"
iptables -S INPUT | grep -q match-set && fail "purge left: $(iptables -S INPUT | grep match-set)"
ip6tables -S INPUT | grep -q match-set && fail "purge left: $(ip6tables -S INPUT | grep match-set)"
ipset list -n | grep -q '^other4$' || fail "purge removed someone else's ipset"
ok "purge removed every file, the nft tables, the tagged routes, the ipsets and their rules, and nothing else"

# A fresh installation, without 1.2 before it.
dpkg -i /tmp/portsentry.deb >/tmp/fresh.log 2>&1 || { cat /tmp/fresh.log; fail "fresh install"; }
grep -q '^TCP_MODE="tcp"' /etc/default/portsentry || fail "fresh install: no /etc/default/portsentry"
args=$(PORTSENTRY_DAEMON=/bin/echo /usr/lib/portsentry/start)
[ "$args" = "-tcp -udp" ] || fail "fresh install: the service would run: portsentry $args"
dpkg --purge portsentry >/tmp/purge.log 2>&1 || { cat /tmp/purge.log; fail "second purge"; }
left=$(while read -r f; do [ ! -e "$f" ] || echo "$f"; done </tmp/files)
[ -z "$left" ] && [ ! -e /etc/default/portsentry ] || fail "second purge left: $left"
ok "fresh install makes /etc/default/portsentry (tcp, udp); purge removes it all"
EOF

start=$(date +%s)
unshare --net --mount --pid --fork --mount-proc="$root/proc" \
  chroot "$root" env VERSION="$version" /bin/sh /tmp/test.sh
echo "test-deb: the chroot part passed ($(($(date +%s) - start)) s)"

# The service under systemd: a fresh copy of the base gets the admin's settings for 1.2
# made to block (modes stcp and udp, BLOCK_ on, KILL_ROUTE with ip, KILL_HOSTS_DENY, and
# our nftables backend, which 1.2 ignores), and is booted with systemd-nspawn in a
# private network, so that 1.2 runs from its init script as on a real machine.
# scripts/test-deb-boot-check.sh, run inside as a unit after portsentry.service,
# upgrades 1.2 to our package with apt while it runs, probes the new service from a
# network namespace of its own, checks what it did and powers the container off.
if ! command -v systemd-nspawn >/dev/null; then
  echo "test-deb: SKIP: the service under systemd: systemd-nspawn not installed (scripts/install-deps.sh deb)"
  echo "test-deb: all passed except that ($deb)"
  exit 0
fi
rm -rf "$root"
mkdir -p "$root"
tar -C "$root" -xf "$cache"
cp "$deb" "$root/root/portsentry.deb" # /tmp is a tmpfs once booted
cat >"$root/tmp/admin.sh" <<'EOF'
set -eu
conf=/etc/portsentry/portsentry.conf
sed -i 's/^TCP_MODE=.*/TCP_MODE="stcp"/' /etc/default/portsentry
sed -i 's/^BLOCK_UDP="0"/BLOCK_UDP="1"/; s/^BLOCK_TCP="0"/BLOCK_TCP="1"/' $conf
sed -i 's|^KILL_ROUTE=.*|KILL_ROUTE="/sbin/ip route add blackhole $TARGET$"|' $conf
echo 'BLOCK_BACKEND="nftables"' >>$conf
touch /etc/hosts.deny
EOF
chroot "$root" /bin/sh /tmp/admin.sh
install -m 755 scripts/test-deb-boot-check.sh "$root/root/check.sh"
cat >"$root/etc/systemd/system/portsentry-check.service" <<'EOF'
[Unit]
Description=scripts/test-deb.sh checks
After=portsentry.service

[Service]
Type=oneshot
ExecStart=/root/check.sh

[Install]
WantedBy=multi-user.target
EOF
ln -s /etc/systemd/system/portsentry-check.service "$root/etc/systemd/system/multi-user.target.wants/"
start=$(date +%s)
timeout 180 systemd-nspawn -D "$root" --boot --private-network --register=no --keep-unit --quiet \
  >dist/cache/nspawn.log 2>&1 || true
[ -s "$root/root/result" ] || fail "the container wrote no result: see dist/cache/nspawn.log"
sed 's/^/test-deb: boot: /' "$root/root/result"
grep -qx PASS "$root/root/result" || fail "the service under systemd (console log in dist/cache/nspawn.log)"
echo "test-deb: all passed ($deb; the booted container: $(($(date +%s) - start)) s)"
