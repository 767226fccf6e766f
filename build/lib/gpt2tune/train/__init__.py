"""A training run: its settings (train_config.py), the step's graph (train_graph.py), the
loop (training.py), the run folder (checkpoints.py), what it logs (run_log.py,
progress.py), stopping cleanly (stop_flag.py), optimizers (optimizers.py, adafactor.py),
the memory it needs (train_memory.py) and workers (distributed.py)."""
