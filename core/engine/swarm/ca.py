"""The swarm's certificate authority and node identities (swarmkit's ``ca`` package, in Python).

Every swarm has a root CA (ECDSA P-256, ``CN=swarm-ca``, 20 years), made by ``docker swarm
init`` on the first manager and kept by the managers (:class:`ClusterCA`).  Every node holds a
certificate from it whose subject says who the node is (:class:`NodeIdentity`)::

    CN=<node ID>, OU=<swarm-manager | swarm-worker>, O=<cluster ID>

with the DNS names ``<role>`` and ``<node ID>``: a node that dials a manager checks the server
name ``swarm-manager``, so a worker's certificate cannot serve as a manager.  A manager's
certificate also carries its IP addresses when given (etcd's peers, which use the same
certificates, check the address they dial).  The key of a node
never leaves it: the node sends a CSR and the CA takes only its public key (the subject and
extensions come from the CA, as swarmkit's signing policy).

Certificates live ``node_cert_expiry`` (docker's default 90 days, ``--cert-expiry``; the API
refuses less than an hour, :func:`validate_node_cert_expiry`), backdated by ``backdate`` (an hour)
for clock skew.  A node renews at a random point between 50% and 80% of its certificate's
lifetime (:func:`renew_at`, :meth:`NodeCredentials.needs_renewal`): the point is drawn from the
certificate's own fingerprint, so it is fixed for one certificate and spread over a cluster.

Root rotation (``docker swarm ca --rotate``) in two steps, as swarmkit's:

1. :meth:`ClusterCA.start_rotation` makes a new root key and certificate, and *cross-signs* the
   new root with the old key.  The trust bundle becomes ``[old root, new root]``; node
   certificates are now signed by the new key and carry the cross-signed certificate as an
   intermediate, so a node that still trusts only the old root accepts them, and a node with
   the new bundle accepts the old certificates.  Nodes renew (their renewal returns the new
   bundle too).
2. :meth:`ClusterCA.finish_rotation`, once every node has a certificate from the new key
   (:meth:`ClusterCA.issued_by_current`): the bundle is the new root alone, the old root is
   dropped and certificates from the old key are refused.

The bundle's digest changes at each step, and with it the join tokens
(:mod:`core.engine.swarm.tokens`).

Revocation: a removed node's ID goes into :attr:`ClusterCA.revoked`; the transport refuses
certificates of revoked nodes (:mod:`core.engine.swarm.transport`).

On disk (``save``/``load``), keys are written 0600 and atomically (temp file, rename):

- a manager's CA: ``ca.json`` (0600: roots, signing certificate and key, intermediates, expiry,
  join-token secrets, revoked node IDs) and ``swarm-root-ca.crt`` (the trust bundle, 0644);
- a node's credentials: ``swarm-node.crt`` (certificate and intermediates), ``swarm-node.key``
  (0600) and ``swarm-root-ca.crt`` (the trust bundle it was given).
"""
from __future__ import annotations

import datetime as dt
import ipaddress
import json
import os
import secrets
import ssl
import tempfile
from pathlib import Path
from typing import Iterable

import attrs
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from core.errors import InvalidArgument, NotFound
from core.engine.swarm import tokens as _tokens
from core.engine.swarm.tokens import JoinTokens

MANAGER_ROLE = "swarm-manager"
WORKER_ROLE = "swarm-worker"
ROLES = (MANAGER_ROLE, WORKER_ROLE)
ROOT_CN = "swarm-ca"

DEFAULT_NODE_CERT_EXPIRY = dt.timedelta(days=90)
MIN_NODE_CERT_EXPIRY = dt.timedelta(hours=1)
ROOT_CA_EXPIRY = dt.timedelta(days=20 * 365)
CERT_BACKDATE = dt.timedelta(hours=1)
RENEW_LOWER, RENEW_UPPER = 0.5, 0.8

CA_STATE = "ca.json"
ROOT_CERT = "swarm-root-ca.crt"
NODE_CERT = "swarm-node.crt"
NODE_KEY = "swarm-node.key"

_ID_LEN = 25


def new_id() -> str:
    """A random 128-bit ID in base 36, 25 characters (swarmkit's ``identity.NewID``)."""
    return _tokens.to_base36(int.from_bytes(secrets.token_bytes(16), "big"), _ID_LEN)


def role_of_token_role(role: str) -> str:
    """``worker`` / ``manager`` (the API's and the tokens' words) to the certificate's OU."""
    return {_tokens.WORKER: WORKER_ROLE, _tokens.MANAGER: MANAGER_ROLE}[role]


def validate_node_cert_expiry(expiry: dt.timedelta) -> dt.timedelta:
    """Docker's rule for ``CAConfig.NodeCertExpiry`` / ``--cert-expiry``: at least one hour."""
    if expiry < MIN_NODE_CERT_EXPIRY:
        raise InvalidArgument("minimum certificate expiry time is: 1h0m0s")
    return expiry


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def generate_key() -> ec.EllipticCurvePrivateKey:
    """A node or CA key: ECDSA P-256, as swarmkit's."""
    return ec.generate_private_key(ec.SECP256R1())


def key_pem(key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def make_csr(key) -> bytes:
    """A PEM certificate signing request for ``key`` (its subject is ignored by the CA)."""
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "swarm-node")]))
           .sign(key, hashes.SHA256()))
    return csr.public_bytes(serialization.Encoding.PEM)


def load_certs(pem: bytes) -> list[x509.Certificate]:
    """The certificates of a PEM bundle; a bundle with none, or garbage, is InvalidArgument."""
    try:
        certs = x509.load_pem_x509_certificates(pem)
    except ValueError as exc:
        raise InvalidArgument(f"invalid certificate bundle: {exc}") from None
    if not certs:
        raise InvalidArgument("invalid certificate bundle: no certificate")
    return certs


def _write(path: Path, data: bytes, mode: int) -> None:
    """Write ``data`` atomically with ``mode`` from the start (no window with wider bits)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


@attrs.frozen
class NodeIdentity:
    """Who a certificate says its holder is."""

    node_id: str
    role: str  # MANAGER_ROLE or WORKER_ROLE
    cluster_id: str
    not_before: dt.datetime
    not_after: dt.datetime
    ip_addresses: tuple[str, ...] = ()  # a manager's addresses (etcd peers check them)

    @property
    def is_manager(self) -> bool:
        return self.role == MANAGER_ROLE


def identity_of(cert: x509.Certificate | bytes) -> NodeIdentity:
    """The node identity in a node certificate (a ``Certificate``, DER or PEM bytes).

    ``InvalidArgument`` when it is not a swarm node certificate (a subject without node ID,
    role or cluster ID, or an unknown role).
    """
    if isinstance(cert, bytes):
        try:
            cert = (x509.load_pem_x509_certificate(cert) if cert.lstrip().startswith(b"-----")
                    else x509.load_der_x509_certificate(cert))
        except ValueError as exc:
            raise InvalidArgument(f"invalid certificate: {exc}") from None

    def one(oid) -> str:
        values = cert.subject.get_attributes_for_oid(oid)
        if len(values) != 1 or not values[0].value:
            raise InvalidArgument("not a swarm node certificate: its subject lacks "
                                  f"{oid._name}")
        return str(values[0].value)

    role = one(NameOID.ORGANIZATIONAL_UNIT_NAME)
    if role not in ROLES:
        raise InvalidArgument(f"not a swarm node certificate: unknown role {role!r}")
    return NodeIdentity(node_id=one(NameOID.COMMON_NAME), role=role,
                        cluster_id=one(NameOID.ORGANIZATION_NAME),
                        not_before=cert.not_valid_before_utc,
                        not_after=cert.not_valid_after_utc,
                        ip_addresses=_ip_sans(cert))


def _ip_sans(cert: x509.Certificate) -> tuple[str, ...]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return ()
    return tuple(str(ip) for ip in san.get_values_for_type(x509.IPAddress))


def parse_ip_addresses(values: Iterable[object]) -> list[ipaddress.IPv4Address |
                                                         ipaddress.IPv6Address]:
    """IP addresses for a certificate, or InvalidArgument naming the bad one."""
    if isinstance(values, (str, bytes)) or not isinstance(values, Iterable):
        raise InvalidArgument("IP addresses are a list")
    out = []
    for value in values:
        try:
            out.append(ipaddress.ip_address(str(value)))
        except ValueError:
            raise InvalidArgument(f"invalid IP address {value!r}") from None
    return out


def renew_at(cert: x509.Certificate) -> dt.datetime:
    """When the holder of ``cert`` renews it: between 50% and 80% of its lifetime.

    The point within that range comes from the certificate's fingerprint: stable for one
    certificate, spread across a cluster (no thundering herd of renewals).
    """
    start, end = cert.not_valid_before_utc, cert.not_valid_after_utc
    draw = int.from_bytes(cert.fingerprint(hashes.SHA256())[:8], "big") / 2**64
    fraction = RENEW_LOWER + (RENEW_UPPER - RENEW_LOWER) * draw
    return start + (end - start) * fraction


def needs_renewal(cert: x509.Certificate, now: dt.datetime | None = None) -> bool:
    return (now or _now()) >= renew_at(cert)


def _ski(public_key) -> x509.SubjectKeyIdentifier:
    return x509.SubjectKeyIdentifier.from_public_key(public_key)


def _root_cert(key, *, issuer_key=None, issuer_cert: x509.Certificate | None = None,
               now: dt.datetime | None = None,
               not_after: dt.datetime | None = None) -> x509.Certificate:
    """A root CA certificate for ``key``, self-signed, or cross-signed by ``issuer_key``."""
    now = now or _now()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, ROOT_CN)])
    signer = issuer_key or key
    issuer_public = signer.public_key()
    builder = (x509.CertificateBuilder()
               .subject_name(name)
               .issuer_name(issuer_cert.subject if issuer_cert is not None else name)
               .public_key(key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(now - CERT_BACKDATE)
               .not_valid_after(not_after or now + ROOT_CA_EXPIRY)
               .add_extension(x509.BasicConstraints(ca=True, path_length=1 if issuer_key else 2),
                              critical=True)
               .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False,
                                            key_encipherment=False, data_encipherment=False,
                                            key_agreement=False, key_cert_sign=True,
                                            crl_sign=True, encipher_only=False,
                                            decipher_only=False), critical=True)
               .add_extension(_ski(key.public_key()), critical=False)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_public),
                              critical=False))
    return builder.sign(signer, hashes.SHA256())


@attrs.define
class NodeCredentials:
    """A node's own key, its certificate (with intermediates) and the bundle it trusts."""

    key_pem: bytes
    chain_pem: bytes  # the node certificate first, then any intermediates
    trust_pem: bytes  # the root CA bundle

    @property
    def cert(self) -> x509.Certificate:
        return load_certs(self.chain_pem)[0]

    @property
    def identity(self) -> NodeIdentity:
        return identity_of(self.cert)

    def renew_at(self) -> dt.datetime:
        return renew_at(self.cert)

    def needs_renewal(self, now: dt.datetime | None = None) -> bool:
        """Time to renew (swarmkit's rule: a random point in 50%..80% of the lifetime)."""
        return needs_renewal(self.cert, now)

    def csr(self) -> bytes:
        """A CSR for this node's own key: what a renewal sends (the key stays here)."""
        return make_csr(serialization.load_pem_private_key(self.key_pem, None))

    def with_certificate(self, chain_pem: bytes, trust_pem: bytes | None = None,
                         key_pem: bytes | None = None) -> "NodeCredentials":
        return NodeCredentials(key_pem=key_pem or self.key_pem, chain_pem=chain_pem,
                               trust_pem=trust_pem or self.trust_pem)

    def save(self, directory: str | os.PathLike) -> None:
        """Write ``swarm-node.key`` (0600), ``swarm-node.crt`` and ``swarm-root-ca.crt``."""
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True, mode=0o700)
        _write(d / NODE_KEY, self.key_pem, 0o600)
        _write(d / NODE_CERT, self.chain_pem, 0o644)
        _write(d / ROOT_CERT, self.trust_pem, 0o644)

    @classmethod
    def load(cls, directory: str | os.PathLike) -> "NodeCredentials":
        d = Path(directory)
        try:
            creds = cls(key_pem=(d / NODE_KEY).read_bytes(),
                        chain_pem=(d / NODE_CERT).read_bytes(),
                        trust_pem=(d / ROOT_CERT).read_bytes())
        except FileNotFoundError as exc:
            raise NotFound(f"no swarm node credentials in {d}: {exc.filename} missing") from None
        creds.identity  # parses, or InvalidArgument
        try:
            key = serialization.load_pem_private_key(creds.key_pem, None)
        except (ValueError, TypeError):
            raise InvalidArgument(f"invalid node key in {d / NODE_KEY}") from None
        if key.public_key() != creds.cert.public_key():
            raise InvalidArgument(f"the node key in {d} does not match its certificate")
        return creds

    # TLS contexts ----------------------------------------------------------------------
    def _load_chain(self, ctx: ssl.SSLContext) -> None:
        load_cert_chain(ctx, self.chain_pem, self.key_pem)

    def server_context(self) -> ssl.SSLContext:
        """A manager's server side: its certificate; a client certificate is verified against
        the bundle when presented (joining nodes have none; the transport decides per call)."""
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        self._load_chain(ctx)
        ctx.load_verify_locations(cadata=self.trust_pem.decode())
        ctx.verify_mode = ssl.CERT_OPTIONAL
        return ctx

    def client_context(self) -> ssl.SSLContext:
        """A node dialling a manager: mutual TLS, the server must be a ``swarm-manager``."""
        ctx = client_context(self.trust_pem)
        self._load_chain(ctx)
        return ctx


def _memory_file(name: str, data: bytes) -> int:
    """An anonymous in-memory file holding ``data`` (``memfd_create``): it is never on a file
    system, and it is gone with the last descriptor, even if the process is killed."""
    fd = os.memfd_create(name, os.MFD_CLOEXEC)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    except BaseException:
        os.close(fd)
        raise
    return fd


def load_cert_chain(ctx: ssl.SSLContext, chain_pem: bytes, key_pem: bytes) -> None:
    """``ctx.load_cert_chain`` from PEM bytes.  The ssl module loads a key pair only from
    files, so OpenSSL reads two in-memory files through ``/proc/self/fd``: the key never
    touches a disk, and a daemon killed meanwhile leaves nothing behind (a temporary directory
    would stay in /tmp).  Where memfd is missing, a private directory removed at once."""
    try:
        cert_fd = _memory_file("swarm-node.crt", chain_pem)
    except (AttributeError, OSError):
        with tempfile.TemporaryDirectory(prefix="core-swarm-tls-") as tmp:
            cert, key = Path(tmp, "cert.pem"), Path(tmp, "key.pem")
            _write(key, key_pem, 0o600)
            _write(cert, chain_pem, 0o600)
            ctx.load_cert_chain(cert, key)
        return
    try:
        key_fd = _memory_file("swarm-node.key", key_pem)
        try:
            ctx.load_cert_chain(f"/proc/self/fd/{cert_fd}", f"/proc/self/fd/{key_fd}")
        finally:
            os.close(key_fd)
    finally:
        os.close(cert_fd)


def client_context(trust_pem: bytes | None) -> ssl.SSLContext:
    """A client context verifying the server against ``trust_pem`` (server name
    ``swarm-manager``); with ``None``, one that verifies nothing — only to fetch a CA bundle
    that is then checked against a join token's digest."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if trust_pem is None:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    else:
        ctx.load_verify_locations(cadata=trust_pem.decode())
    return ctx


@attrs.define
class ClusterCA:
    """A swarm's CA as the managers keep it: sign node certificates, join tokens, revocation.

    Build with :meth:`create` (``docker swarm init``) or :meth:`load`; persist with
    :meth:`save` (or :meth:`to_json` into the cluster store).
    """

    cluster_id: str
    roots: list[x509.Certificate]  # the trust bundle (two during a rotation)
    signer_cert: x509.Certificate  # the root whose key signs
    signer_key: ec.EllipticCurvePrivateKey
    intermediates: list[x509.Certificate] = attrs.field(factory=list)
    node_cert_expiry: dt.timedelta = DEFAULT_NODE_CERT_EXPIRY
    backdate: dt.timedelta = CERT_BACKDATE
    tokens: JoinTokens = attrs.field(factory=JoinTokens)
    revoked: set[str] = attrs.field(factory=set)

    @classmethod
    def create(cls, cluster_id: str | None = None, *,
               node_cert_expiry: dt.timedelta = DEFAULT_NODE_CERT_EXPIRY,
               backdate: dt.timedelta = CERT_BACKDATE) -> "ClusterCA":
        """A new swarm's CA: a fresh P-256 root, new join-token secrets.

        ``node_cert_expiry`` is not checked against docker's one-hour minimum here (tests use
        seconds); the API checks with :func:`validate_node_cert_expiry`.
        """
        if node_cert_expiry <= dt.timedelta(0):
            raise InvalidArgument("certificate expiry must be positive")
        key = generate_key()
        root = _root_cert(key)
        return cls(cluster_id=cluster_id or new_id(), roots=[root], signer_cert=root,
                   signer_key=key, node_cert_expiry=node_cert_expiry, backdate=backdate)

    # the bundle and the tokens -----------------------------------------------------------
    @property
    def trust_pem(self) -> bytes:
        """The root CA bundle nodes trust and joining nodes fetch (and pin by digest)."""
        return b"".join(cert_pem(c) for c in self.roots)

    @property
    def digest(self) -> str:
        return _tokens.ca_digest(self.trust_pem)

    def join_token(self, role: str) -> str:
        """The join token of ``worker`` or ``manager``."""
        return self.tokens.token(role, self.digest)

    def role_for_token(self, token: object) -> str:
        """The certificate role (``swarm-worker``/``swarm-manager``) a join token grants, or
        ``InvalidArgument`` (``invalid join token`` / ``A valid join token is necessary to join
        this cluster``)."""
        return role_of_token_role(self.tokens.role_for(token, self.digest))

    def rotate_token(self, role: str) -> None:
        self.tokens.rotate(role)

    # signing -----------------------------------------------------------------------------
    def sign_csr(self, csr_pem: bytes, node_id: str, role: str, *,
                 ip_addresses: Iterable[str] = (), now: dt.datetime | None = None) -> bytes:
        """A certificate for ``node_id``/``role`` on the CSR's public key, as a PEM chain
        (the certificate, then the intermediates of a rotation in progress).

        Only the CSR's public key is used; it must be a valid, self-signed CSR.
        ``ip_addresses`` go into the subject alternative names (a manager's addresses, which
        etcd's peers verify); the DNS names are always ``<role>`` and ``<node ID>``.
        """
        ips = parse_ip_addresses(ip_addresses)
        if role not in ROLES:
            raise InvalidArgument(f"unknown node role {role!r}")
        if not node_id or any(c in node_id for c in ",=+\n"):
            raise InvalidArgument(f"invalid node ID {node_id!r}")
        try:
            csr = x509.load_pem_x509_csr(csr_pem if isinstance(csr_pem, bytes)
                                         else str(csr_pem).encode())
        except ValueError as exc:
            raise InvalidArgument(f"invalid certificate signing request: {exc}") from None
        try:
            valid = csr.is_signature_valid
        except (InvalidSignature, ValueError, TypeError):
            valid = False
        if not valid:
            raise InvalidArgument("invalid certificate signing request: bad signature")
        public = csr.public_key()
        if not isinstance(public, ec.EllipticCurvePublicKey) or public.curve.key_size < 256:
            raise InvalidArgument("invalid certificate signing request: "
                                  "the key must be ECDSA P-256 or larger")
        now = now or _now()
        subject = x509.Name([
            x509.NameAttribute(NameOID.COMMON_NAME, node_id),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, role),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, self.cluster_id),
        ])
        cert = (x509.CertificateBuilder()
                .subject_name(subject)
                .issuer_name(self.signer_cert.subject)
                .public_key(public)
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - self.backdate)
                .not_valid_after(now + self.node_cert_expiry)
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False,
                                             key_encipherment=True, data_encipherment=False,
                                             key_agreement=False, key_cert_sign=False,
                                             crl_sign=False, encipher_only=False,
                                             decipher_only=False), critical=True)
                .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                                      ExtendedKeyUsageOID.CLIENT_AUTH]),
                               critical=False)
                .add_extension(x509.SubjectAlternativeName([x509.DNSName(role),
                                                            x509.DNSName(node_id)]
                                                           + [x509.IPAddress(ip) for ip in ips]),
                               critical=False)
                .add_extension(_ski(public), critical=False)
                .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                    self.signer_key.public_key()), critical=False)
                .sign(self.signer_key, hashes.SHA256()))
        return cert_pem(cert) + b"".join(cert_pem(c) for c in self.intermediates)

    def issue(self, role: str, node_id: str | None = None, *,
              ip_addresses: Iterable[str] = ()) -> NodeCredentials:
        """Credentials made here, key and all (the manager's own, as at ``swarm init``)."""
        key = generate_key()
        chain = self.sign_csr(make_csr(key), node_id or new_id(), role,
                              ip_addresses=ip_addresses)
        return NodeCredentials(key_pem=key_pem(key), chain_pem=chain, trust_pem=self.trust_pem)

    def issued_by_current(self, chain_pem: bytes) -> bool:
        """Whether a node certificate was signed by the current signing key (after a
        rotation started, nodes with ``False`` must still renew before it can finish)."""
        cert = load_certs(chain_pem)[0]
        try:
            cert.verify_directly_issued_by(self.signer_cert)
        except (ValueError, TypeError, InvalidSignature):
            return False
        return True

    # root rotation -----------------------------------------------------------------------
    @property
    def rotating(self) -> bool:
        return bool(self.intermediates)

    def start_rotation(self) -> None:
        """Begin a root rotation: a new root, cross-signed by the old; new certificates come
        from the new key with the cross-signed intermediate; both roots are trusted."""
        if self.rotating:
            raise InvalidArgument("a root CA rotation is already in progress")
        key = generate_key()
        now = _now()
        new_root = _root_cert(key, now=now)
        cross = _root_cert(key, issuer_key=self.signer_key, issuer_cert=self.signer_cert,
                           now=now, not_after=min(now + ROOT_CA_EXPIRY,
                                                  self.signer_cert.not_valid_after_utc))
        self.roots = [self.signer_cert, new_root]
        self.signer_cert, self.signer_key = new_root, key
        self.intermediates = [cross]

    def finish_rotation(self) -> None:
        """End a root rotation: only the new root is trusted; the old root is dropped."""
        if not self.rotating:
            raise InvalidArgument("no root CA rotation is in progress")
        self.roots = [self.signer_cert]
        self.intermediates = []

    # revocation --------------------------------------------------------------------------
    def revoke(self, node_id: str) -> None:
        """A removed node: its certificates are refused from now on."""
        self.revoked.add(node_id)

    def is_revoked(self, node_id: str) -> bool:
        return node_id in self.revoked

    # persistence -------------------------------------------------------------------------
    def to_json(self) -> dict:
        """Everything, keys included: store it only where keys may be (0600, the store)."""
        return {
            "ClusterID": self.cluster_id,
            "Roots": [cert_pem(c).decode() for c in self.roots],
            "SignerCert": cert_pem(self.signer_cert).decode(),
            "SignerKey": key_pem(self.signer_key).decode(),
            "Intermediates": [cert_pem(c).decode() for c in self.intermediates],
            "NodeCertExpiry": self.node_cert_expiry.total_seconds(),
            "Backdate": self.backdate.total_seconds(),
            "JoinTokenSecrets": self.tokens.to_json(),
            "Revoked": sorted(self.revoked),
        }

    @classmethod
    def from_json(cls, data: dict) -> "ClusterCA":
        try:
            key = serialization.load_pem_private_key(data["SignerKey"].encode(), None)
            if not isinstance(key, ec.EllipticCurvePrivateKey):
                raise InvalidArgument("the swarm CA key is not an ECDSA key")
            return cls(
                cluster_id=data["ClusterID"],
                roots=[x509.load_pem_x509_certificate(p.encode()) for p in data["Roots"]],
                signer_cert=x509.load_pem_x509_certificate(data["SignerCert"].encode()),
                signer_key=key,
                intermediates=[x509.load_pem_x509_certificate(p.encode())
                               for p in data.get("Intermediates", [])],
                node_cert_expiry=dt.timedelta(seconds=data["NodeCertExpiry"]),
                backdate=dt.timedelta(seconds=data.get("Backdate",
                                                       CERT_BACKDATE.total_seconds())),
                tokens=JoinTokens.from_json(data["JoinTokenSecrets"]),
                revoked=set(data.get("Revoked", [])),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise InvalidArgument(f"invalid swarm CA state: {exc!r}") from None

    def save(self, directory: str | os.PathLike) -> None:
        """``ca.json`` (0600, keys and secrets) and ``swarm-root-ca.crt`` (the bundle)."""
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True, mode=0o700)
        _write(d / CA_STATE, json.dumps(self.to_json(), indent=1).encode(), 0o600)
        _write(d / ROOT_CERT, self.trust_pem, 0o644)

    @classmethod
    def load(cls, directory: str | os.PathLike) -> "ClusterCA":
        path = Path(directory) / CA_STATE
        try:
            data = json.loads(path.read_bytes())
        except FileNotFoundError:
            raise NotFound(f"no swarm CA in {directory}") from None
        except ValueError as exc:
            raise InvalidArgument(f"invalid swarm CA state in {path}: {exc}") from None
        return cls.from_json(data)

