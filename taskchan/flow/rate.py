"""A rate limit, ``"100/s"``, ``"20/m"``, ``"500/h"``: parsed and checked, as the token bucket it is run as.

The bucket is shared by every worker on every host (``rate.lua`` on the
channel's home Redis).  It refills at the rate and holds at most a tenth of a
second's worth of tokens (at least one), so the starts in any window of T
seconds never exceed ``rate * T + capacity``: "10/s" lets at most 11 start in
any one second, "100/h" one every 36 s.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from ..exceptions import InvalidOption

PERIODS = {"s": 1, "m": 60, "h": 3600}
#: largest count in a rate string: beyond it a limit binds nothing a queue can do
MAX_COUNT = 1_000_000
_RATE = re.compile(r"([0-9]{1,7})/([smh])")


@dataclass(frozen=True, slots=True)
class RateLimit:
    count: int
    period: int  # seconds

    @property
    def per_second(self) -> float:
        return self.count / self.period

    @property
    def capacity(self) -> int:
        """Tokens the bucket holds at most: a tenth of a second's worth, at least one."""
        return max(1, math.ceil(self.per_second / 10))

    def __str__(self) -> str:
        unit = {v: k for k, v in PERIODS.items()}[self.period]
        return f"{self.count}/{unit}"


def parse_rate(value: object) -> RateLimit:
    """``"N/s"``, ``"N/m"`` or ``"N/h"`` with N from 1 to MAX_COUNT; InvalidOption otherwise."""
    match = _RATE.fullmatch(value) if isinstance(value, str) else None
    count = int(match.group(1)) if match else 0
    if not match or not 1 <= count <= MAX_COUNT:
        raise InvalidOption(
            f'rate_limit must be a string "N/s", "N/m" or "N/h" with N a whole number from 1 to '
            f"{MAX_COUNT:,} (e.g. \"100/s\"), got {value!r}"
        )
    return RateLimit(count, PERIODS[match.group(2)])
