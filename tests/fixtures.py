"""Test data built on the fly: a small byte-level BPE vocabulary and joke files."""

import collections
import json

import regex

from encoder import PAT_STR, bytes_to_unicode

SAMPLE_TEXT = """Why did the chicken cross the road? To get to the other side!
I told my wife she was drawing her eyebrows too high. She looked surprised.
What do you call a fish with no eyes? A fsh. It's the 3rd joke, isn't it? Don't.
Café naïve résumé, 日本語のテキスト, emoji 😀👍🏽 and 👨‍👩‍👧 families.
""" * 3


def write_vocabulary(directory, text, n_merges):
    """encoder.json + vocab.bpe in GPT-2's format, with merges learnt from `text`."""
    byte_encoder = bytes_to_unicode()
    words = collections.Counter(
        tuple(byte_encoder[b] for b in piece.encode('utf-8'))
        for piece in regex.findall(PAT_STR, text))
    encoder = {c: i for i, c in enumerate(byte_encoder.values())}
    merges = []
    while len(merges) < n_merges:
        pairs = collections.Counter()
        for word, count in words.items():
            for pair in zip(word, word[1:], strict=False):
                pairs[pair] += count
        # A token made twice by different merges would break GPT-2's one-merge-one-token
        # layout, which released vocabularies follow: skip such pairs.
        candidates = [p for p in pairs if p[0] + p[1] not in encoder]
        if not candidates:
            break
        best = max(candidates, key=lambda p: (pairs[p], p))
        merges.append(best)
        encoder[best[0] + best[1]] = len(encoder)
        words = collections.Counter({_merge(w, best): c for w, c in words.items()})
    encoder['<|endoftext|>'] = len(encoder)
    (directory / 'encoder.json').write_text(json.dumps(encoder), encoding='utf-8')
    (directory / 'vocab.bpe').write_text(
        '#version: 0.2\n' + ''.join(f'{a} {b}\n' for a, b in merges), encoding='utf-8')


def _merge(word, pair):
    out, i = [], 0
    while i < len(word):
        if word[i:i + 2] == pair:
            out.append(pair[0] + pair[1])
            i += 2
        else:
            out.append(word[i])
            i += 1
    return tuple(out)


def write_stupidstuff(path, n=60):
    jokes = [{'body': f'Joke number {i}: why did the chicken cross road {i}? To get away.',
              'category': 'Animal', 'id': i, 'rating': 1 + i % 5} for i in range(n)]
    path.write_text(json.dumps(jokes), encoding='utf-8')
