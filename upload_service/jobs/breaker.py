"""A circuit breaker: a worker stops calling a dependency that keeps answering "unavailable".

Closed, calls go through and consecutive "unavailable" answers are counted; at `threshold` the
breaker opens. Open, the worker sends the dependency no work at all (its jobs stay queued) and
instead runs a cheap probe (the classifier's health check) when one is due: the first after
`probe_base_s`, each further one twice as late, up to `probe_cap_s`, so a dependency that returns
is noticed within seconds and one that stays down costs one probe per cap. A passing probe closes
the breaker. The delay doubles with every probe since the last real success, so a dependency that
passes its health check but still refuses work (RESOURCE_EXHAUSTED) is tried less and less often.

A class of our own rather than a library (aiobreaker, purgatory): those wrap each call and fail it
while open, but here an open breaker must keep the jobs out of the claim instead, and must close on
a health probe rather than on a trial call. What is left is this state machine, and
`GuardedClassifier`, which reports each call's outcome to it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from upload_service.classifier.base import (
    Classification,
    Classifier,
    Content,
    DocumentToClassify,
)
from upload_service.errors import ClassifierError, ClassifierTimeout, ClassifierUnavailable

logger = logging.getLogger(__name__)

DEFAULT_THRESHOLD = 3
DEFAULT_PROBE_BASE_S = 0.25
DEFAULT_PROBE_CAP_S = 5.0


class CircuitBreaker:
    """Counts consecutive unavailability of one dependency; open means: do not call it."""

    def __init__(
        self,
        *,
        threshold: int = DEFAULT_THRESHOLD,
        probe_base_s: float = DEFAULT_PROBE_BASE_S,
        probe_cap_s: float = DEFAULT_PROBE_CAP_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._threshold = max(1, threshold)
        self._probe_base_s = probe_base_s
        self._probe_cap_s = probe_cap_s
        self._clock = clock
        self._failures = 0
        self._probes = 0
        self._probe_at: float | None = None
        self._opened_at: float | None = None
        self._opened = asyncio.Event()

    @property
    def threshold(self) -> int:
        """Consecutive unavailable calls that open the breaker."""
        return self._threshold

    @property
    def is_open(self) -> bool:
        """Whether calls are held back (until a probe passes)."""
        return self._probe_at is not None

    def record_success(self) -> None:
        """The dependency answered: the count and the probe delays start over.

        While open it changes nothing: a call that was in flight when the breaker opened is no
        reason to let the held-back jobs go; the probe that closes it also makes them due.
        """
        if self.is_open:
            return
        self._failures = 0
        self._probes = 0
        self._probe_at = None

    @property
    def open_for_s(self) -> float:
        """How long the breaker has been open; 0 while closed."""
        return 0.0 if self._opened_at is None else self._clock() - self._opened_at

    def record_unavailable(self) -> bool:
        """The dependency was unavailable for a call; True when this opened the breaker."""
        self._failures += 1
        if self.is_open or self._failures < self._threshold:
            return False
        self._opened_at = self._clock()
        self._schedule_probe()
        return True

    def probe_passed(self) -> None:
        """The probe found the dependency back: calls go through again."""
        self._failures = 0
        self._probe_at = None
        self._opened_at = None

    def probe_failed(self) -> None:
        """The probe found it still down: the next probe comes later."""
        self._schedule_probe()

    def seconds_to_probe(self) -> float | None:
        """How long until the next probe is due (0 when due now); None while closed."""
        if self._probe_at is None:
            return None
        return max(0.0, self._probe_at - self._clock())

    async def wait_for_probe(self) -> None:
        """Return once the breaker is open and its next probe is due."""
        while True:
            delay = self.seconds_to_probe()
            if delay is None:
                self._opened.clear()
                await self._opened.wait()
            elif delay > 0:
                # Re-checked after the sleep: a success may have closed it meanwhile.
                await asyncio.sleep(delay)
            else:
                return

    def _schedule_probe(self) -> None:
        delay = min(self._probe_cap_s, self._probe_base_s * 2.0 ** min(self._probes, 30))
        self._probes += 1
        self._probe_at = self._clock() + delay
        self._opened.set()


class GuardedClassifier:
    """A `Classifier` that tells its breaker how each call went: unavailable, or answered.

    A refusal or a crash on the document is an answer: the classifier is there. A failure of
    something else (storage, while streaming the content) says nothing about it either way.
    """

    def __init__(self, classifier: Classifier, breaker: CircuitBreaker) -> None:
        self._classifier = classifier
        self._breaker = breaker

    async def classify(self, doc: DocumentToClassify, content: Content) -> Classification:
        """Classify through the wrapped classifier, recording the outcome."""
        try:
            result = await self._classifier.classify(doc, content)
        except (ClassifierUnavailable, ClassifierTimeout):
            if self._breaker.record_unavailable():
                logger.warning(
                    "the classifier was unavailable %d times in a row: its jobs wait in the "
                    "queue until it passes a health check",
                    self._breaker.threshold,
                )
            raise
        except ClassifierError:
            self._breaker.record_success()
            raise
        self._breaker.record_success()
        return result

    async def check(self) -> None:
        """The wrapped classifier's health check."""
        await self._classifier.check()

    async def aclose(self) -> None:
        """Nothing of its own: the wrapped classifier belongs to whoever built it."""
