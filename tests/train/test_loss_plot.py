import json

import numpy as np
import pytest
from PIL import Image

from fixtures import BLUE, ORANGE, pixels_of
from gpt2tune.errors import UserError
from gpt2tune.train.loss_plot import plot_run, read_metrics


def write_metrics(run, records):
    run.mkdir(exist_ok=True)
    (run / 'metrics.jsonl').write_text(''.join(json.dumps(r) + '\n' for r in records))


def test_a_step_trained_again_after_a_resume_counts_once_with_its_later_figure(tmp_path):
    write_metrics(tmp_path / 'run', [
        {'step': 1, 'loss': 5.0}, {'step': 2, 'loss': 4.0}, {'step': 2, 'val_loss': 4.5},
        {'step': 3, 'loss': 3.9},  # killed here; resumed from step 2
        {'step': 3, 'loss': 3.5}, {'step': 4, 'loss': 3.0}])
    metrics = read_metrics(str(tmp_path / 'run'))
    assert metrics['loss'] == ([1, 2, 3, 4], [5.0, 4.0, 3.5, 3.0])
    assert metrics['val_loss'] == ([2], [4.5])


def test_the_picture_is_a_png_with_both_curves(tmp_path):
    records = [{'step': s, 'loss': 6 - s / 20} for s in range(1, 101)]
    records += [{'step': s, 'val_loss': 6.2 - s / 25} for s in range(0, 101, 10)]
    write_metrics(tmp_path / 'run', records)
    path = plot_run(str(tmp_path / 'run'))
    assert path == str(tmp_path / 'run' / 'loss.png')
    with Image.open(path) as png:
        assert png.format == 'PNG'
        image = np.asarray(png.convert('RGB'))
    training, validation = pixels_of(image, BLUE), pixels_of(image, ORANGE)
    write_metrics(tmp_path / 'only', records[:100])
    with Image.open(plot_run(str(tmp_path / 'only'))) as png:
        assert pixels_of(np.asarray(png.convert('RGB')), ORANGE) == 0
    assert training > 1000 and validation > 500  # curves, not just their legend entries


def test_the_curves_drawn_are_the_losses_and_the_average_train_py_prints(tmp_path,
                                                                          monkeypatch):
    from matplotlib.axes import Axes
    drawn, plot = {}, Axes.plot

    def recording_plot(self, x, y, *args, label=None, **kwargs):
        drawn[label] = list(x), list(y)
        return plot(self, x, y, *args, label=label, **kwargs)
    monkeypatch.setattr(Axes, 'plot', recording_plot)
    write_metrics(tmp_path / 'run', [{'step': 1, 'loss': 5.0}, {'step': 2, 'loss': 3.0},
                                     {'step': 3, 'loss': 4.0}, {'step': 2, 'val_loss': 4.5}])
    plot_run(str(tmp_path / 'run'))
    # The 2019 train.py's avg=: decaying sums of the losses and of their weights (0.99).
    expected = [5.0, (5 * .99 + 3) / (.99 + 1), ((5 * .99 + 3) * .99 + 4) / ((.99 + 1) * .99 + 1)]
    steps, average = drawn['training loss, moving average']
    assert steps == [1, 2, 3] and average == pytest.approx(expected, abs=1e-12)
    assert drawn['training loss'] == ([1, 2, 3], [5.0, 3.0, 4.0])
    assert drawn['validation loss'] == ([2], [4.5])


@pytest.mark.parametrize('content, message', [
    (None, r'metrics.jsonl: no such file; is .* a training run folder'),
    ('{"step": 1, "loss": 2}\nnot json\n', r'metrics.jsonl: line 2 is not a metrics record'),
    ('{"loss": 2}\n', r'metrics.jsonl: line 1 is not a metrics record'),
])
def test_a_missing_or_damaged_record_is_one_clear_error(tmp_path, content, message):
    (tmp_path / 'run').mkdir()
    if content is not None:
        (tmp_path / 'run' / 'metrics.jsonl').write_text(content)
    with pytest.raises(UserError, match=message):
        plot_run(str(tmp_path / 'run'))
    assert not (tmp_path / 'run' / 'loss.png').exists()
