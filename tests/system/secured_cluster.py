"""A secured cluster for tests: nginx terminating TLS in front of the dev server.

The dev server speaks plain gRPC; a production cluster or Temporal Cloud asks
for TLS and a client certificate, or an API key. ``SecuredCluster`` puts
Debian's nginx in front of the session's dev server with two listeners:

* ``mtls_address``: TLS with ``ssl_verify_client on``, trusting only the test's
  CA. A request without a client certificate, or with one from another CA, is
  answered with gRPC status UNAUTHENTICATED, as an authorizing Temporal
  frontend answers, rather than nginx's HTML page.
* ``api_key_address``: TLS without client certificates; a request whose
  ``authorization`` is not ``Bearer <api_key>`` gets UNAUTHENTICATED.

``Certificates`` are made here with ``cryptography``: a CA, a server
certificate for ``SERVER_NAME`` (the name, not 127.0.0.1, so the client's
server-name setting is what makes the handshake pass), a client certificate,
and a second, untrusted CA with a client certificate of its own. Everything
lives in one temporary directory; nginx runs in the foreground with its pid,
logs and temp files there.
"""

from __future__ import annotations

import datetime
import shutil
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from wiring.local_stack import free_port, stop_process, wait_for_port

#: The name on the proxy's server certificate; clients must ask for it.
SERVER_NAME = "temporal.booking.test"
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"


@dataclass(frozen=True)
class Pair:
    """A certificate and its private key, as PEM files."""

    cert: Path
    key: Path


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _write(directory: Path, stem: str, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> Pair:
    pair = Pair(directory / f"{stem}.pem", directory / f"{stem}.key")
    pair.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pair.key.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    pair.key.chmod(0o600)
    return pair


class Authority:
    """A certificate authority that signs server and client certificates."""

    def __init__(self, directory: Path, name: str) -> None:
        self.directory = directory
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.subject = _name(name)
        now = datetime.datetime.now(datetime.UTC)
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(self.subject)
            .issuer_name(self.subject)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(self.key.public_key()), critical=False)
            .sign(self.key, hashes.SHA256())
        )
        self.pair = _write(directory, name, self.cert, self.key)

    def issue(self, stem: str, common_name: str, *, server_name: str | None = None) -> Pair:
        """A leaf certificate: for a server if ``server_name`` is given, else for a client."""
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        usage = ExtendedKeyUsageOID.SERVER_AUTH if server_name else ExtendedKeyUsageOID.CLIENT_AUTH
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(common_name))
            .issuer_name(self.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()), critical=False)
        )
        if server_name:
            builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(server_name)]), critical=False)
        return _write(self.directory, stem, builder.sign(self.key, hashes.SHA256()), key)


@dataclass(frozen=True)
class Certificates:
    ca: Pair
    server: Pair
    client: Pair
    #: A CA the proxy does not trust, and a client certificate it signed.
    wrong_ca: Pair
    wrong_client: Pair

    @classmethod
    def make(cls, directory: Path) -> Certificates:
        directory.mkdir(parents=True, exist_ok=True)
        ca = Authority(directory, "test-ca")
        wrong = Authority(directory, "wrong-ca")
        return cls(
            ca=ca.pair,
            server=ca.issue("server", "temporal proxy", server_name=SERVER_NAME),
            client=ca.issue("client", "booking-worker"),
            wrong_ca=wrong.pair,
            wrong_client=wrong.issue("wrong-client", "booking-worker"),
        )


#: gRPC's UNAUTHENTICATED, sent as a trailers-only answer so a gRPC client reads
#: a status and a message instead of an HTTP error page.
UNAUTHENTICATED = 16


def _grpc_refusal(name: str, message: str) -> str:
    return f"""
        location @{name} {{
            default_type application/grpc;
            add_header grpc-status {UNAUTHENTICATED} always;
            add_header grpc-message "{message}" always;
            return 204;
        }}"""


def nginx_config(root: Path, certs: Certificates, upstream: str, mtls_port: int, api_port: int, api_key: str) -> str:
    tls = f"""
        ssl_certificate {certs.server.cert};
        ssl_certificate_key {certs.server.key};
        ssl_protocols TLSv1.2 TLSv1.3;"""
    # In the foreground, one process, everything under ``root``: no master to
    # drop privileges, so no ``user`` directive; the test stops it by its pid.
    return f"""
daemon off;
master_process off;
worker_processes 1;
pid {root}/nginx.pid;
error_log {root}/error.log info;
events {{ worker_connections 256; }}
http {{
    access_log {root}/access.log;
    client_body_temp_path {root}/client_body;
    proxy_temp_path {root}/proxy;
    fastcgi_temp_path {root}/fastcgi;
    uwsgi_temp_path {root}/uwsgi;
    scgi_temp_path {root}/scgi;
    # Long polls (a worker's task poll, a result wait) outlive nginx's 60 s defaults.
    grpc_read_timeout 300s;
    grpc_send_timeout 300s;
    client_max_body_size 0;

    server {{
        listen 127.0.0.1:{mtls_port} ssl http2;
        {tls}
        ssl_client_certificate {certs.ca.cert};
        ssl_verify_client on;
        # 496: no client certificate; 495: one that does not verify against the CA.
        error_page 496 = @no_certificate;
        error_page 495 = @bad_certificate;
        location / {{
            grpc_pass grpc://{upstream};
        }}
        {_grpc_refusal("no_certificate", "client certificate required")}
        {_grpc_refusal("bad_certificate", "client certificate not trusted")}
    }}

    server {{
        listen 127.0.0.1:{api_port} ssl http2;
        {tls}
        error_page 418 = @bad_api_key;
        location / {{
            if ($http_authorization != "Bearer {api_key}") {{
                return 418;
            }}
            grpc_pass grpc://{upstream};
        }}
        {_grpc_refusal("bad_api_key", "invalid API key")}
    }}
}}
"""


class SecuredCluster:
    """nginx in front of ``upstream`` (the dev server), until ``stop``."""

    def __init__(self, root: Path, upstream: str) -> None:
        if not Path(NGINX).exists():
            raise RuntimeError("the secured-cluster tests need nginx: apt-get install nginx (.ci/run installs it)")
        self.root = root
        self.certs = Certificates.make(root / "certs")
        self.api_key = f"key-{uuid.uuid4().hex}"
        mtls_port, api_port = free_port(), free_port()
        self.mtls_address = f"127.0.0.1:{mtls_port}"
        self.api_key_address = f"127.0.0.1:{api_port}"
        self.config = root / "nginx.conf"
        self.config.write_text(nginx_config(root, self.certs, upstream, mtls_port, api_port, self.api_key))
        self.proc = subprocess.Popen(
            [NGINX, "-p", str(root), "-c", str(self.config), "-e", str(root / "error.log")],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            wait_for_port("127.0.0.1", mtls_port, self.proc)
            wait_for_port("127.0.0.1", api_port, self.proc)
        except RuntimeError:
            self.stop()
            raise RuntimeError(f"nginx did not start:\n{self.log()}") from None

    def log(self) -> str:
        out = self.proc.stdout.read() if self.proc.stdout and self.proc.poll() is not None else ""
        error_log = self.root / "error.log"
        return out + (error_log.read_text() if error_log.exists() else "")

    def stop(self) -> None:
        stop_process(self.proc)
