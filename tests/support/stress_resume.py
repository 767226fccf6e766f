#!/usr/bin/env python3
"""Kill train.py with SIGKILL at random moments, restart it, and check that every restart
resumes from a complete checkpoint at the right step and that the per-step losses equal an
uninterrupted run's, bit for bit. The test suite runs 8 rounds; run more by hand:

    PYTHONPATH=src python tests/support/stress_resume.py --rounds 200 --models_dir M \\
        --model_name N --dataset corpus.txt
"""

import argparse
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import time

from fixtures import logged_losses, script_env, train_command


def complete_steps(run_dir):
    if not os.path.isdir(run_dir):
        return []
    return sorted(int(m.group(1)) for name in os.listdir(run_dir)
                  if (m := re.fullmatch(r'model-(\d+)\.index', name)))


def command(args, workdir, steps):
    return train_command(args.models_dir, args.dataset, '--save_every', '1', '--steps',
                         str(steps), '--noise', '0.05', '--accumulate_gradients', '2',
                         '--learning_rate', '0.001',
                         checkpoint_dir=os.path.join(workdir, 'checkpoint'),
                         model_name=args.model_name)


def one_round(args, workdir, rng, steps, before):
    """Start (resume) training and SIGKILL it: one time in five during start-up, otherwise
    a random moment after the first checkpoint it saves, when saves (every step) are under
    way (`before`: the complete checkpoints so far). Returns what it printed and whether
    it waited for a save."""
    env = script_env()
    run_dir = os.path.join(workdir, 'checkpoint', 'run1')
    with tempfile.NamedTemporaryFile('w+') as out:
        proc = subprocess.Popen(command(args, workdir, steps), stdout=out,
                                stderr=subprocess.DEVNULL, env=env)
        saving = rng.random() >= 0.2
        if saving:  # waits for an event; the deadline only ends a run that hangs
            deadline = time.time() + 120
            while complete_steps(run_dir)[-1:] == before[-1:] and proc.poll() is None and \
                    time.time() < deadline:
                time.sleep(0.05)
        time.sleep(rng.uniform(0, args.max_seconds))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        out.seek(0)
        return out.read(), saving


def check_round(printed, before):
    """The restart loaded the newest checkpoint complete before it started, and trained
    from the step after it."""
    loaded = re.findall(r'^Loading checkpoint (.*)$', printed, re.M)
    if not loaded:
        return  # killed before it got that far
    if before:
        assert loaded[-1].endswith(f'model-{before[-1]}'), (loaded, before)
    first = re.search(r'^\[(\d+) \|', printed, re.M)
    if first:
        assert int(first.group(1)) == (before[-1] if before else 0) + 1, (first, before)


def stress(args):
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory(prefix='stress-') as workdir, \
            tempfile.TemporaryDirectory(prefix='reference-') as reference_dir:
        run_dir = os.path.join(workdir, 'checkpoint', 'run1')
        saving_rounds = 0
        for _ in range(args.rounds):
            before = complete_steps(run_dir)
            printed, saving = one_round(args, workdir, rng, 100000, before)
            check_round(printed, before)
            saving_rounds += saving
        reached = complete_steps(run_dir)[-1]
        subprocess.run(command(args, reference_dir, reached), check=True, env=script_env(),
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        reference = logged_losses(os.path.join(reference_dir, 'checkpoint', 'run1'))
        stressed = logged_losses(run_dir)
    mismatched = [s for s in range(1, reached + 1)
                  if any(loss != reference[s][0] for loss in stressed.get(s, []))]
    missing = [s for s in range(1, reached + 1) if s not in stressed]
    return {'rounds': args.rounds, 'saving_rounds': saving_rounds, 'steps': reached,
            'mismatched': mismatched, 'missing': missing}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--rounds', type=int, default=20)
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--max_seconds', type=float, default=2.0)
    p.add_argument('--models_dir', required=True)
    p.add_argument('--model_name', required=True)
    p.add_argument('--dataset', required=True)
    return p.parse_args(argv)


if __name__ == '__main__':
    result = stress(parse_args())
    print(result)
    sys.exit(1 if result['mismatched'] or result['missing'] else 0)
