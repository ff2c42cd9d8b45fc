"""The Ground truth editor never loses a save: kills during saves, stale recovery, torn logs.

A child process edits and saves one sample in a loop and is killed at random moments; on
re-opening, the labels are always those of the last completed save (or of the save that
was completing when the kill came), never an older state from a stale recovery file.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from gplws_testdata import make_dataset

import napari_gplws.annotate as an

CHILD = r"""
import sys, numpy as np
import napari_gplws.annotate as an
ds = an.AnnotationDataset(sys.argv[1], gt_scale=0.05)
s = ds.open(ds.names[0])
full = np.ones(s.shape, bool)
i = int(sys.argv[2])
print("ready", flush=True)
while True:
    i += 1
    s.set_value(full, i - 0.5)   # unsaved work, autosaved to the recovery file ...
    s.write_recovery()
    s.set_value(full, float(i))  # ... then superseded by this value, which is saved
    s.save()
    print(i, flush=True)
"""


def _reopen(root) -> tuple[float, float | None]:
    """The saved value on re-opening, and the recovered value if recovery is offered."""
    ds = an.AnnotationDataset(root, gt_scale=0.05)
    s = ds.open(ds.names[0])
    saved = np.unique(s.depth)
    assert saved.size == 1, saved
    recovered = None
    if s.has_recovery():
        s.restore_recovery()
        recovered = float(np.unique(s.depth)[0])
    return float(saved[0]), recovered


def test_reopening_after_kills_always_gives_the_last_save(tmp_path):
    root = make_dataset(tmp_path / "data", ("npy",))
    rng = np.random.default_rng(0)
    last_seen = 0
    kills = 0
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    while kills < 50:
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(root), str(last_seen)],
            stdout=subprocess.PIPE, text=True, env=env,
        )
        assert child.stdout.readline().strip() == "ready"
        time.sleep(float(rng.uniform(0.0, 0.15)))
        child.send_signal(signal.SIGKILL)
        out, _ = child.communicate(timeout=30)
        printed = [int(v) for v in out.split()]
        completed = printed[-1] if printed else last_seen
        kills += 1
        saved, recovered = _reopen(root)
        # The kill may land after a save's rename but before its print: one more is fine.
        assert completed <= saved <= completed + 1, (kills, completed, saved)
        # Recovery is only ever the unsaved work edited after that save, never older work.
        assert recovered is None or recovered == saved + 0.5, (kills, saved, recovered)
        last_seen = int(saved)


def test_stale_recovery_is_never_offered(tmp_path):
    root = make_dataset(tmp_path / "data", ("npy",))
    ds = an.AnnotationDataset(root, gt_scale=0.05)
    s = ds.open(ds.names[0])
    full = np.ones(s.shape, bool)
    s.set_value(full, 11.0)
    s.write_recovery()
    old_recovery = s.sample.recovery_path.read_bytes()
    s.set_value(full, 12.0)
    s.save()
    # a kill between the save's rename and the recovery's removal leaves this behind:
    s.sample.recovery_path.write_bytes(old_recovery)
    again = an.AnnotationDataset(root, gt_scale=0.05).open(ds.names[0])
    assert not again.has_recovery()
    assert not again.sample.recovery_path.exists()
    assert np.all(again.depth == 12.0)


def test_recovery_after_the_last_save_is_offered(tmp_path):
    root = make_dataset(tmp_path / "data", ("npy",))
    s = an.AnnotationDataset(root, gt_scale=0.05).open("s1_npy")
    full = np.ones(s.shape, bool)
    s.set_value(full, 12.0)
    s.save()
    s.set_value(full, 13.0)
    s.write_recovery()
    again = an.AnnotationDataset(root, gt_scale=0.05).open("s1_npy")
    assert np.all(again.depth == 12.0) and again.has_recovery()
    again.restore_recovery()
    assert np.all(again.depth == 13.0)


def test_torn_log_line_is_skipped_with_a_warning(tmp_path):
    root = make_dataset(tmp_path / "data", ("npy",))
    s = an.AnnotationDataset(root, gt_scale=0.05).open("s1_npy")
    s.set_value(np.ones(s.shape, bool), 12.0)
    with open(s.sample.log_path, "a", encoding="utf-8") as f:
        f.write('{"time": "2026-01-01", "op": "set_va')  # killed mid-record
    s.set_value(np.ones(s.shape, bool), 13.0)  # the next record starts on its own line
    with pytest.warns(UserWarning, match="incomplete"):
        log = s.read_log()
    assert [r["op"] for r in log] == ["set_value", "set_value"]
    assert json.loads(s.sample.log_path.read_text().splitlines()[-1])["params"]["value_um"] == 13.0


def test_leftover_temporary_files_are_cleaned_on_open(tmp_path):
    root = make_dataset(tmp_path / "data", ("npy",))
    s = an.AnnotationDataset(root, gt_scale=0.05).open("s1_npy")
    s.save()
    work = s.sample.work_dir
    leftover = work / f".{s.sample.corrected_path.name}.0badc0de.tmp"
    leftover.write_bytes(b"x" * 1024)
    keep = work / "notes.tmp"  # not one of ours
    keep.write_text("mine")
    an.AnnotationDataset(root, gt_scale=0.05).open("s1_npy")
    assert not leftover.exists() and keep.read_text() == "mine"
