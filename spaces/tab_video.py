"""Video tab: a reference photo + a driving video or a pose sequence -> an mp4 of the person following it
(``api_name="video"``), with `PGATVideoPipeline`'s smoothing and retargeting as switches.

Decisions:

- ``pose_source`` picks the input explicitly: ``"video"`` (a driving video, posed frame by frame) or
  ``"zip"`` (a zip of OpenPose JSON files, one per frame, as ``openpose --write_json`` writes them; the
  files are taken in natural order from anywhere in the zip).
- ``fps`` 0 means the source's own rate: a driving video's, and 30 for a JSON sequence, which has none. A
  driving video is sampled at ``fps``; a JSON sequence is played at it.
- Limits, so that one request cannot hold the Space for long: a driving video may last at most
  ``PGAT_MAX_VIDEO_SECONDS`` (default 20) seconds, else the request is refused; the frame cap (at most
  ``PGAT_MAX_FRAMES``, default 300) keeps the first frames of a longer sequence and the notes say so; a zip may
  hold at most 5,000 JSON files and 50 MB once unpacked.
- The reference person's pose, needed by retargeting and by a model that takes it (``needs_reference_pose``,
  DESIGN.md §1b), comes from the optional OpenPose JSON under Advanced (``reference_pose_json``, the last input),
  else it is estimated from the reference photo, once per video. The last output is the reference skeleton that
  was used, drawn on the reference photo (`None` when none was); it is shown when the Space's model needs the pose.
- A video whose client has gone stops at the next frame (`StopWhenGone`), so that it frees its worker for the
  requests behind it: Gradio itself cannot stop a running handler that is not a generator.
"""

from __future__ import annotations

import logging
import zipfile
from pathlib import Path, PurePosixPath
from typing import Callable, Optional

import gradio as gr

from model import Models
from pgat.pipelines.utils import load_image
from pgat.pose import draw_skeleton, read_openpose_folder
from pgat.video_dataset import video_info
from ui import EXAMPLES, Notes, Photo, env_int, examples_cache, launch, output_folder, readable, reference_pose, resolution_dropdown

POSE_SOURCES = [("Driving video", "video"), ("Pose sequence: a zip of OpenPose JSON files", "zip")]
MAX_VIDEO_SECONDS = env_int("PGAT_MAX_VIDEO_SECONDS", 20)
MAX_FRAMES = env_int("PGAT_MAX_FRAMES", 300)
DEFAULT_FRAMES = min(30, MAX_FRAMES)  # 2 s at 15 fps: about half a minute of CPU for the default model
MAX_ZIP_FILES = 5000
MAX_ZIP_BYTES = 50 * 1024 * 1024
JSON_FPS = 30.0  # the pipeline's rate for a sequence without one (pgat.pipelines.video.DEFAULT_FPS)

logger = logging.getLogger("pgat.space")


class ClientGone(gr.Error):
    """Raised between two frames of a video whose client has gone; nobody receives it (Gradio prints no traceback)."""

    def __init__(self, message: str):
        super().__init__(message, print_exception=False)


def client_gone_check() -> Callable[[], bool]:
    """A check, for the worker thread running a queued request, that says whether its client has gone.

    Gradio (6.31, read in ``queueing.Queue.process_events`` / ``clean_events`` and the ``/cancel`` route) cannot stop a
    handler that is not a generator: ``/cancel`` (``gradio_client``'s ``Job.cancel()``) cancels the asyncio task that
    awaits the worker thread, which frees the queue slot at once but leaves the thread making the video to its
    end, on the same CPUs as the requests after it; a client that disconnects only marks its event not ``alive``,
    and the event keeps its slot until the handler returns. The check reads that state: the request is gone when
    its job has left the queue's running jobs (cancelled) or its event is no longer alive (disconnected). It uses
    Gradio's private ``Queue.active_jobs`` and ``Event.alive``; outside a queued event (a direct call, a test, a
    queue without those attributes) it never says gone.
    """
    from gradio.context import LocalContext

    blocks, event_id = LocalContext.blocks.get(None), LocalContext.event_id.get(None)
    active = getattr(getattr(blocks, "_queue", None), "active_jobs", None)
    mine = next((job for job in active or () if job and any(getattr(e, "_id", None) == event_id for e in job)), None)
    if event_id is None or mine is None:
        return lambda: False

    def gone() -> bool:
        return not all(e.alive for e in mine) or not any(job is mine for job in active)

    return gone


class StopWhenGone:
    """Make a video pipeline stop at its next frame once its client has gone (`client_gone_check`).

    The pipeline's progress bars are where its frame loops pass each frame (one step per driving-video frame posed,
    then one per batch generated: one frame each on a CPU), so ``pipe.progress_bar`` is replaced, on this request's
    own pipeline object, by one that checks before each step and raises `ClientGone`; the server log gets one line
    saying how far the video got.
    """

    def __init__(self, pipe, gone: Optional[Callable[[], bool]] = None):
        self.gone = gone or client_gone_check()
        self.posed = self.generated = 0
        self._progress_bar = pipe.progress_bar
        pipe.progress_bar = self.progress_bar

    def check(self, where: str) -> None:
        if self.gone():
            logger.warning(f"video request stopped, its client has gone (cancelled or disconnected): {where}")
            raise ClientGone("The video was stopped: its client has gone.")

    def progress_bar(self, iterable=None, total=None):
        bar = self._progress_bar(iterable=iterable, total=total)
        if iterable is not None:  # the generation loop: one item per batch
            return self._batches(bar, len(iterable) if hasattr(iterable, "__len__") else "?")
        update = bar.update  # pose estimation: update(1) after each frame

        def checked_update(n=1):
            self.posed += n
            self.check(f"{self.posed} of {total} driving frames posed, no frame generated")
            return update(n)

        bar.update = checked_update
        return bar

    def _batches(self, bar, total):
        for item in bar:
            self.check(f"{self.generated} of {total} batches generated")
            yield item
            self.generated += 1


def unpack_sequence(path, folder: Path) -> int:
    """Unpack the JSON files of a pose-sequence zip flat into ``folder``; return how many frames it holds.

    Only ``*.json`` members are read (folders inside the zip are flattened, macOS ``__MACOSX`` and hidden
    files skipped); names are never used as paths, so a member cannot write outside ``folder``.
    """
    name = Path(path).name
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as e:
        raise ValueError(f"Pose sequence: '{name}' is not a readable zip file ({e}); upload a .zip of OpenPose JSON files, one per frame") from None
    with archive:
        members = [
            m for m in archive.infolist()
            if not m.is_dir() and m.filename.lower().endswith(".json")
            and "__MACOSX" not in PurePosixPath(m.filename).parts and not PurePosixPath(m.filename).name.startswith(".")
        ]
        if not members:
            raise ValueError(f"Pose sequence: '{name}' holds no .json file; expected OpenPose JSON files, one per frame")
        if len(members) > MAX_ZIP_FILES:
            raise ValueError(f"Pose sequence: '{name}' holds {len(members)} JSON files; this Space takes at most {MAX_ZIP_FILES}")
        size = sum(m.file_size for m in members)
        if size > MAX_ZIP_BYTES:
            raise ValueError(f"Pose sequence: '{name}' unpacks to {size / 1e6:.0f} MB of JSON; this Space takes at most {MAX_ZIP_BYTES / 1e6:.0f} MB")
        seen = {}
        for m in members:
            base = PurePosixPath(m.filename).name
            if base in seen:
                raise ValueError(f"Pose sequence: '{name}' holds two files named '{base}' ({seen[base]} and {m.filename}); frames need distinct names")
            seen[base] = m.filename
            (folder / base).write_bytes(archive.read(m))
    try:
        sequence, info = read_openpose_folder(folder, return_info=True)  # read once here: bad files are named by their zip path
    except (ValueError, FileNotFoundError) as e:
        raise ValueError(f"Pose sequence '{name}': {str(e).replace(str(folder) + '/', '')}") from None
    return len(sequence)


def make_video(models: Models):
    @readable
    def video(reference, pose_source, driving_video, pose_zip, fps: float = 0, max_frames: int = DEFAULT_FRAMES, smooth: bool = True,
              retarget: bool = True, resolution: Optional[int] = None, reference_pose_json=None, progress=gr.Progress(track_tqdm=True)):
        """Animate the reference person with the driving video or pose sequence.

        Returns ``(mp4 path, notes, reference pose picture or None)``.
        """
        notes = Notes()
        if reference is None:
            raise gr.Error("Upload a reference photo of the person (or pick an example).")
        if fps is None or not 0 <= float(fps) <= 60:
            raise gr.Error(f"fps must be from 0 (the source's own rate) to 60, got {fps!r}.")
        if max_frames is None or int(max_frames) != max_frames or not 1 <= int(max_frames) <= MAX_FRAMES:
            raise gr.Error(f"Frame cap must be a whole number from 1 to {MAX_FRAMES}, got {max_frames!r}.")
        fps, max_frames = (float(fps) or None), int(max_frames)
        picture = load_image(reference, "Reference photo")
        folder = output_folder()

        # 1. the pose source, checked against the limits before anything heavy runs
        if pose_source == "video":
            if driving_video is None:
                raise gr.Error("Pose source is 'video' but no driving video was uploaded.")
            try:
                info = video_info(driving_video)
            except ValueError as e:
                raise ValueError(f"Driving video: {e}") from None
            if info["duration"] > MAX_VIDEO_SECONDS:
                raise gr.Error(f"The driving video lasts {info['duration']:.1f} s; this Space takes up to {MAX_VIDEO_SECONDS} s. Trim it and upload it again.")
            rate = fps or info["fps"] or JSON_FPS
            available = max(1, round(info["duration"] * rate))
            sequence = driving_video
        elif pose_source == "zip":
            if pose_zip is None:
                raise gr.Error("Pose source is 'zip' but no zip of OpenPose JSON files was uploaded.")
            sequence = folder / "poses"
            sequence.mkdir()
            available = unpack_sequence(pose_zip, sequence)
        else:
            raise gr.Error(f"Pose source must be one of {[v for _, v in POSE_SOURCES]}, got {pose_source!r}.")
        if available > max_frames:
            notes.warn(f"The {'driving video' if pose_source == 'video' else 'pose sequence'} has {available} frames; the frame cap kept the first {max_frames}.")

        # 2. the reference person's pose, for retargeting and for a model that takes it (once per video)
        counter = models.people_counter()
        pipe = models.video(models.default_resolution if resolution is None else resolution, counter)
        StopWhenGone(pipe)  # between frames: a cancelled or disconnected request frees its worker
        needs = [why for why, on in (("retargeting", bool(retarget)), ("this model", pipe.model.needs_reference_pose)) if on]
        ref_pose = reference_pose(
            models, picture, reference_pose_json, " and ".join(needs) or None, notes,
            unused="The reference pose file was not used: retargeting is off and this model does not take the reference's pose.",
        )

        # 3. the video (progress comes from the pipeline's tqdm bars)
        out = pipe(picture, str(sequence), fps=fps, output_path=folder / "pgat-video.mp4", reference_pose=ref_pose,
                   retarget=bool(retarget), smooth=bool(smooth), max_frames=max_frames)
        several = sum(c > 1 for c in counter.counts)
        nobody = sum(c == 0 for c in counter.counts)
        if several:
            notes.warn(f"{several} frames of the driving video show several people; the largest one was used in each.")
        if nobody:
            notes.warn(f"{nobody} frames of the driving video show nobody; their poses were filled from neighbouring frames where possible.")
        notes.lines.append(f"{len(out.frames)} frames at {out.fps:g} fps, {picture.size[0]}x{picture.size[1]}.")
        reference_view = None if out.reference_pose is None else draw_skeleton(picture, out.reference_pose)
        return out.video_path, notes.markdown(), reference_view

    return video


def create_demo(models: Models) -> gr.Blocks:
    video = make_video(models)
    with gr.Blocks() as demo:
        with gr.Row():
            with gr.Column():
                reference = Photo(label="Reference photo", type="filepath", image_mode=None, height=360)
                pose_source = gr.Radio(POSE_SOURCES, value="video", label="Motion from")
                driving_video = gr.Video(label=f"Driving video (up to {MAX_VIDEO_SECONDS} s)", sources=["upload"], height=300)
                pose_zip = gr.File(label="Pose sequence (.zip of OpenPose JSON files)", file_types=[".zip"], type="filepath", visible=False)
                with gr.Row():
                    smooth = gr.Checkbox(True, label="Smooth the keypoints over time (One-Euro)")
                    retarget = gr.Checkbox(True, label="Retarget: the reference person's body proportions")
                fps = gr.Slider(0, 60, value=0, step=1, label="fps (0: the source's own; 30 for a JSON sequence)")
                max_frames = gr.Slider(1, MAX_FRAMES, value=DEFAULT_FRAMES, step=1, label="Frame cap (the first frames are kept)")
                resolution = resolution_dropdown(models)
                with gr.Accordion("Advanced", open=False):
                    reference_pose_json = gr.File(label="Reference person's pose (OpenPose JSON, optional; estimated from the photo when needed)",
                                                  file_types=[".json"], type="filepath")
                run = gr.Button("Make the video", variant="primary")
            with gr.Column():
                result = gr.Video(label="Result (mp4)", elem_id="video-result", interactive=False, height=420)
                notes = gr.Markdown(label="Notes")
                reference_view = Photo(label="Reference pose used", elem_id="video-reference-pose", type="pil", format="png", interactive=False,
                                       height=240, visible=models.needs_reference_pose)

        pose_source.change(lambda s: (gr.update(visible=s == "video"), gr.update(visible=s == "zip")), pose_source, [driving_video, pose_zip],
                           api_visibility="private", queue=False)
        run.click(video, [reference, pose_source, driving_video, pose_zip, fps, max_frames, smooth, retarget, resolution, reference_pose_json],
                  [result, notes, reference_view], api_name="video")
        # as in the pose tab: a None image cannot be read back from Gradio's example cache, so the examples show the
        # reference pose only for a model that needs it (then it is never None)
        outputs = [result, notes, reference_view] if models.needs_reference_pose else [result, notes]

        def video_example(reference, pose_source, driving_video, pose_zip, progress=gr.Progress(track_tqdm=True)):
            return video(reference, pose_source, driving_video, pose_zip)[:len(outputs)]

        gr.Examples(
            [
                [str(EXAMPLES / "person-3.png"), "video", str(EXAMPLES / "driving.mp4"), None],
                [str(EXAMPLES / "person-1.png"), "zip", None, str(EXAMPLES / "workout_march.zip")],
            ],
            inputs=[reference, pose_source, driving_video, pose_zip], outputs=outputs, fn=video_example,
            cache_examples=True, cache_mode="lazy", elem_id="video-examples",
        )
    return demo


if __name__ == "__main__":
    models = Models()
    examples_cache(models.model_id)
    launch(create_demo(models))
