"""compile.int8_gain: the table's plumbing on one small net (the numbers themselves are for the README)."""
from __future__ import annotations

import pytest

from compile import int8_gain
from trainer.models.mobilefacenet import BOTTLENECKS

pytestmark = pytest.mark.unit


def test_prints_one_row_per_net_with_both_files_timed(monkeypatch, capsys):
    monkeypatch.setattr(int8_gain, "NETS", {"width 0.25": (0.25, BOTTLENECKS)})
    assert int8_gain.main(["--threads", "1", "--repeat", "2"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| width 0.25")]
    (row,) = rows
    cells = [cell.strip() for cell in row.strip("|").split("|")]
    assert float(cells[1]) > 0 and cells[2].endswith("x") and 0.2 < float(cells[3]) < 0.6
