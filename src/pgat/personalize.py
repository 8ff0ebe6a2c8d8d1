"""``pgat personalize VIDEO --out DIR``: one person's video in, a PGAT model of that person out (the paper's §4.3).

The paper trains on the frames of one person's videos, background removed, sampled at 3 fps, and transfers that
person to new poses. This command is that recipe as one step, a thin front over two parts that exist on their own:

1. **frames** — `pgat.video_dataset.prepare_video` (``pgat prepare-video``) samples the video (3 fps; a video too
   short for ``--min-frames`` at that rate is sampled evenly at ``min_frames / duration``, at most every frame; a long
   one at most ``--max-frames``), poses every frame with BlazePose and blanks all but the person to white with its
   person mask (``--keep-background`` keeps the background);
2. **split** — the last ``--holdout`` of the video's *time* is held out and never trained on; every frame is cut to
   one fixed square around the person (the union of the training frames' keypoint boxes, with a margin: the person
   fills the square instead of a letterboxed strip of it, and keeps the place it moves through); the training frames
   are paired with each other (``data/train``); each held-out frame is paired with one training frame as its
   reference, the references picked evenly over the training part (``data/heldout``);
3. **train** — ``train/progressive.py`` of this checkout, in process, with a preset of ``train/configs/``
   (``personalize-256``: the embedded model's network) fine-tuning every level from the embedded model's stage of
   the same size (``--init_model``; ``--from-scratch`` grows a fresh one), each level bounded by its share of the
   time budget (``--stage_minutes``);
4. **evaluate** — `pgat.evaluation.evaluate_model` on the held-out pairs at the top stage: SSIM, MS-SSIM,
   local-SSIM and PCKh beside the copy-reference and part-warp baselines and the model it started from, written as
   ``evaluation.json`` / ``.md``, a strip (``heldout-strip.png``: reference | target pose | output | real frame) and
   the model card.

The output folder is a model repository in the Hub layout (``stage-XXXX/``, ``model_index.json``, ``README.md``),
loaded by ``PGATPipeline.from_pretrained(DIR)``, ``pgat transfer/video --model DIR`` and the Space
(``PGAT_MODEL=DIR``). The starting model's ``flow/`` (the try-on garment warper, which knows nothing of the person)
is copied in, so that the Space's try-on tab works too.

Decisions, written down:

- **Where the code lives.** Here, in the package, beside ``prepare-video`` and ``evaluate`` whose parts it joins, so
  that ``pgat personalize`` is a command like the others and ``accelerate launch -m pgat.personalize`` runs it on
  several processes (frames, split and evaluation on the main process; every process trains). Training stays in
  ``train/progressive.py``, the one training loop, which this module loads from the source checkout (as the
  embedded model is found there); an installed package without the checkout says so.
- **Resumable.** Each step writes its result and a record of the settings that made it under ``DIR/data/``; run
  the same command again and finished steps are skipped, training continues from its latest checkpoint
  (``checkpoint-N``, every ``checkpointing_steps`` of the preset) with the time plan of the first run
  (``data/plan.json``), and the evaluation is redone. Other settings for the same ``DIR`` are refused, not mixed.
- **The budget.** ``--minutes`` (default 30) bounds the whole command's wall time: what the frames and split took is
  subtracted, `EVALUATION_RESERVE_MINUTES` is kept for the evaluation, and the rest is shared among the levels in
  proportion to their planned cost (steps × measured seconds per step, `STEP_SECONDS`). A level ends at its steps
  or its share, whichever comes first, so a loaded machine trains fewer steps rather than running late. The
  preset's steps fill the budget on an idle 2-core CPU.
- **Why fine-tune every level from the same-size stage** rather than grow the fine-tuned smaller level: a grown
  block starts untrained, while every layer of the embedded stage was trained at that size; with minutes instead
  of hours, starting each level trained matters more than carrying the smaller level's adaptation up.
- **No flips.** SynthHumans training mirrors pairs; one person's left and right are part of who they are (a glove,
  a bag, a parting), so the preset trains on the frames as filmed.
- **Validation** during training uses the held-out pairs: it is logged (``validation.jsonl``, ``samples/``), never
  trained on and never used to pick a checkpoint.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import math
import re
import shutil
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

DEFAULT_PRESET = "personalize-256"
DEFAULT_MINUTES = 30.0
EVALUATION_RESERVE_MINUTES = 2.0
# seconds per training step of the embedded model's network on an idle 2-core CPU (bf16, channels-last; batch
# 8 / 4 / 2 at 64² / 128² / 256², weights/pgat-synth-256/timings.jsonl), per pair of the batch: the plan's weights
STEP_SECONDS = {64: 0.76 / 8, 128: 1.10 / 4, 256: 1.12 / 2, 512: 4.5 / 1, 1024: 18.0 / 1}
MIN_TRAIN_FRAMES = 8
MIN_HELDOUT_FRAMES = 2
CROP_MARGIN = 0.15  # of the person's box side, on every side: the keypoints stop at the ankles, eyes and wrists
DATA_DIR = "data"
STRIP_FILE = "heldout-strip.png"
ROW_INIT = "init_model"
VIDEO = "video"  # the argument bad videos are refused by (the CLI's VIDEO)


# ---------------------------------------------------------------------------------------------
# 1. frames
# ---------------------------------------------------------------------------------------------


def sampling_rate(duration: float, source_fps: float, fps: float = 3.0, min_frames: int = 100, max_frames: int = 600) -> float:
    """Frames per second to sample: ``fps``, raised so that a short video still gives ``min_frames`` (evenly over
    its length), lowered so that a long one gives at most ``max_frames``, and never above the video's own rate."""
    rate = float(fps)
    if duration > 0:
        if duration * rate < min_frames:
            rate = min_frames / duration
        if duration * rate > max_frames:
            rate = max_frames / duration
    if source_fps > 0:
        rate = min(rate, source_fps)
    return rate


def _file_fingerprint(path: Path) -> str:
    """sha256 of the file's first and last MiB and its size: enough to tell two videos apart, fast on big files."""
    h = hashlib.sha256()
    size = path.stat().st_size
    with open(path, "rb") as f:
        h.update(f.read(1 << 20))
        if size > 2 << 20:
            f.seek(-(1 << 20), 2)
            h.update(f.read())
    h.update(str(size).encode())
    return h.hexdigest()[:16]


def _record(folder: Path, name: str, settings: Dict, what: str) -> Optional[Dict]:
    """The record of a finished step with these ``settings``, ``None`` when the step is still to do; a step
    finished with other settings is an error (one folder holds one recipe)."""
    path = folder / name
    if not path.is_file():
        return None
    record = json.loads(path.read_text())
    differ = {k: (record["settings"].get(k), v) for k, v in settings.items() if record["settings"].get(k) != v}
    if differ:
        listed = "; ".join(f"{k}: {old!r} there, {new!r} now" for k, (old, new) in sorted(differ.items()))
        raise ValueError(
            f"`--out` '{folder.parent}' holds the {what} of another run ({listed}); run the same command to resume it, "
            "or give another --out"
        )
    return record


def _write_record(folder: Path, name: str, settings: Dict, **values) -> Dict:
    record = {"settings": settings, **values}
    tmp = folder / f"{name}.tmp"
    tmp.write_text(json.dumps(record, indent=2, default=str) + "\n")
    tmp.replace(folder / name)
    return record


def extract_frames(video: Path, work: Path, args, progress: bool = True) -> Dict:
    """Step 1: `prepare_video` into ``work/frames`` at the sampling rate; refuses a video without enough people."""
    from .inputs import InputError, MissingInputError
    from .video_dataset import NoPairError, prepare_video, video_info

    if not video.is_file():
        raise MissingInputError(VIDEO, f"'{video}', which does not exist", "a video file of one person (mp4, avi, mov, ...)")
    try:
        info = video_info(video)
    except ValueError as e:
        raise InputError(VIDEO, f"'{video}', which is not a readable video ({str(e).split(': ', 1)[-1]})", "a video file ffmpeg can decode") from None
    rate = sampling_rate(info["duration"], info["fps"], args.fps, args.min_frames, args.max_frames)
    settings = {
        "video": str(video.resolve()), "fingerprint": _file_fingerprint(video), "rate": round(rate, 6),
        "remove_background": not args.keep_background, "min_keypoints": args.min_keypoints,
    }
    done = _record(work, "frames.json", settings, "frames")
    if done is not None:
        return done
    frames = work / "frames"
    t0 = time.perf_counter()
    try:
        out = prepare_video(
            video, frames, fps=rate, backend="blazepose", remove_background=not args.keep_background,
            min_keypoints=args.min_keypoints, pairs_per_frame=1, max_size=1024, image_format="jpg", overwrite=True,
            progress=progress,
        )
        sampled, kept, skipped = out.sampled, out.kept, dict(out.skipped)
    except NoPairError as e:  # fewer than two usable frames: said below with the counts
        sampled, kept, skipped = e.output.sampled, e.output.kept, dict(e.output.skipped)
    if sampled == 0:
        raise InputError(VIDEO, f"'{video}', from which no frame could be decoded", "a video file with at least one frame")
    if kept == 0:
        raise InputError(
            VIDEO, f"'{video}', in which none of the {sampled} sampled frames shows a person ({_counts(skipped)})",
            "a video of one person, most of the body in view",
        )
    need = MIN_TRAIN_FRAMES + MIN_HELDOUT_FRAMES
    if kept < need:
        raise InputError(
            VIDEO, f"'{video}', in which only {kept} of the {sampled} sampled frames show a confident person ({_counts(skipped)})",
            f"at least {need} usable frames ({MIN_TRAIN_FRAMES} to train on, {MIN_HELDOUT_FRAMES} held out)",
            hint="Sample more of them (--min-frames, --fps) or use a longer video with the person in view.",
        )
    return _write_record(work, "frames.json", settings, info={**info, "size": list(info["size"])}, sampled=sampled, kept=kept,
                         skipped=skipped, seconds=time.perf_counter() - t0)


def _counts(skipped: Dict[str, int]) -> str:
    return ", ".join(f"{n} {reason}" for reason, n in sorted(skipped.items())) or "none skipped"


# ---------------------------------------------------------------------------------------------
# 2. split and crop
# ---------------------------------------------------------------------------------------------


def crop_box(keypoints: Sequence[np.ndarray], width: int, height: int, margin: float = CROP_MARGIN) -> Tuple[int, int, int]:
    """``(left, top, side)`` of the square around every visible keypoint of ``keypoints`` (a list of ``(18, 2)``),
    grown by ``margin`` of its side on each side, moved inside the frame where it fits (else centred on it)."""
    pts = np.concatenate([k[(k[:, 0] >= 0) & (k[:, 1] >= 0)] for k in keypoints])
    x0, y0 = pts.min(0)
    x1, y1 = pts.max(0)
    side = max(x1 - x0, y1 - y0) * (1 + 2 * margin)
    side = int(math.ceil(max(side, 16)))
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2

    def place(centre: float, extent: int) -> int:
        if side >= extent:
            return int(round((extent - side) / 2))
        return int(round(min(max(centre - side / 2, 0), extent - side)))

    return place(cx, width), place(cy, height), side


def _crop(image, keypoints: np.ndarray, box: Tuple[int, int, int], size: int):
    """The square ``box`` of ``image`` (white beyond the frame) at ``size``², and the keypoints in it (-1 outside)."""
    from PIL import Image

    left, top, side = box
    canvas = Image.new("RGB", (side, side), (255, 255, 255))
    canvas.paste(image.crop((max(left, 0), max(top, 0), min(left + side, image.width), min(top + side, image.height))),
                 (max(-left, 0), max(-top, 0)))
    out = canvas.resize((size, size), Image.BICUBIC)
    s = size / side
    kps = np.full_like(keypoints, -1.0)
    ok = (keypoints[:, 0] >= 0) & (keypoints[:, 1] >= 0)
    # pixel centres at whole numbers: x' = (x - left + 0.5) * s - 0.5
    x = (keypoints[:, 0] - left + 0.5) * s - 0.5
    y = (keypoints[:, 1] - top + 0.5) * s - 0.5
    inside = ok & (x >= -0.5) & (y >= -0.5) & (x <= size - 0.5) & (y <= size - 0.5)
    kps[inside, 0] = np.clip(x[inside], 0, size - 1)
    kps[inside, 1] = np.clip(y[inside], 0, size - 1)
    return out, kps


def heldout_references(num_train: int, num_heldout: int) -> List[int]:
    """The training frame each held-out frame is generated from: spread evenly over the training part, so the
    references sample the person's training poses rather than the frames nearest the held-out ones."""
    if num_heldout == 1:
        return [num_train // 2]
    return [int(round(j * (num_train - 1) / (num_heldout - 1))) for j in range(num_heldout)]


def split_frames(work: Path, frames: Dict, args) -> Dict:
    """Step 2: ``work/train`` (pairs among the training frames) and ``work/heldout`` (each held-out frame with
    one training reference), cropped around the person and resized to the top stage's side."""
    from PIL import Image

    from .data.pairs import PairWriter, read_pair_folder
    from .inputs import InputError
    from .video_dataset import _pair_targets

    size = max(args.stage_list)
    settings = {"frames": frames["settings"], "holdout": args.holdout, "crop": not args.no_crop, "size": size,
                "pairs_per_frame": args.pairs_per_frame}
    done = _record(work, "split.json", settings, "train/held-out split")
    if done is not None:
        return done
    t0 = time.perf_counter()
    source = read_pair_folder(work / "frames")
    rate = frames["settings"]["rate"]
    records = []
    for rec in source.images:
        m = re.search(r"_(\d{5})\.[a-z]+$", rec.name)
        records.append((int(m.group(1)) / rate, rec))
    records.sort(key=lambda r: r[0])
    duration = frames["info"]["duration"] or (records[-1][0] + 1 / rate)
    cut = duration * (1 - args.holdout)
    train = [r for t, r in records if t < cut]
    heldout = [r for t, r in records if t >= cut]
    if len(train) < MIN_TRAIN_FRAMES or len(heldout) < MIN_HELDOUT_FRAMES:
        raise InputError(
            VIDEO, f"'{frames['settings']['video']}', whose {len(records)} usable frames split at {cut:.2f} s into "
            f"{len(train)} to train on and {len(heldout)} held out (the last {args.holdout:.0%} of the video)",
            f"at least {MIN_TRAIN_FRAMES} usable frames before the cut and {MIN_HELDOUT_FRAMES} after it",
            hint="Sample more frames (--min-frames) or hold out another share (--holdout).",
        )
    first = Image.open(train[0].path)
    width, height = first.size
    box = crop_box([r.keypoints for r in train], width, height) if not args.no_crop else None

    def load(rec):
        from .pose import letterbox

        image = Image.open(rec.path).convert("RGB")
        if box is None:
            square, kps, _ = letterbox(image, rec.keypoints, size)
            return square, np.asarray(kps, dtype=np.float64)
        return _crop(image, rec.keypoints, box, size)

    names: Dict[str, str] = {}
    for part, recs in (("train", train), ("heldout", heldout)):
        shutil.rmtree(work / part, ignore_errors=True)
    with PairWriter(work / "train", overwrite=True) as tw, PairWriter(work / "heldout", overwrite=True) as hw:
        for writer, recs in ((tw, train), (hw, heldout)):
            for rec in recs:
                image, kps = load(rec)
                stem = Path(rec.name).stem
                names[(id(writer), rec.name)] = writer.add_image(stem, image, kps)
        for i in range(len(train)):
            for j in _pair_targets(i, len(train), args.pairs_per_frame):
                tw.add_pair(names[(id(tw), train[i].name)], names[(id(tw), train[j].name)])
        refs = heldout_references(len(train), len(heldout))
        for j, i in enumerate(refs):  # the reference image is written into the held-out folder too
            ref_name = f"ref_{Path(train[i].name).stem}"
            if (id(hw), ref_name) not in names:
                image, kps = load(train[i])
                names[(id(hw), ref_name)] = hw.add_image(ref_name, image, kps)
            hw.add_pair(names[(id(hw), ref_name)], names[(id(hw), heldout[j].name)])
    times = [t for t, _ in records]
    return _write_record(
        work, "split.json", settings, cut_seconds=cut, train_frames=len(train), heldout_frames=len(heldout),
        train_pairs=tw.num_pairs, heldout_pairs=hw.num_pairs, crop_box=list(box) if box else None,
        frame_size=[width, height], train_seconds=[times[0], max(t for t in times if t < cut)],
        heldout_seconds=[min(t for t in times if t >= cut), times[-1]], seconds=time.perf_counter() - t0,
    )


# ---------------------------------------------------------------------------------------------
# 3. train
# ---------------------------------------------------------------------------------------------


def progressive_script() -> Path:
    """``train/progressive.py`` of the source checkout this package runs from."""
    path = Path(__file__).resolve().parents[2] / "train" / "progressive.py"
    if not path.is_file():
        raise FileNotFoundError(
            f"`pgat personalize` trains with train/progressive.py of a PGAT source checkout, not found at '{path}'; "
            "run it from a checkout (pip install -e .)"
        )
    return path


def _load_progressive():
    spec = importlib.util.spec_from_file_location("pgat_train_progressive", progressive_script())
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def plan_minutes(stages: Sequence[int], steps: Sequence[int], batches: Sequence[int], minutes: float) -> List[float]:
    """The training budget ``minutes`` shared among the levels in proportion to their planned cost
    (steps × batch × `STEP_SECONDS`)."""
    cost = [s * b * STEP_SECONDS[r] for r, s, b in zip(stages, steps, batches)]
    total = sum(cost)
    return [max(0.05, minutes * c / total) for c in cost]


def training_argv(args, out: Path, work: Path, stage_minutes: Optional[List[float]]) -> List[str]:
    """The ``train/progressive.py`` command line of this run: the preset, the data, the output, and the overrides."""
    argv = [
        "--config", args.preset, "--output_dir", str(out), "--train_data_dir", str(work / "train"),
        "--validation_data_dir", str(work / "heldout"), "--resume_from_checkpoint", "latest", "--seed", str(args.seed),
        "--stages", ",".join(str(r) for r in args.stage_list),
    ]
    if args.steps is not None:
        argv += ["--steps_per_stage", args.steps]
    if not args.from_scratch:
        argv += ["--init_model", str(args.init_model_path)]
    if stage_minutes:
        argv += ["--stage_minutes", ",".join(f"{m:.3f}" for m in stage_minutes)]
    if args.mixed_precision:
        argv += ["--mixed_precision", args.mixed_precision]
    if args.checkpoint_every is not None:
        argv += ["--checkpointing_steps", str(args.checkpoint_every)]
    return argv


def _trim_schedule(prog, argv: List[str], stage_list: List[int]):
    """The resolved ``progressive.py`` arguments; a preset's per-stage lists are cut to the stages asked for."""
    args = prog.parse_args(argv)
    preset_stages = [int(v) for v in str(prog.parse_args(["--config", argv[1]]).stages).split(",")]
    for name in ("steps_per_stage", "train_batch_size"):
        values = [v.strip() for v in str(getattr(args, name)).split(",")]
        if len(values) == len(preset_stages) and len(values) != len(stage_list) and "--" + name not in argv:
            setattr(args, name, ",".join(values[preset_stages.index(r)] for r in stage_list if r in preset_stages))
    return args


# ---------------------------------------------------------------------------------------------
# 4. evaluate, strip, card
# ---------------------------------------------------------------------------------------------


def heldout_strip(model, dataset, rows: int = 4):
    """reference | target pose | output | real frame, for ``rows`` held-out pairs spread over the held-out part."""
    import torch
    from PIL import Image

    from .pose import draw_skeleton

    n = len(dataset)
    picks = sorted(set(np.linspace(0, n - 1, min(rows, n)).round().astype(int).tolist()))
    lines = []
    for i in picks:
        item = dataset[i]
        with torch.no_grad():
            pred = model(item["reference"][None], item["target_keypoints"][None], reference_keypoints=item["reference_keypoints"][None]).image[0]
        r = pred.shape[-1]

        def u8(x):
            return ((x.float().clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).numpy()

        skeleton = np.asarray(draw_skeleton((r, r), item["target_keypoints"].numpy()))
        lines.append(np.concatenate([u8(item["reference"]), skeleton, u8(pred), u8(item["target"])], axis=1))
    return Image.fromarray(np.concatenate(lines, axis=0))


def evaluate_heldout(out: Path, work: Path, args, progress: bool = True) -> Dict:
    """Step 4: the top stage on the held-out pairs, beside the baselines and the starting model."""
    from .data.pairs import PairDataset
    from .evaluation import evaluate_model, load_stage_model, markdown_table
    from .hub import list_stages
    from .stages import stage_folder

    resolution = max(list_stages(out))
    model = load_stage_model(str(out), resolution)
    dataset = PairDataset(str(work / "heldout"), resolution=resolution, flip_prob=0.0)
    t0 = time.perf_counter()
    results = evaluate_model(model, dataset, batch_size=4, progress=progress)
    if not args.from_scratch and resolution in list_stages(args.init_model_path):
        before = evaluate_model(load_stage_model(str(args.init_model_path), resolution), dataset, batch_size=4, baseline=False, progress=progress)
        # the starting model's row right under the model's, before the baselines
        results = {"model": results["model"], ROW_INIT: before["model"], **{k: v for k, v in results.items() if k != "model"}}
    record = {
        "model": str(out), "stage": stage_folder(resolution), "resolution": resolution, "dataset": "held-out frames",
        "video": args.video_name, "seconds": time.perf_counter() - t0, **results,
    }
    title = f"held-out frames of {args.video_name} (the last {args.holdout:.0%} of the video) · {stage_folder(resolution)}"
    table = markdown_table(results, title).replace(f"| {ROW_INIT} |", f"| {Path(str(args.init_model_path)).name} before fine-tuning |")
    (out / "evaluation.json").write_text(json.dumps(record, indent=2) + "\n")
    with open(out / "evaluation.jsonl", "a") as f:
        f.write(json.dumps(record) + "\n")
    (out / "evaluation.md").write_text(table)
    heldout_strip(model, dataset).save(out / STRIP_FILE, optimize=True)
    return {"record": record, "table": table}


def gap_closed(results: Dict, metric: str, baseline: str = "copy_reference") -> float:
    """``(model - baseline) / (1 - baseline)``: the share of the gap to a perfect score the model closes."""
    b, v = results[baseline][metric], results["model"][metric]
    return float("nan") if b >= 1 else (v - b) / (1 - b)


def step_seconds(out: Path, frames: Dict, split: Dict, evaluate: float) -> Dict[str, float]:
    """Wall seconds of each step when it ran, whichever invocation ran it: frames and split from their records,
    training from ``timings.jsonl`` (each level's time, a killed run's lost steps not counted twice)."""
    levels = []
    if (out / "timings.jsonl").is_file():
        levels = [json.loads(line) for line in (out / "timings.jsonl").read_text().splitlines() if line.strip()]
    wall = {"frames": frames.get("seconds", float("nan")), "split": split.get("seconds", float("nan")),
            "train": sum(level["seconds"] for level in levels), "evaluate": evaluate}
    wall["total"] = sum(wall.values())
    wall["steps"] = {str(level["resolution"]): level["steps"] for level in levels}
    return wall


def write_card(out: Path, args, frames: Dict, split: Dict, evaluation: Dict, training_summary: str, wall: Dict) -> Path:
    from huggingface_hub import ModelCard

    from .evaluation import eval_results
    from .hub import write_model_card

    info = frames["info"]
    start = "from scratch" if args.from_scratch else f"fine-tuned from `{args.init_model_path}`"
    record = evaluation["record"]
    summary = (
        f"**A model of one person**, {start} on {split['train_frames']} frames of the video `{args.video_name}` with "
        f"`pgat personalize`. It renders that person, in the clothes of the video, in new poses; it is not a model of "
        f"people in general. Held out from training: the last {args.holdout:.0%} of the video ({split['heldout_frames']} "
        f"frames); the numbers below are on those frames, each generated from one training frame as the reference. "
        f"SSIM gap to a perfect score closed over copying the reference: {gap_closed(record, 'ssim'):.2f}; "
        f"local-SSIM: {gap_closed(record, 'local_ssim'):.2f}."
    )
    background = "kept as filmed" if args.keep_background else "replaced by white with BlazePose's person mask (as the paper)"
    crop = (f"cut to one fixed square around the person, {split['crop_box'][2]} px of the {split['frame_size'][0]}×{split['frame_size'][1]} "
            f"sampled frame" if split["crop_box"] else "letterboxed whole")
    data = "\n".join([
        f"- **Video**: `{args.video_name}` ({info['size'][0]}×{info['size'][1]}, {info['fps']:g} fps, {info['duration']:.1f} s; "
        f"fingerprint {frames['settings']['fingerprint']}).",
        f"- **Footage licence**: {args.license or 'not given (pass --license)'}." + (f" Credit: {args.credit}." if args.credit else ""),
        f"- **Frames**: {frames['sampled']} sampled at {frames['settings']['rate']:.3g} fps, {frames['kept']} with one confident person "
        f"(skipped: {_counts(frames['skipped'])}); background {background}; {crop}, at {split['settings']['size']}².",
        f"- **Split by time**: {split['train_frames']} training frames ({split['train_seconds'][0]:.1f}–{split['train_seconds'][1]:.1f} s, "
        f"{split['train_pairs']} pairs), {split['heldout_frames']} held-out frames ({split['heldout_seconds'][0]:.1f}–"
        f"{split['heldout_seconds'][1]:.1f} s), never trained on.",
        f"- **Wall time** of `pgat personalize`'s steps: {wall['total'] / 60:.1f} min (frames {wall['frames']:.0f} s, split {wall['split']:.0f} s, "
        f"training {wall['train'] / 60:.1f} min, evaluation {wall['evaluate']:.0f} s); steps trained: "
        + ", ".join(f"{r}²: {n}" for r, n in wall["steps"].items()) + " (a level ends at its steps or its share of `--minutes`).",
        "",
        "**Consent.** This model reproduces a real person's appearance. Train and share it only with that person's "
        "consent and within the footage's licence; the images under `data/` and the strips are frames of that person. "
        "Do not use it to make them appear to do or wear something they did not.",
    ])
    table = evaluation["table"] + f"\n![held-out frames: reference | target pose | output | real frame]({STRIP_FILE})\n"
    limitations = (
        f"One person, in the clothes and light of one video: other people, other clothes and poses far from the "
        f"video's are out of its reach. {split['train_frames']} frames and minutes of CPU training: faces, hands and "
        "fine texture are blurred. The starting model was trained on synthetic people only (SynthHumans)."
    )
    path = write_model_card(
        out, repo_id=None, eval_results=eval_results(record), tags=["personalized"],
        model_summary=summary, training_summary=training_summary, training_command=args.command_line,
        training_data=data, evaluation_table=table, limitations=limitations,
    )
    card = ModelCard.load(path)
    # the weights come from the footage of a person: the footage's terms and the person's consent decide their use
    card.data.license = "other"
    card.data.license_name = "footage-terms"
    card.save(path)
    return path


# ---------------------------------------------------------------------------------------------
# the command
# ---------------------------------------------------------------------------------------------


def personalize(args: argparse.Namespace) -> Dict:
    """Run the four steps (see the module docstring); returns the evaluation record and the wall times."""
    from accelerate import PartialState

    from .pipelines.utils import model_or_default
    from .stages import check_resolution
    from .training_utils import check_mixed_precision

    t_start = time.perf_counter()
    state = PartialState()
    main_process = state.is_main_process
    progress = not args.no_progress and main_process
    video = Path(args.video)
    out = Path(args.out)
    work = out / DATA_DIR
    if not 0.0 < args.holdout < 1.0:
        raise ValueError(f"`--holdout` must be a share of the video between 0 and 1, got {args.holdout}")
    if not args.minutes > 0:
        raise ValueError(f"`--minutes` must be positive, got {args.minutes}")
    args.video_name = video.name
    args.init_model_path = None if args.from_scratch else Path(model_or_default(args.init_model))
    prog = _load_progressive()
    preset_args = prog.parse_args(["--config", args.preset])
    args.stage_list = [int(v) for v in (args.stages or preset_args.stages).split(",")]
    for r in args.stage_list:
        check_resolution(r, "--stages")
    if preset_args.mixed_precision == "bf16" and args.mixed_precision is None:
        try:
            check_mixed_precision("bf16", state.device)
        except ValueError:  # the preset's fast step needs native bf16; fp32 is slower but right
            args.mixed_precision = "no"
            if main_process:
                print("personalize: this CPU has no native bf16: training in fp32 (slower, fewer steps in the budget)")
    out.mkdir(parents=True, exist_ok=True)
    work.mkdir(exist_ok=True)

    # 1-2. frames and split, once (the main process first; the others then find them done)
    with state.main_process_first():
        frames = extract_frames(video, work, args, progress=progress)
        split = split_frames(work, frames, args)
    if main_process:
        print(f"personalize: {frames['kept']} usable frames of {frames['sampled']} sampled ({frames['settings']['rate']:.3g} fps): "
              f"{split['train_frames']} to train on, {split['heldout_frames']} held out (from {split['cut_seconds']:.1f} s)")

    # 3. train, with the time plan of the first run
    base_argv = training_argv(args, out, work, None)
    train_args = _trim_schedule(prog, base_argv, args.stage_list)
    schedule = prog.resolve_schedule(train_args)
    plan_settings = {"argv": base_argv, "minutes": args.minutes}
    plan = _record(work, "plan.json", plan_settings, "training plan")
    if plan is None:
        spent = (time.perf_counter() - t_start) / 60
        budget = max(0.5, args.minutes - spent - EVALUATION_RESERVE_MINUTES)
        minutes = plan_minutes([s["resolution"] for s in schedule], [s["steps"] for s in schedule], [s["batch_size"] for s in schedule], budget)
        with state.main_process_first():
            if main_process:
                plan = _write_record(work, "plan.json", plan_settings, stage_minutes=minutes, training_minutes=budget)
        plan = json.loads((work / "plan.json").read_text())
    argv = training_argv(args, out, work, plan["stage_minutes"])
    train_args = _trim_schedule(prog, argv, args.stage_list)
    trained = _record(work, "trained.json", {"argv": argv}, "training")
    if trained is None:
        if main_process:
            levels = ", ".join(f"{s['resolution']}²: {s['steps']} steps / {m:.1f} min" for s, m in zip(schedule, plan["stage_minutes"]))
            print(f"personalize: training at most {sum(plan['stage_minutes']):.1f} min ({levels})")
        prog.main(train_args)
        state.wait_for_everyone()
        if main_process:
            _write_record(work, "trained.json", {"argv": argv})
    if not main_process:
        return {}

    # 4. evaluate, card; the checkpoints were only for resuming
    t = time.perf_counter()
    evaluation = evaluate_heldout(out, work, args, progress=progress)
    t_eval = time.perf_counter() - t
    if args.init_model_path is not None and (args.init_model_path / "flow" / "config.json").is_file() and not (out / "flow").exists():
        shutil.copytree(args.init_model_path / "flow", out / "flow")
    from .hub import write_model_index

    write_model_index(out, {"flow": ["pgat", "AppearanceFlowModel"]} if (out / "flow").is_dir() else None)
    for ckpt in out.glob("checkpoint-*"):
        shutil.rmtree(ckpt, ignore_errors=True)
    wall = step_seconds(out, frames, split, t_eval)
    write_card(out, args, frames, split, evaluation, prog._training_summary(train_args, schedule), wall)
    record = evaluation["record"]
    print(evaluation["table"])
    print(f"personalize: wrote {out}: this run {(time.perf_counter() - t_start) / 60:.1f} min, all steps {wall['total'] / 60:.1f} min (training {wall['train'] / 60:.1f} min); "
          f"held-out gap closed over copy-reference: SSIM {gap_closed(record, 'ssim'):.2f}, local-SSIM {gap_closed(record, 'local_ssim'):.2f}")
    return {"evaluation": record, "wall": wall, "frames": frames, "split": split}


def _cmd_personalize(args: argparse.Namespace) -> int:
    args.command_line = "pgat personalize " + " ".join(_quote(a) for a in sys.argv[2:]) if len(sys.argv) > 2 and sys.argv[1] == "personalize" else None
    personalize(args)
    return 0


def _quote(arg: str) -> str:
    import shlex

    return shlex.quote(arg)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("video", metavar="VIDEO", help="a video of one person (mp4, avi, mov, ...)")
    p.add_argument("--out", required=True, help="the model repository to write (Hub layout); the same command resumes it")
    g = p.add_argument_group("frames")
    g.add_argument("--fps", type=float, default=3.0, help="frames sampled per second (default: 3, as the paper)")
    g.add_argument("--min-frames", type=int, default=100, help="a video too short for this many frames at --fps is sampled evenly to this many (at most every frame; default 100)")
    g.add_argument("--max-frames", type=int, default=600, help="a long video is sampled evenly to at most this many frames (default 600)")
    g.add_argument("--keep-background", action="store_true", help="keep the background as filmed (default: replaced by white with the person mask, as the paper)")
    g.add_argument("--no-crop", action="store_true", help="letterbox whole frames instead of cutting a fixed square around the person")
    g.add_argument("--min-keypoints", type=int, default=8, help="confident keypoints (of 18) a usable frame's person needs (default 8)")
    g.add_argument("--holdout", type=float, default=0.2, help="the last share of the video's time held out for evaluation, never trained on (default 0.2)")
    g.add_argument("--pairs-per-frame", type=int, default=50, help="training targets paired with each training frame; 0 = every pair (default 50)")
    g = p.add_argument_group("training")
    g.add_argument("--preset", default=DEFAULT_PRESET, help=f"a YAML preset of train/configs/ (a name or a path) that chooses the network and steps (default {DEFAULT_PRESET})")
    g.add_argument("--init-model", default=None, help="the model to fine-tune (a repository folder or Hub id; default: the embedded weights/pgat-synth-256)")
    g.add_argument("--from-scratch", action="store_true", help="grow a fresh network instead of fine-tuning")
    g.add_argument("--stages", default=None, help="resolutions to train, comma-separated (default: the preset's, 64,128,256)")
    g.add_argument("--minutes", type=float, default=DEFAULT_MINUTES, help=f"wall-clock budget of the whole command; each level gets its share (default {DEFAULT_MINUTES:g})")
    g.add_argument("--steps", default=None, help="training steps per level, one number or one per stage (default: the preset's)")
    g.add_argument("--mixed-precision", default=None, choices=["no", "bf16"], help="override the preset's (bf16 where the CPU has it, else no)")
    g.add_argument("--checkpoint-every", type=int, default=None, help="steps between the checkpoints a killed run resumes from (default: the preset's, 50)")
    g.add_argument("--seed", type=int, default=0)
    g = p.add_argument_group("the card")
    g.add_argument("--license", default=None, help="the footage's licence, written into the model card")
    g.add_argument("--credit", default=None, help="who filmed / owns the footage, written into the model card")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def register_personalize(sub) -> None:
    p = sub.add_parser(
        "personalize",
        help="train a model of one person from a video (frames, split by time, fine-tuning, held-out evaluation, card)",
        description=(
            "One person's video -> a PGAT model repository of that person: frames sampled and posed (BlazePose), "
            "background replaced, the last part of the video held out, the embedded model fine-tuned within a time "
            "budget, evaluated on the held-out frames (evaluation.json, heldout-strip.png, README.md). Run the same "
            "command again to resume."
        ),
    )
    add_arguments(p)
    p.set_defaults(func=_cmd_personalize)


def main(argv: Optional[List[str]] = None) -> int:
    """``python -m pgat.personalize`` / ``accelerate launch -m pgat.personalize``: the command without the ``pgat`` front."""
    from .cli import error_message

    parser = argparse.ArgumentParser(prog="pgat personalize", description="pgat personalize VIDEO --out DIR")
    add_arguments(parser)
    args = parser.parse_args(argv)
    args.command_line = "pgat personalize " + " ".join(_quote(a) for a in (sys.argv[1:] if argv is None else argv))
    try:
        personalize(args)
    except (ValueError, OSError) as e:
        print(f"pgat: error: {error_message(e)}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
