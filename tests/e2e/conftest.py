"""End-to-end harness: runs the real `valley` binary and points real S3 clients at it.

The binary comes from $VALLEY_BIN (default: target/release/valley of this repository). A missing
binary is a hard failure, never a skip: these tests exist to exercise it.

Session fixtures:
  valley          a running hub (ValleyServer) on free loopback ports with a temporary data dir
  s3              boto3 client, path-style addressing
  s3_vhost        boto3 client, virtual-host-style addressing (BUCKET.localhost:PORT)
  aws_env         environment for the aws CLI (credentials, region, no config files)
Function fixtures:
  bucket          a fresh, empty bucket, emptied and deleted after the test
  make_bucket     factory for more fresh buckets (same cleanup)

`ValleyServer` can also be created by a test for its own instance (see test_crash.py): it can be
stopped, restarted on the same ports, or killed with SIGKILL.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import boto3
import pytest
import requests
from botocore.config import Config
from botocore.exceptions import ClientError

REPO_ROOT = Path(__file__).resolve().parents[2]
ACCESS_KEY = "VALLEYTESTACCESSKEY1"
SECRET_KEY = "valley-test-secret-key-0123456789abcdef"
REGION = "us-east-1"
HEALTH_PATH = "/_valley/health"
START_TIMEOUT_S = 30.0

# No ambient AWS configuration may leak into the clients under test (a CA bundle, a profile,
# credentials, an endpoint): every client here is configured explicitly. rclone, for one,
# refuses to start over plain HTTP when AWS_CA_BUNDLE is set.
for _name in [n for n in os.environ if n.startswith("AWS_")]:
    del os.environ[_name]
os.environ["AWS_CONFIG_FILE"] = "/nonexistent/valley-e2e/aws-config"
os.environ["AWS_SHARED_CREDENTIALS_FILE"] = "/nonexistent/valley-e2e/aws-credentials"
# pyarrow's AWS SDK and botocore must never wander off to the EC2 metadata service.
os.environ["AWS_EC2_METADATA_DISABLED"] = "true"

# Virtual-host-style addressing needs BUCKET.localhost to resolve. glibc without
# nss-myhostname does not resolve *.localhost, so this test process maps every name under
# .localhost to 127.0.0.1 (RFC 6761 reserves the name for loopback). Only this process is
# affected; the server sees the real Host header the client sends.
_real_getaddrinfo = socket.getaddrinfo


def _getaddrinfo(host, *args, **kwargs):
    if isinstance(host, bytes):
        host_s = host.decode("ascii", "replace")
    else:
        host_s = host
    if isinstance(host_s, str) and host_s.lower().rstrip(".").endswith(".localhost"):
        host = "127.0.0.1"
    return _real_getaddrinfo(host, *args, **kwargs)


socket.getaddrinfo = _getaddrinfo


def valley_bin() -> Path:
    """The hub binary; fails the test run loudly when it does not exist."""
    raw = os.environ.get("VALLEY_BIN")
    path = Path(raw) if raw else REPO_ROOT / "target" / "release" / "valley"
    if not path.is_absolute():
        path = REPO_ROOT / path
    if not path.is_file() or not os.access(path, os.X_OK):
        pytest.fail(
            f"valley binary not found or not executable at {path} "
            "(build it with `cargo build --release -p valley` or set VALLEY_BIN)",
            pytrace=False,
        )
    return path


def _die_with_parent() -> None:
    """In the child before exec: SIGKILL it when the test process dies, however it dies."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        PR_SET_PDEATHSIG = 1
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except Exception:  # noqa: BLE001 - best effort (non-Linux)
        pass


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ValleyServer:
    """One `valley serve` process on loopback ports, restartable on the same ports and data."""

    def __init__(self, workdir: Path, *, access_key: str = ACCESS_KEY, secret_key: str = SECRET_KEY,
                 extra_args: list[str] | None = None):
        self.bin = valley_bin()
        self.workdir = Path(workdir)
        self.data_dir = self.workdir / "data"
        self.log_path = self.workdir / "valley.log"
        self.access_key = access_key
        self.secret_key = secret_key
        self.extra_args = list(extra_args or [])
        self.port = free_port()
        self.admin_port = free_port()
        while self.admin_port == self.port:
            self.admin_port = free_port()
        self.proc: subprocess.Popen | None = None
        self.starts = 0

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def vhost_endpoint(self) -> str:
        return f"http://localhost:{self.port}"

    @property
    def admin_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.admin_port}"

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def start(self) -> None:
        assert self.proc is None or self.proc.poll() is not None, "already running"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ)
        env["VALLEY_ACCESS_KEY"] = self.access_key
        env["VALLEY_SECRET_KEY"] = self.secret_key
        env.setdefault("VALLEY_LOG", "info")
        cmd = [
            str(self.bin), "serve",
            "--data", str(self.data_dir),
            "--listen", f"127.0.0.1:{self.port}",
            "--admin-listen", f"127.0.0.1:{self.admin_port}",
            "--domain", "localhost",
            *self.extra_args,
        ]
        deadline = time.monotonic() + START_TIMEOUT_S
        attempt = 0
        while True:
            attempt += 1
            with open(self.log_path, "ab") as log:
                log.write(f"\n=== start #{self.starts + 1} (attempt {attempt}): {' '.join(cmd)}\n".encode())
                log.flush()
                self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env,
                                             stdin=subprocess.DEVNULL, preexec_fn=_die_with_parent)
            err = self._wait_healthy(deadline)
            if err is None:
                self.starts += 1
                return
            # A port still held (e.g. TIME_WAIT right after a kill) makes the bind fail: retry.
            if self.proc.poll() is not None and time.monotonic() < deadline and "cannot listen" in self.log_tail(5):
                time.sleep(0.2)
                continue
            self._reap(signal.SIGKILL)
            raise RuntimeError(f"valley did not become healthy: {err}\n--- log tail ---\n{self.log_tail()}")

    def _wait_healthy(self, deadline: float) -> str | None:
        url = self.endpoint + HEALTH_PATH
        last = "no attempt"
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return f"process exited with status {self.proc.returncode}"
            try:
                r = requests.get(url, timeout=1)
                if r.status_code == 200:
                    return None
                last = f"health answered {r.status_code}"
            except requests.RequestException as e:
                last = repr(e)
            time.sleep(0.05)
        return f"timed out after {START_TIMEOUT_S}s ({last})"

    def _reap(self, sig: int, timeout: float = 15.0) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        return self.proc.returncode

    def stop(self) -> int | None:
        """Graceful stop (SIGTERM); returns the exit status."""
        return self._reap(signal.SIGTERM)

    def kill9(self) -> None:
        """SIGKILL: no chance to flush or clean up."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def restart(self, *, hard: bool = False) -> None:
        if hard:
            self.kill9()
        else:
            self.stop()
        self.start()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def client(self, *, addressing_style: str = "path", access_key: str | None = None,
               secret_key: str | None = None, **config_kwargs):
        return make_client(
            self.vhost_endpoint if addressing_style == "virtual" else self.endpoint,
            access_key or self.access_key,
            secret_key or self.secret_key,
            addressing_style=addressing_style,
            **config_kwargs,
        )


_SESSION = None
_SESSION_LOCK = threading.Lock()


def make_client(endpoint: str, access_key: str, secret_key: str, *, addressing_style: str = "path",
                verify=None, **config_kwargs):
    cfg = dict(
        signature_version="s3v4",
        s3={"addressing_style": addressing_style},
        retries={"total_max_attempts": 1},
        connect_timeout=5,
        read_timeout=60,
    )
    cfg.update(config_kwargs)
    global _SESSION
    # One session for all clients (created under a lock: sessions are not thread-safe): its
    # loaded service models make new clients cheap.
    with _SESSION_LOCK:
        if _SESSION is None:
            _SESSION = boto3.session.Session()
        return _SESSION.client(
            "s3",
            endpoint_url=endpoint,
            aws_access_key_id=access_key,
            aws_secret_access_key=secret_key,
            region_name=REGION,
            config=Config(**cfg),
            verify=verify,
        )


def empty_and_delete_bucket(client, name: str) -> None:
    """Best-effort removal of a test bucket with everything in it."""
    try:
        for page in client.get_paginator("list_multipart_uploads").paginate(Bucket=name):
            for u in page.get("Uploads", []):
                client.abort_multipart_upload(Bucket=name, Key=u["Key"], UploadId=u["UploadId"])
    except ClientError:
        pass
    try:
        for page in client.get_paginator("list_object_versions").paginate(Bucket=name):
            objs = [{"Key": v["Key"], "VersionId": v["VersionId"]}
                    for v in page.get("Versions", []) + page.get("DeleteMarkers", [])]
            if objs:
                client.delete_objects(Bucket=name, Delete={"Objects": objs, "Quiet": True})
    except ClientError:
        pass
    try:
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=name):
            objs = [{"Key": o["Key"]} for o in page.get("Contents", [])]
            if objs:
                client.delete_objects(Bucket=name, Delete={"Objects": objs, "Quiet": True})
    except ClientError:
        pass
    try:
        client.delete_bucket(Bucket=name)
    except ClientError:
        pass


def unique_name(prefix: str = "t") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:16]}"


# --------------------------------------------------------------------------------------------
# fixtures


@pytest.fixture(scope="session")
def valley(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("valley")
    server = ValleyServer(workdir)
    server.start()
    yield server
    alive = server.alive()
    status = server.stop()
    if alive and status not in (0, None):
        print(f"\nvalley exited with status {status} on SIGTERM\n{server.log_tail()}", file=sys.stderr)


@pytest.fixture(scope="session")
def s3(valley):
    return valley.client()


@pytest.fixture(scope="session")
def s3_vhost(valley):
    return valley.client(addressing_style="virtual")


@pytest.fixture
def make_bucket(s3):
    created = []

    def make(prefix: str = "t") -> str:
        name = unique_name(prefix)
        s3.create_bucket(Bucket=name)
        created.append(name)
        return name

    yield make
    for name in created:
        empty_and_delete_bucket(s3, name)


@pytest.fixture
def bucket(make_bucket) -> str:
    return make_bucket()


def aws_cli_path() -> str:
    # Prefer the aws next to this interpreter (scripts/test.sh's venv).
    candidate = Path(sys.executable).parent / "aws"
    if candidate.exists():
        return str(candidate)
    found = shutil.which("aws")
    if not found:
        pytest.fail("aws CLI not found (scripts/test.sh installs it into .venv)", pytrace=False)
    return found


@pytest.fixture(scope="session")
def aws_env(valley, tmp_path_factory):
    """Environment for the aws CLI: test credentials, us-east-1, no user config files."""
    home = tmp_path_factory.mktemp("awshome")
    config = home / "config"
    config.write_text("[default]\nregion = us-east-1\ns3 =\n    signature_version = s3v4\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(
        AWS_ACCESS_KEY_ID=valley.access_key,
        AWS_SECRET_ACCESS_KEY=valley.secret_key,
        AWS_DEFAULT_REGION=REGION,
        AWS_CONFIG_FILE=str(config),
        AWS_SHARED_CREDENTIALS_FILE=str(home / "credentials"),
        AWS_EC2_METADATA_DISABLED="true",
        AWS_PAGER="",
        AWS_RETRY_MODE="standard",
        AWS_MAX_ATTEMPTS="1",
    )
    return env


@pytest.fixture(scope="session")
def aws(valley, aws_env):
    """Run `aws --endpoint-url ... ARGS`; returns CompletedProcess (text). check=True by default."""
    exe = aws_cli_path()

    def run(*args, check: bool = True, timeout: float = 600, cwd=None):
        cmd = [exe, "--endpoint-url", valley.endpoint, *map(str, args)]
        cp = subprocess.run(cmd, env=aws_env, capture_output=True, text=True, timeout=timeout, cwd=cwd)
        if check and cp.returncode != 0:
            raise AssertionError(
                f"aws {' '.join(map(str, args))} exited {cp.returncode}\nstdout:\n{cp.stdout[-3000:]}\n"
                f"stderr:\n{cp.stderr[-3000:]}"
            )
        return cp

    return run


def run_cmd(cmd, *, check: bool = True, timeout: float = 600, env=None, cwd=None):
    cp = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=timeout, env=env, cwd=cwd)
    if check and cp.returncode != 0:
        raise AssertionError(
            f"{' '.join(map(str, cmd))} exited {cp.returncode}\nstdout:\n{cp.stdout[-3000:]}\n"
            f"stderr:\n{cp.stderr[-3000:]}"
        )
    return cp


def require_tool(name: str) -> str:
    path = shutil.which(name)
    if not path:
        pytest.fail(f"{name} is not installed (scripts/test.sh installs it)", pytrace=False)
    return path


@pytest.fixture
def scratch(tmp_path) -> Path:
    return tmp_path


def pytest_report_header(config):
    raw = os.environ.get("VALLEY_BIN") or str(REPO_ROOT / "target" / "release" / "valley")
    return [f"valley binary: {raw}"]


@pytest.fixture(scope="session", autouse=True)
def _check_binary_early():
    # Fail every test (loudly) rather than skipping when the binary is missing.
    valley_bin()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """On a failing test, attach the tail of the session hub's log to the report."""
    outcome = yield
    report = outcome.get_result()
    if report.failed and call.when == "call":
        server = getattr(item, "funcargs", {}).get("valley")
        if isinstance(server, ValleyServer):
            report.sections.append(("valley log (tail)", server.log_tail(30)))
