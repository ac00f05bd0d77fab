"""What the CLI's start-up path uses in place of heavier standard modules.

Every ``core`` command pays for its imports before it does anything, and :mod:`json`,
:mod:`socket`, :mod:`signal`, :mod:`threading`, :mod:`typing` and :mod:`urllib.parse` cost more
than a container start's own work (``re`` and ``enum`` behind them: ~15 ms together on a small
VM, against well under 1 ms for the C modules they wrap).  The commands on the hot path
(``run``, ``ps``, ``stop``...) therefore import only C modules — ``_json``, ``_socket``,
``_signal``, ``_thread``, ``select``, ``termios`` — through this module, as the executor's shim
does; a command that needs more (``inspect``'s indented JSON, templates) imports it itself.

- :func:`dumps` / :func:`loads`: compact JSON through ``_json``, the C half of :mod:`json`
  (the same scanner and encoder :mod:`json` uses); :mod:`json` itself where ``_json`` is missing.
- :class:`Event` and :func:`spawn`: :class:`threading.Event` and a daemon thread on ``_thread``.
- :func:`quote` and :func:`urlencode`: :mod:`urllib.parse`'s, for the request targets the client
  builds (``urlencode`` as with ``doseq=True``: a list value repeats its key).
"""
from __future__ import annotations

import _thread

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable

try:
    import _json
except ImportError:  # pragma: no cover - CPython always has it
    _json = None


# -- JSON --------------------------------------------------------------------------------------------

class _DecodeContext:
    """The attributes ``_json.make_scanner`` reads (those of a default json.JSONDecoder)."""

    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    parse_constant = {"-Infinity": float("-inf"), "Infinity": float("inf"), "NaN": float("nan")}.__getitem__
    memo: dict = {}


def _not_serializable(obj: Any) -> Any:
    raise TypeError(f"Object of type {type(obj).__name__} is not JSON serializable")


if _json is not None:
    _scan = _json.make_scanner(_DecodeContext())
    # markers, default, encoder, indent, key separator, item separator, sort_keys, skipkeys, allow_nan
    _encode = _json.make_encoder(None, _not_serializable, _json.encode_basestring_ascii, None,
                                 ": ", ", ", False, False, True)

_WHITESPACE = " \t\n\r"


def loads(data: str | bytes | bytearray) -> Any:
    """``json.loads`` (UTF-8 when given bytes); ``ValueError`` for malformed JSON."""
    if isinstance(data, (bytes, bytearray)):
        data = bytes(data).decode("utf-8")
    if _json is None:
        import json
        return json.loads(data)
    text = data.strip(_WHITESPACE)
    try:
        obj, end = _scan(text, 0)
    except StopIteration as exc:
        raise ValueError(f"Expecting value: char {exc.value}") from None
    if end != len(text):
        raise ValueError(f"Extra data: char {end}")
    return obj


def dumps(obj: Any) -> str:
    """``json.dumps(obj)``: ASCII, docker's separators (``", "``, ``": "``)."""
    if _json is None:
        import json
        return json.dumps(obj)
    return "".join(_encode(obj, 0))


# -- threads -----------------------------------------------------------------------------------------

class Event:
    """:class:`threading.Event`: ``set``, ``is_set``, ``wait(timeout)``."""

    def __init__(self) -> None:
        self._flag = False
        self._mutex = _thread.allocate_lock()
        self._gate = _thread.allocate_lock()
        self._gate.acquire()

    def set(self) -> None:
        with self._mutex:
            if not self._flag:
                self._flag = True
                self._gate.release()

    def is_set(self) -> bool:
        return self._flag

    def wait(self, timeout: float | None = None) -> bool:
        if self._flag:
            return True
        if self._gate.acquire(True, -1 if timeout is None else max(timeout, 0)):
            self._gate.release()
        return self._flag


def spawn(fn: Callable[..., Any], *args: Any) -> None:
    """Run ``fn(*args)`` in a daemon thread (nobody waits for it at exit)."""
    _thread.start_new_thread(fn, args)


def main_thread() -> bool:
    return _thread.get_ident() == _MAIN


_MAIN = _thread.get_ident()


# -- URLs --------------------------------------------------------------------------------------------

_UNRESERVED = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-~")


def quote(text: str, safe: str = "/") -> str:
    """``urllib.parse.quote``: UTF-8, every byte but the unreserved and ``safe`` ones as %XX."""
    keep = _UNRESERVED | frozenset(safe.encode("ascii"))
    data = text.encode("utf-8")
    if all(b in keep for b in data):
        return text
    return "".join(chr(b) if b in keep else f"%{b:02X}" for b in data)


def _quote_plus(text: str) -> str:
    return quote(text, " ").replace(" ", "+")


def urlencode(query: dict[str, Any]) -> str:
    """``urllib.parse.urlencode(query, doseq=True)``."""
    parts = []
    for key, value in query.items():
        k = _quote_plus(str(key))
        if isinstance(value, (list, tuple)):
            parts += [f"{k}={_quote_plus(str(v))}" for v in value]
        else:
            parts.append(f"{k}={_quote_plus(str(value))}")
    return "&".join(parts)
