"""The eight stages of the QuaLA recipe, each a function ``(folder, earlier outputs, resume) -> outputs``.

Each calls the library functions its ``qla`` subcommand calls (``train.finetune``, ``train.distill.distill``,
``train.length_drop.lat_train``, ``search.job.run_search``, ``deploy.export_model``), on data loaded once by
``data.task_data.load_task_data``. Outputs are small JSON-ready dicts (paths and figures) that the runner keeps in
each stage's marker, so a skipped stage hands the next one the same inputs.
"""

from __future__ import annotations

import functools
import shutil
from collections.abc import Callable
from pathlib import Path

from qla_sdk.recipe.clock import CLOCK
from qla_sdk.recipe.common import folder_bytes, model_labels
from qla_sdk.recipe.config import RecipeConfig

STAGES = ("teacher", "distill", "lat", "search", "quantize", "export", "benchmark", "report")
TRAINING_STAGES = ("teacher", "distill", "lat")
# The outputs (keys of a stage's result) that later stages read, or the user does: a finished stage whose artifact
# was deleted runs again.
ARTIFACTS = {
    "teacher": ("model",),
    "distill": ("model",),
    "lat": ("model",),
    "search": ("model",),
    "quantize": ("artifact",),
    "export": ("artifact",),
    "report": ("report_json", "report_md"),
}


class RecipeStages:
    """The stage functions of one recipe run, sharing its tokenizer and loaded data."""

    def __init__(
        self,
        recipe: RecipeConfig,
        out_dir: str | Path,
        progress: bool = True,
        log: Callable[[str], None] | None = None,
    ) -> None:
        self.recipe = recipe
        self.out_dir = Path(out_dir)
        self.progress = progress
        self.log = log  # the run's console lines (None: silent)
        self.rows: tuple[int, int] | None = None  # training and dev features, once a stage has loaded the data

    # ------------------------------------------------------------------------------------------------- shared

    @functools.cached_property
    def tokenizer_source(self) -> str:
        return self.recipe.teacher.tokenizer_source

    @functools.cached_property
    def tokenizer(self):
        from qla_sdk.data import load_tokenizer

        return load_tokenizer(self.tokenizer_source)

    def data(self, label_names: tuple[str, ...] | None = None):
        """The task's features, label ids following ``label_names`` (a model's labels), loaded once per labelling."""
        if label_names is not None and self._load(None).label_names == list(label_names):
            return self._load(None)
        return self._load(label_names)

    @functools.cache  # noqa: B019 - one RecipeStages per run; the cache lives as long as the run
    def _load(self, label_names: tuple[str, ...] | None):
        from qla_sdk.data.task_data import load_task_data

        d = self.recipe.data
        data = load_task_data(
            d.train,
            d.eval,
            self.tokenizer,
            self.recipe.task,
            label_names,
            text_columns=d.text_columns,
            label_column=d.label_column,
            max_length=self.recipe.max_length,
            doc_stride=d.doc_stride,
        )
        self.rows = (len(data.train_features), len(data.eval_features))  # for the ETA (run.stage_weights)
        note = data.detection_note("to train on others, set data.text_columns in the recipe")
        if note and self.log is not None and label_names is None:  # every labelling loads this one first: once
            self.log(f"recipe data: {note}")
        return data

    def _train_config(self, section, folder: Path, resume: bool):
        """A stage's ``TrainConfig``: its folder and resumption set by the run; a bar unless the run or the section
        (``progress: false``) turns it off."""
        return section.for_run(folder, resume=resume, progress=self.progress and section.progress)

    @staticmethod
    def _summary(result, eval_keys: dict) -> dict:
        return {
            "model": str(result.final_dir),
            "dev": eval_keys,
            "train_loss": result.metrics.get("train_loss"),
            "steps": result.steps,
            "train_wall_time_s": round(result.wall_time_s, 2),
            "samples_per_s": round(result.samples_per_s, 2),
            "bf16": result.bf16,
            "resumed_from": str(result.resumed_from) if result.resumed_from else None,
        }

    # ------------------------------------------------------------------------------------------------- stages

    def teacher(self, folder: Path, earlier: dict, resume: bool) -> dict:
        """Fine-tune the teacher on the task (``qla finetune``), or score it as it is."""
        from qla_sdk.modeling import from_pretrained
        from qla_sdk.train import evaluate
        from qla_sdk.train.finetune import finetune

        t = self.recipe.teacher
        if t.finetune is None:
            model = from_pretrained(t.model, task=self.recipe.task).eval()
            data = self.data(tuple(model_labels(model) or ()) or None)
            dev = evaluate(model, data.eval_features, self.recipe.task, data.eval_examples)
            return {"model": str(t.model), "dev": dev, "fine_tuned": False}
        data = self.data()
        model = from_pretrained(t.model, task=self.recipe.task, labels=data.label_names, seed=t.finetune.seed)
        result = finetune(
            model,
            data.train_features,
            data.eval_features,
            self.recipe.task,
            self._train_config(t.finetune, folder, resume),
            eval_examples=data.eval_examples,
            tokenizer=self.tokenizer,
            extra_metadata=data.metadata(),
        )
        dev = {k: v for k, v in result.metrics.items() if k != "train_loss"}
        return {**self._summary(result, dev), "fine_tuned": True}

    def distill(self, folder: Path, earlier: dict, resume: bool) -> dict:
        """MiniLM distillation of the teacher into the student (``qla distill``); with ``student: null`` the
        fine-tuned teacher passes through unchanged (it is the model to compress)."""
        from qla_sdk.modeling import from_pretrained
        from qla_sdk.train.distill import distill
        from qla_sdk.train.student import (
            StudentShape,
            build_assistant,
            student_from_checkpoint,
            student_from_layers,
            student_from_shape,
        )

        s, section = self.recipe.student, self.recipe.distill
        if s is None:
            return {**earlier["teacher"], "skipped": "student: null (the fine-tuned teacher is compressed as it is)"}
        teacher = from_pretrained(earlier["teacher"]["model"], task=self.recipe.task)
        if s.init_layers is not None:
            student = student_from_layers(teacher, s.init_layers)
        elif s.shape is not None:
            student = student_from_shape(teacher, StudentShape.parse(s.shape), seed=section.train.seed)
        else:
            student = student_from_checkpoint(s.checkpoint, teacher, seed=section.train.seed)
        assistant = build_assistant(teacher, student, seed=section.train.seed) if s.assistant else None
        data = self.data(tuple(model_labels(teacher) or ()) or None)
        result = distill(
            teacher,
            student,
            data.train_features,
            data.eval_features,
            self.recipe.task,
            section.minilm,
            self._train_config(section.train, folder, resume),
            eval_examples=data.eval_examples,
            assistant=assistant,
            tokenizer=self.tokenizer,
            extra_metadata={**data.metadata(), "student_init": _student_source(s)},
            augment=section.augment,
        )
        dev = {k: v for k, v in result.metrics.items() if k != "train_loss" and not k.startswith("assistant_")}
        return {**self._summary(result, dev), "layers": student.num_layers}

    def lat(self, folder: Path, earlier: dict, resume: bool) -> dict:
        """Length-adaptive training of the student (``qla lat-train``)."""
        from qla_sdk.modeling import from_pretrained
        from qla_sdk.train.length_drop import lat_train

        section = self.recipe.lat
        model = from_pretrained(earlier["distill"]["model"], task=self.recipe.task)
        labels = model_labels(model)
        teacher = None
        if section.use_teacher:
            teacher = from_pretrained(earlier["teacher"]["model"], task=self.recipe.task, labels=labels)
        data = self.data(tuple(labels or ()) or None)
        result = lat_train(
            model,
            data.train_features,
            data.eval_features,
            self.recipe.task,
            section.length_adaptive,
            self._train_config(section.train, folder, resume),
            eval_examples=data.eval_examples,
            teacher=teacher,
            tokenizer=self.tokenizer,
            extra_metadata=data.metadata(),
        )
        full = {k: v for k, v in result.metrics.items() if k != "train_loss" and not k.startswith("smallest_")}
        smallest = {k.removeprefix("smallest_"): v for k, v in result.metrics.items() if k.startswith("smallest_")}
        summary = self._summary(result, full)
        summary["smallest_dev"] = smallest
        summary["smallest_length_config"] = str(section.length_adaptive.smallest_length_config(model.num_layers))
        return summary

    def search(self, folder: Path, earlier: dict, resume: bool) -> dict:
        """Evolutionary search of per-layer lengths (``qla search``); the chosen gene is then scored on the whole
        dev set, since the search may score genes on a subset."""
        from qla_sdk.modeling import from_pretrained
        from qla_sdk.search.job import SearchJob, run_search
        from qla_sdk.train import evaluate

        s, d = self.recipe.search, self.recipe.data
        classification = self.recipe.task != "question-answering"
        model_dir = folder / "model"
        if model_dir.exists():  # a copy written by an interrupted run; the search writes it again
            shutil.rmtree(model_dir)
        job = SearchJob(
            model=earlier["lat"]["model"],
            data=d.eval,
            output=folder,
            task=self.recipe.task,
            tokenizer=self.tokenizer_source,
            seq_len=self.recipe.max_length,
            doc_stride=None if classification else d.doc_stride,
            # genes scored on the columns the training stages read, not on detection's pick
            text_columns=d.text_columns if classification else None,
            label_column=d.label_column if classification else None,
            resume=resume and (folder / "search_state.json").exists(),
            write_to=model_dir,
            no_progress=not self.progress,
            config=self.recipe.search,
            # The accuracy a recipe keeps is the fine-tuned teacher's, the model the user compresses: a metric
            # drop counts from it, whatever the distilled or length-adaptive model's own full length scores.
            reference_model=earlier["teacher"]["model"] if s.max_metric_drop is not None else None,
        )
        report = run_search(job, own_files=(CLOCK,))  # the stage's clock sits beside the search's files
        best = report["best"]
        model = from_pretrained(model_dir, task=self.recipe.task).eval()
        # confirm scored the kept gene on every dev example already; without it, score the written model here
        dev = ((report.get("confirmed") or {}).get("kept") or {}).get("scores")
        if dev is None:
            data = self.data(tuple(model_labels(model) or ()) or None)
            pad_to = None if s.ratio else self.recipe.max_length
            dev = evaluate(
                model,
                data.eval_features,
                self.recipe.task,
                data.eval_examples,
                s.batch_size,
                model.length_config,
                pad_to,
            )
        return {
            "model": str(model_dir),
            "length_config": model.length_config.to_dict(),
            "metric": report["metric"],
            "search_metric": best["metric"],
            "search_full_metric": report["full"]["metric"],
            "search_reference_metric": (report.get("reference") or {}).get("metric"),
            "search_confirmed": report.get("confirmed"),  # the genes re-scored on every dev example, if any
            "dev_rows_scored": report["dev_rows"],
            "dev": dev,
            "macs": best["macs"],
            "macs_ratio": best["macs_ratio"],
            "plot": str(folder / "search.png"),
            "front": str(folder / "front.json"),
            "scored": len(report["scored"]),
        }

    def quantize(self, folder: Path, earlier: dict, resume: bool) -> dict:
        """Static int8 of the searched model (``qla quantize``): calibrated on training rows, tuned until the dev
        metric is within ``quantize.tolerance`` of fp32, or with ``tolerance_from: reference`` of the fine-tuned
        teacher (the model the user compresses). FP32/BF16 backends export without calibration."""
        from qla_sdk.data.columns import DevColumns
        from qla_sdk.deploy import export_model
        from qla_sdk.deploy.artifact import read_manifest
        from qla_sdk.deploy.evaluation import evaluator, task_rows
        from qla_sdk.modeling import from_pretrained
        from qla_sdk.modeling.checkpoint import training_columns

        config, d = self.recipe.quantize, self.recipe.data
        model = from_pretrained(earlier["search"]["model"], task=self.recipe.task).eval()
        calibration, evaluate, reference = [], None, None
        # Calibrated and tuned on the columns the training stages read, as the model records them where the recipe
        # names none: detection on the dev file alone could pick other ones.
        recorded = training_columns(earlier["search"]["model"])
        text_columns = DevColumns.of(d.text_columns, d.label_column, recorded).text_columns
        columns = {"text_columns": text_columns, "label_column": d.label_column}
        if self.recipe.task == "question-answering":
            columns = {}  # SQuAD data: no columns to pick
        if config.is_int8:
            if config.tolerance_from == "reference":
                reference = from_pretrained(earlier["teacher"]["model"], task=self.recipe.task).eval()
            calibration = task_rows(
                self.recipe.task,
                d.train,
                "train",
                self.tokenizer,
                self.recipe.max_length,
                d.doc_stride,
                config.calibration_samples,
                **columns,
            )[0]
            evaluate = evaluator(model, d.eval, self.tokenizer, self.recipe.max_length, d.doc_stride, **columns)
        path = export_model(
            model,
            folder / "model",
            self.tokenizer,
            config=config,
            length_config="model",
            max_length=self.recipe.max_length,
            doc_stride=d.doc_stride,
            calibration=calibration,
            evaluate=evaluate,
            reference_model=reference,
            extra=recorded,  # so that qla eval reads the columns training read
        )
        manifest = read_manifest(path).data
        return {
            "artifact": str(path),
            "backend": manifest["backend"],
            "precision": manifest["precision"],
            "build": manifest.get("build", {}),
        }

    def export(self, folder: Path, earlier: dict, resume: bool) -> dict:
        """The deliverable: the quantized artifact copied here, checked file by file against its sha256, loaded
        with ``qla_sdk.load`` and run on two dev inputs."""
        from qla_sdk.deploy import load
        from qla_sdk.deploy.artifact import ARTIFACT_MARKERS
        from qla_sdk.io import atomic_dir

        target = folder / "model"
        with atomic_dir(target, ARTIFACT_MARKERS, "an artifact") as tmp:
            shutil.copytree(earlier["quantize"]["artifact"], tmp, dirs_exist_ok=True)
        predictor = load(target, verify=True)
        examples = self._sample_inputs({"text_columns": predictor.manifest.text_columns})
        if self.recipe.task == "question-answering":
            predictions = [predictor.predict(question=q, context=c) for q, c in examples]
        else:
            predictions = predictor.predict([t if len(t) == 2 else t[0] for t in examples])
        return {
            "artifact": str(target),
            "backend": predictor.manifest.backend,
            "size_bytes": folder_bytes(target / "model"),
            "sample_inputs": [list(e) for e in examples],
            "sample_predictions": predictions,
        }

    def _sample_inputs(self, record: dict) -> list[tuple[str, ...]]:
        from qla_sdk.data import load_classification, load_squad
        from qla_sdk.data.columns import DevColumns

        d = self.recipe.data
        if self.recipe.task == "question-answering":
            return [(e.question, e.context) for e in load_squad(d.eval, "validation")[:2]]
        data = load_classification(d.eval, "validation", DevColumns.of(d.text_columns, None, record).text_columns, None)
        return data.texts[:2]

    def benchmark(self, folder: Path, earlier: dict, resume: bool) -> dict:
        from qla_sdk.recipe.measure import benchmark_models

        return benchmark_models(self.recipe, earlier, self.tokenizer, self.data, folder, self.progress)

    def report(self, folder: Path, earlier: dict, resume: bool) -> dict:
        from qla_sdk.recipe.report import write_report

        return write_report(self.recipe, earlier, folder, self.out_dir)


def _student_source(s) -> dict:
    if s.init_layers is not None:
        return {"teacher_layers": list(s.init_layers)}
    if s.shape is not None:
        return {"config": s.shape}
    return {"checkpoint": str(s.checkpoint)}
