"""Lazy, offline, side-effect-free import of TextAttack 0.3.11 next to transformers 5.

TextAttack's full dependency set cannot resolve next to transformers 5 (flair pins
``transformers<5``), so the ``attack`` extra installs its small dependencies and then
``pip install --no-deps textattack==0.3.11`` (docs/install.md). Importing it then needs:

- a **flair stub**: TextAttack subclasses ``flair.data.Tokenizer`` at import time and names
  ``flair.data.Sentence`` / ``flair.models.SequenceTagger``; only flair-based POS/NER tagging is
  lost (``PartOfSpeech(tagger_type="flair")``, ``WordSwapChangeLocation/Name``, CheckList);
- an **English stopword list**: ``textattack.augmentation.recipes`` builds a
  ``StopwordModification()`` at import time, which reads NLTK's ``stopwords`` corpus. When that
  corpus is installed we use it; otherwise ``ENGLISH_STOPWORDS`` below (our own list) answers
  for ``"english"`` and every other language falls through to NLTK;
- **no downloads**: the first import per cache dir runs ``nltk.download`` of six packages; we
  write TextAttack's marker file ``post_install_check_3`` first, so it never does;
- **no environment changes**: with ``TA_CACHE_DIR`` set, TextAttack overwrites ``HF_HOME``,
  ``XDG_CACHE_HOME``, ``PYTORCH_TRANSFORMERS_CACHE`` and ``TFHUB_CACHE_DIR``, and it always sets
  ``TOKENIZERS_PARALLELISM``; every variable it touches is restored after the import.

Use ``load_textattack()`` (cached; raises ``TextAttackUnavailable`` with the install command when
the package is missing) instead of ``import textattack``.
"""
from __future__ import annotations

import importlib
import importlib.util
import os
import sys
import types

INSTALL_HINT = ('pip install "attrtools[attack]" && pip install --no-deps textattack==0.3.11 '
                '(keep "torch==2.13.0" in the first command where a CPU torch is installed)')

# Environment variables TextAttack's import may change (textattack/shared/utils/install.py).
_TOUCHED_ENV = ("HF_HOME", "XDG_CACHE_HOME", "PYTORCH_TRANSFORMERS_CACHE", "TFHUB_CACHE_DIR",
                "TOKENIZERS_PARALLELISM", "TA_CACHE_DIR")

# Common English function words (articles, pronouns, auxiliaries, prepositions, conjunctions,
# quantifiers, adverbs of degree/time/place), written for attrtools. Deliberately without
# negations ("not", "no", "nor", "never") and their contractions: in sentiment tasks they carry
# the label and an attack must be allowed to touch them.
ENGLISH_STOPWORDS = frozenset("""
a about above across after afterwards again against all almost alone along already also although
always am among amongst an and another any anybody anyhow anyone anything anyway anywhere are
around as at be became because become becomes becoming been before beforehand behind being below
beside besides between beyond both but by can could did do does doing done down during each
either else elsewhere enough etc even ever every everybody everyone everything everywhere few
for former formerly from further had has have having he hence her here hereafter hereby herein
hers herself him himself his how however i if in indeed into is it its itself just last latter
latterly least less many may me meanwhile might mine more moreover most mostly much must my myself
namely neither nevertheless next nobody none noone nothing now nowhere of off often on once one
only onto or other others otherwise our ours ourselves out over own per perhaps please rather
same several she should since so some somebody somehow someone something sometime sometimes
somewhere still such than that the their theirs them themselves then thence there thereafter
thereby therefore therein thereupon these they this those though through throughout thru thus to
together too toward towards under until up upon us very via was we well were what whatever when
whence whenever where whereafter whereas whereby wherein whereupon wherever whether which while
whither who whoever whole whom whose why will with within without would yet you your yours
yourself yourselves s t d ll m o re ve y
""".split())


from ..errors import MissingDependencyError


class TextAttackUnavailable(MissingDependencyError):
    """TextAttack (the ``attack`` extra) is not installed or cannot be imported."""


_MODULE = None


def textattack_installed() -> bool:
    return importlib.util.find_spec("textattack") is not None


def install_flair_stub() -> bool:
    """Register a minimal ``flair`` package unless the real one is importable; True if stubbed."""
    if "flair" in sys.modules or importlib.util.find_spec("flair") is not None:
        return False
    flair = types.ModuleType("flair")
    data = types.ModuleType("flair.data")
    models = types.ModuleType("flair.models")

    class Tokenizer:  # subclassed by textattack at import time
        def tokenize(self, sentence):
            raise NotImplementedError

    class Sentence:
        def __init__(self, *args, **kwargs):
            raise ImportError("flair is not installed (attrtools stubs it): flair-based POS/NER tagging is unavailable")

    class SequenceTagger:
        @classmethod
        def load(cls, *args, **kwargs):
            raise ImportError("flair is not installed (attrtools stubs it): flair taggers are unavailable")

    data.Tokenizer, data.Sentence, models.SequenceTagger = Tokenizer, Sentence, SequenceTagger
    flair.data, flair.models = data, models
    flair.device = "cpu"
    flair.__attrtools_stub__ = True
    sys.modules.update({"flair": flair, "flair.data": data, "flair.models": models})
    return True


def flair_is_stub() -> bool:
    """True when ``flair`` is attrtools' stub (or absent): flair taggers are unavailable."""
    module = sys.modules.get("flair")
    if module is not None:
        return bool(getattr(module, "__attrtools_stub__", False))
    return importlib.util.find_spec("flair") is None


class _StopwordsWithFallback:
    """Stands in for ``nltk.corpus.stopwords``: the real corpus when installed, else our English list."""

    def __init__(self, real):
        self._real = real

    def words(self, fileids=None):
        try:
            return self._real.words(fileids) if fileids is not None else self._real.words()
        except LookupError:
            if fileids in (None, "english"):
                return sorted(ENGLISH_STOPWORDS)
            raise

    def __getattr__(self, name):
        return getattr(self._real, name)


def install_stopwords_fallback():
    import nltk.corpus

    if not isinstance(nltk.corpus.stopwords, _StopwordsWithFallback):
        nltk.corpus.stopwords = _StopwordsWithFallback(nltk.corpus.stopwords)


def _write_post_install_marker():
    """Create TextAttack's ``post_install_check_3`` so its import does not call ``nltk.download``."""
    cache_dir = os.environ.get("TA_CACHE_DIR", os.path.expanduser("~/.cache/textattack"))
    try:
        os.makedirs(cache_dir, exist_ok=True)
        marker = os.path.join(cache_dir, "post_install_check_3")
        if not os.path.exists(marker):
            open(marker, "a").close()
    except OSError:
        pass  # unwritable home: TextAttack then tries its downloads, which fail fast offline


def _pin_matplotlib_dirs():
    """matplotlib resolves its cache dir once from ``XDG_CACHE_HOME``: resolve it before TextAttack
    may point that variable at ``TA_CACHE_DIR``."""
    if "TA_CACHE_DIR" not in os.environ or importlib.util.find_spec("matplotlib") is None:
        return
    import matplotlib

    matplotlib.get_cachedir()
    matplotlib.get_configdir()


def load_textattack():
    """Import and return the ``textattack`` module with the shims above (once per process)."""
    global _MODULE
    if _MODULE is not None:
        return _MODULE
    if not textattack_installed():
        raise TextAttackUnavailable(f"TextAttack is not installed. Install it with: {INSTALL_HINT}")
    saved = {name: os.environ.get(name) for name in _TOUCHED_ENV}
    enabled = _enabled_loggers()
    try:
        install_flair_stub()
        install_stopwords_fallback()
        _write_post_install_marker()
        _pin_matplotlib_dirs()
        try:
            module = importlib.import_module("textattack")
        except ImportError as err:
            raise TextAttackUnavailable(f"cannot import textattack ({err}). Install the extra with: {INSTALL_HINT}") from err
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        _reenable_loggers(enabled)
    _quiet_textattack_logger()
    _MODULE = module
    return module


def _enabled_loggers() -> list:
    import logging

    return [lg for lg in logging.Logger.manager.loggerDict.values() if isinstance(lg, logging.Logger) and not lg.disabled]


def _reenable_loggers(loggers) -> None:
    """TextAttack's import runs ``logging.config.dictConfig`` with ``disable_existing_loggers``
    left on, which silences every logger that existed before it (attrtools' cache notes, the
    user's own): give those back their state."""
    for logger in loggers:
        logger.disabled = False


def _quiet_textattack_logger():
    import logging

    logging.getLogger("textattack.shared.utils.install").setLevel(logging.WARNING)
