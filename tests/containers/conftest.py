"""Fixtures the container modules share, on the module's own ``env`` (a daemon with the test
registry's busybox pulled): a Docker SDK client, busybox's reference, and the list of the
containers a test made, removed whatever happens."""
from __future__ import annotations

from typing import Any, Iterator

import pytest


@pytest.fixture(scope="module")
def client(env: Any) -> Iterator[Any]:
    c = env.docker_client()
    yield c
    c.close()


@pytest.fixture(scope="module")
def image(test_images: Any) -> str:
    return test_images["busybox:latest"].reference


@pytest.fixture
def made(client: Any) -> Iterator[list]:
    """Containers a test made (it appends them), removed forcefully with their anonymous volumes."""
    import docker

    out: list = []
    yield out
    for c in out:
        try:
            c.remove(force=True, v=True)
        except docker.errors.APIError:
            pass
