"""A training run's loss against steps, for people who do not run TensorBoard: train.py
draws it at the end of every run, gpt2tune-plot (commands/plot_run.py) on demand. The
figures come from the run's metrics.jsonl: training loss (each step, and its moving
average) and validation loss.
"""

import json
import os

from gpt2tune import errors
from gpt2tune.train.progress import SMOOTHING
from gpt2tune.train.run_log import METRICS

PICTURE = 'loss.png'


def read_metrics(run_path):
    """{name: ([steps], [values])} from the run's metrics.jsonl; a step trained again
    after a resume counts once, with its later figure."""
    path = os.path.join(run_path, METRICS)
    by_step = {}
    try:
        with open(path, encoding='utf-8') as f:
            for number, line in enumerate(f, 1):
                try:
                    record = json.loads(line)
                    step = int(record.pop('step'))
                except (ValueError, KeyError, TypeError, AttributeError):
                    raise errors.UserError(f'{path}: line {number} is not a metrics record '
                                        '(JSON with a "step")') from None
                for name, value in record.items():
                    by_step.setdefault(name, {})[step] = value
    except FileNotFoundError:
        raise errors.UserError(f'{path}: no such file; is {run_path} a training run folder '
                            '(written by this train.py)?') from None
    return {name: (sorted(values), [values[s] for s in sorted(values)])
            for name, values in by_step.items()}


def moving_average(values):
    total = weight = 0.0
    averages = []
    for value in values:
        total, weight = total * SMOOTHING + value, weight * SMOOTHING + 1.0
        averages.append(total / weight)
    return averages


def draw(metrics, title, output):
    """Write the PNG `output` (whole or not at all)."""
    # matplotlib loads only here: half a second that a run's start does not pay.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if 'loss' not in metrics and 'val_loss' not in metrics:
        raise errors.UserError(f'{title}: no loss recorded yet')
    figure = Figure(figsize=(8, 4.5), dpi=100)
    axes = figure.add_subplot()
    if 'loss' in metrics:
        steps, losses = metrics['loss']
        axes.plot(steps, losses, color='tab:blue', alpha=0.25, linewidth=0.8,
                  label='training loss')
        axes.plot(steps, moving_average(losses), color='tab:blue', linewidth=1.6,
                  label='training loss, moving average')
    if 'val_loss' in metrics:
        steps, losses = metrics['val_loss']
        axes.plot(steps, losses, color='tab:orange', marker='o', markersize=3,
                  linewidth=1.6, label='validation loss')
    axes.set_xlabel('step')
    axes.set_ylabel('loss (nats per token)')
    axes.set_title(title)
    axes.grid(alpha=0.3)
    axes.legend()
    figure.tight_layout()
    partial = f'{output}.partial'
    FigureCanvasAgg(figure).print_png(partial)
    os.replace(partial, output)


def plot_run(run_path, output=None, metrics=None):
    """Draw `run_path`'s losses (its `metrics`, when already read) into `output` (default:
    loss.png in the run). Returns the path written."""
    output = output or os.path.join(run_path, PICTURE)
    if not os.path.isdir(os.path.dirname(os.path.abspath(output))):
        raise errors.UserError(f'{output}: its folder does not exist')
    draw(metrics or read_metrics(run_path), os.path.basename(os.path.normpath(run_path)),
         output)
    return output


def plot_finished_run(run_path):
    """loss.png in a run that ends, once there is a line to draw; a picture that cannot be
    drawn never fails the run."""
    try:
        metrics = read_metrics(run_path)
        steps, _ = metrics.get('loss', ([], []))
        if len(steps) >= 2:
            print('Plotted', plot_run(run_path, metrics=metrics))
    except (errors.UserError, OSError, ValueError) as e:
        print(f'warning: no loss picture ({e})')
