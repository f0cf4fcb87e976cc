"""``distilbert.runs``: the checkpoint, log and result helpers that ``distill`` and ``finetune`` share."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from distilbert import runs


class _Model:
    """Stands in for a framework model: ``save_pretrained`` writes one file (or fails, when asked)."""

    def __init__(self, fail: bool = False):
        self.fail = fail

    def save_pretrained(self, directory):
        if self.fail:
            raise OSError("disk full")
        with open(os.path.join(directory, "config.json"), "w") as fh:
            fh.write("{}")


def test_a_checkpoint_is_swapped_in_whole_and_reads_like_a_plain_write(tmp_path):
    old = os.umask(0o022)
    try:
        runs.save_checkpoint(str(tmp_path), _Model(), 3, {"m": np.ones(2)}, {"lr": 1.0})
        runs.save_checkpoint(str(tmp_path), _Model(), 5, {"m": np.zeros(2)}, {"lr": 1.0})
    finally:
        os.umask(old)
    found = runs.find_checkpoint(str(tmp_path))
    assert found == str(tmp_path / runs.CHECKPOINT)
    assert json.loads((tmp_path / runs.CHECKPOINT / runs.TRAINER_FILE).read_text())["step"] == 5
    assert os.stat(found).st_mode & 0o777 == 0o755  # not mkdtemp's 0700
    assert sorted(os.listdir(tmp_path)) == [runs.CHECKPOINT]  # no work or .old directory left


def test_a_failed_checkpoint_leaves_the_old_one(tmp_path):
    runs.save_checkpoint(str(tmp_path), _Model(), 3, {}, {})
    with pytest.raises(OSError, match="disk full"):
        runs.save_checkpoint(str(tmp_path), _Model(fail=True), 4, {}, {})
    assert json.loads((tmp_path / runs.CHECKPOINT / runs.TRAINER_FILE).read_text())["step"] == 3
    assert sorted(os.listdir(tmp_path)) == [runs.CHECKPOINT]


def test_a_crash_between_the_renames_leaves_a_checkpoint_to_resume_from(tmp_path):
    runs.save_checkpoint(str(tmp_path), _Model(), 3, {}, {})
    os.rename(tmp_path / runs.CHECKPOINT, tmp_path / (runs.CHECKPOINT + ".old"))
    assert runs.find_checkpoint(str(tmp_path)) == str(tmp_path / (runs.CHECKPOINT + ".old"))
    assert runs.find_checkpoint(str(tmp_path / "nothing")) is None


def test_trim_log_keeps_the_steps_up_to_the_checkpoint(tmp_path):
    log = tmp_path / "log.jsonl"
    log.write_text("".join(json.dumps({"step": s, "loss": 1.0}) + "\n" for s in range(1, 6)))
    runs.trim_log(str(log), 3)
    assert [json.loads(line)["step"] for line in log.read_text().splitlines()] == [1, 2, 3]
    runs.trim_log(str(tmp_path / "absent.jsonl"), 3)  # nothing to trim: no error, no file
    assert not (tmp_path / "absent.jsonl").exists()


def test_result_directory_replaces_entries_only_when_complete(tmp_path):
    (tmp_path / "checkpoint").mkdir()
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "old.bin").write_text("old")
    with runs.result_directory(str(tmp_path)) as work:
        os.mkdir(os.path.join(work, "model"))
        open(os.path.join(work, "model", "new.bin"), "w").close()
        open(os.path.join(work, "config.json"), "w").close()
    assert sorted(os.listdir(tmp_path)) == ["checkpoint", "config.json", "model"]
    assert os.listdir(tmp_path / "model") == ["new.bin"]
    with pytest.raises(RuntimeError):
        with runs.result_directory(str(tmp_path)) as work:
            open(os.path.join(work, "config.json"), "w").write("half")
            raise RuntimeError("interrupted")
    assert (tmp_path / "config.json").read_text() == ""  # the old entry, untouched
    assert sorted(os.listdir(tmp_path)) == ["checkpoint", "config.json", "model"]
