"""Settings that cannot run are refused before any work, one line naming the key; text files that are not
UTF-8 are one line naming the file."""
import os
import shutil

import pytest

from config import ConfigError, load_config
from tests.helpers.builders import TINY, TOY_EVAL
from tests.helpers.runs import one_error_line, run_script


class _Args:
    def __init__(self, opts):
        self.preset, self.exp_name, self.opts = None, None, opts


# (opts, the key the one line names)
UNRUNNABLE = [
    (["MODEL_MAX_MEM", "1e20"], "MODEL_MAX_MEM"),                               # before: OOM-killed at 21.8 GB
    (["MODEL_MAX_MEM", "1000", "TEST_MAX_SIZE", "8192"], "MODEL_MAX_MEM"),       # ~750 GiB of window
    (["TEST_MAX_SIZE", "100000"], "TEST_MAX_SIZE"),
    (["TEST_ENCODE_BATCH", "100000"], "TEST_ENCODE_BATCH"),
    (["DATA_RANDOMCROP", "(20000, 20000)"], "DATA_RANDOMCROP"),
    (["TRAIN_BATCH_SIZE", "10000000"], "TRAIN_BATCH_SIZE"),
    (["DATA_CURR_SEQ_LEN", "100000"], "DATA_CURR_SEQ_LEN"),
    (["TEST_MULTISCALE", "[1.0] * 100"], "TEST_MULTISCALE"),
    (["DATA_WORKERS", "100000"], "DATA_WORKERS"),
]


@pytest.mark.parametrize("opts, key", UNRUNNABLE, ids=[" ".join(o) for o, _ in UNRUNNABLE])
def test_a_setting_that_cannot_run_is_refused(opts, key):
    with pytest.raises(ConfigError) as caught:
        load_config(_Args(opts))
    assert str(caught.value).startswith(key)


def test_the_command_lines_refuse_it_before_work(tmp_path):
    for entry in ("train.py", "eval.py"):
        out = run_script(entry, "--opts", "DIR_ROOT", str(tmp_path), "MODEL_MAX_MEM", "1e20")
        assert one_error_line(out).startswith("config error: MODEL_MAX_MEM")
    assert os.listdir(tmp_path) == []


# Split files as other tools write them: UTF-16 with a byte-order mark, Latin-1 accents.
ENCODINGS = [(b"\xff\xfe\xfa", "train.txt"), ("toy-val-00\ncaf\xe9\n".encode("latin-1"), "val.txt")]


@pytest.mark.parametrize("data, split", ENCODINGS, ids=["bytes ff fe fa", "latin-1"])
def test_a_split_file_that_is_not_utf8_is_one_line(toy_root, toy_weights, tmp_path, data, split):
    davis = tmp_path / "DAVIS"
    shutil.copytree(os.path.join(toy_root, "DAVIS"), davis)
    path = davis / "ImageSets" / ("2017" if split == "train.txt" else "2016") / split
    path.write_bytes(data)
    if split == "train.txt":
        out = run_script("train.py", "--preset", "toy", "--opts", "DIR_ROOT", str(tmp_path), "DIR_DAVIS", str(davis),
                         "DATASETS", "['davis2017']", *TINY)
    else:
        out = run_script("eval.py", "--ckpt_path", toy_weights, "--out", str(tmp_path / "out"), "--opts",
                         "DIR_DAVIS", str(davis), *TOY_EVAL)
    line = one_error_line(out)
    assert "not UTF-8" in line and split in line
