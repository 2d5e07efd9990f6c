#!/usr/bin/env bash
# Benchmarks build/certmq against Debian's mosquitto with the same certificates:
# each broker pinned to CPU 0, certmq-loadgen pinned to CPU 1, every metric run
# on a fresh broker process, certmq first then mosquitto. Prints a markdown
# table (certmq/mosquitto ratios); --record appends it to bench/RESULTS.md.
# Usage: bench/compare.sh [--record] [--seconds S] [--repeat N] [--idle-conns K]
#                         [--acl-rules N]  (the QoS 0 run again with N tenant
#                         authorization rules per client; 0: skip; default 100)
#                         [--only GROUPS]  (comma list of handshake, pubsub,
#                         acl, idle, storm: run only those; rows of the
#                         others: n/a)
#                         [--storm-conns N] (devices in the reconnect storm;
#                         default 20,000, capped by the open-file limit)
#                         [--workers N]    (certmq's worker threads; default 0:
#                         one per CPU it may use)
#                         [--cpus B:G]     (taskset CPU lists of the brokers
#                         and of the generator; default 0:1)
set -uo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
. "$root/bench/lib.sh"
certmq=${CERTMQ:-$root/build/certmq}
loadgen=${LOADGEN:-$root/build/certmq-loadgen}
mosquitto=${MOSQUITTO:-$(command -v mosquitto || echo /usr/sbin/mosquitto)}
record=0
secs=4        # measured seconds per throughput run (after 1 s of warm-up)
repeat=2      # runs per broker and throughput metric; the best one counts
idle_conns=100000 # issue #14's count; capped by the open-file limit
devices=64
acl_rules=100  # rules for the authorization row (the matching one last)
acl_now=0      # set while that row runs: start_broker installs the rules
storm_conns=20000 # issue #14's reconnect storm; capped by the open-file limit
only=handshake,pubsub,acl,idle,storm
broker_cpu=0
gen_cpu=1
workers=0

while [ $# -gt 0 ]; do
  case "$1" in
    --record) record=1 ;;
    --seconds) secs=$2; shift ;;
    --repeat) repeat=$2; shift ;;
    --idle-conns) idle_conns=$2; shift ;;
    --acl-rules) acl_rules=$2; shift ;;
    --only) only=$2; shift ;;
    --workers) workers=$2; shift ;;
    --cpus) broker_cpu=${2%%:*}; gen_cpu=${2##*:}; shift ;;
    --storm-conns) storm_conns=$2; shift ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    *) echo "compare.sh: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done

if [ ! -x "$certmq" ] || [ ! -x "$loadgen" ]; then
  (cd "$root" && make build) || { echo "compare.sh: build failed" >&2; exit 1; }
fi
[ -x "$mosquitto" ] || { echo "compare.sh: mosquitto not installed" >&2; exit 1; }

# K idle TLS connections need K descriptors in the broker and as many in the
# generator (each a process of its own, each with this limit). The hard limit
# is the process's: raising it takes CAP_SYS_RESOURCE (or a login limit).
# Asked for more than that allows, the idle row holds as many as it does
# (the table names the count).
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt $((idle_conns + 200)) ]; then
  echo "compare.sh: ulimit -n is $(ulimit -n) (hard limit $(ulimit -Hn)): the idle row" \
       "holds $(($(ulimit -n) - 200)) connections, not $idle_conns" >&2
  idle_conns=$(($(ulimit -n) - 200))
fi
# One loopback source address per 20,000 idle connections: each has its own
# ephemeral port range (about 28,000 ports) towards the broker's port.
idle_sources=$((idle_conns / 20000 + 1))
if [ "$(ulimit -n)" != unlimited ] && [ "$storm_conns" -gt $(($(ulimit -n) - 200)) ]; then
  echo "compare.sh: ulimit -n is $(ulimit -n): the storm rows hold $(($(ulimit -n) - 200))" \
       "devices, not $storm_conns" >&2
  storm_conns=$(($(ulimit -n) - 200))
fi

load_before=$(cut -d' ' -f1-3 /proc/loadavg)
# The revision the binary was built from: CERTMQ_REV when given (a binary built
# elsewhere), else this tree's HEAD, marked when src/ has uncommitted changes.
rev=${CERTMQ_REV:-}
if [ -z "$rev" ]; then
  rev=$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)
  [ -n "$(git -C "$root" status --porcelain -- src 2>/dev/null)" ] && rev="$rev + working tree"
fi
work=$(mktemp -d /tmp/certmq-bench.XXXXXX)
chmod 0755 "$work" # mosquitto started as root reads its files as user mosquitto
broker_pid=""
lg_pid=""
cleanup() {
  for p in $lg_pid $broker_pid; do kill "$p" 2>/dev/null; done
  for p in $lg_pid $broker_pid; do wait "$p" 2>/dev/null; done
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "compare.sh: certificates ($devices devices) in $work/pki" >&2
"$root/bench/gen_certs.sh" "$work/pki" "$devices" >/dev/null || exit 1
pki=$work/pki


# write_config BROKER KEYTYPE PORT: the broker's config file for that server key.
write_config() {
  local broker=$1 key=$2 port=$3 f=$work/$1.conf
  if [ "$broker" = certmq ]; then
    rm -rf "$work/certmq-var"
    cat > "$f" <<EOF
data_dir $work/certmq-var
log_level warn
workers $workers
max_connections 1000000
listener $port 127.0.0.1
certfile $pki/server-$key.pem
keyfile $pki/server-$key.key
client_certificates required
listener $http_port 127.0.0.1
protocol http
EOF
  else
    # mosquitto 2 at its best for this load: Nagle off (it is on by default
    # and adds ~40 ms per connect), no persistence, devices named by CN as
    # certmq does.
    cat > "$f" <<EOF
per_listener_settings false
allow_anonymous true
persistence false
set_tcp_nodelay true
log_dest stderr
log_type error
log_type warning
listener $port 127.0.0.1
cafile $pki/device-ca.pem
certfile $pki/server-$key.pem
keyfile $pki/server-$key.key
require_certificate true
use_identity_as_username true
EOF
  fi
  echo "$f"
}

# start_broker BROKER KEYTYPE: sets broker_pid and port; 1 if it did not come up.
start_broker() {
  local broker=$1 conf
  port=$(free_port)
  http_port=$(free_port)
  conf=$(write_config "$broker" "$2" "$port")
  if [ "$broker" = certmq ]; then
    CERTMQ_ADMIN_PASSWORD=bench-admin-password \
      taskset -c $broker_cpu "$certmq" serve --config "$conf" >"$work/$broker.log" 2>&1 &
  else
    taskset -c $broker_cpu "$mosquitto" -c "$conf" >"$work/$broker.log" 2>&1 &
  fi
  broker_pid=$!
  for _ in $(seq 100); do
    kill -0 "$broker_pid" 2>/dev/null || break
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      sleep 0.2
      [ "$broker" = certmq ] || return 0
      trust_ca "$http_port" "$pki/device-ca.pem" || break
      [ "$acl_now" = 1 ] && { install_acl_rules || break; }
      return 0
    fi
    sleep 0.1
  done
  echo "compare.sh: $broker did not start; its log:" >&2
  tail -5 "$work/$broker.log" >&2
  stop_broker
  return 1
}

# post_rule TOPIC: one tenant authorization rule allowing TOPIC to everyone.
post_rule() {
  curl -sf -o /dev/null -u management/admin:bench-admin-password -H 'Content-Type: application/json' \
    --data-binary "{\"effect\":\"ALLOW\",\"action\":\"ALL\",\"topic\":\"$1\",\"subject\":{\"type\":\"EVERYONE\"}}" \
    "http://127.0.0.1:$http_port/tenant/tenants/management/authorization-rules"
}

# install_acl_rules: acl_rules tenant rules, each client's topic matched only
# by the last (the worst case: every publish walks all of them).
install_acl_rules() {
  local i
  for i in $(seq $((acl_rules - 2))); do post_rule "other/$i/#" || return 1; done
  post_rule "s/#" && post_rule "bench/#" && return 0
  echo "compare.sh: could not add the authorization rules" >&2
  return 1
}

stop_broker() {
  [ -n "$broker_pid" ] || return 0
  kill "$broker_pid" 2>/dev/null
  for _ in $(seq 30); do kill -0 "$broker_pid" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$broker_pid" 2>/dev/null
  wait "$broker_pid" 2>/dev/null
  broker_pid=""
}

lg() {
  taskset -c $gen_cpu "$loadgen" "$@" --port "$port" --cafile "$pki/ca.pem" \
    --devices "$pki/devices"
}

# The same for `lg_bg ... &`: the background job's pid is the generator's.
lg_bg() {
  exec taskset -c $gen_cpu "$loadgen" "$@" --port "$port" --cafile "$pki/ca.pem" \
    --devices "$pki/devices"
}

# kv LINE KEY: the value of key=value in a RESULT line.

# mark_bound BROKER "KEYS" RESULT: flags those results when the generator was
# busy over 90% of the measured time (the broker may be faster than shown).
mark_bound() {
  local busy k
  busy=$(awk -v g="$(kv "$3" gen_cpu)" -v s="$(kv "$3" seconds)" \
         'BEGIN { print (g != "" && s > 0 && g / s > 0.9) ? 1 : 0 }')
  if [ "$busy" = 1 ]; then
    for k in $2; do R[$1.$k.bound]=1; done
  fi
}

rss_kib() {
  awk '/^VmRSS:/ {print $2}' "/proc/$1/status"
}

declare -A R # R[broker.metric] = value

# run_metric NAME KEYTYPE LOADGEN-ARGS...: runs the generator against each
# broker (a fresh process each time, brokers alternating) $repeat times and
# keeps each broker's best RESULT line (highest rate) in BEST[broker]: on a
# shared machine the best run is the one least disturbed by other work.
declare -A BEST
run_metric() {
  local name=$1 key=$2 out b r
  shift 2
  BEST=()
  for r in $(seq "$repeat"); do
    for b in "${brokers[@]}"; do
      start_broker "$b" "$key" || continue
      out=$(lg "$@" --broker-pid "$broker_pid" 2>>"$work/lg.log" | grep '^RESULT')
      stop_broker
      echo "  $b $name #$r: ${out#RESULT }" >&2
      [ -n "$out" ] || continue
      if [ -z "${BEST[$b]:-}" ] ||
         awk -v x="$(kv "$out" rate)" -v y="$(kv "${BEST[$b]}" rate)" 'BEGIN { exit !(x > y) }'
      then
        BEST[$b]=$out
      fi
    done
  done
}

# measure_handshake KEYTYPE
measure_handshake() {
  local k=$1 b out
  run_metric "handshake/$k" "$k" handshake -c 32 -d "$secs" --warmup 1
  for b in "${brokers[@]}"; do
    out=${BEST[$b]:-}
    [ -n "$out" ] || continue
    R[$b.hs_$k]=$(kv "$out" rate)
    R[$b.hscpu_$k]=$(kv "$out" per_cpu_s)
    mark_bound "$b" "hs_$k" "$out"
  done
}

# measure_resume: TLS 1.3 resumed handshakes, all EC, each device offering
# the ticket its previous connection got (a full handshake counts as a
# failure to resume: the row is left empty then).
measure_resume() {
  local b out
  run_metric "resume/ec" ec handshake --resume -c 32 -d "$secs" --warmup 1
  for b in "${brokers[@]}"; do
    out=${BEST[$b]:-}
    [ -n "$out" ] || continue
    awk -v r="$(kv "$out" resumed)" -v n="$(kv "$out" completed)" \
        'BEGIN { exit !(n > 0 && r >= 0.95 * n) }' || {
      echo "  $b resume: only $(kv "$out" resumed) of $(kv "$out" completed) resumed" >&2
      continue
    }
    R[$b.rs]=$(kv "$out" rate)
    R[$b.rscpu]=$(kv "$out" per_cpu_s)
    mark_bound "$b" rs "$out"
  done
}

# measure_pubsub QOS [MQTT]: MQTT 3 (3.1.1, the default) or 5 (5.0, whose
# results are keyed with a v5 suffix)
measure_pubsub() {
  local q=$1 v=${2:-3} b out k
  k=$q; [ "$v" = 5 ] && k=${q}v5
  run_metric "pubsub/qos$k" rsa pubsub --qos "$q" --mqtt "$v" -c 10 --window 100 \
    --payload 64 -d "$secs" --warmup 1
  for b in "${brokers[@]}"; do
    out=${BEST[$b]:-}
    [ -n "$out" ] || continue
    R[$b.msg$k]=$(kv "$out" rate)
    R[$b.p50_$k]=$(kv "$out" p50_us)
    R[$b.p99_$k]=$(kv "$out" p99_us)
    mark_bound "$b" "msg$k" "$out"
  done
}

# measure_idle BROKER: RSS growth over idle_conns held mutual-TLS connections,
# after a small warm-up run has initialised the broker's TLS state.
measure_idle() {
  local b=$1 before after out=$work/idle.out
  start_broker "$b" rsa || return
  lg idle -c 50 -d 0.3 >/dev/null 2>>"$work/lg.log"
  sleep 1
  before=$(rss_kib "$broker_pid")
  lg_bg idle -c "$idle_conns" --sources "$idle_sources" -d 0 >"$out" 2>>"$work/lg.log" &
  lg_pid=$!
  # as long as the generator's own setup limit (120 s + 1 s per 400)
  for _ in $(seq $((1200 + idle_conns / 40 + 100))); do
    grep -q '^READY' "$out" 2>/dev/null && break
    kill -0 "$lg_pid" 2>/dev/null || break
    sleep 0.1
  done
  if grep -q '^READY' "$out"; then
    sleep 1
    after=$(rss_kib "$broker_pid")
    R[$b.mem]=$(awk -v a="$after" -v b="$before" -v n="$idle_conns" \
                'BEGIN {printf "%.1f", (a - b) / n}')
    echo "  $b idle: $(grep '^READY' "$out"), RSS ${before} -> ${after} KiB" >&2
  else
    echo "  $b idle: connections did not all come up" >&2
  fi
  kill "$lg_pid" 2>/dev/null
  wait "$lg_pid" 2>/dev/null
  lg_pid=""
  stop_broker
}

# measure_storm BROKER off|on: storm_conns held connections all dropped at
# once by the generator; the seconds until every one has its CONNACK again,
# with full handshakes (off) or each offering its last TLS 1.3 ticket (on).
# At most 100 handshakes in flight (mosquitto's listen backlog); one source
# address per 5,000 (each dropped connection leaves a port in TIME_WAIT).
measure_storm() {
  local b=$1 res=$2 out args=()
  [ "$res" = on ] && args+=(--resume)
  start_broker "$b" rsa || return
  out=$(lg storm -c "$storm_conns" --pending 100 --sources $((storm_conns / 5000 + 1)) \
        --drop-after 1 "${args[@]}" --broker-pid "$broker_pid" 2>>"$work/lg.log" | grep '^RESULT')
  stop_broker
  echo "  $b storm, resumption $res: ${out#RESULT }" >&2
  [ -n "$out" ] && [ "$(kv "$out" up)" = "$storm_conns" ] || return
  R[$b.storm_$res]=$(kv "$out" seconds)
  R[$b.stormcpu_$res]=$(kv "$out" per_cpu_s)
}

brokers=(certmq mosquitto)
echo "compare.sh: best of $repeat runs of ${secs}s per metric, broker on CPU $broker_cpu, load generator on CPU $gen_cpu" >&2
wanted() { case ",$only," in *",$1,"*) return 0 ;; *) return 1 ;; esac; }
if wanted handshake; then
  measure_handshake rsa
  measure_handshake ec
  measure_resume
fi
if wanted pubsub; then
  measure_pubsub 0
  measure_pubsub 1
  measure_pubsub 0 5
  measure_pubsub 1 5
fi
if wanted acl && [ "$acl_rules" -gt 0 ]; then
  # certmq alone, with the rules: the row compares it with certmq without.
  saved=("${brokers[@]}"); brokers=(certmq); acl_now=1
  run_metric "pubsub/qos0/acl$acl_rules" rsa pubsub --qos 0 -c 10 --window 100 --payload 64 \
    -d "$secs" --warmup 1
  [ -n "${BEST[certmq]:-}" ] && R[certmq.msg0_acl]=$(kv "${BEST[certmq]}" rate)
  brokers=("${saved[@]}"); acl_now=0
fi
if wanted idle; then
  for b in "${brokers[@]}"; do measure_idle "$b"; done
fi
if wanted storm; then
  for res in on off; do
    for b in "${brokers[@]}"; do measure_storm "$b" "$res"; done
  done
fi

# row LABEL KEY TARGET [SCALE]: certmq, mosquitto and their ratio; a value
# marked (g) was limited by the load generator.
row() {
  local c=${R[certmq.$2]:-} m=${R[mosquitto.$2]:-} scale=${4:-1}
  awk -v l="$1" -v c="$c" -v m="$m" -v t="$3" -v s="$scale" \
      -v cb="${R[certmq.$2.bound]:-}" -v mb="${R[mosquitto.$2.bound]:-}" 'BEGIN {
    fc = (c == "") ? "n/a" : sprintf("%.1f%s", c * s, cb ? " (g)" : "")
    fm = (m == "") ? "n/a" : sprintf("%.1f%s", m * s, mb ? " (g)" : "")
    r = (c == "" || m == "" || m + 0 == 0) ? "n/a" : sprintf("%.2f", c / m)
    printf "| %s | %s | %s | %s | %s |\n", l, fc, fm, r, t }'
}

table() {
  echo "| metric | certmq | mosquitto | ratio | target |"
  echo "|---|---|---|---|---|"
  row "handshakes/s, RSA-2048 server, EC P-256 devices" hs_rsa ">= 1.5"
  row "handshakes per broker CPU-second, RSA-2048 server" hscpu_rsa "-"
  row "handshakes/s, all EC P-256" hs_ec ">= 1.5"
  row "handshakes per broker CPU-second, all EC" hscpu_ec "-"
  row "TLS 1.3 resumed handshakes/s, all EC" rs "-"
  row "the same per broker CPU-second" rscpu ">= 8000 (issue #14)"
  row "QoS 0 messages/s (10 -> 10, 64 B)" msg0 ">= 1.0"
  row "QoS 0 latency p50, ms" p50_0 "-" 0.001
  row "QoS 0 latency p99, ms" p99_0 "-" 0.001
  row "QoS 1 messages/s (10 -> 10, 64 B)" msg1 ">= 1.0"
  row "QoS 1 latency p50, ms" p50_1 "-" 0.001
  row "QoS 1 latency p99, ms" p99_1 "-" 0.001
  row "QoS 0 messages/s, MQTT 5.0 (10 -> 10, 64 B)" msg0v5 ">= 1.0"
  row "QoS 1 messages/s, MQTT 5.0 (10 -> 10, 64 B)" msg1v5 ">= 1.0"
  row "QoS 1 latency p50, ms, MQTT 5.0" p50_1v5 "-" 0.001
  row "RSS per idle mutual-TLS connection, KiB ($idle_conns conns)" mem "<= 1.0"
  row "reconnect storm: seconds until all $storm_conns are up again, TLS 1.3 tickets" storm_on "-"
  row "the same, reconnects per broker CPU-second" stormcpu_on "-"
  row "reconnect storm: seconds until all $storm_conns are up again, full handshakes" storm_off "-"
  row "the same, reconnects per broker CPU-second" stormcpu_off "-"
  if [ -n "${R[certmq.msg0_acl]:-}" ]; then
    awk -v a="${R[certmq.msg0_acl]}" -v c="${R[certmq.msg0]:-}" -v n="$acl_rules" 'BEGIN {
      r = (c == "" || c + 0 == 0) ? "n/a" : sprintf("%.2f", a / c)
      printf "| QoS 0 messages/s with %d authorization rules per client (ratio: vs certmq without) | %.1f | | %s | >= 0.9 |\n", n, a, r }'
  fi
  if [ -n "$(for k in "${!R[@]}"; do [[ $k == *.bound ]] && echo x; done)" ]; then
    echo
    echo "(g): the load generator used over 90% of its CPU during that run, so the"
    echo "broker may be faster than shown; per-CPU-second figures are not limited by it."
  fi
}

out=$(table)
echo "$out"

if [ "$record" = 1 ]; then
  cpu=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)
  mver=$("$mosquitto" -h 2>/dev/null | awk 'NR == 1 {print $3}')
  {
    echo
    echo "## $(date -u '+%Y-%m-%d %H:%M UTC'), certmq $rev"
    echo
    echo "$(uname -sr), $cpu, $(nproc) CPUs, load average before run:" \
         "$load_before; mosquitto $mver; $(openssl version | cut -d' ' -f1-2);" \
         "best of $repeat runs of ${secs} s per throughput metric;" \
         "brokers on CPU $broker_cpu, generator on CPU $gen_cpu, certmq workers $workers"
    echo
    echo "$out"
  } >> "$root/bench/RESULTS.md"
  echo "compare.sh: appended to bench/RESULTS.md" >&2
fi
