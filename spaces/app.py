"""PGAT Space: pose transfer, virtual try-on and video, on the embedded default model.

    python spaces/app.py          # http://127.0.0.1:7860 (GRADIO_SERVER_NAME / GRADIO_SERVER_PORT to change)

This file only assembles the tabs; each lives in its own module (``tab_*.py``, each also runs alone), the
models in ``model.py`` (``PGAT_MODEL``, ``PGAT_DEVICE``) and the shared parts in ``ui.py`` (limits:
``PGAT_QUEUE_SIZE``, ``PGAT_CONCURRENCY``, ``PGAT_MAX_FILE_SIZE``, ``PGAT_MAX_VIDEO_SECONDS``, ``PGAT_MAX_FRAMES``).
"""

from __future__ import annotations

from pgat.cpu_memory import reuse_freed_memory

# first, while this is the only thread: gradio's worker threads, made later, then share the one malloc arena that
# keeps freed memory, and a 512²-1024² forward on the CPU stops page-faulting its feature maps (pgat.cpu_memory)
reuse_freed_memory()

import gradio as gr  # noqa: E402

import tab_pose_transfer  # noqa: E402
import tab_tryon  # noqa: E402
import tab_video  # noqa: E402
from model import Models  # noqa: E402
from ui import examples_cache, launch  # noqa: E402

DESCRIPTION = """# PGAT: pose-guided appearance transfer
One photo of a person + a target pose → the same person, in the same clothes, in that pose, in one forward pass
(*Pose-Guided High-Resolution Appearance Transfer via Progressive Training*). Model: **{name}** (stages {stages}) on **{device}**.
The embedded default model was trained for under an hour on a CPU, on SynthHumans (the project's procedural people) only: its people
take the target pose but stay soft, even on pictures like the examples, and it has never seen a real photograph (see its model card).
"""


def create_demo(models: Models) -> gr.Blocks:
    with gr.Blocks(title="PGAT: pose transfer, try-on, video") as demo:
        gr.Markdown(DESCRIPTION.format(name=models.name, stages=", ".join(f"{r}²" for r in models.stages), device=models.device))
        with gr.Tabs():
            with gr.Tab("Pose transfer", id="pose-transfer"):
                tab_pose_transfer.create_demo(models)
            with gr.Tab("Virtual try-on", id="tryon"):
                tab_tryon.create_demo(models)
            with gr.Tab("Video", id="video"):
                tab_video.create_demo(models)
    return demo


if __name__ == "__main__":
    models = Models()
    examples_cache(models.model_id)
    launch(create_demo(models))
