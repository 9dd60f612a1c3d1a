"""One VM run: boot the kernel package under qemu, run a scenario in the guest, bring
the results back.

The guest boots with virtme-ng: this machine's root shared read-only over 9p,
software emulation (KVM hung at boot on these machines), 1 GiB and 2 vCPUs. A
scratch folder `<cache>/runs/run-*` is shared read-write for the guest's timeline
and logs; it is moved to OUT afterwards and removed, with the disk image of
global-mixed. The boot runs under the lab lock (`zoomdlab.lab.lock`'s file), so it
never overlaps a cgroup-lab run, and under a wall-clock timeout after which qemu's
whole process group is killed.
"""

from __future__ import annotations

import fcntl
import json
import os
import shlex
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import asdict, dataclass, field
from typing import Any

from zoomdlab.lab.lock import LAB_LOCK_PATH
from zoomdlab.vmlab.provision import Toolchain, VmLabError, repo_root

MiB = 1 << 20
# Folders virtme-ng's guest init covers with a tmpfs: a cache there is passed in with
# --rodir, and the run folder then sits beside the cache (a later --rodir mount would
# hide it inside).
GUEST_TMPFS = ("/var/tmp/", "/var/log/", "/var/cache/", "/var/lib/private/", "/var/lib/apt/",
               "/run/", "/tmp/")


def hidden_in_guest(path: str) -> bool:
    """True when the guest's own mounts hide `path` of the shared host root."""
    return (os.path.abspath(path) + "/").startswith(GUEST_TMPFS)


@dataclass(frozen=True, slots=True)
class Scenario:
    """What the guest runs: a lab workload and the swap it runs against."""

    workload: str  # zoomdlab.lab.workload name
    size: int
    zram: int
    hot: int = 0  # compressible: hot set
    fill_rate: int = 0  # compressible: bytes/s while filling
    disk_swap: int = 0  # bytes of virtio-blk swap beside zram (priority 10 < zram's 100)
    # The workload in the root cgroup, beside a small group running the lab's
    # bystander: a host without systemd, where processes sit beside groups.
    in_root: bool = False
    description: str = ""


SCENARIOS: dict[str, Scenario] = {
    "global-thrash": Scenario(
        "thrash", 1100 * MiB, 1 << 30,
        description="1100 MB half-compressible process, touching every page, 1 GiB zram",
    ),
    "global-compressible": Scenario(
        "compressible", 1400 * MiB, 1 << 30, hot=160 * MiB, fill_rate=48 * MiB,
        description="1400 MB, all but a 160 MB hot set nearly empty pages, 1 GiB zram: "
        "larger than RAM, compresses far, keeps making progress",
    ),
    "global-thrash-root": Scenario(
        "thrash", 1100 * MiB, 1 << 30, in_root=True,
        description="global-thrash run in the root cgroup, beside a small group (the "
        "lab's bystander): processes beside groups, as on hosts without systemd",
    ),
    "global-mixed": Scenario(
        "thrash", 1100 * MiB, 512 * MiB, disk_swap=1 << 30,
        description="global-thrash with 512 MiB zram and a 1 GiB disk swap (virtio-blk) "
        "at lower priority",
    ),
}

# The daemons under test. "{zoomd}" is the guest venv's zoomd, "{shipped}" the
# configuration shipped in that zoomd, "{run}" the run folder as the guest sees it.
DAEMONS: dict[str, list[str] | None] = {
    "kernel": None,
    "zoomd": ["{zoomd}", "run", "--config", "{shipped}"],
    "zoomd-systemd-oomd": ["{zoomd}", "run", "--config", "{run}/systemd-oomd.toml"],
    "earlyoom": ["/usr/bin/earlyoom"],
    "nohang": ["/usr/sbin/nohang", "--monitor", "--config", "/etc/nohang/nohang.conf"],
    "nohang-zram-psi": ["/usr/sbin/nohang", "--monitor", "--config", "{run}/nohang-zram-psi.conf"],
}
DAEMON_NOTES = {
    "kernel": "no userspace daemon: the kernel's own OOM killer only",
    "zoomd": "zoomd run with the shipped default configuration (zoomd/data/zoomd.toml)",
    "zoomd-systemd-oomd": "zoomd run --config policies/systemd-oomd.toml "
    "(systemd-oomd's default algorithm in zoomd's terms)",
    "earlyoom": "earlyoom 1.7 defaults (-m 10 -s 10); it has no zram or PSI option",
    "nohang": "nohang 0.2.0 with its shipped /etc/nohang/nohang.conf",
    "nohang-zram-psi": "nohang with zram_checking_enabled and psi_checking_enabled = True "
    "(its documented zram/PSI options, other values as shipped)",
}


@dataclass
class VmRun:
    """One run: scenario x daemon for `duration` seconds of workload (guest time)."""

    scenario: str
    daemon: str
    duration: float
    out: str
    memory: str = "1G"
    cpus: int = 2
    interval: float = 0.25
    timeout: float | None = None  # wall seconds for the whole VM; default from duration
    extra: dict[str, Any] = field(default_factory=dict)

    def wall_timeout(self) -> float:
        return self.timeout or (self.duration + 360.0)


def _nohang_zram_psi(path: str) -> None:
    with open("/etc/nohang/nohang.conf") as f:
        text = f.read()
    for key in ("zram_checking_enabled", "psi_checking_enabled"):
        text = text.replace(f"{key} = False", f"{key} = True")
    with open(path, "w") as f:
        f.write(text)


def _prepare_stage(run: VmRun, tools: Toolchain, stage: str) -> dict[str, Any]:
    """Write the spec and the daemon's configuration into the run folder."""
    if run.scenario not in SCENARIOS:
        raise VmLabError(f"unknown scenario {run.scenario!r}; known: {', '.join(SCENARIOS)}")
    if run.daemon not in DAEMONS:
        raise VmLabError(f"unknown daemon {run.daemon!r}; known: {', '.join(DAEMONS)}")
    sc = SCENARIOS[run.scenario]
    if run.daemon == "zoomd-systemd-oomd":
        repo = repo_root()
        if repo is None:
            raise VmLabError("policies/systemd-oomd.toml needs the source checkout")
        shutil.copy(os.path.join(repo, "policies", "systemd-oomd.toml"), stage)
    if run.daemon == "nohang-zram-psi":
        _nohang_zram_psi(os.path.join(stage, "nohang-zram-psi.conf"))
    zoomd_bin = os.path.join(os.path.dirname(tools.python), "zoomd")
    shipped = _shipped_config(tools.python)
    argv = DAEMONS[run.daemon]
    if argv is not None:
        argv = [a.replace("{zoomd}", zoomd_bin).replace("{shipped}", shipped)
                .replace("{run}", stage) for a in argv]
    spec: dict[str, Any] = {
        "scenario": run.scenario,
        "daemon": run.daemon,
        "daemon_argv": argv,
        "workload": sc.workload,
        "size": sc.size,
        "hot": sc.hot,
        "fill_rate": sc.fill_rate,
        "zram": sc.zram,
        "disk_swap": sc.disk_swap,
        "in_root": sc.in_root,
        "duration": run.duration,
        "interval": run.interval,
        "kroot": tools.kroot,
        "out": stage,
        **run.extra,
    }
    with open(os.path.join(stage, "spec.json"), "w") as f:
        json.dump(spec, f, indent=1)
    return spec


def _shipped_config(python: str) -> str:
    proc = subprocess.run(
        [python, "-c", "from zoomd.config.load import shipped_config_path as p; print(p())"],
        capture_output=True, text=True, check=True, cwd="/",
    )
    return proc.stdout.strip()


def virtme_argv(run: VmRun, tools: Toolchain, stage: str, disk: str | None) -> list[str]:
    """The virtme-run command line (FIELD-NOTES' recipe)."""
    q = shlex.quote
    guest = (f"cd / && {q(tools.python)} -m zoomdlab.vmlab.guest {q(stage)}/spec.json"
             f" > {q(stage)}/guest.log 2>&1; echo zoomd-vmlab-guest-exit=$?")
    argv = [
        tools.virtme_run, "--kimg", tools.kimg, "--mods", "auto",
        "--memory", run.memory, "--cpus", str(run.cpus),
        "--force-9p", "--disable-kvm", "--show-boot-console",
        "--rwdir", f"{stage}={stage}",
    ]
    if hidden_in_guest(tools.cache):
        argv += ["--rodir", f"{tools.cache}={tools.cache}"]
    if disk:
        argv += ["--blk-disk", f"swap={disk}"]
    return [*argv, "--script-sh", guest]


def _boot(argv: list[str], console: str, timeout: float) -> tuple[int | None, float]:
    """Run virtme-run; kill its process group (qemu included) on timeout."""
    t0 = time.monotonic()
    with open(console, "w") as log:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
        try:
            rc: int | None = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            rc = None
        except BaseException:  # Ctrl-C, SIGTERM (as KeyboardInterrupt): no qemu left behind
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            raise
        finally:
            with suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)  # anything virtme left behind
    return rc, time.monotonic() - t0


@contextmanager
def vm_lock(path: str = LAB_LOCK_PATH, timeout: float = 3600.0) -> Iterator[None]:
    """The lab lock (same file and flock as `lab_lock`), waited for in the kernel.

    A blocking flock wakes the moment the holder lets go; lab_lock's polling loses
    that race to a benchmark that starts its next run right away.
    """
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    main = threading.current_thread() is threading.main_thread()

    def _timeout(_signum: int, _frame: object) -> None:
        raise TimeoutError(f"{path}: another lab run held the lock for {timeout:.0f} s")

    old = signal.signal(signal.SIGALRM, _timeout) if main else None
    try:
        if main:
            signal.setitimer(signal.ITIMER_REAL, timeout)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        finally:
            if main:
                signal.setitimer(signal.ITIMER_REAL, 0)
                signal.signal(signal.SIGALRM, old)
        yield
    finally:
        os.close(fd)


def run_vm(run: VmRun, tools: Toolchain, take_lock: bool = True) -> dict[str, Any]:
    """Boot, run, collect into run.out; returns (and writes) the summary."""
    from zoomdlab.vmlab.summary import summarize_vm

    if hidden_in_guest(tools.cache):
        stage = tempfile.mkdtemp(prefix="zoomd-vmlab-run-", dir=os.path.dirname(tools.cache))
    else:
        runs = os.path.join(tools.cache, "runs")
        os.makedirs(runs, exist_ok=True)
        stage = tempfile.mkdtemp(prefix="run-", dir=runs)
    os.makedirs(run.out, exist_ok=True)
    try:
        spec = _prepare_stage(run, tools, stage)
        disk = None
        if spec["disk_swap"]:
            disk = os.path.join(stage, "swap.img")
            with open(disk, "wb") as f:
                f.truncate(spec["disk_swap"])
        argv = virtme_argv(run, tools, stage, disk)
        with ExitStack() as stack:
            if take_lock:
                stack.enter_context(vm_lock())
            rc, wall = _boot(argv, os.path.join(stage, "console.log"), run.wall_timeout())
        if disk:
            os.unlink(disk)
        for name in os.listdir(stage):
            shutil.move(os.path.join(stage, name), os.path.join(run.out, name))
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    meta = {
        "run": asdict(run),
        "virtme_argv": argv,
        "virtme_returncode": rc,
        "timed_out": rc is None,
        "wall_seconds": round(wall, 1),
        "toolchain": tools.to_json(),
    }
    with open(os.path.join(run.out, "vm.json"), "w") as f:
        json.dump(meta, f, indent=1)
    summary = summarize_vm(run.out)
    summary["vm"] = {k: meta[k] for k in ("virtme_returncode", "timed_out", "wall_seconds")}
    summary["kernel_package"] = f"{tools.package} {tools.package_version}"
    with open(os.path.join(run.out, "summary.json"), "w") as f:
        json.dump(summary, f, indent=2)
        f.write("\n")
    return summary
