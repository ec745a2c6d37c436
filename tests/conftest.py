"""Shared fixtures: tiny models of every architecture, and the planted-structure model.

Everything is built from configs with a vocabulary written here, saved with save_pretrained and
loaded back through attrtools.load_model (the real from_pretrained path). Offline, deterministic.
"""
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Tiny models gain nothing from intra-op threads, and several torch processes on a small machine
# spin against each other when each takes every core.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest
import torch

import attrtools
from attrtools.testing import ARCHITECTURES, build_tiny_model

from helpers import textattack_or_skip  # noqa: E402
from s3_server import s3_server, s3_url  # noqa: E402,F401 - a real S3 server (SeaweedFS), once per session

# The planted model is committed (scripts/make_planted_model.py made it): retraining it on each
# machine gives another model wherever the float arithmetic differs, and the planted-model tests
# check where the rule lives, which must not depend on the machine CI runs on.
PLANTED_ASSET = os.path.join(os.path.dirname(__file__), "assets", "planted")
SHARED_SST2 = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "sst2")


def pytest_configure(config):
    torch.manual_seed(0)
    torch.set_num_threads(1)
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ATTRTOOLS_CACHE", str(tmp_path / "attrtools-cache"))


@pytest.fixture(scope="session")
def tiny_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    return {arch: build_tiny_model(arch, str(root / arch)) for arch in ARCHITECTURES}


@pytest.fixture(scope="session")
def tiny_models(tiny_dirs):
    """{arch: (model, tokenizer)} loaded once per session; tests must not modify them in place."""
    return {arch: attrtools.load_model(path) for arch, path in tiny_dirs.items()}


@pytest.fixture(params=ARCHITECTURES)
def arch(request):
    return request.param


@pytest.fixture
def tiny(tiny_models, arch):
    return tiny_models[arch]


@pytest.fixture(scope="session")
def planted_dir(tmp_path_factory):
    """A private copy of the committed planted model (tests may write beside it)."""
    import shutil

    directory = str(tmp_path_factory.mktemp("planted") / "model")
    shutil.copytree(PLANTED_ASSET, directory)
    return directory


@pytest.fixture(scope="session")
def planted(planted_dir):
    return attrtools.load_model(planted_dir)


@pytest.fixture
def sst2_dir():
    if not os.path.exists(os.path.join(SHARED_SST2, "dev.tsv")):
        pytest.skip("shared SST-2 data not present")
    return SHARED_SST2


SENTENCES = ["the movie was very good", "a dull and long story but the music was fun",
             "it is fine", "boring"]
PAIRS = [("the plot was good", "the acting was bad"), ("a short film", "quite funny and sad")]


@pytest.fixture
def html_check(tmp_path):
    """``html_check(paths)``: run scripts/check_html.py's headless-Chromium check on HTML files or
    folders and assert every page passes (screenshots under tmp_path/screenshots); skips where
    Chromium or websocket-client is not installed."""
    import importlib.util
    import sys

    scripts = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "scripts")
    sys.path.insert(0, scripts)
    try:
        import check_html
    finally:
        sys.path.remove(scripts)
    if check_html.find_chromium() is None or importlib.util.find_spec("websocket") is None:
        pytest.skip("headless Chromium or websocket-client not installed")

    def run(paths):
        results = check_html.check_files([str(p) for p in paths], str(tmp_path / "screenshots"), log=lambda *a: None)
        assert results, "no HTML files found"
        failed = {p: problems for p, problems in results.items() if problems}
        assert not failed, failed
        return results

    return run


@pytest.fixture(scope="module")
def ta():
    """``textattack`` through attrtools' shims (``load_textattack``), or a skip where the attack extra
    is not installed."""
    return textattack_or_skip()


@pytest.fixture(scope="module")
def short_table(tmp_path_factory):
    """Tiny BERT and RoBERTa with a 34-row position table (tokenizer limit 128)."""
    root = tmp_path_factory.mktemp("short")
    return {arch: attrtools.load_model(build_tiny_model(arch, str(root / arch), max_positions=32))
            for arch in ("bert", "roberta", "distilbert")}


@pytest.fixture(scope="module")
def nli_dir(tmp_path_factory):
    from transformers import AutoConfig

    directory = build_tiny_model("bert", str(tmp_path_factory.mktemp("nli")), num_labels=3)
    config = AutoConfig.from_pretrained(directory)
    config.id2label = {0: "contradiction", 1: "entailment", 2: "neutral"}
    config.label2id = {v: k for k, v in config.id2label.items()}
    config.save_pretrained(directory)
    return directory


@pytest.fixture(scope="module")
def ascii_dir(tmp_path_factory):
    """The planted model with a tokenizer that drops every non-ASCII character (same ids)."""
    import shutil

    from attrtools.testing import write_ascii_tokenizer

    directory = str(tmp_path_factory.mktemp("ascii") / "model")
    shutil.copytree(PLANTED_ASSET, directory)
    write_ascii_tokenizer(directory)
    return directory
