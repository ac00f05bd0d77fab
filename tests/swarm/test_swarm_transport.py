"""The swarm node-to-manager channel (core.engine.swarm.transport) on loopback, with real TLS.

Managers listen on 127.0.0.x addresses on free ports; every test runs its servers in a trio
nursery that is cancelled at the end, so nothing outlives a test, even a failing one.
"""
from __future__ import annotations

import datetime as dt
import socket
from contextlib import asynccontextmanager
from functools import partial

import pytest
import trio
import trio.testing
from cryptography import x509
from hypothesis import given, settings, strategies as st

from core import errors
from core.engine.swarm import ca as swarm_ca
from core.engine.swarm import tokens
from core.engine.swarm import transport
from core.engine.swarm.ca import MANAGER_ROLE, WORKER_ROLE, ClusterCA
from core.engine.swarm.transport import Access, CAService, ManagerClient, Server, Sessions


def run(fn, *args):
    return trio.run(fn, *args)


@asynccontextmanager
async def manager(ca: ClusterCA, host: str = "127.0.0.1", *, sessions: Sessions | None = None,
                  creds=None, **ca_kwargs):
    """A manager serving the channel on ``host``: yields (address, server, nursery scope)."""
    creds = creds or ca.issue(MANAGER_ROLE)
    server = Server(creds, is_revoked=ca.is_revoked)
    CAService(ca, **ca_kwargs).install(server)
    (sessions or Sessions(period=0.5)).install(server)

    async def whoami(peer, args):
        return {"node_id": peer.node_id, "role": peer.identity.role}

    async def manager_only(peer, args):
        return "ok"

    server.register("whoami", whoami, access=Access.NODE)
    server.register("test.manager", manager_only, access=Access.MANAGER)
    async with trio.open_nursery() as nursery:
        host_port = await nursery.start(server.serve, host, 0)
        scope = nursery.cancel_scope
        yield transport.format_address(*host_port), server, scope
        scope.cancel()


def free_dead_address(host="127.0.0.9") -> str:
    """An address where nothing listens (a port bound and closed again)."""
    s = socket.socket()
    s.bind((host, 0))
    port = s.getsockname()[1]
    s.close()
    return f"{host}:{port}"


# --- join -----------------------------------------------------------------------------------

def test_join_with_worker_and_manager_tokens():
    async def main():
        ca = ClusterCA.create()
        joined = []

        async def on_join(node_id, role):
            joined.append((node_id, role))

        async with manager(ca, "127.0.0.2", on_join=on_join) as (addr, _, _):
            worker = await transport.join([addr], ca.join_token("worker"))
            mgr = await transport.join([addr], ca.join_token("manager"), role="manager")
            for creds, role in [(worker, WORKER_ROLE), (mgr, MANAGER_ROLE)]:
                cert = creds.cert
                ident = creds.identity
                assert ident.role == role and ident.cluster_id == ca.cluster_id
                assert cert.subject.rfc4514_string() == (
                    f"O={ca.cluster_id},OU={role},CN={ident.node_id}")
                assert creds.trust_pem == ca.trust_pem
                cert.verify_directly_issued_by(ca.roots[0])
                client = ManagerClient(creds, [addr])
                assert await client.call("whoami") == {"node_id": ident.node_id, "role": role}
                await client.aclose()
            assert joined == [(worker.identity.node_id, WORKER_ROLE),
                              (mgr.identity.node_id, MANAGER_ROLE)]
    run(main)


def test_join_refusals_have_clear_errors():
    async def main():
        ca = ClusterCA.create()
        async with manager(ca, "127.0.0.2") as (addr, _, _):
            worker_token = ca.join_token("worker")
            # forged secret
            forged = worker_token[:-25] + tokens.new_secret()
            with pytest.raises(errors.InvalidArgument,
                               match="^A valid join token is necessary to join this cluster$"):
                await transport.join([addr], forged)
            # malformed
            with pytest.raises(errors.InvalidArgument, match="^invalid join token$"):
                await transport.join([addr], "SWMTKN-1-nope")
            # a token pinning another CA: refused before anything secret is sent
            other = ClusterCA.create()
            wrong_ca = tokens.format_token(other.digest, ca.tokens.worker)
            with pytest.raises(errors.InvalidArgument,
                               match=f"remote CA does not match fingerprint. "
                                     f"Expected: {other.digest}"):
                await transport.join([addr], wrong_ca)
            # a rotated token
            ca.rotate_token("worker")
            with pytest.raises(errors.InvalidArgument, match="A valid join token is necessary"):
                await transport.join([addr], worker_token)
            # the worker token used to join as a manager
            with pytest.raises(errors.InvalidArgument,
                               match="is a worker token: it cannot join the swarm as a manager"):
                await transport.join([addr], ca.join_token("worker"), role="manager")
            with pytest.raises(errors.InvalidArgument, match="unknown role"):
                await transport.join([addr], ca.join_token("worker"), role="boss")
            # no manager there
            dead = free_dead_address()
            with pytest.raises(errors.Unavailable, match=f"no manager could be reached: {dead}"):
                await transport.join([dead], ca.join_token("worker"))
            # the right token still works after all that
            creds = await transport.join([dead, addr], ca.join_token("worker"))
            assert creds.identity.role == WORKER_ROLE
    run(main)


def test_join_does_not_trust_a_manager_of_another_swarm_with_the_same_bundle_digest():
    """A man in the middle that serves the pinned bundle but has no certificate from that CA
    fails the verified connection: the token is never sent to it."""
    async def main():
        ca, impostor_ca = ClusterCA.create(), ClusterCA.create()
        seen_tokens = []
        impostor = Server(impostor_ca.issue(MANAGER_ROLE))

        async def root(peer, args):  # serves the real swarm's bundle
            return {"bundle": ca.trust_pem.decode()}

        async def join(peer, args):
            seen_tokens.append(args.get("token"))
            return {}

        impostor.register("ca.root", root, access=Access.PUBLIC)
        impostor.register("ca.join", join, access=Access.PUBLIC)
        async with trio.open_nursery() as nursery:
            host, port = await nursery.start(impostor.serve, "127.0.0.3", 0)
            with pytest.raises(errors.Unavailable, match="certificate verify failed"):
                await transport.join([f"{host}:{port}"], ca.join_token("worker"))
            nursery.cancel_scope.cancel()
        assert seen_tokens == []
    run(main)


# --- authenticated calls ---------------------------------------------------------------------

def test_worker_refused_on_manager_only_call_and_revoked_node_refused():
    async def main():
        ca = ClusterCA.create()
        async with manager(ca, "127.0.0.2") as (addr, _, _):
            worker = ManagerClient(ca.issue(WORKER_ROLE), [addr])
            mgr = ManagerClient(ca.issue(MANAGER_ROLE), [addr])
            with pytest.raises(errors.Forbidden, match="not part of OUs: \\[swarm-manager\\]"):
                await worker.call("test.manager")
            assert await mgr.call("test.manager") == "ok"
            assert (await worker.call("whoami"))["role"] == WORKER_ROLE  # still connected
            # a revoked node is refused, on the open connection and on a new one
            ca.revoke(worker.credentials.identity.node_id)
            for _ in range(2):
                with pytest.raises(errors.Forbidden, match="was removed from the swarm"):
                    await worker.call("whoami")
                await worker.aclose()
            with pytest.raises(errors.Forbidden, match="was removed"):
                await worker.renew()
            assert await mgr.call("test.manager") == "ok"
            # unknown calls and bad arguments are answered, not fatal
            with pytest.raises(errors.NotFound, match="unknown call"):
                await mgr.call("no.such.call")
            with pytest.raises(errors.InvalidArgument, match="missing argument 'csr'"):
                await mgr.call("ca.renew")
            await worker.aclose()
            await mgr.aclose()
    run(main)


def test_authenticated_call_without_certificate_refused():
    async def main():
        ca = ClusterCA.create()
        async with manager(ca, "127.0.0.2") as (addr, _, _):
            conn = await transport._connect(addr, swarm_ca.client_context(ca.trust_pem))
            try:
                assert (await conn.call("ca.root", {}))["bundle"] == ca.trust_pem.decode()
                with pytest.raises(errors.Unauthorized, match="needs a node certificate"):
                    await conn.call("whoami", {})
            finally:
                await conn.aclose()
    run(main)


def test_other_swarm_certificates_refused():
    async def main():
        ca, other = ClusterCA.create(), ClusterCA.create()
        async with manager(ca, "127.0.0.2") as (addr, _, _):
            stranger = ManagerClient(other.issue(MANAGER_ROLE), [addr])
            with pytest.raises(errors.Unavailable, match="certificate verify failed"):
                await stranger.call("whoami")
            # trusting this swarm's CA does not make another swarm's certificate acceptable
            foreign = other.issue(WORKER_ROLE)
            posing = ManagerClient(swarm_ca.NodeCredentials(foreign.key_pem, foreign.chain_pem,
                                                            ca.trust_pem), [addr])
            with pytest.raises(errors.Unavailable, match="no manager could be reached"):
                await posing.call("whoami")
    run(main)


def test_serve_needs_a_manager_certificate():
    ca = ClusterCA.create()
    with pytest.raises(errors.InvalidArgument, match="only a manager's certificate"):
        Server(ca.issue(WORKER_ROLE))


def test_garbage_does_not_stop_the_server():
    async def main():
        ca = ClusterCA.create()
        async with manager(ca, "127.0.0.2") as (addr, _, _):
            host, port = transport.parse_address(addr)
            # plain TCP, no TLS
            s = await trio.open_tcp_stream(host, port)
            await s.send_all(b"GET / HTTP/1.1\r\n\r\n")
            await s.aclose()
            # TLS, then a frame that is not JSON, then a frame over the size limit
            for payload in [b"\x00\x00\x00\x03abc", b"\xff\xff\xff\xff"]:
                conn = await transport._connect(addr, ca.issue(WORKER_ROLE).client_context())
                await conn.stream.send_all(payload)
                with trio.fail_after(5):
                    assert await conn.stream.receive_some(10) == b""
                await conn.aclose()
            client = ManagerClient(ca.issue(WORKER_ROLE), [addr])
            assert (await client.call("whoami"))["role"] == WORKER_ROLE
            await client.aclose()
    run(main)


# --- renewal and rotation --------------------------------------------------------------------

def test_renewal_before_expiry():
    async def main():
        ca = ClusterCA.create(backdate=dt.timedelta(0))
        long_lived = ca.issue(MANAGER_ROLE)  # the manager's own certificate: 90 days
        ca.node_cert_expiry = dt.timedelta(seconds=4)
        async with manager(ca, "127.0.0.2", creds=long_lived) as (addr, _, _):
            creds = await transport.join([addr], ca.join_token("worker"))
            client = ManagerClient(creds, [addr])
            old = creds.cert
            assert not creds.needs_renewal()
            with trio.fail_after(5):
                while not client.credentials.needs_renewal():
                    await trio.sleep(0.05)
            now = dt.datetime.now(dt.timezone.utc)
            assert now < old.not_valid_after_utc  # renewal comes before expiry
            renewed = await client.renew()
            new = renewed.cert
            assert new.serial_number != old.serial_number
            assert new.not_valid_after_utc > old.not_valid_after_utc
            assert renewed.identity.node_id == creds.identity.node_id
            assert renewed.identity.role == WORKER_ROLE
            assert renewed.key_pem == creds.key_pem  # the key never left the node
            assert (await client.call("whoami"))["node_id"] == creds.identity.node_id
            await client.aclose()
    run(main)


def test_renewal_applies_the_role_the_swarm_has_now():
    async def main():
        ca = ClusterCA.create()
        roles = {}

        async def role_of(node_id):
            return roles.get(node_id, WORKER_ROLE)

        async with manager(ca, "127.0.0.2", role_of=role_of) as (addr, _, _):
            creds = await transport.join([addr], ca.join_token("worker"))
            client = ManagerClient(creds, [addr])
            with pytest.raises(errors.Forbidden):
                await client.call("test.manager")
            roles[creds.identity.node_id] = MANAGER_ROLE  # docker node promote
            promoted = await client.renew()
            assert promoted.identity.role == MANAGER_ROLE
            assert await client.call("test.manager") == "ok"
            await client.aclose()
    run(main)


def test_ca_rotation_keeps_old_and_new_nodes_talking(tmp_path):
    async def main():
        ca = ClusterCA.create()
        issued = {}

        async def on_issue(node_id, chain):
            issued[node_id] = chain

        m1_creds = ca.issue(MANAGER_ROLE)
        async with manager(ca, "127.0.0.2", creds=m1_creds, on_issue=on_issue) as \
                (addr, server, _):
            old = ManagerClient(await transport.join([addr], ca.join_token("worker")), [addr])
            lagging = ManagerClient(await transport.join([addr], ca.join_token("worker")),
                                    [addr])
            ca.start_rotation()
            # a node joining during the rotation: new key's certificate, both roots trusted
            new_creds = await transport.join([addr], ca.join_token("worker"))
            assert len(x509.load_pem_x509_certificates(new_creds.trust_pem)) == 2
            new = ManagerClient(new_creds, [addr])
            # the old manager certificate still serves the new node, and the old node
            # (trusting only the old root) talks to a manager with a new-key certificate
            assert (await new.call("whoami"))["node_id"] == new_creds.identity.node_id
            server.update_credentials(m1_creds.with_certificate(
                ca.sign_csr(m1_creds.csr(), m1_creds.identity.node_id, MANAGER_ROLE),
                ca.trust_pem))
            await old.aclose()
            assert (await old.call("whoami"))["node_id"] == old.credentials.identity.node_id
            assert (await new.call("whoami"))["role"] == WORKER_ROLE
            # the old node renews: new-key certificate, new bundle
            renewed = await old.renew()
            assert ca.issued_by_current(renewed.chain_pem)
            assert renewed.trust_pem == ca.trust_pem
            assert not ca.issued_by_current(lagging.credentials.chain_pem)
            assert {n for n, c in issued.items() if not ca.issued_by_current(c)} == {
                lagging.credentials.identity.node_id}
            # finish: the old root is dropped
            ca.finish_rotation()
            server.update_credentials(server.credentials.with_certificate(
                ca.sign_csr(server.credentials.csr(), m1_creds.identity.node_id,
                            MANAGER_ROLE), ca.trust_pem))
            await old.renew()
            for client in (old, new):
                await client.aclose()
                assert (await client.call("whoami"))["node_id"] == \
                    client.credentials.identity.node_id
            # a node that did not renew in time no longer trusts the managers
            with pytest.raises(errors.Unavailable, match="certificate verify failed"):
                await lagging.call("whoami")
            for client in (old, new, lagging):
                await client.aclose()
    run(main)


# --- failover, sessions, heartbeats ----------------------------------------------------------

def test_client_fails_over_between_managers():
    async def main():
        ca = ClusterCA.create()
        dead = free_dead_address()
        async with manager(ca, "127.0.0.2") as (a1, _, scope1), \
                manager(ca, "127.0.0.3") as (a2, _, _):
            client = ManagerClient(ca.issue(WORKER_ROLE), [dead, a1, a2])
            assert (await client.call("whoami"))["role"] == WORKER_ROLE
            assert client.address == a1
            scope1.cancel()  # the first manager goes away
            await trio.sleep(0.1)
            assert (await client.call("whoami"))["role"] == WORKER_ROLE
            assert client.address == a2
            await client.aclose()
            client.set_addresses([dead])
            with pytest.raises(errors.Unavailable, match="no manager could be reached"):
                await client.call("whoami")
            await client.aclose()
    run(main)


def test_session_and_heartbeats():
    async def main():
        ca = ClusterCA.create()
        now = [100.0]
        sessions = Sessions(period=0.5, clock=lambda: now[0])
        async with manager(ca, "127.0.0.2", sessions=sessions) as (addr, _, _):
            client = ManagerClient(ca.issue(WORKER_ROLE), [addr])
            node_id = client.credentials.identity.node_id
            with pytest.raises(errors.NotFound, match="session invalid"):
                await client.call("heartbeat", session_id="nope")
            async with client.stream("session") as items:
                first = await items.__anext__()
                assert first["period"] == 0.5
                assert sessions.nodes == [node_id]
                now[0] += 1.0
                assert await client.call("heartbeat", session_id=first["session_id"]) == \
                    {"period": 0.5}
                assert sessions.last_seen(node_id) == 101.0
                with pytest.raises(errors.NotFound, match="session invalid"):
                    await client.call("heartbeat", session_id="0" * 24)
                assert sessions.send(node_id, {"tasks": ["t1"]})
                assert await items.__anext__() == {"tasks": ["t1"]}
                assert sessions.expired() == []
                now[0] += 10
                assert sessions.expired() == [node_id]
                sessions.close(node_id)  # the manager ends it: the stream ends
                assert [item async for item in items] == []
            assert sessions.nodes == []
            assert not sessions.send(node_id, "x")
            # a client that hangs up ends its session on the manager
            async with client.stream("session") as items:
                await items.__anext__()
                assert sessions.nodes == [node_id]
            with trio.fail_after(5):
                while sessions.nodes:
                    await trio.sleep(0.02)
            await client.aclose()
    run(main)


def test_parse_address():
    assert transport.parse_address("10.0.0.1") == ("10.0.0.1", 2377)
    assert transport.parse_address("127.0.0.2:4000") == ("127.0.0.2", 4000)
    assert transport.parse_address("[::1]:2377") == ("::1", 2377)
    assert transport.parse_address(("h", 5)) == ("h", 5)
    for bad in ["h:x", "h:0", ":5", "[::1", "h:70000"]:
        with pytest.raises(errors.InvalidArgument):
            transport.parse_address(bad)


def test_listen_address_taken_is_a_clear_error():
    async def main():
        ca = ClusterCA.create()
        async with manager(ca, "127.0.0.2") as (addr, _, _):
            host, port = transport.parse_address(addr)
            with pytest.raises(errors.Unavailable,
                               match=f"listen tcp {host}:{port}: bind: address already in use"):
                await Server(ca.issue(MANAGER_ROLE)).serve(host, port)
    run(main)


def test_an_answered_error_does_not_fail_over():
    async def main():
        ca = ClusterCA.create()
        async with manager(ca, "127.0.0.2") as (a1, s1, _), manager(ca, "127.0.0.3") as (a2, _, _):
            async def busy(peer, args):
                raise errors.Unavailable("the store is not ready")

            s1.register("test.busy", busy)
            client = ManagerClient(ca.issue(WORKER_ROLE), [a1, a2])
            with pytest.raises(errors.Unavailable, match="^the store is not ready$"):
                await client.call("test.busy")
            assert client.address == a1
            await client.aclose()
    run(main)


def test_keep_renewed_renews_before_each_expiry(tmp_path):
    async def main():
        ca = ClusterCA.create(backdate=dt.timedelta(0))
        long_lived = ca.issue(MANAGER_ROLE)  # the manager's own certificate: 90 days
        ca.node_cert_expiry = dt.timedelta(seconds=2)
        async with manager(ca, "127.0.0.2", creds=long_lived) as (addr, _, _):
            creds = await transport.join([addr], ca.join_token("worker"))
            client = ManagerClient(creds, [addr])
            seen = []

            async def on_renewed(new):
                seen.append((dt.datetime.now(dt.timezone.utc), new))

            async with trio.open_nursery() as nursery:
                await nursery.start(partial(client.keep_renewed, tmp_path, on_renewed=on_renewed))
                with trio.fail_after(10):
                    while len(seen) < 2:
                        await trio.sleep(0.05)
                nursery.cancel_scope.cancel()
            previous = creds.cert
            for when, new in seen:
                assert when < previous.not_valid_after_utc  # renewed before it expired
                assert new.cert.not_valid_after_utc > previous.not_valid_after_utc
                previous = new.cert
            saved = swarm_ca.NodeCredentials.load(tmp_path)
            assert saved.chain_pem in {seen[-1][1].chain_pem, client.credentials.chain_pem}
            assert saved.identity.node_id == creds.identity.node_id
            await client.aclose()
    run(main)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=64), st.lists(st.integers(1, 8), max_size=8))
def test_frame_reader_never_crashes_on_arbitrary_bytes(data, chunks):
    """Whatever a peer sends, reading frames gives objects, the end, or a CoreError."""
    async def main():
        left, right = trio.testing.memory_stream_pair()
        frames = transport._Frames(right)
        rest = data
        for size in chunks:  # in pieces, as TCP may deliver them
            if rest[:size]:
                await left.send_all(rest[:size])
            rest = rest[size:]
        if rest:
            await left.send_all(rest)
        await left.aclose()
        try:
            while (frame := await frames.receive()) is not None:
                assert isinstance(frame, dict)
        except errors.CoreError:
            pass
    run(main)


@settings(max_examples=100, deadline=None)
@given(st.dictionaries(st.text(max_size=5), st.one_of(st.none(), st.integers(), st.text()),
                       max_size=4))
def test_frames_round_trip(obj):
    async def main():
        left, right = trio.testing.memory_stream_pair()
        await transport._Frames(left).send(obj)
        assert await transport._Frames(right).receive() == obj
    run(main)


def test_request_renewal_renews_at_once():
    async def main():
        ca = ClusterCA.create()
        async with manager(ca, "127.0.0.2") as (addr, _, _):
            client = ManagerClient(ca.issue(WORKER_ROLE), [addr])
            old = client.credentials
            renewed = trio.Event()

            async def on_renewed(new):
                renewed.set()

            async with trio.open_nursery() as nursery:
                await nursery.start(partial(client.keep_renewed, on_renewed=on_renewed))
                ca.start_rotation()  # what a rotation does: every node renews now
                client.request_renewal()
                with trio.fail_after(5):
                    await renewed.wait()
                nursery.cancel_scope.cancel()
            assert client.credentials.chain_pem != old.chain_pem
            assert ca.issued_by_current(client.credentials.chain_pem)
            assert client.credentials.trust_pem == ca.trust_pem
            await client.aclose()
    run(main)


def test_manager_certificate_carries_its_ip_addresses():
    """etcd's peers (same certificates) check the address they dial: a manager's certificate
    names its addresses, kept across renewals; a worker's carries none."""
    async def main():
        ca = ClusterCA.create()
        async with manager(ca, "127.0.0.2") as (addr, _, _):
            creds = await transport.join([addr], ca.join_token("manager"),
                                         ip_addresses=["127.0.0.5", "::1"])
            assert creds.identity.ip_addresses == ("127.0.0.5", "::1")
            # a TLS client that checks the IP address (as etcd's peers do) accepts it
            async with trio.open_nursery() as nursery:
                server = Server(creds)
                host, port = await nursery.start(server.serve, "127.0.0.5", 0)
                ctx = swarm_ca.client_context(ca.trust_pem)
                tcp = await trio.open_tcp_stream(host, port)
                stream = trio.SSLStream(tcp, ctx, server_hostname="127.0.0.5")
                await stream.do_handshake()
                await stream.aclose()
                nursery.cancel_scope.cancel()
            client = ManagerClient(creds, [addr])
            assert (await client.renew()).identity.ip_addresses == ("127.0.0.5", "::1")
            assert (await client.renew(["127.0.0.6"])).identity.ip_addresses == ("127.0.0.6",)
            await client.aclose()
            with pytest.raises(errors.InvalidArgument, match="only a manager's certificate"):
                await transport.join([addr], ca.join_token("worker"), ip_addresses=["127.0.0.7"])
            with pytest.raises(errors.InvalidArgument, match="invalid IP address 'nope'"):
                await transport.join([addr], ca.join_token("manager"), ip_addresses=["nope"])
            assert ca.issue(WORKER_ROLE).identity.ip_addresses == ()
    run(main)
