"""What the tabs share: upload components whose failures read well, error handling, notes, settings.

Decisions:

- An upload that is not an image fails in Gradio's own preprocessing, which would show a developer's
  message (or none). `Photo` and `PhotoEditor` are `gr.Image` / `gr.ImageEditor` with the same front end
  (Gradio's ``is_template`` mechanism) whose preprocessing turns that into a `gr.Error` naming the input.
- Every handler is wrapped by `readable`: the package's `ValueError` / `OSError` messages already name the
  argument, the value and what is expected, so they are shown as they are; anything else is logged with its
  traceback and shown as one line, never as a stack trace.
- What a request decided for the user (the largest of several people was used, a sequence was cut at the
  frame cap) is said twice: as a toast (`gr.Warning`) and in a notes box that stays next to the result.
- The reference person's pose (`reference_pose`) is read from an uploaded OpenPose JSON file when there is one,
  else estimated from the reference photo, and used only when something needs it (fitting the pose, retargeting,
  or a model that takes the reference's pose). The photo is checked for a person either way, by the rule every
  door applies (`pgat.inputs.check_person`: a half-body photo is enough): a photo with nobody in it is an error,
  which says to upload the JSON when the pose is needed. An uploaded file that nothing needs is not used, and the
  notes say so.
- What is a usable image or pose is decided by `pgat.inputs`, as for the CLI and the server; its errors name the
  pipelines' arguments, shown here by the labels of the inputs they come from (`SPACE_NAMES`).
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import re
import tempfile
from pathlib import Path
from typing import Callable, List, Optional

import gradio as gr
from PIL import UnidentifiedImageError

from pgat.inputs import InputError

HERE = Path(__file__).resolve().parent
EXAMPLES = HERE / "examples"

logger = logging.getLogger("pgat.space")
# part of the example cache's key: bump it when a tab's inputs or outputs change, so that a cache written by an
# older layout (one output fewer) is not read back into the new one
CACHE_LAYOUT = 2


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        number = int(value)
    except ValueError:
        raise ValueError(f"environment variable {name} must be a positive integer, got {value!r}") from None
    if number < 1:
        raise ValueError(f"environment variable {name} must be a positive integer, got {value!r}")
    return number


def examples_cache(model_id: str) -> None:
    """Keep lazily cached examples beside the Space, one folder per model (a new model gets fresh outputs),
    unless ``GRADIO_EXAMPLES_CACHE`` is set."""
    if os.environ.get("GRADIO_EXAMPLES_CACHE"):
        return
    index = Path(model_id) / "model_index.json"
    stamp = f"{model_id}:{index.stat().st_mtime_ns if index.is_file() else ''}:{CACHE_LAYOUT}"
    key = hashlib.sha1(stamp.encode()).hexdigest()[:12]
    os.environ["GRADIO_EXAMPLES_CACHE"] = str(HERE / ".gradio" / "cached_examples" / key)


def _short_paths(message: str) -> str:
    """Uploads and outputs live in hashed temporary folders; a message names the file, not the folder."""
    folders = [os.environ.get("GRADIO_TEMP_DIR") or os.path.join(tempfile.gettempdir(), "gradio"), tempfile.gettempdir()]
    for folder in folders:
        message = re.sub(re.escape(folder.rstrip("/")) + r"/(?:[0-9a-f]{16,}|pgat-space-[^/\s'\"]+)/(?:[^/\s'\"]+/)*", "", message)
    return message


def _unreadable(label: Optional[str], error: Exception) -> gr.Error:
    name = label or "image"
    return gr.Error(_short_paths(f"{name}: the uploaded file is not a readable image ({type(error).__name__}: {error})"))


# how the Space names the pipelines' arguments (`pgat.inputs.InputError.argument`) in its errors: by the labels
SPACE_NAMES = {
    "reference_image": "Reference photo",
    "target_pose": "Target pose",
    "reference_pose": "Reference pose JSON",
    "pose_sequence": "Pose sequence",
    "person_image": "Person photo",
    "garment_image": "Garment photo",
    "person_mask": "Person mask",
    "garment_mask": "Garment mask",
    "person_pose": "Person pose",
    "garment_pose": "Garment pose",
}


def _preprocess_readably(component, preprocess, payload):
    from pgat.inputs import open_image

    def path_of(data):
        return getattr(data, "path", None) or (data.get("path") if isinstance(data, dict) else None)

    # an image's upload, or the photo under an editor's strokes (`gr.ImageEditor`'s "background")
    background = getattr(payload, "background", None) or (payload.get("background") if isinstance(payload, dict) else None)
    path = path_of(payload) or path_of(background)
    try:
        if isinstance(path, str) and os.path.isfile(path):
            # the checks of every door, from the file's header, before Gradio decodes a pixel (a small file can
            # declare an enormous image)
            open_image(path, component.label or "image").close()
    except InputError as e:
        raise gr.Error(_short_paths(str(e))) from None
    try:
        return preprocess(payload)
    except gr.Error:
        raise
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise _unreadable(component.label, e) from None


class Photo(gr.Image):
    """`gr.Image` whose unreadable uploads give a readable `gr.Error`."""

    is_template = True  # the front end of gr.Image

    def preprocess(self, payload):
        return _preprocess_readably(self, super().preprocess, payload)


class PhotoEditor(gr.ImageEditor):
    """`gr.ImageEditor` whose unreadable uploads give a readable `gr.Error`."""

    is_template = True  # the front end of gr.ImageEditor

    def preprocess(self, payload):
        return _preprocess_readably(self, super().preprocess, payload)


def resolution_dropdown(models) -> gr.Dropdown:
    """The stages of the model, highest first chosen."""
    return gr.Dropdown([(f"{r}×{r}", r) for r in models.stages], value=models.default_resolution, label="Resolution (model stage)")


def readable(fn: Callable) -> Callable:
    """Run a handler so that every failure reaches the user as one readable `gr.Error`."""

    @functools.wraps(fn)  # gradio reads the signature (gr.Progress defaults) through __wrapped__
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except gr.Error:
            raise
        except InputError as e:  # what `pgat.inputs` refused, named by the Space's labels
            raise gr.Error(_short_paths(e.renamed(SPACE_NAMES))) from None
        except (ValueError, OSError) as e:  # the package's other errors: already say what is wrong
            raise gr.Error(_short_paths(str(e))) from None
        except Exception as e:  # a bug: the log gets the traceback, the user one line
            logger.exception("request failed")
            raise gr.Error(_short_paths(f"Something went wrong inside the Space ({type(e).__name__}: {e}); the details are in the server log.")) from None

    return wrapper


class Notes:
    """What one request decided for the user; each note is also shown as a toast."""

    def __init__(self):
        self.lines: List[str] = []

    def warn(self, text: str) -> None:
        self.lines.append(text)
        gr.Warning(text)

    def info(self, text: str) -> None:
        self.lines.append(text)
        gr.Info(text)

    def people(self, count: int, what: str) -> None:
        """Say what happens for ``count`` people found in ``what`` (e.g. "the pose photo"); nobody is refused by
        `pgat.inputs.check_person` / `check_body` before this is asked."""
        if count > 1:
            self.warn(f"{what[0].upper()}{what[1:]} shows {count} people; the largest one was used.")

    def markdown(self) -> str:
        # paragraphs, not "- " bullets: cached examples store outputs in a CSV file, which prefixes text that
        # starts with "-" (a spreadsheet formula character) with a quote
        return "\n\n".join(self.lines)


def reference_pose(models, picture, pose_file, needed_by: Optional[str], notes: "Notes", unused: str):
    """The reference person's pose for a pipeline, or `None` when nothing needs it.

    Args:
        models: the Space's `Models` (its estimator, when the pose is estimated).
        picture (`PIL.Image.Image`): the reference photo.
        pose_file (`str`, *optional*): an uploaded OpenPose JSON file of the reference person (used as it is, with
            its ``canvas_width`` / ``canvas_height`` when it has them, else in the reference photo's pixels).
        needed_by (`str`, *optional*): what needs the pose, e.g. "this model"; `None` when nothing does.
        notes (`Notes`): where the decisions of this request are written.
        unused (`str`): the note for an uploaded file that nothing needs.
    """
    from pgat.inputs import check_person, openpose_people, parse_json_file

    if pose_file is not None:
        if needed_by is None:
            notes.warn(unused)
        else:
            data = parse_json_file(pose_file, "reference_pose")
            people = openpose_people(data, "reference_pose")
            if not people:
                raise InputError("reference_pose", "OpenPose JSON with an empty 'people' list (nobody in it)", "at least one person")
            if len(people) > 1:
                notes.warn(f"The reference pose JSON holds {len(people)} people; the largest one was used.")
            return data
    counter = models.people_counter()
    keypoints = counter(picture)
    try:
        check_person(keypoints, "reference_image", picture.size, needed_by or "pose transfer")
    except InputError as e:
        if needed_by is None:
            raise
        raise InputError(e.argument, e.received, e.expected, hint="Or give the person's pose as an OpenPose JSON file under Advanced.") from None
    notes.people(counter.counts[-1], "the reference photo")
    return keypoints if needed_by is not None else None


def output_folder() -> Path:
    """A fresh folder for one request's files, inside the system temp folder that Gradio serves from."""
    return Path(tempfile.mkdtemp(prefix="pgat-space-"))


def write_cached_images_atomically() -> None:
    """Make Gradio write each picture it caches (outputs, and uploads read as file paths) to a temporary name beside
    its place and rename it there, instead of writing it in place; keep a file already there.

    Gradio 6.31's ``processing_utils.save_pil_to_cache`` names the file by the hash of the picture's bytes and writes
    it in place every time (``write_bytes``: truncate, then write). Two requests that make the same picture at once
    (the same preset pose's drawing, the same reference's skeleton) write the same file, and a client downloading
    it meanwhile gets a body cut short ("peer closed connection without sending complete message body", seen with
    8 and 16 clients at once). A rename is atomic, so a reader gets the old whole file or the new one; a file
    already at that name holds the same bytes. Gradio's own ``save_file_to_cache`` already works this way.
    """
    from gradio import processing_utils

    if getattr(processing_utils.save_pil_to_cache, "_pgat_atomic", False):
        return

    def save_pil_to_cache(img, cache_dir: str, name: str = "image", format: str = "webp") -> str:
        data = processing_utils.encode_pil_to_bytes(img, format)
        folder = Path(cache_dir) / processing_utils.hash_bytes(data)
        folder.mkdir(exist_ok=True, parents=True)
        path = (folder / f"{name}.{format}").resolve()
        if path.exists():
            try:
                os.utime(path)  # Gradio's cache cleaner ages files by their time: one handed out again is touched
            except OSError:
                pass
            return str(path)
        fd, staging = tempfile.mkstemp(dir=folder, prefix=f".{name}.")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(staging, path)
        except BaseException:
            Path(staging).unlink(missing_ok=True)
            raise
        return str(path)

    save_pil_to_cache._pgat_atomic = True
    processing_utils.save_pil_to_cache = save_pil_to_cache  # image_utils and the components call it through the module


def launch(demo: gr.Blocks, concurrency_limit: Optional[int] = None) -> None:
    """Queue and launch with the Space's limits. ``GRADIO_SERVER_NAME`` / ``GRADIO_SERVER_PORT`` are read by
    Gradio itself (default 127.0.0.1:7860; Hugging Face sets 0.0.0.0 in a Space).

    ``PGAT_QUEUE_SIZE`` (default 32) requests may wait; ``PGAT_CONCURRENCY`` (default 2) run at once per event;
    uploads are limited to ``PGAT_MAX_FILE_SIZE`` (default ``"20mb"``).
    """
    write_cached_images_atomically()  # requests served at once may return the same picture
    demo.queue(max_size=env_int("PGAT_QUEUE_SIZE", 32), default_concurrency_limit=concurrency_limit or env_int("PGAT_CONCURRENCY", 2))
    # the examples are served from beside this file, wherever the Space is started from
    demo.launch(max_file_size=os.environ.get("PGAT_MAX_FILE_SIZE") or "20mb", allowed_paths=[str(EXAMPLES)])
