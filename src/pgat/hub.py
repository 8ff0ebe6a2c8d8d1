"""A PGAT model repository: one folder per resolution stage (``../DESIGN.md`` §2).

::

    model_index.json            # pipeline class, stages present, components
    README.md                   # model card
    stage-0064/config.json  stage-0064/diffusion_pytorch_model.safetensors
    stage-0128/ ...
    flow/ ...                   # try-on appearance-flow network
    handler.py  pipeline.py  requirements.txt   # deployable as it is (write_serving_files, pgat.serving)

Weights files keep diffusers' standard name (``diffusion_pytorch_model.safetensors``) so that
``PGATModel.from_pretrained(repo, subfolder="stage-0256")`` works as for any diffusers model.

``resolve_stage`` finds (and, for a Hub id, downloads only) the folder of one stage: a user who wants
256² never downloads the 1024² weights.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Union

from .stages import RESOLUTIONS, check_resolution, stage_folder

MODEL_INDEX = "model_index.json"
PIPELINE_CLASS = "PGATPipeline"
_STAGE_RE = re.compile(r"^stage-(\d{4})$")


def list_stages(repo_dir: Union[str, os.PathLike]) -> List[int]:
    """Resolutions whose stage folder (with a ``config.json``) exists in a local repository, ascending."""
    repo = Path(repo_dir)
    if not repo.is_dir():
        return []
    found = []
    for child in repo.iterdir():
        m = _STAGE_RE.match(child.name)
        if m and int(m.group(1)) in RESOLUTIONS and (child / "config.json").is_file():
            found.append(int(m.group(1)))
    return sorted(found)


def read_model_index(repo_dir: Union[str, os.PathLike]) -> Dict:
    path = Path(repo_dir) / MODEL_INDEX
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"'{path}' is not valid JSON: {e}") from None


def write_model_index(repo_dir: Union[str, os.PathLike], extra: Optional[Dict] = None) -> Dict:
    """(Re)write ``model_index.json`` from the stage folders present, keeping other keys already there."""
    import diffusers

    from . import __version__

    repo = Path(repo_dir)
    repo.mkdir(parents=True, exist_ok=True)
    index = read_model_index(repo)
    index.update(
        {
            "_class_name": PIPELINE_CLASS,
            "_diffusers_version": diffusers.__version__,
            "pgat_version": __version__,
            "stages": list_stages(repo),  # folder of stage r: stage_folder(r), e.g. "stage-0256"
        }
    )
    index.update(extra or {})
    (repo / MODEL_INDEX).write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")
    return index


def save_stage(model, repo_dir: Union[str, os.PathLike], **save_kwargs) -> Path:
    """Save a `PGATModel` into its stage folder of ``repo_dir`` and update ``model_index.json`` and the
    serving files (`write_serving_files`). Other stages already in the repository are kept."""
    folder = Path(repo_dir) / stage_folder(model.config.resolution)
    model.save_pretrained(folder, safe_serialization=True, **save_kwargs)
    write_model_index(repo_dir)
    write_serving_files(repo_dir)
    return folder


SERVING_FILES = ("handler.py", "pipeline.py", "requirements.txt")
_SERVING_MARK = "pgat.hub.write_serving_files"


def write_serving_files(repo_dir: Union[str, os.PathLike]) -> List[Path]:
    """Write ``handler.py`` (Inference Endpoints ``EndpointHandler``), ``pipeline.py`` (api-inference-community
    ``PreTrainedPipeline``) and ``requirements.txt`` (``pgat``) into a repository, so that it deploys as it is
    (`pgat.serving` holds the logic; the files are thin templates from ``pgat/templates``).

    A file that is already there and no longer carries the line naming this function (a handler the user
    edited) is kept, with a warning; one this function wrote is brought up to date.

    Returns:
        `List[Path]`: the files written or already up to date.
    """
    from diffusers.utils import logging

    from . import __version__

    repo = Path(repo_dir)
    repo.mkdir(parents=True, exist_ok=True)
    done = []
    for name in SERVING_FILES:
        text = (model_card_template().parent / name).read_text().replace("{pgat_version}", __version__)
        path = repo / name
        if path.is_file():
            current = path.read_text(errors="replace")
            if current != text and _SERVING_MARK not in current:
                logging.get_logger(__name__).warning(f"'{path}' was edited by hand (it does not name {_SERVING_MARK}): kept as it is")
                continue
        if not path.is_file() or path.read_text(errors="replace") != text:
            path.write_text(text)
        done.append(path)
    return done


MODEL = "pretrained_model_name_or_path"  # the argument a refused repository is named by (the CLI's --model)


def missing_stage_error(where: str, resolution: int, present: Sequence[int]) -> ValueError:
    from .inputs import InputError

    have = ", ".join(str(r) for r in present) if present else "none"
    return InputError("resolution", f"{resolution}, a stage that {where} does not have", f"one of its stages: {have}")


def model_card_template() -> Path:
    """The project's model card template (``model_card.md`` at the repository root, shipped in the package)."""
    return Path(__file__).resolve().parent / "templates" / "model_card.md"


def write_model_card(
    repo_dir: Union[str, os.PathLike],
    repo_id: Optional[str] = None,
    eval_results: Optional[list] = None,
    tags: Sequence[str] = (),
    datasets: Optional[Sequence[str]] = None,
    **template_kwargs,
) -> Path:
    """Fill ``model_card.md`` for the stages present in ``repo_dir`` and write it as ``README.md``.

    Args:
        repo_dir (`str`): a local model repository (stage folders already saved).
        repo_id (`str`, *optional*): the Hub id, shown in the usage snippet.
        eval_results (`list[huggingface_hub.EvalResult]`, *optional*): metrics for the card's metadata.
        template_kwargs: ``training_summary``, ``training_command``, ``evaluation_table``, ``limitations``, ...
    """
    from huggingface_hub import ModelCard, ModelCardData
    from safetensors import safe_open

    repo = Path(repo_dir)
    stages = []
    for r in list_stages(repo):
        folder = repo / stage_folder(r)
        n = 0
        for f in folder.glob("*.safetensors"):
            with safe_open(f, framework="pt") as st:
                n += sum(_numel(st.get_slice(k).get_shape()) for k in st.keys())
        stages.append({"resolution": r, "folder": stage_folder(r), "parameters": f"{n / 1e6:.2f} M"})
    card_data = ModelCardData(
        library_name="pgat",
        license="apache-2.0",
        pipeline_tag="image-to-image",
        tags=["pose-transfer", "pgat", "image-to-image", *tags],
        datasets=list(datasets) if datasets else None,
        model_name=repo_id or repo.name,
        eval_results=eval_results,
    )
    card = ModelCard.from_template(
        card_data,
        template_path=str(model_card_template()),
        model_id=repo_id or repo.name,
        repo_id=repo_id,
        stages=stages,
        max_resolution=stages[-1]["resolution"] if stages else None,
        **template_kwargs,
    )
    path = repo / "README.md"
    card.save(path)
    return path


def _numel(shape) -> int:
    n = 1
    for s in shape:
        n *= int(s)
    return n


def resolve_stage(
    pretrained_model_name_or_path: Union[str, os.PathLike],
    resolution: Optional[int] = None,
    revision: Optional[str] = None,
    cache_dir: Optional[Union[str, os.PathLike]] = None,
    local_files_only: bool = False,
    token: Optional[Union[str, bool]] = None,
    extra_patterns: Sequence[str] = (),
):
    """Find the folder of one stage of a PGAT repository, downloading only what that stage needs.

    Args:
        pretrained_model_name_or_path (`str`): a local repository folder or a Hub id (``org/pgat-1024``).
        resolution (`int`, *optional*): the stage; the highest present when omitted.
        revision, cache_dir, local_files_only, token: as in ``huggingface_hub.snapshot_download``; the
            ``HF_HUB_OFFLINE`` variable is honoured by huggingface_hub itself.
        extra_patterns (`Sequence[str]`, *optional*): more files to fetch with it (e.g. ``"flow/*"``).

    Returns:
        ``(repo_dir: Path, resolution: int)``; the stage's folder is ``repo_dir / stage_folder(resolution)``.
    """
    if resolution is not None:
        check_resolution(resolution)
    local = Path(pretrained_model_name_or_path)
    if local.is_dir():
        present = list_stages(local)
        where = f"'{local}'"
    else:
        from huggingface_hub import hf_hub_download

        repo_id = str(pretrained_model_name_or_path)
        kwargs = dict(revision=revision, cache_dir=cache_dir, local_files_only=local_files_only, token=token)
        try:
            index_file = hf_hub_download(repo_id, MODEL_INDEX, **kwargs)
        except Exception as e:  # not found, offline without a cached copy, bad id: one message for the user
            from .inputs import MissingInputError

            raise MissingInputError(
                MODEL, f"{repo_id!r}, which is neither a local folder nor a reachable Hub repository with a {MODEL_INDEX} ({type(e).__name__}: {e})",
                "a local PGAT repository folder, or a Hub id that can be downloaded (or is in the local cache)",
            ) from e
        present = sorted(int(r) for r in json.loads(Path(index_file).read_text()).get("stages", []))
        where = f"the Hub repository {repo_id!r}"
    if not present:
        from .inputs import InputError

        raise InputError(MODEL, f"{where}, which has no stage folders", "a PGAT repository: stage-0064 ... stage-1024 folders, each with a config.json")
    resolution = present[-1] if resolution is None else resolution
    if resolution not in present:
        raise missing_stage_error(where, resolution, present)
    if local.is_dir():
        return local, resolution
    from huggingface_hub import snapshot_download

    patterns = [MODEL_INDEX, "README.md", f"{stage_folder(resolution)}/*", *extra_patterns]
    repo_dir = snapshot_download(repo_id, allow_patterns=patterns, **kwargs)
    return Path(repo_dir), resolution


WEIGHTS_NAME = "diffusion_pytorch_model.safetensors"


def load_model_folder(folder: Union[str, os.PathLike], model_class=None, torch_dtype=None):
    """Load a model saved with ``save_pretrained`` after checking what is there, so a broken repository gives
    one clear error instead of a deep traceback: a missing file, a config of another model class, a weights
    file that is corrupt or truncated.

    Args:
        folder (`str`): a stage folder (``stage-0256``) or ``flow``.
        model_class (*optional*): defaults to `PGATModel`.
        torch_dtype (`torch.dtype`, *optional*): load the weights in this dtype.
    """
    from safetensors import SafetensorError, safe_open

    from .inputs import InputError, MissingInputError

    if model_class is None:
        from .models import PGATModel as model_class
    folder = Path(folder)
    missing = [n for n in ("config.json", WEIGHTS_NAME) if not (folder / n).is_file()]
    if missing:
        raise MissingInputError(MODEL, f"'{folder}', which is not a complete {model_class.__name__} folder: missing {', '.join(missing)}",
                                f"a folder with config.json and {WEIGHTS_NAME}")
    try:
        config = json.loads((folder / "config.json").read_text())
    except json.JSONDecodeError as e:
        raise InputError(MODEL, f"'{folder / 'config.json'}', which is not valid JSON ({e})", f"the config.json of a {model_class.__name__}") from None
    found = config.get("_class_name") if isinstance(config, dict) else None
    if found != model_class.__name__:
        raise InputError(MODEL, f"'{folder / 'config.json'}', the config of a {found!r}", f"the config of a {model_class.__name__!r}")
    try:
        with safe_open(str(folder / WEIGHTS_NAME), framework="pt") as f:
            for key in f.keys():
                f.get_slice(key)
    except (SafetensorError, OSError, ValueError) as e:
        raise InputError(MODEL, f"'{folder / WEIGHTS_NAME}', which is corrupt or truncated ({e})", "a complete safetensors file") from None
    try:
        return model_class.from_pretrained(folder, torch_dtype=torch_dtype)
    except (RuntimeError, ValueError, OSError) as e:  # shapes that do not fit the config, unreadable tensors
        raise InputError(MODEL, f"'{folder}', which could not be loaded as a {model_class.__name__} ({e})", "the weights its config describes") from None
