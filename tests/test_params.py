"""KEY=VALUE parsing shared by --set and --param."""
import pytest

from gapkit.errors import GapkitError
from gapkit.params import parse_key_values


def test_json_values_and_strings():
    got = parse_key_values(["a=0.5", "b=polar", "c=[1, 2]", "d=true", "e=", "a=2"])
    assert got == {"a": 2, "b": "polar", "c": [1, 2], "d": True, "e": ""}


@pytest.mark.parametrize("bad", ["novalue", "=3"])
def test_malformed_is_one_line_error(bad):
    with pytest.raises(GapkitError, match="--param expects KEY=VALUE"):
        parse_key_values([bad], "--param")


def test_identifier_keys():
    assert parse_key_values(["loss_kwargs.beta=1"], identifier_keys=True) == {"loss_kwargs.beta": 1}
    with pytest.raises(GapkitError, match="identifier"):
        parse_key_values(["not-a-key=1"], identifier_keys=True)
