"""Draw a training run's loss against steps, for people who do not run TensorBoard.

    gpt2tune-plot checkpoint/run1              # writes checkpoint/run1/loss.png
    gpt2tune-plot checkpoint/run1 -o run1.png

The figures come from the run's metrics.jsonl: training loss (each step, and its moving
average) and validation loss (train/loss_plot.py draws them).
"""


from gpt2tune import cli
from gpt2tune.train.loss_plot import PICTURE, plot_run


def main(argv=None):
    p = cli.FlagParser(description=__doc__.split('\n')[0])
    p.add_argument('run', help='A run folder: checkpoint/run1')
    p.add_argument('-o', '--output', help=f'PNG to write (default: {PICTURE} in the run)')
    args = p.parse_args(argv)
    print(plot_run(args.run, args.output))


if __name__ == '__main__':
    cli.run(main)
