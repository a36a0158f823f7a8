"""Process set-up shared by every training and prediction job.

Kept free of a module-level torch import: thread pools must be sized before torch (and its
OpenMP/MKL runtimes) start, because oversubscribed oneDNN threads spin-wait and one extra busy
thread made HyenaDNA 40x slower on a 2-core machine (from ~29k to ~700 tokens/s).
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import traceback
from collections.abc import Iterator
from pathlib import Path

THREAD_ENV_VARS = (
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "NUMEXPR_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "RAYON_NUM_THREADS",  # the Rust `tokenizers` pool (bpe batch encoding)
)


def limit_threads(threads: int) -> int:
    """Use exactly `threads` threads in torch, OpenMP and MKL; returns the number set."""
    threads = max(1, int(threads))
    for var in THREAD_ENV_VARS:
        os.environ[var] = str(threads)
    import torch

    torch.set_num_threads(threads)
    with contextlib.suppress(RuntimeError):  # only settable before the first parallel op
        torch.set_num_interop_threads(threads)
    return threads


def autocast(device):
    """bf16 autocast on CUDA; full precision on the CPU (where bf16 matmuls are slower)."""
    import torch

    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def pick_device(requested: str = "auto"):
    """CUDA when a GPU is visible (or asked for), the CPU otherwise."""
    import torch

    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if requested.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(
            f"device {requested!r} was requested but no CUDA GPU is visible; "
            "use device: auto (or cpu) in the config"
        )
    return torch.device(requested)


@contextlib.contextmanager
def job_log(path: str | Path | None, name: str = "dnalm") -> Iterator[logging.Logger]:
    """Send this job's log lines (and any traceback) to its Snakemake log file."""
    logger = logging.getLogger(name)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(path, mode="w"))
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%Y-%m-%d %H:%M:%S")
    for h in handlers:
        h.setFormatter(fmt)
        logger.addHandler(h)
    try:
        yield logger
    except Exception:
        logger.error("failed:\n%s", traceback.format_exc())
        raise
    finally:
        for h in handlers:
            logger.removeHandler(h)
            h.close()
