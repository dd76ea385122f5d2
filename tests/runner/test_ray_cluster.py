"""Ray on a real cluster: a head and two worker nodes on this machine, one worker killed mid-run.

The nodes are separate ``ray start --block`` processes on 127.0.0.2, a loopback address (Ray rewrites
127.0.0.1 and localhost to the machine's network address; 127.0.0.2 it keeps). The head has no CPUs,
so every run goes to a worker; each worker has 1 CPU, its own custom resource and its own
counter file (``KICK_TEST_COUNTER`` is inherited from the ``ray start`` process by its raylet, Ray
workers and their kernels), so the counters tell which node started which run. Worker A also sleeps
in every run (``KICK_TEST_SLEEP``), so its first run is still in flight when the test SIGKILLs A's
whole process tree (``ray start``, raylet, agents, Ray workers and the Jupyter kernel). The sweep,
driven by ``kick run --executor ray`` as a subprocess, must still finish, with the killed run
re-executed on worker B and every record and ``examples.jsonl`` identical to the local executor's.

Token authentication is off (``RAY_AUTH_MODE=disabled``) for this loopback cluster. Teardown kills the
process trees this test started (and any process naming its temp dir), not ``ray stop --force``: that
stops every Ray process on the machine, including other users' clusters.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

pytest.importorskip("ray", reason="ray is an optional extra: pip install -e '.[ray]'")
psutil = pytest.importorskip("psutil", reason="psutil (a Ray dependency) finds the node's processes to kill")

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent
IP = "127.0.0.2"
# Record fields that legitimately differ between the local and the Ray runs of the same config:
# the absolute run folder, and the node that executed the run (hostname, Ray node id).
DIFFERS = {"paths": ("run_dir", "node", "ray_node")}
NODE_FIELDS = ("--node-manager-port", "--object-manager-port", "--dashboard-agent-listen-port",
               "--dashboard-agent-grpc-port", "--runtime-env-agent-port", "--metrics-export-port")
WAIT = 300.0  # seconds before a hung step fails the test (a guard against hangs, not an assertion)

NODES_SCRIPT = """\
import json, sys, time, ray
ray.init(address=sys.argv[1], log_to_driver=False)
for _ in range(int(float(sys.argv[3]))):
    alive = [n for n in ray.nodes() if n["Alive"]]
    if len(alive) >= int(sys.argv[2]):
        break
    time.sleep(1)
print(json.dumps({k: n["NodeID"] for n in alive for k in n["Resources"] if k.startswith("kick_")}))
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def node_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KICK_TEST_", "RAY_"))}
    return {**env, "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled", **extra}


def kill_tree(proc: subprocess.Popen) -> None:
    """SIGKILL a process and everything below it (the kernel runs in its own session, so no killpg)."""
    try:
        root = psutil.Process(proc.pid)
        procs = [*root.children(recursive=True), root]
    except psutil.NoSuchProcess:
        procs = []
    for p in procs:
        try:
            p.send_signal(signal.SIGKILL)
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(procs, timeout=30)
    proc.wait(timeout=30)


def kill_matching(text: str) -> None:
    """SIGKILL any process left whose command line names ``text`` (this cluster's temp dir)."""
    for p in psutil.process_iter(["cmdline"]):
        if any(text in arg for arg in p.info["cmdline"] or ()):
            try:
                p.kill()
            except psutil.NoSuchProcess:
                pass


class LoopbackCluster:
    """A head (0 CPUs) and named worker nodes, each a ``ray start --block`` process with its own ports."""

    def __init__(self, logs: Path):
        self.logs = logs
        self.temp_dir = tempfile.mkdtemp(prefix="kray-", dir="/tmp")  # short: Ray's socket paths have a limit
        self.port = free_port()
        self.address = f"{IP}:{self.port}"
        self.procs: dict[str, subprocess.Popen] = {}

    def start(self, name: str, *args: str, env: dict[str, str] | None = None) -> None:
        ports = [a for f in NODE_FIELDS for a in (f, str(free_port()))]
        cmd = [str(BIN / "ray"), "start", "--block", f"--node-ip-address={IP}", f"--temp-dir={self.temp_dir}",
               "--object-store-memory=200000000", "--disable-usage-stats", *ports, *args]
        with open(self.logs / f"{name}.log", "wb") as log:
            self.procs[name] = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env or self.env())

    def start_head(self) -> None:
        self.start("head", "--head", f"--port={self.port}", "--num-cpus=0", "--include-dashboard=false",
                   f"--ray-client-server-port={free_port()}")

    def start_worker(self, name: str, counter: Path, sleep: float) -> None:
        self.start(name, f"--address={self.address}", "--num-cpus=1", f"--resources={{\"kick_{name}\": 1}}",
                   env=self.env(KICK_TEST_COUNTER=str(counter), KICK_TEST_SLEEP=str(sleep)))

    def env(self, **extra: str) -> dict[str, str]:
        """Environment of a node or driver; kernels keep their sockets in the temp dir (a killed one leaves them)."""
        return node_env(JUPYTER_RUNTIME_DIR=f"{self.temp_dir}/jupyter", **extra)

    def node_ids(self, count: int) -> dict[str, str]:
        """Wait until ``count`` nodes are alive; map each worker's custom resource to its node id."""
        out = subprocess.run([sys.executable, "-c", NODES_SCRIPT, self.address, str(count), str(WAIT)],
                             capture_output=True, text=True, timeout=WAIT + 60, env=node_env())
        assert out.returncode == 0, f"cannot reach the cluster at {self.address}:\n{out.stderr[-4000:]}"
        return json.loads(out.stdout.strip().splitlines()[-1])

    def kill(self, name: str) -> None:
        kill_tree(self.procs.pop(name))

    def stop(self) -> None:
        for name in [n for n in self.procs if n != "head"] + ["head"]:
            if name in self.procs:
                self.kill(name)
        kill_matching(self.temp_dir)
        shutil.rmtree(self.temp_dir, ignore_errors=True)


@pytest.fixture
def cluster(tmp_path):
    c = LoopbackCluster(tmp_path)
    try:
        yield c
    finally:
        c.stop()


def kick_run(params: Path, results: Path, *extra: str, env: dict[str, str]) -> subprocess.Popen:
    """Start ``kick run`` as a user would, output to ``<results>.out/.err`` (a full pipe would stall it)."""
    cmd = [str(BIN / "kick"), "run", str(params), "--results", str(results), "--threads", "1", "--no-report", *extra]
    with open(f"{results}.out", "w") as out, open(f"{results}.err", "w") as err:
        return subprocess.Popen(cmd, stdout=out, stderr=err, env=env)


def finish(proc: subprocess.Popen, results: Path) -> dict:
    """Wait for ``kick run`` to exit 0 and return its JSON summary."""
    proc.wait(timeout=WAIT * 2)
    err = Path(f"{results}.err").read_text()
    assert proc.returncode == 0, f"kick run exited {proc.returncode}:\n{err[-4000:]}"
    out = Path(f"{results}.out").read_text()
    return json.loads(out[out.index("{"):])


def lines(path: Path) -> list[str]:
    return path.read_text().split()


def comparable(record: dict) -> dict:
    """The record without the fields named in DIFFERS."""
    record = json.loads(json.dumps(record))
    for key, fields in DIFFERS.items():
        for f in fields:
            record.get(key, {}).pop(f, None)
    return record


def test_sweep_survives_a_worker_node_killed_mid_run(cluster, make_params, tmp_path):
    params = make_params([{"method": ["magnitude"], "sparsity": [0.1, 0.2, 0.3]}])  # 3 runs, 3 compressions
    counters = {n: tmp_path / f"counter_{n}.txt" for n in ("local", "a", "b")}
    for path in counters.values():
        path.touch()

    local_res, ray_res = tmp_path / "local", tmp_path / "ray"
    local = finish(kick_run(params, local_res, env=cluster.env(KICK_TEST_COUNTER=str(counters["local"]))), local_res)
    run_ids = sorted(local["ok"])
    assert len(run_ids) == 3 and not local["failed"]

    cluster.start_head()
    cluster.node_ids(1)
    cluster.start_worker("a", counters["a"], sleep=600)  # A's runs never finish on their own: it is killed
    cluster.start_worker("b", counters["b"], sleep=0)
    nodes = cluster.node_ids(3)
    assert set(nodes) == {"kick_a", "kick_b"}

    # the driver's own environment has no counter: the kernels get theirs from the node they run on
    driver = kick_run(params, ray_res, "--executor", "ray", "--ray-address", cluster.address, env=cluster.env())
    try:
        deadline = time.monotonic() + WAIT
        while not lines(counters["a"]) and driver.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        started_on_a = lines(counters["a"])
        assert started_on_a, f"no run started on worker a (driver exit code {driver.poll()})"
        cluster.kill("a")  # mid-run: the run is sleeping in its kernel on a
        summary = finish(driver, ray_res)
    finally:
        if driver.poll() is None:
            kill_tree(driver)

    assert sorted(summary["ok"]) == run_ids and not summary["failed"]
    assert len(started_on_a) == 1 and started_on_a[0] in run_ids
    # every run executed on b, the killed one included (re-run by Ray's task retry, not by kick's --retries)
    assert sorted(lines(counters["b"])) == run_ids
    for run_id in run_ids:
        local_dir, ray_dir = local_res / "t" / run_id, ray_res / "t" / run_id
        ray_record = json.loads((ray_dir / "record.json").read_text())
        assert ray_record["paths"]["ray_node"] == nodes["kick_b"]
        assert comparable(ray_record) == comparable(json.loads((local_dir / "record.json").read_text()))
        assert (ray_dir / "examples.jsonl").read_text() == (local_dir / "examples.jsonl").read_text()
