import json

import pytest

from gpt2tune.commands import prepare_jokes
from gpt2tune.errors import UserError

REDDIT = [{'title': 'Why did the chicken cross the road?', 'body': 'To get to the other side.',
           'score': 5, 'id': 'a1'},
          {'title': 'Low score', 'body': 'meh', 'score': 0, 'id': 'a2'},
          {'title': 'Why did the chicken cross the road?', 'body': 'To get to the other side.',
           'score': 7, 'id': 'a3'},
          {'title': 'Empty', 'body': '  ', 'score': 9, 'id': 'a4'}]
WOCKA = [{'title': 'Knock', 'body': 'Who is there?', 'category': 'Knock-Knock', 'id': 1}]
STUPIDSTUFF = [{'body': 'A short one.', 'category': 'Misc', 'id': 1, 'rating': 3.5},
               {'body': 'A bad one.', 'category': 'Misc', 'id': 2, 'rating': 1.0}]


def write(tmp_path, name, records):
    path = tmp_path / name
    path.write_text(json.dumps(records), encoding='utf-8')
    return str(path)


def prepare(tmp_path, *args):
    out = tmp_path / 'input-text.txt'
    prepare_jokes.main([*args, '-o', str(out), '--val_output', str(tmp_path / 'val.txt')])
    return out.read_text(encoding='utf-8')


def test_reddit_jokes_become_title_bar_body(tmp_path):
    text = prepare(tmp_path, write(tmp_path, 'reddit_jokes.json', REDDIT))
    assert text == ('Why did the chicken cross the road?|To get to the other side.<|endoftext|>'
                    'Low score|meh<|endoftext|>')


def test_min_score_duplicates_and_empty_bodies(tmp_path):
    path = write(tmp_path, 'reddit_jokes.json', REDDIT)
    assert prepare(tmp_path, path, '--min_score', '1').count('<|endoftext|>') == 1
    assert prepare(tmp_path, path, '--keep_duplicates').count('<|endoftext|>') == 3
    assert prepare(tmp_path, path, '--keep_empty').count('<|endoftext|>') == 3


def test_min_score_on_a_file_without_scores_is_refused(tmp_path):
    with pytest.raises(UserError, match='wocka.json: has no score or rating'):
        prepare(tmp_path, write(tmp_path, 'wocka.json', WOCKA), '--min_score', '1')


def test_wocka_title_bar_body_and_stupidstuff_body(tmp_path):
    text = prepare(tmp_path, write(tmp_path, 'wocka.json', WOCKA),
                   write(tmp_path, 'stupidstuff.json', STUPIDSTUFF))
    assert text == ('Knock|Who is there?<|endoftext|>A short one.<|endoftext|>'
                    'A bad one.<|endoftext|>')


def test_validation_split_is_deterministic_and_disjoint(tmp_path, jokes_json):
    first = prepare(tmp_path, jokes_json, '--val_fraction', '0.1', '--shuffle')
    val = (tmp_path / 'val.txt').read_text(encoding='utf-8')
    assert prepare(tmp_path, jokes_json, '--val_fraction', '0.1', '--shuffle') == first
    train_jokes = set(first.split('<|endoftext|>')) - {''}
    val_jokes = set(val.split('<|endoftext|>')) - {''}
    assert val_jokes and not train_jokes & val_jokes
    assert abs(len(val_jokes) / (len(val_jokes) + len(train_jokes)) - 0.1) < 0.02


@pytest.mark.parametrize('content, message', [
    ('{not json', 'bad.json: not valid JSON'),
    ('{"a": 1}', 'bad.json: expected a non-empty JSON list'),
    (json.dumps(REDDIT[:1] + [{'title': 't', 'score': 1, 'id': 'zz'}]),
     'bad.json: record 2 \\(id zz\\): field "body" is missing'),
    (json.dumps(REDDIT[:1] + [{'title': 't', 'body': 3, 'score': 1}]),
     'bad.json: record 2: field "body" is not a string'),
])
def test_malformed_file_or_record_is_named(tmp_path, content, message):
    (tmp_path / 'bad.json').write_text(content, encoding='utf-8')
    with pytest.raises(UserError, match=message):
        prepare(tmp_path, str(tmp_path / 'bad.json'))
    assert not (tmp_path / 'input-text.txt').exists()


def test_a_directory_is_one_clear_error(tmp_path):
    (tmp_path / 'jokes').mkdir()
    with pytest.raises(UserError, match='jokes: is a directory'):
        prepare(tmp_path, str(tmp_path / 'jokes'))


def test_real_stupidstuff(tmp_path, jokes_json):
    text = prepare(tmp_path, jokes_json)
    with open(jokes_json, encoding='utf-8') as f:
        bodies = {prepare_jokes.clean(j['body']) for j in json.load(f)} - {''}
    assert text.count('<|endoftext|>') == len(bodies)
    assert set(text.split('<|endoftext|>')[:-1]) == bodies
