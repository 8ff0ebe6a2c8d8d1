"""Inference Endpoints custom handler of this PGAT repository (written by pgat.hub.write_serving_files).

Request:  {"inputs": {"reference_image": "<base64 PNG/JPEG>", "target_pose": <OpenPose JSON | (18, 2|3) list | base64 image>},
           "parameters": {"resolution": 256, "align_pose": true}}
Response: {"image": "<base64 PNG>", "target_pose": [[x, y, c], ...]}, or {"error": "...", "field": "..."}; a model that
takes the reference person's own pose also gets "inputs": {"reference_pose": ...} (estimated when not sent) and returns it.
Videos: "parameters": {"task": "video"} with "inputs": {"pose_sequence": [...]}. Virtual try-on (a repository with
flow/): "parameters": {"task": "tryon"} with "inputs": {"person_image": ..., "garment_image": ...}. The full schema and the logic
are in `pgat.serving`; this file only connects the endpoint to it. Edit it freely: pgat keeps a handler.py
that no longer carries the line above.
"""

import os
from typing import Any, Dict

from pgat.serving import PGATServing


class EndpointHandler:
    def __init__(self, path: str = ""):
        self.serving = PGATServing(path or os.path.dirname(os.path.abspath(__file__)))

    def __call__(self, data: Dict[str, Any]) -> Dict[str, Any]:
        return self.serving(data)
