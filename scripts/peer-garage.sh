#!/usr/bin/env bash
# Starts a throw-away single-node Garage (v2) on loopback, as a peer for scripts/bench.sh.
#
#   scripts/peer-garage.sh GARAGE_BINARY [--dir DIR] [--no-fsync]
#
# Garage itself is not part of this repository: build it elsewhere and pass its binary.
# This writes DIR/garage.toml (replication_factor 1, LMDB metadata, data and metadata in
# DIR, S3 API, RPC and admin on free 127.0.0.1 ports, a fresh rpc_secret), starts
# `garage server` in the background, assigns and applies a one-node layout, creates the
# key `bench-key` (allowed to create buckets) and the buckets `bench` and `bench-list`, then
# prints shell assignments:
#   PEER_ENDPOINT=... PEER_ACCESS_KEY=... PEER_SECRET_KEY=... PEER_PID=... PEER_DIR=...
# so that:  eval "$(scripts/peer-garage.sh /path/to/garage)"
#           scripts/bench.sh --peer-name garage --peer-endpoint "$PEER_ENDPOINT" \
#               --peer-access-key "$PEER_ACCESS_KEY" --peer-secret-key "$PEER_SECRET_KEY" --peer-pid "$PEER_PID"
#           kill "$PEER_PID"; rm -rf "$PEER_DIR"
#
# By default metadata_fsync and data_fsync are on, so that Garage makes the same durability
# promise as Valley (fsync before acknowledging a write); --no-fsync keeps Garage's own
# defaults (both off). Other settings are Garage's defaults (1 MiB blocks, zstd level 1).
set -euo pipefail

if [ $# -lt 1 ] || [ ! -x "$1" ]; then
    sed -n '2,20p' "$0" >&2
    exit 2
fi
GARAGE=$(realpath "$1")
shift
DIR=""
FSYNC=true
while [ $# -gt 0 ]; do
    case "$1" in
        --dir) DIR=$2; shift ;;
        --no-fsync) FSYNC=false ;;
        *) echo "peer-garage.sh: unknown argument $1" >&2; exit 2 ;;
    esac
    shift
done
DIR=${DIR:-$(mktemp -d "${TMPDIR:-/tmp}/garage-peer.XXXXXX")}
mkdir -p "$DIR/meta" "$DIR/data"
DIR=$(realpath "$DIR")

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
S3_PORT=$(free_port)
RPC_PORT=$(free_port)
ADMIN_PORT=$(free_port)
CONF="$DIR/garage.toml"
cat > "$CONF" <<EOF
metadata_dir = "$DIR/meta"
data_dir = "$DIR/data"
db_engine = "lmdb"
replication_factor = 1
metadata_fsync = $FSYNC
data_fsync = $FSYNC

rpc_bind_addr = "127.0.0.1:$RPC_PORT"
rpc_public_addr = "127.0.0.1:$RPC_PORT"
rpc_secret = "$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')"

[s3_api]
s3_region = "us-east-1"
api_bind_addr = "127.0.0.1:$S3_PORT"

[admin]
api_bind_addr = "127.0.0.1:$ADMIN_PORT"
EOF

g() { "$GARAGE" -c "$CONF" "$@"; }

RUST_LOG=${RUST_LOG:-warn} nohup "$GARAGE" -c "$CONF" server > "$DIR/garage.log" 2>&1 &
PID=$!
for _ in $(seq 100); do
    g status > /dev/null 2>&1 && break
    kill -0 "$PID" 2>/dev/null || { cat "$DIR/garage.log" >&2; exit 1; }
    sleep 0.2
done
NODE=$(g node id -q 2>/dev/null | cut -d@ -f1)
{
    g layout assign -z dc1 -c 10G "$NODE"
    g layout apply --version 1
    g key create bench-key > "$DIR/key.txt"
    g key allow --create-bucket bench-key
    for b in bench bench-list; do
        g bucket create "$b"
        g bucket allow --read --write --owner "$b" --key bench-key
    done
} > "$DIR/setup.log" 2>&1 || { cat "$DIR/setup.log" "$DIR/garage.log" >&2; kill "$PID"; exit 1; }
AK=$(awk '/^Key ID:/ {print $3}' "$DIR/key.txt")
SK=$(awk '/^Secret key:/ {print $3}' "$DIR/key.txt")
# The S3 API answers (403 without a signature) once the layout is live.
for _ in $(seq 50); do
    code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$S3_PORT/bench" || true)
    [ "$code" = 403 ] && break
    sleep 0.2
done
echo "PEER_ENDPOINT=http://127.0.0.1:$S3_PORT"
echo "PEER_ACCESS_KEY=$AK"
echo "PEER_SECRET_KEY=$SK"
echo "PEER_PID=$PID"
echo "PEER_DIR=$DIR"
