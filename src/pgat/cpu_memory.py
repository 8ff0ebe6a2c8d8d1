"""Reusing freed host memory across forward passes (glibc's malloc settings), part of the CPU inference form.

A PGAT forward at 512² and 1024² makes feature maps of 64-128 MB (32 channels at 1024², float32). glibc's malloc
serves every block over 32 MB with a fresh ``mmap`` and hands it back to the kernel on ``free``, so each forward
touches about 2.3 GB of new pages at 1024², and the kernel faults in and zeroes every 4 KiB page again: 590,000
page faults per forward. Measured on a 2-core AVX-512 EPYC (paper-size model, fused, batch 1, best of 9 forwards in
3 processes each way; ``benchmarks/fast_path.py``, option ``reuse_memory``): 1024² 1.96 s -> 1.40 s, 512² 1.33 s ->
1.08 s, 256² 0.97 s -> 0.84 s once freed memory is kept and reused.

`reuse_freed_memory` asks glibc, through ``mallopt``, to:

- serve blocks up to 1 GiB from its heap instead of ``mmap`` (``M_MMAP_THRESHOLD``),
- keep up to 2 GiB of free memory at the top of the heap instead of returning it (``M_TRIM_THRESHOLD``),
- use one arena for every thread (``M_ARENA_MAX = 1``): a thread's own arena is capped at 64 MB per heap and
  sends larger blocks to ``mmap`` whatever the threshold, so a forward run in a server's worker thread would
  page-fault as before. Threads that had already allocated keep the arena they have; call this early, while the
  process has one thread (the Space and ``pgat serve`` do, at start), so that worker threads are made afterwards.
  Measured: a 512² forward in a pool thread made after the call, 1.07 s and no page faults; when the call came
  only from the pool thread that loads the model, 1.29 s and 200,000 faults.

It is process-wide and cannot be undone: the process keeps the memory of its largest forward until it exits, the
way PyTorch's CUDA allocator keeps GPU memory cached. `PGATModel.fuse` applies it when the model is on the CPU, so
the pipelines, the CLI and the Space get it by default; ``PGAT_REUSE_CPU_MEMORY=0`` in the environment turns it
off (e.g. for a process that must give memory back, or runs jemalloc / tcmalloc through ``LD_PRELOAD``, which
reuse memory themselves). Where malloc is not glibc's (macOS, Windows, musl) nothing is changed.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import threading

ENV = "PGAT_REUSE_CPU_MEMORY"

# glibc's <malloc.h>
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8
SETTINGS = {"M_MMAP_THRESHOLD": (_M_MMAP_THRESHOLD, 1 << 30), "M_TRIM_THRESHOLD": (_M_TRIM_THRESHOLD, (1 << 31) - 1), "M_ARENA_MAX": (_M_ARENA_MAX, 1)}

_lock = threading.Lock()
_applied = False


def _env_allows() -> bool:
    value = os.environ.get(ENV, "1").strip().lower()
    if value in ("1", "true", "yes", "on", ""):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"`{ENV}` must be 1 or 0 (on or off), got {os.environ[ENV]!r}")


def reuse_freed_memory() -> bool:
    """Make glibc keep and reuse freed memory (see the module's docstring); idempotent.

    Returns:
        `bool`: whether the settings are in force: ``False`` when ``PGAT_REUSE_CPU_MEMORY=0`` or malloc is not
        glibc's.
    """
    global _applied
    if not _env_allows():
        return False
    with _lock:
        if _applied:
            return True
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
            mallopt = libc.mallopt
            libc.gnu_get_libc_version  # only glibc has it: another libc's mallopt may mean something else
        except (OSError, AttributeError):
            return False
        mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
        _applied = all(mallopt(param, value) == 1 for param, value in SETTINGS.values())
        return _applied


def is_reusing_freed_memory() -> bool:
    """Whether `reuse_freed_memory` has put its settings in force in this process."""
    return _applied
