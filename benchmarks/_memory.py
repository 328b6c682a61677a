"""Process memory figures the benchmark workers print, read from ``/proc/self`` (Linux): they see
torch's and numpy's allocations, which tracemalloc does not."""

from __future__ import annotations


def rss_kib(field: str) -> int:
    """``field`` of ``/proc/self/status`` (``VmRSS`` now, ``VmHWM`` its peak) in KiB."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def reset_peak_rss() -> None:
    """Reset ``VmHWM`` to the current RSS, so that a later peak is the measured call's."""
    with open("/proc/self/clear_refs", "w") as refs:
        refs.write("5")
