"""The one place the Space loads models: pipelines per resolution stage, and the pose estimator.

Settings (environment variables):

- ``PGAT_MODEL``: a Hub id or a local PGAT repository; default the embedded ``weights/pgat-synth-256`` of a
  source checkout (`pgat.pipelines.utils.model_or_default`).
- ``PGAT_DEVICE``: a torch device; default ``cuda`` when available, else ``cpu``.

Decisions:

- Each stage's generator (and the try-on flow network) is loaded once, on first use, and kept: a Space
  serves many requests, and a stage is the unit a user picks.
- The tabs build a light pipeline object around the cached networks for each request (cheap: no weights
  are touched), with a `PeopleCounter` as its pose estimator, so that each request can say how many people
  each of its photos showed without sharing that record with other requests.
- One BlazePose/OpenPose estimator serves the whole Space behind a lock: its interpreter is not
  thread-safe, and estimation is a small part of a request's time.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np
import torch

from pgat import PGATPipeline, PGATTryOnPipeline, PGATVideoPipeline
from pgat.pipelines.utils import model_or_default

MODEL_ENV = "PGAT_MODEL"
DEVICE_ENV = "PGAT_DEVICE"


def default_device() -> str:
    return os.environ.get(DEVICE_ENV) or ("cuda" if torch.cuda.is_available() else "cpu")


class PeopleCounter:
    """A pose estimator for one request: ``image -> (18, 3)`` of the largest person, recording how many
    people each image showed (``counts``, in call order).

    Args:
        estimator: a `pgat.pose_estimation.PoseEstimator` (called with ``return_all=True``).
        lock (`threading.Lock`): held around each call.
    """

    def __init__(self, estimator, lock: threading.Lock):
        self.estimator = estimator
        self.lock = lock
        self.counts: List[int] = []

    def __call__(self, image) -> np.ndarray:
        with self.lock:
            found = self.estimator(image, return_all=True)
        self.counts.append(found.num_people)
        return found.keypoints


class Models:
    """The Space's models.

    Args:
        model (`str`, *optional*): Hub id or local folder; defaults to ``$PGAT_MODEL``, else the embedded model.
        device (`str`, *optional*): defaults to ``$PGAT_DEVICE``, else cuda when available, else cpu.
    """

    def __init__(self, model: Optional[str] = None, device: Optional[str] = None):
        self.model_id = model_or_default(model or os.environ.get(MODEL_ENV))
        self.device = device or default_device()
        self._lock = threading.Lock()
        self._estimator_lock = threading.Lock()
        self._pipelines: Dict[int, PGATPipeline] = {}
        self._flow = None
        self._estimator = None
        first = self._load(None)  # the highest stage: tells which stages the repository has
        self.stages: List[int] = first.available_stages

    @property
    def default_resolution(self) -> int:
        return self.stages[-1]

    @property
    def needs_reference_pose(self) -> bool:
        """Whether the default stage's model takes the reference person's own pose (``PGATModel.needs_reference_pose``):
        the tabs then show the reference skeleton they used. Every request still asks its own stage's model."""
        return self._load(self.default_resolution).model.needs_reference_pose

    @property
    def name(self) -> str:
        path = Path(self.model_id)
        return path.name if path.is_dir() else self.model_id

    def _load(self, resolution: Optional[int]) -> PGATPipeline:
        with self._lock:
            if resolution is not None and resolution in self._pipelines:
                return self._pipelines[resolution]
            pipe = PGATPipeline.from_pretrained(self.model_id, resolution=resolution, pose_estimator=None).to(self.device)
            self._pipelines[pipe.resolution] = pipe
            return pipe

    def check_resolution(self, resolution) -> int:
        """The stage asked for, as an int, or a ValueError listing the stages there are."""
        try:
            value = int(resolution)
        except (TypeError, ValueError):
            value = None
        if value not in self.stages:
            raise ValueError(f"Resolution must be one of the model's stages {self.stages}, got {resolution!r}")
        return value

    def people_counter(self) -> PeopleCounter:
        """A fresh per-request estimator around the shared one (loaded on first use)."""
        with self._lock:
            if self._estimator is None:
                from pgat.pose_estimation import load_estimator

                self._estimator = load_estimator("auto")
        return PeopleCounter(self._estimator, self._estimator_lock)

    # -- pipelines for one request -------------------------------------------------------------
    def pose_transfer(self, resolution) -> PGATPipeline:
        """The pose-transfer pipeline of a stage (poses reach it as keypoints or JSON: no estimator)."""
        return self._load(self.check_resolution(resolution))

    def video(self, resolution, estimator) -> PGATVideoPipeline:
        base = self._load(self.check_resolution(resolution))
        return PGATVideoPipeline(model=base.model, pose_estimator=estimator)

    def tryon(self, resolution, estimator) -> PGATTryOnPipeline:
        base = self._load(self.check_resolution(resolution))
        with self._lock:
            if self._flow is None:
                # the repository's flow/ folder, read the way PGATTryOnPipeline reads it
                self._flow = PGATTryOnPipeline.from_pretrained(self.model_id, resolution=base.resolution, pose_estimator=None).flow.to(self.device)
        return PGATTryOnPipeline(model=base.model, flow=self._flow, pose_estimator=estimator)
