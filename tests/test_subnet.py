"""Subnet specs, search space and the cost model (checked against built models and torch's
FLOP counter)."""

import dataclasses
import inspect
import random

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from todm.mh_ssm import MultiHeadSSM
from todm.model import TransducerConfig, build_model
from todm.subnet import SearchSpace, SubnetSpec, count_macs_per_second, count_parameters

SPACE = SearchSpace(layers=(2, 3, 4, 5, 6), ffn_dims=(144, 288, 432, 576), heads=(1, 2, 3, 4))


def test_spec_string_round_trip():
    spec = SubnetSpec(6, 576, 4)
    assert str(spec) == "L6-F576-H4"
    assert SubnetSpec.parse("L6-F576-H4") == spec
    for s in SPACE.enumerate():
        assert SubnetSpec.parse(str(s)) == s


@pytest.mark.parametrize(
    "text, field",
    [("L6-Fx-H4", "ffn_dim"), ("6-F576-H4", "num_layers"), ("L6-F576-X4", "num_heads"), ("L6-F576", "L<layers>")],
)
def test_bad_spec_string_names_the_field(text, field):
    with pytest.raises(ValueError, match=field):
        SubnetSpec.parse(text)


def test_bad_spec_values_name_the_field():
    with pytest.raises(ValueError, match="num_layers"):
        SubnetSpec(0, 576, 4)
    with pytest.raises(ValueError, match="num_heads"):
        SubnetSpec(6, 576, -1)
    with pytest.raises(ValueError, match="ffn_dim"):
        SubnetSpec.parse("L6-F0-H4")


def test_search_space_string_round_trip_and_errors():
    text = "layers=2,4,6;ffn=192,384,576;heads=1,2,4"
    space = SearchSpace.parse(text)
    assert space == SearchSpace((2, 4, 6), (192, 384, 576), (1, 2, 4))
    assert str(space) == text
    assert SearchSpace.parse(str(SPACE)) == SPACE
    with pytest.raises(ValueError, match="heads"):
        SearchSpace.parse("layers=2,4;ffn=192")
    with pytest.raises(ValueError, match="ffn"):
        SearchSpace.parse("layers=2;ffn=1x;heads=1")
    with pytest.raises(ValueError, match="layers: choices must be strictly increasing"):
        SearchSpace((4, 2), (8,), (1,))
    with pytest.raises(ValueError, match="nope"):
        SearchSpace.parse("layers=2;ffn=8;heads=1;nope=3")


def test_largest_smallest_enumerate_validate():
    assert SPACE.largest() == SubnetSpec(6, 576, 4)
    assert SPACE.smallest() == SubnetSpec(2, 144, 1)
    specs = SPACE.enumerate()
    assert len(specs) == len(set(specs)) == 5 * 4 * 4
    for s in specs:
        SPACE.validate(s)
    with pytest.raises(ValueError, match=r"ffn_dim=100 .*allowed: 144,288,432,576"):
        SPACE.validate(SubnetSpec(2, 100, 1))
    with pytest.raises(ValueError, match="num_layers=7"):
        SPACE.validate(SubnetSpec(7, 144, 1))


def test_sample_is_uniform_per_dimension():
    rng = random.Random(0)
    draws = [SPACE.sample(rng) for _ in range(4000)]
    for s in draws:
        SPACE.validate(s)
    for name, choices in (("num_layers", SPACE.layers), ("ffn_dim", SPACE.ffn_dims), ("num_heads", SPACE.heads)):
        counts = [sum(getattr(s, name) == c for s in draws) for c in choices]
        expected = len(draws) / len(choices)
        assert all(abs(n - expected) < 0.15 * expected for n in counts), (name, counts)
    assert [SPACE.sample(random.Random(5)) for _ in range(3)] == [SPACE.sample(random.Random(5)) for _ in range(3)]


def test_deployable_spans_smallest_to_largest():
    specs = SPACE.deployable()
    assert len(specs) >= 5 and len(set(specs)) == len(specs)
    assert specs[0] == SPACE.smallest() and specs[-1] == SPACE.largest()
    for a, b in zip(specs, specs[1:]):
        assert a.num_layers <= b.num_layers and a.ffn_dim <= b.ffn_dim and a.num_heads <= b.num_heads
    one = SearchSpace.single(SubnetSpec(3, 64, 2))
    assert one.deployable() == [SubnetSpec(3, 64, 2)]


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


@pytest.mark.parametrize("causal", [False, True])
def test_count_macs_matches_a_count_on_the_running_model(causal):
    config, spec, seconds = TransducerConfig(vocab_size=50, causal=causal), SubnetSpec(3, 288, 2), 20
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
