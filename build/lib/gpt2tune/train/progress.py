"""What a training run shows while it trains: on a terminal, a progress bar with the time
left, loss, tokens/s and epoch; elsewhere (a log file, a pipe) the 2019 script's line per
step, which scripts grep, with the epoch added:

    [12 | 34.56] loss=3.21 avg=3.30 tokens/s=1520 epoch=0.05

    progress = Progress(steps=1000, step=0, dataset_tokens=5_400_000)
    with progress.shown():
        progress.update(step, loss, tokens_per_second, tokens_seen)
"""

import contextlib
import sys
import time

import tqdm

SMOOTHING = 0.99  # of the moving average printed as avg=, as the 2019 train.py did


class Progress:
    """`steps` is the step the run ends at (0: until stopped), `step` the one it starts
    from; the epoch is tokens trained on over the dataset's tokens."""

    def __init__(self, steps, step, dataset_tokens):
        self.steps, self.first_step, self.dataset_tokens = steps, step, dataset_tokens
        self.bar = None
        self.start = time.time()
        self.loss_sums = (0.0, 0.0)  # decaying sum of losses and of weights, for avg

    @contextlib.contextmanager
    def shown(self):
        """While the run trains: the bar at the bottom of the terminal, and whatever else
        the run prints (saves, samples, validation) above it."""
        if not sys.stdout.isatty():
            yield self
            return
        real_stdout = sys.stdout
        above = _AboveBar(real_stdout)
        self.bar = tqdm.tqdm(total=self.steps or None, initial=self.first_step,
                             unit='step', file=real_stdout, dynamic_ncols=True)
        try:
            with contextlib.redirect_stdout(above):
                yield self
        finally:
            above.close()
            self.bar.close()
            self.bar = None

    def update(self, step, loss, tokens_per_second, tokens_seen):
        total, weight = self.loss_sums
        self.loss_sums = total * SMOOTHING + loss, weight * SMOOTHING + 1.0
        average = self.loss_sums[0] / self.loss_sums[1]
        figures = (f'loss={loss:2.2f} avg={average:2.2f} tokens/s={tokens_per_second:.0f} '
                   f'epoch={tokens_seen / self.dataset_tokens:.2f}')
        if self.bar is None:
            print(f'[{step} | {time.time() - self.start:2.2f}] {figures}', flush=True)
        else:
            self.bar.set_postfix_str(figures, refresh=False)
            self.bar.update(step - self.bar.n)


class _AboveBar:
    """Standard output while the bar shows: whole lines, each written above the bar."""

    def __init__(self, stdout):
        self.stdout, self.pending = stdout, ''

    def write(self, text):
        self.pending += text
        if '\n' in self.pending:
            lines, self.pending = self.pending.rsplit('\n', 1)
            tqdm.tqdm.write(lines, file=self.stdout)
        return len(text)

    def flush(self):
        self.stdout.flush()

    def close(self):
        if self.pending:
            tqdm.tqdm.write(self.pending, file=self.stdout)
        self.pending = ''
