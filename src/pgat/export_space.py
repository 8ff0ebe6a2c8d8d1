"""``pgat export-space DIR``: a self-contained Hugging Face Space folder, ready to upload.

    pgat export-space out/space                       # the embedded model, copied into the folder
    pgat export-space out/space --model org/pgat-1024 # a Hub model, downloaded by the Space at start
    hf upload USER/SPACE out/space . --repo-type space

What the folder holds:

```
README.md            # the Space's YAML header: sdk gradio, sdk_version = this gradio, python_version, license, models
requirements.txt     # pgat's own dependencies (from its wheel's metadata); gradio comes from sdk_version
app.py  model.py  ui.py  tab_*.py  examples/       # the Space (spaces/ of the checkout)
pgat/  pgat-<version>.dist-info/                   # the pgat wheel, unpacked (as `pip install --target` would)
weights/<model>/     # the model repository in the Hub layout (not when --model is a Hub id)
weights/blazepose/   # BlazePose's two .tflite files (and their licence)
```

Decisions:

- **pgat is vendored, not pip-installed.** The Space builder installs ``requirements.txt`` *before* the repository
  is copied into the image (``RUN --mount=target=/tmp/requirements.txt,source=requirements.txt pip install -r
  /tmp/requirements.txt gradio[oauth,mcp]==<sdk_version> ...``, then ``COPY ./ /home/user/app``): only that one
  file is there, so a line naming a wheel inside the folder (``./wheels/pgat-0.1.0-py3-none-any.whl``) fails the
  build. The wheel is therefore unpacked next to ``app.py`` (Python puts the script's folder first on the path, so
  ``import pgat`` finds it, with its ``dist-info`` for the version), and ``requirements.txt`` lists its
  dependencies, all on PyPI.
- **Where the Space sources come from.** They ship inside the package as ``pgat/space/`` (in a checkout,
  ``src/pgat/space`` is a link to ``spaces/``; the wheel carries the files), so the command works the same from a
  checkout, an editable install and an installed wheel. The wheel is built from the checkout when there is one
  (``pip wheel --no-deps``, in a temporary copy: the checkout gets no ``build/``), else the installed
  distribution's own files are copied; ``--wheel`` reuses a built one.
- **Settings.** ``model.py``, which both ``app.py`` and each ``tab_*.py`` run alone import, gets a first block
  that sets ``PGAT_MODEL`` (the folder's ``weights/<model>``, or the Hub id) and ``PGAT_BLAZEPOSE_DIR`` (the
  folder's ``weights/blazepose``) with ``os.environ.setdefault``, relative to its own file: a variable set in the
  Space's settings still wins, and nothing outside the folder is named.
"""

from __future__ import annotations

import argparse
import email.parser
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import List, Optional, Tuple, Union

import yaml

SPACE_FILES: Tuple[str, ...] = ("app.py", "model.py", "ui.py", "tab_pose_transfer.py", "tab_tryon.py", "tab_video.py")
SETTINGS_MARK = "# -- written by `pgat export-space`"
_HEADER = re.compile(r"\A---\n(.*?)\n---\n", re.S)


def _followed(path: Path) -> Path:
    """``path``, or the folder it names when it is a symbolic link checked out as a plain file (git with
    ``core.symlinks=false``, or a copy that dropped links, writes the link's target as the file's only text)."""
    if path.is_file() and not path.is_symlink() and path.stat().st_size < 256:
        try:
            target = (path.parent / path.read_text().strip()).resolve()
        except (OSError, UnicodeDecodeError, ValueError):
            return path
        if target.is_dir():
            return target
    return path


def space_sources() -> Path:
    """The Space's sources shipped with the package (``pgat/space``; ``spaces/`` of a checkout)."""
    folder = _followed(Path(__file__).resolve().parent / "space")
    missing = [f for f in SPACE_FILES + ("README.md",) if not (folder / f).is_file()]
    if not (folder / "examples").is_dir():
        missing.append("examples/")
    if missing:
        raise FileNotFoundError(
            f"the Space's sources are not complete in {folder} (missing {', '.join(missing)}); reinstall pgat from a wheel "
            "built from a checkout (its package data holds pgat/space/) or run from the checkout"
        )
    return folder


def checkout_root() -> Optional[Path]:
    """The source checkout this module runs from (``pyproject.toml`` naming ``pgat``), or None for an installed wheel."""
    root = Path(__file__).resolve().parents[2]
    pyproject = root / "pyproject.toml"
    if pyproject.is_file() and re.search(r'^name\s*=\s*"pgat"', pyproject.read_text(), re.M) and (root / "src" / "pgat").is_dir():
        return root
    return None


def build_wheel(out_dir: Union[str, os.PathLike]) -> Path:
    """Build pgat's wheel from the checkout into ``out_dir`` (``pip wheel --no-deps``) and return its path.

    The build runs in a temporary copy of the checkout (``pyproject.toml``, ``README.md``, ``model_card.md``, ``src/``, ``spaces/``), so
    the checkout gets no ``build/`` or ``*.egg-info``; without build isolation when setuptools is importable (no
    registry needed).
    """
    root = checkout_root()
    if root is None:
        raise FileNotFoundError(f"no pgat source checkout above {Path(__file__).resolve().parent} to build a wheel from; pass --wheel PATH")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    skip = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", ".gradio")
    with tempfile.TemporaryDirectory(prefix="pgat-wheel-") as tmp:
        src = Path(tmp) / "pgat"
        src.mkdir()
        # README.md: the project's readme; model_card.md: the target of src/pgat/templates/model_card.md's link
        for name in ("pyproject.toml", "README.md", "model_card.md"):
            if (root / name).is_file():
                shutil.copy2(root / name, src / name)
        shutil.copytree(root / "src", src / "src", symlinks=True, ignore=skip)
        shutil.copytree(root / "spaces", src / "spaces", ignore=skip)
        link = src / "src" / "pgat" / "space"
        if link.is_file() and not link.is_symlink():  # a link checked out as a file (see _followed): the wheel needs the files
            link.unlink()
            shutil.copytree(root / "spaces", link, ignore=skip)
        command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(out_dir), str(src)]
        try:
            import setuptools  # noqa: F401

            command.insert(4, "--no-build-isolation")
        except ImportError:
            pass
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0:
            raise OSError(f"building the pgat wheel failed ({' '.join(command)}):\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    wheels = sorted(out_dir.glob("pgat-*.whl"), key=lambda p: p.stat().st_mtime)
    if not wheels:
        raise OSError(f"`pip wheel` wrote no pgat-*.whl into {out_dir}")
    return wheels[-1]


def _unpack_wheel(wheel: Path, target: Path) -> None:
    """The wheel's files into ``target``, as ``pip install --no-deps --target`` would lay them out, less
    ``pgat/space/`` (the Space's sources are the folder itself)."""
    with zipfile.ZipFile(wheel) as z:
        names = [n for n in z.namelist() if not n.startswith("pgat/space/") and ".data/" not in n.split("/", 1)[0] + "/"]
        if "pgat/__init__.py" not in names:
            raise ValueError(f"`wheel` must be a pgat wheel (pgat/__init__.py inside), got {str(wheel)!r}")
        z.extractall(target, members=names)


def _copy_installed(target: Path) -> None:
    """The installed distribution's files (what its wheel installed) into ``target``, less ``pgat/space/``."""
    from importlib.metadata import distribution

    dist = distribution("pgat")
    files = [f for f in dist.files or [] if f.parts and (f.parts[0] == "pgat" or f.parts[0].endswith(".dist-info"))]
    if not any(str(f) == "pgat/__init__.py" for f in files):
        raise FileNotFoundError("the installed pgat lists no package files (an editable install away from its checkout?); pass --wheel PATH")
    for f in files:
        if f.parts[:2] == ("pgat", "space") or "__pycache__" in f.parts or f.suffix == ".pyc":
            continue
        src = Path(f.locate())
        if src.is_file():
            (target / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, target / f)


def requirements_from_metadata(folder: Path) -> List[str]:
    """pgat's dependencies without extras, read from the vendored ``pgat-*.dist-info/METADATA``."""
    metadata = sorted(folder.glob("pgat-*.dist-info/METADATA"))
    if not metadata:
        raise FileNotFoundError(f"no pgat-*.dist-info/METADATA in {folder}")
    message = email.parser.Parser().parsestr(metadata[0].read_text())
    return [r.strip() for r in message.get_all("Requires-Dist") or [] if "extra ==" not in r and "extra==" not in r]


def resolve_model(model: Optional[str]) -> Tuple[Optional[Path], Optional[str]]:
    """``(local folder, None)`` or ``(None, Hub id)`` for ``--model``; the embedded model when it is None."""
    if model is None:
        from .pipelines.utils import default_model_path

        default = default_model_path()
        if default is None:
            raise ValueError("no --model given and the embedded default model (weights/pgat-synth-256) is not in this installation; "
                             "pass --model ID_OR_PATH (a Hub id or a local PGAT repository)")
        model = str(default)
    path = Path(model).expanduser()
    if path.is_dir():
        return path.resolve(), None
    if path.exists():
        raise ValueError(f"`--model` must be a Hub id or a folder holding a PGAT repository, got the file {model!r}")
    looks_like_path = path.is_absolute() or model.startswith((".", "~")) or "\\" in model or model.count("/") != 1 or Path(model.split("/")[0]).is_dir()
    if not looks_like_path:
        from huggingface_hub.utils import HFValidationError, validate_repo_id

        try:
            validate_repo_id(model)
            return None, model
        except HFValidationError:
            pass
    raise ValueError(f"`--model` must be a Hub id (`org/name`) or an existing folder holding a PGAT repository, got {model!r}, "
                     "which is neither (no such folder)")


def check_repository(folder: Path) -> List[int]:
    """The stages of a local PGAT repository, or a ValueError listing everything it lacks."""
    from .hub import WEIGHTS_NAME

    problems = []
    if not (folder / "model_index.json").is_file():
        problems.append("model_index.json")
    stages = sorted(p for p in folder.glob("stage-*") if p.is_dir())
    if not stages:
        problems.append("a stage-XXXX/ folder")
    for stage in stages:
        problems += [f"{stage.name}/{f}" for f in ("config.json", WEIGHTS_NAME) if not (stage / f).is_file()]
    if problems:
        raise ValueError(f"`--model` must be a PGAT repository (model_index.json, stage-XXXX/config.json and {WEIGHTS_NAME}); "
                         f"{folder} lacks {', '.join(problems)}")
    return [int(p.name.split("-")[1]) for p in stages]


def _settings_block(model_setting: str) -> str:
    return (
        f"{SETTINGS_MARK}: this folder's own model and BlazePose files, unless the Space's variables name others\n"
        "import os as _os  # noqa: E402\n"
        "from pathlib import Path as _Path  # noqa: E402\n\n"
        "_HERE = _Path(__file__).resolve().parent\n"
        f"_os.environ.setdefault(\"PGAT_MODEL\", {model_setting})\n"
        "_os.environ.setdefault(\"PGAT_BLAZEPOSE_DIR\", str(_HERE / \"weights\" / \"blazepose\"))\n"
        "# --\n"
    )


def _readme(sources: Path, hub_id: Optional[str], model_name: str) -> str:
    import gradio

    text = (sources / "README.md").read_text()
    match = _HEADER.match(text)
    if match is None:
        raise ValueError(f"{sources / 'README.md'} has no YAML header between '---' lines")
    header = yaml.safe_load(match.group(1)) or {}
    header.update({"sdk": "gradio", "sdk_version": gradio.__version__, "python_version": f"{sys.version_info.major}.{sys.version_info.minor}",
                   "app_file": "app.py", "license": "apache-2.0"})
    if hub_id:
        header["models"] = [hub_id]
    else:
        header.pop("models", None)
    model_line = (f"the Hub model `{hub_id}` (downloaded when the Space starts)" if hub_id
                  else f"`weights/{model_name}` of this folder, a PGAT repository in the Hub layout")
    note = (
        "## This folder\n\n"
        "Written by `pgat export-space`: it needs nothing outside itself. `requirements.txt` lists pgat's dependencies "
        "(the Space builder installs it before it copies the folder, so it names only PyPI packages); the package "
        "itself is the unpacked wheel in `pgat/`. The model is " + model_line + "; BlazePose's models are in "
        "`weights/blazepose/`. `model.py` points `PGAT_MODEL` and `PGAT_BLAZEPOSE_DIR` there unless the Space's "
        "variables set them. On GPU hardware set nothing (`PGAT_DEVICE` defaults to `cuda` when there is one); "
        "ZeroGPU is not supported.\n\n"
    )
    # the note first: the sources' own text below it speaks of the checkout
    return "---\n" + yaml.safe_dump(header, sort_keys=False, allow_unicode=True) + "---\n\n" + note + text[match.end():].lstrip("\n")


def export_space(
    out_dir: Union[str, os.PathLike],
    model: Optional[str] = None,
    overwrite: bool = False,
    wheel: Optional[Union[str, os.PathLike]] = None,
) -> Path:
    """Write a self-contained Space folder (see the module docstring for its layout).

    Args:
        out_dir (`str` or `os.PathLike`): the folder to write; must not exist or be empty unless ``overwrite``.
        model (`str`, *optional*): a local PGAT repository (copied into ``weights/<name>``) or a Hub id (written into
            the settings and the README's ``models:``); defaults to the embedded model.
        overwrite (`bool`, *optional*, defaults to `False`): replace a non-empty ``out_dir``.
        wheel (`str` or `os.PathLike`, *optional*): a built pgat wheel to vendor; default: built from the checkout,
            else the installed distribution's files.

    Returns:
        `Path`: ``out_dir``.
    """
    from .pose_estimation import blazepose_model_dir

    out = Path(out_dir).expanduser().resolve()
    sources = space_sources()
    local, hub_id = resolve_model(model)
    if local is not None:
        check_repository(local)
        if not (local / "flow").is_dir():
            print(f"pgat export-space: warning: {local} has no flow/ folder: the Space's try-on tab will fail", file=sys.stderr)
        if local.name in ("blazepose",):
            raise ValueError(f"`--model` folder must not be named 'blazepose' (the folder name is kept under weights/), got {str(local)!r}")
    if wheel is not None and not Path(wheel).is_file():
        raise ValueError(f"`--wheel` must be a built pgat wheel file, got {str(wheel)!r}, which does not exist")
    blazepose = blazepose_model_dir()
    # 1. the folder: new, empty, or replaced on request (never one that holds what is copied from)
    if out.exists() and not out.is_dir():
        raise ValueError(f"`DIR` must be a folder to write the Space into, got the file {str(out)!r}")
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise ValueError(f"`DIR` must be a new or empty folder, got {str(out)!r}, which is not empty; pass --overwrite to replace it")
        guarded = [sources.resolve(), blazepose.resolve(), Path.cwd().resolve()] + ([local] if local else []) + ([checkout_root()] if checkout_root() else [])
        for g in guarded:
            if g == out or out in g.parents:
                raise ValueError(f"`DIR` must not hold what the Space is made from, got {str(out)!r}, which contains {g}")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)

    # 2. pgat itself, unpacked from its wheel
    if wheel is not None:
        _unpack_wheel(Path(wheel), out)
    elif checkout_root() is not None:
        with tempfile.TemporaryDirectory(prefix="pgat-wheels-") as tmp:
            _unpack_wheel(build_wheel(tmp), out)
    else:
        _copy_installed(out)
    requirements = requirements_from_metadata(out)
    (out / "requirements.txt").write_text(
        "# pgat's dependencies (pgat itself is unpacked in pgat/: the Space builder installs this file before it copies the folder).\n"
        "# gradio is installed by the builder from sdk_version in README.md.\n" + "\n".join(requirements) + "\n"
    )

    # 3. the Space, its examples, the settings
    for name in SPACE_FILES:
        shutil.copy2(sources / name, out / name)
    shutil.copytree(sources / "examples", out / "examples", ignore=shutil.ignore_patterns("__pycache__", ".gradio"))
    model_setting = repr(hub_id) if hub_id else f"str(_HERE / \"weights\" / {local.name!r})"
    text = (out / "model.py").read_text()
    future = "from __future__ import annotations\n"
    if future not in text:
        raise ValueError(f"{sources / 'model.py'} has no `{future.strip()}` line to put the settings after")
    (out / "model.py").write_text(text.replace(future, future + "\n" + _settings_block(model_setting), 1))
    (out / "README.md").write_text(_readme(sources, hub_id, local.name if local else ""))

    # 4. the weights: the model repository (Hub layout, as it is) and BlazePose
    (out / "weights").mkdir()
    if local is not None:
        shutil.copytree(local, out / "weights" / local.name, ignore=shutil.ignore_patterns("__pycache__", ".cache"))
    shutil.copytree(blazepose, out / "weights" / "blazepose", ignore=shutil.ignore_patterns("__pycache__"))
    return out


def _folder_size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def _cmd_export_space(args: argparse.Namespace) -> int:
    out = export_space(args.dir, model=args.model, overwrite=args.overwrite, wheel=args.wheel)
    print(f"wrote the Space to {out} ({_folder_size(out) / 2**20:.1f} MiB); upload it with:\n"
          f"  hf upload USER/SPACE {args.dir} . --repo-type space")
    return 0


def register_export_space(sub) -> None:
    p = sub.add_parser("export-space", help="write a self-contained Hugging Face Space folder (app, pgat, model, BlazePose, examples)")
    p.add_argument("dir", metavar="DIR", help="the folder to write (new or empty, unless --overwrite)")
    p.add_argument("--model", default=None, metavar="REPO_OR_ID",
                   help="a local PGAT repository (copied in) or a Hub id (downloaded by the Space); default: the embedded model")
    p.add_argument("--overwrite", action="store_true", help="replace DIR when it is not empty")
    p.add_argument("--wheel", default=None, metavar="PATH", help="a built pgat wheel to vendor (default: built from the checkout)")
    p.set_defaults(func=_cmd_export_space)
