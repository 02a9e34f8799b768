"""Which path serves the next call: a sans-I/O core, fed outcomes with an explicit `now`.

The selector never touches a socket or an event loop. The client feeds it what happened
(a probe started or finished, a call failed because its path was unreachable, a call
succeeded) with the monotonic time, and asks it which path to use and when to probe next.

Rules:

- LAN first. The LAN (the hotel's gateway over gRPC) is used while it is known to answer.
  Before it has answered once (``UNKNOWN``) or after it stopped answering (``DOWN``), a LAN
  choice comes with ``probe_first``: the client probes it (a gRPC health check with a short
  deadline, :attr:`PathSelector.probe_timeout_s`) before sending a call there.
- A LAN call that fails ``Unreachable``, or a failed probe, switches to the cloud at once.
- While the LAN is down it is re-probed in the background with exponential back-off
  (``backoff_min_s`` doubling up to ``backoff_max_s``), each delay shortened by a random
  jitter fraction so many phones do not probe in step; once a probe answers the LAN is
  preferred again.
- The cloud failing ``Unreachable`` while the LAN is down schedules a LAN probe at once
  (the phone may have just joined the hotel's Wi-Fi).
- At most one probe is in flight: :meth:`PathSelector.probe_started` refuses a second one.
- With one path configured, that path is always chosen.
"""

from __future__ import annotations

import enum
import random
from dataclasses import dataclass

from bellhop_sdk.models import Path

__all__ = ["Choice", "LanState", "PathSelector", "Switch"]


class LanState(enum.Enum):
    UNKNOWN = "unknown"  # not probed yet
    UP = "up"  # the last probe or call over the LAN answered
    DOWN = "down"  # the last probe or call over the LAN found nobody


@dataclass(frozen=True, slots=True)
class Choice:
    """Where to send a call; with `probe_first` the LAN must answer a probe before."""

    path: Path
    probe_first: bool = False


@dataclass(frozen=True, slots=True)
class Switch:
    """The preferred path changed (what an event stream follows)."""

    old: Path
    new: Path


class PathSelector:
    """LAN-first path choice with back-off probing; see the module docstring."""

    def __init__(
        self,
        *,
        lan: bool,
        cloud: bool,
        probe_timeout_s: float = 0.3,
        backoff_min_s: float = 0.5,
        backoff_max_s: float = 30.0,
        jitter: float = 0.2,
        rng: random.Random | None = None,
    ) -> None:
        if not (lan or cloud):
            raise ValueError("configure the LAN, the cloud, or both")
        if not 0 < backoff_min_s <= backoff_max_s:
            raise ValueError("need 0 < backoff_min_s <= backoff_max_s")
        if not 0 <= jitter < 1:
            raise ValueError("jitter is a fraction in [0, 1)")
        self.has_lan = lan
        self.has_cloud = cloud
        self.probe_timeout_s = probe_timeout_s
        self.backoff_min_s = backoff_min_s
        self.backoff_max_s = backoff_max_s
        self.jitter = jitter
        self._rng = rng or random.Random()
        self.lan_state = LanState.UNKNOWN
        self.probing = False
        self._backoff_s = backoff_min_s
        # The first probe is due at once (LAN first); None = no probe wanted.
        self._next_probe_at: float | None = 0.0 if lan else None

    # -- what to do ---------------------------------------------------------------------

    @property
    def preferred(self) -> Path:
        """The path calls go to now (an event stream follows this one)."""
        if not self.has_cloud:
            return Path.LAN
        if not self.has_lan or self.lan_state is LanState.DOWN:
            return Path.CLOUD
        return Path.LAN

    def choose(self, exclude: frozenset[Path] = frozenset()) -> Choice | None:
        """The path for a call, skipping `exclude` (paths this call already found
        unreachable); None when no configured path is left."""
        order = [self.preferred, Path.CLOUD if self.preferred is Path.LAN else Path.LAN]
        for path in order:
            if path in exclude or not self._configured(path):
                continue
            if path is Path.LAN:
                return Choice(Path.LAN, probe_first=self.lan_state is not LanState.UP)
            return Choice(path)
        return None

    def next_probe_at(self) -> float | None:
        """When the background prober should probe the LAN (monotonic seconds), or None:
        no LAN, the LAN is up, or a probe is in flight."""
        if self.probing or not self.has_lan or self.lan_state is LanState.UP:
            return None
        return self._next_probe_at

    def probe_due(self, now: float) -> bool:
        due = self.next_probe_at()
        return due is not None and due <= now

    @property
    def backoff_s(self) -> float:
        """The back-off the next failed probe is measured from (for tests and metrics)."""
        return self._backoff_s

    # -- what happened ------------------------------------------------------------------

    def probe_started(self, now: float) -> bool:
        """A probe is about to be sent; False (send none) when one is already in flight."""
        if self.probing or not self.has_lan:
            return False
        self.probing = True
        return True

    def probe_finished(self, ok: bool, now: float) -> Switch | None:
        """The probe answered (`ok`) or not; returns the switch it caused, if any."""
        self.probing = False
        if ok:
            return self._lan_up()
        return self._lan_down(now)

    def call_succeeded(self, path: Path, now: float) -> Switch | None:
        """A call over `path` got an answer from its server (any answer but Unreachable)."""
        if path is Path.LAN and self.has_lan:
            return self._lan_up()
        return None

    def call_unreachable(self, path: Path, now: float) -> Switch | None:
        """A call over `path` found its server unreachable."""
        if path is Path.LAN and self.has_lan:
            if self.lan_state is LanState.DOWN:
                return None  # already known; its re-probe stays scheduled as it was
            return self._lan_down(now)
        if path is Path.CLOUD and self.has_lan and self.lan_state is not LanState.UP:
            # The phone may have walked into the hotel: look for the gateway right away.
            self._next_probe_at = now
        return None

    # -- internals ----------------------------------------------------------------------

    def _configured(self, path: Path) -> bool:
        return self.has_lan if path is Path.LAN else self.has_cloud

    def _lan_up(self) -> Switch | None:
        before = self.preferred
        self.lan_state = LanState.UP
        self._backoff_s = self.backoff_min_s
        self._next_probe_at = None
        return self._switch(before)

    def _lan_down(self, now: float) -> Switch | None:
        """The LAN did not answer. Already down (a failed re-probe): the back-off doubles;
        it was up or unknown: it starts again from the minimum."""
        before = self.preferred
        if self.lan_state is LanState.DOWN:
            self._backoff_s = min(self._backoff_s * 2, self.backoff_max_s)
        else:
            self._backoff_s = self.backoff_min_s
        self.lan_state = LanState.DOWN
        delay = self._backoff_s * (1 - self.jitter * self._rng.random())
        self._next_probe_at = now + delay
        return self._switch(before)

    def _switch(self, before: Path) -> Switch | None:
        after = self.preferred
        return Switch(before, after) if after is not before else None
