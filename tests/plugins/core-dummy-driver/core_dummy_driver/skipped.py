"""A network driver whose probe says the host cannot run it."""
from core.hookspecs import hookimpl


@hookimpl
def core_driver_probe(context):
    return "needs the frobnicator kernel module"


@hookimpl
def core_network_driver(context):
    raise AssertionError("a skipped driver must never be built")
