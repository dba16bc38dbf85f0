"""The thread count follows the CPUs the process may use (affinity, cgroup quota), with overrides."""
import os
import shutil
import subprocess
import sys
import warnings

import pytest

from restore.engine import cpus

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _write(path, text):
    path.write_text(text)
    return str(path)


def test_cgroup_v2_and_v1_quotas(tmp_path):
    none = str(tmp_path / "absent")
    assert cpus.cgroup_cpu_limit(_write(tmp_path / "a", "150000 100000\n"), (none, none)) == 1.5
    assert cpus.cgroup_cpu_limit(_write(tmp_path / "b", "max 100000\n"), (none, none)) is None
    v1 = (_write(tmp_path / "q", "300000\n"), _write(tmp_path / "p", "100000\n"))
    assert cpus.cgroup_cpu_limit(none, v1) == 3.0
    assert cpus.cgroup_cpu_limit(none, (_write(tmp_path / "q1", "-1\n"), v1[1])) is None
    assert cpus.cgroup_cpu_limit(none, (none, none)) is None


def test_quota_caps_the_affinity(monkeypatch):
    monkeypatch.setattr(cpus.os, "sched_getaffinity", lambda pid: {0, 1, 2, 3})
    monkeypatch.setattr(cpus, "cgroup_cpu_limit", lambda: 2.5)
    assert cpus.available_cpus() == 2
    monkeypatch.setattr(cpus, "cgroup_cpu_limit", lambda: 0.5)
    assert cpus.available_cpus() == 1
    monkeypatch.setattr(cpus, "cgroup_cpu_limit", lambda: None)
    assert cpus.available_cpus() == 4


def test_overrides_in_order(monkeypatch):
    monkeypatch.setattr(cpus, "available_cpus", lambda: 3)
    monkeypatch.delenv(cpus.THREADS_ENV, raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert cpus.thread_count() == (3, "the CPUs available to this process")
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    assert cpus.thread_count() == (2, "OMP_NUM_THREADS")
    monkeypatch.setenv(cpus.THREADS_ENV, "5")
    assert cpus.thread_count() == (5, cpus.THREADS_ENV)
    monkeypatch.setenv(cpus.THREADS_ENV, "two")
    with pytest.raises(ValueError, match="RESTORE_NUM_THREADS='two' is not a thread count"):
        cpus.thread_count()


def test_worker_note_once_and_count_kept(monkeypatch, capsys):
    monkeypatch.setattr(cpus, "available_cpus", lambda: 2)
    assert cpus.check_num_workers(2) is False
    assert capsys.readouterr().out == ""
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        assert cpus.check_num_workers(8) is True
        out = capsys.readouterr().out
        assert out.count("Note:") == 1 and "DATALOADER.NUM_WORKERS 2" in out and "augmentation" in out
        with warnings.catch_warnings(record=True) as caught:
            warnings.warn("This DataLoader will create 8 worker processes in total.", UserWarning)
        assert caught == []


@pytest.mark.skipif(shutil.which("taskset") is None or not hasattr(os, "sched_getaffinity"),
                    reason="needs taskset (util-linux) and Linux affinity")
def test_taskset_one_cpu_gives_one_thread():
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", cpus.THREADS_ENV)}
    code = "from restore.engine.cpus import configure_threads; import torch; configure_threads(); " \
           "print(torch.get_num_threads())"
    out = subprocess.run(["taskset", "-c", "0", sys.executable, "-c", code], cwd=REPO, env=env,
                         capture_output=True, text=True, check=True).stdout.splitlines()
    assert out == ["Threads: 1 (the CPUs available to this process; set RESTORE_NUM_THREADS to change)", "1"]
