"""MONAI bundle configs name the networks by short _target_ after importing monai_tat."""

from __future__ import annotations

from monai.bundle import ConfigParser

from monai_tat.networks import AMIR, TAT


def test_config_parser_instantiates_short_targets() -> None:
    parser = ConfigParser(
        {
            "imports": ["$import monai_tat"],
            "tat": {"_target_": "TAT", "dim": 8, "num_blocks": [1, 1, 1, 1], "num_refinement_blocks": 1},
            "amir": {"_target_": "AMIR", "dim": 6, "num_blocks": [1, 1, 1, 1], "num_refinement_blocks": 1},
        }
    )
    tat, amir = parser.get_parsed_content("tat"), parser.get_parsed_content("amir")
    assert isinstance(tat, TAT) and tat.config["dim"] == 8
    assert isinstance(amir, AMIR) and amir.config["num_blocks"] == (1, 1, 1, 1)
