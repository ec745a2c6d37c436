"""The resources TextAttack's recipes need, where each comes from, and their loaders.

TextAttack's recipes load their resources while they are built or, worse, while they attack:
counter-fitted embeddings from its S3 bucket, a masked LM or GPT-2 from the hub, the Universal
Sentence Encoder from TF Hub, NLTK data, HowNet candidates. Offline, a recipe then fails at build
time or half-way through a dataset. Here each resource is described once (``RESOURCES``: what it is,
the option that points at a local copy, what happens online), :func:`available` says whether it can
be had without loading it, and the loaders read a local copy (word vectors, masked LM, sentence
encoder, homoglyph table). ``LoadedResources`` loads each once per audit, shared by every recipe
(and every compared model). Which recipe needs which resource, and the checks over them, are in
``recipes.py``.
"""
from __future__ import annotations

import dataclasses
import gzip
import importlib.util
import os
from dataclasses import dataclass

from ..errors import AttrtoolsError


class RecipeError(AttrtoolsError, ValueError):
    """A recipe that cannot run as asked (unknown name, missing resource, unsupported model): one
    line, exit code 1."""


# ------------------------------------------------------------------------------------ resources
@dataclass(frozen=True)
class Resource:
    key: str
    what: str
    option: str
    local_copy: str          # what the option must point at
    online: str              # what happens when downloads are allowed
    drop_option: str | None = None


RESOURCES = {
    "word-embeddings": Resource(
        "word-embeddings", "counter-fitted word embeddings (paragramcf, Mrksic et al. 2016)", "--word-embeddings PATH",
        "a word-vector text file (word2vec/GloVe format: one 'word v1 v2 ...' line per word, .gz allowed) or an "
        ".npz with arrays 'words' and 'vectors'",
        "TextAttack downloads paragramcf into its cache"),
    "sentence-encoder": Resource(
        "sentence-encoder", "sentence encoder of the semantic-similarity constraint (Universal Sentence Encoder; "
        "SBERT stsb-distilbert-base for a2t)", "--sentence-encoder PATH_OR_ID",
        "a transformers encoder folder or hub id (mean-pooled, e.g. a sentence-transformers MiniLM); the recipe's "
        "threshold is kept", "needs tensorflow_hub (USE) or sentence_transformers (a2t) installed",
        "--no-use-constraint"),
    "mlm": Resource(
        "mlm", "masked language model proposing the substitutions (bert-base-uncased; distilroberta-base for clare)",
        "--mlm PATH_OR_ID", "a transformers masked-LM folder or hub id", "TextAttack loads it from the hub"),
    "pos-tagger": Resource(
        "pos-tagger", "NLTK part-of-speech tagger (averaged_perceptron_tagger_eng + universal_tagset)",
        "--nltk-data PATH", "an NLTK data folder holding taggers/averaged_perceptron_tagger_eng and "
        "taggers/universal_tagset", "nltk.download fetches both", "--no-pos-constraint"),
    "wordnet": Resource(
        "wordnet", "WordNet 3.0 for NLTK (no PyPI package ships it; Debian's wordnet-base has the files)",
        "--nltk-data PATH", "an NLTK data folder holding corpora/wordnet (with its lexnames file)",
        "nltk.download fetches it"),
    "language-model": Resource(
        "language-model", "language-model constraint (alzantot: Google 1B LM on TensorFlow; faster-alzantot: "
        "Learning-to-Write LM; kuleshov: GPT-2)", "--lm PATH_OR_ID",
        "a local GPT-2 folder (kuleshov only; the other two LMs come only from TextAttack's download)",
        "TextAttack downloads the LM", "--no-lm-constraint"),
    "hownet": Resource(
        "hownet", "HowNet sememe word candidates (word_candidates_sense.pkl)", "(none: online only)",
        "no local form: TextAttack's download is a pickle, which attrtools will not load from a user path",
        "TextAttack downloads it"),
    "homoglyphs": Resource(
        "homoglyphs", "Unicode's intentional homoglyph table (intentional.txt; missing from the textattack 0.3.11 "
        "wheel)", "--homoglyphs PATH", "Unicode's intentional.txt", "not downloaded by TextAttack either"),
    "flair-ner": Resource(
        "flair-ner", "flair's NER tagger (CheckList's name and location swaps)", "(none)",
        "no local form: flair cannot be installed next to transformers 5 (it pins transformers<5)",
        "needs the real flair package and its hub download"),
}


@dataclass
class AttackResources:
    """Where the resources of the recipes come from (the audit's resource options)."""

    word_embeddings: str | None = None
    sentence_encoder: str | None = None
    no_use_constraint: bool = False
    mlm: str | None = None
    nltk_data: str | None = None
    no_pos_constraint: bool = False
    lm: str | None = None
    no_lm_constraint: bool = False
    homoglyphs: str | None = None
    allow_downloads: bool | None = None   # None: from HF_HUB_OFFLINE (unset or 0 = online)

    def online(self) -> bool:
        if self.allow_downloads is not None:
            return self.allow_downloads
        return os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("", "0", "false", "no")

    def to_config(self) -> dict:
        return dataclasses.asdict(self)


# ------------------------------------------------------------------------------------ availability
_ADDED_NLTK_FOLDERS: set = set()


def use_nltk_data(resources: AttackResources):
    """Put ``--nltk-data`` first on NLTK's search path (TextAttack's components search there)."""
    import nltk

    if resources.nltk_data:
        folder = os.path.abspath(resources.nltk_data)
        if folder not in nltk.data.path:
            nltk.data.path.insert(0, folder)
            _ADDED_NLTK_FOLDERS.add(folder)


def nltk_has(resources: AttackResources, path: str) -> bool:
    """Whether NLTK finds ``path`` in ``--nltk-data`` or its own default folders (not in folders
    another audit of this process added)."""
    import nltk

    folders = [os.path.abspath(resources.nltk_data)] if resources.nltk_data else []
    folders += [p for p in nltk.data.path if p not in _ADDED_NLTK_FOLDERS]
    try:
        nltk.data.find(path, paths=folders)
        return True
    except LookupError:
        return False


def _is_local_or_cached(name: str) -> bool:
    """A local folder, or a hub id already in the local hub cache."""
    if os.path.isdir(name):
        return True
    try:
        from huggingface_hub import try_to_load_from_cache

        return isinstance(try_to_load_from_cache(name, "config.json"), str)
    except Exception:
        return False


def available(key: str, res: AttackResources, recipe: str) -> bool:
    """Whether resource ``key`` can be had for ``recipe`` with ``res`` (a local copy, or online), without
    loading it: only files, the NLTK data path, the hub cache and installed packages are looked at."""
    online = res.online()
    if key == "word-embeddings":
        return bool(res.word_embeddings and os.path.exists(res.word_embeddings)) or online
    if key == "sentence-encoder":
        if res.sentence_encoder:
            return _is_local_or_cached(res.sentence_encoder) or online
        need = "sentence_transformers" if recipe == "a2t" else "tensorflow_hub"
        return online and importlib.util.find_spec(need) is not None
    if key == "mlm":
        return bool(res.mlm and (_is_local_or_cached(res.mlm) or online)) or (online and not res.mlm)
    if key == "pos-tagger":
        return online or (nltk_has(res, "taggers/averaged_perceptron_tagger_eng")
                          and nltk_has(res, "taggers/universal_tagset"))
    if key == "wordnet":
        return online or nltk_has(res, "corpora/wordnet")
    if key == "language-model":
        if recipe == "kuleshov" and res.lm:
            return _is_local_or_cached(res.lm) or online
        if recipe == "alzantot":
            return online and importlib.util.find_spec("tensorflow") is not None
        return online
    if key == "hownet":
        return online
    if key == "homoglyphs":
        return bool(res.homoglyphs and os.path.exists(res.homoglyphs)) or _packaged_homoglyphs() is not None
    if key == "flair-ner":
        from .textattack_compat import flair_is_stub

        return online and not flair_is_stub()
    raise KeyError(key)


NLTK_PACKAGES = {"pos-tagger": (("taggers/averaged_perceptron_tagger_eng", "averaged_perceptron_tagger_eng"),
                                 ("taggers/universal_tagset", "universal_tagset")),
                  "wordnet": (("corpora/wordnet", "wordnet"),)}


# ------------------------------------------------------------------------------------ loaders
def _packaged_homoglyphs() -> str | None:
    spec = importlib.util.find_spec("textattack")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = os.path.join(list(spec.submodule_search_locations)[0], "shared", "intentional_homoglyphs.txt")
    return path if os.path.exists(path) else None


def load_word_embedding(path: str):
    """A ``textattack.shared.WordEmbedding`` from a word-vector text file (word2vec/GloVe; ``.gz`` ok;
    a word2vec header line ``N D`` is skipped) or an ``.npz`` with ``words`` and ``vectors``.

    Raises RecipeError for an unreadable or ragged file."""
    import numpy as np

    from .textattack_compat import load_textattack

    ta = load_textattack()
    try:
        if path.endswith(".npz"):
            with np.load(path, allow_pickle=False) as data:
                words = [str(w) for w in data["words"]]
                matrix = np.asarray(data["vectors"], dtype=np.float32)
        else:
            opener = gzip.open if path.endswith(".gz") else open
            words, rows = [], []
            with opener(path, "rt", encoding="utf-8") as f:
                for number, line in enumerate(f):
                    parts = line.rstrip().split(" ")
                    if number == 0 and len(parts) == 2 and all(p.isdigit() for p in parts):
                        continue
                    if len(parts) < 2:
                        continue
                    words.append(parts[0])
                    rows.append([float(x) for x in parts[1:]])
            if len({len(r) for r in rows}) > 1:
                raise ValueError("rows of different lengths")
            matrix = np.asarray(rows, dtype=np.float32)
    except (OSError, ValueError, KeyError) as err:
        raise RecipeError(f"--word-embeddings {path}: cannot read word vectors ({err})") from None
    if matrix.ndim != 2 or len(words) != matrix.shape[0] or not len(words):
        raise RecipeError(f"--word-embeddings {path}: expected one vector per word, got {len(words)} words "
                          f"and a matrix of shape {matrix.shape}")
    word2index = {w: i for i, w in enumerate(words)}
    return _word_embedding_class(ta)(matrix, word2index, dict(enumerate(words)))


def _word_embedding_class(ta):
    """``WordEmbedding`` whose on-the-fly nearest neighbours work.

    In TextAttack 0.3.11 ``WordEmbedding.nearest_neighbours`` without a precomputed ``nn_matrix``
    slices the ``(values, indices)`` pair that ``topk`` returns instead of the indices, and fails;
    it also asks for more neighbours than a small vocabulary has. Here: the ``topn`` words nearest
    (L2, as TextAttack) to the word, itself excluded, at most vocabulary size - 1; cached per word."""
    import torch

    class LocalWordEmbedding(ta.shared.WordEmbedding):
        def nearest_neighbours(self, index, topn):
            if isinstance(index, str):
                index = self._word2index[index]
            key = (index, topn)
            if key not in self._nn_cache:
                matrix = torch.as_tensor(self.embedding_matrix)
                dist = torch.norm(matrix - matrix[index], dim=1)
                dist[index] = float("inf")
                k = min(topn, matrix.shape[0] - 1)
                self._nn_cache[key] = torch.topk(dist, k, largest=False).indices.tolist()
            return self._nn_cache[key]

    return LocalWordEmbedding


def _mlm_max_length(model, tokenizer) -> int:
    """TextAttack pads masked-LM inputs to ``max_length`` (512 by default), beyond a small model's
    position table: use the model's own limit (RoBERTa-style tables hold pad offset + 1 extra rows)."""
    positions = getattr(model.config, "max_position_embeddings", 512) or 512
    if getattr(model.config, "model_type", "") in ("roberta", "xlm-roberta", "camembert"):
        positions -= 2
    limit = tokenizer.model_max_length if tokenizer.model_max_length and tokenizer.model_max_length < 10**6 else 512
    return int(min(512, positions, limit))


def load_masked_lm(name: str):
    """``(model, tokenizer)`` of a masked LM from a folder or hub id (eval mode)."""
    from ..models import load_auxiliary

    try:
        return load_auxiliary(name, "masked-lm")
    except (OSError, ValueError) as err:
        raise RecipeError(f"--mlm {name}: cannot load a masked language model ({err})") from None


def transformers_sentence_encoder(name: str, **constraint_args):
    """A TextAttack ``SentenceEncoder`` constraint on a transformers encoder, mean-pooled over tokens
    (as sentence-transformers models are), with the recipe's threshold/metric/window."""
    import torch

    from ..models import load_auxiliary
    from .textattack_compat import load_textattack

    ta = load_textattack()
    try:
        encoder, tokenizer = load_auxiliary(name, "encoder")
    except (OSError, ValueError) as err:
        raise RecipeError(f"--sentence-encoder {name}: cannot load an encoder ({err})") from None

    class _Encoder:
        @torch.no_grad()
        def encode(self, sentences):
            device = next(encoder.parameters()).device
            batch = tokenizer(list(sentences), padding=True, truncation=True, max_length=256, return_tensors="pt")
            batch = {k: v.to(device) for k, v in batch.items()}
            hidden = encoder(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            return ((hidden * mask).sum(1) / mask.sum(1).clamp(min=1)).float().cpu()

    class TransformersSentenceEncoder(ta.constraints.semantics.sentence_encoders.SentenceEncoder):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.model = _Encoder()
            self.encoder_name = name

        def encode(self, sentences):
            return self.model.encode(sentences)

        def extra_repr_keys(self):
            return super().extra_repr_keys() + ["encoder_name"]

    return TransformersSentenceEncoder(**constraint_args)


def homoglyph_swap(path: str | None):
    """TextAttack's ``WordSwapHomoglyphSwap`` reading the homoglyph table from ``path`` (the 0.3.11
    wheel lacks its own copy; the module's ``open`` is redirected for this one construction)."""
    import builtins

    from .textattack_compat import load_textattack

    ta = load_textattack()
    module = importlib.import_module("textattack.transformations.word_swaps.word_swap_homoglyph_swap")
    if path is None:
        return ta.transformations.WordSwapHomoglyphSwap()

    def redirected(file, *args, **kwargs):
        if str(file).endswith("intentional_homoglyphs.txt"):
            file = path
        return builtins.open(file, *args, **kwargs)

    module.open = redirected
    try:
        return ta.transformations.WordSwapHomoglyphSwap()
    finally:
        del module.open


# ------------------------------------------------------------------------------------ loaded once
class LoadedResources:
    """Resources loaded once per audit and shared by every recipe (and every compared model):
    the word embeddings and the masked LM, each loaded on first use."""

    def __init__(self, res: AttackResources):
        self.res = res
        self._embedding = None
        self._mlm = None

    def embedding(self):
        """The ``--word-embeddings`` vectors, else TextAttack's counter-fitted ones (online); loaded once."""
        if self._embedding is None:
            if self.res.word_embeddings:
                self._embedding = load_word_embedding(self.res.word_embeddings)
            else:
                from .textattack_compat import load_textattack

                self._embedding = load_textattack().shared.WordEmbedding.counterfitted_GLOVE_embedding()
        return self._embedding

    def mlm(self, default: str):
        """``(model, tokenizer, max_length)``: the masked LM, and the longest input its position table takes."""
        name = self.res.mlm or default
        if self._mlm is None or self._mlm[0] != name:
            model, tokenizer = load_masked_lm(name)
            self._mlm = (name, model, tokenizer, _mlm_max_length(model, tokenizer))
        return self._mlm[1:]
