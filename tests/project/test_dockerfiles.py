"""No Docker engine runs here: check the Dockerfiles against the repository instead."""

import os
import re

import pytest

from fixtures import ROOT


def instructions(path):
    with open(path, encoding='utf-8') as f:
        lines = [line.strip() for line in f if line.strip() and not line.startswith('#')]
    return [line.split(None, 1) for line in lines]


def pinned_tensorflow():
    with open(os.path.join(ROOT, 'requirements.txt'), encoding='utf-8') as f:
        return re.search(r'^tensorflow==(\S+)$', f.read(), re.M).group(1)


@pytest.mark.parametrize('name, suffix', [('Dockerfile.gpu', '-gpu'), ('Dockerfile.cpu', '')])
def test_dockerfile_matches_the_repository(name, suffix):
    steps = instructions(os.path.join(ROOT, name))
    assert steps[0] == ['FROM', f'tensorflow/tensorflow:{pinned_tensorflow()}{suffix}']
    assert ['WORKDIR', '/gpt-2'] in steps
    for keyword, args in steps:
        if keyword in ('COPY', 'ADD'):
            *sources, _ = args.split()
            for source in sources:
                assert os.path.exists(os.path.join(ROOT, source)), f'{name}: {source} missing'
    assert any(k == 'RUN' and 'requirements.txt' in a for k, a in steps)
