"""One training run's settings, declared once: each field of TrainConfig carries its default
and help, train.py's flags are built from the fields, and each checkpoint stores the
whole config (a resumed run warns of every setting that changed). No TensorFlow here, so
`train.py --help` and `--print_config` answer at once.

    c = TrainConfig(dataset='input-text.txt.npz', steps=1000, lr_schedule='cosine')
    check_config(c)
    parse_args(['--dataset', 'input-text.txt.npz', '--steps', '1000'])
"""

import argparse
import dataclasses
import types

from cli import UserError

OPTIMIZERS = ('adam', 'adafactor', 'sgd')
LR_SCHEDULES = ('constant', 'cosine', 'linear')
PRECISIONS = ('auto', 'float32', 'bfloat16')
MEMORY_CHECKS = ('refuse', 'warn')


def setting(default, help, *, metavar=None, choices=None):
    return dataclasses.field(default=default,
                             metadata={'help': help, 'metavar': metavar, 'choices': choices})


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    dataset: str = dataclasses.field(metadata={
        'help': 'Input file, directory, or glob pattern (utf-8 text, or preencoded .npz '
                'files).', 'metavar': 'PATH'})
    model_name: str = setting('117M', 'Pretrained model name', metavar='MODEL')
    models_dir: str = setting('models', 'Directory holding the model directories',
                              metavar='DIR')
    combine: int = setting(50000, 'Concatenate input files with <|endoftext|> separator into '
                           'chunks of this minimum size', metavar='CHARS')
    encoding: str = setting('utf-8', 'Set the encoding for reading and writing files.')
    endoftext_as_text: bool = setting(False, 'Encode the text <|endoftext|> as five ordinary '
                                      'tokens, as the 2019 code did')
    batch_size: int = setting(1, 'Batch size, per worker when training on several '
                              '(TF_CONFIG)', metavar='SIZE')
    learning_rate: float = setting(0.00002, 'Learning rate for Adam', metavar='LR')
    accumulate_gradients: int = setting(1, 'Accumulate gradients across N minibatches.',
                                        metavar='N')
    memory_saving_gradients: bool | None = setting(
        None, 'Recompute each block in the backward pass to save memory (default: chosen '
        'from the model size and the machine\'s memory)')
    only_train_transformer_layers: bool = setting(False, 'Restrict training to the '
                                                  'transformer blocks.')
    optimizer: str = setting('adam', 'Optimizer. adafactor keeps almost no state (for '
                             '1558M).', choices=OPTIMIZERS)
    noise: float = setting(0.0, 'Add noise to input training data to regularize against '
                           'typos.')
    top_k: int = setting(40, 'K for top-k sampling.')
    top_p: float = setting(0.0, 'P for top-p sampling of the training samples. Overrides '
                           'top_k if set > 0.')
    restore_from: str = setting('latest', 'Either "latest", "fresh", or a path to a '
                                'checkpoint file')
    run_name: str = setting('run1', 'Run id. Name of subdirectory in checkpoint/ and '
                            'samples/')
    sample_every: int = setting(100, 'Generate samples every N steps', metavar='N')
    sample_length: int | None = setting(None, 'Sample this many tokens (default: n_ctx - 1, '
                                        '1023 for released models)', metavar='TOKENS')
    sample_num: int = setting(1, 'Generate this many samples', metavar='N')
    save_every: int = setting(1000, 'Write a checkpoint every N steps', metavar='N')
    val_dataset: str | None = setting(None, 'Dataset for validation loss, defaults to '
                                      '--dataset.', metavar='PATH')
    val_batch_size: int = setting(2, 'Batch size for validation.', metavar='SIZE')
    val_batch_count: int = setting(40, 'Number of batches for validation.', metavar='N')
    val_every: int = setting(0, 'Calculate validation loss every STEPS steps.',
                             metavar='STEPS')
    steps: int = setting(0, 'Stop and save once the run has trained N steps in all (0: '
                         'until Ctrl-C)', metavar='N')
    lr_schedule: str = setting('constant', 'Learning-rate schedule after warm-up; cosine and '
                               'linear decay to --min_lr at --steps', choices=LR_SCHEDULES)
    warmup_steps: int = setting(0, 'Raise the learning rate linearly over the first N steps',
                                metavar='N')
    min_lr: float = setting(0.0, 'Learning rate at the end of a cosine or linear schedule',
                            metavar='LR')
    grad_clip: float = setting(0.0, 'Clip gradients to this global norm (0: off; 1.0 is a '
                               'common choice)', metavar='NORM')
    weight_decay: float = setting(0.0, 'Decoupled (AdamW) weight decay on weight matrices and '
                                  'embeddings, not on biases and norms')
    seed: int | None = setting(None, 'Seed for reproducible runs')
    pack: bool = setting(False, 'Fill each training window with whole documents (split on '
                         '<|endoftext|>) instead of random windows that may start '
                         'mid-document')
    precision: str = setting('auto', 'Precision of the matrix products; weights, optimizer and '
                             'the rest stay float32. auto: bfloat16 where the CPU or GPU has '
                             'bfloat16 units', choices=PRECISIONS)
    memory_check: str = setting('refuse', 'When a CPU run looks too large for this machine\'s '
                                'memory (or its container\'s limit): refuse it before loading '
                                'anything, or only warn', choices=MEMORY_CHECKS)
    collective_timeout: float = setting(300.0, 'With several workers (TF_CONFIG): how long a '
                                        'step waits for the others before stopping with an '
                                        'error', metavar='SECONDS')
    checkpoint_dir: str = setting('checkpoint', 'Where run folders of checkpoints go')
    sample_dir: str = setting('samples', 'Where run folders of samples go')


def _value_type(annotation):
    """int for `int` and `int | None`, and so on."""
    if isinstance(annotation, types.UnionType):
        return next(t for t in annotation.__args__ if t is not type(None))
    return annotation


def build_parser():
    """train.py's command line: one flag per TrainConfig field, plus --print_config."""
    p = argparse.ArgumentParser(description='Fine-tune GPT-2 on your custom dataset.',
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    for field in dataclasses.fields(TrainConfig):
        meta = field.metadata
        kind = _value_type(field.type)
        if kind is bool:
            # A setting whose default is None (chosen for you) can be forced either way.
            action = (argparse.BooleanOptionalAction if field.default is None
                      else 'store_true')
            p.add_argument(f'--{field.name}', action=action, default=field.default,
                           help=meta['help'])
            continue
        required = field.default is dataclasses.MISSING
        p.add_argument(f'--{field.name}', type=kind, metavar=meta.get('metavar'),
                       choices=meta.get('choices'), required=required,
                       default=None if required else field.default, help=meta['help'])
    p.add_argument('--print_config', action='store_true',
                   help='Print the settings this command line resolves to (JSON) and exit')
    return p


def parse_args(argv=None):
    """(TrainConfig, print_config) from the command line."""
    args = vars(build_parser().parse_args(argv))
    print_config = args.pop('print_config')
    return TrainConfig(**args), print_config


def check_config(c):
    """Bad flag values and combinations, before anything is loaded."""
    positive = ['batch_size', 'accumulate_gradients', 'sample_every', 'sample_num',
                'save_every', 'val_batch_size', 'val_batch_count']
    for name in positive:
        if getattr(c, name) < 1:
            raise UserError(f'--{name} {getattr(c, name)}: must be at least 1')
    for name in ('steps', 'val_every', 'warmup_steps', 'combine'):
        if getattr(c, name) < 0:
            raise UserError(f'--{name} {getattr(c, name)}: must be 0 or more')
    for field in dataclasses.fields(TrainConfig):
        choices = field.metadata.get('choices')
        if choices and getattr(c, field.name) not in choices:
            raise UserError(f'--{field.name} {getattr(c, field.name)}: choose '
                            f'{", ".join(choices[:-1])} or {choices[-1]}')
    if c.lr_schedule != 'constant' and c.steps <= c.warmup_steps:
        raise UserError(f'--lr_schedule {c.lr_schedule} decays towards --steps, which must '
                        f'be above --warmup_steps ({c.warmup_steps})')
    if not 0 <= c.noise < 1:
        raise UserError(f'--noise {c.noise}: must be at least 0 and below 1')
    if c.learning_rate <= 0 or c.grad_clip < 0 or c.weight_decay < 0 or c.min_lr < 0:
        raise UserError('--learning_rate must be above 0; --grad_clip, --weight_decay and '
                        '--min_lr 0 or more')
    if c.weight_decay and c.optimizer == 'sgd':
        raise UserError('--weight_decay is decoupled (AdamW) and needs --optimizer adam or '
                        'adafactor')
