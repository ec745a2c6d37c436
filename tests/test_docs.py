"""The front door: a short README whose links resolve, and the documentation site under docs/
that builds with ``mkdocs build --strict`` (mkdocs.yml; mkdocs and mkdocs-material are in the dev
extra); every ```python block of the README and docs/ defines the names it uses. Before issue 29 the
README was 548 lines / 53 KB and docs/ held two pages."""
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


def test_architecture_table_is_written_by_the_family_matrix_script(tmp_path):
    """docs/architectures.md's family table sits between the markers scripts/family_matrix.py
    --write-docs rewrites (the table is measured, not pasted)."""
    sys.path.insert(0, os.path.join(ROOT, "scripts"))
    try:
        import family_matrix
    finally:
        sys.path.remove(os.path.join(ROOT, "scripts"))
    page = open(os.path.join(ROOT, "docs", "architectures.md"), encoding="utf-8").read()
    inside = page.split(family_matrix.START, 1)[1].split(family_matrix.END, 1)[0].strip().splitlines()
    assert len(inside) >= 20 and inside[0].startswith("| family (`model_type`)")
    rows = [{"family": "albert", "kind": "encoder, post-LN", "heads": 4, "probs": 0.0, "logits": 2.5e-7,
             "attattr": 1.5e-7, "ran": ["raw"], "refused": ["attattr"], "pruned": 2.0e-7, "reload": True}]
    table = family_matrix.family_table(rows, ["attattr", "raw"])
    assert table.splitlines()[0] == inside[0]
    assert table.splitlines()[2] == ("| albert (both layers run one shared block) | encoder, post-LN | 4 | "
                                     "0 / 2.5e-07 | 1.5e-07 | attattr | 2.0e-07 (heads pruned in every layer of "
                                     "the group) | yes |")
    copy = tmp_path / "page.md"
    copy.write_text(f"before\n{family_matrix.START}\nold\n{family_matrix.END}\nafter\n", encoding="utf-8")
    family_matrix.write_between_markers(str(copy), table)
    assert copy.read_text(encoding="utf-8") == (f"before\n{family_matrix.START}\n{table}\n"
                                                f"{family_matrix.END}\nafter\n")


# ------------------------------------------------------------------------------ python snippets
def test_readme_python_snippets_define_every_name_they_use():
    """The new-user trial: README snippets used dev_examples (and tok, texts) without saying where
    they come from. Each ```python block of README.md and of the pages under docs/ (where most of
    the README's snippets moved, issue 29) must run on its own: pyflakes finds no undefined name."""
    import glob
    import io
    import re

    from pyflakes import api as pyflakes_api  # the dev extra
    from pyflakes.reporter import Reporter

    root = os.path.join(os.path.dirname(__file__), "..")
    pages = [os.path.join(root, "README.md")] + sorted(glob.glob(os.path.join(root, "docs", "**", "*.md"),
                                                                 recursive=True))
    blocks = [(page, block) for page in pages
              for block in re.findall(r"```python\n(.*?)```", open(page, encoding="utf-8").read(), flags=re.S)]
    assert len(blocks) >= 5 and any(page.endswith("README.md") for page, _ in blocks)
    for page, block in blocks:
        out = io.StringIO()
        pyflakes_api.check(block, os.path.basename(page), Reporter(out, out))
        assert "undefined name" not in out.getvalue(), (page, block, out.getvalue())
