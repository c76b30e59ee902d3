import pytest

from edgespec.config import GenerationConfig


def test_defaults_are_valid_and_greedy():
    cfg = GenerationConfig()
    assert cfg.temperature == 0.0 and cfg.top_p == 1.0 and cfg.top_k == 0
    assert cfg.drafter == "auto" and cfg.stop == ()


@pytest.mark.parametrize(
    ("kwargs", "exc", "needle"),
    [
        ({"max_new_tokens": 0}, ValueError, "max_new_tokens"),
        ({"max_new_tokens": -5}, ValueError, "max_new_tokens"),
        ({"max_new_tokens": 10**12}, ValueError, "max_new_tokens"),
        ({"max_new_tokens": 2.5}, TypeError, "max_new_tokens"),
        ({"max_new_tokens": True}, TypeError, "max_new_tokens"),
        ({"temperature": -0.1}, ValueError, "temperature"),
        ({"temperature": float("nan")}, ValueError, "temperature"),
        ({"temperature": "hot"}, TypeError, "temperature"),
        ({"top_p": 0.0}, ValueError, "top_p"),
        ({"top_p": 1.5}, ValueError, "top_p"),
        ({"top_p": -1}, ValueError, "top_p"),
        ({"top_k": -1}, ValueError, "top_k"),
        ({"seed": -1}, ValueError, "seed"),
        ({"drafter": "eagle9"}, ValueError, "unknown drafter"),
        ({"num_draft_tokens": -1}, ValueError, "num_draft_tokens"),
        ({"num_draft_tokens": 1000}, ValueError, "num_draft_tokens"),
        ({"stop": ("",)}, ValueError, "stop"),
        ({"stop": (3,)}, ValueError, "stop"),
    ],
)
def test_bad_values_raise_with_the_value(kwargs, exc, needle):
    with pytest.raises(exc, match=needle):
        GenerationConfig(**kwargs)


def test_single_stop_string_becomes_tuple():
    assert GenerationConfig(stop="END").stop == ("END",)
    assert GenerationConfig(stop=["a", "b"]).stop == ("a", "b")
