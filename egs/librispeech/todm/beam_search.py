"""Transducer search in pure torch: batched greedy search and modified beam search.

Both follow icefall's semantics (``egs/librispeech/ASR/pruned_transducer_stateless2/beam_search.py``)
and what sherpa-onnx does at run time, so that a PyTorch decode and an ONNX decode of the same
model give the same words:

- the stateless decoder sees the last ``context_size`` tokens; it starts from
  ``[-1] * (context_size - 1) + [blank]`` (id -1 is a zero embedding);
- at most one symbol per frame for modified beam search (``max_sym_per_frame`` for greedy);
- ``<unk>`` (id 2 in icefall's token table) is treated like blank: it is never emitted and
  does not advance the decoder context;
- hypotheses are returned as token ids without blank, one list per utterance. An utterance
  with no encoder frames (length 0, or a negative length computed for a too-short input) gets
  an empty hypothesis.

The model needs ``decoder(y [N, context_size], need_pad=False) -> [N, 1, decoder_dim]`` with
attributes ``blank_id`` and ``context_size``, and ``joiner`` with ``encoder_proj``,
``decoder_proj`` and ``joiner(enc, dec, project_input=False) -> logits [..., V]``. The joiner's
input projections are applied once per frame / per new context, not once per joiner call.
"""

import math
from typing import TYPE_CHECKING

import torch
from torch import nn

if TYPE_CHECKING:
    from todm.token_lm import TokenNgramLm

UNK_ID = 2  # icefall/sherpa-onnx: <blk>=0, <sos/eos>=1, <unk>=2


def initial_context(num: int, context_size: int, blank_id: int, device: torch.device) -> torch.Tensor:
    """Decoder input at the start of an utterance: [num, context_size] = [-1, ..., -1, blank]."""
    context = torch.full((num, context_size), -1, dtype=torch.int64, device=device)
    context[:, -1] = blank_id
    return context


def _decoder_proj(model: nn.Module, context: torch.Tensor) -> torch.Tensor:
    """Projected decoder output [N, joiner_dim] for contexts [N, context_size]."""
    decoder_out = model.decoder(context, need_pad=False)  # [N, 1, decoder_dim]
    return model.joiner.decoder_proj(decoder_out[:, -1])


def _frame_lengths(encoder_out: torch.Tensor, encoder_out_lens: torch.Tensor) -> list[int]:
    """Valid frames per utterance, clamped to [0, T] (too-short inputs may give negative lengths)."""
    if encoder_out.dim() != 3:
        raise ValueError(f"encoder_out must be [B, T, C], got shape {tuple(encoder_out.shape)}")
    if encoder_out_lens.shape != (encoder_out.size(0),):
        raise ValueError(f"encoder_out_lens must be [B={encoder_out.size(0)}], got {tuple(encoder_out_lens.shape)}")
    return encoder_out_lens.clamp(min=0, max=encoder_out.size(1)).tolist()


@torch.no_grad()
def greedy_search_batch(
    model: nn.Module,
    encoder_out: torch.Tensor,
    encoder_out_lens: torch.Tensor,
    max_sym_per_frame: int = 1,
    unk_id: int = UNK_ID,
) -> list[list[int]]:
    """Batched greedy search: at each frame take the arg-max symbol; a non-blank one is emitted
    and updates the decoder, then (up to ``max_sym_per_frame`` times) the same frame is tried
    again, otherwise the search moves to the next frame.

    Utterances are visited longest first so that the ones still running at frame t are a prefix
    of the batch (pack_padded_sequence style): no work is spent on padding frames.

    Args:
      encoder_out: [B, T, encoder_dim]; encoder_out_lens: [B] valid frames per utterance.
    Returns:
      token ids (no blank, no unk) for each utterance, in the input order.
    """
    if max_sym_per_frame < 1:
        raise ValueError(f"max_sym_per_frame must be >= 1, got {max_sym_per_frame}")
    lengths = _frame_lengths(encoder_out, encoder_out_lens)
    batch_size = len(lengths)
    hyps: list[list[int]] = [[] for _ in range(batch_size)]
    if batch_size == 0 or max(lengths) == 0:
        return hyps
    blank_id = model.decoder.blank_id
    order = sorted(range(batch_size), key=lambda b: -lengths[b])
    sorted_lengths = [lengths[b] for b in order]
    device = encoder_out.device
    order_t = torch.tensor(order, device=device)
    encoder_proj = model.joiner.encoder_proj(encoder_out.index_select(0, order_t))  # [B, T, J]
    context = initial_context(batch_size, model.decoder.context_size, blank_id, device)
    decoder_proj = _decoder_proj(model, context)  # [B, J]

    num_active = batch_size
    for t in range(sorted_lengths[0]):
        while sorted_lengths[num_active - 1] <= t:
            num_active -= 1
        rows = torch.arange(num_active, device=device)
        for _ in range(max_sym_per_frame):
            logits = model.joiner(encoder_proj[rows, t], decoder_proj[rows], project_input=False)
            tokens = logits.argmax(dim=-1)
            emit = (tokens != blank_id) & (tokens != unk_id)
            if not bool(emit.any()):
                break
            rows, tokens = rows[emit], tokens[emit]
            for row, token in zip(rows.tolist(), tokens.tolist()):
                hyps[order[row]].append(token)
            context[rows] = torch.cat([context[rows, 1:], tokens.unsqueeze(1)], dim=1)
            decoder_proj[rows] = _decoder_proj(model, context[rows])
    return hyps


def _context_of(tokens: tuple[int, ...], context_size: int, blank_id: int) -> list[int]:
    """The last ``context_size`` ids of ``[-1]*(context_size-1) + [blank] + tokens``."""
    full = [-1] * (context_size - 1) + [blank_id] + list(tokens)
    return full[-context_size:]


def _log_add(a: float, b: float) -> float:
    if a < b:
        a, b = b, a
    return a + math.log1p(math.exp(b - a)) if b > -math.inf else a


@torch.no_grad()
def modified_beam_search(
    model: nn.Module,
    encoder_out: torch.Tensor,
    encoder_out_lens: torch.Tensor,
    beam: int = 4,
    unk_id: int = UNK_ID,
    lm: "TokenNgramLm | None" = None,
    lm_scale: float = 0.0,
    blank_penalty: float = 0.0,
    lodr_lm: "TokenNgramLm | None" = None,
    lodr_lm_scale: float = 0.0,
) -> list[list[int]]:
    """Modified beam search (icefall): one symbol at most per frame, ``beam`` hypotheses kept.

    Each hypothesis is a token sequence with a log-probability. At frame t every hypothesis of
    an utterance is extended by every vocabulary entry (blank/unk keep the sequence unchanged,
    others append the token); the ``beam`` best extensions of the utterance are kept, and
    extensions that end with the same token sequence are merged by adding their probabilities
    (logaddexp), since they are different alignments of the same output. The result is the
    hypothesis with the best log-probability divided by its length (context included, as
    icefall's ``get_most_probable(length_norm=True)``).

    With a token language model ``lm`` (shallow fusion, :mod:`todm.token_lm`), each non-blank
    token also scores ``lm_scale * lm.log_probs(hypothesis)[token]`` and each final hypothesis
    ``lm_scale * lm.eos_log_prob(hypothesis)``. ``blank_penalty`` is subtracted from the blank
    logit before the softmax (icefall's and sherpa-onnx's option): it pays back the LM's cost of
    every token, which would otherwise favour deletions.

    LODR (low-order density ratio, Zheng et al. 2022; icefall's ``modified_beam_search_LODR``):
    the prediction network has learnt the token statistics of the training text itself, so an
    LM of that text counts them twice. A low-order n-gram of the same text (``lodr_lm``, a
    bigram) stands in for that internal LM and is subtracted: ``lodr_lm_scale`` is negative, and
    each token and end of sentence also scores ``lodr_lm_scale * lodr_lm.log_probs(...)``.

    All hypotheses of all utterances still running at frame t go through the decoder and joiner
    as one batch; the per-utterance top-k runs on a [utterances, beam * V] score matrix in which
    missing hypotheses are -inf.

    Args:
      encoder_out: [B, T, encoder_dim]; encoder_out_lens: [B] valid frames per utterance.
    Returns:
      token ids (no blank, no unk) for each utterance, in the input order.
    """
    if beam < 1:
        raise ValueError(f"beam must be >= 1, got {beam}")
    lengths = _frame_lengths(encoder_out, encoder_out_lens)
    blank_id, context_size = model.decoder.blank_id, model.decoder.context_size
    device = encoder_out.device
    beams: list[dict[tuple[int, ...], float]] = [{(): 0.0} for _ in lengths]
    if max(lengths, default=0) == 0:
        return [[] for _ in lengths]
    encoder_proj = model.joiner.encoder_proj(encoder_out)  # [B, T, J]
    lms = [(m, scale) for m, scale in ((lm, lm_scale), (lodr_lm, lodr_lm_scale)) if m is not None]

    for t in range(max(lengths)):
        active = [b for b, n in enumerate(lengths) if n > t]
        flat = [(slot, b, tokens, score) for slot, b in enumerate(active) for tokens, score in beams[b].items()]
        contexts = torch.tensor([_context_of(tokens, context_size, blank_id) for _, _, tokens, _ in flat],
                                dtype=torch.int64, device=device)
        utt = torch.tensor([b for _, b, _, _ in flat], device=device)
        logits = model.joiner(encoder_proj[utt, t], _decoder_proj(model, contexts), project_input=False)
        if blank_penalty:
            logits[:, blank_id] -= blank_penalty
        scores = logits.float().log_softmax(dim=-1)  # [H, V]
        scores += torch.tensor([score for *_, score in flat], device=device).unsqueeze(1)
        for m, scale in lms:
            scores += scale * torch.stack([m.log_probs(tokens) for _, _, tokens, _ in flat]).to(device)

        vocab_size = scores.size(1)
        padded = scores.new_full((len(active), beam, vocab_size), -math.inf)
        slots = torch.tensor([slot for slot, *_ in flat], device=device)
        hyp_index = torch.tensor([i for b in active for i in range(len(beams[b]))], device=device)
        padded[slots, hyp_index] = scores
        k = min(beam, beam * vocab_size)
        top_scores, top_index = padded.view(len(active), -1).topk(k, dim=1)

        for b, row_scores, row_index in zip(active, top_scores.tolist(), top_index.tolist()):
            old = list(beams[b])
            new: dict[tuple[int, ...], float] = {}
            for score, index in zip(row_scores, row_index):
                if score == -math.inf:
                    continue
                tokens, token = old[index // vocab_size], index % vocab_size
                if token != blank_id and token != unk_id:
                    tokens = tokens + (token,)
                new[tokens] = _log_add(new[tokens], score) if tokens in new else score
            beams[b] = new

    def final_score(tokens: tuple[int, ...], score: float) -> float:
        score += sum(scale * m.eos_log_prob(tokens) for m, scale in lms)
        return score / (context_size + len(tokens))

    return [list(max(hyps.items(), key=lambda kv: final_score(*kv))[0]) for hyps in beams]
