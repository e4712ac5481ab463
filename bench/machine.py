"""What the machine was doing while a part was measured: the load average (as `uptime` prints it) at the start
and the end, printed beside every figure because this 2-core machine is shared with other work."""
from __future__ import annotations

import os
import resource


def load_average() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f}, {five:.2f}, {fifteen:.2f} on {os.cpu_count()} CPUs"


def load_span(before: str) -> str:
    """`before` (taken at the start) and the load now."""
    return f"{before} at the start, {load_average().removeprefix('load average ')} at the end"


def cpu_seconds() -> float:
    """CPU time (user + system) of this process and of the children it has waited for, so far."""
    me, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + children.ru_utime + children.ru_stime
