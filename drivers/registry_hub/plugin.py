"""Entry point of the built-in registry driver "hub": registers it with the kernel.

The driver is a library (:mod:`drivers.registry_hub.client`); this adapter builds it from the
kernel's context: the content store from ``context.content`` and the registry settings (mirrors,
insecure registries) from ``context.registry``.  A context without a content store is refused:
blobs must land in the kernel's store, never in one of the driver's making.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from core.errors import DriverError
from core.hookspecs import hookimpl

if TYPE_CHECKING:
    from core.contracts import DriverContext
    from core.contracts.registry import RegistryClient

NAME = "hub"


@hookimpl
def core_driver_describe() -> str:
    return ("Docker Hub and OCI distribution registries: pull (resumable, verified), push, "
            "tags, token and basic auth, mirrors for any registry")


@hookimpl
def core_registry_driver(context: DriverContext) -> RegistryClient:
    from drivers.registry_hub.client import HubClient

    if context.content is None:
        raise DriverError(f'registry driver "{context.name}" needs the kernel\'s content store, '
                          "and the context offers none")
    return HubClient(content=context.content, config=context.registry)
