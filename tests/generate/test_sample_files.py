"""The sampling scripts' files (generate/sample_files.py): a bad prompts file named with
its line."""

import pytest

from gpt2tune.errors import UserError
from gpt2tune.generate import sample_files


@pytest.mark.parametrize('content, name, message', [
    ('', 'p.txt', 'p.txt: holds no prompts'),
    ('{"prompt": "a"}\n{"text": "b"}\n', 'p.jsonl', 'p.jsonl:2: expected an object'),
    ('{"prompt": "a"}\nnot json\n', 'p.jsonl', 'p.jsonl:2: not valid JSON'),
])
def test_bad_prompts_file_names_file_and_line(tmp_path, content, name, message):
    (tmp_path / name).write_text(content, encoding='utf-8')
    with pytest.raises(UserError, match=message):
        sample_files.read_prompts(str(tmp_path / name))
