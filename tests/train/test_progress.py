import io
import re

from gpt2tune.train.progress import Progress


class Terminal(io.StringIO):
    def isatty(self):
        return True


def on_terminal(monkeypatch):
    """Standard output as a terminal whose screen is a string (set in the test itself:
    pytest puts its own capture back between a fixture and the test)."""
    screen = Terminal()
    monkeypatch.setattr('sys.stdout', screen)
    return screen


def test_off_a_terminal_each_step_is_a_line_with_the_epoch(capsys):
    progress = Progress(steps=4, step=0, dataset_tokens=1000)
    with progress.shown():
        progress.update(1, 3.0, 120.4, 250)
        print('Saving checkpoint/run1/model-1')
        progress.update(2, 1.0, 99.6, 500)
    lines = capsys.readouterr().out.splitlines()
    assert re.fullmatch(r'\[1 \| \d+\.\d\d\] loss=3\.00 avg=3\.00 tokens/s=120 epoch=0\.25',
                        lines[0])
    assert lines[1] == 'Saving checkpoint/run1/model-1'
    # avg is the decaying mean the 2019 script printed: (3 * 0.99 + 1) / (0.99 + 1)
    assert re.fullmatch(r'\[2 \| \d+\.\d\d\] loss=1\.00 avg=1\.99 tokens/s=100 epoch=0\.50',
                        lines[2])


def test_on_a_terminal_a_bar_counts_from_the_resumed_step(monkeypatch):
    terminal = on_terminal(monkeypatch)
    progress = Progress(steps=10, step=6, dataset_tokens=100)
    with progress.shown():
        progress.update(7, 2.5, 50, 70)
        print('Saving checkpoint/run1/model-7')
        progress.update(8, 2.0, 50, 80)
    screen = terminal.getvalue()
    assert '8/10' in screen and '<' in screen  # steps done and the time left
    assert 'loss=2.00' in screen and 'epoch=0.80' in screen
    assert '\rSaving checkpoint/run1/model-7\n' in screen  # the bar cleared, the line above it
    assert '[7 |' not in screen  # no per-step lines under the bar


def test_without_steps_the_epoch_still_shows(monkeypatch):
    terminal = on_terminal(monkeypatch)
    progress = Progress(steps=0, step=0, dataset_tokens=100)
    with progress.shown():
        progress.update(1, 2.5, 50, 150)
    assert 'epoch=1.50' in terminal.getvalue()
