"""Mean loss per token and perplexity of a text file or .npz under a model.

    gpt2tune-score input-text.txt.npz --model_name 117M
    gpt2tune-score valid.txt --models_dir checkpoint --model_name run1

The tokens are cut into windows of n_ctx tokens overlapping by one, so every token but the
first is predicted exactly once, from up to n_ctx - 1 tokens before it.
"""

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


def score_tokens(sess, X, losses, tokens, n_ctx, batch_size):
    """Sum of losses and number of predicted tokens over all windows."""
    total, count = 0.0, 0
    parts = windows(tokens, n_ctx)
    full = [w for w in parts if len(w) == n_ctx]
    for i in range(0, len(full), batch_size):
        batch_losses = sess.run(losses, {X: np.stack(full[i:i + batch_size])})
        total += float(batch_losses.astype(np.float64).sum())
        count += batch_losses.size
    for w in parts:
        if 1 < len(w) < n_ctx:
            total += float(sess.run(losses, {X: w[None]}).astype(np.float64).sum())
            count += len(w) - 1
    return total, count


def score(path, model_name, models_dir, checkpoint, batch_size, combine, encoding,
          precision, verbose):
    """Print the mean loss per token (nats) and perplexity of `path` (text or .npz)."""
    precision, _ = kernels.choose_precision(precision)
    tf = cli.start_tensorflow(verbose)  # --help needs none of what follows
    from gpt2tune.model import model, model_dir

    tf1 = tf.compat.v1
    loaded = model_dir.load(model_name, models_dir, checkpoint)
    hparams = loaded.hparams
    chunks = load_dataset(loaded.encoder, errors.user_path(path), combine, encoding=encoding)
    with tf1.Session(graph=tf.Graph()) as sess:
        X = tf1.placeholder(tf.int32, [None, None])
        logits = model.model(hparams, X, dtype=tf.as_dtype(precision))['logits']
        losses = model.token_losses(logits, X)
        model_dir.restore(sess, loaded.checkpoint)
        total, count = 0.0, 0
        for tokens in chunks:
            chunk_total, chunk_count = score_tokens(sess, X, losses, tokens.astype(np.int32),
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
                        help='windows of n_ctx tokens scored at once (speed and memory only)')
    flags.add(parser, 'combine', 'encoding', 'precision', 'verbose')
    args = parser.parse_args(argv)
    if args.batch_size < 1:
        raise errors.UserError(f'--batch_size {args.batch_size}: must be at least 1')
    score(**vars(args))


if __name__ == '__main__':
    cli.run(main, sys.argv[1:])
