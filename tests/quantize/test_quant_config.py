import pytest

from qla_sdk.errors import ConfigError
from qla_sdk.quantize import QuantConfig, default_seq_lens


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"backend": "tensorrt"}, "backend 'tensorrt'"),
        ({"calibration_samples": 0}, "calibration_samples 0"),
        ({"tolerance": 1.5}, "tolerance 1.5"),
        ({"act_algo": "percentile"}, "act_algo 'percentile'"),
        ({"seq_lens": (1,)}, "seq_lens"),
        ({"keep": "last"}, "keep 'last'"),
        ({"tolerance_from": "teacher"}, "tolerance_from 'teacher'"),
        ({"backend": "inductor", "keep": "best"}, "openvino backend only"),
        ({"backend": "openvino", "inference_precision": "fp16"}, "inference_precision 'fp16'"),
        ({"backend": "inductor", "inference_precision": "bf16"}, "applies to the openvino backend only"),
        ({"backend": "inductor", "inference_precision": "auto"}, "applies to the openvino backend only"),
    ],
)
def test_bad_values_are_named(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        QuantConfig(**kwargs)


def test_seq_lens_sorted_and_unique():
    assert QuantConfig(seq_lens=(384, 128, 128)).seq_lens == (128, 384)


def test_default_seq_lens():
    assert default_seq_lens(384, ratio_config=False) == (384,)
    assert default_seq_lens(384, ratio_config=True) == (64, 128, 192, 256, 320, 384)
    assert default_seq_lens(100, ratio_config=True) == (64, 100)
