"""The GPU benchmark scripts run end to end on a CPU at smoke size.

They call the trainer's and verify's own code (``Trainer._epoch``, ``Scorer.score``,
``monte_carlo``), so an API change there shows up here rather than on a lent GPU, where a
failed run costs scarce device time. Nothing here is timed; only what the scripts write is
checked.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture
def scripts(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import accuracy_full
    import gpu

    return gpu, accuracy_full


@pytest.mark.slow
def test_gpu_benchmark_smoke_writes_every_part(scripts, tmp_path: Path) -> None:
    gpu, _ = scripts
    gpu.main(["--smoke", "--device", "cpu", "--results", str(tmp_path)])
    data = json.loads((tmp_path / "gpu.json").read_text(encoding="utf-8"))
    parts = {row[0] for row in data["rows"]}
    assert {"train step", "train epoch", "mc score", "mc end-to-end", "mc numpy part",
            "propagate"} <= parts
    assert all(row[2] is not None and row[2] > 0 for row in data["rows"])
    assert data["meta"]["device"] == "cpu" and data["meta"]["smoke"] is True
    assert (tmp_path / "gpu.txt").read_text(encoding="utf-8").count("propagate") >= 3


def test_in_memory_fab_is_what_its_level_table_makes(scripts) -> None:
    gpu, _ = scripts
    raw = gpu.override(gpu.raw_config(), size=16, image_size=8, detector=2)
    fab = gpu.in_memory_fab(raw)
    t = fab.transmissions()
    assert t.shape == (5, 16, 16)
    table = fab.design.level_tables[0]
    assert abs(t - table[fab.levels]).max() < 1e-12


@pytest.mark.slow
def test_accuracy_runs_plan_their_epochs_and_merge(scripts, tmp_path: Path) -> None:
    _, acc = scripts
    work, results = tmp_path / "work", tmp_path / "results"
    acc.main(["--levels", "2", "4", "--smoke", "--dataset", "digits", "--budget", "600",
              "--train-samples", "192", "--test-samples", "64", "--work", str(work),
              "--results", str(results)])
    table = json.loads((results / "accuracy_full.json").read_text(encoding="utf-8"))
    assert [row[0] for row in table["rows"]] == [2, 4]
    header = table["header"]
    for row in table["rows"]:
        rec = dict(zip(header, row))
        assert rec["status"] == "done"
        assert 1 <= rec["epochs"] == rec["planned"] <= 2  # the smoke config's 2 epochs at most
        assert 0 <= rec["test acc %"] <= 100
    run = json.loads((work / "L4.json").read_text(encoding="utf-8"))
    assert run["plan"]["epochs"] == run["epochs_planned"]
    assert len(run["epoch_s"]) == run["epochs"]
    assert (work / "L4" / "design.json").is_file()


def test_merge_reports_a_killed_run_from_its_metrics(scripts, tmp_path: Path) -> None:
    _, acc = scripts
    work, results = tmp_path / "work", tmp_path / "results"
    run_dir = work / "L16"
    run_dir.mkdir(parents=True)
    with open(run_dir / "metrics.csv", "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(["epoch", "train_loss", "test_accuracy_soft", "test_accuracy_hard"])
        w.writerow([1, 1.2, 0.8, 0.75])
        w.writerow([2, 0.9, 0.9, 0.875])
    (work / "L16.json").write_text(json.dumps({
        "levels": 16, "status": "running", "run_dir": str(run_dir), "epochs_planned": 9,
        "batch_size": 256, "device_name": "test", "overrides": {}}), encoding="utf-8")
    acc.main(["--merge", "--work", str(work), "--results", str(results)])
    table = json.loads((results / "accuracy_full.json").read_text(encoding="utf-8"))
    rec = dict(zip(table["header"], table["rows"][0]))
    assert rec["levels"] == 16 and rec["test acc %"] == 87.5 and rec["epochs"] == 2
    assert rec["status"].startswith("stopped after epoch 2/9")
