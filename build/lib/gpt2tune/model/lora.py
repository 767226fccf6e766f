#!/usr/bin/env python3
"""Low-rank adapters (LoRA, Hu et al. 2021): the released weights stay frozen and each
adapted matrix W [nx, nf] of every block gets two small trained factors, A [nx, r] and
B [r, nf], so that the layer computes x W + (alpha / r) x A B. B starts at zero (the
adapted model starts as the base), A random.

    ./train.py --dataset jokes.npz --lora_rank 8 --optimizer adam
    gpt2tune-lora merge checkpoint/run1 models/jokes-merged

A LoRA run's checkpoints hold the adapters (model/h0/attn/c_attn/lora_a, .../lora_b),
the weights --also_train names and the optimizer's state; lora.json beside them names
the base checkpoint they apply to, with a fingerprint of it, so the base is referenced
and never copied. model_dir.py reads such a checkpoint as the merged weights
W + (alpha / r) A B, so every script that loads a model loads a LoRA run; `merge` writes
them as an ordinary model directory in the release layout. export/lora_peft.py converts
adapters to and from Hugging Face PEFT's format.

No TensorFlow at import (train_config.py uses this module); model.py builds the
adapters' products.
"""

import dataclasses
import hashlib
import json
import os

import numpy as np

from gpt2tune.errors import UserError

CONFIG = 'lora.json'
# The matrices of a block that can be adapted, as named under model/h<i>/.
MATRICES = ('attn/c_attn', 'attn/c_proj', 'mlp/c_fc', 'mlp/c_proj')
FACTORS = ('lora_a', 'lora_b')


@dataclasses.dataclass(frozen=True)
class Adapters:
    """Which matrices of every block get adapters, of what rank and scale."""
    rank: int
    alpha: float
    targets: tuple  # some of MATRICES
    # What --also_train names (h0/attn, ln_f): trained beside the adapters, not frozen.
    also_train: tuple = dataclasses.field(default=(), compare=False)

    @property
    def scale(self):
        return self.alpha / self.rank

    def adapts(self, scope):
        """Whether the layer `scope` (model/h3/attn/c_attn) gets adapters."""
        parts = scope.split('/')
        return (len(parts) == 4 and parts[0] == 'model' and parts[1][:1] == 'h'
                and '/'.join(parts[2:]) in self.targets)

    def frozen(self, name):
        """Whether the weight `name` (model/h0/attn/c_attn/w) stays as loaded."""
        name = name.removeprefix('model/')
        return not any(name == n or name.startswith(n + '/') for n in self.also_train)

    def shapes(self, hparams):
        """The adapters' variables: name -> shape."""
        from gpt2tune.model.hparams import variable_shapes
        shapes = {}
        for name, (_, nx, nf) in ((n, s) for n, s in variable_shapes(hparams).items()
                                  if n.endswith('/w') and self.adapts(n[:-2])):
            shapes[f'{name[:-2]}/lora_a'] = [nx, self.rank]
            shapes[f'{name[:-2]}/lora_b'] = [self.rank, nf]
        return shapes

    def describe(self, hparams):
        n = sum(int(np.prod(s)) for s in self.shapes(hparams).values())
        return (f'LoRA: rank {self.rank}, alpha {self.alpha:g} (scale {self.scale:g}) on '
                f'{", ".join(self.targets)} of every block: {n:,} adapter parameters; the '
                'base weights stay frozen')

    def to_json(self):
        return {'rank': self.rank, 'alpha': self.alpha, 'targets': list(self.targets)}


def is_adapter(name):
    """Whether a variable name (with or without :0) is an adapter factor."""
    return name.split(':')[0].rsplit('/', 1)[-1] in FACTORS


def parse_targets(text, flag='--lora_targets'):
    """'attn/c_attn,mlp' -> the MATRICES named, a scope (attn, mlp) naming those under it."""
    targets = []
    for name in (n.strip().strip('/') for n in text.split(',') if n.strip()):
        named = [m for m in MATRICES if m == name or m.startswith(name + '/')]
        if not named:
            raise UserError(f'{flag} {name}: not a matrix of a block; choose from '
                            f'{", ".join(MATRICES)} (attn or mlp for both of one)')
        targets += [m for m in named if m not in targets]
    if not targets:
        raise UserError(f'{flag}: names no matrix')
    return tuple(m for m in MATRICES if m in targets)


def check_settings(c):
    """A TrainConfig's LoRA settings make sense together (train_config.check_config)."""
    if not c.lora_rank:
        return
    if c.lora_rank < 0 or (c.lora_alpha is not None and c.lora_alpha <= 0):
        raise UserError('--lora_rank and --lora_alpha must be above 0')
    if c.layers_to_train or c.only_train_transformer_layers:
        raise UserError('--lora_rank trains adapters in every block instead of weights: '
                        'leave out --layers_to_train and --only_train_transformer_layers')
    if c.restore_from not in ('latest', 'fresh'):
        raise UserError(f'--restore_from {c.restore_from}: a LoRA run\'s base is its model '
                        '(--models_dir and --model_name; a run folder is a model directory '
                        'too)')
    parse_targets(c.lora_targets)


def from_config(c):
    """The Adapters of a TrainConfig (checked by check_settings); None without
    --lora_rank."""
    if not c.lora_rank:
        return None
    alpha = 2.0 * c.lora_rank if c.lora_alpha is None else float(c.lora_alpha)
    also_train = tuple(n.strip().strip('/') for n in c.also_train.split(',') if n.strip())
    return Adapters(c.lora_rank, alpha, parse_targets(c.lora_targets), also_train)


def fingerprint(ckpt):
    """What identifies a checkpoint's weights: the SHA-256 of its .index, which holds each
    tensor's shape, place and CRC32C (a copied model directory keeps it)."""
    try:
        with open(f'{ckpt}.index', 'rb') as f:
            return hashlib.sha256(f.read()).hexdigest()
    except OSError as e:
        raise UserError(f'{ckpt}.index: cannot read the base checkpoint ({e.strerror})') \
            from None


@dataclasses.dataclass(frozen=True)
class LoraCheckpoint:
    """A lora.json: the adapters and the base checkpoint they apply to."""
    adapters: Adapters
    base: str  # the base checkpoint's prefix, an absolute path
    base_sha256: str


def write_config(directory, adapters, base):
    """lora.json in `directory` for adapters over the base checkpoint prefix `base`."""
    from gpt2tune.atomic_files import write_atomic
    record = {**adapters.to_json(), 'base': os.path.abspath(base),
              'base_sha256': fingerprint(base)}
    write_atomic(os.path.join(directory, CONFIG), json.dumps(record, indent=2) + '\n')


def read_config(ckpt, base=None):
    """The LoraCheckpoint of a checkpoint prefix holding adapters, from the lora.json
    beside it, over `base` (a checkpoint prefix; default: the one lora.json names),
    which is checked to exist and be the one trained on."""
    config = parse_config(ckpt)
    if base is not None:
        config = dataclasses.replace(config, base=base)
    if not os.path.isfile(f'{config.base}.index'):
        raise UserError(f'{ckpt}: its base model {config.base} is gone; LoRA adapters need '
                        'the weights they were trained on (put them back there)')
    if fingerprint(config.base) != config.base_sha256:
        raise UserError(f'{ckpt}: its base model {config.base} is not the one it was trained '
                        f'on ({CONFIG} has another fingerprint); the adapters fit only the '
                        'weights they were trained on')
    return config


def parse_config(ckpt):
    """The LoraCheckpoint lora.json beside a checkpoint prefix describes, unchecked."""
    path = os.path.join(os.path.dirname(ckpt), CONFIG)
    try:
        with open(path, encoding='utf-8') as f:
            record = json.load(f)
        adapters = Adapters(int(record['rank']), float(record['alpha']),
                            parse_targets(','.join(record['targets']), path))
        config = LoraCheckpoint(adapters, record['base'], record['base_sha256'])
    except FileNotFoundError:
        raise UserError(f'{ckpt} holds LoRA adapters but {path} (naming their base model) '
                        'is missing') from None
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
        raise UserError(f'{path}: not a LoRA configuration ({type(e).__name__}: {e})') \
            from None
    return config


class RunMismatch(UserError):
    """Resuming a run with another base model or other adapters: never skip to an older
    checkpoint, stop."""


def check_resume(prefix, stored, adapters, base):
    """Whether the checkpoint `prefix` (its variable names `stored`) continues a run with
    `adapters` (its Adapters, or None) whose base checkpoint is `base`; RunMismatch if not.
    Where the base was when the run trained does not matter (moved, it is the same
    weights), its fingerprint does."""
    holds = any(is_adapter(name) for name in stored)
    if holds != bool(adapters):
        raise RunMismatch(f'{prefix}: this run was {"" if holds else "not "}trained with '
                          f'LoRA adapters; {"pass" if holds else "leave out"} --lora_rank, '
                          'or --restore_from fresh (or another --run_name) to start over')
    if not holds:
        return
    saved = parse_config(prefix)
    if saved.adapters != adapters:
        raise RunMismatch(f'{prefix}: this run trains adapters {saved.adapters.to_json()}, '
                          f'now asked for {adapters.to_json()}; --restore_from fresh starts '
                          'over')
    if fingerprint(base) != saved.base_sha256:
        raise RunMismatch(f'{prefix}: trained on the base {saved.base}, but --models_dir/'
                          f'--model_name give {base}, other weights; resume with the base it '
                          'was trained on, or --restore_from fresh')


def merge(base_arrays, stored, adapters):
    """Release-named arrays: the base's, replaced by any trained with the adapters
    (--also_train), each adapted matrix W [1, nx, nf] plus scale * A B."""
    arrays = dict(base_arrays)
    arrays.update({n: a for n, a in stored.items() if n in base_arrays})
    for name in [n for n in stored if n.endswith('/lora_a')]:
        scope = name[:-len('/lora_a')]
        delta = adapters.scale * (stored[name].astype(np.float64) @
                                  stored[f'{scope}/lora_b'].astype(np.float64))
        arrays[f'{scope}/w'] = (arrays[f'{scope}/w'] + delta[None]).astype(np.float32)
    return arrays


def check_adapters(ckpt, stored, hparams, base=None):
    """The adapters in `ckpt` (its {name: shape} `stored`) are those lora.json describes,
    with the shapes the model implies. Returns the LoraCheckpoint (over `base`, if given:
    see read_config)."""
    config = read_config(ckpt, base)
    for name, shape in config.adapters.shapes(hparams).items():
        if name not in stored:
            raise UserError(f'{ckpt}: adapter {name} is missing')
        if list(stored[name]) != shape:
            raise UserError(f'{ckpt}: adapter {name} has shape {list(stored[name])}, the '
                            f'model and {CONFIG} imply {shape}')
    return config
