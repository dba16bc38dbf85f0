"""sweep.runner on one machine: a testbed sweep (2 methods x 2 datasets x 1 seed, one epoch on a shrunken
testbed) run by a pool of 2 local processes gives exactly the tables of the same jobs run serially, and
the pool's jobs ran at the same time."""
import argparse
import dataclasses
import multiprocessing
import os

import pytest

from restore.testbed import datasets as D
from restore.testbed import generate as G
from sweep.plan import finished, plan
from sweep.report import report
from sweep.runner import run_jobs

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = ["OPTIM.MAX_EPOCH", "1", "DATASET.NUM_SHOTS", "2", "DATALOADER.NUM_WORKERS", "0"]


def sweep_args(tmp_path, name):
    return argparse.Namespace(protocols=["base2new"], methods=["CoOp", "IVLP"], datasets=["shapes", "patterns"],
                              seeds=[1], ablations=[], data=str(tmp_path / "data"),
                              output=str(tmp_path / name), overrides=TINY)


@pytest.mark.skipif(multiprocessing.get_start_method() != "fork",
                    reason="the shrunken testbed sizes reach the pool workers through fork")
def test_pool_of_two_gives_the_serial_tables_and_overlaps(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)  # the plan names configs/ relative to the repository
    for key in ("shapes", "patterns"):  # a few images per class and split: seconds per run
        monkeypatch.setitem(D.DATASETS, key, dataclasses.replace(D.DATASETS[key], n_train=3, n_val=1, n_test=2))
        G.generate(tmp_path / "data", key)
    serial, pooled = sweep_args(tmp_path, "serial"), sweep_args(tmp_path, "pool")
    serial_jobs, pool_jobs = plan(serial), plan(pooled)
    assert len(pool_jobs) == 4 and all(argv[-len(TINY):] == TINY for _, steps in pool_jobs for _, argv in steps)

    assert run_jobs(serial_jobs, workers=1, threads=1)[1] == {}  # none failed
    times, failed = run_jobs(pool_jobs, workers=2, threads=1)
    assert failed == {}

    for (_, a), (_, b) in zip(serial_jobs, pool_jobs):  # every run, train (base) and test (new), agrees
        for (folder_a, _), (folder_b, _) in zip(a, b):
            assert finished(folder_a) is not None and finished(folder_a) == finished(folder_b)
    tables = []
    for args in (serial, pooled):
        summary = report(args)
        assert set(summary) == {"CoOp", "IVLP"}
        with open(os.path.join(args.output, "results.md")) as f, \
                open(os.path.join(args.output, "results.csv")) as g:
            tables.append((f.read(), g.read()))
    assert tables[0] == tables[1] and "| CoOp |" in tables[0][0] and "| IVLP |" in tables[0][0]

    spans = sorted(times.values())
    assert len(spans) == 4 and any(spans[i + 1][0] < spans[i][1] for i in range(3)), spans
