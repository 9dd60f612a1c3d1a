"""/proc/meminfo, in bytes, parsed by name."""

from __future__ import annotations

from dataclasses import dataclass

from zoomd.errors import KernelFileError
from zoomd.kernel.keyvalue import parse_name_values
from zoomd.kernel.root import Root

_REQUIRED = ("MemTotal", "MemFree", "Active(anon)", "Inactive(anon)", "Active(file)",
             "Inactive(file)", "SwapTotal", "SwapFree")


@dataclass(frozen=True, slots=True)
class MemInfo:
    """meminfo fields converted to bytes (HugePages_* counts are kept as counts)."""

    fields: dict[str, int]

    def get(self, name: str, default: int = 0) -> int:
        return self.fields.get(name, default)

    @property
    def total(self) -> int:
        return self.fields["MemTotal"]

    @property
    def free(self) -> int:
        return self.fields["MemFree"]

    @property
    def available(self) -> int | None:
        return self.fields.get("MemAvailable")

    @property
    def anon_lru(self) -> int:
        return self.fields["Active(anon)"] + self.fields["Inactive(anon)"]

    @property
    def file_lru(self) -> int:
        return self.fields["Active(file)"] + self.fields["Inactive(file)"]

    @property
    def swap_total(self) -> int:
        return self.fields["SwapTotal"]

    @property
    def swap_free(self) -> int:
        return self.fields["SwapFree"]


def parse_meminfo(text: str, path: str) -> MemInfo:
    raw = parse_name_values(text, path, unit_suffix="kB")
    for name in _REQUIRED:
        if name not in raw:
            raise KernelFileError(path, "missing", name)
    fields = {
        name: value if name.startswith("HugePages_") else value * 1024
        for name, value in raw.items()
    }
    for part, whole in (("MemFree", "MemTotal"), ("SwapFree", "SwapTotal")):
        if raw[part] > raw[whole]:
            raise KernelFileError(path, f"{raw[part]} kB is above {whole} ({raw[whole]} kB): "
                                        "no kernel writes that", part)
    return MemInfo(fields)


def read_meminfo(root: Root) -> MemInfo:
    return parse_meminfo(root.read_text("/proc/meminfo"), root.join("/proc/meminfo"))
