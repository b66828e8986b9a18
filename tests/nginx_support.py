"""Debian's nginx for the tests of deploy/nginx/: a private nginx run from a folder of its
own (its own pid, temp and log files), a test CA and a server certificate, free ports.

    nginx_binary()                       the binary, or the test is skipped
    free_port()                          a free TCP port on 127.0.0.1
    make_certificates(folder)            (ca.pem, server.pem, server.key, SPKI hash)
    Nginx(folder, site_text)             `nginx -t`, then nginx in the foreground; .stop()
    site_config(...), multi_site(...)    deploy/nginx/ncii-node.conf, ncii-node-multi.conf with
                                         this machine's ports and files
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import ipaddress
import os
import shutil
import socket
import subprocess
from pathlib import Path

import pytest

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"


def nginx_binary() -> str:
    path = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)
    if path is None:
        pytest.skip("nginx is absent (Debian's nginx; scripts/install_service_tools installs it)")
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_certificates(folder: Path) -> tuple[Path, Path, Path, str]:
    """A test CA and a server certificate for 127.0.0.1 / localhost signed by it:
    (ca.pem, server.pem, server.key, base64 SHA-256 of the server's public key)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ncii-node test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
          .not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
                                       key_encipherment=False, data_encipherment=False, key_agreement=False,
                                       encipher_only=False, decipher_only=False), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    pem = serialization.Encoding.PEM
    (folder / "ca.pem").write_bytes(ca.public_bytes(pem))
    (folder / "server.pem").write_bytes(cert.public_bytes(pem) + ca.public_bytes(pem))
    (folder / "server.key").write_bytes(key.private_bytes(pem, serialization.PrivateFormat.PKCS8,
                                                          serialization.NoEncryption()))
    spki = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return folder / "ca.pem", folder / "server.pem", folder / "server.key", \
        base64.b64encode(hashlib.sha256(spki).digest()).decode()


class Nginx:
    def __init__(self, folder: Path, site: str):
        self.folder = folder
        folder.mkdir()
        (folder / "site.conf").write_text(site)
        temp = " ".join(f"{name}_temp_path {folder / name};" for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
        (folder / "nginx.conf").write_text(
            ("user root;\n" if os.geteuid() == 0 else "")
            + f"worker_processes 1;\npid {folder / 'nginx.pid'};\nerror_log {folder / 'main-error.log'} info;\n"
            f"events {{ worker_connections 128; }}\nhttp {{ {temp} include {folder / 'site.conf'}; }}\n")
        binary = nginx_binary()
        check = subprocess.run([binary, "-t", "-p", str(folder), "-c", str(folder / "nginx.conf")],
                               capture_output=True, text=True, timeout=30)
        assert check.returncode == 0, check.stderr
        self.process = subprocess.Popen([binary, "-p", str(folder), "-c", str(folder / "nginx.conf"),
                                         "-g", "daemon off;"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def site_config(node_port: int, http_port: int, https_port: int, cert: Path, key: Path, error_log: Path) -> str:
    """deploy/nginx/ncii-node.conf with this machine's names, ports and files (each
    substitution must apply: the test follows the real template)."""
    text = (DEPLOY / "nginx" / "ncii-node.conf").read_text()
    for old, new in (("server 127.0.0.1:8080;", f"server 127.0.0.1:{node_port};"),
                     ("    listen 80;\n    listen [::]:80;\n", f"    listen 127.0.0.1:{http_port};\n"),
                     ("    listen 443 ssl;\n    listen [::]:443 ssl;\n", f"    listen 127.0.0.1:{https_port} ssl;\n"),
                     ("server_name node.example.org;", "server_name 127.0.0.1 localhost;"),
                     ("/etc/letsencrypt/live/node.example.org/fullchain.pem", str(cert)),
                     ("/etc/letsencrypt/live/node.example.org/privkey.pem", str(key)),
                     ("/var/log/nginx/ncii-node.error.log", str(error_log))):
        assert old in text, f"deploy/nginx/ncii-node.conf no longer holds {old!r}"
        text = text.replace(old, new)
    return text


def multi_site(public: list[int], admin: list[int], https_port: int, match_port: int, cert: Path, key: Path,
               folder: Path) -> str:
    """The real template with this machine's ports and files (each substitution must apply)."""
    text = (DEPLOY / "nginx" / "ncii-node-multi.conf").read_text()
    for old, new in (("server 127.0.0.1:8080 ", f"server 127.0.0.1:{public[0]} "),
                     ("server 127.0.0.1:8081 ", f"server 127.0.0.1:{public[1]} "),
                     ("server 127.0.0.1:9080 ", f"server 127.0.0.1:{admin[0]} "),
                     ("server 127.0.0.1:9081 ", f"server 127.0.0.1:{admin[1]} "),
                     ("    listen 80;\n    listen [::]:80;\n", f"    listen 127.0.0.1:{free_port()};\n"),
                     ("    listen 443 ssl;\n    listen [::]:443 ssl;\n", f"    listen 127.0.0.1:{https_port} ssl;\n"),
                     ("listen 127.0.0.1:9443;", f"listen 127.0.0.1:{match_port};"),
                     ("/etc/letsencrypt/live/node.example.org/fullchain.pem", str(cert)),
                     ("/etc/letsencrypt/live/node.example.org/privkey.pem", str(key)),
                     ("/var/log/nginx/ncii-node.error.log", str(folder / "public-error.log")),
                     ("/var/log/nginx/ncii-node-match.error.log", str(folder / "match-error.log"))):
        assert old in text, f"deploy/nginx/ncii-node-multi.conf no longer holds {old!r}"
        text = text.replace(old, new, 2 if old.startswith("server 127.0.0.1:80") else 1)
    return text.replace("server_name node.example.org;", "server_name 127.0.0.1 localhost;")
