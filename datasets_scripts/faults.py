"""Bad samples in a stream are skipped and counted, never fatal: only a stream where nothing succeeds fails.

Every source (`webvid`, `llava_video`, `folder`) wraps the work of turning one record into a sample in
`SampleFailures.attempt`, which returns the sample or None and counts the failure under a short reason
("http_404", "timeout", "decode", "missing_file", "bad_annotation", ...). `check` raises once `give_up_after`
records in a row have failed with no success at all, so a dead URL list or a wrong folder is a clear error
instead of a silent, endless loop.
"""

import logging
from collections import Counter

__all__ = ["NoSamplesError", "SampleFailures"]

logger = logging.getLogger(__name__)


class NoSamplesError(RuntimeError):
    """Raised when a stream has produced nothing but failures."""


class SampleFailures:
    """Counts successes and failures by reason for one stream.

    Args:
        source: the stream's name, for messages.
        give_up_after: consecutive failures, before the first success, that end the stream with `NoSamplesError`.
        log_every: log a summary every this many failures.
    """

    def __init__(self, source: str, give_up_after: int = 100, log_every: int = 50):
        self.source = source
        self.give_up_after = give_up_after
        self.log_every = log_every
        self.succeeded = 0
        self.failed = Counter()

    @property
    def attempted(self) -> int:
        return self.succeeded + sum(self.failed.values())

    @property
    def success_rate(self) -> float:
        return self.succeeded / self.attempted if self.attempted else 0.0

    def attempt(self, record_id: str, work, classify=None):
        """Run `work()`; return its result, or None after counting the failure under `classify(error)`."""
        try:
            result = work()
        except Exception as error:  # noqa: BLE001 - a bad sample must never end the run
            reason = classify(error) if classify else type(error).__name__
            self.failed[reason] += 1
            logger.debug("%s: skipped %s (%s): %s", self.source, record_id, reason, error)
            total = sum(self.failed.values())
            if total % self.log_every == 0:
                logger.warning("%s: %s", self.source, self.summary())
            self.check()
            return None
        self.succeeded += 1
        return result

    def check(self):
        if self.succeeded == 0 and sum(self.failed.values()) >= self.give_up_after:
            raise NoSamplesError(f"{self.source}: no sample succeeded in {self.attempted} attempts ({self.summary()})")

    def summary(self) -> str:
        reasons = ", ".join(f"{reason} {count}" for reason, count in self.failed.most_common())
        return f"{self.succeeded}/{self.attempted} succeeded ({self.success_rate:.1%}); skipped: {reasons or 'none'}"

    def as_dict(self) -> dict:
        return {"succeeded": self.succeeded, "failed": dict(self.failed), "success_rate": self.success_rate}
