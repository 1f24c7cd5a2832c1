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
        time.sleep(0.2)
        seconds, attempts = read_clock(tmp_path)
    assert attempts == 1 and 0.1 <= seconds <= 0.2


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
