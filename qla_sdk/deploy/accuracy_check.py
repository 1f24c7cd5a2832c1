"""Where an artifact's accuracy was checked, against where it is served.

An int8 build scores its graphs on the dev set on the machine that builds it (``build.int8_metric``). The same graphs
round differently on a CPU whose int8 (or bf16) kernels are of another class (``qla_sdk.machine.int8_kernels``), so
that score holds for the CPUs of the class it was checked on. The build records that class (``build.checked_on``);
``qla_sdk.load`` warns when the serving CPU's differs, and ``qla eval`` shows both beside the score it measures.
"""

from __future__ import annotations

import warnings

from qla_sdk import machine
from qla_sdk.deploy.artifact import Manifest


class AccuracyCheckedElsewhereWarning(UserWarning):
    """The artifact's int8 accuracy was checked on a CPU whose int8 or bf16 kernels differ from this one's."""


def checked_on(manifest: Manifest) -> dict[str, str] | None:
    """The kernel classes the build's accuracy check ran on, or None where the artifact records none (a build
    without a dev set, a float artifact, or one exported before the record existed)."""
    build = manifest.data.get("build")
    record = build.get("checked_on") if isinstance(build, dict) else None
    if not (isinstance(record, dict) and all(isinstance(v, str) for v in record.values())):
        return None
    return record


def kernels_that_matter(manifest: Manifest) -> tuple[str, ...]:
    """The kernel classes that decide how this artifact rounds: int8 for an int8 artifact, bf16 where it may compute
    in bf16 (a bf16 artifact, or OpenVINO graphs of inference precision bf16 or auto: auto is bf16 where the CPU has
    it, on every graph without the fused int8 attention)."""
    model = manifest.data.get("model")
    uses_bf16 = manifest.data.get("precision") == "bf16" or (
        isinstance(model, dict) and model.get("inference_precision") in ("bf16", "auto")
    )
    return (("int8",) if manifest.data.get("precision") == "int8" else ()) + (("bf16",) if uses_bf16 else ())


def classes_that_matter(classes: dict[str, str], manifest: Manifest) -> dict[str, str]:
    """``classes`` (a record or ``machine.kernel_classes()``) cut to its CPU model and the classes that matter for
    this artifact."""
    return {"cpu_model": classes.get("cpu_model", "")} | {
        kind: classes[kind] for kind in kernels_that_matter(manifest) if kind in classes
    }


def kernels_unlike_check(manifest: Manifest, here: dict[str, str] | None = None) -> dict[str, tuple[str, str]]:
    """``{kind: (checked on, here)}`` for each kernel class that matters and differs from the build's check."""
    record = checked_on(manifest)
    if record is None:
        return {}
    here = machine.kernel_classes() if here is None else here
    return {
        kind: (record[kind], here[kind])
        for kind in kernels_that_matter(manifest)
        if kind in record and (record[kind] != here[kind] or here[kind] == machine.UNKNOWN)
    }


def warn_if_checked_elsewhere(manifest: Manifest, here: dict[str, str] | None = None) -> None:
    """``AccuracyCheckedElsewhereWarning`` naming the build's CPU, the kernels that differ, the score it recorded,
    and how to score the artifact here."""
    unlike = kernels_unlike_check(manifest, here)
    if not unlike:
        return
    build = manifest.data["build"]
    score = build.get("int8_metric")
    scored = f" ({build.get('metric', 'metric')} {score:.4f})" if isinstance(score, (int, float)) else ""
    cpu = build["checked_on"].get("cpu_model") or "a CPU"
    kernels = ", ".join(f"{kind} on {then} there, {now} here" for kind, (then, now) in unlike.items())
    warnings.warn(
        AccuracyCheckedElsewhereWarning(
            f"{manifest.folder}: its accuracy{scored} was checked on {cpu}, whose kernels differ from this CPU's, "
            f"or cannot be told apart ({kernels}); kernels of other classes round differently, so its accuracy "
            f"here may differ from the recorded one. Score it here on your dev set (`qla eval {manifest.folder} "
            "--data DEV`) before serving, or build it on a CPU of this class"
        ),
        stacklevel=3,
    )
