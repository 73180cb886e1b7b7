"""Connection limits: per IP, per site and per process, counted in this process.

A connection over a limit is closed with `CLOSE_RATE_LIMITED` (4429) right after the handshake.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field


@dataclass
class ConnectionLimits:
    per_ip: int = 50
    per_site: int = 10_000
    per_process: int = 20_000
    _ips: Counter[str] = field(default_factory=Counter)
    _sites: Counter[str] = field(default_factory=Counter)
    total: int = 0
    refused: int = 0

    def acquire(self, ip: str | None, site_id: str | None) -> bool:
        ip_key, site_key = ip or "?", site_id or "?"
        if (
            self.total >= self.per_process
            or self._ips[ip_key] >= self.per_ip
            or self._sites[site_key] >= self.per_site
        ):
            self.refused += 1
            return False
        self.total += 1
        self._ips[ip_key] += 1
        self._sites[site_key] += 1
        return True

    def release(self, ip: str | None, site_id: str | None) -> None:
        ip_key, site_key = ip or "?", site_id or "?"
        self.total -= 1
        for counter, key in ((self._ips, ip_key), (self._sites, site_key)):
            counter[key] -= 1
            if counter[key] <= 0:
                del counter[key]
