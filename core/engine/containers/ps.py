"""Which containers ``docker ps`` lists (its ``filters``, ``all``, ``limit``) and which
``docker container prune`` removes (stopped ones, ``until``, ``label``, ``label!``)."""
from __future__ import annotations

import re
from typing import Any

from core.engine.containers import health
from core.engine.containers.logs import parse_since
from core.engine.containers.store import RUNNING, Container, ContainerStore
from core.engine.filters import label_match
from core.errors import CoreError, InvalidArgument

PS_FILTERS = frozenset({"ancestor", "before", "expose", "exited", "health", "id", "isolation", "is-task", "label",
                        "name", "network", "publish", "since", "status", "volume"})
PRUNE_FILTERS = frozenset({"until", "label", "label!"})
STATUSES = {"created", "restarting", "running", "removing", "paused", "exited", "dead"}


def _search(pattern: str, text: str) -> bool:
    try:
        return re.search(pattern, text) is not None
    except re.error as exc:
        raise InvalidArgument(f"invalid filter name={pattern}: {exc}") from None


def _labels_match(labels: dict[str, str], wanted: list[str]) -> bool:
    return all(label_match(labels, w) for w in wanted)


class Selection:
    """The ``filters`` of one ``docker ps``, checked, with the containers and images they name
    looked up once."""

    def __init__(self, store: ContainerStore, images: Any, filters: dict[str, list[str]], all_: bool) -> None:
        for value in filters.get("status", []):
            if value not in STATUSES:
                raise InvalidArgument(f"invalid filter 'status={value}'")
        health.check_filter(filters.get("health", []))
        self.filters = filters
        self.all = all_ or any(k in filters for k in ("status", "before", "since", "exited"))
        self.before = store.lookup(filters["before"][0]) if filters.get("before") else None
        self.since = store.lookup(filters["since"][0]) if filters.get("since") else None
        self.ancestors: set[str] | None = None
        if "ancestor" in filters:
            self.ancestors = set()
            for a in filters["ancestor"]:
                try:
                    self.ancestors.add(images.lookup(a).id)
                except CoreError:
                    pass

    def _names(self, c: Container) -> bool:
        f = self.filters
        # a regular expression, matched with and without the leading "/" (as moby does)
        if "name" in f and not any(_search(p, "/" + c.name) or _search(p, c.name) for p in f["name"]):
            return False
        if "id" in f and not any(c.id.startswith(p) or re.search(p, c.id) for p in f["id"]):
            return False
        if "label" in f and not _labels_match(c.config.get("Labels") or {}, f["label"]):
            return False
        return self.ancestors is None or c.image_id in self.ancestors

    def _state(self, c: Container) -> bool:
        f = self.filters
        if not self.all and c.status not in RUNNING:
            return False
        if "status" in f and c.status not in f["status"]:
            return False
        if "exited" in f and (c.status != "exited" or str(c.state.exit_code) not in f["exited"]):
            return False
        if self.before is not None and c.created >= self.before.created:
            return False
        return self.since is None or c.created > self.since.created

    def _resources(self, c: Container) -> bool:
        f = self.filters
        if "volume" in f and not any((m.name == v or m.destination == v) for m in c.mounts for v in f["volume"]):
            return False
        if "network" in f and (c.host_config.get("NetworkMode") or "bridge") not in f["network"]:
            return False
        if "health" in f and not health.filter_matches(c, f["health"]):
            return False
        if "is-task" in f and "true" in f["is-task"]:
            return False
        return "publish" not in f and "expose" not in f

    def matches(self, c: Container) -> bool:
        return self._state(c) and self._names(c) and self._resources(c)


def select(store: ContainerStore, images: Any, filters: dict[str, list[str]], *, all_: bool,
           limit: int) -> list[Container]:
    """``docker ps``: the containers to list, newest first."""
    selection = Selection(store, images, filters, all_ or limit > 0)
    out = [c for c in store.all() if selection.matches(c)]
    return out[:limit] if limit > 0 else out


def prunable(store: ContainerStore, filters: dict[str, list[str]]) -> list[Container]:
    """``docker container prune``: the stopped containers its filters select."""
    until = parse_since(filters["until"][0], "until") if filters.get("until") else 0
    out = []
    for c in store.all():
        if c.status in RUNNING or c.status == "removing":
            continue
        if until and c.created >= until:
            continue
        labels = c.config.get("Labels") or {}
        if "label" in filters and not _labels_match(labels, filters["label"]):
            continue
        if "label!" in filters and any(label_match(labels, w) for w in filters["label!"]):
            continue
        out.append(c)
    return out
