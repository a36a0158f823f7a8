"""Data-parallel training across processes (DDP), launched by torchrun.

torchrun starts one process per GPU and tells each one its place through the environment
(`RANK`, `WORLD_SIZE`, `LOCAL_RANK`). Every helper here is the identity for a single process with
no process group, so the single-process path of the training loops stays the plain loop.

Each rank draws the same global batch from the same seeded stream and takes a fixed, disjoint
slice of it (`rank_slice`), so a run on N processes sees exactly the data of a one-process run
with the same global batch size.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import torch
import torch.distributed as dist


def env_world_size() -> int:
    """The number of processes torchrun started (1 when not under torchrun)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def init_distributed(device: torch.device, backend: str | None = None) -> torch.device:
    """Join torchrun's process group; returns this rank's device.

    On CUDA each rank takes GPU `LOCAL_RANK` and talks over NCCL; on the CPU it uses gloo (which is
    also how the multi-process path is tested without GPUs). Outside torchrun this does nothing.
    """
    if env_world_size() <= 1 or is_initialized():
        return device
    for var in ("RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        if var not in os.environ:
            raise RuntimeError(
                f"WORLD_SIZE is {env_world_size()} but {var} is not set: "
                "start multi-process training with torchrun (python -m torch.distributed.run)"
            )
    if device.type == "cuda":
        local_rank = int(os.environ["LOCAL_RANK"])
        torch.cuda.set_device(local_rank)
        device = torch.device("cuda", local_rank)
    backend = backend or ("nccl" if device.type == "cuda" else "gloo")
    if backend == "nccl" and device.type != "cuda":
        raise ValueError("the nccl backend needs CUDA devices; use backend gloo on the CPU")
    dist.init_process_group(backend=backend)
    return device


def teardown() -> None:
    """Leave the process group (a no-op without one)."""
    if is_initialized():
        dist.destroy_process_group()


def is_initialized() -> bool:
    return dist.is_available() and dist.is_initialized()


def world_size() -> int:
    return dist.get_world_size() if is_initialized() else 1


def rank() -> int:
    return dist.get_rank() if is_initialized() else 0


def is_main() -> bool:
    """Only the main rank writes files and logs progress."""
    return rank() == 0


def barrier() -> None:
    if is_initialized():
        dist.barrier()


def _comm_device() -> torch.device:
    """Where collective tensors live: the current GPU for NCCL, the CPU otherwise."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def rank_slice(rows: np.ndarray, world: int | None = None, at: int | None = None) -> np.ndarray:
    """This rank's contiguous part of `rows` (all of it for one process).

    Parts differ in size by at most one and cover `rows` in order, so the concatenation of
    every rank's part is `rows` itself.
    """
    world = world_size() if world is None else world
    at = rank() if at is None else at
    if world == 1:
        return rows
    return np.array_split(rows, world)[at]


def all_reduce_sum(values: Sequence[float]) -> list[float]:
    """Element-wise sum over ranks, in float64."""
    if not is_initialized():
        return [float(v) for v in values]
    t = torch.tensor([float(v) for v in values], dtype=torch.float64, device=_comm_device())
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t.cpu().tolist()


def mean_across_ranks(value: float) -> float:
    """The mean of one scalar over ranks (the value itself for one process)."""
    if not is_initialized():
        return float(value)
    return all_reduce_sum([value])[0] / world_size()


def all_gather_rows(local: np.ndarray, sizes: Sequence[int]) -> list[np.ndarray]:
    """Every rank's `local` array (same trailing shape and dtype), in rank order.

    `sizes[r]` is rank r's row count, known to every rank in advance; collectives need equal
    shapes, so rows are padded to the largest part and cut back afterwards.
    """
    if not is_initialized():
        return [local]
    if len(sizes) != world_size() or len(local) != sizes[rank()]:
        raise ValueError(f"row counts {list(sizes)} do not match rank {rank()}'s {len(local)} rows")
    width = max(sizes)
    padded = np.zeros((width, *local.shape[1:]), dtype=local.dtype)
    padded[: len(local)] = local
    device = _comm_device()
    mine = torch.from_numpy(padded).to(device)
    parts = [torch.empty_like(mine) for _ in range(world_size())]
    dist.all_gather(parts, mine)
    return [p.cpu().numpy()[:n] for p, n in zip(parts, sizes, strict=True)]


def wrap_model(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """DistributedDataParallel around `model` when there are several ranks, else `model`."""
    if not is_initialized() or world_size() == 1:
        return model
    from torch.nn.parallel import DistributedDataParallel

    device_ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=device_ids)
