"""One training run's settings, declared once: each field of TrainConfig carries its default
and help, train.py's flags are built from the fields, and each checkpoint stores the
whole config (a resumed run warns of every setting that changed). No TensorFlow here, so
`train.py --help` and `--print_config` answer at once. The settings of the run's samples
(--top_k, --top_p, --sample_length) are sampling options declared in sample.py.

    c = TrainConfig(dataset='input-text.txt.npz', steps=1000, lr_schedule='cosine')
    check_config(c)
    sample_options(c, hparams)   # SamplingOptions(length=1023, top_k=40, ...), checked
    parse_args(['--dataset', 'input-text.txt.npz', '--steps', '1000'])
"""

import argparse
import dataclasses
import re

from gpt2tune import cli, flags
from gpt2tune.errors import UserError
from gpt2tune.generate import sample
from gpt2tune.model import lora
from gpt2tune.train import optimizers

PRECISIONS = ('auto', 'float32', 'bfloat16', 'float16')
MEMORY_CHECKS = ('refuse', 'warn')


def setting(default, help, *, metavar=None, choices=None):
    return dataclasses.field(default=default,
                             metadata={'help': help, 'metavar': metavar, 'choices': choices})


def sample_setting(option, default, note='', *, metavar=None):
    """A setting of the run's samples under nshepperd's flag name: the sampling option
    `option` (sample.SamplingOptions), its help from there (and `note`), its limits
    checked there (sample_options)."""
    return dataclasses.field(default=default, metadata={
        'help': sample.OPTIONS[option].metadata['help'] + note, 'metavar': metavar,
        'choices': None, 'option': option})


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    dataset: str = dataclasses.field(metadata={
        'help': 'Input file, directory, or glob pattern (utf-8 text, or preencoded .npz '
                'files).', 'metavar': 'PATH'})
    model_name: str = flags.field('model_name')
    models_dir: str = flags.field('models_dir')
    combine: int = flags.field('combine')
    encoding: str = flags.field('encoding')
    endoftext_as_text: bool = setting(False, 'Encode the text <|endoftext|> as five ordinary '
                                      'tokens, as the 2019 code did (to reproduce old runs)')
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
    layers_to_train: int = setting(0, 'Train only the last N transformer blocks (and '
                                   '--also_train); the rest stay as loaded and need no '
                                   'optimizer state (0: train everything)', metavar='N')
    also_train: str = setting('', 'With --layers_to_train, --only_train_transformer_layers '
                              'or --lora_rank: more weights to train, by name under model/, '
                              'comma-separated (ln_f,wte,h0/attn)', metavar='NAMES')
    lora_rank: int = setting(0, 'Train low-rank adapters (LoRA) of this rank in every block '
                             'instead of the weights, which stay frozen and need no optimizer '
                             'state (0: off; 8 is a common choice)', metavar='R')
    lora_alpha: float | None = setting(None, 'LoRA adapters are scaled by alpha / rank '
                                       '(default: 2 x --lora_rank)', metavar='ALPHA')
    lora_targets: str = setting(','.join(lora.MATRICES[:2]), 'With --lora_rank: the matrices '
                                'of each block that get adapters, comma-separated, from '
                                f'{", ".join(lora.MATRICES)} (attn or mlp: both of one)',
                                metavar='NAMES')
    optimizer: str = setting('adam', 'Optimizer. adafactor keeps almost no state (for '
                             '1558M).', choices=tuple(optimizers.OPTIMIZERS))
    noise: float = setting(0.0, 'Add noise to input training data to regularize against '
                           'typos.')
    top_k: int = sample_setting('top_k', 40)
    top_p: float = sample_setting('top_p', 0.0, '; above 0 it replaces --top_k')
    restore_from: str = setting('latest', 'Either "latest", "fresh", or a path to a '
                                'checkpoint file')
    run_name: str = setting('run1', 'Run id. Name of subdirectory in checkpoint/ and '
                            'samples/')
    sample_every: int = setting(100, 'Generate samples every N steps', metavar='N')
    sample_length: int | None = sample_setting(
        'length', None, '; here None is n_ctx - 1 (1023 for released models)', metavar='TOKENS')
    sample_num: int = setting(1, 'Generate this many samples', metavar='N')
    save_every: int = setting(1000, 'Write a checkpoint every N steps', metavar='N')
    max_checkpoints: int = setting(5, 'Keep the N newest checkpoints (0: keep all)',
                                   metavar='N')
    keep_checkpoint_every_hours: float = setting(2.0, 'Also keep one checkpoint in every '
                                                 'this many hours of training (0: none)',
                                                 metavar='HOURS')
    val_dataset: str | None = setting(None, 'Dataset for validation loss, defaults to '
                                      '--dataset.', metavar='PATH')
    val_batch_size: int = setting(2, 'Batch size for validation.', metavar='SIZE')
    val_batch_count: int = setting(40, 'Number of batches for validation.', metavar='N')
    val_every: int = setting(0, 'Calculate validation loss every STEPS steps.',
                             metavar='STEPS')
    early_stopping: int = setting(0, 'Stop once validation loss has not improved for N '
                                  'evaluations in a row (needs --val_every; 0: never)',
                                  metavar='N')
    steps: int = setting(0, 'Stop and save once the run has trained N steps in all (0: '
                         'until Ctrl-C)', metavar='N')
    lr_schedule: str = setting('constant', 'Learning-rate schedule after warm-up; cosine and '
                               'linear decay to --min_lr at --steps',
                               choices=tuple(optimizers.LR_SCHEDULES))
    warmup_steps: int = setting(0, 'Raise the learning rate linearly over the first N steps',
                                metavar='N')
    min_lr: float = setting(0.0, 'Learning rate at the end of a cosine or linear schedule',
                            metavar='LR')
    grad_clip: float = setting(0.0, 'Clip gradients to this global norm (0: off; 1.0 is a '
                               'common choice)', metavar='NORM')
    weight_decay: float = setting(0.0, 'Decoupled (AdamW) weight decay on weight matrices and '
                                  'embeddings, not on biases and norms')
    seed: int | None = flags.field('seed')
    pack: bool = setting(False, 'Fill each training window with whole documents (split on '
                         '<|endoftext|>) instead of random windows that may start '
                         'mid-document')
    precision: str = setting('auto', 'Precision of the matrix products; weights, optimizer and '
                             'the rest stay float32. auto: bfloat16 where the CPU or GPU has '
                             'bfloat16 units, float16 with dynamic loss scaling on GPUs of '
                             'compute capability 7.x (T4, V100, RTX 20xx)', choices=PRECISIONS)
    memory_check: str = setting('refuse', 'When a CPU run looks too large for this machine\'s '
                                'memory (or its container\'s limit): refuse it before loading '
                                'anything, or only warn', choices=MEMORY_CHECKS)
    collective_timeout: float = setting(300.0, 'With several workers (TF_CONFIG): how long a '
                                        'step waits for the others before stopping with an '
                                        'error (start-up is waited for however long)',
                                        metavar='SECONDS')
    checkpoint_dir: str = setting('checkpoint', 'Where run folders of checkpoints go')
    sample_dir: str = setting('samples', 'Where run folders of samples go')


# Flags of the command, not settings of the run: not stored with checkpoints.
COMMAND_FLAGS = {
    'print_config': 'Print the settings this command line resolves to (JSON) and exit',
    'verbose': flags.FLAGS['verbose'].help,
}


def is_trained(c, name, n_layer):
    """Whether the run trains the weight `name` (model/h3/attn/c_attn/w, with or without
    TensorFlow's :0)."""
    name = name.removeprefix('model/').split(':')[0]
    block = re.match(r'h(\d+)/', name)
    if any(_names(name, named) for named in also_train(c)):
        return True
    if c.lora_rank:
        return lora.is_adapter(name)
    if c.only_train_transformer_layers:
        return block is not None
    if c.layers_to_train:
        return block is not None and int(block.group(1)) >= n_layer - c.layers_to_train
    return True


def check_trained(c, n_layer, weight_names):
    """--layers_to_train and --also_train against the model's blocks and weights."""
    if c.layers_to_train > n_layer:
        raise UserError(f'--layers_to_train {c.layers_to_train}: the model has {n_layer} '
                        'blocks')
    for name in also_train(c):
        if not any(_names(weight.removeprefix('model/'), name) for weight in weight_names):
            raise UserError(f'--also_train {name}: the model has no weight model/{name} '
                            '(names look like ln_f, wte, wpe, h0/attn, h0/mlp/c_fc/w)')


def also_train(c):
    return [n.strip().strip('/') for n in c.also_train.split(',') if n.strip()]


def _names(weight, name):
    """Whether `name` (h0/attn) names `weight` (h0/attn/c_attn/w) or a scope above it."""
    return weight == name or weight.startswith(name + '/')


def sample_options(c, hparams):
    """The run's samples' SamplingOptions, checked, from the settings that name an option
    (errors name their flags). As in nshepperd's train.py, --top_p above 0 replaces
    --top_k, and the length is n_ctx - 1 unless set."""
    settings = [f for f in dataclasses.fields(TrainConfig) if 'option' in f.metadata]
    values = {f.metadata['option']: getattr(c, f.name) for f in settings}
    if values['top_p'] > 0:
        values['top_k'] = 0
    if values['length'] is None:
        values['length'] = hparams.n_ctx - 1
    flags = {f.metadata['option']: f'--{f.name}' for f in settings}
    return sample.SamplingOptions(**values).checked(hparams, flags)


def add_flag(p, field):
    """The flag of one TrainConfig field, with its default, help, metavar and choices."""
    meta = field.metadata
    kind = sample.value_type(field.type)
    if kind is bool:
        # A setting whose default is None (chosen for you) can be forced either way.
        action = argparse.BooleanOptionalAction if field.default is None else 'store_true'
        p.add_argument(f'--{field.name}', action=action, default=field.default,
                       help=meta['help'])
        return
    required = field.default is dataclasses.MISSING
    p.add_argument(f'--{field.name}', type=kind, metavar=meta.get('metavar'),
                   choices=meta.get('choices'), required=required,
                   default=None if required else field.default, help=meta['help'])


def add_settings(p, names):
    """The flags of these settings, for another command that takes them too (encode.py)."""
    fields = {field.name: field for field in dataclasses.fields(TrainConfig)}
    for name in names:
        add_flag(p, fields[name])


def build_parser():
    """train.py's command line: one flag per TrainConfig field, plus COMMAND_FLAGS."""
    p = cli.FlagParser(description='Fine-tune GPT-2 on your custom dataset.',
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    for field in dataclasses.fields(TrainConfig):
        add_flag(p, field)
    for name, help in COMMAND_FLAGS.items():
        p.add_argument(f'--{name}', action='store_true', help=help)
    return p


def parse_args(argv=None):
    """(TrainConfig, the command's own flags) from the command line."""
    args = vars(build_parser().parse_args(argv))
    command = argparse.Namespace(**{name: args.pop(name) for name in COMMAND_FLAGS})
    return TrainConfig(**args), command


def check_config(c):
    """Bad flag values and combinations, before anything is loaded."""
    positive = ['batch_size', 'accumulate_gradients', 'sample_every', 'sample_num',
                'save_every', 'val_batch_size', 'val_batch_count']
    for name in positive:
        if getattr(c, name) < 1:
            raise UserError(f'--{name} {getattr(c, name)}: must be at least 1')
    for name in ('steps', 'val_every', 'warmup_steps', 'combine', 'layers_to_train',
                 'max_checkpoints', 'keep_checkpoint_every_hours', 'early_stopping'):
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
    if c.early_stopping and not c.val_every:
        raise UserError(f'--early_stopping {c.early_stopping} watches the validation loss: '
                        'set --val_every too')
    if c.layers_to_train and c.only_train_transformer_layers:
        raise UserError('--layers_to_train and --only_train_transformer_layers: choose one')
    if c.also_train and not (c.layers_to_train or c.only_train_transformer_layers
                             or c.lora_rank):
        raise UserError('--also_train adds to --layers_to_train, --only_train_transformer_layers '
                        'or --lora_rank, and everything trains without them')
    lora.check_settings(c)
    if c.weight_decay and c.optimizer == 'sgd':
        raise UserError('--weight_decay is decoupled (AdamW) and needs --optimizer adam or '
                        'adafactor')
