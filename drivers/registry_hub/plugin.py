"""Entry point of the built-in registry driver "hub": registers it with the kernel.

The driver is a library (:mod:`drivers.registry_hub.client`); this adapter builds it from the
kernel's context: the content store from ``context.services["content"]`` and the registry
settings (mirrors, insecure registries) from ``context.services["registry_config"]``.
"""
from __future__ import annotations

from typing import Any

from core.hookspecs import hookimpl

NAME = "hub"


@hookimpl
def core_driver_describe() -> str:
    return ("Docker Hub and OCI distribution registries: pull (resumable, verified), push, "
            "tags, token and basic auth, mirrors for any registry")


@hookimpl
def core_registry_driver(context: Any) -> Any:
    from drivers.registry_hub.client import HubClient

    # Without a kernel content store (a driver built on its own, e.g. by a conformance suite),
    # blobs go to a store under the driver's own root, created on first use.
    return HubClient(content=context.services.get("content"),
                     config=context.services.get("registry_config"),
                     content_root=context.root / "content")
