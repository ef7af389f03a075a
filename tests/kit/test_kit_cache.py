"""The stamped cache behind the compiled rules, the active challenges and the reward
catalogue: served as it is until it expires, then rebuilt only when its stamp changed."""

from __future__ import annotations

import threading
from typing import Any

from treu.kit.cache import StampedCache


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Source:
    """What a value is built from, with counts of the stamp reads and the builds."""

    def __init__(self) -> None:
        self.version = 1
        self.stamps = 0
        self.builds: list[Any] = []

    def stamp(self) -> int:
        self.stamps += 1
        return self.version

    def build(self, stamp: Any) -> str:
        self.builds.append(stamp)
        return f"built from v{self.version}"


def test_a_fresh_entry_is_served_without_reading_the_stamp() -> None:
    clock, src = Clock(), Source()
    cache: StampedCache[str, str] = StampedCache(5, clock=clock)
    assert cache.get("p", stamp=src.stamp, build=src.build) == "built from v1"
    clock.now += 4.9
    assert cache.get("p", stamp=src.stamp, build=src.build) == "built from v1"
    assert (src.stamps, src.builds) == (1, [1])


def test_an_expired_entry_is_kept_while_its_stamp_is_the_same() -> None:
    clock, src = Clock(), Source()
    cache: StampedCache[str, str] = StampedCache(5, clock=clock)
    cache.get("p", stamp=src.stamp, build=src.build)
    clock.now += 5
    assert cache.get("p", stamp=src.stamp, build=src.build) == "built from v1"
    assert (src.stamps, src.builds) == (2, [1])
    clock.now += 4  # the check renewed the entry: no stamp read for another 5 s
    cache.get("p", stamp=src.stamp, build=src.build)
    assert src.stamps == 2


def test_a_changed_stamp_rebuilds_and_the_build_gets_the_stamp() -> None:
    clock, src = Clock(), Source()
    cache: StampedCache[str, str] = StampedCache(5, clock=clock)
    cache.get("p", stamp=src.stamp, build=src.build)
    src.version = 2
    assert cache.get("p", stamp=src.stamp, build=src.build) == "built from v1"  # not yet
    clock.now += 6
    assert cache.get("p", stamp=src.stamp, build=src.build) == "built from v2"
    assert src.builds == [1, 2]


def test_invalidate_is_seen_at_once_and_keys_are_apart() -> None:
    clock, src = Clock(), Source()
    cache: StampedCache[str, str] = StampedCache(5, clock=clock)
    cache.get("p", stamp=src.stamp, build=src.build)
    cache.get("q", stamp=src.stamp, build=src.build)
    src.version = 3
    cache.invalidate("p")
    assert "p" not in cache
    assert cache.get("p", stamp=src.stamp, build=src.build) == "built from v3"
    assert cache.get("q", stamp=src.stamp, build=src.build) == "built from v1"


def test_another_token_checks_the_stamp_before_the_entry_expires() -> None:
    clock, src = Clock(), Source()
    cache: StampedCache[str, str] = StampedCache(5, clock=clock)
    cache.get("p", stamp=src.stamp, build=src.build, token=7)
    cache.get("p", stamp=src.stamp, build=src.build, token=8)
    assert (src.stamps, src.builds) == (2, [1])  # checked at once, stamp unchanged: kept
    cache.get("p", stamp=src.stamp, build=src.build, token=8)
    assert src.stamps == 2  # the entry now carries the new token
    src.version = 2
    assert cache.get("p", stamp=src.stamp, build=src.build, token=9) == "built from v2"


def test_without_a_stamp_the_value_is_rebuilt_when_it_expires() -> None:
    clock = Clock()
    built: list[Any] = []
    cache: StampedCache[str, int] = StampedCache(5, clock=clock)

    def build(stamp: Any) -> int:
        built.append(stamp)
        return len(built)

    assert cache.get("p", build=build) == 1
    assert cache.get("p", build=build) == 1
    clock.now += 5
    assert cache.get("p", build=build) == 2
    assert built == [None, None]


def test_concurrent_readers_see_whole_values() -> None:
    clock, src = Clock(), Source()
    cache: StampedCache[int, str] = StampedCache(0, clock=clock)  # every read checks
    seen: list[str] = []

    def read() -> None:
        for _ in range(200):
            seen.append(cache.get(1, stamp=src.stamp, build=src.build))

    threads = [threading.Thread(target=read) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert set(seen) == {"built from v1"}
    assert len(seen) == 800
