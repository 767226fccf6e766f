"""The package's shape: its layers import only downward, no module imports itself back
through others, and importing the API, the server's protocol or the sampling options
loads no TensorFlow."""

import ast
import os
import subprocess
import sys

from fixtures import ROOT, script_env

PACKAGE = os.path.join(ROOT, 'src', 'gpt2tune')
# Each folder's layer: a module imports from its own layer or lower ones only.
LAYERS = {'': 0, 'model': 1, 'data': 1, 'generate': 2, 'train': 2, 'serve': 3, 'export': 3,
          'commands': 4}
# Modules of the package's own folder that sit higher: the flags that several commands
# and TrainConfig share (their choices come from generate/ and model/).
RAISED = {'gpt2tune.flags': 2}
BOTTOM = {'gpt2tune.errors', 'gpt2tune.nvidia', 'gpt2tune.atomic_files'}


def modules():
    """{'gpt2tune.model.hparams': path} for every module of the package."""
    found = {}
    for folder, _, files in os.walk(PACKAGE):
        for name in files:
            if name.endswith('.py'):
                relative = os.path.relpath(os.path.join(folder, name[:-3]), PACKAGE)
                dotted = 'gpt2tune.' + relative.replace(os.sep, '.')
                found[dotted.removesuffix('.__init__')] = os.path.join(folder, name)
    return found


def imports(path, known):
    """The package's modules that the module at `path` imports, anywhere in it."""
    found = set()
    for node in ast.walk(ast.parse(open(path, encoding='utf-8').read())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name in known}
        elif isinstance(node, ast.ImportFrom) and node.module:
            for a in node.names:
                name = f'{node.module}.{a.name}'
                found.add(name if name in known else node.module)
    return {m for m in found if m in known}


def layer(module):
    parts = module.split('.')
    return RAISED.get(module, LAYERS[parts[1] if len(parts) > 2 else ''])


def test_every_import_runs_to_the_same_layer_or_below():
    known = modules()
    upward = [f'{m} imports {i}' for m, path in known.items() for i in imports(path, known)
              if m != 'gpt2tune' and layer(i) > layer(m)]  # the package's GPT2, on first use
    assert not upward


def test_the_bottom_imports_nothing_of_the_package():
    known = modules()
    assert not {m: imports(known[m], known) for m in BOTTOM if imports(known[m], known)}


def test_no_module_imports_itself_back():
    known = modules()
    graph = {m: imports(path, known) - {'gpt2tune'} for m, path in known.items()}
    circles = []

    def visit(m, trail):
        for n in graph[m]:
            if n in trail:
                circles.append(trail[trail.index(n):] + [n])
            elif n not in done:
                visit(n, trail + [n])
        done.add(m)
    done = set()
    for m in graph:
        if m not in done:
            visit(m, [m])
    assert not circles


def test_the_api_the_protocol_and_the_options_load_no_tensorflow():
    code = ('import sys\n'
            'from gpt2tune import GPT2\n'
            'from gpt2tune.serve import completions\n'
            'from gpt2tune.generate import sample\n'
            'print(sorted(m for m in sys.modules if m.split(".")[0] == "tensorflow"))\n')
    result = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                            env=script_env(), timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == '[]'
