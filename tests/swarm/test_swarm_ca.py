"""The swarm CA (core.engine.swarm.ca) and join tokens (core.engine.swarm.tokens).

Certificates are checked with the real TLS stack (the stdlib ``ssl`` over a socket pair) and the
token format against swarmkit's (``SWMTKN-1-<50 base-36>-<25 base-36>``).
"""
from __future__ import annotations

import datetime as dt
import socket
import stat
import threading

import pytest
from cryptography import x509
from hypothesis import given, settings, strategies as st

from core.engine.swarm import ca as swarm_ca
from core.engine.swarm import tokens
from core.engine.swarm.ca import (
    MANAGER_ROLE, WORKER_ROLE, ClusterCA, NodeCredentials, generate_key, identity_of, make_csr)
from core.errors import InvalidArgument, NotFound


@pytest.fixture(scope="module")
def cluster_ca():
    return ClusterCA.create()


def handshake(server: NodeCredentials, client_ctx) -> tuple[str | None, bytes | None]:
    """A TLS handshake over a socket pair: (client error or None, peer cert the server saw)."""
    a, b = socket.socketpair()
    seen: dict = {}

    def serve():
        try:
            with server.server_context().wrap_socket(a, server_side=True) as s:
                seen["peer"] = s.getpeercert(True)
                s.recv(1)
        except OSError as exc:
            seen["error"] = exc

    t = threading.Thread(target=serve)
    t.start()
    try:
        with client_ctx.wrap_socket(b, server_hostname=MANAGER_ROLE) as c:
            c.sendall(b"x")
        error = None
    except OSError as exc:
        error = str(exc)
    finally:
        t.join(10)
        a.close()
        b.close()
    return error, seen.get("peer")


# --- tokens ------------------------------------------------------------------------------

def test_token_format_matches_swarmkit(cluster_ca):
    tok = cluster_ca.join_token("worker")
    prefix, version, digest, secret = tok.split("-")
    assert (prefix, version) == ("SWMTKN", "1")
    assert len(digest) == 50 and len(secret) == 25
    assert int(digest, 36) == int(cluster_ca.digest, 16)
    parsed = tokens.parse_token(tok)
    assert parsed.ca_digest == cluster_ca.digest
    assert str(parsed) == tok


def test_token_roles_and_rotation(cluster_ca):
    ca = ClusterCA.create()
    worker, manager = ca.join_token("worker"), ca.join_token("manager")
    assert worker != manager
    assert worker.split("-")[2] == manager.split("-")[2]  # same CA digest
    assert ca.role_for_token(worker) == WORKER_ROLE
    assert ca.role_for_token(manager) == MANAGER_ROLE
    ca.rotate_token("worker")
    with pytest.raises(InvalidArgument, match="A valid join token is necessary"):
        ca.role_for_token(worker)
    assert ca.role_for_token(manager) == MANAGER_ROLE  # the other role's token is unchanged
    assert ca.role_for_token(ca.join_token("worker")) == WORKER_ROLE
    with pytest.raises(InvalidArgument, match="unknown role"):
        ca.rotate_token("boss")


def test_forged_and_foreign_tokens_refused(cluster_ca):
    tok = cluster_ca.join_token("worker")
    forged = tok[:-25] + tokens.new_secret()
    with pytest.raises(InvalidArgument, match="A valid join token is necessary"):
        cluster_ca.role_for_token(forged)
    # the right secret for another CA digest is not this swarm's token
    other = ClusterCA.create()
    foreign = tokens.format_token(other.digest, cluster_ca.tokens.worker)
    with pytest.raises(InvalidArgument, match="A valid join token is necessary"):
        cluster_ca.role_for_token(foreign)
    for bad in ["", "SWMTKN-1-abc-def", tok + "-x", tok.replace("SWMTKN-1", "SWMTKN-2"),
                tok.upper(), "z" * 50, tok[:-1] + "!"]:
        with pytest.raises(InvalidArgument, match="^invalid join token$"):
            cluster_ca.role_for_token(bad)


def test_digest_check(cluster_ca):
    tok = cluster_ca.join_token("manager")
    tokens.check_ca_digest(tok, cluster_ca.trust_pem)
    with pytest.raises(InvalidArgument, match=r"remote CA does not match fingerprint\. "
                                              f"Expected: {cluster_ca.digest}"):
        tokens.check_ca_digest(tok, ClusterCA.create().trust_pem)


def test_digest_over_256_bits_refused():
    with pytest.raises(InvalidArgument, match="invalid join token"):
        tokens.parse_token(f"SWMTKN-1-{'z' * 50}-{'0' * 25}")


@settings(max_examples=400, deadline=None)
@given(st.one_of(st.text(), st.text(alphabet="SWMTKN-0123456789abcdefxyz", max_size=90),
                 st.builds(lambda d, s: f"SWMTKN-1-{d}-{s}",
                           st.text(alphabet="0123456789abcdefghijklmnopqrstuvwxyzA-_",
                                   min_size=48, max_size=52),
                           st.text(alphabet="0123456789abcdefghijklmnopqrstuvwxyz!",
                                   min_size=24, max_size=26)),
                 st.integers(), st.none(), st.binary()))
def test_parse_token_never_crashes(value):
    try:
        parsed = tokens.parse_token(value)
    except InvalidArgument as exc:
        assert str(exc) == "invalid join token"
    else:
        assert str(parsed) == value  # a token that parses renders back to itself


@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=32, max_size=32), st.binary(min_size=16, max_size=16))
def test_token_round_trip(digest, secret):
    secret36 = tokens.to_base36(int.from_bytes(secret, "big"), 25)
    tok = tokens.format_token(digest.hex(), secret36)
    assert tokens.parse_token(tok) == tokens.ParsedToken(digest.hex(), secret36)


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=120))
def test_role_for_token_never_crashes(value):
    ca = _SHARED_CA
    with pytest.raises(InvalidArgument):
        ca.role_for_token(value)


_SHARED_CA = ClusterCA.create()


# --- certificates ------------------------------------------------------------------------

def test_issued_certificate_subject(cluster_ca):
    key = generate_key()
    chain = cluster_ca.sign_csr(make_csr(key), "node1abc", WORKER_ROLE)
    cert = x509.load_pem_x509_certificate(chain)
    ident = identity_of(cert)
    assert (ident.node_id, ident.role, ident.cluster_id) == ("node1abc", WORKER_ROLE,
                                                            cluster_ca.cluster_id)
    assert cert.subject.rfc4514_string() == (
        f"O={cluster_ca.cluster_id},OU=swarm-worker,CN=node1abc")
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["swarm-worker", "node1abc"]
    assert cert.public_key().public_numbers() == key.public_key().public_numbers()
    lifetime = ident.not_after - ident.not_before
    assert lifetime == swarm_ca.DEFAULT_NODE_CERT_EXPIRY + swarm_ca.CERT_BACKDATE
    cert.verify_directly_issued_by(cluster_ca.roots[0])


def test_csr_subject_is_ignored_and_bad_csrs_refused(cluster_ca):
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID
    key = generate_key()
    evil = (x509.CertificateSigningRequestBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "root"),
                                     x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME,
                                                        MANAGER_ROLE)]))
            .sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM))
    ident = identity_of(cluster_ca.sign_csr(evil, "n2", WORKER_ROLE))
    assert (ident.node_id, ident.role) == ("n2", WORKER_ROLE)
    with pytest.raises(InvalidArgument, match="invalid certificate signing request"):
        cluster_ca.sign_csr(b"garbage", "n3", WORKER_ROLE)
    rsa_csr = (x509.CertificateSigningRequestBuilder()
               .subject_name(x509.Name([]))
               .sign(rsa.generate_private_key(65537, 2048), hashes.SHA256())
               .public_bytes(serialization.Encoding.PEM))
    with pytest.raises(InvalidArgument, match="ECDSA"):
        cluster_ca.sign_csr(rsa_csr, "n4", WORKER_ROLE)
    with pytest.raises(InvalidArgument, match="unknown node role"):
        cluster_ca.sign_csr(make_csr(key), "n5", "swarm-boss")
    with pytest.raises(InvalidArgument, match="invalid node ID"):
        cluster_ca.sign_csr(make_csr(key), "a,OU=swarm-manager", WORKER_ROLE)


def test_identity_of_refuses_non_node_certs(cluster_ca):
    with pytest.raises(InvalidArgument, match="not a swarm node certificate"):
        identity_of(cluster_ca.roots[0])
    with pytest.raises(InvalidArgument, match="invalid certificate"):
        identity_of(b"\x30\x00")


def test_cert_expiry_rule():
    assert swarm_ca.validate_node_cert_expiry(dt.timedelta(days=90))
    with pytest.raises(InvalidArgument, match=r"minimum certificate expiry time is: 1h0m0s"):
        swarm_ca.validate_node_cert_expiry(dt.timedelta(minutes=59))
    with pytest.raises(InvalidArgument):
        ClusterCA.create(node_cert_expiry=dt.timedelta(0))


def test_needs_renewal_between_half_and_eighty_percent():
    ca = ClusterCA.create(node_cert_expiry=dt.timedelta(hours=10), backdate=dt.timedelta(0))
    points = []
    for _ in range(20):
        creds = ca.issue(WORKER_ROLE)
        cert = creds.cert
        start, end = cert.not_valid_before_utc, cert.not_valid_after_utc
        at = creds.renew_at()
        assert start + (end - start) * 0.5 <= at <= start + (end - start) * 0.8
        assert not creds.needs_renewal(at - dt.timedelta(seconds=1))
        assert creds.needs_renewal(at)
        assert creds.renew_at() == at  # stable for one certificate
        points.append(at - start)
    assert len(set(points)) > 1  # spread over the nodes


def test_manager_and_worker_certs_over_tls(cluster_ca):
    manager, worker = cluster_ca.issue(MANAGER_ROLE), cluster_ca.issue(WORKER_ROLE)
    error, peer = handshake(manager, worker.client_context())
    assert error is None
    assert identity_of(peer).node_id == worker.identity.node_id
    # a worker's certificate cannot serve as a manager (server name swarm-manager)
    error, _ = handshake(worker, manager.client_context())
    assert "swarm-manager" in error
    # another swarm's certificates are not trusted
    error, _ = handshake(ClusterCA.create().issue(MANAGER_ROLE), worker.client_context())
    assert "certificate verify failed" in error


def test_tls_contexts_write_no_files(cluster_ca, monkeypatch):
    """The key pair reaches OpenSSL through in-memory files: no temporary directory (which a
    daemon killed at that moment would leave in /tmp), no descriptor left open."""
    def no_files(*args, **kwargs):
        raise AssertionError("a TLS context wrote its key pair to a file")

    monkeypatch.setattr(swarm_ca.tempfile, "TemporaryDirectory", no_files)
    monkeypatch.setattr(swarm_ca.tempfile, "mkstemp", no_files)
    manager, worker = cluster_ca.issue(MANAGER_ROLE), cluster_ca.issue(WORKER_ROLE)
    import os

    fds = len(os.listdir("/proc/self/fd"))
    server, client = manager.server_context(), worker.client_context()
    assert len(os.listdir("/proc/self/fd")) == fds
    error, peer = handshake(manager, client)
    assert error is None and identity_of(peer).node_id == worker.identity.node_id
    assert server.cert_store_stats()["x509_ca"] >= 1


def test_root_rotation_keeps_old_and_new_nodes_talking():
    ca = ClusterCA.create()
    old_manager, old_worker = ca.issue(MANAGER_ROLE), ca.issue(WORKER_ROLE)
    old_digest, old_token = ca.digest, ca.join_token("worker")
    ca.start_rotation()
    assert ca.rotating and len(ca.roots) == 2 and ca.digest != old_digest
    assert ca.join_token("worker") != old_token  # the token names the CA
    new_manager, new_worker = ca.issue(MANAGER_ROLE), ca.issue(WORKER_ROLE)
    assert len(x509.load_pem_x509_certificates(new_worker.chain_pem)) == 2  # + cross-signed
    assert not ca.issued_by_current(old_worker.chain_pem)
    assert ca.issued_by_current(new_worker.chain_pem)
    # old nodes (trusting only the old root) and new nodes (both roots) accept each other
    for server, client in [(new_manager, old_worker), (old_manager, new_worker),
                           (new_manager, new_worker), (old_manager, old_worker)]:
        error, peer = handshake(server, client.client_context())
        assert error is None, (server.identity, client.identity)
        assert identity_of(peer).node_id == client.identity.node_id
    # the old nodes renew: a certificate of the new key and the new bundle
    renewed = old_worker.with_certificate(
        ca.sign_csr(old_worker.csr(), old_worker.identity.node_id, WORKER_ROLE),
        ca.trust_pem)
    ca.finish_rotation()
    assert not ca.rotating and ca.roots == [ca.signer_cert]
    final_manager = ca.issue(MANAGER_ROLE)
    assert len(x509.load_pem_x509_certificates(final_manager.chain_pem)) == 1
    assert handshake(final_manager, renewed.client_context())[0] is None
    assert handshake(final_manager, new_worker.client_context())[0] is None
    # the old root is dropped: certificates of the old key are refused
    finished_only = NodeCredentials(final_manager.key_pem, final_manager.chain_pem, ca.trust_pem)
    error, _ = handshake(old_manager, finished_only.client_context())
    assert "certificate verify failed" in error
    with pytest.raises(InvalidArgument, match="no root CA rotation"):
        ca.finish_rotation()


def test_revocation_set_persists(tmp_path):
    ca = ClusterCA.create()
    ca.revoke("deadnode")
    assert ca.is_revoked("deadnode") and not ca.is_revoked("other")
    ca.save(tmp_path)
    assert ClusterCA.load(tmp_path).is_revoked("deadnode")


def test_keys_on_disk_are_0600(tmp_path):
    ca = ClusterCA.create(node_cert_expiry=dt.timedelta(hours=3))
    ca.start_rotation()
    ca.save(tmp_path / "ca")
    assert stat.S_IMODE((tmp_path / "ca" / "ca.json").stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "ca").stat().st_mode) == 0o700
    loaded = ClusterCA.load(tmp_path / "ca")
    assert loaded.to_json() == ca.to_json()
    assert loaded.join_token("manager") == ca.join_token("manager")
    assert (tmp_path / "ca" / "swarm-root-ca.crt").read_bytes() == ca.trust_pem

    creds = ca.issue(MANAGER_ROLE)
    creds.save(tmp_path / "node")
    assert stat.S_IMODE((tmp_path / "node" / "swarm-node.key").stat().st_mode) == 0o600
    again = NodeCredentials.load(tmp_path / "node")
    assert again == creds and again.identity == creds.identity
    assert not list((tmp_path / "node").glob(".*"))  # no temp files left


def test_load_errors(tmp_path):
    with pytest.raises(NotFound, match="no swarm CA"):
        ClusterCA.load(tmp_path)
    with pytest.raises(NotFound, match="no swarm node credentials"):
        NodeCredentials.load(tmp_path)
    creds = ClusterCA.create().issue(WORKER_ROLE)
    creds.save(tmp_path / "n")
    (tmp_path / "n" / "swarm-node.key").write_bytes(swarm_ca.key_pem(generate_key()))
    with pytest.raises(InvalidArgument, match="does not match its certificate"):
        NodeCredentials.load(tmp_path / "n")
    (tmp_path / "n" / "swarm-node.key").write_bytes(b"junk")
    with pytest.raises(InvalidArgument, match="invalid node key"):
        NodeCredentials.load(tmp_path / "n")
    (tmp_path / "ca.json").write_text("{not json")
    with pytest.raises(InvalidArgument, match="invalid swarm CA state"):
        ClusterCA.load(tmp_path)
    (tmp_path / "ca.json").write_text("{}")
    with pytest.raises(InvalidArgument, match="invalid swarm CA state"):
        ClusterCA.load(tmp_path)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_identity_of_arbitrary_bytes(data):
    with pytest.raises(InvalidArgument):
        identity_of(data)


def test_stale_tls_directories_of_killed_daemons_are_swept():
    """What older daemons killed while loading a key pair left in /tmp goes with the test
    session's sweep (tests/conftest.py); a directory of the last minute stays."""
    import os
    import shutil
    import tempfile
    import time

    from tests.conftest import sweep_stale_scratch

    old = tempfile.mkdtemp(prefix="core-swarm-tls-")
    fresh = tempfile.mkdtemp(prefix="core-swarm-tls-")
    try:
        os.utime(old, (time.time() - 3600, time.time() - 3600))
        sweep_stale_scratch()
        assert not os.path.exists(old) and os.path.exists(fresh)
    finally:
        shutil.rmtree(old, ignore_errors=True)
        shutil.rmtree(fresh, ignore_errors=True)
