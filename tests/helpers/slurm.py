"""A real one-node Slurm cluster for the tests: munged, MariaDB, slurmdbd, slurmctld and slurmd, started as this
process's children with every file (configs, state, spool, logs, sockets) in one folder, on free ports, so that
nothing of a system-wide Slurm or MariaDB is touched. ``SLURM_CONF`` points sbatch, sacct, scontrol and scancel at
it (submitit calls those). Accounting (slurmdbd and a database) is there because submitit reads job states with
``sacct``: without it a job that dies before writing its result looks ``UNKNOWN`` forever.

Debian's ``slurm-wlm``, ``slurmdbd``, ``munge`` and ``mariadb-server`` provide the programs
(``scripts/slurm_setup.sh`` installs them); :func:`why_not` says in one line why no cluster can start here.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Optional

__all__ = ["why_not", "Cluster"]

PROGRAMS = ("munged", "mungekey", "mariadbd", "mariadb-install-db", "slurmdbd", "slurmctld", "slurmd", "sbatch",
            "sacct", "sacctmgr", "scontrol", "squeue", "scancel")
CLUSTER = "superbtest"
PARTITION = "debug"


def why_not() -> Optional[str]:
    """Why no cluster can start on this machine (None: it can)."""
    missing = [p for p in PROGRAMS if shutil.which(p) is None and not Path("/usr/sbin", p).exists()]
    if missing:
        return f"Slurm is not installed here (missing {', '.join(missing)}; scripts/slurm_setup.sh installs it)"
    if os.geteuid() != 0:
        return "the test cluster's slurmd must run as root (it starts jobs as their user)"
    return None


def _program(name: str) -> str:
    return shutil.which(name) or str(Path("/usr/sbin", name))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _memory_mb() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) // 1024
    raise RuntimeError("no MemTotal in /proc/meminfo")


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _parents() -> dict[int, int]:
    """{pid: parent pid} of every process."""
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    return parents


def _kill_trees(roots: list[int]) -> None:
    """SIGKILL these processes and all their descendants."""
    parents = _parents()
    doomed, frontier = set(roots), list(roots)
    while frontier:
        children = [pid for pid, parent in parents.items() if parent in frontier and pid not in doomed]
        doomed.update(children)
        frontier = children
    for pid in doomed - {os.getpid()}:
        try:
            os.kill(pid, 9)
        except ProcessLookupError:
            pass


def _environ(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return b""


def _wait_for(check, what: str, log: Path, timeout: float = 60.0) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if check():
            return
        time.sleep(0.2)
    tail = log.read_text()[-2000:] if log.is_file() else "(no log)"
    raise RuntimeError(f"{what} did not come up within {timeout:.0f} s; {log}:\n{tail}")


class Cluster:
    """The cluster under ``root``: :meth:`start`, then :attr:`env` for the commands, then :meth:`stop`."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.host = socket.gethostname().split(".")[0]
        self.cpus = os.cpu_count() or 1
        self.memory_mb = max(256, _memory_mb() - 1024)  # leave the node some memory of its own
        self.ports = {name: _free_port() for name in ("mysql", "dbd", "ctld", "slurmd")}
        self.procs: dict[str, subprocess.Popen] = {}
        self.conf = self.root / "slurm.conf"
        self.env = {**os.environ, "SLURM_CONF": str(self.conf)}

    # ------------------------------------------------------------------------------------------------- helpers
    def command(self, *args: str, check: bool = True, timeout: float = 60) -> str:
        """Run a Slurm client command against this cluster; its stdout."""
        done = subprocess.run(list(args), env=self.env, capture_output=True, text=True, timeout=timeout)
        if check and done.returncode:
            raise RuntimeError(f"{' '.join(args)} failed ({done.returncode}): {done.stderr.strip()}")
        return done.stdout

    def _spawn(self, name: str, args: list[str]) -> None:
        log = open(self.root / f"{name}.out", "w")
        self.procs[name] = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=self.env,
                                            start_new_session=True)

    def _alive(self, name: str) -> None:
        if self.procs[name].poll() is not None:
            log = self.root / f"{name}.log"
            out = self.root / f"{name}.out"
            text = "".join(p.read_text()[-1500:] for p in (out, log) if p.is_file())
            raise RuntimeError(f"{name} exited ({self.procs[name].returncode}):\n{text}")

    # ------------------------------------------------------------------------------------------------- start
    def start(self) -> "Cluster":
        self.root.mkdir(parents=True, exist_ok=True)
        for sub in ("state", "spool", "mysql"):
            (self.root / sub).mkdir(exist_ok=True)
        started = time.time()
        self._start_munge()
        self._start_mariadb()
        self._write_configs()
        self._spawn("slurmdbd", [_program("slurmdbd"), "-D"])  # reads slurmdbd.conf next to $SLURM_CONF
        self._wait_port("slurmdbd", self.ports["dbd"])
        self.command("sacctmgr", "-i", "add", "cluster", CLUSTER)
        self._spawn("slurmctld", [_program("slurmctld"), "-D", "-i", "-f", str(self.conf)])
        self._wait_port("slurmctld", self.ports["ctld"])
        self.start_slurmd()
        self.startup_s = time.time() - started
        return self

    def _start_munge(self) -> None:
        key = self.root / "munge.key"
        if not key.exists():
            subprocess.run([_program("mungekey"), "--create", f"--keyfile={key}"], check=True, capture_output=True)
        key.chmod(0o400)
        self.munge_socket = self.root / "munge.socket"
        self._spawn("munged", [_program("munged"), "--foreground", "--force", f"--key-file={key}",
                               f"--socket={self.munge_socket}", f"--pid-file={self.root / 'munged.pid'}",
                               f"--log-file={self.root / 'munged.log'}", f"--seed-file={self.root / 'munge.seed'}"])
        _wait_for(self.munge_socket.exists, "munged", self.root / "munged.log", timeout=20)

    def _start_mariadb(self) -> None:
        data = self.root / "mysql"
        if not (data / "mysql").is_dir():  # a fresh data folder; grants are skipped below, so no users to set up
            subprocess.run([_program("mariadb-install-db"), "--no-defaults", f"--datadir={data}", "--user=root",
                            "--auth-root-authentication-method=normal", "--skip-test-db"],
                           check=True, capture_output=True)
        self._spawn("mariadb", [_program("mariadbd"), "--no-defaults", f"--datadir={data}", "--user=root",
                                f"--socket={self.root / 'mysql.sock'}", f"--port={self.ports['mysql']}",
                                "--bind-address=127.0.0.1", "--skip-grant-tables", "--skip-log-bin",
                                "--innodb-buffer-pool-size=32M", "--innodb-log-file-size=8M",
                                "--innodb-flush-log-at-trx-commit=0", "--innodb-doublewrite=0",
                                f"--pid-file={self.root / 'mysql.pid'}", f"--log-error={self.root / 'mariadb.log'}"])
        self._wait_port("mariadb", self.ports["mysql"])

    def _wait_port(self, name: str, port: int) -> None:
        def up() -> bool:
            self._alive(name)
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    return True
            except OSError:
                return False

        _wait_for(up, name, self.root / f"{name}.log")

    def _node_up(self) -> bool:
        self._alive("slurmd")
        state = self.command("sinfo", "-h", "-N", "-o", "%T", check=False).strip()
        return state in ("idle", "mixed", "allocated")

    def _write_configs(self) -> None:
        r, auth = self.root, f"AuthType=auth/munge\nAuthInfo=socket={self.munge_socket}"
        dbd = r / "slurmdbd.conf"
        dbd.write_text(f"""{auth}
DbdHost=localhost
DbdAddr=127.0.0.1
DbdPort={self.ports['dbd']}
SlurmUser=root
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort={self.ports['mysql']}
StorageUser=root
StorageLoc=slurm_acct_db
PidFile={r / 'slurmdbd.pid'}
LogFile={r / 'slurmdbd.log'}
""")
        dbd.chmod(0o600)  # slurmdbd refuses a config others can read
        # one GPU the node says it has (no device behind it): the jobs' GPU requests are scheduled and shown as asked
        (r / "gres.conf").write_text(f"NodeName={self.host} Name=gpu File=/dev/null\n")
        # cred_expire: a requeued job waits this long before it may start again (default 120 s)
        self.conf.write_text(f"""ClusterName={CLUSTER}
SlurmctldHost={self.host}(127.0.0.1)
SlurmctldPort={self.ports['ctld']}
SlurmdPort={self.ports['slurmd']}
{auth},cred_expire=10
CredType=cred/munge
SlurmUser=root
SlurmdUser=root
StateSaveLocation={r / 'state'}
SlurmdSpoolDir={r / 'spool'}
SlurmctldPidFile={r / 'slurmctld.pid'}
SlurmdPidFile={r / 'slurmd.pid'}
SlurmctldLogFile={r / 'slurmctld.log'}
SlurmdLogFile={r / 'slurmd.log'}
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SchedulerType=sched/backfill
# a requeued job becomes eligible at a time (cred_expire) without an event: schedule every few seconds, not minute
SchedulerParameters=sched_interval=3,bf_interval=3
MpiDefault=none
ReturnToService=2
MinJobAge=10
KillWait=5
InactiveLimit=0
SlurmdTimeout=20
MessageTimeout=5
# no requeue unless a job asks for it (--requeue), as on many clusters: the study's jobs must ask
JobRequeue=0
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStoragePort={self.ports['dbd']}
# the munge socket for the connections to slurmdbd (Slurm reads AuthInfo for the others)
AccountingStoragePass={self.munge_socket}
AccountingStorageEnforce=limits
AccountingStorageTRES=gres/gpu
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
GresTypes=gpu
NodeName={self.host} NodeAddr=127.0.0.1 CPUs={self.cpus} RealMemory={self.memory_mb} Gres=gpu:1 State=UNKNOWN
PartitionName={PARTITION} Nodes={self.host} Default=YES MaxTime=INFINITE State=UP
""")

    # ------------------------------------------------------------------------------------------------- the node
    def lose_node(self, job_id: str) -> None:
        """The node dies under a job: slurmd stops and every process of the job (its slurmstepd and what it
        started) is killed."""
        proc = self.procs.pop("slurmd")
        proc.terminate()
        proc.wait(timeout=30)
        _kill_trees([pid for pid in _parents() if _cmdline(pid).startswith(f"slurmstepd: [{job_id}")])

    def start_slurmd(self) -> None:
        self._spawn("slurmd", [_program("slurmd"), "-D", "-f", str(self.conf), "-N", self.host])
        _wait_for(self._node_up, "the node", self.root / "slurmd.log", timeout=120)

    # ------------------------------------------------------------------------------------------------- stop
    def stop(self) -> None:
        """Every daemon, the last started first, then the job steps left on the node."""
        for name in reversed(list(self.procs)):
            proc = self.procs[name]
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, 9)
                    proc.wait()
        self.procs.clear()
        # job steps outlive slurmd (their own sessions), e.g. one still reporting its end to a stopped controller
        mark = f"SLURM_CONF={self.conf}".encode() + b"\0"
        _kill_trees([pid for pid in _parents() if _cmdline(pid).startswith("slurmstepd")
                     and mark in _environ(pid)])


if __name__ == "__main__":  # a manual check: start, run one job, stop
    import sys
    import tempfile

    reason = why_not()
    if reason:
        sys.exit(reason)
    cluster = Cluster(Path(tempfile.mkdtemp(prefix="slurm-")))
    try:
        cluster.start()
        print(f"started in {cluster.startup_s:.1f} s under {cluster.root}")
        t = time.time()
        job = cluster.command("sbatch", "--parsable", "-o", "/dev/null", "--wrap", "hostname").strip()
        while "COMPLETED" not in cluster.command("sacct", "-n", "-X", "-o", "State", "-j", job):
            time.sleep(0.5)
        print(f"job {job} completed {time.time() - t:.1f} s after sbatch")
    finally:
        cluster.stop()
