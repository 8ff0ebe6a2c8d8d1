"""Issue 21, "Bad input at every door": a property-based fuzzer of every way an input reaches PGAT.

The doors: the pipeline (``PGATPipeline.from_pretrained("weights/pgat-synth-256")(reference_image, target_pose)``),
the CLI (``pgat transfer REF --pose POSE -o OUT``, in-process and as real processes), the JSON serving handler
(``PGATServing(...).run(payload)`` and its HTTP app) and the running Space (``/pose_transfer`` through gradio_client).

The inputs come from tests/fuzz_strategies.py: invalid by construction, one class at a time (each test is
parametrized by the class, so a failure says which class got through); valid (real person photos, real poses); and
random mutations of valid inputs ("anything goes"), whose validity is unknown.

Properties, at every door:

- no traceback reaches the user and no process dies;
- every refusal names its argument: the pipeline raises `pgat.inputs.InputError` with ``argument`` set (and
  `MissingInputError`, a `FileNotFoundError`, for a missing file); the CLI exits 2 with one ``pgat: error:`` line on
  stderr naming REF (or its file name), ``--pose`` or ``--reference-pose``; serving answers 400 with
  ``{"error": ..., "field": "inputs.<argument>"}`` (413 for a too-large body in the HTTP app), never 500; the Space
  raises an AppError whose message names the input, and keeps serving;
- nothing invalid produces an output (pipeline: images; CLI: the OUT file; serving: ``image``; Space: a result);
- valid inputs do produce an output of the reference's size;
- anything goes: an output, or a refusal that names an argument; never a traceback or a 500.

Budgets: every property runs as ``[ci]`` (few examples, ``derandomize=True``: the same examples on every run) and as
``[long]`` (``@pytest.mark.slow``: ``PGAT_FUZZ_SCALE`` times as many, default 25, randomized; hypothesis prints a
``@reproduce_failure`` blob for what it finds). ``pytest tests/test_fuzz_inputs.py -m slow`` runs the long ones.
The module runs torch on one thread, and starts the Space server and the real CLI processes in the background at its
start (when tests that need them are selected), so that their seconds of imports overlap the in-process tests.
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import traceback
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st
from PIL import Image

import fuzz_strategies as fs
from fuzz_strategies import BAD_IMAGES, BAD_POSES, CONTRACT, EMBEDDED, EXAMPLES, JSON_FILE_CLASSES, Case


def _load_screenshots():
    """spaces/screenshots.py, whose ``serve`` runs the Space as users do (and as test_space.py's ``space`` fixture does)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("space_screenshots", EXAMPLES.parent / "screenshots.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


screenshots = _load_screenshots()

REFERENCE = EXAMPLES / "person-1.png"  # the valid reference of the tests of bad poses
TARGET = EXAMPLES / "poses" / "pose-03.json"  # the valid target pose (256x256 canvas) of the tests of bad images
ARGUMENTS = ("reference_image", "target_pose", "reference_pose")
FIELDS = {a: f"inputs.{a}" for a in ARGUMENTS}
CLI_NAMES = {"target_pose": ("--pose",), "reference_pose": ("--reference-pose",)}  # reference_image: "REF" or its file name
# the Space names the pose JSON upload "Target pose" or "Pose JSON" (not "OpenPose JSON", the format, nor "Reference pose JSON")
SPACE_NAMES = {"reference_image": r"reference photo|reference_image", "target_pose": r"target[ _]pose|(?<!reference )\bpose json\b",
               "pose_photo": r"target[ _]pose|pose photo", "reference_pose": r"reference[ _]pose"}
# what native libraries may print on stderr by themselves (absl's logging preamble): not the CLI's output. TFLite's
# "Created XNNPACK delegate" line is silenced by pgat.pose_estimation, so it is not allowed here.
NATIVE_NOISE = re.compile(r"^(WARNING: All log messages before absl::InitializeLog\(\).*|[IWE]0000 .*)$")

BUDGETS = [pytest.param("ci", id="ci"), pytest.param("long", id="long", marks=pytest.mark.slow)]
LONG_SCALE = float(os.environ.get("PGAT_FUZZ_SCALE", "25"))
SERVING_IMAGE_CLASSES = sorted(k for k in BAD_IMAGES if k != "missing-file")
# serving takes poses as JSON values: no file to be missing, no .npy, no JSON syntax (the HTTP test sends bad bodies)
SERVING_POSE_CLASSES = sorted(k for k in BAD_POSES if k not in ("missing-file", "npy-junk", "json-syntax"))


def fuzz(budget: str, examples: int, *strategies, explicit=(), shrink: bool = True):
    """Run the decorated check now, on ``examples`` drawn examples (``[long]``: `LONG_SCALE` times as many, randomized)
    after the ``explicit`` ones."""

    def run(check):
        n = examples if budget == "ci" else max(examples + 1, int(examples * LONG_SCALE))
        phases = [Phase.explicit, Phase.reuse, Phase.generate] + ([Phase.shrink] if shrink else [])
        test = given(*strategies)(check)
        for ex in explicit:
            test = example(*ex)(test) if isinstance(ex, tuple) else example(ex)(test)
        settings(max_examples=n, deadline=None, derandomize=budget == "ci", database=None, phases=phases,
                 suppress_health_check=list(HealthCheck), print_blob=budget != "ci", report_multiple_bugs=True)(test)()
        return check

    return run


# ---------------------------------------------------------------------------------------------
# materialising a drawn input for a door
# ---------------------------------------------------------------------------------------------


class Unsupported(Exception):
    """This input has no form at this door (e.g. a missing file in a JSON payload)."""


@pytest.fixture(scope="module")
def scratch(tmp_path_factory):
    """``with scratch() as d``: a fresh empty folder for one example's files, removed after it."""
    root = tmp_path_factory.mktemp("fuzz")
    count = [0]

    @contextlib.contextmanager
    def make():
        count[0] += 1
        d = root / f"x{count[0]:05d}"
        d.mkdir()
        try:
            yield d
        finally:
            shutil.rmtree(d, ignore_errors=True)

    return make


def png_of(image) -> bytes:
    """An in-memory image (PIL, uint8 / [0, 1] float array, [-1, 1] tensor) as PNG bytes."""
    if isinstance(image, torch.Tensor):
        image = ((image.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(1, 2, 0).numpy()
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8:
            image = (np.clip(image, 0, 1) * 255).round().astype(np.uint8)
        image = Image.fromarray(image)
    return fs.encode(image, "PNG")


def image_file(case: Case, d: Path, stem: str = "ref") -> Path:
    if case.form == "file":
        path = d / f"{stem}{case.suffix}"
        path.write_bytes(case.value)
        return path
    if case.form == "missing-file":
        return d / "absent" / f"{case.value}{case.suffix}"
    if case.form == "image":
        path = d / f"{stem}.png"
        path.write_bytes(png_of(case.value))
        return path
    raise Unsupported(case.form)


def image_argument(case: Case, d: Path, stem: str = "ref"):
    """The pipeline's form of an image: a path for files, the object itself in memory."""
    return case.value if case.form == "image" else str(image_file(case, d, stem))


def image_b64(case: Case) -> str:
    if case.form == "file":
        return base64.b64encode(case.value).decode("ascii")
    if case.form == "image":
        return base64.b64encode(png_of(case.value)).decode("ascii")
    raise Unsupported(case.form)


def pose_argument(case: Case, d: Path, stem: str = "pose"):
    """The pipeline's form of a pose: the value itself, or the path of its file."""
    if case.form in ("value", "image"):
        return case.value
    if case.form == "json-file":
        path = d / f"{stem}.json"
        path.write_text(case.text, encoding="utf-8")
        return str(path)
    if case.form == "npy-file":
        path = d / f"{stem}.npy"
        np.save(path, case.value, allow_pickle=case.value.dtype == object)
        return str(path)
    return str(image_file(case, d, stem))


def pose_file(case: Case, d: Path, stem: str = "pose", json_only: bool = False) -> Path:
    """A pose as the file a CLI argument or an upload names (``json_only``: the Space's .json uploads)."""
    if case.form == "value":
        value = case.value
        if isinstance(value, torch.Tensor):
            value = value.numpy()
        if isinstance(value, np.ndarray) and not json_only:
            path = d / f"{stem}.npy"
            np.save(path, value, allow_pickle=value.dtype == object)
            return path
        if isinstance(value, np.ndarray):
            value = value.tolist()
        path = d / f"{stem}.json"
        path.write_text(fs.json_text(value), encoding="utf-8")
        return path
    if json_only and (case.form in ("npy-file", "image", "missing-file") or (case.form == "file" and case.suffix != ".json")):
        raise Unsupported(case.form)
    if case.form == "image":
        path = d / f"{stem}.png"
        path.write_bytes(png_of(case.value))
        return path
    return Path(pose_argument(case, d, stem))


def pose_payload(case: Case):
    """A pose as a JSON value of a serving request."""
    if case.form == "value":
        value = case.value
        return value.tolist() if isinstance(value, (np.ndarray, torch.Tensor)) else value
    if case.form == "json-file":
        try:
            return json.loads(case.text)
        except ValueError:
            raise Unsupported("not JSON") from None
    if case.form == "npy-file":
        return case.value.tolist()
    if case.form in ("file", "image") and case.suffix not in (".json", ".npy"):
        return image_b64(case)  # a photo of someone in the pose
    raise Unsupported(case.form)


def assume_supported(fn, *args, **kwargs):
    from hypothesis import assume

    try:
        return fn(*args, **kwargs)
    except Unsupported:
        assume(False)


# ---------------------------------------------------------------------------------------------
# the properties
# ---------------------------------------------------------------------------------------------


def describe(error: BaseException) -> str:
    """An exception as a user would see its traceback's last line, and where it was raised."""
    frames = traceback.extract_tb(error.__traceback__)
    where = f" (raised at {Path(frames[-1].filename).name}:{frames[-1].lineno} in {frames[-1].name})" if frames else ""
    return f"{type(error).__name__}: {str(error)[:400]}{where}"


class DecodedOverLimit(BaseException):
    """Raised by `decoding_guard` when pixels of an image above the pixel limit are decoded (a BaseException, so that
    no `except Exception` of the code under test turns it into a refusal)."""


@contextlib.contextmanager
def decoding_guard():
    """Fail when PIL decodes an image of more than `max_image_pixels()` pixels: the limit is checked from the header,
    before decoding."""
    from PIL import ImageFile

    original = ImageFile.ImageFile.load
    limit = fs.max_image_pixels()

    def load(self, *args, **kwargs):
        w, h = self.size
        if w * h > limit:
            raise DecodedOverLimit(f"{w}x{h} {self.format}")
        return original(self, *args, **kwargs)

    ImageFile.ImageFile.load = load
    try:
        yield
    finally:
        ImageFile.ImageFile.load = original


def check_input_error(error: BaseException, argument: str, case: Case) -> None:
    from pgat.inputs import InputError, MissingInputError

    assert isinstance(error, InputError), f"{case!r}: {describe(error)} -- not a pgat.inputs.InputError naming `{argument}`"
    named = re.split(r"[\[.]", str(error.argument), maxsplit=1)[0]
    assert named == argument, f"{case!r}: the InputError names `{error.argument}`, not `{argument}`: {error}"
    assert str(error).startswith(f"`{error.argument}`"), f"{case!r}: the message does not start with `{error.argument}`: {error}"
    for attr in ("received", "expected"):
        value = getattr(error, attr, None)
        assert isinstance(value, str) and value.strip(), f"{case!r}: InputError.{attr} is {value!r}"
    assert "Traceback" not in str(error)
    if case.form == "missing-file":
        assert isinstance(error, MissingInputError) and isinstance(error, FileNotFoundError), \
            f"{case!r}: a missing file gave {type(error).__name__}, not MissingInputError (a FileNotFoundError): {error}"


def pipeline_refuses(pipe, case: Case, argument: str, **call) -> None:
    try:
        with decoding_guard():
            out = pipe(**call)
    except DecodedOverLimit as e:
        raise AssertionError(f"{case!r}: the pixels of a {e} image were decoded before the pixel limit was checked") from None
    except Exception as e:
        check_input_error(e, argument, case)
    else:
        raise AssertionError(f"{case!r}: an invalid `{argument}` produced {len(out.images)} image(s) of size "
                             f"{[im.size for im in out.images]} instead of an InputError")


def pipeline_renders(pipe, case: Case, size, **call) -> None:
    try:
        out = pipe(**call)
    except Exception as e:
        raise AssertionError(f"{case!r}: a valid input was refused: {describe(e)}") from None
    assert len(out.images) == 1 and out.images[0].size == size, f"{case!r}: {[im.size for im in out.images]}, not one {size} image"
    assert np.asarray(out.target_poses).shape == (1, 18, 3)


def run_cli(capsys, args):
    """``pgat.cli.main(args)`` in-process: (exit status, exception that escaped or None, stdout, stderr). The warnings a
    ``pgat`` process would print (Python's default filters) are added to stderr, as they would be there."""
    import warnings

    from pgat import cli

    capsys.readouterr()
    error = None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        for category in (DeprecationWarning, PendingDeprecationWarning, ImportWarning, ResourceWarning):
            warnings.filterwarnings("ignore", category=category)
        try:
            rc = cli.main(args)
        except SystemExit as e:
            rc = e.code
        except Exception as e:  # what would be a traceback for the user
            rc, error = None, e
    captured = capsys.readouterr()
    printed = "".join(warnings.formatwarning(w.message, w.category, w.filename, w.lineno, w.line) for w in caught)
    return rc, error, captured.out, captured.err + printed


def error_lines(stderr: str):
    return [line for line in stderr.splitlines() if line.strip() and not NATIVE_NOISE.match(line.strip())]


def check_cli_refusal(rc, error, stdout, stderr, out: Path, names, case: Case) -> None:
    assert error is None, f"{case!r}: `pgat transfer` let {describe(error)} escape (a traceback for the user)"
    assert "Traceback" not in stderr, f"{case!r}: a traceback on stderr: {stderr[-1500:]}"
    assert rc == 2, (f"{case!r}: exit status {rc!r}, not 2{' and OUT was written' if out.exists() else ''}; "
                     f"stdout {stdout[-300:]!r}; stderr {stderr[-500:]!r}")
    lines = error_lines(stderr)
    assert len(lines) == 1 and lines[0].startswith("pgat: error:"), f"{case!r}: stderr is not one 'pgat: error:' line: {stderr!r}"
    assert any(n in lines[0] for n in names), f"{case!r}: the error names none of {list(names)}: {lines[0]}"
    assert not out.exists(), f"{case!r}: refused, but OUT ({out.name}) was written"


def check_cli_output(rc, error, stdout, stderr, out: Path, size, case: Case) -> None:
    assert error is None, f"{case!r}: `pgat transfer` let {describe(error)} escape"
    assert rc == 0, f"{case!r}: a valid input was refused: exit status {rc!r}: {stderr[-500:]}"
    with Image.open(out) as im:
        assert im.size == size, f"{case!r}: OUT is {im.size}, not {size}"


def check_serving_refusal(body, status, field: str, case: Case) -> None:
    assert status != 500, f"{case!r}: 500: {str(body)[:500]}"
    assert status == 400, f"{case!r}: status {status}, not 400; body {fs.preview(body)}"
    assert isinstance(body, dict) and "image" not in body and "video" not in body, f"{case!r}: a refusal with an output: {sorted(body)}"
    assert body.get("field") == field, f"{case!r}: field {body.get('field')!r}, not {field!r}: {body.get('error')}"
    message = body.get("error")
    assert isinstance(message, str) and message.strip() and "Traceback" not in message, f"{case!r}: error {message!r}"
    json.dumps(body, allow_nan=False)  # what an HTTP response carries


def serving_refuses(serving, payload, field: str, case: Case) -> None:
    try:
        with decoding_guard():
            body, status = serving.run(payload)
    except DecodedOverLimit as e:
        raise AssertionError(f"{case!r}: the pixels of a {e} image were decoded before the pixel limit was checked") from None
    check_serving_refusal(body, status, field, case)


def check_serving_output(body, status, size, case: Case) -> None:
    assert status == 200, f"{case!r}: a valid input was refused: {status} {body}"
    with Image.open(io.BytesIO(base64.b64decode(body["image"]))) as im:
        assert im.size == size, f"{case!r}: {im.size}, not {size}"


# ---------------------------------------------------------------------------------------------
# fixtures
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One torch / OpenMP thread for this module and the processes it starts (the CLI runs, the Space): the model is
    small, and two threads on a busy 2-core machine thrash (measured 3.3 s a call against 0.3 s)."""
    threads, env = torch.get_num_threads(), os.environ.get("OMP_NUM_THREADS")
    torch.set_num_threads(1)
    os.environ["OMP_NUM_THREADS"] = "1"
    yield
    torch.set_num_threads(threads)
    if env is None:
        os.environ.pop("OMP_NUM_THREADS", None)
    else:
        os.environ["OMP_NUM_THREADS"] = env


class BackgroundSpace(threading.Thread):
    """`screenshots.serve` (the same ``python spaces/app.py`` server, environment and teardown as test_space.py's
    ``space`` fixture) entered in a thread, so that the server starts while the other tests run."""

    def __init__(self, tmp: Path):
        super().__init__(daemon=True)
        self.tmp, self.url, self.error = tmp, None, None
        self.ready, self.stop = threading.Event(), threading.Event()

    def run(self):
        env = {"GRADIO_EXAMPLES_CACHE": str(self.tmp / "cached_examples"), "GRADIO_TEMP_DIR": str(self.tmp / "gradio"),
               "PGAT_MAX_FILE_SIZE": "5mb", "OMP_NUM_THREADS": "1"}
        try:
            with screenshots.serve(EMBEDDED, env=env, log=self.tmp / "space.log") as url:
                self.url = url
                self.ready.set()
                self.stop.wait()
        except BaseException as e:  # reported by the `space` fixture
            self.error = e
            self.ready.set()


def start_cli_processes(tmp: Path) -> dict:
    """Real ``pgat transfer`` processes (see `test_cli_as_a_process`), started now: name -> (process, OUT, names)."""
    pgat = Path(sys.executable).with_name("pgat")
    nan_pose = tmp / "nan-pose.json"
    nan_pose.write_text('{"people": [{"pose_keypoints_2d": [NaN' + ", 1" * 53 + "]}]}")
    runs = {  # name: (REF, POSE, extra environment, names the error must contain)
        # person-1.png is 256x256 = 65536 pixels: over a limit of 40000 set in the environment
        "REF over PGAT_MAX_IMAGE_PIXELS=40000": (REFERENCE, TARGET, {"PGAT_MAX_IMAGE_PIXELS": "40000"}, ("REF", REFERENCE.name)),
        # refused after BlazePose (TFLite) has loaded: its own stderr line must not show
        "NaN in --pose": (REFERENCE, nan_pose, {}, ("--pose",)),
    }
    started = {}
    for i, (name, (ref, pose, env, names)) in enumerate(runs.items()):
        out = tmp / f"out-{i}.png"
        proc = subprocess.Popen([str(pgat), *cli_args(ref, pose, out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env=dict(os.environ, OMP_NUM_THREADS="1", **env), cwd=tempfile.gettempdir())
        started[name] = (proc, out, names)
    return started


@pytest.fixture(scope="module", autouse=True)
def background(request, one_thread, tmp_path_factory):
    """Start, before the first test, what costs seconds of imports in other processes (the CLI processes, the Space),
    when tests that need them are selected; they run on the core the single-threaded tests leave."""
    selected = {getattr(item, "originalname", item.name) for item in request.session.items if item.module is request.module}
    started = {}
    if "test_cli_as_a_process" in selected:
        started["cli"] = start_cli_processes(tmp_path_factory.mktemp("cli-processes"))
    if any(name.startswith("test_space_") for name in selected):
        started["space"] = BackgroundSpace(tmp_path_factory.mktemp("space"))
        started["space"].start()
    yield started
    for proc, _, _ in started.get("cli", {}).values():
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    if "space" in started:
        started["space"].stop.set()
        started["space"].join(timeout=60)


@pytest.fixture(scope="module")
def space(background):
    """The Space as a real server (``python spaces/app.py`` on 127.0.0.1), as test_space.py's ``space`` fixture gives it."""
    server = background.get("space")
    if server is None:
        pytest.fail("the Space was not started: no test_space_* test was selected at collection")
    if not server.ready.wait(timeout=400):
        pytest.fail("the Space did not start within 400 s")
    if server.error is not None:
        raise server.error
    stages = json.loads((EMBEDDED / "model_index.json").read_text())["stages"]
    return {"url": server.url, "tmp": server.tmp, "stages": stages, "log": server.tmp / "space.log"}


@pytest.fixture(scope="module")
def client(space):
    from gradio_client import Client

    return Client(space["url"], verbose=False, download_files=str(space["tmp"] / "downloads"), httpx_kwargs={"timeout": 300})


@pytest.fixture(scope="module")
def contract():
    try:
        from pgat import inputs
    except ImportError as e:
        pytest.fail(f"pgat.inputs, the validation layer of issue 21, is missing: {e}")
    return inputs


@pytest.fixture(scope="module")
def pipe(contract):
    from pgat import PGATPipeline

    pipe = PGATPipeline.from_pretrained(str(EMBEDDED))  # its BlazePose estimator reads pose photos and finds the person
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture(scope="module")
def serving():
    from pgat.serving import PGATServing

    return PGATServing(str(EMBEDDED))


@pytest.fixture(scope="module")
def reference_b64():
    return base64.b64encode(REFERENCE.read_bytes()).decode("ascii")


@pytest.fixture(scope="module")
def target_doc():
    return json.loads(TARGET.read_text())


def cli_args(ref, pose, out, reference_pose=None):
    args = ["transfer", str(ref), "--pose", str(pose), "-o", str(out), "--model", str(EMBEDDED)]
    if reference_pose is not None:
        args += ["--reference-pose", str(reference_pose), "--align-pose"]
    return args


# ---------------------------------------------------------------------------------------------
# the contract itself
# ---------------------------------------------------------------------------------------------


def test_contract_constants_and_errors(contract):
    for name, value in CONTRACT.items():
        assert getattr(contract, name) == value, f"pgat.inputs.{name} is {getattr(contract, name, None)!r}; the contract says {value!r}"
    assert issubclass(contract.InputError, ValueError)
    assert issubclass(contract.MissingInputError, contract.InputError) and issubclass(contract.MissingInputError, FileNotFoundError)


# ---------------------------------------------------------------------------------------------
# door 1: the pipeline
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("budget", BUDGETS)
@pytest.mark.parametrize("kind", sorted(BAD_IMAGES))
def test_pipeline_refuses_bad_reference_images(pipe, scratch, kind, budget):
    @fuzz(budget, 6, BAD_IMAGES[kind], explicit=[fs.canonical_images()[kind]])
    def check(case):
        with scratch() as d:
            pipeline_refuses(pipe, case, "reference_image", reference_image=image_argument(case, d), target_pose=str(TARGET))


@pytest.mark.parametrize("budget", BUDGETS)
@pytest.mark.parametrize("kind", sorted(BAD_POSES))
def test_pipeline_refuses_bad_target_poses(pipe, scratch, kind, budget):
    @fuzz(budget, 6, BAD_POSES[kind], explicit=fs.explicit_poses(kind))
    def check(case):
        with scratch() as d:
            pipeline_refuses(pipe, case, "target_pose", reference_image=str(REFERENCE), target_pose=pose_argument(case, d))


@pytest.mark.parametrize("budget", BUDGETS)
@pytest.mark.parametrize("kind", sorted(BAD_POSES))
def test_pipeline_refuses_bad_reference_poses(pipe, scratch, kind, budget):
    """The reference person's pose (used by ``align_pose``): the same classes, named ``reference_pose``."""

    @fuzz(budget, 2, BAD_POSES[kind], explicit=fs.explicit_poses(kind))
    def check(case):
        if case.form == "value" and case.value is None:  # reference_pose=None means "estimate it": null travels as a file
            case = Case(case.kind, "json-file", None, ".json", "null", note=case.note)
        with scratch() as d:
            pipeline_refuses(pipe, case, "reference_pose", reference_image=str(REFERENCE), target_pose=str(TARGET),
                             reference_pose=pose_argument(case, d, "reference-pose"), align_pose=True)


def is_plain_list(case: Case) -> bool:
    return case.form == "value" and isinstance(case.value, list)


@pytest.mark.parametrize("budget", BUDGETS)
def test_pipeline_renders_valid_inputs(pipe, scratch, budget):
    """Every valid form of pose but a Python list (next test: a list is also how a batch of poses is given)."""

    @fuzz(budget, 8, fs.valid_references(), fs.valid_poses().filter(lambda c: not is_plain_list(c)),
          explicit=[(fs.canonical_reference(), fs.half_body_pose())])
    def check(reference, pose):
        with scratch() as d:
            case = Case("valid", "pair", note=f"{reference!r} + {pose!r}")
            pipeline_renders(pipe, case, fs.FRAME, reference_image=image_argument(reference, d), target_pose=pose_argument(pose, d))


@pytest.mark.parametrize("budget", BUDGETS)
def test_pipeline_takes_a_plain_keypoint_list(pipe, budget):
    """A plain list of 18 [x, y] or [x, y, c] is a keypoint array (the contract), not a batch of 18 poses."""

    @fuzz(budget, 2, fs.valid_plain_lists())
    def check(pose):
        pipeline_renders(pipe, pose, fs.FRAME, reference_image=str(REFERENCE), target_pose=pose.value)


@pytest.mark.parametrize("budget", BUDGETS)
def test_pipeline_renders_valid_reference_poses(pipe, scratch, budget):
    """``align_pose`` with a real reference pose, half-body included."""

    @fuzz(budget, 3, fs.valid_poses().filter(lambda c: c.form != "file"), explicit=[fs.half_body_pose()])
    def check(pose):
        with scratch() as d:
            pipeline_renders(pipe, pose, fs.FRAME, reference_image=str(REFERENCE), target_pose=str(TARGET),
                             reference_pose=pose_argument(pose, d), align_pose=True)


def pipeline_anything(pipe, case: Case, size, **call) -> None:
    """An output of the reference's size, or an InputError that names one of the pipeline's arguments."""
    from pgat.inputs import InputError

    try:
        with decoding_guard():
            out = pipe(**call)
    except DecodedOverLimit as e:
        raise AssertionError(f"{case!r}: the pixels of a {e} image were decoded before the pixel limit was checked") from None
    except Exception as e:
        assert isinstance(e, InputError), f"{case!r}: {describe(e)} -- not a pgat.inputs.InputError"
        assert re.split(r"[\[.]", str(e.argument), maxsplit=1)[0] in ARGUMENTS, f"{case!r}: names `{e.argument}`: {e}"
        assert str(e).startswith(f"`{e.argument}`"), f"{case!r}: {e}"
        return
    assert len(out.images) == 1 and out.images[0].size == size, f"{case!r}: {[im.size for im in out.images]}"


@pytest.mark.parametrize("budget", BUDGETS)
def test_pipeline_anything_goes(pipe, scratch, budget):
    @fuzz(budget, 12, fs.mutated_poses())
    def poses(case):
        with scratch() as d:
            pipeline_anything(pipe, case, fs.FRAME, reference_image=str(REFERENCE), target_pose=pose_argument(case, d))

    @fuzz(budget, 8, fs.mutated_references())
    def references(case):
        with scratch() as d:
            path = image_file(case, d)
            with Image.open(REFERENCE) as im:
                size = im.size
            try:  # the size the output must have, when the mutated file still has a readable header
                with Image.open(path) as im:
                    size = im.size
            except Exception:
                pass
            pipeline_anything(pipe, case, size, reference_image=str(path), target_pose=str(TARGET))


# ---------------------------------------------------------------------------------------------
# door 2: the CLI
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("budget", BUDGETS)
@pytest.mark.parametrize("kind", sorted(BAD_IMAGES))
def test_cli_refuses_bad_references(capsys, scratch, kind, budget):
    @fuzz(budget, 2, BAD_IMAGES[kind], explicit=[fs.canonical_images()[kind]])
    def check(case):
        with scratch() as d:
            ref = image_file(case, d, "ref-photo")
            out = d / "out" / "result.png"
            result = run_cli(capsys, cli_args(ref, TARGET, out))
            check_cli_refusal(*result, out, ("REF", ref.name), case)


@pytest.mark.parametrize("budget", BUDGETS)
@pytest.mark.parametrize("kind", sorted(BAD_POSES))
def test_cli_refuses_bad_poses(capsys, scratch, kind, budget):
    @fuzz(budget, 2, BAD_POSES[kind], explicit=fs.explicit_poses(kind))
    def check(case):
        with scratch() as d:
            pose = pose_file(case, d, "target")
            out = d / "result.png"
            result = run_cli(capsys, cli_args(REFERENCE, pose, out))
            check_cli_refusal(*result, out, CLI_NAMES["target_pose"], case)


@pytest.mark.parametrize("budget", BUDGETS)
def test_cli_refuses_bad_reference_poses(capsys, scratch, budget):
    kinds = sorted(k for k in BAD_POSES if k != "pose-photo")

    @fuzz(budget, 6, st.sampled_from(kinds).flatmap(lambda k: BAD_POSES[k]),
          explicit=[fs.canonical_poses()[k] for k in ("json-nan", "too-few-joints", "missing-file")] + fs.explicit_poses("json-nan")[1:])
    def check(case):
        with scratch() as d:
            reference_pose = pose_file(case, d, "reference-pose")
            out = d / "result.png"
            result = run_cli(capsys, cli_args(REFERENCE, TARGET, out, reference_pose))
            check_cli_refusal(*result, out, CLI_NAMES["reference_pose"], case)


@pytest.mark.parametrize("budget", BUDGETS)
def test_cli_renders_valid_inputs(capsys, scratch, budget):
    @fuzz(budget, 2, fs.valid_references(), fs.valid_poses(), explicit=[(fs.canonical_reference(), fs.half_body_pose())])
    def check(reference, pose):
        with scratch() as d:
            case = Case("valid", "pair", note=f"{reference!r} + {pose!r}")
            out = d / "out" / "result.png"
            result = run_cli(capsys, cli_args(image_file(reference, d), pose_file(pose, d), out))
            check_cli_output(*result, out, fs.FRAME, case)


@pytest.mark.parametrize("budget", BUDGETS)
def test_cli_anything_goes(capsys, scratch, budget):
    @fuzz(budget, 5, st.one_of(fs.mutated_poses(), fs.mutated_references()))
    def check(case):
        with scratch() as d:
            out = d / "result.png"
            if case.form == "file":  # a mutated photo: REF
                ref, pose, names = image_file(case, d, "ref-photo"), TARGET, None
            else:
                ref, pose, names = REFERENCE, pose_file(case, d), CLI_NAMES["target_pose"]
            rc, error, stdout, stderr = run_cli(capsys, cli_args(ref, pose, out))
            assert error is None, f"{case!r}: `pgat transfer` let {describe(error)} escape"
            assert "Traceback" not in stderr, f"{case!r}: {stderr[-1500:]}"
            assert rc in (0, 2), f"{case!r}: exit status {rc!r}: {stderr[-500:]}"
            if rc == 0:
                assert out.is_file(), f"{case!r}: exit status 0 and no OUT"
            else:
                check_cli_refusal(rc, error, stdout, stderr, out, names or ("REF", Path(ref).name), case)


def test_cli_as_a_process(background):
    """Real ``pgat transfer`` processes (started in the background at the module's start): a refusal exits 2 with one
    line on stderr (whatever native libraries print besides) and no OUT, also for a photo over a pixel limit set in the
    environment; no process dies of a signal. (Valid runs are the in-process tests': a process costs seconds.)"""
    failures = []
    for name, (proc, out, names) in background["cli"].items():
        stdout, stderr = proc.communicate(timeout=400)
        lines = error_lines(stderr)
        problems = []
        if proc.returncode < 0:
            problems.append(f"died of signal {-proc.returncode}")
        if proc.returncode != 2:
            problems.append(f"exit status {proc.returncode}, not 2")
        if "Traceback" in stderr:
            problems.append("a traceback on stderr")
        if len(lines) != 1 or not lines[0].startswith("pgat: error:"):
            problems.append("stderr is not one 'pgat: error:' line")
        elif not any(n in lines[0] for n in names):
            problems.append(f"the error names none of {list(names)}")
        if out.exists():
            problems.append("OUT was written")
        if problems:
            failures.append(f"{name}: {'; '.join(problems)}; stdout {stdout[-300:]!r}; stderr {stderr[-800:]!r}")
    assert not failures, "\n".join(failures)


# ---------------------------------------------------------------------------------------------
# door 3: serving
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("budget", BUDGETS)
@pytest.mark.parametrize("kind", SERVING_IMAGE_CLASSES)
def test_serving_refuses_bad_reference_images(serving, target_doc, kind, budget):
    @fuzz(budget, 5, BAD_IMAGES[kind], explicit=[fs.canonical_images()[kind]])
    def check(case):
        payload = {"inputs": {"reference_image": assume_supported(image_b64, case), "target_pose": target_doc}}
        serving_refuses(serving, payload, FIELDS["reference_image"], case)


@pytest.mark.parametrize("value", [None, 42, 3.5, True, {}, [], "", "not base64 !", "data:text/plain;base64,aGVsbG8=",
                                   "data:image/png;base64,AAAA", base64.b64encode(b"GIF89a").decode()], ids=repr)
def test_serving_refuses_references_that_are_not_images(serving, target_doc, value):
    case = Case("not-an-image", "value", value)
    serving_refuses(serving, {"inputs": {"reference_image": value, "target_pose": target_doc}}, FIELDS["reference_image"], case)


@pytest.mark.parametrize("budget", BUDGETS)
@pytest.mark.parametrize("kind", SERVING_POSE_CLASSES)
def test_serving_refuses_bad_target_poses(serving, reference_b64, kind, budget):
    @fuzz(budget, 5, BAD_POSES[kind], explicit=fs.explicit_poses(kind))
    def check(case):
        payload = {"inputs": {"reference_image": reference_b64, "target_pose": assume_supported(pose_payload, case)}}
        serving_refuses(serving, payload, FIELDS["target_pose"], case)


@pytest.mark.parametrize("budget", BUDGETS)
def test_serving_refuses_bad_reference_poses(serving, reference_b64, target_doc, budget):
    @fuzz(budget, 10, st.sampled_from(SERVING_POSE_CLASSES).flatmap(lambda k: BAD_POSES[k]),
          explicit=[fs.canonical_poses()[k] for k in ("json-nan", "all-outside", "too-few-joints")] + fs.explicit_poses("json-nan")[1:])
    def check(case):
        payload = {"inputs": {"reference_image": reference_b64, "target_pose": target_doc,
                              "reference_pose": assume_supported(pose_payload, case)},
                   "parameters": {"align_pose": True}}
        serving_refuses(serving, payload, FIELDS["reference_pose"], case)


@pytest.mark.parametrize("budget", BUDGETS)
def test_serving_renders_valid_inputs(serving, budget):
    references = fs.valid_references().filter(lambda c: c.form in ("file", "image"))

    @fuzz(budget, 4, references, fs.valid_poses(), explicit=[(fs.canonical_reference(), fs.half_body_pose())])
    def check(reference, pose):
        case = Case("valid", "pair", note=f"{reference!r} + {pose!r}")
        body, status = serving.run({"inputs": {"reference_image": image_b64(reference), "target_pose": pose_payload(pose)}})
        check_serving_output(body, status, fs.FRAME, case)


@pytest.mark.parametrize("budget", BUDGETS)
def test_serving_anything_goes(serving, reference_b64, target_doc, budget):
    @fuzz(budget, 15, st.one_of(fs.mutated_poses(), fs.mutated_references()))
    def check(case):
        if case.form == "file":
            inputs = {"reference_image": image_b64(case), "target_pose": target_doc}
        else:
            inputs = {"reference_image": reference_b64, "target_pose": pose_payload(case)}
        with decoding_guard():
            body, status = serving.run({"inputs": inputs})
        assert status in (200, 400), f"{case!r}: status {status}: {str(body)[:500]}"
        json.dumps(body, allow_nan=False)
        if status == 200:
            assert "image" in body, f"{case!r}: 200 without an image"
        else:
            assert body.get("field") in FIELDS.values(), f"{case!r}: field {body.get('field')!r}: {body.get('error')}"
            assert "image" not in body and "Traceback" not in body["error"]


@pytest.fixture(scope="module")
def http(serving):
    from starlette.testclient import TestClient

    from pgat.serving import create_app

    with TestClient(create_app(handler=serving, max_body_bytes=2_000_000)) as c:
        yield c


def test_http_app_answers_400_and_413_never_500(http, reference_b64, target_doc):
    # a body over the limit: 413 before anything is parsed
    big = json.dumps({"inputs": {"reference_image": "A" * 2_100_000, "target_pose": target_doc}})
    r = http.post("/", content=big, headers={"content-type": "application/json"})
    assert r.status_code == 413 and "error" in r.json(), (r.status_code, r.text[:300])
    # NaN tokens in the body (Python's json reads them): a 400 naming the pose, not a 500 writing NaN back
    flat = ", ".join(["NaN"] + ["1"] * 53)
    body = '{"inputs": {"reference_image": "%s", "target_pose": {"people": [{"pose_keypoints_2d": [%s]}]}}}' % (reference_b64, flat)
    r = http.post("/predict", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 400 and r.json()["field"] == "inputs.target_pose", (r.status_code, r.text[:300])
    # a pixel bomb as the reference
    bomb = base64.b64encode(fs.png_declaring(100000, 100000)).decode()
    r = http.post("/", json={"inputs": {"reference_image": bomb, "target_pose": target_doc}})
    assert r.status_code == 400 and r.json()["field"] == "inputs.reference_image", (r.status_code, r.text[:300])
    # still serving
    r = http.post("/", json={"inputs": {"reference_image": reference_b64, "target_pose": target_doc}})
    assert r.status_code == 200 and "image" in r.json(), (r.status_code, r.text[:300])


def test_http_app_bodies_that_are_not_requests(http):
    @fuzz("ci", 10, st.one_of(st.binary(max_size=300), st.text(max_size=200).map(str.encode)))
    def check(body):
        r = http.post("/", content=body, headers={"content-type": "application/json"})
        assert r.status_code == 400 and r.json()["field"] is not None, (body, r.status_code, r.text[:300])


# ---------------------------------------------------------------------------------------------
# door 4: the running Space
# ---------------------------------------------------------------------------------------------


def space_refuses(client, args, pattern: str, case: Case) -> None:
    from gradio_client.exceptions import AppError

    try:
        client.predict(*args, api_name="/pose_transfer")
    except AppError as e:
        text = str(e)
        assert "Traceback" not in text and 'File "' not in text, f"{case!r}: a traceback in the message: {text}"
        assert re.search(pattern, text, re.IGNORECASE), f"{case!r}: the message does not name the input ({pattern}): {text}"
        return
    except Exception as e:
        raise AssertionError(f"{case!r}: {describe(e)} instead of the Space's AppError") from None
    raise AssertionError(f"{case!r}: the Space produced a result for an invalid input")


def space_json(kind: str):
    """The Space's pose uploads are OpenPose JSON files: the classes of bad keypoints travel as OpenPose JSON there."""
    strategy = BAD_POSES[kind]
    if kind in ("no-visible-point", "all-outside", "too-few-joints"):
        strategy = strategy.filter(lambda c: isinstance(c.value, dict))
    return strategy


@pytest.mark.parametrize("budget", BUDGETS)
@pytest.mark.parametrize("kind", sorted(k for k in BAD_IMAGES if k != "missing-file"))
def test_space_refuses_bad_reference_photos(client, space, scratch, kind, budget):
    from gradio_client import handle_file

    r = space["stages"][-1]

    @fuzz(budget, 1, BAD_IMAGES[kind], explicit=[fs.canonical_images()[kind]], shrink=False)
    def check(case):
        with scratch() as d:
            ref = handle_file(str(image_file(case, d)))
            space_refuses(client, (ref, "preset", None, None, "pose-01", r, False, None), SPACE_NAMES["reference_image"], case)


@pytest.mark.parametrize("budget", BUDGETS)
@pytest.mark.parametrize("kind", JSON_FILE_CLASSES)
def test_space_refuses_bad_pose_json(client, space, scratch, kind, budget):
    from gradio_client import handle_file

    r = space["stages"][-1]

    @fuzz(budget, 1, space_json(kind), explicit=fs.explicit_poses(kind), shrink=False)
    def check(case):
        with scratch() as d:
            pose = handle_file(str(assume_supported(pose_file, case, d, "target-pose", json_only=True)))
            space_refuses(client, (handle_file(str(REFERENCE)), "json", None, pose, "pose-01", r, False, None), SPACE_NAMES["target_pose"], case)


@pytest.mark.parametrize("budget", BUDGETS)
def test_space_refuses_bad_pose_photos(client, space, scratch, budget):
    from gradio_client import handle_file

    r = space["stages"][-1]
    ref = handle_file(str(REFERENCE))

    @fuzz(budget, 2, BAD_POSES["pose-photo"], explicit=[fs.canonical_poses()["pose-photo"]], shrink=False)
    def photos(case):
        with scratch() as d:
            photo = handle_file(str(image_file(case, d, "pose-photo")))
            space_refuses(client, (ref, "photo", photo, None, "pose-01", r, False, None), SPACE_NAMES["pose_photo"], case)


@pytest.mark.parametrize("budget", BUDGETS)
def test_space_refuses_bad_reference_pose_json(client, space, scratch, budget):
    from gradio_client import handle_file

    r = space["stages"][-1]
    ref = handle_file(str(REFERENCE))

    @fuzz(budget, 2, st.sampled_from(JSON_FILE_CLASSES).flatmap(space_json),
          explicit=[fs.canonical_poses()[k] for k in ("json-nan", "too-few-joints")], shrink=False)
    def reference_poses(case):
        with scratch() as d:
            pose = handle_file(str(assume_supported(pose_file, case, d, "reference-pose", json_only=True)))
            space_refuses(client, (ref, "preset", None, None, "pose-01", r, True, pose), SPACE_NAMES["reference_pose"], case)


def test_space_keeps_serving_valid_inputs(client, space, scratch):
    """After every refusal above, the same server still renders: a real photo and a half-body pose among them."""
    from gradio_client import handle_file

    r = space["stages"][-1]
    with scratch() as d:
        half = pose_file(fs.half_body_pose(), d, "half-body")
        for ref, source, pose_json, preset in [(REFERENCE, "preset", None, "pose-02"), (EXAMPLES / "person-3.png", "json", half, "pose-01")]:
            out = client.predict(handle_file(str(ref)), source, None, None if pose_json is None else handle_file(str(pose_json)), preset, r,
                                 False, None, api_name="/pose_transfer")
            with Image.open(out[0]) as im:
                assert im.size == (256, 256)
