"""Names are names: control characters in sequence, video and experiment names are one error, and no name
can add a line to a results folder's record of what it wrote."""
import json
import os
import shutil

import pytest

from config import ConfigError, load_config
from evaluation.results_folder import MANIFEST, ResultsFolder
from tests.helpers.builders import TOY_EVAL
from tests.helpers.runs import one_error_line, run_script

INJECTION = "x\nfile notes.txt\nfile y"


def _videos_with_a_folder_named(toy_root, root, name):
    """A --dataset folder root holding one folder of toy frames under `name`, and the user's notes.txt."""
    shutil.copytree(os.path.join(toy_root, "videos", "frames"), root / name)
    (root / "notes.txt").write_text("mine")
    return root


@pytest.mark.parametrize("name", [INJECTION, "tab\there", "esc\x1bname"])
def test_a_sequence_folder_with_control_characters_is_one_error(toy_root, toy_weights, tmp_path, name):
    root = _videos_with_a_folder_named(toy_root, tmp_path / "videos", name)
    out = run_script("eval.py", "--dataset", "folder", "--root", str(root), "--ckpt_path", toy_weights,
                     "--out", str(tmp_path / "out"), "--opts", *TOY_EVAL)
    assert "control characters" in one_error_line(out)
    assert not (tmp_path / "out").exists()
    assert (root / "notes.txt").read_text() == "mine"


def test_a_split_file_name_with_control_characters_is_one_error(toy_root, toy_weights, tmp_path):
    davis = tmp_path / "DAVIS"
    shutil.copytree(os.path.join(toy_root, "DAVIS"), davis)
    (davis / "ImageSets" / "2016" / "val.txt").write_text("toy-val-00\nbad\x1bname\n")
    out = run_script("eval.py", "--ckpt_path", toy_weights, "--out", str(tmp_path / "out"), "--opts",
                     "DIR_DAVIS", str(davis), *TOY_EVAL)
    assert "control characters" in one_error_line(out) and "val.txt" in one_error_line(out)


@pytest.mark.parametrize("name", ["a\nb", "tab\tname", "bell\x07"])
def test_an_experiment_name_with_control_characters_is_a_config_error(name):
    class Args:
        preset, exp_name, opts = None, name, []
    with pytest.raises(ConfigError, match="EXP_NAME"):
        load_config(Args())


def test_a_video_path_with_control_characters_is_one_error(toy_root, toy_weights, tmp_path):
    video = tmp_path / "clip\nx.avi"
    shutil.copy(os.path.join(toy_root, "videos", "clip.avi"), video)
    out = run_script("eval.py", "--video", str(video), "--ckpt_path", toy_weights, "--out", str(tmp_path / "out"),
                     "--opts", *TOY_EVAL)
    assert "control characters" in one_error_line(out)


def test_no_name_adds_a_line_to_the_record_of_written_files(tmp_path):
    # Names that pass (quotes, spaces, letters of any script) are recorded as JSON strings, one per line;
    # --overwrite then deletes exactly the files the evaluation wrote.
    folder = ResultsFolder(str(tmp_path / "res"), [])
    folder.open("new", {"checkpoint": "x"})
    odd = 'a "quoted" name ünïcode'
    written = [str(tmp_path / "res" / odd / "00000.png"), str(tmp_path / "res" / "file notes.txt")]
    for path in written:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        open(path, "w").write("x")
    folder.add_files(written, done=odd)
    folder.complete()
    lines = (tmp_path / "res" / MANIFEST).read_text().splitlines()
    assert [json.loads(line) for line in lines] == [{"file": f"{odd}/00000.png"}, {"file": "file notes.txt"},
                                                    {"done": odd}]
    (tmp_path / "res" / "notes.txt").write_text("the user's")
    again = ResultsFolder(str(tmp_path / "res"), [])
    again.open("overwrite", {"checkpoint": "x"})
    again.close()
    assert sorted(os.listdir(tmp_path / "res")) == ["eval.json", "notes.txt"]
