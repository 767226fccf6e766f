#!/usr/bin/env python3
"""Fine-tuning the large GPT-2 shapes on this machine: a few steps of the real train.py
(batch 1 x 1024, the default memory choice, final checkpoint saved), with its tokens/s,
the peak RSS of the train.py process and the memory model's estimate of it
(train_memory.training_memory), per size, optimizer and precision (each of --precisions
forced: bfloat16 runs on any CPU, emulated where it has no bfloat16 instructions, and
memory does not depend on speed), with or without LoRA (a run `SIZE:OPTIMIZER:lora`
trains rank-8 adapters; its figures come with their ratio to the first full fine-tuning
of the same size and precision measured in this run). The memory check is a warning
here: a run it would refuse is measured, or reported killed.

    PYTHONPATH=src python bench/bench_large.py [--runs 774M:adafactor,1558M:adam:lora,...]
        [--precisions float32,bfloat16]

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


def estimated_peak_gb(size, optimizer, precision, adapted):
    """What the memory check expects of this run."""
    from gpt2tune.model.hparams import SIZES, HParams
    from gpt2tune.train import train_memory
    from gpt2tune.train.train_config import TrainConfig
    n_embd, n_head, n_layer = SIZES[size]
    c = TrainConfig(dataset='x', optimizer=optimizer, precision=precision,
                    lora_rank=LORA_RANK if adapted else 0)
    hparams = HParams(n_embd=n_embd, n_head=n_head, n_layer=n_layer)
    return train_memory.training_memory(c, hparams, optimizer).total / 2**30


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--runs', default='774M:adafactor,774M:adam,1558M:adafactor,'
                        '1558M:adam:lora,124M:adam,124M:adam:lora',
                        help='size:optimizer or size:optimizer:lora, comma-separated')
    parser.add_argument('--steps', type=int, default=3)
    parser.add_argument('--precisions', default='float32,bfloat16',
                        help='--precision of each run, comma-separated')
    parser.add_argument('--train_flags', default='',
                        help='More train.py flags, e.g. "--memory_check warn --layers_to_train 24"')
    args = parser.parse_args()
    full = {}  # (size, precision) -> (seconds per step, peak RSS, optimizer) of its first
    # full fine-tuning
    for run, precision in ((r, p) for r in args.runs.split(',')
                           for p in args.precisions.split(',')):
        size, optimizer, *kind = run.split(':')
        flags = args.train_flags.split() + ['--precision', precision, '--memory_check', 'warn']
        flags += ['--lora_rank', str(LORA_RANK)] if kind else []
        models_dir, name = random_model(size)
        estimate = estimated_peak_gb(size, optimizer, precision, bool(kind))
        with tempfile.TemporaryDirectory(dir=models_dir) as workdir:
            output, peak_rss, refusal = run_train(models_dir, name, optimizer, args.steps,
                                                  workdir, flags)
        figure = f'finetune_{size}_{optimizer}{"_lora" if kind else ""}_tokens_per_s'
        if refusal:  # killed, or refused for another reason
            report(figure, 0, 'tokens/s', stopped=refusal, peak_rss_gb=round(peak_rss, 2),
                   precision=precision, estimate_gb=round(estimate, 2))
            continue
        # The first step includes graph optimisation and memory warm-up: leave it out.
        rates = [float(x) for x in re.findall(r'\] loss=\S+ avg=\S+ tokens/s=(\d+)', output)]
        recompute = re.search(r'memory_saving_gradients: (\w+)', output).group(1)
        products = re.search(r'precision: (\w+)', output).group(1)
        tokens_per_s = statistics.median(rates[1:] or rates)
        # Seconds per step from the elapsed times the step lines print (tokens/s is
        # printed whole: too coarse for the minutes a 1558M step takes).
        elapsed = [float(x) for x in re.findall(r'^\[\d+ \| ([\d.]+)\]', output, re.MULTILINE)]
        step_times = [b - a for a, b in zip(elapsed[:-1], elapsed[1:], strict=True)] or elapsed
        seconds = statistics.median(step_times)
        against = {}
        if not kind:
            full.setdefault((size, precision), (seconds, peak_rss, optimizer))
        elif (size, precision) in full:
            seconds_full, peak_full, optimizer_full = full[size, precision]
            against = {'baseline': f'full fine-tuning, {optimizer_full}, this run',
                       'step_time_ratio': round(seconds / seconds_full, 3),
                       'peak_rss_ratio': round(peak_rss / peak_full, 3)}
        report(figure, tokens_per_s, 'tokens/s',
               steps=len(rates), seconds_per_step=round(seconds, 2),
               peak_rss_gb=round(peak_rss, 2), estimate_gb=round(estimate, 2),
               estimate_ratio=round(estimate / peak_rss, 3), memory_saving_gradients=recompute,
               precision=products, batch='1x1024', **against)


if __name__ == '__main__':
    main()
