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
  else estimated from the reference photo, and only when something needs it (fitting the pose, retargeting, or
  a model that takes the reference's pose); a photo with nobody in it is then an error that says to upload the
  JSON. An uploaded file that nothing needs is not used, and the notes say so.
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


def _preprocess_readably(component, preprocess, payload):
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
        except (ValueError, OSError) as e:  # the package's input errors: already say what is wrong
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
        """Say what happens for ``count`` people found in ``what`` (e.g. "the pose photo"): none is an error."""
        if count == 0:
            raise gr.Error(f"No person found in {what}: upload a photo where one person is seen whole (at least head, shoulders and hips).")
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
    from pgat.pose import load_openpose_json, read_openpose_json

    if pose_file is not None:
        if needed_by is None:
            notes.warn(unused)
            return None
        data, _ = load_openpose_json(pose_file)
        people = read_openpose_json(data, return_all=True)
        if len(people) > 1:
            notes.warn(f"The reference pose JSON holds {len(people)} people; the largest one was used.")
        return data
    if needed_by is None:
        return None
    counter = models.people_counter()
    keypoints = counter(picture)
    if counter.counts[-1] == 0:
        raise gr.Error(
            f"No person found in the reference photo, and {needed_by} needs the reference person's pose: upload a photo where one "
            "person is seen whole (at least head, shoulders and hips), or give their pose as an OpenPose JSON file under Advanced."
        )
    notes.people(counter.counts[-1], "the reference photo")
    return keypoints


def output_folder() -> Path:
    """A fresh folder for one request's files, inside the system temp folder that Gradio serves from."""
    return Path(tempfile.mkdtemp(prefix="pgat-space-"))


def launch(demo: gr.Blocks, concurrency_limit: Optional[int] = None) -> None:
    """Queue and launch with the Space's limits. ``GRADIO_SERVER_NAME`` / ``GRADIO_SERVER_PORT`` are read by
    Gradio itself (default 127.0.0.1:7860; Hugging Face sets 0.0.0.0 in a Space).

    ``PGAT_QUEUE_SIZE`` (default 32) requests may wait; ``PGAT_CONCURRENCY`` (default 2) run at once per event;
    uploads are limited to ``PGAT_MAX_FILE_SIZE`` (default ``"20mb"``).
    """
    demo.queue(max_size=env_int("PGAT_QUEUE_SIZE", 32), default_concurrency_limit=concurrency_limit or env_int("PGAT_CONCURRENCY", 2))
    # the examples are served from beside this file, wherever the Space is started from
    demo.launch(max_file_size=os.environ.get("PGAT_MAX_FILE_SIZE") or "20mb", allowed_paths=[str(EXAMPLES)])
