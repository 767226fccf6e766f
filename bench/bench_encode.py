#!/usr/bin/env python3
"""Encoding speed and memory: encode.py on the jokes, and on a large corpus built from them,
against Hugging Face's tokenizers (Rust) on the same text in the same run.

    PYTHONPATH=src python bench/bench_encode.py [--large_mb 1024]
"""

import argparse
import os
import resource
import statistics
import subprocess
import sys
import time

from common import CACHE, ROOT, jokes_text, median_time, random_model, report, vocab_dir


def run_encode(path, models_dir, name):
    """Seconds and peak RSS (GB) of one encode.py run in a fresh process."""
    start = time.perf_counter()
    subprocess.run([sys.executable, os.path.join(ROOT, 'encode.py'), '--models_dir',
                    models_dir, '--model_name', name, path, path + '.npz'], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    seconds = time.perf_counter() - start
    os.remove(path + '.npz')
    return seconds, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20


def reference_mb_per_s(text):
    import tokenizers
    vocab_path = vocab_dir()
    tok = tokenizers.Tokenizer(tokenizers.models.BPE.from_file(
        f'{vocab_path}/encoder.json', f'{vocab_path}/vocab.bpe'))
    tok.pre_tokenizer = tokenizers.pre_tokenizers.ByteLevel(add_prefix_space=False)
    docs = text.split('<|endoftext|>')
    start = time.perf_counter()
    tok.encode_batch(docs)
    return len(text.encode()) / 1e6 / (time.perf_counter() - start)


def tiktoken_mb_per_s(text):
    """tiktoken's own encode, one thread, whole text: the baseline of the ratios."""
    import encoder
    enc = encoder.load_encoder(vocab_dir())
    return len(text.encode()) / 1e6 / median_time(
        lambda: enc._bpe.encode(text, allowed_special='all'), runs=3, warmup=0)


def measure(path, models_dir, name, baseline_text):
    """encode.py on `path` in a fresh process against tiktoken's single thread on
    `baseline_text`, alternated three times (this machine's speed drifts): the medians."""
    mb = os.path.getsize(path) / 1e6
    ours, theirs, rss = [], [], 0.0
    for _ in range(3):
        seconds, rss = run_encode(path, models_dir, name)
        ours.append(mb / seconds)
        theirs.append(tiktoken_mb_per_s(baseline_text))
    return mb, statistics.median(ours), statistics.median(theirs), rss


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--walkthrough_mb', type=int, default=22,
                        help='About the size of the reddit jokes as input-text.txt')
    parser.add_argument('--large_mb', type=int, default=1024)
    args = parser.parse_args()
    models_dir, name = random_model()
    text = jokes_text()
    os.makedirs(CACHE, exist_ok=True)
    small = os.path.join(CACHE, 'jokes.txt')
    with open(small, 'w', encoding='utf-8') as f:
        f.write(text)
    mb = os.path.getsize(small) / 1e6
    seconds, rss = run_encode(small, models_dir, name)
    reference = reference_mb_per_s(text)
    report('encode_jokes_mb_per_s', mb / seconds, 'MB/s', mb=round(mb, 1),
           peak_rss_gb=round(rss, 2), hf_tokenizers_mb_per_s=round(reference, 2),
           ratio_vs_hf_tokenizers=round(mb / seconds / reference, 2),
           note='includes process start-up')
    walkthrough_text = text * max(1, round(args.walkthrough_mb / mb))
    for label, size_mb in (('walkthrough', args.walkthrough_mb), ('large', args.large_mb)):
        path = os.path.join(CACHE, f'{label}.txt')
        with open(path, 'w', encoding='utf-8') as f:
            for _ in range(max(1, round(size_mb / mb))):
                f.write(text)
        size, ours, theirs, rss = measure(path, models_dir, name, walkthrough_text)
        os.remove(path)
        report(f'encode_{label}_mb_per_s', ours, 'MB/s', mb=round(size),
               peak_rss_gb=round(rss, 2), tiktoken_single_thread_mb_per_s=round(theirs, 2),
               ratio_vs_tiktoken_single_thread=round(ours / theirs, 2),
               note='encode.py as a process, start-up included; tiktoken in this process '
                    f'on {len(walkthrough_text.encode()) / 1e6:.0f} MB')


if __name__ == '__main__':
    main()
