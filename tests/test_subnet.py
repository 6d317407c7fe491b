"""Subnet specs and the search space: string forms, validation, sampling, deployable subnets."""

import random

import pytest

from todm.subnet import SearchSpace, SubnetSpec

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
    with pytest.raises(ValueError, match="ffn: expected comma-separated integers, got '1x'"):
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
