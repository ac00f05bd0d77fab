"""Entry point of the built-in registry driver "hub": registers it with the kernel."""
from __future__ import annotations

from core.hookspecs import hookimpl

NAME = "hub"


@hookimpl
def core_driver_describe() -> str:
    return "Docker Hub and OCI distribution registries (not implemented yet)"


@hookimpl
def core_registry_driver(context):
    from core.unimplemented import Unimplemented

    return Unimplemented("registry", NAME)
