"""Screenshots of the Space's three tabs, each showing the output of its first example, taken in headless Chromium.

    python spaces/screenshots.py --out docs/space        # on the embedded model (or $PGAT_MODEL)

``serve`` starts the Space the way users do (``python spaces/app.py``, on 127.0.0.1 and a free port) and
``capture`` drives the page; ``tests/test_space.py`` uses both. Chromium is Debian's (``apt-get install
chromium``), launched by playwright with ``executable_path``: playwright's own browser download is not needed.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Dict, Iterator, Optional

HERE = Path(__file__).resolve().parent
CHROMIUM = os.environ.get("PGAT_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run",
]
# tab label, the examples' element id, what shows that the output arrived
TABS = [
    ("Pose transfer", "pose", "#pose-result img"),
    ("Virtual try-on", "tryon", "#tryon-result img"),
    ("Video", "video", "#video-result video"),
]
ERROR_TOAST = '[data-testid="toast-body"].error'


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_server(proc: subprocess.Popen, url: str, timeout: float, log: Path) -> None:
    """Return once ``url`` answers 200; a RuntimeError with the end of ``log`` if ``proc`` exits or ``timeout`` passes first."""
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"the Space exited with code {proc.returncode} before serving:\n{log.read_text()[-4000:]}")
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"the Space did not answer at {url} within {timeout:.0f} s:\n{log.read_text()[-4000:]}")
        time.sleep(0.5)


@contextlib.contextmanager
def serve(model: Optional[str] = None, env: Optional[Dict[str, str]] = None, timeout: float = 300.0, log: Optional[Path] = None) -> Iterator[str]:
    """Run ``python spaces/app.py`` on 127.0.0.1 and a free port; yield its URL; stop it on exit.

    Args:
        model (`str`, *optional*): ``PGAT_MODEL`` for the Space (default: its own default).
        env (`dict`, *optional*): more environment variables.
        timeout (`float`): seconds to wait for the server to answer.
        log (`Path`, *optional*): where the server's output goes (default: a temporary file).
    """
    port = free_port()
    environ = dict(os.environ, GRADIO_SERVER_NAME="127.0.0.1", GRADIO_SERVER_PORT=str(port), GRADIO_ANALYTICS_ENABLED="False",
                   HF_HUB_OFFLINE="1", HF_HUB_DISABLE_TELEMETRY="1", PYTHONUNBUFFERED="1")
    if model is not None:
        environ["PGAT_MODEL"] = str(model)
    environ.update(env or {})
    log = Path(log) if log else Path(tempfile.mkstemp(prefix="pgat-space-", suffix=".log")[1])
    url = f"http://127.0.0.1:{port}/"
    with open(log, "w") as out:
        # started from a neutral folder: the Space must not depend on the caller's working directory
        proc = subprocess.Popen([sys.executable, str(HERE / "app.py")], env=environ, stdout=out, stderr=subprocess.STDOUT,
                                cwd=tempfile.gettempdir())
        try:
            wait_for_server(proc, url, timeout, log)
            yield url
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _check_pose_controls(page) -> None:
    """The pose tab's controls that run in the page: the overlay toggle and the preset gallery."""
    page.get_by_text("Show the target skeleton on the result").click()
    page.wait_for_selector("#pose-result-skeleton img", state="visible", timeout=30_000)
    assert not page.locator("#pose-result").is_visible(), "the overlay toggle left the plain result visible"
    page.get_by_text("Show the target skeleton on the result").click()
    page.wait_for_selector("#pose-result img", state="visible", timeout=30_000)
    page.locator("img[src*='pose-05']").first.click()  # a gallery thumbnail picks that preset
    page.wait_for_function(
        "() => [...document.querySelectorAll('input')].some(i => i.getAttribute('aria-label') === 'Preset pose' && i.value === 'pose-05')",
        timeout=30_000,
    )


def capture(url: str, out_dir: Path, timeout_s: float = 240.0, width: int = 1280, height: int = 900) -> Dict[str, Path]:
    """Open the Space, run each tab's first example, wait for its output and screenshot the page.

    Raises `AssertionError` when an error toast appears or no output arrives within ``timeout_s`` per tab. On the
    pose tab it also checks the skeleton-overlay toggle and that a click on the preset gallery picks that preset.
    Returns the screenshot of each tab (``pose``, ``tryon``, ``video``).
    """
    from playwright.sync_api import sync_playwright

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    shots = {}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": width, "height": height})
            page.goto(url, wait_until="networkidle")
            for label, key, output in TABS:
                page.get_by_role("tab", name=label).click()
                page.locator(f"#{key}-examples [data-testid='dataset-cell-0-0']").click()
                # the output, or an error toast, whichever comes first
                page.wait_for_function(
                    """([output, error]) => {
                        const el = document.querySelector(output);
                        const ready = el && (el.tagName === 'VIDEO' ? el.readyState >= 1 && el.duration > 0 : el.complete && el.naturalWidth > 0);
                        return ready || document.querySelector(error) !== null;
                    }""",
                    arg=[output, ERROR_TOAST], timeout=timeout_s * 1000,
                )
                errors = page.locator(ERROR_TOAST)
                assert errors.count() == 0, f"{label}: the Space showed an error: {errors.first.inner_text()}"
                if key == "tryon":  # show the intermediates too
                    page.get_by_text("Intermediates", exact=True).click()
                    page.wait_for_function("() => document.querySelectorAll('img').length > 0")
                    page.wait_for_timeout(1000)
                else:
                    page.wait_for_timeout(500)  # let the layout settle
                shots[key] = out_dir / f"{key}.png"
                page.screenshot(path=str(shots[key]), full_page=True)
                if key == "pose":
                    _check_pose_controls(page)
        finally:
            browser.close()
    return shots


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="docs/space", help="folder for pose.png, tryon.png, video.png (default: docs/space)")
    p.add_argument("--model", default=None, help="PGAT_MODEL for the Space (default: its own default)")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as cache:
        # fresh example outputs: the screenshots show this model's results, not a cache of an older one
        with serve(args.model, env={"GRADIO_EXAMPLES_CACHE": cache}) as url:
            for key, path in capture(url, Path(args.out)).items():
                print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
