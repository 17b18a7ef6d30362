"""Plexus helpers for Python plugins, with the names of the Rust SDK.

Built with componentize-py against the WIT world `plexus:plugin/consumer` (`wit/plexus.wit`).
What it does for you:

- `plugin(cls)` makes the component's `WitWorld` from a plain class: `cls(config)` is made
  once by `init` and kept at module level. (componentize-py makes a new `WitWorld` object
  for every call, so anything set on `self` there is gone at the next event.)
- `Reject` and `Retry` are exceptions; raise them from `handle`. Anything else raised is a
  bug: its traceback goes to stderr and the call traps, so the event is dead-lettered as a
  `trap` with the traceback in the reason (as a Rust panic would be).
- `Event` gives typed access to the delivered event, `Outgoing` builds an emitted one, and
  `emit`, `config`, `state`, the log functions and `now_millis` wrap the host's imports.
"""

import json as _json
import sys
import traceback
from typing import Any, Callable, List, Optional, Tuple

from componentize_py_types import Err
from wit_world.imports import clock as _clock
from wit_world.imports import config as _config
from wit_world.imports import emitter as _emitter
from wit_world.imports import log as _log
from wit_world.imports import state as _state
from wit_world.imports import types as _types

__all__ = [
    "Event", "Outgoing", "Reject", "Retry", "plugin", "emit", "config", "state",
    "trace", "debug", "info", "warn", "error", "now_millis",
]


class Reject(Exception):
    """Dead-letter the event with this reason (a bad event: another try will not help)."""


class Retry(Exception):
    """Try the event again later (a dependency is down), as the route's retry policy says."""


class Event:
    """The event being handled."""

    def __init__(self, raw: _types.Event):
        self.raw = raw
        self.id = raw.id
        self.type = raw.type
        self.source = raw.source
        self.subject = raw.subject
        self.time = raw.time
        self.topic = raw.topic
        self.partition = raw.partition
        self.offset = raw.offset
        self.key = raw.key
        self.content_type = raw.content_type
        self.correlation_id = raw.correlation_id
        self.attempt = raw.attempt
        self.payload = raw.payload

    def json(self) -> Any:
        """The payload as JSON; `Reject` if it is not JSON."""
        try:
            return _json.loads(self.payload or b"null")
        except ValueError as e:
            raise Reject(f"invalid JSON payload: {e}") from None

    def text(self) -> Optional[str]:
        """The payload as UTF-8 text, if it is."""
        try:
            return None if self.payload is None else self.payload.decode("utf-8")
        except UnicodeDecodeError:
            return None

    def key_str(self) -> Optional[str]:
        """The partition key as UTF-8 text, if it is."""
        try:
            return None if self.key is None else self.key.decode("utf-8")
        except UnicodeDecodeError:
            return None

    def extension(self, name: str) -> Any:
        """An extension attribute's value (bool, int, str or bytes), or None."""
        for attribute in self.raw.extensions:
            if attribute.name == name:
                return attribute.value.value
        return None

    def extension_str(self, name: str) -> Optional[str]:
        value = self.extension(name)
        return None if value is None else str(value)

    def header(self, name: str) -> Optional[bytes]:
        """A transport header (Kafka header), or None."""
        for header in self.raw.headers:
            if header.name == name:
                return header.value
        return None


class Outgoing:
    """An event to emit: `Outgoing(topic, type).key("k").json({...})`."""

    def __init__(self, topic: str, type: str):
        self.raw = _types.OutgoingEvent(
            topic=topic, type=type, key=None, subject=None, content_type=None,
            dataschema=None, extensions=[], headers=[], payload=None,
        )

    def key(self, key) -> "Outgoing":
        self.raw.key = key.encode("utf-8") if isinstance(key, str) else bytes(key)
        return self

    def subject(self, subject: str) -> "Outgoing":
        self.raw.subject = subject
        return self

    def dataschema(self, uri: str) -> "Outgoing":
        self.raw.dataschema = uri
        return self

    def extension(self, name: str, value) -> "Outgoing":
        """An extension attribute: a bool, int, str or bytes value."""
        if isinstance(value, bool):
            typed = _types.AttributeValue_Boolean(value)
        elif isinstance(value, int):
            typed = _types.AttributeValue_Integer(value)
        elif isinstance(value, (bytes, bytearray)):
            typed = _types.AttributeValue_Binary(bytes(value))
        else:
            typed = _types.AttributeValue_String(str(value))
        self.raw.extensions.append(_types.Attribute(name=name, value=typed))
        return self

    def header(self, name: str, value) -> "Outgoing":
        value = value.encode("utf-8") if isinstance(value, str) else bytes(value)
        self.raw.headers.append(_types.Header(name=name, value=value))
        return self

    def json(self, value: Any) -> "Outgoing":
        self.raw.content_type = "application/json"
        self.raw.payload = _json.dumps(value, separators=(",", ":")).encode("utf-8")
        return self

    def bytes(self, content_type: str, payload: bytes) -> "Outgoing":
        self.raw.content_type = content_type
        self.raw.payload = bytes(payload)
        return self


def emit(event: Outgoing) -> None:
    """Stages `event`; a refusal (a limit, an invalid event) raises `Reject`."""
    try:
        _emitter.emit(event.raw)
    except Err as e:
        raise Reject(f"emit refused: {e.value}") from None


class _Config:
    """The plugin's `config` entries from plexus.toml (other TOML values as JSON text)."""

    def get(self, key: str) -> Optional[str]:
        return _config.get(key)

    def json(self, key: str) -> Any:
        value = _config.get(key)
        return None if value is None else _json.loads(value)

    def entries(self) -> List[Tuple[str, str]]:
        return _config.entries()


config = _Config()


def _state_call(call: Callable, *args):
    try:
        return call(*args)
    except Err as e:
        if isinstance(e.value, _state.StateError_Unavailable):
            raise Retry(f"state unavailable: {e.value.value}") from None
        raise Reject(f"state: {e.value.value}") from None


class _State:
    """The plugin's key-value state; writes commit with the event (see the README)."""

    def get(self, key: str) -> Optional[bytes]:
        return _state_call(_state.get, key)

    def set(self, key: str, value, ttl_millis: Optional[int] = None) -> None:
        value = value.encode("utf-8") if isinstance(value, str) else bytes(value)
        _state_call(_state.set, key, value, ttl_millis)

    def delete(self, key: str) -> bool:
        return _state_call(_state.delete, key)

    def compare_and_swap(self, key: str, expected, new, ttl_millis=None) -> bool:
        return _state_call(_state.compare_and_swap, key, expected, new, ttl_millis)

    def update(self, key: str, change: Callable[[Optional[bytes]], bytes]) -> bytes:
        while True:
            current = self.get(key)
            new = change(current)
            if self.compare_and_swap(key, current, new):
                return new

    def increment(self, key: str, by: int = 1) -> int:
        def add(current: Optional[bytes]) -> bytes:
            try:
                now = int(current or b"0")
            except ValueError:
                now = 0
            return str(now + by).encode("utf-8")
        return int(self.update(key, add))


state = _State()


def trace(message: str) -> None: _log.log(_log.Level.TRACE, message)
def debug(message: str) -> None: _log.log(_log.Level.DEBUG, message)
def info(message: str) -> None: _log.log(_log.Level.INFO, message)
def warn(message: str) -> None: _log.log(_log.Level.WARN, message)
def error(message: str) -> None: _log.log(_log.Level.ERROR, message)


def now_millis() -> int:
    """The host's wall-clock time, in milliseconds since the Unix epoch."""
    return _clock.now_millis()


_instance = None


def plugin(cls):
    """The component's `WitWorld` for `cls`: `cls(config)` once, `obj.handle(event)` per event."""

    class WitWorld:
        def init(self, entries: List[Tuple[str, str]]) -> None:
            global _instance
            try:
                _instance = cls(config)
            except Exception as e:
                traceback.print_exc(file=sys.stderr)
                raise Err(f"{type(e).__name__}: {e}") from None

        def handle(self, event: _types.Event) -> None:
            try:
                _instance.handle(Event(event))
            except Reject as e:
                raise Err(_types.HandleError_Reject(str(e))) from None
            except Retry as e:
                raise Err(_types.HandleError_Retry(str(e))) from None
            except Exception:
                # A bug: the traceback goes to stderr, and the trap dead-letters the event
                # with it, as a Rust panic would.
                traceback.print_exc(file=sys.stderr)
                sys.stderr.flush()
                raise

    return WitWorld
