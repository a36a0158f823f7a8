import subprocess
import sys

import pytest
import torch

from dnalm.runtime import job_log, pick_device


@pytest.mark.parametrize("threads", [1, 2])
def test_limit_threads_pins_torch_openmp_and_mkl(threads):
    code = (
        "import os\n"
        "from dnalm.runtime import limit_threads\n"
        f"limit_threads({threads})\n"
        "import torch\n"
        "print(torch.get_num_threads(), os.environ['OMP_NUM_THREADS'], os.environ['MKL_NUM_THREADS'])\n"
    )
    env = {k: v for k, v in __import__("os").environ.items() if not k.endswith("_NUM_THREADS")}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    ).stdout.split()
    assert out == [str(threads)] * 3


def test_pick_device():
    assert pick_device("cpu") == torch.device("cpu")
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert pick_device("auto").type == expected
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="no CUDA GPU is visible"):
            pick_device("cuda")


def test_job_log_keeps_the_traceback(tmp_path):
    log_path = tmp_path / "logs" / "job.log"
    with pytest.raises(ZeroDivisionError), job_log(log_path) as log:
        log.info("step 1")
        1 / 0  # noqa: B018
    text = log_path.read_text()
    assert "step 1" in text and "ZeroDivisionError" in text
