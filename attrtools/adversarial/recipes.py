"""Every TextAttack classification recipe by its CLI name, with the resources each one needs.

TextAttack's recipes load their resources while they are built or, worse, while they attack:
counter-fitted embeddings from its S3 bucket, a masked LM or GPT-2 from the hub, the Universal
Sentence Encoder from TF Hub, NLTK data, HowNet candidates. Offline, a recipe then fails at build
time or half-way through a dataset. Here each recipe declares what it needs (``RECIPES``), the
audit resolves every need **before any work starts** (:func:`check_resources`), and a missing one
stops the run with one message per resource: what it is, the option that points at a local copy,
and which recipes run without it. The resources themselves (descriptions, availability, loaders)
are ``resources.py``.

Recipes are TextAttack's own (``textattack.attack_recipes``); where a recipe would download a
resource, it is composed here from the same TextAttack components with the same parameters as its
``build`` (cited per builder) and the resource passed in as an object. Each recipe is one small
builder in TextAttack's own shape (goal function, constraints, transformation, search method),
registered with its needs in ``RECIPES``; a new recipe is one builder and one table entry. Constraints whose resource
the user explicitly gave up (``--no-use-constraint``, ``--no-pos-constraint``,
``--no-lm-constraint``) are left out, and :func:`dropped_constraints` reports which, so the run's
config and report record it.

Names, spelling and parameters follow TextAttack 0.3.11 (``textattack/attack_args.py``,
``ATTACK_RECIPE_NAMES``); the seq2seq recipes (``morpheus``, ``seq2sick``) are not classification
attacks and are not listed.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from ..errors import did_you_mean
from .resources import (NLTK_PACKAGES, RESOURCES, AttackResources, LoadedResources, RecipeError, Resource, available,
                        homoglyph_swap, nltk_has, transformers_sentence_encoder, use_nltk_data)


# ------------------------------------------------------------------------------------ recipe specs
@dataclass(frozen=True)
class RecipeSpec:
    name: str
    textattack: str | None           # class in textattack.attack_recipes (None: attrtools' own)
    needs: tuple = ()                 # resource keys
    droppable: tuple = ()             # of ``needs``: may be dropped with the resource's drop option
    note: str = ""
    refuse: str | None = None         # always refused, with this reason (model or platform limit)
    build: Callable | None = None     # (BuildContext) -> textattack.Attack; None: attrtools' own or refused


@dataclass
class BuildContext:
    """What a builder receives: TextAttack (``ta``), the model wrapper, the resource options, the
    resources loaded once (``parts``), the constraints dropped by the user's choice (``drop``) and the
    recipe's own TextAttack class; with the components every recipe composes."""

    ta: object
    wrapper: object
    res: AttackResources
    parts: LoadedResources
    drop: set
    recipe_cls: object

    @property
    def C(self):  # noqa: N802 - TextAttack's module names, as its recipes spell them
        return self.ta.constraints

    @property
    def T(self):  # noqa: N802
        return self.ta.transformations

    @property
    def S(self):  # noqa: N802
        return self.ta.search_methods

    def untargeted(self, **kw):
        return self.ta.goal_functions.UntargetedClassification(self.wrapper, **kw)

    def repeat(self):
        return self.C.pre_transformation.RepeatModification()

    def stop(self, **kw):
        return self.C.pre_transformation.StopwordModification(**kw)

    def premise_only(self):
        return self.C.pre_transformation.InputColumnModification(["premise", "hypothesis"], {"premise"})

    def embedding_swap(self, max_candidates: int):
        return self.T.WordSwapEmbedding(max_candidates=max_candidates, embedding=self.parts.embedding())

    def embedding_distance(self, **kw):
        return self.C.semantics.WordEmbeddingDistance(embedding=self.parts.embedding(), **kw)

    def pos(self, **kw) -> list:
        """The part-of-speech constraint, or none when ``--no-pos-constraint`` dropped it."""
        return [] if "pos-tagger" in self.drop else [self.C.grammaticality.PartOfSpeech(**kw)]

    def sentence(self, **kw) -> list:
        """The sentence-encoder constraint (``--sentence-encoder``, else the Universal Sentence Encoder),
        or none when ``--no-use-constraint`` dropped it."""
        if "sentence-encoder" in self.drop:
            return []
        if self.res.sentence_encoder:
            return [transformers_sentence_encoder(self.res.sentence_encoder, **kw)]
        return [self.C.semantics.sentence_encoders.UniversalSentenceEncoder(**kw)]


# ------------------------------------------------------------------------------------ builders
def _own_build(k: BuildContext):
    """TextAttack's recipe as its own ``build`` makes it (it needs no resource attrtools supplies)."""
    return k.recipe_cls.build(k.wrapper)


def _textfooler(k: BuildContext):  # TextFoolerJin2019.build; its own 266-word stopword list
    constraints = [k.repeat(), k.stop(stopwords=_recipe_stopwords(k.recipe_cls)), k.premise_only(),
                   k.embedding_distance(min_cos_sim=0.5), *k.pos(allow_verb_noun_swap=True),
                   *k.sentence(threshold=0.840845057, metric="angular", compare_against_original=False,
                               window_size=15, skip_text_shorter_than_window=True)]
    return k.ta.Attack(k.untargeted(), constraints, k.embedding_swap(50), k.S.GreedyWordSwapWIR(wir_method="delete"))


def _a2t(k: BuildContext):  # A2TYoo2021.build(mlm=False)
    constraints = [k.repeat(), k.stop(), k.premise_only(), *k.pos(allow_verb_noun_swap=False),
                   k.C.pre_transformation.MaxModificationRate(max_rate=0.1, min_threshold=4)]
    if "sentence-encoder" not in k.drop:
        if k.res.sentence_encoder:
            constraints.append(transformers_sentence_encoder(k.res.sentence_encoder, threshold=0.9, metric="cosine"))
        else:
            constraints.append(k.C.semantics.sentence_encoders.SBERT(model_name="stsb-distilbert-base",
                                                                     threshold=0.9, metric="cosine"))
    constraints.append(k.embedding_distance(min_cos_sim=0.8))
    max_len = getattr(k.wrapper, "max_length", None) or 512
    return k.ta.Attack(k.untargeted(model_batch_size=32), constraints, k.embedding_swap(20),
                       k.S.GreedyWordSwapWIR(wir_method="gradient", truncate_words_to=max_len))


def _genetic(faster: bool):
    """GeneticAlgorithmAlzantot2018.build (``faster=False``) / FasterGeneticAlgorithmJia2019.build."""
    def build(k: BuildContext):
        constraints = [k.repeat(), k.stop()] + ([] if faster else [k.premise_only()]) + [
            k.C.overlap.MaxWordsPerturbed(max_percent=0.2),
            k.embedding_distance(max_mse_dist=0.5, compare_against_original=faster)]
        if "language-model" not in k.drop:
            lm = k.C.grammaticality.language_models
            constraints.append(lm.LearningToWriteLanguageModel(window_size=6, max_log_prob_diff=5.0,
                                                               compare_against_original=True) if faster else
                               lm.Google1BillionWordsLanguageModel(top_n_per_index=4, compare_against_original=False))
        return k.ta.Attack(k.untargeted(), constraints, k.embedding_swap(8),
                           k.S.AlzantotGeneticAlgorithm(pop_size=60, max_iters=40 if faster else 20,
                                                        post_crossover_check=False))
    return build


def _iga(k: BuildContext):  # IGAWang2019.build
    constraints = [k.stop(), k.C.overlap.MaxWordsPerturbed(max_percent=0.2),
                   k.embedding_distance(max_mse_dist=0.5, compare_against_original=False)]
    return k.ta.Attack(k.untargeted(), constraints, k.embedding_swap(50),
                       k.S.ImprovedGeneticAlgorithm(pop_size=60, max_iters=20, max_replace_times_per_index=5,
                                                    post_crossover_check=False))


def _kuleshov(k: BuildContext):  # Kuleshov2017.build
    constraints = [k.repeat(), k.stop(), k.C.overlap.MaxWordsPerturbed(max_percent=0.5),
                   k.C.semantics.sentence_encoders.ThoughtVector(embedding=k.parts.embedding(), threshold=0.2,
                                                                 metric="max_euclidean")]
    if "language-model" not in k.drop:
        constraints.append(k.C.grammaticality.language_models.GPT2(model_name=k.res.lm or "gpt2",
                                                                    max_log_prob_diff=2.0))
    return k.ta.Attack(k.untargeted(target_max_score=0.7), constraints, k.embedding_swap(15), k.S.GreedySearch())


def _textbugger(k: BuildContext):  # TextBuggerLi2018.build
    T = k.T
    transformation = T.CompositeTransformation([
        T.WordSwapRandomCharacterInsertion(random_one=True, letters_to_insert=" ", skip_first_char=True,
                                           skip_last_char=True),
        T.WordSwapRandomCharacterDeletion(random_one=True, skip_first_char=True, skip_last_char=True),
        T.WordSwapNeighboringCharacterSwap(random_one=True, skip_first_char=True, skip_last_char=True),
        homoglyph_swap(k.res.homoglyphs), k.embedding_swap(5)])
    return k.ta.Attack(k.untargeted(), [k.repeat(), k.stop(), *k.sentence(threshold=0.8)], transformation,
                       k.S.GreedyWordSwapWIR(wir_method="delete"))


def _bae(k: BuildContext):  # BAEGarg2019.build
    mlm, tok, max_length = k.parts.mlm("bert-base-uncased")
    transformation = k.T.WordSwapMaskedLM(method="bae", masked_language_model=mlm, tokenizer=tok,
                                          max_candidates=50, min_confidence=0.0, max_length=max_length)
    constraints = [k.repeat(), k.stop(), *k.pos(allow_verb_noun_swap=True),
                   *k.sentence(threshold=0.936338023, metric="cosine", compare_against_original=True,
                               window_size=15, skip_text_shorter_than_window=True)]
    return k.recipe_cls(k.untargeted(), constraints, transformation, k.S.GreedyWordSwapWIR(wir_method="delete"))


def _bert_attack(k: BuildContext):  # BERTAttackLi2020.build
    mlm, tok, max_length = k.parts.mlm("bert-base-uncased")
    transformation = k.T.WordSwapMaskedLM(method="bert-attack", masked_language_model=mlm, tokenizer=tok,
                                          max_candidates=8, max_length=max_length)
    constraints = [k.repeat(), k.stop(), k.C.overlap.MaxWordsPerturbed(max_percent=0.4),
                   *k.sentence(threshold=0.2, metric="cosine", compare_against_original=True, window_size=None)]
    return k.ta.Attack(k.untargeted(), constraints, transformation, k.S.GreedyWordSwapWIR(wir_method="unk"))


def _clare(k: BuildContext):  # CLARE2020.build (its masked LM shared by the three transformations)
    mlm, tok, max_length = k.parts.mlm("distilroberta-base")
    T = k.T
    transformation = T.CompositeTransformation([
        T.WordSwapMaskedLM(method="bae", masked_language_model=mlm, tokenizer=tok, max_candidates=50,
                           min_confidence=5e-4, max_length=max_length),
        T.WordInsertionMaskedLM(masked_language_model=mlm, tokenizer=tok, max_candidates=50, min_confidence=0.0,
                                max_length=max_length),
        _word_merge(k.ta)(masked_language_model=mlm, tokenizer=tok, max_candidates=50, min_confidence=5e-3,
                          max_length=max_length)])
    constraints = [k.repeat(), k.stop(), *k.sentence(threshold=0.7, metric="cosine", compare_against_original=True,
                                                     window_size=15, skip_text_shorter_than_window=True)]
    return k.ta.Attack(k.untargeted(), constraints, transformation, k.S.GreedySearch())


def _bad_characters(k: BuildContext):
    # BadCharacters2021's homoglyph perturbation and differential-evolution search, with
    # TextAttack's untargeted classification goal (its build only offers targeted goals).
    return k.ta.Attack(k.untargeted(), [], homoglyph_swap(k.res.homoglyphs),
                       k.S.DifferentialEvolution(popsize=32, maxiter=10, verbose=False, max_perturbs=1))


# ------------------------------------------------------------------------------------ recipes
RECIPES: dict[str, RecipeSpec] = {r.name: r for r in [
    RecipeSpec("triggers", None, note="attribution triggers inserted by a greedy search (attrtools)"),
    RecipeSpec("wir-delete", None, note="DeepWordBug's transformation, words ranked by deletion (leave-one-out)"),
    RecipeSpec("wir-attribution", None, note="DeepWordBug's transformation, words ranked by a cached attribution"),
    RecipeSpec("deepwordbug", "DeepWordBugGao2018", build=_own_build),
    RecipeSpec("pruthi", "Pruthi2019", build=_own_build),
    RecipeSpec("input-reduction", "InputReductionFeng2018", build=_own_build),
    RecipeSpec("bad-characters", "BadCharacters2021", ("homoglyphs",),
               note="untargeted, homoglyph swaps searched by differential evolution", build=_bad_characters),
    RecipeSpec("textfooler", "TextFoolerJin2019", ("word-embeddings", "pos-tagger", "sentence-encoder"),
               ("pos-tagger", "sentence-encoder"), build=_textfooler),
    RecipeSpec("a2t", "A2TYoo2021", ("word-embeddings", "pos-tagger", "sentence-encoder"),
               ("pos-tagger", "sentence-encoder"), build=_a2t),
    RecipeSpec("alzantot", "GeneticAlgorithmAlzantot2018", ("word-embeddings", "language-model"),
               ("language-model",), build=_genetic(faster=False)),
    RecipeSpec("faster-alzantot", "FasterGeneticAlgorithmJia2019", ("word-embeddings", "language-model"),
               ("language-model",), build=_genetic(faster=True)),
    RecipeSpec("iga", "IGAWang2019", ("word-embeddings",), build=_iga),
    RecipeSpec("kuleshov", "Kuleshov2017", ("word-embeddings", "language-model"), ("language-model",),
               build=_kuleshov),
    RecipeSpec("textbugger", "TextBuggerLi2018", ("word-embeddings", "homoglyphs", "sentence-encoder"),
               ("sentence-encoder",), build=_textbugger),
    RecipeSpec("bae", "BAEGarg2019", ("mlm", "pos-tagger", "sentence-encoder"), ("pos-tagger", "sentence-encoder"),
               build=_bae),
    RecipeSpec("bert-attack", "BERTAttackLi2020", ("mlm", "sentence-encoder"), ("sentence-encoder",),
               build=_bert_attack),
    RecipeSpec("clare", "CLARE2020", ("mlm", "pos-tagger", "sentence-encoder"), ("sentence-encoder",),
               note="the merge step's universal POS tags come from NLTK when flair is unavailable", build=_clare),
    RecipeSpec("pwws", "PWWSRen2019", ("wordnet",), build=_own_build),
    RecipeSpec("leap", "LEAP2023", ("wordnet",), build=_own_build),
    RecipeSpec("pso", "PSOZang2020", ("hownet",), build=_own_build),
    RecipeSpec("checklist", "CheckList2020", ("flair-ner",), build=_own_build),
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
            if _dropped(spec, key, res) or available(key, res, name):
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


def prepare_resources(names, res: AttackResources):
    """Online only: fetch the NLTK data the recipes need and cannot find (TextAttack's own first-import
    download is skipped by attrtools' import shim, and nltk 3.10 renamed the tagger it asked for)."""
    if not res.online():
        return
    wanted = {k for n in names if n in RECIPES for k in RECIPES[n].needs
              if k in NLTK_PACKAGES and not _dropped(RECIPES[n], k, res)}
    for key in sorted(wanted):
        for path, package in NLTK_PACKAGES[key]:
            if not nltk_has(res, path):
                import nltk

                nltk.download(package, quiet=True)


def runnable_recipes(res: AttackResources) -> list[str]:
    """Every recipe whose resources are all available (or dropped) with ``res``."""
    return [n for n, s in RECIPES.items() if not s.refuse and all(
        _dropped(s, key, res) or available(key, res, n) for key in s.needs)]


# ------------------------------------------------------------------------------------ building
def build_recipe(name: str, wrapper, res: AttackResources | None = None, parts: LoadedResources | None = None):
    """The ``textattack.Attack`` of TextAttack recipe ``name`` on ``wrapper``, resources from ``res``
    (``parts``: resources already loaded for another recipe or model), by the recipe's builder.

    Call :func:`resource_report` first: this function assumes the resources are there (a missing
    one surfaces as TextAttack's own error). Raises ``RecipeError`` for a refused recipe or one of
    attrtools' own (built by ``attrtools.adversarial.audit.build_attack``)."""
    from .textattack_compat import load_textattack

    spec = RECIPES[name]
    if spec.refuse:
        raise RecipeError(f"{name}: {spec.refuse}")
    if spec.textattack is None:
        raise RecipeError(f"{name} is an attrtools recipe: build it with attrtools.adversarial.audit.build_attack")
    ta = load_textattack()
    res = res or AttackResources()
    use_nltk_data(res)
    context = BuildContext(ta, wrapper, res, parts or LoadedResources(res), set(dropped_constraints(name, res)),
                           getattr(ta.attack_recipes, spec.textattack))
    return spec.build(context)


# ------------------------------------------------------------------------------------ builder helpers
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
