"""A small hub network on loopback for the multi-hub tests: real `valley serve` processes, one
per hub, with their own ports and data directories, and optionally a real fault proxy
(`valley-faultproxy`) in front of a hub's peer port to emulate a bad WAN link."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import uuid
import signal
import subprocess
import time
from pathlib import Path

import requests

from conftest import ACCESS_KEY, SECRET_KEY, free_port, make_client, valley_bin

NETWORK_SECRET = "valley-test-network-secret"

# id, jurisdiction, role, failure domain
HUBS = [
    ("zhangjiakou", "CN", "east", "north-china-grid"),
    ("gui-an", "CN", "west", "southern-grid"),
    ("wuhu", "CN", "east", "east-china-grid"),
    ("hong-kong", "HK", "east", "hong-kong"),
    ("frankfurt", "EU", "east", "central-europe"),
]


def sign_peer_call(secret: str, method: str, path: str, identity: str, body: bytes | None,
                   headers: dict | None = None, topology: str = "") -> dict:
    """The headers of a peer (or admin) call signed with scheme v2, as `valley_replicate::auth`
    signs them: method, path and query, and every x-valley-* header, the body's SHA-256 among
    them (`body=None`: a body streamed and checked end to end, `streaming-checked`)."""
    h = {k.lower(): v for k, v in (headers or {}).items()}
    h["x-valley-topology"] = topology
    h["x-valley-identity"] = identity
    h["x-valley-time"] = str(int(time.time()))
    h["x-valley-nonce"] = os.urandom(16).hex()
    h["x-valley-content-sha256"] = "streaming-checked" if body is None else hashlib.sha256(body).hexdigest()
    signed = sorted((k, v) for k, v in h.items() if k.startswith("x-valley-"))
    text = f"VALLEY-HMAC-SHA256-v2\n{method}\n{path}\n" + "".join(f"{k}:{v}\n" for k, v in signed)
    h["x-valley-signature"] = "v2:" + hmac.new(secret.encode(), text.encode(), hashlib.sha256).hexdigest()
    return h


def pem_sha256(path: Path) -> str:
    """SHA-256 of the first certificate of a PEM file (its DER bytes), as the topology pins it."""
    text = path.read_text()
    body = text.split("-----BEGIN CERTIFICATE-----")[1].split("-----END CERTIFICATE-----")[0]
    return hashlib.sha256(base64.b64decode("".join(body.split()))).hexdigest()


def marker() -> bytes:
    """A unique byte string to plant in test data and search for in hubs' data directories."""
    return f"VALLEY-MARKER-{uuid.uuid4().hex}".encode()


def wait_for(predicate, timeout=60, what="condition", interval=0.2):
    """Polls `predicate` until it returns something true (returned), or fails after `timeout`."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what}")


def faultproxy_bin() -> Path:
    path = valley_bin().parent / "valley-faultproxy"
    assert path.exists(), f"{path} is missing: build it with `cargo build --release -p valley-faultproxy`"
    return path


class Proxy:
    """A fault proxy process with its JSON-lines control port."""

    def __init__(self, workdir: Path, target_port: int, seed: int):
        self.port = free_port()
        self.control_port = free_port()
        self.log = workdir / f"proxy-{self.port}.log"
        self.proc = subprocess.Popen(
            [str(faultproxy_bin()), "--listen", f"127.0.0.1:{self.port}", "--target", f"127.0.0.1:{target_port}",
             "--control", f"127.0.0.1:{self.control_port}", "--seed", str(seed)],
            stdout=open(self.log, "wb"), stderr=subprocess.STDOUT)
        deadline = time.time() + 10
        while time.time() < deadline:
            try:
                self.command({"cmd": "get"})
                return
            except OSError:
                time.sleep(0.05)
        raise AssertionError(f"fault proxy did not start: {self.log.read_text()}")

    def command(self, cmd: dict) -> dict:
        import socket
        with socket.create_connection(("127.0.0.1", self.control_port), timeout=5) as s:
            s.sendall((json.dumps(cmd) + "\n").encode())
            reply = s.makefile().readline()
        answer = json.loads(reply)
        assert answer.get("ok"), answer
        return answer

    def stop(self):
        self.proc.kill()
        self.proc.wait()


class Network:
    def __init__(self, workdir: Path, hubs=HUBS, proxied: tuple[str, ...] = (), topology_overrides: dict | None = None,
                 links: tuple[str, ...] = (), serve_args: tuple[str, ...] = ()):
        """`links` are extra `[[link]]` bodies (TOML lines); `serve_args` go to every `valley serve`."""
        self.workdir = workdir
        self.links = links
        self.serve_args = serve_args
        self.hubs = {h[0]: h for h in hubs}
        self.ports = {h[0]: (free_port(), free_port()) for h in hubs}
        self.procs: dict[str, subprocess.Popen] = {}
        self.proxies: dict[str, Proxy] = {}
        for hub in proxied:
            self.proxies[hub] = Proxy(workdir, self.ports[hub][1], seed=len(self.proxies) + 7)
        # Hubs talk over mutual TLS: a network CA and a certificate per hub, made by the
        # binary's own `valley cert init`, the CA pinned in the topology.
        self.certs = workdir / "certs"
        plain = workdir / "topology-without-tls.toml"
        plain.write_text(self.topology_text(topology_overrides or {}, tls=False))
        made = subprocess.run([str(valley_bin()), "cert", "init", "--topology", str(plain), "--out", str(self.certs)],
                              capture_output=True, text=True, timeout=60)
        assert made.returncode == 0, made.stderr
        self.ca = self.certs / "ca.pem"
        self.ca_sha256 = pem_sha256(self.ca)
        assert self.ca_sha256 in made.stdout, made.stdout
        self.topology = workdir / "topology.toml"
        self.topology.write_text(self.topology_text(topology_overrides or {}))

    def hub_cert(self, hub: str) -> tuple[str, str]:
        """The certificate and key of `hub`, as `requests` takes a client certificate."""
        return str(self.certs / hub / "cert.pem"), str(self.certs / hub / "key.pem")

    def topology_text(self, overrides: dict, tls: bool = True) -> str:
        scheme = "https" if tls else "http"
        out = [f'[tls]\nca_sha256 = "{self.ca_sha256}"\n'] if tls else []
        for hub_id, jurisdiction, role, domain in self.hubs.values():
            s3_port, peer_port = self.ports[hub_id]
            if hub_id in self.proxies:
                peer_port = self.proxies[hub_id].port
            jurisdiction = overrides.get(hub_id, jurisdiction)
            out.append(
                f'[[hub]]\nid = "{hub_id}"\njurisdiction = "{jurisdiction}"\nrole = "{role}"\nlat = 30.0\nlon = 110.0\n'
                f'failure_domain = "{domain}"\ns3_endpoint = "{scheme}://127.0.0.1:{s3_port}"\n'
                f'peer_endpoint = "{scheme}://127.0.0.1:{peer_port}"\n')
        out.extend(f"[[link]]\n{body}\n" for body in self.links)
        return "\n".join(out)

    def data_dir(self, hub: str) -> Path:
        return self.workdir / hub

    def start(self, hub: str, topology: Path | None = None, secret: str = NETWORK_SECRET, extra: tuple = ()):
        s3_port, admin_port = self.ports[hub]
        env = dict(os.environ, VALLEY_ACCESS_KEY=ACCESS_KEY, VALLEY_SECRET_KEY=SECRET_KEY,
                   VALLEY_NETWORK_SECRET=secret, VALLEY_LOG="info")
        log = open(self.workdir / f"{hub}.log", "ab")
        self.procs[hub] = subprocess.Popen(
            [str(valley_bin()), "serve", "--hub", hub, "--topology", str(topology or self.topology),
             "--data", str(self.data_dir(hub)), "--listen", f"127.0.0.1:{s3_port}",
             "--admin-listen", f"127.0.0.1:{admin_port}",
             "--tls-cert", str(self.certs / hub / "cert.pem"), "--tls-key", str(self.certs / hub / "key.pem"),
             "--tls-ca", str(self.ca), *self.serve_args, *extra],
            env=env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.time() + 30
        while time.time() < deadline:
            assert self.procs[hub].poll() is None, f"hub {hub} exited:\n{self.log(hub)}"
            try:
                if self.get(f"{self.s3_endpoint(hub)}/_valley/health", timeout=1).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.05)
        raise AssertionError(f"hub {hub} did not become healthy:\n{self.log(hub)}")

    def start_all(self):
        for hub in self.hubs:
            self.start(hub)

    def kill(self, hub: str, sig=signal.SIGKILL):
        proc = self.procs.pop(hub)
        proc.send_signal(sig)
        proc.wait(timeout=30)

    def stop_all(self):
        for hub in list(self.procs):
            self.kill(hub, signal.SIGTERM)
        for proxy in self.proxies.values():
            proxy.stop()

    def log(self, hub: str) -> str:
        path = self.workdir / f"{hub}.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""

    def s3_endpoint(self, hub: str) -> str:
        return f"https://127.0.0.1:{self.ports[hub][0]}"

    def admin_endpoint(self, hub: str) -> str:
        return f"https://127.0.0.1:{self.ports[hub][1]}"

    def get(self, url: str, **kwargs):
        """A GET over TLS, trusting the network CA."""
        return requests.get(url, verify=str(self.ca), **kwargs)

    def peer_call(self, method: str, to_hub: str, path: str, as_hub: str = "zhangjiakou", body: bytes | None = b"",
                  headers: dict | None = None, cert_of: str | None = "", secret: str = NETWORK_SECRET,
                  topology: str | None = None, timeout: float = 5):
        """A peer call to `to_hub` signed as `as_hub` (v2), over TLS with the certificate of
        `cert_of` (default: `as_hub`'s; None: no client certificate). `body=None` streams a
        body checked end to end (`data` then comes from headers['__data__'])."""
        headers = dict(headers or {})
        data = headers.pop("__data__", None)
        if topology is None:
            topology = self.status(next(iter(self.procs)))["topology"]
        signed = sign_peer_call(secret, method, path, as_hub, body, headers, topology)
        cert = None if cert_of is None else self.hub_cert(cert_of or as_hub)
        return requests.request(method, self.admin_endpoint(to_hub) + path, data=body if body is not None else data,
                                headers=signed, verify=str(self.ca), cert=cert, timeout=timeout)

    def s3(self, hub: str):
        return make_client(self.s3_endpoint(hub), ACCESS_KEY, SECRET_KEY, verify=str(self.ca))

    def cli(self, hub: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        env = dict(os.environ, VALLEY_ACCESS_KEY=ACCESS_KEY, VALLEY_SECRET_KEY=SECRET_KEY, VALLEY_CA=str(self.ca))
        result = subprocess.run([str(valley_bin()), "--admin", self.admin_endpoint(hub), *args],
                                env=env, capture_output=True, text=True, timeout=60)
        if check:
            assert result.returncode == 0, f"valley {' '.join(args)} failed: {result.stderr}"
        return result

    def status(self, hub: str) -> dict:
        return json.loads(self.cli(hub, "status", "--json").stdout)

    def wait_idle(self, hub: str, timeout: float = 60) -> dict:
        """Waits until no link of any reachable hub has a backlog."""
        deadline = time.time() + timeout
        while True:
            status = self.status(hub)
            backlog = sum(l["backlog_entries"] for l in status["links"])
            if backlog == 0 or time.time() > deadline:
                return status
            time.sleep(0.2)

    def holdings(self, hub: str, bucket: str) -> dict[str, int]:
        status = self.status(hub)
        for b in status["buckets"]:
            if b["bucket"] == bucket:
                return {h["hub"]: h["objects"] for h in b["holders"]}
        return {}

    def bytes_containing(self, hub: str, marker: bytes) -> int:
        """Bytes of files in a hub's data directory that contain `marker` anywhere: metadata
        (inline objects), blobs, temporary files. Zero means the hub holds no trace of it."""
        total = 0
        for path in self.data_dir(hub).rglob("*"):
            if path.is_file():
                data = path.read_bytes()
                if marker in data:
                    total += data.count(marker) * len(marker)
        return total
