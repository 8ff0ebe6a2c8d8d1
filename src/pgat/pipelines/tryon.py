"""PGATTryOnPipeline: a photo of a person + a photo of someone wearing a garment -> the person in that garment.

The paper's fig. 9, in steps:

1. canonical pose: the pose-transfer model moves the person *and* the garment photo's wearer into one fixed
   frontal pose (``canonical_pose`` in the flow model's config, 18 points of a 256 square; see
   `pgat.models.flow.CANONICAL_POSE_SOURCE`). This undoes occlusions (an arm across the shirt) and puts
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

Intermediates (canonical person, canonical garment, warped garment, composite mask) are returned, in the
model's square, for display (the Space's accordion).
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
from ..parts import GARMENT_MARGIN, PART_INDEX, UPPER_BODY_PARTS, composite_grid, part_masks
from ..pose import Letterbox, visible
from .pose_transfer import PGATPipeline
from .utils import format_images, pose_to_square, prepare_reference, resolve_pose, to_pil

FLOW_FOLDER = "flow"
CANONICAL_FRAME = 256  # the canonical pose is stored in pixels of a 256 square



@dataclass
class PGATTryOnPipelineOutput(BaseOutput):
    """Output of `PGATTryOnPipeline`.

    Args:
        images (`List[PIL.Image.Image]`, `np.ndarray` or `torch.Tensor`): the person wearing the garment; in the
            person photo's size and framing (``restore_pose=True``), else the canonical composite in the
            model's square.
        canonical_person (same type): the person moved to the canonical pose (model's square).
        canonical_garment (same type): the garment photo's wearer moved to the canonical pose.
        warped_garment (same type): the garment after the appearance flow (black outside it).
        garment_mask (same type): where the garment was pasted on the canonical person (white = garment).
    """

    images: Union[List[PIL.Image.Image], np.ndarray, torch.Tensor]
    canonical_person: Union[List[PIL.Image.Image], np.ndarray, torch.Tensor]
    canonical_garment: Union[List[PIL.Image.Image], np.ndarray, torch.Tensor]
    warped_garment: Union[List[PIL.Image.Image], np.ndarray, torch.Tensor]
    garment_mask: Union[List[PIL.Image.Image], np.ndarray, torch.Tensor]


# ---------------------------------------------------------------------------------------------
# masks across poses
# ---------------------------------------------------------------------------------------------


def transfer_mask(mask: torch.Tensor, source_keypoints: np.ndarray, target_keypoints: np.ndarray) -> torch.Tensor:
    """Carry a garment mask from one pose to another, body part by body part (torso, upper arms, forearms), with
    the part transforms and masks of `pgat.parts` (grown by `pgat.parts.GARMENT_MARGIN`).

    Args:
        mask (`torch.Tensor`): ``(H, W)`` in [0, 1], in the frame of ``source_keypoints``.
        source_keypoints (`np.ndarray`): ``(18, 2)`` pixels of the mask's frame.
        target_keypoints (`np.ndarray`): ``(18, 2)`` pixels of the output frame (same size as ``mask``).

    Returns:
        `torch.Tensor`: ``(H, W)``: inside the target pose's upper-body parts that have a transform (every joint
        present in both poses), the source mask read through the transform of the part there; 0 elsewhere.
    """
    h, w = mask.shape
    src = torch.as_tensor(np.asarray(source_keypoints, np.float32)[:, :2])[None]
    dst = torch.as_tensor(np.asarray(target_keypoints, np.float32)[:, :2])[None]
    grid, masks = composite_grid(src, dst, (h, w), parts=UPPER_BODY_PARTS, margin=GARMENT_MARGIN)
    sampled = F.grid_sample(mask[None, None].float(), grid, mode="bilinear", padding_mode="zeros", align_corners=False)[0, 0]
    return (sampled * masks.amax(1)[0]).to(mask.dtype)


def upper_body_region(keypoints: np.ndarray, height: int, width: int) -> torch.Tensor:
    """``(H, W)`` 0/1: the torso and arm parts of a pose, grown for loose tops (where a top can be)."""
    kps = torch.as_tensor(np.asarray(keypoints, np.float32)[:, :2])[None]
    masks = part_masks(kps, (height, width), margin=GARMENT_MARGIN)[0, [PART_INDEX[p] for p in UPPER_BODY_PARTS]]
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
                f"train one into it with `accelerate launch train/flow.py --config flow-synth --output_dir {repo}`"
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

    def _automatic_region(self, picture: PIL.Image.Image, box: Letterbox, square_kps: np.ndarray, name: str) -> torch.Tensor:
        """BlazePose's person mask within the pose's torso and arms, in the model's square."""
        from ..pose_estimation import estimate

        try:
            person = estimate(picture, backend="blazepose", return_mask=True).mask
        except (FileNotFoundError, ImportError) as e:
            raise ValueError(f"`{name}` was not given and the automatic mask needs BlazePose, which is not available here ({e}); pass `{name}`") from None
        square = mask_to_square(torch.from_numpy(np.asarray(person, np.float32)), box)
        if not (square > 0.5).any():
            raise ValueError(f"`{name}` was not given and BlazePose found no person in the photo to make one from; pass `{name}`")
        r = self.resolution
        return square * upper_body_region(square_kps, r, r)

    @torch.no_grad()
    def __call__(
        self,
        person_image,
        garment_image,
        person_mask=None,
        garment_mask=None,
        person_pose=None,
        garment_pose=None,
        restore_pose: bool = True,
        output_type: str = "pil",
        return_dict: bool = True,
    ):
        r"""
        Args:
            person_image: the person to dress: a PIL image, ``(H, W, 3)`` uint8 array, ``(3, H, W)`` tensor in [-1, 1] or a path.
            garment_image: a photo of someone wearing the garment (same forms).
            person_mask (*optional*): the region the new garment covers on the person (e.g. their own top), ``(H, W)``
                in the person photo's pixels: a parsing mask or a drawn one (path, PIL, array or tensor). Automatic when omitted.
            garment_mask (*optional*): the garment's region in the garment photo (same forms). Automatic when omitted.
            person_pose, garment_pose (*optional*): the photos' poses (``(18, 2|3)`` in their pixels, or OpenPose JSON);
                estimated when omitted.
            restore_pose (`bool`, *optional*, defaults to `True`): move the dressed person back to their own pose and
                framing; `False` returns the canonical composite.
            output_type (`str`, *optional*, defaults to ``"pil"``): ``"pil"``, ``"np"`` or ``"pt"`` for every image.
            return_dict (`bool`, *optional*, defaults to `True`): return a `PGATTryOnPipelineOutput`, else a tuple.
        """
        self.check_inputs(output_type)
        r = self.resolution
        device, dtype = self.model.device, self.model.dtype

        # 1. both photos into the model's square; given masks are checked before anything runs
        person, person_box, person_t = prepare_reference(person_image, r, "person_image")
        garment, garment_box, garment_t = prepare_reference(garment_image, r, "garment_image")
        masks = {}
        for name, mask, picture, box in (("person_mask", person_mask, person, person_box), ("garment_mask", garment_mask, garment, garment_box)):
            if mask is not None:
                masks[name] = mask_to_square(load_mask(mask, picture.size, name), box)

        # 2. the photos' poses and the canonical pose
        person_kps = self._photo_pose(person_pose, person, person_box, "person_pose")
        garment_kps = self._photo_pose(garment_pose, garment, garment_box, "garment_pose")
        canonical = self.canonical_keypoints()

        # 3. garment masks (automatic where not given), carried from the photos to the canonical pose
        if "person_mask" not in masks:
            masks["person_mask"] = self._automatic_region(person, person_box, person_kps, "person_mask")
        if "garment_mask" not in masks:
            masks["garment_mask"] = self._automatic_region(garment, garment_box, garment_kps, "garment_mask")
        target_region = transfer_mask(masks["person_mask"], person_kps, canonical)
        source_region = transfer_mask(masks["garment_mask"], garment_kps, canonical)

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

        out = (
            format_images(images, output_type),
            format_images(to_pil(canonical_person), output_type, "output_type"),
            format_images(to_pil(canonical_garment), output_type, "output_type"),
            format_images(to_pil(warped_garment + warped_mask - 1), output_type),  # premultiplied: black outside
            format_images(to_pil(alpha.expand(-1, 3, -1, -1) * 2 - 1), output_type),
        )
        if not return_dict:
            return out
        return PGATTryOnPipelineOutput(*out)


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
        person_pose=args.person_pose, garment_pose=args.garment_pose,
    )
    path = Path(args.out)
    path.parent.mkdir(parents=True, exist_ok=True)
    out.images[0].save(path)
    print(f"wrote {path}")
    if args.save_intermediates:
        for name in ("canonical_person", "canonical_garment", "warped_garment", "garment_mask"):
            extra = path.with_name(f"{path.stem}-{name.replace('_', '-')}{path.suffix}")
            getattr(out, name)[0].save(extra)
            print(f"wrote {extra}")
    return 0


def register_tryon(sub) -> None:
    p = sub.add_parser("tryon", help="dress the person of one photo in the top worn in another photo (virtual try-on)")
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
    p.add_argument("--save-intermediates", action="store_true", help="also write OUT-canonical-person, -canonical-garment, -warped-garment, -garment-mask")
    p.add_argument("--device", default=None, help="torch device, e.g. cuda (default: cpu)")
    p.set_defaults(func=_cmd_tryon)


__all__ = ["PGATTryOnPipeline", "PGATTryOnPipelineOutput", "transfer_mask", "upper_body_region", "register_tryon"]
