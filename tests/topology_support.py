"""A small production topology for tests/test_topology.py: a CA made here, nginx (Debian's)
terminating TLS with docs/nginx/authserver.conf, authserver hosts each in a network
namespace of its own, and one PostgreSQL and one Redis started on the namespaces' network.

Where network namespaces cannot be made (no root, no ``ip``, a sandbox without netns), the
hosts listen on two loopback addresses instead; ``Network.variant`` says which ran.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import os
import random
import shutil
import signal
import subprocess
import time
import uuid
from pathlib import Path

import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from serverproc import BIN, free_port

REPO = Path(__file__).resolve().parent.parent
NGINX_CONF = REPO / "docs" / "nginx" / "authserver.conf"
NAMESPACES = "network namespaces"
LOOPBACK = "loopback addresses"
HOST_PORT = 8000


def run(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(list(args), capture_output=True, text=True, timeout=30, check=check)


# --- TLS -----------------------------------------------------------------------------------

def make_ca_and_certificate(folder: Path, ip: str) -> tuple[Path, Path, Path]:
    """A CA, and a server certificate it signs for ``ip`` and localhost: (ca, cert, key)."""
    now = dt.datetime.now(dt.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "authserver test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - dt.timedelta(minutes=5))
          .not_valid_after(now + dt.timedelta(hours=2))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False,
                                       data_encipherment=False, key_agreement=False,
                                       encipher_only=False, decipher_only=False), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()),
                         critical=False)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
            .issuer_name(ca_name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName([
                x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address(ip))]),
                critical=False)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]),
                           critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    paths = folder / "ca.pem", folder / "server.pem", folder / "server.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    paths[2].chmod(0o600)
    return paths


# --- the network ---------------------------------------------------------------------------

class Network:
    """Two hosts' addresses, and where the shared services and the proxy meet them."""

    def __init__(self, hosts: int = 2):
        self.tag = uuid.uuid4().hex[:6]
        self.namespaces: list[str] = []
        self.links: list[str] = []
        try:
            self._make_namespaces(hosts)
            self.variant = NAMESPACES
        except (OSError, subprocess.SubprocessError) as exc:
            self.destroy()
            self.reason = str(exc)
            self.variant = LOOPBACK
            self.gateway = "127.0.0.1"
            self.addresses = [f"127.0.0.{2 + i}" for i in range(hosts)]
            self.trusted = "127.0.0.0/8"

    def _make_namespaces(self, hosts: int) -> None:
        if os.geteuid() != 0 or not shutil.which("ip"):
            raise OSError("network namespaces need root and iproute2")
        taken = run("ip", "-4", "route").stdout
        subnet = f"10.{random.randint(100, 250)}.{random.randint(0, 255)}"
        while f"{subnet}." in taken:  # a subnet no route on this machine uses
            subnet = f"10.{random.randint(100, 250)}.{random.randint(0, 255)}"
        self.gateway = f"{subnet}.1"
        self.trusted = f"{self.gateway}/32"
        self.addresses = [f"{subnet}.{11 + i}" for i in range(hosts)]
        bridge = f"asbr{self.tag}"
        run("ip", "link", "add", bridge, "type", "bridge")
        self.links.append(bridge)
        run("ip", "addr", "add", f"{self.gateway}/24", "dev", bridge)
        run("ip", "link", "set", bridge, "up")
        for i, address in enumerate(self.addresses):
            namespace, outside, inside = f"as{self.tag}h{i}", f"asv{self.tag}{i}", f"asp{self.tag}{i}"
            run("ip", "netns", "add", namespace)
            self.namespaces.append(namespace)
            run("ip", "link", "add", outside, "type", "veth", "peer", "name", inside)
            self.links.append(outside)
            run("ip", "link", "set", inside, "netns", namespace)
            run("ip", "link", "set", outside, "master", bridge)
            run("ip", "link", "set", outside, "up")
            for command in (["ip", "addr", "add", f"{address}/24", "dev", inside],
                            ["ip", "link", "set", inside, "up"],
                            ["ip", "link", "set", "lo", "up"]):
                run("ip", "netns", "exec", namespace, *command)

    def prefix(self, index: int) -> list[str]:
        """The command prefix that runs a program on host ``index``."""
        return ["ip", "netns", "exec", self.namespaces[index]] if self.namespaces else []

    def destroy(self) -> None:
        for namespace in self.namespaces:
            run("ip", "netns", "del", namespace, check=False)
        for link in self.links:
            run("ip", "link", "del", link, check=False)
        self.namespaces, self.links = [], []


# --- processes -----------------------------------------------------------------------------

class Redis:
    """A private redis-server on ``address``, with a password (off loopback, Redis refuses
    clients without one: protected mode)."""

    def __init__(self, address: str, folder: Path):
        self.port = free_port()
        password = uuid.uuid4().hex
        self.url = f"redis://:{password}@{address}:{self.port}/0"
        self.process = subprocess.Popen(
            ["redis-server", "--bind", address, "--port", str(self.port), "--save", "",
             "--appendonly", "no", "--dir", str(folder), "--requirepass", password],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while run("redis-cli", "-h", address, "-p", str(self.port), "--no-auth-warning",
                  "-a", password, "ping", check=False).stdout.strip() != "PONG":
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError("redis did not start")
            time.sleep(0.05)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)


class Host:
    """``authserver serve`` on one host of the network, configured from its environment."""

    def __init__(self, network: Network, index: int, env: dict, folder: Path):
        self.network, self.index, self.env = network, index, env
        self.address = network.addresses[index]
        self.url = f"http://{self.address}:{HOST_PORT}"
        self.folder = folder
        self.log_path = folder / "server.log"
        self.process: subprocess.Popen | None = None
        self.log = None

    def start(self, **settings: str) -> "Host":
        """Start with ``settings`` (AUTHSERVER_* names without the prefix) added."""
        env = {**self.env, **{f"AUTHSERVER_{k}": v for k, v in settings.items()}}
        self._close_log()
        self.log = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            [*self.network.prefix(self.index), str(BIN / "authserver"), "serve", "--host",
             self.address, "--port", str(HOST_PORT), "--workers", "2"],
            env=env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        return self

    def wait_ready(self, timeout: float = 30.0) -> "Host":
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"host {self.index} exited: {self.log_path.read_text()[-2000:]}")
            try:
                if requests.get(self.url + "/readyz", timeout=1).status_code == 200:
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.1)
        raise TimeoutError(f"host {self.index} not ready")

    def stop(self) -> None:
        """SIGTERM (graceful: in-flight requests finish) and wait."""
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()
        self._close_log()

    def _close_log(self) -> None:
        if self.log is not None:
            self.log.close()
            self.log = None

    def kill(self) -> None:
        """SIGKILL the host's master and workers at once (a machine that dies)."""
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)
        self._close_log()

    def served(self, request_id: str) -> bool:
        """True when this host's access log has a line for ``request_id``."""
        for line in self.log_path.read_text().splitlines():
            if request_id in line:
                try:
                    if json.loads(line).get("request_id") == request_id:
                        return True
                except ValueError:
                    continue
        return False


class Nginx:
    """nginx with docs/nginx/authserver.conf, rendered for this topology."""

    def __init__(self, folder: Path, listen: str, upstreams: list[str], cert: Path, key: Path):
        self.folder = folder
        # fail_timeout is short here so a restarted host gets traffic again within the test's
        # patience; production may keep docs/nginx/authserver.conf's suggestion.
        servers = "\n    ".join(f"server {upstream} max_fails=1 fail_timeout=1s;"
                               for upstream in upstreams)
        site = (NGINX_CONF.read_text().replace("@@UPSTREAM_SERVERS@@", servers)
                .replace("@@LISTEN@@", listen).replace("@@SERVER_NAME@@", "localhost")
                .replace("@@CERTIFICATE@@", str(cert)).replace("@@CERTIFICATE_KEY@@", str(key)))
        (folder / "authserver.conf").write_text(site)
        temp = {name: folder / name for name in ("body", "proxy", "fastcgi", "uwsgi", "scgi")}
        for path in temp.values():
            path.mkdir()
        # The main file only says where this throw-away nginx keeps its files.
        (folder / "nginx.conf").write_text(f"""
worker_processes 1;
pid {folder}/nginx.pid;
error_log {folder}/error.log warn;
user root;
events {{ worker_connections 512; }}
http {{
    access_log {folder}/access.log;
    client_body_temp_path {temp['body']};
    proxy_temp_path {temp['proxy']};
    fastcgi_temp_path {temp['fastcgi']};
    uwsgi_temp_path {temp['uwsgi']};
    scgi_temp_path {temp['scgi']};
    include {folder}/authserver.conf;
}}
""")
        check = run(self.binary(), "-t", "-c", str(folder / "nginx.conf"), "-p", str(folder),
                    check=False)
        if check.returncode != 0:
            raise RuntimeError(f"nginx -t: {check.stderr}")
        self.process = subprocess.Popen(
            [self.binary(), "-c", str(folder / "nginx.conf"), "-p", str(folder),
             "-g", "daemon off;"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    @staticmethod
    def binary() -> str:
        return shutil.which("nginx") or "/usr/sbin/nginx"

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
