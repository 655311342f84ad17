"""How many samples reached training and how many were skipped, by reason, counted where it happens and carried
with the data to the trainer's logs.

Samples are read in DataLoader worker processes and on several ranks, and a count kept in a worker dies with it.
So the counts travel with the data: every sample a source yields carries, in its `skipped` field (`SKIPPED_FIELD`,
a JSON object reason -> count, `foveated_vlm.data.faults.SampleFailures.stamp`), the records its stream skipped since
the sample before; `SkippingCollator(report_counts=True)` adds those, and the samples it had to drop itself, into
the batch's `sample_counts` (`SAMPLE_COUNTS_KEY`); and `FoveatedTrainer` pops them, sums them, gathers them over
ranks when it logs and logs the running totals as `data/succeeded`, `data/success_rate` and `data/skipped_<reason>`.

`succeeded` counts samples that reached a batch; skips count what a source could not turn into a sample (a row, a
record, a shard) and samples that failed while batching. A stream's skips after its last sample reach no batch:
they are in the summary each stream prints when it ends.
"""

import json
import re
from collections import Counter
from dataclasses import dataclass, field

__all__ = ["NoSamplesError", "SAMPLE_COUNTS_KEY", "SKIPPED_FIELD", "SampleCounts", "reason_of", "summary_line"]

SKIPPED_FIELD = "skipped"  # a sample's field: JSON {reason: count} of what its stream skipped since the sample before
SAMPLE_COUNTS_KEY = "sample_counts"  # a batch's key: {"succeeded": n, "skipped": {reason: count}}


class NoSamplesError(RuntimeError):
    """Raised when data produced nothing but failures: a stream, a whole batch, or a training run."""


def summary_line(succeeded: int, skipped: Counter) -> str:
    """'3/5 succeeded (60.0%); skipped: decode 1, missing_file 1' (most frequent reason first)."""
    attempted = succeeded + sum(skipped.values())
    rate = succeeded / attempted if attempted else 0.0
    reasons = ", ".join(f"{reason} {count}" for reason, count in skipped.most_common())
    return f"{succeeded}/{attempted} succeeded ({rate:.1%}); skipped: {reasons or 'none'}"


def reason_of(error: Exception, prefix: str) -> str:
    """A skip reason from an exception's class: `prefix` + snake case (ValueError -> 'collate_value_error')."""
    return prefix + re.sub(r"(?<!^)(?=[A-Z])", "_", type(error).__name__).lower()


@dataclass
class SampleCounts:
    """Samples that succeeded and skips by reason, summed from batches' `sample_counts` and samples' stamps."""

    succeeded: int = 0
    skipped: Counter = field(default_factory=Counter)

    def add(self, counts: dict | None) -> "SampleCounts":
        """Add counts as `as_dict` gives them (a batch's `sample_counts`); None adds nothing. Returns self."""
        if counts is not None:
            self.succeeded += int(counts.get("succeeded", 0))
            self.skipped.update({reason: int(count) for reason, count in counts.get("skipped", {}).items()})
        return self

    def add_stamp(self, stamp: str | None) -> "SampleCounts":
        """Add the skips a sample carries (its `skipped` field, JSON reason -> count); None adds nothing."""
        return self.add(None if stamp is None else {"skipped": json.loads(stamp)})

    @property
    def attempted(self) -> int:
        return self.succeeded + sum(self.skipped.values())

    @property
    def success_rate(self) -> float:
        return self.succeeded / self.attempted if self.attempted else 0.0

    def __bool__(self) -> bool:
        return self.attempted > 0

    def as_dict(self) -> dict:
        return {"succeeded": self.succeeded, "skipped": dict(self.skipped)}

    def report(self) -> dict:
        """What `metrics.json` holds under `data`: the counts and the success rate."""
        return {**self.as_dict(), "success_rate": self.success_rate}

    def log_metrics(self, prefix: str = "data/") -> dict[str, float]:
        """Flat scalars for the Trainer's logs (TensorBoard): succeeded, success_rate and skipped_<reason>."""
        metrics = {f"{prefix}succeeded": self.succeeded, f"{prefix}success_rate": self.success_rate}
        metrics.update({f"{prefix}skipped_{reason}": count for reason, count in sorted(self.skipped.items())})
        return metrics

    def summary(self) -> str:
        return summary_line(self.succeeded, self.skipped)
