"""Word alignment back to the original text (attrtools.words), word scores, the attribution-ranked
word search and word diffs, for the three tokenizer families, built here with ``tokenizers``:
an uncased WordPiece stripping accents, a byte-level BPE (``Ġ``) and a Metaspace Unigram (``▁``)."""
import math
from collections import OrderedDict

import pytest
import torch

from attrtools import words as W

CORPUS = ["The film was naïve but the café scene is well-made.",
          "It's a slow, dull movie; don't watch it!",
          "A great cast and a moving story about a naive chef",
          "Bad acting, worse script, and the soundtrack is loud",
          "résumé of a well-made thriller with a twist"] * 4
SENTENCE = "Honestly, it's a naïve café-story: well-made, but don't expect Zoë's résumé!"
PAIR = ("The café's naïve charm", "isn't well-made, sadly.")
EXPECTED = ["Honestly", ",", "it's", "a", "naïve", "café-story", ":", "well-made", ",", "but", "don't",
            "expect", "Zoë's", "résumé", "!"]


def _wordpiece():
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True, strip_accents=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.train_from_iterator(CORPUS, trainers.WordPieceTrainer(
        vocab_size=120, special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]))
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
                                                       special_tokens=[("[CLS]", cls), ("[SEP]", sep)])
    return dict(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]", sep_token="[SEP]",
                mask_token="[MASK]")


def _bytelevel():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(CORPUS, trainers.BpeTrainer(
        vocab_size=300, special_tokens=["<s>", "<pad>", "</s>", "<unk>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tok.post_processor = processors.RobertaProcessing(("</s>", tok.token_to_id("</s>")),
                                                      ("<s>", tok.token_to_id("<s>")), trim_offsets=False)
    return dict(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>", pad_token="<pad>",
                cls_token="<s>", sep_token="</s>")


def _metaspace():
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    tok = Tokenizer(models.Unigram())
    tok.normalizer = normalizers.NFKC()
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    tok.train_from_iterator(CORPUS, trainers.UnigramTrainer(
        vocab_size=150, special_tokens=["<s>", "<pad>", "</s>", "<unk>"], unk_token="<unk>"))
    s, e = tok.token_to_id("<s>"), tok.token_to_id("</s>")
    tok.post_processor = processors.TemplateProcessing(single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>",
                                                       special_tokens=[("<s>", s), ("</s>", e)])
    return dict(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>", pad_token="<pad>",
                cls_token="<s>", sep_token="</s>")


FAMILIES = {"wordpiece-uncased": _wordpiece, "bytelevel-bpe": _bytelevel, "sentencepiece": _metaspace}


@pytest.fixture(scope="module", params=sorted(FAMILIES))
def family_tokenizer(request):
    from transformers import PreTrainedTokenizerFast
    return request.param, PreTrainedTokenizerFast(model_max_length=128, **FAMILIES[request.param]())


def _encode(tok, text, pair=None):
    return tok(text, pair, return_offsets_mapping=True, return_special_tokens_mask=True)


# ------------------------------------------------------------------------------ the word rule
def test_split_words_keeps_contractions_hyphens_accents_and_splits_punctuation():
    text = SENTENCE
    assert [text[a:b] for a, b in W.split_words(text)] == EXPECTED
    # decomposed accents (combining marks) stay inside their word
    nfd = "nai\u0308ve cafe\u0301"
    assert [nfd[a:b] for a, b in W.split_words(nfd)] == ["nai\u0308ve", "cafe\u0301"]
    assert [t for t in ("\"great\" ... it 's",) for t in [t[a:b] for a, b in W.split_words(t)]] == \
        ['"', "great", '"', "...", "it", "'", "s"]


def test_alignment_recovers_original_words_for_every_family(family_tokenizer):
    name, tok = family_tokenizer
    enc = _encode(tok, SENTENCE)
    offsets = W.token_offsets(enc, tok)
    word_of_token, words = W.align(offsets, (SENTENCE, None))
    assert [w.text for w in words] == EXPECTED, name
    special = enc["special_tokens_mask"]
    # special tokens belong to no word; every other token to exactly one
    assert all((k is None) == bool(m) for k, m in zip(word_of_token, special)), name
    assert sorted(t for w in words for t in w.tokens) == [t for t, m in enumerate(special) if not m]


def test_alignment_of_pairs(family_tokenizer):
    name, tok = family_tokenizer
    enc = _encode(tok, *PAIR)
    word_ids, segments, texts, offsets = W.encoded_alignment(enc, tok, *PAIR)
    want = {0: ["The", "café's", "naïve", "charm"], 1: ["isn't", "well-made", ",", "sadly", "."]}
    for s, ws in want.items():
        assert [texts[(s, i)] for i in range(len(ws))] == ws, name
        assert (s, len(ws)) not in texts
    for t, (w, s) in enumerate(zip(word_ids, segments)):
        if w is not None:
            assert offsets[t][0] == s
            a, b = offsets[t][1:]
            assert PAIR[s][a:b].strip() in texts[(s, w)] or not PAIR[s][a:b].strip()


def test_whitespace_only_token_joins_the_next_word():
    text = "a  naïve"
    # a lone '▁'/'Ġ' token spanning the spaces, then the word
    offsets = [None, [0, 0, 1], [0, 1, 3], [0, 3, 8], None]
    word_of_token, words = W.align(offsets, (text, None))
    assert [w.text for w in words] == ["a", "naïve"]
    assert word_of_token == [None, 0, 1, 1, None]
    # zero-width tokens: inside a word, that word; between words, the next one
    word_of_token, _ = W.align([[0, 5, 5], [0, 1, 1], [0, 0, 0]], (text, None))
    assert word_of_token == [1, 1, 0]
    # with a caller's word list that leaves punctuation out (TextAttack's), a ',' token joins no word
    text = "good, fun"
    offsets = [[0, 0, 4], [0, 4, 5], [0, 5, 6], [0, 6, 9]]
    word_of_token, words = W.align(offsets, (text, None), spans=[W.locate(text, ["good", "fun"])])
    assert word_of_token == [0, None, 1, 1] and [w.text for w in words] == ["good", "fun"]


def test_slow_tokenizer_output_is_refused_in_one_line():
    class Slow(dict):
        pass
    with pytest.raises(W.WordAlignmentError, match="fast tokenizer"):
        W.token_offsets(Slow(input_ids=[1, 2]), object())


# ------------------------------------------------------------------------------ word scores
def _attribution(tok, text, pair=None, scores=None):
    from attrtools.types import Attribution
    enc = _encode(tok, text, pair)
    n = len(enc["input_ids"])
    scores = torch.arange(1.0, n + 1) if scores is None else scores
    return Attribution(tokens=enc.tokens(), input_ids=list(enc["input_ids"]), scores=scores, kind="tokens",
                       method="grad_input", params={}, target=0, predicted=0, probs=[0.5, 0.5], text=text,
                       text_pair=pair, special_tokens_mask=list(enc["special_tokens_mask"]),
                       token_offsets=W.token_offsets(enc, tok))


@pytest.mark.parametrize("agg", ["sum", "max", "mean"])
def test_word_scores_aggregate_each_words_tokens(family_tokenizer, agg, tmp_path):
    from attrtools.types import Attribution
    name, tok = family_tokenizer
    att = _attribution(tok, SENTENCE)
    ws = att.word_scores(agg)
    assert [w.word for w in ws] == EXPECTED, name
    values = att.scores.tolist()
    for w in ws:
        xs = [values[t] for t in w.tokens]
        want = {"sum": sum(xs), "max": max(xs), "mean": sum(xs) / len(xs)}[agg]
        assert math.isclose(w.score, want), (name, w)
        assert SENTENCE[w.start:w.end] == w.word
    if agg == "sum":  # every non-special token lands in one word
        special = att.special_tokens_mask
        assert math.isclose(sum(w.score for w in ws), sum(v for v, m in zip(values, special) if not m))
    # a saved and loaded attribution still aligns
    path = att.save(tmp_path / "a.safetensors")
    assert [(w.word, w.score) for w in Attribution.load(path).word_scores(agg)] == [(w.word, w.score) for w in ws]


def test_word_scores_refuse_without_offsets_and_unknown_agg(family_tokenizer):
    _, tok = family_tokenizer
    att = _attribution(tok, SENTENCE)
    with pytest.raises(W.WordAlignmentError, match="unknown word aggregation"):
        att.word_scores("median")
    att.token_offsets = []
    with pytest.raises(W.WordAlignmentError, match="no token offsets"):
        att.word_scores()


# ------------------------------------------------------------------------------ word diffs
@pytest.mark.parametrize("original, perturbed, counts, changed_o, changed_p", [
    # two words inserted in the middle of eight: 2 perturbed, not 7
    ("a b c d e f g h", "a b c X Y d e f g h", (2, 0, 0), [], [3, 4]),
    # inserted at the end: 2 perturbed, not 0
    ("a b c d e f g h", "a b c d e f g h X Y", (2, 0, 0), [], [8, 9]),
    # one substitution
    ("a b c d e f g h", "a b c Z e f g h", (0, 0, 1), [3], [3]),
    # one deletion and one substitution
    ("a b c d e f g h", "a c d e f g Z", (0, 1, 1), [1, 7], [6]),
])
def test_diff_words_counts_edits_as_such(original, perturbed, counts, changed_o, changed_p):
    d = W.diff_words(original.split(), perturbed.split())
    assert (d.inserted, d.deleted, d.substituted) == counts
    assert d.perturbed == sum(counts)
    assert d.changed_original == changed_o and d.changed_perturbed == changed_p


def test_mark_changed_marks_only_changed_words():
    d = W.diff_words("it is a good film".split(), "it is a truly great good film".split())
    assert W.mark_changed("it is a truly great good film", "it is a truly great good film".split(),
                          d.changed_perturbed) == "it is a [[truly]] [[great]] good film"


# ------------------------------------------------------------------------------ through a model
@pytest.fixture(scope="module")
def family_model(family_tokenizer):
    """A tiny random BERT classifier over the family's vocabulary (the alignment does not depend on
    the architecture; the tokenizer is what differs)."""
    from transformers import AutoModelForSequenceClassification

    from attrtools.testing import tiny_config
    name, tok = family_tokenizer
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_config(
        tiny_config("bert", len(tok), pad_token_id=tok.pad_token_id)).eval()
    return name, model, tok


def test_engine_attribution_carries_offsets_and_word_scores(family_model):
    from attrtools.engine import Engine
    name, model, tok = family_model
    engine = Engine(model, tok, progress=False)
    att = engine.attribute([SENTENCE], "grad_input", target="pred")[0]
    ws = att.word_scores()
    assert [w.word for w in ws] == EXPECTED, name
    tokens = att.token_scores().tolist()
    assert all(math.isclose(w.score, sum(tokens[t] for t in w.tokens), rel_tol=1e-6, abs_tol=1e-9) for w in ws)
    # the engine's own word alignment (trigger words) names the same original words
    enc = engine.encode(SENTENCE)
    assert [enc.words[(0, i)] for i in range(len(EXPECTED))] == EXPECTED


def test_wir_attribution_scores_every_textattack_word(family_model):
    ta = pytest.importorskip("attrtools.adversarial.textattack_compat").load_textattack()
    from attrtools.adversarial.search import AttributionWIR
    name, model, tok = family_model
    wir = AttributionWIR(model, tok, method="grad_input")
    for text_input in ({"text": SENTENCE}, {"premise": PAIR[0], "hypothesis": PAIR[1]}):
        attacked = ta.shared.AttackedText(OrderedDict(text_input))
        scores = wir.word_scores(attacked)
        assert len(scores) == len(attacked.words) and np_all_finite(scores), (name, attacked.words, scores)
        # each word's score is the sum of the scores of the tokens inside its characters
        values, offsets = wir._attribution(attacked.tokenizer_input)
        texts = list(text_input.values())
        k = 0
        for s, (text, seg_words) in enumerate(zip(texts, attacked.words_per_input)):
            for (a, b) in W.locate(text, seg_words):
                inside = [t for t, o in enumerate(offsets) if o is not None and o[0] == s and (
                          (o[1] < b and o[2] > a and text[max(a, o[1]):min(b, o[2])].strip())
                          or (not text[o[1]:o[2]].strip() and o[1] <= a and not text[o[2]:a].strip()))]
                assert inside, (name, text[a:b])
                assert math.isclose(scores[k], float(sum(values[t] for t in inside)), rel_tol=1e-5, abs_tol=1e-9)
                k += 1
    assert wir.stats["unscored_words"] == 0


def np_all_finite(xs):
    import numpy as np
    return bool(np.isfinite(np.asarray(xs)).all())


# ------------------------------------------------------------------------------ audit word diffs
ORIGINAL = "the film was slow but the cast shines"


def _result(ta, original, edits, kind="Successful"):
    """An attack result whose perturbed text replaces word i of ``original`` by ``edits[i]`` (which
    may hold several words: an insertion), as TextAttack's transformations build it."""
    from textattack.goal_function_results import ClassificationGoalFunctionResult, GoalFunctionResultStatus
    import textattack.attack_results as R

    def gfr(text, output):
        return ClassificationGoalFunctionResult(text, torch.tensor([0.2, 0.8]), output,
                                                GoalFunctionResultStatus.SUCCEEDED, 0.8, 5, 0)
    first = ta.shared.AttackedText(original)
    words = [edits.get(i, w) for i, w in enumerate(first.words)]
    return getattr(R, f"{kind}AttackResult")(gfr(first, 0), gfr(first.generate_new_attacked_text(words), 1))


@pytest.mark.parametrize("edits, aligned, breakdown, positional, marked", [
    # a 2-word trigger in the middle: 2 words perturbed (TextAttack's positional count: 4 of 8)
    ({3: "slow zoe alpha"}, 2, (2, 0, 0), 4, "the film was slow [[zoe]] [[alpha]] but the cast shines"),
    # at the end: 2 (positional: 0)
    ({7: "shines zoe alpha"}, 2, (2, 0, 0), 0, "the film was slow but the cast shines [[zoe]] [[alpha]]"),
    # one substitution: 1 either way
    ({3: "slaw"}, 1, (0, 0, 1), 1, "the film was [[slaw]] but the cast shines"),
])
def test_audit_rows_count_words_from_an_alignment(ta, edits, aligned, breakdown, positional, marked):
    from attrtools.adversarial.audit import result_row, summarize_rows
    row = result_row(_result(ta, ORIGINAL, edits), "triggers", 0)
    assert row["num_words_perturbed"] == aligned
    assert (row["num_words_inserted"], row["num_words_deleted"], row["num_words_substituted"]) == breakdown
    assert row["num_words_perturbed_positional"] == positional
    assert row["perturbed_text"] == marked
    assert row["original_text"] == (ORIGINAL if breakdown[2] == 0 else "the film was [[slow]] but the cast shines")
    summary = summarize_rows([row])
    assert summary["avg_words_perturbed"] == aligned and summary["avg_words_perturbed_positional"] == positional
    assert summary["avg_word_perturbed_perc"] == pytest.approx(100.0 * aligned / 8, abs=0.01)


def test_old_results_csv_is_recounted_on_read(ta, tmp_path):
    import pandas as pd

    from attrtools.adversarial.audit import EXTRA_COLUMNS, TEXTATTACK_COLUMNS, read_rows
    from attrtools.adversarial.diffs import DIFF_COLUMNS
    old = {"original_text": ORIGINAL.replace("but", "[[but]]"),
           "perturbed_text": "the film was slow [[zoe]] [[but]] [[the]] [[cast]] [[shines]] alpha",
           "original_score": 0.1, "perturbed_score": 0.9, "original_output": 0, "perturbed_output": 1,
           "ground_truth_output": 0, "num_queries": 3, "result_type": "Successful", "recipe": "triggers",
           "example_index": 0, "num_words": 8, "num_words_perturbed": 5}
    path = tmp_path / "results.csv"
    pd.DataFrame([old], columns=[c for c in TEXTATTACK_COLUMNS + EXTRA_COLUMNS if c not in DIFF_COLUMNS]).to_csv(
        path, index=False)
    (row,) = read_rows(str(path))
    assert (row["num_words_perturbed"], row["num_words_inserted"], row["num_words_perturbed_positional"]) == (2, 2, 5)
    assert row["perturbed_text"] == "the film was slow [[zoe]] but the cast shines [[alpha]]"
    assert row["original_text"] == ORIGINAL


# ------------------------------------------------------------------------------ CLI and views
@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory):
    from attrtools.testing import build_tiny_model
    return build_tiny_model("bert", str(tmp_path_factory.mktemp("bert")))


def test_attribute_cli_writes_word_table_and_word_view(bert_dir, tmp_path):
    import csv

    from click.testing import CliRunner

    from attrtools.cli import main
    from attrtools.types import Attribution
    text = "the movie was good and the acting is great but it's naïve, well-made."
    out = tmp_path / "run"
    result = CliRunner().invoke(main, ["attribute", "--model", bert_dir, "--text", text, "--method", "grad_input",
                                       "--html", "--no-cache", "--output-dir", str(out)])
    assert result.exit_code == 0, result.output
    assert "word_scores.csv" in result.output
    with open(out / "word_scores.csv", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert [r["word"] for r in rows] == text.replace(",", " ,").replace(".", " .").split()
    att = Attribution.load(out / "attributions" / "000000.safetensors")
    tokens = att.token_scores().tolist()
    for r in rows:
        positions = [int(t) for t in r["tokens"].split()]
        assert text[int(r["start"]):int(r["end"])] == r["word"]
        assert float(r["sum"]) == pytest.approx(sum(tokens[t] for t in positions), rel=1e-4, abs=1e-9)
        assert float(r["max"]) == pytest.approx(max(tokens[t] for t in positions), rel=1e-4, abs=1e-9)
        assert float(r["mean"]) == pytest.approx(sum(tokens[t] for t in positions) / len(positions), rel=1e-4,
                                                 abs=1e-9)
    page = (out / "views" / "000000.html").read_text(encoding="utf-8")
    view = page.split('class="token-heatmap word-heatmap"')[1]
    for word in ("it&#39;s", "naïve", "well-made"):
        assert word in view or word.replace("&#39;", "'") in view


def test_views_word_option(family_tokenizer):
    from attrtools.report import attribution_page, summary_report
    _, tok = family_tokenizer
    att = _attribution(tok, *PAIR)
    page = attribution_page(att, words="max")
    assert 'word-heatmap' in page and "the max of its tokens" in page
    assert page.count('<span class="wd"') == len(att.word_scores()) == 9  # 4 + 5 words of the pair
    assert "word-heatmap" not in attribution_page(att, words=None)
    summary = summary_report([att], words="sum").to_html()
    assert "top words" in summary and "word-heatmap" in summary
    att.token_offsets = []
    assert "holds no token offsets" in attribution_page(att)


def test_tree_nodes_and_word_patterns_carry_original_words(family_tokenizer, tmp_path):
    import csv

    from attrtools.tree.build import tree_from_attribution
    from attrtools.tree.stats import TreeStatistics
    name, tok = family_tokenizer
    n = len(_encode(tok, SENTENCE)["input_ids"])
    g = torch.Generator().manual_seed(0)
    att = _attribution(tok, SENTENCE, scores=torch.rand(2, n, n, generator=g))
    att.kind = "layer_matrix"
    tree = tree_from_attribution(att, threshold=0.0)
    assert tree.number_of_nodes() > 2
    for node, d in tree.nodes(data=True):
        off = att.token_offsets[node]
        if off is None:  # special tokens keep their token
            assert d["word"] == att.tokens[node]
            continue
        assert d["word"] in EXPECTED and SENTENCE[off[1]:off[2]].strip() in d["word"], (name, d)
    stats = TreeStatistics(skip_special=True).extend([tree])
    files = stats.write(str(tmp_path), top_patterns=10**6, plot=False)
    with open(files["patterns_words"], encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert rows and all(r["source_word"] in EXPECTED and r["target_word"] in EXPECTED for r in rows)
    assert sum(int(r["count"]) for r in rows) == sum(1 for e in stats.edges if not e["special"])


def test_realign_row_of_a_pair_marks_only_the_inserted_word(ta):
    from attrtools.adversarial.diffs import realign_row
    # TextAttack's positional marks: every word after the insertion (4 of the 6 words of the pair)
    row = {"original_text": "Premise: the cast [[shines]]<SPLIT>Hypothesis: [[it]] [[is]] [[good]]",
           "perturbed_text": "Premise: the cast [[zoe]] [[shines]]<SPLIT>Hypothesis: [[it]] [[is]] good",
           "result_type": "Successful", "num_words_perturbed": 4}
    realign_row(row)
    assert (row["num_words_perturbed"], row["num_words_inserted"], row["num_words_substituted"],
            row["num_words_perturbed_positional"]) == (1, 1, 0, 4)
    assert row["original_text"] == "Premise: the cast shines<SPLIT>Hypothesis: it is good"
    assert row["perturbed_text"] == "Premise: the cast [[zoe]] shines<SPLIT>Hypothesis: it is good"
