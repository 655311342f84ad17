"""Bad samples in a stream are skipped and counted, never fatal: only a stream where nothing succeeds fails.

Every source (`webvid`, `llava_video`, `folder`) wraps the work of turning one record into a sample in
`SampleFailures.attempt`, which returns the sample or None and counts the failure under a short reason
("http_404", "timeout", "decode", "missing_file", "bad_annotation", ...). `check` raises once `give_up_after`
records in a row have failed with no success at all, so a dead URL list or a wrong folder is a clear error
instead of a silent, endless loop.

The counts are meant to be seen: a summary (succeeded, success rate, skipped by reason) is logged at WARNING every
`log_every` failures and when a stream ends having skipped something (`report_end`). And since a stream runs in a
DataLoader worker whose counts die with it, each yielded sample carries the skips since the sample before
(`stamp`), which `foveated_vlm.training.data_collator.SkippingCollator` and `FoveatedTrainer` sum over workers and ranks
into the training logs (`foveated_vlm.data.sample_counts`).
"""

import json
import logging
from collections import Counter

from .sample_counts import SKIPPED_FIELD, NoSamplesError, SampleCounts

__all__ = ["NoSamplesError", "SampleFailures"]

logger = logging.getLogger(__name__)


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
        self.counts = SampleCounts()  # succeeded, and failures by reason (its `skipped`)
        self._unstamped = Counter()  # failures no yielded sample carries yet
        self._reported_failures = 0  # failures when a stream last reported its end

    @property
    def succeeded(self) -> int:
        return self.counts.succeeded

    @property
    def failed(self) -> Counter:
        return self.counts.skipped

    @property
    def attempted(self) -> int:
        return self.counts.attempted

    @property
    def success_rate(self) -> float:
        return self.counts.success_rate

    def attempt(self, record_id: str, work, classify=None):
        """Run `work()`; return its result, or None after counting the failure under `classify(error)`."""
        try:
            result = work()
        except Exception as error:  # noqa: BLE001 - a bad sample must never end the run
            reason = classify(error) if classify else type(error).__name__
            self.failed[reason] += 1
            self._unstamped[reason] += 1
            logger.debug("%s: skipped %s (%s): %s", self.source, record_id, reason, error)
            total = sum(self.failed.values())
            if total % self.log_every == 0:
                logger.warning("%s: %s", self.source, self.summary())
            self.check()
            return None
        self.counts.succeeded += 1
        return result

    def stamp(self, sample: dict) -> dict:
        """Set `sample["skipped"]` to the failures since the previous stamp (a JSON object reason -> count, "{}"
        when none) and return the sample: the counts travel with the data out of DataLoader workers."""
        sample[SKIPPED_FIELD] = json.dumps(self.take_unstamped())
        return sample

    def take_unstamped(self) -> dict:
        """The failures no sample carries yet (reason -> count), taken: after a stream's last sample, its tail."""
        taken = dict(self._unstamped)
        self._unstamped.clear()
        return taken

    def report_end(self, stream: str | None = None, log: logging.Logger = logger) -> None:
        """A stream (or one shard of it) ended: log the summary to `log` (the source's logger) at WARNING if it
        skipped anything since the last report, else at INFO. `stream` names it (default: the source)."""
        failures = sum(self.failed.values())
        level = logging.WARNING if failures > self._reported_failures else logging.INFO
        self._reported_failures = failures
        log.log(level, "%s: %s", stream or self.source, self.summary())

    def check(self):
        if self.succeeded == 0 and sum(self.failed.values()) >= self.give_up_after:
            raise NoSamplesError(f"{self.source}: no sample succeeded in {self.attempted} attempts ({self.summary()})")

    def summary(self) -> str:
        return self.counts.summary()

    def as_dict(self) -> dict:
        return {"succeeded": self.succeeded, "failed": dict(self.failed), "success_rate": self.success_rate}
