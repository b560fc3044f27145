"""Self-rectifying thresholds are checked per criterion when the config loads."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from decayprune.cli import main
from decayprune.config import DecaySettings


@pytest.mark.parametrize("t_rate", [1.0, 1.5, 5.0, -1.01])
def test_radial_threshold_outside_the_cosine_range_is_refused(t_rate: float) -> None:
    with pytest.raises(ValidationError, match=r"t_rate: got .*-1 <= t_rate < 1"):
        DecaySettings(policy="sp+sr", sr_criterion="radial", t_rate=t_rate)


@pytest.mark.parametrize("t_rate", [-1.0, 0.0, 0.99])
def test_radial_threshold_inside_the_range_loads(t_rate: float) -> None:
    assert DecaySettings(sr_criterion="radial", t_rate=t_rate).t_rate == t_rate


def test_pushback_thresholds_are_decay_quanta_and_not_capped() -> None:
    assert DecaySettings(sr_criterion="pushback", t_rate=5.0).t_rate == 5.0


def test_paper_is_a_deprecated_name_of_pushback() -> None:
    with pytest.warns(DeprecationWarning, match="now called 'pushback'"):
        settings = DecaySettings(sr_criterion="paper", t_rate=1.0)
    assert settings.sr_criterion == "pushback"


def test_cli_refuses_a_radial_t_rate_of_5_with_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["prune", "--set", "prune.decay.t_rate=5"])
    err = capsys.readouterr().err
    assert code == 2
    assert "prune.decay" in err and "t_rate: got 5.0" in err and "-1 <= t_rate < 1" in err
