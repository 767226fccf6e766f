"""Fine-tune GPT-2 on your own text.

    PYTHONPATH=src ./train.py --dataset input-text.txt.npz --sample_every=250 --save_every=250
    PYTHONPATH=src ./train.py --dataset input-text.txt.npz --steps 1000 --print_config

Trains until Ctrl-C (or --steps), printing a line per step; saves checkpoint/<run_name>/
and writes samples/<run_name>/. `cp -r checkpoint/run1/* models/117M/` then lets the
sampling scripts use the fine-tuned model (or pass them --models_dir checkpoint
--model_name run1). Every flag is a field of TrainConfig (train/train_config.py).
"""

import dataclasses
import json
import signal

from gpt2tune import cli
from gpt2tune.train.train_config import parse_args


def main(argv=None):
    config, command = parse_args(argv)
    if command.print_config:
        print(json.dumps(dataclasses.asdict(config), indent=2))
        return
    cli.start_tensorflow(command.verbose)  # only for a real run: --help answers at once
    from gpt2tune.train.training import train
    # train() handles SIGINT and SIGTERM while it runs and puts these back when it returns:
    # a late signal (a scheduler stopping every worker at once) must not turn the end of a
    # saved run into a kill, not even between train() returning and the process exiting.
    for s in (signal.SIGINT, signal.SIGTERM):
        signal.signal(s, signal.SIG_IGN)
    train(config)


if __name__ == '__main__':
    cli.run(main)
