"""`pgat export-space`: the folder it writes holds everything the Space needs and names nothing outside itself."""

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import gradio
import imageio_ffmpeg
import numpy as np
import pytest
import yaml
from PIL import Image

from pgat import PGATPipeline
from pgat.cli import main
from pgat.export_space import build_wheel

REPO = Path(__file__).resolve().parents[1]


def _space_helpers():
    """spaces/screenshots.py (the Space's own launcher): its free_port and wait_for_server."""
    spec = importlib.util.spec_from_file_location("space_screenshots", REPO / "spaces" / "screenshots.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def pgat_wheel(tmp_path_factory) -> Path:
    """One pgat wheel per test session, built from the checkout."""
    return build_wheel(tmp_path_factory.mktemp("wheels"))


@pytest.fixture(scope="session")
def exported(pgat_wheel, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("export") / "space"
    assert main(["export-space", str(out), "--wheel", str(pgat_wheel)]) == 0
    return out


def test_folder_contents(exported):
    header = yaml.safe_load((exported / "README.md").read_text().split("---\n")[1])
    assert header["sdk"] == "gradio" and header["sdk_version"] == gradio.__version__
    assert header["app_file"] == "app.py" and header["license"] == "apache-2.0" and "models" not in header
    for name in ("app.py", "model.py", "ui.py", "tab_pose_transfer.py", "tab_tryon.py", "tab_video.py", "pgat/__init__.py",
                 "pgat/templates/model_card.md", "examples/person-1.png", "examples/workout_march.zip",
                 "weights/blazepose/pose_detection.tflite", "weights/blazepose/pose_landmark_full.tflite"):
        assert (exported / name).is_file(), name
    assert not (exported / "pgat" / "space").exists()
    requirements = [l for l in (exported / "requirements.txt").read_text().splitlines() if l and not l.startswith("#")]
    assert "torch>=2.1" in requirements and not any("pgat" in l or "gradio" in l for l in requirements)
    pipe = PGATPipeline.from_pretrained(exported / "weights" / "pgat-synth-256", pose_estimator=None)
    assert pipe.available_stages == [64, 128, 256]
    for name in ("app.py", "model.py", "ui.py", "README.md", "requirements.txt"):
        assert str(REPO) not in (exported / name).read_text(), name


def test_hub_id_and_errors(pgat_wheel, tmp_path, capsys):
    out = tmp_path / "hub"
    assert main(["export-space", str(out), "--model", "org/pgat-1024", "--wheel", str(pgat_wheel)]) == 0
    assert yaml.safe_load((out / "README.md").read_text().split("---\n")[1])["models"] == ["org/pgat-1024"]
    assert "'org/pgat-1024'" in (out / "model.py").read_text() and not (out / "weights" / "pgat-synth-256").exists()
    assert main(["export-space", str(out), "--wheel", str(pgat_wheel)]) == 2
    assert "not empty; pass --overwrite" in capsys.readouterr().err
    assert main(["export-space", str(tmp_path / "x"), "--model", str(tmp_path / "missing"), "--wheel", str(pgat_wheel)]) == 2
    assert "no such folder" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------
# what the Hugging Face Space builder does, with nothing but the exported folder
# ---------------------------------------------------------------------------------------------

RESULT_FILE = REPO / "benchmarks" / "results" / "export-space-cpu.json"
TORCH_SPEC = ("torch==2.14.1", "torchvision==0.29.1")


def _tree_mib(folder: Path) -> float:
    total = 0
    for root, _, files in os.walk(folder):
        for name in files:
            path = os.path.join(root, name)
            if not os.path.islink(path):
                total += os.path.getsize(path)
    return total / 2**20


def _run(command, **kwargs) -> str:
    done = subprocess.run([str(c) for c in command], capture_output=True, text=True, **kwargs)
    assert done.returncode == 0, f"{' '.join(map(str, command))} failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


def _picture(path, size) -> np.ndarray:
    """An image file of ``size`` (width, height) that is not blank, as RGB int16."""
    image = Image.open(path)
    assert image.size == tuple(size), (path, image.size)
    pixels = np.asarray(image.convert("RGB"), dtype=np.int16)
    assert pixels.std() > 8 and len(np.unique(pixels.reshape(-1, 3), axis=0)) > 200, f"{path} is blank"
    return pixels


def _video(path):
    """(frame count, (width, height), fps) of an mp4, each frame not blank."""
    gen = imageio_ffmpeg.read_frames(str(path))
    meta = next(gen)
    count = 0
    for frame in gen:
        pixels = np.frombuffer(frame, np.uint8)
        assert pixels.std() > 8, f"frame {count} of {path} is blank"
        count += 1
    return count, tuple(meta["size"]), meta["fps"]


@pytest.mark.slow
def test_space_builds_and_serves_from_the_folder_alone(exported, tmp_path):
    """The Space builder's steps: ``requirements.txt`` alone into a fresh venv, then ``python app.py`` in the folder, driven
    through every api_name with gradio_client. ``PGAT_RECORD_EXPORT_SPACE=1`` writes the timings to ``RESULT_FILE``."""
    from gradio_client import Client, handle_file

    folder_mib = _tree_mib(exported)  # as exported: the server adds __pycache__/ and gradio's ui.pyi later
    base_python = getattr(sys, "_base_executable", None) or sys.executable
    venv, build = tmp_path / "venv", tmp_path / "build"
    build.mkdir()
    shutil.copy2(exported / "requirements.txt", build / "requirements.txt")  # the only file the builder has at install time
    python = venv / "bin" / "python"
    # pip's own settings (the local wheel store and index) stay; nothing of the test's environment or checkout does
    pip_env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP")}
    pip_env["PATH"] = os.pathsep.join([str(venv / "bin")] + [p for p in os.environ.get("PATH", "").split(os.pathsep)
                                                           if p and not p.startswith(str(REPO))])
    home = tmp_path / "home"
    home.mkdir()
    space = _space_helpers()
    port = space.free_port()
    url = f"http://127.0.0.1:{port}/"
    clean_env = {
        "PATH": f"{venv / 'bin'}:/usr/local/bin:/usr/bin:/bin", "HOME": str(home), "LANG": "C.UTF-8", "PYTHONUNBUFFERED": "1",
        "HF_HOME": str(home / "hf"),  # an empty Hub cache, as on a fresh Space (no OpenPose weights: BlazePose from the folder)
        "GRADIO_SERVER_NAME": "127.0.0.1", "GRADIO_SERVER_PORT": str(port), "HF_HUB_OFFLINE": "1",
        "GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_DISABLE_TELEMETRY": "1",
    }

    # 1. the image: a fresh venv, torch pinned first (the local wheels; a newer torch is refused here), then requirements + gradio
    start = time.perf_counter()
    _run([base_python, "-m", "venv", venv])
    _run([python, "-m", "pip", "install", "--quiet", "--no-cache-dir", *TORCH_SPEC], cwd=build, env=pip_env)
    venv_and_torch_s = time.perf_counter() - start
    _run([python, "-m", "pip", "install", "--quiet", "--no-cache-dir", "-r", "requirements.txt", f"gradio=={gradio.__version__}"],
         cwd=build, env=pip_env)
    install_s = time.perf_counter() - start

    # pgat is the folder's own, unpacked copy, not the checkout (not counted in the timings: the builder does not do it)
    where = _run([python, "-c", "import pgat, gradio, torch; print(pgat.__file__); print(gradio.__version__); print(torch.__version__)"],
                 cwd=exported, env=clean_env).split()
    assert Path(where[0]).resolve() == (exported / "pgat" / "__init__.py").resolve(), where
    assert str(REPO) not in where[0] and where[1] == gradio.__version__, where

    # 2. `python app.py` in the folder, as the Space runs it
    log = tmp_path / "space.log"
    with open(log, "w") as out:
        served = time.perf_counter()
        proc = subprocess.Popen([str(python), "app.py"], cwd=exported, env=clean_env, stdout=out, stderr=subprocess.STDOUT)
    try:
        space.wait_for_server(proc, url, 600, log)
        client = Client(url, verbose=False, download_files=str(tmp_path / "downloads"), httpx_kwargs={"timeout": 600})
        examples = exported / "examples"

        # pose transfer, from each pose source (the first answer times the start)
        result, with_skeleton, pose_view, download, notes, _ = client.predict(
            handle_file(str(examples / "person-1.png")), "preset", None, None, "pose-03", 256, False, None, api_name="/pose_transfer")
        first_answer = time.perf_counter()
        answered = {"/pose_transfer"}
        preset = _picture(result, (256, 256))
        np.testing.assert_array_equal(np.asarray(Image.open(download).convert("RGB"), dtype=np.int16), preset)
        assert (_picture(with_skeleton, (256, 256)) != preset).any()  # the skeleton is drawn on it
        drawn = np.asarray(Image.open(pose_view).convert("RGB"))
        assert drawn.shape == (256, 256, 3) and (drawn != drawn[0, 0]).any(axis=2).mean() > 0.005  # a skeleton on the canvas
        results = {"preset": preset}
        for source, photo, pose_json in [("json", None, handle_file(str(examples / "poses" / "pose-08.json"))),
                                         ("photo", handle_file(str(examples / "pose-photo.png")), None)]:
            out = client.predict(handle_file(str(examples / "person-2.png")), source, photo, pose_json, "pose-01", 256, False, None,
                                 api_name="/pose_transfer")
            results[source] = _picture(out[0], (256, 256))
            assert "No person" not in out[4], out[4]
        assert (results["preset"] != results["json"]).mean() > 0.01  # the pose steers the picture

        # try-on, automatic masks (BlazePose's person masks, from the folder's weights/blazepose)
        editor = lambda p: {"background": handle_file(str(p)), "layers": [], "composite": None, "id": None}  # noqa: E731
        result, canonical_person, canonical_garment, warped, mask, notes = client.predict(
            editor(examples / "person-1.png"), editor(examples / "person-3.png"), "automatic", 256, api_name="/tryon")
        answered.add("/tryon")
        _picture(result, (256, 256))
        for path in (canonical_person, canonical_garment, warped):
            _picture(path, (256, 256))
        covered = (np.asarray(Image.open(mask).convert("L")) > 127).mean()
        assert 0.01 < covered < 0.9, covered  # the garment went somewhere, not everywhere

        # video, from a pose-sequence zip and from a driving video
        video, notes, _ = client.predict(handle_file(str(examples / "person-1.png")), "zip", None, handle_file(str(examples / "workout_march.zip")),
                                         0, 6, True, True, 256, None, api_name="/video")
        answered.add("/video")
        assert _video(video) == (6, (256, 256), 30.0) and "kept the first 6" in notes
        video, notes, _ = client.predict(handle_file(str(examples / "person-3.png")), "video", handle_file(str(examples / "driving.mp4")), None,
                                         0, 5, False, False, 256, None, api_name="/video")
        assert _video(video) == (5, (256, 256), 15.0)

        # every api_name the Space exposes was driven (a new one must be added here)
        named = set(client.view_api(print_info=False, return_format="dict")["named_endpoints"])
        assert named == answered, named
        assert proc.poll() is None
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    timings = {
        "folder_mib": round(folder_mib, 2),
        "venv_mib": round(_tree_mib(venv), 1),
        "venv_and_torch_s": round(venv_and_torch_s, 1),
        "install_s": round(install_s, 1),
        "server_start_to_first_answer_s": round(first_answer - served, 1),
        "install_to_first_answer_s": round(install_s + first_answer - served, 1),
    }
    print("\nexport-space, as the Space builder runs it: " + ", ".join(f"{k} {v}" for k, v in timings.items()))
    if os.environ.get("PGAT_RECORD_EXPORT_SPACE") == "1":
        sys.path.insert(0, str(REPO / "benchmarks"))
        from model_cost import machine

        record = {
            "what": "pgat export-space, then what the Space builder does: a fresh venv, torch pinned first (the local wheels), "
                    "`pip install -r requirements.txt gradio==<sdk_version>` with only requirements.txt in the folder, "
                    "`python app.py` in the exported folder; the first answer is /pose_transfer at 256² (preset pose); "
                    "install_to_first_answer_s = install_s + server_start_to_first_answer_s",
            "machine": machine(), "load_average_1min_after": os.getloadavg()[0],
            "gradio": gradio.__version__, "torch": where[2], "pip_sources": "local disk (wheel store and file:// index), --no-cache-dir",
            **timings,
        }
        RESULT_FILE.write_text(json.dumps(record, indent=1) + "\n")
