"""How many websocket frames each user may send per minute, counted in this process.

Stops are counted apart (`stop_limiter`), with the same limit: a flood of other frames never
refuses the stop of an answer, and a flood of stops never refuses anything else.
"""

import time
from collections import defaultdict, deque

WINDOW_SECONDS = 60.0


class FrameRateLimiter:
    def __init__(self) -> None:
        self._sent: dict[int, deque[float]] = defaultdict(deque)

    def allow(self, user_id: int, per_minute: int) -> bool:
        """Record a frame; False once the user has sent `per_minute` in the last minute."""
        now = time.monotonic()
        sent = self._sent[user_id]
        while sent and sent[0] <= now - WINDOW_SECONDS:
            sent.popleft()
        if len(sent) >= per_minute:
            return False
        sent.append(now)
        return True

    def reset(self) -> None:
        self._sent.clear()


frame_limiter = FrameRateLimiter()
stop_limiter = FrameRateLimiter()
