"""A PGAT repository deployed as it is: its handler.py and pipeline.py, imported by file path from a folder written
by save_pretrained (as serving toolkits import them), called with real base64 payloads; the same repository behind
a real HTTP server (`pgat serve`) on 127.0.0.1; every bad payload answered with its error object. The try-on task on the
embedded model (weights/pgat-synth-256, its flow/) with SynthHumans try-on triples, at the end."""

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
     "parameters.task", r"one of \['image', 'video', 'tryon'\], got the string 'gif'"),
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


# ---------------------------------------------------------------------------------------------
# the try-on task: the embedded model and its flow/, SynthHumans try-on triples (256²)
# ---------------------------------------------------------------------------------------------

EMBEDDED = Path(__file__).resolve().parents[1] / "weights" / "pgat-synth-256"


@pytest.fixture(scope="module")
def embedded():
    if not (EMBEDDED / "flow").is_dir():
        pytest.skip("the embedded model (weights/pgat-synth-256 with flow/) is not in this checkout")
    return EMBEDDED


@pytest.fixture(scope="module")
def tryon_serving(embedded):
    from pgat.serving import PGATServing

    return PGATServing(embedded, device="cpu", pose_estimator="blazepose")  # the estimator that ships with the checkout


@pytest.fixture(scope="module")
def tryon_pipes(embedded):
    """The try-on pipeline as a user loads it, per stage (what the served results are compared with)."""
    from pgat import PGATTryOnPipeline

    pipes = {}

    def get(resolution):
        if resolution not in pipes:
            pipes[resolution] = PGATTryOnPipeline.from_pretrained(embedded, resolution=resolution, pose_estimator=None)
        return pipes[resolution]

    return get


def _triple(i):
    """A SynthHumans try-on triple of the test split (256², unseen identities and poses) with its parsing masks."""
    from pgat.data import SynthHumansTryOn
    from pgat.data.synthetic import TOP

    item = SynthHumansTryOn(256, split="test", length=4)[i]
    return dict(item, person_mask=item["person_parsing"] == TOP, garment_mask=item["garment_parsing"] == TOP)


@pytest.fixture(scope="module")
def triple():
    return _triple(0)


def _tryon_inputs(t, masks=True, poses=True):
    inputs = {"person_image": b64(t["person"]), "garment_image": b64(t["garment"])}
    if masks:
        inputs.update(person_mask=b64(t["person_mask"].astype(np.uint8) * 255), garment_mask=b64(t["garment_mask"].astype(np.uint8) * 255))
    if poses:
        inputs.update(person_pose=t["person_keypoints"].tolist(), garment_pose=t["garment_keypoints"].tolist())
    return inputs


def _dilate(mask: np.ndarray, r: int) -> np.ndarray:
    import torch

    t = torch.from_numpy(mask.astype(np.float32))[None, None]
    return torch.nn.functional.max_pool2d(t, 2 * r + 1, stride=1, padding=r)[0, 0].numpy() > 0


def _pixels(text: str) -> np.ndarray:
    image = decode(text)
    assert image.format == "PNG"
    return np.asarray(image.convert("RGB"))


def test_tryon_keep_is_the_pipelines_image_and_the_person_photo_away_from_the_garment(tryon_serving, tryon_pipes, triple):
    from pgat.pipelines.tryon import default_seam

    out, status = tryon_serving.run({"inputs": _tryon_inputs(triple), "parameters": {"task": "tryon", "return_intermediates": True}})
    assert status == 200, out
    assert set(out) == {"image", "mode", "category", "resolution", "person_pose", "garment_pose", "intermediates"}
    assert out["mode"] == "keep" and out["category"] == "upper_body" and out["resolution"] == 256
    assert set(out["intermediates"]) == {"warped_garment", "garment_mask", "invented_mask"}
    image = _pixels(out["image"])
    assert image.shape == (256, 256, 3)
    # the pipeline called directly with the same photos, parsing masks and keypoints: the same pixels
    t = triple
    expected = tryon_pipes(256)(t["person"], t["garment"], t["person_mask"], t["garment_mask"], t["person_keypoints"], t["garment_keypoints"])
    assert expected.mode == "keep"
    np.testing.assert_array_equal(image, np.asarray(expected.images[0]))
    for name in ("warped_garment", "garment_mask", "invented_mask"):
        np.testing.assert_array_equal(_pixels(out["intermediates"][name]), np.asarray(getattr(expected, name)[0].convert("RGB")), err_msg=name)
    # far from the old and the new garment (their regions grown by the seam), the person photo to the bit
    new = _pixels(out["intermediates"]["garment_mask"])[..., 0] > 127
    grown = _dilate(t["person_mask"] | new, default_seam((256, 256)))
    assert (~grown).mean() > 0.5
    np.testing.assert_array_equal(image[~grown], t["person"][~grown])
    assert np.abs(image[new].astype(int) - t["person"][new].astype(int)).max() > 30  # and the garment did change
    # the poses used, as sent (in each photo's pixels)
    np.testing.assert_allclose(np.asarray(out["person_pose"])[:, :2], np.where(t["person_keypoints"] >= 0, t["person_keypoints"], -1), atol=0.006)
    np.testing.assert_allclose(np.asarray(out["garment_pose"])[:, :2], np.where(t["garment_keypoints"] >= 0, t["garment_keypoints"], -1), atol=0.006)

    # the keep-mode parameters reach the pipeline: a rigid warp with no flow, the old garment left where uncovered, a wider seam
    params = {"task": "tryon", "mode": "keep", "refine": False, "fill": "person", "seam": 5}
    other = tryon_serving({"inputs": _tryon_inputs(triple), "parameters": params})
    direct = tryon_pipes(256)(t["person"], t["garment"], t["person_mask"], t["garment_mask"], t["person_keypoints"], t["garment_keypoints"],
                              refine=False, fill="person", seam=5)
    np.testing.assert_array_equal(_pixels(other["image"]), np.asarray(direct.images[0]))
    assert set(other) == {"image", "mode", "category", "resolution", "person_pose", "garment_pose"}
    assert (_pixels(other["image"]) != image).any()


def test_tryon_category_reaches_the_pipeline(tryon_serving, tryon_pipes):
    """``parameters.category``: a bottom garment, with its masks, is the pipeline's ``category="lower_body"`` to the
    pixel, and not what the same request dresses as a top."""
    from pgat.data import SynthHumansTryOn
    from pgat.data.synthetic import BOTTOM

    item = SynthHumansTryOn(256, split="test", length=4, category="lower_body")[1]
    t = dict(item, person_mask=item["person_parsing"] == BOTTOM, garment_mask=item["garment_parsing"] == BOTTOM)
    out, status = tryon_serving.run({"inputs": _tryon_inputs(t), "parameters": {"task": "tryon", "category": "lower_body"}})
    assert status == 200, out
    assert set(out) == {"image", "mode", "category", "resolution", "person_pose", "garment_pose"} and out["category"] == "lower_body"
    direct = tryon_pipes(256)(t["person"], t["garment"], t["person_mask"], t["garment_mask"], t["person_keypoints"], t["garment_keypoints"],
                              category="lower_body")
    np.testing.assert_array_equal(_pixels(out["image"]), np.asarray(direct.images[0]))
    top = tryon_serving({"inputs": _tryon_inputs(t), "parameters": {"task": "tryon", "category": "upper_body"}})
    assert (_pixels(top["image"]) != _pixels(out["image"])).any()


def test_tryon_canonical_mode_at_128_and_estimated_poses(tryon_serving, tryon_pipes, triple):
    """Mode "canonical" on the 128² stage; then a request without poses: BlazePose's poses, returned and used as the
    pipeline uses them. (The automatic masks are the pipeline's, tests/test_tryon.py; 3.5 s a photo here.)"""
    t = triple
    out = tryon_serving({"inputs": _tryon_inputs(t), "parameters": {"task": "tryon", "mode": "canonical", "resolution": 128, "return_intermediates": True}})
    assert out["mode"] == "canonical" and out["resolution"] == 128, out
    assert set(out["intermediates"]) == {"warped_garment", "garment_mask", "canonical_person", "canonical_garment"}
    expected = tryon_pipes(128)(t["person"], t["garment"], t["person_mask"], t["garment_mask"], t["person_keypoints"], t["garment_keypoints"], mode="canonical")
    np.testing.assert_array_equal(_pixels(out["image"]), np.asarray(expected.images[0]))
    np.testing.assert_array_equal(_pixels(out["intermediates"]["canonical_person"]), np.asarray(expected.canonical_person[0]))
    assert _pixels(out["intermediates"]["canonical_garment"]).shape == (128, 128, 3)
    unrestored = tryon_serving({"inputs": _tryon_inputs(t), "parameters": {"task": "tryon", "mode": "canonical", "resolution": 128, "restore_pose": False}})
    assert _pixels(unrestored["image"]).shape == (128, 128, 3)

    t = _triple(2)  # one in both photos of which BlazePose finds the person (in triple 0's garment photo it finds nobody)
    auto, status = tryon_serving.run({"inputs": _tryon_inputs(t, poses=False), "parameters": {"task": "tryon"}})
    assert status == 200, auto
    person_kps, garment_kps = tryon_serving.estimate(Image.fromarray(t["person"])), tryon_serving.estimate(Image.fromarray(t["garment"]))
    np.testing.assert_allclose(auto["person_pose"], person_kps, atol=0.006)
    torso = [2, 5, 8, 11]  # shoulders and hips: what try-on needs
    assert (person_kps[torso, 2] > 0).all()  # (BlazePose may swap left and right on a synthetic person: compared by their centre)
    assert np.abs(person_kps[torso, :2].mean(0) - t["person_keypoints"][torso].mean(0)).max() < 6
    expected = tryon_pipes(256)(t["person"], t["garment"], t["person_mask"], t["garment_mask"], person_pose=person_kps, garment_pose=garment_kps)
    np.testing.assert_array_equal(_pixels(auto["image"]), np.asarray(expected.images[0]))


def test_tryon_over_http_through_the_repositorys_handler(embedded, tryon_serving, triple, monkeypatch):
    """`create_app` on the embedded repository (its own handler.py, as `pgat serve` loads it) with Starlette's TestClient."""
    from starlette.testclient import TestClient

    from pgat.serving import create_app

    monkeypatch.setenv("PGAT_POSE_ESTIMATOR", "blazepose")
    monkeypatch.setenv("PGAT_DEVICE", "cpu")
    client = TestClient(create_app(embedded))
    payload = {"inputs": _tryon_inputs(triple), "parameters": {"task": "tryon"}}
    response = client.post("/predict", json=payload)
    assert response.status_code == 200, response.text
    served = response.json()
    local = tryon_serving(payload)
    assert np.abs(_pixels(served["image"]).astype(int) - _pixels(local["image"]).astype(int)).max() <= 1
    assert served["mode"] == "keep" and served["person_pose"] == local["person_pose"]

    bad = client.post("/", json={"inputs": {**payload["inputs"], "person_pose": [[1, 2]] * 17}, "parameters": {"task": "tryon"}})
    assert bad.status_code == 400 and bad.json()["field"] == "inputs.person_pose" and "an array of shape (17, 2)" in bad.json()["error"]
    bad = client.post("/", json={"inputs": payload["inputs"], "parameters": {"task": "tryon", "mode": "paste"}})
    assert bad.status_code == 400 and bad.json() == {"error": "`parameters.mode` must be one of ['keep', 'canonical'], got the string 'paste'",
                                                     "field": "parameters.mode"}


def test_tryon_on_a_repository_without_flow_is_a_400_naming_it(repo, sample):
    from starlette.testclient import TestClient

    from pgat.serving import PGATServing, create_app

    reference, _ = sample
    serving = PGATServing(repo, device="cpu")
    payload = {"inputs": {"person_image": b64(reference), "garment_image": b64(reference)}, "parameters": {"task": "tryon"}}
    out, status = serving.run(payload)
    assert status == 400 and out["field"] == "parameters.task", out
    assert re.search(r"`parameters.task` is 'tryon', and this repository \('.*pgat-tiny'\) has no flow/ folder \(flow/config.json and its weights: the "
                     r"try-on appearance-flow network that PGATTryOnPipeline loads\); it serves the tasks \['image', 'video'\]", out["error"]), out
    response = TestClient(create_app(handler=serving)).post("/", json=payload)
    assert response.status_code == 400 and response.json() == out
    assert serving({"inputs": {"reference_image": b64(reference), "target_pose": sample[1].tolist()}, "parameters": {"resolution": 64}})["resolution"] == 64


PERSON, GARMENT, PMASK, GMASK, PPOSE, GPOSE = "PERSON", "GARMENT", "PMASK", "GMASK", "PPOSE", "GPOSE"  # replaced by the triple's
TRYON = {"task": "tryon"}
FULL = {"person_image": PERSON, "garment_image": GARMENT, "person_mask": PMASK, "garment_mask": GMASK, "person_pose": PPOSE, "garment_pose": GPOSE}
_HEAD_ONLY = [[120.0, 30.0]] + [[-1.0, -1.0]] * 17
BAD_TRYON = [
    ("missing person", {"inputs": {"garment_image": GARMENT}, "parameters": TRYON}, "inputs.person_image",
     r"^`inputs.person_image` is missing; task 'tryon' needs \['person_image', 'garment_image'\]$"),
    ("missing garment", {"inputs": {"person_image": PERSON}, "parameters": TRYON}, "inputs.garment_image", r"`inputs.garment_image` is missing"),
    ("reference_image in a try-on", {"inputs": {"reference_image": PERSON, "garment_image": GARMENT}, "parameters": TRYON}, "inputs.reference_image",
     r"unknown input `inputs.reference_image` for task 'tryon'; expected \['person_image', 'garment_image'\] and optionally \['person_mask', "
     r"'garment_mask', 'person_pose', 'garment_pose'\] \(`inputs.reference_image` is an input of task 'image'\)"),
    ("try-on inputs without the task", {"inputs": {"person_image": PERSON, "garment_image": GARMENT}}, "inputs.person_image",
     r"unknown input `inputs.person_image` for task 'image'.* \(`inputs.person_image` is an input of task 'tryon'\)"),
    ("person not base64", {"inputs": {**FULL, "person_image": "me.png"}, "parameters": TRYON}, "inputs.person_image", r"not valid base64"),
    ("garment base64 of text", {"inputs": {**FULL, "garment_image": base64.b64encode(b"hello world").decode()}, "parameters": TRYON},
     "inputs.garment_image", r"`inputs.garment_image`: 11 bytes, which is not an image"),
    ("truncated garment PNG", {"inputs": {**FULL, "garment_image": base64.b64encode(_png_bytes((64, 64))[:60]).decode()}, "parameters": TRYON},
     "inputs.garment_image", r"60 bytes, a truncated or corrupt PNG image"),
    ("person a number", {"inputs": {**FULL, "person_image": 3}, "parameters": TRYON}, "inputs.person_image", r"must be a base64 string of a PNG or JPEG image, got the number 3"),
    ("over-size person", {"inputs": {**FULL, "person_image": base64.b64encode(_png_bytes((4097, 1100))).decode()}, "parameters": TRYON},
     "inputs.person_image", r"4097x1100 image; this server takes images of at most 4096 pixels a side"),
    ("garment a GIF", {"inputs": {**FULL, "garment_image": _gif()}, "parameters": TRYON}, "inputs.garment_image", r"is a GIF image"),
    ("person mask of another size", {"inputs": {**FULL, "person_mask": base64.b64encode(_png_bytes((128, 96))).decode()}, "parameters": TRYON},
     "inputs.person_mask", r"^`inputs.person_mask` is a 128x96 image; expected a mask of the size of `inputs.person_image`, 256x256 \(width x height\), white inside$"),
    ("garment mask of another size", {"inputs": {**FULL, "garment_mask": base64.b64encode(_png_bytes((256, 255))).decode()}, "parameters": TRYON},
     "inputs.garment_mask", r"`inputs.garment_mask` is a 256x255 image; expected a mask of the size of `inputs.garment_image`, 256x256"),
    ("garment mask all black", {"inputs": {**FULL, "garment_mask": b64(np.zeros((256, 256), np.uint8))}, "parameters": TRYON},
     "inputs.garment_mask", r"is all black: it marks no garment"),
    ("mask not an image", {"inputs": {**FULL, "person_mask": [[1, 0], [0, 1]]}, "parameters": TRYON}, "inputs.person_mask", r"got a list of 2 items"),
    ("17 keypoints", {"inputs": {**FULL, "person_pose": [[10, 10]] * 17}, "parameters": TRYON}, "inputs.person_pose",
     r"`inputs.person_pose`: an array of shape \(17, 2\); expected shape \(18, 2\) or \(18, 3\)"),
    ("ragged garment pose", {"inputs": {**FULL, "garment_pose": [[10, 10]] * 17 + [[1]]}, "parameters": TRYON}, "inputs.garment_pose", r"not all numbers"),
    ("OpenPose without people", {"inputs": {**FULL, "garment_pose": {"version": 1.3}}, "parameters": TRYON}, "inputs.garment_pose", r"'people' list"),
    ("pose a number", {"inputs": {**FULL, "person_pose": 3}, "parameters": TRYON}, "inputs.person_pose", r"must be an OpenPose JSON object, an \(18, 2\|3\) list"),
    ("a pose without a torso", {"inputs": {**FULL, "person_pose": _HEAD_ONLY}, "parameters": TRYON}, "inputs.person_pose",
     r"`inputs.person_pose`: a pose of 1 points, of the torso's corners only none; expected both shoulders and both hips"),
    ("garment photo with nobody, no pose", {"inputs": {"person_image": PERSON, "garment_image": b64(np.full((256, 256, 3), 255, np.uint8)), "person_pose": PPOSE},
                                            "parameters": TRYON},
     "inputs.garment_image", r"`inputs.garment_image`: the 256x256 garment photo, in which no person was found; expected .* Or send the pose as `inputs.garment_pose`"),
    ("unknown mode", {"inputs": FULL, "parameters": {**TRYON, "mode": "canon"}}, "parameters.mode", r"must be one of \['keep', 'canonical'\], got the string 'canon'"),
    ("mode a number", {"inputs": FULL, "parameters": {**TRYON, "mode": 1}}, "parameters.mode", r"got the number 1"),
    ("unknown fill", {"inputs": FULL, "parameters": {**TRYON, "fill": "blur"}}, "parameters.fill",
     r"^`parameters.fill` must be one of \['inpaint', 'generator', 'person'\], got the string 'blur'$"),
    ("unknown category", {"inputs": FULL, "parameters": {**TRYON, "category": "shoes"}}, "parameters.category",
     r"^`parameters.category` must be one of \['upper_body', 'lower_body', 'full_body'\], got the string 'shoes'$"),
    ("category a number", {"inputs": FULL, "parameters": {**TRYON, "mode": "canonical", "category": 2}}, "parameters.category", r"got the number 2"),
    ("category on an image", {"inputs": {"reference_image": PERSON, "target_pose": PPOSE}, "parameters": {"category": "lower_body"}}, "parameters.category",
     r"unknown parameter `parameters.category` \(a parameter of task 'tryon'\) for task 'image'"),
    ("refine as text", {"inputs": FULL, "parameters": {**TRYON, "refine": "yes"}}, "parameters.refine", r"must be true or false, got the string 'yes'"),
    ("refine as a number", {"inputs": FULL, "parameters": {**TRYON, "refine": 1}}, "parameters.refine", r"must be true or false, got the number 1"),
    ("seam as text", {"inputs": FULL, "parameters": {**TRYON, "seam": "2"}}, "parameters.seam", r"whole number of pixels from 0 to 64 .*; got the string '2'"),
    ("seam negative", {"inputs": FULL, "parameters": {**TRYON, "seam": -1}}, "parameters.seam", r"got the number -1"),
    ("seam fractional", {"inputs": FULL, "parameters": {**TRYON, "seam": 2.5}}, "parameters.seam", r"got the number 2.5"),
    ("seam too wide", {"inputs": FULL, "parameters": {**TRYON, "seam": 65}}, "parameters.seam", r"got the number 65"),
    ("seam a boolean", {"inputs": FULL, "parameters": {**TRYON, "seam": True}}, "parameters.seam", r"got the boolean true"),
    ("seam with canonical", {"inputs": FULL, "parameters": {**TRYON, "mode": "canonical", "seam": 2}}, "parameters.seam",
     r"`parameters.seam` is only used with `parameters.mode` 'keep'; it has no effect with mode 'canonical'"),
    ("fill with canonical", {"inputs": FULL, "parameters": {**TRYON, "mode": "canonical", "fill": "inpaint"}}, "parameters.fill", r"only used with `parameters.mode` 'keep'"),
    ("restore_pose with keep", {"inputs": FULL, "parameters": {**TRYON, "restore_pose": False}}, "parameters.restore_pose",
     r"`parameters.restore_pose` is only used with `parameters.mode` 'canonical'; it has no effect with mode 'keep'"),
    ("restore_pose as text", {"inputs": FULL, "parameters": {**TRYON, "mode": "canonical", "restore_pose": "no"}}, "parameters.restore_pose", r"must be true or false"),
    ("return_intermediates as text", {"inputs": FULL, "parameters": {**TRYON, "return_intermediates": "all"}}, "parameters.return_intermediates", r"must be true or false"),
    ("image parameter on a try-on", {"inputs": FULL, "parameters": {**TRYON, "align_pose": True}}, "parameters.align_pose",
     r"unknown parameter `parameters.align_pose` \(a parameter of task 'image'\) for task 'tryon'"),
    ("try-on parameter on an image", {"inputs": {"reference_image": PERSON, "target_pose": PPOSE}, "parameters": {"mode": "keep"}}, "parameters.mode",
     r"unknown parameter `parameters.mode` \(a parameter of task 'tryon'\) for task 'image'"),
    ("stage the repository lacks", {"inputs": FULL, "parameters": {**TRYON, "resolution": 512}}, "parameters.resolution", r"one of \[64, 128, 256\]; got the number 512"),
]


@pytest.mark.parametrize("name, payload, field, message", BAD_TRYON, ids=[b[0] for b in BAD_TRYON])
def test_bad_tryon_payload_is_an_error_object(tryon_serving, triple, name, payload, field, message):
    t = triple
    values = {PERSON: b64(t["person"]), GARMENT: b64(t["garment"]), PMASK: b64(t["person_mask"].astype(np.uint8) * 255),
              GMASK: b64(t["garment_mask"].astype(np.uint8) * 255), PPOSE: t["person_keypoints"].tolist(), GPOSE: t["garment_keypoints"].tolist()}

    def fill(value):
        if isinstance(value, str) and value in values:
            return values[value]
        if isinstance(value, dict):
            return {k: fill(v) for k, v in value.items()}
        return value

    out, status = tryon_serving.run(fill(payload))
    assert status == 400 and set(out) == {"error", "field"}, out
    assert out["field"] == field, out
    assert re.search(message, out["error"]), out["error"]
