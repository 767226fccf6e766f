"""Files of the sampling scripts: prompts in (one per line, `-` for stdin, or JSONL with a
`prompt` field) and samples out (plain text with the scripts' separators, or JSONL with
prompt, sample and token count). An output file appears under its name only complete.

    prompts = read_prompts('prompts.jsonl')          # [(where, text)], where = 'file:line'
    with SampleWriter('jokes.jsonl') as out:
        out.write(index, prompt, text, n_tokens)
"""

import json
import os
import sys

from gpt2tune.errors import UserError

SEPARATOR = '=' * 40 + ' SAMPLE {} ' + '=' * 40
END_OF_PROMPT = '=' * 80


def read_prompts(path):
    """[(where, prompt)] from a file; `where` names file and line for messages."""
    name = '<stdin>' if path == '-' else path
    try:
        if path == '-':
            lines = sys.stdin.read().splitlines()
        else:
            with open(path, encoding='utf-8') as f:
                lines = f.read().splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f'--prompts {path}: cannot be read ({e})') from None
    jsonl = path.endswith('.jsonl')
    prompts = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        where = f'{name}:{number}'
        if not jsonl:
            prompts.append((where, line))
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            raise UserError(f'{where}: not valid JSON ({e.msg})') from None
        if not isinstance(record, dict) or not isinstance(record.get('prompt'), str):
            raise UserError(f'{where}: expected an object with a "prompt" string')
        prompts.append((where, record['prompt']))
    if not prompts:
        raise UserError(f'--prompts {name}: holds no prompts')
    return prompts


def check_output(path):
    """Refuse an output path that cannot be written, before any slow work."""
    directory = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise UserError(f'--output {path}: is a directory')
    if not os.path.isdir(directory):
        raise UserError(f'--output {path}: no such directory {directory}')
    if not os.access(directory, os.W_OK):
        raise UserError(f'--output {path}: directory {directory} is not writable')


class SampleWriter:
    """Samples to a file (.jsonl: one record each; else the scripts' text format) or to
    stdout (path None). The file is written aside and renamed when closed; an error
    removes it, Ctrl-C keeps the samples completed so far."""

    def __init__(self, path=None):
        self.path, self.jsonl = path, bool(path and path.endswith('.jsonl'))
        self.count, self.index = 0, None
        self.out = open(f'{path}.partial', 'w', encoding='utf-8') if path else sys.stdout

    def write(self, index, prompt, text, n_tokens):
        """A sample of the index-th prompt; the text format groups each prompt's samples."""
        if self.jsonl:
            record = {'prompt': prompt, 'sample': text, 'tokens': n_tokens}
            self.out.write(json.dumps(record, ensure_ascii=False) + '\n')
            return
        if self.index is not None and index != self.index:
            self.end_prompt()
        self.index = index
        self.count += 1
        print(SEPARATOR.format(self.count), file=self.out)
        print(text, file=self.out, flush=True)

    def end_prompt(self):
        if not self.jsonl and self.count:
            print(END_OF_PROMPT, file=self.out, flush=True)
        self.count, self.index = 0, None

    def __enter__(self):
        return self

    def __exit__(self, kind, error, traceback):
        self.end_prompt()
        if self.out is sys.stdout:
            return
        self.out.close()
        if kind is None or issubclass(kind, KeyboardInterrupt):
            os.replace(f'{self.path}.partial', self.path)
            print(f'wrote {self.path}', file=sys.stderr)
        else:
            os.remove(f'{self.path}.partial')
