"""The local GPU allocator, on a simulated machine (`DNALM_GPU_COUNT`), with real processes.

No GPU is needed: the allocator only hands out device ids and sets `CUDA_VISIBLE_DEVICES`; the
locks, the waiting, and a holder killed with SIGKILL are all real.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from itertools import combinations
from pathlib import Path

import pytest
import torch

from dnalm.gpus import CLAIM_ENV, claim_gpus, parse_visible_devices

# Claims n devices, says which on stdout, and holds them until its stdin closes.
HOLDER = """
import sys
from dnalm.gpus import claim_gpus
with claim_gpus(int(sys.argv[1]), poll=0.02, label=sys.argv[2]) as claim:
    print(",".join(claim.devices), flush=True)
    sys.stdin.read()
"""

# Waits for the go file, claims one device, holds it a while; records (device, start, end).
WORKER = """
import json, os, sys, time
from pathlib import Path
from dnalm.gpus import claim_gpus
go, out, hold = Path(sys.argv[1]), Path(sys.argv[2]), float(sys.argv[3])
Path(str(out) + ".ready").touch()
while not go.exists():
    time.sleep(0.005)
clock = lambda: time.clock_gettime(time.CLOCK_MONOTONIC)  # one clock for every process
with claim_gpus(1, poll=0.01) as claim:
    start = clock()
    assert os.environ["CUDA_VISIBLE_DEVICES"] == claim.devices[0]
    time.sleep(hold)
    end = clock()
out.write_text(json.dumps({"device": claim.devices[0], "start": start, "end": end}))
"""


@pytest.fixture
def machine(monkeypatch, tmp_path):
    """A simulated 2-GPU machine with its own lock directory; returns the lock directory."""
    for var in ("CUDA_VISIBLE_DEVICES", "SLURM_JOB_ID", CLAIM_ENV):
        monkeypatch.delenv(var, raising=False)
    locks = tmp_path / "locks"
    monkeypatch.setenv("DNALM_GPU_LOCK_DIR", str(locks))
    monkeypatch.setenv("DNALM_GPU_COUNT", "2")
    return locks


def hold(n: int, label: str = "holder") -> tuple[subprocess.Popen, str]:
    """A real process holding `n` devices (the environment of this one); returns it and its ids."""
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(n), label],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    line = proc.stdout.readline().strip()
    assert line, f"holder exited with {proc.wait()}"
    return proc, line


def release(proc: subprocess.Popen) -> None:
    proc.stdin.close()
    assert proc.wait(timeout=30) == 0


def test_claim_sets_visible_devices_for_the_block_only(machine):
    with claim_gpus(1) as claim:
        assert claim.devices == ("0",) and claim.pool == ("0", "1")
        assert os.environ["CUDA_VISIBLE_DEVICES"] == "0"
        assert claim.note == "GPU(s) 0 of 0,1 (CUDA_VISIBLE_DEVICES=0)"
    assert "CUDA_VISIBLE_DEVICES" not in os.environ and CLAIM_ENV not in os.environ
    with claim_gpus(2) as claim:
        assert claim.devices == ("0", "1") and os.environ["CUDA_VISIBLE_DEVICES"] == "0,1"
    assert sorted(p.name for p in machine.iterdir()) == ["gpu-0.lock", "gpu-1.lock"]


def test_live_claims_are_disjoint_and_released_on_exit(machine):
    first, devices = hold(1, "logs/pretrain/a.log")
    assert devices == "0"
    second, devices = hold(1, "logs/finetune/b.log")
    assert devices == "1"  # 0 is taken by the first process
    with (
        pytest.raises(TimeoutError, match=r"0: pid \d+: logs/pretrain/a\.log; 1: pid \d+: logs/fi"),
        claim_gpus(1, poll=0.01, timeout=0.2),
    ):
        pass
    release(first)
    with claim_gpus(1) as claim:
        assert claim.devices == ("0",)
    release(second)
    with claim_gpus(2) as claim:
        assert claim.devices == ("0", "1")


def test_a_job_waits_for_a_device_and_then_takes_it(machine):
    holder, _ = hold(2)
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, "1", "waiter"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(0.5)
    assert proc.poll() is None  # still waiting: nothing printed, nothing claimed
    release(holder)
    assert proc.stdout.readline().strip() == "0"
    proc.stdin.close()
    assert proc.wait(timeout=30) == 0
    err = proc.stderr.read()
    assert "waiting for 1 free GPU(s) of 0,1" in err and "pid" in err, err


def test_a_killed_holder_never_keeps_its_devices(machine):
    holder, devices = hold(2)
    assert devices == "0,1"
    with pytest.raises(TimeoutError, match="no 1 free GPU"), claim_gpus(1, timeout=0.1, poll=0.02):
        pass
    os.kill(holder.pid, signal.SIGKILL)
    assert holder.wait(timeout=30) == -signal.SIGKILL
    with claim_gpus(2, timeout=10) as claim:
        assert claim.devices == ("0", "1")


def test_asking_for_more_than_the_machine_has_says_what_to_change(machine):
    with (
        pytest.raises(
            ValueError, match=r"asks for 3 GPU\(s\) \(resources\.finetune\.gpu: 3\)"
        ) as err,
        claim_gpus(3, setting="resources.finetune.gpu"),
    ):
        pass
    assert "has 2 (DNALM_GPU_COUNT=2)" in str(err.value)
    assert "set resources.finetune.gpu to at most 2" in str(err.value)
    assert not machine.exists()  # failed before touching any lock


@pytest.mark.parametrize("n", [-1, 1.5, True])
def test_a_gpu_count_that_is_not_a_whole_number_is_refused(machine, n):
    with pytest.raises(ValueError, match="whole number"), claim_gpus(n):
        pass


def test_zero_gpus_slurm_and_a_gpu_less_machine_claim_nothing(machine, monkeypatch):
    with claim_gpus(0) as claim:
        assert claim.devices == () and claim.note is None
    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3")
    with claim_gpus(8) as claim:  # SLURM chose the devices; even "too many" is its business
        assert claim.devices == () and "SLURM job 4242" in claim.note
        assert os.environ["CUDA_VISIBLE_DEVICES"] == "3"
    monkeypatch.delenv("SLURM_JOB_ID")
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    monkeypatch.setenv("DNALM_GPU_COUNT", "0")
    with claim_gpus(2) as claim:  # runs on the CPU, as device: auto does without a GPU
        assert claim.devices == () and claim.note.startswith("no GPU on this machine")
        assert "CUDA_VISIBLE_DEVICES" not in os.environ
    assert not machine.exists()


def test_visible_devices_are_the_pool(machine, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,5")  # wins over DNALM_GPU_COUNT
    monkeypatch.setenv("DNALM_GPU_COUNT", "8")
    holder, devices = hold(1)
    assert devices == "2"
    with claim_gpus(1) as claim:
        assert claim.devices == ("5",) and claim.note == "GPU(s) 5 of 2,5 (CUDA_VISIBLE_DEVICES=5)"
    release(holder)
    assert sorted(p.name for p in machine.iterdir()) == ["gpu-2.lock", "gpu-5.lock"]
    with pytest.raises(ValueError, match=r"has 2 \(CUDA_VISIBLE_DEVICES=2,5\)"), claim_gpus(3):
        pass
    with claim_gpus(1, devices=["7"]) as claim:  # a pool given by the caller wins
        assert claim.devices == ("7",) and os.environ["CUDA_VISIBLE_DEVICES"] == "7"


def test_visible_devices_parse_as_cuda_reads_them():
    assert parse_visible_devices("") == ()
    assert parse_visible_devices(" 0, ,3 ") == ("0", "3")
    assert parse_visible_devices("1,-1,2") == ("1",)  # CUDA stops at the first negative id
    assert parse_visible_devices("GPU-8a1b,MIG-1/2/0") == ("GPU-8a1b", "MIG-1/2/0")
    with pytest.raises(ValueError, match="names device 1 twice"):
        parse_visible_devices("1,0,1")


def test_a_bad_simulated_count_is_named(machine, monkeypatch):
    monkeypatch.setenv("DNALM_GPU_COUNT", "two")
    with pytest.raises(ValueError, match="DNALM_GPU_COUNT='two'"), claim_gpus(1):
        pass


def test_a_claim_inside_a_claimed_job_reuses_its_devices(machine):
    """A child of a claiming job (torchrun, a nested run_job) must not wait on its own parent."""
    with claim_gpus(2), claim_gpus(1, timeout=0.1) as inner:
        assert inner.devices == ("0", "1") and "parent" in inner.note
    with claim_gpus(1), pytest.raises(ValueError, match="holds only 1"), claim_gpus(2):
        pass


def test_concurrent_jobs_never_share_a_device(machine, tmp_path):
    """Five processes start together on 2 devices: each device is used, never by two at once."""
    go = tmp_path / "go"
    outs = [tmp_path / f"job{i}.json" for i in range(5)]
    procs = [
        subprocess.Popen([sys.executable, "-c", WORKER, str(go), str(out), "0.4"]) for out in outs
    ]
    deadline = time.monotonic() + 60
    while not all(Path(f"{out}.ready").exists() for out in outs):
        assert time.monotonic() < deadline and all(p.poll() is None for p in procs)
        time.sleep(0.01)
    go.touch()
    assert [p.wait(timeout=60) for p in procs] == [0] * 5
    runs = [json.loads(out.read_text()) for out in outs]
    assert {r["device"] for r in runs} == {"0", "1"}
    for a, b in combinations(runs, 2):
        if a["device"] == b["device"]:
            assert a["end"] <= b["start"] or b["end"] <= a["start"], (a, b)
    # and the devices were really used at the same time (5 jobs x 0.4 s on 2 devices)
    assert any(a["start"] < b["end"] and b["start"] < a["end"] for a, b in combinations(runs, 2))


# Claims 1 device, starts a child that inherits the lock (as torchrun does), prints its pid.
LAUNCHER = """
import subprocess, sys
from dnalm.gpus import claim_gpus
child = "import os, sys; print(os.environ['CUDA_VISIBLE_DEVICES'], flush=True); sys.stdin.read()"
with claim_gpus(1) as claim:
    proc = subprocess.Popen([sys.executable, "-c", child], pass_fds=claim.fds)
    proc.wait()
"""


def test_a_child_that_inherits_the_claim_keeps_it_after_its_parent_dies(machine):
    """torchrun ranks outliving a killed job keep its device until they end too."""
    parent = subprocess.Popen(
        [sys.executable, "-c", LAUNCHER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert parent.stdout.readline().strip() == "0"  # the child sees only the claimed device
    os.kill(parent.pid, signal.SIGKILL)
    parent.wait(timeout=30)
    with pytest.raises(TimeoutError, match="no 2 free"), claim_gpus(2, timeout=0.2, poll=0.02):
        pass
    parent.stdin.close()  # the orphaned child shares it: reading EOF ends the child
    with claim_gpus(2, timeout=30, poll=0.02) as claim:
        assert claim.devices == ("0", "1")


@pytest.mark.skipif(torch.cuda.is_available(), reason="simulated devices would clash with real")
def test_a_torchrun_job_holds_its_devices_for_all_ranks(machine, tmp_path):
    from test_distributed import _finetune_job, _write_shards

    from dnalm.jobs import run_job

    data = _write_shards(tmp_path / "data")["lm_train"].parent
    job = _finetune_job(tmp_path, data, tmp_path / "multi", nproc=2, backend="gloo", threads=2)
    job |= {"gpus": 2, "device": "auto"}  # device: cpu would claim nothing
    run_job("finetune", job)
    log = (tmp_path / "multi/job.log").read_text()
    assert log.startswith("finetune: GPU(s) 0,1 of 0,1 (CUDA_VISIBLE_DEVICES=0,1)\n"), log[:500]
    assert "cpu x 2 processes" in log  # both ranks ran (on the CPU: no real GPU here)
    with claim_gpus(2, timeout=0) as claim:  # released once torchrun ended
        assert claim.devices == ("0", "1")


def test_run_job_fails_before_training_and_says_why_in_the_job_log(machine, tmp_path):
    from dnalm.jobs import run_job

    log = tmp_path / "logs/pretrain/m.log"
    params = {"model": {}, "train": {"batch_size": 8}, "tokenizer": "t", "shards": {}}
    params |= {"outputs": {}, "log": str(log), "gpus": 3, "nproc": 3}
    with pytest.raises(ValueError, match="resources.pretrain.gpu"):
        run_job("pretrain", params)
    assert "set resources.pretrain.gpu to at most 2" in log.read_text()


@pytest.mark.slow
def test_two_pretrain_jobs_of_the_pipeline_get_their_own_device(machine, tmp_path):
    """`--resources gpu=2` with `gpu: 1` per pretrain job: both run at once, on different GPUs.

    ~40 s on a busy 2-core machine. Both jobs start in the same scheduling round and hold their
    device for the whole job (seconds of torch start-up and training), so they overlap.
    """
    from conftest import run_snakemake
    from test_pipeline import simulated_sheet, tiny_config, write_workdir

    config = tiny_config("config/genomes.tsv")
    config["pretrain"] |= {"steps": 2, "eval_every": 2, "log_every": 1, "eval_sequences": 4}
    config["resources"]["pretrain"] |= {"gpu": 1}
    work = tmp_path / "work"
    write_workdir(work, config, simulated_sheet())
    targets = [f"results/pretrain/{m}/summary.json" for m in config["models"]]
    proc = run_snakemake(work, *targets, "--resources", "gpu=2", cores=2, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    lines = {}
    for model in config["models"]:
        log = (work / f"logs/pretrain/{model}.log").read_text()
        lines[model] = [line.split(" INFO ", 1)[1] for line in log.splitlines() if "GPU(s)" in line]
    assert sorted(lines.values()) == [
        ["GPU(s) 0 of 0,1 (CUDA_VISIBLE_DEVICES=0)"],
        ["GPU(s) 1 of 0,1 (CUDA_VISIBLE_DEVICES=1)"],
    ]
    assert sorted(p.name for p in machine.iterdir()) == ["gpu-0.lock", "gpu-1.lock"]
