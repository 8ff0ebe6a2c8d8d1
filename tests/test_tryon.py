"""Virtual try-on (paper fig. 9): AppearanceFlowModel and warp, train/flow.py, PGATTryOnPipeline, `pgat tryon`."""

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from pgat import PGATModel, PGATPipeline, PGATTryOnPipeline
from pgat.cli import main as cli_main
from pgat.data.synthetic import BOTTOM, SKIN, TOP, SynthHumans
from pgat.models import AppearanceFlowModel, warp
from pgat.models.flow import CANONICAL_POSE_SOURCE, default_canonical_pose, mask_iou
from pgat.data.synthetic import SynthHumansTryOn
from pgat.parts import LEG_PARTS, PART_INDEX, WAIST, complete_legs, composite_grid, part_masks, part_transforms
from pgat.pipelines.tryon import (
    CATEGORIES,
    arm_cores,
    category_region,
    default_seam,
    garment_grid,
    limb_cores,
    move_garment,
    sample_garment,
    skin_colour,
    transfer_mask,
    upper_body_region,
)
from pgat.pose import read_deepfashion_annotations, write_openpose_json

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "train" / "flow.py"
TINY_FLOW = dict(block_out_channels=(4, 8, 16, 16), sample_size=64)


def _env():
    env = dict(os.environ)
    # one thread: these tiny models gain nothing from two, and two threads on a busy 2-core machine thrash (10x slower)
    env.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", HF_HUB_DISABLE_TELEMETRY="1", OMP_NUM_THREADS="1")
    return env


def _train(out, *extra):
    cmd = [sys.executable, str(SCRIPT), "--resolution", "64", "--block_out_channels", "4,8,16,16,16", "--train_batch_size", "4",
           "--synth_pairs", "128", "--cache_pairs", "--num_validation_pairs", "4", "--output_dir", str(out), *extra]
    proc = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc


def _as_tensors(item, side):
    image = torch.from_numpy(item[side]).permute(2, 0, 1).float()[None] / 127.5 - 1
    mask = torch.from_numpy(item[f"{side}_parsing"] == TOP).float()[None, None]
    return image * mask, mask


@pytest.fixture(scope="module")
def pairs():
    return SynthHumans(resolution=64, split="test", seed=0, length=32)


@pytest.fixture(scope="module")
def tiny_pipe():
    torch.manual_seed(0)
    model = PGATModel(resolution=64, bottleneck_channels=16).eval()
    flow = AppearanceFlowModel(**TINY_FLOW, canonical_pose=default_canonical_pose()).eval()
    return PGATTryOnPipeline(model=model, flow=flow, pose_estimator=None)


# ---------------------------------------------------------------------------------------------
# the flow model and warp
# ---------------------------------------------------------------------------------------------


def test_flow_model_starts_as_identity():
    torch.manual_seed(0)
    model = AppearanceFlowModel(**TINY_FLOW)
    garment = torch.rand(2, 3, 64, 64) * 2 - 1
    mask = (torch.rand(2, 1, 64, 64) > 0.5).float()
    out = model(garment, mask, mask.flip(-1))
    assert out.flow.shape == (2, 2, 64, 64)
    assert torch.count_nonzero(out.flow) == 0  # zero-initialised last layer
    # the identity grid hits pixel centres exactly (align_corners=False): no interpolation blur
    torch.testing.assert_close(out.warped_garment, garment, atol=1e-5, rtol=0)
    torch.testing.assert_close(out.warped_mask, mask, atol=1e-5, rtol=0)
    # and it still learns: a gradient reaches the zero layer
    (out.warped_mask - mask.flip(-1)).abs().mean().backward()
    assert model.conv_out.weight.grad.abs().sum() > 0


def test_warp_moves_by_normalised_offsets_with_zero_padding():
    image = torch.arange(2 * 3 * 8 * 16, dtype=torch.float32).reshape(2, 3, 8, 16)
    flow = torch.zeros(2, 2, 8, 16)
    flow[:, 0] = 2 / 16  # one pixel to the right in x: output j takes input j + 1
    flow[:, 1] = -2 * 2 / 8  # two pixels up in y: output i takes input i - 2
    out = warp(image, flow)
    torch.testing.assert_close(out[:, :, 2:, :-1], image[:, :, :-2, 1:], atol=1e-3, rtol=0)
    assert out[:, :, :2].abs().max() == 0 and out[:, :, :, -1].abs().max() == 0  # from outside: zeros


def test_flow_model_save_load_round_trip(tmp_path):
    torch.manual_seed(1)
    model = AppearanceFlowModel(**TINY_FLOW, canonical_pose=default_canonical_pose())
    torch.nn.init.normal_(model.conv_out.weight, std=0.01)  # a non-trivial flow
    model.save_pretrained(tmp_path / "flow")
    assert (tmp_path / "flow" / "diffusion_pytorch_model.safetensors").is_file()
    loaded = AppearanceFlowModel.from_pretrained(tmp_path / "flow")
    assert loaded.config.canonical_pose == default_canonical_pose()
    x, m = torch.rand(1, 3, 64, 64), torch.ones(1, 1, 64, 64)
    torch.testing.assert_close(loaded(x, m, m).flow, model(x, m, m).flow)
    assert model(x, m, m).flow.abs().max() > 0


def test_canonical_pose_is_the_documented_frontal_deepfashion_pose(shared_data):
    table = read_deepfashion_annotations(shared_data / "deepfashion" / "fasion-annotation-test.csv", frame="256x256")
    pose = np.asarray(default_canonical_pose())
    np.testing.assert_array_equal(pose, table[CANONICAL_POSE_SOURCE])
    assert (pose >= 0).all()  # all 18 points
    assert pose[2, 0] < pose[1, 0] < pose[5, 0] and pose[8, 0] < pose[11, 0]  # facing the camera


def test_flow_model_bad_inputs():
    model = AppearanceFlowModel(**TINY_FLOW)
    x, m = torch.rand(1, 3, 64, 64), torch.ones(1, 1, 64, 64)
    with pytest.raises(ValueError, match=r"`target_mask` must be a \(1, 1, 64, 64\).*got \(1, 1, 32, 32\)"):
        model(x, m, torch.ones(1, 1, 32, 32))
    with pytest.raises(ValueError, match="multiples of 8"):
        model(torch.rand(1, 3, 60, 60), torch.ones(1, 1, 60, 60), torch.ones(1, 1, 60, 60))
    with pytest.raises(ValueError, match="`garment` must be a"):
        model(torch.rand(1, 4, 64, 64), m, m)
    with pytest.raises(ValueError, match="`canonical_pose` must be 18"):
        AppearanceFlowModel(canonical_pose=[[0.0, 0.0]] * 17)
    with pytest.raises(ValueError, match="`sample_size` must be a positive multiple of 16"):
        AppearanceFlowModel(block_out_channels=(4, 8, 8, 8, 8), sample_size=40)
    with pytest.raises(ValueError, match=r"`flow` must have shape \(1, 2, 64, 64\)"):
        warp(x, torch.zeros(1, 2, 32, 32))


# ---------------------------------------------------------------------------------------------
# masks across poses
# ---------------------------------------------------------------------------------------------


def test_transfer_mask_follows_the_body(pairs):
    """Carrying the reference's top mask to the target pose part by part lands on the target's real top
    (pairs where both poses show the torso: shoulders and hips, what the pipeline asks for)."""
    moved, unmoved, self_iou = [], [], []
    torso = [2, 5, 8, 11]
    usable = [i for i in range(len(pairs)) if (pairs[i]["reference_keypoints"][torso] >= 0).all() and (pairs[i]["target_keypoints"][torso] >= 0).all()]
    assert len(usable) >= 8
    for i in usable[:8]:
        item = pairs[i]
        src = torch.from_numpy(item["reference_parsing"] == TOP).float()
        tgt = torch.from_numpy(item["target_parsing"] == TOP).float()
        out = transfer_mask(src, item["reference_keypoints"], item["target_keypoints"])
        moved.append(float(mask_iou(out[None, None], tgt[None, None])))
        unmoved.append(float(mask_iou(src[None, None], tgt[None, None])))
        self_iou.append(float(mask_iou(transfer_mask(src, item["reference_keypoints"], item["reference_keypoints"])[None, None], src[None, None])))
    print(f"top-mask IoU with the target's top, {len(moved)} pairs: unmoved {np.mean(unmoved):.3f}, carried part by part {np.mean(moved):.3f}")
    assert np.mean(moved) > np.mean(unmoved) + 0.2, (moved, unmoved)
    assert np.mean(self_iou) > 0.9
    region = upper_body_region(pairs[0]["reference_keypoints"], 64, 64)
    top = torch.from_numpy(pairs[0]["reference_parsing"] == TOP).float()
    assert (region * top).sum() / top.sum() > 0.9  # the top lies in the torso/arm region
    assert region.mean() < 0.5


# ---------------------------------------------------------------------------------------------
# train/flow.py
# ---------------------------------------------------------------------------------------------


def test_train_script_writes_flow_folder_and_resumes_exactly(tmp_path):
    out = tmp_path / "repo"
    _train(out, "--max_train_steps", "4", "--checkpointing_steps", "2", "--perceptual_network", "vgg19")
    assert (out / "flow" / "config.json").is_file()
    weights = load_file(str(out / "flow" / "diffusion_pytorch_model.safetensors"))
    index = json.loads((out / "model_index.json").read_text())
    assert index["flow"] == ["pgat", "AppearanceFlowModel"]
    config = json.loads((out / "flow" / "config.json").read_text())
    assert config["_class_name"] == "AppearanceFlowModel" and config["sample_size"] == 64
    assert config["canonical_pose"] == default_canonical_pose()
    logged = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in logged] == [1, 2, 3, 4]
    assert {"perceptual", "l1", "mask", "tv"} <= set(logged[0])
    assert json.loads((out / "training_config.json").read_text())["max_train_steps"] == 4
    assert (out / "checkpoint-2" / "trainer_state.json").is_file()

    # resume from step 2 and finish: the same weights as the uninterrupted run; steps 3-4 are made again and the
    # log rewound to step 2 first, so it holds each step once, with the same losses
    shutil.rmtree(out / "flow")
    _train(out, "--max_train_steps", "4", "--checkpointing_steps", "2", "--perceptual_network", "vgg19", "--resume_from_checkpoint", "latest")
    again = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in again] == [1, 2, 3, 4]
    assert again == logged
    resumed = load_file(str(out / "flow" / "diffusion_pytorch_model.safetensors"))
    for k in weights:
        torch.testing.assert_close(resumed[k], weights[k], atol=0, rtol=0)


def _iou_after_training(out, pairs, *flags):
    """Train with train/flow.py, then measure on held-out identities and poses the mean IoU of the warped top's
    mask with the target's top, and of the unmoved top's mask (the identity flow)."""
    _train(out, "--learning_rate", "1e-3", "--mask_weight", "5", "--checkpointing_steps", "0", *flags)
    flow = AppearanceFlowModel.from_pretrained(out / "flow").eval()
    garments, gms, tms = [], [], []
    for i in range(len(pairs)):
        g, gm = _as_tensors(pairs[i], "reference")
        _, tm = _as_tensors(pairs[i], "target")
        garments.append(g), gms.append(gm), tms.append(tm)
    g, gm, tm = torch.cat(garments), torch.cat(gms), torch.cat(tms)
    with torch.no_grad():
        warped = flow(g, gm, tm).warped_mask
    return float(mask_iou(warped, tm).mean()), float(mask_iou(gm, tm).mean())


def test_trained_flow_warps_garment_closer_to_target(tmp_path, pairs):
    """200 steps at 64² (tiny widths, L1 + mask + smoothness terms): the warped top overlaps the target's top
    more than the unmoved top does."""
    trained, identity = _iou_after_training(tmp_path / "run", pairs, "--max_train_steps", "200", "--perceptual_weight", "0")
    print(f"mask IoU with the target top, {len(pairs)} test pairs: identity flow {identity:.3f}, trained flow (200 steps) {trained:.3f}")
    assert trained > identity + 0.1, (trained, identity)


@pytest.mark.slow
def test_trained_flow_with_full_loss_warps_garment_closer_to_target(tmp_path, pairs):
    """400 steps with every term of the loss, the VGG-19 perceptual one included."""
    trained, identity = _iou_after_training(
        tmp_path / "run", pairs, "--max_train_steps", "400", "--perceptual_network", "vgg19", "--perceptual_weight", "1e-3"
    )
    print(f"mask IoU with the target top, {len(pairs)} test pairs: identity flow {identity:.3f}, trained flow (400 steps, full loss) {trained:.3f}")
    assert trained > identity + 0.15, (trained, identity)


def _flow_script():
    spec = importlib.util.spec_from_file_location("train_flow", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_train_script_preset_dry_run_and_bad_arguments(tmp_path, capsys):
    script = _flow_script()
    script.main(script.parse_args(["--config", "flow-synth", "--max_train_steps", "7", "--output_dir", str(tmp_path / "o"), "--dry_run"]))
    config = json.loads(capsys.readouterr().out)
    assert config["max_train_steps"] == 7  # the flag wins over the preset
    assert config["resolution"] == 256 and config["block_out_channels"] == [32, 64, 128, 256, 256]  # from the preset
    assert not (tmp_path / "o").exists()  # a dry run writes nothing
    # the GPU preset of the keep mode's flow trains on try-on triples at the pipeline's resolution
    script.main(script.parse_args(["--config", "flow-tryon", "--output_dir", str(tmp_path / "o"), "--dry_run"]))
    config = json.loads(capsys.readouterr().out)
    assert config["pairs"] == "tryon" and config["resolution"] == 256 and config["block_out_channels"] == [32, 64, 128, 256, 256]
    with pytest.raises(ValueError, match="`--resolution` must be at least 64 and a multiple of 16 .* got 72"):
        script.main(script.parse_args(["--resolution", "72", "--dry_run"]))
    with pytest.raises(ValueError, match="`--mask_weight` must be non-negative, got -1.0"):
        script.main(script.parse_args(["--mask_weight", "-1", "--dry_run"]))


# ---------------------------------------------------------------------------------------------
# the pipeline
# ---------------------------------------------------------------------------------------------


def _photo(item, side, size=None):
    image = Image.fromarray(item[side])
    mask = item[f"{side}_parsing"] == TOP
    kps = item[f"{side}_keypoints"]
    if size is not None:  # a non-square photo: the person's 64² picture padded on the right and below
        canvas = Image.new("RGB", size, (255, 255, 255))
        canvas.paste(image, (0, 0))
        full = np.zeros((size[1], size[0]), bool)
        full[:64, :64] = mask
        image, mask = canvas, full
    return image, mask, kps


def test_pipeline_runs_end_to_end_with_intermediates(tiny_pipe, pairs):
    person, person_mask, person_kps = _photo(pairs[0], "reference", size=(64, 96))
    garment, garment_mask, garment_kps = _photo(pairs[1], "reference")
    out = tiny_pipe(person, garment, person_mask=person_mask, garment_mask=garment_mask, person_pose=person_kps, garment_pose=garment_kps,
                    mode="canonical")
    assert out.mode == "canonical" and out.invented_mask is None
    assert out.images[0].size == (64, 96)  # the person photo's size
    for name in ("canonical_person", "canonical_garment", "warped_garment", "garment_mask"):
        assert getattr(out, name)[0].size == (64, 64), name
    mask = np.asarray(out.garment_mask[0])[:, :, 0] > 127
    # the composite region is the person's top carried to the canonical pose: inside the canonical torso/arm region
    canonical = tiny_pipe.canonical_keypoints()
    np.testing.assert_allclose(canonical, (np.asarray(default_canonical_pose()) + 0.5) * 64 / 256 - 0.5)
    region = upper_body_region(canonical, 64, 64).numpy() > 0.5
    assert mask.sum() > 50 and (mask & ~region).sum() == 0
    # with an untrained flow the warped garment is the canonical garment inside the garment's carried mask, black outside
    source = transfer_mask(torch.from_numpy(garment_mask).float(), garment_kps, canonical).numpy()
    warped = np.asarray(out.warped_garment[0]).astype(int)
    canon_g = np.asarray(out.canonical_garment[0]).astype(int)
    full, empty = source > 0.999, source == 0
    assert full.sum() > 50 and empty.sum() > 50
    assert np.abs(warped - canon_g)[full].max() <= 1 and warped[empty].max() == 0

    raw = tiny_pipe(person, garment, person_mask=person_mask, garment_mask=garment_mask, person_pose=person_kps,
                    garment_pose=garment_kps, restore_pose=False, output_type="np", mode="canonical")
    assert raw.images.shape == (1, 64, 64, 3) and raw.garment_mask.shape == (1, 64, 64, 3)
    # the composite: garment pixels inside the pasted region, canonical person elsewhere
    untouched = raw.garment_mask[0][..., 0] == 0
    assert untouched.sum() > 1000
    np.testing.assert_allclose(raw.images[0][untouched], raw.canonical_person[0][untouched], atol=2 / 255 + 1e-6)
    assert np.abs(raw.images[0][mask] - raw.canonical_person[0][mask]).max() > 0.1  # the garment was pasted


def test_pipeline_automatic_masks_on_a_real_photo(tiny_pipe):
    """No masks and no poses given: BlazePose finds the pose and the person mask of a real photo (Ultralytics'
    ``assets/bus.jpg``, 810x1080, read as a file only), and the garment region is the person within the torso and arms."""
    import importlib.metadata

    try:
        path = importlib.metadata.distribution("ultralytics").locate_file("ultralytics/assets/bus.jpg")
    except importlib.metadata.PackageNotFoundError:
        path = None
    if path is None or not os.path.isfile(path):
        pytest.skip("needs the bus.jpg photo of the `ultralytics` wheel: pip install --no-deps ultralytics")
    pipe = PGATTryOnPipeline(model=tiny_pipe.model, flow=tiny_pipe.flow, pose_estimator="blazepose")
    out = pipe(path, path, output_type="np", mode="canonical")
    assert out.images.shape == (1, 1080, 810, 3)
    pasted = out.garment_mask[0][..., 0] > 0.5
    region = upper_body_region(pipe.canonical_keypoints(), 64, 64).numpy() > 0.5
    assert (pasted & ~region).sum() == 0
    assert 0.5 * region.sum() < pasted.sum() < region.sum()  # the man's coat fills most, not all, of the boxes


def test_pipeline_runs_the_flow_at_its_own_size(pairs):
    """A 128² stage with a flow model of sample size 64²: the flow is predicted at 64² and resized; a constant flow
    of one 64²-pixel to the right moves the garment by exactly two 128²-pixels."""
    torch.manual_seed(0)
    flow = AppearanceFlowModel(**TINY_FLOW, canonical_pose=default_canonical_pose()).eval()
    pipe = PGATTryOnPipeline(model=PGATModel(resolution=128, bottleneck_channels=16).eval(), flow=flow, pose_estimator=None)
    person, pm, pk = _photo(pairs[0], "reference")
    garment, gm, gk = _photo(pairs[1], "reference")
    still = pipe(person, garment, pm, gm, pk, gk, output_type="np", mode="canonical")
    with torch.no_grad():
        flow.conv_out.bias.copy_(torch.tensor([2 / 64, 0.0]))
    moved = pipe(person, garment, pm, gm, pk, gk, output_type="np", mode="canonical")
    assert moved.images.shape == (1, 64, 64, 3) and moved.warped_garment.shape == (1, 128, 128, 3)
    np.testing.assert_allclose(moved.warped_garment[0][:, :-2], still.warped_garment[0][:, 2:], atol=1 / 255 + 1e-6)
    assert np.abs(moved.warped_garment[0] - still.warped_garment[0]).max() > 0.2


def test_pipeline_save_and_load_with_flow_folder(tiny_pipe, tmp_path, pairs):
    tiny_pipe.save_pretrained(tmp_path / "repo")
    assert (tmp_path / "repo" / "flow" / "diffusion_pytorch_model.safetensors").is_file()
    assert json.loads((tmp_path / "repo" / "model_index.json").read_text())["flow"] == ["pgat", "AppearanceFlowModel"]
    loaded = PGATTryOnPipeline.from_pretrained(tmp_path / "repo", pose_estimator=None)
    assert loaded.flow.config.canonical_pose == tiny_pipe.flow.config.canonical_pose
    person, pm, pk = _photo(pairs[2], "reference")
    garment, gm, gk = _photo(pairs[3], "reference")
    a = tiny_pipe(person, garment, pm, gm, pk, gk, output_type="np").images
    b = loaded(person, garment, pm, gm, pk, gk, output_type="np").images
    np.testing.assert_array_equal(a, b)


def _offline_cache(repo, cache_dir, folders):
    """A Hub cache (huggingface_hub's layout) holding ``folders`` of ``repo`` for the id ``org/pgat-tryon``."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    cache = cache_dir / "models--org--pgat-tryon"
    (cache / "refs").mkdir(parents=True)
    (cache / "refs" / "main").write_text(commit)
    snap = cache / "snapshots" / commit
    snap.mkdir(parents=True)
    shutil.copy(repo / "model_index.json", snap / "model_index.json")
    for folder in folders:
        shutil.copytree(repo / folder, snap / folder)


def test_load_by_hub_id_fetches_the_flow_folder(tiny_pipe, tmp_path):
    repo = tmp_path / "repo"
    tiny_pipe.save_pretrained(repo)
    _offline_cache(repo, tmp_path / "with", ["stage-0064", "flow"])
    pipe = PGATTryOnPipeline.from_pretrained("org/pgat-tryon", cache_dir=tmp_path / "with", local_files_only=True, pose_estimator=None)
    assert pipe.resolution == 64 and pipe.flow.config.canonical_pose == tiny_pipe.flow.config.canonical_pose
    for a, b in zip(pipe.flow.parameters(), tiny_pipe.flow.parameters()):
        torch.testing.assert_close(a, b, atol=0, rtol=0)
    _offline_cache(repo, tmp_path / "without", ["stage-0064"])
    with pytest.raises(FileNotFoundError, match="has no flow/ folder .*train/flow.py"):
        PGATTryOnPipeline.from_pretrained("org/pgat-tryon", cache_dir=tmp_path / "without", local_files_only=True, pose_estimator=None)


def test_cli_tryon(tiny_pipe, tmp_path, pairs, capsys):
    repo = tmp_path / "repo"
    tiny_pipe.save_pretrained(repo)
    person, pm, pk = _photo(pairs[4], "reference", size=(64, 80))
    garment, gm, gk = _photo(pairs[5], "reference")
    person.save(tmp_path / "person.png"), garment.save(tmp_path / "garment.png")
    Image.fromarray(pm.astype(np.uint8) * 255).save(tmp_path / "pm.png")
    Image.fromarray(gm.astype(np.uint8) * 255).save(tmp_path / "gm.png")
    write_openpose_json(pk, tmp_path / "pk.json"), write_openpose_json(gk, tmp_path / "gk.json")
    args = ["tryon", str(tmp_path / "person.png"), str(tmp_path / "garment.png"), "--model", str(repo),
            "--person-mask", str(tmp_path / "pm.png"), "--person-pose", str(tmp_path / "pk.json"), "--garment-pose", str(tmp_path / "gk.json")]
    assert cli_main([*args, "-o", str(tmp_path / "out.png"), "--garment-mask", str(tmp_path / "gm.png"), "--save-intermediates"]) == 0
    with Image.open(tmp_path / "out.png") as im:
        assert im.size == (64, 80)
    for name in ("invented-mask", "warped-garment", "garment-mask"):  # the default mode: keep the person
        assert (tmp_path / f"out-{name}.png").is_file(), name
    # the same as the Python API
    api = tiny_pipe(person, garment, pm, gm, pk, gk)
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "out.png")), np.asarray(api.images[0]))
    # the paper's route on request, with its own intermediates
    assert cli_main([*args, "-o", str(tmp_path / "c.png"), "--garment-mask", str(tmp_path / "gm.png"), "--mode", "canonical", "--save-intermediates"]) == 0
    assert (tmp_path / "c-canonical-person.png").is_file() and not (tmp_path / "c-invented-mask.png").exists()
    api = tiny_pipe(person, garment, pm, gm, pk, gk, mode="canonical")
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "c.png")), np.asarray(api.images[0]))
    # a mask file that is not there: a message, exit code 2, no output
    code = cli_main([*args, "-o", str(tmp_path / "bad.png"), "--garment-mask", str(tmp_path / "missing.png")])
    assert code == 2 and not (tmp_path / "bad.png").exists()
    err = capsys.readouterr().err
    assert err.startswith("pgat: error: `--garment-mask`: '") and "missing.png', which does not exist" in err


def test_pipeline_bad_inputs(tiny_pipe, tmp_path, pairs):
    person, pm, pk = _photo(pairs[0], "reference")
    garment, gm, gk = _photo(pairs[1], "reference")
    # a repository without flow/
    PGATPipeline(model=tiny_pipe.model).save_pretrained(tmp_path / "noflow")
    with pytest.raises(FileNotFoundError, match="has no flow/ folder"):
        PGATTryOnPipeline.from_pretrained(tmp_path / "noflow", pose_estimator=None)
    # a mask of the wrong size
    with pytest.raises(ValueError, match=r"`garment_mask` must have the size of its photo, 64x64 .* got 32x48"):
        tiny_pipe(person, garment, pm, np.ones((48, 32), bool), pk, gk)
    # an unreadable image, a missing one
    (tmp_path / "broken.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match="`garment_image`: the file '.*broken.png', which is not an image"):
        tiny_pipe(person, tmp_path / "broken.png", pm, gm, pk, gk)
    with pytest.raises(FileNotFoundError, match="`person_image`: '.*nope.png', which does not exist"):
        tiny_pipe(tmp_path / "nope.png", garment, pm, gm, pk, gk)
    # a pose without a torso, no pose and no estimator, no flow model
    no_torso = np.full((18, 2), -1.0, np.float32)
    no_torso[0] = (30, 10)
    with pytest.raises(ValueError, match="`person_pose`: a pose of 1 points, of the torso's corners only none; expected both shoulders and both hips"):
        tiny_pipe(person, garment, pm, gm, no_torso, gk)
    with pytest.raises(ValueError, match="`person_pose`: an image, which needs a pose estimator"):
        tiny_pipe(person, garment, pm, gm, None, gk)
    with pytest.raises(ValueError, match="no `flow` model"):
        PGATTryOnPipeline(model=tiny_pipe.model, pose_estimator=None)(person, garment, pm, gm, pk, gk)
    with pytest.raises(ValueError, match="`output_type` must be"):
        tiny_pipe(person, garment, pm, gm, pk, gk, output_type="latent")


def test_pipeline_feeds_a_pose_aware_model_the_poses_it_has(pairs, monkeypatch):
    """A model that takes the reference's own pose (DESIGN.md §1b) gets each photo's pose when moving it to the
    canonical pose, and the canonical pose when moving the composite back; nothing more is estimated."""
    torch.manual_seed(0)
    model = PGATModel(resolution=64, bottleneck_channels=16, warp_skips=True, reference_pose=True).eval()
    flow = AppearanceFlowModel(**TINY_FLOW, canonical_pose=default_canonical_pose()).eval()
    pipe = PGATTryOnPipeline(model=model, flow=flow, pose_estimator=None)
    person, pm, pk = _photo(pairs[0], "reference")
    garment, gm, gk = _photo(pairs[1], "reference")
    seen = []
    forward = model.forward

    def recording(reference, target_keypoints, reference_keypoints=None, return_dict=True):
        seen.append(reference_keypoints.clone())
        return forward(reference, target_keypoints, reference_keypoints, return_dict=return_dict)

    monkeypatch.setattr(model, "forward", recording)
    out = pipe(person, garment, pm, gm, pk, gk, output_type="np", mode="canonical")
    assert out.images.shape == (1, 64, 64, 3) and len(seen) == 2
    np.testing.assert_allclose(seen[0].numpy(), np.stack([pk, gk]), atol=1e-4)  # 64x64 photos: their pixels are the square's
    np.testing.assert_allclose(seen[1].numpy(), pipe.canonical_keypoints()[None], atol=1e-6)
    # another person pose (the same body 3 px to the right): another canonical person
    ok = pk[:, 0] >= 0
    shifted = pk.copy()
    shifted[ok, 0] += 3
    moved = pipe(person, garment, pm, gm, shifted, gk, output_type="np", mode="canonical")
    assert np.abs(moved.canonical_person - out.canonical_person).mean() > 0.005
    np.testing.assert_allclose(moved.canonical_garment, out.canonical_garment, atol=1e-6)


# ---------------------------------------------------------------------------------------------
# mode "keep": the person's own pixels, the garment moved onto them
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def triples():
    return SynthHumansTryOn(resolution=64, split="test", length=8)


def _keep_inputs(item):
    return (item["person"], item["garment"], item["person_parsing"] == TOP, item["garment_parsing"] == TOP,
            item["person_keypoints"], item["garment_keypoints"])


def _dilate(mask: np.ndarray, r: int) -> np.ndarray:
    t = torch.from_numpy(mask.astype(np.float32))[None, None]
    return torch.nn.functional.max_pool2d(t, 2 * r + 1, stride=1, padding=r)[0, 0].numpy() > 0


def test_keep_mode_leaves_every_pixel_away_from_the_garment_untouched(tiny_pipe, triples):
    """Outside the old and the new garment's regions grown by the seam, the output is the person photo to the pixel;
    inside, the new garment's pixels are the garment photo's, moved part by part; the generator never runs."""
    calls = []
    forward = tiny_pipe.model.forward
    tiny_pipe.model.forward = lambda *a, **k: calls.append(1) or forward(*a, **k)
    try:
        for i in range(3):
            person, garment, pm, gm, pk, gk = _keep_inputs(triples[i])
            out = tiny_pipe(person, garment, pm, gm, pk, gk, output_type="np")
            assert out.mode == "keep" and out.canonical_person is None
            image = (out.images[0] * 255).round().astype(np.uint8)
            new = out.garment_mask[0][..., 0] > 0.5
            seam = default_seam((64, 64))
            away = ~_dilate(pm | new, seam)
            assert away.sum() > 0.5 * away.size
            np.testing.assert_array_equal(image[away], person[away])
            # the changed pixels: the moved garment where it lands, away from its edge
            assert new.sum() > 30
            moved, alpha = move_garment(torch.from_numpy(garment).permute(2, 0, 1)[None].float() / 127.5 - 1,
                                        torch.from_numpy(gm).float()[None, None], gk, pk, (64, 64))
            core = ~_dilate(~new, seam) & (alpha[0, 0].numpy() > 0.99)
            expected = ((moved[0].permute(1, 2, 0).numpy() + 1) * 127.5)
            assert core.sum() > 10  # an untrained flow is the identity: the part warp's pixels exactly (up to rounding)
            assert np.abs(image[core].astype(float) - expected[core]).max() <= 1.0
            assert np.abs(image[new].astype(int) - person[new].astype(int)).max() > 30  # the garment did change them
    finally:
        tiny_pipe.model.forward = forward
    assert calls == []  # no pixel of "keep" (default fill) is drawn by the pose-transfer model


def test_keep_mode_works_in_the_person_photos_own_frame(tiny_pipe, triples):
    """A tall person photo (64x96 with the person at the top) and a garment photo of another size: the output has
    the person photo's size and is that photo below the person."""
    item = triples[0]
    person, garment, pm, gm, pk, gk = _keep_inputs(item)
    tall = np.full((96, 64, 3), 200, np.uint8)
    tall[:64] = person
    tall_mask = np.zeros((96, 64), bool)
    tall_mask[:64] = pm
    big = np.asarray(Image.fromarray(garment).resize((128, 128), Image.BICUBIC))
    big_mask = np.asarray(Image.fromarray(gm.astype(np.uint8) * 255).resize((128, 128), Image.NEAREST)) > 127
    gk2 = np.where(gk >= 0, (gk + 0.5) * 2 - 0.5, -1.0)
    out = tiny_pipe(tall, big, tall_mask, big_mask, pk, gk2, output_type="np")
    assert out.images.shape == (1, 96, 64, 3) and out.warped_garment.shape == (1, 96, 64, 3)
    image = (out.images[0] * 255).round().astype(np.uint8)
    np.testing.assert_array_equal(image[72:], tall[72:])
    small = tiny_pipe(person, garment, pm, gm, pk, gk, output_type="np")
    # the same try-on as with the 64x64 photos, up to the garment photo's resampling
    assert np.abs(out.images[0][:64] - small.images[0]).mean() < 0.02


def test_keep_mode_flow_correction_is_in_the_photos_pixels(triples):
    """A constant flow of 2 pixels of the flow's 64² square moves the garment by 2 pixels of a 128² person photo
    (the flow is resized and rescaled from the square to the photo), and `refine=False` skips it."""
    torch.manual_seed(0)
    flow = AppearanceFlowModel(**TINY_FLOW, canonical_pose=default_canonical_pose()).eval()
    pipe = PGATTryOnPipeline(model=PGATModel(resolution=64, bottleneck_channels=16).eval(), flow=flow, pose_estimator=None)
    person, garment, pm, gm, pk, gk = _keep_inputs(SynthHumansTryOn(resolution=128, split="test", length=4)[1])
    still = pipe(person, garment, pm, gm, pk, gk, output_type="np").warped_garment[0]
    with torch.no_grad():
        flow.conv_out.bias.copy_(torch.tensor([2 * 2 / 64, 0.0]))
    moved = pipe(person, garment, pm, gm, pk, gk, output_type="np").warped_garment[0]
    np.testing.assert_allclose(moved[:, :-4], still[:, 4:], atol=1 / 255 + 1e-6)
    assert np.abs(moved - still).max() > 0.2
    rigid = pipe(person, garment, pm, gm, pk, gk, output_type="np", refine=False).warped_garment[0]
    np.testing.assert_array_equal(rigid, still)


def test_keep_mode_fills(tiny_pipe, triples):
    """What the new garment leaves uncovered of the old one: the old garment ("person"), invented from around it
    ("inpaint") or by the generator, which then runs once and changes nothing outside that hole."""
    for i in range(len(triples)):
        person, garment, pm, gm, pk, gk = _keep_inputs(triples[i])
        base = tiny_pipe(person, garment, pm, gm, pk, gk, output_type="np", fill="person")
        hole = base.invented_mask[0][..., 0] > 0.5
        if hole.sum() > 20:
            break
    else:
        pytest.fail("no triple whose new garment uncovers part of the old one")
    seam = default_seam((64, 64))
    core = hole & ~_dilate(~hole, seam)
    np.testing.assert_allclose(base.images[0][core], person[core] / 255, atol=1 / 255 + 1e-6)  # the old garment shows
    inpainted = tiny_pipe(person, garment, pm, gm, pk, gk, output_type="np")
    assert np.abs(inpainted.images[0][core] - person[core] / 255).max() > 0.05
    calls = []
    forward = tiny_pipe.model.forward
    tiny_pipe.model.forward = lambda *a, **k: calls.append(1) or forward(*a, **k)
    try:
        drawn = tiny_pipe(person, garment, pm, gm, pk, gk, output_type="np", fill="generator")
    finally:
        tiny_pipe.model.forward = forward
    assert calls == [1]
    outside = ~_dilate(hole, seam)
    np.testing.assert_array_equal(drawn.images[0][outside], inpainted.images[0][outside])


def test_keep_mode_bad_arguments(tiny_pipe, triples):
    from pgat.inputs import InputError

    person, garment, pm, gm, pk, gk = _keep_inputs(triples[0])
    for kwargs, match in ((dict(mode="canon"), "`mode`: 'canon'; expected one of 'keep', 'canonical'"),
                          (dict(fill="blur"), "`fill`: 'blur'; expected one of 'inpaint', 'generator', 'person'"),
                          (dict(seam=-1), "`seam`: -1; expected a whole number of pixels")):
        with pytest.raises(InputError, match=match):
            tiny_pipe(person, garment, pm, gm, pk, gk, **kwargs)


def test_embedded_model_keep_mode_beats_both_baselines_on_ground_truth():
    """The shipped model and flow, on SynthHumans try-on triples of the test split (unseen identities and poses),
    at 256²: inside the garment region, closer to the ground truth than the person photo and than the garment
    pasted unwarped; outside it, the person's own pixels."""
    from pgat.evaluation import PipelineTryOn, evaluate_tryon

    repo = REPO / "weights" / "pgat-synth-256"
    if not (repo / "flow").is_dir():
        pytest.skip("the embedded model is not in this checkout")
    pipe = PGATTryOnPipeline.from_pretrained(repo, resolution=256, pose_estimator=None)
    rows = evaluate_tryon(PipelineTryOn(pipe, "keep"), SynthHumansTryOn(resolution=256, split="test", length=12), num_triples=12,
                          name="pgat_keep", progress=False)
    print(json.dumps(rows, indent=1))
    model = rows["pgat_keep"]
    for base in ("person_unchanged", "unwarped_paste"):
        assert model["ssim_region"] > rows[base]["ssim_region"] + 0.05, (base, rows)
    assert model["outside_equal"] > 0.99


# ---------------------------------------------------------------------------------------------
# garment categories: tops, bottoms, both
# ---------------------------------------------------------------------------------------------

CATEGORY_LABELS = {"upper_body": (TOP,), "lower_body": (BOTTOM,), "full_body": (TOP, BOTTOM)}


@pytest.fixture(scope="module")
def category_triples():
    return {c: SynthHumansTryOn(resolution=64, split="test", length=8, category=c) for c in CATEGORIES}


def _category_inputs(item, category):
    labels = CATEGORY_LABELS[category]
    return (item["person"], item["garment"], np.isin(item["person_parsing"], labels), np.isin(item["garment_parsing"], labels),
            item["person_keypoints"], item["garment_keypoints"])


def _to_t(image):
    return torch.from_numpy(np.asarray(image)).permute(2, 0, 1)[None].float() / 127.5 - 1


def test_categories_and_a_bad_one_named(tiny_pipe, triples):
    from pgat.data.synthetic import TRYON_CATEGORIES
    from pgat.inputs import InputError

    assert CATEGORIES == ("upper_body", "lower_body", "full_body") == TRYON_CATEGORIES
    person, garment, pm, gm, pk, gk = _keep_inputs(triples[0])
    for bad in ("shoes", "Upper_Body", None, 1):
        with pytest.raises(InputError, match=rf"^`category`: {re.escape(repr(bad))}; expected one of 'upper_body', 'lower_body', 'full_body'$"):
            tiny_pipe(person, garment, pm, gm, pk, gk, category=bad)
        with pytest.raises(InputError, match="`category`"):
            tiny_pipe(person, garment, pm, gm, pk, gk, mode="canonical", category=bad)


def test_upper_body_is_the_default_and_ignores_the_legs(tiny_pipe, triples):
    """``category="upper_body"`` is the call without it, to the byte; and a top never reads the leg joints (no leg
    completion): the same output with the knees and ankles of both poses removed."""
    for i in range(3):
        person, garment, pm, gm, pk, gk = _keep_inputs(triples[i])
        default = tiny_pipe(person, garment, pm, gm, pk, gk, output_type="np")
        upper = tiny_pipe(person, garment, pm, gm, pk, gk, output_type="np", category="upper_body")
        for name in ("images", "warped_garment", "garment_mask", "invented_mask"):
            np.testing.assert_array_equal(getattr(default, name), getattr(upper, name), err_msg=name)
        legless_p, legless_g = pk.copy(), gk.copy()
        legless_p[[9, 10, 12, 13]] = -1
        legless_g[[9, 10, 12, 13]] = -1
        legless = tiny_pipe(person, garment, pm, gm, legless_p, legless_g, output_type="np")
        np.testing.assert_array_equal(legless.images, default.images)
    canonical = tiny_pipe(person, garment, pm, gm, pk, gk, output_type="np", mode="canonical")
    np.testing.assert_array_equal(canonical.images, tiny_pipe(person, garment, pm, gm, pk, gk, output_type="np", mode="canonical", category="upper_body").images)


@pytest.mark.parametrize("category", ["lower_body", "full_body"])
def test_keep_mode_moves_the_categorys_garment_and_keeps_every_other_pixel(tiny_pipe, category_triples, category):
    """A bottom (or a whole outfit) moved by the legs' and hips' parts: outside the old and the new garment grown by
    the seam the person photo to the bit (for a bottom: their own top too), inside the garment photo's pixels moved
    by the category's parts (`garment_grid(category=)`), not the top's."""
    seam = default_seam((64, 64))
    changed_legs = 0
    for i in range(4):
        item = category_triples[category][i]
        person, garment, pm, gm, pk, gk = _category_inputs(item, category)
        out = tiny_pipe(person, garment, pm, gm, pk, gk, output_type="np", category=category)
        image = (out.images[0] * 255).round().astype(np.uint8)
        new = out.garment_mask[0][..., 0] > 0.5
        away = ~_dilate(pm | new, seam)
        np.testing.assert_array_equal(image[away], person[away])
        if category == "lower_body":  # the person's own top stays, but where the new bottom lands on it
            top = (item["person_parsing"] == TOP) & away
            assert top.sum() > 20
        grid, coverage = garment_grid(gk, pk, (64, 64), (64, 64), category)
        moved, alpha = sample_garment(_to_t(garment), torch.from_numpy(gm).float()[None, None], grid, coverage)
        core = ~_dilate(~new, seam) & (alpha[0, 0].numpy() > 0.99)
        expected = (moved[0].permute(1, 2, 0).numpy() + 1) * 127.5
        assert core.sum() > 10
        assert np.abs(image[core].astype(float) - expected[core]).max() <= 1.0  # an untrained flow: the part warp's pixels
        legs = part_masks(complete_legs(torch.from_numpy(pk)[None]), 64, margin=-0.05)[0, [PART_INDEX[p] for p in LEG_PARTS]].amax(0).numpy() > 0.5
        changed_legs += int((new & legs).sum())
        # the top's parts alone would not have moved the legs
        _, top_only = garment_grid(gk, pk, (64, 64), (64, 64), "upper_body")
        assert (coverage[0, 0].numpy() > 0.5).sum() > (top_only[0, 0].numpy() > 0.5).sum()
    assert changed_legs > 100


def test_full_body_is_the_union_of_upper_and_lower_body(category_triples):
    item = category_triples["full_body"][0]
    pk, gk = item["person_keypoints"], item["garment_keypoints"]
    grids = {c: garment_grid(gk, pk, (64, 64), (64, 64), c) for c in CATEGORIES}
    torch.testing.assert_close(grids["full_body"][1], torch.maximum(grids["upper_body"][1], grids["lower_body"][1]))
    # where no leg reaches, the full body is the top's warp (the arms in front of the torso), to the float
    legs = part_masks(complete_legs(torch.from_numpy(pk)[None]), 64)[0, [PART_INDEX[p] for p in LEG_PARTS]].amax(0) == 0
    torch.testing.assert_close(grids["full_body"][0][0][legs], grids["upper_body"][0][0][legs], atol=0, rtol=0)
    for c in ("lower_body", "full_body"):
        region = category_region(pk, 64, 64, c)
        assert region.sum() > 0
    upper, lower, full = (category_region(pk, 64, 64, c) for c in CATEGORIES)
    torch.testing.assert_close(full, torch.maximum(upper, torch.maximum(lower, full)))  # full covers both
    assert ((upper + lower) > 0).float().le(full).all()
    torch.testing.assert_close(upper, upper_body_region(pk, 64, 64))


# a standing person in a 128 square, arms down
_STANDING = np.array([[64, 22], [64, 38], [52, 39], [48, 58], [46, 76], [76, 39], [80, 58], [82, 76],
                      [56, 74], [55, 98], [55, 120], [72, 74], [73, 98], [73, 120], [61, 19], [67, 19], [58, 21], [70, 21]], np.float32)


def _winner(grid, kps_from, kps_to, part, x, y):
    """Whether ``grid`` at pixel (x, y) reads through ``part``'s transform (target ``kps_to`` -> reference ``kps_from``)."""
    theta = part_transforms(torch.from_numpy(kps_to)[None], torch.from_numpy(kps_from)[None], fit="body")[0][0, PART_INDEX[part]]
    q = theta[:, :2] @ torch.tensor([float(x), float(y)]) + theta[:, 2]
    return bool(torch.allclose(grid[0, y, x], (2 * q + 1) / 128 - 1, atol=1e-4))


def test_in_front_follows_the_category():
    """A bottom: a thigh's top, inside the torso's box at the hip, follows the thigh (the legs are in front). A full
    outfit: there the torso's box wins (it carries the top's hem), and a forearm lying on the thigh follows the arm."""
    person = _STANDING.copy()
    person[4] = (56, 86)  # the right forearm down along the right thigh
    garment = person.copy()
    garment[[9, 10, 12, 13]] += (6.0, 0.0)  # the wearer's legs apart: every leg part moves otherwise than the torso
    garment[4] += (-4.0, 3.0)  # and the forearm otherwise than both
    lower, _ = garment_grid(garment, person, (128, 128), (128, 128), "lower_body")
    full, _ = garment_grid(garment, person, (128, 128), (128, 128), "full_body")
    # just below the right hip on the thigh's axis: inside the torso's box and the thigh's core
    x, y = 56, 75
    masks = part_masks(torch.from_numpy(person)[None], 128)[0]
    assert masks[PART_INDEX["torso"], y, x] == 1 and masks[PART_INDEX["r_thigh"], y, x] == 1
    assert _winner(lower, garment, person, "r_thigh", x, y) and not _winner(lower, garment, person, "torso", x, y)
    assert _winner(full, garment, person, "torso", x, y)
    # on the forearm, over the thigh (below the torso's box)
    x, y = 56, 84
    assert masks[PART_INDEX["r_forearm"], y, x] == 1 and masks[PART_INDEX["r_thigh"], y, x] == 1 and masks[PART_INDEX["torso"], y, x] == 0
    assert _winner(full, garment, person, "r_forearm", x, y)
    assert _winner(lower, garment, person, "r_thigh", x, y)  # a bottom has no arm parts: the thigh


def test_automatic_masks_follow_the_category(tiny_pipe, category_triples, monkeypatch):
    """No masks given: the person mask (BlazePose, here a stand-in that finds the whole figure) within the
    category's parts. A bottom's stops at the waist: the person's chest is kept; a top's does not reach the shins."""
    from types import SimpleNamespace

    import pgat.pose_estimation

    item = category_triples["lower_body"][1]
    person, garment, _, _, pk, gk = _category_inputs(item, "lower_body")
    figure = {person.tobytes(): item["person_parsing"] > 0, garment.tobytes(): item["garment_parsing"] > 0}
    monkeypatch.setattr(pgat.pose_estimation, "estimate",
                        lambda image, backend=None, return_mask=False: SimpleNamespace(mask=figure[np.asarray(image).tobytes()].astype(np.float32)))
    kps = torch.from_numpy(pk)[None]
    neck, hip = pk[1], (pk[8] + pk[11]) / 2
    seam = default_seam((64, 64))
    for category in CATEGORIES:
        region = category_region(pk, 64, 64, category).numpy() > 0.5
        out = tiny_pipe(person, garment, person_pose=pk, garment_pose=gk, output_type="np", category=category)
        image = (out.images[0] * 255).round().astype(np.uint8)
        new = out.garment_mask[0][..., 0] > 0.5
        away = ~_dilate((region & (item["person_parsing"] > 0)) | new, seam)
        np.testing.assert_array_equal(image[away], person[away])
        chest = (int(round(neck[1] + 0.3 * (hip[1] - neck[1]))), int(round(neck[0])))
        shin = complete_legs(kps)[0, 9:11].mean(0).round().long().tolist()[::-1]
        if category == "lower_body":
            assert not region[chest] and region[tuple(shin)]
            assert not _dilate(region, seam)[chest]
            np.testing.assert_array_equal(image[chest], person[chest])
        elif category == "upper_body":
            assert region[chest] and not region[tuple(shin)]
        else:
            assert region[chest] and region[tuple(shin)]
    # the waist line: the lower body's region is empty above it, along the torso's axis
    lower = category_region(pk, 64, 64, "lower_body").numpy() > 0.5
    ys, xs = np.nonzero(lower)
    axis = (hip - neck) / np.linalg.norm(hip - neck)
    depth = ((np.stack([xs, ys], 1) - neck) @ axis) / np.linalg.norm(hip - neck)
    assert depth.min() > WAIST - 0.1


def test_limb_cores_and_bare_legs_painted_in_skin(tiny_pipe, category_triples):
    """The bare limbs under a garment: arms for a top, legs for a bottom, both for a full outfit. Trousers swapped
    for shorts or a skirt: the shins they uncover are painted in the person's skin colour."""
    pk = category_triples["lower_body"][0]["person_keypoints"]
    arms, legs, both = (limb_cores(pk, (64, 64), c) for c in CATEGORIES)
    torch.testing.assert_close(arms, arm_cores(pk, (64, 64)))
    assert legs.sum() > 0 and (legs * arms).sum() < legs.sum()
    torch.testing.assert_close(both, torch.maximum(arms, legs))
    found = 0
    for i in range(len(category_triples["lower_body"])):
        item = category_triples["lower_body"][i]
        person, garment, pm, gm, pk, gk = _category_inputs(item, "lower_body")
        out = tiny_pipe(person, garment, pm, gm, pk, gk, output_type="np", category="lower_body")
        hole = out.invented_mask[0][..., 0] > 0.5
        bare = hole & (limb_cores(pk, (64, 64), "lower_body").numpy() > 0.5) & (item["ground_truth_parsing"] == SKIN)
        bare &= ~_dilate(~hole, default_seam((64, 64)))
        if bare.sum() < 5:
            continue
        skin = skin_colour(_to_t(person), torch.from_numpy(pm).float(), pk)
        expected = (skin.numpy() + 1) / 2
        assert np.abs(out.images[0][bare] - expected).max() < 2 / 255
        found += 1
    assert found >= 1


def test_cropped_photos_have_their_legs_completed(category_triples):
    """Photos cut at the thighs (knees out of the frame, half of DeepFashion's poses): the legs are completed, so
    the person's bottom garment lies within the parts that move the new one."""
    covered = total = without = 0
    for i in range(8):
        item = category_triples["lower_body"][i]
        pk, gk = item["person_keypoints"], item["garment_keypoints"]
        if (pk[[9, 12]] >= 0).all():
            continue
        bottom = item["person_parsing"] == BOTTOM
        _, coverage = garment_grid(gk, pk, (64, 64), (64, 64), "lower_body")
        covered += int((bottom & (coverage[0, 0].numpy() > 0.5)).sum())
        total += int(bottom.sum())
        raw = composite_grid(torch.from_numpy(gk)[None], torch.from_numpy(pk)[None], 64, parts=("torso",) + LEG_PARTS, fit="body")[1]
        without += int((bottom & (raw.amax(1)[0].numpy() > 0.5)).sum())
    assert total > 100
    assert covered > 0.95 * total and without < 0.8 * covered


def test_cli_tryon_category(tiny_pipe, tmp_path, category_triples, capsys):
    repo = tmp_path / "repo"
    tiny_pipe.save_pretrained(repo)
    person, garment, pm, gm, pk, gk = _category_inputs(category_triples["lower_body"][2], "lower_body")
    Image.fromarray(person).save(tmp_path / "person.png"), Image.fromarray(garment).save(tmp_path / "garment.png")
    Image.fromarray(pm.astype(np.uint8) * 255).save(tmp_path / "pm.png")
    Image.fromarray(gm.astype(np.uint8) * 255).save(tmp_path / "gm.png")
    write_openpose_json(pk, tmp_path / "pk.json"), write_openpose_json(gk, tmp_path / "gk.json")
    args = ["tryon", str(tmp_path / "person.png"), str(tmp_path / "garment.png"), "--model", str(repo), "--person-mask", str(tmp_path / "pm.png"),
            "--garment-mask", str(tmp_path / "gm.png"), "--person-pose", str(tmp_path / "pk.json"), "--garment-pose", str(tmp_path / "gk.json")]
    assert cli_main([*args, "-o", str(tmp_path / "lower.png"), "--category", "lower_body"]) == 0
    assert cli_main([*args, "-o", str(tmp_path / "upper.png")]) == 0
    lower = np.asarray(Image.open(tmp_path / "lower.png"))
    np.testing.assert_array_equal(lower, np.asarray(tiny_pipe(person, garment, pm, gm, pk, gk, category="lower_body").images[0]))
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "upper.png")), np.asarray(tiny_pipe(person, garment, pm, gm, pk, gk).images[0]))
    assert (lower != np.asarray(Image.open(tmp_path / "upper.png"))).any()
    capsys.readouterr()
    with pytest.raises(SystemExit):
        cli_main([*args, "-o", str(tmp_path / "bad.png"), "--category", "shoes"])
    assert "--category: invalid choice: 'shoes'" in capsys.readouterr().err and not (tmp_path / "bad.png").exists()


def test_canonical_mode_carries_the_categorys_masks(tiny_pipe, category_triples):
    """The paper's route with a bottom garment: its masks are carried to the canonical pose by the legs' and hips'
    parts, so what is pasted there lies on the canonical legs and hips, where a top's never does."""
    item = category_triples["lower_body"][0]
    person, garment, pm, gm, pk, gk = _category_inputs(item, "lower_body")
    canonical = tiny_pipe.canonical_keypoints()
    kps = torch.from_numpy(canonical)[None]
    lower = part_masks(kps, 64)[0, [PART_INDEX[p] for p in ("torso",) + LEG_PARTS]].amax(0).numpy() > 0
    masks = part_masks(kps, 64)[0]
    upper = masks[[PART_INDEX[p] for p in ("torso", "r_upper_arm", "r_forearm", "l_upper_arm", "l_forearm")]].amax(0).numpy() > 0
    legs = (masks[[PART_INDEX[p] for p in LEG_PARTS]].amax(0).numpy() > 0.5) & ~upper  # the legs, away from a top's parts
    pasted = {}
    for category in ("lower_body", "upper_body"):
        out = tiny_pipe(person, garment, pm, gm, pk, gk, output_type="np", mode="canonical", restore_pose=False, category=category)
        pasted[category] = out.garment_mask[0][..., 0] > 0.5
    assert pasted["lower_body"].sum() > 30 and (pasted["lower_body"] & ~lower).sum() == 0
    assert (pasted["lower_body"] & legs).sum() > 10 and (pasted["upper_body"] & legs).sum() == 0
