"""The auxiliary CTC loss (icefall's ``--use-ctc``) of the model's CTC head on the encoder
output; transducer_loss.py adds it to a subnet's loss when the model has the head (``use_ctc``).
"""

import torch
import torch.nn.functional as F


def ctc_forward(ctc_output: torch.nn.Module, encoder_out: torch.Tensor, encoder_out_lens: torch.Tensor,
                symbols: torch.Tensor, y_lens: torch.Tensor, blank_id: int) -> torch.Tensor:
    """CTC loss (summed over utterances) of the auxiliary head on ``encoder_out`` [B, T, D].

    Utterances whose targets cannot fit their frames (after repeats) add zero, not inf.
    """
    with torch.autocast(device_type=encoder_out.device.type, enabled=False):
        log_probs = ctc_output(encoder_out.float()).log_softmax(dim=-1)
        return F.ctc_loss(log_probs.transpose(0, 1), symbols, encoder_out_lens, y_lens, blank=blank_id,
                          reduction="sum", zero_infinity=True)
