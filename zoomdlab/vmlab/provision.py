"""What the VM lab needs, from the package registries, into one cache folder.

- Debian packages on the host (the guest sees the host's root, so whatever the guest
  runs must be installed here): qemu-system-x86, kmod (depmod, modprobe),
  busybox-static (virtme-ng's initramfs), time (/usr/bin/time -v), and for the peer
  daemons earlyoom and nohang.
- A Debian kernel package, downloaded with `apt-get download` and unpacked with
  `dpkg -x` into the cache (never installed): KERNEL_PACKAGE below, the Debian 12
  kernel the committed results were measured on; if the archive no longer carries
  it, the package `linux-image-amd64` depends on now. Its modules stay in the cache;
  virtme-ng points the guest's /lib/modules at them and runs `depmod -b` there.
- A venv in the cache with virtme-ng (PyPI) and zoomd installed from this checkout
  (reinstalled when the source changes), for the guest to run; zoomdlab, which is
  not part of zoomd's package, is copied beside it (venv/zoomdlab-src, on the venv's
  import path by zoomdlab.pth) so the guest imports it from the cache too.

The cache is `<checkout>/.vmlab` (git-ignored) unless the checkout lives under /tmp
(then /var/tmp/zoomd-vmlab) or ZOOMD_VMLAB_DIR says otherwise. The guest mounts a
tmpfs over /tmp-like folders of its own, so the cache is also passed in with --rodir.
`python -m zoomdlab.vmlab clean` removes it.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

from zoomd.errors import ZoomdError

KERNEL_PACKAGE = "linux-image-6.1.0-56-amd64"  # Debian 12, 6.1.192-2: the measured runs
KERNEL_FALLBACK_META = "linux-image-amd64"
VIRTME_NG = "virtme-ng==1.42"
HOST_PACKAGES = ("qemu-system-x86", "kmod", "busybox-static", "time")
PEER_PACKAGES = ("earlyoom", "nohang")
HOST_TOOLS = {
    "qemu-system-x86_64": "qemu-system-x86",
    "depmod": "kmod",
    "modprobe": "kmod",
    "busybox": "busybox-static",
    "mkswap": "util-linux",
}


class VmLabError(ZoomdError):
    """The VM lab cannot be provisioned or run; the message says what is missing."""


@dataclass(frozen=True, slots=True)
class Toolchain:
    """Everything a VM run needs, all found on disk."""

    cache: str
    python: str  # the guest's interpreter (cache venv, zoomd installed)
    virtme_run: str
    kimg: str  # vmlinuz
    kroot: str  # directory holding lib/modules/<kver>
    kver: str  # uname -r in the guest
    package: str  # the Debian package it came from
    package_version: str

    def to_json(self) -> dict[str, str]:
        return asdict(self)


def repo_root() -> str | None:
    """The source checkout zoomd runs from, or None for an installed package."""
    here = Path(__file__).resolve().parents[2]
    return str(here) if (here / "pyproject.toml").exists() else None


def default_cache_dir() -> str:
    """ZOOMD_VMLAB_DIR, else <checkout>/.vmlab, else /var/tmp/zoomd-vmlab."""
    env = os.environ.get("ZOOMD_VMLAB_DIR")
    if env:
        return os.path.abspath(env)
    repo = repo_root()
    if repo and not (repo + "/").startswith("/tmp/"):
        return os.path.join(repo, ".vmlab")
    return "/var/tmp/zoomd-vmlab"


def missing_host_tools() -> str | None:
    """Name the host tools the VM lab lacks (and their packages), or None."""
    missing = [f"{tool} ({pkg})" for tool, pkg in HOST_TOOLS.items() if not shutil.which(tool)]
    if not os.access("/usr/bin/time", os.X_OK):
        missing.append("/usr/bin/time (time)")
    return ", ".join(missing) if missing else None


def _run(argv: list[str], cwd: str | None = None) -> str:
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    proc = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
        raise VmLabError(f"{' '.join(argv[:4])}...: exit {proc.returncode}: {' | '.join(tail)}")
    return proc.stdout


def install_host_packages(peers: bool = True) -> None:
    """apt-get install what the host and the guest run (root, Debian)."""
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise VmLabError("installing packages needs root and apt-get")
    packages = [*HOST_PACKAGES, *(PEER_PACKAGES if peers else ())]
    wanted = [p for p in packages if not _dpkg_installed(p)]
    if not wanted:
        return
    _run(["apt-get", "update", "-qq"])
    _run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", *wanted])


def _dpkg_installed(package: str) -> bool:
    proc = subprocess.run(
        ["dpkg-query", "-W", "-f=${Status}", package], capture_output=True, text=True, check=False
    )
    return proc.returncode == 0 and "install ok installed" in proc.stdout


@contextmanager
def _cache_lock(cache: str) -> Iterator[None]:
    os.makedirs(cache, exist_ok=True)
    fd = os.open(os.path.join(cache, ".provision.lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _candidate(package: str) -> str | None:
    """The version apt would install, or None when the archive does not carry it."""
    proc = subprocess.run(
        ["apt-cache", "policy", package], capture_output=True, text=True, check=False
    )
    for line in proc.stdout.splitlines():
        key, _, value = line.strip().partition(":")
        if key == "Candidate":
            value = value.strip()
            return None if value in ("", "(none)") else value
    return None


def _current_kernel_package() -> str:
    proc = subprocess.run(
        ["apt-cache", "depends", KERNEL_FALLBACK_META], capture_output=True, text=True, check=False
    )
    for line in proc.stdout.splitlines():
        key, _, value = line.strip().partition(":")
        if key == "Depends" and value.strip().startswith("linux-image-"):
            return value.strip()
    raise VmLabError(f"apt-cache depends {KERNEL_FALLBACK_META}: no kernel package found")


def ensure_kernel(cache: str, package: str | None = None) -> tuple[str, str, str, str, str]:
    """Download and unpack the kernel package once: (kimg, kroot, kver, package, version)."""
    stamp = os.path.join(cache, "kernel.json")
    if os.path.exists(stamp):
        with open(stamp) as f:
            known = json.load(f)
        if (package is None or known["package"] == package) and os.path.exists(known["kimg"]):
            return known["kimg"], known["kroot"], known["kver"], known["package"], known["version"]
    package = package or KERNEL_PACKAGE
    if _candidate(package) is None:
        _run(["apt-get", "update", "-qq"])
    if _candidate(package) is None:
        package = _current_kernel_package()
    version = _candidate(package)
    if version is None:
        raise VmLabError(f"the archive carries neither {KERNEL_PACKAGE} nor {package}")
    debs = os.path.join(cache, "debs")
    os.makedirs(debs, exist_ok=True)
    _run(["apt-get", "download", f"{package}={version}"], cwd=debs)
    deb = next((os.path.join(debs, n) for n in os.listdir(debs) if n.startswith(package + "_")),
               None)
    if deb is None:
        raise VmLabError(f"apt-get download {package}: no .deb in {debs}")
    kroot = os.path.join(cache, "kernel", package)
    shutil.rmtree(kroot, ignore_errors=True)
    os.makedirs(kroot)
    _run(["dpkg-deb", "-x", deb, kroot])
    os.unlink(deb)  # the unpacked tree is what we keep
    kver = package.removeprefix("linux-image-")
    pkgdir = kroot
    kimg = os.path.join(pkgdir, "boot", f"vmlinuz-{kver}")
    kroot = next((d for d in (pkgdir, os.path.join(pkgdir, "usr"))
                  if os.path.isdir(os.path.join(d, "lib", "modules", kver))), "")
    if not kroot or not os.path.exists(kimg):
        raise VmLabError(f"{package}: no boot/vmlinuz-{kver} or lib/modules/{kver} in it")
    _run(["depmod", "-a", "-b", kroot, kver])
    with open(stamp, "w") as f:
        json.dump({"kimg": kimg, "kroot": kroot, "kver": kver, "package": package,
                   "version": version}, f, indent=1)
    return kimg, kroot, kver, package, version


def source_digest(repo: str) -> str:
    """A hash of what pip installs from the checkout: reinstall when it changes."""
    h = hashlib.sha256()
    files = [Path(repo, "pyproject.toml"), *sorted(Path(repo, "zoomd").rglob("*")),
             *sorted(Path(repo, "zoomdlab").rglob("*"))]
    for path in files:
        if path.is_file() and "__pycache__" not in path.parts:
            h.update(str(path.relative_to(repo)).encode())
            h.update(path.read_bytes())
    return h.hexdigest()[:16]


def _copy_lab(python: str, repo: str, venv: str) -> None:
    """zoomdlab into venv/zoomdlab-src, on the venv's import path after zoomd's own."""
    dest = os.path.join(venv, "zoomdlab-src")
    shutil.rmtree(dest, ignore_errors=True)
    shutil.copytree(os.path.join(repo, "zoomdlab"), os.path.join(dest, "zoomdlab"),
                    ignore=shutil.ignore_patterns("__pycache__"))
    purelib = _run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"])
    Path(purelib.strip(), "zoomdlab.pth").write_text(dest + "\n")


def ensure_venv(cache: str) -> tuple[str, str]:
    """The guest venv with virtme-ng and this checkout's zoomd: (python, virtme-run)."""
    venv = os.path.join(cache, "venv")
    python = os.path.join(venv, "bin", "python")
    virtme_run = os.path.join(venv, "bin", "virtme-run")
    if not os.path.exists(python):
        base = getattr(sys, "_base_executable", sys.executable)
        _run([base, "-m", "venv", venv])
    if not os.path.exists(virtme_run):
        _run([python, "-m", "pip", "install", "-q", VIRTME_NG])
    repo = repo_root()
    if repo is None:
        raise VmLabError("the VM lab installs zoomd from a source checkout; none found")
    stamp = os.path.join(venv, ".zoomd-source")
    digest = source_digest(repo)
    old = Path(stamp).read_text().strip() if os.path.exists(stamp) else None
    if old is None:
        _run([python, "-m", "pip", "install", "-q", repo])
    elif old != digest:
        _run([python, "-m", "pip", "install", "-q", "--force-reinstall", "--no-deps", repo])
    if old != digest:
        _copy_lab(python, repo, venv)
    Path(stamp).write_text(digest + "\n")
    return python, virtme_run


def provision(cache: str | None = None, apt: bool = True, peers: bool = True,
              package: str | None = None) -> Toolchain:
    """Install and download whatever is missing; returns the toolchain."""
    cache = cache or default_cache_dir()
    if apt:
        install_host_packages(peers)
    missing = missing_host_tools()
    if missing:
        raise VmLabError(f"missing on the host: {missing}")
    with _cache_lock(cache):
        kimg, kroot, kver, pkg, version = ensure_kernel(cache, package)
        python, virtme_run = ensure_venv(cache)
    tools = Toolchain(cache, python, virtme_run, kimg, kroot, kver, pkg, version)
    with open(os.path.join(cache, "toolchain.json"), "w") as f:
        json.dump(tools.to_json(), f, indent=1)
    return tools


def clean(cache: str | None = None) -> str:
    """Remove the cache folder (kernel, venv, leftover scratch); returns its path."""
    cache = cache or default_cache_dir()
    shutil.rmtree(cache, ignore_errors=True)
    return cache
