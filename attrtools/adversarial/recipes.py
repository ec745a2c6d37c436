"""Every TextAttack classification recipe by its CLI name, with the resources each one needs.

TextAttack's recipes load their resources while they are built or, worse, while they attack:
counter-fitted embeddings from its S3 bucket, a masked LM or GPT-2 from the hub, the Universal
Sentence Encoder from TF Hub, NLTK data, HowNet candidates. Offline, a recipe then fails at build
time or half-way through a dataset. Here each recipe declares what it needs (``RECIPES``), the
audit resolves every need **before any work starts** (:func:`check_resources`), and a missing one
stops the run with one message per resource: what it is, the option that points at a local copy,
and which recipes run without it.

Recipes are TextAttack's own (``textattack.attack_recipes``); where a recipe would download a
resource, it is composed here from the same TextAttack components with the same parameters as its
``build`` (cited per builder) and the resource passed in as an object. Constraints whose resource
the user explicitly gave up (``--no-use-constraint``, ``--no-pos-constraint``,
``--no-lm-constraint``) are left out, and :func:`dropped_constraints` reports which, so the run's
config and report record it.

Names, spelling and parameters follow TextAttack 0.3.11 (``textattack/attack_args.py``,
``ATTACK_RECIPE_NAMES``); the seq2seq recipes (``morpheus``, ``seq2sick``) are not classification
attacks and are not listed.
"""
from __future__ import annotations

import dataclasses
import gzip
import importlib.util
import os
from dataclasses import dataclass, field

from ..errors import AttrtoolsError, did_you_mean


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


# ------------------------------------------------------------------------------------ recipes
@dataclass(frozen=True)
class RecipeSpec:
    name: str
    textattack: str | None           # class in textattack.attack_recipes (None: attrtools' own)
    needs: tuple = ()                 # resource keys
    droppable: tuple = ()             # of ``needs``: may be dropped with the resource's drop option
    note: str = ""
    refuse: str | None = None         # always refused, with this reason (model or platform limit)


RECIPES: dict[str, RecipeSpec] = {r.name: r for r in [
    RecipeSpec("triggers", None, note="attribution triggers inserted by a greedy search (attrtools)"),
    RecipeSpec("wir-delete", None, note="DeepWordBug's transformation, words ranked by deletion (leave-one-out)"),
    RecipeSpec("wir-attribution", None, note="DeepWordBug's transformation, words ranked by a cached attribution"),
    RecipeSpec("deepwordbug", "DeepWordBugGao2018"),
    RecipeSpec("pruthi", "Pruthi2019"),
    RecipeSpec("input-reduction", "InputReductionFeng2018"),
    RecipeSpec("bad-characters", "BadCharacters2021", ("homoglyphs",),
               note="untargeted, homoglyph swaps searched by differential evolution"),
    RecipeSpec("textfooler", "TextFoolerJin2019", ("word-embeddings", "pos-tagger", "sentence-encoder"),
               ("pos-tagger", "sentence-encoder")),
    RecipeSpec("a2t", "A2TYoo2021", ("word-embeddings", "pos-tagger", "sentence-encoder"),
               ("pos-tagger", "sentence-encoder")),
    RecipeSpec("alzantot", "GeneticAlgorithmAlzantot2018", ("word-embeddings", "language-model"),
               ("language-model",)),
    RecipeSpec("faster-alzantot", "FasterGeneticAlgorithmJia2019", ("word-embeddings", "language-model"),
               ("language-model",)),
    RecipeSpec("iga", "IGAWang2019", ("word-embeddings",)),
    RecipeSpec("kuleshov", "Kuleshov2017", ("word-embeddings", "language-model"), ("language-model",)),
    RecipeSpec("textbugger", "TextBuggerLi2018", ("word-embeddings", "homoglyphs", "sentence-encoder"),
               ("sentence-encoder",)),
    RecipeSpec("bae", "BAEGarg2019", ("mlm", "pos-tagger", "sentence-encoder"), ("pos-tagger", "sentence-encoder")),
    RecipeSpec("bert-attack", "BERTAttackLi2020", ("mlm", "sentence-encoder"), ("sentence-encoder",)),
    RecipeSpec("clare", "CLARE2020", ("mlm", "pos-tagger", "sentence-encoder"), ("sentence-encoder",),
               note="the merge step's universal POS tags come from NLTK when flair is unavailable"),
    RecipeSpec("pwws", "PWWSRen2019", ("wordnet",)),
    RecipeSpec("leap", "LEAP2023", ("wordnet",)),
    RecipeSpec("pso", "PSOZang2020", ("hownet",)),
    RecipeSpec("checklist", "CheckList2020", ("flair-ner",)),
    RecipeSpec("hotflip", "HotFlipEbrahimi2017", ("word-embeddings", "pos-tagger"),
               refuse="TextAttack's HotFlip takes gradients through its own word-level LSTM/CNN models only "
                      "(textattack/shared/validators.py refuses transformer classifiers); use textfooler or a2t"),
]}

OWN_RECIPES = ("triggers", "wir-delete", "wir-attribution")
TEXTATTACK_RECIPES = tuple(n for n, r in RECIPES.items() if r.textattack)


def parse_recipes(text: str) -> list[str]:
    """Comma list of recipe names (TextAttack CLI spelling); ``all`` = every recipe. Unknown -> RecipeError."""
    names = [t.strip().lower() for t in (text or "").split(",") if t.strip()]
    if "all" in names:
        names = [n for n in RECIPES if n != "triggers"]
    unknown = [n for n in names if n not in RECIPES]
    if unknown:
        raise RecipeError(f"unknown recipe(s) {', '.join(unknown)}; choose from {', '.join(RECIPES)} (or all)"
                          f"{did_you_mean(unknown, RECIPES)}")
    return list(dict.fromkeys(names))


_ADDED_NLTK_FOLDERS: set = set()


def _use_nltk_data(resources: AttackResources):
    """Put ``--nltk-data`` first on NLTK's search path (TextAttack's components search there)."""
    import nltk

    if resources.nltk_data:
        folder = os.path.abspath(resources.nltk_data)
        if folder not in nltk.data.path:
            nltk.data.path.insert(0, folder)
            _ADDED_NLTK_FOLDERS.add(folder)


def _nltk_has(resources: AttackResources, path: str) -> bool:
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


def _available(key: str, res: AttackResources, recipe: str) -> bool:
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
        return online or (_nltk_has(res, "taggers/averaged_perceptron_tagger_eng")
                          and _nltk_has(res, "taggers/universal_tagset"))
    if key == "wordnet":
        return online or _nltk_has(res, "corpora/wordnet")
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


def _dropped(spec: RecipeSpec, key: str, res: AttackResources) -> bool:
    if key not in spec.droppable:
        return False
    option = RESOURCES[key].drop_option
    return {"--no-use-constraint": res.no_use_constraint, "--no-pos-constraint": res.no_pos_constraint,
            "--no-lm-constraint": res.no_lm_constraint}[option]


def dropped_constraints(name: str, res: AttackResources) -> list[str]:
    """Resource keys whose constraint ``name`` runs without, by the user's explicit choice."""
    spec = RECIPES[name]
    return [k for k in spec.needs if _dropped(spec, k, res)]


@dataclass
class MissingResource:
    resource: Resource
    recipes: list[str]
    runs_without: list[str] = field(default_factory=list)

    def message(self) -> str:
        r = self.resource
        how = f"pass {r.option} ({r.local_copy})"
        if r.drop_option:
            how += f", or {r.drop_option} to run without that constraint (recorded in the config and report)"
        return (f"{', '.join(self.recipes)}: missing {r.what}. {how[0].upper() + how[1:]}. "
                f"Online: {r.online}. Runnable now without it: {', '.join(self.runs_without) or 'none'}.")

    def short(self) -> str:
        """One item of :func:`resource_report`: the recipes, what is missing (its name without the
        parenthesised detail), the option that supplies it and the one that drops it."""
        r = self.resource
        how = "no local form" if r.option.startswith("(") else f"pass {r.option}"
        if r.drop_option:
            how += f" or {r.drop_option}"
        return f"{', '.join(self.recipes)}: missing {r.what.split(' (')[0]} ({how})."


def check_resources(names, res: AttackResources, model=None) -> list[MissingResource]:
    """What the recipes ``names`` need and cannot get: ``[]`` when every one can run.

    Recipes refused for a model or platform reason (``hotflip``) are reported by
    :func:`refusals`. Nothing is loaded; only files, the NLTK data path and installed packages are
    looked at."""
    missing: dict[str, MissingResource] = {}
    for name in names:
        spec = RECIPES[name]
        for key in spec.needs:
            if _dropped(spec, key, res) or _available(key, res, name):
                continue
            entry = missing.setdefault(key, MissingResource(RESOURCES[key], []))
            entry.recipes.append(name)
    if missing:
        runnable = runnable_recipes(res)
        for key, entry in missing.items():
            entry.runs_without = [n for n in runnable if key not in RECIPES[n].needs]
    return list(missing.values())


def refusals(names) -> dict[str, str]:
    return {n: RECIPES[n].refuse for n in names if RECIPES[n].refuse}


def resource_report(names, res: AttackResources, model=None) -> str | None:
    """A short list, or None when all can run: one item per refused recipe and per missing resource
    (its recipes, what is missing, the option that supplies it), then once the recipes runnable now
    and where each option is described (``attrtools audit --help``, docs/tools/audit.md). The
    command line joins the lines into one; the full description of a resource is
    ``MissingResource.message()``."""
    lines = [f"{n}: {why}." for n, why in refusals(names).items()]
    lines += [m.short() for m in check_resources([n for n in names if not RECIPES[n].refuse], res, model)]
    if not lines:
        return None
    runnable = runnable_recipes(res)
    return ("cannot run every recipe asked for (nothing was attacked):\n  - " + "\n  - ".join(lines)
            + f"\n  Runnable with what is available now: {', '.join(runnable) or 'none'}."
            + "\n  What each option takes: attrtools audit --help (docs/tools/audit.md, \"Resources\").")


NLTK_PACKAGES = {"pos-tagger": (("taggers/averaged_perceptron_tagger_eng", "averaged_perceptron_tagger_eng"),
                                 ("taggers/universal_tagset", "universal_tagset")),
                  "wordnet": (("corpora/wordnet", "wordnet"),)}


def prepare_resources(names, res: AttackResources):
    """Online only: fetch the NLTK data the recipes need and cannot find (TextAttack's own first-import
    download is skipped by attrtools' import shim, and nltk 3.10 renamed the tagger it asked for)."""
    if not res.online():
        return
    wanted = {k for n in names if n in RECIPES for k in RECIPES[n].needs
              if k in NLTK_PACKAGES and not _dropped(RECIPES[n], k, res)}
    for key in sorted(wanted):
        for path, package in NLTK_PACKAGES[key]:
            if not _nltk_has(res, path):
                import nltk

                nltk.download(package, quiet=True)


def runnable_recipes(res: AttackResources) -> list[str]:
    """Every recipe whose resources are all available (or dropped) with ``res``."""
    return [n for n, s in RECIPES.items() if not s.refuse and all(
        _dropped(s, key, res) or _available(key, res, n) for key in s.needs)]


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


def _homoglyph_swap(path: str | None):
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


# ------------------------------------------------------------------------------------ builders
class _Parts:
    """Resources loaded once per audit and shared by every recipe (and every compared model)."""

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


def build_recipe(name: str, wrapper, res: AttackResources | None = None, parts: _Parts | None = None):
    """The ``textattack.Attack`` of TextAttack recipe ``name`` on ``wrapper``, resources from ``res``.

    Call :func:`resource_report` first: this function assumes the resources are there (a missing
    one surfaces as TextAttack's own error)."""
    from .textattack_compat import load_textattack

    ta = load_textattack()
    res = res or AttackResources()
    parts = parts or _Parts(res)
    spec = RECIPES[name]
    if spec.refuse:
        raise RecipeError(f"{name}: {spec.refuse}")
    if spec.textattack is None:
        raise RecipeError(f"{name} is an attrtools recipe: build it with attrtools.adversarial.audit.build_attack")
    C, T, S = ta.constraints, ta.transformations, ta.search_methods
    drop = set(dropped_constraints(name, res))
    recipe_cls = getattr(ta.attack_recipes, spec.textattack)
    _use_nltk_data(res)

    def pos(**kw):
        return [] if "pos-tagger" in drop else [C.grammaticality.PartOfSpeech(**kw)]

    def sentence(**kw):
        if "sentence-encoder" in drop:
            return []
        if res.sentence_encoder:
            return [transformers_sentence_encoder(res.sentence_encoder, **kw)]
        return [C.semantics.sentence_encoders.UniversalSentenceEncoder(**kw)]

    stop = C.pre_transformation.StopwordModification
    repeat = C.pre_transformation.RepeatModification
    premise_only = C.pre_transformation.InputColumnModification(["premise", "hypothesis"], {"premise"})
    untargeted = ta.goal_functions.UntargetedClassification
    if name in ("deepwordbug", "pruthi", "input-reduction", "pso", "checklist", "pwws", "leap"):
        return recipe_cls.build(wrapper)
    if name == "textfooler":  # TextFoolerJin2019.build; its own 266-word stopword list
        stopwords = _recipe_stopwords(recipe_cls)
        constraints = [repeat(), stop(stopwords=stopwords), premise_only,
                       C.semantics.WordEmbeddingDistance(embedding=parts.embedding(), min_cos_sim=0.5),
                       *pos(allow_verb_noun_swap=True),
                       *sentence(threshold=0.840845057, metric="angular", compare_against_original=False,
                                 window_size=15, skip_text_shorter_than_window=True)]
        return ta.Attack(untargeted(wrapper), constraints, T.WordSwapEmbedding(max_candidates=50,
                                                                               embedding=parts.embedding()),
                         S.GreedyWordSwapWIR(wir_method="delete"))
    if name == "a2t":  # A2TYoo2021.build(mlm=False)
        constraints = [repeat(), stop(), premise_only, *pos(allow_verb_noun_swap=False),
                       C.pre_transformation.MaxModificationRate(max_rate=0.1, min_threshold=4)]
        if "sentence-encoder" not in drop:
            if res.sentence_encoder:
                constraints.append(transformers_sentence_encoder(res.sentence_encoder, threshold=0.9, metric="cosine"))
            else:
                constraints.append(C.semantics.sentence_encoders.SBERT(model_name="stsb-distilbert-base",
                                                                       threshold=0.9, metric="cosine"))
        constraints.append(C.semantics.WordEmbeddingDistance(embedding=parts.embedding(), min_cos_sim=0.8))
        max_len = getattr(wrapper, "max_length", None) or 512
        return ta.Attack(untargeted(wrapper, model_batch_size=32), constraints,
                         T.WordSwapEmbedding(max_candidates=20, embedding=parts.embedding()),
                         S.GreedyWordSwapWIR(wir_method="gradient", truncate_words_to=max_len))
    if name in ("alzantot", "faster-alzantot"):
        # GeneticAlgorithmAlzantot2018.build / FasterGeneticAlgorithmJia2019.build
        faster = name == "faster-alzantot"
        constraints = [repeat(), stop()] + ([] if faster else [premise_only]) + [
            C.overlap.MaxWordsPerturbed(max_percent=0.2),
            C.semantics.WordEmbeddingDistance(embedding=parts.embedding(), max_mse_dist=0.5,
                                              compare_against_original=faster)]
        if "language-model" not in drop:
            lm = C.grammaticality.language_models
            constraints.append(lm.LearningToWriteLanguageModel(window_size=6, max_log_prob_diff=5.0,
                                                               compare_against_original=True) if faster else
                               lm.Google1BillionWordsLanguageModel(top_n_per_index=4, compare_against_original=False))
        return ta.Attack(untargeted(wrapper), constraints, T.WordSwapEmbedding(max_candidates=8,
                                                                               embedding=parts.embedding()),
                         S.AlzantotGeneticAlgorithm(pop_size=60, max_iters=40 if faster else 20,
                                                    post_crossover_check=False))
    if name == "iga":  # IGAWang2019.build
        constraints = [stop(), C.overlap.MaxWordsPerturbed(max_percent=0.2),
                       C.semantics.WordEmbeddingDistance(embedding=parts.embedding(), max_mse_dist=0.5,
                                                         compare_against_original=False)]
        return ta.Attack(untargeted(wrapper), constraints, T.WordSwapEmbedding(max_candidates=50,
                                                                               embedding=parts.embedding()),
                         S.ImprovedGeneticAlgorithm(pop_size=60, max_iters=20, max_replace_times_per_index=5,
                                                    post_crossover_check=False))
    if name == "kuleshov":  # Kuleshov2017.build
        constraints = [repeat(), stop(), C.overlap.MaxWordsPerturbed(max_percent=0.5),
                       C.semantics.sentence_encoders.ThoughtVector(embedding=parts.embedding(), threshold=0.2,
                                                                   metric="max_euclidean")]
        if "language-model" not in drop:
            constraints.append(C.grammaticality.language_models.GPT2(model_name=res.lm or "gpt2",
                                                                      max_log_prob_diff=2.0))
        return ta.Attack(untargeted(wrapper, target_max_score=0.7), constraints,
                         T.WordSwapEmbedding(max_candidates=15, embedding=parts.embedding()), S.GreedySearch())
    if name == "textbugger":  # TextBuggerLi2018.build
        transformation = T.CompositeTransformation([
            T.WordSwapRandomCharacterInsertion(random_one=True, letters_to_insert=" ", skip_first_char=True,
                                               skip_last_char=True),
            T.WordSwapRandomCharacterDeletion(random_one=True, skip_first_char=True, skip_last_char=True),
            T.WordSwapNeighboringCharacterSwap(random_one=True, skip_first_char=True, skip_last_char=True),
            _homoglyph_swap(res.homoglyphs), T.WordSwapEmbedding(max_candidates=5, embedding=parts.embedding())])
        return ta.Attack(untargeted(wrapper), [repeat(), stop(), *sentence(threshold=0.8)], transformation,
                         S.GreedyWordSwapWIR(wir_method="delete"))
    if name in ("bae", "bert-attack"):  # BAEGarg2019.build / BERTAttackLi2020.build
        mlm, tok, max_length = parts.mlm("bert-base-uncased")
        if name == "bae":
            transformation = T.WordSwapMaskedLM(method="bae", masked_language_model=mlm, tokenizer=tok,
                                                max_candidates=50, min_confidence=0.0, max_length=max_length)
            constraints = [repeat(), stop(), *pos(allow_verb_noun_swap=True),
                           *sentence(threshold=0.936338023, metric="cosine", compare_against_original=True,
                                     window_size=15, skip_text_shorter_than_window=True)]
            return recipe_cls(untargeted(wrapper), constraints, transformation, S.GreedyWordSwapWIR(wir_method="delete"))
        transformation = T.WordSwapMaskedLM(method="bert-attack", masked_language_model=mlm, tokenizer=tok,
                                            max_candidates=8, max_length=max_length)
        constraints = [repeat(), stop(), C.overlap.MaxWordsPerturbed(max_percent=0.4),
                       *sentence(threshold=0.2, metric="cosine", compare_against_original=True, window_size=None)]
        return ta.Attack(untargeted(wrapper), constraints, transformation, S.GreedyWordSwapWIR(wir_method="unk"))
    if name == "clare":  # CLARE2020.build (its masked LM shared by the three transformations)
        mlm, tok, max_length = parts.mlm("distilroberta-base")
        transformation = T.CompositeTransformation([
            T.WordSwapMaskedLM(method="bae", masked_language_model=mlm, tokenizer=tok, max_candidates=50,
                               min_confidence=5e-4, max_length=max_length),
            T.WordInsertionMaskedLM(masked_language_model=mlm, tokenizer=tok, max_candidates=50, min_confidence=0.0,
                                    max_length=max_length),
            _word_merge(ta)(masked_language_model=mlm, tokenizer=tok, max_candidates=50, min_confidence=5e-3,
                            max_length=max_length)])
        constraints = [repeat(), stop(), *sentence(threshold=0.7, metric="cosine", compare_against_original=True,
                                                   window_size=15, skip_text_shorter_than_window=True)]
        return ta.Attack(untargeted(wrapper), constraints, transformation, S.GreedySearch())
    if name == "bad-characters":
        # BadCharacters2021's homoglyph perturbation and differential-evolution search, with
        # TextAttack's untargeted classification goal (its build only offers targeted goals).
        return ta.Attack(untargeted(wrapper), [], _homoglyph_swap(res.homoglyphs),
                         S.DifferentialEvolution(popsize=32, maxiter=10, verbose=False, max_perturbs=1))
    raise RecipeError(f"no builder for {name}")  # pragma: no cover - every RECIPES entry is handled above


def _word_merge(ta):
    """TextAttack's ``WordMergeMaskedLM``; where flair is unavailable (attrtools' stub), the
    universal part-of-speech tags that decide which neighbours may merge come from NLTK's tagger
    (same universal tagset) instead of flair's ``upos-fast``."""
    from .textattack_compat import flair_is_stub

    if not flair_is_stub():
        return ta.transformations.WordMergeMaskedLM

    class NltkTagged:
        """An ``AttackedText`` whose ``pos_of_word_index`` comes from ``nltk.pos_tag(words, 'universal')``."""

        def __init__(self, text):
            self._text = text
            self._tags = None

        def pos_of_word_index(self, index):
            if self._tags is None:
                import nltk

                self._tags = [tag for _, tag in nltk.pos_tag(list(self._text.words), tagset="universal")]
            return self._tags[index]

        def __getattr__(self, name):
            return getattr(self._text, name)

    class WordMergeMaskedLM(ta.transformations.WordMergeMaskedLM):
        def _get_transformations(self, current_text, indices_to_modify):
            return super()._get_transformations(NltkTagged(current_text), indices_to_modify)

    return WordMergeMaskedLM


def _recipe_stopwords(recipe_cls) -> set:
    """TextFooler's own stopword list, read from its recipe's source (it is inline in ``build``)."""
    import ast
    import inspect

    tree = ast.parse(inspect.getsource(recipe_cls))
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "set" and node.args \
                and isinstance(node.args[0], ast.List) and len(node.args[0].elts) > 100:
            return {e.value for e in node.args[0].elts}
    from .textattack_compat import ENGLISH_STOPWORDS

    return set(ENGLISH_STOPWORDS)
