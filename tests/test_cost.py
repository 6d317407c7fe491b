"""The cost model (todm/cost.py): parameters against built models, MACs against a count on the
running model (torch's FLOP counter and the recurrent SSM cost of the shapes it ran with)."""

import dataclasses
import inspect
import subprocess
import sys

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from todm.cost import count_macs_per_second, count_parameters
from todm.mh_ssm import MultiHeadSSM
from todm.model import build_model
from todm.model_config import TransducerConfig
from todm.subnet import SearchSpace, SubnetSpec


def _numel(config):
    return sum(p.numel() for p in build_model(config).parameters())


@pytest.mark.parametrize(
    "overrides",
    [{}, {"causal": True, "context_size": 1, "use_ctc": True}, {"feature_dim": 40, "subsampling_channels": (4, 8, 16), "state_dim": 4}],
)
def test_count_parameters_matches_built_models(overrides):
    config = TransducerConfig(vocab_size=37, **overrides)
    for spec in (config.search_space.largest(), config.search_space.smallest(), SubnetSpec(3, 288, 2)):
        fixed = dataclasses.replace(config, search_space=SearchSpace.single(spec))
        assert count_parameters(config, spec) == _numel(fixed), spec


def _recurrent_ssm_macs(module: MultiHeadSSM, args: tuple, kwargs: dict, output: torch.Tensor) -> int:
    """MACs of one MH-SSM call in its recurrent form, from the shapes it actually ran with.

    Per frame, active channel and direction, each of the N/2 complex modes updates its state
    s <- z s + w u (a complex product and a complex-by-real product: 4 + 2 real MACs) and adds
    Re(s) scaled to the output (2); each channel adds its skip term u * D (1)."""
    call = inspect.signature(module.forward).bind(*args, **kwargs)
    frames = call.arguments["x"].shape[1]
    num_heads = call.arguments.get("num_heads") or module.num_heads
    width = num_heads * module.head_dim
    modes = module.log_a_real.shape[-1]
    directions = 1 if module.c_bwd is None else 2
    return frames * width * (directions * modes * (4 + 2 + 2) + 1)


def _measured_macs(config: TransducerConfig, spec: SubnetSpec, seconds: int) -> tuple[int, int]:
    """(matmul/conv MACs counted by torch, recurrent SSM MACs counted by hooks) of the encoder
    and one joiner output per encoder frame, on ``seconds`` of input."""
    model = build_model(config).eval()
    scan_macs, calls = [], []
    for module in model.modules():
        if isinstance(module, MultiHeadSSM):
            module.register_forward_hook(lambda *a: scan_macs.append(_recurrent_ssm_macs(*a)), with_kwargs=True)
    x = torch.randn(1, 100 * seconds + 7, config.feature_dim)  # 7: the conv front end's context
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        out, _ = model.forward_encoder(x, torch.tensor([x.size(1)]), spec=spec, fft=True)
        model.joiner.output_linear(model.joiner.encoder_proj(out))
    assert len(scan_macs) == spec.num_layers
    return counter.get_total_flops() // 2, sum(scan_macs)  # FLOPs of matmul/conv = 2 * MACs; FFTs not counted


@pytest.mark.parametrize("causal,factors", [(False, ()), (True, ()), (False, (1, 2, 4, 4, 2, 1))])
def test_count_macs_matches_a_count_on_the_running_model(causal, factors):
    config = TransducerConfig(vocab_size=50, causal=causal, downsampling_factors=factors)
    spec, seconds = SubnetSpec(3, 288, 2), 20
    matmul, scan = _measured_macs(config, spec, seconds)
    expected = count_macs_per_second(config, spec) * seconds
    assert abs(matmul + scan - expected) / expected < 0.005, (matmul + scan, expected)
    # The SSM term alone (2-3% of the total, inside that tolerance) exactly: only it depends on
    # the state size.
    small = dataclasses.replace(config, state_dim=config.state_dim // 2)
    scan_difference = (scan - _measured_macs(small, spec, seconds)[1]) // seconds
    assert count_macs_per_second(config, spec) - count_macs_per_second(small, spec) == scan_difference


def test_cost_grows_with_the_subnet():
    config = TransducerConfig(vocab_size=500)
    specs = config.search_space.deployable()
    params = [count_parameters(config, s) for s in specs]
    macs = [count_macs_per_second(config, s) for s in specs]
    assert params == sorted(params) and macs == sorted(macs)
    assert 1_000_000 < params[-1] < 3_500_000
    with pytest.raises(ValueError, match="num_heads=9"):
        count_parameters(config, SubnetSpec(2, 144, 9))


def test_specs_need_neither_the_model_nor_the_cost_model():
    """subnet.py (specs, search space) imports neither the model, its config nor the cost model
    (no import cycle); the cost model needs the config, not the nn.Module."""
    code = ("import sys\n"
            "import todm.subnet\n"
            "print(sorted(m for m in ('todm.model', 'todm.model_config', 'todm.cost') if m in sys.modules))\n"
            "import todm.cost\n"
            "print('todm.model' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["[]", "False"], out
