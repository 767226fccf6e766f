#!/usr/bin/env python3
"""Pre-encode text files into a tokenized training set.

    PYTHONPATH=src ./encode.py input-text.txt input-text.txt.npz

The walkthrough's path to gpt2tune.commands.encode, where its flags are; it runs
from a clone without installing anything (it puts src/ on the path).
"""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), 'src'))

from gpt2tune.commands.console import run  # noqa: E402

if __name__ == '__main__':
    run('encode')
