"""benchmarks/memory: the RSS summary against a hand computation, and a short real run."""

from __future__ import annotations

import json

import pytest

from benchmarks.memory.run import main, summarise


def sample(step, event, rss_mb):
    return {"step": step, "event": event, "seconds": 0.0, "rss_mb": rss_mb}


def test_summary_measures_growth_from_the_first_save_on():
    samples = [
        sample(0, "train_begin", 100.0),
        sample(100, "step", 300.0),  # warm-up allocations: not counted as growth
        sample(200, "evaluate", 340.0),
        sample(200, "save", 350.0),
        sample(300, "step", 352.0),
        sample(400, "save", 354.0),
        sample(400, "train_end", 356.0),
    ]
    summary = summarise(samples)
    assert summary["first_save_step"] == 200 and summary["rss_at_first_save_mb"] == 350.0
    assert summary["growth_after_first_save_mb"] == pytest.approx(6.0)
    # least squares through (200, 350), (300, 352), (400, 354), (400, 356): mean (325, 353),
    # sum dx*dy = 375 + 25 + 75 + 225 = 700, sum dx^2 = 15625 + 625 + 5625 + 5625 = 27500
    assert summary["slope_mb_per_1k_steps"] == pytest.approx(1000 * 700 / 27500)
    assert summary["rss_peak_mb"] == 356.0 and summary["steps"] == 400
    assert (summary["evaluations"], summary["saves"]) == (1, 2)


def test_summary_needs_a_checkpoint():
    with pytest.raises(ValueError, match="No checkpoint was saved.*--every"):
        summarise([sample(0, "train_begin", 1.0), sample(10, "train_end", 2.0)])


@pytest.mark.slow  # several processes (or a wheel build): minutes on a 2-core CPU
def test_short_run_records_rss_at_steps_evaluations_and_saves(tmp_path):
    results = main(
        ["--epochs", "0.1", "--every", "4", "--sample_every", "2", "--output_dir", str(tmp_path), "--no_readme"]
    )
    samples = results["samples"]
    assert json.loads((tmp_path / "results.json").read_text()) == results
    assert (tmp_path / "rss.png").stat().st_size > 0
    # distill.py evaluates the saved student once more after training
    assert [s["event"] for s in samples][:1] + [s["event"] for s in samples][-2:] == [
        "train_begin", "train_end", "evaluate"
    ]  # fmt: skip
    steps = [s["step"] for s in samples]
    assert steps == sorted(steps) and steps[-1] == 8  # 5,000 demo images x 0.1 epoch / batch 64
    events = [(s["step"], s["event"]) for s in samples]
    assert {(4, "evaluate"), (4, "save"), (8, "evaluate"), (8, "save"), (6, "step")} <= set(events)
    assert all(s["rss_mb"] > 0 for s in samples)
    assert results["summary"]["first_save_step"] == 4
    assert "| RSS at train start |" in (tmp_path / "table.md").read_text()
    assert results["settings"]["dataset"] == "demo_data/cifar10"
