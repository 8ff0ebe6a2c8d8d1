"""Whether ``pgat serve`` keeps its memory flat: many sequential pose-transfer requests, the server's RSS after each.

The real server is started as users start it (``python -m pgat.cli serve REPO`` in its own process, on 127.0.0.1
and a free port), on the embedded model ``weights/pgat-synth-256`` by default. Each request is the "image" task
of `pgat.serving` as a client sends it: a reference photo (``spaces/examples/person-1.png``, scaled uniformly to
``--reference-size``) as base64 PNG and a target pose as an OpenPose JSON object, cycling through the Space's 8
preset poses so that the requests are not all alike. The embedded model takes the reference person's own pose
(DESIGN.md §1b) and the request does not send it, so the server estimates it from the photo every time: the
pose estimator is part of what is measured. Requests are sent one after another; after each response the
server process's resident set size (RSS, ``psutil``, else ``VmRSS`` of ``/proc/PID/status``) is read.

Reported: the RSS before the first request, after the warm-up requests (``--warmup``: first-call allocations,
lazy imports, the estimator's load), at the end and at its peak; the growth from the end of the warm-up to the
last request, as a difference and as a least-squares slope, both per 100 requests; requests per second after
the warm-up; and the size of one output image (its 8-bit RGB pixels, and its base64 PNG in the response), which
is what a leak of one output image per request would add each time. The machine (CPU model from ``lscpu``,
cores, torch) and the 1-minute load average before and after are recorded: the machine may be shared.

    python benchmarks/serve_memory.py --out benchmarks/results/serve-memory-cpu.json
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import platform
import re
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Dict, List, Optional, Tuple

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "spaces" / "examples"
EMBEDDED = REPO / "weights" / "pgat-synth-256"


def machine() -> Dict:
    """CPU model (``lscpu``'s "Model name"), cores, torch's threads and version, Python."""
    import torch

    cpu = platform.processor() or "unknown"
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=30).stdout
        cpu = re.search(r"^Model name:\s*(.+)$", out, re.M).group(1).strip()
    except (OSError, subprocess.SubprocessError, AttributeError):
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "threads": torch.get_num_threads(), "torch": torch.__version__, "python": platform.python_version()}


def rss_bytes(pid: int) -> int:
    """Resident set size of process ``pid``: psutil when installed, else ``VmRSS`` in ``/proc/PID/status``."""
    try:
        import psutil
    except ImportError:
        psutil = None
    if psutil is not None:
        return psutil.Process(pid).memory_info().rss
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS in /proc/{pid}/status")


def payloads(reference_size: Tuple[int, int]) -> List[bytes]:
    """One JSON request body per preset pose: the reference photo scaled to ``reference_size`` (width, height),
    as base64 PNG, and the pose's OpenPose JSON object (its 256x256 canvas is mapped onto the photo by the server)."""
    from PIL import Image

    image = Image.open(EXAMPLES / "person-1.png").convert("RGB").resize(reference_size, Image.BICUBIC)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    reference = base64.b64encode(buffer.getvalue()).decode("ascii")
    poses = sorted((EXAMPLES / "poses").glob("pose-*.json"))
    return [json.dumps({"inputs": {"reference_image": reference, "target_pose": json.loads(p.read_text())}, "parameters": {}}).encode() for p in poses]


def post(url: str, body: bytes, timeout: float = 600) -> Tuple[int, bytes]:
    req = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(model: Path, log: Path, timeout: float = 300) -> Tuple[subprocess.Popen, str, float]:
    """``python -m pgat.cli serve MODEL`` on 127.0.0.1 and a free port, on the CPU; returns (process, URL, seconds to
    the first 200 of ``GET /health``). The server's output goes to ``log``."""
    port = free_port()
    env = dict(os.environ, PGAT_DEVICE="cpu", HF_HUB_OFFLINE="1", HF_HUB_DISABLE_TELEMETRY="1", PYTHONUNBUFFERED="1")
    with open(log, "w") as out:  # a file, not a pipe that nobody reads
        proc = subprocess.Popen([sys.executable, "-m", "pgat.cli", "serve", str(model), "--port", str(port), "--log-level", "warning"],
                                env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    t0 = time.perf_counter()
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"pgat serve exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url + "/health", timeout=5) as r:
                if r.status == 200:
                    return proc, url, time.perf_counter() - t0
        except OSError:
            pass
        if time.perf_counter() - t0 > timeout:
            proc.kill()
            raise RuntimeError(f"pgat serve did not answer /health within {timeout:.0f} s:\n{log.read_text()[-3000:]}")
        time.sleep(0.2)


def stop_server(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def slope(xs: List[float], ys: List[float]) -> float:
    """Least-squares slope of ys over xs."""
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)


def run(model: Path = EMBEDDED, requests: int = 200, warmup: int = 20, reference_size: Tuple[int, int] = (512, 512),
        log: Optional[Path] = None) -> Dict:
    """Start the server, send ``requests`` sequential requests, sample its RSS after each; return the record.

    Every response must be a 200 with a PNG of ``reference_size``: a failing request raises (it would measure
    nothing). ``rss_mib[i]`` is the RSS after request ``i + 1``."""
    from PIL import Image

    if not 0 < warmup < requests:
        raise ValueError(f"`warmup` must be from 1 to requests - 1 ({requests - 1}), got {warmup}")
    bodies = payloads(reference_size)
    mib = 2**20
    record = {"machine": machine(), "load_average_1min_before": os.getloadavg()[0], "model": _name(model),
              "reference_size": list(reference_size), "target_poses": len(bodies), "requests": requests, "warmup": warmup}
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(log) if log else Path(tmp) / "server.log"
        proc, url, ready = start_server(model, log)
        try:
            record["server_ready_seconds"] = ready
            record["rss_mib_start"] = rss_bytes(proc.pid) / mib
            rss, seconds = [], []
            for i in range(requests):
                t0 = time.perf_counter()
                status, raw = post(url + "/predict", bodies[i % len(bodies)])
                seconds.append(time.perf_counter() - t0)
                if status != 200:
                    raise RuntimeError(f"request {i + 1} got {status}: {raw[:500]!r}")
                rss.append(rss_bytes(proc.pid) / mib)
                if i == 0:
                    response = json.loads(raw)
                    png = base64.b64decode(response["image"])
                    size = Image.open(io.BytesIO(png)).size
                    if size != tuple(reference_size):
                        raise RuntimeError(f"the output is {size[0]}x{size[1]}, expected the reference's {reference_size[0]}x{reference_size[1]}")
                    record["resolution"] = response["resolution"]
                    record["output_image_bytes"] = reference_size[0] * reference_size[1] * 3  # 8-bit RGB pixels
                    record["output_png_base64_bytes"] = len(response["image"])
                    record["response_bytes"] = len(raw)
        finally:
            stop_server(proc)
    after = seconds[warmup:]
    record.update({
        "rss_mib_after_warmup": rss[warmup - 1],
        "rss_mib_end": rss[-1],
        "rss_mib_peak": max(rss),
        "growth_mib_per_100_requests": (rss[-1] - rss[warmup - 1]) / (requests - warmup) * 100,
        "growth_mib_per_100_requests_fit": slope(list(range(warmup, requests)), rss[warmup:]) * 100,
        "requests_per_second": len(after) / sum(after),
        "seconds_per_request_median": sorted(after)[len(after) // 2],
        "rss_mib": [round(v, 2) for v in rss],
        "load_average_1min_after": os.getloadavg()[0],
    })
    return record


def leak_bound_mib(record: Dict, first: int = 20) -> float:
    """What the RSS growth from request ``first`` to the last must stay under: half of what a leak of one output
    image per request would add over those requests, so that such a leak exceeds it twice over.

    One output image is its decoded 8-bit RGB pixels: width x height x 3 bytes, the PIL image the pipeline returns.
    A leak of only the response's compressed PNG (about 6x smaller here: the generated picture is smooth) is not
    what this bound is for: after request 20 the RSS still grows now and then in single steps of 3-12 MiB (glibc's
    heap, which keeps freed memory, growing once more) and is flat between them: in ``results/serve-memory-cpu.json``
    no step in one run of 200 requests, two of about 3 MiB in another, one of 10.3 MiB in a run of 600 (10.4 MiB in
    all over 580 requests). A leak of 120 KB per request would not stand out from those."""
    return 0.5 * (record["requests"] - first) * record["output_image_bytes"] / 2**20


def _name(model: Path) -> str:
    try:
        return str(Path(model).resolve().relative_to(REPO))
    except ValueError:
        return str(model)


def main(argv: Optional[List[str]] = None) -> Dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(EMBEDDED), help="a local PGAT repository (default: weights/pgat-synth-256)")
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=20, help="requests before the growth is measured (default: 20)")
    parser.add_argument("--reference-size", type=int, nargs=2, default=(512, 512), metavar=("WIDTH", "HEIGHT"),
                        help="the reference photo's size, and so the output's (default: 512 512)")
    parser.add_argument("--out", default=None, help="write the JSON here (appended to a list when the file exists)")
    args = parser.parse_args(argv)
    record = run(Path(args.model), args.requests, args.warmup, tuple(args.reference_size))
    record["leak_bound_mib"] = leak_bound_mib(record, args.warmup)
    print(json.dumps({k: v for k, v in record.items() if k != "rss_mib"}, indent=1))
    if args.out:
        path = Path(args.out)
        records = json.loads(path.read_text()) if path.exists() else []
        records.append(record)
        path.write_text(json.dumps(records, indent=1) + "\n")
    return record


if __name__ == "__main__":
    main()
