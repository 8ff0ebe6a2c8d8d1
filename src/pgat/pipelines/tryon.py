"""PGATTryOnPipeline: a photo of a person + a photo of someone wearing a garment -> the person in that garment.

Two modes (``mode=``; the output's ``mode`` says which one made it):

- ``"keep"`` (the default), keep the person: the garment photo is moved onto the person's pose part by part
  (`move_garment`: `pgat.parts`' torso and arm transforms from the wearer's keypoints to the person's), the
  appearance flow corrects that warp, and the result is composited into the person photo, in its own pixels, with
  a soft seam. Every pixel away from the old and the new garment is the photo's own. Only the old garment's
  region that the new one leaves uncovered is invented (``fill``: see `PGATTryOnPipeline.__call__`). Users of try-on
  Spaces expect this: face, hair, legs and background untouched. Measured against SynthHumans' exact try-on ground
  truth in docs/tryon.md. ``category="lower_body"`` / ``"full_body"`` moves a bottom garment (thighs, shins, hips)
  or a top and a bottom the same way (`CATEGORIES`);
- ``"canonical"``: the paper's route, below; every pixel is redrawn by the pose-transfer model.

The paper's fig. 9 (mode ``"canonical"``), in steps:

1. canonical pose: the pose-transfer model moves the person *and* the garment photo's wearer into one fixed
   frontal pose (``canonical_pose`` in the flow model's config, 18 points of a 256 square; see
   `pgat.pose.CANONICAL_POSE`). This undoes occlusions (an arm across the shirt) and puts
   both garments in comparable places;
2. garment masks: the garment's region in the garment photo and the region it must cover on the person.
   Given masks (parsing masks, e.g. SynthHumans' ``"top"``, or masks a user drew) are used as they are;
   otherwise each is made automatically: the person mask of BlazePose
   (``pgat.pose_estimation.estimate(..., return_mask=True)``) intersected with the torso and arm regions
   of the photo's pose. Masks are drawn on the photos, so they are carried to the canonical pose body part
   by body part: every part (torso, upper arms, forearms) has a local frame spanned by its keypoints, and
   a canonical pixel takes the mask value at the same local coordinates in the photo;
3. appearance flow: `AppearanceFlowModel` takes (canonical garment, its mask, target region) and predicts a
   flow; ``grid_sample`` warps the garment;
4. composite: the warped garment is pasted on the canonical person inside the target region (the warped
   garment carries its own alpha, the warped mask);
5. (``restore_pose=True``, the default) the pose-transfer model moves the dressed person back to their own
   pose, and the result is cut back to the person photo's size and framing.

A pose-transfer model that takes the reference person's own pose (``model.needs_reference_pose``, DESIGN.md §1b)
gets the poses this pipeline already has: each photo's pose (given as ``person_pose`` / ``garment_pose`` or
estimated) in step 1, and the canonical pose, which the composite is in, in step 5. Nothing more is estimated.

Intermediates are returned for display (the Space's accordion): for "keep", the moved garment, where it was put
and what was invented, in the person photo's frame; for "canonical", the canonical person and garment, the warped
garment and the composite mask, in the model's square.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Tuple, Union

import numpy as np
import PIL.Image
import torch
import torch.nn.functional as F
from diffusers.utils import BaseOutput

from ..models import PGATModel
from ..models.flow import AppearanceFlowModel, warp
from ..parts import (
    ARM_PARTS,
    CORE_MARGIN,
    FULL_BODY_PARTS,
    GARMENT_CATEGORIES,
    GARMENT_MARGIN,
    LEG_PARTS,
    LOWER_BODY_PARTS,
    PART_INDEX,
    UPPER_BODY_PARTS,
    WAIST,
    body_unit,
    complete_legs,
    composite_grid,
    part_masks,
)
from ..pose import CANONICAL_FRAME, Letterbox, visible
from .pose_transfer import PGATPipeline
from .utils import format_images, pose_to_square, prepare_reference, resolve_pose, to_pil

FLOW_FOLDER = "flow"



MODES = ("keep", "canonical")
FILLS = ("inpaint", "generator", "person")
# The garment categories (``category=``): a top, a bottom garment (trousers, shorts, a skirt), or both (a dress, an
# outfit). Each says which `pgat.parts` parts carry the garment (`CATEGORY_PARTS`: the lower body's hips are the
# torso, its mask cut at `pgat.parts.WAIST` in the automatic masks, see `pgat.parts.LOWER_BODY_PARTS`) and which
# parts take the pixels of their cores where they cross others (`CATEGORY_IN_FRONT`, `pgat.parts.composite_grid`):
# - a top: the arms, over the torso;
# - a bottom: the legs, over the torso's box at the hips (a thigh's top follows the thigh). On 100 SynthHumans test
#   triples (rigid warp, parsing masks) region SSIM 0.526 with the legs in front, 0.517 with the torso's box in front;
# - both: the arms only, and the torso's box over the thighs' tops (0.617; with the legs in front too, 0.609: the
#   box carries the top's hem there).
CATEGORIES = GARMENT_CATEGORIES
CATEGORY_PARTS = {"upper_body": UPPER_BODY_PARTS, "lower_body": LOWER_BODY_PARTS, "full_body": FULL_BODY_PARTS}
CATEGORY_IN_FRONT = {"upper_body": ARM_PARTS, "lower_body": LEG_PARTS, "full_body": ARM_PARTS}
# the automatic masks' cut at the waist: only a lower-body garment stops there
CATEGORY_WAIST = {"upper_body": None, "lower_body": WAIST, "full_body": None}


@dataclass
class PGATTryOnPipelineOutput(BaseOutput):
    """Output of `PGATTryOnPipeline`.

    Args:
        images (`List[PIL.Image.Image]`, `np.ndarray` or `torch.Tensor`): the person wearing the garment, in the
            person photo's size and framing (``mode="canonical"`` with ``restore_pose=False``: the canonical
            composite in the model's square).
        warped_garment (same type): the garment moved onto the person (``"keep"``: in the person photo's frame) or
            onto the canonical person (``"canonical"``: the model's square); black outside it.
        garment_mask (same type): where the new garment was put (white = garment), in the frame of ``warped_garment``.
        mode (`str`): the mode that made ``images``: ``"keep"`` or ``"canonical"`` (`PGATTryOnPipeline.__call__`).
        invented_mask (same type, ``"keep"`` only): the pixels that were neither the person's nor the garment's and
            had to be invented (the old garment's region that the new one does not cover), white; else `None`.
        canonical_person, canonical_garment (same type, ``"canonical"`` only): the person and the garment photo's
            wearer moved to the canonical pose (model's square); else `None`.
    """

    images: Union[List[PIL.Image.Image], np.ndarray, torch.Tensor]
    warped_garment: Union[List[PIL.Image.Image], np.ndarray, torch.Tensor]
    garment_mask: Union[List[PIL.Image.Image], np.ndarray, torch.Tensor]
    mode: str = "keep"
    invented_mask: Optional[Union[List[PIL.Image.Image], np.ndarray, torch.Tensor]] = None
    canonical_person: Optional[Union[List[PIL.Image.Image], np.ndarray, torch.Tensor]] = None
    canonical_garment: Optional[Union[List[PIL.Image.Image], np.ndarray, torch.Tensor]] = None


# ---------------------------------------------------------------------------------------------
# masks across poses
# ---------------------------------------------------------------------------------------------


def _category_poses(category: str, *keypoints: np.ndarray) -> List[torch.Tensor]:
    """``(1, 18, 2)`` tensors of the poses, with the legs completed (`pgat.parts.complete_legs`) for a category
    that covers them: a photo cut off at the thighs still has thighs to dress."""
    poses = [torch.as_tensor(np.asarray(k, np.float32)[:, :2])[None] for k in keypoints]
    return poses if category == "upper_body" else [complete_legs(p) for p in poses]


def transfer_mask(mask: torch.Tensor, source_keypoints: np.ndarray, target_keypoints: np.ndarray, category: str = "upper_body") -> torch.Tensor:
    """Carry a garment mask from one pose to another, body part by body part (the category's parts: torso, upper
    arms, forearms for ``"upper_body"``, `CATEGORY_PARTS`), with the part transforms and masks of `pgat.parts`
    (grown by `pgat.parts.GARMENT_MARGIN`).

    Args:
        mask (`torch.Tensor`): ``(H, W)`` in [0, 1], in the frame of ``source_keypoints``.
        source_keypoints (`np.ndarray`): ``(18, 2)`` pixels of the mask's frame.
        target_keypoints (`np.ndarray`): ``(18, 2)`` pixels of the output frame (same size as ``mask``).
        category (`str`, *optional*, defaults to ``"upper_body"``): one of `CATEGORIES`.

    Returns:
        `torch.Tensor`: ``(H, W)``: inside the target pose's parts of the category that have a transform (every
        joint present in both poses, the legs completed), the source mask read through the transform of the part
        there; 0 elsewhere.
    """
    h, w = mask.shape
    src, dst = _category_poses(category, source_keypoints, target_keypoints)
    grid, masks = composite_grid(src, dst, (h, w), parts=CATEGORY_PARTS[category], margin=GARMENT_MARGIN)
    sampled = F.grid_sample(mask[None, None].float(), grid, mode="bilinear", padding_mode="zeros", align_corners=False)[0, 0]
    return (sampled * masks.amax(1)[0]).to(mask.dtype)


def move_garment(garment: torch.Tensor, garment_mask: torch.Tensor, garment_keypoints: np.ndarray, person_keypoints: np.ndarray,
                 size: Tuple[int, int]) -> Tuple[torch.Tensor, torch.Tensor]:
    """Move a garment photo onto a person's pose, part by part (the torso, upper arms and forearms of `pgat.parts`).

    The parts move as cloth does (`pgat.parts.part_transforms` with ``fit="body"``: at the body's scale, limbs
    stretched only along their length), and the person's arms lie in front of their torso where they are seen
    (``in_front=ARM_PARTS``): a sleeve over the chest comes from the garment photo's sleeve, not its chest. On
    SynthHumans' 100 test triples this rigid warp scores region SSIM 0.673; the pose-transfer fit with the torso
    drawn over the arms scored 0.460 (docs/tryon.md).

    Args:
        garment (`torch.Tensor`): ``(1, 3, h, w)`` the garment photo in [-1, 1].
        garment_mask (`torch.Tensor`): ``(1, 1, h, w)`` the garment's region in it, in [0, 1].
        garment_keypoints (`np.ndarray`): ``(18, 2)`` the wearer's pose, in the garment photo's pixels.
        person_keypoints (`np.ndarray`): ``(18, 2)`` the person's pose, in the pixels of the output.
        size (`(height, width)`): the output's size (the person photo's).

    Returns:
        `Tuple[torch.Tensor, torch.Tensor]`: the moved photo ``(1, 3, H, W)`` (not premultiplied) and the moved
        garment mask ``(1, 1, H, W)``, zero where no upper-body part of the person reaches.
    """
    grid, coverage = garment_grid(garment_keypoints, person_keypoints, size, garment.shape[-2:])
    return sample_garment(garment, garment_mask, grid, coverage)


def garment_grid(garment_keypoints: np.ndarray, person_keypoints: np.ndarray, size: Tuple[int, int],
                 garment_size: Tuple[int, int], category: str = "upper_body") -> Tuple[torch.Tensor, torch.Tensor]:
    """The sampling grid of `move_garment`: ``(1, H, W, 2)`` for ``grid_sample`` over the ``garment_size``
    ``(h, w)`` photo, and the ``(1, 1, H, W)`` coverage of the person's parts of ``category`` (`CATEGORY_PARTS`,
    in front of each other as `CATEGORY_IN_FRONT` says; default ``"upper_body"``, `move_garment`'s). The lower and
    full body complete both poses' legs first (`pgat.parts.complete_legs`)."""
    src, dst = _category_poses(category, garment_keypoints, person_keypoints)
    grid, parts = composite_grid(src, dst, size, parts=CATEGORY_PARTS[category], reference_size=tuple(garment_size), fit="body",
                                 in_front=CATEGORY_IN_FRONT[category])
    return grid, parts.amax(1, keepdim=True)


def sample_garment(garment: torch.Tensor, garment_mask: torch.Tensor, grid: torch.Tensor, coverage: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """The garment photo and its mask read through ``grid``: ``(1, 3, H, W)`` and ``(1, 1, H, W)`` (the mask times
    ``coverage``)."""
    moved = F.grid_sample(torch.cat([garment.float(), garment_mask.float()], 1), grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return moved[:, :3], moved[:, 3:] * coverage


# how much thinner than their `pgat.parts` masks (drawn for loose sleeves) bare arms are: `pgat.parts.CORE_MARGIN`
ARM_CORE_MARGIN = CORE_MARGIN
# the same for bare legs: SynthHumans draws thighs 0.13 to 0.085 body units wide and shins 0.082 to 0.055, the part
# masks are 0.18 and 0.13 (drawn for loose trousers)
LEG_CORE_MARGIN = -0.07


def arm_cores(keypoints: np.ndarray, size: Tuple[int, int]) -> torch.Tensor:
    """``(H, W)`` 0/1: where the arms of a pose are themselves (not a loose sleeve around them)."""
    kps = torch.as_tensor(np.asarray(keypoints, np.float32)[:, :2])[None]
    masks = part_masks(kps, size, margin=ARM_CORE_MARGIN)[0, [PART_INDEX[p] for p in ARM_PARTS]]
    return (masks.amax(0) > 0.5).float()


def limb_cores(keypoints: np.ndarray, size: Tuple[int, int], category: str = "upper_body") -> torch.Tensor:
    """``(H, W)`` 0/1: where the bare limbs under a garment of ``category`` are: the arms (`arm_cores`) for a top,
    the legs (their parts at `LEG_CORE_MARGIN`, completed by `pgat.parts.complete_legs`) for a bottom, both for the
    full body."""
    if category == "upper_body":
        return arm_cores(keypoints, size)
    (kps,) = _category_poses(category, keypoints)
    legs = part_masks(kps, size, margin=LEG_CORE_MARGIN)[0, [PART_INDEX[p] for p in LEG_PARTS]].amax(0) > 0.5
    return (legs | (arm_cores(keypoints, size) > 0.5)).float() if category == "full_body" else legs.float()


def skin_colour(person: torch.Tensor, garment_region: torch.Tensor, keypoints: np.ndarray) -> Optional[torch.Tensor]:
    """The person's skin colour, ``(3,)`` in [-1, 1], or `None` if no skin is seen: the median of small discs on
    the face (nose and eyes) and on the hands (just past each wrist), outside the garment region.

    Args:
        person (`torch.Tensor`): ``(1, 3, H, W)`` in [-1, 1]. garment_region (`torch.Tensor`): ``(H, W)``.
        keypoints (`np.ndarray`): ``(18, 2)`` in the photo's pixels.
    """
    kps = np.asarray(keypoints, np.float32)[:, :2]
    ok = (kps >= 0).all(1)
    unit = float(body_unit(torch.from_numpy(kps)[None])[0])
    if unit <= 0:
        return None
    centres = [kps[j] for j in (0, 14, 15) if ok[j]]
    for elbow, wrist in ((3, 4), (6, 7)):
        if ok[elbow] and ok[wrist]:
            d = kps[wrist] - kps[elbow]
            centres.append(kps[wrist] + 0.2 * d)  # the palm, past the wrist along the forearm
    h, w = garment_region.shape
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij")
    near = torch.zeros(h, w, dtype=torch.bool)
    for cx, cy in centres:
        near |= (xs - float(cx)) ** 2 + (ys - float(cy)) ** 2 <= (0.04 * unit) ** 2
    near &= garment_region <= 0.5
    if int(near.sum()) < 4:
        return None
    return person[0][:, near].median(dim=1).values


class NoPersonFoundError(ValueError):
    """An automatic mask was needed (``person_mask`` or ``garment_mask`` not given) and BlazePose found no person in
    the photo to make it from. The message names the argument to pass instead."""


def _person_mask(picture: PIL.Image.Image, name: str) -> torch.Tensor:
    """BlazePose's person mask of a photo, ``(H, W)`` in [0, 1] in its pixels, for the automatic mask ``name``."""
    from ..pose_estimation import estimate

    try:
        person = estimate(picture, backend="blazepose", return_mask=True).mask
    except (FileNotFoundError, ImportError) as e:
        raise ValueError(f"`{name}` was not given and the automatic mask needs BlazePose, which is not available here ({e}); pass `{name}`") from None
    person = torch.from_numpy(np.asarray(person, np.float32))
    if not (person > 0.5).any():
        raise NoPersonFoundError(f"`{name}` was not given and BlazePose found no person in the photo to make one from; pass `{name}`")
    return person


def upper_body_region(keypoints: np.ndarray, height: int, width: int) -> torch.Tensor:
    """``(H, W)`` 0/1: the torso and arm parts of a pose, grown for loose tops (where a top can be)."""
    return category_region(keypoints, height, width, "upper_body")


def category_region(keypoints: np.ndarray, height: int, width: int, category: str = "upper_body") -> torch.Tensor:
    """``(H, W)`` 0/1: where a garment of ``category`` can be in a pose, the automatic masks' parts: the torso and
    arms (``"upper_body"``, grown for loose tops); the legs, completed (`pgat.parts.complete_legs`), and the torso
    below `pgat.parts.WAIST` (``"lower_body"``); all of them and the whole torso (``"full_body"``)."""
    (kps,) = _category_poses(category, keypoints)
    masks = part_masks(kps, (height, width), margin=GARMENT_MARGIN, waist=CATEGORY_WAIST[category])
    masks = masks[0, [PART_INDEX[p] for p in CATEGORY_PARTS[category]]]
    return (masks.amax(0) > 0.5).float()


def load_mask(mask, size: Tuple[int, int], name: str) -> torch.Tensor:
    """A user mask as ``(H, W)`` float in [0, 1]: a path, PIL image, ``(H, W)`` / ``(H, W, 3)`` array (bool,
    uint8, or float in [0, 1]) or ``(H, W)`` / ``(1, H, W)`` tensor in [0, 1]; it must be ``size`` = (W, H)."""
    from ..pose_estimation import load_image_rgb

    if isinstance(mask, torch.Tensor):
        t = mask.detach().cpu()
        if t.ndim == 3 and t.shape[0] == 1:
            t = t[0]
        if t.ndim != 2:
            raise ValueError(f"`{name}` as a tensor must be (H, W) or (1, H, W) in [0, 1], got shape {tuple(mask.shape)}")
        mask = t.float().numpy()
    if isinstance(mask, np.ndarray) and mask.dtype == bool:
        mask = mask.astype(np.uint8) * 255
    if isinstance(mask, PIL.Image.Image):
        mask = mask.convert("L")
    arr = load_image_rgb(mask, name)  # paths, PIL, arrays: one reader with clear errors
    if (arr.shape[1], arr.shape[0]) != tuple(size):
        raise ValueError(
            f"`{name}` must have the size of its photo, {size[0]}x{size[1]} (width x height), got {arr.shape[1]}x{arr.shape[0]}"
        )
    return torch.from_numpy(arr.max(axis=2).astype(np.float32) / 255.0)


def default_seam(size: Tuple[int, int]) -> int:
    """The "keep" mode's seam for a ``(width, height)`` photo: 2 pixels per 256 of its longer side, at least 1."""
    return max(1, round(2 * max(size) / 256))


def _feather(mask: torch.Tensor, radius: int) -> torch.Tensor:
    """A 0/1 ``(H, W)`` mask softened by a ``(2 radius + 1)`` box filter: exactly 0 farther than ``radius`` pixels
    (along either axis) from the mask, exactly 1 as far inside it."""
    if radius <= 0:
        return mask.float()
    k = 2 * radius + 1
    return F.avg_pool2d(mask.float()[None, None], k, stride=1, padding=radius, count_include_pad=False)[0, 0]


def mask_to_square(mask: torch.Tensor, box: Letterbox) -> torch.Tensor:
    """Letterbox a ``(H, W)`` mask like its photo (padding is outside the mask)."""
    picture = PIL.Image.fromarray((mask.clamp(0, 1).numpy() * 255).round().astype(np.uint8)).convert("RGB")
    square = box.image_to_square(picture, fill=(0, 0, 0))
    return torch.from_numpy(np.asarray(square)[:, :, 0].astype(np.float32) / 255.0)


# ---------------------------------------------------------------------------------------------
# the pipeline
# ---------------------------------------------------------------------------------------------


class PGATTryOnPipeline(PGATPipeline):
    r"""Virtual try-on with a PGAT model and an appearance-flow network (paper fig. 9).

    Args:
        model (`PGATModel`): the pose-transfer generator of one stage.
        flow (`AppearanceFlowModel`): the garment warper; its config holds the ``canonical_pose``.
        pose_estimator (*optional*, defaults to ``"auto"``): see `PGATPipeline`; used for photos whose pose
            is not given.

    `from_pretrained` loads one stage and the repository's ``flow/`` folder (written by ``train/flow.py``).
    """

    _extra_patterns = (f"{FLOW_FOLDER}/*",)

    def __init__(self, model: PGATModel, flow: Optional[AppearanceFlowModel] = None, pose_estimator="auto"):
        super().__init__(model=model, pose_estimator=pose_estimator)
        if flow is not None and not isinstance(flow, AppearanceFlowModel):
            raise ValueError(f"`flow` must be an AppearanceFlowModel, got {type(flow).__name__}")
        self.register_modules(flow=flow)

    def _load_extras(self, repo: Path, torch_dtype: Optional[torch.dtype]) -> None:
        from ..hub import load_model_folder

        folder = Path(repo) / FLOW_FOLDER
        if not (folder / "config.json").is_file():
            raise FileNotFoundError(
                f"the PGAT repository '{repo}' has no {FLOW_FOLDER}/ folder (the try-on appearance-flow network); "
                f"train one into it with `accelerate launch train/flow.py --config flow-tryon-cpu --output_dir {repo}`"
            )
        self.register_modules(flow=load_model_folder(folder, AppearanceFlowModel, torch_dtype=torch_dtype).eval())

    def _save_extras(self, save_directory: Path) -> None:
        from ..hub import write_model_index

        if self.flow is not None:
            self.flow.save_pretrained(Path(save_directory) / FLOW_FOLDER, safe_serialization=True)
            write_model_index(save_directory, extra={FLOW_FOLDER: ["pgat", "AppearanceFlowModel"]})

    # ------------------------------------------------------------------------------------------
    def canonical_keypoints(self) -> np.ndarray:
        """The canonical pose in pixels of this stage's square, ``(18, 2)``."""
        pose = self.flow.config.canonical_pose
        if pose is None:
            raise ValueError("the flow model's config has no `canonical_pose`; build it with `canonical_pose=default_canonical_pose()`")
        kps = np.asarray(pose, np.float32)
        scale = self.resolution / CANONICAL_FRAME
        return np.where(visible(kps)[:, None], (kps + 0.5) * scale - 0.5, -1.0).astype(np.float32)

    def check_inputs(self, output_type: str) -> None:
        if self.flow is None:
            raise ValueError("this PGATTryOnPipeline has no `flow` model; pass `flow=AppearanceFlowModel(...)` or load a repository with a flow/ folder")
        if output_type not in ("pil", "np", "pt"):
            raise ValueError(f"`output_type` must be 'pil', 'np' or 'pt', got {output_type!r}")

    def _photo_pose(self, pose, picture: PIL.Image.Image, box: Letterbox, name: str) -> np.ndarray:
        kps, frame = resolve_pose(picture if pose is None else pose, name, self._estimator())
        square = pose_to_square(kps, frame, box)[:, :2]
        if not (visible(square)[[2, 5, 8, 11]].all()):
            from ..inputs import InputError, _names

            seen = [i for i in (2, 5, 8, 11) if visible(square)[i]]
            raise InputError(name, f"a pose of {int(visible(square).sum())} points, of the torso's corners only {_names(seen)}",
                             "both shoulders and both hips visible: the torso the garment covers")
        return square

    def _automatic_region(self, picture: PIL.Image.Image, box: Letterbox, square_kps: np.ndarray, name: str,
                          category: str = "upper_body") -> torch.Tensor:
        """BlazePose's person mask within the pose's parts of ``category`` (`category_region`), in the model's square."""
        square = mask_to_square(_person_mask(picture, name), box)
        r = self.resolution
        return square * category_region(square_kps, r, r, category)

    def _canonical(self, person, person_box, person_t, garment, garment_box, garment_t, masks, person_pose, garment_pose, restore_pose,
                   category="upper_body"):
        """Mode ``"canonical"`` (the paper's fig. 9): see the module docstring."""
        r = self.resolution
        device, dtype = self.model.device, self.model.dtype
        masks = {n: mask_to_square(m, person_box if n == "person_mask" else garment_box) for n, m in masks.items()}

        # 2. the photos' poses and the canonical pose
        person_kps = self._photo_pose(person_pose, person, person_box, "person_pose")
        garment_kps = self._photo_pose(garment_pose, garment, garment_box, "garment_pose")
        canonical = self.canonical_keypoints()

        # 3. garment masks (automatic where not given), carried from the photos to the canonical pose
        if "person_mask" not in masks:
            masks["person_mask"] = self._automatic_region(person, person_box, person_kps, "person_mask", category)
        if "garment_mask" not in masks:
            masks["garment_mask"] = self._automatic_region(garment, garment_box, garment_kps, "garment_mask", category)
        target_region = transfer_mask(masks["person_mask"], person_kps, canonical, category)
        source_region = transfer_mask(masks["garment_mask"], garment_kps, canonical, category)

        # 4. pose transfer into the canonical pose (dis-occlusion), both photos in one batch
        refs = torch.stack([person_t, garment_t]).to(device=device, dtype=dtype)
        kps = torch.from_numpy(np.stack([canonical, canonical])).to(device)  # float32 pixels, whatever the model dtype
        needs = self.model.needs_reference_pose  # a model beyond the paper also takes each photo's own pose
        if needs:
            own = torch.from_numpy(np.stack([person_kps, garment_kps]).astype(np.float32)).to(device)
            canon = self.model(refs, kps, own).image.float()
        else:
            canon = self.model(refs, kps).image.float()
        canonical_person, canonical_garment = canon[:1], canon[1:]

        # 5. appearance flow at the flow model's size, applied at ours (the flow is in normalised units)
        gm = source_region[None, None].to(device)
        tm = target_region[None, None].to(device)
        s = self.flow.config.sample_size
        def resize(x):  # noqa: E306
            return x if x.shape[-1] == s else F.interpolate(x, size=(s, s), mode="bilinear", align_corners=False, antialias=True)
        flow_dtype = self.flow.dtype
        flow = self.flow(
            resize(canonical_garment * gm).to(flow_dtype), resize(gm).to(flow_dtype), resize(tm).to(flow_dtype)
        ).flow.float()
        if flow.shape[-1] != r:
            flow = F.interpolate(flow, size=(r, r), mode="bilinear", align_corners=False)
        warped = warp(torch.cat([canonical_garment * gm, gm], dim=1), flow)
        warped_garment, warped_mask = warped[:, :3], warped[:, 3:].clamp(0, 1)

        # 6. composite inside the target region; the warped garment is premultiplied by its warped mask
        alpha = warped_mask * tm
        composite = canonical_person * (1 - alpha) + warped_garment * tm

        # 7. back to the person's pose and framing
        if restore_pose:
            back = torch.from_numpy(person_kps[None]).to(device)
            if needs:  # the composite's own pose is the canonical one
                dressed = self.model(composite.to(dtype), back, torch.from_numpy(canonical[None]).to(device)).image.float()
            else:
                dressed = self.model(composite.to(dtype), back).image.float()
            images = [person_box.image_from_square(im) for im in to_pil(dressed)]
        else:
            images = to_pil(composite)

        return images, to_pil(canonical_person), to_pil(canonical_garment), to_pil(warped_garment + warped_mask - 1), to_pil(alpha.expand(-1, 3, -1, -1) * 2 - 1)

    # ------------------------------------------------------------------------------------------
    # "keep the person": the garment moves onto the photo, nothing else changes
    # ------------------------------------------------------------------------------------------
    def _photo_region(self, picture: PIL.Image.Image, kps: np.ndarray, name: str, category: str = "upper_body") -> torch.Tensor:
        """The automatic garment region in a photo's own pixels: BlazePose's person mask within the parts of
        ``category`` (`category_region`: for a top, the torso and arms)."""
        w, h = picture.size
        return _person_mask(picture, name) * category_region(kps, h, w, category)

    def _refine_flow(self, garment: torch.Tensor, garment_mask: torch.Tensor, target: torch.Tensor, box: Letterbox) -> torch.Tensor:
        """The appearance flow's correction of a part-warped garment, in the normalised units of the photo frame.

        The flow network sees square images of its ``sample_size``: the photo-frame maps are letterboxed into one
        (black padding), its flow is cut back to the photo's part of the square, resized to the photo and rescaled
        from the square's normalised units to the photo's (a flow of ``d`` square units is ``d * s / new_width``
        photo units across, ``d * s / new_height`` down)."""
        s = self.flow.config.sample_size
        fit = Letterbox.fit(box.width, box.height, s)

        def to_square(x):  # (1, C, H, W) -> (1, C, s, s)
            small = F.interpolate(x, size=(fit.new_height, fit.new_width), mode="bilinear", align_corners=False, antialias=True)
            return F.pad(small, (fit.left, s - fit.left - fit.new_width, fit.top, s - fit.top - fit.new_height))

        dtype, device = self.flow.dtype, self.flow.device  # the photo-frame maps stay on the CPU; the network may not
        inputs = [to_square(x).to(device=device, dtype=dtype) for x in (garment * garment_mask, garment_mask, target)]
        flow = self.flow(*inputs).flow.float().cpu()
        flow = flow[..., fit.top:fit.top + fit.new_height, fit.left:fit.left + fit.new_width]
        flow = F.interpolate(flow, size=(box.height, box.width), mode="bilinear", align_corners=False)
        return flow * torch.tensor([s / fit.new_width, s / fit.new_height], device=flow.device).view(1, 2, 1, 1)

    def _invent(self, fill: str, person: torch.Tensor, composite: torch.Tensor, hole: torch.Tensor, region: torch.Tensor,
                person_kps: np.ndarray, person_box: Letterbox, person_square_kps: np.ndarray, category: str = "upper_body") -> torch.Tensor:
        """Pixels for ``hole`` (``(H, W)`` 0/1): the old garment's region that the new garment does not cover.

        - ``"inpaint"``: where the hole lies on the person's bare limbs under the garment (`limb_cores`: the arms
          for a top, the legs for a bottom), the person's skin colour (`skin_colour`: what is under a sleeve or a
          trouser leg that is now shorter); the rest by OpenCV's fast-marching inpainting
          (Telea) of the composite, from the pixels around it (the new garment, skin and background next to it);
        - ``"generator"``: the pose-transfer model redraws the inpainted composite in the person's own pose, and
          its pixels fill the hole (the only place the generator touches);
        - ``"person"``: the person photo's own pixels (the old garment shows through).
        """
        if fill == "person" or not (hole > 0).any():
            return person
        import cv2

        arms = limb_cores(person_kps, hole.shape, category) * hole
        skin = skin_colour(person, region, person_kps)
        if skin is not None and (arms > 0.5).any():  # bare arms are skin: painted before the rest is inpainted
            composite = torch.where(arms > 0.5, skin.view(1, 3, 1, 1), composite)
            hole = hole * (arms <= 0.5)
        img = ((composite[0].permute(1, 2, 0).clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).numpy()
        mask = (hole > 0).numpy().astype(np.uint8)
        radius = max(3, round(6 * max(img.shape[:2]) / 256))
        filled = cv2.inpaint(np.ascontiguousarray(img), mask, radius, cv2.INPAINT_TELEA)
        inpainted = torch.from_numpy(filled).permute(2, 0, 1)[None].float() / 127.5 - 1
        if fill == "inpaint":
            return inpainted
        # "generator": one forward pass in the model's square, the person's pose as target (and as reference pose)
        from .utils import to_tensor

        picture = PIL.Image.fromarray(filled)
        ref = to_tensor(person_box.image_to_square(picture))[None].to(self.model.device, self.model.dtype)
        kps = torch.from_numpy(person_square_kps[None].astype(np.float32)).to(self.model.device)
        drawn = (self.model(ref, kps, kps) if self.model.needs_reference_pose else self.model(ref, kps)).image.float().cpu()
        back = person_box.image_from_square(to_pil(drawn)[0])
        return torch.from_numpy(np.asarray(back, np.float32)).permute(2, 0, 1)[None] / 127.5 - 1

    def _keep(self, person, person_box, garment, garment_box, masks, person_pose, garment_pose, refine, fill, seam, category="upper_body"):
        """Mode ``"keep"``: see `__call__`. Everything happens in the person photo's own pixels."""
        from .utils import to_tensor

        seam = default_seam(person.size) if seam is None else seam

        person_sq = self._photo_pose(person_pose, person, person_box, "person_pose")
        garment_sq = self._photo_pose(garment_pose, garment, garment_box, "garment_pose")
        person_kps = person_box.keypoints_from_square(person_sq, strict=False)[:, :2]
        garment_kps = garment_box.keypoints_from_square(garment_sq, strict=False)[:, :2]
        pw, ph = person.size
        region = masks.get("person_mask")
        if region is None:
            region = self._photo_region(person, person_kps, "person_mask", category)
        garment_region = masks.get("garment_mask")
        if garment_region is None:
            garment_region = self._photo_region(garment, garment_kps, "garment_mask", category)

        # 1. the garment photo, part by part (a top: torso, upper arms, forearms; `CATEGORY_PARTS`), onto the person's pose
        garment_t, garment_m = to_tensor(garment)[None], garment_region[None, None]
        grid, coverage = garment_grid(garment_kps, person_kps, (ph, pw), garment_t.shape[-2:], category)
        garment_img, garment_alpha = sample_garment(garment_t, garment_m, grid, coverage)

        # 2. the appearance flow's correction (what rigid parts cannot do: cloth that hangs, widths that differ),
        # composed with the part warp's grid, so that the garment photo is resampled once, not twice
        target = region[None, None]
        if refine:
            flow = self._refine_flow(garment_img, garment_alpha, target, person_box)
            grid = warp(grid.permute(0, 3, 1, 2), flow).permute(0, 2, 3, 1)
            garment_img, garment_alpha = sample_garment(garment_t, garment_m, grid, warp(coverage, flow))
            garment_alpha = garment_alpha.clamp(0, 1)

        # 3. what changes: the old garment's region and the new garment's; the hole is what neither photo has
        new = (garment_alpha[0, 0] > 0.5).float()
        change = torch.maximum((region > 0.5).float(), new)
        hole = change * (1 - new)
        person_t = to_tensor(person)[None]
        a_new = _feather(new, seam)[None, None]
        composite = person_t * (1 - a_new) + garment_img * a_new
        invented = self._invent(fill, person_t, composite, hole, region, person_kps, person_box, person_sq[:, :2], category)
        invented = torch.where(hole > 0, invented, person_t)  # invented pixels stay in the hole
        inside = invented * (1 - a_new) + garment_img * a_new
        a_change = _feather(change, seam)[None, None]

        # 4. the person's own pixels wherever nothing changes (exactly: uint8 in, uint8 out)
        person_u8 = torch.from_numpy(np.array(person, np.uint8)).permute(2, 0, 1)[None].float()
        inside_u8 = ((inside.clamp(-1, 1) + 1) * 127.5)
        out = (person_u8 * (1 - a_change) + inside_u8 * a_change).round().clamp(0, 255)
        image = PIL.Image.fromarray(out[0].permute(1, 2, 0).to(torch.uint8).numpy())
        shown = (garment_img * garment_alpha + garment_alpha - 1)  # premultiplied, black outside
        return image, to_pil(shown)[0], to_pil(garment_alpha.expand(-1, 3, -1, -1) * 2 - 1)[0], to_pil(hole[None, None].expand(-1, 3, -1, -1) * 2 - 1)[0]

    @torch.no_grad()
    def __call__(
        self,
        person_image,
        garment_image,
        person_mask=None,
        garment_mask=None,
        person_pose=None,
        garment_pose=None,
        mode: str = "keep",
        refine: bool = True,
        fill: str = "inpaint",
        seam: Optional[int] = None,
        restore_pose: bool = True,
        output_type: str = "pil",
        return_dict: bool = True,
        category: str = "upper_body",
    ):
        r"""
        Args:
            person_image: the person to dress: a PIL image, ``(H, W, 3)`` uint8 array, ``(3, H, W)`` tensor in [-1, 1] or a path.
            garment_image: a photo of someone wearing the garment (same forms).
            person_mask (*optional*): the region of the person's own garment, which the new one replaces, ``(H, W)``
                in the person photo's pixels: a parsing mask or a drawn one (path, PIL, array or tensor). Automatic
                when omitted: BlazePose's person mask within the torso and arms of the person's pose.
            garment_mask (*optional*): the garment's region in the garment photo (same forms). Automatic when
                omitted, the same way (which includes the wearer's bare arms: draw the mask for a sleeveless top).
            person_pose, garment_pose (*optional*): the photos' poses (``(18, 2|3)`` in their pixels, or OpenPose JSON);
                estimated when omitted.
            mode (`str`, *optional*, defaults to ``"keep"``):
                - ``"keep"`` (keep the person): the garment region of the garment photo is moved onto the person's
                  pose directly, part by part (`pgat.parts`: torso, upper arms, forearms, from the wearer's
                  keypoints to the person's), refined by the appearance flow (``refine``), and composited into the
                  person photo with a soft seam of ``seam`` pixels. Every pixel farther than ``seam`` from the old
                  and the new garment's regions is the person photo's own, exactly; nothing is redrawn by the
                  pose-transfer model except, with ``fill="generator"``, the pixels that must be invented.
                - ``"canonical"``: the paper's route (fig. 9): both people are moved into the canonical pose by the
                  pose-transfer model, the garment is warped there and pasted, and the result is moved back to the
                  person's pose (``restore_pose``): every pixel is redrawn by the model.
            refine (`bool`, *optional*, defaults to `True`): ``"keep"``: correct the part warp with the appearance
                flow; `False` uses the rigid part warp alone. The flow is trained on tops; on SynthHumans it does
                to a bottom garment what it does to a top (the retrained flow lifts both, the earlier one lowered
                both: docs/tryon.md), so it is on for every ``category``.
            fill (`str`, *optional*, defaults to ``"inpaint"``): ``"keep"``: how to invent what neither photo shows
                (the old garment's region that the new garment leaves uncovered: skin, background, the trousers):
                ``"inpaint"`` (OpenCV's inpainting from the pixels around it), ``"generator"`` (the pose-transfer
                model redraws the person there) or ``"person"`` (leave the old garment showing). The default is
                the one that scored best on SynthHumans' try-on ground truth (docs/tryon.md).
            seam (`int`, *optional*): ``"keep"``: width in pixels of the blend at the edge of what changes; defaults
                to 2 pixels per 256 of the photo's longer side (`default_seam`).
            restore_pose (`bool`, *optional*, defaults to `True`): ``"canonical"``: move the dressed person back to
                their own pose and framing; `False` returns the canonical composite.
            output_type (`str`, *optional*, defaults to ``"pil"``): ``"pil"``, ``"np"`` or ``"pt"`` for every image.
            return_dict (`bool`, *optional*, defaults to `True`): return a `PGATTryOnPipelineOutput`, else a tuple.
            category (`str`, *optional*, defaults to ``"upper_body"``): the garment taken from the garment photo, one
                of `CATEGORIES`: ``"upper_body"`` (a top: the torso, upper arms and forearms), ``"lower_body"``
                (trousers, shorts, a skirt: the thighs and shins, and the hips, which are the torso below the waist,
                `pgat.parts.LOWER_BODY_PARTS`) or ``"full_body"`` (both, e.g. a dress or a whole outfit). The
                category decides the parts the garment is moved by (`CATEGORY_PARTS`), which lie in front where
                they cross (`CATEGORY_IN_FRONT`: the arms for a top or a full-body garment, the legs for a bottom),
                the automatic masks (`category_region`: the person mask within those parts; a lower-body garment's
                stops at `pgat.parts.WAIST`) and so the region composited, and which bare limbs ``fill="inpaint"``
                paints in skin (`limb_cores`). Given masks are used as they are: they must mark the category's garment. The
                legs of both poses are completed where the knees or ankles are missing (`pgat.parts.complete_legs`:
                a photo cut off at the thighs). The appearance flow is trained on tops only: see ``refine``, and
                docs/tryon.md ("Lower-body and full-body garments").

        Returns:
            `PGATTryOnPipelineOutput` (its ``mode`` says which mode made the images), or with ``return_dict=False``
            the tuple of its fields that are set, in their order.

        Raises:
            `pgat.inputs.InputError`: an unreadable photo or mask, a mask of another size than its photo, a pose
            without both shoulders and both hips, an unknown ``mode``, ``fill`` or ``category``.
        """
        from ..inputs import InputError

        if mode not in MODES:
            raise InputError("mode", repr(mode), f"one of {', '.join(map(repr, MODES))}")
        if not isinstance(category, str) or category not in CATEGORIES:
            raise InputError("category", repr(category), f"one of {', '.join(map(repr, CATEGORIES))}")
        if fill not in FILLS:
            raise InputError("fill", repr(fill), f"one of {', '.join(map(repr, FILLS))}")
        if seam is not None and (isinstance(seam, bool) or not isinstance(seam, int) or seam < 0):
            raise InputError("seam", repr(seam), "a whole number of pixels, 0 or more")
        self.check_inputs(output_type)
        r = self.resolution

        # 1. both photos; given masks are checked before anything runs
        person, person_box, person_t = prepare_reference(person_image, r, "person_image")
        garment, garment_box, garment_t = prepare_reference(garment_image, r, "garment_image")
        masks = {}
        for name, mask, picture in (("person_mask", person_mask, person), ("garment_mask", garment_mask, garment)):
            if mask is not None:
                masks[name] = load_mask(mask, picture.size, name)

        if mode == "keep":
            images, warped, garment_alpha, hole = self._keep(person, person_box, garment, garment_box, masks, person_pose,
                                                             garment_pose, refine, fill, seam, category)
            fields = dict(images=[images], warped_garment=[warped], garment_mask=[garment_alpha], invented_mask=[hole])
        else:
            images, canonical_person, canonical_garment, warped, alpha = self._canonical(
                person, person_box, person_t, garment, garment_box, garment_t, masks, person_pose, garment_pose, restore_pose, category)
            fields = dict(images=images, warped_garment=warped, garment_mask=alpha, canonical_person=canonical_person,
                          canonical_garment=canonical_garment)
        fields = {k: format_images(v, output_type) for k, v in fields.items()}
        out = PGATTryOnPipelineOutput(mode=mode, **fields)
        if not return_dict:
            return out.to_tuple()
        return out


# ---------------------------------------------------------------------------------------------
# command line
# ---------------------------------------------------------------------------------------------


def _cmd_tryon(args: argparse.Namespace) -> int:
    from .utils import default_model_path

    model = args.model or default_model_path()
    if model is None:
        raise ValueError("no model given and the embedded default model (weights/pgat-synth-256) is not in this checkout; pass --model ID_OR_PATH")
    pipe = PGATTryOnPipeline.from_pretrained(model, resolution=args.resolution, pose_estimator=args.pose_estimator)
    if args.device:
        pipe.to(args.device)
    out = pipe(
        args.person, args.garment, person_mask=args.person_mask, garment_mask=args.garment_mask,
        person_pose=args.person_pose, garment_pose=args.garment_pose, mode=args.mode, refine=not args.no_refine,
        fill=args.fill, seam=args.seam, category=args.category,
    )
    path = Path(args.out)
    path.parent.mkdir(parents=True, exist_ok=True)
    out.images[0].save(path)
    print(f"wrote {path} (mode {out.mode})")
    if args.save_intermediates:
        names = ("warped_garment", "garment_mask") + (("invented_mask",) if out.mode == "keep" else ("canonical_person", "canonical_garment"))
        for name in names:
            extra = path.with_name(f"{path.stem}-{name.replace('_', '-')}{path.suffix}")
            getattr(out, name)[0].save(extra)
            print(f"wrote {extra}")
    return 0


def register_tryon(sub) -> None:
    p = sub.add_parser("tryon", help="dress the person of one photo in the top (or bottom, or both: --category) worn in another photo (virtual try-on)")
    p.add_argument("person", metavar="PERSON", help="photo of the person to dress")
    p.add_argument("garment", metavar="GARMENT", help="photo of someone wearing the garment")
    p.add_argument("-o", "--out", required=True, help="output image (png, jpg)")
    p.add_argument("--model", default=None, help="Hub id or local folder of a PGAT repository with a flow/ folder (default: weights/pgat-synth-256 when present)")
    p.add_argument("--resolution", type=int, default=None, help="stage to load (default: the highest in the repository)")
    p.add_argument("--garment-mask", default=None, metavar="PNG", help="mask of the garment in GARMENT (white = garment; default: automatic, BlazePose)")
    p.add_argument("--person-mask", default=None, metavar="PNG", help="region the garment covers in PERSON (white; default: automatic, BlazePose)")
    p.add_argument("--person-pose", default=None, metavar="FILE",
                   help="PERSON's pose: OpenPose JSON, or a .json / .npy (18, 2|3) array in its pixels (default: estimated); "
                        "also the reference pose of a pose-transfer model that takes one")
    p.add_argument("--garment-pose", default=None, metavar="FILE",
                   help="GARMENT's wearer's pose: OpenPose JSON, or a .json / .npy (18, 2|3) array in its pixels (default: estimated)")
    p.add_argument("--pose-estimator", choices=["auto", "openpose", "blazepose"], default="auto", help="pose estimator for the photos (default: auto)")
    p.add_argument("--mode", choices=MODES, default="keep",
                   help="keep: the person photo's own pixels everywhere but the garment (default); canonical: the paper's route "
                        "through the canonical pose, every pixel redrawn")
    p.add_argument("--fill", choices=FILLS, default="inpaint", help="keep mode: how to fill what the new garment uncovers (default: inpaint)")
    p.add_argument("--no-refine", action="store_true", help="keep mode: the rigid part warp alone, without the appearance flow")
    p.add_argument("--category", choices=CATEGORIES, default="upper_body",
                   help="the garment taken from GARMENT: upper_body (a top, default), lower_body (trousers, shorts, a skirt) or full_body (both, a dress)")
    p.add_argument("--seam", type=int, default=None, help="keep mode: blend width in pixels (default: 2 per 256 of the photo's long side)")
    p.add_argument("--save-intermediates", action="store_true",
                   help="also write OUT-warped-garment, -garment-mask and -invented-mask (keep) or -canonical-person, -canonical-garment (canonical)")
    p.add_argument("--device", default=None, help="torch device, e.g. cuda (default: cpu)")
    p.set_defaults(func=_cmd_tryon)


__all__ = ["PGATTryOnPipeline", "PGATTryOnPipelineOutput", "NoPersonFoundError", "MODES", "FILLS", "CATEGORIES", "CATEGORY_PARTS", "CATEGORY_IN_FRONT",
           "default_seam", "move_garment", "garment_grid", "sample_garment", "transfer_mask", "upper_body_region",
           "category_region", "limb_cores", "register_tryon"]
