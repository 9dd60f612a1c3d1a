"""A VM whose PID 1 is a real systemd: zoomd's .deb installed in a Debian guest.

The VM lab (`zoomdlab.vmlab.runner`) boots this machine's own root over 9p with a
shell as PID 1; nothing there is systemd. This module builds a guest that is a
small Debian system instead, so a real PID 1 talks to zoomd:

- **root filesystem**: `mmdebstrap --variant=minbase` of a suite (bookworm first)
  with systemd, systemd-sysv, systemd-oomd, dbus, python3 and zoomd's runtime
  dependencies, cached as a tarball under the cache (default /var/tmp/zoomd-sysvm,
  ZOOMD_SYSVM_DIR overrides) and keyed by its inputs (suite, mirror, package list,
  mmdebstrap version);
- **per boot**: the tarball is unpacked into a scratch folder, zoomd's .deb (the one
  packaging/build-deb.sh built) is installed with `dpkg -i` in a chroot, the
  scenario script and its unit are added, the kernel modules the guest loads
  (zram, ext4, virtio) are copied in, and `mke2fs -d` makes the ext4 image from the
  folder (no loop mount); the folder is removed at once, the image after the boot;
- **kernel**: the VM lab's Debian kernel package (`provision.ensure_kernel`, into
  this cache), with a tiny busybox initramfs that loads virtio-pci, virtio-blk and
  ext4, mounts /dev/vda and hands over to /lib/systemd/systemd, which boots with
  `systemd.unified_cgroup_hierarchy=1` (pure cgroup v2);
- **results**: the scenario unit (`zoomd-sysvm.service`, pulled in with
  `systemd.wants=`) writes one JSON object a line to the second serial port and the
  guest's journal to the third; qemu writes them to files; the unit powers the
  guest off when it ends (success or failure), and the host kills qemu's process
  group after a wall-clock timeout.

Software emulation (no KVM), 2 vCPUs, 1536 MiB by default. Every external step is
bounded by a timeout; nothing is left behind but OUT's files and the cache.
"""

from __future__ import annotations

import fcntl
import gzip
import hashlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from zoomdlab.vmlab.provision import VmLabError, ensure_kernel

DEFAULT_CACHE = "/var/tmp/zoomd-sysvm"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
SUITE = "bookworm"
# What the guest needs from Debian: PID 1 and systemd-oomd (whose unit the drop-in
# replaces), the system bus (org.freedesktop.oom1, oomctl), logind and pam_systemd
# (user managers), zoomd's runtime dependencies (python3, psutil, pyroute2, jeepney
# for D-Bus) and kmod (modprobe zram).
BASE_PACKAGES = (
    "systemd", "systemd-sysv", "systemd-oomd", "dbus", "libpam-systemd",
    "python3", "python3-psutil", "python3-pyroute2", "python3-jeepney",
    "kmod", "procps",
)
# Per suite: what else it needs. Trixie's python3 is 3.13, for which the vendored
# pydantic wheels of a bookworm-built .deb do not fit: it takes a .deb built with
# ZOOMD_DEB_VENDOR=no (build_deb(vendor=False)) and Debian's python3-pydantic (2.10).
SUITES: dict[str, tuple[str, ...]] = {
    "bookworm": BASE_PACKAGES,
    "trixie": (*BASE_PACKAGES, "python3-pydantic"),
}
VENDORED = {"bookworm": True, "trixie": False}
HOST_TOOLS = {
    "mmdebstrap": "mmdebstrap",
    "mke2fs": "e2fsprogs",
    "qemu-system-x86_64": "qemu-system-x86",
    "busybox": "busybox-static",
    "cpio": "cpio",
    "modprobe": "kmod",
    "depmod": "kmod",
}
# Modules the initramfs loads (in modprobe's dependency order) to reach the root
# disk, and those the guest's own modprobe finds in its /lib/modules.
INITRAMFS_MODULES = ("virtio_pci", "virtio_blk", "ext4")
GUEST_MODULES = ("zram", "virtio_pci", "virtio_blk", "ext4")
BASE_TIMEOUT = 1200.0  # mmdebstrap, downloads included
STEP_TIMEOUT = 300.0  # any other single host command

VARIANTS = ("dropin", "standalone")
DEFAULT_SCENARIOS = {
    "dropin": ["replace", "managed-kill", "managed-kill-strict", "managed-leaf",
               "swap-zram-aware", "user-manager"],
    "standalone": ["standalone"],
}
# Not in a default list (about 3 min of guest time for little more than the zram-aware
# run shows): run with --scenarios.
EXTRA_SCENARIOS = ("swap-strict",)
RESULT_SERIAL = "results.jsonl"
JOURNAL_SERIAL = "journal.log"
CONSOLE = "console.log"


class SysVmError(VmLabError):
    """The systemd guest cannot be built or booted; the message says why."""


def missing_host_tools() -> str | None:
    """Name the host tools this lab lacks (and their packages), or None."""
    missing = [f"{t} ({p})" for t, p in HOST_TOOLS.items() if not shutil.which(t)]
    return ", ".join(missing) if missing else None


def default_cache_dir() -> str:
    return os.path.abspath(os.environ.get("ZOOMD_SYSVM_DIR", DEFAULT_CACHE))


def _run(argv: list[str], timeout: float = STEP_TIMEOUT, cwd: str | None = None,
         env: dict[str, str] | None = None) -> str:
    full_env = dict(os.environ, DEBIAN_FRONTEND="noninteractive", LC_ALL="C.UTF-8")
    full_env.update(env or {})
    try:
        proc = subprocess.run(argv, cwd=cwd, env=full_env, capture_output=True, text=True,
                              timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        raise SysVmError(f"{' '.join(argv[:3])}...: timed out after {timeout:.0f} s") from exc
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-6:]
        raise SysVmError(f"{' '.join(argv[:3])}...: exit {proc.returncode}: {' | '.join(tail)}")
    return proc.stdout


@contextmanager
def _lock(cache: str, name: str = ".build.lock") -> Iterator[None]:
    os.makedirs(cache, exist_ok=True)
    fd = os.open(os.path.join(cache, name), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _mmdebstrap_version() -> str:
    return _run(["mmdebstrap", "--version"], timeout=30).strip()


def base_key(suite: str, mirror: str, packages: tuple[str, ...]) -> str:
    h = hashlib.sha256(json.dumps([suite, mirror, sorted(packages), _mmdebstrap_version(),
                                   "minbase"]).encode())
    return h.hexdigest()[:12]


def ensure_base(cache: str, suite: str = SUITE, mirror: str = DEFAULT_MIRROR,
                packages: tuple[str, ...] | None = None, name: str = "base") -> str:
    """The cached root filesystem tarball for these inputs; built once (~2 min)."""
    if packages is None:
        if suite not in SUITES:
            raise SysVmError(f"unknown suite {suite!r}; known: {', '.join(SUITES)}")
        packages = SUITES[suite]
    key = base_key(suite, mirror, packages)
    path = os.path.join(cache, f"{name}-{suite}-{key}.tar")
    if os.path.exists(path):
        return path
    for old in [*Path(cache).glob(f"{name}-{suite}-*.tar"),
                *Path(cache).glob(f"{name}-{suite}-*.json")]:
        old.unlink()  # other inputs: stale
    tmp = path + ".part"
    with suppress(FileNotFoundError):
        os.unlink(tmp)
    _run(["mmdebstrap", "--variant=minbase", "--mode=root", "--format=tar",
          "--include=" + ",".join(packages), "--aptopt=Acquire::Retries \"3\"",
          suite, tmp, mirror], timeout=BASE_TIMEOUT)
    os.rename(tmp, path)
    with open(os.path.join(cache, f"{name}-{suite}-{key}.json"), "w") as f:
        json.dump({"suite": suite, "mirror": mirror, "packages": list(packages),
                   "mmdebstrap": _mmdebstrap_version(), "tar": path}, f, indent=1)
    return path


def _module_files(kroot: str, kver: str, names: tuple[str, ...]) -> list[str]:
    """Absolute .ko paths for `names` and their dependencies, in load order."""
    out: list[str] = []
    for name in names:
        text = _run(["modprobe", "-d", kroot, "-S", kver, "--show-depends", name], timeout=30)
        for line in text.splitlines():
            parts = line.split()
            if len(parts) >= 2 and parts[0] == "insmod" and parts[1] not in out:
                out.append(parts[1])
    return out


INIT_SCRIPT = r"""#!/bin/busybox sh
# zoomd-sysvm initramfs: load virtio and ext4, mount the root disk, exec systemd.
/bin/busybox --install -s /bin
mkdir -p /proc /sys /dev /newroot
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
for m in $(cat /modules/order); do insmod "/modules/$m" 2>/dev/null || true; done
i=0
while [ ! -b /dev/vda ] && [ "$i" -lt 200 ]; do sleep 0.1; i=$((i + 1)); done
if ! mount -t ext4 -o rw /dev/vda /newroot; then
  echo "zoomd-sysvm-initramfs: cannot mount /dev/vda as ext4" >&2
  echo o > /proc/sysrq-trigger
fi
umount /proc /sys
mount --move /dev /newroot/dev
exec switch_root /newroot /lib/systemd/systemd
"""


def ensure_initramfs(cache: str, kroot: str, kver: str) -> str:
    """A gzip'd newc cpio: static busybox, the root disk's modules and /init."""
    busybox = shutil.which("busybox") or ""
    modules = _module_files(kroot, kver, INITRAMFS_MODULES)
    h = hashlib.sha256(INIT_SCRIPT.encode() + kver.encode() + busybox.encode())
    for m in modules:
        h.update(m.encode())
    path = os.path.join(cache, f"initramfs-{kver}-{h.hexdigest()[:10]}.cpio.gz")
    if os.path.exists(path):
        return path
    with tempfile.TemporaryDirectory(dir=cache, prefix="initramfs-") as tmp:
        for d in ("bin", "modules", "dev", "proc", "sys", "newroot"):
            os.makedirs(os.path.join(tmp, d))
        shutil.copy(busybox, os.path.join(tmp, "bin", "busybox"))
        order = []
        for m in modules:
            base = os.path.basename(m)
            shutil.copy(m, os.path.join(tmp, "modules", base))
            order.append(base)
        Path(tmp, "modules", "order").write_text("\n".join(order) + "\n")
        init = Path(tmp, "init")
        init.write_text(INIT_SCRIPT)
        init.chmod(0o755)
        names = _run(["find", ".", "-mindepth", "1"], cwd=tmp, timeout=30)
        proc = subprocess.run(["cpio", "-o", "-H", "newc", "--quiet", "-R", "0:0"],
                              input=names.encode(), cwd=tmp, capture_output=True,
                              timeout=60, check=False)
        if proc.returncode != 0:
            raise SysVmError(f"cpio: {proc.stderr.decode(errors='replace').strip()}")
        with gzip.open(path + ".part", "wb") as f:
            f.write(proc.stdout)
        os.rename(path + ".part", path)
    return path


@dataclass(frozen=True, slots=True)
class SysToolchain:
    cache: str
    base: str  # rootfs tarball
    kimg: str
    kroot: str
    kver: str
    initramfs: str
    kernel_package: str
    suite: str

    def to_json(self) -> dict[str, str]:
        return asdict(self)


def provision(cache: str | None = None, suite: str = SUITE,
              mirror: str = DEFAULT_MIRROR) -> SysToolchain:
    """Everything a boot needs but the .deb: rootfs tarball, kernel, initramfs."""
    cache = cache or default_cache_dir()
    missing = missing_host_tools()
    if missing:
        raise SysVmError(f"missing on the host: {missing}")
    with _lock(cache):
        base = ensure_base(cache, suite, mirror)
        kimg, kroot, kver, package, version = ensure_kernel(cache)
        initramfs = ensure_initramfs(cache, kroot, kver)
    return SysToolchain(cache, base, kimg, kroot, kver, initramfs, f"{package} {version}",
                        suite)


# -- the per-boot image ----------------------------------------------------------------

SCENARIO_UNIT = """\
[Unit]
Description=zoomd systemd-VM scenario runner
After=multi-user.target
SuccessAction=poweroff-force
FailureAction=poweroff-force

[Service]
Type=oneshot
ExecStart=/usr/bin/python3 /usr/local/lib/zoomd-sysvm/scenario.py
StandardOutput=journal+console
TimeoutStartSec={timeout}
"""


WORKLOAD = "/usr/bin/python3 /usr/local/lib/zoomd-sysvm/scenario.py"
# The managed-kill scenario's units (as systemd's own TEST-55-OOMD): a slice that
# systemd-oomd (zoomd) watches, a service thrashing through zram in it, a calm
# sibling in it, and a calm service outside it without any ManagedOOM property.
WORKLOAD_UNITS = {
    "/etc/systemd/system/zsvm.slice": """\
[Slice]
ManagedOOMMemoryPressure=kill
ManagedOOMMemoryPressureLimit=20%
MemoryAccounting=yes
MemoryMax=200M
""",
    "/etc/systemd/system/zsvm-thrash.service": f"""\
[Service]
Slice=zsvm.slice
ExecStart={WORKLOAD} --thrash 400
""",
    "/etc/systemd/system/zsvm-chill.service": f"""\
[Service]
Slice=zsvm.slice
ExecStart={WORKLOAD} --steady 20
""",
    # The same thrash with the property on the service itself (a leaf cgroup), in a
    # limited slice of its own (no dash: "zsvm-x.slice" would sit inside zsvm.slice).
    "/etc/systemd/system/zplain.slice": """\
[Slice]
MemoryAccounting=yes
MemoryMax=200M
""",
    "/etc/systemd/system/zsvm-leaf.service": f"""\
[Service]
Slice=zplain.slice
ManagedOOMMemoryPressure=kill
ManagedOOMMemoryPressureLimit=20%
ExecStart={WORKLOAD} --thrash 400
""",
    # The standalone variant's: no ManagedOOM property anywhere.
    "/etc/systemd/system/zsvm-comp.service": f"""\
[Service]
Slice=zplain.slice
ExecStart={WORKLOAD} --compressible 320
""",
    "/etc/systemd/system/zsvm-pthrash.service": f"""\
[Service]
Slice=zplain.slice
ExecStart={WORKLOAD} --thrash 400
""",
    "/etc/systemd/system/zsvm-pchill.service": f"""\
[Service]
Slice=zplain.slice
ExecStart={WORKLOAD} --steady 20
""",
    # The swap scenarios: ManagedOOMSwap=kill on a slice, no memory limit.
    "/etc/systemd/system/zswap.slice": """\
[Slice]
ManagedOOMSwap=kill
MemoryAccounting=yes
""",
    "/etc/systemd/system/zsvm-swaphog.service": f"""\
[Service]
Slice=zswap.slice
ExecStart={WORKLOAD} --incompressible 3000
""",
    "/etc/systemd/system/zsvm-outside.service": f"""\
[Service]
MemoryAccounting=yes
ExecStart={WORKLOAD} --steady 20
""",
    # systemd-oomd's 30 s default duration, shortened for the emulated guest.
    "/etc/systemd/oomd.conf.d/zz-sysvm.conf": "[OOM]\nDefaultMemoryPressureDurationSec=10s\n",
}


USER_UNITS = {
    "zsvmu.slice": """\
[Slice]
ManagedOOMMemoryPressure=kill
ManagedOOMMemoryPressureLimit=20%
MemoryMax=200M
""",
    "zsvmu-thrash.service": f"""\
[Service]
Slice=zsvmu.slice
ExecStart={WORKLOAD} --thrash 400
""",
}


@dataclass
class SysVmRun:
    """One boot: the scenarios to run in order, how zoomd is installed, where to."""

    scenarios: list[str]
    out: str
    deb: str
    variant: str = "dropin"  # "dropin": zoomd as systemd-oomd.service; "standalone"
    memory: str = "1536M"
    cpus: int = 2
    timeout: float = 900.0  # wall seconds for the boot and every scenario
    extra: dict[str, Any] = field(default_factory=dict)


def _write(root: str, rel: str, text: str, mode: int = 0o644) -> None:
    path = Path(root, rel.lstrip("/"))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)


def _link(root: str, rel: str, target: str) -> None:
    path = Path(root, rel.lstrip("/"))
    path.parent.mkdir(parents=True, exist_ok=True)
    with suppress(FileNotFoundError):
        path.unlink()
    path.symlink_to(target)


def _configure(root: str, run: SysVmRun, tools: SysToolchain) -> None:
    """Boot settings, the scenario unit, zoomd's variant, the guest's modules."""
    _write(root, "/etc/hostname", "zoomd-sysvm\n")
    _write(root, "/etc/machine-id", hashlib.md5(run.out.encode()).hexdigest() + "\n")
    _write(root, "/etc/fstab", "/dev/vda / ext4 rw,noatime 0 1\n")
    # Nothing that waits for devices udev would announce (udev is not installed),
    # asks questions on the console, or runs at random times.
    for unit in ("getty.target", "serial-getty@ttyS0.service", "systemd-firstboot.service",
                 "apt-daily.timer", "apt-daily-upgrade.timer", "e2scrub_all.timer",
                 "fstrim.timer", "e2scrub_reap.service", "systemd-timesyncd.service"):
        _link(root, f"/etc/systemd/system/{unit}", "/dev/null")
    guest = Path(__file__).with_name("sysguest.py").read_text()
    _write(root, "/usr/local/lib/zoomd-sysvm/scenario.py", guest, 0o755)
    spec = {"scenarios": run.scenarios, "variant": run.variant, **run.extra}
    _write(root, "/usr/local/lib/zoomd-sysvm/spec.json", json.dumps(spec, indent=1))
    _write(root, "/etc/systemd/system/zoomd-sysvm.service",
           SCENARIO_UNIT.format(timeout=int(run.timeout)))
    for rel, text in WORKLOAD_UNITS.items():
        _write(root, rel, text)
    dropin_src = Path(root, "usr/share/zoomd/systemd/systemd-oomd.service.d/zoomd.conf")
    if run.variant == "dropin":
        # README's "Replacing systemd-oomd", done offline: the drop-in from the package,
        # zoomd.service disabled, systemd-oomd enabled (its package enables it).
        if not dropin_src.exists():
            raise SysVmError(f"the .deb has no {dropin_src.relative_to(root)}")
        _write(root, "/etc/systemd/system/systemd-oomd.service.d/zoomd.conf",
               dropin_src.read_text())
        _run(["chroot", root, "systemctl", "disable", "zoomd.service"])
        _run(["chroot", root, "systemctl", "enable", "systemd-oomd.service",
              "systemd-oomd.socket"])
    elif run.variant == "standalone":
        _run(["chroot", root, "systemctl", "disable", "systemd-oomd.service",
              "systemd-oomd.socket"])
        _run(["chroot", root, "systemctl", "enable", "zoomd.service"])
    else:
        raise SysVmError(f"unknown variant {run.variant!r}")
    # The user-manager scenario's lingering user, with a managed slice of its own.
    _run(["chroot", root, "useradd", "-m", "-u", "1000", "-s", "/bin/sh", "zsvmuser"])
    for name, text in USER_UNITS.items():
        _write(root, f"/home/zsvmuser/.config/systemd/user/{name}", text)
    _run(["chroot", root, "chown", "-R", "1000:1000", "/home/zsvmuser"])
    # The guest's own modules (zram above all), with their dependency files.
    mods = _module_files(tools.kroot, tools.kver, GUEST_MODULES)
    kmod_root = os.path.join(tools.kroot, "lib", "modules", tools.kver)
    for m in mods:
        rel = os.path.relpath(m, kmod_root)
        dest = Path(root, "usr/lib/modules", tools.kver, rel)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(m, dest)
    for name in ("modules.order", "modules.builtin", "modules.builtin.modinfo"):
        src = os.path.join(kmod_root, name)
        if os.path.exists(src):
            shutil.copy(src, Path(root, "usr/lib/modules", tools.kver, name))
    _run(["depmod", "-a", "-b", root, tools.kver])


def build_image(run: SysVmRun, tools: SysToolchain, workdir: str) -> str:
    """Unpack the base, install the .deb, configure, mke2fs -d: the image path."""
    root = os.path.join(workdir, "root")
    os.makedirs(root)
    try:
        _run(["tar", "-C", root, "--numeric-owner", "--xattrs", "--xattrs-include=*",
              "-xpf", tools.base])
        shutil.copy(run.deb, os.path.join(root, "tmp", "zoomd.deb"))
        _write(root, "/usr/sbin/policy-rc.d", "#!/bin/sh\nexit 101\n", 0o755)
        _run(["chroot", root, "dpkg", "-i", "/tmp/zoomd.deb"])
        os.unlink(os.path.join(root, "usr/sbin/policy-rc.d"))
        os.unlink(os.path.join(root, "tmp", "zoomd.deb"))
        _configure(root, run, tools)
        image = os.path.join(workdir, "root.ext4")
        _run(["mke2fs", "-q", "-F", "-t", "ext4", "-L", "zoomd-sysvm", "-E",
              "root_owner=0:0", "-d", root, image, "2G"])
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return image


def qemu_argv(run: SysVmRun, tools: SysToolchain, image: str, stage: str) -> list[str]:
    cmdline = " ".join([
        "console=ttyS0", "root=/dev/vda", "rw", "panic=-1", "loglevel=4",
        "systemd.unified_cgroup_hierarchy=1", "systemd.wants=zoomd-sysvm.service",
        "systemd.show_status=0", "psi=1",
    ])
    return [
        "qemu-system-x86_64", "-nodefaults", "-no-reboot", "-display", "none",
        "-accel", "tcg", "-cpu", "max", "-smp", str(run.cpus), "-m", run.memory,
        "-kernel", tools.kimg, "-initrd", tools.initramfs, "-append", cmdline,
        "-drive", f"file={image},if=virtio,format=raw,cache=unsafe",
        "-serial", f"file:{os.path.join(stage, CONSOLE)}",
        "-serial", f"file:{os.path.join(stage, RESULT_SERIAL)}",
        "-serial", f"file:{os.path.join(stage, JOURNAL_SERIAL)}",
    ]


def _boot(argv: list[str], timeout: float, log: str) -> tuple[int | None, float]:
    t0 = time.monotonic()
    with open(log, "w") as out:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
        try:
            rc: int | None = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            rc = None
        except BaseException:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            raise
        finally:
            with suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
    return rc, time.monotonic() - t0


def read_results(path: str) -> list[dict[str, Any]]:
    """The guest's JSON lines (anything else on the port is skipped)."""
    out: list[dict[str, Any]] = []
    if not os.path.exists(path):
        return out
    for line in Path(path).read_text(errors="replace").splitlines():
        line = line.strip()
        if line.startswith("{"):
            with suppress(ValueError):
                out.append(json.loads(line))
    return out


def run_sysvm(run: SysVmRun, tools: SysToolchain) -> dict[str, Any]:
    """Build the image, boot it, collect into run.out; returns the summary."""
    os.makedirs(run.out, exist_ok=True)
    runs = os.path.join(tools.cache, "runs")
    os.makedirs(runs, exist_ok=True)
    stage = tempfile.mkdtemp(prefix="run-", dir=runs)
    t0 = time.monotonic()
    try:
        image = build_image(run, tools, stage)
        build_s = time.monotonic() - t0
        argv = qemu_argv(run, tools, image, stage)
        rc, wall = _boot(argv, run.timeout, os.path.join(stage, "qemu.log"))
        os.unlink(image)
        for name in os.listdir(stage):
            shutil.move(os.path.join(stage, name), os.path.join(run.out, name))
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    results = read_results(os.path.join(run.out, RESULT_SERIAL))
    summary: dict[str, Any] = {
        "run": {k: v for k, v in asdict(run).items() if k != "extra"},
        "toolchain": tools.to_json(),
        "qemu_argv": argv,
        "qemu_returncode": rc,
        "timed_out": rc is None,
        "image_build_seconds": round(build_s, 1),
        "boot_wall_seconds": round(wall, 1),
        "results": {r["scenario"]: r for r in results if "scenario" in r},
        "guest": next((r for r in results if r.get("kind") == "guest"), {}),
    }
    with open(os.path.join(run.out, "summary.json"), "w") as f:
        json.dump(summary, f, indent=2)
        f.write("\n")
    return summary


def build_deb(outdir: str, vendor: bool = True) -> str:
    """packaging/build-deb.sh from this checkout into outdir: the .deb's path. With
    vendor=False, the package depends on the distribution's python3-pydantic."""
    from zoomdlab.vmlab.provision import repo_root

    repo = repo_root()
    if repo is None:
        raise SysVmError("building the .deb needs the source checkout")
    os.makedirs(outdir, exist_ok=True)
    out = _run(["bash", os.path.join(repo, "packaging", "build-deb.sh"), outdir],
               timeout=900, env={"ZOOMD_DEB_VENDOR": "yes" if vendor else "no"})
    for line in out.splitlines():
        if line.startswith("zoomd-deb: path="):
            return line.split()[1].removeprefix("path=")
    raise SysVmError("packaging/build-deb.sh printed no zoomd-deb: path=")


def passed(summary: dict[str, Any]) -> bool:
    wanted = summary["run"]["scenarios"]
    got = summary["results"]
    return not summary["timed_out"] and all(got.get(n, {}).get("ok") for n in wanted)


def brief(summary: dict[str, Any]) -> dict[str, Any]:
    """What each scenario showed, without the logs."""
    keep = ("ok", "seconds", "killed_by", "victim", "victim_end_s", "chill", "outside",
            "xattrs_seen", "pid1_logged_oomd_kill", "watchdog_pings", "reload_logged",
            "main_cmdline", "error")
    return {
        "guest": {k: summary["guest"].get(k) for k in ("systemd", "kernel", "cgroup_fs",
                                                        "zoomd", "boot_s")},
        "timed_out": summary["timed_out"],
        "image_build_seconds": summary["image_build_seconds"],
        "boot_wall_seconds": summary["boot_wall_seconds"],
        "scenarios": {n: {k: r[k] for k in keep if k in r}
                      for n, r in summary["results"].items()},
    }


# What packaging/build-deb.sh needs to build (not vendored) inside a suite's chroot.
BUILD_PACKAGES = ("build-essential", "debhelper", "dh-python", "python3-all",
                  "pybuild-plugin-pyproject", "python3-setuptools", "fakeroot", "dpkg-dev",
                  "python3-pydantic", "python3-psutil", "python3-pyroute2")
DEB_SOURCES = ("pyproject.toml", "README.md", "zoomd", "policies", "packaging")


def build_deb_in_suite(cache: str, suite: str, outdir: str,
                       mirror: str = DEFAULT_MIRROR) -> str:
    """packaging/build-deb.sh run inside a chroot of `suite` (its python3, its
    python3-pydantic: ZOOMD_DEB_VENDOR=no), from this checkout: the .deb's path.

    The build tree (the suite plus BUILD_PACKAGES) is cached like the guest's root;
    the scratch copy is removed. build-deb.sh's own install check needs an overlay of
    the chroot's root, which may not be possible there: its exit 77 with the .deb
    built is accepted."""
    from zoomdlab.vmlab.provision import repo_root

    repo = repo_root()
    if repo is None:
        raise SysVmError("building the .deb needs the source checkout")
    with _lock(cache):
        tar = ensure_base(cache, suite, mirror, (*SUITES[suite], *BUILD_PACKAGES), "build")
    runs = os.path.join(cache, "runs")
    os.makedirs(runs, exist_ok=True)
    os.makedirs(outdir, exist_ok=True)
    scratch = tempfile.mkdtemp(prefix="build-", dir=runs)
    root = os.path.join(scratch, "root")
    try:
        os.makedirs(root)
        _run(["tar", "-C", root, "--numeric-owner", "-xpf", tar])
        src = os.path.join(root, "src", "zoomd")
        os.makedirs(src)
        listed = subprocess.run(["git", "-C", repo, "ls-files", "-z", "--", *DEB_SOURCES],
                                capture_output=True, timeout=60, check=False)
        if listed.returncode == 0:
            for rel in listed.stdout.decode().split("\0"):
                if rel and os.path.exists(os.path.join(repo, rel)):
                    dest = os.path.join(src, rel)
                    os.makedirs(os.path.dirname(dest), exist_ok=True)
                    shutil.copy2(os.path.join(repo, rel), dest, follow_symlinks=False)
        else:
            for rel in DEB_SOURCES:
                copy = shutil.copytree if os.path.isdir(os.path.join(repo, rel)) else shutil.copy2
                copy(os.path.join(repo, rel), os.path.join(src, rel))
        os.makedirs(os.path.join(root, "out"))
        script = ('set -e; r="$1"; mount -t proc proc "$r/proc"; mount --rbind /dev "$r/dev"; '
                  'mount -t tmpfs tmpfs "$r/tmp"; rc=0; chroot "$r" env ZOOMD_DEB_VENDOR=no '
                  'PIP_PYTHON=/bin/false bash /src/zoomd/packaging/build-deb.sh /out || rc=$?; '
                  'exit $rc')
        proc = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", script,
                               "sh", root], capture_output=True, text=True, timeout=900,
                              check=False)
        debs = [n for n in os.listdir(os.path.join(root, "out")) if n.endswith(".deb")]
        if proc.returncode not in (0, 77) or not debs:
            tail = (proc.stderr + proc.stdout).strip().splitlines()[-8:]
            raise SysVmError(f"build-deb.sh in {suite}: exit {proc.returncode}: "
                             + " | ".join(tail))
        dest = os.path.join(outdir, debs[0])
        shutil.copy(os.path.join(root, "out", debs[0]), dest)
        with open(os.path.join(outdir, f"build-{suite}.log"), "w") as f:
            f.write(proc.stdout + proc.stderr)
        return dest
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
