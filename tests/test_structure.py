"""The layout rules of README's "Layout": imports point down between rooms, entry points are thin."""
import ast
import os

from tests.conftest import ROOT

# Rooms from top to bottom; a module may import its own room and rooms below it.
ROOMS = {"training": 2, "evaluation": 2, "inference": 2, "networks": 1, "dataloaders": 1, "utils": 0}
ENTRY_POINTS = {"train", "eval"}
MAX_PARAMETERS = 6


def _modules():
    for folder in list(ROOMS) + ["tools", "tests"]:
        for base, _, names in os.walk(os.path.join(ROOT, folder)):
            for name in names:
                if name.endswith(".py"):
                    path = os.path.join(base, name)
                    with open(path) as f:
                        yield os.path.relpath(path, ROOT), ast.parse(f.read())
    for name in ("config.py", "train.py", "eval.py"):
        with open(os.path.join(ROOT, name)) as f:
            yield name, ast.parse(f.read())


def _imported(tree) -> set[str]:
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def test_no_module_imports_an_entry_point():
    offenders = [path for path, tree in _modules() if {m.split(".")[0] for m in _imported(tree)} & ENTRY_POINTS]
    assert offenders == []


def test_imports_between_rooms_point_down():
    upward = []
    for path, tree in _modules():
        room = path.split(os.sep)[0]
        if room not in ROOMS:
            continue
        for module in _imported(tree):
            target = module.split(".")[0]
            if target in ROOMS and ROOMS[target] > ROOMS[room]:
                upward.append(f"{path} imports {module}")
            if room == "utils" and target == "config":
                upward.append(f"{path} imports config")
            if room == "networks" and target == "config":
                upward.append(f"{path} imports config (models take explicit arguments)")
    assert upward == []


def test_entry_points_are_thin_and_functions_take_few_parameters():
    with open(os.path.join(ROOT, "train.py")) as f:
        assert len(f.read().splitlines()) < 80
    crowded = []
    for path, tree in _modules():
        if path.startswith("tests"):
            continue
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                args = node.args
                names = [a.arg for a in args.posonlyargs + args.args + args.kwonlyargs if a.arg not in ("self", "cls")]
                if len(names) > MAX_PARAMETERS:
                    crowded.append(f"{path}:{node.lineno} {node.name} ({len(names)})")
    assert crowded == []


def test_no_sys_path_manipulation():
    offenders = [path for path, tree in _modules()
                 if any(isinstance(n, ast.Attribute) and n.attr == "path" and isinstance(n.value, ast.Name)
                        and n.value.id == "sys" for n in ast.walk(tree))]
    assert offenders == []
