"""Every Python block of README.md runs as written, in order, as a user pasting them
into one session would (a block may use what an earlier one defined; each brings the
imports it uses)."""

import os
import re
from pathlib import Path

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_every_python_block_of_the_readme_runs(tmp_path, monkeypatch):
    with open(os.path.join(ROOT, "README.md")) as f:
        blocks = re.findall(r"```python\n(.*?)```", f.read(), flags=re.S)
    assert len(blocks) >= 2
    monkeypatch.chdir(tmp_path)  # the blocks may write runs/ into the current folder
    namespace = {"__name__": "readme"}
    for i, block in enumerate(blocks):
        exec(compile(block, f"README.md block {i}", "exec"), namespace)  # noqa: S102 (our README)


def test_every_relative_link_of_the_docs_points_to_a_file():
    """Links and images of README.md and docs/**/*.md that point into the repository
    (not http, not an anchor) name files that exist."""
    root = Path(ROOT)
    pages = [root / "README.md", *sorted((root / "docs").rglob("*.md"))]
    missing = []
    for page in pages:
        for target in re.findall(r"\]\(([^)\s]+)\)", page.read_text()):
            target = target.split("#")[0]
            if not target or re.match(r"[a-z]+:", target):
                continue
            if not (page.parent / target).exists():
                missing.append(f"{page.relative_to(root)} -> {target}")
    assert not missing, "broken links:\n" + "\n".join(missing)
