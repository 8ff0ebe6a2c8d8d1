"""api-inference-community "generic" pipeline of this PGAT repository (written by pgat.hub.write_serving_files).

``PreTrainedPipeline(path)(inputs, **parameters)`` takes the ``inputs`` and ``parameters`` of handler.py's
request and returns the same response; the schema and the logic are in `pgat.serving`.
"""

import os
from typing import Any, Dict

from pgat.serving import PGATServing


class PreTrainedPipeline:
    def __init__(self, path: str = ""):
        self.serving = PGATServing(path or os.path.dirname(os.path.abspath(__file__)))

    def __call__(self, inputs: Dict[str, Any], **parameters: Any) -> Dict[str, Any]:
        return self.serving({"inputs": inputs, "parameters": parameters})
