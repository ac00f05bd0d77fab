"""The engine services are wired in one place (``Daemon.open``), each given its collaborators
in its constructor as the small async Protocols of :mod:`core.engine.interfaces`."""
from __future__ import annotations

import inspect
import shutil
import tempfile
from pathlib import Path

import pytest
import trio


@pytest.fixture()
def daemon():
    from core.daemon.app import Daemon
    from core.daemon.config import DaemonConfig

    root = Path(tempfile.mkdtemp(prefix="core-test-wiring-"))
    d = Daemon(DaemonConfig(data_root=root / "data", exec_root=root / "run"))
    try:
        d.open()
        yield d
    finally:
        trio.run(d.aclose)
        shutil.rmtree(root, ignore_errors=True)


def test_services_are_given_their_collaborators(daemon):
    from core.engine.containers.files import Directory
    from core.engine.interfaces import ContainerDirectory, ContainerNetworks, EventSink, ImageUsers, VolumeUsers

    store = daemon.containers.store
    assert isinstance(store, ImageUsers) and isinstance(store, VolumeUsers)
    assert daemon.images.users is store and daemon.volumes.users is store
    assert isinstance(daemon.networks, ContainerNetworks)
    assert daemon.containers.parts.networks is daemon.networks
    directory = daemon.networks.sandboxes.containers
    assert isinstance(directory, Directory) and isinstance(directory, ContainerDirectory)
    assert isinstance(daemon.events, EventSink) and daemon.containers.parts.events is daemon.events


def test_users_are_constructor_arguments_not_attributes_set_later():
    from core.engine.images.store import ImageStore
    from core.engine.volumes import VolumeStore

    for cls in (ImageStore, VolumeStore):
        param = inspect.signature(cls).parameters["users"]
        assert param.kind is inspect.Parameter.KEYWORD_ONLY and param.default is inspect.Parameter.empty
    import core.daemon.app as app

    assert not hasattr(app, "_ContainerDirectory") and not hasattr(app, "_SyncNetworkViews")
    from core.engine.containers.service import Containers

    assert not hasattr(Containers, "wire_networks")


def test_the_container_store_answers_users_asynchronously(daemon):
    from core.engine.containers.store import Container, ContainerStateRecord
    from core.engine.interfaces import ContainerUse
    from core.engine.volumes import MountPoint

    store = daemon.containers.store
    mount = MountPoint(type="volume", destination="/data", name="vol1", source="/x")
    c = Container(id="a" * 64, name="one", created=1, image_id="sha256:" + "b" * 64, storage="vfs",
                  executor="container", config={}, host_config={}, networking={}, mounts=[mount],
                  state=ContainerStateRecord(status="restarting"))
    store.insert(c)

    async def ask():
        return (await store.image_users("sha256:" + "b" * 64), await store.image_users("sha256:" + "c" * 64),
                await store.volume_users("vol1"), await daemon.volumes.in_use("vol1"))

    images, none, volumes, in_use = trio.run(ask)
    # a restarting container holds its image; its volume's device need not stay mounted
    assert images == [ContainerUse(id=c.id, running=True)] and none == []
    assert volumes == [ContainerUse(id=c.id, running=False)] and in_use
