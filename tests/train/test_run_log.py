"""train/run_log.py: what a run writes besides checkpoints, read back from tmp_path:
Summaries' metrics.jsonl (a JSON record per log, appended across a resume) and TensorBoard
events, NoSummaries' nothing, and Samples' one file per step."""

import glob
import json

import numpy as np
import pytest

from gpt2tune.train.run_log import NoSummaries, Samples, Summaries


@pytest.fixture
def summaries(tmp_path):
    s = Summaries(str(tmp_path))
    yield s
    s.close()


def records(folder):
    return [json.loads(line) for line in (folder / 'metrics.jsonl').read_text().splitlines()]


def test_each_log_is_a_json_record_of_its_step_and_figures(tmp_path, summaries):
    summaries.log(1, loss=np.float32(2.5), learning_rate=2e-5)  # NumPy's too
    summaries.log(2, loss=2)
    assert records(tmp_path) == [{'step': 1, 'loss': 2.5, 'learning_rate': 2e-5},
                                 {'step': 2, 'loss': 2.0}]


def test_a_resumed_run_adds_its_records_after_the_earlier_ones(tmp_path, summaries):
    summaries.log(1, loss=3.0)
    summaries.log(2, loss=2.0)
    summaries.close()
    resumed = Summaries(str(tmp_path))
    resumed.log(2, loss=1.5)
    resumed.close()
    assert [(r['step'], r['loss']) for r in records(tmp_path)] == [(1, 3.0), (2, 2.0), (2, 1.5)]


def test_tensorboard_has_each_figure_at_its_step_as_soon_as_logged(tmp_path, summaries):
    import tensorflow as tf
    summaries.log(10, loss=2.5, learning_rate=1e-3)
    summaries.log(20, loss=2.0)
    # Read before close, as of a run killed after its last log.
    [events] = glob.glob(str(tmp_path / 'events.out.tfevents.*'))
    got = {(e.step, v.tag): v.simple_value
           for e in tf.compat.v1.train.summary_iterator(events) for v in e.summary.value}
    assert got == {(10, 'loss'): 2.5, (10, 'learning_rate'): pytest.approx(1e-3),
                   (20, 'loss'): 2.0}


def test_closing_before_any_log_writes_nothing(tmp_path):
    Summaries(str(tmp_path)).close()
    assert list(tmp_path.iterdir()) == []


def test_the_other_workers_write_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    summaries = NoSummaries()
    summaries.log(1, loss=2.0)
    summaries.close()
    assert list(tmp_path.iterdir()) == []


def test_samples_of_a_step_are_one_file_a_text_per_line(tmp_path):
    Samples(str(tmp_path / 'samples' / 'run1')).write(250, ['A joke.', 'Another one.'])
    assert (tmp_path / 'samples' / 'run1' / 'samples-250').read_text() == (
        'A joke.\nAnother one.')


def test_each_step_has_its_file_and_a_step_written_again_is_replaced(tmp_path):
    samples = Samples(str(tmp_path))
    samples.write(1, ['first'])
    samples.write(2, ['second'])
    samples.write(1, ['redone'])
    assert {p.name: p.read_text() for p in tmp_path.iterdir()} == {
        'samples-1': 'redone', 'samples-2': 'second'}
