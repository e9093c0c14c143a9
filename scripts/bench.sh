#!/usr/bin/env bash
# Benchmarks a local Valley hub (and optionally a peer S3 server) on this machine.
#
#   scripts/bench.sh [--quick] [--out DIR]
#                    [--peer-endpoint URL --peer-access-key K --peer-secret-key S
#                     [--peer-name NAME] [--peer-pid PID]]
#                    [--valley-bin PATH] [--no-build] [--tls] [--policy FILE]
#
# 1. builds valley and valley-bench (release); with --valley-bin, uses that valley binary
#    instead (e.g. one built from a given commit) and builds only valley-bench; --no-build
#    uses the binaries already in target/release;
# 2. measures the machine's ceiling: loopback TCP throughput (iperf3 if installed, else a
#    python socket pump) and sequential disk write/read (dd with O_DIRECT + fsync; fio too if
#    installed: 8 buffered writers, fsync at close, the shape of the `large` PUT phase);
# 3. starts a hub on free loopback ports with a temporary data directory, runs the `large`,
#    `small` and `list` scenarios of valley-bench against it, and reads its peak RSS (VmHWM)
#    and CPU time from /proc before stopping it;
# 4. with --peer-endpoint, runs the same scenarios against that server (loopback only) and
#    prints valley/peer ratios. --peer-pid lets it read the peer's peak RSS too.
#    With --tls instead, the "peer" is the same valley binary serving HTTPS (a certificate
#    made by `valley cert init`): the ratios are plain HTTP over TLS, the cost of TLS.
#
# --policy FILE puts that bucket policy (e.g. scripts/bench-policy.json) on valley's bench
# buckets, the peer's left alone: with --peer-endpoint set to the previous release, the ratios
# are the cost of authorization with a policy to evaluate.
#
# --quick uses small counts (finishes in under two minutes). Results (JSON, logs, summary)
# go to --out (default target/bench/<UTC time>). This is a measuring tool, never a CI gate:
# it exits non-zero only when something failed to run.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$(pwd)

QUICK=0
OUT=""
PEER_ENDPOINT=""
PEER_AK=""
PEER_SK=""
PEER_NAME="peer"
PEER_PID=""
VALLEY=""
BUILD=1
TLS=0
POLICY=""
while [ $# -gt 0 ]; do
    case "$1" in
        --quick) QUICK=1 ;;
        --out) OUT=$2; shift ;;
        --peer-endpoint) PEER_ENDPOINT=$2; shift ;;
        --peer-access-key) PEER_AK=$2; shift ;;
        --peer-secret-key) PEER_SK=$2; shift ;;
        --peer-name) PEER_NAME=$2; shift ;;
        --peer-pid) PEER_PID=$2; shift ;;
        --valley-bin) VALLEY=$(realpath "$2"); shift ;;
        --no-build) BUILD=0 ;;
        --tls) TLS=1 ;;
        --policy) POLICY=$(realpath "$2"); shift ;;
        -h|--help) sed -n '2,25p' "$0"; exit 0 ;;
        *) echo "bench.sh: unknown argument $1" >&2; exit 2 ;;
    esac
    shift
done
if [ -n "$PEER_ENDPOINT" ] && { [ -z "$PEER_AK" ] || [ -z "$PEER_SK" ]; }; then
    echo "bench.sh: --peer-endpoint needs --peer-access-key and --peer-secret-key" >&2
    exit 2
fi

if [ "$TLS" = 1 ] && [ -n "$PEER_ENDPOINT" ]; then
    echo "bench.sh: --tls compares valley with itself over TLS; --peer-endpoint with another server: pick one" >&2
    exit 2
fi
if [ "$TLS" = 1 ]; then
    PEER_NAME="valley-tls"
fi

if [ "$QUICK" = 1 ]; then
    LARGE_ARGS=(large --size $((16 << 20)) --count 8 -c 8)
    SMALL_ARGS=(small --size 4096 -c 16 --duration 3 --max-ops 50000)
    LIST_ARGS=(list --keys 5000 --pages 20 --page-size 1000 --fill-timeout 120)
    IPERF_SECS=2
    DD_MIB=256
else
    LARGE_ARGS=(large --size $((64 << 20)) --count 32 -c 8)
    SMALL_ARGS=(small --size 4096 -c 16 --duration 20 --max-ops 500000)
    LIST_ARGS=(list --keys 100000 --pages 50 --page-size 1000 --fill-timeout 1800)
    IPERF_SECS=10
    DD_MIB=2048
fi

OUT=${OUT:-$ROOT/target/bench/$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$OUT"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/valley-bench.XXXXXX")
VALLEY_PID=""
cleanup() {
    if [ -n "$VALLEY_PID" ] && kill -0 "$VALLEY_PID" 2>/dev/null; then
        kill "$VALLEY_PID" 2>/dev/null || true
        wait "$VALLEY_PID" 2>/dev/null || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT

log() { echo "== $*" >&2; }

jsonq() { # FILE EXPR: evaluates a python expression over the JSON document `d`
    python3 -c 'import json, sys; d = json.load(open(sys.argv[1])); print(round(eval(sys.argv[2]), 1))' "$1" "$2"
}

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# ---------------------------------------------------------------- build
if [ "$BUILD" = 1 ]; then
    log "building (release)"
    if [ -z "$VALLEY" ]; then
        cargo build --release --quiet -p valley -p valley-bench
    else
        cargo build --release --quiet -p valley-bench
    fi
fi
VALLEY=${VALLEY:-$ROOT/target/release/valley}
BENCH="$ROOT/target/release/valley-bench"

# ---------------------------------------------------------------- machine
{
    echo "date_utc=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "nproc=$(nproc)"
    echo "mem_total=$(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo)"
    echo "kernel=$(uname -r)"
    echo "cpu=$(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)"
    echo "disk=$(df -h "$WORK" | awk 'NR==2 {print $1" "$2" ("$4" free)"}')"
    echo "valley_bin=$VALLEY"
    echo "uptime_start=$(uptime)"
} > "$OUT/machine.txt"
cat "$OUT/machine.txt" >&2

# ---------------------------------------------------------------- ceiling
CEIL="$OUT/ceiling.txt"
: > "$CEIL"
log "ceiling: loopback TCP (${IPERF_SECS}s)"
PORT=$(free_port)
if command -v iperf3 >/dev/null; then
    for streams in 1 8; do
        iperf3 -s -1 -B 127.0.0.1 -p "$PORT" >/dev/null 2>&1 &
        IPERF_PID=$!
        sleep 0.5
        iperf3 -c 127.0.0.1 -p "$PORT" -t "$IPERF_SECS" -P "$streams" -J > "$OUT/iperf3-P$streams.json"
        wait "$IPERF_PID" 2>/dev/null || true
        mibs=$(jsonq "$OUT/iperf3-P$streams.json" "d['end']['sum_received']['bits_per_second'] / 8 / 1048576")
        echo "loopback_P${streams}_mib_s=$mibs" >> "$CEIL"
    done
    echo "loopback_tool=iperf3" >> "$CEIL"
else
    # One TCP stream over loopback, 1 MiB writes, receiver discards; MiB/s seen by the receiver.
    mibs=$(python3 - "$PORT" "$IPERF_SECS" <<'PY'
import socket, sys, threading, time
port, secs = int(sys.argv[1]), float(sys.argv[2])
srv = socket.socket(); srv.bind(("127.0.0.1", port)); srv.listen(1)
res = {}
def recv():
    c, _ = srv.accept(); n = 0; t = time.monotonic()
    while True:
        b = c.recv(1 << 20)
        if not b: break
        n += len(b)
    res["mib_s"] = n / (time.monotonic() - t) / 1048576
threading.Thread(target=recv).start()
s = socket.create_connection(("127.0.0.1", port)); buf = b"\0" * (1 << 20); end = time.monotonic() + secs
while time.monotonic() < end: s.sendall(buf)
s.close()
while "mib_s" not in res: time.sleep(0.01)
print(res["mib_s"])
PY
)
    echo "loopback_P1_mib_s=$mibs" >> "$CEIL"
    echo "loopback_P8_mib_s=$mibs" >> "$CEIL"
    echo "loopback_tool=python-socket" >> "$CEIL"
fi

log "ceiling: disk, dd ${DD_MIB} MiB O_DIRECT + fsync"
DDF="$WORK/dd.tmp"
dd_mib_s() { # parses dd's "N bytes ... copied, S s" line
    awk '/copied/ {for (i = 1; i <= NF; i++) if ($i == "s," || $i == "s") { printf "%.1f", $1 / $(i-1) / 1048576; exit }}'
}
w=$(dd if=/dev/zero of="$DDF" bs=1M count="$DD_MIB" oflag=direct conv=fsync 2>&1 | dd_mib_s)
echo "disk_write_dd_mib_s=$w" >> "$CEIL"
r=$(dd if="$DDF" of=/dev/null bs=1M iflag=direct 2>&1 | dd_mib_s)
echo "disk_read_dd_mib_s=$r" >> "$CEIL"
rm -f "$DDF"
if command -v fio >/dev/null; then
    log "ceiling: disk, fio 8 writers x $((DD_MIB / 8)) MiB buffered, fsync at close"
    fio --name=put-shape --directory="$WORK" --rw=write --bs=1M --size="$((DD_MIB / 8))M" --numjobs=8 \
        --ioengine=psync --direct=0 --fsync_on_close=1 --end_fsync=1 --group_reporting \
        --output-format=json > "$OUT/fio.json" 2>/dev/null
    echo "disk_write_fio8_mib_s=$(jsonq "$OUT/fio.json" "d['jobs'][0]['write']['bw'] / 1024")" >> "$CEIL"
    rm -f "$WORK"/put-shape.*
fi
cat "$CEIL" >&2

# ---------------------------------------------------------------- valley
proc_field() { awk -v k="$2:" '$1 == k {print $2}' "/proc/$1/status"; }
cpu_secs() { awk -v hz="$(getconf CLK_TCK)" '{printf "%.1f", ($14 + $15) / hz}' "/proc/$1/stat"; }

run_scenarios() { # label endpoint access secret [server pid] [valley-bench options...]
    local label=$1 ep=$2 ak=$3 sk=$4 pid=${5:-}
    local extra=("${@:6}")
    for args in "LARGE_ARGS[@]" "SMALL_ARGS[@]" "LIST_ARGS[@]"; do
        local a=("${!args}")
        local name=${a[0]}
        # Every scenario starts on a settled disk: writeback left by the ceiling's 2 GiB of
        # writes (or by the previous scenario, or the other server) would otherwise land on it.
        sync
        sleep 3
        log "$label: $name"
        "$BENCH" --endpoint "$ep" --access-key "$ak" --secret-key "$sk" --label "$label" \
            --json "$OUT/$label-$name.json" ${extra[@]+"${extra[@]}"} "${a[@]}" | tee -a "$OUT/$label.txt"
        if [ -n "$pid" ] && [ -r "/proc/$pid/status" ]; then
            # Peak RSS so far, to tell which scenario grew the server.
            echo "vmhwm_after_${name}_kib=$(proc_field "$pid" VmHWM | tr -dc 0-9)" >> "$OUT/$label-rss.txt"
        fi
    done
}

S3_PORT=$(free_port)
ADMIN_PORT=$(free_port)
VALLEY_AK=bench-access
VALLEY_SK=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
log "starting valley on 127.0.0.1:$S3_PORT (data $WORK/valley)"
VALLEY_ACCESS_KEY=$VALLEY_AK VALLEY_SECRET_KEY=$VALLEY_SK VALLEY_LOG=warn \
    "$VALLEY" serve --data "$WORK/valley" --listen "127.0.0.1:$S3_PORT" --admin-listen "127.0.0.1:$ADMIN_PORT" \
    > "$OUT/valley.log" 2>&1 &
VALLEY_PID=$!
for _ in $(seq 100); do
    curl -fs "http://127.0.0.1:$S3_PORT/_valley/health" >/dev/null 2>&1 && break
    sleep 0.1
done
curl -fs "http://127.0.0.1:$S3_PORT/_valley/health" >/dev/null

VALLEY_EXTRA=()
if [ -n "$POLICY" ]; then VALLEY_EXTRA=(--bucket-policy "$POLICY"); fi
run_scenarios valley "http://127.0.0.1:$S3_PORT" "$VALLEY_AK" "$VALLEY_SK" "$VALLEY_PID" ${VALLEY_EXTRA[@]+"${VALLEY_EXTRA[@]}"}
{
    echo "valley_vmhwm_kib=$(proc_field "$VALLEY_PID" VmHWM | tr -dc 0-9)"
    echo "valley_vmrss_kib=$(proc_field "$VALLEY_PID" VmRSS | tr -dc 0-9)"
    echo "valley_cpu_secs=$(cpu_secs "$VALLEY_PID")"
    echo "valley_data_du=$(du -sh "$WORK/valley" | cut -f1)"
} > "$OUT/valley-proc.txt"
curl -fs "http://127.0.0.1:$ADMIN_PORT/metrics" > "$OUT/valley-metrics.txt" 2>/dev/null || true
kill "$VALLEY_PID"
wait "$VALLEY_PID" 2>/dev/null || true
VALLEY_PID=""
cat "$OUT/valley-proc.txt" >&2

# ---------------------------------------------------------------- valley over TLS
if [ "$TLS" = 1 ]; then
    # The same binary and scenarios over HTTPS (a certificate from `valley cert init` for a
    # one-hub topology), in the peer's column: the summary's ratio is TLS's cost.
    cat > "$WORK/one-hub.toml" <<TOML
[[hub]]
id = "bench"
jurisdiction = "CN"
role = "east"
lat = 30.0
lon = 110.0
failure_domain = "bench"
TOML
    "$VALLEY" cert init --topology "$WORK/one-hub.toml" --out "$WORK/certs" > /dev/null
    export BENCH_CA="$WORK/certs/ca.pem"
    S3_PORT=$(free_port)
    ADMIN_PORT=$(free_port)
    log "starting valley with TLS on 127.0.0.1:$S3_PORT (data $WORK/valley-tls)"
    VALLEY_ACCESS_KEY=$VALLEY_AK VALLEY_SECRET_KEY=$VALLEY_SK VALLEY_LOG=warn \
        "$VALLEY" serve --data "$WORK/valley-tls" --listen "127.0.0.1:$S3_PORT" --admin-listen "127.0.0.1:$ADMIN_PORT" \
        --tls-cert "$WORK/certs/bench/cert.pem" --tls-key "$WORK/certs/bench/key.pem" > "$OUT/valley-tls.log" 2>&1 &
    PEER_PID=$!
    VALLEY_PID=$PEER_PID
    for _ in $(seq 100); do
        curl -fs --cacert "$BENCH_CA" "https://127.0.0.1:$S3_PORT/_valley/health" >/dev/null 2>&1 && break
        sleep 0.1
    done
    curl -fs --cacert "$BENCH_CA" "https://127.0.0.1:$S3_PORT/_valley/health" >/dev/null
    PEER_ENDPOINT="https://127.0.0.1:$S3_PORT"
    PEER_AK=$VALLEY_AK
    PEER_SK=$VALLEY_SK
fi

# ---------------------------------------------------------------- peer
if [ -n "$PEER_ENDPOINT" ]; then
    run_scenarios "$PEER_NAME" "$PEER_ENDPOINT" "$PEER_AK" "$PEER_SK" "$PEER_PID"
    if [ -n "$PEER_PID" ] && [ -r "/proc/$PEER_PID/status" ]; then
        {
            echo "peer_vmhwm_kib=$(proc_field "$PEER_PID" VmHWM | tr -dc 0-9)"
            echo "peer_cpu_secs=$(cpu_secs "$PEER_PID")"
        } > "$OUT/peer-proc.txt"
        cat "$OUT/peer-proc.txt" >&2
    fi
    if [ "$TLS" = 1 ]; then
        kill "$PEER_PID"
        wait "$PEER_PID" 2>/dev/null || true
        VALLEY_PID=""
    fi
fi
echo "uptime_end=$(uptime)" >> "$OUT/machine.txt"

# ---------------------------------------------------------------- summary
python3 - "$OUT" "$PEER_NAME" > "$OUT/summary.txt" <<'PY'
import json, os, sys
out, peer = sys.argv[1], sys.argv[2]

def kv(name):
    d = {}
    p = os.path.join(out, name)
    if os.path.exists(p):
        for line in open(p):
            k, _, v = line.strip().partition("=")
            d[k] = v
    return d

def results(label):
    r = {}
    for scen in ("large", "small", "list"):
        p = os.path.join(out, f"{label}-{scen}.json")
        if os.path.exists(p):
            for x in json.load(open(p))["results"]:
                r[(x["scenario"], x["phase"])] = x
    return r

m, c = kv("machine.txt"), kv("ceiling.txt")
vp, pp = kv("valley-proc.txt"), kv("peer-proc.txt")
v, g = results("valley"), results(peer)
f = lambda k: float(c[k]) if c.get(k) else None
net = max(x for x in (f("loopback_P1_mib_s"), f("loopback_P8_mib_s"), 0.0) if x is not None) or None
disk_w = max(x for x in (f("disk_write_dd_mib_s"), f("disk_write_fio8_mib_s"), 0.0) if x is not None)
ceil = {("large", "put"): min(net, disk_w) if net else disk_w, ("large", "get"): net}

print(f"machine: {m.get('nproc')} cores, {m.get('mem_total')}, kernel {m.get('kernel')}, {m.get('cpu')}")
print(f"disk: {m.get('disk')}")
print(f"load at start: {m.get('uptime_start', '').split('load average:')[-1].strip()}"
      f"   at end: {m.get('uptime_end', '').split('load average:')[-1].strip()}")
print("ceiling: " + ", ".join(f"{k}={float(x):.0f}" for k, x in c.items() if k.endswith("_mib_s")) + " (MiB/s)")
print()
rows = [("large", "put", "MiB/s"), ("large", "get", "MiB/s"), ("small", "put", "ops/s"), ("small", "get", "ops/s"),
        ("small", "head", "ops/s"), ("list", "fill", "ops/s"), ("list", "page", "p50 ms"), ("list", "page", "p99 ms"),
        ("small", "put", "p99 ms"), ("small", "get", "p99 ms"), ("small", "head", "p99 ms")]
def val(r, key, unit):
    x = r.get(key)
    if x is None:
        return None
    return {"MiB/s": x["mib_per_sec"], "ops/s": x["ops_per_sec"], "p50 ms": x["p50_ms"], "p99 ms": x["p99_ms"]}[unit]
hdr = f"{'metric':<22}{'ceiling':>10}{'valley':>10}{'v/ceil':>8}"
if g:
    hdr += f"{peer:>10}{'v/' + peer[:6]:>10}"
print(hdr)
fmt = lambda x: "-" if x is None else (f"{x:.0f}" if x >= 100 else f"{x:.2f}")
for scen, ph, unit in rows:
    key = (scen, ph)
    vv, gg = val(v, key, unit), val(g, key, unit)
    if vv is None and gg is None:
        continue
    cc = ceil.get(key) if unit == "MiB/s" else None
    line = f"{scen + ' ' + ph + ' ' + unit:<22}{fmt(cc):>10}{fmt(vv):>10}"
    line += f"{(f'{vv / cc:.0%}' if cc and vv else '-'):>8}"
    if g:
        line += f"{fmt(gg):>10}{(f'{vv / gg:.2f}' if vv and gg else '-'):>10}"
    print(line)
print()
hwm = vp.get("valley_vmhwm_kib")
print(f"valley peak RSS (VmHWM): {int(hwm) / 1024:.0f} MiB, CPU {vp.get('valley_cpu_secs')} s, data {vp.get('valley_data_du')}"
      if hwm else "valley peak RSS: -")
for label in ("valley", peer):
    steps = kv(f"{label}-rss.txt")
    if steps:
        print(f"{label} peak RSS after each scenario: " + ", ".join(
            f"{k.split('_')[2]} {int(x) / 1024:.0f} MiB" for k, x in steps.items() if x))
if pp.get("peer_vmhwm_kib"):
    print(f"{peer} peak RSS (VmHWM): {int(pp['peer_vmhwm_kib']) / 1024:.0f} MiB, CPU {pp.get('peer_cpu_secs')} s")
PY
echo
cat "$OUT/summary.txt"
echo
echo "results in $OUT"
