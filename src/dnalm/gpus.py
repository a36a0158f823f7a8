"""Give every local GPU job its own devices.

Snakemake's `--resources gpu=N` bounds how many GPUs the running jobs ask for in total, but never
says which devices a job may use: without this, every job would train on GPU 0. A job that asks
for `n` GPUs (its rule's `resources.gpu`) takes `n` devices from the machine's pool by holding an
exclusive `flock` on one lock file per device, sets `CUDA_VISIBLE_DEVICES` to them (inherited by
its torchrun ranks) and lets go when it ends. The kernel drops a `flock` when its process dies, so
a job killed with `kill -9` never keeps a device.

- Pool: the ids in `CUDA_VISIBLE_DEVICES` when it is set, else `0 .. DNALM_GPU_COUNT - 1` when that
  is set (a simulated machine, for tests), else the count `torch.cuda.device_count()` gives (asked
  in a child process: once CUDA starts in a process, it never rereads `CUDA_VISIBLE_DEVICES`).
- Locks: `$DNALM_GPU_LOCK_DIR`, else one directory per user in the temporary directory, so that
  two workflows run from different directories of one machine share the devices too.
- Nothing to do: `n == 0`, under SLURM (`SLURM_JOB_ID` set: SLURM gives the job its devices), on a
  machine with no GPU (the job runs on the CPU, as `device: auto` does), or inside a process whose
  parent already claimed devices for it (`DNALM_GPU_CLAIM`).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

COUNT_ENV = "DNALM_GPU_COUNT"
LOCK_DIR_ENV = "DNALM_GPU_LOCK_DIR"
CLAIM_ENV = "DNALM_GPU_CLAIM"  # set while a claim is held: the devices this process tree owns
VISIBLE_ENV = "CUDA_VISIBLE_DEVICES"
WAIT_LOG_EVERY = 600.0  # seconds between "still waiting" lines

_LOG = logging.getLogger(__name__)


@dataclass(frozen=True)
class GpuClaim:
    """What a job got: `devices` (empty when the allocator had nothing to do) and why."""

    devices: tuple[str, ...] = ()
    pool: tuple[str, ...] = ()
    note: str | None = None  # one line for the job's log
    waited: float = 0.0  # seconds spent waiting for free devices
    fds: tuple[int, ...] = field(default=(), repr=False)


def default_lock_dir() -> Path:
    """Shared by every workflow this user runs on this machine."""
    if os.environ.get(LOCK_DIR_ENV):
        return Path(os.environ[LOCK_DIR_ENV])
    return Path(tempfile.gettempdir()) / f"dnalm-gpus-{os.getuid()}"


def device_pool() -> tuple[tuple[str, ...], str]:
    """The GPU ids jobs may share out on this machine, and where they came from (for messages)."""
    visible = os.environ.get(VISIBLE_ENV)
    if visible is not None:
        return parse_visible_devices(visible), f"{VISIBLE_ENV}={visible}"
    count = os.environ.get(COUNT_ENV)
    if count is not None:
        try:
            n = int(count)
        except ValueError:
            n = -1
        if n < 0:
            raise ValueError(f"{COUNT_ENV}={count!r} must be a whole number of GPUs (0 or more)")
        return tuple(str(i) for i in range(n)), f"{COUNT_ENV}={count}"
    n = detected_gpu_count()
    return tuple(str(i) for i in range(n)), f"torch.cuda.device_count() = {n}"


def parse_visible_devices(value: str) -> tuple[str, ...]:
    """Ids of a `CUDA_VISIBLE_DEVICES` value; CUDA ignores everything from a negative id on."""
    ids: list[str] = []
    for part in value.split(","):
        part = part.strip()
        if not part:
            continue
        if re.fullmatch(r"-\d+", part):
            break
        if part in ids:
            raise ValueError(f"{VISIBLE_ENV}={value!r} names device {part} twice")
        ids.append(part)
    return tuple(ids)


def detected_gpu_count() -> int:
    """GPUs torch sees, counted in a child process so CUDA never starts in this one."""
    if sys.platform.startswith("linux") and not any(
        Path(p).exists() for p in ("/dev/nvidiactl", "/dev/kfd")
    ):
        return 0  # no NVIDIA or AMD driver: no need to start torch to know
    code = "import torch; print(torch.cuda.device_count())"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=600
    )
    if proc.returncode != 0 or not proc.stdout.strip().isdigit():
        raise RuntimeError(
            "cannot count this machine's GPUs (torch.cuda.device_count() failed: "
            f"{proc.stderr.strip()[-500:] or proc.stdout.strip()}); set {VISIBLE_ENV} to the "
            "devices jobs may use"
        )
    return int(proc.stdout.strip())


@contextlib.contextmanager
def claim_gpus(
    n: int,
    *,
    lock_dir: str | Path | None = None,
    devices: Sequence[str] | None = None,
    setting: str = "resources.<stage>.gpu",
    label: str | None = None,
    poll: float = 2.0,
    timeout: float | None = None,
    log: logging.Logger | None = None,
) -> Iterator[GpuClaim]:
    """Hold `n` free devices of the pool (waiting while all are taken) for the `with` block.

    `devices` replaces the pool read from the environment; `setting` names the config value to
    change when `n` is more than the pool; `label` (e.g. the job's log file) is written into each
    lock file so a waiting job can say who holds the devices; `timeout` (seconds, None = wait as
    long as it takes) raises TimeoutError.
    """
    log = log or _LOG
    if not isinstance(n, int) or isinstance(n, bool) or n < 0:
        raise ValueError(f"{setting} must be a whole number of GPUs (0 or more), not {n!r}")
    if n == 0:
        yield GpuClaim()
        return
    if os.environ.get("SLURM_JOB_ID"):
        visible = os.environ.get(VISIBLE_ENV, "")
        yield GpuClaim(
            note=f"GPU(s) given by SLURM job {os.environ['SLURM_JOB_ID']} ({VISIBLE_ENV}={visible})"
        )
        return
    held = os.environ.get(CLAIM_ENV)
    if held is not None:  # a parent process holds the locks for this whole process tree
        ids = parse_visible_devices(held)
        if n > len(ids):
            raise ValueError(
                f"this job asks for {n} GPU(s) ({setting}) inside a job that holds only "
                f"{len(ids)} ({CLAIM_ENV}={held})"
            )
        yield GpuClaim(devices=ids, pool=ids, note=f"GPU(s) {held} claimed by a parent process")
        return
    if devices is None:
        pool, source = device_pool()
    else:
        pool, source = tuple(str(d) for d in devices), "the given devices"
    if not pool:
        yield GpuClaim(note=f"no GPU on this machine ({source}): {n} GPU(s) asked, none claimed")
        return
    if n > len(pool):
        raise ValueError(
            f"this job asks for {n} GPU(s) ({setting}: {n}) but this machine has "
            f"{len(pool)} ({source}); set {setting} to at most {len(pool)}, or run where more "
            f"GPUs are visible"
        )
    _check_cuda_not_started()
    directory = Path(lock_dir) if lock_dir is not None else default_lock_dir()
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    started = time.monotonic()
    next_note = started
    while True:
        taken = _try_claim(directory, pool, n, label)
        if taken is not None:
            break
        now = time.monotonic()
        if timeout is not None and now - started >= timeout:
            raise TimeoutError(
                f"no {n} free GPU(s) of {','.join(pool)} after {now - started:.0f} s: "
                f"{_holders(directory, pool)}"
            )
        if now >= next_note:
            log.warning(
                "waiting for %d free GPU(s) of %s (locks in %s): %s",
                n,
                ",".join(pool),
                directory,
                _holders(directory, pool),
            )
            next_note = now + WAIT_LOG_EVERY
        time.sleep(poll)
    waited = time.monotonic() - started
    ids = tuple(dev for dev, _ in taken)
    fds = tuple(fd for _, fd in taken)
    value = ",".join(ids)
    note = f"GPU(s) {value} of {','.join(pool)} ({VISIBLE_ENV}={value})"
    if waited >= 1:
        note += f", after waiting {waited:.0f} s"
    saved = {var: os.environ.get(var) for var in (VISIBLE_ENV, CLAIM_ENV)}
    os.environ[VISIBLE_ENV] = value
    os.environ[CLAIM_ENV] = value
    try:
        yield GpuClaim(devices=ids, pool=pool, note=note, waited=waited, fds=fds)
    finally:
        for var, old in saved.items():
            if old is None:
                os.environ.pop(var, None)
            else:
                os.environ[var] = old
        for fd in fds:
            _release(fd)


def lock_path(directory: Path, device: str) -> Path:
    """One lock file per device; ids such as GPU UUIDs or MIG names made safe as file names."""
    return directory / f"gpu-{re.sub(r'[^A-Za-z0-9_.-]', '_', device)}.lock"


def _try_claim(
    directory: Path, pool: tuple[str, ...], n: int, label: str | None
) -> list[tuple[str, int]] | None:
    """`n` (device, fd) pairs locked now, or None (holding nothing) when fewer are free.

    Never waits while holding some devices: two jobs each holding half of what the other needs
    would otherwise wait for each other forever.
    """
    taken: list[tuple[str, int]] = []
    for device in pool:
        fd = os.open(lock_path(directory, device), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            os.close(fd)
            if err.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                continue
            for _, held in taken:
                _release(held)
            raise
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()}: {label or 'a dnalm job'}\n".encode())
        taken.append((device, fd))
        if len(taken) == n:
            return taken
    for _, fd in taken:
        _release(fd)
    return None


def _release(fd: int) -> None:
    with contextlib.suppress(OSError):
        os.ftruncate(fd, 0)
    fcntl.flock(fd, fcntl.LOCK_UN)
    os.close(fd)


def _holders(directory: Path, pool: tuple[str, ...]) -> str:
    """Who holds each device, as its lock file says (best effort: for a human reading the log)."""
    parts = []
    for device in pool:
        try:
            text = lock_path(directory, device).read_text().strip()
        except OSError:
            text = ""
        parts.append(f"{device}: {text or 'free'}")
    return "; ".join(parts)


def _check_cuda_not_started() -> None:
    """CUDA reads CUDA_VISIBLE_DEVICES once, when it starts: a claim after that would be ignored."""
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_initialized():
        raise RuntimeError(
            "CUDA already started in this process, so the GPUs claimed for this job would be "
            "ignored; claim GPUs (dnalm.gpus.claim_gpus) before the first CUDA call"
        )
