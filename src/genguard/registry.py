"""One registry helper for every plug-in kind: detectors, merge methods, generators, audit
classifiers.

A :class:`Registry` maps names to plug-ins. Built-in plug-ins register with a decorator
when their module is imported (the registry imports its ``builtin_modules`` on first
lookup); other packages plug in through an entry-point group (``genguard.detectors``,
``genguard.merge_methods``, ``genguard.generators``, ``genguard.classifiers``): each entry
point names a module (or an object inside one) whose import registers the plug-in, as
python-threatexchange's extension manifests and inspect_ai's entry points do.

The rules are the same for every kind: a duplicate name is refused (a plug-in cannot
silently replace another); an unknown name is a :class:`ConfigError` that lists the known
ones; a plug-in package that fails to load is an error that names it, never skipped.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable, Iterator, Sequence
from importlib import metadata
from typing import Generic, TypeVar

from genguard.errors import ConfigError

T = TypeVar("T")


class Registry(Generic[T]):
    """Names -> plug-ins of one kind, filled by :meth:`register` and by entry points."""

    def __init__(
        self,
        kind: str,
        *,
        entry_point_group: str | None = None,
        builtin_modules: Sequence[str] = (),
    ) -> None:
        self.kind = kind
        self.entry_point_group = entry_point_group
        self.builtin_modules = tuple(builtin_modules)
        self._items: dict[str, T] = {}
        self._loaded = False
        self._lock = threading.RLock()

    # -- filling ---------------------------------------------------------------------------

    def add(self, name: str, item: T) -> T:
        """Register ``item`` as ``name``; a name can be registered once."""
        if not name or not isinstance(name, str):
            raise ConfigError(f"a {self.kind} needs a non-empty name")
        with self._lock:
            if name in self._items and self._items[name] is not item:
                raise ConfigError(f"{self.kind} {name!r} is already registered")
            self._items[name] = item
        return item

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator form of :meth:`add`."""

        def decorator(item: T) -> T:
            return self.add(name, item)

        return decorator

    def _load(self) -> None:
        """Import the built-in modules and the plug-ins of the entry-point group, once."""
        if self._loaded:
            return
        with self._lock:
            if self._loaded:
                return
            self._loaded = True  # set first: built-in modules register while importing
            for module in self.builtin_modules:
                importlib.import_module(module)
            if self.entry_point_group:
                for entry in metadata.entry_points(group=self.entry_point_group):
                    try:
                        entry.load()
                    except Exception as exc:
                        raise ConfigError(
                            f"{self.kind} plug-in {entry.name!r} ({entry.value}) failed to "
                            f"load: {type(exc).__name__}: {exc}"
                        ) from exc

    def remove(self, name: str) -> None:
        """Forget ``name`` (tests and plug-ins that unload); unknown names are ignored."""
        with self._lock:
            self._items.pop(name, None)

    # -- lookups ---------------------------------------------------------------------------

    def get(self, name: str) -> T:
        """The plug-in called ``name``, or a :class:`ConfigError` listing the known ones."""
        self._load()
        try:
            return self._items[name]
        except KeyError:
            raise ConfigError(
                f"unknown {self.kind} {name!r}; known: {', '.join(self.names()) or '(none)'}"
            ) from None

    def names(self) -> list[str]:
        self._load()
        return sorted(self._items)

    def items(self) -> list[tuple[str, T]]:
        self._load()
        return sorted(self._items.items())

    def __contains__(self, name: object) -> bool:
        self._load()
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        self._load()
        return len(self._items)
