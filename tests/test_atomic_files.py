"""atomic_files.py: write_atomic replaces a file so that a reader finds the old text or
the new one, whole (never a half-written file, the old one intact if writing fails), and
both the file and its folder entry are synced to disk."""

import os
import stat

import pytest

from gpt2tune import atomic_files
from gpt2tune.atomic_files import write_atomic


def test_the_file_holds_exactly_the_text_written(tmp_path):
    path = tmp_path / 'samples-250'
    write_atomic(str(path), 'Why did the chicken…\n日本語 😀\n')
    assert path.read_bytes() == 'Why did the chicken…\n日本語 😀\n'.encode()


def test_a_shorter_text_replaces_a_longer_one_whole(tmp_path):
    path = tmp_path / 'counter'
    path.write_text('1000000\n')
    write_atomic(str(path), '25\n')
    assert path.read_text() == '25\n'


def test_nothing_but_the_file_is_left_in_its_folder(tmp_path):
    write_atomic(str(tmp_path / 'counter'), '250\n')
    assert os.listdir(tmp_path) == ['counter']


def test_a_bare_file_name_is_written_in_the_current_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_atomic('counter', '7\n')
    assert (tmp_path / 'counter').read_text() == '7\n'


def test_the_old_file_is_intact_and_nothing_left_when_writing_fails_midway(tmp_path):
    path = tmp_path / 'counter'
    path.write_text('250\n')
    with pytest.raises(UnicodeEncodeError):  # a lone surrogate: not encodable in UTF-8
        write_atomic(str(path), '500' + '\ud800')
    assert path.read_text() == '250\n'
    assert os.listdir(tmp_path) == ['counter']


def test_the_old_file_is_whole_until_the_new_one_is_on_disk(tmp_path, monkeypatch):
    """At each fsync, what a reader of `path` would find: the old text at the file's sync,
    the new one at the folder's, after the new file took the name."""
    path = tmp_path / 'counter'
    path.write_text('250\n')
    seen, fsync = [], os.fsync

    def watching(fd):
        kind = 'folder' if stat.S_ISDIR(os.fstat(fd).st_mode) else 'file'
        seen.append((kind, path.read_text()))
        fsync(fd)
    monkeypatch.setattr(atomic_files.os, 'fsync', watching)
    write_atomic(str(path), '500\n')
    assert seen == [('file', '250\n'), ('folder', '500\n')]
