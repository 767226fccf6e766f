#!/usr/bin/env python3
"""Turn the joke-dataset files into training text: one joke after another, each
ended by <|endoftext|>.

    python prepare_jokes.py reddit_jokes.json -o input-text.txt

The walkthrough's path to gpt2tune.commands.prepare_jokes, where its flags are; it runs
from a clone without installing anything (it puts src/ on the path).
"""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), 'src'))

from gpt2tune.commands.console import run  # noqa: E402

if __name__ == '__main__':
    run('prepare_jokes')
