#!/usr/bin/env python
"""Train the try-on appearance-flow network (paper fig. 9) on SynthHumans garment pairs.

    accelerate launch train/flow.py --config flow-tryon --output_dir pgat-1024    # beside the stage folders
    python train/flow.py --resolution 64 --block_out_channels 8,16,32,32 --max_train_steps 300 --output_dir out

Two kinds of pairs (``--pairs``). ``tryon`` (presets ``flow-tryon``, ``flow-tryon-cpu``: the flow of the default
"keep the person" mode) trains on `SynthHumansTryOn` triples: another identity's top moved part by part onto the
person, the person's own top as the target region, the ground truth's top as the answer. ``pose`` (the default;
presets ``flow-synth``, ``flow-synth-cpu``: the paper's canonical route) is described here: a pair is one
SynthHumans identity in two poses. The network sees the reference image masked to its top
(``PARSING_LABELS``' ``"top"``: the garment), that top's mask and the target pose's top mask, and predicts a
flow; ``grid_sample`` moves the garment with it. The loss (weights are arguments):

- perceptual (`pgat.losses.PerceptualLoss`) between the warped garment and the target's top;
- L1 between them inside the target mask;
- L1 between the warped garment mask and the target mask (not in the brief of fig. 9, but what makes the
  garment's *outline* follow the target when its inside is a flat colour, as for plain tops);
- total variation of the flow (smoothness: neighbouring pixels move together).

The output folder gets ``flow/`` (``AppearanceFlowModel.save_pretrained``, safetensors) and a
``model_index.json`` that lists it, so training into a PGAT repository puts the flow beside the stage
folders. Conventions as ``train/progressive.py``: a YAML preset (``--config``), ``training_config.json``,
``train_log.jsonl``, ``validation.jsonl`` (mask IoU of the warped garment, and of the unwarped one for
reference), batches fixed by ``(seed, step)`` and crash-safe ``checkpoint-N/`` folders that
``--resume_from_checkpoint latest`` continues from exactly (the checkpoint writer is ``pgat.training_utils.save_checkpoint``;
this script's folder is on ``sys.path`` when it runs, as for any script).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional

import torch

logger = logging.getLogger("pgat.train.flow")

CONFIG_DIR = Path(__file__).resolve().parent / "configs"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default=None, help="YAML preset (a path, or a name in train/configs/); command-line flags override it")
    p.add_argument("--dry_run", action="store_true", help="print the resolved configuration and exit")

    g = p.add_argument_group("data (SynthHumans garment pairs)")
    g.add_argument("--pairs", default="pose", choices=["pose", "tryon"],
                   help="'pose': one identity's top in two poses, the garment unmoved (the paper's flow, for the canonical mode); "
                        "'tryon': SynthHumansTryOn triples, another identity's top moved part by part onto the person, the "
                        "person's own top as the target region, the ground truth's top as the answer (the 'keep' mode's refinement)")
    g.add_argument("--resolution", type=int, default=256, help="side of the square training images (the flow model's sample_size)")
    g.add_argument("--synth_poses", default="deepfashion", choices=["deepfashion", "random"], help="pose pool of SynthHumans")
    g.add_argument("--synth_pairs", type=int, default=100_000, help="number of distinct training pairs")
    g.add_argument("--cache_pairs", action="store_true", help="keep rendered pairs in memory (small --synth_pairs, many steps)")
    g.add_argument("--num_validation_pairs", type=int, default=16, help="held-out pairs from the SynthHumans test split")

    g = p.add_argument_group("model and optimisation")
    g.add_argument("--block_out_channels", default="32,64,128,256,256", help="flow U-Net widths, finest to coarsest")
    g.add_argument("--max_train_steps", type=int, default=100_000)
    g.add_argument("--train_batch_size", type=int, default=8, help="per device")
    g.add_argument("--learning_rate", type=float, default=2e-4)
    g.add_argument("--adam_beta1", type=float, default=0.9)
    g.add_argument("--adam_beta2", type=float, default=0.999)
    g.add_argument("--adam_weight_decay", type=float, default=0.0)
    g.add_argument("--perceptual_network", default="auto", choices=["auto", "vgg16", "vgg19"])
    g.add_argument("--vgg_weights", default=None, help="local file for the perceptual network's weights")
    g.add_argument("--perceptual_weight", type=float, default=1.0)
    g.add_argument("--l1_weight", type=float, default=1.0, help="L1 inside the target garment mask")
    # 5 rather than 1: at 64², 200 steps, L1 + mask + TV, mask IoU on held-out pairs reached 0.51 with 5 and 0.44 with 1 (from 0.34)
    g.add_argument("--mask_weight", type=float, default=5.0, help="L1 between warped and target garment masks")
    g.add_argument("--tv_weight", type=float, default=0.1, help="total variation of the flow")

    g = p.add_argument_group("accelerate, checkpoints, logging")
    g.add_argument("--output_dir", default="pgat-flow", help="a PGAT repository folder (flow/ is written into it) or a new folder")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--mixed_precision", default="no", choices=["no", "fp16", "bf16"])
    g.add_argument("--gradient_accumulation_steps", type=int, default=1)
    g.add_argument("--checkpointing_steps", type=int, default=1000)
    g.add_argument("--checkpoints_total_limit", type=int, default=2)
    g.add_argument("--resume_from_checkpoint", default=None, help="'latest' or a checkpoint folder")
    g.add_argument("--validation_steps", type=int, default=0, help="validation every N steps (0: only at the end)")
    g.add_argument("--report_to", default="none", help="'tensorboard', 'wandb', 'all' or 'none'")
    g.add_argument("--logging_dir", default="logs")
    g.add_argument("--push_to_hub", action="store_true")
    g.add_argument("--hub_model_id", default=None)
    g.add_argument("--hub_token", default=None)
    return p


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    from pgat.training_utils import parse_args_with_preset

    return parse_args_with_preset(build_parser(), argv, CONFIG_DIR)


def check_args(args) -> List[int]:
    """Validate what argparse cannot; returns the parsed widths."""
    from pgat.training_utils import parse_int_list

    widths = parse_int_list(args.block_out_channels, "--block_out_channels")
    factor = 2 ** (len(widths) - 1)
    if args.resolution < 64 or args.resolution % factor:
        raise ValueError(f"`--resolution` must be at least 64 and a multiple of {factor} (for {len(widths)} widths), got {args.resolution}")
    for name in ("max_train_steps", "train_batch_size", "synth_pairs", "num_validation_pairs"):
        if getattr(args, name) < 1:
            raise ValueError(f"`--{name}` must be a positive integer, got {getattr(args, name)}")
    for name in ("perceptual_weight", "l1_weight", "mask_weight", "tv_weight"):
        if getattr(args, name) < 0:
            raise ValueError(f"`--{name}` must be non-negative, got {getattr(args, name)}")
    return widths


# ---------------------------------------------------------------------------------------------
# data
# ---------------------------------------------------------------------------------------------


class GarmentPairs(torch.utils.data.Dataset):
    """SynthHumans pairs as flow-training tensors: ``garment`` (reference masked to its top, 0 outside, in
    [-1, 1]), ``garment_mask``, ``target_mask`` and ``target_garment`` (the target masked to its top)."""

    def __init__(self, synth, cache: bool = False):
        self.synth = synth
        self.cache: Optional[Dict[int, Dict[str, torch.Tensor]]] = {} if cache else None

    def __len__(self) -> int:
        return len(self.synth)

    def __getitem__(self, index: int) -> Dict[str, torch.Tensor]:
        if self.cache is not None and index in self.cache:
            return self.cache[index]
        from pgat.data.synthetic import TOP

        item = self.synth[index]
        out = {}
        for side, name in (("reference", "garment"), ("target", "target_garment")):
            image = torch.from_numpy(item[side]).permute(2, 0, 1).float() / 127.5 - 1.0
            mask = torch.from_numpy(item[f"{side}_parsing"] == TOP).float()[None]
            out[name] = image * mask
            out["garment_mask" if side == "reference" else "target_mask"] = mask
        if self.cache is not None:
            self.cache[index] = out
        return out


class TryOnTriples(GarmentPairs):
    """`SynthHumansTryOn` triples as flow-training tensors, as `PGATTryOnPipeline`'s "keep" mode feeds the flow:
    ``garment`` (the garment photo moved part by part onto the person's pose, `pgat.pipelines.tryon.move_garment`,
    premultiplied by its moved top mask ``garment_mask``), ``target_mask`` (the person's own top: the region the
    pipeline is given), and the answer: ``target_garment`` (the ground truth masked to its top) and ``truth_mask``
    (its top). The target region is the old garment's, not the answer's, so the network cannot read the new
    outline from its input: it must make it from the moved garment."""

    def __getitem__(self, index: int) -> Dict[str, torch.Tensor]:
        if self.cache is not None and index in self.cache:
            return self.cache[index]
        from pgat.data.synthetic import TOP
        from pgat.pipelines.tryon import move_garment

        item = self.synth[index]
        r = item["person"].shape[0]

        def image(x):
            return torch.from_numpy(x).permute(2, 0, 1).float() / 127.5 - 1.0

        def top(parsing):
            return torch.from_numpy(parsing == TOP).float()[None]

        moved, alpha = move_garment(image(item["garment"])[None], top(item["garment_parsing"])[None],
                                    item["garment_keypoints"], item["person_keypoints"], (r, r))
        truth = top(item["ground_truth_parsing"])
        out = {
            "garment": (moved * alpha)[0], "garment_mask": alpha[0], "target_mask": top(item["person_parsing"]),
            "target_garment": image(item["ground_truth"]) * truth, "truth_mask": truth,
        }
        if self.cache is not None:
            self.cache[index] = out
        return out


def make_datasets(args):
    from pgat.data.synthetic import SynthHumans, SynthHumansTryOn

    if args.pairs == "tryon":  # the triples' own pose pool (DeepFashion) and identities, split as SynthHumans'
        train = SynthHumansTryOn(resolution=args.resolution, split="train", seed=args.seed, length=args.synth_pairs)
        val = SynthHumansTryOn(resolution=args.resolution, split="test", seed=args.seed, length=args.num_validation_pairs)
        return TryOnTriples(train, cache=args.cache_pairs), TryOnTriples(val)
    train = SynthHumans(resolution=args.resolution, split="train", seed=args.seed, poses=args.synth_poses, length=args.synth_pairs)
    val = SynthHumans(resolution=args.resolution, split="test", seed=args.seed, poses=args.synth_poses, length=args.num_validation_pairs)
    return GarmentPairs(train, cache=args.cache_pairs), GarmentPairs(val)


def _stack(items: List[Dict[str, torch.Tensor]]) -> Dict[str, torch.Tensor]:
    return {k: torch.stack([it[k] for it in items]) for k in items[0]}


# ---------------------------------------------------------------------------------------------
# loss and validation
# ---------------------------------------------------------------------------------------------


def flow_losses(args, out, batch, perceptual) -> Dict[str, torch.Tensor]:
    """The weighted terms of the flow loss; their sum is trained. The answer's region is ``truth_mask`` where the
    data has one (try-on triples), else the target region."""
    from pgat.models.flow import total_variation

    tm = batch.get("truth_mask", batch["target_mask"])
    terms = {}
    if args.perceptual_weight:
        terms["perceptual"] = args.perceptual_weight * perceptual(out.warped_garment.float(), batch["target_garment"], criterion="l1")
    # mean over the target region's pixels, not the image: small garments count as much as large ones
    inside = ((out.warped_garment.float() - batch["target_garment"]).abs() * tm).flatten(1).sum(1) / (3 * tm.flatten(1).sum(1)).clamp(min=1)
    terms["l1"] = args.l1_weight * inside.mean()
    terms["mask"] = args.mask_weight * (out.warped_mask.float() - tm).abs().mean()
    terms["tv"] = args.tv_weight * total_variation(out.flow.float())
    return terms


@torch.no_grad()
def validate(model, batch: Dict[str, torch.Tensor]) -> Dict[str, float]:
    """Mean mask IoU of the warped garment with the answer's region (``truth_mask``, else the target region), and of
    the unmoved garment (the identity flow: for try-on triples, the part warp alone), and the L1 inside it of both."""
    from pgat.models.flow import mask_iou

    was_training = model.training
    model.eval()
    out = model(batch["garment"], batch["garment_mask"], batch["target_mask"])
    model.train(was_training)
    tm = batch.get("truth_mask", batch["target_mask"])

    def l1(x):
        return float(((x - batch["target_garment"]).abs() * tm).sum() / (3 * tm.sum()).clamp(min=1))

    return {
        "mask_iou": float(mask_iou(out.warped_mask, tm).mean()),
        "identity_mask_iou": float(mask_iou(batch["garment_mask"], tm).mean()),
        "l1_inside": l1(out.warped_garment),
        "identity_l1_inside": l1(batch["garment"]),
    }


# ---------------------------------------------------------------------------------------------
# main
# ---------------------------------------------------------------------------------------------


def resolved_config(args, widths) -> Dict:
    cfg = {k: v for k, v in vars(args).items() if k not in ("hub_token",)}
    cfg["block_out_channels"] = widths
    cfg["command"] = " ".join(["accelerate launch train/flow.py", *sys.argv[1:]]) if sys.argv and sys.argv[0].endswith("flow.py") else None
    return cfg


def main(args: argparse.Namespace) -> Path:
    widths = check_args(args)
    config = resolved_config(args, widths)
    if args.dry_run:
        print(json.dumps(config, indent=2, sort_keys=True, default=str))
        return Path(args.output_dir)

    from accelerate import Accelerator
    from accelerate.utils import ProjectConfiguration, set_seed
    from tqdm.auto import tqdm

    from pgat.hub import write_model_index
    from pgat.losses import PerceptualLoss
    from pgat.models.flow import AppearanceFlowModel, default_canonical_pose
    from pgat.training_utils import StepBatchSampler, load_torch_state, resolve_checkpoint, set_rng_state, write_json
    from pgat.training_utils import rewind_jsonl, save_checkpoint

    out = Path(args.output_dir)
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
        if accelerator.log_with:
            accelerator.init_trackers("pgat-flow", config={k: v for k, v in config.items() if isinstance(v, (int, float, str, bool))})

    # 1. start fresh or from a checkpoint
    checkpoint = resolve_checkpoint(out, args.resume_from_checkpoint)
    if args.resume_from_checkpoint and checkpoint is None:
        logger.info("no checkpoint in %s: starting from scratch", out)
    global_step = 0
    set_seed(args.seed)
    if checkpoint is not None:
        global_step = int(json.loads((checkpoint / "trainer_state.json").read_text())["global_step"])
        model = AppearanceFlowModel.from_pretrained(checkpoint / "model")
        logger.info("resuming from %s at step %d", checkpoint, global_step)
        if accelerator.is_main_process:  # what a killed run logged after its last checkpoint is made again now
            for name in ("train_log.jsonl", "validation.jsonl"):
                rewind_jsonl(out / name, lambda r: r.get("step", 0) <= global_step)
    else:
        model = AppearanceFlowModel(block_out_channels=tuple(widths), sample_size=args.resolution, canonical_pose=default_canonical_pose())
    model.train()
    optimizer = torch.optim.Adam(
        model.parameters(), lr=args.learning_rate, betas=(args.adam_beta1, args.adam_beta2), weight_decay=args.adam_weight_decay
    )
    if checkpoint is not None:
        optimizer.load_state_dict(load_torch_state(checkpoint / "optimizer.pt"))
    perceptual = None
    if args.perceptual_weight:
        perceptual = PerceptualLoss(network=args.perceptual_network, weights_path=args.vgg_weights).to(accelerator.device)
        logger.info("perceptual network: %s", perceptual.network)
    model, optimizer = accelerator.prepare(model, optimizer)
    if checkpoint is not None:
        set_rng_state(load_torch_state(checkpoint / f"rng_state_{accelerator.process_index}.pt"))
        if accelerator.scaler is not None and (checkpoint / "scaler.pt").is_file():
            accelerator.scaler.load_state_dict(load_torch_state(checkpoint / "scaler.pt"))

    # 2. data: the batch of every step is fixed by (seed, step), so a resumed run replays it exactly
    train_set, val_set = make_datasets(args)
    sampler = StepBatchSampler(
        len(train_set), args.train_batch_size, args.seed, global_step, args.max_train_steps,
        accumulation=args.gradient_accumulation_steps, rank=accelerator.process_index, world_size=accelerator.num_processes,
    )
    loader = torch.utils.data.DataLoader(train_set, batch_sampler=sampler, collate_fn=_stack, generator=torch.Generator().manual_seed(args.seed))
    val_batch = {k: v.to(accelerator.device) for k, v in _stack([val_set[i] for i in range(len(val_set))]).items()}

    progress = tqdm(total=args.max_train_steps, initial=global_step, disable=not accelerator.is_local_main_process, desc="flow")
    state = {"global_step": global_step}
    start_step, t0 = global_step, time.perf_counter()
    for batch in loader:
        batch = {k: v.to(accelerator.device) for k, v in batch.items()}
        with accelerator.accumulate(model):
            # 3. warp the garment, compare with the target's garment
            pred = model(batch["garment"], batch["garment_mask"], batch["target_mask"])
            terms = flow_losses(args, pred, batch, perceptual)
            accelerator.backward(sum(terms.values()))
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        if not accelerator.sync_gradients:
            continue
        global_step += 1
        state = {"global_step": global_step}
        scalars = {k: float(v.detach()) for k, v in terms.items()}
        progress.update(1)
        progress.set_postfix({k: f"{v:.3g}" for k, v in scalars.items()}, refresh=False)
        accelerator.log(scalars, step=global_step)
        last = global_step == args.max_train_steps
        if accelerator.is_main_process:
            with open(out / "train_log.jsonl", "a") as f:
                f.write(json.dumps({"step": global_step, **scalars}) + "\n")
            if last or (args.validation_steps and global_step % args.validation_steps == 0):
                metrics = validate(accelerator.unwrap_model(model), val_batch)
                with open(out / "validation.jsonl", "a") as f:
                    f.write(json.dumps({"step": global_step, **metrics}) + "\n")
                accelerator.log({f"val/{k}": v for k, v in metrics.items()}, step=global_step)
        if args.checkpointing_steps and global_step % args.checkpointing_steps == 0 and not last:
            save_checkpoint(accelerator, args.output_dir, args.checkpoints_total_limit, state, model, optimizer)
    progress.close()

    # 4. the flow folder of the repository, listed in model_index.json
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        accelerator.unwrap_model(model).save_pretrained(out / "flow", safe_serialization=True)
        write_model_index(out, extra={"flow": ["pgat", "AppearanceFlowModel"]})
        with open(out / "timings.jsonl", "a") as f:
            f.write(json.dumps({"flow_steps": global_step - start_step, "seconds": time.perf_counter() - t0, "num_processes": accelerator.num_processes}) + "\n")
        if args.push_to_hub:
            from huggingface_hub import create_repo, upload_folder

            repo_id = create_repo(args.hub_model_id or out.name, exist_ok=True, token=args.hub_token).repo_id
            upload_folder(
                repo_id=repo_id, folder_path=str(out), token=args.hub_token, allow_patterns=["flow/*", "model_index.json"],
                commit_message="PGAT try-on flow network",
            )
    accelerator.end_training()
    return out


if __name__ == "__main__":
    main(parse_args())
