"""The package's import graph: no module imports another module's private (underscore) names,
and no import cycles between the package's modules (read from the sources, not executed)."""

import ast
import os

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "keras_normed")


def _modules():
    """``{module name: (path, is_package)}`` of every module of keras_normed."""
    found = {}
    for folder, _, files in os.walk(ROOT):
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                rel = os.path.relpath(path, os.path.dirname(ROOT))[:-3].split(os.sep)
                is_package = rel[-1] == "__init__"
                found[".".join(rel[:-1] if is_package else rel)] = (path, is_package)
    return found


MODULES = _modules()


def _imports(module):
    """``[(imported module, [names], at module level)]`` of one module."""
    path, is_package = MODULES[module]
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read())
    top = set(map(id, tree.body))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = module.split(".")[: len(module.split(".")) - node.level
                                           + (1 if is_package else 0)]
                base = ".".join(parts + ([base] if base else []))
            names = [a.name for a in node.names]
            out.append((base, names, id(node) in top))
        elif isinstance(node, ast.Import):
            out += [(a.name, [], id(node) in top) for a in node.names]
    return out


def _private_attribute_reads(module):
    """``alias._name`` where ``alias`` is another of the package's modules."""
    path, _ = MODULES[module]
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read())
    aliases = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("keras_normed"):
            for a in node.names:
                if f"{node.module}.{a.name}" in MODULES:
                    aliases[a.asname or a.name] = f"{node.module}.{a.name}"
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name in MODULES and a.asname:
                    aliases[a.asname] = a.name
    return [f"{module} reads {aliases[n.value.id]}.{n.attr}" for n in ast.walk(tree)
            if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name)
            and n.value.id in aliases and n.attr.startswith("_")
            and not n.attr.startswith("__") and aliases[n.value.id] != module]


def _private_name_imports():
    bad = []
    for module in MODULES:
        bad += _private_attribute_reads(module)
        for base, names, _ in _imports(module):
            if not base.startswith("keras_normed"):
                continue
            for name in names:
                target = f"{base}.{name}"
                if target in MODULES:  # a submodule, e.g. `from keras_normed import _quiet`
                    continue
                if name.startswith("_") and base != module:
                    bad.append(f"{module} imports {base}.{name}")
    return bad


def test_no_module_imports_another_modules_private_names():
    assert _private_name_imports() == []


def test_no_import_cycles_at_module_level():
    """Module-level imports between the package's modules form no cycle (a package's
    ``__init__`` importing its own submodules is the usual tree, not a cycle)."""
    graph = {m: set() for m in MODULES}
    for module in MODULES:
        for base, names, at_top in _imports(module):
            if not at_top or not base.startswith("keras_normed"):
                continue
            targets = [f"{base}.{n}" for n in names if f"{base}.{n}" in MODULES] or [base]
            for target in targets:
                if target in MODULES and target != module and not module.startswith(
                        target + "."):  # a submodule importing its own package: __init__ order
                    graph[module].add(target)
    cycles, state = [], {}

    def visit(node, stack):
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, stack)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [])
    assert cycles == []
