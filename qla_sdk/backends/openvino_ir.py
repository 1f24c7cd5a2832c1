"""OpenVINO IR files of several graphs of one model, sharing one weights file.

An artifact holds one graph per input length (``seq16.xml``, ``seq32.xml``, ...), and every graph carries the same
weights: ``ov.save_model`` would write them once per graph, so four graphs made a four times larger artifact.
Here each graph's ``.xml`` is written as OpenVINO writes it, except that its constants point into one
``weights.bin`` holding every distinct constant once. An int8 weight, quantized from the weight alone, is the same
bytes in every graph; what calibration sets per graph (activation ranges, corrected biases, and the weights that
NNCF's smooth quant scaled by that graph's own activations) is stored per graph.
"""

from __future__ import annotations

import hashlib
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path

WEIGHTS_FILE = "weights.bin"


def save_sharing_weights(models: dict[str, object], folder: Path) -> list[str]:
    """Write ``<name>.xml`` for each ``ov.Model`` of ``models`` and one ``weights.bin`` for all of them into
    ``folder``; return the file names written."""
    import openvino as ov

    folder = Path(folder)
    offsets: dict[bytes, int] = {}  # sha256 of a constant's bytes -> its offset in weights.bin
    written = []
    with tempfile.TemporaryDirectory(dir=folder, prefix=".ir-") as tmp, open(folder / WEIGHTS_FILE, "wb") as weights:
        for name, model in models.items():
            xml = Path(tmp) / f"{name}.xml"
            ov.save_model(model, str(xml), compress_to_fp16=False)
            blob = xml.with_suffix(".bin").read_bytes()
            tree = ET.parse(xml)
            for data in _constant_data(tree):
                start, size = int(data.get("offset")), int(data.get("size"))
                chunk = blob[start : start + size]
                key = hashlib.sha256(chunk).digest()
                if key not in offsets:
                    offsets[key] = weights.tell()
                    weights.write(chunk)
                data.set("offset", str(offsets[key]))
            tree.write(folder / f"{name}.xml", encoding="utf-8", xml_declaration=True)
            written.append(f"{name}.xml")
    return [*written, WEIGHTS_FILE]


def read_graph(core, xml: Path):
    """The ``ov.Model`` of the IR ``xml``: with its own ``.bin`` beside it (artifacts written before the weights
    were shared, and ``ov.save_model``'s files), else with the shared ``weights.bin``."""
    xml = Path(xml)
    own = xml.with_suffix(".bin")
    return core.read_model(str(xml), str(own if own.is_file() else xml.parent / WEIGHTS_FILE))


def _constant_data(tree: ET.ElementTree) -> list[ET.Element]:
    """The ``<data offset= size=>`` elements of the graph's constants: the only places an IR points into its
    weights file."""
    found = []
    for layer in tree.getroot().iter("layer"):
        data = layer.find("data")
        if data is not None and data.get("offset") is not None and data.get("size") is not None:
            found.append(data)
    return found
