#!/usr/bin/env python3
"""Encoding speed and memory: encode.py on the jokes, and on a large corpus built from them,
against Hugging Face's tokenizers (Rust) on the same text in the same run.

    PYTHONPATH=src python bench/bench_encode.py [--large_mb 1024]
"""

import argparse
import os
import statistics
import subprocess
import sys
import time

from common import CACHE, ROOT, jokes_text, random_model, report, vocab_dir

from gpt2tune.model.release import ENCODER, ENDOFTEXT, MERGES


def run_encode(path, models_dir, name):
    """Seconds and peak RSS (GB) of one encode.py run in a fresh process."""
    start = time.perf_counter()
    child = subprocess.Popen([sys.executable, os.path.join(ROOT, 'encode.py'), '--models_dir',
                              models_dir, '--model_name', name, path, path + '.npz'],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(child.pid, 0)  # this child's own peak, not the others'
    seconds = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status):
        sys.exit(f'bench: encode.py {path} failed')
    os.remove(path + '.npz')
    return seconds, usage.ru_maxrss / 2**20  # Linux reports KiB


def reference_mb_per_s(text):
    import tokenizers
    vocab_path = vocab_dir()
    tok = tokenizers.Tokenizer(tokenizers.models.BPE.from_file(
        os.path.join(vocab_path, ENCODER), os.path.join(vocab_path, MERGES)))
    tok.pre_tokenizer = tokenizers.pre_tokenizers.ByteLevel(add_prefix_space=False)
    docs = text.split(ENDOFTEXT)
    start = time.perf_counter()
    tok.encode_batch(docs)
    return len(text.encode()) / 1e6 / (time.perf_counter() - start)


# The baseline: tiktoken's own encode, one thread, on the whole file, in a fresh process
# like encode.py's (start-up, the vocabulary and tiktoken's cold caches included).
TIKTOKEN_PROCESS = (
    'import sys\nfrom gpt2tune.data import encoder\n'
    'enc = encoder.load_encoder(sys.argv[2])\n'
    'with open(sys.argv[1], encoding="utf-8") as f:\n'
    '    enc._bpe.encode(f.read(), allowed_special="all")\n')


def tiktoken_seconds(path):
    start = time.perf_counter()
    subprocess.run([sys.executable, '-c', TIKTOKEN_PROCESS, path, vocab_dir()], check=True,
                   env=dict(os.environ, PYTHONPATH=os.path.join(ROOT, 'src')))
    return time.perf_counter() - start


def measure(path, models_dir, name):
    """encode.py on `path` against tiktoken's single thread on it, each a fresh process,
    alternated three times (this machine's speed drifts): the medians, in MB/s."""
    mb = os.path.getsize(path) / 1e6
    ours, theirs, rss = [], [], 0.0
    for _ in range(3):
        seconds, rss = run_encode(path, models_dir, name)
        ours.append(mb / seconds)
        theirs.append(mb / tiktoken_seconds(path))
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
    for label, size_mb in (('walkthrough', args.walkthrough_mb), ('large', args.large_mb)):
        path = os.path.join(CACHE, f'{label}.txt')
        with open(path, 'w', encoding='utf-8') as f:
            for _ in range(max(1, round(size_mb / mb))):
                f.write(text)
        size, ours, theirs, rss = measure(path, models_dir, name)
        os.remove(path)
        report(f'encode_{label}_mb_per_s', ours, 'MB/s', mb=round(size),
               peak_rss_gb=round(rss, 2), tiktoken_single_thread_mb_per_s=round(theirs, 2),
               ratio_vs_tiktoken_single_thread=round(ours / theirs, 2),
               note='each a whole process on the same file, start-up included')


if __name__ == '__main__':
    main()
