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


def test_every_registered_tool_is_a_documented_command():
    import importlib

    from tools import BENCHMARKS, COMMANDS
    with open(os.path.join(ROOT, "README.md")) as f:
        readme = f.read()
    listed = set(n[:-3] for n in os.listdir(os.path.join(ROOT, "tools")) if n.endswith(".py")) - {"__init__", "harness"}
    assert listed == set(COMMANDS) | set(BENCHMARKS)  # every tool is registered, every entry is a file
    for name in list(COMMANDS) + list(BENCHMARKS):
        module = importlib.import_module(f"tools.{name}")
        assert module.__doc__ and callable(module.main), name
        assert f"tools.{name}" in readme, f"README does not show python -m tools.{name}"


def test_settings_are_parsed_only_by_entry_points():
    # Below the entry points, no argparse namespace: runs take option objects (evaluation/options.py).
    offenders = []
    for path, tree in _modules():
        if path.split(os.sep)[0] in ROOMS and "argparse" in _imported(tree):
            offenders.append(path)
    assert offenders == []


def test_checkpoints_are_written_and_read_in_one_place():
    # torch.save / torch.load only in utils/checkpoint.py (and the explicit --trust load of convert_checkpoint).
    allowed = {os.path.join("utils", "checkpoint.py"), os.path.join("tools", "convert_checkpoint.py")}
    offenders = []
    for path, tree in _modules():
        if path in allowed or path.startswith("tests"):
            continue
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and node.attr in ("save", "load") and isinstance(node.value, ast.Name)
                    and node.value.id == "torch"):
                offenders.append(f"{path}:{node.lineno} torch.{node.attr}")
    assert offenders == []


def test_validated_settings_are_not_changed_below_the_entry_points():
    # A Config reaches the rooms validated: they read it, they never set a key (Config.set, apply_*).
    offenders = []
    for path, tree in _modules():
        if path.split(os.sep)[0] not in ROOMS:
            continue
        for node in ast.walk(tree):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr in ("set", "apply_opts", "apply_preset")
                    and isinstance(node.func.value, ast.Name) and node.func.value.id in ("cfg", "config", "settings")):
                offenders.append(f"{path}:{node.lineno}")
    assert offenders == []


def test_no_test_imports_another_test_file():
    offenders = [f"{path} imports {module}" for path, tree in _modules() if path.startswith("tests")
                 for module in _imported(tree) if module.startswith("tests.test_")]
    assert offenders == []
