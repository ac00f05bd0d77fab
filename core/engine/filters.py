"""Docker's list and prune filters, as the engine services apply them (``?filters=`` of
``GET /networks``, ``/volumes``, ``/containers/json`` and the prunes)."""
from __future__ import annotations

import re
import time
from typing import Mapping

from core.errors import InvalidArgument


def label_match(labels: Mapping[str, str], want: str) -> bool:
    """``label=key`` (the key is set) or ``label=key=value`` (set to that value)."""
    key, sep, value = want.partition("=")
    return key in labels and (not sep or labels[key] == value)


def matches(pattern: str, value: str) -> bool:
    """docker's filters.Match: the value as an unanchored regular expression (or a substring)."""
    try:
        return re.search(pattern, value) is not None
    except re.error:
        return pattern in value


_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_DURATIONS = re.compile(r"(?:\d+(?:\.\d+)?(?:ns|us|µs|ms|s|m|h))+")
_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600}


def until(value: str) -> int:
    """A prune ``until``: Unix time, RFC 3339 date/time, or a Go duration before now → ns."""
    text = value.strip()
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return int(float(text) * 1e9)
    if _DURATIONS.fullmatch(text):
        seconds = sum(float(m.group(1)) * _UNITS[m.group(2)] for m in _DURATION.finditer(text))
        return int((time.time() - seconds) * 1e9)
    from datetime import datetime, timezone

    for fmt in ("%Y-%m-%dT%H:%M:%S.%f%z", "%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%dT%H:%M:%S",
                "%Y-%m-%dT%H:%M", "%Y-%m-%d"):
        try:
            parsed = datetime.strptime(text.replace("Z", "+0000"), fmt)
        except ValueError:
            continue
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=timezone.utc)
        return int(parsed.timestamp() * 1e9)
    raise InvalidArgument(f"invalid filter 'until={value}'")
