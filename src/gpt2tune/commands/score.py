"""Mean loss per token and perplexity of a text file or .npz under a model.

    gpt2tune-score input-text.txt.npz --model_name 117M
    gpt2tune-score valid.txt --models_dir checkpoint --model_name run1

The tokens are cut into windows of n_ctx tokens overlapping by one, so every token but the
first is predicted exactly once, from up to n_ctx - 1 tokens before it. float32 and
bfloat16 score through the training graph; int8 (which only decodes) through the
decoder, a window at a time: what int8 costs in quality, on your own text.
"""

import contextlib
import math
import sys

import numpy as np

from gpt2tune import cli, errors, flags
from gpt2tune.data.load_dataset import load_dataset
from gpt2tune.generate import kernels


def windows(tokens, n_ctx):
    """Windows of at most n_ctx tokens, each starting at the previous one's last token."""
    step = n_ctx - 1
    return [tokens[i:i + n_ctx] for i in range(0, max(len(tokens) - 1, 1), step)]


def score_tokens(window_losses, tokens, n_ctx, batch_size):
    """Sum of losses and number of predicted tokens over all windows; window_losses(
    windows [b, n]) gives each position's loss predicting the next [b, n - 1]."""
    total, count = 0.0, 0
    parts = windows(tokens, n_ctx)
    full = [w for w in parts if len(w) == n_ctx]
    batches = [np.stack(full[i:i + batch_size]) for i in range(0, len(full), batch_size)]
    for batch in batches + [w[None] for w in parts if 1 < len(w) < n_ctx]:
        losses = window_losses(batch)
        total += float(losses.astype(np.float64).sum())
        count += losses.size
    return total, count


def graph_losses(sess, hparams, precision):
    """window_losses of the training graph in `precision`, float32 or bfloat16."""
    import tensorflow as tf

    from gpt2tune.model import model
    X = tf.compat.v1.placeholder(tf.int32, [None, None])
    losses = model.token_losses(model.model(hparams, X, dtype=tf.as_dtype(precision))[
        'logits'], X)
    return lambda batch: sess.run(losses, {X: batch})


def decoder_losses(forward):
    """window_losses of the decoder (numpy_model.Forward), a window at a time."""
    from gpt2tune.generate import numpy_model
    return lambda batch: np.stack([numpy_model.prompt_losses(forward, w) for w in batch])


def score(path, model_name, models_dir, checkpoint, batch_size, combine, encoding,
          precision, verbose):
    """Print the mean loss per token (nats) and perplexity of `path` (text or .npz)."""
    precision, _ = kernels.choose_precision(precision)
    tf = cli.start_tensorflow(verbose)  # --help needs none of what follows
    from gpt2tune.model import model_dir

    loaded = model_dir.load(model_name, models_dir, checkpoint)
    hparams = loaded.hparams
    chunks = load_dataset(loaded.encoder, errors.user_path(path), combine, encoding=encoding)
    # int8 decodes in NumPy: no session
    with (contextlib.nullcontext() if precision == 'int8' else
          tf.compat.v1.Session(graph=tf.Graph())) as sess:
        if precision == 'int8':
            from gpt2tune.generate import numpy_model
            window_losses = decoder_losses(numpy_model.Forward(
                model_dir.load_arrays(loaded.checkpoint, hparams), hparams, precision))
        else:
            window_losses = graph_losses(sess, hparams, precision)
            model_dir.restore(sess, loaded.checkpoint)
        total, count = 0.0, 0
        for tokens in chunks:
            chunk_total, chunk_count = score_tokens(window_losses, tokens.astype(np.int32),
                                                    hparams.n_ctx, batch_size)
            total, count = total + chunk_total, count + chunk_count
    if count == 0:
        raise errors.UserError(f'{path}: fewer than two tokens, nothing to score')
    loss = total / count
    print(f'tokens={count} loss={loss:.6f} perplexity={math.exp(loss):.4f}')


def main(argv=None):
    parser = cli.FlagParser(prog='gpt2tune-score', description=__doc__.split('\n')[0])
    parser.add_argument('path', help='a text file, or a .npz of tokens from encode.py')
    flags.add(parser, 'model_name', 'models_dir', 'checkpoint')
    parser.add_argument('--batch_size', type=int, default=1,
                        help='windows of n_ctx tokens scored at once (speed and memory '
                             'only; int8 scores a window at a time, a whole window being '
                             'one product already)')
    flags.add(parser, 'combine', 'encoding', 'precision', 'verbose')
    args = parser.parse_args(argv)
    if args.batch_size < 1:
        raise errors.UserError(f'--batch_size {args.batch_size}: must be at least 1')
    score(**vars(args))


if __name__ == '__main__':
    cli.run(main, sys.argv[1:])
