#!/usr/bin/env python
"""Progressive training of PGAT (§3.1): grow the generator 64² -> 1024² with the paper's losses.

    accelerate launch train/progressive.py --dataset synthhumans --stages 64,128 --steps_per_stage 4 \
        --train_batch_size 2 --bottleneck_channels 16 --output_dir out

    accelerate launch train/progressive.py --config train/configs/pgat-1024.yaml --train_data_dir DeepFashion-pairs

The recipe: at each level, Adam (lr 2e-4, weight decay 5e-4) on L = L_global + L_local, the perceptual criterion
L2 for the first half of the level's steps and L1 for the second; local perceptual loss on 18/31/44 descriptors by
resolution; at the last level of the schedule, local discriminators replace the local perceptual loss. Growing
(`PGATModel.grow`) adds one block on each side; the optimizer is rebuilt with the Adam state of older parameters
carried over and fresh state for the new ones.

The output folder is a Hub model repository (``model_index.json``, ``stage-XXXX/`` per finished stage, a README
model card), plus ``training_config.json``, ``samples/``, ``validation.jsonl`` and ``checkpoint-N/`` folders that
``--resume_from_checkpoint latest`` continues from, mid-stage, with identical results to an uninterrupted run
(the logs are rewound to the checkpoint's step first, so a step a killed run logged after it is logged once).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np
import torch
from PIL import Image

logger = logging.getLogger("pgat.train")

CONFIG_DIR = Path(__file__).resolve().parent / "configs"


# ---------------------------------------------------------------------------------------------
# arguments
# ---------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default=None, help="YAML preset (a path, or a name in train/configs/); command-line flags override it")
    p.add_argument("--dry_run", action="store_true", help="print the resolved configuration and exit")

    g = p.add_argument_group("data")
    g.add_argument("--dataset", default=None, help="'synthhumans' renders pairs on the fly (the default when no other data is given)")
    g.add_argument("--dataset_name", default=None, help="a Hub dataset in the pair format (datasets.load_dataset)")
    g.add_argument("--dataset_revision", default=None)
    g.add_argument("--train_data_dir", default=None, help="a local folder in the pair format (metadata.jsonl + pairs.csv)")
    g.add_argument("--validation_data_dir", default=None, help="held-out pair-format folder; default: the SynthHumans test split")
    g.add_argument("--image_column", default="image")
    g.add_argument("--keypoints_column", default="keypoints")
    g.add_argument("--synth_pairs", type=int, default=100_000, help="SynthHumans: number of distinct training pairs")
    g.add_argument("--flip_prob", type=float, default=0.5, help="horizontal flip augmentation (left/right keypoints swapped)")
    g.add_argument("--dataloader_num_workers", type=int, default=0)

    g = p.add_argument_group("schedule and model")
    g.add_argument("--stages", default="64,128,256,512,1024", help="resolutions, comma-separated")
    g.add_argument("--steps_per_stage", default="700000", help="one number, or one per stage")
    g.add_argument("--train_batch_size", default="8", help="per device; one number, or one per stage")
    g.add_argument("--bottleneck_channels", type=int, default=1024)
    g.add_argument("--learning_rate", type=float, default=2e-4)
    g.add_argument(
        "--lr_scheduler", default="constant", choices=["constant", "cosine"],
        help="the generator's learning rate within each level: constant (the paper), or a cosine from --learning_rate "
        "down to --lr_min_ratio of it at the level's last step, back to the full rate when the next level starts",
    )
    g.add_argument("--lr_min_ratio", type=float, default=0.1, help="--lr_scheduler cosine: the last step's rate, as a fraction of --learning_rate")
    g.add_argument("--adam_beta1", type=float, default=0.9)
    g.add_argument("--adam_beta2", type=float, default=0.999)
    g.add_argument("--adam_weight_decay", type=float, default=5e-4)
    g.add_argument("--perceptual_network", default="auto", choices=["auto", "vgg16", "vgg19"])
    g.add_argument("--vgg_weights", default=None, help="local file for the perceptual network's weights")
    g.add_argument("--local_weight", type=float, default=1.0, help="weight of the local perceptual loss")
    g.add_argument("--adversarial_weight", type=float, default=1.0, help="weight of the local adversarial (generator) loss")
    g.add_argument(
        "--pixel_weight", type=float, default=0.0,
        help="weight of an L1 loss on pixels added to the perceptual losses (not in the paper; 0 = the paper's recipe)",
    )
    g.add_argument(
        "--l2_fraction", type=float, default=0.5,
        help="fraction of each level's steps that use the L2 criterion before L1 (§3: 0.5; 0 = L1 throughout)",
    )
    g.add_argument(
        "--keep_optimizer_moments_at_l1", action="store_true",
        help="keep Adam's moment estimates when the criterion switches from L2 to L1 (default: restart them, see reset_adam_moments)",
    )
    g.add_argument("--reference_pose", action="store_true", help="the reference's own pose maps beside the target's at the bottleneck (not in the paper; PGATModel option)")
    g.add_argument("--warp_skips", action="store_true", help="warp the bottleneck and every skip per body part to the target pose (not in the paper; PGATModel option)")
    g.add_argument("--no_warp_keep_unwarped", action="store_true", help="with --warp_skips, give the decoder only the warped features, not the unwarped ones beside them")
    g.add_argument("--pose_every_scale", action="store_true", help="the target pose maps at every decoder resolution (not in the paper; PGATModel option)")
    g.add_argument("--warp_residual", action="store_true", help="the output is the part-warped reference plus a learned correction (not in the paper; PGATModel option)")
    g.add_argument(
        "--max_cpu_minutes", type=float, default=None,
        help="stop when the training steps have used this much CPU time (all threads of this process; validation and "
        "samples not counted); the level it stops in is saved as its stage and later levels are skipped",
    )
    g.add_argument(
        "--max_train_minutes", type=float, default=None,
        help="the same with wall-clock time of the training steps (waiting for data included; validation, samples and "
        "checkpoints not): the budget for comparing recipes at equal time, DataLoader workers' rendering included",
    )
    g.add_argument(
        "--stage_minutes", default=None,
        help="wall-clock budget of each level's training steps (one number, or one per stage): a level ends at its "
        "step count or when its budget is spent, whichever comes first, is saved as its stage, and the next level "
        "starts; the cosine learning rate follows whichever of the two is further along",
    )
    g.add_argument(
        "--init_model", default=None,
        help="fine-tune: start every level from this repository's stage of the same resolution (a local folder or a "
        "Hub id) instead of a fresh or grown network; a level it has no stage for is grown as usual. Its network "
        "must be the one the flags ask for (bottleneck width and the options beyond the paper)",
    )
    g.add_argument(
        "--perceptual_resolution", type=int, default=None,
        help="compute the global perceptual term on the pair downscaled to this side when the level is larger "
        "(not in the paper; the local term keeps the full resolution); default: the level's own resolution",
    )
    g.add_argument("--discriminator_channels", type=int, default=64)
    g.add_argument("--discriminator_learning_rate", type=float, default=2e-4)

    g = p.add_argument_group("ablations (Table 1)")
    g.add_argument("--no_progressive", action="store_true", help="train only the last resolution, from scratch, for the same total steps")
    g.add_argument("--no_local_perceptual", action="store_true", help="no local perceptual loss at any level")
    g.add_argument("--no_local_discriminator", action="store_true", help="no local discriminators at the last level")

    g = p.add_argument_group("accelerate, checkpoints, logging")
    g.add_argument("--output_dir", default="pgat-out")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument(
        "--mixed_precision", default="no", choices=["no", "fp16", "bf16"],
        help="autocast the generator, the perceptual network and the discriminator (accelerate's setting); bf16 needs "
        "a GPU or a CPU with native bf16 (AVX-512 BF16 / AMX), and is refused on other CPUs",
    )
    g.add_argument("--channels_last", action="store_true", help="generator, discriminator and perceptual network in channels-last (NHWC) layout")
    g.add_argument(
        "--torch_compile", action="store_true",
        help="torch.compile the generator and the perceptual network (the first steps of every level compile; "
        "worth it only for long levels)",
    )
    g.add_argument("--gradient_accumulation_steps", type=int, default=1)
    g.add_argument("--checkpointing_steps", type=int, default=500)
    g.add_argument("--checkpoints_total_limit", type=int, default=2)
    g.add_argument("--resume_from_checkpoint", default=None, help="'latest' or a checkpoint folder")
    g.add_argument("--report_to", default="none", help="'tensorboard', 'wandb', 'all' or 'none'")
    g.add_argument("--logging_dir", default="logs")
    g.add_argument("--sample_steps", type=int, default=500, help="write a sample grid every N steps (0: only at stage ends)")
    g.add_argument("--validation_steps", type=int, default=0, help="validation metrics every N steps (0: only at stage ends)")
    g.add_argument("--num_validation_pairs", type=int, default=16)
    g.add_argument("--push_to_hub", action="store_true")
    g.add_argument("--hub_model_id", default=None)
    g.add_argument("--hub_token", default=None)
    return p


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    from pgat.training_utils import parse_args_with_preset

    return parse_args_with_preset(build_parser(), argv, CONFIG_DIR)


def resolve_schedule(args) -> List[Dict[str, int]]:
    """The levels actually trained: [{resolution, steps, batch_size}, ...]."""
    from pgat.stages import check_resolution
    from pgat.training_utils import parse_int_list, per_stage

    stages = parse_int_list(args.stages, "--stages")
    for r in stages:
        check_resolution(r, "--stages")
    if stages != sorted(set(stages)):
        raise ValueError(f"`--stages` must be increasing without repeats, got {args.stages!r}")
    if any(b != 2 * a for a, b in zip(stages, stages[1:])):
        raise ValueError(f"`--stages` must double from one level to the next (the network grows one block at a time), got {args.stages!r}")
    if args.perceptual_resolution is not None and args.perceptual_resolution < 32:
        raise ValueError(f"`--perceptual_resolution` must be a side of at least 32 pixels, got {args.perceptual_resolution}")
    if not 0.0 <= args.lr_min_ratio <= 1.0:
        raise ValueError(f"`--lr_min_ratio` must be in [0, 1] (the last step's share of --learning_rate), got {args.lr_min_ratio}")
    if not 0.0 <= args.l2_fraction <= 1.0:
        raise ValueError(f"`--l2_fraction` must be in [0, 1] (the share of each level trained with the L2 criterion), got {args.l2_fraction}")
    steps = per_stage(parse_int_list(args.steps_per_stage, "--steps_per_stage"), len(stages), "--steps_per_stage")
    batch = per_stage(parse_int_list(args.train_batch_size, "--train_batch_size"), len(stages), "--train_batch_size")
    schedule = [{"resolution": r, "steps": s, "batch_size": b} for r, s, b in zip(stages, steps, batch)]
    if args.no_progressive:
        # Table 1 "no PT": the last resolution alone, from scratch, for the same number of steps in total
        schedule = [{"resolution": stages[-1], "steps": sum(steps), "batch_size": batch[-1]}]
    return schedule


def resolved_config(args, schedule) -> Dict:
    cfg = {k: v for k, v in vars(args).items() if k not in ("hub_token",)}
    cfg["schedule"] = schedule
    cfg["command"] = " ".join(["accelerate launch train/progressive.py", *sys.argv[1:]]) if sys.argv and sys.argv[0].endswith("progressive.py") else None
    return cfg


def model_options(args) -> Dict[str, bool]:
    """The `PGATModel` options beyond the paper (DESIGN.md §1b) that the flags switch on; all off is the paper."""
    return {
        "reference_pose": args.reference_pose,
        "warp_skips": args.warp_skips,
        "warp_keep_unwarped": not args.no_warp_keep_unwarped,
        "pose_every_scale": args.pose_every_scale,
        "warp_residual": args.warp_residual,
    }


def learning_rate_at(args, step_in_stage: int, steps: int, time_fraction: float = 0.0) -> float:
    """The generator's learning rate for step ``step_in_stage`` (0-based) of a level of ``steps`` steps.

    A pure function of the step, so a resumed run sets the very rates an uninterrupted one did. Why the cosine
    restarts at every level: growing adds freshly initialised blocks at both ends, which need the full rate, while
    the end of each level (and of training) gains from small steps. With a level budget (``--stage_minutes``) the
    cosine follows ``time_fraction`` (the share of the level's budget spent) when that is further along than the
    steps, so a level cut short by its budget still ends on small steps (and then depends on the machine's speed).
    """
    if args.lr_scheduler == "constant":
        return args.learning_rate
    progress = min(1.0, max(step_in_stage / max(1, steps - 1), time_fraction))
    return args.learning_rate * (args.lr_min_ratio + (1 - args.lr_min_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


def out_of_budget(args, state: Dict) -> bool:
    """Whether the training steps have used the ``--max_cpu_minutes`` or the ``--max_train_minutes`` budget (never, without one).

    Both survive resumes (``trainer_state.json`` keeps ``train_cpu_seconds`` and ``train_seconds``). CPU time counts
    this process's threads only: rendering in DataLoader workers is not in it, which is why recipes with workers
    are compared on wall time.
    """
    cpu = args.max_cpu_minutes is not None and state["train_cpu_seconds"] >= 60 * args.max_cpu_minutes
    wall = args.max_train_minutes is not None and state["train_seconds"] >= 60 * args.max_train_minutes
    return cpu or wall


def stage_budgets(args, num_stages: int) -> List[Optional[float]]:
    """Seconds of training steps each level may take (``--stage_minutes``), ``None`` for no budget."""
    if args.stage_minutes is None:
        return [None] * num_stages
    text = str(args.stage_minutes)
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"`--stage_minutes` must be a number or a comma-separated list of numbers, got {text!r}") from None
    if not values or any(not v > 0 for v in values):
        raise ValueError(f"`--stage_minutes` must hold positive numbers, got {text!r}")
    if len(values) == 1:
        values = values * num_stages
    if len(values) != num_stages:
        raise ValueError(f"`--stage_minutes` must be one number or one per stage ({num_stages}), got {len(values)}: {text!r}")
    return [60.0 * v for v in values]


def init_stage(args, resolution: int):
    """The ``--init_model`` repository's stage at ``resolution`` as a `PGATModel`, or ``None`` (no ``--init_model``,
    or no such stage there: that level is grown as usual).

    Raises:
        `ValueError`: the stage is another network than the flags ask for; loading its weights into the network the
            flags build would fail, and building its network instead would silently change the recipe.
    """
    if not args.init_model:
        return None
    from pgat.hub import list_stages, load_model_folder, resolve_stage
    from pgat.stages import stage_folder

    repo, _ = resolve_stage(args.init_model)
    if resolution not in list_stages(repo):
        return None
    model = load_model_folder(repo / stage_folder(resolution))
    wanted = {"bottleneck_channels": args.bottleneck_channels, **model_options(args)}
    differ = {k: (model.config[k], v) for k, v in wanted.items() if k in model.config and model.config[k] != v}
    if differ:
        listed = ", ".join(f"{k}={have} (the flags: {want})" for k, (have, want) in sorted(differ.items()))
        raise ValueError(
            f"`--init_model` {args.init_model} {stage_folder(resolution)} is another network than the flags ask for: {listed}; "
            "use the preset of its network (its training_config.json) or train from scratch without --init_model"
        )
    return model


def level_losses(args, stage_index: int, num_stages: int) -> Dict[str, bool]:
    """Which terms a level trains with (§3.2): local perceptual loss at every level, replaced by the local
    discriminators at the last level of the schedule."""
    last = stage_index == num_stages - 1
    adversarial = last and not args.no_local_discriminator
    return {"local_perceptual": not args.no_local_perceptual and not adversarial, "adversarial": adversarial}


# ---------------------------------------------------------------------------------------------
# data
# ---------------------------------------------------------------------------------------------


def make_dataset(args, resolution: int, split: str, length: Optional[int] = None):
    from pgat.data.pairs import PairDataset
    from pgat.data.synthetic import SynthHumans

    if split == "train":
        if args.train_data_dir:
            source = args.train_data_dir
        elif args.dataset_name:
            # a Hub dataset repository in the pair format is fetched whole and read like a local folder
            from huggingface_hub import snapshot_download

            source = snapshot_download(args.dataset_name, repo_type="dataset", revision=args.dataset_revision)
        else:
            if args.dataset not in (None, "synthhumans"):
                raise ValueError(f"`--dataset` must be 'synthhumans' (or give --dataset_name / --train_data_dir), got {args.dataset!r}")
            source = SynthHumans(resolution=resolution, split="train", seed=args.seed, length=length or args.synth_pairs)
        return PairDataset(
            source, resolution=resolution, flip_prob=args.flip_prob, seed=args.seed,
            image_column=args.image_column, keypoints_column=args.keypoints_column,
        )
    if args.validation_data_dir:
        return PairDataset(args.validation_data_dir, resolution=resolution, flip_prob=0.0, image_column=args.image_column, keypoints_column=args.keypoints_column)
    return PairDataset(SynthHumans(resolution=resolution, split="test", seed=args.seed, length=length), resolution=resolution, flip_prob=0.0)


def _stack(items: List[Dict]) -> Dict[str, torch.Tensor]:
    keys = ("reference", "target", "reference_keypoints", "target_keypoints")
    return {k: torch.stack([torch.as_tensor(it[k]) for it in items]) for k in keys}


# ---------------------------------------------------------------------------------------------
# samples and validation
# ---------------------------------------------------------------------------------------------


def _to_uint8(x: torch.Tensor) -> np.ndarray:
    return ((x.detach().float().clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).cpu().numpy()


def _fp32_forward(model, batch: Dict[str, torch.Tensor]) -> torch.Tensor:
    """The output in fp32 whatever ``--mixed_precision`` trains in, so that validation numbers compare across
    precisions: the class's ``forward``, not the autocast wrapper accelerate sets on the instance."""
    return type(model).forward(model, batch["reference"], batch["target_keypoints"], batch["reference_keypoints"]).image


def sample_grid(model, batch: Dict[str, torch.Tensor]) -> Image.Image:
    """One row per pair: reference | target pose | output | ground truth."""
    from pgat.pose import draw_skeleton

    was_training = model.training
    model.eval()
    with torch.no_grad():
        pred = _fp32_forward(model, batch)
    model.train(was_training)
    rows = []
    r = pred.shape[-1]
    for i in range(pred.shape[0]):
        skeleton = np.asarray(draw_skeleton((r, r), batch["target_keypoints"][i].cpu().numpy()))
        rows.append(np.concatenate([_to_uint8(batch["reference"][i]), skeleton, _to_uint8(pred[i]), _to_uint8(batch["target"][i])], axis=1))
    return Image.fromarray(np.concatenate(rows, axis=0))


def validate(model, batch: Dict[str, torch.Tensor]) -> Dict[str, float]:
    from pgat.metrics import evaluate

    was_training = model.training
    model.eval()
    with torch.no_grad():
        pred = _fp32_forward(model, batch)
    model.train(was_training)
    return evaluate(pred.float(), batch["target"].float(), batch["target_keypoints"], metrics=("ssim", "local_ssim"))


# ---------------------------------------------------------------------------------------------
# checkpoints
# ---------------------------------------------------------------------------------------------


# ---------------------------------------------------------------------------------------------
# main
# ---------------------------------------------------------------------------------------------


def main(args: argparse.Namespace) -> Path:
    schedule = resolve_schedule(args)
    config = resolved_config(args, schedule)
    if args.dry_run:
        print(json.dumps(config, indent=2, sort_keys=True, default=str))
        return Path(args.output_dir)

    from accelerate import Accelerator
    from accelerate.utils import ProjectConfiguration, set_seed
    from tqdm.auto import tqdm

    from pgat import PGATModel
    from pgat.hub import save_stage, write_model_card, write_model_index
    from pgat.losses import LocalAdversarialLoss, LocalPerceptualLoss, PerceptualLoss
    from pgat.models.discriminator import LocalDiscriminator
    from pgat.training_utils import (
        StepBatchSampler,
        check_mixed_precision,
        unwrap_optimizer,
        reset_adam_moments,
        carry_optimizer_state,
        load_torch_state,
        resolve_checkpoint,
        rewind_jsonl,
        save_checkpoint,
        set_rng_state,
        write_json,
    )

    out = Path(args.output_dir)

    def bare(module):
        """The PGATModel inside accelerate's wrappers and torch.compile's: what is grown, validated and saved."""
        return accelerator.unwrap_model(module, keep_torch_compile=False)

    accelerator = Accelerator(
        mixed_precision=args.mixed_precision,
        gradient_accumulation_steps=args.gradient_accumulation_steps,
        log_with=None if args.report_to == "none" else args.report_to,
        project_config=ProjectConfiguration(project_dir=str(out), logging_dir=str(out / args.logging_dir)),
    )
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO if accelerator.is_main_process else logging.WARNING)
    if accelerator.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
        write_json(out / "training_config.json", config)
    if accelerator.is_main_process and accelerator.log_with:
        accelerator.init_trackers("pgat", config={k: v for k, v in config.items() if isinstance(v, (int, float, str, bool))})

    # 1. where to start: a checkpoint (mid-stage) or the first level
    checkpoint = resolve_checkpoint(out, args.resume_from_checkpoint)
    if args.resume_from_checkpoint and checkpoint is None:
        logger.info("no checkpoint in %s: starting from scratch", out)
    state = {"global_step": 0, "stage_index": 0, "step_in_stage": 0, "train_cpu_seconds": 0.0, "train_seconds": 0.0, "stage_seconds": 0.0}
    if checkpoint is not None:
        state = {**state, **{k: v for k, v in json.loads((checkpoint / "trainer_state.json").read_text()).items() if k in state}}
        logger.info("resuming from %s (stage %d, step %d of it)", checkpoint, state["stage_index"], state["step_in_stage"])
        if accelerator.is_main_process:  # what a killed run logged after its last checkpoint is made again now
            for name in ("train_log.jsonl", "validation.jsonl"):
                rewind_jsonl(out / name, lambda r: r.get("step", 0) <= state["global_step"])
            redone = {level["resolution"] for level in schedule[state["stage_index"]:]}
            rewind_jsonl(out / "timings.jsonl", lambda r: r.get("resolution") not in redone)
    set_seed(args.seed)

    check_mixed_precision(args.mixed_precision, accelerator.device)
    layout = torch.channels_last if args.channels_last else torch.contiguous_format
    perceptual = PerceptualLoss(
        network=args.perceptual_network, weights_path=args.vgg_weights, max_resolution=args.perceptual_resolution
    ).to(accelerator.device, memory_format=layout)
    if args.torch_compile:  # the local crops' count changes with every batch: dynamic shapes from the start
        perceptual.vgg = torch.compile(perceptual.vgg, dynamic=True)
    local_perceptual = LocalPerceptualLoss(perceptual=perceptual)
    if accelerator.is_main_process:
        logger.info("perceptual network: %s", perceptual.network)

    model = None
    optimizer = None
    budgets = stage_budgets(args, len(schedule))
    total_steps = sum(s["steps"] for s in schedule)
    timed = all(b is not None for b in budgets)
    if timed:
        # with a budget per level the bar counts seconds of it, so its remaining time is the time left, not the
        # steps left at the current rate (a level cut by its budget never takes its remaining steps)
        done = sum(budgets[: state["stage_index"]]) + state["stage_seconds"]
        progress = tqdm(total=sum(budgets), initial=done, disable=not accelerator.is_local_main_process, desc="training",
                        bar_format="{desc}: {percentage:3.0f}%|{bar}| {elapsed}<{remaining}{postfix}")
    else:
        progress = tqdm(total=total_steps, initial=state["global_step"], disable=not accelerator.is_local_main_process, desc="training")

    for stage_index in range(state["stage_index"], len(schedule)):
        level = schedule[stage_index]
        res, steps, batch_size = level["resolution"], level["steps"], level["batch_size"]
        terms = level_losses(args, stage_index, len(schedule))
        resume_here = checkpoint is not None and stage_index == state["stage_index"]

        # 2. the generator at this level: fresh, grown from the previous level, or from the checkpoint
        old_optimizer, old_names = None, None
        resume_optimizer = False
        if resume_here:
            # first, so that everything after (growing included) draws the random numbers it drew the first time
            set_rng_state(load_torch_state(checkpoint / f"rng_state_{accelerator.process_index}.pt"))
            model = PGATModel.from_pretrained(checkpoint / "model")
            if model.config.resolution == res:
                resume_optimizer = True
            else:  # a checkpoint from the end of the previous level: grow it, as the uninterrupted run did
                old_optimizer = torch.optim.Adam(model.parameters(), lr=args.learning_rate)
                old_optimizer.load_state_dict(load_torch_state(checkpoint / "optimizer.pt"))
                old_names = [n for n, _ in model.named_parameters()]
                model = model.grow()
        elif model is None:
            model = PGATModel(resolution=res, bottleneck_channels=args.bottleneck_channels, **model_options(args))
        else:
            base = bare(model)
            old_optimizer, old_names = unwrap_optimizer(optimizer), [n for n, _ in base.named_parameters()]
            model = base.grow()
        if model.config.resolution != res:
            raise ValueError(f"the model is at {model.config.resolution}² but stage {stage_index} of the schedule is {res}²")
        if not resume_optimizer and (pretrained := init_stage(args, res)) is not None:
            # fine-tuning: the level starts from the pretrained stage, every layer of which was trained at this size,
            # with a fresh Adam state (moments of other weights would mislead it); built first, then overwritten, so
            # the random numbers drawn are those of a run without --init_model
            model.load_state_dict(pretrained.state_dict())
            old_optimizer = old_names = None
        model.to(memory_format=layout)  # in place: the parameters keep their identity (the optimizer is built next)
        model.train()
        optimizer = torch.optim.Adam(
            model.parameters(), lr=args.learning_rate, betas=(args.adam_beta1, args.adam_beta2), weight_decay=args.adam_weight_decay
        )
        if old_optimizer is not None:
            carry_optimizer_state(old_optimizer, old_names, optimizer, [n for n, _ in model.named_parameters()])
        if resume_optimizer:
            optimizer.load_state_dict(load_torch_state(checkpoint / "optimizer.pt"))

        discriminator = d_optimizer = adversarial = None
        if terms["adversarial"]:
            if resume_here and (checkpoint / "discriminator").is_dir():
                discriminator = LocalDiscriminator.from_pretrained(checkpoint / "discriminator")
            else:
                discriminator = LocalDiscriminator(crop_size=res // 8, base_channels=args.discriminator_channels)
            discriminator.to(memory_format=layout)
            discriminator.train()
            d_optimizer = torch.optim.Adam(discriminator.parameters(), lr=args.discriminator_learning_rate, betas=(0.5, 0.999))
            if resume_here and (checkpoint / "discriminator_optimizer.pt").is_file():
                d_optimizer.load_state_dict(load_torch_state(checkpoint / "discriminator_optimizer.pt"))

        accelerator.free_memory()  # drop the previous level's prepared objects
        if discriminator is not None:
            model, optimizer, discriminator, d_optimizer = accelerator.prepare(model, optimizer, discriminator, d_optimizer)
            adversarial = LocalAdversarialLoss(discriminator)
        else:
            model, optimizer = accelerator.prepare(model, optimizer)
        if args.torch_compile:
            model = torch.compile(model)  # bare() sees through it
        if resume_here:
            if accelerator.scaler is not None and (checkpoint / "scaler.pt").is_file():
                accelerator.scaler.load_state_dict(load_torch_state(checkpoint / "scaler.pt"))

        # 3. this level's data: the batch of every step is fixed by (seed, step), so resuming replays it exactly
        train_set = make_dataset(args, res, "train")
        start = state["step_in_stage"] if resume_here else 0
        sampler = StepBatchSampler(
            len(train_set), batch_size, args.seed + 7919 * stage_index, start, steps,
            accumulation=args.gradient_accumulation_steps, rank=accelerator.process_index, world_size=accelerator.num_processes,
        )
        # its own generator: a DataLoader otherwise draws its base seed from the global RNG, which would shift
        # the initialisation of the next grown block between a resumed and an uninterrupted run
        loader = torch.utils.data.DataLoader(
            train_set, batch_sampler=sampler, num_workers=args.dataloader_num_workers, collate_fn=_stack,
            generator=torch.Generator().manual_seed(args.seed),
        )
        val_set = make_dataset(args, res, "test", length=args.num_validation_pairs)
        val_batch = _stack([val_set[i] for i in range(min(args.num_validation_pairs, len(val_set)))])
        val_batch = {k: v.to(accelerator.device) for k, v in val_batch.items()}

        step_in_stage = start
        state = {**state, "stage_index": stage_index, "step_in_stage": step_in_stage}
        if not resume_here:
            state["stage_seconds"] = 0.0
        budget = budgets[stage_index]
        t0 = last = mark = time.perf_counter()  # mark: where the current step's wall time starts (data wait included)
        out_of_time = False
        for batch in loader:
            if out_of_budget(args, state):
                out_of_time = True
                break
            cpu0 = time.process_time()
            batch = {k: v.to(accelerator.device) for k, v in batch.items()}
            # §3: L2 criterion during the first half of every level (--l2_fraction), L1 during the rest
            switch = steps * args.l2_fraction
            criterion = "l2" if step_in_stage < switch else "l1"
            restart = criterion == "l1" and 0 < step_in_stage and step_in_stage - 1 < switch and not args.keep_optimizer_moments_at_l1
            if restart:
                reset_adam_moments(optimizer)
            lr = learning_rate_at(args, step_in_stage, steps, state["stage_seconds"] / budget if budget else 0.0)
            for group in optimizer.param_groups:
                group["lr"] = lr
            models = (model, discriminator) if discriminator is not None else (model,)
            with accelerator.accumulate(*models):
                # 4. generator phase
                pred = model(batch["reference"], batch["target_keypoints"], batch["reference_keypoints"]).image
                # the losses run under the same autocast as the generator (--mixed_precision); their sums are fp32
                with accelerator.autocast():
                    logs = {"global": perceptual(pred, batch["target"], criterion=criterion)}
                    if terms["local_perceptual"]:
                        logs["local"] = args.local_weight * local_perceptual(pred, batch["target"], batch["target_keypoints"], criterion=criterion)
                    if adversarial is not None:
                        g = adversarial.generator_loss(batch["reference"], pred, batch["reference_keypoints"], batch["target_keypoints"])
                        logs["adversarial"] = args.adversarial_weight * g["loss"].float()
                if args.pixel_weight:
                    logs["pixel"] = args.pixel_weight * (pred.float() - batch["target"]).abs().mean()
                loss = sum(logs.values())
                accelerator.backward(loss)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                # 5. discriminator phase (§3.2): real (X_d, X'_d) vs fake (X_d, X̂_d)
                if discriminator is not None:
                    with accelerator.autocast():
                        d_terms = adversarial.discriminator_loss(
                            batch["reference"], batch["target"], pred.detach(), batch["reference_keypoints"], batch["target_keypoints"]
                        )
                    accelerator.backward(d_terms["loss"].float())
                    d_optimizer.step()
                    d_optimizer.zero_grad(set_to_none=True)
                    logs["d_loss"] = d_terms["loss"].detach()
                    logs["d_real"], logs["d_fake"] = d_terms["real_score"], d_terms["fake_score"]
            if not accelerator.sync_gradients:
                continue

            step_in_stage += 1
            cpu = state["train_cpu_seconds"] + time.process_time() - cpu0
            scalars = {k: float(v.detach()) for k, v in logs.items()}  # waits for the step's last kernels on a GPU
            now = time.perf_counter()
            wall = state["train_seconds"] + now - mark
            state = {"global_step": state["global_step"] + 1, "stage_index": stage_index, "step_in_stage": step_in_stage,
                     "train_cpu_seconds": cpu, "train_seconds": wall, "stage_seconds": state["stage_seconds"] + now - mark}
            scalars.update(resolution=res, criterion_l1=float(criterion == "l1"), step_seconds=now - last, train_cpu_seconds=cpu, train_seconds=wall)
            if restart:
                scalars["adam_restart"] = 1.0
            if args.lr_scheduler != "constant":
                scalars["lr"] = lr
            last = now
            shown = {k: f"{v:.3g}" for k, v in scalars.items() if k not in ("resolution", "step_seconds", "train_cpu_seconds", "train_seconds")}
            if timed:
                progress.update(min(now - mark, max(0.0, budget - (state["stage_seconds"] - (now - mark)))))
                shown = {"level": f"{res}² step {step_in_stage}/{steps}", **shown}
            else:
                progress.update(1)
            progress.set_postfix(shown, refresh=False)
            accelerator.log(scalars, step=state["global_step"])
            if accelerator.is_main_process:
                with open(out / "train_log.jsonl", "a") as f:
                    f.write(json.dumps({"step": state["global_step"], **scalars}) + "\n")

            level_spent = budget is not None and state["stage_seconds"] >= budget
            end_of_stage = step_in_stage == steps or level_spent or out_of_budget(args, state)
            if accelerator.is_main_process and (end_of_stage or (args.sample_steps and step_in_stage % args.sample_steps == 0)):
                (out / "samples").mkdir(exist_ok=True)
                sample_grid(bare(model), {k: v[:4] for k, v in val_batch.items()}).save(
                    out / "samples" / f"{res:04d}-step{state['global_step']:07d}.png"
                )
            if accelerator.is_main_process and (end_of_stage or (args.validation_steps and step_in_stage % args.validation_steps == 0)):
                metrics = validate(bare(model), val_batch)
                record = {"step": state["global_step"], "resolution": res, "step_in_stage": step_in_stage, "train_cpu_seconds": cpu,
                          "train_seconds": wall, **metrics}
                with open(out / "validation.jsonl", "a") as f:
                    f.write(json.dumps(record) + "\n")
                accelerator.log({f"val/{k}": v for k, v in metrics.items()}, step=state["global_step"])
            if args.checkpointing_steps and state["global_step"] % args.checkpointing_steps == 0 and not end_of_stage:
                save_checkpoint(accelerator, out, args.checkpoints_total_limit, state, model, optimizer, discriminator, d_optimizer)
            mark = time.perf_counter()  # samples, validation and checkpoints are not training time
            if level_spent and step_in_stage < steps:
                logger.info("the %d² level's budget (--stage_minutes) is spent at step %d of %d: next level", res, step_in_stage, steps)
                break
            if timed and step_in_stage == steps:  # the level's steps are done before its budget: the rest is not spent
                progress.total -= max(0.0, budget - state["stage_seconds"])
                progress.refresh()

        seconds = time.perf_counter() - t0
        # 6. the finished level becomes a stage folder of the output repository
        if accelerator.is_main_process:
            save_stage(bare(model), out)
            with open(out / "timings.jsonl", "a") as f:
                f.write(json.dumps({"resolution": res, "steps": step_in_stage - start, "seconds": seconds,
                                    "cpu_seconds_total": state["train_cpu_seconds"], "train_seconds_total": state["train_seconds"],
                                    "num_processes": accelerator.num_processes}) + "\n")
        out_of_time = out_of_time or out_of_budget(args, state)
        # a checkpoint at the stage boundary: resuming from it starts the next level
        state = {**state, "stage_index": stage_index + 1, "step_in_stage": 0, "stage_seconds": 0.0}
        if stage_index + 1 < len(schedule) and args.checkpointing_steps and not out_of_time:
            save_checkpoint(accelerator, out, args.checkpoints_total_limit, state, model, optimizer, discriminator, d_optimizer)
        checkpoint = None
        if out_of_time:
            logger.info("the time budget (--max_cpu_minutes %s, --max_train_minutes %s) is spent at step %d of the %d² level: stopping",
                        args.max_cpu_minutes, args.max_train_minutes, step_in_stage, res)
            break

    progress.close()
    accelerator.wait_for_everyone()
    # a fingerprint of the final parameters from every rank: equal files mean the ranks never diverged
    (out / args.logging_dir).mkdir(parents=True, exist_ok=True)
    (out / args.logging_dir / f"fingerprint-rank{accelerator.process_index}.txt").write_text(_fingerprint(bare(model)) + "\n")
    if accelerator.is_main_process:
        write_model_index(out)
        write_model_card(
            out,
            repo_id=args.hub_model_id,
            training_summary=_training_summary(args, schedule),
            training_command=config["command"],
            **_card_data_sections(args),
        )
        if args.push_to_hub:
            from huggingface_hub import create_repo, upload_folder

            repo_id = create_repo(args.hub_model_id or out.name, exist_ok=True, token=args.hub_token).repo_id
            upload_folder(
                repo_id=repo_id, folder_path=str(out), token=args.hub_token,
                ignore_patterns=["checkpoint-*", f"{args.logging_dir}/*", "*.tmp/*"], commit_message="PGAT progressive training",
            )
    accelerator.end_training()
    return out


def _fingerprint(model) -> str:
    import hashlib

    # parameters only: BatchNorm running statistics are per rank under DDP (each rank normalises its own
    # batch; DDP re-broadcasts rank 0's buffers at every forward and rank 0's are the ones saved)
    h = hashlib.sha256()
    for name, t in sorted(model.named_parameters()):
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def _training_summary(args, schedule) -> str:
    data = args.train_data_dir or args.dataset_name or "SynthHumans (procedural people, rendered on the fly)"
    levels = ", ".join(f"{s['resolution']}² × {s['steps']} steps (batch {s['batch_size']})" for s in schedule)
    ablation = [n for n in ("no_progressive", "no_local_perceptual", "no_local_discriminator") if getattr(args, n)]
    return (
        f"Trained with `train/progressive.py` on {data}. Levels: {levels}. Bottleneck width {args.bottleneck_channels}. "
        f"Adam lr {args.learning_rate}, weight decay {args.adam_weight_decay}; perceptual network {args.perceptual_network}."
        + (f" Perceptual criterion L2 for the first {args.l2_fraction:.0%} of each level's steps, L1 after." if args.l2_fraction else " Perceptual criterion L1 throughout.")
        + (f" Plus an L1 pixel loss, weight {args.pixel_weight:g} (not in the paper)." if args.pixel_weight else "")
        + (f" Learning rate on a cosine within each level, down to {args.lr_min_ratio:g} of it." if args.lr_scheduler == "cosine" else "")
        + (f" Network options beyond the paper (DESIGN.md §1b): {', '.join(on)}." if (on := [k for k, v in model_options(args).items() if v and k != 'warp_keep_unwarped']) else "")
        + (f" Fine-tuned from `{args.init_model}`: each level started from its stage of the same size." if args.init_model else "")
        + (f" Each level also ended when its training steps had taken {args.stage_minutes} minutes (--stage_minutes)." if args.stage_minutes else "")
        + (f" Steps in {args.mixed_precision} autocast." if args.mixed_precision != "no" else "")
        + (" Channels-last layout." if args.channels_last else "")
        + (f" Global perceptual term on the pair downscaled to {args.perceptual_resolution}² above that size." if args.perceptual_resolution else "")
        + (f" Ablation switches: {', '.join(ablation)}." if ablation else "")
    )


def _card_data_sections(args) -> Dict[str, str]:
    """What the card says about the training data; a model trained on SynthHumans alone says so plainly."""
    if args.train_data_dir or args.dataset_name:
        return {"training_data": f"Pairs from `{args.train_data_dir or args.dataset_name}` (the pair format of `pgat.data`)."}
    return {
        "training_data": (
            "SynthHumans only: procedural, flat-shaded people (`pgat.data.SynthHumans`) placed in real DeepFashion poses. "
            "**This model has never seen a real photograph.** It will not transfer real people well: expect wrong colours, "
            "textures and shapes on photos. For real images, train the `pgat-1024` preset on DeepFashion (below)."
        ),
        "limitations": (
            "Trained on synthetic people only. The evaluation table shows how far it gets beyond copying the reference "
            "image; real photos, faces, hands, text and logos are out of its reach."
        ),
    }


if __name__ == "__main__":
    main(parse_args())
