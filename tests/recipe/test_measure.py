"""recipe.measure: the final artifact is scored on the text its training read."""

from types import SimpleNamespace

import pytest
import yaml

from qla_sdk.recipe.config import load_recipe
from qla_sdk.recipe.measure import artifact_metric


class _Predictor:
    """Says "1" for a row whose text is "good": right on the review column, wrong on the one-word sentence column."""

    def __init__(self, recorded: tuple[str, ...] | None) -> None:
        self.labels = ["0", "1"]
        self.manifest = SimpleNamespace(text_columns=recorded)

    def predict(self, texts):
        return [{"label": "1" if text == "good" else "0"} for text in texts]


@pytest.mark.parametrize(
    "recipe_columns, recorded",
    [(["review"], None), (None, ("review",)), (["review"], ("sentence",))],
    ids=["named-by-the-recipe", "recorded-by-the-artifact", "the-recipe-wins"],
)
def test_the_artifact_is_scored_on_the_columns_training_read(tmp_path, recipe_columns, recorded):
    data = tmp_path / "dev.tsv"
    data.write_text("sentence\treview\tlabel\nok\tgood\t1\nok\tbad\t0\nok\tgood\t1\n")
    recipe = {
        "task": "text-classification",
        "data": {"train": str(data), "eval": str(data)} | ({"text_columns": recipe_columns} if recipe_columns else {}),
        "teacher": {"model": str(tmp_path)},
        "student": {"init_layers": [0]},
    }
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(recipe))
    assert artifact_metric(_Predictor(recorded), load_recipe(tmp_path / "r.yaml")) == 1.0
