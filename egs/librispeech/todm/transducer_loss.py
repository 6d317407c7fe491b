"""The pruned RNN-T loss of one subnet, as in icefall's ``forward_transducer``.

simple (linear joiner) loss -> prune ranges from its occupation gradients -> full joiner on
``prune_range`` symbols per frame -> pruned loss; plus the CTC loss (ctc_loss.py) of the
encoder's auxiliary CTC head when the model has one (icefall's ``--use-ctc``). For in-place
distillation a student can be evaluated on the teacher's ``ranges`` instead of its own, so that
teacher and student logits describe the same lattice nodes.

Nothing here waits for the device: whether the encoder/decoder outputs were finite comes back
as a tensor (``TransducerOutput.finite``) that the caller reads with its losses, once per step.
Only the todm loss backend, which checks its lattices itself, raises ``NonFiniteError`` early.
"""

from dataclasses import dataclass
from typing import Any

import torch

from todm.ctc_loss import ctc_forward
from todm.mutual_information import NonFiniteLatticeError
from todm.subnet import SubnetSpec


class NonFiniteError(RuntimeError):
    """The network produced NaN/inf before the loss (bad input or diverged weights)."""


@dataclass
class TransducerOutput:
    simple_loss: torch.Tensor | None  # summed over utterances; None when not asked for
    pruned_loss: torch.Tensor | None
    logits: torch.Tensor  # [B, T, R, V] joiner output on the pruned lattice
    ranges: torch.Tensor  # [B, T, R] symbol positions of those nodes
    boundary: torch.Tensor  # [B, 4] (0, 0, S_b, T_b)
    finite: torch.Tensor  # bool, 0-d: encoder and decoder outputs (am, lm) were all finite
    ctc_loss: torch.Tensor | None = None  # summed; None without a CTC head or when not asked for

    @property
    def num_frames(self) -> int:
        """Sum of encoder frames (for per-frame logging); reading it waits for the device."""
        return int(self.boundary[:, 3].sum())


def pad_targets(y: list[list[int]], blank_id: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """(symbols [B, S] padded with blank, lengths [B])."""
    lens = torch.tensor([len(u) for u in y], dtype=torch.int64)
    S = max(map(len, y), default=0)
    out = torch.full((len(y), S), blank_id, dtype=torch.int64)
    for i, u in enumerate(y):
        out[i, : len(u)] = torch.tensor(u, dtype=torch.int64)
    return out.to(device), lens.to(device)


def _loss_dtype(t: torch.Tensor) -> torch.Tensor:
    """float32 for the losses under autocast (bf16/fp16 in), float64 kept (a float64 reference run)."""
    return t.to(torch.promote_types(t.dtype, torch.float32))


def transducer_forward(
    model: Any,
    loss_api: Any,
    x: torch.Tensor,
    x_lens: torch.Tensor,
    y: list[list[int]],
    spec: SubnetSpec | None,
    dropout: float | None = None,
    ranges: torch.Tensor | None = None,
    compute_loss: bool = True,
    prune_range: int = 5,
    am_scale: float = 0.0,
    lm_scale: float = 0.25,
    embedded: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> TransducerOutput:
    """Run subnet ``spec`` of ``model`` on a batch and compute its pruned RNN-T loss.

    Args:
      model: a ``todm.model.Transducer`` (not DDP-wrapped).
      loss_api: the k2-compatible loss functions (``todm.loss_backend.get_loss_backend``).
      x, x_lens: [B, T, 80] features and their lengths.
      y: token ids per utterance (without blank/sos).
      spec: the subnet; None is the largest.
      dropout: this subnet's dropout rate (adaptive dropout), None for the model default.
      ranges: evaluate on these prune ranges (a teacher's) instead of computing our own.
      compute_loss: False skips both losses (a KD-only student needs only the logits).
      embedded: the conv front end's output for ``x`` if already computed (shared by subnets).
    """
    blank_id = model.decoder.blank_id
    encoder_out, encoder_out_lens = model.forward_encoder(x, x_lens, spec=spec, dropout=dropout,
                                                            embedded=embedded)
    symbols, y_lens = pad_targets(y, blank_id, x.device)
    sos_y = torch.cat([torch.full_like(symbols[:, :1], blank_id), symbols], dim=1)
    decoder_out = model.decoder(sos_y)

    boundary = torch.zeros((x.size(0), 4), dtype=torch.int64, device=x.device)
    boundary[:, 2] = y_lens
    boundary[:, 3] = encoder_out_lens

    lm = model.simple_lm_proj(decoder_out)
    am = model.simple_am_proj(encoder_out)
    finite = torch.isfinite(am).all() & torch.isfinite(lm).all()
    simple_loss = pruned_loss = ctc_loss = None
    try:
        with torch.autocast(device_type=x.device.type, enabled=False):
            if compute_loss or ranges is None:
                simple_loss, (px_grad, py_grad) = loss_api.rnnt_loss_smoothed(
                    lm=_loss_dtype(lm), am=_loss_dtype(am), symbols=symbols, termination_symbol=blank_id,
                    lm_only_scale=lm_scale, am_only_scale=am_scale, boundary=boundary,
                    reduction="sum", return_grad=True)
                if ranges is None:
                    ranges = loss_api.get_rnnt_prune_ranges(
                        px_grad=px_grad, py_grad=py_grad, boundary=boundary, s_range=prune_range)
                if not compute_loss:
                    simple_loss = None

        am_pruned, lm_pruned = loss_api.do_rnnt_pruning(
            am=model.joiner.encoder_proj(encoder_out), lm=model.joiner.decoder_proj(decoder_out), ranges=ranges)
        logits = model.joiner(am_pruned, lm_pruned, project_input=False)

        if compute_loss:
            with torch.autocast(device_type=x.device.type, enabled=False):
                pruned_loss = loss_api.rnnt_loss_pruned(
                    logits=_loss_dtype(logits), symbols=symbols, ranges=ranges, termination_symbol=blank_id,
                    boundary=boundary, reduction="sum")
    except NonFiniteLatticeError as e:  # the todm backend found NaN/inf inside a lattice
        raise NonFiniteError(f"non-finite encoder/decoder output of subnet {spec}: {e}") from e
    if compute_loss and model.ctc_output is not None:
        ctc_loss = ctc_forward(model.ctc_output, encoder_out, encoder_out_lens, symbols, y_lens, blank_id)
    return TransducerOutput(simple_loss, pruned_loss, logits, ranges, boundary, finite, ctc_loss)


def loss_scales(batch_idx_train: int, warm_step: int, simple_loss_scale: float) -> tuple[float, float]:
    """icefall's warm-up: the simple loss weight goes 1 -> s and the pruned one 0.1 -> 1."""
    if batch_idx_train >= warm_step:
        return simple_loss_scale, 1.0
    frac = batch_idx_train / warm_step
    return 1.0 - frac * (1.0 - simple_loss_scale), 0.1 + 0.9 * frac
