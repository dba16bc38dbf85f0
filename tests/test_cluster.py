"""cluster.py without a cluster: a stand-in `sbatch` records what submitit would submit (array size and
parallelism, the test array's dependency on the train array, resources), the pickled tasks are the plan's
steps, and finished jobs are left out (so submitting again resubmits only what did not finish)."""
import argparse
import os
import re

import pytest

pytest.importorskip("submitit", reason="submitit is optional (pip install submitit)")

import cluster  # noqa: E402
import testbed_benchmark as tb  # noqa: E402

FAKE = """#!/bin/bash
n=$(cat "{count}" 2>/dev/null || echo 4241); n=$((n+1)); echo $n > "{count}"
echo "Submitted batch job $n"
"""


@pytest.fixture
def fake_slurm(tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in ("sbatch", "srun"):
        (bin_dir / name).write_text(FAKE.format(count=tmp_path / "count"))
        (bin_dir / name).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.chdir(cluster.__file__.rsplit(os.sep, 1)[0])
    return tmp_path


def sbatch_options(path):
    return dict(re.findall(r"^#SBATCH --([\w-]+)=(\S+)$", open(path).read(), re.M))


def test_submit_two_arrays_with_dependency(fake_slurm, capsys):
    from submitit.core.utils import DelayedSubmission
    tmp = fake_slurm
    common = ["--methods", "CoOp", "MaPLe", "--datasets", "shapes", "patterns", "--seeds", "1",
              "--output", str(tmp / "out"), "--folder", str(tmp / "slurm"), "--data", str(tmp / "data")]
    assert len(cluster.main(["status", *common])) == 4  # the plan's jobs, none run yet
    jobs = tb.plan(argparse.Namespace(protocols=["base2new"], methods=["CoOp", "MaPLe"], seeds=[1],
                                      datasets=["shapes", "patterns"], output=str(tmp / "out"),
                                      data=str(tmp / "data")))
    for folder, _ in jobs[0][1]:  # the first job is finished: left out
        os.makedirs(folder)
        with open(os.path.join(folder, "log.txt"), "w") as f:
            f.write("=> result\n* total: 10\n* correct: 5\n* accuracy: 50.0%\n")
    record = cluster.main(["submit", *common, "--partition", "gpu", "--time", "30", "--gpus", "2",
                           "--tasks-per-node", "2", "--parallelism", "2"])
    assert record == {"train": "4242", "test": "4243", "labels": [label for label, _ in jobs[1:]]}
    train, test = (sbatch_options(tmp / "slurm" / f"{i}_submission.sh") for i in (4242, 4243))
    for opts in (train, test):
        assert opts["array"] == "0-2%2" and opts["partition"] == "gpu" and opts["time"] == "30"
        assert opts["gpus-per-node"] == "2" and opts["ntasks-per-node"] == "2"
    assert "dependency" not in train and test["dependency"] == "aftercorr:4242"
    for i, (_, steps) in enumerate(jobs[1:]):
        assert DelayedSubmission.load(tmp / "slurm" / f"4242_{i}_submitted.pkl").args == (steps[:1],)
        assert DelayedSubmission.load(tmp / "slurm" / f"4243_{i}_submitted.pkl").args == (steps[1:],)
    capsys.readouterr()
    cluster.main(["status", *common])
    out = capsys.readouterr().out
    assert "1 of 4 jobs finished" in out and "train array 4242, test array 4243 (3 jobs)" in out


def children(pid):
    """Ids of the processes whose parent is `pid` (Linux /proc)."""
    found = []
    for entry in os.listdir("/proc"):
        try:
            with open(f"/proc/{entry}/stat") as f:
                if int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                    found.append(int(entry))
        except (OSError, ValueError, IndexError):
            pass
    return found


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="finds the task process through /proc")
def test_requeue_resumes_from_the_last_checkpoint(tmp_path, monkeypatch):
    """A task of submitit's local executor that receives the preemption signal (SIGUSR2) during epoch 2 saves
    its state at the next check point (the run's handler, bound over submitit's), then hands the signal to
    submitit's handler, which requeues it; the requeued task resumes from that state (mid-epoch, or the
    epoch's end) and ends with the state of an uninterrupted run. No TRAIN.CHECKPOINT_FREQ is needed."""
    import time

    import submitit
    import torch

    from restore.engine import registered_name
    from sweep.runner import steps_runner
    from test_engine_fakes import cli_opts, make_oxford_pets
    monkeypatch.chdir(cluster.__file__.rsplit(os.sep, 1)[0])
    make_oxford_pets(str(tmp_path / "data"))
    epochs = 4  # the signal comes in epoch 2: the task is still running

    def argv(out):
        return ["--root", str(tmp_path / "data"), "--seed", "1", "--trainer", "CoOp", "--engine", "native",
                "--dataset-config-file", "configs/datasets/oxford_pets.yaml", "--output-dir", str(out),
                *cli_opts("CoOp", "OPTIM.MAX_EPOCH", epochs)]

    executor = submitit.LocalExecutor(folder=tmp_path / "slurm")
    executor.update_parameters(timeout_min=10)
    out = tmp_path / "task"
    job = executor.submit(steps_runner(), [(str(out), argv(out))])
    def in_epoch_2():
        return (out / "log.txt").exists() and "epoch [2/" in (out / "log.txt").read_text()

    deadline = time.time() + 240
    while not in_epoch_2() and time.time() < deadline and not job.done():
        time.sleep(0.05)
    for pid in children(job._process.pid):  # the task: submitit's preemption signal, as Slurm sends it
        os.kill(pid, submitit.JobEnvironment._usr_sig())
    job.result()
    resumed = [f for f in os.listdir(out) if f.startswith("log.txt-")]
    assert len(resumed) == 1 and "(will resume training)" in (out / resumed[0]).read_text()
    assert "Stopped by SIGUSR2 " in (out / "log.txt").read_text()
    assert not (out / registered_name("CoOp") / "interrupted.pth.tar").exists()
    # the uninterrupted reference runs the same way (a task process with the same environment and
    # thread count): an in-process run would inherit whatever thread count earlier tests set
    whole = tmp_path / "whole"
    executor.submit(steps_runner(), [(str(whole), argv(whole))]).result()
    name = f"{registered_name('CoOp')}/model.pth.tar-{epochs}"
    a = torch.load(tmp_path / "whole" / name, weights_only=True)["state_dict"]
    b = torch.load(out / name, weights_only=True)["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def visible_device(_):
    return os.getpid(), os.environ["CUDA_VISIBLE_DEVICES"]


def test_local_pool_gives_each_worker_its_own_gpu():
    """testbed_benchmark --gpus 5 7: one worker per GPU id, each worker's jobs see only its own GPU."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor
    devices = multiprocessing.Manager().Queue()
    for gpu in ("5", "7"):
        devices.put(gpu)
    with ProcessPoolExecutor(2, initializer=tb.take_device, initargs=(devices,)) as pool:
        seen = dict(pool.map(visible_device, range(16)))
    assert set(seen.values()) <= {"5", "7"} and len(set(seen.values())) == len(seen)


def test_slurm_config_file_with_flags_overriding(fake_slurm):
    """--slurm-config gives the Slurm settings; a flag given on the command line wins over the file."""
    tmp = fake_slurm
    config = tmp / "slurm.yaml"
    config.write_text("partition: a100\ntime: 45\ngpus: 4\ntasks_per_node: 4\ncpus: 8\n"
                      "parallelism: 3\nmax_requeues: 5\n")
    common = ["--methods", "CoOp", "--datasets", "shapes", "patterns", "--seeds", "1", "2",
              "--output", str(tmp / "out"), "--folder", str(tmp / "slurm"), "--slurm-config", str(config)]
    record = cluster.main(["submit", *common, "--time", "90"])
    assert len(record["labels"]) == 4
    for job_id in (record["train"], record["test"]):
        opts = sbatch_options(tmp / "slurm" / f"{job_id}_submission.sh")
        assert opts["array"] == "0-3%3" and opts["partition"] == "a100" and opts["time"] == "90"
        assert opts["gpus-per-node"] == "4" and opts["ntasks-per-node"] == "4" and opts["cpus-per-task"] == "8"
    parsed = argparse.Namespace(slurm_config=str(config), **{k: None for k in cluster.SLURM})
    assert cluster.slurm_settings(parsed)["max_requeues"] == 5
    defaults = {k: default for k, (default, _) in cluster.SLURM.items()}
    parsed.slurm_config = None  # no file: the defaults, which the shipped example file spells out
    assert cluster.slurm_settings(parsed) == defaults
    parsed.slurm_config = os.path.join(os.path.dirname(cluster.__file__), "configs", "slurm.yaml")
    assert cluster.slurm_settings(parsed) == defaults


@pytest.mark.parametrize("text, message", [
    ("partitions: gpu\n", "unknown key 'partitions'; the keys are partition, time"),
    ("time: 1h\n", "time must be an integer, not '1h'"),
    ("- gpu\n", "expected KEY: VALUE lines"),
])
def test_slurm_config_errors_name_the_file_and_key(tmp_path, text, message):
    config = tmp_path / "slurm.yaml"
    config.write_text(text)
    with pytest.raises(SystemExit) as stop:
        cluster.main(["status", "--slurm-config", str(config), "--folder", str(tmp_path / "slurm")])
    assert str(stop.value).startswith(f"Error: --slurm-config {config}: ") and message in str(stop.value)
