#!/usr/bin/env python3
"""Ask GPT-2 to continue your prompts, typed at a prompt or read from a file.

    python src/interactive_conditional_samples.py --top_k 40 --temperature 0.7 --nsamples 10

The walkthrough's path to
gpt2tune.commands.interactive_conditional_samples, where its flags are; it runs from a
clone without installing anything.
"""

from gpt2tune.commands.console import run  # src/, the folder of this script, is on the path

if __name__ == '__main__':
    run('interactive_conditional_samples')
