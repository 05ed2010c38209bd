"""benchmarks/harness.py: the median of several runs of a benchmark's metrics."""

from __future__ import annotations

import pytest
from benchmarks.harness import Metric, median_of


def run(rate: float | None, cpu: float, note: str) -> list[Metric]:
    return [Metric("steps_per_s", rate, "steps/s", note=note),
            Metric("cpu_ms_per_step", cpu, "ms", target=4.0, better="lower")]


def test_each_metric_is_the_median_of_its_runs_with_every_runs_value() -> None:
    merged = median_of([run(190.0, 5.1, "tenths a"), run(210.0, 4.2, "tenths b"),
                        run(150.0, 3.9, "tenths c")])
    assert merged == [
        Metric("steps_per_s", 190.0, "steps/s", note="median of 3 runs (190, 210, 150); tenths a"),
        Metric("cpu_ms_per_step", 4.2, "ms", target=4.0, better="lower",
               note="median of 3 runs (5.1, 4.2, 3.9)"),
    ]
    assert merged[1].passed is False


def test_an_even_number_of_runs_gives_a_measured_value_and_a_lone_run_is_unchanged() -> None:
    merged = median_of([run(100.0, 4.0, ""), run(300.0, 2.0, "")])
    assert [m.value for m in merged] == [100.0, 2.0]
    single = run(None, 1.0, "could not measure")
    assert median_of([single]) == single


def test_values_that_could_not_be_measured_are_left_out_of_the_median() -> None:
    merged = median_of([run(None, 4.0, "x"), run(120.0, 4.0, "y")])
    assert merged[0].value == 120.0
    assert merged[0].note == "median of 2 runs (120); y"


def test_runs_of_different_metrics_are_refused() -> None:
    other = [Metric("claims", 1.0, "ms"), Metric("cpu_ms_per_step", 1.0, "ms")]
    with pytest.raises(ValueError, match="different metrics"):
        median_of([run(1.0, 1.0, ""), other])
