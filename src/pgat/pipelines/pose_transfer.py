"""PGATPipeline: a reference photo + a target pose -> the same person in that pose, one forward pass."""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Sequence, Tuple, Union

import numpy as np
import PIL.Image
import torch
from diffusers import DiffusionPipeline
from diffusers.utils import BaseOutput

from ..inputs import InputError, check_body, check_person, keypoint_array
from ..hub import list_stages, load_model_folder, read_model_index, resolve_stage, save_stage, write_model_card
from ..models import PGATModel
from ..pose import Letterbox, align_to
from ..stages import stage_folder
from .utils import as_list, default_batch_size, format_images, is_keypoint_array, pose_to_square, prepare_reference, resolve_pose, to_pil


@dataclass
class PGATPipelineOutput(BaseOutput):
    """Output of `PGATPipeline`.

    Args:
        images (`List[PIL.Image.Image]`, `np.ndarray` or `torch.Tensor`): the results, each in its reference
            image's size and framing; ``(B, H, W, 3)`` / ``(B, 3, H, W)`` in [0, 1] for ``"np"`` / ``"pt"``.
        target_poses (`np.ndarray`): ``(B, 18, 3)`` the poses used, ``(x, y, confidence)`` in the reference
            image's pixels; ``(-1, -1, 0)`` for points that are missing or fall outside the reference's frame.
        reference_poses (`np.ndarray` or `None`): ``(N, 18, 3)`` the pose of each of the ``N`` reference images
            that was used (given or estimated), in that reference image's pixels; `None` when none was used
            (the paper's model without ``align_pose``). Not part of the ``return_dict=False`` tuple, which stays
            ``(images, target_poses)``.
    """

    images: Union[List[PIL.Image.Image], np.ndarray, torch.Tensor]
    target_poses: np.ndarray
    reference_poses: Optional[np.ndarray] = None


class PGATPipeline(DiffusionPipeline):
    r"""Pose-guided appearance transfer with one stage of a PGAT model.

    Args:
        model (`PGATModel`): the generator of one resolution stage.
        pose_estimator (`str` or callable, *optional*, defaults to ``"auto"``): how a pose given as an image
            is read: a backend name of `pgat.pose_estimation.load_estimator` (loaded on first use), a
            callable ``image -> (18, 3)``, or ``None`` to accept only keypoints and JSON.

    The person is letterboxed into the model's square and the result is cut back to the reference's size
    and framing. A repository holds one folder per stage; `from_pretrained` loads (and downloads) only the
    stage asked for, and `save_pretrained` adds this pipeline's stage to a repository folder.

    A model beyond the paper that takes the reference person's own pose (``model.needs_reference_pose``: DESIGN.md
    §1b) gets it from ``reference_pose``, or from the pose estimator run on the reference photo, once per reference
    image; the paper's model is never given one and nothing is estimated for it unless ``align_pose`` asks.
    """

    model_cpu_offload_seq = "model"
    # more files of a repository that a subclass needs besides the stage folder (e.g. "flow/*")
    _extra_patterns: Sequence[str] = ()

    def __init__(self, model: PGATModel, pose_estimator: Union[str, None, object] = "auto"):
        super().__init__()
        if not isinstance(model, PGATModel):
            raise ValueError(f"`model` must be a PGATModel, got {type(model).__name__}")
        self.register_modules(model=model)
        self._pose_estimator = pose_estimator
        self._available_stages = [model.config.resolution]

    # ------------------------------------------------------------------------------------------
    @property
    def resolution(self) -> int:
        return self.model.config.resolution

    @property
    def available_stages(self) -> List[int]:
        """The stages of the repository this pipeline was loaded from (just its own when built from a model)."""
        return list(self._available_stages)

    @property
    def pose_estimator(self):
        """The pose estimator, loaded on first use."""
        if isinstance(self._pose_estimator, str):
            from ..pose_estimation import load_estimator

            self._pose_estimator = load_estimator(self._pose_estimator)
        return self._pose_estimator

    # ------------------------------------------------------------------------------------------
    @classmethod
    def from_pretrained(
        cls,
        pretrained_model_name_or_path: Union[str, os.PathLike],
        resolution: Optional[int] = None,
        torch_dtype: Optional[torch.dtype] = None,
        pose_estimator: Union[str, None, object] = "auto",
        revision: Optional[str] = None,
        cache_dir: Optional[Union[str, os.PathLike]] = None,
        local_files_only: bool = False,
        token: Optional[Union[str, bool]] = None,
        fuse: bool = True,
        compile: bool = False,
        **kwargs,
    ) -> "PGATPipeline":
        r"""Load one stage of a PGAT repository (a local folder or a Hub id).

        Args:
            pretrained_model_name_or_path (`str` or `os.PathLike`): e.g. ``"org/pgat-1024"`` or ``"./pgat-synth-256"``.
            resolution (`int`, *optional*): the stage to load; the highest present when omitted. Only this
                stage's folder, ``model_index.json`` and the model card are downloaded.
            torch_dtype (`torch.dtype`, *optional*): load the weights in this dtype.
            pose_estimator (*optional*, defaults to ``"auto"``): see the class docstring.
            revision, cache_dir, local_files_only, token: as in ``huggingface_hub``; ``HF_HUB_OFFLINE=1`` is honoured.
            fuse (`bool`, *optional*, defaults to `True`): fold the BatchNorms into the convolutions
                (`PGATModel.fuse`), the inference form: same outputs within float rounding, faster. A fused
                model cannot be trained, grown or saved; pass `False` for that.
            compile (`bool`, *optional*, defaults to `False`): also ``torch.compile`` the fused model
                (`PGATModel.fuse`); needs ``fuse=True``. Measured 1.00-1.03x on a CPU, after a first call of 15-20 s.
        """
        if kwargs:
            raise ValueError(f"{cls.__name__}.from_pretrained got unknown arguments {sorted(kwargs)}")
        for name, value in (("fuse", fuse), ("compile", compile)):
            if not isinstance(value, bool):
                raise ValueError(f"`{name}` must be True or False, got {value!r}")
        if compile and not fuse:
            raise ValueError("`compile=True` compiles the fused inference form; it needs `fuse=True`")
        if torch_dtype is not None and not isinstance(torch_dtype, torch.dtype):
            raise ValueError(f"`torch_dtype` must be a torch.dtype such as torch.bfloat16, got {torch_dtype!r}")
        repo, resolution = resolve_stage(
            pretrained_model_name_or_path, resolution, revision=revision, cache_dir=cache_dir,
            local_files_only=local_files_only, token=token, extra_patterns=cls._extra_patterns,
        )
        model = load_model_folder(repo / stage_folder(resolution), PGATModel, torch_dtype=torch_dtype).eval()
        if fuse:
            model.fuse(compile=compile)
        pipe = cls(model=model, pose_estimator=pose_estimator)
        pipe._load_extras(repo, torch_dtype)
        pipe._available_stages = sorted(read_model_index(repo).get("stages", [])) or list_stages(repo) or [resolution]
        return pipe

    def _load_extras(self, repo: Path, torch_dtype: Optional[torch.dtype]) -> None:
        """Hook for subclasses that load more components from the repository."""

    def save_pretrained(self, save_directory: Union[str, os.PathLike], push_to_hub: bool = False, **kwargs) -> None:
        """Write this pipeline's stage into ``save_directory`` in the Hub layout (other stages already there
        are kept), update ``model_index.json`` and write a model card if there is none."""
        unknown = set(kwargs) - {"safe_serialization", "variant", "repo_id", "token", "commit_message", "private", "create_pr"}
        if unknown:
            raise ValueError(f"save_pretrained got unknown arguments {sorted(unknown)}")
        if kwargs.get("safe_serialization") is False:
            raise ValueError("PGAT saves safetensors only: `safe_serialization=False` is not supported")
        save_directory = Path(save_directory)
        save_stage(self.model, save_directory)
        self._save_extras(save_directory)
        if not (save_directory / "README.md").exists():
            write_model_card(save_directory, repo_id=kwargs.get("repo_id"))
        if push_to_hub:
            self._upload(save_directory, kwargs.get("repo_id") or save_directory.name, kwargs)

    def _save_extras(self, save_directory: Path) -> None:
        """Hook for subclasses that save more components."""

    def push_to_hub(self, repo_id: str, commit_message: Optional[str] = None, private: Optional[bool] = None,
                    token: Optional[str] = None, create_pr: bool = False, **kwargs):
        """Save into a temporary folder in the Hub layout and upload it, model card included."""
        with tempfile.TemporaryDirectory() as tmp:
            self.save_pretrained(tmp, repo_id=repo_id)
            return self._upload(Path(tmp), repo_id, dict(commit_message=commit_message, private=private, token=token, create_pr=create_pr))

    @staticmethod
    def _upload(folder: Path, repo_id: str, options: dict):
        from huggingface_hub import create_repo, upload_folder

        repo_id = create_repo(repo_id, exist_ok=True, private=options.get("private"), token=options.get("token")).repo_id
        return upload_folder(
            repo_id=repo_id, folder_path=str(folder), token=options.get("token"),
            commit_message=options.get("commit_message") or "Upload PGAT pipeline", create_pr=options.get("create_pr", False),
        )

    # ------------------------------------------------------------------------------------------
    def check_inputs(self, references: list, poses: list, output_type: str, batch_size: int) -> None:
        if output_type not in ("pil", "np", "pt"):
            raise ValueError(f"`output_type` must be 'pil', 'np' or 'pt', got {output_type!r}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"`batch_size` must be a positive integer, got {batch_size!r}")
        if len(references) not in (1, len(poses)):
            raise ValueError(
                f"`reference_image` must be one image or one per target pose ({len(poses)}), got {len(references)}"
            )

    def _estimator(self):
        """A callable ``image -> (18, 3)`` that loads the estimator only when an image pose arrives."""
        return None if self._pose_estimator is None else (lambda image: self.pose_estimator(image))

    def prepare_target(self, target_pose, box, align_onto: Optional[np.ndarray] = None, name: str = "target_pose", check: bool = True):
        """One target pose in the model's square, ``(18, 3)``; aligned onto ``align_onto`` (the reference person's
        pose in the same square) when given. ``check``: refuse a pose that places no body in its picture
        (`pgat.inputs.check_body`); the video pipeline, which checked its whole sequence, keeps empty frames."""
        kps, frame = resolve_pose(target_pose, name, self._estimator())
        if check:  # a body in the picture the pose belongs to: its canvas, else the reference image (arrays are in its pixels)
            check_body(kps, name, frame or (box.width, box.height), what="a target pose")
        square = pose_to_square(kps, frame, box)
        if align_onto is not None:
            square = align_to(square, align_onto)
        return square

    def _needs_text(self, align_pose: bool = False) -> str:
        """Who needs the reference person's pose, for error messages."""
        reasons = []
        if align_pose:
            reasons.append("`align_pose=True`")
        if self.model.needs_reference_pose:
            on = [n for n in ("reference_pose", "warp_skips") if self.model.config.get(n)]
            reasons.append(f"this model ({', '.join(f'{n}=True' for n in on)})")
        return " and ".join(reasons) or "this call"

    def prepare_reference_pose(self, reference_pose, picture: PIL.Image.Image, needed_by: str = "this model", hint: str = "",
                               name: str = "reference_pose") -> np.ndarray:
        """The reference person's pose, ``(18, 3)`` in the reference image's pixels.

        Args:
            reference_pose: the pose given (any form `resolve_pose` takes: an ``(18, 2|3)`` array in the reference
                image's pixels, OpenPose JSON, an image of the person), or `None` to estimate it from ``picture``
                with the pipeline's pose estimator.
            picture (`PIL.Image.Image`): the reference image.
            needed_by (`str`): what needs the pose, for error messages; ``hint`` is added to them.

        A JSON pose recording another canvas (or an image of another size) is mapped into the reference's pixels
        as a target pose is (both frames fitted into the model's square); points that land outside the reference
        image are missing. A pose with no point left, or a photo in which the estimator finds nobody, is a
        `ValueError` that says to pass ``reference_pose``: the pose is never invented.
        """
        width, height = picture.size
        give = (f"pass `{name}=` (an (18, 2|3) array of (x, y) in the reference image's pixels, or OpenPose JSON){hint}")
        if reference_pose is None:
            if self._pose_estimator is None:
                raise InputError(
                    name, "nothing, and `reference_image` is a photo, which needs a pose estimator to read; this pipeline has none "
                    "(pose_estimator=None)", f"the reference person's pose, which {needed_by} needs: {give}")
            kps = keypoint_array(self.pose_estimator(picture), "the pose estimator's output")
            try:
                return check_person(kps, "reference_image", (width, height), needed_by)
            except InputError as e:
                raise InputError(e.argument, e.received, e.expected, hint=f"Or {give}") from None
        kps, frame = resolve_pose(reference_pose, name, self._estimator())
        if frame is not None and tuple(frame) != (width, height):
            box = Letterbox.fit(width, height, self.resolution)
            kps = box.keypoints_from_square(pose_to_square(kps, frame, box), strict=False)
        return check_body(kps, name, (width, height), what=f"a reference pose for the {width}x{height} reference image")

    def check_reference_person(self, picture: PIL.Image.Image, name: str = "reference_image") -> None:
        """Refuse a reference photo with nobody in it (or too little of a body), when the pipeline has a pose
        estimator: pose transfer needs a person to transfer, whatever the model reads. Without an estimator
        (``pose_estimator=None``) the photo cannot be checked, and is used as given."""
        if self._pose_estimator is not None:
            check_person(keypoint_array(self.pose_estimator(picture), "the pose estimator's output"), name, picture.size)

    @torch.no_grad()
    def __call__(
        self,
        reference_image,
        target_pose,
        reference_pose=None,
        align_pose: bool = False,
        batch_size: Optional[int] = None,
        output_type: str = "pil",
        return_dict: bool = True,
    ):
        r"""
        Args:
            reference_image: the person: a PIL image, ``(H, W, 3)`` uint8 array, ``(3, H, W)`` tensor in [-1, 1]
                or a path; or a list, one per target pose.
            target_pose: an ``(18, 2|3)`` array in the reference's pixels, OpenPose JSON (dict or path; COCO-18 or
                BODY_25), or an image of someone in the pose; or a list of these (a batch).
            reference_pose (*optional*): the reference person's pose (same forms; an array is in the reference image's
                pixels), or a list of one per reference image. Used by ``align_pose`` and by a model that takes the
                reference's pose (``model.needs_reference_pose``); when needed and not given it is estimated from each
                reference photo, once per reference image. Unused (and not estimated) otherwise.
            align_pose (`bool`, *optional*, defaults to `False`): move and scale the target pose onto the reference
                person (`pgat.pose.align_to`), e.g. for a pose taken from a photo of someone else.
            batch_size (`int`, *optional*): poses per forward pass; by default 1 on a CPU (batches measured no
                faster there) and 8 on other devices (`pgat.pipelines.utils.default_batch_size`).
            output_type (`str`, *optional*, defaults to ``"pil"``): ``"pil"``, ``"np"`` or ``"pt"``.
            return_dict (`bool`, *optional*, defaults to `True`): return a `PGATPipelineOutput` instead of a tuple.

        Returns:
            `PGATPipelineOutput` or ``(images, target_poses)`` (``reference_poses`` is in the dataclass only).

        Raises:
            `pgat.inputs.InputError` (a ``ValueError``) for an input no output can be made from, by the rules of
            `pgat.inputs`: an unreadable, animated, too small, too large or too elongated image; a pose that places
            no body in its picture (fewer than 3 body joints inside it, or none of the neck, shoulders and hips); a
            reference photo in which the pose estimator finds nobody (checked whenever the pipeline has one, whether
            or not the model reads the reference's pose).
        """
        return self._transfer(reference_image, target_pose, reference_pose, align_pose, batch_size, output_type, return_dict)

    def _transfer(self, reference_image, target_pose, reference_pose=None, align_pose: bool = False, batch_size: Optional[int] = None,
                  output_type: str = "pil", return_dict: bool = True, check: bool = True):
        """`__call__`'s work. ``check=False`` (the video pipeline, which checked its reference photo and its
        sequence as a whole) lets a frame with nobody in it through, and does not look for the reference person."""
        poses = as_list(target_pose, "target_pose")
        references = as_list(reference_image, "reference_image")
        if batch_size is None:
            batch_size = default_batch_size(self.model.device)
        self.check_inputs(references, poses, output_type, batch_size)
        r = self.resolution
        device, dtype = self.model.device, self.model.dtype

        # 1. references into the model's square (each loaded once)
        prepared = [prepare_reference(ref, r, "reference_image" if len(references) == 1 else f"reference_image[{i}]") for i, ref in enumerate(references)]

        def ref(i):  # the reference of pose i: one for all, or one each
            return 0 if len(references) == 1 else i

        # 2. the reference person's pose, once per reference image, only when something needs it
        needs = self.model.needs_reference_pose
        reference_poses = reference_squares = None
        if check and not (align_pose or needs):  # the pose is not needed, the person is: check each photo has one
            for j, (picture, _, _) in enumerate(prepared):
                self.check_reference_person(picture, "reference_image" if len(references) == 1 else f"reference_image[{j}]")
        if align_pose or needs:
            given, names = self._reference_pose_list(reference_pose, len(references))
            needed_by = self._needs_text(align_pose)
            reference_poses = np.stack(
                [self.prepare_reference_pose(given[j], prepared[j][0], needed_by, name=names[j]) for j in range(len(references))]
            )
            reference_squares = [prepared[j][1].keypoints_to_square(reference_poses[j]) for j in range(len(references))]

        # 3. target poses into the same square
        squares = []
        for i, pose in enumerate(poses):
            squares.append(self.prepare_target(pose, prepared[ref(i)][1], reference_squares[ref(i)] if align_pose else None,
                                               "target_pose" if len(poses) == 1 else f"target_pose[{i}]", check=check))

        # 4. one forward pass per batch; one reference for all poses is encoded once (its features do not
        #    depend on the pose), so each batch runs only the decoder. The paper's model is called as it always
        #    was, without reference keypoints.
        def reference_kps(idx):  # float32 pixels of the square, like the target keypoints
            return torch.from_numpy(np.stack([reference_squares[ref(i)][:, :2] for i in idx])).to(device)

        shared = self.model.encode(prepared[0][2][None].to(device=device, dtype=dtype)) if len(references) == 1 else None
        images: List[PIL.Image.Image] = []
        starts = range(0, len(poses), batch_size)
        for start in self.progress_bar(starts) if len(starts) > 1 else starts:
            idx = list(range(start, min(len(poses), start + batch_size)))
            kps = torch.from_numpy(np.stack([squares[i][:, :2] for i in idx])).to(device)  # float32: bf16 would round the pixels
            if shared is not None:
                out = self.model.decode(shared, kps, reference_kps([0])) if needs else self.model.decode(shared, kps)
            else:
                batch = torch.stack([prepared[ref(i)][2] for i in idx]).to(device=device, dtype=dtype)
                out = (self.model(batch, kps, reference_kps(idx)) if needs else self.model(batch, kps)).image
            for i, square in zip(idx, to_pil(out)):
                images.append(prepared[ref(i)][1].image_from_square(square))

        # 5. back to each reference's pixels and framing
        target_poses = np.stack(
            [prepared[ref(i)][1].keypoints_from_square(squares[i], strict=False) for i in range(len(poses))]
        )
        images = format_images(images, output_type)
        if not return_dict:
            return images, target_poses
        return PGATPipelineOutput(images=images, target_poses=target_poses, reference_poses=reference_poses)

    @staticmethod
    def _reference_pose_list(reference_pose, count: int) -> Tuple[list, List[str]]:
        """``reference_pose`` as one entry (`None`: estimate) per reference image, and the names errors give them:
        one pose serves every reference; a list must have one per reference image."""
        if isinstance(reference_pose, (list, tuple)) and not is_keypoint_array(reference_pose):
            if len(reference_pose) != count:
                raise ValueError(
                    f"`reference_pose` must be one pose or a list of one per reference image ({count}), got a list of {len(reference_pose)}"
                )
            return list(reference_pose), [f"reference_pose[{j}]" for j in range(count)]
        return [reference_pose] * count, ["reference_pose"] * count



# ---------------------------------------------------------------------------------------------
# command line
# ---------------------------------------------------------------------------------------------


def _cmd_transfer(args) -> int:
    from ..pose import draw_skeleton
    from .utils import model_or_default

    pipe = PGATPipeline.from_pretrained(model_or_default(args.model), resolution=args.resolution, pose_estimator=args.pose_estimator,
                                        torch_dtype=getattr(torch, args.dtype))
    if args.device:
        pipe.to(args.device)
    out = pipe(args.reference, args.pose, reference_pose=args.reference_pose, align_pose=args.align_pose)
    image = out.images[0]
    if args.skeleton:
        image = draw_skeleton(image, out.target_poses[0])
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    image.save(args.out)
    print(f"wrote {image.size[0]}x{image.size[1]} {args.out} (stage {pipe.resolution}²)")
    return 0


DTYPES = ("float32", "bfloat16")
DTYPE_HELP = (
    "weights and features in this precision (default: float32). On a CPU with native bf16 (AVX512-BF16), bfloat16 ran the "
    "embedded model 1.25x faster and changed its SSIM by -0.0002, moving 8-bit values by at most 6 levels; "
    "on a CPU without it, it is emulated and far slower (benchmarks/BENCHMARKS.md)"
)


def register_transfer(sub) -> None:
    p = sub.add_parser("transfer", help="render the person of a reference photo in a target pose")
    p.add_argument("reference", metavar="REF", help="the reference photo of the person")
    p.add_argument("--pose", required=True, metavar="POSE_JSON_OR_IMAGE",
                   help="OpenPose JSON (COCO-18 or BODY_25), a .json / .npy (18, 2|3) array in REF's pixels, or a photo of someone in the pose")
    p.add_argument("-o", "--out", required=True, help="output image (PNG recommended)")
    p.add_argument("--model", default=None, help="Hub id or local folder of a PGAT repository (default: weights/pgat-synth-256, or $PGAT_MODEL)")
    p.add_argument("--resolution", type=int, default=None, help="stage to load (default: the highest in the repository)")
    p.add_argument("--reference-pose", default=None, metavar="FILE",
                   help="the reference person's pose: OpenPose JSON, or a .json / .npy (18, 2|3) array in REF's pixels; used by --align-pose "
                        "and by models that take the reference's pose (default: estimated from REF when needed)")
    p.add_argument("--align-pose", action="store_true", help="move and scale the target pose onto the reference person")
    p.add_argument("--pose-estimator", choices=["auto", "openpose", "blazepose"], default="auto")
    p.add_argument("--skeleton", action="store_true", help="draw the target skeleton over the result")
    p.add_argument("--device", default=None, help="torch device, e.g. cuda (default: cpu)")
    p.add_argument("--dtype", choices=DTYPES, default="float32", help=DTYPE_HELP)
    p.set_defaults(func=_cmd_transfer)
