"""Pose transfer tab: a reference photo + a target pose -> the same person in that pose (``api_name="pose_transfer"``).

The target pose comes from one of three sources, picked explicitly (``pose_source``), so an API call never
depends on which boxes happen to be filled:

- ``"preset"``: a real DeepFashion test pose from the gallery (``spaces/examples/poses``);
- ``"photo"``: a photo of someone standing that way; the pose estimator reads it and the detected skeleton is
  shown; the pose is mapped from that photo's frame the way `PGATPipeline` maps any other frame;
- ``"json"``: an OpenPose JSON file (COCO-18 or BODY_25; its ``canvas_width`` / ``canvas_height`` when it has
  them, else the reference photo's pixels).

Outputs: the result (PNG), the same with the target skeleton drawn on it (the overlay toggle switches which
one is shown, without running the model again), the target pose as drawn, a PNG download of the clean
result, notes, and (last, added with models beyond the paper) the reference person's skeleton drawn on the
reference photo when a reference pose was used (`None` otherwise).

The reference person's pose is needed by "fit the pose" and by a model that takes it (``needs_reference_pose``,
DESIGN.md §1b): it comes from the optional OpenPose JSON under Advanced (``reference_pose_json``, the last input,
so API calls made before it existed still work), else it is estimated from the reference photo. The "Reference
pose used" image is shown when the Space's model needs the pose; API calls get it whenever one was used.
"""

from __future__ import annotations

from typing import Optional, Tuple

import gradio as gr
from PIL import Image

from model import Models
from pgat.inputs import InputError, check_body, openpose_people, parse_json_file
from pgat.pipelines.utils import load_image
from pgat.pose import _person_area, draw_skeleton, write_openpose_json
from ui import EXAMPLES, Notes, Photo, examples_cache, launch, output_folder, readable, reference_pose, resolution_dropdown

POSE_SOURCES = [("Preset pose", "preset"), ("Photo of someone in the pose", "photo"), ("OpenPose JSON file", "json")]
PRESET_DIR = EXAMPLES / "poses"
PRESETS = sorted(p.stem for p in PRESET_DIR.glob("*.json"))
MAX_CANVAS = 8192


def _canvas(data, reference: Image.Image) -> Tuple[int, int]:
    """The frame an OpenPose JSON's keypoints are in: its recorded canvas, else the reference photo's."""
    if not (isinstance(data, dict) and "canvas_width" in data and "canvas_height" in data):
        return reference.size
    try:
        size = (int(data["canvas_width"]), int(data["canvas_height"]))
    except (TypeError, ValueError):
        size = None
    if size is None or not all(1 <= s <= MAX_CANVAS for s in size):
        raise ValueError(
            f"Pose JSON: canvas_width / canvas_height must be whole numbers from 1 to {MAX_CANVAS}, "
            f"got {data['canvas_width']!r} x {data['canvas_height']!r}"
        )
    return size


def target_pose(models: Models, source: str, pose_photo, pose_json, preset, reference: Image.Image, notes: Notes):
    """The pose input for the pipeline (OpenPose JSON as a dict, with its canvas) and a picture of it."""
    if source == "photo":
        if pose_photo is None:
            raise gr.Error("Pose source is 'photo' but no pose photo was uploaded.")
        picture = load_image(pose_photo, "Pose photo")
        counter = models.people_counter()
        keypoints = counter(picture)
        check_body(keypoints, "Pose photo", picture.size, what=f"the {picture.size[0]}x{picture.size[1]} pose photo", photo=True)
        notes.people(counter.counts[-1], "the pose photo")
        return write_openpose_json(keypoints, canvas_size=picture.size), draw_skeleton(picture, keypoints)
    if source == "json":
        if pose_json is None:
            raise gr.Error("Pose source is 'json' but no OpenPose JSON file was uploaded.")
        path, what = pose_json, "the pose JSON"
    elif source == "preset":
        if preset not in PRESETS:
            raise gr.Error(f"Preset pose must be one of {PRESETS}, got {preset!r}.")
        path, what = PRESET_DIR / f"{preset}.json", f"preset {preset}"
    else:
        raise gr.Error(f"Pose source must be one of {[v for _, v in POSE_SOURCES]}, got {source!r}.")
    name = "Pose JSON" if source == "json" else f"Preset pose {preset}"
    data = parse_json_file(path, name)
    people = openpose_people(data, name)
    if not people:
        raise InputError(name, "OpenPose JSON with an empty 'people' list (nobody in it)", "at least one person")
    if len(people) > 1:
        notes.warn(f"{what[0].upper()}{what[1:]} holds {len(people)} people; the largest one was used.")
    width, height = _canvas(data, reference)
    people.sort(key=_person_area, reverse=True)
    check_body(people[0], name, (width, height), what="a target pose")
    return data, draw_skeleton((height, width), people[0])


def pick_preset(evt: gr.SelectData):
    """A click on the gallery picks that preset (and the preset source)."""
    return PRESETS[evt.index], "preset"


def make_transfer(models: Models):
    @readable
    def transfer(reference, pose_source, pose_photo, pose_json, preset, resolution: Optional[int] = None, align_pose: bool = False,
                 reference_pose_json=None):
        """Render the reference person in the target pose.

        Returns ``(result PNG, result with skeleton, target pose picture, download path, notes, reference pose picture
        or None)``.
        """
        notes = Notes()
        if reference is None:
            raise gr.Error("Upload a reference photo of the person (or pick an example).")
        picture = load_image(reference, "Reference photo")
        pipe = models.pose_transfer(models.default_resolution if resolution is None else resolution)
        pose, pose_picture = target_pose(models, pose_source, pose_photo, pose_json, preset, picture, notes)
        needs = [why for why, on in (("fitting the pose", bool(align_pose)), ("this model", pipe.model.needs_reference_pose)) if on]
        ref_pose = reference_pose(
            models, picture, reference_pose_json, " and ".join(needs) or None, notes,
            unused="The reference pose file was not used: this model does not take the reference's pose, and 'fit the pose' is off.",
        )
        out = pipe(picture, pose, reference_pose=ref_pose, align_pose=bool(align_pose))
        image, keypoints = out.images[0], out.target_poses[0]
        path = output_folder() / "pgat-pose-transfer.png"
        image.save(path)
        reference_view = None if out.reference_poses is None else draw_skeleton(picture, out.reference_poses[0])
        return image, draw_skeleton(image, keypoints), pose_picture, str(path), notes.markdown(), reference_view

    return transfer


def create_demo(models: Models) -> gr.Blocks:
    transfer = make_transfer(models)
    with gr.Blocks() as demo:
        with gr.Row():
            with gr.Column():
                reference = Photo(label="Reference photo", type="filepath", image_mode=None, height=360)
                pose_source = gr.Radio(POSE_SOURCES, value="preset", label="Target pose from")
                with gr.Group(visible=True) as preset_box:
                    gallery = gr.Gallery(
                        [(str(PRESET_DIR / f"{p}.png"), p) for p in PRESETS], label="Preset poses (real DeepFashion poses)",
                        columns=4, height=330, allow_preview=False, interactive=False,
                    )
                    preset = gr.Dropdown(PRESETS, value=PRESETS[0], label="Preset pose")
                pose_photo = Photo(label="Pose photo", type="filepath", image_mode=None, height=300, visible=False)
                pose_json = gr.File(label="OpenPose JSON", file_types=[".json"], type="filepath", visible=False)
                resolution = resolution_dropdown(models)
                with gr.Accordion("Advanced", open=False):
                    align_pose = gr.Checkbox(False, label="Fit the pose to the reference person (move and scale it onto their body)")
                    reference_pose_json = gr.File(label="Reference person's pose (OpenPose JSON, optional; estimated from the photo when needed)",
                                                  file_types=[".json"], type="filepath")
                run = gr.Button("Transfer pose", variant="primary")
            with gr.Column():
                result = Photo(label="Result", elem_id="pose-result", type="pil", format="png", interactive=False, height=420)
                with_skeleton = Photo(label="Result with skeleton", elem_id="pose-result-skeleton", type="pil", format="png", interactive=False, height=420, visible=False)
                show_skeleton = gr.Checkbox(False, label="Show the target skeleton on the result")
                pose_view = Photo(label="Target pose", type="pil", format="png", interactive=False, height=240)
                download = gr.File(label="Download (PNG)", interactive=False)
                notes = gr.Markdown(label="Notes")
                reference_view = Photo(label="Reference pose used", elem_id="pose-reference-pose", type="pil", format="png", interactive=False,
                                       height=240, visible=models.needs_reference_pose)

        outputs = [result, with_skeleton, pose_view, download, notes, reference_view]
        pose_source.change(
            lambda s: (gr.update(visible=s == "preset"), gr.update(visible=s == "photo"), gr.update(visible=s == "json")),
            pose_source, [preset_box, pose_photo, pose_json], api_visibility="private", queue=False,
        )
        gallery.select(pick_preset, None, [preset, pose_source], api_visibility="private", queue=False)
        show_skeleton.change(lambda on: (gr.update(visible=not on), gr.update(visible=on)), show_skeleton, [result, with_skeleton],
                             api_visibility="private", queue=False)
        run.click(transfer, [reference, pose_source, pose_photo, pose_json, preset, resolution, align_pose, reference_pose_json], outputs,
                  api_name="pose_transfer")
        # Gradio caches a None image as an empty string that it cannot read back (a JSONDecodeError when the example
        # is clicked): the examples leave the "reference pose used" output out unless the model needs the pose, and
        # then it is never None
        keep = len(outputs) if models.needs_reference_pose else len(outputs) - 1

        def transfer_example(reference, pose_source, pose_photo, pose_json, preset):
            return transfer(reference, pose_source, pose_photo, pose_json, preset)[:keep]

        gr.Examples(
            [
                [str(EXAMPLES / "person-1.png"), "preset", None, None, "pose-03"],
                [str(EXAMPLES / "person-3.png"), "photo", str(EXAMPLES / "pose-photo.png"), None, PRESETS[0]],
                [str(EXAMPLES / "person-2.png"), "json", None, str(PRESET_DIR / "pose-08.json"), PRESETS[0]],
            ],
            inputs=[reference, pose_source, pose_photo, pose_json, preset],
            outputs=outputs[:keep], fn=transfer_example, cache_examples=True, cache_mode="lazy", elem_id="pose-examples",
        )
    return demo


if __name__ == "__main__":
    models = Models()
    examples_cache(models.model_id)
    launch(create_demo(models))
