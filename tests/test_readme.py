"""Every Python block of README.md runs as written, in order, in a fresh namespace
(what a new user copies must work on its own)."""

import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_every_python_block_of_the_readme_runs(tmp_path, monkeypatch):
    with open(os.path.join(ROOT, "README.md")) as f:
        blocks = re.findall(r"```python\n(.*?)```", f.read(), flags=re.S)
    assert len(blocks) >= 2
    monkeypatch.chdir(tmp_path)  # the blocks may write runs/ into the current folder
    for i, block in enumerate(blocks):
        namespace = {"__name__": f"readme_block_{i}"}
        exec(compile(block, f"README.md block {i}", "exec"), namespace)  # noqa: S102 (our README)
