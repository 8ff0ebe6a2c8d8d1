"""A PGAT repository deployed as it is: its handler.py and pipeline.py, imported by file path from a folder written
by save_pretrained (as serving toolkits import them), called with real base64 payloads; the same repository behind
a real HTTP server (`pgat serve`) on 127.0.0.1; every bad payload answered with its error object."""

import base64
import importlib.util
import io
import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import imageio_ffmpeg
import numpy as np
import pytest
from PIL import Image

from pgat import PGATPipeline, PGATVideoPipeline
from pgat.hub import SERVING_FILES, write_serving_files
from pgat.pose import write_openpose_json

TEMPLATES = Path(__file__).resolve().parents[1] / "src" / "pgat" / "templates"


def b64(image, fmt="PNG") -> str:
    buffer = io.BytesIO()
    (image if isinstance(image, Image.Image) else Image.fromarray(image)).save(buffer, format=fmt)
    return base64.b64encode(buffer.getvalue()).decode()


def decode(text: str) -> Image.Image:
    return Image.open(io.BytesIO(base64.b64decode(text)))


def import_class(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(f"repo_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return getattr(module, name)


@pytest.fixture(scope="module")
def repo(tiny_repo):
    return tiny_repo  # conftest.py: save_pretrained of a 64² stage, then its grown 128² stage, into one folder


@pytest.fixture(scope="module")
def sample(portrait):
    return portrait  # conftest.py: a 100x128 reference and its target keypoints


@pytest.fixture(scope="module")
def handler(repo):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PGAT_POSE_ESTIMATOR", "blazepose")  # the estimator that ships with the checkout
        return import_class(repo / "handler.py", "EndpointHandler")(str(repo))


@pytest.fixture(scope="module")
def reference_pipe(repo):
    return PGATPipeline.from_pretrained(repo, resolution=64, pose_estimator="blazepose")


# ---------------------------------------------------------------------------------------------
# the files
# ---------------------------------------------------------------------------------------------


def test_saved_repository_carries_serving_files(repo, tmp_path):
    assert {"handler.py", "pipeline.py", "requirements.txt"} <= {p.name for p in repo.iterdir()}
    for name in ("handler.py", "pipeline.py"):
        assert (repo / name).read_text() == (TEMPLATES / name).read_text()
    requirements = [l for l in (repo / "requirements.txt").read_text().splitlines() if l and not l.startswith("#")]
    assert requirements == ["pgat>=0.1.0"]

    # a handler the user edited is kept; a generated one that went stale is brought up to date
    copy = tmp_path / "r"
    copy.mkdir()
    (copy / "handler.py").write_text("class EndpointHandler:  # mine\n    pass\n")
    (copy / "pipeline.py").write_text("# written by pgat.hub.write_serving_files, an older version\n")
    done = write_serving_files(copy)
    assert [p.name for p in done] == ["pipeline.py", "requirements.txt"]
    assert "# mine" in (copy / "handler.py").read_text()
    assert (copy / "pipeline.py").read_text() == (TEMPLATES / "pipeline.py").read_text()
    assert sorted(SERVING_FILES) == ["handler.py", "pipeline.py", "requirements.txt"]


# ---------------------------------------------------------------------------------------------
# handler.py and pipeline.py, imported by path
# ---------------------------------------------------------------------------------------------


def test_handler_returns_the_pipelines_png_in_the_reference_size(handler, reference_pipe, sample):
    reference, keypoints = sample
    payload = {"inputs": {"reference_image": b64(reference), "target_pose": keypoints.tolist()}, "parameters": {"resolution": 64}}
    out = handler(payload)
    assert set(out) == {"image", "target_pose", "resolution"} and out["resolution"] == 64
    image = decode(out["image"])
    assert image.format == "PNG" and image.size == (100, 128)
    expected = reference_pipe(reference, keypoints)
    np.testing.assert_array_equal(np.asarray(image.convert("RGB")), np.asarray(expected.images[0]))
    pose = np.asarray(out["target_pose"])
    assert pose.shape == (18, 3)
    np.testing.assert_allclose(pose, expected.target_poses[0], atol=0.006)
    # without `resolution`: the highest stage
    top = handler({"inputs": payload["inputs"]})
    assert top["resolution"] == 128 and decode(top["image"]).size == (100, 128)


def test_openpose_object_jpeg_and_align_pose(handler, reference_pipe, sample):
    reference, keypoints = sample
    # the pose drawn on a 200x256 canvas (twice the reference's size): mapped as PGATPipeline maps it
    big = keypoints.copy()
    ok = big[:, 0] >= 0
    big[ok] = (big[ok] + 0.5) * 2 - 0.5
    openpose = write_openpose_json(big, canvas_size=(200, 256))
    jpeg = b64(reference, "JPEG")
    out = handler({"inputs": {"reference_image": jpeg, "target_pose": openpose}, "parameters": {"resolution": 64}})
    np.testing.assert_allclose(np.asarray(out["target_pose"])[ok, :2], keypoints[ok], atol=0.01)
    jpeg_image = decode(jpeg).convert("RGB")
    np.testing.assert_array_equal(np.asarray(decode(out["image"]).convert("RGB")), np.asarray(reference_pipe(jpeg_image, openpose).images[0]))

    # align_pose onto the reference person's pose, sent as a list
    shrunk = keypoints.copy()
    shrunk[ok] = shrunk[ok] * 0.5 + 10
    aligned = handler({"inputs": {"reference_image": b64(reference), "target_pose": shrunk.tolist(), "reference_pose": keypoints.tolist()},
                       "parameters": {"resolution": 64, "align_pose": True}})
    expected = reference_pipe(reference, shrunk, reference_pose=keypoints, align_pose=True)
    np.testing.assert_allclose(np.asarray(aligned["target_pose"]), expected.target_poses[0], atol=0.006)
    np.testing.assert_array_equal(np.asarray(decode(aligned["image"]).convert("RGB")), np.asarray(expected.images[0]))


def test_pose_as_base64_photo_runs_the_estimator(handler, reference_pipe):
    """A real photo as the pose: BlazePose finds the astronaut, as PGATPipeline does with the same photo."""
    from skimage.data import astronaut

    photo = astronaut()
    out = handler({"inputs": {"reference_image": b64(photo, "JPEG"), "target_pose": b64(photo)}, "parameters": {"resolution": 64}})
    assert decode(out["image"]).size == (512, 512)
    expected = reference_pipe(decode(b64(photo, "JPEG")).convert("RGB"), photo)
    pose = np.asarray(out["target_pose"])
    assert (pose[:, 2] > 0).sum() >= 8  # head, neck, shoulders: the photo ends at her chest
    np.testing.assert_allclose(pose, expected.target_poses[0], atol=0.006)
    np.testing.assert_array_equal(np.asarray(decode(out["image"]).convert("RGB")), np.asarray(expected.images[0]))

    nobody = handler({"inputs": {"reference_image": b64(photo), "target_pose": b64(np.full((64, 64, 3), 255, np.uint8))}})
    assert nobody["field"] == "inputs.target_pose" and "in which no person was found" in nobody["error"]


def test_pipeline_py_gives_the_handlers_response(repo, handler, sample):
    reference, keypoints = sample
    pipe = import_class(repo / "pipeline.py", "PreTrainedPipeline")(str(repo))
    inputs = {"reference_image": b64(reference), "target_pose": keypoints.tolist()}
    out = pipe(inputs, resolution=64)
    assert out == handler({"inputs": inputs, "parameters": {"resolution": 64}})
    assert decode(out["image"]).size == (100, 128)
    assert pipe(inputs, resolution=64, strength=0.5) == {
        "error": "unknown parameter `parameters.strength` for task 'image'; expected some of ['task', 'resolution', 'align_pose']",
        "field": "parameters.strength",
    }


def test_video_task_returns_an_mp4(handler, repo, sample, tmp_path):
    reference, keypoints = sample
    ok = keypoints[:, 0] >= 0
    sequence = []
    for t in range(4):
        k = keypoints.copy()
        k[ok, 0] += t  # a person stepping right, a pixel a frame
        sequence.append(k.tolist())
    out = handler({"inputs": {"reference_image": b64(reference), "pose_sequence": sequence},
                   "parameters": {"task": "video", "fps": 10, "retarget": False, "smooth": False, "resolution": 64}})
    assert set(out) == {"video", "fps", "num_frames", "poses", "resolution"}
    assert out["num_frames"] == 4 and out["fps"] == 10.0
    np.testing.assert_allclose(np.asarray(out["poses"])[:, ok, 0], np.stack([np.asarray(s)[ok, 0] for s in sequence]), atol=0.006)
    path = tmp_path / "out.mp4"
    path.write_bytes(base64.b64decode(out["video"]))
    reader = imageio_ffmpeg.read_frames(str(path))
    meta = reader.__next__()
    frames = list(reader)
    assert meta["size"] == (100, 128) and meta["fps"] == 10 and meta["codec"] == "h264" and len(frames) == 4
    # the frames are the video pipeline's (H.264 is lossy: compared by mean error)
    expected = PGATVideoPipeline.from_pretrained(repo, resolution=64, pose_estimator=None)(
        reference, np.asarray(sequence, np.float32), fps=10, retarget=False, smooth=False, output_type="np").frames
    decoded = np.stack([np.frombuffer(f, np.uint8).reshape(128, 100, 3) for f in frames]) / 255.0
    assert np.abs(decoded - expected).mean() < 0.03

    # retargeting onto the reference person, whose pose is sent with it
    retargeted = handler({"inputs": {"reference_image": b64(reference), "pose_sequence": sequence, "reference_pose": keypoints.tolist()},
                          "parameters": {"task": "video", "resolution": 64}})
    assert retargeted["num_frames"] == 4 and retargeted["fps"] == 30.0


# ---------------------------------------------------------------------------------------------
# every bad payload: an error object naming the field, nothing raised
# ---------------------------------------------------------------------------------------------


def _png_bytes(size=(8, 8)):
    buffer = io.BytesIO()
    Image.new("RGB", size, (200, 10, 10)).save(buffer, format="PNG")
    return buffer.getvalue()


def _gif():
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64)).save(buffer, format="GIF")
    return base64.b64encode(buffer.getvalue()).decode()


REF = "REF"  # replaced by the sample's base64 PNG
POSE = "POSE"  # replaced by the sample's keypoints
BAD = [
    ("not an object", ["inputs"], "body", r"must be a JSON object"),
    ("no inputs", {"parameters": {"resolution": 64}}, "inputs", r"has no `inputs`"),
    ("unknown top-level key", {"inputs": {}, "options": {}}, "options", r"unknown key `options`"),
    ("inputs not an object", {"inputs": "a photo"}, "inputs", r"`inputs` must be an object"),
    ("missing reference", {"inputs": {"target_pose": POSE}}, "inputs.reference_image", r"`inputs.reference_image` is missing"),
    ("missing pose", {"inputs": {"reference_image": REF}}, "inputs.target_pose", r"`inputs.target_pose` is missing"),
    ("unknown input", {"inputs": {"reference_image": REF, "target_pose": POSE, "mask": REF}}, "inputs.mask", r"unknown input `inputs.mask`"),
    ("not base64", {"inputs": {"reference_image": "a photo of me!", "target_pose": POSE}}, "inputs.reference_image", r"not valid base64"),
    ("base64 of text", {"inputs": {"reference_image": base64.b64encode(b"hello world").decode(), "target_pose": POSE}},
     "inputs.reference_image", r"`inputs.reference_image`: 11 bytes, which is not an image \(it starts with b'hello wo'\); expected a PNG, JPEG"),
    ("a GIF", {"inputs": {"reference_image": _gif(), "target_pose": POSE}}, "inputs.reference_image", r"is a GIF image; expected .*PNG or JPEG"),
    ("truncated PNG", {"inputs": {"reference_image": base64.b64encode(_png_bytes((64, 64))[:60]).decode(), "target_pose": POSE}},
     "inputs.reference_image", r"60 bytes, a truncated or corrupt PNG image"),
    ("reference a number", {"inputs": {"reference_image": 7, "target_pose": POSE}}, "inputs.reference_image", r"got the number 7"),
    ("over-size image", {"inputs": {"reference_image": base64.b64encode(_png_bytes((4097, 1100))).decode(), "target_pose": POSE}},
     "inputs.reference_image", r"4097x1100 image; this server takes images of at most 4096 pixels a side"),
    ("too small an image", {"inputs": {"reference_image": base64.b64encode(_png_bytes((16, 16))).decode(), "target_pose": POSE}},
     "inputs.reference_image", r"`inputs.reference_image`: a 16x16 PNG image; expected at least 32 pixels on its shorter side"),
    ("17 keypoints", {"inputs": {"reference_image": REF, "target_pose": [[10, 10]] * 17}}, "inputs.target_pose", r"an array of shape \(17, 2\); expected shape \(18, 2\) or \(18, 3\)"),
    ("4 numbers a keypoint", {"inputs": {"reference_image": REF, "target_pose": [[10, 10, 1, 1]] * 18}}, "inputs.target_pose", r"an array of shape \(18, 4\); expected"),
    ("ragged keypoints", {"inputs": {"reference_image": REF, "target_pose": [[10, 10]] * 17 + [[1]]}}, "inputs.target_pose", r"a list of 18 items that is not all numbers; expected an \(18, 2\) or \(18, 3\) array of numbers"),
    ("OpenPose without people", {"inputs": {"reference_image": REF, "target_pose": {"version": 1.3}}}, "inputs.target_pose", r"'people' list"),
    ("OpenPose with 17 points", {"inputs": {"reference_image": REF, "target_pose": {"people": [{"pose_keypoints_2d": [1.0] * 51}]}}},
     "inputs.target_pose", r"has 51 values; expected OpenPose JSON: an object with a 'people' list, each person with 'pose_keypoints_2d' of 54"),
    ("pose a number", {"inputs": {"reference_image": REF, "target_pose": 3}}, "inputs.target_pose", r"must be an OpenPose JSON object, an \(18, 2\|3\) list"),
    ("unknown parameter", {"inputs": {"reference_image": REF, "target_pose": POSE}, "parameters": {"guidance_scale": 7}},
     "parameters.guidance_scale", r"unknown parameter `parameters.guidance_scale` for task 'image'"),
    ("video parameter on an image", {"inputs": {"reference_image": REF, "target_pose": POSE}, "parameters": {"fps": 7}},
     "parameters.fps", r"`parameters.fps` \(a parameter of task 'video'\)"),
    ("missing stage", {"inputs": {"reference_image": REF, "target_pose": POSE}, "parameters": {"resolution": 512}},
     "parameters.resolution", r"one of \[64, 128\]; got the number 512"),
    ("resolution as text", {"inputs": {"reference_image": REF, "target_pose": POSE}, "parameters": {"resolution": "64"}},
     "parameters.resolution", r"got the string '64'"),
    ("align_pose as text", {"inputs": {"reference_image": REF, "target_pose": POSE}, "parameters": {"align_pose": "yes"}},
     "parameters.align_pose", r"must be true or false, got the string 'yes'"),
    ("reference_pose without align_pose", {"inputs": {"reference_image": REF, "target_pose": POSE, "reference_pose": POSE}},
     "inputs.reference_pose", r"only used with `parameters.align_pose`"),
    ("unknown task", {"inputs": {"reference_image": REF, "target_pose": POSE}, "parameters": {"task": "gif"}},
     "parameters.task", r"one of \['image', 'video'\], got the string 'gif'"),
    ("too many frames", {"inputs": {"reference_image": REF, "pose_sequence": [POSE] * 121}, "parameters": {"task": "video"}},
     "inputs.pose_sequence", r"has 121 poses; this server makes videos of at most 120 frames"),
    # one (18, 2) pose where a list of poses belongs: its first "pose" is a single [x, y]
    ("one pose as the sequence", {"inputs": {"reference_image": REF, "pose_sequence": POSE}, "parameters": {"task": "video", "retarget": False}},
     "inputs.pose_sequence[0]", r"`inputs.pose_sequence\[0\]`: an array of shape \(2,\); expected shape \(18, 2\) or \(18, 3\)"),
    ("empty sequence", {"inputs": {"reference_image": REF, "pose_sequence": []}, "parameters": {"task": "video"}},
     "inputs.pose_sequence", r"non-empty list of poses"),
    ("a bad frame", {"inputs": {"reference_image": REF, "pose_sequence": [POSE, [[1, 2]] * 5]}, "parameters": {"task": "video", "retarget": False}},
     "inputs.pose_sequence[1]", r"`inputs.pose_sequence\[1\]`: an array of shape \(5, 2\)"),
    ("fps out of range", {"inputs": {"reference_image": REF, "pose_sequence": [POSE]}, "parameters": {"task": "video", "fps": 0}},
     "parameters.fps", r"number in \(0, 240\], got the number 0"),
    ("target_pose in a video", {"inputs": {"reference_image": REF, "target_pose": POSE}, "parameters": {"task": "video"}},
     "inputs.target_pose", r"unknown input `inputs.target_pose` for task 'video'; expected \['reference_image', 'pose_sequence'\]"),
]


def _fill(value, ref, pose):
    if value == REF:
        return ref
    if value == POSE:
        return pose
    if isinstance(value, dict):
        return {k: _fill(v, ref, pose) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill(v, ref, pose) for v in value]
    return value


@pytest.mark.parametrize("name, payload, field, message", BAD, ids=[b[0] for b in BAD])
def test_bad_payload_is_an_error_object(handler, sample, name, payload, field, message):
    reference, keypoints = sample
    out = handler(_fill(payload, b64(reference), keypoints.tolist()))
    assert set(out) == {"error", "field"}, out
    assert out["field"] == field, out
    assert re.search(message, out["error"]), out["error"]


def test_a_failure_of_the_server_is_reported_not_raised(handler, sample, monkeypatch):
    """A fault injected into the server's own work (after the model ran): reported with no field, not raised."""
    import pgat.serving

    reference, keypoints = sample

    def no_space_left(image):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(pgat.serving, "encode_png", no_space_left)
    out = handler({"inputs": {"reference_image": b64(reference), "target_pose": keypoints.tolist()}, "parameters": {"resolution": 64}})
    assert out == {"error": "internal error (OSError): [Errno 28] No space left on device", "field": None}
    monkeypatch.undo()
    assert "image" in handler({"inputs": {"reference_image": b64(reference), "target_pose": keypoints.tolist()}, "parameters": {"resolution": 64}})


# ---------------------------------------------------------------------------------------------
# a real HTTP server
# ---------------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _request(url, body=None, raw=None):
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=120) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


@pytest.fixture(scope="module")
def server(repo, tmp_path_factory):
    """`pgat serve REPO` in its own process, on a free port of 127.0.0.1."""
    port = _free_port()
    env = dict(os.environ, OMP_NUM_THREADS="1", PGAT_DEVICE="cpu")
    log = tmp_path_factory.mktemp("server") / "log.txt"
    with open(log, "w") as f:  # a file, not a pipe: a pipe nobody reads would block the server once full
        proc = subprocess.Popen([sys.executable, "-m", "pgat.cli", "serve", str(repo), "--port", str(port), "--log-level", "warning"],
                                env=env, stdout=f, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            if proc.poll() is not None:
                pytest.fail(f"pgat serve exited with {proc.returncode}: {log.read_text()[-3000:]}")
            try:
                if _request(url + "/health") == (200, {"status": "ok"}):
                    break
            except (urllib.error.URLError, ConnectionError):
                pass
            if time.monotonic() > deadline:
                pytest.fail("pgat serve did not answer /health within 180 s")
            time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_http_server_serves_the_repository(server, handler, sample):
    reference, keypoints = sample
    payload = {"inputs": {"reference_image": b64(reference), "target_pose": keypoints.tolist()}, "parameters": {"resolution": 64}}
    status, out = _request(server + "/", payload)
    assert status == 200
    image = decode(out["image"])
    assert image.format == "PNG" and image.size == (100, 128)
    local = handler(payload)
    # another process, other thread counts: equal up to a rounding step
    assert np.abs(np.asarray(image, np.int16) - np.asarray(decode(local["image"]), np.int16)).max() <= 1
    np.testing.assert_allclose(out["target_pose"], local["target_pose"])
    assert _request(server + "/predict", payload)[0] == 200

    status, error = _request(server + "/", {"inputs": {"reference_image": b64(reference), "target_pose": [[1, 1]] * 17}})
    assert status == 400 and error["field"] == "inputs.target_pose" and "an array of shape (17, 2)" in error["error"]
    status, error = _request(server + "/", raw=b"reference=me.png")
    assert status == 400 and error["field"] == "body" and "not JSON" in error["error"]


# ---------------------------------------------------------------------------------------------
# a model that takes the reference person's own pose (DESIGN.md §1b)
# ---------------------------------------------------------------------------------------------


def test_pose_aware_model_gets_the_reference_pose(pose_aware_repo, sample, reference_keypoints, counting_estimator):
    from pgat.serving import PGATServing

    reference, keypoints = sample
    estimator = counting_estimator(reference_keypoints)
    serving = PGATServing(pose_aware_repo, device="cpu", pose_estimator=estimator)
    local = PGATPipeline.from_pretrained(pose_aware_repo, pose_estimator=None)
    ok = reference_keypoints[:, 0] >= 0
    moved = reference_keypoints.copy()
    moved[ok] += (12.0, -9.0)
    inputs = {"reference_image": b64(reference), "target_pose": keypoints.tolist()}

    # sent: used as it is, returned, nothing estimated
    given, status = serving.run({"inputs": {**inputs, "reference_pose": reference_keypoints.tolist()}})
    assert status == 200 and set(given) == {"image", "target_pose", "resolution", "reference_pose"} and len(estimator.calls) == 0
    np.testing.assert_allclose(np.asarray(given["reference_pose"])[ok, :2], reference_keypoints[ok], atol=0.006)
    expected = local(reference, keypoints, reference_pose=reference_keypoints).images[0]
    np.testing.assert_array_equal(np.asarray(decode(given["image"]).convert("RGB")), np.asarray(expected))
    other = serving({"inputs": {**inputs, "reference_pose": moved.tolist()}})
    assert np.abs(np.asarray(decode(other["image"]), float) - np.asarray(decode(given["image"]), float)).mean() > 2  # it steers the output
    # OpenPose JSON works too (here on a canvas twice the reference's size)
    doubled = np.where(reference_keypoints >= 0, (reference_keypoints + 0.5) * 2 - 0.5, -1.0)
    canvas = serving({"inputs": {**inputs, "reference_pose": write_openpose_json(doubled, canvas_size=(200, 256))}})
    np.testing.assert_allclose(np.asarray(canvas["reference_pose"])[ok, :2], reference_keypoints[ok], atol=0.01)

    # not sent: estimated from the reference image, once
    estimated = serving({"inputs": inputs})
    assert len(estimator.calls) == 1
    assert estimated["image"] == given["image"] and estimated["reference_pose"] == given["reference_pose"]

    # video: the same pose, for every frame
    sequence = [keypoints.tolist()] * 3
    video, status = serving.run({"inputs": {"reference_image": b64(reference), "pose_sequence": sequence, "reference_pose": reference_keypoints.tolist()},
                                 "parameters": {"task": "video", "retarget": False, "smooth": False}})
    assert status == 200 and video["num_frames"] == 3 and len(estimator.calls) == 1
    assert video["reference_pose"] == given["reference_pose"]
    video = serving({"inputs": {"reference_image": b64(reference), "pose_sequence": sequence}, "parameters": {"task": "video", "retarget": False}})
    assert video["num_frames"] == 3 and len(estimator.calls) == 2 and video["reference_pose"] == given["reference_pose"]


def test_pose_aware_model_and_a_photo_with_nobody_is_a_400(pose_aware_repo, sample, counting_estimator):
    from starlette.testclient import TestClient

    from pgat.serving import PGATServing, create_app

    reference, keypoints = sample
    serving = PGATServing(pose_aware_repo, device="cpu", pose_estimator=counting_estimator(None))
    for payload in (
        {"inputs": {"reference_image": b64(reference), "target_pose": keypoints.tolist()}},
        {"inputs": {"reference_image": b64(reference), "pose_sequence": [keypoints.tolist()] * 2}, "parameters": {"task": "video", "retarget": False}},
    ):
        out, status = serving.run(payload)
        assert status == 400 and out["field"] == "inputs.reference_image", out
        assert re.search(r"`inputs.reference_image`: the 100x128 reference photo, in which no person was found; expected a photo of one person for this "
                         r"model .* Or send the pose as `inputs.reference_pose`", out["error"]), out
    response = TestClient(create_app(handler=serving)).post("/", json=payload)
    assert response.status_code == 400 and response.json()["field"] == "inputs.reference_image"
