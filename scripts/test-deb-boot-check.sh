#!/bin/bash
# Runs inside the container that scripts/test-deb.sh boots with systemd-nspawn, as a
# oneshot unit ordered after portsentry.service (at boot, PortSentry 1.2's), with our
# package in /root/portsentry.deb; writes /root/result (its last line is PASS when every
# check held) and powers the container off. Not meant to run elsewhere.
exec >/root/result 2>&1
# Without D-Bus in the container, systemctl says so before it powers off anyway.
poweroff() { systemctl poweroff 2>&1 | grep -v "Failed to connect to bus" || true; }
journal() { journalctl -u portsentry.service --no-pager -o cat; }
# ours_active: our daemon (not 1.2, whose lines share the unit's journal) is up.
ours_active() { journal | awk '/PortSentry 2[.0-9]*-[0-9]* is starting/ { s = 1 } s && /is now active/ { f = 1 } END { exit !f }'; }
fail() {
  echo "FAIL: $*"
  systemctl status --no-pager portsentry.service
  journal | tail -40
  poweroff
  exit 1
}
ok() { echo "ok: $*"; }

# PortSentry 1.2, started at boot by its init script (one process per mode).
for _ in $(seq 100); do
  [ "$(pgrep -c -x portsentry)" -ge 2 ] && break
  sleep 0.1
done
old=$(pgrep -d ' ' -x portsentry)
[ "$(pgrep -c -x portsentry)" -ge 2 ] || fail "PortSentry 1.2 is not running at boot (pids: $old)"
ok "PortSentry $(dpkg-query -W -f='${Version}' portsentry) runs from its init script: $(for p in $old; do tr '\0' ' ' </proc/"$p"/cmdline; echo -n '; '; done)"

# The upgrade, while 1.2 runs and systemd is PID 1.
DEBIAN_FRONTEND=noninteractive apt-get install -y -q -o Dpkg::Options::=--force-confold \
  /root/portsentry.deb >/root/apt.log 2>&1 || fail "apt-get install: $(cat /root/apt.log)"
ok "apt-get install ./portsentry.deb: now $(dpkg-query -W -f='${Version}' portsentry)"
for p in $old; do
  [ ! -e /proc/"$p" ] || fail "1.2 process $p still runs: $(tr '\0' ' ' </proc/"$p"/cmdline)"
done
ok "the 1.2 processes are gone"
for _ in $(seq 100); do
  ours_active && break
  sleep 0.1
done
[ "$(systemctl is-active portsentry.service)" = active ] ||
  fail "portsentry.service is $(systemctl is-active portsentry.service)"
ours_active || fail "our daemon never said it is active"
pid=$(systemctl show -p MainPID --value portsentry.service)
cmd=$(tr '\0' ' ' </proc/"$pid"/cmdline)
[ "$cmd" = "/usr/sbin/portsentry -stcp -udp " ] || fail "main process: $cmd"
ok "portsentry.service active; main process: $cmd (modes from /etc/default/portsentry)"
for t in /proc/"$pid"/task/*; do
  eff=$(awk '/^CapEff/ {print $2}' "$t"/status)
  [ "$eff" = 0000000000003400 ] || fail "thread $t: CapEff $eff"
  amb=$(awk '/^CapAmb/ {print $2}' "$t"/status)
  [ "$amb" = 0000000000003000 ] || fail "thread $t: CapAmb $amb (the stock KILL_ROUTE needs NET_ADMIN NET_RAW)"
done
journal | grep -q "capabilities kept: cap_net_bind_service,cap_net_admin,cap_net_raw; commands get: cap_net_admin,cap_net_raw" ||
  fail "no or another capabilities line: $(journal | grep capabilities)"
grep -q '^NoNewPrivs:[[:space:]]*1' /proc/"$pid"/status || fail "NoNewPrivs not set"
grep -q '^Seccomp:[[:space:]]*2' /proc/"$pid"/status || fail "no seccomp filter"
ok "all $(ls /proc/"$pid"/task | wc -l) threads: CapEff 0x3400 (NET_BIND_SERVICE NET_ADMIN NET_RAW), CapAmb 0x3000 for the KILL_ commands; NoNewPrivs; seccomp filter"

# A scanner in a network namespace of its own, joined by a veth pair.
ip link add psa type veth peer name psb
ip netns add scan
ip link set psb netns scan
ip addr add 198.18.9.1/24 dev psa
ip link set psa up
ip -n scan addr add 198.18.9.2/24 dev psb
ip -n scan link set psb up
ip -n scan link set lo up
sleep 2 # the veth comes up, and the daemon sees the new address
ip netns exec scan bash -c 'echo probe >/dev/udp/198.18.9.1/31337'
hist=/var/lib/portsentry/portsentry.history
for _ in $(seq 100); do
  grep -q 198.18.9.2 $hist 2>/dev/null && ip route show | grep -q "blackhole 198.18.9.2" && break
  sleep 0.1
done
grep -q "Host: 198.18.9.2/198.18.9.2 Port: 31337 UDP Blocked" $hist || fail "no history line"
ok "history: $(grep 198.18.9.2 $hist)"
nft list set inet portsentry ban4 | grep -q 198.18.9.2 || fail "not in the nft set: $(nft list ruleset)"
ok "nftables backend: 198.18.9.2 is in inet portsentry ban4"
ip route show | grep -q "blackhole 198.18.9.2" || fail "KILL_ROUTE did not add the route"
ok "KILL_ROUTE ran under the hardening: $(ip route show | grep 'blackhole 198.18.9.2')"
grep -q "ALL: 198.18.9.2 : DENY" /etc/hosts.deny || fail "KILL_HOSTS_DENY did not write /etc/hosts.deny"
ok "KILL_HOSTS_DENY appended to /etc/hosts.deny"
# An nmap SYN scan from a second address of the scanner: -stcp sees it.
ip -n scan addr add 198.18.9.3/24 dev psb
sleep 1
ip netns exec scan nmap -sS -Pn -n -e psb -S 198.18.9.3 -p 1,11,15,79,111,119 198.18.9.1 >/root/nmap.log 2>&1 ||
  fail "nmap: $(cat /root/nmap.log)"
for _ in $(seq 100); do
  grep -q "Host: 198.18.9.3/198.18.9.3 Port: [0-9]* TCP Blocked" $hist && nft list set inet portsentry ban4 | grep -q 198.18.9.3 && break
  sleep 0.1
done
grep -q "Host: 198.18.9.3/198.18.9.3 Port: [0-9]* TCP Blocked" $hist || fail "the nmap SYN scan left no history line"
nft list set inet portsentry ban4 | grep -q 198.18.9.3 || fail "the nmap scanner is not in the nft set"
journal | grep -q "TCP SYN/Normal scan from host: 198.18.9.3/198.18.9.3" || fail "no SYN scan log line"
ok "nmap -sS from 198.18.9.3: $(grep 198.18.9.3 $hist | head -1); banned in nftables"
portsentry list | grep -q 198.18.9.2 || fail "portsentry list: $(portsentry list 2>&1)"
ok "portsentry list shows the ban (control socket in /run/portsentry)"

systemctl reload portsentry.service
for _ in $(seq 50); do
  journal | grep -q "Configuration reloaded" && break
  sleep 0.1
done
journal | grep -q "Configuration reloaded" || fail "systemctl reload did not reload"
[ "$(systemctl show -p MainPID --value portsentry.service)" = "$pid" ] || fail "reload changed the main process"
ok "systemctl reload: configuration reloaded by the same process"
systemctl stop portsentry.service
status=$(systemctl show -p ExecMainStatus --value portsentry.service)
[ "$status" = 0 ] || fail "systemctl stop: exit status $status"
ok "systemctl stop: exit status 0"
echo PASS
poweroff
