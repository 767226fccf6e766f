import json

import pytest

from fixtures import run_script
from gpt2tune.errors import UserError
from gpt2tune.model.release import ENDOFTEXT

PROMPT_DOCS = ['Why did the chicken cross the road?|To get to the other side.',
               'A pun, a comma, and "quotes"\nover two lines',
               'Ünïcödé 🙂 jokes']


def prepare(tmp_path, *args, check=True):
    """prepare_text.py as a user runs it, in tmp_path; (result, documents written)."""
    result = run_script('prepare_text.py', *args, cwd=tmp_path, check=check)
    out = tmp_path / 'input-text.txt'
    docs = out.read_text(encoding='utf-8').split(ENDOFTEXT) if out.exists() else None
    assert docs is None or docs.pop() == ''  # every document ends with the token
    return result, docs


def write_csv(path, rows, delimiter=','):
    import csv
    with open(path, 'w', newline='', encoding='utf-8') as f:
        csv.writer(f, delimiter=delimiter).writerows(rows)


@pytest.mark.parametrize('name, delimiter', [('jokes.csv', ','), ('jokes.tsv', '\t')])
def test_a_table_column_is_read_whole_quotes_and_newlines_included(tmp_path, name, delimiter):
    write_csv(tmp_path / name, [['id', 'joke']] + [[i, d] for i, d in enumerate(PROMPT_DOCS)],
              delimiter)
    _, docs = prepare(tmp_path, name, '--field', 'joke')
    assert docs == PROMPT_DOCS


def test_json_lines_and_json_lists_give_the_same_documents(tmp_path):
    (tmp_path / 'a.jsonl').write_text(''.join(json.dumps({'text': d}) + '\n'
                                              for d in PROMPT_DOCS), encoding='utf-8')
    (tmp_path / 'b.json').write_text(json.dumps([{'text': d} for d in PROMPT_DOCS]),
                                     encoding='utf-8')
    _, docs = prepare(tmp_path, 'a.jsonl', 'b.json')
    assert docs == PROMPT_DOCS * 2


def test_one_document_per_line_and_one_per_file(tmp_path):
    (tmp_path / 'lines.txt').write_text('first joke\r\nsecond joke\n\n  third  \n')
    _, docs = prepare(tmp_path, 'lines.txt')
    assert docs == ['first joke', 'second joke', 'third']
    (tmp_path / 'stories' / 'b').mkdir(parents=True)
    (tmp_path / 'stories' / 'b' / 'two.txt').write_text('Story two.\n\nThe end.\n')
    (tmp_path / 'stories' / 'one.md').write_text('Story one.')
    (tmp_path / 'stories' / '.DS_Store').write_bytes(b'\x00\x01')
    _, docs = prepare(tmp_path, 'stories')
    assert docs == ['Story two.\n\nThe end.', 'Story one.']  # sorted paths: b/two before one


def test_bad_records_are_named_skipped_and_counted(tmp_path):
    (tmp_path / 'data.jsonl').write_bytes(
        b'{"text": "good one"}\nnot json\n{"body": "x"}\n{"text": 5}\n\n'
        b'{"text": "cut <|endoftext|> here"}\n\xff\xfe\n{"text": "good two"}\n')
    result, docs = prepare(tmp_path, 'data.jsonl')
    assert docs == ['good one', 'good two']
    assert result.stderr.splitlines() == [
        'warning: data.jsonl: line 2: not valid JSON (Expecting value); skipped',
        'warning: data.jsonl: line 3: no field "text"; skipped',
        'warning: data.jsonl: line 4: "text" is not a string; skipped',
        f'warning: data.jsonl: line 6: holds the text {ENDOFTEXT}, which would cut it in two; '
        'skipped',
        'warning: data.jsonl: line 7: not valid utf-8 (invalid start byte); skipped']
    assert 'skipped 5 documents: 5 bad' in result.stdout


def test_strict_stops_at_the_first_bad_record_and_writes_nothing(tmp_path):
    (tmp_path / 'data.jsonl').write_text('{"text": "good"}\n{"text": 1}\n')
    result, docs = prepare(tmp_path, 'data.jsonl', '--strict', check=False)
    assert (result.returncode, docs) == (2, None)
    assert result.stderr == 'error: data.jsonl: line 2: "text" is not a string (--strict)\n'
    assert sorted(p.name for p in tmp_path.iterdir()) == ['data.jsonl']


def test_dedupe_and_length_filters(tmp_path):
    (tmp_path / 'lines.txt').write_text('same\nsame\nok doc\nx\nmuch too long a doc\n')
    result, docs = prepare(tmp_path, 'lines.txt', '--dedupe', '--min_chars', '3',
                           '--max_chars', '10')
    assert docs == ['same', 'ok doc']
    assert ('skipped 3 documents: 1 duplicate, 1 shorter than --min_chars, 1 longer than '
            '--max_chars') in result.stdout
    _, docs = prepare(tmp_path, 'lines.txt')
    assert docs == ['same', 'same', 'ok doc', 'x', 'much too long a doc']


def test_the_validation_split_is_seeded_and_disjoint(tmp_path):
    lines = [f'document {i}' for i in range(200)]
    (tmp_path / 'lines.txt').write_text('\n'.join(lines))
    flags = ['lines.txt', '--val_fraction', '0.1', '--val_output', 'val.txt']
    _, train = prepare(tmp_path, *flags)
    val = (tmp_path / 'val.txt').read_text().split(ENDOFTEXT)[:-1]
    assert sorted(train + val) == sorted(lines) and 5 <= len(val) <= 40
    assert prepare(tmp_path, *flags)[1] == train  # the same seed: the same split
    assert prepare(tmp_path, *flags, '--seed', '1')[1] != train


@pytest.mark.parametrize('args, message', [
    (['nope.csv'], 'nope.csv: no such file or directory'),
    (['data.xml'], 'data.xml: cannot tell the format from its name; pass --format'),
    (['data.csv', '--field', 'body'], 'data.csv: no column "body" (columns: text, id); '
                                      'pass --field'),
    (['data.csv', '-o', 'data.csv'], 'data.csv: is also an input'),
    (['data.csv', '-o', 'missing/out.txt'], 'missing/out.txt: its folder does not exist'),
    (['data.csv', '--val_fraction', '1'], '--val_fraction 1.0: must be at least 0, below 1'),
    (['data.csv', '--min_chars', '100'], 'no documents left to train on (skipped 1 '
                                         'documents: 1 shorter than --min_chars)'),
])
def test_bad_input_is_one_clear_error_and_nothing_is_written(tmp_path, args, message):
    write_csv(tmp_path / 'data.csv', [['text', 'id'], ['a joke', '1']])
    (tmp_path / 'data.xml').write_text('<jokes/>')
    result, _ = prepare(tmp_path, *args, check=False)
    assert result.returncode == 2
    assert result.stderr.startswith(f'error: {message}') and result.stderr.count('\n') == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ['data.csv', 'data.xml']


def test_format_can_be_forced(tmp_path):
    (tmp_path / 'export.dat').write_text('{"text": "one"}\n')
    _, docs = prepare(tmp_path, 'export.dat', '--format', 'jsonl')
    assert docs == ['one']
    with pytest.raises(UserError, match='is a folder; --format csv reads a file'):
        from gpt2tune.data.text_data import format_of
        format_of(str(tmp_path), 'csv')
