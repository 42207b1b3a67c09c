"""Tokens, certificates and the kubeconfig: the pieces that make the apiserver secure by default."""

from __future__ import annotations

import ipaddress
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from netlab.cluster import auth, certs, kubeconfig
from netlab.errors import ConfigError


def test_token_file(tmp_path: Path) -> None:
    path = tmp_path / "tokens.csv"
    auth.ensure_token_file(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    tokens = auth.load_token_file(path)
    admin = auth.token_for(tokens, "admin")
    viewer = auth.token_for(tokens, "viewer")
    a = auth.Authenticator(tokens)
    assert a.authenticate(f"Bearer {admin}").may("delete")
    ro = a.authenticate(f"Bearer {viewer}")
    assert ro is not None and ro.may("list") and not ro.may("create") and not ro.may("patch")
    assert a.authenticate(None) is None
    assert a.authenticate(f"Basic {admin}") is None
    assert a.authenticate("Bearer wrong") is None
    before = path.read_text()
    auth.ensure_token_file(path)  # existing tokens are kept
    assert path.read_text() == before


def test_token_file_errors() -> None:
    users = auth.parse_token_file('t1,alice,1,"g1,g2"\n# comment\n\nt2,bob,2\n')
    assert users["t1"].groups == ("g1", "g2") and users["t2"].groups == ()
    with pytest.raises(ConfigError, match=":1: expected"):
        auth.parse_token_file("justatoken\n")
    with pytest.raises(ConfigError, match="no tokens"):
        auth.parse_token_file("# nothing\n")


def signed_by(cert: x509.Certificate, ca: x509.Certificate) -> None:
    assert cert.issuer == ca.subject
    key = ca.public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey) and cert.signature_hash_algorithm is not None
    key.verify(cert.signature, cert.tbs_certificate_bytes, ec.ECDSA(cert.signature_hash_algorithm))


def test_certs_cover_hosts_and_are_reused(tmp_path: Path) -> None:
    paths = certs.ensure_certs(tmp_path, ["127.0.0.1", "localhost", "10.96.0.1"])
    cert = x509.load_pem_x509_certificate(paths.cert.read_bytes())
    ca = x509.load_pem_x509_certificate(paths.ca_cert.read_bytes())
    signed_by(cert, ca)
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert ipaddress.ip_address("127.0.0.1") in sans.get_values_for_type(x509.IPAddress)
    assert "localhost" in sans.get_values_for_type(x509.DNSName)
    assert stat.S_IMODE(paths.ca_key.stat().st_mode) == 0o600
    serial = cert.serial_number
    certs.ensure_certs(tmp_path, ["127.0.0.1", "localhost"])  # covered: kept
    assert x509.load_pem_x509_certificate(paths.cert.read_bytes()).serial_number == serial
    certs.ensure_certs(tmp_path, ["127.0.0.2"])  # new SAN: reissued from the same CA
    again = x509.load_pem_x509_certificate(paths.cert.read_bytes())
    assert again.serial_number != serial
    signed_by(again, ca)


def test_kubeconfig_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "kubeconfig"
    kubeconfig.write_kubeconfig(path, "https://127.0.0.1:6443", "tok", b"-----BEGIN CERTIFICATE-----\n")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    kc = kubeconfig.load_kubeconfig(path)
    assert (kc.server, kc.token, kc.ca_pem) == (
        "https://127.0.0.1:6443",
        "tok",
        b"-----BEGIN CERTIFICATE-----\n",
    )
    path.write_text("current-context: nope\n")
    with pytest.raises(ConfigError, match="no usable current context"):
        kubeconfig.load_kubeconfig(path)
