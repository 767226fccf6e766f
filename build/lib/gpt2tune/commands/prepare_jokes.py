"""Turn the joke-dataset files into training text: one joke after another, each ended by
<|endoftext|>.

    python prepare_jokes.py reddit_jokes.json -o input-text.txt
    python prepare_jokes.py reddit_jokes.json --min_score 10 --val_fraction 0.02 \\
        --val_output input-val.txt

reddit_jokes.json and wocka.json jokes become `title|body`, stupidstuff.json jokes (no
title) their body; the format is told from the fields. Line endings become \\n. Jokes keep
the files' order unless --shuffle; the validation split is drawn with --seed, so reruns
give the same files.
"""

import argparse
import json
import random

from gpt2tune import cli
from gpt2tune.cli import run
from gpt2tune.data.text_data import DocumentWriter, add_output_flags, check_output_flags, clean
from gpt2tune.errors import UserError as InputError

JOKE_FILE_FIELDS = {  # fields each format's records must have, and the score field if any
    'reddit': (('title', 'body', 'score'), 'score'),
    'wocka': (('title', 'body', 'category'), None),
    'stupidstuff': (('body', 'rating'), 'rating'),
}


def detect_format(path, record):
    if not isinstance(record, dict):
        raise InputError(f'{path}: record 1 is not an object')
    for name in JOKE_FILE_FIELDS:
        if all(field in record for field in JOKE_FILE_FIELDS[name][0]):
            return name
    raise InputError(f'{path}: record 1 has fields {sorted(record)}; expected those of '
                     'reddit_jokes.json (title, body, score), wocka.json (title, body, '
                     'category) or stupidstuff.json (body, rating)')


def read_jokes(path, min_score):
    """[(text, score)] of one file; malformed input names the file and record."""
    try:
        with open(path, encoding='utf-8') as f:
            records = json.load(f)
    except FileNotFoundError:
        raise InputError(f'{path}: no such file') from None
    except IsADirectoryError:
        raise InputError(f'{path}: is a directory; give the joke files themselves') from None
    except PermissionError:
        raise InputError(f'{path}: not readable (permission denied)') from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InputError(f'{path}: not valid JSON ({e})') from None
    if not isinstance(records, list) or not records:
        raise InputError(f'{path}: expected a non-empty JSON list of jokes')
    fields, score_field = JOKE_FILE_FIELDS[detect_format(path, records[0])]
    if min_score is not None and score_field is None:
        raise InputError(f'{path}: has no score or rating, so --min_score cannot apply')
    jokes = []
    for number, record in enumerate(records, 1):
        where = f'{path}: record {number}'
        if not isinstance(record, dict):
            raise InputError(f'{where} is not an object')
        if 'id' in record:
            where += f' (id {record["id"]})'
        for field in fields:
            if field not in record:
                raise InputError(f'{where}: field "{field}" is missing')
        for field in ('title', 'body'):
            if field in fields and not isinstance(record[field], str):
                raise InputError(f'{where}: field "{field}" is not a string')
        score = record[score_field] if score_field else None
        if score_field and (not isinstance(score, int | float) or isinstance(score, bool)):
            raise InputError(f'{where}: field "{score_field}" is not a number')
        if min_score is not None and score < min_score:
            continue
        body = clean(record['body'])
        text = f'{clean(record["title"])}|{body}' if 'title' in fields else body
        jokes.append((text, body))
    return jokes


def select(jokes, *, keep_empty, keep_duplicates):
    seen, kept = set(), []
    for text, body in jokes:
        if (not body and not keep_empty) or (text in seen and not keep_duplicates):
            continue
        seen.add(text)
        kept.append(text)
    return kept


def write_text(path, jokes):
    with DocumentWriter(path) as out:
        for joke in jokes:
            out.write(joke)


def parse_args(argv=None):
    p = cli.FlagParser(description=__doc__.split('\n')[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument('inputs', nargs='+', metavar='JSON',
                   help='reddit_jokes.json, wocka.json and/or stupidstuff.json')
    p.add_argument('--min_score', type=float, default=None,
                   help='Keep jokes with at least this score (reddit) or rating (stupidstuff)')
    p.add_argument('--keep_duplicates', action='store_true', help='Keep exact duplicates')
    p.add_argument('--keep_empty', action='store_true', help='Keep jokes with empty bodies')
    p.add_argument('--shuffle', action='store_true', help='Shuffle the jokes (with --seed)')
    add_output_flags(p, 'jokes')
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    check_output_flags(args)
    jokes = [joke for path in args.inputs for joke in read_jokes(path, args.min_score)]
    texts = select(jokes, keep_empty=args.keep_empty, keep_duplicates=args.keep_duplicates)
    rng = random.Random(args.seed)
    if args.shuffle:
        rng.shuffle(texts)
    val_ids = set(rng.sample(range(len(texts)), round(len(texts) * args.val_fraction)))
    train = [t for i, t in enumerate(texts) if i not in val_ids]
    if not train:
        raise InputError('no jokes left to train on after filtering')
    write_text(args.output, train)
    print(f'{args.output}: {len(train)} jokes ({len(jokes) - len(texts)} dropped as empty '
          'or duplicate)')
    if val_ids:
        write_text(args.val_output, [t for i, t in enumerate(texts) if i in val_ids])
        print(f'{args.val_output}: {len(val_ids)} jokes for validation')


if __name__ == '__main__':
    run(main)
