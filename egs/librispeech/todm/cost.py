"""What a subnet costs, without building it: parameters and multiply-accumulates per second.

``count_parameters`` and ``count_macs_per_second`` take the model's config (model_config.py)
and a subnet spec of its search space (subnet.py). They follow the module definitions in
subsampling.py, mh_ssm.py, encoder.py, decoder.py and joiner.py; tests/test_cost.py checks them
against built models and a count on the running model.
"""

from todm.frame_rate import validate_factors
from todm.model_config import TransducerConfig
from todm.subnet import SubnetSpec
from todm.subsampling import frequency_sizes

FRAMES_PER_SECOND = 100  # 10 ms fbank frames


def _ssm_head_params(config: TransducerConfig) -> int:
    """Parameters of one SSM head: log_dt, skip (per channel); log_a_real, a_imag, C (per mode)."""
    modes = config.state_dim // 2
    directions = 1 if config.causal else 2
    per_channel = 2 + 2 * modes + 2 * modes * directions
    return config.head_dim * per_channel


def count_parameters(config: TransducerConfig, spec: SubnetSpec) -> int:
    """Parameters of the standalone model ``extract(spec)`` (all of it: encoder, decoder,
    joiner, the simple projections used by the pruned loss and the CTC head if any)."""
    config.search_space.validate(spec)
    c1, c2, c3 = config.subsampling_channels
    d, v, dd, j = config.encoder_dim, config.vocab_size, config.decoder_dim, config.joiner_dim
    f3 = frequency_sizes(config.feature_dim)[2]
    embed = (9 * c1 + c1) + (9 * c1 * c2 + c2) + (9 * c2 * c3 + c3) + (c3 * f3 * d + d)

    width = spec.num_heads * config.head_dim
    ffn = 2 * (d * spec.ffn_dim + spec.ffn_dim + spec.ffn_dim * d + d)
    ssm = (d * width + width) + spec.num_heads * _ssm_head_params(config) + (width * width + width) + (width * d + d)
    norms = 3 * 2 * d  # pre-norm: one LayerNorm per module of a block
    encoder = spec.num_layers * (ffn + ssm + norms) + 2 * d  # + the final LayerNorm

    decoder = v * dd + (dd * 4 * config.context_size if config.context_size > 1 else 0)
    joiner = (d * j + j) + (dd * j + j) + (j * v + v)
    simple = (d * v + v) + (dd * v + v)
    ctc = d * v + v if config.use_ctc else 0
    return embed + encoder + decoder + joiner + simple + ctc


def count_macs_per_second(config: TransducerConfig, spec: SubnetSpec) -> int:
    """Multiply-accumulates to recognise one second of audio with the subnet ``spec``.

    Counted: convolutions and linear layers of the encoder (at 100 input frames/s and
    25 encoder frames/s, 25/f in a block with downsampling factor f), the SSM sequence mixing
    at the cost of its recurrent form (per frame, channel and direction, N/2 complex modes:
    state update 6 + output 2 real MACs per mode, plus the skip term), and one joiner evaluation
    per encoder frame (encoder projection + output layer, as greedy search with at most one
    symbol per frame). Not counted: elementwise ops
    (norms, activations, gates), the decoder (it runs once per emitted token, not per frame).
    The recurrent cost is length-independent; the FFT convolution of training costs more per
    frame on long inputs, and the chunked scan of ONNX (todm.ssm_scan) a constant more, but
    both compute the same function.
    """
    config.search_space.validate(spec)
    c1, c2, c3 = config.subsampling_channels
    f1, f2, f3 = frequency_sizes(config.feature_dim)
    d, v, j = config.encoder_dim, config.vocab_size, config.joiner_dim
    fps = FRAMES_PER_SECOND
    embed = fps * f1 * c1 * 9 + fps // 2 * f2 * c2 * c1 * 9 + fps // 4 * f3 * c3 * c2 * 9 + fps // 4 * c3 * f3 * d

    width = spec.num_heads * config.head_dim
    directions = 1 if config.causal else 2
    scan = width * (directions * 8 * (config.state_dim // 2) + 1)
    per_frame = 2 * 2 * d * spec.ffn_dim + d * width + width * width + width * d + scan
    factors = validate_factors(config.downsampling_factors[:spec.num_layers], spec.num_layers)
    encoder = round(sum(fps // 4 / f for f in factors) * per_frame)  # a block at 1/f of the rate: 1/f the frames
    joiner = fps // 4 * (d * j + j * v)
    return embed + encoder + joiner
