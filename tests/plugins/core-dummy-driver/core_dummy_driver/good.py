"""A storage driver that loads, probes ok and can be selected (its operations are not implemented)."""
from core.hookspecs import hookimpl
from core.unimplemented import Unimplemented


@hookimpl
def core_driver_describe():
    return "dummy storage driver from an out-of-tree distribution"


@hookimpl
def core_driver_probe(context):
    return None


@hookimpl
def core_storage_driver(context):
    context.root.joinpath("created-by-dummy").write_text(context.name)
    return Unimplemented("storage", context.name)
