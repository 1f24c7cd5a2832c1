"""timing.interleaved_latency: every callable warmed up, then timed in turn, round after round, the order rotated;
each gets its share of the runs and a median per round."""

import pytest

from qla_sdk.timing import interleaved_latency


def _recorder(calls: list[str]):
    return {name: (lambda name=name: calls.append(name)) for name in ("a", "b", "c")}


def test_the_callables_take_turns_round_after_round_with_the_order_rotated():
    calls: list[str] = []
    stats, medians = interleaved_latency(_recorder(calls), runs=4, warmup=2, rounds=3, round_warmup=0)
    warm, timed = calls[:6], calls[6:]
    assert warm == ["a", "a", "b", "b", "c", "c"]
    # 4 runs over 3 rounds: 2 calls each in the first round, then 1; the first name rotates
    assert timed == ["a", "a", "b", "b", "c", "c", "b", "c", "a", "c", "a", "b"]
    assert {name: s.runs for name, s in stats.items()} == {"a": 4, "b": 4, "c": 4}
    assert all(len(m) == 3 for m in medians.values())


def test_each_turn_starts_with_untimed_calls():
    """The first calls of a turn find the caches cold after another callable ran: only the later ones are timed."""
    import time

    calls: list[str] = []
    turn = {"a": 0, "b": 0}

    def make(name):
        def fn():
            calls.append(name)
            turn[name] += 1
            # slow right after the other one ran: far slower than a busy machine makes a no-op (the margin keeps
            # the test from failing beside a training job)
            time.sleep(0.2 if turn[name] == 1 else 0.0)

        return fn

    fns = {name: make(name) for name in ("a", "b")}

    def new_turns():
        turn.update(a=0, b=0)

    stats, _ = interleaved_latency(fns, runs=6, warmup=0, rounds=3, round_warmup=1, after_round=new_turns)
    assert len(calls) == 3 * 2 * (2 + 1)  # each turn: 1 untimed, 2 timed
    assert all(s.p99_ms < 100.0 for s in stats.values()), "a cold first call was timed"


def test_a_slow_spell_shows_in_its_round_only():
    """A callable that is slow only while round 2 runs: its median of that round stands out, the pooled median not."""
    import time

    rounds_seen = []
    fns = {"x": lambda: time.sleep(0.004 if len(rounds_seen) == 1 else 0.0)}
    stats, medians = interleaved_latency(
        fns, runs=6, warmup=0, rounds=3, round_warmup=0, after_round=lambda: rounds_seen.append(1)
    )
    assert len(rounds_seen) == 3
    assert medians["x"][1] > 3.0 > max(medians["x"][0], medians["x"][2])
    assert stats["x"].p50_ms < 3.0 < stats["x"].p99_ms


@pytest.mark.parametrize(
    "runs, warmup, rounds, round_warmup", [(2, 0, 3, 0), (5, 0, 0, 0), (5, -1, 1, 0), (5, 0, 1, -1)]
)
def test_counts_that_cannot_be_kept_are_refused(runs, warmup, rounds, round_warmup):
    with pytest.raises(ValueError, match=r"runs=|warmup="):
        interleaved_latency({"a": lambda: None}, runs, warmup, rounds, round_warmup)
