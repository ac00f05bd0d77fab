"""A placeholder driver object for drivers whose work has not been written yet.

Every method raises :class:`core.errors.NotImplemented_` naming the driver, so a driver that is
listed by ``core info`` as *not implemented yet* behaves exactly as it says.
"""
from __future__ import annotations

from typing import Any

from core.errors import NotImplemented_


class Unimplemented:
    def __init__(self, kind: str, name: str) -> None:
        self._what = f'{kind} driver "{name}"'

    async def aclose(self) -> None:
        """Nothing to release: closing is the one thing it does."""
        return None

    async def aclose(self) -> None:
        return None

    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("__"):
            raise AttributeError(attr)

        async def not_implemented(*args: Any, **kwargs: Any) -> Any:
            raise NotImplemented_(f"{self._what} does not implement {attr} yet")

        return not_implemented
