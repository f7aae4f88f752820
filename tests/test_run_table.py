"""benchmarks.run_table: a metrics log as a Markdown table, numbers as logged."""
import json

from benchmarks import run_table


def test_table_shows_logged_numbers_and_names_the_best_epoch(tmp_path, capsys):
    records = [{"epoch": e, "step": 10 * e, "epoch_complete": True, "test_acc": a, "test_acc_ema": b,
                "train_acc": 1.0, "seconds": 12.0} for e, a, b in ((1, 0.5, 0.4), (2, 0.75, 0.6), (3, 0.7, 0.65))]
    records.insert(1, {"epoch": 2, "step": 15, "epoch_complete": False, "test_acc": 0.99})   # a partial line
    path = tmp_path / "metrics.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    assert run_table.main([str(path)]) == 0
    out = capsys.readouterr().out
    assert "| 2 | 75.00% | 60.00% | 100.00% | 12 |" in out and "99.00%" not in out
    assert "test acc (raw): best 75.00% (epoch 2), last 70.00% (epoch 3)" in out
    assert "test acc (averaged): best 65.00% (epoch 3)" in out
    assert "| 2 |" not in run_table.table([r for r in records if r.get("epoch_complete")], every=5)
