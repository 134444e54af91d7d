"""Names are names: control characters in sequence, video and experiment names are one error, and no name
can add a line to a results folder's record of what it wrote."""
import json
import os
import shutil

import pytest

from config import ConfigError, load_config
from evaluation.benchmarks import BENCHMARKS, DatasetOptions
from evaluation.results_folder import MANIFEST, ResultsFolder
from tests.helpers.builders import TOY_EVAL
from tests.helpers.runs import eval_davis, files_under, one_error_line, run_script
from utils.errors import DataError

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


@pytest.mark.parametrize("name", ["../../escaped", "/tmp/abs_seq", "toy-val-00/../toy-val-01", "a/b", "..", "."])
def test_a_listed_sequence_name_must_be_a_name(davis_copy, name):
    (davis_copy / "ImageSets" / "2016" / "val.txt").write_text(f"toy-val-00\n{name}\n")
    with pytest.raises(DataError) as err:
        BENCHMARKS["davis2016"].read(str(davis_copy), DatasetOptions())
    assert repr(name) in str(err.value) and "val.txt" in str(err.value)


def test_a_climbing_name_writes_nothing(davis_copy, toy_weights, tmp_path):
    # Before: a name climbing out of the results folder wrote masks over the ground truth, then
    # scored them against themselves (J 100.0, exit 0).
    (davis_copy / "ImageSets" / "2016" / "val.txt").write_text("toy-val-00\n../../Annotations/480p/toy-val-00\n")
    before = files_under(davis_copy)
    line = one_error_line(eval_davis(davis_copy, toy_weights, tmp_path / "res"))
    assert "val.txt" in line
    assert files_under(davis_copy) == before  # ground truth untouched
    assert not os.path.exists(tmp_path / "res") or not os.listdir(tmp_path / "res")


def test_fbms_split_names_and_results_inside_the_data_are_refused(toy_root, toy_weights, tmp_path):
    fbms = tmp_path / "FBMS"
    shutil.copytree(os.path.join(toy_root, "FBMS"), fbms)
    (fbms / "ImageSets" / "test.txt").write_text("toyfbms01\n../../../x\n")
    with pytest.raises(DataError, match="'../../../x'"):
        BENCHMARKS["fbms"].read(str(fbms), DatasetOptions())
    # Results written into the folder the frames and ground truth are read from: refused.
    (fbms / "ImageSets" / "test.txt").write_text("toyfbms01\n")
    before = files_under(fbms)
    out = run_script("eval.py", "--dataset", "fbms", "--ckpt_path", toy_weights, "--out", str(fbms / "Annotations"),
              "--opts", "DIR_FBMS", str(fbms), *TOY_EVAL)
    assert "overlaps" in one_error_line(out)
    assert files_under(fbms) == before
