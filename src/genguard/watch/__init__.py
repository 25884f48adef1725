"""Watch a front-end's output folder and judge each new image once it is complete.

See ``docs/watch.md``. Entry points: :class:`Watcher` (library) and ``genguard watch``.
"""

from __future__ import annotations

from genguard.watch.pending import Timing
from genguard.watch.watcher import Watcher, WatchOptions, WatchSummary, resolve_options

__all__ = ["Timing", "WatchOptions", "WatchSummary", "Watcher", "resolve_options"]
