"""``docker rm``: a container's executor state, network endpoints, root filesystem, record and
directory go (``-v``: its anonymous volumes too); a running one is killed first (``-f``)."""
from __future__ import annotations

import logging
import signal as _signal

import trio

from core.engine.concurrency import gather
from core.engine.containers import rootfs
from core.engine.containers.context import Parts
from core.engine.containers.restart import cancel_restart
from core.engine.containers.stop import Stopper
from core.engine.containers.store import RUNNING, Container
from core.errors import Conflict, CoreError, NotFound

log = logging.getLogger("core.engine.containers.remove")


class Remover:
    """Removes the containers of ``parts``; ``stopper`` kills a running one (``force``)."""

    def __init__(self, parts: Parts, stopper: Stopper) -> None:
        self.parts = parts
        self.stopper = stopper

    async def remove(self, c: Container, *, force: bool = False, volumes: bool = False) -> None:
        """``docker rm``: ``Conflict`` while it runs, unless ``force`` (SIGKILL first)."""
        if c.removing:
            raise Conflict(f"removal of container {c.short_id} is already in progress")
        if c.status in RUNNING:
            if not force:
                if c.status == "paused":
                    raise Conflict(f"You cannot remove a paused container {c.id}. Unpause and then stop the "
                                   "container before attempting removal or force remove")
                if c.status == "restarting":
                    raise Conflict(f"You cannot remove a restarting container {c.id}. Stop the container before "
                                   "attempting removal or force remove")
                raise Conflict(f"You cannot remove a running container {c.id}. Stop the container before "
                               "attempting removal or force remove")
            c.cancel_restart = True
            if c.status == "restarting":
                cancel_restart(self.parts.store, c)
            else:
                since = c.exits
                try:
                    await self.stopper.kill(c, _signal.SIGKILL)
                except Conflict:
                    pass
                if not await self.stopper.wait_exit(c, since, 30):
                    raise CoreError(f"could not kill running container {c.id}, cannot remove")
        c.removing = True
        try:
            async with c.lock:
                if c.id not in self.parts.store.by_id:
                    return
                c.state.status = "removing"
                c.notify()
                await self._destroy(c, volumes)
        finally:
            c.removing = False

    async def _destroy(self, c: Container, volumes: bool) -> None:
        """Its processes are gone: the executor's state, the network endpoints and the root
        filesystem are removed side by side, then the record and the directory."""
        failed: list[CoreError] = []

        async def executor_state() -> None:
            try:
                await self.parts.executor(c).delete(c.id)
            except NotFound:
                pass
            except CoreError as exc:
                log.warning("container %s: executor delete: %s", c.short_id, exc)

        async def filesystem() -> None:
            await rootfs.unmount(self.parts, c)
            snapshotter, key = self.parts.snapshotter(c), f"ctr-{c.id}"
            try:
                parent = (await snapshotter.stat(key)).parent
                await snapshotter.remove(key)
            except NotFound:
                return
            except CoreError as exc:
                failed.append(exc)
                return
            if parent and self.parts.images.by_id(c.image_id) is None:
                await rootfs.collect_layers(self.parts, snapshotter, parent)

        with trio.CancelScope(shield=True):
            await gather(executor_state, lambda: self.parts.release_networks(c, True), filesystem)
            for exc in failed:
                c.state.status = "dead"
                c.state.error = f"failed to remove the root filesystem: {exc.message}"
                self.parts.store.save(c)
                c.notify()
                raise CoreError(f"unable to remove filesystem for {c.id}: {exc.message}") from exc
            self.parts.store.delete(c)
            for e in [e for e in self.parts.execs.values() if e.container_id == c.id]:
                self.parts.execs.pop(e.id, None)
            if volumes:
                for mp in c.mounts:
                    if mp.type == "volume" and mp.anonymous and mp.name:
                        try:
                            await self.parts.volumes.remove(mp.name)
                        except NotFound:
                            pass
                        except CoreError as exc:
                            log.info("container %s: keeping volume %s: %s", c.short_id, mp.name, exc)
            await trio.to_thread.run_sync(self.parts.files.remove_dir, self.parts.files.dir(c))
            c.fail_pending(None)
            c.removed.set()
            c.notify()
            self.parts.emit(c, "destroy")

