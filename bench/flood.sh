#!/usr/bin/env bash
# bench/flood.sh: stealth capture under a spoofed SYN flood, side by side.
#
# Builds two network namespaces joined by a veth pair (defended 198.18.200.1/24,
# scanner 198.18.200.2/24) and, for each contender in turn, runs it in the defended
# namespace while the scanner floods it with
#     hping3 --flood --rand-source -S -p 31337 198.18.200.1
# bounded in time (timeout) and in packets (bench/cmd/txbound: hping3 --flood ignores
# -c). Contenders:
#     tcpdump   tcpdump -w /dev/null with an equivalent filter: the cost of capturing
#     ours      bin/portsentry -stcp, BLOCK_TCP=0 (ROUNDS times, alternating with
#               tcpdump; once more for 2*DURATION, to see whether its memory grows with
#               the number of distinct sources; and once with every source in
#               IGNORE_FILE, which leaves the capture path alone)
#     classic   Debian's /usr/sbin/portsentry -stcp, blocking with blackhole routes
#               (it reports hosts, not packets: its "seen" is hosts acted on)
# then, unless PAIRED=0, ROUNDS more floods with tcpdump and ours running side by side,
# each's CPU read from the scheduler's nanosecond counters: both then pay for the same
# packets at the same moment, which a shared, noisy machine cannot skew between them;
# then an "established" scenario: a bulk TCP transfer into a port below
# ADVANCED_PORTS_TCP while ours runs -atcp, to show that established traffic costs it
# nothing. Everything is measured in one run and compared with tcpdump measured in the
# same run (the machine may be shared and noisy). See docs/performance.md.
#
# Usage: sudo bench/flood.sh
# Environment:
#   DURATION=5            seconds of each flood (ours also runs 2*DURATION)
#   ROUNDS=3              tcpdump/ours pairs, run in ABBA order; ratios use the sums
#   MAX_PACKETS=3000000   packet bound of each flood
#   BULK_BYTES=1073741824 bytes of the established transfer (0 skips the scenario)
#   BULK_TIMEOUT=30       seconds bound of the established transfer
#   BULK_GSO=1500         gso_max_size of the sender's veth during the transfer, so that
#                         every MTU-sized segment crosses the filter as its own packet;
#                         empty keeps the kernel's 64 KB super-packets
#   PAIRED=1              0 skips the side-by-side rounds (tcpdump and ours on the same floods)
#   SCENARIO=debian       our daemon's settings: debian (Debian's defaults: SCAN_TRIGGER=0,
#                         BLOCK_TCP=0) or hardened (SCAN_TRIGGER=3, BLOCK_TCP=1 with
#                         BLOCK_BACKEND=nftables and no classic commands)
#   CONTENDERS="tcpdump ours classic"
#   PORTSENTRY=           our binary; empty: build bin/portsentry from ./cmd/portsentry
#   CLASSIC=/usr/sbin/portsentry
#   KEEP=0                1: keep the work directory (logs, configs) and print its path
#   PROFILE=              a directory: record a CPU profile of each run of ours there
#                         (perf record -e cpu-clock -g; perf report -i DIR/LABEL.data)
set -euo pipefail

DURATION=${DURATION:-5}
ROUNDS=${ROUNDS:-3}
MAX_PACKETS=${MAX_PACKETS:-3000000}
BULK_BYTES=${BULK_BYTES:-1073741824}
BULK_TIMEOUT=${BULK_TIMEOUT:-30}
BULK_GSO=${BULK_GSO-1500}
PAIRED=${PAIRED:-1}
SCENARIO=${SCENARIO:-debian}
CONTENDERS=${CONTENDERS:-tcpdump ours classic}
PORTSENTRY=${PORTSENTRY:-}
CLASSIC=${CLASSIC:-/usr/sbin/portsentry}
KEEP=${KEEP:-0}
PROFILE=${PROFILE:-}

PORT=31337
SETTLE=1.2 # seconds after a flood before the contender is measured and stopped
BULK_PORT=80
DEF_ADDR=198.18.200.1
SCAN_ADDR=198.18.200.2
NSD=pfb$$d # defended namespace, and its veth
NSS=pfb$$s # scanner namespace, and its veth
FILTER='tcp[tcpflags] & (tcp-ack|tcp-rst) == 0 and dst port 31337'
READY='PortSentry is now active and listening.'

say() { printf 'flood.sh: %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

# ---------------------------------------------------------------- preconditions
[ "$(id -u)" = 0 ] || die "must run as root (it creates network namespaces): sudo $0"
[[ $DURATION =~ ^[1-9][0-9]*$ ]] || die "DURATION must be a whole number of seconds, got '$DURATION'"
[[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || die "ROUNDS must be a positive integer"
[[ $MAX_PACKETS =~ ^[1-9][0-9]*$ ]] || die "MAX_PACKETS must be a positive integer"
[[ $BULK_BYTES =~ ^[0-9]+$ ]] || die "BULK_BYTES must be a number of bytes"
case $SCENARIO in
  debian) SCENARIO_SETTINGS=("BLOCK_TCP=0" "SCAN_TRIGGER=0") ;;
  hardened) SCENARIO_SETTINGS=("BLOCK_TCP=1" "SCAN_TRIGGER=3" "BLOCK_BACKEND=nftables" "KILL_ROUTE=" "KILL_HOSTS_DENY=") ;;
  *) die "SCENARIO must be debian or hardened, got '$SCENARIO'" ;;
esac
missing=()
for tool in ip hping3 tcpdump go timeout getconf awk mount; do
  command -v "$tool" >/dev/null || missing+=("$tool")
done
[ -z "$PROFILE" ] || command -v perf >/dev/null || die "PROFILE needs perf (Debian: apt-get install linux-perf)"
if [ ${#missing[@]} -ne 0 ]; then
  hint="Debian: scripts/install-deps.sh test installs them"
  [[ " ${missing[*]} " != *" go "* ]] || hint="$hint; Go 1.26 is needed too, and sudo may drop it from PATH: sudo env PATH=\"\$PATH\" $0"
  die "missing tools: ${missing[*]} ($hint)"
fi
HZ=$(getconf CLK_TCK)
want() { [[ " $CONTENDERS " == *" $1 "* ]]; }
if want classic && [ ! -x "$CLASSIC" ]; then
  say "note: $CLASSIC not found: skipping Debian's portsentry (apt-get install portsentry)"
  CONTENDERS=${CONTENDERS//classic/}
fi
if want classic && [ ! -r /etc/portsentry/portsentry.conf ]; then
  say "note: /etc/portsentry/portsentry.conf not found: skipping Debian's portsentry"
  CONTENDERS=${CONTENDERS//classic/}
fi

# ---------------------------------------------------------------- cleanup
T=$(mktemp -d /tmp/pfb.XXXXXX)
STARTED=()
track() { STARTED+=("$1"); }
untrack() { # PID: it is gone and reaped; never signal that number again
  local keep=() p
  for p in "${STARTED[@]}"; do [ "$p" = "$1" ] || keep+=("$p"); done
  STARTED=("${keep[@]}")
}

alive() { # PID: exists and is not a zombie
  local s
  s=$(awk '{ sub(/^.*\) /, ""); print $1 }' "/proc/$1/stat" 2>/dev/null) || return 1
  [ -n "$s" ] && [ "$s" != Z ]
}

stop_pid() { # PID [SECONDS]: SIGTERM, wait, then SIGKILL
  local pid=$1 limit=$((${2:-10} * 20)) i
  alive "$pid" || { wait "$pid" 2>/dev/null || true; untrack "$pid"; return 0; }
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < limit; i++)); do alive "$pid" || break; sleep 0.05; done
  if alive "$pid"; then
    say "pid $pid ignored SIGTERM; killing it"
    kill -KILL "$pid" 2>/dev/null || true
    for ((i = 0; i < 40; i++)); do alive "$pid" || break; sleep 0.05; done
  fi
  wait "$pid" 2>/dev/null || true
  alive "$pid" || untrack "$pid"
}

cleanup() {
  local rc=$? pid
  set +e
  for pid in "${STARTED[@]}"; do stop_pid "$pid" 3; done
  ip netns del "$NSD" 2>/dev/null
  ip netns del "$NSS" 2>/dev/null
  if [ "$KEEP" = 1 ]; then say "work directory kept: $T"; else rm -rf "$T"; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------- build
say "building the helpers and our daemon ..."
(cd "$ROOT" && go build -o "$T/bin/" ./bench/cmd/txbound ./bench/cmd/bulk ./bench/cmd/syslogsink) ||
  die "cannot build the helpers under bench/cmd"
OURS_WHY=""
if want ours; then
  if [ -z "$PORTSENTRY" ]; then
    PORTSENTRY=$ROOT/bin/portsentry
    if ! (cd "$ROOT" && go build -ldflags "-X main.version=$(scripts/version.sh)" -o bin/portsentry ./cmd/portsentry) >"$T/build.log" 2>&1; then
      OURS_WHY="build failed: $(head -c 300 "$T/build.log" | tr '\n' ' ')"
    fi
  fi
  [ -n "$OURS_WHY" ] || [ -x "$PORTSENTRY" ] || OURS_WHY="$PORTSENTRY is not executable"
fi

# ---------------------------------------------------------------- network
ip netns add "$NSD"
ip netns add "$NSS"
ip link add "$NSD" type veth peer name "$NSS"
ip link set "$NSD" netns "$NSD"
ip link set "$NSS" netns "$NSS"
ip -n "$NSD" addr add "$DEF_ADDR/24" dev "$NSD"
ip -n "$NSS" addr add "$SCAN_ADDR/24" dev "$NSS"
for ns in "$NSD" "$NSS"; do
  ip -n "$ns" link set lo up
  ip -n "$ns" link set "$ns" up
done

ifstat() { # NS COUNTER: a counter of the namespace's veth
  ip netns exec "$1" cat "/sys/class/net/$1/statistics/$2"
}

# ---------------------------------------------------------------- measuring
ticks() { # PID: CPU clock ticks of the process and its waited-for children
  awk '{ sub(/^.*\) /, ""); print $12 + $13 + $14 + $15 }' "/proc/$1/stat"
}
hwm_kib() { awk '/^VmHWM:/ { print $2 }' "/proc/$1/status"; }
cpu_ns() { # PID: CPU time of the process's threads in nanoseconds (schedstat), to the ns
  local s=0 f a
  for f in /proc/"$1"/task/*/schedstat; do
    read -r a _ <"$f" 2>/dev/null && s=$((s + a))
  done
  echo "$s"
}

wait_idle() { # PID: until its CPU time stops moving (the flood's backlog is drained), at most 10 s
  local pid=$1 a b i
  # First let the capture ring's last, partly filled block retire: TPACKET_V3 hands it to
  # user space only after its timeout (tcpdump's is 1 s).
  sleep "$SETTLE"
  a=$(ticks "$pid" 2>/dev/null) || return 0
  for ((i = 0; i < 40; i++)); do
    sleep 0.25
    b=$(ticks "$pid" 2>/dev/null) || return 0
    [ "$b" -le $((a + 1)) ] && return 0
    a=$b
  done
  say "pid $pid still busy 10 s after the flood; measuring anyway"
}

wait_line() { # FILE PATTERN SECONDS PID: 0 found; 1 timed out; 2 process exited
  local file=$1 pat=$2 limit=$(($3 * 20)) pid=$4 i
  for ((i = 0; i < limit; i++)); do
    grep -qF -- "$pat" "$file" 2>/dev/null && return 0
    [ -z "$pid" ] || alive "$pid" || { grep -qF -- "$pat" "$file" 2>/dev/null && return 0; return 2; }
    sleep 0.05
  done
  return 1
}

F_SENT=0 F_RX=0 F_RXDROP=0 F_SECS=0 F_CAPPED=false
flood() { # SECONDS LABEL
  local secs=$1 label=$2 rx0 rd0 out=$T/hping-$2.out
  rx0=$(ifstat "$NSD" rx_packets)
  rd0=$(ifstat "$NSD" rx_dropped)
  ip netns exec "$NSS" "$T/bin/txbound" -iface "$NSS" -max "$MAX_PACKETS" -- \
    timeout -s INT "$secs" hping3 --flood --rand-source -S -p "$PORT" "$DEF_ADDR" >"$out" 2>&1 &
  local pid=$!
  track "$pid"
  wait "$pid" || true
  untrack "$pid"
  local line
  line=$(grep '^txbound:' "$out") || die "flood $label: no result from txbound:
$(cat "$out")"
  F_SENT=$(sed -n 's/.*sent=\([0-9]*\).*/\1/p' <<<"$line")
  F_CAPPED=$(sed -n 's/.*capped=\([a-z]*\).*/\1/p' <<<"$line")
  F_SECS=$(sed -n 's/.*seconds=\([0-9.]*\).*/\1/p' <<<"$line")
  F_RX=$(($(ifstat "$NSD" rx_packets) - rx0))
  F_RXDROP=$(($(ifstat "$NSD" rx_dropped) - rd0))
  say "  flood: sent $F_SENT in ${F_SECS}s ($(awk -v n="$F_SENT" -v s="$F_SECS" 'BEGIN { printf "%.0f", n / s }') pkt/s), defended veth received $F_RX, dropped $F_RXDROP$([ "$F_CAPPED" = true ] && echo ", stopped at MAX_PACKETS")"
}

# Results: one row per run.
ROWS=()
row() { # LABEL SENT SEEN DROPS CPU_NS HWM_KIB NOTE
  ROWS+=("$1|$2|$3|$4|$5|$6|$7")
}
na_row() { ROWS+=("$1|-|-|-|-|-|$2"); }

# Settings applied to Debian's shipped config: KEY=VALUE replaces the active line for
# KEY or is appended (as the test suite's testnet.ApplySettings does).
apply_settings() { # SRC DST KEY=VALUE...
  local src=$1 dst=$2
  shift 2
  awk -v n=$# -v kv="$(printf '%s\n' "$@")" '
    BEGIN { split(kv, a, "\n"); for (i = 1; i <= n; i++) { k = a[i]; sub(/=.*/, "", k); v = a[i]; sub(/^[^=]*=/, "", v); key[i] = k; val[i] = v } }
    {
      if (match($0, /^[A-Z_]+[ \t]*=/)) {
        k = substr($0, 1, RLENGTH - 1); sub(/[ \t]+$/, "", k)
        for (i = 1; i <= n; i++) if (key[i] == k && !done[i]) { print k "=\"" val[i] "\""; done[i] = 1; next }
      }
      print
    }
    END { for (i = 1; i <= n; i++) if (!done[i]) print key[i] "=\"" val[i] "\"" }
  ' "$src" >"$dst"
}

ours_conf() { # DIR [IGNORE_ALL]: writes DIR/portsentry.conf for our daemon
  local d=$1
  mkdir -p "$d"
  printf '127.0.0.1/32\n0.0.0.0\n' >"$d/portsentry.ignore"
  [ "${2:-}" != all ] || printf '0.0.0.0/0\n::/0\n' >>"$d/portsentry.ignore"
  local base=/etc/portsentry/portsentry.conf
  [ -r "$base" ] || { base=$ROOT/testdata/config/debian-portsentry.conf; }
  apply_settings "$base" "$d/portsentry.conf" \
    "TCP_PORTS=$PORT" "ADVANCED_PORTS_TCP=1024" "ADVANCED_EXCLUDE_TCP=113,139" \
    "IGNORE_FILE=$d/portsentry.ignore" "HISTORY_FILE=$d/portsentry.history" \
    "BLOCKED_FILE=$d/portsentry.blocked" "HOSTS_DENY_FILE=$d/hosts.deny" \
    "BLOCK_UDP=0" "RESOLVE_HOST=0" "BAN_JOURNAL=$d/portsentry.bans" "CONTROL_SOCKET=" "${SCENARIO_SETTINGS[@]}"
}

# ---------------------------------------------------------------- contenders
run_tcpdump() { # LABEL SECONDS
  local label=$1 secs=$2 err=$T/tcpdump-$1.err
  say "$label: tcpdump -i $NSD -w /dev/null '$FILTER'"
  ip netns exec "$NSD" tcpdump -i "$NSD" -w /dev/null -n "$FILTER" 2>"$err" &
  local pid=$!
  track "$pid"
  if ! wait_line "$err" "listening on" 10 "$pid"; then
    na_row "$label" "tcpdump did not start: $(tr '\n' ' ' <"$err")"
    stop_pid "$pid"
    return
  fi
  local t0 t1 hwm
  t0=$(cpu_ns "$pid")
  flood "$secs" "$label"
  wait_idle "$pid"
  t1=$(cpu_ns "$pid")
  hwm=$(hwm_kib "$pid")
  stop_pid "$pid"
  local captured dropped
  captured=$(awk '/packets captured/ { print $1 }' "$err")
  dropped=$(awk '/packets dropped by kernel/ { print $1 }' "$err")
  row "$label" "$F_SENT" "${captured:-?}" "${dropped:-?}" $((t1 - t0)) "$hwm" \
    "received by filter $(awk '/received by filter/ { print $1 }' "$err")"
}

start_ours() { # DIR MODE: starts our daemon; sets OURS_PID, or OURS_WHY when it cannot run
  local d=$1 mode=$2
  ip netns exec "$NSD" "$PORTSENTRY" -c "$d/portsentry.conf" "-$mode" 2>"$d/stderr" &
  OURS_PID=$!
  track "$OURS_PID"
  local rc=0
  wait_line "$d/stderr" "$READY" 15 "$OURS_PID" || rc=$?
  local bad
  bad=$(grep -E "not available in this build|ERROR|flag provided but not defined" "$d/stderr" | head -3 | sed 's/.*\(adminalert\|securityalert\): //' | tr '\n' ' ') || true
  if [ $rc -ne 0 ] || [ -n "$bad" ]; then
    case $rc in
      1) OURS_WHY="-$mode: not ready after 15 s" ;;
      2) OURS_WHY="-$mode: exited at start" ;;
      *) OURS_WHY="-$mode" ;;
    esac
    [ -z "$bad" ] || OURS_WHY="$OURS_WHY: $bad"
    [ -n "$bad" ] || OURS_WHY="$OURS_WHY: $(tail -n 2 "$d/stderr" | tr '\n' ' ')"
    stop_pid "$OURS_PID"
    OURS_PID=
    return 1
  fi
}

counter() { # FILE NAME: NAME=N from the last stealth-counter line
  grep -o "stealth sensor:.*" "$1" | tail -n 1 | grep -o "[ ,]$2=[0-9]*" | head -n 1 | sed 's/.*=//'
}

OURS_HWM=()
run_ours() { # LABEL SECONDS [IGNORE_ALL]
  local label=$1 secs=$2 ign=${3:-} d=$T/$1
  if [ -n "$OURS_WHY" ]; then na_row "$label" "not available: $OURS_WHY"; return; fi
  say "$label: portsentry -c CONF -stcp (BLOCK_TCP=0${ign:+, every source in IGNORE_FILE})"
  ours_conf "$d" "$ign"
  if ! start_ours "$d" stcp; then na_row "$label" "not available: $OURS_WHY"; return; fi
  local pid=$OURS_PID t0 t1 hwm perf=
  if [ -n "$PROFILE" ]; then
    mkdir -p "$PROFILE"
    perf record -q -e cpu-clock -g -o "$PROFILE/$label.data" -p "$pid" >/dev/null 2>&1 &
    perf=$!
    track "$perf"
  fi
  t0=$(cpu_ns "$pid")
  flood "$secs" "$label"
  wait_idle "$pid"
  t1=$(cpu_ns "$pid")
  if [ -n "$perf" ]; then
    kill -INT "$perf" 2>/dev/null || true
    wait "$perf" || true
    untrack "$perf"
  fi
  hwm=$(hwm_kib "$pid")
  stop_pid "$pid" 20
  local frames drops probes hist note
  frames=$(counter "$d/stderr" frames)
  drops=$(counter "$d/stderr" kernel_drops)
  probes=$(counter "$d/stderr" probes)
  hist=$(wc -l <"$d/portsentry.history" 2>/dev/null || echo 0)
  note="history lines $hist"
  [ -z "$probes" ] || note="probes $probes, $note"
  if [ -z "$frames" ]; then
    note="no stealth-counter line at shutdown: seen = history lines (one per distinct source); $note"
    frames=$hist
    drops="?"
  fi
  local qd
  qd=$(grep -o "queue full: [0-9]* detections dropped" "$d/stderr" | tail -n 1 | grep -o "[0-9]*") || true
  [ -z "$qd" ] || note="$note, response queue drops $qd"
  [ -n "$ign" ] && note="every source ignored: capture, decode and ignore check only; $note" ||
    OURS_HWM+=("$label:$hwm:$F_SENT")
  row "$label" "$F_SENT" "$frames" "${drops:-?}" $((t1 - t0)) "$hwm" "$note"
}

# Debian's PortSentry reads the compiled-in /etc/portsentry/portsentry.conf, appends to
# /etc/hosts.deny and logs only to /dev/log. As the test suite does
# (internal/testnet/classic.go), it runs in the private mount namespace that
# `ip netns exec` creates, in which /etc and /dev are tmpfs copies made of symlinks to the
# real entries except for those three paths. Nothing outside that namespace changes.
CLASSIC_SCRIPT='set -eu
mount --make-rprivate /
for d in etc dev; do
  mkdir -p "$PS_RUN/old-$d" "$PS_RUN/new-$d"
  mount --rbind "/$d" "$PS_RUN/old-$d"
  mount -t tmpfs -o mode=755 pfbench "$PS_RUN/new-$d"
  for e in /$d/* /$d/.[!.]*; do
    [ -e "$e" ] || [ -L "$e" ] || continue
    n=${e##*/}
    if [ -L "$e" ]; then ln -s "$(readlink "$e")" "$PS_RUN/new-$d/$n"
    else ln -s "$PS_RUN/old-$d/$n" "$PS_RUN/new-$d/$n"; fi
  done
done
rm -f "$PS_RUN/new-etc/hosts.deny" "$PS_RUN/new-etc/portsentry" "$PS_RUN/new-dev/log"
ln -s "$PS_RUN/hosts.deny" "$PS_RUN/new-etc/hosts.deny"
ln -s "$PS_RUN/conf" "$PS_RUN/new-etc/portsentry"
ln -s "$PS_RUN/log" "$PS_RUN/new-dev/log"
mount --bind "$PS_RUN/new-etc" /etc
mount --bind "$PS_RUN/new-dev" /dev
exec "$PS_BIN" -stcp'

classic_pid() { # the classic daemon in the defended namespace
  local p
  for p in $(ip netns pids "$NSD"); do
    [ "$(readlink "/proc/$p/exe" 2>/dev/null)" = "$CLASSIC" ] && { echo "$p"; return 0; }
  done
  return 1
}

run_classic() { # LABEL SECONDS
  local label=$1 secs=$2
  local r=$T/$label # $T is short: the socket path must fit in sun_path
  say "$label: Debian's portsentry -stcp (BLOCK_TCP=1, KILL_ROUTE=ip route add blackhole)"
  mkdir -p "$r/conf" "$r/var"
  : >"$r/hosts.deny"
  printf '127.0.0.1/32\n0.0.0.0\n' >"$r/conf/portsentry.ignore"
  apply_settings /etc/portsentry/portsentry.conf "$r/conf/portsentry.conf" \
    "TCP_PORTS=$PORT" "IGNORE_FILE=$r/conf/portsentry.ignore" \
    "HISTORY_FILE=$r/var/portsentry.history" "BLOCKED_FILE=$r/var/portsentry.blocked" \
    "BLOCK_TCP=1" "BLOCK_UDP=0" "SCAN_TRIGGER=0" "RESOLVE_HOST=0" \
    'KILL_ROUTE=/sbin/ip route add blackhole $TARGET$' 'KILL_HOSTS_DENY=ALL: $TARGET$ : DENY'
  "$T/bin/syslogsink" "$r/log" "$r/syslog" 2>"$r/sink.err" &
  local sink=$!
  track "$sink"
  local i
  for ((i = 0; i < 100; i++)); do [ -S "$r/log" ] && break; sleep 0.05; done
  PS_RUN=$r PS_BIN=$CLASSIC ip netns exec "$NSD" sh -c "$CLASSIC_SCRIPT" >"$r/start.out" 2>&1 || true
  local pid=""
  for ((i = 0; i < 100; i++)); do pid=$(classic_pid) && break; sleep 0.05; done
  if [ -z "$pid" ] || ! wait_line "$r/syslog" "$READY" 10 "$pid"; then
    na_row "$label" "did not start: $(tr '\n' ' ' <"$r/start.out") $(tail -n 3 "$r/syslog" 2>/dev/null | tr '\n' ' ')"
    [ -z "$pid" ] || stop_pid "$pid"
    stop_pid "$sink"
    return
  fi
  track "$pid"
  local t0 t1 hwm
  t0=$(ticks "$pid")
  flood "$secs" "$label"
  wait_idle "$pid"
  t1=$(ticks "$pid")
  hwm=$(hwm_kib "$pid")
  stop_pid "$pid"
  sleep 0.2 # the last datagrams
  stop_pid "$sink"
  local routes hosts deny blocked
  routes=$(ip -n "$NSD" route show type blackhole | wc -l)
  hosts=$(grep -c "attackalert: .* from host:" "$r/syslog" || true)
  blocked=$(grep -c "has been blocked via dropped route" "$r/syslog" || true)
  deny=$(grep -c . "$r/hosts.deny" || true)
  row "$label" "$F_SENT" "$hosts" "n/a" $(((t1 - t0) * 1000000000 / HZ)) "$hwm" \
    "seen = hosts reported, not packets (so CPU s/Mpkt is per million hosts); blackhole routes $routes, route blocks logged $blocked, hosts.deny lines $deny"
  ip -n "$NSD" route flush type blackhole 2>/dev/null || true
}

# Side by side: tcpdump and ours capture the same floods at once. Every flood packet
# passes both filters (the sequential rounds show each seeing all of them), so each's
# CPU is divided by the packets the defended veth received.
PAIRED_OUT=""
run_paired() { # ROUNDS SECONDS
  local rounds=$1 secs=$2 d=$T/paired err=$T/paired-tcpdump.err
  if [ -n "$OURS_WHY" ]; then PAIRED_OUT="side by side: ours not available: $OURS_WHY"; return; fi
  say "side by side: tcpdump and ours on the same $rounds flood(s)"
  ip netns exec "$NSD" tcpdump -i "$NSD" -w /dev/null -n "$FILTER" 2>"$err" &
  local tpid=$!
  track "$tpid"
  ours_conf "$d"
  OURS_PID= # never an earlier run's, long reaped
  if ! wait_line "$err" "listening on" 10 "$tpid" || ! start_ours "$d" stcp; then
    PAIRED_OUT="side by side: a contender did not start: $(tr '\n' ' ' <"$err") $OURS_WHY"
    stop_pid "$tpid"
    [ -z "$OURS_PID" ] || stop_pid "$OURS_PID"
    return
  fi
  local opid=$OURS_PID r t0 t1 o0 o1 lines="" rx=0
  for ((r = 1; r <= rounds; r++)); do
    t0=$(cpu_ns "$tpid")
    o0=$(cpu_ns "$opid")
    flood "$secs" "paired-$r"
    wait_idle "$opid"
    wait_idle "$tpid"
    t1=$(cpu_ns "$tpid")
    o1=$(cpu_ns "$opid")
    lines="$lines$r $F_RX $((t1 - t0)) $((o1 - o0))
"
    rx=$((rx + F_RX))
  done
  stop_pid "$opid" 20
  stop_pid "$tpid"
  local tseen oseen
  tseen=$(awk '/packets captured/ { print $1 }' "$err")
  oseen=$(counter "$d/stderr" frames)
  PAIRED_OUT=$(printf '%s' "$lines" | awk -v rx="$rx" -v ts="${tseen:-?}" -v os="${oseen:-?}" '
    { n++; pk[n] = $2; tc[n] = $3; oc[n] = $4; P += $2; T += $3; O += $4 }
    END {
      print "side by side, tcpdump and ours on the same floods (CPU from schedstat, per packet the veth received):"
      line = ""
      for (i = 1; i <= n; i++) {
        printf "  flood %d: %d packets; tcpdump %.1f ns, ours %.1f ns per packet\n", i, pk[i], tc[i] / pk[i], oc[i] / pk[i]
        line = line sprintf(" %.2f", (oc[i] / pk[i]) / (tc[i] / pk[i]))
      }
      c = O / T
      printf "  CPU per packet  %7.2f [%s ]  target <= 1.5: %s\n", c, line, (c <= 1.5 ? "met" : "NOT met")
      printf "  seen: tcpdump %s, ours %s, of %d received\n", ts, os, rx
    }')
}

# The established scenario: a bulk transfer into port 80 (below ADVANCED_PORTS_TCP) of
# the defended namespace while ours runs -atcp. Every packet of it has ACK set, so the
# kernel filter should drop all of them: ours should use next to no CPU.
EST=""
run_established() {
  [ "$BULK_BYTES" -gt 0 ] || return 0
  if [ -n "$OURS_WHY" ]; then EST="established: ours not available: $OURS_WHY"; return; fi
  local d=$T/established
  ours_conf "$d"
  say "established: bulk transfer of $BULK_BYTES bytes to $DEF_ADDR:$BULK_PORT, ours in -atcp"
  [ -z "$BULK_GSO" ] || ip -n "$NSS" link set "$NSS" gso_max_size "$BULK_GSO"
  ip netns exec "$NSD" "$T/bin/bulk" recv "$DEF_ADDR:$BULK_PORT" >"$d/recv.out" 2>&1 &
  local rpid=$!
  track "$rpid"
  if ! wait_line "$d/recv.out" "bulk: listening" 10 "$rpid"; then
    EST="established: receiver did not start: $(tr '\n' ' ' <"$d/recv.out")"
    stop_pid "$rpid"
    return
  fi
  # The listener comes first, so ours finds port 80 in use and leaves it alone.
  if ! start_ours "$d" atcp; then
    EST="established: ours not available: $OURS_WHY"
    stop_pid "$rpid"
    return
  fi
  local pid=$OURS_PID t0 t1 rx0 rx1 i
  t0=$(ticks "$pid")
  rx0=$(ifstat "$NSD" rx_packets)
  ip netns exec "$NSS" timeout "$BULK_TIMEOUT" "$T/bin/bulk" send "$DEF_ADDR:$BULK_PORT" "$BULK_BYTES" >"$d/send.out" 2>&1 &
  local spid=$!
  track "$spid"
  wait "$spid" || true
  untrack "$spid"
  for ((i = 0; i < 100; i++)); do alive "$rpid" || break; sleep 0.05; done
  stop_pid "$rpid"
  wait_idle "$pid"
  t1=$(ticks "$pid")
  rx1=$(ifstat "$NSD" rx_packets)
  stop_pid "$pid" 20
  [ -z "$BULK_GSO" ] || ip -n "$NSS" link set "$NSS" gso_max_size 65536
  local sline rline frames
  sline=$(grep '^bulk: role=send' "$d/send.out") || { EST="established: transfer failed: $(tr '\n' ' ' <"$d/send.out")"; return; }
  rline=$(grep '^bulk: role=recv' "$d/recv.out") || rline="cpu=0"
  frames=$(counter "$d/stderr" frames)
  EST=$(awk -v s="$sline" -v r="$rline" -v ours=$((t1 - t0)) -v hz="$HZ" -v pk=$((rx1 - rx0)) -v fr="${frames:-?}" '
    function f(line, k) { if (match(line, k "=[0-9.]+")) return substr(line, RSTART + length(k) + 1, RLENGTH - length(k) - 1); return 0 }
    BEGIN {
      bytes = f(s, "bytes"); secs = f(s, "seconds"); xfer = f(s, "cpu") + f(r, "cpu"); o = ours / hz
      printf "established (ours -atcp, bulk TCP to port 80): %.2f GB in %.2f s (%.2f Gbit/s), %d packets into the defended namespace\n", bytes / 1e9, secs, bytes * 8 / secs / 1e9, pk
      printf "  transfer CPU (sender+receiver) %.2f s; ours %.2f s (%.2f%% of the transfer'"'"'s); frames ours read %s\n", xfer, o, (xfer > 0 ? 100 * o / xfer : 0), fr
    }')
}

# ---------------------------------------------------------------- run
say "namespaces $NSD/$NSS; $ROUNDS round(s) of ${DURATION}s floods (ours also once for $((2 * DURATION))s), at most $MAX_PACKETS packets each"
for ((r = 1; r <= ROUNDS; r++)); do
  # ABBA: tcpdump, ours, ours, tcpdump, ... so that drift in the machine's load cancels.
  if ((r % 2)); then order="tcpdump ours"; else order="ours tcpdump"; fi
  for c in $order; do
    want "$c" || continue
    "run_$c" "$c-$r" "$DURATION"
  done
done
want ours && run_ours "ours-$((2 * DURATION))s" $((2 * DURATION))
want ours && run_ours ours-ignore "$DURATION" all
want classic && run_classic classic "$DURATION"
[ "$PAIRED" = 0 ] || { want ours && want tcpdump && run_paired "$ROUNDS" "$DURATION"; }
want ours && run_established

# ---------------------------------------------------------------- report
echo
echo "Stealth capture under hping3 --flood --rand-source -S -p $PORT; scenario $SCENARIO (${SCENARIO_SETTINGS[*]})"
echo "$(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPUs, kernel $(uname -r); $ROUNDS round(s) of ${DURATION}s, CLK_TCK=$HZ"
printf '%s\n' "${ROWS[@]}" | awk -F'|' '
  function num(x) { return x ~ /^[0-9]+$/ }
  BEGIN {
    printf "%-11s %9s %9s %9s %12s %6s %11s %12s\n", "contender", "sent", "seen", "seen/sent", "kernel drops", "CPU s", "CPU s/Mpkt", "peak RSS MiB"
  }
  {
    if (!num($2)) { printf "%-11s %s\n", $1, $7; next }
    cpu = $5 / 1e9
    ratio = "-"; if ($2 > 0 && num($3)) ratio = sprintf("%.4f", $3 / $2)
    per = "-"; if (num($3) && $3 > 0) per = sprintf("%.3f", cpu / ($3 / 1e6))
    printf "%-11s %9d %9s %9s %12s %6.2f %11s %12.1f\n", $1, $2, $3, ratio, $4, cpu, per, $6 / 1024
    if ($7 != "") notes[++nn] = sprintf("  %s: %s", $1, $7)
  }
  END { if (nn) { print "notes:"; for (i = 1; i <= nn; i++) print notes[i] } }'

# Ratios against tcpdump from this same run, on the sums over the rounds (and per round).
printf '%s\n' "${ROWS[@]}" | awk -F'|' '
  function num(x) { return x ~ /^[0-9]+$/ }
  $1 == "ours-ignore" && num($3) { ign_seen = $3; ign_tk = $5 }
  $1 ~ /^(tcpdump|ours)-[0-9]+$/ && num($2) && num($3) {
    c = $1; sub(/-.*/, "", c); r = $1; sub(/.*-/, "", r)
    sent[c] += $2; seen[c] += $3; tk[c] += $5; rs[c, r] = $2; rn[c, r] = $3; rt[c, r] = $5
    if (r > rounds) rounds = r
  }
  END {
    if (!seen["tcpdump"] || !sent["ours"]) { print "ratios: need figures from both tcpdump and ours"; exit }
    s = (seen["ours"] / sent["ours"]) / (seen["tcpdump"] / sent["tcpdump"])
    print "ratios, ours / tcpdump, same run (sum of rounds; per round in brackets):"
    line = ""
    for (r = 1; r <= rounds; r++) if (rs["ours", r] && rn["tcpdump", r] && rs["tcpdump", r])
      line = line sprintf(" %.3f", (rn["ours", r] / rs["ours", r]) / (rn["tcpdump", r] / rs["tcpdump", r]))
    printf "  seen/sent       %7.3f [%s ]  target >= 0.99: %s\n", s, line, (s >= 0.99 ? "met" : "NOT met")
    if (tk["tcpdump"] > 0 && seen["ours"] > 0) {
      c = (tk["ours"] / seen["ours"]) / (tk["tcpdump"] / seen["tcpdump"])
      line = ""
      for (r = 1; r <= rounds; r++) if (rt["tcpdump", r] > 0 && rn["ours", r] > 0)
        line = line sprintf(" %.2f", (rt["ours", r] / rn["ours", r]) / (rt["tcpdump", r] / rn["tcpdump", r]))
      printf "  CPU per packet  %7.2f [%s ]  target <= 1.5: %s\n", c, line, (c <= 1.5 ? "met" : "NOT met")
      if (ign_seen > 0) printf "  CPU per packet  %7.2f  with every source ignored (ours-ignore: the capture path alone)\n", (ign_tk / ign_seen) / (tk["tcpdump"] / seen["tcpdump"])
    } else print "  CPU per packet: no CPU time recorded for tcpdump"
  }'
if [ ${#OURS_HWM[@]} -ge 2 ]; then
  awk -v a="${OURS_HWM[0]}" -v b="${OURS_HWM[${#OURS_HWM[@]} - 1]}" 'BEGIN {
    split(a, x, ":"); split(b, y, ":")
    g = x[2] > 0 ? y[2] / x[2] : 0; n = x[3] > 0 ? y[3] / x[3] : 0
    # Per extra source: any per-source record would cost tens of bytes.
    per = y[3] != x[3] ? (y[2] - x[2]) * 1024 / (y[3] - x[3]) : 0
    printf "  peak RSS (ours) %.1f MiB after %d spoofed sources (%s), %.1f MiB after %d (%s):\n", x[2] / 1024, x[3], x[1], y[2] / 1024, y[3], y[1]
    printf "                  x%.2f for x%.2f sources, %+.1f bytes per extra source; target not growing (< 8 B/source): %s\n",
      g, n, per, (per < 8 ? "met" : "NOT met")
  }'
fi
[ -z "$PAIRED_OUT" ] || printf '%s\n' "$PAIRED_OUT"
[ -z "$EST" ] || printf '%s\n' "$EST"
echo "CPU s: from flood start to idle; tcpdump and ours: the scheduler's run time of all their threads (/proc/PID/task/*/schedstat,"
echo "nanoseconds); classic: utime+stime with its waited-for children (/proc/PID/stat, 10 ms ticks: it forks). The kernel's"
echo "filtering runs in softirq and is charged to whoever is interrupted (mostly hping3), not to the contender."
