"""Greedy and modified beam search against plain per-utterance references and hand-made models."""

import math

import pytest
import torch
from torch import nn

from conftest import tiny_config
from todm.beam_search import UNK_ID, greedy_search_batch, modified_beam_search
from todm.model import build_model

BLANK = 0


def random_model(vocab_size: int = 20, context_size: int = 2, seed: int = 0) -> nn.Module:
    """A tiny random transducer in float64 (no arg-max ties) that emits often: blank is damped."""
    torch.manual_seed(seed)
    model = build_model(tiny_config(vocab_size=vocab_size, context_size=context_size)).double().eval()
    with torch.no_grad():
        model.joiner.output_linear.weight.mul_(4.0)
        model.joiner.output_linear.bias[BLANK] -= 1.0
    return model


def random_encoder_out(lens: list[int], dim: int = 16, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = 2 * torch.randn(len(lens), max(max(lens), 1), dim, generator=g, dtype=torch.float64)
    return x, torch.tensor(lens)


def reference_greedy(model, enc: torch.Tensor, length: int, max_sym_per_frame: int) -> list[int]:
    """Textbook greedy search of one utterance, joiner with its own input projections."""
    cs = model.decoder.context_size
    context = [-1] * (cs - 1) + [BLANK]
    hyp = []
    for t in range(length):
        for _ in range(max_sym_per_frame):
            dec = model.decoder(torch.tensor([context[-cs:]]), need_pad=False)[0, 0]
            token = int(model.joiner(enc[t], dec).argmax())
            if token in (BLANK, UNK_ID):
                break
            hyp.append(token)
            context.append(token)
    return hyp


def reference_beam(model, enc: torch.Tensor, length: int, beam: int) -> list[int]:
    """Modified beam search of one utterance written as directly as possible."""
    cs = model.decoder.context_size
    hyps = {(): 0.0}
    for t in range(length):
        candidates = []
        for tokens, score in hyps.items():
            context = ([-1] * (cs - 1) + [BLANK] + list(tokens))[-cs:]
            dec = model.decoder(torch.tensor([context]), need_pad=False)[0, 0]
            logp = model.joiner(enc[t], dec).log_softmax(-1).tolist()
            for v, lp in enumerate(logp):
                new = tokens if v in (BLANK, UNK_ID) else tokens + (v,)
                candidates.append((score + lp, new))
        candidates.sort(key=lambda c: -c[0])
        hyps = {}
        for score, tokens in candidates[:beam]:
            hyps[tokens] = math.log(math.exp(hyps[tokens]) + math.exp(score)) if tokens in hyps else score
    return list(max(hyps.items(), key=lambda kv: kv[1] / (cs + len(kv[0])))[0])


@torch.no_grad()
@pytest.mark.parametrize("context_size", [1, 2])
@pytest.mark.parametrize("max_sym", [1, 3])
def test_greedy_matches_reference(context_size, max_sym):
    model = random_model(context_size=context_size)
    lens = [7, 0, 12, 3, 12]
    enc, enc_lens = random_encoder_out(lens)
    hyps = greedy_search_batch(model, enc, enc_lens, max_sym_per_frame=max_sym)
    expected = [reference_greedy(model, enc[b], n, max_sym) for b, n in enumerate(lens)]
    assert hyps == expected
    assert sum(map(len, hyps)) > 5  # the test is not trivially about empty outputs


@torch.no_grad()
def test_beam_one_equals_greedy():
    model = random_model()
    enc, enc_lens = random_encoder_out([15, 9, 1, 15, 4], seed=3)
    greedy = greedy_search_batch(model, enc, enc_lens)
    assert modified_beam_search(model, enc, enc_lens, beam=1) == greedy
    assert sum(map(len, greedy)) > 5


@torch.no_grad()
@pytest.mark.parametrize("beam", [2, 4])
def test_beam_matches_reference_and_is_padding_independent(beam):
    model = random_model(seed=5)
    lens = [10, 6, 0, 10]
    enc, enc_lens = random_encoder_out(lens, seed=7)
    batched = modified_beam_search(model, enc, enc_lens, beam=beam)
    assert batched == [reference_beam(model, enc[b], n, beam) for b, n in enumerate(lens)]
    alone = [modified_beam_search(model, enc[b : b + 1, : max(n, 1)], enc_lens[b : b + 1], beam=beam)[0]
             for b, n in enumerate(lens)]
    assert batched == alone


@torch.no_grad()
def test_only_real_tokens_and_unk_is_never_emitted():
    model = random_model(seed=2)
    enc, enc_lens = random_encoder_out([20, 20], seed=4)
    for hyps in (greedy_search_batch(model, enc, enc_lens), modified_beam_search(model, enc, enc_lens, beam=4)):
        assert all(0 < tok < model.decoder.vocab_size and tok != UNK_ID for h in hyps for tok in h)
    with torch.no_grad():
        model.joiner.output_linear.bias[UNK_ID] += 1e4  # <unk> wins everywhere: acts as blank
    assert greedy_search_batch(model, enc, enc_lens) == [[], []]
    assert modified_beam_search(model, enc, enc_lens, beam=3) == [[], []]


@torch.no_grad()
@pytest.mark.parametrize("search", [greedy_search_batch, modified_beam_search])
def test_empty_inputs(search):
    model = random_model()
    assert search(model, torch.zeros(0, 0, 16, dtype=torch.float64), torch.zeros(0, dtype=torch.int64)) == []
    assert search(model, torch.zeros(2, 0, 16, dtype=torch.float64), torch.tensor([0, 0])) == [[], []]
    # negative lengths: what the length formula gives for inputs shorter than 7 fbank frames
    enc, _ = random_encoder_out([3, 3])
    assert search(model, enc, torch.tensor([-1, 0])) == [[], []]


class _Decoder(nn.Module):
    """Stateless decoder stub: output does not matter for the hand-made joiner below."""

    def __init__(self, context_size: int, vocab_size: int):
        super().__init__()
        self.blank_id, self.context_size, self.vocab_size = BLANK, context_size, vocab_size

    def forward(self, y, need_pad=True):
        assert not need_pad and y.size(1) == self.context_size
        return torch.zeros(y.size(0), 1, self.vocab_size, dtype=torch.float64)


class _Joiner(nn.Module):
    """Logits = the encoder frame itself (already in vocabulary space)."""

    def __init__(self):
        super().__init__()
        self.encoder_proj, self.decoder_proj = nn.Identity(), nn.Identity()

    def forward(self, enc, dec, project_input=True):
        return enc + dec


def _frames(*probs: list[float]) -> torch.Tensor:
    """[1, T, 4] encoder output = log-probabilities over (blank, a=1, unk=2, b=3), for the stub joiner."""
    return torch.tensor([probs], dtype=torch.float64).log()


def _stub_model(vocab_size: int = 4) -> nn.Module:
    model = nn.Module()
    model.decoder, model.joiner = _Decoder(2, vocab_size), _Joiner()
    return model


@torch.no_grad()
@pytest.mark.parametrize("beam", [1, 4])
def test_known_frame_labels(beam):
    """Each frame strongly prefers one label: the output is that label sequence without blank/unk."""
    model = _stub_model(vocab_size=6)
    labels = [[3, 0, 0, 4, 2, 4, 5], [1, 5, 0, 2, 0, 0, 0]]
    enc = 10.0 * nn.functional.one_hot(torch.tensor(labels), 6).double()
    lens = torch.tensor([7, 4])
    expected = [[3, 4, 4, 5], [1, 5]]
    assert greedy_search_batch(model, enc, lens) == expected
    assert modified_beam_search(model, enc, lens, beam=beam) == expected


@torch.no_grad()
def test_beam_merges_alignments_of_the_same_output():
    """Two frames of P(blank)=.4, P(a)=.35, P(b)=.25. 'a' has two alignments: .4*.35 each, .28 in all.
    Normalised by length (2 context + tokens): log(.28)/3 > log(.1225)/4 ('a a') > log(.16)/2 (empty).
    Keeping only the best alignment (.14) would rank 'a a' first instead."""
    frame = [0.4, 0.35, 1e-12, 0.25]
    enc = _frames(frame, frame)
    assert modified_beam_search(_stub_model(), enc, torch.tensor([2]), beam=4) == [[1]]
    assert greedy_search_batch(_stub_model(), enc, torch.tensor([2])) == [[]]


@torch.no_grad()
def test_beam_result_is_length_normalised():
    """One frame, P(blank)=.5, P(a)=.4: empty has log(.5)/2 = -0.35, 'a' has log(.4)/3 = -0.31."""
    enc = _frames([0.5, 0.4, 1e-12, 0.1])
    assert modified_beam_search(_stub_model(), enc, torch.tensor([1]), beam=2) == [[1]]
    assert modified_beam_search(_stub_model(), enc, torch.tensor([1]), beam=1) == [[]]


class _TableLm:
    """A token LM stub: next-token log-probabilities and </s> scores by history."""

    def __init__(self, next_scores: dict[tuple, list[float]], eos: dict[tuple, float] | None = None, vocab: int = 4):
        self.next_scores, self.eos, self.vocab = next_scores, eos or {}, vocab

    def log_probs(self, history) -> torch.Tensor:
        return torch.tensor(self.next_scores.get(tuple(history), [0.0] * self.vocab), dtype=torch.float64)

    def eos_log_prob(self, history) -> float:
        return self.eos.get(tuple(history), 0.0)


@torch.no_grad()
def test_shallow_fusion_lm_overrules_a_close_acoustic_choice():
    """One frame, P(a)=.45 > P(b)=.40: the acoustics say 'a', an LM that has only seen 'b' says 'b'."""
    enc = _frames([0.15, 0.45, 1e-12, 0.40])
    lm = _TableLm({(): [0.0, math.log(0.1), 0.0, math.log(0.9)]})
    lens = torch.tensor([1])
    assert modified_beam_search(_stub_model(), enc, lens, beam=4) == [[1]]
    assert modified_beam_search(_stub_model(), enc, lens, beam=4, lm=lm, lm_scale=1.0) == [[3]]
    assert modified_beam_search(_stub_model(), enc, lens, beam=4, lm=lm, lm_scale=0.01) == [[1]]


@torch.no_grad()
def test_shallow_fusion_scores_the_end_of_the_sentence():
    """The length-normalised search prefers 'a' over the empty output (see above) unless the LM
    says a sentence cannot end after 'a'."""
    enc = _frames([0.5, 0.4, 1e-12, 0.1])
    lens = torch.tensor([1])
    lm = _TableLm({}, eos={(1,): math.log(1e-6)})
    assert modified_beam_search(_stub_model(), enc, lens, beam=2, lm=lm, lm_scale=0.0) == [[1]]
    assert modified_beam_search(_stub_model(), enc, lens, beam=2, lm=lm, lm_scale=1.0) == [[]]


@torch.no_grad()
def test_lodr_subtracts_the_low_order_lm_from_every_token_and_the_end():
    """LODR with the LM itself as the low-order LM and scale -1 cancels the LM: tokens (the
    acoustic 'a' again) and end of sentence ('a' may end the sentence again)."""
    lens = torch.tensor([1])
    enc = _frames([0.15, 0.45, 1e-12, 0.40])
    lm = _TableLm({(): [0.0, math.log(0.1), 0.0, math.log(0.9)]})
    assert modified_beam_search(_stub_model(), enc, lens, beam=4, lm=lm, lm_scale=1.0, lodr_lm=lm,
                                lodr_lm_scale=-0.5) == [[3]]
    assert modified_beam_search(_stub_model(), enc, lens, beam=4, lm=lm, lm_scale=1.0, lodr_lm=lm,
                                lodr_lm_scale=-1.0) == [[1]]
    enc = _frames([0.5, 0.4, 1e-12, 0.1])
    lm = _TableLm({}, eos={(1,): math.log(1e-6)})
    assert modified_beam_search(_stub_model(), enc, lens, beam=2, lm=lm, lm_scale=1.0) == [[]]
    assert modified_beam_search(_stub_model(), enc, lens, beam=2, lm=lm, lm_scale=1.0, lodr_lm=lm,
                                lodr_lm_scale=-1.0) == [[1]]


@torch.no_grad()
def test_a_neutral_lm_changes_nothing():
    model = random_model()
    enc, lens = random_encoder_out([9, 4, 7])
    lm = _TableLm({}, vocab=20)
    assert modified_beam_search(model, enc, lens, beam=3, lm=lm, lm_scale=1.0) == modified_beam_search(
        model, enc, lens, beam=3)


@torch.no_grad()
def test_blank_penalty_trades_blanks_for_tokens():
    """P(blank)=.6, P(a)=.4: blank wins; a penalty of 1 on the blank logit makes it .6/e = .22 < .4."""
    enc = _frames([0.6, 0.4, 1e-12, 1e-12])
    lens = torch.tensor([1])
    assert modified_beam_search(_stub_model(), enc, lens, beam=1) == [[]]
    assert modified_beam_search(_stub_model(), enc, lens, beam=1, blank_penalty=1.0) == [[1]]
