#!/usr/bin/env python3
"""Start-up: train.py from start to exit of a one-step run on a tiny model, against
importing TensorFlow alone, each a fresh process, alternated (this machine's speed
drifts); and how long each script takes to answer --help.

    PYTHONPATH=src python bench/bench_startup.py [--rounds 5]
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

from common import CACHE, ROOT, jokes_text, random_model, report

SCRIPTS = ['train.py', 'encode.py', 'prepare_text.py', 'src/interactive_conditional_samples.py',
           'src/generate_unconditional_samples.py', 'gpt2tune.commands.score']


def seconds(command, cwd=ROOT):
    env = dict(os.environ, PYTHONPATH=os.path.join(ROOT, 'src'))
    start = time.perf_counter()
    subprocess.run(command, cwd=cwd, env=env, check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--rounds', type=int, default=5)
    args = parser.parse_args()
    models_dir, name = random_model('tiny')
    corpus = os.path.join(CACHE, 'startup-jokes.txt')
    with open(corpus, 'w', encoding='utf-8') as f:
        f.write(jokes_text()[:200_000])
    import_tf, one_step = [], []
    for _ in range(args.rounds):
        import_tf.append(seconds([sys.executable, '-c', 'import tensorflow']))
        with tempfile.TemporaryDirectory() as run_dir:
            one_step.append(seconds([
                sys.executable, os.path.join(ROOT, 'train.py'), '--dataset', corpus,
                '--models_dir', models_dir, '--model_name', name, '--steps', '1',
                '--sample_every', '100', '--save_every', '100', '--checkpoint_dir', run_dir,
                '--sample_dir', run_dir], cwd=run_dir))
    tf_median, step_median = statistics.median(import_tf), statistics.median(one_step)
    report('train_one_step_seconds', step_median, 's', import_tensorflow_seconds=round(
        tf_median, 2), ratio_vs_import_tensorflow=round(step_median / tf_median, 2),
        beyond_import_seconds=round(step_median - tf_median, 2), rounds=args.rounds,
        note='train.py --steps 1 on a 2-layer model, start to exit, medians')
    for script in SCRIPTS:
        report('help_seconds', seconds([sys.executable, os.path.join(ROOT, script), '--help']),
               's', script=script)


if __name__ == '__main__':
    main()
