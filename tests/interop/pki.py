"""Throwaway certificates for the TLS tests, made with python `cryptography`: certificate
authorities, server and client certificates, written as PEM files."""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
import os
import socket
import ssl
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Meridian interop"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def _write_key(key, path: Path) -> None:
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                       serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    os.chmod(path, 0o600)


@dataclass
class Identity:
    """A certificate and its key, as PEM files."""
    cert: Path
    key: Path

    @property
    def fingerprint(self) -> str:
        return pem_fingerprint(self.cert)


class Authority:
    """A certificate authority that issues certificates into `directory`."""

    def __init__(self, directory: Path, name: str):
        self.directory = directory
        self.name = name
        self.key = ec.generate_private_key(ec.SECP256R1())
        subject = _name(name)
        now = _now()
        self.certificate = (
            x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(self.key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False,
                                         key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, key_cert_sign=True, crl_sign=True,
                                         encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(self.key.public_key()),
                           critical=False)
            .sign(self.key, hashes.SHA256()))
        slug = name.lower().replace(" ", "-").replace("'", "")
        self.cert = directory / f"{slug}.crt"
        self.cert.write_bytes(self.certificate.public_bytes(serialization.Encoding.PEM))

    def issue(self, common_name: str, *, server: bool = False, dns: list[str] | None = None,
              ips: list[str] | None = None, file_stem: str | None = None) -> Identity:
        key = ec.generate_private_key(ec.SECP256R1())
        now = _now()
        names = [x509.DNSName(d) for d in (dns or [])]
        names += [x509.IPAddress(ipaddress.ip_address(i)) for i in (ips or [])]
        usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
        builder = (
            x509.CertificateBuilder().subject_name(_name(common_name))
            .issuer_name(self.certificate.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                self.key.public_key()), critical=False))
        if names:
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        certificate = builder.sign(self.key, hashes.SHA256())
        stem = file_stem or common_name.replace(" ", "-")
        identity = Identity(self.directory / f"{stem}.crt", self.directory / f"{stem}.key")
        identity.cert.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
        _write_key(key, identity.key)
        return identity


def self_signed_server(cert: Path, key: Path, common_name: str = "localhost") -> Identity:
    """A self-signed server certificate for localhost, 127.0.0.1 and ::1, shaped like the one
    Meridian generates (an authority of its own, so clients can pin it as their CA file)."""
    private_key = ec.generate_private_key(ec.SECP256R1())
    subject = _name(common_name)
    now = _now()
    certificate = (
        x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
        .public_key(private_key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False,
                                     key_encipherment=False, data_encipherment=False,
                                     key_agreement=False, key_cert_sign=True, crl_sign=False,
                                     encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName([
            x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
            x509.IPAddress(ipaddress.ip_address("::1"))]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(private_key.public_key()),
                       critical=False)
        .sign(private_key, hashes.SHA256()))
    cert.parent.mkdir(parents=True, exist_ok=True)
    cert.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    _write_key(private_key, key)
    return Identity(cert, key)


def pem_fingerprint(path: Path) -> str:
    """SHA-256 of the (first) certificate's DER in a PEM file, lower-case hex."""
    der = x509.load_pem_x509_certificate(path.read_bytes()).public_bytes(
        serialization.Encoding.DER)
    return hashlib.sha256(der).hexdigest()


def served_fingerprint(host: str, port: int, timeout: float = 5.0) -> str:
    """SHA-256 of the certificate a TLS server presents right now, lower-case hex (the
    certificate is not verified: this only looks)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with socket.create_connection((host, port), timeout=timeout) as raw:
        with context.wrap_socket(raw) as tls:
            return hashlib.sha256(tls.getpeercert(binary_form=True)).hexdigest()
