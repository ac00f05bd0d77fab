"""A registry driver that implements only its description, not the factory."""
from core.hookspecs import hookimpl


@hookimpl
def core_driver_describe():
    return "describes itself but builds nothing"
