"""The built-in target files (``*.toml`` beside this file), installed as the data package ``snn2chip.target_files``.

pyproject.toml maps this folder onto that package name, so the files stay in the repository's
top-level ``targets/`` and :func:`snn2chip.chip.targets.builtin` finds them through
:mod:`importlib.resources` in a wheel and in an editable install alike.
"""
