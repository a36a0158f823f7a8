"""A real single-node SLURM cluster for tests: munged, MariaDB, slurmdbd, slurmctld and slurmd
from Debian's packages, all started from one temporary directory on free loopback ports.

Every daemon gets its configuration, state and logs under the directory, and clients find it
through `SLURM_CONF` (in `SlurmCluster.env`), with two exceptions for clients that do not look
there: munged listens on its default socket (Slurm's database client ignores `AuthInfo`; a munged
already running there is reused), and /etc/slurm/slurm.conf links to the configuration while the
cluster runs (the srun inside each Snakemake job has SLURM_CONF removed); an existing file there
is never replaced. Accounting goes
through slurmdbd into MariaDB, so `sacct` answers as on a real cluster. The node advertises two
stand-in GPUs (`Gres=gpu:2`, empty files as devices), so GPU requests are scheduled and recorded even
on a machine without one. Run as root (the CI machine is); `python tests/slurm_cluster.py DIR`
starts one by hand and prints the environment to use.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

DAEMONS = ("munged", "mariadbd", "mariadb-install-db", "slurmdbd", "slurmctld", "slurmd", "sbatch")
CLUSTER = "dnalm"
# Slurm's clients reach munged at its default socket whatever AuthInfo says (sacctmgr -> slurmdbd)
MUNGE_SOCKET = Path("/run/munge/munge.socket.2")
# Snakemake's jobstep plugin drops SLURM_* (SLURM_CONF too) before its nested srun, which then
# reads the default configuration file
DEFAULT_CONF = Path("/etc/slurm/slurm.conf")
ACCOUNT = "dnalm"


def missing_programs() -> list[str]:
    """Programs this cluster needs that are not installed (Debian: munge, mariadb-server,
    slurmdbd, slurmctld, slurmd, slurm-client)."""
    path = os.environ.get("PATH", "") + ":/usr/sbin:/sbin"
    return [p for p in DAEMONS if shutil.which(p, path=path) is None]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(what: str, check, timeout: float, logs: list[Path]) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.3)
    tails = "\n".join(
        f"--- {log}\n{log.read_text(errors='replace')[-2000:]}" for log in logs if log.exists()
    )
    raise RuntimeError(f"{what} did not come up within {timeout:.0f} s\n{tails}")


class SlurmCluster:
    """Start with `start()`, stop with `stop()` (also a context manager)."""

    def __init__(
        self, root: Path, *, cpus: int | None = None, memory_mb: int | None = None, gpus: int = 2
    ) -> None:
        """`cpus` and `memory_mb` may exceed the machine's (slurmd takes the configured node, not
        the hardware), so requests sized for a GPU node can be scheduled on a laptop."""
        self.root = Path(root).resolve()
        self.cpus = cpus or os.cpu_count() or 1
        self.memory_mb = memory_mb
        self.gpus = gpus
        self.node = socket.gethostname().split(".")[0]
        self.procs: list[subprocess.Popen] = []
        self.linked = False
        self.env = {
            **os.environ,
            "SLURM_CONF": str(self.root / "slurm.conf"),
            "PATH": f"{os.environ.get('PATH', '')}:/usr/sbin:/sbin",
        }

    # --- configuration -------------------------------------------------------------------------
    def _write_configs(self) -> None:
        r = self.root
        for sub in ("munge", "mysql", "state", "spool", "log"):
            (r / sub).mkdir(parents=True, exist_ok=True)
        (r / "munge").chmod(0o700)
        key = r / "munge" / "munge.key"
        key.write_bytes(secrets.token_bytes(1024))
        key.chmod(0o400)
        self.ports = {n: _free_port() for n in ("mysql", "dbd", "ctld", "slurmd")}
        mem_mb = self.memory_mb or int(
            os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**20 * 0.9
        )
        (r / "slurm.conf").write_text(
            f"""ClusterName={CLUSTER}
SlurmctldHost={self.node}(127.0.0.1)
SlurmctldPort={self.ports["ctld"]}
SlurmdPort={self.ports["slurmd"]}
SlurmUser=root
SlurmdUser=root
StateSaveLocation={r / "state"}
SlurmdSpoolDir={r / "spool"}
SlurmctldPidFile={r / "slurmctld.pid"}
SlurmdPidFile={r / "slurmd.pid"}
SlurmctldLogFile={r / "log" / "slurmctld.log"}
SlurmdLogFile={r / "log" / "slurmd.log"}
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/linux
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU_Memory
GresTypes=gpu
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStoragePort={self.ports["dbd"]}
AccountingStorageTRES=gres/gpu
AccountingStoreFlags=job_comment
MinJobAge=300
ReturnToService=2
SlurmdParameters=config_overrides
SchedulerType=sched/backfill
MpiDefault=none
NodeName={self.node} NodeAddr=127.0.0.1 CPUs={self.cpus} RealMemory={mem_mb} Gres=gpu:{self.gpus} State=UNKNOWN
PartitionName=debug Nodes={self.node} Default=YES MaxTime=INFINITE State=UP
"""
        )
        # stand-in device files: slurmd drops a GPU without one; nothing opens them
        (r / "dev").mkdir(exist_ok=True)
        for i in range(self.gpus):
            (r / "dev" / f"nvidia{i}").touch()
        files = f"{r / 'dev'}/nvidia[0-{self.gpus - 1}]" if self.gpus > 1 else f"{r}/dev/nvidia0"
        (r / "gres.conf").write_text(f"NodeName={self.node} Name=gpu File={files}\n")
        dbd = r / "slurmdbd.conf"
        dbd.write_text(
            f"""DbdHost=localhost
DbdAddr=127.0.0.1
DbdPort={self.ports["dbd"]}
SlurmUser=root
LogFile={r / "log" / "slurmdbd.log"}
PidFile={r / "slurmdbd.pid"}
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort={self.ports["mysql"]}
StorageUser=slurm
StoragePass=slurm
StorageLoc=slurm_acct_db
"""
        )
        dbd.chmod(0o600)

    # --- daemons -------------------------------------------------------------------------------
    def _spawn(self, name: str, args: list[str]) -> None:
        log = open(self.root / "log" / f"{name}.out", "wb")  # noqa: SIM115 - closed with the process
        self.procs.append(
            subprocess.Popen(
                args, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        )

    def _ok(self, *args: str) -> bool:
        return subprocess.run(args, env=self.env, capture_output=True).returncode == 0

    def run(self, *args: str) -> str:
        out = subprocess.run(args, env=self.env, capture_output=True, text=True, timeout=60)
        if out.returncode != 0:
            raise RuntimeError(f"{' '.join(args)} failed: {out.stderr.strip()}")
        return out.stdout

    def start(self) -> SlurmCluster:
        missing = missing_programs()
        if missing:
            raise RuntimeError(
                f"SLURM test cluster: {', '.join(missing)} not installed; on Debian: apt-get "
                "install munge mariadb-server slurmdbd slurmctld slurmd slurm-client"
            )
        if os.geteuid() != 0:
            raise RuntimeError("SLURM test cluster: the daemons run as root here; run as root")
        r = self.root
        self._write_configs()
        if not self._ok("munge", "-n"):  # one munged serves every daemon and client
            MUNGE_SOCKET.parent.mkdir(parents=True, exist_ok=True)
            self._spawn(
                "munged",
                [
                    "munged",
                    "--foreground",
                    "--force",
                    f"--key-file={r / 'munge' / 'munge.key'}",
                    f"--socket={MUNGE_SOCKET}",
                    f"--pid-file={r / 'munge' / 'munged.pid'}",
                    f"--log-file={r / 'log' / 'munged.log'}",
                    f"--seed-file={r / 'munge' / 'munged.seed'}",
                ],
            )
            _wait("munged", lambda: self._ok("munge", "-n"), 20, [r / "log" / "munged.out"])

        self.run(
            "mariadb-install-db",
            "--user=root",
            f"--datadir={r / 'mysql'}",
            "--auth-root-authentication-method=socket",
            "--skip-test-db",
        )
        sock = r / "mysqld.sock"
        self._spawn(
            "mariadbd",
            [
                "mariadbd",
                "--no-defaults",
                "--user=root",
                f"--datadir={r / 'mysql'}",
                f"--socket={sock}",
                f"--port={self.ports['mysql']}",
                "--bind-address=127.0.0.1",
                f"--pid-file={r / 'mysqld.pid'}",
                "--innodb-buffer-pool-size=64M",
            ],
        )
        mysql = ["mariadb", "--no-defaults", f"--socket={sock}", "-uroot"]
        _wait(
            "MariaDB", lambda: self._ok(*mysql, "-e", "SELECT 1"), 60, [r / "log" / "mariadbd.out"]
        )
        self.run(
            *mysql,
            "-e",
            "CREATE USER 'slurm'@'127.0.0.1' IDENTIFIED BY 'slurm'; "
            "GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';",
        )

        if DEFAULT_CONF.is_symlink() and not DEFAULT_CONF.exists():
            DEFAULT_CONF.unlink()  # left by a cluster that was killed
        if DEFAULT_CONF.exists() or DEFAULT_CONF.is_symlink():
            raise RuntimeError(
                f"SLURM test cluster: {DEFAULT_CONF} exists (a real SLURM here?); it is not "
                "replaced. Run the test where no SLURM is configured."
            )
        DEFAULT_CONF.parent.mkdir(parents=True, exist_ok=True)
        DEFAULT_CONF.symlink_to(r / "slurm.conf")
        self.linked = True

        self._spawn("slurmdbd", ["slurmdbd", "-D"])
        _wait(
            "slurmdbd",
            lambda: self._ok("sacctmgr", "-n", "list", "cluster"),
            60,
            [r / "log" / "slurmdbd.log", r / "log" / "slurmdbd.out"],
        )
        self.run("sacctmgr", "-i", "add", "cluster", CLUSTER)
        self.run("sacctmgr", "-i", "add", "account", ACCOUNT, f"Cluster={CLUSTER}")
        self.run("sacctmgr", "-i", "add", "user", "root", f"Account={ACCOUNT}")
        self.run("sacctmgr", "-i", "modify", "user", "root", "set", f"DefaultAccount={ACCOUNT}")

        self._spawn("slurmctld", ["slurmctld", "-D", "-i"])
        _wait(
            "slurmctld",
            lambda: self._ok("scontrol", "ping"),
            60,
            [r / "log" / "slurmctld.log", r / "log" / "slurmctld.out"],
        )
        self._spawn("slurmd", ["slurmd", "-D", "-N", self.node])

        def node_idle() -> bool:
            out = subprocess.run(
                ["sinfo", "-h", "-N", "-o", "%t"], env=self.env, capture_output=True, text=True
            )
            return out.stdout.strip() == "idle"

        _wait("slurmd", node_idle, 60, [r / "log" / "slurmd.log", r / "log" / "slurmctld.log"])
        return self

    def stop(self) -> None:
        for proc in reversed(self.procs):
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        self.procs.clear()
        if self.linked and DEFAULT_CONF.is_symlink():
            DEFAULT_CONF.unlink()
            self.linked = False

    def __enter__(self) -> SlurmCluster:
        # a failed start never reaches __exit__: stop what it spawned (MariaDB was left running)
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc) -> None:
        self.stop()


if __name__ == "__main__":
    cluster = SlurmCluster(Path(sys.argv[1] if len(sys.argv) > 1 else "slurm-test")).start()
    print(f"export SLURM_CONF={cluster.env['SLURM_CONF']}  # Ctrl-C stops the cluster")
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        cluster.stop()
