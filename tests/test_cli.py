"""`tritonfleet bench`: the benchmark scenarios of bench/, by name."""

from pathlib import Path

import pytest

from tritonfleet.cli import BENCH_SCENARIOS, main

REPOSITORY = Path(__file__).resolve().parents[1]


def test_every_bench_scenario_named_is_a_module_of_bench() -> None:
    assert all((REPOSITORY / "bench" / f"{name}.py").is_file() for name in BENCH_SCENARIOS)


def test_bench_hands_the_scenario_its_own_options(
    monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(REPOSITORY)
    assert main(["bench", "report", "--help"]) == 0
    assert "--results" in capfd.readouterr().out


def test_bench_outside_a_checkout_says_where_to_run_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["bench", "overhead"]) == 2
    assert "root of a TritonFleet checkout" in capsys.readouterr().err
