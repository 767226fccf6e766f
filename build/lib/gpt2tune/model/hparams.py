"""GPT-2's shape: the hyperparameters of hparams.json, the variables of the release
checkpoint they imply, and the released sizes. No TensorFlow here, so scripts check a
model's shape (and answer --help) before TensorFlow loads.

    hparams = HParams.from_json('models/124M/hparams.json')
    variable_shapes(hparams)['model/h0/attn/c_attn/w']   # [1, 768, 2304]
"""

import dataclasses
import json

from gpt2tune.errors import UserError

SIZES = {  # n_embd, n_head, n_layer of the released models
    '124M': (768, 12, 12), '355M': (1024, 16, 24), '774M': (1280, 20, 36),
    '1558M': (1600, 25, 48),
}
SHAPES = {**SIZES, 'tiny': (64, 4, 2)}  # and the tiny one CI checks with


@dataclasses.dataclass(frozen=True)
class HParams:
    n_vocab: int = 50257
    n_ctx: int = 1024
    n_embd: int = 768
    n_head: int = 12
    n_layer: int = 12

    def __post_init__(self):
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise UserError(f'hparams: {field.name} must be a positive integer, '
                                f'got {value!r}')
        if self.n_embd % self.n_head:
            raise UserError(f'hparams: n_embd {self.n_embd} is not a multiple of n_head '
                            f'{self.n_head}')

    @classmethod
    def from_json(cls, path):
        try:
            with open(path, encoding='utf-8') as f:
                values = json.load(f)
        except FileNotFoundError:
            raise UserError(f'{path}: missing') from None
        except json.JSONDecodeError as e:
            raise UserError(f'{path}: not valid JSON ({e})') from None
        names = {field.name for field in dataclasses.fields(cls)}
        if not isinstance(values, dict) or set(values) != names:
            raise UserError(f'{path}: expected exactly the keys {sorted(names)}')
        return cls(**values)

    def to_json(self):
        return json.dumps(dataclasses.asdict(self), indent=2) + '\n'


def variable_shapes(hparams):
    """The release checkpoint's variables: name -> shape."""
    e = hparams.n_embd
    shapes = {'model/wte': [hparams.n_vocab, e], 'model/wpe': [hparams.n_ctx, e]}
    for i in range(hparams.n_layer):
        h = f'model/h{i}'
        shapes.update({
            f'{h}/ln_1/g': [e], f'{h}/ln_1/b': [e],
            f'{h}/attn/c_attn/w': [1, e, 3 * e], f'{h}/attn/c_attn/b': [3 * e],
            f'{h}/attn/c_proj/w': [1, e, e], f'{h}/attn/c_proj/b': [e],
            f'{h}/ln_2/g': [e], f'{h}/ln_2/b': [e],
            f'{h}/mlp/c_fc/w': [1, e, 4 * e], f'{h}/mlp/c_fc/b': [4 * e],
            f'{h}/mlp/c_proj/w': [1, 4 * e, e], f'{h}/mlp/c_proj/b': [e],
        })
    shapes.update({'model/ln_f/g': [e], 'model/ln_f/b': [e]})
    return shapes
