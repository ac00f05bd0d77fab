"""The registry contract: resolving, pulling and pushing images.

A registry client turns a :class:`core.reference.Reference` into content in the kernel's content
store (``context.services["content"]``), verified by size and digest before it becomes visible.

Lifecycle of a pull::

    desc = await reg.resolve(ref, auth)                 # the manifest (or index) descriptor
    manifest_desc = await reg.select_platform(desc, platform)   # index -> one manifest
    await reg.fetch(ref, blob_desc, auth)               # blob into the content store, verified

Errors: unknown repository or tag ``NotFound``; refused credentials ``Unauthorized``; a registry
that cannot be reached or answers 5xx ``Unavailable``; a blob or manifest whose digest or size
does not match, an unsupported manifest type (schema 1), an oversized manifest:
``InvalidArgument``.  A failed fetch leaves nothing visible in the content store.
"""
from __future__ import annotations

from typing import Any, Protocol, runtime_checkable


@runtime_checkable
class RegistryClient(Protocol):
    async def resolve(self, ref: Any, auth: Any = None) -> Any: ...

    async def fetch(self, ref: Any, desc: Any, auth: Any = None) -> None: ...

    async def push(self, ref: Any, desc: Any, auth: Any = None) -> None: ...

    async def tags(self, ref: Any, auth: Any = None) -> list[str]: ...

    async def close(self) -> None: ...
