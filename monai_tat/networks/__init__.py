"""Networks: Restormer, TAT (MICCAI 2025) and AMIR (MICCAI 2024) for 2D slice restoration."""

from monai_tat.networks.amir import AMIR
from monai_tat.networks.factory import NETWORKS, build_network, infer_network_config, network_config, network_from_state_dict
from monai_tat.networks.reference import convert_reference_state_dict, load_reference_state_dict
from monai_tat.networks.restormer import Restormer
from monai_tat.networks.tat import TAT

__all__ = [
    "AMIR",
    "NETWORKS",
    "Restormer",
    "TAT",
    "build_network",
    "convert_reference_state_dict",
    "infer_network_config",
    "load_reference_state_dict",
    "network_config",
    "network_from_state_dict",
]
