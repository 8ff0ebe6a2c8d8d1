"""Virtual try-on tab: a person photo + a photo of someone wearing a garment -> the person in that garment
(``api_name="tryon"``), with the intermediates of `PGATTryOnPipeline` in an accordion.

``method`` is the pipeline's ``mode``: ``"keep"`` (the default: the person photo's own pixels everywhere but the
garment) or ``"canonical"`` (the paper's route through the canonical pose, every pixel redrawn). ``garment`` (the
"Garment" radio) is the pipeline's ``category``: ``"upper_body"`` (the default), ``"lower_body"`` or ``"full_body"``.
Each was added as the last input, so API callers of the earlier four- and five-input endpoints get the defaults.

Both photos are `gr.ImageEditor` canvases: the photo is the background and what the user paints on it is the
mask. ``mask_mode`` says explicitly which masks are used:

- ``"automatic"``: BlazePose's person mask within the torso and arms of each photo (the legs and hips for a
  lower-body garment, all of them for a full-body one; strokes are ignored, and the notes say so when there are any);
- ``"drawn"``: the painted strokes: on the person photo, the region the new garment covers; on the garment
  photo, the garment. Both must be painted.

Try-on runs one request at a time (``concurrency_limit=1``, and a lock for cached examples, which run outside
that limit): its automatic masks use the package's shared BlazePose interpreter, which is not thread-safe.
"""

from __future__ import annotations

import threading
from typing import Optional, Tuple

import gradio as gr
import numpy as np
from PIL import Image

from model import Models
from pgat.inputs import check_person
from ui import EXAMPLES, Notes, Photo, PhotoEditor, examples_cache, launch, readable, resolution_dropdown

# the automatic masks run pgat.pose_estimation's shared BlazePose interpreter (not thread-safe); cached examples
# run outside the button's concurrency limit, so the limit alone does not cover them
_BLAZEPOSE_LOCK = threading.Lock()

MASK_MODES = [("Automatic (BlazePose person mask on the garment's body parts)", "automatic"), ("Drawn by hand on both photos", "drawn")]
METHODS = [("Keep the person (only the garment changes)", "keep"), ("Canonical pose (the paper's fig. 9; redraws everyone)", "canonical")]
GARMENTS = [("Upper body", "upper_body"), ("Lower body", "lower_body"), ("Full body", "full_body")]


def split_editor(value, label: str) -> Tuple[Image.Image, Optional[np.ndarray]]:
    """An ImageEditor value -> (the photo in RGB, the painted mask as bool (H, W) or None when nothing is painted)."""
    background = value.get("background") if isinstance(value, dict) else None
    if background is None:
        raise gr.Error(f"Upload the {label} (or pick an example).")
    photo = background.convert("RGBA")
    white = Image.new("RGBA", photo.size, (255, 255, 255, 255))
    photo = Image.alpha_composite(white, photo).convert("RGB")  # transparent parts of a PNG become white, as in the examples
    mask = None
    for layer in value.get("layers") or []:
        alpha = np.asarray(layer.convert("RGBA"))[:, :, 3] > 0
        if layer.size != photo.size:
            raise gr.Error(f"The strokes on the {label} are {layer.size[0]}x{layer.size[1]}, the photo {photo.size[0]}x{photo.size[1]}; draw on the photo as uploaded.")
        mask = alpha if mask is None else mask | alpha
    if mask is not None and not mask.any():
        mask = None
    return photo, mask


def make_tryon(models: Models):
    @readable
    def tryon(person, garment, mask_mode: str = "automatic", resolution: Optional[int] = None, method: str = "keep",
              category: str = "upper_body"):
        """Dress the person in the garment (``category``: the top, the bottom garment or both of the garment photo).

        Returns ``(result PNG, first intermediate, second intermediate, warped garment, garment mask, notes)``: for
        the method "keep", what had to be invented and where the result is the person photo exactly; for
        "canonical", the person and the garment's wearer in the canonical pose.
        """
        if mask_mode not in [v for _, v in MASK_MODES]:
            raise gr.Error(f"Mask mode must be one of {[v for _, v in MASK_MODES]}, got {mask_mode!r}.")
        if method not in [v for _, v in METHODS]:
            raise gr.Error(f"Method must be one of {[v for _, v in METHODS]}, got {method!r}.")
        if category not in [v for _, v in GARMENTS]:
            raise gr.Error(f"Garment must be one of {[v for _, v in GARMENTS]}, got {category!r}.")
        notes = Notes()
        person_photo, person_mask = split_editor(person, "person photo")
        garment_photo, garment_mask = split_editor(garment, "garment photo")
        if mask_mode == "drawn":
            missing = [name for name, m in (("person photo (the region the garment covers)", person_mask), ("garment photo (the garment)", garment_mask)) if m is None]
            if missing:
                raise gr.Error(f"Mask mode is 'drawn' but nothing is painted on the {' and the '.join(missing)}; paint it, or choose the automatic mask.")
        elif person_mask is not None or garment_mask is not None:
            notes.info("Mask mode is automatic: the painted strokes were not used.")
            person_mask = garment_mask = None

        counter = models.people_counter()
        person_pose = counter(person_photo)
        check_person(person_pose, "person_image", person_photo.size, "try-on", what="person photo")
        notes.people(counter.counts[-1], "the person photo")
        garment_pose = counter(garment_photo)
        check_person(garment_pose, "garment_image", garment_photo.size, "try-on", what="garment photo")
        notes.people(counter.counts[-1], "the garment photo")
        pipe = models.tryon(models.default_resolution if resolution is None else resolution, counter)
        with _BLAZEPOSE_LOCK:
            out = pipe(
                person_photo, garment_photo, person_mask=person_mask, garment_mask=garment_mask,
                person_pose=person_pose, garment_pose=garment_pose, mode=method, category=category,
            )
        if out.mode == "keep":
            notes.info("Method: keep the person. Every pixel away from the garment is the person photo's own; "
                       "the intermediates show what had to be invented (white) and the garment as moved onto the person.")
            # where the output is the person photo to the bit (white); an image rather than None, which Gradio's
            # example cache cannot read back
            kept = (np.asarray(out.images[0].convert("RGB")) == np.asarray(person_photo.convert("RGB"))).all(-1)
            first, second = out.invented_mask[0], Image.fromarray((kept * 255).astype(np.uint8)).convert("RGB")
        else:
            notes.info("Method: canonical pose (the paper's fig. 9): the whole person is redrawn by the model.")
            first, second = out.canonical_person[0], out.canonical_garment[0]
        return (out.images[0], first, second, out.warped_garment[0], out.garment_mask[0], notes.markdown())

    return tryon


def _editor(label: str) -> PhotoEditor:
    return PhotoEditor(
        label=label, type="pil", image_mode="RGBA", height=420, transforms=(), layers=False,
        brush=gr.Brush(colors=["#ff2d87"], color_mode="fixed", default_size=12),
    )


def create_demo(models: Models) -> gr.Blocks:
    tryon = make_tryon(models)
    with gr.Blocks() as demo:
        gr.Markdown("For hand-drawn masks, paint on the photos: on the person, the region the new garment covers; "
                    "on the garment photo, the garment (the one chosen under Garment). Automatic masks ignore the paint.")
        with gr.Row():
            person = _editor("Person photo")
            garment = _editor("Garment photo (someone wearing it)")
            with gr.Column():
                result = Photo(label="Result", elem_id="tryon-result", type="pil", format="png", interactive=False, height=420)
                notes = gr.Markdown(label="Notes")
        with gr.Row():
            mask_mode = gr.Radio(MASK_MODES, value="automatic", label="Garment masks")
            method = gr.Radio(METHODS, value="keep", label="Method")
            category = gr.Radio(GARMENTS, value="upper_body", label="Garment")
            resolution = resolution_dropdown(models)
        run = gr.Button("Try on", variant="primary")
        with gr.Accordion("Intermediates", open=False):
            with gr.Row():
                first = Photo(label="Keep: what had to be invented (white) · canonical: the person in the canonical pose",
                              type="pil", format="png", interactive=False)
                second = Photo(label="Keep: where the result is the person photo to the bit (white) · canonical: the garment's wearer in the canonical pose",
                               type="pil", format="png", interactive=False)
                warped_garment = Photo(label="Garment after the part warp and the appearance flow", type="pil", format="png", interactive=False)
                garment_mask = Photo(label="Where the garment was put", type="pil", format="png", interactive=False)

        outputs = [result, first, second, warped_garment, garment_mask, notes]
        run.click(tryon, [person, garment, mask_mode, resolution, method, category], outputs, api_name="tryon", concurrency_limit=1)
        gr.Examples(
            [
                [str(EXAMPLES / "person-1.png"), str(EXAMPLES / "person-3.png"), "automatic"],
                [str(EXAMPLES / "person-4.png"), str(EXAMPLES / "person-2.png"), "automatic"],
            ],
            inputs=[person, garment, mask_mode], outputs=outputs, fn=tryon, cache_examples=True, cache_mode="lazy", elem_id="tryon-examples",
        )
    return demo


if __name__ == "__main__":
    models = Models()
    examples_cache(models.model_id)
    launch(create_demo(models))
