"""What the machine was doing while a part was measured: the load average (as `uptime` prints it) at the start
and the end, printed beside every figure because this 2-core machine is shared with other work."""
from __future__ import annotations

import os


def load_average() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f}, {five:.2f}, {fifteen:.2f} on {os.cpu_count()} CPUs"


def load_span(before: str) -> str:
    """`before` (taken at the start) and the load now."""
    return f"{before} at the start, {load_average().removeprefix('load average ')} at the end"
