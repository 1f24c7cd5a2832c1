import json
import time

import pytest

from qla_sdk.recipe.clock import CLOCK, StageClock, read_clock


def test_attempts_add_up(tmp_path):
    with StageClock(tmp_path) as first:
        time.sleep(0.05)
    with StageClock(tmp_path) as second:
        time.sleep(0.05)
    assert second.attempts == 2
    assert second.seconds >= first.seconds + 0.05
    assert read_clock(tmp_path) == (pytest.approx(second.seconds, abs=1e-3), 2)


def test_the_time_so_far_is_on_disk_while_the_stage_runs(tmp_path):
    # A process killed without warning cannot write at its end: what it ran must already be there.
    with StageClock(tmp_path, every_s=0.02):
        started = time.perf_counter()
        time.sleep(0.2)
        seconds, attempts = read_clock(tmp_path)
        elapsed = time.perf_counter() - started
    assert attempts == 1 and 0.1 <= seconds <= elapsed + 0.01  # the last write at most one interval before


def test_an_error_still_counts(tmp_path):
    with pytest.raises(KeyboardInterrupt), StageClock(tmp_path):
        time.sleep(0.02)
        raise KeyboardInterrupt
    seconds, attempts = read_clock(tmp_path)
    assert attempts == 1 and seconds >= 0.02


def test_an_unreadable_clock_warns_and_starts_over(tmp_path):
    (tmp_path / CLOCK).write_text("{half")
    with pytest.warns(UserWarning, match="earlier attempts are left out"), StageClock(tmp_path) as clock:
        pass
    assert clock.attempts == 1 and json.loads((tmp_path / CLOCK).read_text())["attempts"] == 1


def test_a_bad_interval(tmp_path):
    with pytest.raises(ValueError, match="every_s=0"):
        StageClock(tmp_path, every_s=0)


def test_a_clock_times_one_attempt(tmp_path):
    clock = StageClock(tmp_path)
    with clock:
        pass
    with pytest.raises(RuntimeError, match="make a new one"), clock:
        pass


def test_a_clock_that_cannot_write_warns_and_the_stage_goes_on(tmp_path):
    folder = tmp_path / "stage"
    folder.write_text("a file where the stage folder should be")  # every write fails
    with pytest.warns(UserWarning, match="cannot write"), StageClock(folder) as clock:
        result = "stage done"
    assert result == "stage done" and clock.attempts == 1 and clock.seconds >= 0
