"""Plan, run and report a sweep of train.py runs (the testbed benchmark): sweep.plan lists the jobs,
sweep.runner runs them (serially, in a local process pool with a device queue, or on Slurm through
submitit), sweep.report reads the finished runs into tables and plots."""
