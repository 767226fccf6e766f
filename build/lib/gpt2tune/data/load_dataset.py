"""Reading corpora: text files or encoded `.npz` archives, into arrays of token ids.

    chunks = load_dataset(enc, 'input-text.txt.npz', combine=50000)

Text is read in pieces cut where GPT-2's pre-tokeniser would cut anyway, so a corpus of
any size encodes in bounded memory to exactly the ids of encoding it whole.
"""

import codecs
import collections
import concurrent.futures
import glob
import os
import zipfile

import numpy as np
import regex

from gpt2tune.errors import UserError
from gpt2tune.model.release import ENDOFTEXT

PIECE_CHARS = 1 << 20
# A cut at these positions never changes GPT-2's pre-tokens: between "X\n" and a
# non-space (a lone newline is a pre-token of its own; after longer whitespace runs the
# split depends on what follows, so those are never cut), or between a non-space and " X"
# (the space always starts the next pre-token). Searched from the end of a piece.
SAFE_CUT = regex.compile(r'(?r)(?<=\S\n)(?=\S)|(?<=\S)(?= \S)')


def expand_paths(path):
    """A file, every file below a directory (sorted), or a glob's matches (sorted)."""
    if os.path.isfile(path):
        return [path]
    if os.path.isdir(path):
        paths = sorted(os.path.join(root, name) for root, _, names in os.walk(path)
                       for name in names)
        if not paths:
            raise UserError(f'{path}: directory holds no files')
        return paths
    if glob.has_magic(path):
        paths = sorted(p for p in glob.glob(path, recursive=True) if os.path.isfile(p))
        if not paths:
            raise UserError(f'{path}: no file matches this pattern')
        return paths
    raise UserError(f'{path}: no such file or directory')


def check_text_file(path, encoding, errors):
    """Fail fast on an empty or undecodable file: a streaming decode, no BPE work."""
    if os.path.getsize(path) == 0:
        raise UserError(f'{path}: file is empty')
    try:
        codecs.lookup(encoding)
    except LookupError:
        raise UserError(f'--encoding {encoding}: unknown text encoding') from None
    if errors != 'strict':
        return
    decoder = codecs.getincrementaldecoder(encoding)(errors)
    offset = 0
    with open(path, 'rb') as f:
        while block := f.read(1 << 24):
            try:
                decoder.decode(block)
            except UnicodeDecodeError as e:
                raise UserError(
                    f'{path}: byte offset {offset + e.start} is not valid {encoding} '
                    f'({e.reason}); fix the file, pass the right --encoding, or '
                    '--encoding_errors replace|ignore') from None
            offset += len(block)
        try:
            decoder.decode(b'', final=True)
        except UnicodeDecodeError as e:
            raise UserError(f'{path}: ends inside a {encoding} character ({e.reason})') from None


def iter_text_pieces(path, encoding='utf-8', errors='strict', piece_chars=PIECE_CHARS):
    """The file's text in pieces of about `piece_chars`, cut only at safe places."""
    with open(path, encoding=encoding, errors=errors) as f:
        carry = ''
        while block := f.read(piece_chars):
            text = carry + block
            cut = SAFE_CUT.search(text, len(text) // 2)
            if cut is None:
                carry = text  # one unbroken run: keep reading until it ends
                continue
            yield text[:cut.start()]
            carry = text[cut.start():]
        if carry:
            yield carry


def token_dtype(n_vocab):
    return np.uint16 if n_vocab <= 1 << 16 else np.int32


def _encode_pieces(enc, pieces, dtype):
    """(characters read, token array) for each (text, characters read) piece, in order,
    encoded by a thread per core while this one reads the next pieces; a few pieces in
    flight bound the memory."""
    workers = os.cpu_count() or 1
    in_flight = collections.deque()
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        for piece, n_chars in pieces:
            in_flight.append((n_chars, pool.submit(_encode_piece, enc, piece, dtype)))
            if len(in_flight) > 2 * workers:
                n_chars, ids = in_flight.popleft()
                yield n_chars, ids.result()
        while in_flight:
            n_chars, ids = in_flight.popleft()
            yield n_chars, ids.result()


def _encode_piece(enc, piece, dtype):
    return enc.encode_array(piece).astype(dtype)


def iter_token_groups(enc, paths, combine, encoding='utf-8', errors='strict'):
    """Yield (group, tokens, characters read) pieces. As in OpenAI's loader, text files
    are joined by <|endoftext|> into groups of at least `combine` characters; each `.npz`
    array is a group of its own. Where <|endoftext|> is text (enc.allow_special off, the
    2019 encoding) it is encoded with the text around it, as that loader read it: a
    file's last piece waits to be encoded with the separator and what follows."""
    dtype = token_dtype(enc.n_vocab)
    separator = np.asarray(enc.encode(ENDOFTEXT), dtype)
    as_text = not enc.allow_special
    group, group_chars, held = 0, 0, ('', 0)  # held: (text, characters read)
    for path in paths:
        if path.endswith('.npz'):
            yield from _encoded(enc, group, [held] if held[0] else [], dtype)
            held = ('', 0)
            if group_chars:
                group, group_chars = group + 1, 0
            for array in load_npz(path, enc.n_vocab):
                yield group, array, 0
                group += 1
            continue
        pieces = ((p, len(p)) for p in iter_text_pieces(path, encoding, errors))
        if group_chars and as_text:
            pieces = _after(held[0] + ENDOFTEXT, held[1], pieces)
        elif group_chars:
            yield group, separator, 0
        last = []
        for n_chars, tokens in _encode_pieces(
                enc, _holding_last(pieces, last) if as_text else pieces, dtype):
            group_chars += n_chars
            yield group, tokens, n_chars
        held = last[0] if last else ('', 0)
        group_chars += held[1]
        if group_chars >= combine:
            yield from _encoded(enc, group, [held] if held[0] else [], dtype)
            held = ('', 0)
            group, group_chars = group + 1, 0
    yield from _encoded(enc, group, [held] if held[0] else [], dtype)


def _encoded(enc, group, pieces, dtype):
    for n_chars, tokens in _encode_pieces(enc, pieces, dtype):
        yield group, tokens, n_chars


def _after(text, n_chars, pieces):
    """(text, characters read) pieces with `text` joined to the first (alone when there
    is none)."""
    for piece, n in pieces:
        yield text + piece, n_chars + n
        yield from pieces
        return
    yield text, n_chars


def _holding_last(pieces, last):
    """Every piece but the last, which is put in the list `last` instead."""
    previous = None
    for piece in pieces:
        if previous is not None:
            yield previous
        previous = piece
    if previous is not None:
        last.append(previous)


def check_paths(paths, encoding, errors):
    for path in paths:
        if not path.endswith('.npz'):
            check_text_file(path, encoding, errors)


def load_dataset(enc, path, combine=50000, encoding='utf-8', errors='strict'):
    """OpenAI's API: a list of token arrays from a file, directory or glob."""
    paths = expand_paths(path)
    check_paths(paths, encoding, errors)
    groups = {}
    for group, tokens, _ in iter_token_groups(enc, paths, combine, encoding, errors):
        groups.setdefault(group, []).append(tokens)
    chunks = [np.concatenate(pieces) for pieces in groups.values()]
    return [c for c in chunks if len(c)]


def load_npz(path, n_vocab):
    """The arrays of an encoded archive, each checked to hold ids in [0, n_vocab)."""
    try:
        npz = np.load(path)
    except (OSError, ValueError, zipfile.BadZipFile) as e:
        raise UserError(f'{path}: not a readable .npz archive ({e})') from None
    with npz:
        if not npz.files:
            raise UserError(f'{path}: archive holds no token arrays')
        arrays = []
        for name in npz.files:
            tokens = npz[name]
            if tokens.ndim != 1 or tokens.dtype.kind not in 'iu':
                raise UserError(f'{path}: array {name} is not a 1-D array of token ids '
                                f'(shape {tokens.shape}, dtype {tokens.dtype})')
            bad = tokens[(tokens < 0) | (tokens >= n_vocab)]
            if bad.size:
                raise UserError(f'{path}: array {name} holds token id {int(bad[0])}, '
                                f'outside the vocabulary [0, {n_vocab})')
            arrays.append(tokens)
    return arrays


class NpzTokenWriter:
    """Writes an `.npz` of 1-D token arrays streamed in pieces, without holding any whole
    array: each array goes to a scratch file first, then into the archive once its length
    (the .npy header) is known. The archive appears under its name only when complete."""

    def __init__(self, path, dtype):
        self.path, self.dtype = path, np.dtype(dtype)
        self.partial = f'{path}.partial'
        self.zip = zipfile.ZipFile(self.partial, 'w', zipfile.ZIP_STORED, allowZip64=True)
        self.scratch = open(f'{path}.scratch', 'w+b')
        self.count = 0
        self.total = 0

    def write(self, tokens):
        self.scratch.write(np.asarray(tokens, self.dtype).tobytes())

    def end_array(self):
        n = self.scratch.tell() // self.dtype.itemsize
        if n:
            header = {'descr': np.lib.format.dtype_to_descr(self.dtype),
                      'fortran_order': False, 'shape': (n,)}
            with self.zip.open(f'arr_{self.count}.npy', 'w', force_zip64=True) as out:
                np.lib.format.write_array_header_2_0(out, header)
                self.scratch.seek(0)
                while block := self.scratch.read(1 << 24):
                    out.write(block)
            self.count += 1
            self.total += n
        self.scratch.seek(0)
        self.scratch.truncate()

    def close(self, *, keep):
        self.scratch.close()
        os.remove(self.scratch.name)
        self.zip.close()
        if keep:
            os.replace(self.partial, self.path)
        else:
            os.remove(self.partial)
