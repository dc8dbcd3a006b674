"""Random failures a fake answers, for chaos runs: each distinct request fails at most
`per_request` times, so the clients' own retries get through and every outcome stays checkable."""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field
from typing import TypeVar

T = TypeVar("T")


@dataclass
class Faults:
    rate: float
    """The chance that a request (one not failed `per_request` times yet) fails."""
    seed: int = 0
    per_request: int = 1
    injected: Counter[str] = field(default_factory=Counter)
    """What was answered so far, by kind ("429", "500", "529", "cut stream", ...)."""

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)
        self._struck: Counter[str] = Counter()

    def strike(self, key: str) -> bool:
        """Whether the request `key` names fails this time."""
        if self._struck[key] >= self.per_request or self._rng.random() >= self.rate:
            return False
        self._struck[key] += 1
        return True

    def pick(self, kinds: list[T]) -> T:
        kind = self._rng.choice(kinds)
        self.injected[str(kind)] += 1
        return kind
