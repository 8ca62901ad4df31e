"""Certificates for RPC mutual TLS tests, made with the openssl CLI (docs/security.md has the same
recipe for operators): a cluster CA, node-N certificates (CN node-N, SAN DNS:chronik-rpc), an
operator certificate (CN admin) and a foreign CA with its own node-2 and admin certificates."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import tls_certs


@dataclass(frozen=True)
class Cert:
    cert: Path
    key: Path
    ca: Path

    def server_args(self) -> list[str]:
        return ["--rpc-tls-cert", str(self.cert), "--rpc-tls-key", str(self.key), "--rpc-tls-ca", str(self.ca)]

    def admin_args(self) -> list[str]:
        return ["--tls-cert", str(self.cert), "--tls-key", str(self.key), "--tls-ca", str(self.ca)]


_run = tls_certs.openssl


def make_ca(d: Path, name: str) -> tuple[Path, Path]:
    d.mkdir(parents=True, exist_ok=True)
    tls_certs.make_ca(d, name)
    return d / f"{name}.pem", d / f"{name}.key"


def sign(d: Path, ca: tuple[Path, Path], cn: str, *, node: bool) -> Cert:
    """A certificate for `cn` signed by `ca` (tls_certs.make_cert with the RPC port's names: nodes
    carry the shared server name chronik-rpc, operators client use only)."""
    ext = d / f"{cn}.ext"
    if node:
        ext.write_text("subjectAltName=DNS:chronik-rpc\nextendedKeyUsage=serverAuth,clientAuth\n")
    else:
        ext.write_text("extendedKeyUsage=clientAuth\n")
    _run("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={cn}", "-keyout", f"{cn}.key",
         "-out", f"{cn}.csr", cwd=d)
    _run("x509", "-req", "-in", f"{cn}.csr", "-CA", str(ca[0]), "-CAkey", str(ca[1]), "-CAcreateserial",
         "-days", "2", "-extfile", ext.name, "-out", f"{cn}.pem", cwd=d)
    return Cert(d / f"{cn}.pem", d / f"{cn}.key", ca[0])


def make_pki(base: Path, nodes: int = 3) -> dict[str, Cert]:
    """{'node-1'.., 'admin', 'other-admin' (same CA, another CN), 'foreign-admin',
    'foreign-node-2'}."""
    ours = base / "ca"
    ca = make_ca(ours, "cluster-ca")
    out = {f"node-{i}": sign(ours, ca, f"node-{i}", node=True) for i in range(1, nodes + 1)}
    out["admin"] = sign(ours, ca, "admin", node=False)
    out["other-admin"] = sign(ours, ca, "other-admin", node=False)
    theirs = base / "foreign"
    fca = make_ca(theirs, "foreign-ca")
    out["foreign-admin"] = sign(theirs, fca, "admin", node=False)
    out["foreign-node-2"] = sign(theirs, fca, "node-2", node=True)
    return out
