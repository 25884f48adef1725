"""The long-lived objects a gateway shares between requests.

Guards load ONNX models and are thread-safe, so there is one per policy for the whole
process, built on first use. CPU-heavy work runs on a bounded executor (never on the
event loop), with a bounded waiting line: past it the gateway answers 503 at once,
which keeps latency honest under overload instead of queueing without limit.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import os
import threading
from collections import OrderedDict, deque
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

import numpy as np
from PIL import Image

from genguard.actions.publish import WatermarkSettings
from genguard.cancel import Cancelled, cancellable
from genguard.detectors.base import ImageDetector, create_detector
from genguard.errors import ConfigError, GeneratorError, GenguardError
from genguard.generators import GenerationSettings, ImageGenerator, create_generator
from genguard.guard import DEFAULT_BACKENDS, Guard
from genguard.policy import Policy, load_policy
from genguard.server.config import GeneratorSection, WatermarkSection
from genguard.server.errors import ApiError
from genguard.server.metrics import GatewayMetrics
from genguard.store import Store

log = logging.getLogger("genguard.server")
T = TypeVar("T")


class GuardRegistry:
    """One :class:`Guard` per configured policy name, created once and shared.

    All Guards share one set of detectors: the models are the expensive part (memory and
    load time) and they do not depend on the policy, so serving four policies costs one
    copy of the weights, not four.
    """

    def __init__(
        self,
        profiles: Mapping[str, str],
        *,
        backends: Sequence[str] = DEFAULT_BACKENDS,
        threads: int | None = None,
        guards: Mapping[str, Guard] | None = None,
        store: Store | None = None,
        watermark: WatermarkSettings | None = None,
    ) -> None:
        self.profiles = dict(profiles)
        self.watermark = watermark
        self.backends = tuple(backends)
        self.threads = threads
        self.store = store
        self._guards: dict[str, Guard] = dict(guards or {})
        for guard in self._guards.values():  # injected Guards publish like built ones
            guard.watermark = guard.watermark or watermark
        self.profiles.update({name: name for name in self._guards if name not in self.profiles})
        self._detectors: list[ImageDetector] | None = None
        self._analysers: dict[tuple[bool, int], Any] = {}
        self._persons: Any = None
        self._lock = threading.Lock()

    def names(self) -> list[str]:
        return sorted(self.profiles)

    def get(self, name: str) -> Guard:
        """The Guard of policy ``name`` (built on first use; ConfigError if not configured)."""
        guard = self._guards.get(name)
        if guard is not None:
            return guard
        if name not in self.profiles:
            raise ConfigError(
                f"policy {name!r} is not served by this gateway (configured: "
                f"{', '.join(self.names())})"
            )
        with self._lock:
            if name not in self._guards:
                policy = load_policy(self.profiles[name])
                self._guards[name] = Guard(
                    policy,
                    self._shared_detectors(),
                    prompt_analyser=self._analyser(policy),
                    watermark=self.watermark,
                )
                log.info("guard ready", extra={"policy": name, "policy_id": policy.policy_id})
            return self._guards[name]

    def _shared_detectors(self) -> list[ImageDetector]:
        if self._detectors is None:
            threads = self.threads or max(1, (os.cpu_count() or 1) // max(1, len(self.backends)))
            self._detectors = [create_detector(b, threads=threads) for b in self.backends]
            # Registered faces (`genguard persons add NAME --photo`) are matched here too.
            from genguard.faces.registry import face_detectors

            self._detectors += face_detectors(self.backends, self.store)
        return self._detectors

    def _analyser(self, policy: Policy) -> Any:
        """One prompt analyser per (semantic, max_chars), with the store's protected persons.

        Policies that agree on those settings share the lexicons and the MiniLM model;
        persons added with ``genguard persons add`` are read at start-up.
        """
        key = (policy.prompt.semantic, policy.prompt.max_chars)
        if key not in self._analysers:
            try:
                from genguard.text.analyser import PromptAnalyser
                from genguard.text.persons import PersonRegistry
            except ImportError:  # prompt safety not installed: Guard reports it on use
                return None
            if self._persons is None and self.store is not None:
                self._persons = PersonRegistry.from_store(self.store)
            self._analysers[key] = PromptAnalyser(
                semantic=policy.prompt.semantic,
                max_chars=policy.prompt.max_chars,
                persons=self._persons,
            )
        return self._analysers[key]

    def warm_up(self, name: str) -> None:
        """Build ``name``'s Guard and run it once, so models load before the first request."""
        guard = self.get(name)
        guard.check_image(np.full((64, 64, 3), 128, dtype=np.uint8))


class JobAbandoned(Exception):
    """Raised in a worker when its request already answered 504: discard the results."""


class _Job:
    """One request's work, which either commits its results or is abandoned, never both.

    The timeout fires on the event loop while the work goes on in a thread (Python cannot
    kill it). Without this handshake, work that finishes after its client got a 504 would
    still write audit rows for images nobody received.
    """

    def __init__(self, job_id: str = "") -> None:
        self._lock = threading.Lock()
        self._state = "running"
        self.job_id = job_id

    def commit(self) -> bool:
        """Claim the right to write results; False if the request was abandoned."""
        with self._lock:
            if self._state == "abandoned":
                return False
            self._state = "committing"
            return True

    def abandon(self) -> bool:
        """Give up on the work (504); False if it is already committing its results."""
        with self._lock:
            if self._state == "committing":
                return False
            self._state = "abandoned"
            return True

    def execute(self, fn: Callable[..., T], *args: Any) -> T:
        if self._state == "abandoned":  # timed out while waiting for a worker: skip it
            raise JobAbandoned
        token = _current_job.set(self)
        try:
            with cancellable(self.abandoned):
                return fn(*args)
        except Cancelled:
            log.info(
                "work stopped after its 504; results discarded", extra={"request_id": self.job_id}
            )
            raise JobAbandoned from None
        finally:
            _current_job.reset(token)

    def abandoned(self) -> bool:
        """True once the request answered 504: decoding and detection stop at a checkpoint."""
        return self._state == "abandoned"


_current_job: contextvars.ContextVar[_Job | None] = contextvars.ContextVar(
    "genguard_job", default=None
)


def commit_results(request_id: str = "") -> None:
    """Call right before writing a request's final results (JobAbandoned if it timed out).

    Outside a :class:`JobRunner` (direct calls, benchmarks) there is nothing to abandon.
    """
    job = _current_job.get()
    if job is not None and not job.commit():
        log.info("work finished after its 504; results discarded", extra={"request_id": request_id})
        raise JobAbandoned


def _retrieve(future: asyncio.Future[Any]) -> None:
    """Mark an abandoned job's outcome as seen (no "exception never retrieved" noise)."""
    if not future.cancelled():
        future.exception()


class FairQueue:
    """Jobs waiting for a worker, served round-robin across tenants (API keys).

    Why: with one first-in-first-out line, a key that sends 100 requests at once (within
    its rate) or a stream of slow uploads makes every other key's requests wait behind
    them. Taking the next job from the next tenant in turn bounds what one key's backlog
    costs the others to one job each, whatever its length.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._queues: OrderedDict[str, deque[Callable[[], None]]] = OrderedDict()

    def put(self, tenant: str, task: Callable[[], None]) -> None:
        """Queue ``task``; a tenant with nothing waiting goes to the front of the line.

        A key that was idle is served before keys with a backlog (each of which was
        served at least once already), so light users see no queue behind heavy ones.
        """
        with self._lock:
            if tenant in self._queues:
                self._queues[tenant].append(task)
            else:
                self._queues[tenant] = deque([task])
                self._queues.move_to_end(tenant, last=False)

    def take(self) -> Callable[[], None] | None:
        """The oldest task of the tenant whose turn it is (None when nothing waits)."""
        with self._lock:
            if not self._queues:
                return None
            tenant, queue = next(iter(self._queues.items()))
            task = queue.popleft()
            del self._queues[tenant]
            if queue:  # still waiting: to the back of the line of tenants
                self._queues[tenant] = queue
            return task


class JobRunner:
    """Runs blocking functions on a bounded pool with a bounded queue and a timeout.

    Every ``run`` adds one task to a :class:`FairQueue` and one *slot* to the pool; a slot
    runs whichever task is next in fair order, so the pool stays bounded while the order
    of service is per tenant, not per arrival.
    """

    def __init__(
        self, workers: int, max_queue: int, timeout_s: float, metrics: GatewayMetrics
    ) -> None:
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="gg-job")
        self._queue = FairQueue()
        self._waiting: set[Future[Any]] = set()
        self.capacity = workers + max_queue
        self.timeout_s = timeout_s
        self.metrics = metrics
        self._pending = 0

    def _slot(self) -> None:
        task = self._queue.take()
        if task is not None:
            task()

    def _submit(self, tenant: str, fn: Callable[..., T], *args: Any) -> Future[T]:
        """A future for ``fn(*args)``, run by the next free worker in fair order."""
        result: Future[T] = Future()

        def task() -> None:
            if not result.set_running_or_notify_cancel():
                return
            try:
                result.set_result(fn(*args))
            except BaseException as exc:  # handed to the awaiting request, not lost
                result.set_exception(exc)

        self._queue.put(tenant, task)
        self._waiting.add(result)
        result.add_done_callback(self._waiting.discard)
        self._executor.submit(self._slot)
        return result

    async def run(self, fn: Callable[..., T], *args: Any, job_id: str = "", tenant: str = "") -> T:
        """Run ``fn(*args)`` off the event loop; 503 when full, 504 past the timeout.

        ``job_id`` (the request id) names the work in the log when it is abandoned;
        ``tenant`` (the API key's name) is the unit of fair service.
        """
        if self._pending >= self.capacity:
            raise ApiError(
                503, "busy", "the gateway is at capacity; retry shortly", {"Retry-After": "1"}
            )
        self._pending += 1
        self.metrics.in_flight.inc()
        job = _Job(job_id)
        try:
            future = asyncio.wrap_future(self._submit(tenant, job.execute, fn, *args))
            future.add_done_callback(_retrieve)
            try:
                return await asyncio.wait_for(asyncio.shield(future), self.timeout_s)
            except TimeoutError:
                if job.abandon():
                    raise ApiError(
                        504, "timeout", f"the request took longer than {self.timeout_s:g} s"
                    ) from None
                return await future  # already writing its results: answer with them
        finally:
            self._pending -= 1
            self.metrics.in_flight.dec()

    def shutdown(self) -> None:
        """Finish running jobs; jobs never started are cancelled (their requests end)."""
        self._executor.shutdown(wait=True, cancel_futures=True)
        for result in list(self._waiting):
            result.cancel()


class GeneratorService:
    """The configured generator backend, created on first use, with bounded concurrency."""

    def __init__(self, section: GeneratorSection, generator: ImageGenerator | None = None) -> None:
        self.section = section
        self._generator = generator
        self._lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(section.concurrency)

    @property
    def generator(self) -> ImageGenerator:
        with self._lock:
            if self._generator is None:
                self._generator = create_generator(
                    self.section.backend, self.section.model, self.section.options
                )
            return self._generator

    def generate(self, prompt: str, seed: int, settings: GenerationSettings) -> Image.Image:
        """One image; backend failures that are not genguard errors become GeneratorError."""
        generator = self.generator
        with self._slots:
            try:
                return generator.generate(prompt, seed, settings)
            except GenguardError:
                raise
            except Exception as exc:  # a backend's own failure: report it, keep serving
                log.exception("generator failed")
                raise GeneratorError(
                    f"generator {self.section.backend} failed ({type(exc).__name__}); "
                    "the gateway log has the details"
                ) from exc

    def close(self) -> None:
        if self._generator is not None:
            self._generator.close()


def watermark_settings(section: WatermarkSection) -> WatermarkSettings | None:
    """The gateway's watermark, or None when disabled or the provenance module is absent."""
    if not section.enabled:
        log.info("watermarking off (watermark.enabled = false)")
        return None
    try:
        return WatermarkSettings.from_payload(section.payload, section.key, section.strength)
    except ImportError as exc:
        log.warning("watermarking off: genguard.provenance.watermark unavailable (%s)", exc)
        return None
