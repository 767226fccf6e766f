#!/usr/bin/env python3
"""Fine-tune GPT-2 on your own text.

    PYTHONPATH=src ./train.py --dataset input-text.txt.npz --sample_every=250 --save_every=250

The walkthrough's path to gpt2tune.commands.train, where its flags are; it runs
from a clone without installing anything (it puts src/ on the path).
"""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), 'src'))

from gpt2tune.commands.console import run  # noqa: E402

if __name__ == '__main__':
    run('train')
