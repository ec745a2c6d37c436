"""The front door: a short README whose links resolve, and the documentation site under docs/
that builds with ``mkdocs build --strict`` (mkdocs.yml; mkdocs and mkdocs-material are in the dev
extra). Before issue 29 the README was 548 lines / 53 KB and docs/ held two pages."""
import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _readme() -> str:
    return open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()


def test_readme_fits_on_a_screen_and_its_links_resolve():
    text = _readme()
    assert len(text.splitlines()) <= 200
    links = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text)
    local = [link for link in links if "://" not in link]
    assert len(local) >= 10
    assert [link for link in local if not os.path.exists(os.path.join(ROOT, link))] == []
    # what a newcomer needs: the two set-up commands, the demo, one command per tool
    for needle in ("pip install", "python -m pytest", "attrtools demo", "attrtools attribute", "attrtools prune",
                   "attrtools tree", "attrtools triggers", "attrtools audit", "attrtools evaluate", "```python"):
        assert needle in text, needle


def test_every_docs_page_is_reachable_from_the_nav():
    """Pages written here are in mkdocs.yml's nav (the strict build also fails on an omitted page)."""
    nav = open(os.path.join(ROOT, "mkdocs.yml"), encoding="utf-8").read()
    pages = []
    for folder, _, files in os.walk(os.path.join(ROOT, "docs")):
        pages += [os.path.relpath(os.path.join(folder, f), os.path.join(ROOT, "docs")).replace(os.sep, "/")
                  for f in files if f.endswith(".md")]
    assert "tools/prune.md" in pages and "architecture.md" in pages
    assert [p for p in pages if f": {p}\n" not in nav] == []


def test_docs_build_strictly(tmp_path):
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1")
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
                          cwd=ROOT, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert (tmp_path / "site" / "tools" / "prune" / "index.html").exists()
    assert (tmp_path / "site" / "architecture" / "index.html").exists()
