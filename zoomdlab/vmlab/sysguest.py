#!/usr/bin/python3
"""Runs inside the systemd guest (zoomdlab.vmlab.sysvm) as zoomd-sysvm.service.

Standard library only: it is copied into the image as a plain script and runs under
Debian's python3, beside the zoomd the .deb installed. It reads
/usr/local/lib/zoomd-sysvm/spec.json, runs each scenario named there, writes one
JSON object a line to /dev/ttyS1 (the host's results.jsonl) as soon as each is
known, dumps the journal to /dev/ttyS2, and exits; the unit's SuccessAction= and
FailureAction= power the guest off.

Also its own workloads: `scenario.py --thrash MB` (touch MB of half-compressible
memory forever) and `scenario.py --steady MB` (hold MB, touching it slowly).
"""

from __future__ import annotations

import contextlib
import json
import mmap
import os
import re
import subprocess
import sys
import time
import traceback

SPEC = "/usr/local/lib/zoomd-sysvm/spec.json"
RESULTS = "/dev/ttyS1"
JOURNAL = "/dev/ttyS2"
ME = "/usr/local/lib/zoomd-sysvm/scenario.py"
CG = "/sys/fs/cgroup"
T0 = time.monotonic()


def emit(obj: dict) -> None:
    obj.setdefault("t", round(time.monotonic() - T0, 1))
    line = json.dumps(obj, sort_keys=True)
    with open(RESULTS, "w") as f:
        f.write(line + "\n")
    print(line[:2000], flush=True)


def sh(*argv: str, timeout: float = 60, check: bool = False) -> subprocess.CompletedProcess:
    try:
        proc = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return subprocess.CompletedProcess(list(argv), 124, "", f"timed out after {timeout} s")
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: exit {proc.returncode}: {proc.stderr.strip()}")
    return proc


def show(unit: str, *props: str) -> dict[str, str]:
    """systemctl show; a property it did not print (it timed out: a stalled guest)
    reads as "?"."""
    out = sh("systemctl", "show", unit, "-p", ",".join(props)).stdout
    found = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
    return {p: found.get(p, "?") for p in props}


def wait_for(pred, timeout: float, step: float = 0.5):
    end = time.monotonic() + timeout
    while True:
        value = pred()
        if value or time.monotonic() > end:
            return value
        time.sleep(step)


def journal(*args: str, timeout: float = 60) -> str:
    return sh("journalctl", "--no-pager", "-b", "-o", "short-monotonic", *args,
              timeout=timeout).stdout


def cmdline(pid: str) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def setup_zram(size: str = "1G") -> dict:
    """zram0 as the guest's only swap (priority 100)."""
    if not os.path.exists("/sys/block/zram0"):
        sh("modprobe", "zram", "num_devices=1", check=True)
    wait_for(lambda: os.path.exists("/sys/block/zram0/disksize"), 10, 0.1)
    with open("/proc/swaps") as f:
        if "/dev/zram0" in f.read():
            return {"zram": size, "already": True}
    with open("/sys/block/zram0/disksize", "w") as f:
        f.write(size)
    sh("mkswap", "/dev/zram0", check=True)
    sh("swapon", "-p", "100", "/dev/zram0", check=True)
    with open("/proc/swaps") as f:
        return {"zram": size, "swaps": f.read().strip().splitlines()}


# -- scenarios ----------------------------------------------------------------------

OOMD = "systemd-oomd.service"


def scenario_replace(spec: dict) -> dict:
    """zoomd runs as systemd-oomd.service through the drop-in: active (so READY=1 was
    received: Type=notify), main process zoomd, watchdog pinged, reload works."""
    r: dict = {}
    active = wait_for(lambda: show(OOMD, "ActiveState")["ActiveState"] in ("active", "failed"),
                      120)
    props = show(OOMD, "ActiveState", "SubState", "Type", "MainPID", "User", "NRestarts",
                 "WatchdogUSec", "WatchdogTimestampMonotonic", "StatusText", "DropInPaths",
                 "ExecMainStartTimestampMonotonic", "Result")
    r["waited_active"] = bool(active)
    r["props"] = props
    r["main_cmdline"] = cmdline(props.get("MainPID", "0"))
    r["status_text"] = sh("systemctl", "status", "--no-pager", "-l", "-n", "30", OOMD).stdout
    r["systemd_version"] = sh("systemctl", "--version").stdout.splitlines()[:1]
    # Watchdog: a shorter WatchdogSec= in a runtime drop-in, restart, then the
    # timestamp of the last WATCHDOG=1 must move and the watchdog must not fire.
    os.makedirs(f"/run/systemd/system/{OOMD}.d", exist_ok=True)
    with open(f"/run/systemd/system/{OOMD}.d/zz-sysvm-watchdog.conf", "w") as f:
        f.write("[Service]\nWatchdogSec=8s\n")
    sh("systemctl", "daemon-reload", check=True)
    r["restart_rc"] = sh("systemctl", "restart", OOMD, timeout=120).returncode
    after = show(OOMD, "ActiveState", "MainPID", "WatchdogUSec", "WatchdogTimestampMonotonic",
                 "NRestarts")
    samples = [after["WatchdogTimestampMonotonic"]]
    for _ in range(4):
        time.sleep(5)
        samples.append(show(OOMD, "WatchdogTimestampMonotonic")["WatchdogTimestampMonotonic"])
    final = show(OOMD, "ActiveState", "MainPID", "NRestarts", "Result")
    r["watchdog"] = {"usec": after["WatchdogUSec"], "timestamps": samples,
                     "pid_before": after["MainPID"], "after_20s": final}
    r["watchdog_pings"] = len({s for s in samples if s not in ("", "0")})
    # Reload: systemctl reload sends SIGHUP (ExecReload=); zoomd logs it, same PID.
    before_pid = show(OOMD, "MainPID")["MainPID"]
    mark = time.monotonic()
    r["reload_rc"] = sh("systemctl", "reload", OOMD, timeout=60).returncode
    time.sleep(3)
    r["reload_pid_same"] = show(OOMD, "MainPID")["MainPID"] == before_pid
    log = journal("-u", OOMD)
    r["reload_logged"] = "reloading the configuration" in log
    r["subscribed"] = "subscribed to PID 1's ManagedOOM cgroups" in log
    r["unit_journal_tail"] = log.splitlines()[-40:]
    r["seconds"] = round(time.monotonic() - mark, 1)
    os.unlink(f"/run/systemd/system/{OOMD}.d/zz-sysvm-watchdog.conf")
    sh("systemctl", "daemon-reload")
    r["ok"] = (props.get("ActiveState") == "active" and "zoomd" in r["main_cmdline"]
               and r["restart_rc"] == 0 and r["watchdog_pings"] >= 3
               and final.get("NRestarts") == after.get("NRestarts")
               and final.get("MainPID") == after.get("MainPID")
               and r["reload_rc"] == 0 and r["reload_pid_same"] and r["reload_logged"])
    return r


def _xattrs(path: str) -> dict[str, str]:
    out = {}
    for name in ("user.oomd_ooms", "user.oomd_kill"):
        with contextlib.suppress(OSError):
            out[name] = os.getxattr(path, name).decode(errors="replace")
    return out


def _systemd_version() -> int:
    try:
        out = subprocess.run(["systemctl", "--version"], capture_output=True, text=True,
                             timeout=30).stdout
        return int(out.split()[1])
    except (OSError, IndexError, ValueError, subprocess.TimeoutExpired):
        return 0


DUMP_FORMAT = "v252" if _systemd_version() <= 252 else "current"
STRICT_CONFIG = f"""\
# zoomd-sysvm: systemd-oomd's rules alone (no host or memory-domain policies).
[systemd]
managed_oom = true
mode = "strict"
dump_format = "{DUMP_FORMAT}"
"""
CONFIG_DROPIN = f"/run/systemd/system/{OOMD}.d/zz-sysvm-config.conf"


def use_config(text: str | None) -> dict:
    """Run zoomd (as systemd-oomd.service) on `text` as its configuration, or on the
    package's /etc/zoomd/zoomd.toml when None; restart it and wait for READY."""
    if text is None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(CONFIG_DROPIN)
    else:
        with open("/etc/zoomd/sysvm.toml", "w") as f:
            f.write(text)
        os.makedirs(os.path.dirname(CONFIG_DROPIN), exist_ok=True)
        with open(CONFIG_DROPIN, "w") as f:
            f.write("[Service]\nExecStart=\n"
                    "ExecStart=/usr/bin/zoomd run --config /etc/zoomd/sysvm.toml\n")
    sh("systemctl", "daemon-reload", check=True)
    rc = sh("systemctl", "restart", OOMD, timeout=120).returncode
    return {"config": "shipped" if text is None else text, "restart_rc": rc,
            **show(OOMD, "ActiveState", "MainPID")}


# "killed /x (policy NAME: why)"; the swap rule: "killed /x (ManagedOOMSwap=kill, ...)".
KILLED = re.compile(r"killed (\S+) \((?:policy (\S+?): |ManagedOOMSwap=kill, )(.*)$")


def _kill_lines(since: float, unit: str = OOMD) -> list[dict]:
    out = []
    for line in journal("-u", unit).splitlines():
        m = KILLED.search(line)
        stamp = line[1:line.index("]")] if line.startswith("[") else "0"
        if m and float(stamp) >= since:
            out.append({"victim": m.group(1), "policy": m.group(2) or "systemd-swap",
                        "why": m.group(3)[:300]})
    return out


def _uptime() -> float:
    return time.clock_gettime(time.CLOCK_BOOTTIME)


def _managed_kill(spec: dict, config: str | None, victim: str, slice_: str) -> dict:
    """Start the calm services, then the thrashing one; wait for it to end (or the
    timeout); report what PID 1, the xattrs, oomctl and the bus saw."""
    r: dict = {"zram": setup_zram(), "zoomd": use_config(config)}
    chill, outside = "zsvm-chill.service", "zsvm-outside.service"
    for u in (chill, outside):
        sh("systemctl", "start", u, check=True)
    time.sleep(3)
    since = _uptime()
    monitor = subprocess.Popen(
        ["dbus-monitor", "--system", "type='signal',interface='org.freedesktop.oom1.Manager'"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    sh("systemctl", "start", victim, check=True)
    cg = f"{CG}/{slice_}/{victim}"
    managed = slice_ if victim == "zsvm-thrash.service" else victim
    r["managed_unit"] = managed
    r["managed_seen_by_pid1"] = show(managed, "ManagedOOMMemoryPressure",
                                     "ManagedOOMMemoryPressureLimit")
    seen: dict[str, str] = {}
    samples = []
    start = time.monotonic()
    deadline = start + float(spec.get("kill_timeout", 180))
    state, dumped = "", False
    while time.monotonic() < deadline:
        seen.update(_xattrs(cg))
        state = show(victim, "ActiveState")["ActiveState"]
        if not dumped and time.monotonic() - start > 4:
            dumped = True
            r["oomctl_dump"] = sh("oomctl", "dump", timeout=30).stdout[-3000:]
        if int(time.monotonic() - start) % 5 == 0:
            with contextlib.suppress(OSError), open(f"{cg}/memory.pressure") as f:
                samples.append([round(time.monotonic() - start, 1), f.read().split("\n")[1]])
        if state not in ("active", "activating", "deactivating", "?"):
            break
        time.sleep(0.2)
    r["victim_end_s"] = round(time.monotonic() - start, 1)
    r["victim_state"] = state
    r["victim"] = show(victim, "Result", "ActiveState", "ExecMainCode", "ExecMainStatus")
    r["xattrs_seen"] = seen
    r["pressure_samples"] = samples[-12:]
    r["chill"] = show(chill, "ActiveState", "Result", "NRestarts", "ExecMainPID")
    r["outside"] = show(outside, "ActiveState", "Result", "ExecMainPID")
    time.sleep(2)
    monitor.terminate()
    try:
        signals = monitor.communicate(timeout=10)[0]
    except subprocess.TimeoutExpired:
        monitor.kill()
        signals = monitor.communicate()[0]
    r["bus_killed_signal"] = [line.strip() for line in signals.splitlines()
                              if "member=Killed" in line or line.strip().startswith("string")]
    vlog = journal("-u", victim)
    r["pid1_logged_oomd_kill"] = [line for line in vlog.splitlines() if "systemd-oomd" in line]
    r["victim_journal_tail"] = vlog.splitlines()[-8:]
    r["kills"] = _kill_lines(since)
    zlog = journal("-u", OOMD).splitlines()
    r["no_candidate_logged"] = [line for line in zlog if "no candidate" in line][-3:]
    r["zoomd_journal_tail"] = zlog[-30:]
    for u in (chill, outside, victim):
        sh("systemctl", "stop", u, timeout=60)
    sh("systemctl", "reset-failed", victim)
    r["killed_by"] = r["kills"][0]["policy"] if r["kills"] else None
    r["ok"] = (r["victim"].get("Result") == "oom-kill" and bool(r["pid1_logged_oomd_kill"])
               and r["chill"].get("ActiveState") == "active"
               and r["outside"].get("ActiveState") == "active"
               and int(seen.get("user.oomd_ooms", "0") or 0) >= 1)
    return r


def scenario_managed_kill(spec: dict) -> dict:
    """The shipped configuration: zsvm.slice (ManagedOOMMemoryPressure=kill, limit
    20%, MemoryMax=200M) holds a service thrashing through zram and a calm sibling;
    a calm service outside has no ManagedOOM property. The thrashing one is killed
    (by whichever of zoomd's policies fires first), Result=oom-kill, PID 1 logs
    that systemd-oomd killed it; the others are untouched."""
    return _managed_kill(spec, None, "zsvm-thrash.service", "zsvm.slice")


def scenario_managed_kill_strict(spec: dict) -> dict:
    """As managed-kill, with mode = "strict" and no policies of zoomd's own: the kill
    must come from systemd-oomd's rule as zoomd implements it (systemd-pressure:)."""
    r = _managed_kill(spec, STRICT_CONFIG, "zsvm-thrash.service", "zsvm.slice")
    r["ok"] = r["ok"] and str(r["killed_by"]).startswith("systemd-pressure:/zsvm.slice")
    return r


def scenario_managed_leaf(spec: dict) -> dict:
    """ManagedOOMMemoryPressure=kill on the thrashing *service* itself (a leaf cgroup),
    strict mode: systemd-oomd counts a monitored leaf as its own candidate and kills
    it; this shows what zoomd does."""
    r = _managed_kill(dict(spec, kill_timeout=spec.get("leaf_timeout", 90)), STRICT_CONFIG,
                      "zsvm-leaf.service", "zplain.slice")
    r["ok"] = r["ok"] and str(r["killed_by"]).startswith("systemd-pressure:")
    use_config(None)
    return r


ZRAM_AWARE_CONFIG = STRICT_CONFIG.replace('mode = "strict"', 'mode = "zram-aware"').replace(
    "systemd-oomd's rules alone", "the [systemd] rules, zram-aware")


def _swap_hog(spec: dict, config: str) -> dict:
    """zswap.slice (ManagedOOMSwap=kill) holds a service filling memory with pages
    that do not compress, at ~40 MB/s, until something ends it: which of zoomd's
    swap rule or the kernel's OOM killer does, and how much swap was free then."""
    r: dict = {"zram": setup_zram(), "zoomd": use_config(config)}
    hog = "zsvm-swaphog.service"
    r["managed_seen_by_pid1"] = show("zswap.slice", "ManagedOOMSwap")
    since = _uptime()
    sh("systemctl", "start", hog, check=True)
    start = time.monotonic()
    state, samples = "", []
    while time.monotonic() < start + float(spec.get("swap_timeout", 240)):
        state = show(hog, "ActiveState")["ActiveState"]
        with open("/proc/meminfo") as f:
            mi = dict((line.split(":")[0], int(line.split()[1])) for line in f)
        samples.append([round(time.monotonic() - start, 1), mi["MemAvailable"] >> 10,
                        mi["SwapFree"] >> 10])
        if state not in ("active", "activating", "deactivating", "?"):
            break
        time.sleep(1)
    r["hog_end_s"] = round(time.monotonic() - start, 1)
    r["hog"] = show(hog, "Result", "ActiveState", "ExecMainStatus")
    r["mem_swap_mb_samples"] = samples[-8:]
    hlog = journal("-u", hog).splitlines()
    r["pid1_logged_oomd_kill"] = [line for line in hlog if "systemd-oomd" in line]
    r["kernel_oom"] = [line for line in journal("-k").splitlines()
                       if "Out of memory" in line][-3:]
    r["pid1_logged_kernel_oom"] = [line for line in hlog if "killed by the OOM killer" in line]
    r["kills"] = _kill_lines(since)
    r["killed_by"] = r["kills"][0]["policy"] if r["kills"] else None
    r["zoomd_journal_tail"] = journal("-u", OOMD).splitlines()[-25:]
    sh("systemctl", "stop", hog, timeout=60)
    sh("systemctl", "reset-failed", hog)
    return r


def scenario_swap_zram_aware(spec: dict) -> dict:
    """mode = "zram-aware": zoomd's swap rule sees that zram's free slots are no free
    memory and kills the hog (systemd-swap) before the kernel's OOM killer has to."""
    r = _swap_hog(spec, ZRAM_AWARE_CONFIG)
    r["ok"] = (r["killed_by"] == "systemd-swap" and r["hog"].get("Result") == "oom-kill"
               and bool(r["pid1_logged_oomd_kill"]))
    return r


def scenario_swap_strict(spec: dict) -> dict:
    """mode = "strict": systemd-oomd's swap rule (SwapFree under 10%) is fooled by zram:
    swap stays mostly free while RAM runs out; whatever ends the hog, it is not it."""
    r = _swap_hog(spec, STRICT_CONFIG)
    r["ok"] = r["killed_by"] != "systemd-swap" and r["hog"].get("ActiveState") != "active"
    use_config(None)
    return r


USER, UID = "zsvmuser", 1000
FOREIGN_REPORT = r"""
import json, socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.settimeout(20)
s.connect(sys.argv[1])
msg = {"method": "io.systemd.oom.ReportManagedOOMCGroups", "parameters": {"cgroups": [
    {"mode": "kill", "path": sys.argv[2],
     "property": "ManagedOOMMemoryPressure", "limit": 0}]}}
s.sendall(json.dumps(msg).encode() + b"\0")
data = b""
while not data.endswith(b"\0"):
    chunk = s.recv(65536)
    if not chunk:
        break
    data += chunk
print(data.rstrip(b"\0").decode())
"""


def as_user(*argv: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return sh("runuser", "-u", USER, "--", "env", f"XDG_RUNTIME_DIR=/run/user/{UID}", *argv,
              timeout=timeout)


def user_show(unit: str, *props: str) -> dict[str, str]:
    out = as_user("systemctl", "--user", "show", unit, "-p", ",".join(props)).stdout
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def scenario_user_manager(spec: dict) -> dict:
    """A lingering user's manager reports its zsvmu.slice (ManagedOOMMemoryPressure=kill,
    limit 20%, MemoryMax=200M) to zoomd over systemd-oomd.socket; the user's service
    thrashing in it is killed (the user manager records Result=oom-kill); a report
    that same user sends for a system service's cgroup is refused."""
    r: dict = {"zram": setup_zram(), "zoomd": use_config(STRICT_CONFIG)}
    since = _uptime()
    r["linger_rc"] = sh("loginctl", "enable-linger", USER).returncode
    manager = f"user@{UID}.service"
    r["user_manager"] = wait_for(
        lambda: show(manager, "ActiveState")["ActiveState"] == "active", 90) and \
        show(manager, "ActiveState", "ManagedOOMMemoryPressure")
    unit = "zsvmu-thrash.service"
    r["start_rc"] = as_user("systemctl", "--user", "start", unit).returncode
    path = f"/user.slice/user-{UID}.slice/user@{UID}.service/zsvmu.slice"

    def guarded() -> list[str]:
        return [line for line in journal("-u", OOMD).splitlines()
                if "guarding a ManagedOOM cgroup" in line and path in line]
    r["guarded"] = wait_for(guarded, 60)
    start = time.monotonic()
    state = ""
    while time.monotonic() < start + float(spec.get("kill_timeout", 180)):
        state = user_show(unit, "ActiveState").get("ActiveState", "")
        if state not in ("active", "activating", "deactivating", "?"):
            break
        time.sleep(0.5)
    r["thrash_end_s"] = round(time.monotonic() - start, 1)
    r["thrash"] = user_show(unit, "Result", "ActiveState", "ExecMainStatus")
    r["kills"] = _kill_lines(since)
    r["killed_by"] = r["kills"][0]["policy"] if r["kills"] else None
    # Someone else's cgroup, from the same user: refused.
    sockets = [p for p in ("/run/systemd/oom/io.systemd.ManagedOOM",
                           "/run/systemd/oom/io.system.ManagedOOM") if os.path.exists(p)]
    # Another user's cgroup: refused (EPERM), as systemd-oomd does. A system service's
    # (no user-UID.slice: owner unknown): skipped, as systemd-oomd does.
    other = "/user.slice/user-1001.slice/user@1001.service"
    system = "/system.slice/dbus.service"
    reply = as_user("python3", "-c", FOREIGN_REPORT, sockets[0], other) if sockets else None
    r["foreign_report_reply"] = reply.stdout.strip() if reply else "no socket"
    reply = as_user("python3", "-c", FOREIGN_REPORT, sockets[0], system) if sockets else None
    r["system_report_reply"] = reply.stdout.strip() if reply else "no socket"
    time.sleep(1)
    zlog = journal("-u", OOMD).splitlines()
    r["refusal_logged"] = [line for line in zlog if "refused a ManagedOOM report" in line][-2:]
    r["system_report_logged"] = [line for line in zlog
                                 if "ManagedOOM report" in line and system in line][-2:]
    r["foreign_guarded"] = [line for line in zlog if "guarding" in line
                            and (other in line or system in line)]
    r["zoomd_journal_tail"] = journal("-u", OOMD).splitlines()[-25:]
    as_user("systemctl", "--user", "stop", unit)
    use_config(None)
    r["ok"] = (bool(r["guarded"]) and r["thrash"].get("Result") == "oom-kill"
               and str(r["killed_by"]).endswith("/zsvmu.slice")
               and "io.systemd.System" in r["foreign_report_reply"]
               and bool(r["refusal_logged"]) and not r["foreign_guarded"])
    return r


def scenario_standalone(spec: dict) -> dict:
    """The shipped zoomd.service (systemd-oomd disabled), its shipped configuration,
    pure v2: a limited slice (MemoryMax=200M, no ManagedOOM property) holding a
    compressible service (larger than the limit, nearly empty pages, a small hot set)
    is left alone; the same slice with a service thrashing through zram is ended by
    zoomd's own policies, and its calm sibling is untouched."""
    r: dict = {"zram": setup_zram()}
    z = "zoomd.service"
    wait_for(lambda: show(z, "ActiveState")["ActiveState"] in ("active", "failed"), 120)
    r["zoomd"] = show(z, "ActiveState", "SubState", "Type", "MainPID", "StatusText",
                      "WatchdogUSec", "NRestarts")
    r["zoomd_cmdline"] = cmdline(r["zoomd"].get("MainPID", "0"))
    r["systemd_oomd"] = show(OOMD, "ActiveState", "UnitFileState")
    comp, thr, chill = "zsvm-comp.service", "zsvm-pthrash.service", "zsvm-pchill.service"
    sh("systemctl", "start", chill, check=True)
    sh("systemctl", "start", comp, check=True)
    since = _uptime()
    hold = float(spec.get("compressible_s", 40))
    time.sleep(hold)
    r["compressible_after_s"] = hold
    r["compressible"] = show(comp, "ActiveState", "Result", "MemoryCurrent")
    with contextlib.suppress(OSError), open(f"{CG}/zplain.slice/memory.stat") as f:
        keys = ("anon", "file", "pgscan", "workingset_refault_anon")
        r["slice_stat"] = [line for line in f.read().splitlines()
                           if line.split()[0] in keys]
    r["kills_during_compressible"] = _kill_lines(since, z)
    sh("systemctl", "stop", comp, timeout=60)
    since = _uptime()
    sh("systemctl", "start", thr, check=True)
    start = time.monotonic()
    state = ""
    while time.monotonic() < start + float(spec.get("kill_timeout", 180)):
        state = show(thr, "ActiveState")["ActiveState"]
        if state not in ("active", "activating", "deactivating", "?"):
            break
        time.sleep(0.5)
    r["thrash_end_s"] = round(time.monotonic() - start, 1)
    r["thrash"] = show(thr, "Result", "ActiveState", "ExecMainStatus")
    r["thrash_journal"] = journal("-u", thr).splitlines()[-6:]
    r["kills"] = _kill_lines(since, z)
    r["killed_by"] = r["kills"][0]["policy"] if r["kills"] else None
    r["chill"] = show(chill, "ActiveState", "Result", "NRestarts")
    r["zoomd_after"] = show(z, "ActiveState", "MainPID", "NRestarts")
    r["zoomd_journal_tail"] = journal("-u", z).splitlines()[-30:]
    for u in (chill, thr, comp):
        sh("systemctl", "stop", u, timeout=60)
    r["ok"] = (r["zoomd"].get("ActiveState") == "active" and "zoomd" in r["zoomd_cmdline"]
               and r["systemd_oomd"].get("ActiveState") != "active"
               and r["compressible"].get("ActiveState") == "active"
               and not r["kills_during_compressible"]
               and r["thrash"].get("ActiveState") == "failed" and bool(r["kills"])
               and r["chill"].get("ActiveState") == "active"
               and r["zoomd_after"].get("MainPID") == r["zoomd"].get("MainPID"))
    return r


SCENARIOS = {
    "replace": scenario_replace,
    "managed-kill": scenario_managed_kill,
    "managed-kill-strict": scenario_managed_kill_strict,
    "managed-leaf": scenario_managed_leaf,
    "swap-zram-aware": scenario_swap_zram_aware,
    "swap-strict": scenario_swap_strict,
    "user-manager": scenario_user_manager,
    "standalone": scenario_standalone,
}


# -- workloads ------------------------------------------------------------------------

def thrash(mb: int) -> None:
    """Touch every page of MB of half-compressible memory, forever."""
    n = mb << 20
    buf = bytearray(n)
    page = os.urandom(2048) + bytes(2048)
    for off in range(0, n, 4096):
        buf[off:off + 4096] = page
    i = 0
    while True:
        i = (i + 1) & 255
        for off in range(0, n, 4096):
            buf[off] = i


def steady(mb: int) -> None:
    """Hold MB, touch one page in 64 every second."""
    n = mb << 20
    buf = bytearray(os.urandom(1 << 20)) * mb
    while True:
        for off in range(0, n, 4096 * 64):
            buf[off] = (buf[off] + 1) & 255
        time.sleep(1)


def compressible(mb: int, hot_mb: int = 40, rate_mb: int = 16) -> None:
    """MB of nearly empty pages (one byte set in each, so they are really there and
    compress ~100x), first touched at rate_mb MB/s (as the VM lab's
    global-compressible), then its last hot_mb touched every second: larger than its
    limit, compresses far, keeps making progress. A private anonymous mmap, so each page is
    touched once by the fill (bytearray(n) would zero all of it at once first, and the
    fill would then swap every page back in: a second pass, not a one-pass fill)."""
    n = mb << 20
    buf = mmap.mmap(-1, n, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)  # anon, not shmem
    step = 1 << 20
    for base in range(0, n, step):
        for off in range(base, base + step, 4096):
            buf[off] = 1
        time.sleep(1.0 / rate_mb)
    hot = n - (hot_mb << 20)
    i = 0
    while True:
        i = (i + 1) & 255
        for off in range(hot, n, 4096):
            buf[off] = i
        time.sleep(1)


def incompressible(mb: int, rate_mb: int = 40) -> None:
    """Grow to MB of pages that do not compress (one random MiB, repeated) at rate_mb
    MB/s, touching nothing old; then hold."""
    block = os.urandom(1 << 20)
    chunks = []
    for _ in range(mb):
        chunks.append(bytearray(block))
        time.sleep(1.0 / rate_mb)
    while True:
        time.sleep(1)


WORKLOADS = {"--thrash": thrash, "--steady": steady, "--compressible": compressible,
             "--incompressible": incompressible}


def main() -> int:
    if len(sys.argv) == 3 and sys.argv[1] in WORKLOADS:
        WORKLOADS[sys.argv[1]](int(sys.argv[2]))
        return 0
    with open(SPEC) as f:
        spec = json.load(f)
    uname = os.uname()
    with open("/proc/cmdline") as f:
        kcmdline = f.read().strip()
    emit({"kind": "guest", "kernel": uname.release,
          "systemd": sh("systemctl", "--version").stdout.splitlines()[:1],
          "cgroup_fs": sh("stat", "-f", "-c", "%T", CG).stdout.strip(),
          "cmdline": kcmdline,
          "zoomd": sh("zoomd", "--version").stdout.strip(),
          "zoomd_deb": sh("dpkg-query", "-W", "-f=${Version}", "zoomd").stdout,
          "failed_units": sh("systemctl", "--failed", "--no-legend", "--plain").stdout,
          "boot_s": round(time.clock_gettime(time.CLOCK_BOOTTIME), 1)})
    failed = 0
    for name in spec["scenarios"]:
        t = time.monotonic()
        try:
            result = SCENARIOS[name](spec)
        except Exception:  # reported to the host; the next scenario runs
            result = {"ok": False, "error": traceback.format_exc()}
        result.update(scenario=name, seconds=round(time.monotonic() - t, 1))
        failed += not result.get("ok")
        emit(result)
    emit({"kind": "done", "failed": failed})
    with open(JOURNAL, "w") as f:
        f.write(journal(timeout=120))
    return 0


if __name__ == "__main__":
    sys.exit(main())
