#!/usr/bin/env python3
"""Let GPT-2 write from nothing (each sample starts after <|endoftext|>).

    python src/generate_unconditional_samples.py --top_k 40 --nsamples 20 --output_file out.txt

The walkthrough's path to
gpt2tune.commands.generate_unconditional_samples, where its flags are; it runs from a
clone without installing anything.
"""

from gpt2tune.commands.console import run  # src/, the folder of this script, is on the path

if __name__ == '__main__':
    run('generate_unconditional_samples')
