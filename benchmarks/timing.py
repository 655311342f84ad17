"""What every benchmark here shares: interleaved timing, the machine description, the printed table and JSON.

Benchmarks run as scripts (`python benchmarks/NAME.py`), so this module is imported by its bare name.
"""

import json
import platform
import statistics
import time

import torch

__all__ = ["interleaved_medians", "machine", "report"]


def interleaved_medians(functions: dict, repeats: int, warmup: int = 1) -> dict:
    """Median seconds of each function, timed in alternating rounds so machine drift hits all of them alike."""
    for fn in functions.values():
        for _ in range(warmup):
            fn()
    times = {name: [] for name in functions}
    for _ in range(repeats):
        for name, fn in functions.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def machine() -> str:
    """Architecture, the CPU's vendor family/model (hosts of one machine type differ: ratios move with the CPU's
    balance of memory bandwidth and FLOPs), threads and torch."""
    return f"{platform.machine()}{cpu_model()}, {torch.get_num_threads()} threads, torch {torch.__version__}"


def cpu_model() -> str:
    """` (vendor family F model M)` from /proc/cpuinfo (e.g. AMD family 25 model 17: Zen 4), or "" elsewhere."""
    fields = {}
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if not line.strip():
                    break  # the first processor's block is enough
                key, _, value = line.partition(":")
                fields[key.strip()] = value.strip()
    except OSError:
        return ""
    if "cpu family" not in fields:
        return ""
    return f" ({fields.get('vendor_id', '?')} family {fields['cpu family']} model {fields.get('model', '?')})"


def report(results: dict, json_path: str | None = None) -> None:
    """Print `results` as an aligned table and write them as JSON when a path is given."""
    width = max(map(len, results))
    for key, value in results.items():
        print(f"{key:<{width}}  {value:.4f}" if isinstance(value, float) else f"{key:<{width}}  {value}")
    if json_path:
        with open(json_path, "w") as handle:
            json.dump(results, handle, indent=2)
