"""Starting a job's processes: on the GPUs it claimed, as one process or as torchrun ranks.

No torch import here: the launching process only claims devices and starts `torchrun`, whose
workers size their own thread pools before torch starts.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from dnalm.gpus import GpuClaim, claim_gpus
from dnalm.runtime import THREAD_ENV_VARS


@contextlib.contextmanager
def claim_devices(stage: str, params: dict[str, Any]) -> Iterator[GpuClaim]:
    """The job's `gpus` devices of this machine (none for `device: cpu`), held while it runs;
    if they cannot be had, the job log says why the job never started."""
    gpus = 0 if params.get("device", "auto") == "cpu" else int(params.get("gpus", 0))
    label = params.get("log") or f"{stage} job"
    with contextlib.ExitStack() as stack:
        try:
            claim = stack.enter_context(
                claim_gpus(gpus, setting=f"resources.{stage}.gpu", label=label)
            )
        except Exception as err:
            if params.get("log") is not None:
                Path(params["log"]).parent.mkdir(parents=True, exist_ok=True)
                Path(params["log"]).write_text(f"{stage}: {err}\n")
            raise
        yield claim


def torchrun_command(module: str, stage: str, params_file: str | Path, nproc: int) -> list[str]:
    """The torchrun argument list (never a shell string) that runs this module on every rank."""
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    return [
        *launcher,
        "--nproc_per_node",
        str(nproc),
        "-m",
        "dnalm.jobs",
        stage,
        "--params",
        str(params_file),
    ]


def launch_torchrun(
    module: str, stage: str, params: dict[str, Any], nproc: int, claim: GpuClaim | None = None
) -> None:
    """Run the job on `nproc` local processes; their output (every rank's) goes to the job log.

    The job's threads are shared out between the processes, so N ranks never oversubscribe the
    cores Snakemake gave the job. torchrun inherits the `claim`'s locks, so its devices stay
    taken until it ends even if this process is killed first.
    """
    claim = claim or GpuClaim()
    threads = max(1, int(params.get("threads", 1)) // nproc)
    worker = {**params, "threads": threads, "nproc": nproc, "log": None}
    env = {**os.environ, **{var: str(threads) for var in THREAD_ENV_VARS}}
    log_path = params.get("log")
    with tempfile.TemporaryDirectory(prefix="dnalm-train-") as tmp, contextlib.ExitStack() as stack:
        params_file = Path(tmp) / "params.json"
        params_file.write_text(json.dumps(worker, indent=2) + "\n")
        cmd = torchrun_command(module, stage, params_file, nproc)
        header = [f"{stage}: {claim.note}"] if claim.note else []
        log = sys.stderr
        if log_path is not None:
            Path(log_path).parent.mkdir(parents=True, exist_ok=True)
            log = stack.enter_context(open(log_path, "w"))
            header.append(f"{stage}: {nproc} processes x {threads} thread(s): {' '.join(cmd)}")
        print(*header, sep="\n", file=log, flush=True)
        err = None if log is sys.stderr else subprocess.STDOUT
        out = None if log is sys.stderr else log
        proc = subprocess.run(cmd, env=env, stdout=out, stderr=err, check=False, pass_fds=claim.fds)
    if proc.returncode != 0:
        where = f"; see {log_path}" if log_path else ""
        raise RuntimeError(
            f"{stage} under torchrun ({nproc} processes) failed with exit status "
            f"{proc.returncode}{where}"
        )
