"""Turn your own data into training text: one document after another, each ended by
<|endoftext|>, for encode.py and train.py.

    python prepare_text.py posts.csv --field text -o input-text.txt
    python prepare_text.py chats.jsonl --field message --dedupe --min_chars 20
    python prepare_text.py quotes.txt                  # one document per line
    python prepare_text.py stories/ --val_fraction 0.05 --val_output input-val.txt

The format comes from the name (.csv, .tsv, .jsonl/.ndjson, .json, .txt: one document per
line; a folder: one document per file) or --format. Line endings become \\n and outer
whitespace goes. Bad records (a line that is not JSON, a row without the column, text that
is not valid in --encoding) are reported, one line each, and skipped; --strict stops at
the first instead. The validation split is drawn per document with --seed, so reruns give
the same files. For the joke-dataset files, prepare_jokes.py knows their fields.
"""

import argparse
import contextlib
import hashlib
import os
import random
import sys

from gpt2tune import cli, flags
from gpt2tune.cli import run
from gpt2tune.data.text_data import (
    FILE_FORMATS,
    BadRecord,
    DocumentWriter,
    add_output_flags,
    check_output_flags,
    clean,
    format_of,
    read_documents,
)
from gpt2tune.errors import UserError
from gpt2tune.model.release import ENDOFTEXT

SHOWN_BAD_RECORDS = 10  # reported one line each; the rest only counted


def parse_args(argv=None):
    p = cli.FlagParser(description=__doc__.split('\n')[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument('inputs', nargs='+', metavar='PATH', help='Files or folders to read')
    p.add_argument('--format', choices=FILE_FORMATS, help='Format of every input (default: from '
                   'each name)')
    p.add_argument('--field', default='text', help='The CSV/TSV column or JSON field that '
                   'holds the document')
    flags.add(p, 'encoding')
    p.add_argument('--dedupe', action='store_true', help='Drop exact duplicate documents')
    p.add_argument('--min_chars', type=int, default=1, help='Drop shorter documents')
    p.add_argument('--max_chars', type=int, default=0, help='Drop longer documents (0: none)')
    add_output_flags(p, 'documents')
    p.add_argument('--strict', action='store_true', help='Stop at the first bad record '
                   '(nothing written) instead of skipping it')
    return p.parse_args(argv)


def check(args):
    """Every flag and input path, before anything is read: (path, format) pairs."""
    check_output_flags(args)
    if args.min_chars < 1 or args.max_chars < 0:
        raise UserError('--min_chars must be at least 1, --max_chars 0 (none) or more')
    if args.max_chars and args.max_chars < args.min_chars:
        raise UserError(f'--max_chars {args.max_chars} is below --min_chars {args.min_chars}')
    outputs = [args.output] + ([args.val_output] if args.val_fraction else [])
    inputs = {os.path.abspath(path) for path in args.inputs}
    for output in outputs:
        if not os.path.isdir(os.path.dirname(os.path.abspath(output))):
            raise UserError(f'{output}: its folder does not exist')
        if os.path.abspath(output) in inputs or outputs.count(output) > 1:
            raise UserError(f'{output}: is also an input or the other output; choose another '
                            'name')
    return [(path, format_of(path, args.format)) for path in args.inputs]


class Tally:
    """What was skipped and why, with the first bad records shown."""

    def __init__(self, strict):
        self.strict, self.counts = strict, {}

    def skip(self, why, record=None):
        self.counts[why] = self.counts.get(why, 0) + 1
        if record is None:
            return
        if self.strict:
            raise UserError(f'{record} (--strict)')
        shown = self.counts[why]
        if shown <= SHOWN_BAD_RECORDS:
            print(f'warning: {record}; skipped', file=sys.stderr)
        elif shown == SHOWN_BAD_RECORDS + 1:
            print('warning: more bad records: skipped and counted, not shown',
                  file=sys.stderr)

    def summary(self):
        """'skipped 5 documents: 1 bad, 3 empty, 1 duplicate'"""
        reasons = ', '.join(f'{n} {why}' for why, n in self.counts.items())
        return f'skipped {sum(self.counts.values())} documents' + (f': {reasons}' if reasons
                                                                   else '')


def documents(args, inputs, tally):
    """The documents to keep, cleaned, in input order."""
    seen = set()
    for path, format in inputs:
        for record in read_documents(path, format, field=args.field, encoding=args.encoding):
            if isinstance(record, BadRecord):
                tally.skip('bad', record)
                continue
            where, text = record
            text = clean(text)
            if ENDOFTEXT in text:
                tally.skip('bad', BadRecord(
                    where, f'holds the text {ENDOFTEXT}, which would cut it in two'))
            elif not text:
                tally.skip('empty')
            elif len(text) < args.min_chars:
                tally.skip('shorter than --min_chars')
            elif args.max_chars and len(text) > args.max_chars:
                tally.skip('longer than --max_chars')
            elif args.dedupe and (digest := hashlib.blake2b(text.encode()).digest()) in seen:
                tally.skip('duplicate')
            else:
                if args.dedupe:
                    seen.add(digest)
                yield text


def main(argv=None):
    args = parse_args(argv)
    inputs = check(args)
    tally = Tally(args.strict)
    rng = random.Random(args.seed)
    with contextlib.ExitStack() as files:  # an error removes both, written or not
        train = files.enter_context(DocumentWriter(args.output))
        val = files.enter_context(DocumentWriter(args.val_output)) if args.val_fraction else None
        for text in documents(args, inputs, tally):
            if val and rng.random() < args.val_fraction:
                val.write(text)
            else:
                train.write(text)
        if train.count == 0:
            raise UserError(f'no documents left to train on ({tally.summary()})')
    print(f'{args.output}: {train.count} documents, {train.chars} characters')
    if val:
        print(f'{args.val_output}: {val.count} documents for validation')
    print(tally.summary())


if __name__ == '__main__':
    run(main)
