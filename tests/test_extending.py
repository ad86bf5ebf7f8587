"""docs/extending.md: every code block runs as written, in order, in one namespace
(an activation added from outside, a layer of one's own, a study in --quick mode)."""

import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def blocks(path: str) -> list[str]:
    with open(os.path.join(ROOT, path)) as f:
        return re.findall(r"```python\n(.*?)```", f.read(), flags=re.S)


def test_every_worked_example_of_extending_md_runs(monkeypatch):
    from fcnn.ops import activations

    # the example registers an activation: keep the table as it was for other tests
    monkeypatch.setattr(activations, "ACTIVATIONS", dict(activations.ACTIVATIONS))
    code = blocks("docs/extending.md")
    assert len(code) == 4
    namespace = {"__name__": "extending_md"}
    for block in code:
        exec(compile(block, "docs/extending.md", "exec"), namespace)  # noqa: S102 (our own docs)
    assert "hard_sigmoid" in activations.activation_names()
