"""Serving a PGAT repository: JSON in, JSON out, for Inference Endpoints and any HTTP host.

Every repository PGAT writes carries three small files (`pgat.hub.write_serving_files`):
``handler.py`` (``class EndpointHandler``, the Inference Endpoints custom-handler convention),
``pipeline.py`` (``class PreTrainedPipeline``, the api-inference-community "generic" convention) and
``requirements.txt`` (``pgat``). Both classes only hand the request to `PGATServing`, which holds the logic.

Request (``task`` "image", the default)::

    {"inputs": {"reference_image": "<base64 PNG/JPEG>",
                "target_pose": <OpenPose JSON object | (18, 2|3) list of [x, y(, c)] | "<base64 image of someone in the pose>">,
                "reference_pose": <same forms, optional: with align_pose, or for a model that takes the reference's pose>},
     "parameters": {"resolution": 256, "align_pose": true}}

    -> {"image": "<base64 PNG, the reference's size>", "target_pose": [[x, y, c], ...18], "resolution": 256,
        "reference_pose": [[x, y, c], ...18]}   # only when a reference pose was used (align_pose, or the model needs it)

Request (``"task": "video"``)::

    {"inputs": {"reference_image": "<base64 PNG/JPEG>", "pose_sequence": [<pose>, <pose>, ...],
                "reference_pose": <optional: with retarget, or for a model that takes the reference's pose>},
     "parameters": {"task": "video", "fps": 30, "retarget": false, "smooth": true, "fill_missing": true, "resolution": 256}}

    -> {"video": "<base64 H.264 mp4>", "fps": 30.0, "num_frames": T, "poses": [[[x, y, c], ...18], ...T], "resolution": 256,
        "reference_pose": [[x, y, c], ...18]}   # only when a reference pose was used (retarget, or the model needs it)

Request (``"task": "tryon"``, virtual try-on with `PGATTryOnPipeline`; the repository needs a ``flow/`` folder)::

    {"inputs": {"person_image": "<base64 PNG/JPEG of the person to dress>",
                "garment_image": "<base64 PNG/JPEG of someone wearing the garment>",
                "person_mask": "<optional base64 PNG/JPEG, the person photo's size: white = the region of their own garment>",
                "garment_mask": "<optional base64 PNG/JPEG, the garment photo's size: white = the garment>",
                "person_pose": <optional, a pose (forms as target_pose) in the person photo's pixels>,
                "garment_pose": <optional, the same for the garment photo's wearer>},
     "parameters": {"task": "tryon", "mode": "keep", "category": "upper_body", "fill": "inpaint", "refine": true, "seam": 2,
                    "return_intermediates": false, "resolution": 256}}

    # "category": the garment taken from the garment photo: "upper_body" (a top, the default), "lower_body"
    # (trousers, shorts, a skirt) or "full_body" (both), in either mode; masks sent must mark that garment.

    -> {"image": "<base64 PNG, the person photo's size>", "mode": "keep", "category": "upper_body", "resolution": 256,
        "person_pose": [[x, y, c], ...18], "garment_pose": [[x, y, c], ...18],   # the poses used, in each photo's pixels
        "intermediates": {"warped_garment": "<base64 PNG>", "garment_mask": "<base64 PNG>",   # only with
                          "invented_mask": "<base64 PNG>"}}                                   # return_intermediates

A bad request returns ``{"error": "<what was received, what is expected>", "field": "inputs.target_pose"}``
(``field`` is a dotted path into the request, ``"body"`` for the request as a whole, `None` for a failure of
the server itself); nothing raises out of ``__call__``.

Decisions, written down:

- Keypoints given as a list are in the reference image's pixels; an OpenPose object with ``canvas_width`` /
  ``canvas_height`` is in that canvas, mapped as `PGATPipeline` maps it; a pose image is read by the pose
  estimator (``PGAT_POSE_ESTIMATOR``: ``auto``, ``openpose`` or ``blazepose``; loaded on first use).
- Images are PNG or JPEG (a ``data:image/...;base64,`` prefix and line breaks in the base64 are accepted),
  at most ``PGAT_MAX_IMAGE_SIDE`` (default 4096) pixels a side; a video has at most ``PGAT_MAX_FRAMES``
  (default 120) poses. Limits are checked before anything is decoded or generated.
- An input or parameter that would have no effect (``reference_pose`` without ``align_pose`` / ``retarget`` for
  the paper's model, a parameter of the other task) is an error, not ignored.
- A model beyond the paper that takes the reference person's own pose (``model.needs_reference_pose``, DESIGN.md
  §1b) gets ``inputs.reference_pose``, or the pose estimated from ``inputs.reference_image`` (once per request);
  a reference photo in which the estimator finds nobody is a 400 on ``inputs.reference_image`` that says to send
  ``inputs.reference_pose``. The response then carries the ``reference_pose`` used, in the reference image's pixels.
- ``resolution`` picks a stage of the repository; the highest is loaded at start-up, others on first use and
  kept. Requests run one at a time (memory stays that of one request).
- Video ``retarget`` defaults to `True` as in `PGATVideoPipeline`; it needs the reference person's pose, from
  ``reference_pose`` or estimated from the reference image.
- Try-on: the inputs are named as `PGATTryOnPipeline.__call__` names them (``person_image``, like the other tasks'
  ``reference_image``); the parameters are its own (``mode`` ``"keep"`` | ``"canonical"``; ``fill`` ``"inpaint"`` |
  ``"generator"`` | ``"person"``, ``refine``, ``seam`` for ``"keep"`` only; ``restore_pose`` for ``"canonical"`` only:
  one sent with the other mode is an error). ``seam`` is 0 to ``MAX_SEAM`` (64) pixels (default: 2 per 256 of the
  person photo's longer side). A mask is an image of its photo's size (white = inside, the brightest of its channels
  after PIL's ``L`` conversion, as the pipeline reads it); an all-black ``garment_mask`` (no garment) is refused;
  an absent mask is made by the pipeline from BlazePose's person mask. A pose not sent is estimated from its photo
  (``PGAT_POSE_ESTIMATOR``), and a photo in which none is found is a 400 on that photo that says to send the pose.
  The response always carries ``image``, the ``mode`` that made it, the garment ``category`` it dressed, the
  ``resolution`` and both poses used;
  ``"return_intermediates": true`` adds the pipeline's intermediates as PNGs: for ``"keep"`` the moved garment
  (``warped_garment``, black outside it), where it was put (``garment_mask``) and what was invented
  (``invented_mask``), in the person photo's frame; for ``"canonical"`` ``warped_garment``, ``garment_mask``,
  ``canonical_person`` and ``canonical_garment``, in the model's square. The appearance-flow network is loaded on
  the first try-on request and shared by every stage (each stage's try-on pipeline shares that stage's model with
  the image task). A repository without ``flow/`` answers a try-on request with a 400 on ``parameters.task``
  naming the missing folder (as a missing stage is a 400 on ``parameters.resolution``); a ``flow/`` folder that is
  there but cannot be loaded is the server's failure (500).

HTTP: `create_app` is a minimal Starlette app (``POST /`` and ``POST /predict`` run a request, ``GET /health``),
run by ``pgat serve REPO``. It imports the repository's own ``handler.py`` by file path, as the Inference
Endpoints toolkit does. The ``api-inference-community`` package (0.0.37, checked) cannot host this task: its
PyPI package ships only routes and payload validation (the apps live in its Docker images); its task list is
fixed (no custom task); its ``image-to-image`` normaliser takes one base64 image as ``inputs``, so the
two-input request above fails there with PIL's ``cannot identify image file`` and no field; and its route
answers ``image-to-image`` with raw image bytes, so neither ``target_pose`` nor a video could be returned.
Status codes: 200, 400 (a bad request: ``field`` set), 413 (body over ``max_body_bytes``), 500 (``field`` None).
"""

from __future__ import annotations

import argparse
import base64
import binascii
import importlib.util
import io
import json
import os
import re
import tempfile
import threading
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple, Union

import numpy as np
from diffusers.utils import logging
from PIL import Image

logger = logging.get_logger(__name__)

MAX_IMAGE_SIDE = 4096
MAX_FRAMES = 120
MAX_BODY_BYTES = 64 * 1024 * 1024
IMAGE_FORMATS = ("PNG", "JPEG")

MAX_SEAM = 64

TASKS = ("image", "video", "tryon")
# required and optional keys of "inputs", and the parameters, of each task
INPUTS = {
    "image": (("reference_image", "target_pose"), ("reference_pose",)),
    "video": (("reference_image", "pose_sequence"), ("reference_pose",)),
    "tryon": (("person_image", "garment_image"), ("person_mask", "garment_mask", "person_pose", "garment_pose")),
}
PARAMETERS = {
    "image": ("task", "resolution", "align_pose"),
    "video": ("task", "resolution", "fps", "retarget", "smooth", "fill_missing"),
    "tryon": ("task", "resolution", "mode", "category", "fill", "refine", "seam", "restore_pose", "return_intermediates"),
}
# try-on parameters that only one mode uses (sent with the other mode, they are an error)
TRYON_MODE_PARAMETERS = {"keep": ("fill", "refine", "seam"), "canonical": ("restore_pose",)}
TRYON_INTERMEDIATES = {"keep": ("warped_garment", "garment_mask", "invented_mask"),
                       "canonical": ("warped_garment", "garment_mask", "canonical_person", "canonical_garment")}
POSE_FORMS = "an OpenPose JSON object, an (18, 2|3) list of [x, y(, confidence)] pixels, or a base64 PNG/JPEG image of someone in the pose"


class PayloadError(ValueError):
    """A bad request: ``field`` is the dotted path of the part at fault."""

    def __init__(self, field: Optional[str], message: str):
        super().__init__(message)
        self.field = field

    def as_dict(self) -> Dict[str, Any]:
        return {"error": str(self), "field": self.field}


def _kind(value) -> str:
    """How a JSON value is named in error messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"the boolean {json.dumps(value)}"
    if isinstance(value, (int, float)):
        return f"the number {value!r}"
    if isinstance(value, str):
        return f"a string of {len(value)} characters" if len(value) > 40 else f"the string {value!r}"
    if isinstance(value, list):
        return f"a list of {len(value)} items"
    if isinstance(value, dict):
        return f"an object with keys {sorted(value)}"
    return type(value).__name__


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        n = int(value)
    except ValueError:
        raise ValueError(f"environment variable {name} must be a positive integer, got {value!r}") from None
    if n < 1:
        raise ValueError(f"environment variable {name} must be a positive integer, got {n}")
    return n


# ---------------------------------------------------------------------------------------------
# images and poses in JSON
# ---------------------------------------------------------------------------------------------


def decode_image(value, field: str, max_side: int = MAX_IMAGE_SIDE) -> Image.Image:
    """A base64 PNG/JPEG string (optionally a ``data:`` URL) -> RGB PIL image, or a `PayloadError` naming ``field``."""
    expected = "a base64 string of a PNG or JPEG image"
    if not isinstance(value, str):
        raise PayloadError(field, f"`{field}` must be {expected}, got {_kind(value)}")
    text = value.strip()
    if text.startswith("data:"):  # what a browser's FileReader.readAsDataURL gives
        header, _, text = text.partition(",")
        if not header.endswith(";base64"):
            raise PayloadError(field, f"`{field}` is a data URL that is not base64 ({header!r}); expected {expected}")
    text = "".join(text.split())  # MIME base64 wraps lines
    if not text:
        raise PayloadError(field, f"`{field}` is empty; expected {expected}")
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as e:
        raise PayloadError(field, f"`{field}` is not valid base64 ({e}); expected {expected}") from None
    from .inputs import UnreadableImageError, open_image

    # the checks every door makes (not an image, animated, pixel limit, sides, aspect ratio), from the header
    image = open_image(raw, field)
    if image.format not in IMAGE_FORMATS:
        raise PayloadError(field, f"`{field}` is a {image.format} image; expected {expected}")
    width, height = image.size
    if max(width, height) > max_side:
        raise PayloadError(
            field, f"`{field}` is a {width}x{height} image; this server takes images of at most {max_side} pixels a side (PGAT_MAX_IMAGE_SIDE)"
        )
    try:
        image.load()  # header-only until here: a truncated file fails now, not in the model
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        raise UnreadableImageError(field, f"{len(raw)} bytes, a truncated or corrupt {image.format} image ({e})", "a complete image file") from None
    return image.convert("RGB")


def encode_png(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def parse_pose(value, field: str, max_side: int = MAX_IMAGE_SIDE):
    """A pose from JSON into a form `pgat.pipelines.utils.resolve_pose` takes: the OpenPose object as it is,
    a keypoint list as a checked ``(18, 2|3)`` array, a base64 string as a PIL image."""
    from .inputs import keypoint_array

    if isinstance(value, dict):
        return value
    if isinstance(value, list):
        return keypoint_array(value, field)  # an InputError, the server's 400, when it is not (18, 2|3) numbers
    if isinstance(value, str):
        return decode_image(value, field, max_side)
    raise PayloadError(field, f"`{field}` must be {POSE_FORMS}, got {_kind(value)}")


def keypoints_to_json(keypoints: np.ndarray) -> List[List[float]]:
    """``(18, 3)`` -> ``[[x, y, c], ...]`` rounded to 1/100 pixel; ``[-1, -1, 0]`` for a missing point."""
    return [[round(float(v), 2) for v in point] for point in np.asarray(keypoints, dtype=np.float64)]


_ARGUMENT = re.compile(r"`([A-Za-z_][\w.\[\]]*)`")
_PIPELINE_FIELDS = {
    "reference_image": "inputs.reference_image",
    "target_pose": "inputs.target_pose",
    "reference_pose": "inputs.reference_pose",
    "pose_sequence": "inputs.pose_sequence",
    "fps": "parameters.fps",
    "person_image": "inputs.person_image",
    "garment_image": "inputs.garment_image",
    "person_mask": "inputs.person_mask",
    "garment_mask": "inputs.garment_mask",
    "person_pose": "inputs.person_pose",
    "garment_pose": "inputs.garment_pose",
}


def _request_name(name: str) -> str:
    """A pipeline argument (``target_pose``, ``pose_sequence[3]``) as the request field it comes from."""
    base, sep, rest = name.partition("[")
    return _PIPELINE_FIELDS[base] + sep + rest if base in _PIPELINE_FIELDS else name


def payload_error(error, default: str = "inputs") -> PayloadError:
    """A refusal of `pgat.inputs` (or any ``ValueError``) as this server's `PayloadError`: the field at fault,
    and the message with the pipelines' argument names as the request's (``inputs.target_pose``)."""
    from .inputs import InputError

    if isinstance(error, InputError):
        return PayloadError(_request_name(error.argument), error.renamed(_request_name))
    return PayloadError(_field_of(error, default), str(error))


def _field_of(error: Exception, default: str) -> str:
    """The request field an error raised by a pipeline is about: the first ```argument``` it names."""
    m = _ARGUMENT.search(str(error))
    if m:
        name = m.group(1)
        if name.startswith(("inputs.", "parameters.")):
            return name
        base = re.split(r"[.\[]", name, maxsplit=1)[0]
        if base in _PIPELINE_FIELDS:
            return _PIPELINE_FIELDS[base] + name[len(base):]
    return default


# ---------------------------------------------------------------------------------------------
# the request handler
# ---------------------------------------------------------------------------------------------


class PGATServing:
    r"""Run JSON requests (see the module docstring) on a local PGAT repository.

    Args:
        path (`str` or `os.PathLike`): the repository folder (stage folders, ``model_index.json``).
        device (`str`, *optional*): torch device; defaults to ``$PGAT_DEVICE``, else ``"cuda"`` when available, else ``"cpu"``.
        pose_estimator (`str` or callable, *optional*): for poses sent as images: a backend of
            `pgat.pose_estimation.load_estimator` (defaults to ``$PGAT_POSE_ESTIMATOR``, else ``"auto"``) or a
            callable ``image -> (18, 3)``.
        max_image_side (`int`, *optional*): defaults to ``$PGAT_MAX_IMAGE_SIDE``, else 4096.
        max_frames (`int`, *optional*): the most poses of a video request; ``$PGAT_MAX_FRAMES``, else 120.

    Calling it never raises: the result is the response, or ``{"error": ..., "field": ...}``. `run` also
    returns the HTTP status.
    """

    def __init__(
        self,
        path: Union[str, os.PathLike],
        device: Optional[str] = None,
        pose_estimator: Union[str, Any, None] = None,
        max_image_side: Optional[int] = None,
        max_frames: Optional[int] = None,
    ):
        import torch

        from .hub import list_stages

        self.path = Path(path)
        self.stages = list_stages(self.path)
        if not self.stages:
            raise ValueError(f"`path` '{self.path}' is not a PGAT repository: it has no stage folders (stage-0064 ... stage-1024 with a config.json)")
        self.device = device or os.environ.get("PGAT_DEVICE") or ("cuda" if torch.cuda.is_available() else "cpu")
        self.max_image_side = max_image_side or _env_int("PGAT_MAX_IMAGE_SIDE", MAX_IMAGE_SIDE)
        self.max_frames = max_frames or _env_int("PGAT_MAX_FRAMES", MAX_FRAMES)
        self._estimator_spec = pose_estimator or os.environ.get("PGAT_POSE_ESTIMATOR") or "auto"
        self._estimator = None if isinstance(self._estimator_spec, str) else self._estimator_spec
        self._pipes: Dict[Tuple[str, int], Any] = {}
        self._flow = None  # the try-on appearance-flow network, loaded on the first try-on request
        self._lock = threading.Lock()
        self.pipeline(self.stages[-1])  # a broken repository fails at start-up, and the first request is warm

    # ------------------------------------------------------------------------------------------
    def pipeline(self, resolution: int, task: str = "image"):
        """The `PGATPipeline` (or `PGATVideoPipeline` / `PGATTryOnPipeline`, sharing its model) of one stage, loaded
        once. The try-on pipeline's appearance-flow network (the repository's ``flow/`` folder) is loaded once for
        every stage; a repository without one is a `PayloadError` on ``parameters.task``."""
        from .pipelines import PGATPipeline, PGATTryOnPipeline, PGATVideoPipeline

        key = (task, resolution)
        if key not in self._pipes:
            flow = self.flow() if task == "tryon" else None  # before loading a stage: a missing flow/ fails fast
            if ("image", resolution) not in self._pipes:
                # poses reach the pipeline already resolved: it never estimates one behind the request's back
                pipe = PGATPipeline.from_pretrained(self.path, resolution=resolution, pose_estimator=None).to(self.device)
                pipe.set_progress_bar_config(disable=True)
                self._pipes[("image", resolution)] = pipe
            if task == "video":
                video = PGATVideoPipeline(model=self._pipes[("image", resolution)].model, pose_estimator=None)
                video.set_progress_bar_config(disable=True)
                self._pipes[key] = video
            if task == "tryon":
                tryon = PGATTryOnPipeline(model=self._pipes[("image", resolution)].model, flow=flow, pose_estimator=None)
                tryon.set_progress_bar_config(disable=True)
                self._pipes[key] = tryon
        return self._pipes[key]

    def flow(self):
        """The repository's try-on `AppearanceFlowModel` (``flow/``), loaded once as `PGATTryOnPipeline.from_pretrained`
        loads it."""
        if self._flow is None:
            from .hub import load_model_folder
            from .models.flow import AppearanceFlowModel
            from .pipelines.tryon import FLOW_FOLDER

            folder = self.path / FLOW_FOLDER
            if not (folder / "config.json").is_file():
                served = [t for t in TASKS if t != "tryon"]
                raise PayloadError(
                    "parameters.task",
                    f"`parameters.task` is 'tryon', and this repository ('{self.path}') has no {FLOW_FOLDER}/ folder ({FLOW_FOLDER}/config.json "
                    f"and its weights: the try-on appearance-flow network that PGATTryOnPipeline loads); it serves the tasks {served}. "
                    f"Train one into it with `accelerate launch train/flow.py --config flow-tryon-cpu --output_dir REPO`, or serve a repository that has one",
                )
            try:
                flow = load_model_folder(folder, AppearanceFlowModel).eval()
            except (ValueError, OSError) as e:  # a broken flow/ is the server's failure, not the request's
                raise RuntimeError(f"the repository's {FLOW_FOLDER}/ folder cannot be loaded: {e}") from None
            self._flow = flow.to(self.device)
        return self._flow

    def estimate(self, image: Image.Image) -> np.ndarray:
        if self._estimator is None:
            from .pose_estimation import load_estimator

            self._estimator = load_estimator(self._estimator_spec)
        return self._estimator(image)

    # ------------------------------------------------------------------------------------------
    def __call__(self, data) -> Dict[str, Any]:
        return self.run(data)[0]

    def run(self, data) -> Tuple[Dict[str, Any], int]:
        """``(response, HTTP status)``; never raises."""
        from .inputs import InputError

        try:
            with self._lock:
                return self._run(data), 200
        except PayloadError as e:
            return e.as_dict(), 400
        except InputError as e:  # the pipelines' and `pgat.inputs`' refusals, in this server's field names
            return payload_error(e).as_dict(), 400
        except Exception as e:  # the server's own failure: reported, not raised, so the endpoint keeps serving
            logger.error(f"PGAT request failed: {type(e).__name__}: {e}", exc_info=True)
            return {"error": f"internal error ({type(e).__name__}): {e}", "field": None}, 500

    def _run(self, data) -> Dict[str, Any]:
        # 1. the envelope
        if not isinstance(data, dict):
            raise PayloadError("body", f"the request must be a JSON object {{\"inputs\": {{...}}, \"parameters\": {{...}}}}, got {_kind(data)}")
        unknown = sorted(set(data) - {"inputs", "parameters"})
        if unknown:
            raise PayloadError(unknown[0], f"unknown key `{unknown[0]}` in the request; expected \"inputs\" and optionally \"parameters\"")
        if "inputs" not in data:
            raise PayloadError("inputs", "the request has no `inputs`; expected {\"inputs\": {\"reference_image\": ..., \"target_pose\": ...}}")
        inputs, params = data["inputs"], data.get("parameters", {})
        if params is None:
            params = {}
        if not isinstance(inputs, dict):
            raise PayloadError("inputs", f"`inputs` must be an object with \"reference_image\" and \"target_pose\" (or \"pose_sequence\"; "
                                         f"task \"tryon\": \"person_image\" and \"garment_image\"), got {_kind(inputs)}")
        if not isinstance(params, dict):
            raise PayloadError("parameters", f"`parameters` must be an object, got {_kind(params)}")

        # 2. the task, its parameters and inputs
        task = params.get("task", "image")
        if task not in TASKS:
            raise PayloadError("parameters.task", f"`parameters.task` must be one of {list(TASKS)}, got {_kind(task)}")
        for key in params:
            if key not in PARAMETERS[task]:
                other = [t for t in TASKS if t != task and key in PARAMETERS[t]]
                hint = f" (a parameter of task {other[0]!r})" if other else ""
                raise PayloadError(f"parameters.{key}", f"unknown parameter `parameters.{key}`{hint} for task {task!r}; expected some of {list(PARAMETERS[task])}")
        required, optional = INPUTS[task]
        for key in inputs:
            if key not in required + optional:
                other = [t for t in TASKS if t != task and key in sum(INPUTS[t], ())]
                hint = f" (`inputs.{key}` is an input of task {other[0]!r})" if other else ""
                raise PayloadError(f"inputs.{key}", f"unknown input `inputs.{key}` for task {task!r}; expected {list(required)} and optionally {list(optional)}{hint}")
        for key in required:
            if key not in inputs:
                raise PayloadError(f"inputs.{key}", f"`inputs.{key}` is missing; task {task!r} needs {list(required)}")
        resolution = params.get("resolution", self.stages[-1])
        if isinstance(resolution, bool) or not isinstance(resolution, int) or resolution not in self.stages:
            raise PayloadError("parameters.resolution", f"`parameters.resolution` must be a stage of this repository, one of {self.stages}; got {_kind(resolution)}")

        # 3. the reference image; then the task
        if task == "tryon":
            return self._tryon(inputs, params, resolution)
        reference = decode_image(inputs["reference_image"], "inputs.reference_image", self.max_image_side)
        if task == "video":
            return self._video(reference, inputs, params, resolution)
        return self._image(reference, inputs, params, resolution)

    # ------------------------------------------------------------------------------------------
    def _flag(self, params: dict, key: str, default: bool) -> bool:
        value = params.get(key, default)
        if not isinstance(value, bool):
            raise PayloadError(f"parameters.{key}", f"`parameters.{key}` must be true or false, got {_kind(value)}")
        return value

    def _resolve(self, value, field: str, parsed: bool = False):
        """One pose of the request (or, ``parsed``, already a `parse_pose` result) -> ``((18, 3) keypoints,
        frame or None)`` (see `resolve_pose`)."""
        from .pipelines.utils import resolve_pose

        pose = value if parsed else parse_pose(value, field, self.max_image_side)
        try:
            return resolve_pose(pose, field, self.estimate)
        except FileNotFoundError as e:  # no estimator weights on this server: say what the client can send instead
            raise PayloadError(field, f"`{field}` is an image, and this server has no pose estimator ({str(e).splitlines()[0]}); send keypoints or OpenPose JSON instead") from None
        except ValueError as e:
            raise payload_error(e, field) from None

    def _reference_pose(self, inputs: dict, reference: Image.Image, needed_by: Optional[str], model_needs: Union[bool, str] = False):
        """The reference person's pose as the pipelines take it, or `None` when nothing needs it.

        ``needed_by`` names the parameter that needs it (`None`: none does); ``model_needs``: the model itself does (a
        string: how the pipeline names it, so that the refusal reads as the pipeline's)."""
        field = "inputs.reference_pose"
        if needed_by is None and not model_needs:
            if "reference_pose" in inputs:
                raise PayloadError(field, "`inputs.reference_pose` is only used with `parameters.align_pose` (image) or `parameters.retarget` (video), "
                                          "which are false, or by a model that takes the reference's pose, which this one does not")
            return None
        if "reference_pose" in inputs:
            return _pipeline_pose(*self._resolve(inputs["reference_pose"], field))
        model_text = model_needs if isinstance(model_needs, str) else "this model (it takes the reference person's own pose)"
        who = " and ".join(([needed_by] if needed_by else []) + ([model_text] if model_needs else []))
        if model_needs:
            lead = f"{who} needs the reference person's pose and `inputs.reference_pose` was not sent"
            return self._estimate_checked(reference, "reference_pose", "reference_image", lead, who)  # in the reference image's pixels
        try:
            kps, frame = self._resolve(reference, field, parsed=True)
        except PayloadError as e:
            raise PayloadError(field, f"{needed_by} needs the reference person's pose and `inputs.reference_pose` was not sent; estimating it from `inputs.reference_image` failed: {e}") from None
        return _pipeline_pose(kps, frame)

    def _estimate_checked(self, photo: Image.Image, name: str, photo_name: str, lead: str, needed_by: str, **check) -> np.ndarray:
        """The pose of the person in ``inputs.<photo_name>``, estimated because ``inputs.<name>`` was not sent, and
        checked to be a person (`pgat.inputs.check_person`); every failure says to send ``inputs.<name>``. ``lead``
        opens the message (why the pose is needed)."""
        from .inputs import InputError, check_person, keypoint_array

        field = f"inputs.{name}"
        try:
            kps = keypoint_array(self.estimate(photo), "the pose estimator's output")
        except FileNotFoundError as e:  # no estimator weights on this server
            raise PayloadError(field, f"{lead}; this server has no pose estimator to read it from `inputs.{photo_name}` "
                                      f"({str(e).splitlines()[0]}); send `{field}` ({POSE_FORMS})") from None
        except ValueError as e:
            raise PayloadError(field, f"{lead}; estimating it from `inputs.{photo_name}` failed: {e}") from None
        try:
            return check_person(kps, f"inputs.{photo_name}", photo.size, needed_by, **check)
        except InputError as e:
            raise InputError(e.argument, e.received, e.expected, hint=f"Or send the pose as `{field}` ({POSE_FORMS})") from None

    def _check_reference_person(self, reference: Image.Image) -> None:
        """When nothing needs the reference person's pose, the person is still needed: refuse a photo with nobody
        in it (`pgat.inputs.check_person`), as `PGATPipeline` does. A server without pose-estimator weights cannot
        look, and uses the photo as sent."""
        from .inputs import check_person, keypoint_array

        try:
            kps = keypoint_array(self.estimate(reference), "the pose estimator's output")
        except FileNotFoundError:
            return
        check_person(kps, "inputs.reference_image", reference.size)

    def _image(self, reference: Image.Image, inputs: dict, params: dict, resolution: int) -> Dict[str, Any]:
        align = self._flag(params, "align_pose", False)
        target = _pipeline_pose(*self._resolve(inputs["target_pose"], "inputs.target_pose"))
        pipe = self.pipeline(resolution)
        if not (align or pipe.model.needs_reference_pose or "reference_pose" in inputs):
            self._check_reference_person(reference)
        reference_pose = self._reference_pose(inputs, reference, "`parameters.align_pose`" if align else None, pipe.model.needs_reference_pose and pipe._needs_text())
        try:
            out = pipe(reference, target, reference_pose=reference_pose, align_pose=align)
        except (ValueError, FileNotFoundError) as e:
            raise payload_error(e, "inputs") from None
        response = {"image": encode_png(out.images[0]), "target_pose": keypoints_to_json(out.target_poses[0]), "resolution": resolution}
        if out.reference_poses is not None:
            response["reference_pose"] = keypoints_to_json(out.reference_poses[0])
        return response

    def _video(self, reference: Image.Image, inputs: dict, params: dict, resolution: int) -> Dict[str, Any]:
        from .pose import Letterbox
        from .pipelines.utils import pose_to_square

        field = "inputs.pose_sequence"
        sequence = inputs["pose_sequence"]
        if not isinstance(sequence, list) or not sequence:
            raise PayloadError(field, f"`{field}` must be a non-empty list of poses (each {POSE_FORMS}), got {_kind(sequence)}")
        if len(sequence) > self.max_frames:
            raise PayloadError(field, f"`{field}` has {len(sequence)} poses; this server makes videos of at most {self.max_frames} frames (PGAT_MAX_FRAMES)")
        fps = params.get("fps", 30.0)
        if isinstance(fps, bool) or not isinstance(fps, (int, float)) or not 0 < fps <= 240:
            raise PayloadError("parameters.fps", f"`parameters.fps` must be a number in (0, 240], got {_kind(fps)}")
        retarget = self._flag(params, "retarget", True)
        smooth = self._flag(params, "smooth", True)
        fill_missing = self._flag(params, "fill_missing", True)

        # every pose into the reference image's pixels, as PGATVideoPipeline places a driving frame
        box = Letterbox.fit(reference.size[0], reference.size[1], resolution)
        poses = []
        for i, value in enumerate(sequence):
            kps, frame = self._resolve(value, f"{field}[{i}]")
            if frame is not None and tuple(frame) != reference.size:
                kps = box.keypoints_from_square(pose_to_square(kps, frame, box), strict=False)
            poses.append(kps)
        pipe = self.pipeline(resolution, "video")
        reference_pose = self._reference_pose(inputs, reference, "`parameters.retarget`" if retarget else None, pipe.model.needs_reference_pose and pipe._needs_text())

        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "pgat.mp4"
            try:
                out = pipe(reference, np.stack(poses), fps=float(fps), output_path=path, reference_pose=reference_pose,
                           retarget=retarget, smooth=smooth, fill_missing=fill_missing)
            except (ValueError, FileNotFoundError) as e:
                raise payload_error(e, field) from None
            video = base64.b64encode(path.read_bytes()).decode("ascii")
        response = {"video": video, "fps": out.fps, "num_frames": len(out.frames), "poses": [keypoints_to_json(p) for p in out.poses], "resolution": resolution}
        if out.reference_pose is not None:
            response["reference_pose"] = keypoints_to_json(out.reference_pose)
        return response


    # ------------------------------------------------------------------------------------------
    # try-on
    # ------------------------------------------------------------------------------------------
    def _choice(self, params: dict, key: str, default: str, choices: Tuple[str, ...]) -> str:
        value = params.get(key, default)
        if not isinstance(value, str) or value not in choices:
            raise PayloadError(f"parameters.{key}", f"`parameters.{key}` must be one of {list(choices)}, got {_kind(value)}")
        return value

    def _tryon_parameters(self, params: dict) -> Tuple[str, Dict[str, Any], bool]:
        """``(mode, the pipeline's keyword arguments of that mode, return_intermediates)``."""
        from .pipelines.tryon import CATEGORIES, FILLS, MODES

        mode = self._choice(params, "mode", "keep", MODES)
        category = self._choice(params, "category", "upper_body", CATEGORIES)
        for other, keys in TRYON_MODE_PARAMETERS.items():
            for key in keys:
                if other != mode and key in params:
                    raise PayloadError(f"parameters.{key}", f"`parameters.{key}` is only used with `parameters.mode` {other!r}; it has no effect with "
                                                            f"mode {mode!r} (parameters of mode {mode!r}: {list(TRYON_MODE_PARAMETERS[mode])})")
        if mode == "keep":
            seam = params.get("seam")
            if seam is not None and (isinstance(seam, bool) or not isinstance(seam, int) or not 0 <= seam <= MAX_SEAM):
                raise PayloadError("parameters.seam", f"`parameters.seam` must be a whole number of pixels from 0 to {MAX_SEAM} (the width of the blend at "
                                                      f"the edge of what changes), or null for the default (2 per 256 of the person photo's longer side); got {_kind(seam)}")
            kwargs = dict(fill=self._choice(params, "fill", "inpaint", FILLS), refine=self._flag(params, "refine", True), seam=seam)
        else:
            kwargs = dict(restore_pose=self._flag(params, "restore_pose", True))
        kwargs["category"] = category
        return mode, kwargs, self._flag(params, "return_intermediates", False)

    def _mask(self, inputs: dict, name: str, photo_name: str, photo: Image.Image) -> Optional[Image.Image]:
        if name not in inputs:
            return None
        field = f"inputs.{name}"
        mask = decode_image(inputs[name], field, self.max_image_side)
        if mask.size != photo.size:
            raise PayloadError(field, f"`{field}` is a {mask.size[0]}x{mask.size[1]} image; expected a mask of the size of `inputs.{photo_name}`, "
                                      f"{photo.size[0]}x{photo.size[1]} (width x height), white inside")
        if name == "garment_mask" and not np.asarray(mask.convert("L")).any():
            raise PayloadError(field, f"`{field}` is all black: it marks no garment; expected white where the garment is in `inputs.{photo_name}`")
        return mask

    def _photo_pose(self, inputs: dict, name: str, photo_name: str, photo: Image.Image, resolution: int):
        """One photo's pose: ``(the form the pipeline takes, (18, 3) in the photo's pixels, estimated?)``."""
        from .pose import Letterbox
        from .pipelines.utils import pose_to_square

        field, what = f"inputs.{name}", photo_name.replace("_image", " photo")
        if name in inputs:
            kps, frame = self._resolve(inputs[name], field)
            pixels = kps
            if frame is not None and tuple(frame) != photo.size:  # an OpenPose canvas: placed as the pipeline places it
                box = Letterbox.fit(photo.size[0], photo.size[1], resolution)
                pixels = box.keypoints_from_square(pose_to_square(kps, frame, box), strict=False)
            return _pipeline_pose(kps, frame), pixels, False
        kps = self._estimate_checked(photo, name, photo_name, f"`{field}` was not sent", "try-on", what=what)
        return kps, kps, True

    def _tryon(self, inputs: dict, params: dict, resolution: int) -> Dict[str, Any]:
        from .inputs import InputError

        self.flow()  # a repository without flow/ is refused before anything is decoded
        mode, kwargs, intermediates = self._tryon_parameters(params)
        photos = {name: decode_image(inputs[name], f"inputs.{name}", self.max_image_side) for name in ("person_image", "garment_image")}
        masks = {f"{side}_mask": self._mask(inputs, f"{side}_mask", f"{side}_image", photos[f"{side}_image"]) for side in ("person", "garment")}
        poses, pixels, estimated = {}, {}, set()
        for side in ("person", "garment"):
            name = f"{side}_pose"
            poses[name], pixels[name], guessed = self._photo_pose(inputs, name, f"{side}_image", photos[f"{side}_image"], resolution)
            if guessed:
                estimated.add(name)
        pipe = self.pipeline(resolution, "tryon")
        try:
            out = pipe(photos["person_image"], photos["garment_image"], **masks, **poses, mode=mode, **kwargs)
        except InputError as e:
            if e.argument in estimated:  # the pose the server estimated lacks the torso: the photo is at fault
                photo = e.argument.replace("_pose", "_image")
                size = "x".join(map(str, photos[photo].size))
                raise InputError(f"inputs.{photo}", f"the {size} {photo.replace('_image', ' photo')}, in which the pose estimator found {e.received}",
                                 e.expected, hint=f"Or send the pose as `inputs.{e.argument}` ({POSE_FORMS})") from None
            raise payload_error(e, "inputs") from None
        except (ValueError, FileNotFoundError) as e:
            raise payload_error(e, "inputs") from None
        response = {"image": encode_png(out.images[0]), "mode": out.mode, "category": kwargs["category"], "resolution": resolution,
                    "person_pose": keypoints_to_json(pixels["person_pose"]), "garment_pose": keypoints_to_json(pixels["garment_pose"])}
        if intermediates:
            response["intermediates"] = {name: encode_png(getattr(out, name)[0]) for name in TRYON_INTERMEDIATES[out.mode]}
        return response


def _pipeline_pose(kps: np.ndarray, frame):
    """A resolved pose in the form the pipelines take: the array (reference pixels) or OpenPose JSON with its canvas."""
    if frame is None:
        return kps
    from .pose import write_openpose_json

    return write_openpose_json(kps, canvas_size=frame)


# ---------------------------------------------------------------------------------------------
# HTTP
# ---------------------------------------------------------------------------------------------


def load_handler(repository: Union[str, os.PathLike]):
    """The repository's ``EndpointHandler``, imported from its ``handler.py`` by file path (as the Inference
    Endpoints toolkit does, so a customised handler is served as it would be there); `PGATServing` when the
    repository has no ``handler.py``."""
    repository = Path(repository)
    path = repository / "handler.py"
    if not path.is_file():
        logger.warning(f"'{repository}' has no handler.py (write one with pgat.hub.write_serving_files); serving it with pgat.serving.PGATServing")
        return PGATServing(repository)
    spec = importlib.util.spec_from_file_location("pgat_repository_handler", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if not hasattr(module, "EndpointHandler"):
        raise ValueError(f"'{path}' defines no `EndpointHandler` class")
    return module.EndpointHandler(str(repository))


def create_app(repository: Union[str, os.PathLike, None] = None, handler=None, max_body_bytes: int = MAX_BODY_BYTES):
    """A Starlette app serving a PGAT repository (see the module docstring for why not api-inference-community).

    Args:
        repository (`str`, *optional*): a local repository folder; its ``handler.py`` is loaded with `load_handler`.
        handler (*optional*): a callable ``data -> dict`` to serve instead (e.g. a `PGATServing`).
        max_body_bytes (`int`, *optional*, defaults to 64 MiB): larger request bodies get 413.

    Routes: ``POST /`` and ``POST /predict`` (a JSON request -> a JSON response), ``GET /`` and ``GET /health``.
    """
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    if handler is None:
        if repository is None:
            raise ValueError("create_app needs `repository` or `handler`")
        handler = load_handler(repository)

    async def predict(request: Request) -> JSONResponse:
        body = await request.body()
        if len(body) > max_body_bytes:
            return JSONResponse({"error": f"the request body is {len(body)} bytes; this server takes at most {max_body_bytes}", "field": "body"}, status_code=413)
        try:
            data = json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            return JSONResponse({"error": f"the request body is not JSON ({e}); expected {{\"inputs\": {{...}}, \"parameters\": {{...}}}}", "field": "body"}, status_code=400)
        # the model runs in a worker thread: the event loop keeps answering /health meanwhile
        result = await run_in_threadpool(handler, data)
        status = 200
        if isinstance(result, dict) and "error" in result:
            status = 500 if result.get("field") is None else 400
        return JSONResponse(result, status_code=status)

    async def health(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    routes = [
        Route("/", predict, methods=["POST"]),
        Route("/predict", predict, methods=["POST"]),
        Route("/", health, methods=["GET"]),
        Route("/health", health, methods=["GET"]),
    ]
    return Starlette(routes=routes)


def _cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from .cpu_memory import reuse_freed_memory
    from .pipelines.utils import model_or_default

    reuse_freed_memory()  # before uvicorn's threads, so that they share the arena that keeps freed memory
    repository = model_or_default(args.model)
    if not Path(repository).is_dir():
        from huggingface_hub import snapshot_download

        repository = snapshot_download(repository)  # the whole repository, as an endpoint gets it
    if args.device:
        os.environ["PGAT_DEVICE"] = args.device
    app = create_app(repository)
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level)
    return 0


def register_serve(sub) -> None:
    p = sub.add_parser("serve", help="serve a PGAT repository over HTTP (the Inference Endpoints request/response schema)")
    p.add_argument("model", nargs="?", default=None, help="Hub id or local folder of a PGAT repository (default: weights/pgat-synth-256, or $PGAT_MODEL)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    p.add_argument("--port", type=int, default=8080, help="port (default: 8080)")
    p.add_argument("--device", default=None, help="torch device (default: cuda when available, else cpu)")
    p.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])
    p.set_defaults(func=_cmd_serve)
