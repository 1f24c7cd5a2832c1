import pytest

from qla_sdk.search.plot import plot_search


def row(gene, macs, metric, latency=None):
    return {"gene": gene, "macs": macs, "metric": metric, "latency_ms": latency}


@pytest.mark.parametrize("with_latency", [False, True])
def test_plot_writes_a_png(tmp_path, with_latency):
    ms = (lambda v: v) if with_latency else (lambda v: None)
    full = row([8, 8], 2e9, 0.9, ms(10.0))
    front = [row([4, 2], 1e9, 0.8, ms(5.0)), row([6, 4], 1.5e9, 0.88, ms(7.0)), full]
    constant = [row([6, 5], 1.6e9, 0.85, ms(8.0)), full]
    scored = [*front, *constant, row([5, 5], 1.4e9, 0.7)]
    path = plot_search(
        tmp_path / "search.png",
        scored,
        front,
        constant,
        full,
        best=front[1],
        metric_name="accuracy",
        budget={"max_macs": 1.6e9},
    )
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    import matplotlib.image

    height, width = matplotlib.image.imread(path).shape[:2]
    assert width > height * (1.6 if with_latency else 1.0)  # a second panel for latency
