#!/usr/bin/env bash
# Run the ceph s3-tests suite (https://github.com/ceph/s3-tests) against a fresh Valley hub.
#
#   scripts/s3-tests.sh [--all] [--keep] [--no-shim] PATH_TO_S3TESTS_CHECKOUT [PYTEST_ARGS...]
#
# Starts `valley serve` on free loopback ports with a temporary data directory, writes an
# s3tests.conf for it, runs s3tests/functional/test_s3.py with the marker selection below and
# prints pytest's summary line. The s3-tests checkout is never modified except for a Python venv
# in PATH/.venv, created on first use with pip from PyPI (requirements.txt + pytest-timeout).
# Nothing else is downloaded. See docs/s3-tests.md.
#
#   --all            no marker filter (the raw number)
#   --keep           keep the hub's data directory (logs, config and junit.xml are always kept)
#   --no-shim        do not load the cleanup shim (see below); a bucket the suite cannot delete
#                    then fails the setup of every later test
#   PYTEST_ARGS      appended to the pytest command line, e.g. `-k test_bucket_list` or `-x`
#
# Environment:
#   VALLEY_BIN       hub binary (default: target/release/valley of this repository)
#   VALLEY_LOG       hub log filter (default: info; e.g. debug to see every request)
#   S3TESTS_FILES    test files/ids relative to the checkout (default: s3tests/functional/test_s3.py)
#   S3TESTS_MARKERS  pytest -m expression replacing the default selection below
#   S3TESTS_TIMEOUT  per-test timeout in seconds (default: 300)
#   S3TESTS_OUT      directory for logs, config and junit.xml (default: a new temp directory)
#
# Cleanup shim: the suite's per-test cleanup deletes every test bucket after deleting all object
# versions; it does not abort multipart uploads. AWS S3 deletes a bucket that still has
# multipart uploads in progress; a server that answers BucketNotEmpty instead leaves one
# bucket behind that makes every later test error at setup. Unless --no-shim is given, a small
# pytest plugin (written to the output directory, not into the checkout) aborts a bucket's
# uploads before the suite deletes it.
#
# Exit status: pytest's (1 when any test failed, which is expected today).
set -euo pipefail

# S3 features Valley does not claim (see docs/s3-tests.md); fails_on_aws marks tests whose
# expectation is RGW-specific behaviour that AWS S3 itself does not have.
DEFAULT_MARKERS="not fails_on_aws and not appendobject and not abac_test and not auth_aws2 \
and not bucket_policy and not bucket_encryption and not bucket_logging \
and not bucket_logging_cleanup and not fails_without_logging_rollover \
and not cloud_transition and not cloud_restore and not target_by_bucket \
and not encryption and not sse_s3 and not group and not group_policy \
and not iam_account and not iam_cross_account and not iam_role and not iam_tenant \
and not iam_user and not lifecycle and not lifecycle_expiration and not lifecycle_transition \
and not object_lock and not object_ownership and not role_policy and not session_policy \
and not s3select and not s3website and not s3website_routing_rules \
and not s3website_redirect_location and not sns and not storage_class and not test_of_sts \
and not token_claims_trust_policy_test and not token_principal_tag_role_policy_test \
and not token_request_tag_trust_policy_test and not token_resource_tags_test \
and not token_role_tags_test and not token_tag_keys_test and not user_policy \
and not webidentity_test"

usage() { sed -n '2,/^set -euo/p' "$0" | grep '^#' | sed 's/^# \{0,1\}//'; exit 2; }

all=0 keep=0 shim=1
while [ $# -gt 0 ]; do
    case "$1" in
        --all) all=1; shift ;;
        --keep) keep=1; shift ;;
        --no-shim) shim=0; shift ;;
        -h|--help) usage ;;
        *) break ;;
    esac
done
[ $# -ge 1 ] || usage
S3TESTS=$(cd "$1" && pwd); shift
[ -f "$S3TESTS/s3tests/functional/test_s3.py" ] || { echo "error: $S3TESTS is not an s3-tests checkout" >&2; exit 2; }

REPO=$(cd "$(dirname "$0")/.." && pwd)
VALLEY_BIN=${VALLEY_BIN:-$REPO/target/release/valley}
[ -x "$VALLEY_BIN" ] || { echo "error: $VALLEY_BIN missing; run: cargo build --release -p valley" >&2; exit 2; }

# Python environment (PyPI only).
VENV=$S3TESTS/.venv
if [ ! -x "$VENV/bin/pytest" ] || ! "$VENV/bin/python" -c 'import pytest_timeout' 2>/dev/null; then
    echo "== creating $VENV (pip install -r requirements.txt pytest-timeout)"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q --upgrade pip
    "$VENV/bin/pip" install -q -r "$S3TESTS/requirements.txt" pytest-timeout
fi

OUT=${S3TESTS_OUT:-$(mktemp -d -t valley-s3-tests.XXXXXX)}
mkdir -p "$OUT"
DATA=$(mktemp -d -t valley-s3-tests-data.XXXXXX)

free_port() { "$VENV/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
PORT=$(free_port)
ADMIN_PORT=$(free_port)
while [ "$ADMIN_PORT" = "$PORT" ]; do ADMIN_PORT=$(free_port); done

# The main user is the root credentials (the default tenant's admin); alt and tenant are admin
# users of two other tenants, made with `valley user add` once the hub is up. Valley's
# canonical owner id is the tenant id, so that is each section's user_id.
ACCESS_KEY=S3TESTSVALLEYROOTKEY
SECRET_KEY=s3testsValleySecretKey0123456789abcdefgh

# Server-side encryption: a master key outside the data dir, and the suite's SSE-KMS key ids
# (kms_keyid, kms_keyid2) made for the main tenant with `valley kms create`.
MASTER_KEY=$OUT/kms-master.key
"$VENV/bin/python" -c 'import secrets; print(secrets.token_hex(32))' >"$MASTER_KEY"
for key in testkey-1 testkey-2; do
    "$VALLEY_BIN" kms create --kms-master-key-file "$MASTER_KEY" --data "$DATA" "$key" >/dev/null
done

HUB_PID=
cleanup() {
    if [ -n "$HUB_PID" ] && kill -0 "$HUB_PID" 2>/dev/null; then
        kill -TERM "$HUB_PID" 2>/dev/null || true
        wait "$HUB_PID" 2>/dev/null || true
    fi
    if [ "$keep" = 1 ]; then echo "== hub data kept in $DATA"; else rm -rf "$DATA"; fi
}
trap cleanup EXIT

VALLEY_ACCESS_KEY=$ACCESS_KEY VALLEY_SECRET_KEY=$SECRET_KEY VALLEY_LOG=${VALLEY_LOG:-info} \
    "$VALLEY_BIN" serve --data "$DATA" --listen "127.0.0.1:$PORT" \
    --admin-listen "127.0.0.1:$ADMIN_PORT" --region us-east-1 --kms-master-key-file "$MASTER_KEY" \
    >"$OUT/hub.log" 2>&1 &
HUB_PID=$!
for _ in $(seq 100); do
    if "$VENV/bin/python" -c "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:$PORT/_valley/health', timeout=1)" 2>/dev/null; then
        break
    fi
    kill -0 "$HUB_PID" 2>/dev/null || { echo "error: hub exited; see $OUT/hub.log" >&2; cat "$OUT/hub.log" >&2; exit 1; }
    sleep 0.1
done

CONF=$OUT/s3tests.conf
new_user() { # tenant user -> "access secret"
    VALLEY_ACCESS_KEY=$ACCESS_KEY VALLEY_SECRET_KEY=$SECRET_KEY "$VALLEY_BIN" --admin "http://127.0.0.1:$ADMIN_PORT" \
        tenant add "$1" >/dev/null
    VALLEY_ACCESS_KEY=$ACCESS_KEY VALLEY_SECRET_KEY=$SECRET_KEY "$VALLEY_BIN" --admin "http://127.0.0.1:$ADMIN_PORT" \
        user add "$1" "$2" --admin-of-tenant --json |
        "$VENV/bin/python" -c 'import json,sys; c=json.load(sys.stdin); print(c["access_key"], c["secret_key"])'
}
read -r ALT_ACCESS ALT_SECRET <<<"$(new_user alt alt-user)"
read -r TENANT_ACCESS TENANT_SECRET <<<"$(new_user testx tenant-user)"
user_section() { # email user_id access secret
    cat <<EOF
display_name = $2
user_id = $2
email = $1
access_key = $3
secret_key = $4
EOF
}
{
    cat <<EOF
[DEFAULT]
host = 127.0.0.1
port = $PORT
is_secure = False
ssl_verify = False

[fixtures]
bucket prefix = s3t-{random}-
iam name prefix = s3-tests-
iam path prefix = /s3-tests/

[s3 main]
api_name = us-east-1
kms_keyid = testkey-1
kms_keyid2 = testkey-2
EOF
    user_section main@example.com default "$ACCESS_KEY" "$SECRET_KEY"
    printf '\n[s3 alt]\n'; user_section alt@example.com alt "$ALT_ACCESS" "$ALT_SECRET"
    printf '\n[s3 tenant]\ntenant = testx\n'; user_section tenant@example.com testx "$TENANT_ACCESS" "$TENANT_SECRET"
    printf '\n[iam]\n'; user_section iam@example.com default "$ACCESS_KEY" "$SECRET_KEY"
    printf '\n[iam root]\n'; user_section iamroot@example.com default "$ACCESS_KEY" "$SECRET_KEY"
    printf '\n[iam alt root]\n'; user_section iamaltroot@example.com alt "$ALT_ACCESS" "$ALT_SECRET"
} >"$CONF"

read -r -a FILES <<<"${S3TESTS_FILES:-s3tests/functional/test_s3.py}"
MARKERS=${S3TESTS_MARKERS-$DEFAULT_MARKERS}
[ "$all" = 1 ] && MARKERS=
ARGS=(-p no:cacheprovider -q -rfE --timeout="${S3TESTS_TIMEOUT:-300}" --junitxml="$OUT/junit.xml")
[ -n "$MARKERS" ] && ARGS+=(-m "$MARKERS")
if [ "$shim" = 1 ]; then
    cat >"$OUT/valley_s3tests_shim.py" <<'EOF'
# Aborts a bucket's multipart uploads before s3-tests' cleanup deletes it (see s3-tests.sh).
import os
import sys


def pytest_configure(config):
    sys.path.insert(0, os.getcwd())
    import s3tests.functional as f

    original = f.nuke_bucket

    def nuke_bucket(client, bucket):
        try:
            for page in client.get_paginator('list_multipart_uploads').paginate(Bucket=bucket):
                for u in page.get('Uploads', []):
                    client.abort_multipart_upload(Bucket=bucket, Key=u['Key'], UploadId=u['UploadId'])
        except Exception:
            pass
        return original(client, bucket)

    f.nuke_bucket = nuke_bucket
EOF
    export PYTHONPATH=$OUT${PYTHONPATH:+:$PYTHONPATH}
    ARGS+=(-p valley_s3tests_shim)
fi

echo "== hub 127.0.0.1:$PORT (admin $ADMIN_PORT), data $DATA, output $OUT"
echo "== s3-tests $(git -C "$S3TESTS" rev-parse --short HEAD 2>/dev/null || echo '(not a git checkout)')"
set +e
(cd "$S3TESTS" && S3TEST_CONF=$CONF "$VENV/bin/pytest" "${ARGS[@]}" "${FILES[@]}" "$@") >"$OUT/pytest.log" 2>&1
rc=$?
set -e
if ! kill -0 "$HUB_PID" 2>/dev/null; then
    echo "WARNING: the hub exited during the run (see $OUT/hub.log); results after that point are connection errors" >&2
fi
grep -E '^(FAILED|ERROR) ' "$OUT/pytest.log" | sed 's/ - .*//' | sort >"$OUT/failing.txt" || true
echo "== failing tests: $OUT/failing.txt ($(wc -l <"$OUT/failing.txt")); pytest output: $OUT/pytest.log; hub log: $OUT/hub.log"
tail -n 1 "$OUT/pytest.log"
exit $rc
