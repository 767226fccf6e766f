"""data/text_data.py on its own (tests/commands/test_prepare_text.py runs it through
prepare_text.py): the format a path implies, each format's documents and BadRecords with
where they are, clean, the output flags' check, and DocumentWriter's all-or-nothing file."""

import json

import pytest

from gpt2tune.data import text_data
from gpt2tune.data.text_data import BadRecord, DocumentWriter, format_of
from gpt2tune.errors import UserError
from gpt2tune.model.release import ENDOFTEXT


def read(path, format, **kwargs):
    """Each document's (where, text), a BadRecord as str(record)."""
    return [str(d) if isinstance(d, BadRecord) else d
            for d in text_data.read_documents(str(path), format, **kwargs)]


@pytest.mark.parametrize('name, format', [('a.csv', 'csv'), ('a.tsv', 'tsv'),
                                          ('a.jsonl', 'jsonl'), ('a.NDJSON', 'jsonl'),
                                          ('a.json', 'json'), ('a.txt', 'lines')])
def test_the_format_is_implied_by_the_extension(tmp_path, name, format):
    (tmp_path / name).write_text('')
    assert format_of(str(tmp_path / name)) == format
    assert format_of(str(tmp_path / name), 'jsonl') == 'jsonl'  # one asked for wins


def test_a_folder_is_files(tmp_path):
    assert format_of(str(tmp_path)) == format_of(str(tmp_path), 'files') == 'files'


@pytest.mark.parametrize('name, format, message', [
    ('nope.csv', None, 'no such file or directory'), ('a.xml', None, 'cannot tell the format'),
    ('.', 'csv', 'is a folder; --format csv reads a file'), ('a.xml', 'files', 'reads a folder')])
def test_a_format_that_cannot_be_read_is_a_user_error(tmp_path, name, format, message):
    (tmp_path / 'a.xml').write_text('<jokes/>')
    with pytest.raises(UserError, match=message):
        format_of(str(tmp_path / name), format)


def test_a_table_gives_its_column_by_header_and_names_short_rows(tmp_path):
    path = tmp_path / 'a.csv'
    path.write_text('id,joke\n1,"a pun, a comma"\n2\n3,"two\nlines"\n', encoding='utf-8')
    first, short, quoted = read(path, 'csv', field='joke')
    assert first == (f'{path}: line 2', 'a pun, a comma') and quoted[1] == 'two\nlines'
    assert short == f'{path}: line 3: 1 fields, no "joke"'
    (tmp_path / 'a.tsv').write_text('joke\tid\ntab, separated\t1\n')
    assert [t for _, t in read(tmp_path / 'a.tsv', 'tsv', field='joke')] == ['tab, separated']


@pytest.mark.parametrize('content, message', [('', 'is empty'),
                                              ('id,body\n1,x\n', 'no column "joke"')])
def test_a_table_without_the_column_is_a_user_error(tmp_path, content, message):
    (tmp_path / 'a.csv').write_text(content)
    with pytest.raises(UserError, match=message):
        read(tmp_path / 'a.csv', 'csv', field='joke')


def test_json_lines_give_documents_and_bad_records_by_line(tmp_path):
    path = tmp_path / 'a.jsonl'
    path.write_bytes(b'{"text": "one"}\n"two"\n\nnot json\n{"body": 1}\n{"text": 5}\n'
                     b'\xff\n{"text": "three"}\n')
    assert read(path, 'jsonl') == [
        (f'{path}: line 1', 'one'), (f'{path}: line 2', 'two'),
        f'{path}: line 4: not valid JSON (Expecting value)', f'{path}: line 5: no field "text"',
        f'{path}: line 6: "text" is not a string',
        f'{path}: line 7: not valid utf-8 (invalid start byte)', (f'{path}: line 8', 'three')]


def test_a_json_list_gives_its_records_and_anything_else_is_a_user_error(tmp_path):
    path = tmp_path / 'a.json'
    path.write_text(json.dumps([{'body': 'one'}, 'two', {'text': 'x'}]))
    assert read(path, 'json', field='body') == [
        (f'{path}: record 1', 'one'), (f'{path}: record 2', 'two'),
        f'{path}: record 3: no field "body"']
    path.write_text('{"text": "one"}')
    with pytest.raises(UserError, match='expected a JSON list'):
        read(path, 'json')


def test_lines_are_documents_without_their_line_ends(tmp_path):
    path = tmp_path / 'a.txt'
    path.write_bytes(b'first\r\n  second \n')
    assert read(path, 'lines') == [(f'{path}: line 1', 'first'), (f'{path}: line 2', '  second ')]


def test_a_folders_files_are_documents_in_path_order_hidden_ones_left_out(tmp_path):
    (tmp_path / 'b').mkdir()
    (tmp_path / 'b' / 'two.txt').write_text('Two.')
    (tmp_path / 'c.md').write_text('Three.')
    (tmp_path / '.DS_Store').write_bytes(b'\xff')
    (tmp_path / 'bad.txt').write_bytes(b'ok\xff')
    assert read(tmp_path, 'files') == [
        (str(tmp_path / 'b' / 'two.txt'), 'Two.'),
        f'{tmp_path / "bad.txt"}: not valid utf-8 at byte 2 (invalid start byte)',
        (str(tmp_path / 'c.md'), 'Three.')]


def test_clean_gives_unix_line_ends_and_no_outer_whitespace():
    assert text_data.clean(' \r\n a\r\nb\rc \n\t') == 'a\nb\nc'


@pytest.mark.parametrize('fraction, ok', [(0.0, True), (0.5, True), (1.0, False), (-0.1, False)])
def test_the_validation_fraction_is_from_0_to_below_1(fraction, ok):
    args = type('Args', (), {'val_fraction': fraction})
    if ok:
        text_data.check_output_flags(args)
    else:
        pytest.raises(UserError, text_data.check_output_flags, args)


def test_written_documents_each_end_with_endoftext(tmp_path):
    with DocumentWriter(str(tmp_path / 'out.txt')) as out:
        out.write('one')
        out.write('two\nlines')
    assert (tmp_path / 'out.txt').read_text() == f'one{ENDOFTEXT}two\nlines{ENDOFTEXT}'
    assert (out.count, out.chars) == (2, len('one') + len('two\nlines'))
    assert [p.name for p in tmp_path.iterdir()] == ['out.txt']


def test_a_writer_ended_by_an_error_leaves_the_old_file_and_no_partial(tmp_path):
    (tmp_path / 'out.txt').write_text('old')
    with pytest.raises(KeyboardInterrupt), DocumentWriter(str(tmp_path / 'out.txt')) as out:
        out.write('new')
        raise KeyboardInterrupt
    assert [(p.name, p.read_text()) for p in tmp_path.iterdir()] == [('out.txt', 'old')]
