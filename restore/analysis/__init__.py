"""Analysis tools of the paper: feature-shift study (Fig. 3/4) and t-SNE (Fig. 5); and the activation memory
of a training step (benchmarks/memory.py, benchmarks/step_time.py)."""
