"""Errors that cross the boundary between the kernel, drivers and API.

Drivers translate their backend errors into these classes (``raise NotFound(...) from exc``);
the API maps them to HTTP status codes and the CLI to exit codes::

    CoreError                 500  engine error, CLI exit 125
    ├── InvalidArgument       400  bad input: malformed reference, invalid option
    ├── NotFound              404  no such image / container / network / driver
    │   └── ProgramNotFound   404  a container's (or exec's) program does not exist: exit 127
    ├── AlreadyExists         409  a name or key that is taken
    ├── Conflict              409  the object is in a state that forbids the operation
    ├── Unavailable           503  a backend (kernel feature, registry, daemon) cannot serve now
    ├── Unauthorized          401  a registry refused the credentials
    ├── Forbidden             403
    │   └── ProgramNotRunnable 403 it exists but cannot be run (permission, a directory): 126
    ├── NotImplemented_       501  the driver does not implement this operation yet
    └── DriverError           500  a driver could not be loaded or selected (exit 125)
"""
from __future__ import annotations


class CoreError(Exception):
    """Base of every error that crosses the kernel/driver/API boundary."""

    status = 500

    def __init__(self, message: str = "") -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class InvalidArgument(CoreError):
    status = 400


class NotFound(CoreError):
    status = 404


class AlreadyExists(CoreError):
    status = 409


class Conflict(CoreError):
    status = 409


class Unavailable(CoreError):
    status = 503


class Unauthorized(CoreError):
    status = 401


class Forbidden(CoreError):
    status = 403


class ProgramNotFound(NotFound):
    """The program a container or an exec runs does not exist (``exec: "foo": executable file
    not found in $PATH``): docker's exit code 127.  Executors raise it from ``start``/``exec``."""


class ProgramNotRunnable(Forbidden):
    """The program exists but cannot be run (permission, not executable, a directory):
    docker's exit code 126.  Executors raise it from ``start``/``exec``."""


class NotImplemented_(CoreError):
    status = 501


class DriverError(CoreError):
    """A driver could not be found, loaded or validated."""

    status = 500


class InvalidReference(InvalidArgument):
    """An image reference that docker's grammar rejects (``core.reference.parse_reference``)."""
