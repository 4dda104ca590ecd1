"""``marketguard bench``: choosing one benchmark, and the engine's per-stage figures it prints."""

from __future__ import annotations

import logging
from pathlib import Path

from typer.testing import CliRunner

from correlator.live import CycleReport, _describe
from marketguard.app.bench_live import _cycle_summary
from marketguard.app.cli import app

runner = CliRunner()


def test_only_names_one_of_the_benchmarks(tmp_path: Path) -> None:
    result = runner.invoke(app, ["bench", "--only", "everything", "--workdir", str(tmp_path)])
    assert result.exit_code == 2
    assert "--only takes offline, live, otlp or slo" in result.output
    assert not any(tmp_path.iterdir())  # refused before any benchmark ran


def test_cycle_lines_of_the_service_log_add_up_per_stage(tmp_path: Path) -> None:
    """The bench sums the engine's DEBUG cycle lines written inside the measured span."""
    path = tmp_path / "engine-cycles.log"
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(created).3f %(message)s"))
    log = logging.getLogger("test.bench.cycles")
    log.addHandler(handler)
    log.setLevel(logging.DEBUG)
    try:
        for seconds, upto in ((0.5, 100), (1.5, 300)):
            stages = {"rules": (seconds / 2, 0.1), "record": (seconds / 4, 0.05)}
            log.debug("cycle %s", _describe(CycleReport(upto - 100 * int(seconds + 0.5), upto, 2, seconds, stages)))
    finally:
        log.removeHandler(handler)
        handler.close()
    summary = _cycle_summary(path, 0, 1e12)
    assert (summary["cycles"], summary["events"], summary["seconds"], summary["slowest_s"]) == (2, 300, 2.0, 1.5)
    assert summary["stages"] == {"rules": [1.0, 0.2], "record": [0.5, 0.1]}
    assert _cycle_summary(path, 0, 1)["cycles"] == 0  # lines outside the span are left out
