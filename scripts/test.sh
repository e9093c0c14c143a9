#!/usr/bin/env bash
# The whole test suite in one command, on a fresh Debian machine with the Rust toolchain:
#
#   bash scripts/test.sh [PYTEST_ARGS...]
#
# 1. installs what the end-to-end tests need, when missing: rclone, s3cmd, curl, softhsm2 (and
#    python3 with venv support) from Debian; pinned Python packages (tests/e2e/requirements.txt:
#    aws-cli v1, boto3, pyarrow, pytest, requests) into .venv;
# 2. checks formatting and lints, builds the workspace (release) and runs its Rust tests;
# 3. runs the end-to-end tests (tests/e2e) against target/release/valley with real clients.
#
# Idempotent: with everything installed, step 1 takes a second. Exits non-zero on any failure.
#
# Environment:
#   VALLEY_SKIP_CARGO=1   skip step 2 (uses the binary already built; for iterating on e2e tests)
#   VALLEY_CRASH_SEED=N   replay the crash test's random choices
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$(pwd)
VENV="$ROOT/.venv"
REQUIREMENTS="$ROOT/tests/e2e/requirements.txt"

log() { printf '==> %s\n' "$*" >&2; }

SUDO=()
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then SUDO=(sudo); fi
fi

# --- 1a. Debian packages --------------------------------------------------------------------
apt_missing=()
for tool in rclone s3cmd curl; do
    command -v "$tool" >/dev/null 2>&1 || apt_missing+=("$tool")
done
if ! command -v python3 >/dev/null 2>&1; then
    apt_missing+=(python3 python3-venv)
elif ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
    # Debian's python3 ships venv without ensurepip until python3-venv is installed.
    apt_missing+=(python3-venv)
fi
# SoftHSM2: the PKCS#11 token the key service is tested against (valley-crypto's tests/pkcs11.rs
# and tests/e2e/test_pkcs11.py), a module and the tool that initializes tokens.
if [ ! -f /usr/lib/softhsm/libsofthsm2.so ] || ! command -v softhsm2-util >/dev/null 2>&1; then
    apt_missing+=(softhsm2)
fi
if [ "${#apt_missing[@]}" -gt 0 ]; then
    log "installing Debian packages: ${apt_missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    "${SUDO[@]}" apt-get update -qq
    "${SUDO[@]}" apt-get install -y -qq --no-install-recommends "${apt_missing[@]}" >/dev/null
fi

# --- 1b. Python venv --------------------------------------------------------------------------
if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c 'import sys' >/dev/null 2>&1; then
    log "creating $VENV"
    rm -rf "$VENV"
    python3 -m venv "$VENV"
fi
stamp="$VENV/.valley-requirements.sha256"
want=$( (sha256sum "$REQUIREMENTS"; "$VENV/bin/python" --version) | sha256sum | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    log "installing Python packages into $VENV"
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip
    # One pip command for everything, so awscli, boto3 and botocore resolve together.
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check -r "$REQUIREMENTS"
    "$VENV/bin/python" -m pip check
    echo "$want" > "$stamp"
fi

# --- 2. Rust ----------------------------------------------------------------------------------
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
if [ "${VALLEY_SKIP_CARGO:-0}" != 1 ]; then
    log "cargo fmt --check"
    cargo fmt --all -- --check
    log "cargo clippy --release --workspace --all-targets -- -D warnings"
    cargo clippy --release --workspace --all-targets -- -D warnings
    log "cargo build --release --workspace"
    cargo build --release --workspace
    log "cargo test --release --workspace"
    cargo test --release --workspace
fi

# --- 3. End-to-end ----------------------------------------------------------------------------
export VALLEY_BIN="${VALLEY_BIN:-$TARGET_DIR/release/valley}"
if [ ! -x "$VALLEY_BIN" ]; then
    echo "error: valley binary not found at $VALLEY_BIN" >&2
    exit 1
fi
log "pytest tests/e2e (VALLEY_BIN=$VALLEY_BIN)"
# The venv's bin first: the tests run its aws CLI.
export PATH="$VENV/bin:$PATH"
"$VENV/bin/python" -m pytest -q -p no:cacheprovider tests/e2e "$@"
