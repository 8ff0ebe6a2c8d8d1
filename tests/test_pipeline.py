"""PGATPipeline as a diffusers user meets it: save / load by path and by Hub id from a real HF cache, the framing,
every pose input form, and the errors of broken repositories and bad inputs."""

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from pgat import PGATPipeline, PGATPipelineOutput
from pgat.pose import draw_skeleton, write_openpose_json


@pytest.fixture(scope="module")
def repo(tiny_repo):
    return tiny_repo  # conftest.py: 64 then 128 saved into one folder


@pytest.fixture(scope="module")
def sample(portrait):
    return portrait  # conftest.py: a 100x128 reference and its target keypoints


def test_save_layout_and_load_by_path(repo):
    assert sorted(p.name for p in repo.iterdir()) == [
        "README.md", "handler.py", "model_index.json", "pipeline.py", "requirements.txt", "stage-0064", "stage-0128",
    ]  # handler.py, pipeline.py, requirements.txt: tests/test_serving.py
    assert json.loads((repo / "model_index.json").read_text())["stages"] == [64, 128]
    pipe = PGATPipeline.from_pretrained(repo)
    assert pipe.resolution == 128 and pipe.available_stages == [64, 128]  # the highest stage by default
    assert PGATPipeline.from_pretrained(repo, resolution=64).resolution == 64
    half = PGATPipeline.from_pretrained(repo, torch_dtype=torch.bfloat16)
    assert half.model.dtype == torch.bfloat16


def test_bf16_pipeline_keeps_the_pose_in_float32(repo, sample):
    """The weights may be bf16; the target keypoints stay float32 pixels (bf16 rounds 100.3 to 100)."""
    reference, keypoints = sample
    pipe = PGATPipeline.from_pretrained(repo, resolution=128, torch_dtype=torch.bfloat16)
    seen = []
    decode = pipe.model.decode
    pipe.model.decode = lambda features, kps: seen.append(kps.dtype) or decode(features, kps)
    image = pipe(reference, keypoints, output_type="np").images[0]
    assert seen == [torch.float32] and pipe.model.dtype == torch.bfloat16
    plain = PGATPipeline.from_pretrained(repo, resolution=128)(reference, keypoints, output_type="np").images[0]
    assert np.abs(image - plain).mean() < 0.02  # the same picture, up to bf16 rounding


def test_output_framing_and_types(repo, sample):
    reference, keypoints = sample
    pipe = PGATPipeline.from_pretrained(repo, resolution=64)
    out = pipe(reference, keypoints)
    assert isinstance(out, PGATPipelineOutput)
    assert out.images[0].size == (100, 128)  # the reference's framing, not the model's square
    assert out.target_poses.shape == (1, 18, 3)
    np.testing.assert_allclose(out.target_poses[0, :, :2][keypoints[:, 0] >= 0], keypoints[keypoints[:, 0] >= 0], atol=1e-3)
    arr = pipe(reference, [keypoints, keypoints], output_type="np").images
    assert arr.shape == (2, 128, 100, 3) and arr.dtype == np.float32 and 0 <= arr.min() and arr.max() <= 1
    pt = pipe(reference, keypoints, output_type="pt").images
    assert pt.shape == (1, 3, 128, 100)
    images, poses = pipe(reference, keypoints, return_dict=False)
    np.testing.assert_array_equal(np.asarray(images[0]), np.asarray(out.images[0]))


def test_seeded_output_slice(repo, sample):
    reference, keypoints = sample
    pipe = PGATPipeline.from_pretrained(repo, resolution=64)
    image = pipe(reference, keypoints, output_type="np").images[0]
    # a regression check: seed 0 tiny model (fixture), the first SynthHumans test pair
    slice_ = image[60:63, 48:51, 0].reshape(-1)
    again = PGATPipeline.from_pretrained(repo, resolution=64)(reference, keypoints, output_type="np").images[0]
    np.testing.assert_array_equal(image, again)
    expected = np.asarray(json.loads((Path(__file__).parent / "data" / "pipeline_slice.json").read_text()))
    np.testing.assert_allclose(slice_, expected, atol=2 / 255)


def test_json_array_and_image_poses_agree(repo, sample, tmp_path):
    reference, keypoints = sample
    pipe = PGATPipeline.from_pretrained(repo, resolution=64, pose_estimator=lambda image: _stub_keypoints(keypoints))
    by_array = pipe(reference, keypoints, output_type="np").images
    path = tmp_path / "pose.json"
    write_openpose_json(keypoints, path)
    by_path = pipe(reference, str(path), output_type="np").images
    by_dict = pipe(reference, json.loads(path.read_text()), output_type="np").images
    # an image of the pose, read by the estimator (here a callable that returns the pose it was given)
    by_image = pipe(reference, draw_skeleton((128, 100), keypoints), output_type="np").images
    for other in (by_path, by_dict, by_image):
        np.testing.assert_allclose(other, by_array, atol=1.5 / 255)
    # a JSON recording another canvas is mapped from that frame: the same pose on a 2x canvas (pixel centres
    # at whole numbers: x -> 2 (x + 0.5) - 0.5) gives the same picture
    doubled = np.where(keypoints >= 0, (keypoints + 0.5) * 2 - 0.5, -1.0)
    big = write_openpose_json(doubled, canvas_size=(200, 256))
    np.testing.assert_allclose(pipe(reference, big, output_type="np").images, by_array, atol=1.5 / 255)


def _stub_keypoints(keypoints):
    out = np.concatenate([keypoints, (keypoints[:, :1] >= 0).astype(np.float32)], axis=1)
    out[keypoints[:, 0] < 0] = (-1, -1, 0)
    return out


def test_image_pose_through_blazepose(repo):
    """A real photo as the pose: BlazePose finds the astronaut, the skeleton comes back in her frame."""
    from skimage.data import astronaut

    pipe = PGATPipeline.from_pretrained(repo, resolution=64, pose_estimator="blazepose")
    photo = astronaut()
    out = pipe(photo, photo)
    assert out.images[0].size == (512, 512)
    nose, neck = out.target_poses[0, 0], out.target_poses[0, 1]
    assert 150 < nose[0] < 350 and 50 < nose[1] < 250 and neck[1] > nose[1]
    with pytest.raises(ValueError, match="`target_pose`: the 64x64 pose photo, in which no person was found"):
        pipe(photo, np.full((64, 64, 3), 255, np.uint8))


def test_align_pose_moves_the_pose_onto_the_reference(repo, sample):
    reference, keypoints = sample
    pipe = PGATPipeline.from_pretrained(repo, resolution=64, pose_estimator=None)
    ok = keypoints[:, 0] >= 0
    small = keypoints.copy()
    small[ok] = keypoints[ok] * 0.5 + 3  # the same pose, half size, elsewhere
    aligned = pipe(reference, small, reference_pose=keypoints, align_pose=True).target_poses[0]
    np.testing.assert_allclose(aligned[ok, :2], keypoints[ok], atol=0.5)


def test_load_by_hub_id_from_a_real_cache_with_one_stage(repo, tmp_path):
    """Only stage-0064 is in the cache: loading it works offline; the 128 stage is not there to load."""
    home = tmp_path / "hf"
    commit = "0123456789abcdef0123456789abcdef01234567"
    cache = home / "hub" / "models--org--pgat-tiny"
    snap = cache / "snapshots" / commit
    (cache / "refs").mkdir(parents=True)
    (cache / "refs" / "main").write_text(commit)  # no trailing newline, as huggingface_hub writes it
    snap.mkdir(parents=True)
    for name in ("model_index.json", "README.md"):
        shutil.copy(repo / name, snap / name)
    shutil.copytree(repo / "stage-0064", snap / "stage-0064")
    code = textwrap.dedent(
        """
        import sys
        from pgat import PGATPipeline
        pipe = PGATPipeline.from_pretrained("org/pgat-tiny", resolution=64)
        print("loaded", pipe.resolution, pipe.available_stages)
        try:
            PGATPipeline.from_pretrained("org/pgat-tiny", resolution=128)
        except (OSError, ValueError) as e:
            print("128:", type(e).__name__, e)
        try:
            PGATPipeline.from_pretrained("org/pgat-tiny", resolution=256)
        except ValueError as e:
            print("256:", e)
        """
    )
    env = {**os.environ, "HF_HOME": str(home), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "loaded 64 [64, 128]" in proc.stdout
    assert "128: MissingInputError" in proc.stdout and "stage-0128" in proc.stdout  # a FileNotFoundError too
    assert "256: `resolution`: 256, a stage that the Hub repository 'org/pgat-tiny' does not have; expected one of its stages: 64, 128" in proc.stdout


def test_broken_repositories_give_clear_errors(repo, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(repo, broken)
    with pytest.raises(ValueError, match="expected one of its stages: 64, 128"):
        PGATPipeline.from_pretrained(broken, resolution=512)
    weights = broken / "stage-0128" / "diffusion_pytorch_model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])  # truncated download
    with pytest.raises(ValueError, match="corrupt or truncated"):
        PGATPipeline.from_pretrained(broken, resolution=128)
    weights.write_bytes(b"\x00" * 64)  # garbage
    with pytest.raises(ValueError, match="corrupt or truncated"):
        PGATPipeline.from_pretrained(broken, resolution=128)
    config = broken / "stage-0064" / "config.json"
    config.write_text(json.dumps({**json.loads(config.read_text()), "_class_name": "LocalDiscriminator"}))
    with pytest.raises(ValueError, match="the config of a 'LocalDiscriminator'; expected the config of a 'PGATModel'"):
        PGATPipeline.from_pretrained(broken, resolution=64)
    with pytest.raises(OSError, match="neither a local folder nor a reachable Hub repository"):
        PGATPipeline.from_pretrained(str(tmp_path / "nope"))


@pytest.mark.parametrize(
    "pose, message",
    [
        ({"people": []}, "`target_pose`: OpenPose JSON with an empty 'people' list"),
        ({"people": [{"pose_keypoints_2d": [1.0] * 30}]}, "30 values"),
        (np.zeros((17, 2)), r"`target_pose`: an array of shape \(17, 2\); expected shape \(18, 2\) or \(18, 3\)"),
        (np.full((18, 2), np.nan), "NaN"),
    ],
)
def test_bad_pose_inputs(repo, sample, pose, message):
    pipe = PGATPipeline.from_pretrained(repo, resolution=64, pose_estimator=None)
    with pytest.raises(ValueError, match=message):
        pipe(sample[0], pose)


def test_bad_reference_and_arguments(repo, sample, tmp_path):
    pipe = PGATPipeline.from_pretrained(repo, resolution=64, pose_estimator=None)
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    with pytest.raises(ValueError, match="`reference_image`: the file .*, which is not an image"):
        pipe(str(bad), sample[1])
    with pytest.raises(ValueError, match="`output_type` must be 'pil', 'np' or 'pt'"):
        pipe(sample[0], sample[1], output_type="latent")
    with pytest.raises(ValueError, match="one image or one per target pose"):
        pipe([sample[0]] * 2, [sample[1]] * 3)
    with pytest.raises(ValueError, match="needs a pose estimator"):
        pipe(sample[0], Image.new("RGB", (64, 64)))
    with pytest.raises(ValueError, match="unknown arguments"):
        PGATPipeline.from_pretrained(repo, subfolder="stage-0064")


def test_cli_transfer(repo, sample, tmp_path, capsys):
    from pgat.cli import main

    reference, keypoints = sample
    ref_path, pose_path, out = tmp_path / "ref.png", tmp_path / "pose.json", tmp_path / "sub" / "out.png"
    Image.fromarray(reference).save(ref_path)
    write_openpose_json(keypoints, pose_path)
    assert main(["transfer", str(ref_path), "--pose", str(pose_path), "-o", str(out), "--model", str(repo), "--resolution", "64"]) == 0
    result = np.asarray(Image.open(out))
    assert result.shape == reference.shape
    expected = PGATPipeline.from_pretrained(repo, resolution=64, pose_estimator=None)(reference, keypoints).images[0]
    np.testing.assert_array_equal(result, np.asarray(expected))
    assert "stage 64²" in capsys.readouterr().out
    half = tmp_path / "half.png"
    assert main(["transfer", str(ref_path), "--pose", str(pose_path), "-o", str(half), "--model", str(repo), "--resolution", "64", "--dtype", "bfloat16"]) == 0
    assert np.abs(np.asarray(Image.open(half), float) - result).mean() < 4  # the same picture, rounded in bf16
    with pytest.raises(SystemExit):
        main(["transfer", str(ref_path), "--pose", str(pose_path), "-o", str(half), "--dtype", "float16"])
    assert "argument --dtype: invalid choice: 'float16' (choose from" in capsys.readouterr().err
    assert main(["transfer", str(ref_path), "--pose", str(tmp_path / "missing.json"), "-o", str(out), "--model", str(repo)]) == 2
    assert "missing.json" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------
# models that take the reference person's own pose (DESIGN.md §1b): `reference_pose` everywhere the model is fed
# ---------------------------------------------------------------------------------------------


def test_pose_aware_model_takes_the_given_reference_pose(pose_aware_repo, sample, reference_keypoints):
    reference, keypoints = sample
    pipe = PGATPipeline.from_pretrained(pose_aware_repo, pose_estimator=None)
    assert pipe.model.needs_reference_pose
    ok = reference_keypoints[:, 0] >= 0
    moved = reference_keypoints.copy()
    moved[ok] += (12.0, -9.0)  # the same body elsewhere: the warp moves other features to the target pose
    a = pipe(reference, keypoints, reference_pose=reference_keypoints, output_type="np")
    b = pipe(reference, keypoints, reference_pose=moved, output_type="np")
    assert np.abs(a.images - b.images).mean() > 0.01  # the reference pose steers the output
    # the pose used, back in the reference image's pixels: the one given
    assert a.reference_poses.shape == (1, 18, 3)
    np.testing.assert_allclose(a.reference_poses[0, ok, :2], reference_keypoints[ok], atol=1e-3)
    assert (a.reference_poses[0, ~ok] == (-1, -1, 0)).all() and (a.reference_poses[0, ok, 2] == 1).all()
    # OpenPose JSON on a canvas twice the reference's size is mapped like a target pose: the same picture
    doubled = np.where(reference_keypoints >= 0, (reference_keypoints + 0.5) * 2 - 0.5, -1.0)
    big = pipe(reference, keypoints, reference_pose=write_openpose_json(doubled, canvas_size=(200, 256)), output_type="np")
    np.testing.assert_allclose(big.images, a.images, atol=1.5 / 255)
    np.testing.assert_allclose(big.reference_poses[0, ok, :2], reference_keypoints[ok], atol=1e-3)
    # the tuple form keeps its two items
    images, poses = pipe(reference, keypoints, reference_pose=reference_keypoints, output_type="np", return_dict=False)
    np.testing.assert_array_equal(images, a.images)
    # one reference pose per reference image: each image gets its own (unshared path: encoded with its batch)
    both = pipe([reference, reference], [keypoints, keypoints], reference_pose=[reference_keypoints, moved], output_type="np")
    np.testing.assert_allclose(both.images[0], a.images[0], atol=1.5 / 255)
    np.testing.assert_allclose(both.images[1], b.images[0], atol=1.5 / 255)
    assert both.reference_poses.shape == (2, 18, 3)
    with pytest.raises(ValueError, match=r"`reference_pose` must be one pose or a list of one per reference image \(2\), got a list of 3"):
        pipe([reference, reference], [keypoints, keypoints], reference_pose=[reference_keypoints] * 3)
    with pytest.raises(ValueError, match=r"`reference_pose`: a reference pose for the 100x128 reference image with no visible keypoint"):
        pipe(reference, keypoints, reference_pose=np.full((18, 2), -1.0))
    with pytest.raises(ValueError, match=r"`reference_pose`: an array of shape \(17, 2\); expected shape \(18, 2\) or \(18, 3\)"):
        pipe(reference, keypoints, reference_pose=np.zeros((17, 2)))


def test_pose_aware_model_estimates_the_reference_pose_once_per_reference(pose_aware_repo, sample, reference_keypoints, counting_estimator):
    reference, keypoints = sample
    estimator = counting_estimator(reference_keypoints)
    pipe = PGATPipeline.from_pretrained(pose_aware_repo, pose_estimator=estimator)
    given = PGATPipeline.from_pretrained(pose_aware_repo, pose_estimator=None)(reference, [keypoints] * 3, reference_pose=reference_keypoints, output_type="np")
    out = pipe(reference, [keypoints] * 3, batch_size=2, output_type="np")
    assert estimator.calls == [(100, 128)]  # once, on the reference photo, for three poses in two batches
    np.testing.assert_allclose(out.images, given.images, atol=1e-6)
    np.testing.assert_allclose(out.reference_poses, given.reference_poses)
    estimator.calls.clear()
    pipe([reference, reference], [keypoints, keypoints])
    assert estimator.calls == [(100, 128)] * 2  # once per reference image
    estimator.calls.clear()
    pipe(reference, keypoints, reference_pose=reference_keypoints)
    assert estimator.calls == []  # given: nothing estimated


def test_pose_aware_model_without_a_person_or_an_estimator(pose_aware_repo, sample, counting_estimator):
    reference, keypoints = sample
    nobody = PGATPipeline.from_pretrained(pose_aware_repo, pose_estimator=counting_estimator(None))
    with pytest.raises(ValueError, match=r"`reference_image`: the 100x128 reference photo, in which no person was found; expected a photo of one "
                                         r"person for this model \(reference_pose=True, warp_skips=True\).*Or pass `reference_pose=`"):
        nobody(reference, keypoints)
    blind = PGATPipeline.from_pretrained(pose_aware_repo, pose_estimator=None)
    with pytest.raises(ValueError, match=r"`reference_pose`: nothing, and `reference_image` is a photo, which needs a pose estimator .* \(pose_estimator=None\); "
                                         r"expected the reference person's pose, which this model \(reference_pose=True, warp_skips=True\) needs: pass `reference_pose=`"):
        blind(reference, keypoints)


def test_paper_model_only_looks_for_the_person_unless_aligning(repo, sample, reference_keypoints, counting_estimator):
    """The paper's model does not read the reference's pose; the estimator only checks, once per reference photo,
    that it shows a person (`pgat.inputs.check_person`), and a photo with nobody in it is refused."""
    reference, keypoints = sample
    estimator = counting_estimator(reference_keypoints)
    pipe = PGATPipeline.from_pretrained(repo, resolution=64, pose_estimator=estimator)
    assert not pipe.model.needs_reference_pose
    plain = pipe(reference, [keypoints] * 2, output_type="np")
    assert estimator.calls == [(100, 128)] and plain.reference_poses is None  # once for two poses
    estimator.calls.clear()
    unused = pipe(reference, keypoints, reference_pose=reference_keypoints, output_type="np")  # accepted, not used
    np.testing.assert_array_equal(unused.images, plain.images[:1])
    assert unused.reference_poses is None and estimator.calls == [(100, 128)]
    estimator.calls.clear()
    # align_pose needs it: estimated once for the reference, not once per pose
    aligned = pipe(reference, [keypoints] * 3, align_pose=True)
    assert estimator.calls == [(100, 128)] and aligned.reference_poses.shape == (1, 18, 3)
    nobody = PGATPipeline.from_pretrained(repo, resolution=64, pose_estimator=counting_estimator(None))
    with pytest.raises(ValueError, match=r"`reference_image`: the 100x128 reference photo, in which no person was found; expected a photo of one person for pose transfer"):
        nobody(reference, keypoints)
    blind = PGATPipeline.from_pretrained(repo, resolution=64, pose_estimator=None)  # cannot look: used as given
    np.testing.assert_array_equal(blind(reference, keypoints, output_type="np").images, plain.images[:1])


def test_cli_transfer_reference_pose(pose_aware_repo, sample, reference_keypoints, tmp_path, capsys):
    from pgat.cli import main

    reference, keypoints = sample
    ref_path, pose_path = tmp_path / "ref.png", tmp_path / "pose.json"
    Image.fromarray(reference).save(ref_path)
    write_openpose_json(keypoints, pose_path)
    write_openpose_json(reference_keypoints, tmp_path / "ref-openpose.json")
    np.save(tmp_path / "ref.npy", reference_keypoints)
    (tmp_path / "ref-list.json").write_text(json.dumps(reference_keypoints.tolist()))
    expected = PGATPipeline.from_pretrained(pose_aware_repo, pose_estimator=None)(reference, keypoints, reference_pose=reference_keypoints).images[0]
    base = ["transfer", str(ref_path), "--pose", str(pose_path), "--model", str(pose_aware_repo)]
    for name in ("ref-openpose.json", "ref.npy", "ref-list.json"):
        out = tmp_path / f"out-{name}.png"
        assert main([*base, "-o", str(out), "--reference-pose", str(tmp_path / name)]) == 0, capsys.readouterr().err
        np.testing.assert_array_equal(np.asarray(Image.open(out)), np.asarray(expected))
    capsys.readouterr()
    # errors reach the user as one message, exit code 2
    assert main([*base, "-o", str(tmp_path / "x.png"), "--reference-pose", str(tmp_path / "missing.npy")]) == 2
    assert "pgat: error: `--reference-pose`: '" in capsys.readouterr().err
    np.save(tmp_path / "short.npy", reference_keypoints[:17])
    assert main([*base, "-o", str(tmp_path / "x.png"), "--reference-pose", str(tmp_path / "short.npy")]) == 2
    assert "pgat: error: `--reference-pose`: an array of shape (17, 2); expected shape (18, 2) or (18, 3)" in capsys.readouterr().err
    assert not (tmp_path / "x.png").exists()
