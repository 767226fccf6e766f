"""Training text from common formats: documents read one at a time from CSV, TSV, JSON
Lines, JSON, a text file of one document per line or a folder of files, and written each
ended by <|endoftext|>, the text train.py and encode.py read.

    for where, text in read_documents('posts.jsonl', 'jsonl', field='body'):
        ...   # a document, or a BadRecord to skip and report
    with DocumentWriter('input-text.txt') as out:
        out.write(text)

The files are read as streams: a corpus of any size needs memory for one document.
"""

import csv
import json
import os
import sys

from gpt2tune.errors import UserError
from gpt2tune.model.release import ENDOFTEXT

FILE_FORMATS = ('csv', 'tsv', 'jsonl', 'json', 'lines', 'files')
EXTENSIONS = {'.csv': 'csv', '.tsv': 'tsv', '.jsonl': 'jsonl', '.ndjson': 'jsonl',
              '.json': 'json', '.txt': 'lines'}


class BadRecord:
    """A record that holds no usable document: where it is and what is wrong."""

    def __init__(self, where, reason):
        self.where, self.reason = where, reason

    def __str__(self):
        return f'{self.where}: {self.reason}'


def add_output_flags(parser, unit):
    """The flags of the training text a preparation script writes, and its validation split
    (`unit`: what the documents are, for the help)."""
    parser.add_argument('-o', '--output', default='input-text.txt',
                        help='Training text to write')
    parser.add_argument('--val_fraction', type=float, default=0.0,
                        help=f'Fraction of {unit} held out for validation')
    parser.add_argument('--val_output', default='input-val.txt', help='Validation text to write')
    parser.add_argument('--seed', type=int, default=0,
                        help='Seed of the validation split (and of a shuffle)')


def check_output_flags(args):
    if not 0 <= args.val_fraction < 1:
        raise UserError(f'--val_fraction {args.val_fraction}: must be at least 0, below 1')


def clean(text):
    """Unix line endings (as a text-mode read would give anyway), no outer whitespace."""
    return text.replace('\r\n', '\n').replace('\r', '\n').strip()


def format_of(path, format=None):
    """The format asked for, else the one a folder or the file's extension implies."""
    if not os.path.exists(path):
        raise UserError(f'{path}: no such file or directory')
    if os.path.isdir(path):
        if format not in (None, 'files'):
            raise UserError(f'{path}: is a folder; --format {format} reads a file')
        return 'files'
    if format == 'files':
        raise UserError(f'{path}: --format files reads a folder, each file one document')
    found = format or EXTENSIONS.get(os.path.splitext(path)[1].lower())
    if found is None:
        raise UserError(f'{path}: cannot tell the format from its name; pass --format '
                        f'{"|".join(FILE_FORMATS)}')
    return found


def read_documents(path, format, *, field='text', encoding='utf-8'):
    """(where, text) for each document of `path`, or a BadRecord in its place."""
    if format in ('csv', 'tsv'):
        return _read_table(path, field, '\t' if format == 'tsv' else ',', encoding)
    readers = {'jsonl': _read_json_lines, 'json': _read_json, 'lines': _read_lines,
               'files': _read_folder}
    return readers[format](path, field, encoding)


def _read_table(path, column, delimiter, encoding):
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))  # documents longer than 128 KB
    with open(path, newline='', encoding=encoding) as f:
        rows = csv.reader(f, delimiter=delimiter)
        try:
            header = next(rows, None)
            if header is None:
                raise UserError(f'{path}: is empty')
            if column not in header:
                raise UserError(f'{path}: no column "{column}" (columns: '
                                f'{", ".join(header)}); pass --field')
            index = header.index(column)
            for row in rows:
                where = f'{path}: line {rows.line_num}'
                if len(row) <= index:
                    yield BadRecord(where, f'{len(row)} fields, no "{column}"')
                else:
                    yield where, row[index]
        except csv.Error as e:
            raise UserError(f'{path}: line {rows.line_num}: not valid CSV ({e})') from None
        except UnicodeDecodeError as e:
            raise UserError(f'{path}: not valid {encoding} after line {rows.line_num} '
                            f'({e.reason}); pass --encoding') from None


def _document_of(where, value, field):
    """The text of a JSON record: a string, or an object's `field`."""
    if isinstance(value, dict):
        if field not in value:
            return BadRecord(where, f'no field "{field}"')
        value = value[field]
    if not isinstance(value, str):
        return BadRecord(where, f'"{field}" is not a string' if field else 'not a string')
    return where, value


def _decoded_lines(path, encoding):
    """(line number, text or BadRecord) of a file, each line decoded on its own."""
    with open(path, 'rb') as f:
        for number, raw in enumerate(f, 1):
            try:
                yield number, raw.decode(encoding).rstrip('\r\n')
            except UnicodeDecodeError as e:
                yield number, BadRecord(f'{path}: line {number}',
                                        f'not valid {encoding} ({e.reason})')


def _read_json_lines(path, field, encoding):
    for number, line in _decoded_lines(path, encoding):
        where = f'{path}: line {number}'
        if isinstance(line, BadRecord):
            yield line
        elif line.strip():  # blank lines are no records
            try:
                yield _document_of(where, json.loads(line), field)
            except json.JSONDecodeError as e:
                yield BadRecord(where, f'not valid JSON ({e.msg})')


def _read_json(path, field, encoding):
    try:
        with open(path, encoding=encoding) as f:
            records = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UserError(f'{path}: not valid JSON ({e})') from None
    if not isinstance(records, list):
        raise UserError(f'{path}: expected a JSON list of documents (objects or strings)')
    for number, record in enumerate(records, 1):
        yield _document_of(f'{path}: record {number}', record, field)


def _read_lines(path, field, encoding):
    for number, line in _decoded_lines(path, encoding):
        yield line if isinstance(line, BadRecord) else (f'{path}: line {number}', line)


def _read_folder(path, field, encoding):
    """Each file below the folder (sorted, hidden ones left out) is one document."""
    paths = sorted(os.path.join(root, name) for root, folders, names in os.walk(path)
                   for name in names if not name.startswith('.'))
    for file in paths:
        try:
            with open(file, encoding=encoding) as f:
                yield file, f.read()
        except UnicodeDecodeError as e:
            yield BadRecord(file, f'not valid {encoding} at byte {e.start} ({e.reason})')


class DocumentWriter:
    """Writes documents, each ended by <|endoftext|>, to `path.partial`; the file takes
    its name only when the writer closes without an error."""

    def __init__(self, path):
        self.path, self.partial = path, f'{path}.partial'
        self.count = self.chars = 0
        self.file = None

    def __enter__(self):
        self.file = open(self.partial, 'w', encoding='utf-8')
        return self

    def write(self, text):
        self.file.write(text + ENDOFTEXT)
        self.count += 1
        self.chars += len(text)

    def __exit__(self, kind, error, traceback):
        self.file.close()
        if kind is None:
            os.replace(self.partial, self.path)
        else:
            os.remove(self.partial)
