"""In-memory object store of the emulator: objects by type, namespace and name, plus the watch log.

Objects handed to ``put`` become owned by the store and are never mutated afterwards (writers build
a new dict), so readers may serialize them without copying. Every write gets the next
resourceVersion of one server-wide counter and is appended to a bounded event log that watches
read from.
"""

from __future__ import annotations

import builtins
import threading
from collections import deque
from collections.abc import Iterator
from typing import Any, NamedTuple

Obj = dict[str, Any]
TypeKey = tuple[str, str]  # (group, plural)

# How many past events a watch may resume from; older resourceVersions get 410 Gone.
EVENT_LOG_SIZE = 20_000


class Event(NamedTuple):
    """One change: ADDED, MODIFIED or DELETED, with the object before it (for selector moves).

    A named tuple: one is made per write, and a frozen dataclass takes longer to build."""

    rv: int
    key: TypeKey
    namespace: str
    type: str
    obj: Obj
    old: Obj | None


class Store:
    """Thread-safe object store; the lock is reentrant so a request can read-then-write atomically."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.changed = threading.Condition(self.lock)
        self._objects: dict[TypeKey, dict[str, dict[str, Obj]]] = {}
        self._events: deque[Event] = deque(maxlen=EVENT_LOG_SIZE)
        self._rv = 1000
        # owner uid -> set of (key, namespace, name) of objects naming it in ownerReferences.
        self._dependents: dict[str, set[tuple[TypeKey, str, str]]] = {}
        self._uids: dict[str, tuple[TypeKey, str, str]] = {}

    def reset(self) -> None:
        with self.lock:
            self._objects.clear()
            self._events.clear()
            self._dependents.clear()
            self._uids.clear()
            # resourceVersion stays monotonic across resets, as clients may cache it.
            self.changed.notify_all()

    @property
    def resource_version(self) -> int:
        return self._rv

    def next_rv(self) -> int:
        with self.lock:
            self._rv += 1
            return self._rv

    def get(self, key: TypeKey, namespace: str, name: str) -> Obj | None:
        ns = self._objects.get(key)
        if ns is None:
            return None
        names = ns.get(namespace)
        return None if names is None else names.get(name)

    def list(self, key: TypeKey, namespace: str | None) -> builtins.list[Obj]:
        with self.lock:
            by_ns = self._objects.get(key)
            if not by_ns:
                return []
            if namespace is not None:
                return list(by_ns.get(namespace, {}).values())
            out: builtins.list[Obj] = []
            for names in by_ns.values():
                out.extend(names.values())
            return out

    def count(self, key: TypeKey, namespace: str | None = None) -> int:
        by_ns = self._objects.get(key) or {}
        if namespace is not None:
            return len(by_ns.get(namespace, {}))
        return sum(len(v) for v in by_ns.values())

    def type_keys(self) -> builtins.list[TypeKey]:
        return list(self._objects)

    def namespaces_used(self, key: TypeKey) -> builtins.list[str]:
        return [ns for ns, names in (self._objects.get(key) or {}).items() if names]

    def by_uid(self, uid: str) -> Obj | None:
        loc = self._uids.get(uid)
        return None if loc is None else self.get(*loc)

    def dependents(self, uid: str) -> builtins.list[tuple[TypeKey, str, str]]:
        return sorted(self._dependents.get(uid, ()))

    def put(self, key: TypeKey, obj: Obj, *, event_type: str, old: Obj | None) -> Obj:
        """Store ``obj`` with a fresh resourceVersion (written into it) and log the event."""
        with self.lock:
            meta = obj["metadata"]
            namespace = meta.get("namespace", "")
            self._rv += 1
            meta["resourceVersion"] = str(self._rv)
            self._objects.setdefault(key, {}).setdefault(namespace, {})[meta["name"]] = obj
            loc = (key, namespace, meta["name"])
            if old is not None:
                self._unindex_owners(old, loc)
            self._index_owners(obj, loc)
            self._uids[meta["uid"]] = loc
            self._events.append(Event(self._rv, key, namespace, event_type, obj, old))
            self.changed.notify_all()
            return obj

    def remove(self, key: TypeKey, namespace: str, name: str) -> Obj | None:
        """Delete an object; the DELETED event carries a copy with a new resourceVersion."""
        with self.lock:
            names = self._objects.get(key, {}).get(namespace)
            if names is None or name not in names:
                return None
            old = names.pop(name)
            loc = (key, namespace, name)
            self._unindex_owners(old, loc)
            self._uids.pop(old["metadata"].get("uid", ""), None)
            self._rv += 1
            gone = dict(old)
            gone["metadata"] = dict(old["metadata"], resourceVersion=str(self._rv))
            self._events.append(Event(self._rv, key, namespace, "DELETED", gone, old))
            self.changed.notify_all()
            return gone

    def _index_owners(self, obj: Obj, loc: tuple[TypeKey, str, str]) -> None:
        for ref in obj["metadata"].get("ownerReferences") or ():
            uid = ref.get("uid")
            if uid:
                self._dependents.setdefault(uid, set()).add(loc)

    def _unindex_owners(self, obj: Obj, loc: tuple[TypeKey, str, str]) -> None:
        for ref in obj["metadata"].get("ownerReferences") or ():
            deps = self._dependents.get(ref.get("uid", ""))
            if deps is not None:
                deps.discard(loc)

    def oldest_event_rv(self) -> int | None:
        return self._events[0].rv if self._events else None

    def log_is_full(self) -> bool:
        return len(self._events) == self._events.maxlen

    def events_after(self, rv: int) -> Iterator[Event]:
        """Events with resourceVersion > rv, oldest first (caller holds the lock or accepts races)."""
        with self.lock:
            events = self._events
            if not events or events[-1].rv <= rv:
                return iter(())
            # The log is sorted by rv: walk back from the end, usually only a few steps.
            idx = len(events)
            while idx > 0 and events[idx - 1].rv > rv:
                idx -= 1
            return iter([events[i] for i in range(idx, len(events))])
