"""End-to-end regression test: a tiny fixed-seed run must reproduce frozen numbers.

Every layer takes part (synthetic data, normaliser, batching and slate sampling, MLP init and
dropout, the LambdaRank loss, AdamW with warm-up + cosine, the metrics), so a silent change in any
of them shows up here. The values were produced by this exact config; they are not checked
against theory, only against themselves.

How to refresh after an *intended* change (say why in the commit message)::

    .venv/bin/python -c "import sys; sys.path.insert(0, 'tests/training'); from conftest import tiny_config; \\
        from ltrkit.training import train; r = train(tiny_config('/tmp/frozen', training={'epochs': 2, \\
        'batch_size': 8, 'max_slate_length': 20}), overwrite=True); print(r.metrics['test'], \\
        [h['train_loss'] for h in r.history])"

and paste the printed values below.
"""

from __future__ import annotations

import pytest

from ltrkit.training import train

FROZEN_TRAIN_LOSS = [2.000953094379322, 2.0629839574968494]
FROZEN_TEST = {
    "ndcg@1": 0.4174603174603175,
    "ndcg@3": 0.516679706772695,
    "ndcg@5": 0.6178308821238077,
    "ndcg@10": 0.688371404546044,
    "mrr": 0.7708333333333334,
    "map": 0.7209809236545347,
    "err@10": 0.15889732060241615,
}
FROZEN_VALI_NDCG10 = 0.8121209551405814


def test_tiny_run_reproduces_frozen_metrics(tmp_path, make_tiny):
    result = train(make_tiny(tmp_path / "runs", training={"epochs": 2, "batch_size": 8, "max_slate_length": 20}))
    assert [record["train_loss"] for record in result.history] == pytest.approx(FROZEN_TRAIN_LOSS, abs=1e-4)
    assert result.metrics["test"] == pytest.approx(FROZEN_TEST, abs=1e-4)
    assert result.metrics["vali"]["ndcg@10"] == pytest.approx(FROZEN_VALI_NDCG10, abs=1e-4)
