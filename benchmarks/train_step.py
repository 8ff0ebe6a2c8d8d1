"""Training steps: where their FLOPs and time go (``--accounting``), and what the real script runs at (``--runs``).

**Accounting** (``--accounting``, in this process): one training step of ``train/progressive.py``, taken apart.
For a preset (``embedded``: the widths, batches and losses of ``train/configs/pgat-synth-256.yaml``; ``paper``:
bottleneck 1024, batch 1, global + local perceptual loss, and at the last level the local discriminators in its
place) and a recipe (``RECIPES``: precision, channels-last, a downscaled global term, ...), each stage's step is
run part by part:

- ``data``: rendering the batch (SynthHumans through `PairDataset`, what the script's DataLoader does);
- ``generator forward`` and ``generator backward`` (the latter from the summed gradient at the output);
- ``global perceptual``, ``local perceptual``, ``pixel``, ``adversarial (G)``: each loss's forward and its
  backward down to the generator's output (the VGG's weights are frozen: input gradients only);
- ``discriminator``: the D phase (forward, backward, its Adam step);
- ``optimizer``: the generator's Adam step.

The sum of the parts is the step: the same work as the script's one ``backward`` (only the order differs).
FLOPs are counted with ``torch.utils.flop_counter.FlopCounterMode`` in a pass of their own (convolutions and
matmuls, forward and backward; a multiply-add is 2 FLOPs; elementwise work such as Adam is not counted). Times are
the median of ``--repeats`` steps after two warm-ups. MFU is the counted FLOPs per second against the best
conv/GEMM peak (`model_cost.measure_peak`, in the recipe's precision) measured in the same run before and after
the stage, the higher of the two.

**Script runs** (``--runs``): each stage alone in a fresh process through ``train/progressive.py`` itself (the
recipe's flags, ``--no_local_discriminator``), its own peak resident memory (``ru_maxrss``) and the median
``step_seconds`` of ``train_log.jsonl`` without the first step (warm-up) and the last (it also writes the stage's
sample and validation). This is what a user gets, DataLoader workers included.

    python benchmarks/train_step.py --accounting --presets embedded paper --recipes fp32 bf16 \\
        --out benchmarks/results/train-accounting-cpu.json
    python benchmarks/train_step.py --recipes fp32 fast --out benchmarks/results/train-step-cpu.json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Callable, Dict, List, Optional

import torch

REPO = Path(__file__).resolve().parents[1]
from model_cost import machine, measure_peak  # noqa: E402  (benchmarks/ is on sys.path when run as a script)

sys.path.insert(0, str(REPO / "train"))
import progressive  # noqa: E402  (train/progressive.py: the step taken apart here is its step)

# the step options of train/progressive.py, by name; each one alone, then combined
RECIPES: Dict[str, Dict] = {
    "fp32": {},  # main before this work: fp32, NCHW, every perceptual term at the level's resolution
    "bf16": {"mixed_precision": "bf16"},
    "channels_last": {"channels_last": True},
    "global@128": {"perceptual_resolution": 128},
    "workers": {"dataloader_num_workers": 1},
    "bf16+cl": {"mixed_precision": "bf16", "channels_last": True},
    # no worker: on 2 cores a rendering process takes a core from the step's two threads (the "workers" rows)
    "fast": {"mixed_precision": "bf16", "channels_last": True, "perceptual_resolution": 128},
    "fast+workers": {"mixed_precision": "bf16", "channels_last": True, "perceptual_resolution": 128, "dataloader_num_workers": 1},
}

# (resolution, batch) per stage; the losses of every level but the last of the schedule
PRESETS: Dict[str, Dict] = {
    "embedded": {"bottleneck_channels": 128, "stages": [(64, 8), (128, 4), (256, 2)], "pixel_weight": 50000.0, "discriminator_last": False},
    "paper": {"bottleneck_channels": 1024, "stages": [(64, 1), (128, 1), (256, 1), (512, 1), (1024, 1)], "pixel_weight": 0.0, "discriminator_last": True},
}
PARTS = ("data", "generator forward", "global perceptual", "local perceptual", "pixel", "adversarial (G)",
         "generator backward", "optimizer", "discriminator")


def recipe_flags(recipe: Dict) -> List[str]:
    flags = []
    for k, v in recipe.items():
        if v is True:
            flags.append(f"--{k}")
        elif v not in (False, None):
            flags += [f"--{k}", str(v)]
    return flags


# ---------------------------------------------------------------------------------------------
# accounting: one step, part by part
# ---------------------------------------------------------------------------------------------


class _Timer:
    def __init__(self, device: torch.device):
        self.seconds: Dict[str, float] = defaultdict(float)
        self.sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    @contextlib.contextmanager
    def __call__(self, name: str):
        self.sync()
        t0 = time.perf_counter()
        yield
        self.sync()
        self.seconds[name] += time.perf_counter() - t0


class _Counter:
    def __init__(self):
        self.flops: Dict[str, float] = defaultdict(float)

    @contextlib.contextmanager
    def __call__(self, name: str):
        from torch.utils.flop_counter import FlopCounterMode

        counter = FlopCounterMode(display=False)
        with counter:
            yield
        self.flops[name] += counter.get_total_flops()


class StageStep:
    """Everything one level's step needs, built once; `run(part)` does one step with each part inside ``part(name)``."""

    def __init__(self, preset: Dict, recipe: Dict, resolution: int, batch: int, last: bool, seed: int = 0, device: str = "cpu"):
        from pgat import PGATModel
        from pgat.data.pairs import PairDataset
        from pgat.data.synthetic import SynthHumans
        from pgat.losses import LocalAdversarialLoss, LocalPerceptualLoss, PerceptualLoss
        from pgat.models.discriminator import LocalDiscriminator

        torch.manual_seed(seed)
        self.device = torch.device(device)
        layout = torch.channels_last if recipe.get("channels_last") else torch.contiguous_format
        self.bf16 = recipe.get("mixed_precision") == "bf16"
        self.model = PGATModel(resolution=resolution, bottleneck_channels=preset["bottleneck_channels"]).to(self.device, memory_format=layout).train()
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=1e-4, weight_decay=5e-4)
        self.perceptual = PerceptualLoss(network="vgg19", criterion="l1", max_resolution=recipe.get("perceptual_resolution")).to(self.device, memory_format=layout)
        self.local = LocalPerceptualLoss(perceptual=self.perceptual)
        self.pixel_weight = preset["pixel_weight"]
        self.adversarial = self.d_optimizer = None
        if last and preset["discriminator_last"]:
            d = LocalDiscriminator(crop_size=resolution // 8).to(self.device, memory_format=layout).train()
            self.adversarial = LocalAdversarialLoss(d)
            self.d_optimizer = torch.optim.Adam(d.parameters(), lr=2e-4, betas=(0.5, 0.999))
        self.data = PairDataset(SynthHumans(resolution=resolution, split="train", seed=seed, length=10_000), resolution=resolution, flip_prob=0.5)
        self.batch, self.next_index = batch, 0

    def autocast(self):
        return torch.autocast(self.device.type, dtype=torch.bfloat16) if self.bf16 else contextlib.nullcontext()

    def run(self, part: Callable) -> None:
        with part("data"):
            items = [self.data[(self.next_index + i) % len(self.data)] for i in range(self.batch)]
            self.next_index += self.batch
            b = {k: v.to(self.device) for k, v in progressive._stack(items).items()}  # the script's own collate
        with part("generator forward"), self.autocast():
            pred = self.model(b["reference"], b["target_keypoints"], b["reference_keypoints"]).image
        out = pred.detach().requires_grad_()  # each loss's backward stops here; the generator's is timed on its own

        def loss_part(name: str, fn: Callable) -> None:
            with part(name):
                with self.autocast():
                    value = fn()
                value.float().backward()

        loss_part("global perceptual", lambda: self.perceptual(out, b["target"], criterion="l1"))
        if self.adversarial is None:
            loss_part("local perceptual", lambda: self.local(out, b["target"], b["target_keypoints"], criterion="l1"))
        else:
            loss_part("adversarial (G)", lambda: self.adversarial.generator_loss(b["reference"], out, b["reference_keypoints"], b["target_keypoints"])["loss"])
        if self.pixel_weight:
            loss_part("pixel", lambda: self.pixel_weight * (out.float() - b["target"]).abs().mean())
        with part("generator backward"):
            pred.backward(out.grad)
        with part("optimizer"):
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
        if self.adversarial is not None:
            with part("discriminator"):
                with self.autocast():
                    d = self.adversarial.discriminator_loss(b["reference"], b["target"], pred.detach(), b["reference_keypoints"], b["target_keypoints"])
                d["loss"].float().backward()
                self.d_optimizer.step()
                self.d_optimizer.zero_grad(set_to_none=True)


def account_stage(preset_name: str, recipe_name: str, resolution: int, batch: int, last: bool, repeats: int, device: str = "cpu") -> Dict:
    preset, recipe = PRESETS[preset_name], RECIPES[recipe_name]
    dtype = torch.bfloat16 if recipe.get("mixed_precision") == "bf16" else torch.float32
    peak_before = measure_peak(device, dtype)["gflops_per_second"]
    step = StageStep(preset, recipe, resolution, batch, last, device=device)
    counter = _Counter()
    step.run(counter)  # FLOPs (also the first warm-up)
    step.run(lambda name: contextlib.nullcontext())
    runs = []
    for _ in range(repeats):
        timer = _Timer(step.device)
        step.run(timer)
        runs.append(dict(timer.seconds))
    peak_after = measure_peak(device, dtype)["gflops_per_second"]
    peak = max(peak_before, peak_after)
    med = lambda xs: sorted(xs)[len(xs) // 2]  # noqa: E731
    parts = {}
    for name in PARTS:
        if name not in runs[0]:
            continue
        sec = med([r[name] for r in runs])
        gflop = counter.flops.get(name, 0.0) / 1e9
        parts[name] = {"gflop": gflop, "seconds": sec, "mfu": gflop / sec / peak if gflop else None}
    total_s = med([sum(r.values()) for r in runs])
    total_gflop = sum(p["gflop"] for p in parts.values())
    compute_s = total_s - parts["data"]["seconds"]
    return {
        "preset": preset_name, "recipe": recipe_name, "resolution": resolution, "batch_size": batch,
        "bottleneck_channels": preset["bottleneck_channels"], "discriminator": step.adversarial is not None,
        "parts": parts, "step_gflop": total_gflop, "step_seconds": total_s, "images_per_second": batch / total_s,
        "images_per_second_without_data": batch / compute_s, "peak_gflops_per_second": peak, "peaks": [peak_before, peak_after],
        "mfu": total_gflop / compute_s / peak, "load_average": os.getloadavg(),
    }


# ---------------------------------------------------------------------------------------------
# script runs: the real train/progressive.py
# ---------------------------------------------------------------------------------------------


def run_stage(resolution: int, batch: int, bottleneck: int, steps: int, recipe_name: str = "fp32") -> dict:
    recipe = RECIPES[recipe_name]
    with tempfile.TemporaryDirectory() as tmp:
        # the child reports its own peak resident memory (ru_maxrss of RUSAGE_SELF) when it ends
        wrapper = (
            "import resource, runpy, sys\n"
            "script = sys.argv[1]; sys.argv = sys.argv[1:]\n"
            "try:\n    runpy.run_path(script, run_name='__main__')\n"
            "finally:\n    print('MAXRSS_KIB', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)\n"
        )
        cmd = [
            sys.executable, "-c", wrapper, str(REPO / "train" / "progressive.py"), "--stages", str(resolution), "--steps_per_stage", str(steps),
            "--train_batch_size", str(batch), "--bottleneck_channels", str(bottleneck), "--no_local_discriminator",
            "--checkpointing_steps", "0", "--sample_steps", "0", "--num_validation_pairs", "1", "--synth_pairs", "64",
            "--perceptual_network", "vgg19", "--output_dir", tmp, *recipe_flags(recipe),
        ]
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
        wall = time.perf_counter() - t0
        if proc.returncode != 0:
            raise RuntimeError(proc.stderr[-3000:])
        peak_kib = int(proc.stderr.rsplit("MAXRSS_KIB", 1)[1].split()[0])
        log = [json.loads(line) for line in (Path(tmp) / "train_log.jsonl").read_text().splitlines()]
    # the first step builds everything (oneDNN primitives, allocations) and the last one also writes the
    # end-of-stage sample and validation: neither is a training step's cost
    times = sorted(r["step_seconds"] for r in log[1:-1])
    per_step = times[len(times) // 2]
    return {
        "recipe": recipe_name, "flags": recipe_flags(recipe), "resolution": resolution, "batch_size": batch, "bottleneck_channels": bottleneck, "steps": steps,
        "seconds_per_step": per_step, "steps_per_second": 1 / per_step, "images_per_second": batch / per_step,
        "peak_rss_gib": peak_kib / 2**20, "process_wall_seconds": wall,
    }


def _merge(path: Optional[str], results: List[Dict], key: Callable) -> List[Dict]:
    """The new results, plus those of an earlier call in ``path`` that this call did not redo."""
    if not path or not Path(path).exists():
        return results
    new = {key(r) for r in results}
    return [r for r in json.loads(Path(path).read_text()).get("results", []) if key(r) not in new] + results


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--accounting", action="store_true", help="take one step apart, in this process (see above)")
    p.add_argument("--presets", nargs="+", default=["embedded"], choices=sorted(PRESETS), help="--accounting: the presets")
    p.add_argument("--resolutions", nargs="+", type=int, default=None, help="--accounting: only these stages of each preset")
    p.add_argument("--repeats", type=int, default=3, help="--accounting: timed steps per stage, after two warm-ups")
    p.add_argument("--device", default="cpu", help="--accounting: 'cpu' or 'cuda' (the script runs are CPU runs)")
    p.add_argument("--recipes", nargs="+", default=["fp32"], choices=list(RECIPES), help="the step options (RECIPES)")
    # the embedded model's width and batch sizes (train/configs/pgat-synth-256.yaml), then the paper-size model
    p.add_argument("--runs", default="64:8:128,128:4:128,256:2:128,64:1:1024,128:1:1024,256:1:1024,512:1:1024:6,1024:1:1024:5",
                   help="script runs: resolution:batch:bottleneck_channels[:steps], comma-separated")
    p.add_argument("--steps", type=int, default=12, help="script runs: steps per run unless the run names its own (at least 3)")
    p.add_argument("--rounds", type=int, default=1, help="script runs: run every recipe this many times, interleaved; the fastest counts")
    p.add_argument("--out", default=None)
    args = p.parse_args()
    cpu = torch.device(args.device).type == "cpu"
    if cpu and any(r.get("mixed_precision") == "bf16" for r in map(RECIPES.get, args.recipes)) and not torch.ops.mkldnn._is_mkldnn_bf16_supported():
        raise SystemExit("--recipes: a bf16 recipe needs a CPU with native bf16 (AVX-512 BF16 / AMX); this one would emulate it")
    results = []
    if args.accounting:
        for preset_name in args.presets:
            stages = PRESETS[preset_name]["stages"]
            for i, (r, b) in enumerate(stages):
                if args.resolutions and r not in args.resolutions:
                    continue
                for recipe in args.recipes:
                    res = account_stage(preset_name, recipe, r, b, last=i == len(stages) - 1, repeats=args.repeats, device=args.device)
                    results.append(res)
                    share = {k: v["seconds"] / res["step_seconds"] for k, v in res["parts"].items()}
                    print(f"{preset_name:>8} {r:>5}² b{b} {recipe:>12}: {res['step_seconds']:.3f} s/step, {res['images_per_second']:.2f} img/s, "
                          f"{res['step_gflop']:.0f} GFLOP, MFU {res['mfu']:.2f}  |  " + ", ".join(f"{k} {v:.0%}" for k, v in share.items()), flush=True)
        key = lambda r: (r["preset"], r["recipe"], r["resolution"], r["batch_size"])  # noqa: E731
    else:
        for spec in args.runs.split(","):
            fields = [int(v) for v in spec.split(":")]
            if len(fields) not in (3, 4):
                raise SystemExit(f"--runs: expected resolution:batch:bottleneck_channels[:steps], got {spec!r}")
            r, b, c = fields[:3]
            steps = fields[3] if len(fields) == 4 else args.steps
            if steps < 3:  # the first step (warm-up) and the last (sample, validation) are not counted
                raise SystemExit(f"--runs / --steps: a run needs at least 3 steps, got {steps} for {spec!r}")
            # rounds interleave the recipes (fp32, fast, fp32, fast, ...) so that a change of load hits all of them
            runs = {recipe: [] for recipe in args.recipes}
            for _ in range(args.rounds):
                for recipe in args.recipes:
                    runs[recipe].append(run_stage(r, b, c, steps, recipe))
            for recipe in args.recipes:
                best = min(runs[recipe], key=lambda x: x["seconds_per_step"])
                res = {**best, "rounds": args.rounds, "seconds_per_step_all": [x["seconds_per_step"] for x in runs[recipe]]}
                results.append(res)
                print(f"{r:>5}² batch {b} width {c:>4} {recipe:>12}: {res['seconds_per_step']:.3f} s/step, peak RSS {res['peak_rss_gib']:.2f} GiB", flush=True)
        key = lambda r: (r.get("recipe", "fp32"), r["resolution"], r["batch_size"], r["bottleneck_channels"])  # noqa: E731
    out = {"machine": {**machine(args.device if args.accounting else "cpu"), "load_average": os.getloadavg()}, "results": _merge(args.out, results, key)}
    if args.out:
        Path(args.out).write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
