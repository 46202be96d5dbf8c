"""The layout's rules, checked on the source: apps depend downward only, no import cycles, no
reaching into another package's private names. Every import counts, also one inside a function.

    core       shared code; imports no app
    ml         plain Keras; imports no app and no Django
    audit      the audit trail
    idempotency  the first answer of a request sent with an Idempotency-Key
    security   second factor, lockout audit, e-signature check, passwords, security middleware
    accounts   organisations, users, roles
    training   the model registry and retraining
    cases      the clinical record; never imports inference
    inference  analysis jobs, worker, sweeper
    monitoring agreement with pathologists and drift per referring site, alerts
    reports    signed PDF report versions, FHIR R4 export and push
    notifications  in-app notices and their e-mails
    workspace  the pathologist's review queue (AI summaries per row) and taking cases
    research   reports, ensembles, shipping, GPU batch runs
    ops        health, metrics, request ids in logs, worker heartbeat
    telediag   the project: settings, URLs, Celery app
"""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

ALLOWED = {
    "core": set(),
    "ml": set(),
    "audit": {"core"},
    "idempotency": {"core"},
    "security": {"core", "audit"},
    "accounts": {"core", "audit", "security"},
    "training": {"core", "audit", "security", "accounts", "ml"},
    "cases": {"core", "audit", "security", "accounts", "training", "idempotency"},
    "inference": {"core", "audit", "security", "accounts", "training", "cases", "idempotency", "ml"},
    "monitoring": {"core", "audit", "security", "accounts", "training", "cases", "idempotency", "inference"},
    "reports": {"core", "audit", "security", "accounts", "training", "cases", "idempotency", "inference"},
    "notifications": {"core", "audit", "security", "accounts", "training", "cases", "idempotency", "inference"},
    "workspace": {"core", "audit", "security", "accounts", "training", "cases", "idempotency", "inference"},
    "research": {"core", "audit", "security", "accounts", "training", "cases", "idempotency", "inference", "ml"},
    "ops": {"core", "audit", "security", "accounts", "training", "cases", "idempotency", "inference", "ml"},
}
PROJECT = "telediag"
PACKAGES = (*ALLOWED, PROJECT)


def _module_name(path):
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _sources():
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            yield _module_name(path), path


MODULES = dict(_sources())


def _resolve(name):
    """The first-party module an imported name lives in (a.b.C -> a.b), or None."""
    while name:
        if name in MODULES:
            return name
        name = name.rpartition(".")[0]
    return None


def _imports(module, path):
    """(imported module, line, private name or None) for every first-party import of a module."""
    tree = ast.parse(path.read_text(), filename=str(path))
    is_package = path.name == "__init__.py"
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                target = _resolve(alias.name)
                if target:
                    found.append((target, node.lineno, None))
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".")
                anchor = anchor[: len(anchor) - node.level + (1 if is_package else 0)]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                target = _resolve(f"{base}.{alias.name}") or _resolve(base)
                if target:
                    private = alias.name if alias.name.startswith("_") and target != f"{base}.{alias.name}" else None
                    found.append((target, node.lineno, private))
    return found


def _package(module):
    return module.split(".")[0]


GRAPH = {module: _imports(module, path) for module, path in MODULES.items()}


def test_the_check_sees_the_code():
    # A walker that found nothing would pass every rule below.
    assert {"core.permissions", "cases.services", "inference.worker", "ml.train"} <= set(MODULES)
    assert "cases.models" in {target for target, _, _ in GRAPH["cases.services"]}


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_packages_import_only_downward(package):
    wrong = [
        f"{module}:{line} imports {target}"
        for module, imports in GRAPH.items()
        if _package(module) == package
        for target, line, _ in imports
        if _package(target) not in ALLOWED[package] | {package}
    ]
    assert wrong == [], f"{package} may import only {sorted(ALLOWED[package])}"


def test_ml_is_plain_keras_without_django():
    wrong = []
    for module, path in MODULES.items():
        if _package(module) != "ml":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else ([node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            )
            wrong += [f"{module}:{node.lineno} imports {name}" for name in names if name.split(".")[0] == "django"]
    assert wrong == [], "ml/ is plain Keras: no Django"


def test_no_private_names_from_other_packages():
    wrong = [
        f"{module}:{line} imports {private} from {target}"
        for module, imports in GRAPH.items()
        for target, line, private in imports
        if private and _package(target) != _package(module)
    ]
    assert wrong == []


def _cycles(graph):
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on_stack, result = {}, {}, [], set(), []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                result.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return result


def test_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_cycles_between_modules():
    graph = {module: {t for t, _, _ in imports if t != module} for module, imports in GRAPH.items()}
    assert _cycles(graph) == []
