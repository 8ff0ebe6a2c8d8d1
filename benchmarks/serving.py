"""What serving a repository costs on top of the model: one JSON request through the repository's handler.py,
the same request over HTTP (``pgat serve``), and a video request, against the bare `PGATPipeline` call.

A randomly initialised stage (the weights do not change the cost) is saved with ``save_pretrained``; the
request is a 176x256 SynthHumans reference (DeepFashion's frame) as base64 PNG + its target keypoints. Times are
medians of ``--repeats`` calls after one warm-up call; sizes are of the JSON bodies. The 1-minute load average
before and after is recorded: on a shared machine it says how much the times are to be trusted.

    python benchmarks/serving.py --bottleneck-channels 64 --out benchmarks/results/serving-cpu.json
"""

from __future__ import annotations

import argparse
import base64
import importlib.util
import io
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from model_cost import machine  # the sibling benchmark's machine description (benchmarks/ is on sys.path when run)
from pgat import PGATModel, PGATPipeline
from pgat.data.synthetic import SynthHumans


def median_seconds(fn, repeats: int) -> float:
    fn()  # warm-up: first-call allocations, lazy imports
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def b64png(array: np.ndarray) -> str:
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(array)).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def post(url: str, body: bytes) -> bytes:
    req = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=600) as r:
        return r.read()


def main(args) -> dict:
    torch.manual_seed(0)
    item = SynthHumans(resolution=args.resolution, split="test")[0]
    crop = (args.resolution - args.resolution * 176 // 256) // 2
    reference = item["reference"][:, crop : args.resolution - crop]
    keypoints = item["target_keypoints"].copy()
    ok = keypoints[:, 0] >= 0
    keypoints[ok, 0] -= crop
    keypoints[ok & ((keypoints[:, 0] < 0) | (keypoints[:, 0] > reference.shape[1] - 1))] = -1
    payload = {"inputs": {"reference_image": b64png(reference), "target_pose": keypoints.tolist()}, "parameters": {}}
    body = json.dumps(payload).encode()
    video_payload = {
        "inputs": {"reference_image": payload["inputs"]["reference_image"], "pose_sequence": [keypoints.tolist()] * args.frames},
        "parameters": {"task": "video", "retarget": False},
    }

    with tempfile.TemporaryDirectory() as tmp:
        repo = Path(tmp) / "repo"
        model = PGATModel(resolution=args.resolution, bottleneck_channels=args.bottleneck_channels).eval()
        PGATPipeline(model=model).save_pretrained(repo)
        spec = importlib.util.spec_from_file_location("bench_handler", repo / "handler.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        handler = module.EndpointHandler(str(repo))
        pipe = handler.serving.pipeline(args.resolution)
        image = Image.fromarray(np.ascontiguousarray(reference))

        result = {"machine": machine(), "load_average_1min_before": os.getloadavg()[0], "resolution": args.resolution,
                  "bottleneck_channels": args.bottleneck_channels, "reference_size": list(image.size), "repeats": args.repeats}
        result["pipeline_seconds"] = median_seconds(lambda: pipe(image, keypoints), args.repeats)
        result["handler_seconds"] = median_seconds(lambda: handler(payload), args.repeats)
        response = json.dumps(handler(payload)).encode()
        result["request_bytes"], result["response_bytes"] = len(body), len(response)
        result["video_frames"] = args.frames
        result["video_handler_seconds"] = median_seconds(lambda: handler(video_payload), max(1, args.repeats // 2))
        result["video_response_bytes"] = len(json.dumps(handler(video_payload)).encode())

        # the same request over HTTP, to a server in its own process with the same thread count
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        env = dict(os.environ, OMP_NUM_THREADS=str(torch.get_num_threads()))
        server = subprocess.Popen([sys.executable, "-m", "pgat.cli", "serve", str(repo), "--port", str(port), "--log-level", "warning"], env=env)
        try:
            url = f"http://127.0.0.1:{port}"
            t0 = time.perf_counter()
            while True:
                try:
                    urllib.request.urlopen(url + "/health", timeout=5).read()
                    break
                except OSError:
                    if server.poll() is not None or time.perf_counter() - t0 > 300:
                        raise RuntimeError("pgat serve did not start")
                    time.sleep(0.2)
            result["server_ready_seconds"] = time.perf_counter() - t0
            result["http_seconds"] = median_seconds(lambda: post(url, body), args.repeats)
        finally:
            server.terminate()
            server.wait(timeout=30)
    result["load_average_1min_after"] = os.getloadavg()[0]  # the machine is shared: read the times with these
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resolution", type=int, default=256)
    parser.add_argument("--bottleneck-channels", type=int, default=64, help="64: the synth-cpu-256 preset; 1024: the paper")
    parser.add_argument("--frames", type=int, default=30, help="poses of the video request")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", default=None, help="write the JSON here (appended to a list when the file exists)")
    args = parser.parse_args()
    record = main(args)
    print(json.dumps(record, indent=1))
    if args.out:
        path = Path(args.out)
        records = json.loads(path.read_text()) if path.exists() else []
        records.append(record)
        path.write_text(json.dumps(records, indent=1) + "\n")
