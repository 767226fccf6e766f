"""gpt2tune-plot (commands/plot_run.py): where the picture goes and what it prints (the
picture itself: tests/train/test_loss_plot.py)."""

import json

from gpt2tune.commands import plot_run

PNG = b'\x89PNG\r\n\x1a\n'


def a_run(path):
    path.mkdir()
    (path / 'metrics.jsonl').write_text(''.join(
        json.dumps({'step': s, 'loss': 5 - s / 10}) + '\n' for s in range(1, 6)))
    return path


def test_the_picture_goes_into_the_run_and_its_path_is_printed(tmp_path, capsys):
    run = a_run(tmp_path / 'run1')
    plot_run.main([str(run)])
    assert capsys.readouterr().out == f'{run / "loss.png"}\n'
    assert (run / 'loss.png').read_bytes().startswith(PNG)


def test_output_puts_the_picture_elsewhere(tmp_path, capsys):
    run = a_run(tmp_path / 'run1')
    plot_run.main([str(run), '-o', str(tmp_path / 'elsewhere.png')])
    assert capsys.readouterr().out == f'{tmp_path / "elsewhere.png"}\n'
    assert (tmp_path / 'elsewhere.png').read_bytes().startswith(PNG)
    assert not (run / 'loss.png').exists()
