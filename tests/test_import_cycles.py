"""zoomd's modules import one way: no module reaches itself again through the imports
of the modules it imports, counting the imports made inside functions (the lazy ones)
too, and each imports only from its own layer or the layers below (README's layout
table, bottom up). Read from the source (ast), so an import that only runs on some
path counts."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "zoomd"

# README's layout table, bottom up: (layer, module prefixes). A module belongs to the
# layer of its longest matching prefix.
LAYERS = (
    ("base", ("zoomd", "zoomd.errors", "zoomd.isolated", "zoomd.kinds", "zoomd.config.units")),
    ("kernel", ("zoomd.kernel",)),
    ("model", ("zoomd.model",)),
    ("sampling", ("zoomd.host", "zoomd.stallsampler", "zoomd.status", "zoomd.diagnose")),
    ("config", ("zoomd.config",)),
    ("actions", ("zoomd.actions",)),
    ("engine", ("zoomd.daemon",)),
    ("integrations", ("zoomd.systemd", "zoomd.trace", "zoomd.metrics")),
    ("loop", ("zoomd.daemon.loop", "zoomd.daemon.observers", "zoomd.daemon.preflight")),
    ("cli", ("zoomd.cli", "zoomd.__main__")),
)


def _modules() -> dict[str, Path]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The zoomd modules `name` imports anywhere in its source."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                out.add(sub if sub in modules else base)
    return {m for m in out if m in modules and m != name}


def import_graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(name, path, modules) for name, path in modules.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def layer(module: str) -> int:
    best = (-1, -1)
    for rank, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if module == prefix or module.startswith(prefix + "."):
                best = max(best, (len(prefix), rank))
    assert best[1] >= 0, f"{module} is in no layer of README's layout table"
    return best[1]


def test_the_walk_sees_lazy_imports() -> None:
    graph = import_graph()
    assert "zoomd.cli.manpage" in graph["zoomd.cli"]  # imported inside a function
    assert "zoomd.kernel.root" in graph["zoomd.host"]


def test_no_import_cycle() -> None:
    assert cycles(import_graph()) == []


def test_imports_go_down_the_layers() -> None:
    graph = import_graph()
    upward = [f"{a} ({LAYERS[layer(a)][0]}) imports {b} ({LAYERS[layer(b)][0]})"
              for a in sorted(graph) for b in sorted(graph[a]) if layer(b) > layer(a)]
    assert upward == []
