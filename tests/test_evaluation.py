"""pgat.evaluation: the model beside the copy-reference and part-warp baselines, PCKh with its ceiling, the CLI."""

import json

import numpy as np
import pytest
import torch

from pgat import PGATModel
from pgat.evaluation import evaluate_model, evaluation_pairs, eval_results, markdown_table, update_model_card
from pgat.metrics import evaluate
from pgat.parts import warp_image

NUM_PAIRS = 5


@pytest.fixture(scope="module")
def pairs():
    return evaluation_pairs("synthhumans", 64, NUM_PAIRS, seed=0)


@pytest.fixture(scope="module")
def batch(pairs):
    items = [pairs[i] for i in range(NUM_PAIRS)]
    return {k: torch.stack([it[k] for it in items]) for k in ("reference", "target", "reference_keypoints", "target_keypoints")}


@pytest.fixture(scope="module")
def pose_aware():
    torch.manual_seed(0)
    model = PGATModel(resolution=64, bottleneck_channels=8, warp_skips=True).eval()
    assert model.needs_reference_pose
    return model


class GroundTruthEstimator:
    """A fake estimator that knows the ground-truth images: their exact target pose, nobody anywhere else."""

    def __init__(self, batch):
        u8 = ((batch["target"] + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
        self.known = {im.tobytes(): k.numpy() for im, k in zip(u8, batch["target_keypoints"])}

    def __call__(self, image):
        return self.known.get(image.tobytes(), np.full((18, 2), -1.0, np.float32))


class Spy(torch.nn.Module):
    """Records what the model is called with."""

    def __init__(self, model):
        super().__init__()
        self.model, self.calls = model, []

    def forward(self, reference, target_keypoints, reference_keypoints=None):
        self.calls.append(reference_keypoints)
        return self.model(reference, target_keypoints, reference_keypoints)


def test_pose_aware_model_gets_the_reference_keypoints(pairs, batch, pose_aware):
    spy = Spy(pose_aware)
    results = evaluate_model(spy, pairs, ["ssim", "local_ssim"], batch_size=3, progress=False)
    assert torch.equal(torch.cat(spy.calls), batch["reference_keypoints"])
    assert set(results) == {"model", "copy_reference", "part_warp"}
    assert all(set(r) == {"ssim", "local_ssim", "num_pairs"} and r["num_pairs"] == NUM_PAIRS for r in results.values())
    # without them the model refuses: the evaluation gave them
    with pytest.raises(ValueError, match="reference_keypoints"):
        pose_aware(batch["reference"], batch["target_keypoints"])


def test_part_warp_row_is_warp_image_on_the_pairs(pairs, batch):
    torch.manual_seed(0)
    paper = PGATModel(resolution=64, bottleneck_channels=8).eval()  # ignores the reference pose
    metrics = ["ssim", "ms_ssim", "local_ssim"]
    results = evaluate_model(paper, pairs, metrics, batch_size=2, progress=False)
    warped = warp_image(batch["reference"], batch["reference_keypoints"], batch["target_keypoints"])
    want = evaluate(warped, batch["target"], batch["target_keypoints"], metrics=metrics)
    copy = evaluate(batch["reference"], batch["target"], batch["target_keypoints"], metrics=metrics)
    for m in metrics:
        # batches of 2, 2, 1 averaged by pairs: the same as one batch of 5 up to float sums
        assert results["part_warp"][m] == pytest.approx(want[m], abs=1e-5)
        assert results["copy_reference"][m] == pytest.approx(copy[m], abs=1e-5)
        assert results["part_warp"][m] != pytest.approx(results["copy_reference"][m], abs=1e-3)
    # --no-baseline: the model alone
    assert set(evaluate_model(paper, pairs, ["ssim"], baseline=False, progress=False)) == {"model"}


def test_pckh_rows_and_the_ground_truth_ceiling(pairs, batch, pose_aware):
    fake = GroundTruthEstimator(batch)
    results = evaluate_model(pose_aware, pairs, ["ssim", "pckh"], batch_size=2, progress=False, estimator=fake)
    assert list(results) == ["model", "copy_reference", "part_warp", "ground_truth"]
    assert results["ground_truth"] == {"pckh": 1.0, "num_pairs": NUM_PAIRS}  # the estimator finds every ground truth
    for name in ("model", "copy_reference", "part_warp"):
        assert list(results[name]) == ["ssim", "pckh", "num_pairs"] and results[name]["pckh"] == 0.0  # nobody found
    table = markdown_table(results, "tiny")
    assert "| part-warp baseline |" in table and "| copy-reference baseline |" in table
    assert "| ground truth (estimator ceiling) | — | 1.0000 |" in table
    assert "gap closed (model − baseline)" in table and "gap closed over part-warp" in table
    with pytest.raises(ValueError, match="taken by pckh only"):
        evaluate_model(pose_aware, pairs, ["ssim"], progress=False, estimator=fake)


def test_model_card_gets_the_table_and_only_the_models_metrics(tmp_path):
    results = {
        "model": {"ssim": 0.8, "pckh": 0.5, "num_pairs": 3},
        "copy_reference": {"ssim": 0.7, "pckh": 0.3, "num_pairs": 3},
        "part_warp": {"ssim": 0.75, "pckh": 0.4, "num_pairs": 3},
        "ground_truth": {"pckh": 0.8, "num_pairs": 3},
    }
    table = markdown_table(results)
    assert "| gap closed over part-warp (model − part-warp) / (best − part-warp) | 0.20 | 0.17 |" in table
    record = {"resolution": 64, "dataset": "synthhumans", **results}
    names = {r.metric_type: r.metric_name for r in eval_results(record)}
    assert names == {"ssim": "SSIM", "pckh": "PCKh"}
    (tmp_path / "README.md").write_text("---\nlicense: mit\n---\n# tiny\n\n## Evaluation\n\nnothing yet\n\n## Training\n\nsteps\n")
    card = update_model_card(tmp_path, record, table)
    text = card.read_text()
    assert "| part-warp baseline | 0.7500 | 0.4000 |" in text and "nothing yet" not in text and "## Training" in text


def test_cli_evaluate_writes_the_new_rows_with_blazepose(tiny_repo, tmp_path, capsys):
    from pgat.cli import main

    assert main(["evaluate", "--model", str(tiny_repo), "--resolution", "64", "--num-pairs", "3", "--metrics", "ssim,pckh", "--out", str(tmp_path)]) == 0
    record = json.loads((tmp_path / "evaluation.json").read_text())
    assert {"model", "copy_reference", "part_warp", "ground_truth"} <= set(record)
    assert 0 <= record["part_warp"]["pckh"] <= 1 and 0 < record["ground_truth"]["pckh"] <= 1  # the real estimator ran
    out = capsys.readouterr().out
    assert "| part-warp baseline |" in out and "| ground truth (estimator ceiling) |" in out
    assert "| part-warp baseline |" in (tmp_path / "evaluation.md").read_text()


def test_cli_evaluate_help_names_the_rows(capsys):
    from pgat.cli import main

    with pytest.raises(SystemExit):
        main(["evaluate", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for words in ("part-warp baseline", "copy-reference baseline", "pckh", "ceiling", "ssim,ms_ssim,local_ssim,pckh"):
        assert words in text
