import argparse
import json
import os
import re
import subprocess
import sys

import pytest
import torch

from config import (
    PRESETS,
    Config,
    ConfigError,
    config_error_lines,
    load_config,
    parse_value,
)
from tests.conftest import ROOT


def run_entry(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=120)


def test_defaults_match_the_reference():
    cfg = Config()
    assert cfg.DATA_RANDOMCROP == (465, 465)
    assert cfg.MODEL_MAX_MEM == 11
    assert cfg.TRAIN_TOTAL_STEPS == 50000
    assert cfg.TEST_DATASET == "davis2016"
    assert cfg.DATASETS == ["youtubevos", "davis2017"]
    assert cfg.DEVICE in ("cpu", "cuda")


def test_derived_paths_follow_root_and_exp_name():
    cfg = Config()
    cfg.set("EXP_NAME", "abc")
    cfg.set("DIR_ROOT", "/x")
    assert cfg.DIR_RESULT == os.path.join("/x", "log", "abc")
    assert cfg.DIR_CKPT == os.path.join("/x", "log", "abc", "ckpt")
    assert cfg.DIR_DAVIS == os.path.join("/x", "data", "DAVIS")
    cfg.set("DIR_DAVIS", "/elsewhere")
    assert cfg.DIR_DAVIS == "/elsewhere"
    assert cfg.DIR_YTB == os.path.join("/x", "data", "YTB", "train")


def test_constructing_creates_no_folders(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Config().to_dict()
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("text,expected", [
    ("3", 3), ("1e-3", 1e-3), ("(465,465)", (465, 465)), ("['davis2017']", ["davis2017"]),
    ("False", False), ("some/path", "some/path"),
])
def test_parse_value(text, expected):
    assert parse_value(text) == expected


def test_overrides_convert_losslessly_and_reject_the_rest():
    cfg = Config()
    cfg.apply_opts(["TRAIN_LR", "1", "TRAIN_TOTAL_STEPS", "10.0", "DATA_RANDOMCROP", "[97, 97]",
                    "TRAIN_AMP", "bf16", "MODEL_DISTILLATION", "0"])
    assert cfg.TRAIN_LR == 1.0 and isinstance(cfg.TRAIN_LR, float)
    assert cfg.TRAIN_TOTAL_STEPS == 10 and isinstance(cfg.TRAIN_TOTAL_STEPS, int)
    assert cfg.DATA_RANDOMCROP == (97, 97)
    assert cfg.MODEL_DISTILLATION is False
    with pytest.raises(TypeError, match="TRAIN_TOTAL_STEPS"):
        cfg.apply_opts(["TRAIN_TOTAL_STEPS", "10.5"])
    with pytest.raises(TypeError, match="DATASETS"):
        cfg.apply_opts(["DATASETS", "3"])
    with pytest.raises(ValueError, match="pairs"):
        cfg.apply_opts(["TRAIN_LR"])


def test_unknown_key_names_the_closest():
    with pytest.raises(KeyError, match="TRAIN_LR"):
        Config().apply_opts(["TRAIN_LRR", "0.1"])


def test_presets_only_use_existing_keys():
    for name in PRESETS:
        cfg = Config()
        cfg.apply_preset(name)
        assert cfg.EXP_NAME == PRESETS[name]["EXP_NAME"]


@pytest.mark.parametrize("entry", ["train.py", "eval.py"])
def test_print_config_shows_overrides(entry):
    out = run_entry(entry, "--print_config", "--opts", "TRAIN_LR", "0.01", "DATASETS", "['davis2017']")
    assert out.returncode == 0, out.stderr
    resolved = json.loads(out.stdout)
    assert resolved["TRAIN_LR"] == 0.01
    assert resolved["DATASETS"] == ["davis2017"]


def test_misspelt_key_fails_naming_the_right_one():
    out = run_entry("train.py", "--print_config", "--opts", "TRAIN_LRR", "0.01")
    assert out.returncode != 0
    assert "TRAIN_LR" in out.stderr and "TRAIN_LRR" in out.stderr


def test_every_key_is_read_by_something():
    # A key nothing reads is a setting that silently does nothing.
    # Read means used as a value: `x.KEY` or "KEY" in Python code, ['KEY'] of the resolved config
    # in a shell script; a comment or a mention in a script does not count.
    python, shell = [], []
    for base, dirs, files in os.walk(ROOT):
        dirs[:] = [d for d in dirs if d not in (".venv", ".git", "tests", "log", "data", "__pycache__")]
        for name in files:
            path = os.path.join(base, name)
            if name.endswith(".py") and path != os.path.join(ROOT, "config.py"):
                with open(path) as f:
                    python.append("\n".join(line.split("#")[0] for line in f))
            elif name.endswith(".sh"):
                with open(path) as f:
                    shell.append(f.read())
    with open(os.path.join(ROOT, "config.py")) as f:
        derived = f.read().split("_DERIVED", 1)[1].split("PRESETS", 1)[0]  # c.KEY in the derived paths
    code, scripts = "\n".join(python) + derived, "\n".join(shell)
    unread = [key for key in Config().keys()
              if not re.search(rf"\.{key}\b|[\"']{key}[\"']", code) and not re.search(rf"\[[\"']{key}[\"']\]", scripts)]
    assert unread == []


def _config_error(*, exp_name=None, opts=()) -> str:
    args = argparse.Namespace(preset="toy", exp_name=exp_name, opts=list(opts), print_config=False)
    with pytest.raises(ConfigError) as err:
        load_config(args)
    return config_error_lines(err.value)


@pytest.mark.parametrize("opts, key", [
    (["PRETRAIN_PARTIAL_ENCODER", "bogus"], "PRETRAIN_PARTIAL_ENCODER"),
    (["TRAIN_LR", "inf"], "TRAIN_LR"),
    (["TRAIN_LR", "1e999"], "TRAIN_LR"),
    (["TEST_DATASET_SPLIT", "../val"], "TEST_DATASET_SPLIT"),
])
def test_settings_rules(opts, key):
    line = _config_error(opts=opts)
    assert line.startswith(f"config error: {key}") and "\n" not in line


@pytest.mark.parametrize("name", ["..", ".", "a/b"])
def test_exp_name_is_a_plain_name(name):
    line = _config_error(exp_name=name)
    assert line.startswith("config error: EXP_NAME") and "\n" not in line


@pytest.mark.parametrize("key, value", [("DEVICE", 0), ("TRAIN_LR", "fast"), ("DATA_WORKERS", 1.5),
                                        ("TRAIN_TBLOG", "yes"), ("DIR_DATA", 3)])
def test_values_edited_into_config_py_are_checked_by_key(key, value):
    from config import ConfigError
    cfg = Config()
    setattr(cfg, key, value)  # as if edited into config.py's defaults
    with pytest.raises(ConfigError) as err:
        cfg.validate()
    assert str(err.value).startswith(key) and "\n" not in str(err.value)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without a GPU")
def test_cuda_without_a_gpu_is_a_config_error():
    assert _config_error(opts=["DEVICE", "cuda"]).startswith("config error: DEVICE")
