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


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"calibration_samples": "100"}, r"calibration_samples '100': must be an integer >= 1"),
        ({"calibration_samples": True}, r"calibration_samples True: must be an integer >= 1"),
        ({"calibration_samples": 64.0}, r"calibration_samples 64.0: must be an integer >= 1"),
        ({"max_trials": 0}, r"max_trials 0: must be an integer >= 1"),
        ({"max_trials": True}, r"max_trials True: must be an integer >= 1"),
        ({"tolerance": "0.01"}, r"tolerance '0.01': a relative drop in \[0, 1\)"),
        ({"tolerance": True}, r"tolerance True: a relative drop"),
        ({"tolerance": float("nan")}, r"tolerance nan: a relative drop"),
        ({"seq_lens": "128,384"}, r"seq_lens '128,384': not a list of lengths; give integers >= 2, e.g. \(128, 384\)"),
        ({"seq_lens": 128}, r"seq_lens 128: not a list of lengths"),
        ({"seq_lens": ()}, r"seq_lens \(\): give integers >= 2"),
        ({"seq_lens": (128.5,)}, r"seq_lens \(128.5,\): give integers >= 2"),
        ({"seq_lens": (True, 128)}, r"seq_lens \(True, 128\): give integers >= 2"),
        ({"quantize_embeddings": "no"}, r"quantize_embeddings 'no': must be True or False"),
        ({"quantize_embeddings": 0}, r"quantize_embeddings 0: must be True or False"),
    ],
)
def test_wrong_types_are_named_not_raw_errors(kwargs, message):
    """A string, a bool where an int is meant, or an int where a bool is: a one-line ConfigError, never a raw
    TypeError/ValueError from a comparison, nor a value silently read as something else."""
    with pytest.raises(ConfigError, match=message):
        QuantConfig(**kwargs)


def test_keep_best_names_the_flags_that_fix_it():
    with pytest.raises(ConfigError, match=r"--keep first or --backend openvino"):
        QuantConfig(backend="inductor", keep="best")


def test_numpy_integers_are_integers():
    np = pytest.importorskip("numpy")
    config = QuantConfig(calibration_samples=np.int64(64), max_trials=np.int32(2), seq_lens=np.array([384, 128]))
    assert config.calibration_samples == 64 and type(config.calibration_samples) is int
    assert type(config.max_trials) is int
    assert config.seq_lens == (128, 384) and all(type(n) is int for n in config.seq_lens)
    assert QuantConfig(tolerance=np.float32(0.5)).tolerance == 0.5


def test_the_recipe_gives_seq_lens_as_a_list():
    from qla_sdk.config import from_dict

    assert from_dict(QuantConfig, {"seq_lens": [384, 128]}).seq_lens == (128, 384)
    with pytest.raises(ConfigError, match="seq_lens: expected a list"):
        from_dict(QuantConfig, {"seq_lens": "128,384"}, where="quantize")
