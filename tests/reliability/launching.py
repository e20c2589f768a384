"""Running `launch.py` in subprocesses for the reliability tests (one process, or several joined
through a localhost coordinator), with the overrides that turn a preset into a test config."""
from __future__ import annotations

import json
import os
import pathlib
import re
import socket
import subprocess
import sys
import time

from configs import workplace

REPO = pathlib.Path(__file__).resolve().parents[2]
# Generous bound on waiting for a launcher (a hang guard, not a timing assertion).
PATIENCE_S = 900


def flags(config) -> list[str]:
    """Command-line overrides that turn the config's preset into `config`."""
    base = workplace.get_config(config.preset).to_dict()
    out = []

    def walk(ours, theirs, prefix):
        for key, value in ours.items():
            if isinstance(value, dict):
                walk(value, theirs[key], f"{prefix}{key}.")
            elif value != theirs[key]:
                out.append(f"--config.{prefix}{key}={value}")
    walk(config.to_dict(), base, "")
    return [f"--config=configs/workplace.py:{config.preset}"] + out


def environment(devices: int | None = 1) -> dict[str, str]:
    """A launcher's environment: `devices` CPU devices (tests/conftest.py forces eight here), or
    with None the launcher's own choice (`model.cpu_devices`)."""
    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONUNBUFFERED="1")
    xla = re.sub(r"--xla_force_host_platform_device_count=\d+", "", env.get("XLA_FLAGS", "")).strip()
    if devices is not None:
        xla = f"{xla} --xla_force_host_platform_device_count={devices}".strip()
    env["XLA_FLAGS"] = xla
    return env


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("localhost", 0))
        return probe.getsockname()[1]


class Launch:
    """launch.py in a subprocess; stdout/stderr go to files beside the workdir (a full pipe
    would block the process)."""

    def __init__(self, config, workdir: pathlib.Path, *, devices: int = 1, extra: tuple[str, ...] = (),
                 name: str | None = None):
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        name = name or workdir.name
        self.stderr_path = workdir.parent / f"{name}.stderr"
        self.stdout_path = workdir.parent / f"{name}.stdout"
        with open(self.stderr_path, "ab") as err, open(self.stdout_path, "ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "launch.py", *flags(config), *extra, f"--workdir={workdir}"],
                cwd=REPO, env=environment(devices), stdout=out, stderr=err)

    @property
    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    @property
    def stdout(self) -> str:
        return self.stdout_path.read_text(errors="replace")

    def logged_steps(self) -> list[int]:
        path = self.workdir / "metrics.jsonl"
        if not path.exists():
            return []
        return [json.loads(line)["step"] for line in path.read_text().splitlines() if line.endswith("}")]

    def wait_for_step(self, step: int) -> None:
        deadline = time.monotonic() + PATIENCE_S
        while not self.logged_steps() or self.logged_steps()[-1] < step:
            assert self.process.poll() is None, f"launcher exited early:\n{self.stderr[-3000:]}"
            assert time.monotonic() < deadline, f"no step {step} after {PATIENCE_S} s:\n{self.stderr[-3000:]}"
            time.sleep(0.2)

    def wait(self) -> int:
        try:
            return self.process.wait(timeout=PATIENCE_S)
        finally:
            self.kill()

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def launch_processes(config, workdir: pathlib.Path, num_processes: int) -> list[Launch]:
    """`num_processes` launchers of one run, one CPU device each, joined on a localhost port."""
    address = f"localhost:{free_port()}"
    return [Launch(config, workdir, name=f"{workdir.name}.p{i}", extra=(
        "--config.distributed.enabled=True", f"--config.distributed.coordinator_address={address}",
        f"--config.distributed.num_processes={num_processes}", f"--config.distributed.process_id={i}"))
        for i in range(num_processes)]
