"""How fast the dashboard lets anyone guess passwords.

Every password check (HTTP Basic, the login form) runs scrypt, which costs a few hundred
milliseconds of CPU and 64 MiB on purpose. Two limits keep guessing slow and a flood from
eating the machine, and both are decided *before* scrypt runs, on the event loop, so a
burst of parallel requests is judged one by one and cannot outrun them:

- a token bucket per client address and one per user name: :data:`BURST` checks at once,
  then one more every :data:`REFILL_S` seconds; a correct password gives its token back,
  so only wrong guesses use a bucket up. A refused check is answered 429 with
  ``Retry-After`` (at most :data:`REFILL_S` seconds once the guessing stops).
- at most :data:`CONCURRENT` scrypt checks run at a time and :data:`WAITING` more wait;
  beyond that a check is refused at once (429, ``Retry-After: 1``), whatever its source.

Sessions, API tokens and HTTP Basic credentials that already passed are never throttled:
they need no scrypt.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import OrderedDict
from collections.abc import Callable

#: Checks a client address, or a user name, may start at once.
BURST = 10
#: Seconds after which a used check comes back (6 s: 10 guesses a minute, sustained).
REFILL_S = 6.0
#: scrypt checks running at once (each takes one core and 64 MiB), and waiting for one.
CONCURRENT = 1
WAITING = 8
#: Buckets kept per kind (client, user); full ones go first, then the least recently used.
MAX_KEYS = 10_000


class ThrottledError(Exception):
    """A password check refused before it ran.

    Args:
        retry_after: Whole seconds until a check may succeed (``Retry-After``).
        why: What was exceeded, for the answer.
    """

    def __init__(self, retry_after: float, why: str) -> None:
        self.retry_after = max(1, math.ceil(retry_after))
        self.why = why
        super().__init__(f"too many login attempts {why}: try again in "
                         f"{self.retry_after} s")


class Buckets:
    """A token bucket per key.

    Args:
        burst: Tokens a bucket holds (and starts with).
        refill_s: Seconds to earn one token back.
        clock: Monotonic seconds.
        max_keys: Buckets kept at most.
    """

    def __init__(self, burst: int = BURST, refill_s: float = REFILL_S,
                 clock: Callable[[], float] = time.monotonic, max_keys: int = MAX_KEYS) -> None:
        if burst < 1 or refill_s <= 0:
            raise ValueError(f"a bucket needs burst >= 1 and refill_s > 0, got {burst}, "
                             f"{refill_s}")
        self.burst, self.refill_s, self.clock, self.max_keys = burst, refill_s, clock, max_keys
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # key -> (tokens, at)

    def _tokens(self, key: str, now: float) -> float:
        tokens, at = self._buckets.get(key, (float(self.burst), now))
        return min(float(self.burst), tokens + (now - at) / self.refill_s)

    def wait(self, key: str) -> float:
        """Seconds until ``key`` has a token (0: it has one now)."""
        now = self.clock()
        return max(0.0, (1.0 - self._tokens(key, now)) * self.refill_s)

    def take(self, key: str) -> None:
        """Use one token of ``key`` (call after :meth:`wait` said 0)."""
        now = self.clock()
        self._buckets[key] = (self._tokens(key, now) - 1.0, now)
        self._buckets.move_to_end(key)
        self._trim(now)

    def give_back(self, key: str) -> None:
        """Return a token (a check that passed, or never ran)."""
        if key in self._buckets:
            now = self.clock()
            self._buckets[key] = (min(float(self.burst), self._tokens(key, now) + 1.0), now)

    def _trim(self, now: float) -> None:
        if len(self._buckets) <= self.max_keys:
            return
        for key in [k for k in self._buckets if self._tokens(k, now) >= self.burst]:
            del self._buckets[key]
        while len(self._buckets) > self.max_keys:
            self._buckets.popitem(last=False)


class LoginLimiter:
    """The limits on password checks (see the module's docstring).

    Args:
        burst: Checks a client or user name may start at once.
        refill_s: Seconds after which a used check comes back.
        concurrent: scrypt checks running at once.
        waiting: scrypt checks waiting at most.
    """

    def __init__(self, burst: int = BURST, refill_s: float = REFILL_S,
                 concurrent: int = CONCURRENT, waiting: int = WAITING) -> None:
        self.clients = Buckets(burst, refill_s)
        self.users = Buckets(burst, refill_s)
        self.waiting = waiting
        self._slots = asyncio.Semaphore(concurrent)
        self._queued = 0
        #: Password checks let through (each ran scrypt once), and refused.
        self.checks = 0
        self.refused = 0

    async def run(self, client: str, user: str, check: Callable[[], bool]) -> bool:
        """Run ``check`` (a password check of ``user`` from ``client``, in a worker
        thread) if the limits allow it now; its answer.

        Raises:
            ThrottledError: Before ``check`` ran, when either bucket is empty or too many
                checks wait already.
        """
        client_key, user_key = f"client:{client}", f"user:{user}"
        client_wait, user_wait = self.clients.wait(client_key), self.users.wait(user_key)
        if client_wait > 0 or user_wait > 0:
            self.refused += 1
            raise ThrottledError(max(client_wait, user_wait), "from this address"
                            if client_wait > 0 else f"for user {user!r}")
        if self._queued >= self.waiting:
            self.refused += 1
            raise ThrottledError(1, "at once on this dashboard")
        # decided and taken with no await in between: parallel requests queue up here
        self.clients.take(client_key)
        self.users.take(user_key)
        ok, running = None, False
        self._queued += 1
        try:
            async with self._slots:
                self._queued -= 1
                running = True
                self.checks += 1
                ok = await asyncio.to_thread(check)
            return ok
        finally:
            if not running:
                self._queued -= 1
            if ok is not False:   # passed, or never judged (cancelled, an error)
                self.clients.give_back(client_key)
                self.users.give_back(user_key)
