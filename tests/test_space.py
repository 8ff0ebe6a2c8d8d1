"""The Gradio Space (spaces/), as users and API clients meet it: `python spaces/app.py` serving on 127.0.0.1,
`gradio_client` calling every api_name, 8 and 16 clients at once, video requests whose clients cancel or go away,
bad uploads, and headless Chromium using each tab."""

import importlib.util
import json
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import imageio_ffmpeg
import numpy as np
import pytest
import torch
from gradio_client import Client, handle_file
from gradio_client.utils import Status
from PIL import Image

from pgat import AppearanceFlowModel, PGATModel, PGATPipeline, PGATTryOnPipeline
from pgat.models.flow import default_canonical_pose


REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "spaces" / "examples"
EMBEDDED = REPO / "weights" / "pgat-synth-256"
MAX_VIDEO_SECONDS = 20
# above the Space's default frame cap (300): the cancellation test needs a video that would take minutes
MAX_FRAMES = 3000


def _load_screenshots():
    spec = importlib.util.spec_from_file_location("space_screenshots", REPO / "spaces" / "screenshots.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


screenshots = _load_screenshots()


def _tiny_repository(path: Path) -> Path:
    """Stages 64, 128, 256 (grown from one seeded tiny model) and an untrained flow/, in the Hub layout."""
    torch.manual_seed(0)
    model = PGATModel(resolution=64, bottleneck_channels=16).eval()
    flow = AppearanceFlowModel(block_out_channels=(4, 8, 16, 16), sample_size=64, canonical_pose=default_canonical_pose()).eval()
    PGATTryOnPipeline(model=model, flow=flow, pose_estimator=None).save_pretrained(path)
    for _ in range(2):
        model = model.grow().eval()
        PGATPipeline(model=model, pose_estimator=None).save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def space_model(tmp_path_factory) -> Path:
    """The embedded default model ``weights/pgat-synth-256``: what users of the Space get. Only while that folder
    is missing from the checkout, a tiny repository of the same layout (three stages and flow/) is built here."""
    if EMBEDDED.is_dir():
        return EMBEDDED
    return _tiny_repository(tmp_path_factory.mktemp("model") / "pgat-tiny")


def _needs_reference_pose(repository: Path) -> bool:
    """Whether the repository's highest stage takes the reference person's own pose (DESIGN.md §1b)."""
    stage = sorted(p for p in Path(repository).glob("stage-*") if (p / "config.json").is_file())[-1]
    config = json.loads((stage / "config.json").read_text())
    return bool(config.get("reference_pose") or config.get("warp_skips"))


@pytest.fixture(scope="module")
def space(space_model, tmp_path_factory):
    """The Space as a real server (``python spaces/app.py`` on 127.0.0.1 and a free port)."""
    tmp = tmp_path_factory.mktemp("space")
    env = {
        "GRADIO_EXAMPLES_CACHE": str(tmp / "cached_examples"),
        "GRADIO_TEMP_DIR": str(tmp / "gradio"),
        "PGAT_MAX_VIDEO_SECONDS": str(MAX_VIDEO_SECONDS),
        "PGAT_MAX_FRAMES": str(MAX_FRAMES),
        "PGAT_MAX_FILE_SIZE": "5mb",
    }
    with screenshots.serve(space_model, env=env, log=tmp / "space.log") as url:
        yield {"url": url, "tmp": tmp, "stages": json.loads((space_model / "model_index.json").read_text())["stages"],
               "needs_reference_pose": _needs_reference_pose(space_model), "log": tmp / "space.log", "port": int(url.rsplit(":", 1)[1].strip("/"))}


def _client(space, downloads="downloads"):
    # a generous timeout: on a loaded 2-core machine a request may wait behind others for a while
    return Client(space["url"], verbose=False, download_files=str(space["tmp"] / downloads), httpx_kwargs={"timeout": 300})


@pytest.fixture(scope="module")
def client(space):
    return _client(space)


def _editor(path, layers=()):
    return {"background": handle_file(str(path)), "layers": [handle_file(str(p)) for p in layers], "composite": None, "id": None}


def _frames(path):
    """(frame count, (width, height), fps) of an mp4, read back with imageio-ffmpeg."""
    gen = imageio_ffmpeg.read_frames(str(path))
    meta = next(gen)
    count = sum(1 for _ in gen)
    return count, tuple(meta["size"]), meta["fps"]


@pytest.fixture(scope="module")
def portrait_png(tmp_path_factory):
    """person-1 cut to a 200x256 portrait: results must keep a non-square reference's size."""
    path = tmp_path_factory.mktemp("inputs") / "portrait.png"
    Image.open(EXAMPLES / "person-1.png").crop((28, 0, 228, 256)).save(path)
    return path


# ---------------------------------------------------------------------------------------------
# the API, endpoint by endpoint
# ---------------------------------------------------------------------------------------------


def test_api_names(client):
    names = set(client.view_api(print_info=False, return_format="dict")["named_endpoints"])
    assert {"/pose_transfer", "/tryon", "/video"} <= names


def test_pose_transfer_every_pose_source(client, space, portrait_png):
    low = space["stages"][0]
    results = {}
    for source, photo, pose_json, preset, resolution in [
        ("preset", None, None, "pose-03", space["stages"][-1]),
        ("json", None, handle_file(str(EXAMPLES / "poses" / "pose-08.json")), "pose-01", space["stages"][-1]),
        ("photo", handle_file(str(EXAMPLES / "pose-photo.png")), None, "pose-01", low),
    ]:
        result, with_skeleton, pose_view, download, notes, reference_view = client.predict(
            handle_file(str(portrait_png)), source, photo, pose_json, preset, resolution, False, None, api_name="/pose_transfer"
        )
        # the reference skeleton used: only for a model that takes the reference's pose, drawn on the reference photo
        assert (reference_view is None) != space["needs_reference_pose"], reference_view
        if reference_view is not None:
            assert Image.open(reference_view).size == (200, 256)
        image = Image.open(result)
        assert image.format == "PNG" and image.size == (200, 256), (source, image.format, image.size)
        saved = Image.open(download)
        assert saved.format == "PNG" and Path(download).name == "pgat-pose-transfer.png"
        np.testing.assert_array_equal(np.asarray(saved.convert("RGB")), np.asarray(image.convert("RGB")))
        overlay = np.asarray(Image.open(with_skeleton).convert("RGB"))
        assert overlay.shape == (256, 200, 3) and (overlay != np.asarray(image.convert("RGB"))).any()
        assert Image.open(pose_view).size == (256, 256)  # the JSON canvas, or the pose photo
        results[source] = np.asarray(image.convert("RGB"), dtype=np.int16)
        assert notes == ""
    # the pose steers the output: two different target poses, two different pictures (even from an untrained model)
    assert (results["preset"] != results["json"]).mean() > 0.01


def test_pose_transfer_align_and_several_people(client, space, tmp_path):
    two = Image.new("RGB", (512, 256), (235, 235, 235))
    two.paste(Image.open(EXAMPLES / "person-1.png"), (0, 0))
    two.paste(Image.open(EXAMPLES / "person-3.png").resize((180, 180)), (300, 70))
    two.save(tmp_path / "two.png")
    result, _, pose_view, _, notes, reference_view = client.predict(
        handle_file(str(EXAMPLES / "person-2.png")), "photo", handle_file(str(tmp_path / "two.png")), None, "pose-01",
        space["stages"][-1], True, api_name="/pose_transfer",
    )  # called without the last input (the reference pose file, added later): API calls made before it still work
    assert Image.open(result).size == (256, 256)
    assert Image.open(pose_view).size == (512, 256)  # the skeleton is drawn on the pose photo as uploaded
    assert "The pose photo shows 2 people; the largest one was used." in notes
    assert Image.open(reference_view).size == (256, 256)  # fitting the pose used the reference's (estimated) pose

    # the reference pose from an OpenPose JSON file: used as it is (its skeleton drawn where the file puts it)
    from pgat.pose import draw_skeleton, write_openpose_json

    pose = np.full((18, 2), -1.0, np.float32)
    pose[[1, 2, 5, 8, 11, 0]] = [(128, 60), (105, 62), (151, 62), (112, 150), (144, 150), (128, 35)]
    write_openpose_json(pose, tmp_path / "reference-pose.json")
    _, _, _, _, notes, reference_view = client.predict(
        handle_file(str(EXAMPLES / "person-2.png")), "preset", None, None, "pose-01", space["stages"][-1], True,
        handle_file(str(tmp_path / "reference-pose.json")), api_name="/pose_transfer",
    )
    drawn = np.asarray(Image.open(reference_view).convert("RGB"), dtype=np.int16)
    expected = np.asarray(draw_skeleton(Image.open(EXAMPLES / "person-2.png"), pose), dtype=np.int16)
    assert np.abs(drawn - expected).mean() < 0.5 and "reference photo shows" not in notes  # nothing estimated
    if not space["needs_reference_pose"]:  # given but needed by nothing: not used, and the notes say so
        _, _, _, _, notes, reference_view = client.predict(
            handle_file(str(EXAMPLES / "person-2.png")), "preset", None, None, "pose-01", space["stages"][-1], False,
            handle_file(str(tmp_path / "reference-pose.json")), api_name="/pose_transfer",
        )
        assert reference_view is None and "The reference pose file was not used" in notes


def test_tryon_automatic_and_drawn_masks(client, space, tmp_path):
    r = space["stages"][-1]
    out = client.predict(_editor(EXAMPLES / "person-1.png"), _editor(EXAMPLES / "person-3.png"), "automatic", r, api_name="/tryon")
    result, invented, kept, warped, automatic_mask, notes = out
    assert Image.open(result).format == "PNG" and Image.open(result).size == (256, 256)
    assert "keep the person" in notes
    for path in (invented, kept, warped, automatic_mask):
        assert Image.open(path).size == (256, 256)  # the default method works in the person photo's own frame
    # keep the person: the photo's own pixels wherever the garment is not
    person = np.asarray(Image.open(EXAMPLES / "person-1.png").convert("RGB"))
    same = (np.asarray(Image.open(result).convert("RGB")) == person).all(-1)
    assert 0.7 < same.mean() < 1.0
    np.testing.assert_array_equal(np.asarray(Image.open(kept).convert("L")) > 127, same)  # the intermediate says so
    # the paper's route on request: its intermediates are in the model's square
    canonical = client.predict(_editor(EXAMPLES / "person-1.png"), _editor(EXAMPLES / "person-3.png"), "automatic", r, "canonical", api_name="/tryon")
    for path in canonical[1:5]:
        assert Image.open(path).size == (r, r)
    assert "canonical pose" in canonical[5] and (np.asarray(Image.open(canonical[0]).convert("RGB")) == person).all(-1).mean() < 0.5
    # hand-drawn masks: an opaque stroke layer over each torso (RGBA, transparent elsewhere)
    stroke = Image.new("RGBA", (256, 256), (0, 0, 0, 0))
    stroke.paste(Image.new("RGBA", (70, 80), (255, 45, 135, 255)), (93, 60))
    stroke.save(tmp_path / "stroke.png")
    drawn = client.predict(_editor(EXAMPLES / "person-1.png", [tmp_path / "stroke.png"]), _editor(EXAMPLES / "person-3.png", [tmp_path / "stroke.png"]),
                           "drawn", r, api_name="/tryon")
    assert Image.open(drawn[0]).size == (256, 256)
    a = np.asarray(Image.open(automatic_mask).convert("L"), dtype=np.int16)
    b = np.asarray(Image.open(drawn[4]).convert("L"), dtype=np.int16)
    assert (a > 127).sum() > 0 and (b > 127).sum() > 0 and np.abs(a - b).mean() > 1.0  # the drawn mask was used
    # drawn mode without strokes says what is missing
    with pytest.raises(Exception, match="nothing is painted on the person photo"):
        client.predict(_editor(EXAMPLES / "person-1.png"), _editor(EXAMPLES / "person-3.png", [tmp_path / "stroke.png"]), "drawn", r, api_name="/tryon")


def test_video_from_zip_and_driving_video(client, space):
    low = space["stages"][0]
    video, notes, reference_view = client.predict(handle_file(str(EXAMPLES / "person-1.png")), "zip", None,
                                                  handle_file(str(EXAMPLES / "workout_march.zip")), 0, 6, True, True, low, None, api_name="/video")
    count, size, fps = _frames(video)
    assert (count, size, fps) == (6, (256, 256), 30.0)
    assert "The pose sequence has 120 frames; the frame cap kept the first 6." in notes
    assert Image.open(reference_view).size == (256, 256)  # retargeting used the reference's pose
    video, notes, reference_view = client.predict(handle_file(str(EXAMPLES / "person-3.png")), "video", handle_file(str(EXAMPLES / "driving.mp4")),
                                                  None, 0, 5, False, False, low, api_name="/video")
    count, size, fps = _frames(video)
    assert (count, size, fps) == (5, (256, 256), 15.0)  # the driving video's own rate
    assert "The driving video has 60 frames; the frame cap kept the first 5." in notes
    assert (reference_view is None) != space["needs_reference_pose"]  # no retargeting: only a model that takes it uses one


# ---------------------------------------------------------------------------------------------
# load and failures
# ---------------------------------------------------------------------------------------------


def test_eight_clients_at_once(space, portrait_png):
    presets = [f"pose-{i:02d}" for i in range(1, 9)]

    def one(preset):
        return _client(space, "downloads-load").predict(handle_file(str(portrait_png)), "preset", None, None, preset, space["stages"][-1], False, api_name="/pose_transfer")

    start = time.perf_counter()
    with ThreadPoolExecutor(8) as pool:
        outputs = list(pool.map(one, presets))
    elapsed = time.perf_counter() - start
    assert len(outputs) == 8
    images = [np.asarray(Image.open(o[0]).convert("RGB")) for o in outputs]
    assert all(im.shape == (256, 200, 3) for im in images)
    assert len({im.tobytes() for im in images}) == 8  # each request got its own pose's result
    print(f"8 concurrent pose transfers: {elapsed:.1f} s")


def _queue_size(space) -> int:
    """Requests waiting in the Space's queue (not those running): Gradio's ``GET /gradio_api/queue/status``."""
    with urllib.request.urlopen(space["url"] + "gradio_api/queue/status", timeout=30) as r:
        return json.loads(r.read())["queue_size"]


def test_sixteen_clients_at_once_and_the_queue_drains(space):
    """16 `gradio_client` clients, each in its own thread with its own session, call /pose_transfer at once (the
    queue takes 32, 2 run at a time). Every call returns its own picture, the server logs no error meanwhile, the
    queue (sampled every 0.1 s) held several of them at once, and once all have returned it is empty and a new
    request is served about as fast as one on an idle Space (at most 3x its time plus 2 s: the machine is shared)."""
    jobs = [(person, f"pose-{i:02d}") for person in ("person-1.png", "person-3.png") for i in range(1, 9)]  # 16 distinct requests
    resolution = space["stages"][-1]

    def one(job, downloads="downloads-16"):
        person, preset = job
        start = time.perf_counter()
        out = _client(space, downloads).predict(handle_file(str(EXAMPLES / person)), "preset", None, None, preset, resolution, False,
                                                api_name="/pose_transfer")
        return out, time.perf_counter() - start

    _, alone = one(("person-2.png", "pose-01"))  # warm, on the idle Space
    log_start = space["log"].stat().st_size
    sizes, done = [], threading.Event()

    def sample():
        while not done.is_set():
            sizes.append(_queue_size(space))
            time.sleep(0.1)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    start = time.perf_counter()
    try:
        with ThreadPoolExecutor(len(jobs)) as pool:
            results = list(pool.map(one, jobs))
    finally:
        done.set()
        sampler.join()
    elapsed = time.perf_counter() - start
    images = [np.asarray(Image.open(out[0]).convert("RGB")) for out, _ in results]
    assert all(im.shape == (256, 256, 3) for im in images)
    assert len({im.tobytes() for im in images}) == 16  # each request got its own result
    new_log = space["log"].read_text()[log_start:]
    assert "Traceback" not in new_log and "request failed" not in new_log, new_log[-3000:]
    assert max(sizes) >= 4, sizes  # they were in the queue together, not one after another

    assert _queue_size(space) == 0
    _, follow_up = one(("person-4.png", "pose-02"))
    assert follow_up < 3 * alone + 2, (follow_up, alone)
    latencies = sorted(t for _, t in results)
    print(f"16 concurrent pose transfers: {elapsed:.1f} s in all, per client {latencies[0]:.1f}-{latencies[-1]:.1f} s "
          f"(median {latencies[8]:.1f} s); one alone {alone:.2f} s; peak queue {max(sizes)}; after the burst: queue 0, "
          f"a new request in {follow_up:.2f} s")


def _space_process(space):
    """The Space's server process: the child of this test process listening on the fixture's port."""
    import psutil

    for proc in psutil.Process().children(recursive=True):
        try:
            if proc.environ().get("GRADIO_SERVER_PORT") == str(space["port"]):
                return proc
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    raise AssertionError(f"no child process serves port {space['port']}")


@pytest.fixture(scope="module")
def long_sequence(tmp_path_factory):
    """A zip of MAX_FRAMES OpenPose JSON files (the example sequence repeated): a video of minutes on a CPU."""
    path = tmp_path_factory.mktemp("long") / "long-sequence.zip"
    with zipfile.ZipFile(EXAMPLES / "workout_march.zip") as z:
        frames = [z.read(n) for n in sorted(z.namelist()) if n.endswith(".json")]
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for i in range(MAX_FRAMES):
            z.writestr(f"long/frame_{i:05d}_keypoints.json", frames[i % len(frames)])
    return path


# run in its own process, so that killing it closes its connections as a client that goes away does
_GOING_CLIENT = """
import sys, time
from gradio_client import Client, handle_file
url, person, sequence, frames, resolution = sys.argv[1:6]
job = Client(url, verbose=False).submit(handle_file(person), "zip", None, handle_file(sequence), 0, int(frames), True, True, int(resolution),
                                        api_name="/video")
while True:
    status = job.status()
    if status.progress_data and status.progress_data[0].index and status.progress_data[0].length == int(frames):
        print("generating", status.progress_data[0].index, flush=True)
        break
    time.sleep(0.2)
job.result()
"""


SHORT_FRAMES = 60
# what a job's status says once it has a worker (a LOG is a toast sent while it runs)
RUNNING = {Status.PROCESSING, Status.PROGRESS, Status.ITERATING, Status.LOG, Status.FINISHED}


def _generated(job, frames):
    """Frames generated so far by a /video job, from its progress updates (None before generation starts)."""
    progress = job.status().progress_data
    if progress and progress[0].length == frames and progress[0].index:
        return progress[0].index
    return None


def test_a_cancelled_or_disconnected_video_frees_its_worker(space, long_sequence):
    """Both of the Space's two video workers are taken by videos of MAX_FRAMES frames (minutes each). One client
    cancels its job (`Job.cancel()`, Gradio's /cancel); the other is a process that is killed (its connections
    close). Then two new short videos, sent at once, run at the same time (so both workers were free: without the
    fix the disconnected video keeps its worker for minutes) and are served within a bound far below what the
    given-up videos still needed (a quarter of it, from their own measured frame rate); the server log says that
    both stopped and how far they got; and the server process goes idle (under 0.3 CPU-seconds per second over
    3 s), which it would not if either video were still being made in a thread that nobody waits for (what Gradio
    does on a cancel without the fix: the worker is freed, the thread runs on)."""
    resolution = space["stages"][-1]
    person = str(EXAMPLES / "person-1.png")
    log_start = space["log"].stat().st_size
    going = subprocess.Popen([sys.executable, "-c", _GOING_CLIENT, space["url"], person, str(long_sequence), str(MAX_FRAMES), str(resolution)],
                             stdout=subprocess.PIPE, text=True)
    try:
        cancelling = _client(space, "downloads-cancel")
        job = cancelling.submit(handle_file(person), "zip", None, handle_file(str(long_sequence)), 0, MAX_FRAMES, True, True, resolution,
                                api_name="/video")
        deadline = time.monotonic() + 240
        while _generated(job, MAX_FRAMES) is None:
            if job.done():
                job.result()  # raises the Space's error
            assert time.monotonic() < deadline, "the long video did not start generating"
            time.sleep(0.2)
        assert going.stdout.readline().startswith("generating"), "the other client's video did not start generating"
        first, t0 = _generated(job, MAX_FRAMES), time.perf_counter()
        time.sleep(3)
        later, t1 = _generated(job, MAX_FRAMES), time.perf_counter()
        seconds_per_frame = (t1 - t0) / max(1, later - first)
        remaining = (MAX_FRAMES - later) * seconds_per_frame  # what the cancelled video still needed, at its own pace
        assert _queue_size(space) == 0  # both are running: the two workers are taken

        job.cancel()
        going.send_signal(signal.SIGKILL)
        going.wait(timeout=30)

        # two short videos at once: both must run at the same time, in the cancelled one's worker and the
        # disconnected one's (were either still held, the second would wait for the first to finish)
        jobs = [_client(space, f"downloads-after-{person}").submit(
            handle_file(str(EXAMPLES / person)), "zip", None, handle_file(str(EXAMPLES / "workout_march.zip")), 0, SHORT_FRAMES, True, True,
            space["stages"][0], api_name="/video") for person in ("person-3.png", "person-4.png")]
        start = time.perf_counter()
        started, finished = [None, None], [None, None]
        while None in finished:
            assert time.perf_counter() - start < remaining / 4, f"the next videos were not served within {remaining / 4:.0f} s"
            for i, j in enumerate(jobs):
                now = time.perf_counter() - start
                if started[i] is None and j.status().code in RUNNING:
                    started[i] = now
                if finished[i] is None and j.done():
                    finished[i] = now
                    started[i] = now if started[i] is None else started[i]
            time.sleep(0.05)
        print(f"videos given up at {seconds_per_frame * 1000:.0f} ms/frame still needed {remaining:.0f} s; the next two started after "
              f"{started[0]:.1f} s and {started[1]:.1f} s and were served in {finished[0]:.1f} s and {finished[1]:.1f} s")
        assert [_frames(j.result()[0])[0] for j in jobs] == [SHORT_FRAMES, SHORT_FRAMES]
        # they ran at the same time, both workers free: the later one started before the first was half done (had it
        # waited for a worker, it would have started as the first finished; the margin covers the polling's lag)
        assert max(started) < min(finished) / 2, (started, finished)
    finally:
        if going.poll() is None:
            going.kill()
            going.wait()

    # both stopped: each said so in the log, before its last frame
    deadline = time.monotonic() + 30
    while True:
        stopped = re.findall(r"video request stopped, its client has gone .*: (\d+) of (\d+) batches generated", space["log"].read_text()[log_start:])
        if len(stopped) >= 2 or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert len(stopped) == 2, space["log"].read_text()[log_start:][-3000:]
    assert all(int(done) < int(total) == MAX_FRAMES for done, total in stopped), stopped
    # and nothing is still computing them
    server = _space_process(space)
    before = server.cpu_times()
    time.sleep(3)
    after = server.cpu_times()
    busy = (after.user + after.system - before.user - before.system) / 3
    assert busy < 0.3, f"the server still uses {busy:.2f} CPU-seconds per second after both videos were given up"
    print(f"stopped at (frames done, of) {stopped}; server CPU afterwards {busy:.2f} s/s")


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("bad")
    (d / "text.png").write_text("this is not an image")
    (d / "truncated.png").write_bytes((EXAMPLES / "person-1.png").read_bytes()[:300])
    (d / "broken.json").write_text('{"people": [{"pose_keypoints_2d": [1, 2,')
    (d / "nobody.json").write_text(json.dumps({"version": 1.3, "people": []}))
    Image.new("RGB", (256, 256), (200, 220, 240)).save(d / "empty.png")
    (d / "text.zip").write_text("not a zip")
    with zipfile.ZipFile(d / "badjson.zip", "w") as z:
        z.writestr("seq/f_000_keypoints.json", json.dumps({"people": []}))
        z.writestr("seq/f_001_keypoints.json", "{oops")
    (d / "garbage.mp4").write_bytes(b"\x00" * 2048)
    writer = imageio_ffmpeg.write_frames(str(d / "long.mp4"), (64, 64), fps=2, macro_block_size=1)
    writer.send(None)
    for _ in range(2 * (MAX_VIDEO_SECONDS + 5)):
        writer.send(np.zeros((64, 64, 3), np.uint8))
    writer.close()
    (d / "big.png").write_bytes(np.random.default_rng(0).bytes(6 * 1024 * 1024))
    from pgat.inputs import _bomb_png

    (d / "bomb.png").write_bytes(_bomb_png(100_000, 100_000))
    return d


def test_bad_uploads_get_readable_errors_and_the_server_keeps_serving(client, space, bad_files):
    ref = handle_file(str(EXAMPLES / "person-1.png"))
    r = space["stages"][-1]
    d = bad_files
    cases = [
        ((handle_file(str(d / "text.png")), "preset", None, None, "pose-01", r, False), "/pose_transfer",
         "`Reference photo`: the file 'text.png', which is not an image"),
        ((handle_file(str(d / "truncated.png")), "preset", None, None, "pose-01", r, False), "/pose_transfer",
         "`Reference photo`: the file 'truncated.png', a truncated or corrupt PNG image"),
        ((ref, "json", None, handle_file(str(d / "broken.json")), "pose-01", r, False), "/pose_transfer",
         "`Pose JSON`: the file 'broken.json', which is not valid JSON"),
        ((ref, "json", None, handle_file(str(d / "nobody.json")), "pose-01", r, False), "/pose_transfer",
         "`Pose JSON`: OpenPose JSON with an empty 'people' list"),
        ((ref, "photo", handle_file(str(d / "empty.png")), None, "pose-01", r, False), "/pose_transfer",
         "`Pose photo`: the 256x256 pose photo, in which no person was found"),
        ((ref, "photo", None, None, "pose-01", r, False), "/pose_transfer", "no pose photo was uploaded"),
        ((ref, "preset", None, None, "pose-01", 100, False), "/pose_transfer", "100 is not in the list of choices"),
        ((ref, "preset", None, None, "pose-01", r, True, handle_file(str(d / "broken.json"))), "/pose_transfer",
         "`Reference pose JSON`: the file 'broken.json', which is not valid JSON"),
        ((handle_file(str(d / "empty.png")), "preset", None, None, "pose-01", r, True), "/pose_transfer",
         "`Reference photo`: the 256x256 reference photo, in which no person was found; expected a photo of one person for fitting the pose"),
        ((_editor(d / "text.png"), _editor(EXAMPLES / "person-3.png"), "automatic", r), "/tryon",
         "`Person photo`: the file 'text.png', which is not an image"),
        # a 45-byte file declaring 10,000 megapixels: refused from its header, before Gradio decodes it
        ((handle_file(str(d / "bomb.png")), "preset", None, None, "pose-01", r, False), "/pose_transfer",
         "`Reference photo`: the file 'bomb.png', whose header declares 10,000 megapixels; expected at most 67.1 megapixels"),
        ((_editor(EXAMPLES / "person-1.png"), _editor(d / "bomb.png"), "automatic", r), "/tryon",
         r"`Garment photo \(someone wearing it\)`: the file 'bomb.png', whose header declares 10,000 megapixels"),
        ((_editor(EXAMPLES / "person-1.png"), _editor(d / "empty.png"), "automatic", r), "/tryon", "`Garment photo`: the 256x256 garment photo, in which no person was found"),
        ((ref, "zip", None, handle_file(str(d / "text.zip")), 0, 10, True, True, r), "/video", "'text.zip' is not a readable zip file"),
        ((handle_file(str(d / "empty.png")), "zip", None, handle_file(str(EXAMPLES / "workout_march.zip")), 0, 10, True, True, r), "/video",
         "`Reference photo`: the 256x256 reference photo, in which no person was found; expected a photo of one person for retargeting"),
        ((ref, "zip", None, handle_file(str(d / "badjson.zip")), 0, 10, True, True, r), "/video",
         "OpenPose JSON file 'f_001_keypoints.json' is not valid JSON"),
        ((ref, "video", handle_file(str(d / "garbage.mp4")), None, 0, 10, True, True, r), "/video", "Driving video: .* is not a readable video"),
        ((ref, "video", handle_file(str(d / "long.mp4")), None, 0, 10, True, True, r), "/video",
         f"The driving video lasts 25.0 s; this Space takes up to {MAX_VIDEO_SECONDS} s"),
        ((ref, "video", handle_file(str(EXAMPLES / "driving.mp4")), None, 30, 10, True, True, r), "/video",
         "`fps`=30.0 is above the 15 frames per second of the driving video"),
    ]
    for args, api, message in cases:
        with pytest.raises(Exception, match=message) as info:
            client.predict(*args, api_name=api)
        text = str(info.value)
        assert "Traceback" not in text and "/tmp/" not in text, text  # one readable line, no stack trace or temp paths
    # the upload size limit (PGAT_MAX_FILE_SIZE=5mb here) refuses a 6 MB file before any work is done
    with pytest.raises(Exception, match="(?i)exceed|too large|413"):
        client.predict(handle_file(str(d / "big.png")), "preset", None, None, "pose-01", r, False, api_name="/pose_transfer")
    # and it still serves
    result = client.predict(ref, "preset", None, None, "pose-02", r, False, api_name="/pose_transfer")[0]
    assert Image.open(result).size == (256, 256)


# ---------------------------------------------------------------------------------------------
# a real browser
# ---------------------------------------------------------------------------------------------


def test_browser_uses_each_tab_with_an_example(space):
    if not Path(screenshots.CHROMIUM).is_file():
        pytest.fail(f"Chromium is not at {screenshots.CHROMIUM}; `make install` installs Debian's chromium (apt-get install chromium)")
    shots = screenshots.capture(space["url"], space["tmp"] / "screenshots")
    assert set(shots) == {"pose", "tryon", "video"}
    for key, path in shots.items():
        image = Image.open(path)
        assert image.format == "PNG" and image.size[0] == 1280 and image.size[1] > 800, (key, image.size)


# ---------------------------------------------------------------------------------------------
# a model that takes the reference person's own pose (DESIGN.md §1b), through the tabs' handlers
# ---------------------------------------------------------------------------------------------


@pytest.fixture
def space_modules(monkeypatch):
    """The Space's modules, imported the way ``python spaces/app.py`` imports them (its folder first on the path)."""
    import importlib
    import sys

    names = ("model", "ui", "tab_pose_transfer", "tab_video", "tab_tryon")
    saved = {n: sys.modules.pop(n) for n in names if n in sys.modules}
    monkeypatch.syspath_prepend(str(REPO / "spaces"))
    try:
        yield {n: importlib.import_module(n) for n in names}
    finally:
        for n in names:
            sys.modules.pop(n, None)
        sys.modules.update(saved)


class _FakeEstimator:
    """BlazePose's ``return_all`` interface with a fixed answer, counting calls."""

    def __init__(self, keypoints):
        self.keypoints, self.calls = keypoints, 0

    def __call__(self, image, return_all=False):
        from types import SimpleNamespace

        self.calls += 1
        if self.keypoints is None:
            return SimpleNamespace(num_people=0, keypoints=np.tile(np.float32([-1, -1, 0]), (18, 1)))
        return SimpleNamespace(num_people=1, keypoints=self.keypoints)


def test_pose_aware_model_in_the_tabs(space_modules, tmp_path):
    import threading

    import gradio as gr

    from pgat.data.synthetic import SynthHumans
    from pgat.pose import draw_skeleton, write_openpose_json

    torch.manual_seed(0)
    model = PGATModel(resolution=64, bottleneck_channels=16, warp_skips=True, reference_pose=True).eval()
    repo = tmp_path / "pose-aware"
    PGATPipeline(model=model, pose_estimator=None).save_pretrained(repo)
    item = SynthHumans(resolution=128, split="test")[0]
    Image.fromarray(item["reference"]).save(tmp_path / "person.png")
    kps = np.concatenate([item["reference_keypoints"], (item["reference_keypoints"][:, :1] >= 0).astype(np.float32)], axis=1)
    kps[kps[:, 0] < 0] = (-1, -1, 0)

    models = space_modules["model"].Models(str(repo), device="cpu")
    assert models.needs_reference_pose
    for tab in ("tab_pose_transfer", "tab_video"):  # the tabs build with the "reference pose used" outputs shown
        demo = space_modules[tab].create_demo(models)
        shown = [c for c in demo.blocks.values() if getattr(c, "label", None) == "Reference pose used"]
        assert len(shown) == 1 and shown[0].visible, tab
    estimator = _FakeEstimator(kps)
    models.people_counter = lambda: space_modules["model"].PeopleCounter(estimator, threading.Lock())
    transfer = space_modules["tab_pose_transfer"].make_transfer(models)
    person = str(tmp_path / "person.png")

    # estimated from the reference photo, shown as "reference pose used"
    *_, notes, reference_view = transfer(person, "preset", None, None, "pose-03", 64, False)
    assert estimator.calls == 1 and notes == ""
    np.testing.assert_array_equal(np.asarray(reference_view), np.asarray(draw_skeleton(Image.open(person), kps)))
    # from an OpenPose JSON file: nothing estimated, another pose, another result
    moved = kps.copy()
    moved[kps[:, 0] >= 0, :2] += (10, -6)
    write_openpose_json(moved, tmp_path / "reference.json")
    first = transfer(person, "preset", None, None, "pose-03", 64, False)[0]
    given = transfer(person, "preset", None, None, "pose-03", 64, False, str(tmp_path / "reference.json"))
    assert estimator.calls == 2  # only the call without the file
    assert np.abs(np.asarray(given[0], float) - np.asarray(first, float)).mean() > 1
    np.testing.assert_array_equal(np.asarray(given[-1]), np.asarray(draw_skeleton(Image.open(person), moved)))
    # nobody in the reference photo: a readable error that says what to give instead
    estimator.keypoints = None
    with pytest.raises(gr.Error, match="`Reference photo`: the 128x128 reference photo, in which no person was found; expected a photo of one person for this model.*OpenPose JSON file under Advanced"):
        transfer(person, "preset", None, None, "pose-03", 64, False)
    # the video tab: resolved once for the video, also without retargeting
    estimator.keypoints = kps
    video = space_modules["tab_video"].make_video(models)
    calls = estimator.calls
    path, notes, reference_view = video(person, "zip", None, str(EXAMPLES / "workout_march.zip"), 0, 3, True, False, 64)
    assert estimator.calls == calls + 1 and Path(path).is_file() and reference_view.size == (128, 128)
    path, notes, reference_view = video(person, "zip", None, str(EXAMPLES / "workout_march.zip"), 0, 3, True, True, 64, str(tmp_path / "reference.json"))
    assert estimator.calls == calls + 1  # the file was used for retargeting and for the model
    np.testing.assert_array_equal(np.asarray(reference_view), np.asarray(draw_skeleton(Image.open(person), moved)))


def test_tryon_tab_garment_is_the_last_input_and_the_pipelines_category(space_modules, tmp_path):
    """The "Garment" radio (Upper body / Lower body / Full body) is the last input of the try-on button, so API
    callers of the earlier inputs get "upper_body"; its value reaches the pipeline as ``category``."""
    import gradio as gr

    from pgat.data import SynthHumansTryOn
    from pgat.data.synthetic import BOTTOM

    tab = space_modules["tab_tryon"]
    torch.manual_seed(0)
    repo = tmp_path / "tiny"
    flow = AppearanceFlowModel(block_out_channels=(4, 8, 16, 16), sample_size=64, canonical_pose=default_canonical_pose()).eval()
    PGATTryOnPipeline(model=PGATModel(resolution=64, bottleneck_channels=16).eval(), flow=flow, pose_estimator=None).save_pretrained(repo)
    models = space_modules["model"].Models(str(repo), device="cpu")
    assert [v for _, v in tab.GARMENTS] == ["upper_body", "lower_body", "full_body"]
    assert [label for label, _ in tab.GARMENTS] == ["Upper body", "Lower body", "Full body"]
    demo = tab.create_demo(models)
    config = demo.get_config_file()
    (dep,) = [d for d in config["dependencies"] if d.get("api_name") == "tryon"]
    by_id = {c["id"]: c for c in config["components"]}
    labels = [by_id[i]["props"].get("label") for i in dep["inputs"]]
    assert len(labels) == 6 and labels[-1] == "Garment"
    assert labels[:3] == ["Person photo", "Garment photo (someone wearing it)", "Garment masks"] and labels[3].startswith("Resolution") and labels[4] == "Method"
    assert by_id[dep["inputs"][-1]]["props"]["value"] == "upper_body"

    item = SynthHumansTryOn(64, split="test", length=4, category="lower_body")[0]
    poses = {}
    for side in ("person", "garment"):
        kps = np.concatenate([item[f"{side}_keypoints"], (item[f"{side}_keypoints"][:, :1] >= 0).astype(np.float32)], axis=1)
        kps[kps[:, 0] < 0] = (-1, -1, 0)
        poses[Image.fromarray(item[side]).tobytes()] = kps

    class Estimator:
        def __call__(self, image, return_all=False):
            from types import SimpleNamespace

            return SimpleNamespace(num_people=1, keypoints=poses[image.convert("RGB").tobytes()])

    models.people_counter = lambda: space_modules["model"].PeopleCounter(Estimator(), threading.Lock())

    def editor(side):
        mask = item[f"{side}_parsing"] == BOTTOM
        layer = np.zeros((64, 64, 4), np.uint8)
        layer[mask] = (255, 45, 135, 255)
        return {"background": Image.fromarray(item[side]).convert("RGBA"), "layers": [Image.fromarray(layer, "RGBA")], "composite": None}

    tryon = tab.make_tryon(models)
    out = tryon(editor("person"), editor("garment"), "drawn", 64, "keep", "lower_body")
    pipe = models.tryon(64, None)
    direct = pipe(item["person"], item["garment"], item["person_parsing"] == BOTTOM, item["garment_parsing"] == BOTTOM,
                  poses[Image.fromarray(item["person"]).tobytes()], poses[Image.fromarray(item["garment"]).tobytes()], category="lower_body")
    np.testing.assert_array_equal(np.asarray(out[0]), np.asarray(direct.images[0]))
    # without the last input: a top, as before
    top = tryon(editor("person"), editor("garment"), "drawn", 64, "keep")
    np.testing.assert_array_equal(np.asarray(top[0]), np.asarray(tryon(editor("person"), editor("garment"), "drawn", 64, "keep", "upper_body")[0]))
    assert (np.asarray(top[0]) != np.asarray(out[0])).any()
    with pytest.raises(gr.Error, match=r"Garment must be one of \['upper_body', 'lower_body', 'full_body'\], got 'hat'"):
        tryon(editor("person"), editor("garment"), "drawn", 64, "keep", "hat")


def test_video_stops_at_the_next_frame_once_its_client_is_gone(space_modules, tmp_path, monkeypatch):
    """`StopWhenGone` on the video tab's own pipeline, with a check that turns true at its k-th call: generating
    from a pose sequence stops before the 6th frame (exactly 5 decoded), and posing a driving video stops at its
    3rd frame, before any frame is generated; both raise `ClientGone`, a `gr.Error` that Gradio does not print."""
    import gradio as gr

    from pgat.data.synthetic import SynthHumans

    tab = space_modules["tab_video"]
    torch.manual_seed(0)
    repo = tmp_path / "tiny"
    PGATPipeline(model=PGATModel(resolution=64, bottleneck_channels=16).eval(), pose_estimator=None).save_pretrained(repo)
    models = space_modules["model"].Models(str(repo), device="cpu")
    item = SynthHumans(resolution=128, split="test")[0]
    person = Image.fromarray(item["reference"])
    kps = np.concatenate([item["reference_keypoints"], (item["reference_keypoints"][:, :1] >= 0).astype(np.float32)], axis=1)
    kps[kps[:, 0] < 0] = (-1, -1, 0)
    folder = tmp_path / "poses"
    folder.mkdir()
    tab.unpack_sequence(EXAMPLES / "workout_march.zip", folder)

    def gone_at(k):
        calls = []
        return lambda: calls.append(1) or len(calls) >= k

    pipe = models.video(64, None)
    decoded = []
    decode = pipe.model.decode
    monkeypatch.setattr(pipe.model, "decode", lambda *a, **kw: decoded.append(1) or decode(*a, **kw))
    watch = tab.StopWhenGone(pipe, gone_at(6))
    with pytest.raises(tab.ClientGone) as info:
        pipe(person, str(folder), reference_pose=kps, max_frames=40)
    assert watch.generated == 5 and len(decoded) == 5 and watch.posed == 0
    assert isinstance(info.value, gr.Error) and not info.value.print_exception

    pipe = models.video(64, space_modules["model"].PeopleCounter(_FakeEstimator(kps), threading.Lock()))  # as the tab builds it
    watch = tab.StopWhenGone(pipe, gone_at(3))
    decoded.clear()
    with pytest.raises(tab.ClientGone):
        pipe(person, str(EXAMPLES / "driving.mp4"), reference_pose=kps, max_frames=40)
    assert watch.posed == 3 and watch.generated == 0 and not decoded
    # without a gone check (called outside a queued Gradio event) the video is made whole
    pipe = models.video(64, None)
    watch = tab.StopWhenGone(pipe)
    assert len(pipe(person, str(folder), reference_pose=kps, max_frames=8).frames) == 8 and watch.generated == 8


def test_cached_pictures_are_written_whole_and_once(space_modules, tmp_path):
    """`ui.write_cached_images_atomically`, which `launch` applies: a picture Gradio caches reads back whole, no
    staging file is left beside it, and once there it is kept, not written again, so that a client downloading it
    is never served a file truncated by another request writing the same picture."""
    from gradio import processing_utils

    original = processing_utils.save_pil_to_cache
    try:
        space_modules["ui"].write_cached_images_atomically()
        space_modules["ui"].write_cached_images_atomically()  # once is enough: a second call changes nothing
        assert processing_utils.save_pil_to_cache is not original
        image = Image.open(EXAMPLES / "person-1.png").convert("RGB")
        first = processing_utils.save_pil_to_cache(image, str(tmp_path), format="png")
        np.testing.assert_array_equal(np.asarray(Image.open(first).convert("RGB")), np.asarray(image))
        assert [p.name for p in Path(first).parent.iterdir()] == ["image.png"]
        # the same picture again: the file there is not written again (Gradio's own function rewrites it in place)
        whole = Path(first).read_bytes()
        Path(first).write_bytes(b"marker")
        assert processing_utils.save_pil_to_cache(image, str(tmp_path), format="png") == first
        assert Path(first).read_bytes() == b"marker"
        Path(first).write_bytes(whole)
        # a picture given to a component for a file path goes the same way
        from gradio import image_utils

        assert image_utils.format_image(image, "filepath", str(tmp_path), "image", "png") == first
    finally:
        processing_utils.save_pil_to_cache = original
