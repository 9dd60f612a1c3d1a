"""packaging/kubernetes and packaging/container: no cluster or image builder here, so
the manifests are parsed and the fields that matter checked, the ConfigMap's
zoomd.toml is validated by zoomd itself, and the container entrypoint (sd_notify
stand-in and liveness probe) is run against the real daemon in dry-run."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest

from zoomd.config.load import load_config

yaml = pytest.importorskip("yaml", reason="PyYAML is in the `test` extra")

REPO = Path(__file__).resolve().parent.parent
MANIFEST = REPO / "packaging/kubernetes/daemonset.yaml"
CONTAINERFILE = REPO / "packaging/container/Containerfile"
ENTRYPOINT = REPO / "packaging/container/entrypoint.py"


def documents() -> dict[str, dict]:
    docs = [d for d in yaml.safe_load_all(MANIFEST.read_text()) if d]
    return {d["kind"]: d for d in docs}


def pod_spec() -> dict:
    return documents()["DaemonSet"]["spec"]["template"]["spec"]


def container() -> dict:
    (only,) = pod_spec()["containers"]
    return only


def test_daemonset_essentials() -> None:
    ds = documents()["DaemonSet"]
    assert ds["apiVersion"] == "apps/v1"
    assert ds["metadata"]["namespace"] == "kube-system"  # where system-node-critical is allowed
    labels = ds["spec"]["template"]["metadata"]["labels"]
    assert ds["spec"]["selector"]["matchLabels"].items() <= labels.items()
    spec = pod_spec()
    assert spec["hostPID"] is True
    assert spec["priorityClassName"] == "system-node-critical"
    assert not spec.get("hostNetwork", False)
    assert spec["automountServiceAccountToken"] is False
    assert {"operator": "Exists"} in spec["tolerations"]


def test_resources_make_a_guaranteed_pod() -> None:
    resources = container()["resources"]
    assert resources["requests"] == resources["limits"]
    assert set(resources["requests"]) == {"cpu", "memory"}
    memory = resources["limits"]["memory"]
    assert re.fullmatch(r"\d+Mi", memory) and int(memory[:-2]) >= 64


def test_security_context_grants_what_the_systemd_unit_grants() -> None:
    sc = container()["securityContext"]
    assert sc["privileged"] is False and sc["allowPrivilegeEscalation"] is False
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["capabilities"]["drop"] == ["ALL"]
    unit = (REPO / "packaging/systemd/zoomd.service").read_text()
    bounding = re.search(r"^CapabilityBoundingSet=(.*)$", unit, re.M).group(1).split()
    assert sorted("CAP_" + c for c in sc["capabilities"]["add"]) == sorted(bounding)
    assert sc["seccompProfile"]["type"] == "RuntimeDefault"


def test_mounts_read_only_but_the_cgroup_tree() -> None:
    spec = pod_spec()
    volumes = {v["name"]: v for v in spec["volumes"]}
    mounts = {m["name"]: m for m in container()["volumeMounts"]}
    assert set(mounts) == set(volumes)
    cgroup = mounts["cgroup"]
    assert cgroup["mountPath"] == "/sys/fs/cgroup" and cgroup["readOnly"] is False
    assert volumes["cgroup"]["hostPath"]["path"] == "/sys/fs/cgroup"
    for name, mount in mounts.items():
        source = volumes[name]
        if "hostPath" in source and name != "cgroup":
            assert mount.get("readOnly") is True, name
        if "configMap" in source:
            assert mount.get("readOnly") is True, name
    writable_host = [n for n, v in volumes.items()
                     if "hostPath" in v and not mounts[n].get("readOnly")]
    assert writable_host == ["cgroup"]
    assert volumes["state"]["emptyDir"]["medium"] == "Memory"


def test_configmap_holds_a_valid_zoomd_toml(tmp_path: Path) -> None:
    cm = documents()["ConfigMap"]
    volumes = {v["name"]: v for v in pod_spec()["volumes"]}
    assert volumes["config"]["configMap"]["name"] == cm["metadata"]["name"]
    assert cm["metadata"]["namespace"] == "kube-system"
    path = tmp_path / "zoomd.toml"
    path.write_text(cm["data"]["zoomd.toml"])
    config, _ = load_config(str(path), drop_ins=False)
    (policy,) = config.policy
    # Guaranteed pods (zoomd's own among them) and node services are never candidates.
    assert all("besteffort" in c or "burstable" in c for c in policy.candidates)
    assert "/system.slice/kubelet.service" in config.daemon.protect
    # The daemon reads the file where the ConfigMap is mounted.
    mount = next(m for m in container()["volumeMounts"] if m["name"] == "config")
    args = container()["args"]
    config_arg = args[args.index("--config") + 1]
    assert config_arg == f"{mount['mountPath']}/zoomd.toml"


def test_liveness_probe_runs_the_entrypoint_the_image_ships() -> None:
    probe = container()["livenessProbe"]
    command = probe["exec"]["command"]
    assert "--probe" in command
    max_age = float(command[command.index("--probe") + 1])
    env = {e["name"]: e["value"] for e in container()["env"]}
    # The heartbeat comes every half watchdog period: the probe allows several.
    assert max_age >= 2 * float(env["ZOOMD_WATCHDOG_SECONDS"])
    copies = dict(re.findall(r"^COPY (?:--\S+ )?(\S+) (\S+)$", CONTAINERFILE.read_text(), re.M))
    assert copies["packaging/container/entrypoint.py"] in command
    state = next(m for m in container()["volumeMounts"] if m["name"] == "state")
    assert env["ZOOMD_STATE_DIR"] == state["mountPath"]


def test_containerfile_copies_exist_and_entrypoint_matches() -> None:
    text = CONTAINERFILE.read_text()
    assert re.search(r"^FROM \S+python:3\.11", text, re.M)
    for source, _ in re.findall(r"^COPY (?!--from)(\S+) (\S+)$", text, re.M):
        assert (REPO / source).exists(), source
    for line in re.findall(r"^COPY (\S+ \S+) \./$", text, re.M):
        for source in line.split():
            assert (REPO / source).exists(), source
    entry = re.search(r"^ENTRYPOINT (\[.*\])$", text, re.M)
    assert entry and "/usr/local/lib/zoomd/entrypoint.py" in entry.group(1)
    assert re.search(r"^CMD \[\"run\", \"--config\", \"/etc/zoomd/zoomd.toml\"\]$", text, re.M)


def _zoomd_launcher(tmp_path: Path) -> Path:
    """A `zoomd` executable for this checkout and interpreter."""
    launcher = tmp_path / "zoomd"
    launcher.write_text(f"#!/bin/sh\nPYTHONPATH={shlex.quote(str(REPO))} "
                        f"exec {shlex.quote(sys.executable)} -m zoomd \"$@\"\n")
    launcher.chmod(0o755)
    return launcher


def test_entrypoint_relays_heartbeat_and_exit_status(tmp_path: Path) -> None:
    state = tmp_path / "state"
    env = dict(os.environ, ZOOMD_STATE_DIR=str(state), ZOOMD_WATCHDOG_SECONDS="1",
               ZOOMD_BIN=str(_zoomd_launcher(tmp_path)))
    probe = [sys.executable, str(ENTRYPOINT), "--probe", "5"]
    assert subprocess.run(probe, env=env, capture_output=True, check=False).returncode == 1
    started = time.monotonic()
    run = subprocess.Popen([sys.executable, str(ENTRYPOINT), "run", "--dry-run",
                            "--duration", "4"], env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
    beats = set()
    while run.poll() is None and time.monotonic() - started < 30:
        alive = state / "alive"
        if alive.exists():
            beats.add(alive.stat().st_mtime)
        time.sleep(0.1)
    _, err = run.communicate(timeout=30)
    if run.returncode == 2:
        pytest.skip(f"zoomd run cannot start on this host: {err.strip()[-300:]}")
    assert run.returncode == 0, err
    assert len(beats) >= 2, f"READY=1 then WATCHDOG=1 expected, saw {len(beats)}: {err}"
    ok = subprocess.run(probe, env=env, capture_output=True, text=True, check=False)
    assert ok.returncode == 0, ok.stderr
    stale = subprocess.run([*probe[:-1], "0"], env=env, capture_output=True, check=False)
    assert stale.returncode == 1


def test_entrypoint_passes_on_sigterm(tmp_path: Path) -> None:
    env = dict(os.environ, ZOOMD_STATE_DIR=str(tmp_path / "state"),
               ZOOMD_BIN=str(_zoomd_launcher(tmp_path)))
    run = subprocess.Popen([sys.executable, str(ENTRYPOINT), "run", "--dry-run"], env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    alive = tmp_path / "state" / "alive"
    deadline = time.monotonic() + 30
    while not alive.exists() and run.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    if run.poll() == 2:
        pytest.skip(f"zoomd run cannot start on this host: {run.communicate()[1][-300:]}")
    assert alive.exists(), "zoomd never reported READY=1"
    run.terminate()
    _, err = run.communicate(timeout=30)
    assert run.returncode == 0, err  # zoomd stops cleanly on SIGTERM
    assert "zoomd stopped" in err
