"""GPT-2's byte-level BPE, built from a model's own `encoder.json` and `vocab.bpe`.

    from gpt2tune.data import encoder
    enc = encoder.get_encoder('124M', 'models')
    ids = enc.encode('Why did the chicken cross the road?|<|endoftext|>')
    assert enc.decode(ids) == 'Why did the chicken cross the road?|<|endoftext|>'

The merges run in tiktoken (Rust): same ids as OpenAI's pure-Python encoder, many times
faster (bench/bench_encode.py). Unlike OpenAI's encoder, the text `<|endoftext|>` becomes
the single token 50256, as GPT-2 saw it in training; `allow_special=False` restores the
original behaviour (five ordinary tokens) for reproducing old runs.
"""

import functools
import json
import os

import tiktoken

from gpt2tune.errors import UserError
from gpt2tune.model.release import ENCODER, ENDOFTEXT, MERGES

# GPT-2's pre-tokenisation pattern, in tiktoken's possessive form (same splits, faster):
# contractions, letters, digits, other symbols, each with one optional leading space, and
# whitespace runs that leave their last space to the next word.
PAT_STR = (r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}++| ?\p{N}++| ?[^\s\p{L}\p{N}]++"""
           r"""|\s++$|\s+(?!\S)|\s""")


class VocabularyError(UserError):
    """encoder.json / vocab.bpe are missing, malformed or inconsistent."""


@functools.lru_cache
def bytes_to_unicode():
    """GPT-2's reversible map from the 256 bytes to printable characters."""
    bs = (list(range(ord('!'), ord('~') + 1)) + list(range(ord('¡'), ord('¬') + 1))
          + list(range(ord('®'), ord('ÿ') + 1)))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs), strict=True))


class Encoder:
    def __init__(self, encoder, bpe_merges, *, allow_special=True, errors='replace'):
        self.encoder = encoder
        self.decoder = {v: k for k, v in encoder.items()}
        self.errors = errors  # how to handle invalid utf-8 when decoding
        self.allow_special = allow_special
        ranks, special = _mergeable_ranks(encoder, bpe_merges)
        self.special_tokens = special
        self.eot_token = special.get(ENDOFTEXT)
        self.n_vocab = max(encoder.values()) + 1
        self._bpe = tiktoken.Encoding(name='gpt2-local', pat_str=PAT_STR,
                                      mergeable_ranks=ranks, special_tokens=special)

    def encode(self, text):
        if self.allow_special:
            return self._bpe.encode(text, allowed_special='all')
        return self._bpe.encode_ordinary(text)

    def encode_batch(self, texts, num_threads=None):
        """Encode several texts in parallel threads (the Rust core releases the GIL)."""
        threads = num_threads or os.cpu_count() or 1
        if self.allow_special:
            return self._bpe.encode_batch(texts, num_threads=threads, allowed_special='all')
        return self._bpe.encode_ordinary_batch(texts, num_threads=threads)

    def encode_array(self, text):
        """The ids as a NumPy uint32 array, made in Rust without a Python list (and with
        the GIL released, so threads encode in parallel)."""
        if self.allow_special:
            return self._bpe.encode_to_numpy(text, allowed_special='all')
        return self._bpe.encode_to_numpy(text, disallowed_special=())

    def decode(self, tokens):
        return self._bpe.decode([int(t) for t in tokens], errors=self.errors)

    def token_text(self, token):
        """One token as text; where its bytes are not whole UTF-8 characters, OpenAI's
        `bytes:\\xe2\\x80` form, so that no two tokens show alike."""
        raw = self._bpe.decode_single_token_bytes(int(token))
        try:
            return raw.decode('utf-8')
        except UnicodeDecodeError:
            return 'bytes:' + ''.join(f'\\x{b:02x}' for b in raw)


def _mergeable_ranks(encoder, bpe_merges):
    """Split encoder.json into tiktoken's byte ranks and the special tokens.

    tiktoken merges by the rank of the merged token, GPT-2 by the order of vocab.bpe: the
    two agree when each merge's result has an id that grows with the merge's position,
    as in every released GPT-2 vocabulary. Anything else is refused, not mis-encoded.
    """
    byte_decoder = {c: b for b, c in bytes_to_unicode().items()}
    # Each printable character back to its byte, as a Latin-1 character: C speed.
    to_bytes = str.maketrans({c: chr(b) for c, b in byte_decoder.items()})
    merged = {a + b for a, b in bpe_merges}
    ranks, special = {}, {}
    for token, idx in encoder.items():
        if (len(token) == 1 and token in byte_decoder) or token in merged:
            ranks[token.translate(to_bytes).encode('latin-1')] = idx
        else:
            special[token] = idx
    missing = [c for c in byte_decoder if c not in encoder]
    if missing:
        raise VocabularyError(f'encoder.json lacks {len(missing)} of the 256 byte tokens')
    last = -1
    for i, (a, b) in enumerate(bpe_merges):
        idx = encoder.get(a + b)
        if idx is None:
            raise VocabularyError(f'vocab.bpe merge {i + 1} ({a} {b}) makes a token '
                                  'that encoder.json does not have')
        if idx <= last:
            raise VocabularyError(f'vocab.bpe merge {i + 1} ({a} {b}) has id {idx}, not above '
                                  'the previous merge: ids must follow merge order')
        last = idx
    return ranks, special


def read_merges(path):
    with open(path, encoding='utf-8') as f:
        lines = f.read().split('\n')
    merges = []
    for lineno, line in enumerate(lines, 1):
        if not line or (lineno == 1 and line.startswith('#version')):
            continue
        parts = line.split(' ')
        if len(parts) != 2:
            raise VocabularyError(f'{path}:{lineno}: a merge is two tokens separated by a '
                                  f'space, got {line!r}')
        merges.append(tuple(parts))
    return merges


def load_encoder(directory, *, allow_special=True):
    """The encoder of the model directory holding `encoder.json` and `vocab.bpe`."""
    if not os.path.isdir(directory):
        raise VocabularyError(f'{directory}: no such model directory (`sh download_model.sh '
                              f'{os.path.basename(directory)}` fetches a released model)')
    json_path = os.path.join(directory, ENCODER)
    bpe_path = os.path.join(directory, MERGES)
    for path in (json_path, bpe_path):
        if not os.path.isfile(path):
            raise VocabularyError(f'{path}: missing (every model directory needs '
                                  f'{ENCODER} and {MERGES})')
    try:
        with open(json_path, encoding='utf-8') as f:
            encoder = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise VocabularyError(f'{json_path}: not valid JSON ({e})') from None
    if not isinstance(encoder, dict) or not all(isinstance(v, int) for v in encoder.values()):
        raise VocabularyError(f'{json_path}: expected an object of token -> integer id')
    return Encoder(encoder, read_merges(bpe_path), allow_special=allow_special)


def get_encoder(model_name, models_dir='models', *, allow_special=True):
    """OpenAI's API: the encoder of `models_dir/model_name`."""
    return load_encoder(os.path.join(os.path.expanduser(models_dir), model_name),
                        allow_special=allow_special)
