"""What the training scripts in ``train/`` share: presets, deterministic batches, crash-safe checkpoints.

Decisions, written down:

- **Batches are a function of the step.** The batch of optimizer step ``s`` (micro-batch ``m``, rank ``r``)
  is drawn with replacement from a generator seeded by ``(seed, s, m)``, and split across ranks. A run
  resumed at step ``s`` therefore sees exactly the batches an uninterrupted run would, without saving
  any sampler state, and changing the batch size between stages needs no bookkeeping.
- **Checkpoints are written whole or not at all.** A checkpoint is written into ``checkpoint-N.tmp``
  and renamed to ``checkpoint-N`` only when complete (a rename is atomic on one file system); older
  checkpoints are pruned only after that. A kill at any moment leaves the previous checkpoint intact.
- **No pickles.** Model weights are safetensors (``save_pretrained``); optimizer states and RNG states
  are plain tensors / numbers saved with ``torch.save`` and read back with ``weights_only=True``.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence, Union

import torch
import yaml

CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")


# ---------------------------------------------------------------------------------------------
# presets
# ---------------------------------------------------------------------------------------------


def load_preset(path: Union[str, os.PathLike], known: Sequence[str]) -> Dict[str, Any]:
    """Read a YAML preset of argument defaults; unknown keys are an error listing the known ones."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"`--config` file '{path}' does not exist")
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict):
        raise ValueError(f"`--config` file '{path}' must hold a mapping of argument names to values, got {type(data).__name__}")
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise ValueError(f"`--config` file '{path}' has unknown keys {unknown}; known: {sorted(known)}")
    return data


def parse_int_list(value: Union[str, int, Sequence[int]], name: str) -> List[int]:
    """``"64,128"`` / ``64`` / ``[64, 128]`` -> ``[64, 128]``."""
    if isinstance(value, int):
        return [value]
    if isinstance(value, str):
        parts = [p.strip() for p in value.split(",") if p.strip()]
    else:
        parts = list(value)
    try:
        out = [int(p) for p in parts]
    except (TypeError, ValueError):
        raise ValueError(f"`{name}` must be an integer or a comma-separated list of integers, got {value!r}") from None
    if not out or any(v <= 0 for v in out):
        raise ValueError(f"`{name}` must hold positive integers, got {value!r}")
    return out


def per_stage(values: List[int], n: int, name: str) -> List[int]:
    """One value for every stage, or one value per stage."""
    if len(values) == 1:
        return values * n
    if len(values) != n:
        raise ValueError(f"`{name}` must be one number or one per stage ({n}), got {len(values)}: {values}")
    return values


# ---------------------------------------------------------------------------------------------
# deterministic batches
# ---------------------------------------------------------------------------------------------


def batch_indices(seed: int, step: int, micro_step: int, dataset_len: int, batch_size: int, rank: int, world_size: int) -> List[int]:
    """Dataset indices of one rank's micro-batch of an optimizer step (sampling with replacement)."""
    g = torch.Generator().manual_seed((seed * 1_000_003 + step) * 64 + micro_step)
    idx = torch.randint(dataset_len, (batch_size * world_size,), generator=g)
    return idx[rank::world_size].tolist()


class StepBatchSampler(torch.utils.data.Sampler):
    """Yields the batches of optimizer steps ``start_step .. end_step - 1`` (each ``accumulation``
    micro-batches) for one rank: a ``batch_sampler`` for `torch.utils.data.DataLoader`."""

    def __init__(self, dataset_len, batch_size, seed, start_step, end_step, accumulation=1, rank=0, world_size=1):
        if dataset_len < 1:
            raise ValueError("the training dataset is empty")
        self.args = (seed, dataset_len, batch_size, rank, world_size)
        self.start_step, self.end_step, self.accumulation = start_step, end_step, accumulation

    def __len__(self) -> int:
        return max(0, self.end_step - self.start_step) * self.accumulation

    def __iter__(self) -> Iterator[List[int]]:
        seed, n, bs, rank, world = self.args
        for step in range(self.start_step, self.end_step):
            for micro in range(self.accumulation):
                yield batch_indices(seed, step, micro, n, bs, rank, world)


# ---------------------------------------------------------------------------------------------
# RNG state
# ---------------------------------------------------------------------------------------------


def rng_state() -> Dict[str, Any]:
    state = {"torch": torch.get_rng_state(), "python": list(_flatten_python_state(random.getstate()))}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(_unflatten_python_state(state["python"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _flatten_python_state(s):
    version, internal, gauss = s
    return [version, *internal, -1.0 if gauss is None else gauss]


def _unflatten_python_state(flat):
    gauss = flat[-1]
    return (int(flat[0]), tuple(int(v) for v in flat[1:-1]), None if gauss == -1.0 else gauss)


# ---------------------------------------------------------------------------------------------
# checkpoints
# ---------------------------------------------------------------------------------------------


def list_checkpoints(output_dir: Union[str, os.PathLike]) -> List[Path]:
    """Complete checkpoints in ``output_dir``, oldest first (unfinished ``.tmp`` folders are ignored)."""
    out = Path(output_dir)
    if not out.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in out.iterdir() if p.is_dir() and (m := CHECKPOINT_RE.match(p.name))]
    return [p for _, p in sorted(found)]


def resolve_checkpoint(output_dir: Union[str, os.PathLike], resume_from: Optional[str]) -> Optional[Path]:
    """``"latest"`` -> the newest complete checkpoint (None when there is none); a path -> that folder."""
    if not resume_from:
        return None
    if resume_from == "latest":
        found = list_checkpoints(output_dir)
        return found[-1] if found else None
    path = Path(resume_from)
    if not path.is_absolute() and not path.exists():
        path = Path(output_dir) / resume_from
    if not (path / "trainer_state.json").is_file():
        raise FileNotFoundError(f"`--resume_from_checkpoint` '{resume_from}' is not a complete checkpoint (no trainer_state.json in {path})")
    return path


def rewind_jsonl(path: Union[str, os.PathLike], keep) -> int:
    """Drop the records of a JSON-lines log that ``keep(record)`` rejects, and a line cut off by a kill; returns how
    many lines went.

    A run killed after its last checkpoint has logged steps that the resumed run makes again: resuming rewinds
    ``train_log.jsonl`` and ``validation.jsonl`` to the checkpoint's step, so each step is logged once, by the run
    whose weights carry on. The file is replaced in one move, so a kill during the rewind loses nothing.
    """
    path = Path(path)
    if not path.is_file():
        return 0
    kept, dropped = [], 0
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            dropped += 1
            continue
        if keep(record):
            kept.append(line)
        else:
            dropped += 1
    if dropped:
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text("".join(line + "\n" for line in kept))
        os.replace(tmp, path)
    return dropped


def begin_checkpoint(output_dir: Union[str, os.PathLike], step: int) -> Path:
    tmp = Path(output_dir) / f"checkpoint-{step}.tmp"
    if tmp.exists():
        shutil.rmtree(tmp)  # left by a run killed while writing: never a complete checkpoint
    tmp.mkdir(parents=True)
    return tmp


def commit_checkpoint(tmp: Path, total_limit: Optional[int]) -> Path:
    """Publish a fully written checkpoint, then prune the oldest beyond ``total_limit``."""
    final = tmp.with_name(tmp.name[: -len(".tmp")])
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    if total_limit is not None and total_limit > 0:
        found = list_checkpoints(final.parent)
        for old in found[: max(0, len(found) - total_limit)]:
            shutil.rmtree(old, ignore_errors=True)
    return final


def save_torch_state(obj: Any, path: Union[str, os.PathLike]) -> None:
    """Save tensors / numbers / lists / dicts only (what ``weights_only=True`` reads back)."""
    torch.save(obj, path)


def load_torch_state(path: Union[str, os.PathLike]) -> Any:
    return torch.load(path, map_location="cpu", weights_only=True)


def write_json(path: Union[str, os.PathLike], data: Dict[str, Any]) -> None:
    Path(path).write_text(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")


def carry_optimizer_state(old: torch.optim.Optimizer, old_names: List[str], new: torch.optim.Optimizer, new_names: List[str]) -> int:
    """Copy per-parameter optimizer state (Adam moments, step) from ``old`` to ``new`` for parameters
    with the same name and shape; new parameters start fresh (§3.1: the grown network keeps training
    the old layers). Returns the number of parameters carried."""
    old_params = [p for g in old.param_groups for p in g["params"]]
    new_params = [p for g in new.param_groups for p in g["params"]]
    by_name = dict(zip(old_names, old_params))
    carried = 0
    for name, p in zip(new_names, new_params):
        q = by_name.get(name)
        if q is not None and q in old.state and q.shape == p.shape:
            new.state[p] = {k: (v.clone() if torch.is_tensor(v) else v) for k, v in old.state[q].items()}
            carried += 1
    return carried


def check_mixed_precision(mixed_precision: str, device) -> None:
    """Refuse a ``--mixed_precision`` the device cannot run at speed, before any step is spent on it.

    bf16 on a CPU without native bf16 instructions (AVX-512 BF16 or AMX) is emulated by oneDNN, far slower than
    fp32, so it is an error there rather than a run that takes days; fp16 autocast is a GPU feature.
    """
    device = torch.device(device)
    if mixed_precision == "bf16" and device.type == "cpu" and not torch.ops.mkldnn._is_mkldnn_bf16_supported():
        raise ValueError(
            "`--mixed_precision bf16` needs a GPU or a CPU with native bf16 (AVX-512 BF16 or AMX); this CPU "
            f"({torch.backends.cpu.get_cpu_capability()}) would emulate it far slower than fp32: use `--mixed_precision no`"
        )
    if mixed_precision == "fp16" and device.type == "cpu":
        raise ValueError("`--mixed_precision fp16` is for GPUs; on a CPU use `bf16` (with native bf16) or `no`")


def parse_args_with_preset(parser, argv=None, config_dir: Optional[Union[str, os.PathLike]] = None):
    """Parse ``argv`` with ``parser``; a ``--config`` preset (a YAML path, or a name in ``config_dir``) sets the
    defaults, and flags given on the command line win over it."""
    args = parser.parse_args(argv)
    if getattr(args, "config", None):
        path = Path(args.config)
        if not path.exists() and config_dir is not None and (Path(config_dir) / f"{args.config}.yaml").exists():
            path = Path(config_dir) / f"{args.config}.yaml"
        known = [a.dest for a in parser._actions if a.dest not in ("help", "config")]
        parser.set_defaults(**load_preset(path, known))
        args = parser.parse_args(argv)
        args.config = str(path)
    return args


def reset_adam_moments(optimizer) -> int:
    """Restart Adam's moment estimates (and its bias-correction step count) for every parameter; returns how many.

    Why: §3 switches the perceptual criterion from L2 to L1 half way through a level. The gradient then shrinks by
    about twice the typical feature difference (measured ~1e3 with the caffe VGG-19: the L2 terms are ~1e6, the L1
    terms ~1e3), while Adam's second moment decays with beta2 = 0.999, so for ~ln(1e6)/1e-3 ≈ 14k steps every
    update is ~1e3 times smaller than the learning rate says. The paper's 700k steps per level hide that; a short
    schedule would spend its whole L1 half frozen. Restarting the moments makes the L1 half train at the set rate.
    """
    opt = unwrap_optimizer(optimizer)
    n = 0
    for state in opt.state.values():
        for key in ("exp_avg", "exp_avg_sq", "max_exp_avg_sq"):
            if key in state:
                state[key].zero_()
        if "step" in state:
            state["step"] = torch.zeros_like(state["step"]) if torch.is_tensor(state["step"]) else 0
        n += 1
    return n


def unwrap_optimizer(opt):
    """The torch optimizer inside an accelerate-prepared one."""
    return getattr(opt, "optimizer", opt)


def save_checkpoint(accelerator, output_dir, total_limit, state: Dict, model, optimizer, discriminator=None, d_optimizer=None) -> Optional[Path]:
    """Write ``checkpoint-<global_step>`` crash-safely (see the module docstring).

    Every rank saves its RNG state; the main process writes the model (``model/``, safetensors), the optimizer,
    the optional discriminator (``discriminator/``) and its optimizer, the loss scaler, then ``trainer_state.json``
    last, and publishes the folder. ``state`` holds ``global_step`` and whatever the script needs to resume.
    """
    out = Path(output_dir)
    tmp = out / f"checkpoint-{state['global_step']}.tmp"
    if accelerator.is_main_process:
        begin_checkpoint(out, state["global_step"])
    accelerator.wait_for_everyone()
    save_torch_state(rng_state(), tmp / f"rng_state_{accelerator.process_index}.pt")
    if accelerator.is_main_process:
        accelerator.unwrap_model(model).save_pretrained(tmp / "model")
        save_torch_state(unwrap_optimizer(optimizer).state_dict(), tmp / "optimizer.pt")
        if discriminator is not None:
            accelerator.unwrap_model(discriminator).save_pretrained(tmp / "discriminator")
            save_torch_state(unwrap_optimizer(d_optimizer).state_dict(), tmp / "discriminator_optimizer.pt")
        if accelerator.scaler is not None:
            save_torch_state(accelerator.scaler.state_dict(), tmp / "scaler.pt")
    accelerator.wait_for_everyone()
    final = None
    if accelerator.is_main_process:
        write_json(tmp / "trainer_state.json", {**state, "num_processes": accelerator.num_processes})  # last: marks it complete
        final = commit_checkpoint(tmp, total_limit)
    accelerator.wait_for_everyone()
    return final
