#!/usr/bin/env python3
"""Fine-tuning the large GPT-2 shapes on this machine: a few steps of the real train.py
(batch 1 x 1024, default precision and memory choice, final checkpoint saved), with its
tokens/s and the peak RSS of the train.py process, per size and optimizer, with or without
LoRA (a run `SIZE:OPTIMIZER:lora` trains rank-8 adapters; its figures come with their
ratio to the first full fine-tuning of the same size measured in this run).

    PYTHONPATH=src python bench/bench_large.py [--runs 774M:adafactor,1558M:adam:lora,...]

Slow (minutes per size; a random 3 GB / 6 GB model is written once into .bench-cache),
so not part of `make bench`: run `make bench-large`.
"""

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile

import numpy as np
from common import ROOT, random_model, report

LORA_RANK = 8


def run_train(models_dir, name, optimizer, steps, workdir, extra_flags=()):
    """(output, peak RSS in GB, the error line if train.py refused) of train.py
    fine-tuning `name` for `steps` steps."""
    dataset = os.path.join(workdir, 'tokens.npz')
    np.savez(dataset, np.random.RandomState(0).randint(0, 50256, 20000, dtype=np.int32))
    command = [sys.executable, os.path.join(ROOT, 'train.py'), '--dataset', dataset,
               '--models_dir', models_dir, '--model_name', name, '--optimizer', optimizer,
               '--steps', str(steps), '--sample_every', '1000000', '--run_name', 'large',
               '--checkpoint_dir', os.path.join(workdir, 'checkpoint'), '--seed', '0',
               *extra_flags]
    child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             text=True)
    output = child.stdout.read()
    _, status, usage = os.wait4(child.pid, 0)
    refusal = re.search(r'^error: (.*)$', output, re.MULTILINE)
    code = os.waitstatus_to_exitcode(status)
    if code == -9:  # the kernel's out-of-memory killer
        steps = len(re.findall(r'^\[\d+ \|', output, re.MULTILINE))
        refusal = f'killed after {steps} steps'
    elif code and not refusal:
        sys.exit(f'bench: {" ".join(command)} failed:\n{output}')
    else:
        refusal = refusal and refusal.group(1)
    return output, usage.ru_maxrss / 2**20, refusal  # ru_maxrss: KiB


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--runs', default='774M:adafactor,774M:adam,1558M:adafactor,'
                        '1558M:adam:lora,124M:adam,124M:adam:lora',
                        help='size:optimizer or size:optimizer:lora, comma-separated')
    parser.add_argument('--steps', type=int, default=3)
    parser.add_argument('--train_flags', default='',
                        help='More train.py flags, e.g. "--memory_check warn --layers_to_train 24"')
    args = parser.parse_args()
    full = {}  # size -> (seconds per step, peak RSS) of its first full fine-tuning
    for run in args.runs.split(','):
        size, optimizer, *kind = run.split(':')
        flags = args.train_flags.split() + (['--lora_rank', str(LORA_RANK)] if kind else [])
        models_dir, name = random_model(size)
        with tempfile.TemporaryDirectory(dir=models_dir) as workdir:
            output, peak_rss, refusal = run_train(models_dir, name, optimizer, args.steps,
                                                  workdir, flags)
        figure = f'finetune_{size}_{optimizer}{"_lora" if kind else ""}_tokens_per_s'
        if refusal:  # refused up front as too big for this machine's memory, or killed
            report(figure, 0, 'tokens/s', stopped=refusal, peak_rss_gb=round(peak_rss, 2))
            continue
        # The first step includes graph optimisation and memory warm-up: leave it out.
        rates = [float(x) for x in re.findall(r'\] loss=\S+ avg=\S+ tokens/s=(\d+)', output)]
        recompute = re.search(r'memory_saving_gradients: (\w+)', output).group(1)
        precision = re.search(r'precision: (\w+)', output).group(1)
        tokens_per_s = statistics.median(rates[1:] or rates)
        # Seconds per step from the elapsed times the step lines print (tokens/s is
        # printed whole: too coarse for the minutes a 1558M step takes).
        elapsed = [float(x) for x in re.findall(r'^\[\d+ \| ([\d.]+)\]', output, re.MULTILINE)]
        step_times = [b - a for a, b in zip(elapsed[:-1], elapsed[1:], strict=True)] or elapsed
        seconds = statistics.median(step_times)
        against = {}
        if not kind:
            full.setdefault(size, (seconds, peak_rss, optimizer))
        elif size in full:
            against = {'baseline': f'full fine-tuning, {full[size][2]}, this run',
                       'step_time_ratio': round(seconds / full[size][0], 3),
                       'peak_rss_ratio': round(peak_rss / full[size][1], 3)}
        report(figure, tokens_per_s, 'tokens/s',
               steps=len(rates), seconds_per_step=round(seconds, 2),
               peak_rss_gb=round(peak_rss, 2), memory_saving_gradients=recompute,
               precision=precision, batch='1x1024', **against)


if __name__ == '__main__':
    main()
