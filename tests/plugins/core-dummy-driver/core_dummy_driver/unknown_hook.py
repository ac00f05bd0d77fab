"""A storage driver implementing a hook no specification knows (a misspelt factory)."""
from core.hookspecs import hookimpl


@hookimpl
def core_storage_drivr(context):
    return object()
