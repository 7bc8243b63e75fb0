"""An exported classifier folder, laid out the way BirdNET-Analyzer 2.4 reads a custom classifier.

BirdNET finds the labels of ``<name>.tflite`` only as ``<name>_Labels.txt`` beside it. That file must hold one line,
the positive class: without it BirdNET reads the .tflite itself as labels (UnicodeDecodeError), and with a second
line (a non-event class) every audio file fails, because the binary head has one output. ``model_card.json`` and
``model_card.md`` describe how the classifier was chosen and how well it does; BirdNET ignores them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from hpc_radr.errors import HpcRadrError

LABELS_SUFFIX = "_Labels.txt"
CARD_JSON = "model_card.json"
CARD_MARKDOWN = "model_card.md"


class ClassifierError(HpcRadrError, ValueError):
    """A folder that BirdNET could not use as a custom classifier."""


@dataclass(frozen=True)
class Classifier:
    """A checked classifier folder; ``card`` is its model card, None when the folder has none."""

    folder: Path
    model: Path
    labels: Path
    positive_class: str
    card: dict | None


def labels_file(model: Path) -> Path:
    """Where BirdNET looks for the labels of ``model``."""
    return model.with_name(model.stem + LABELS_SUFFIX)


def open_classifier(folder: Path) -> Classifier:
    """Check ``folder`` holds one .tflite and its one-line labels file, without loading TensorFlow."""
    folder = folder.expanduser().absolute()
    if not folder.is_dir():
        raise ClassifierError(f"{folder}: no such classifier folder (pass the folder `hpc-radr export` wrote)")
    models = sorted(folder.glob("*.tflite"))
    if len(models) != 1:
        names = ", ".join(m.name for m in models)
        found = f"{len(models)} .tflite files ({names})" if models else "no .tflite file"
        raise ClassifierError(f"{folder}: {found}; a classifier folder holds exactly one")
    model = models[0]
    if str(model).count(".tflite") != 1:  # BirdNET finds the labels by replacing ".tflite" anywhere in the path
        raise ClassifierError(f"{model}: '.tflite' appears elsewhere in the path, where BirdNET would misread it")
    labels = labels_file(model)
    try:
        lines = labels.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise ClassifierError(f"{folder}: no labels file {labels.name} beside {model.name} "
                              "(BirdNET needs it: one line, the positive class)") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ClassifierError(f"{labels}: unreadable labels file ({err})") from None
    if len(lines) != 1 or not lines[0].strip():
        raise ClassifierError(f"{labels}: must hold exactly one line, the positive class (found {len(lines)} lines)")
    return Classifier(folder, model, labels, lines[0], _card(folder / CARD_JSON))  # BirdNET does not trim it


def _card(path: Path) -> dict | None:
    """The model card, if the folder has a readable one (it only informs: analysis works without it)."""
    try:
        card = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return card if isinstance(card, dict) else None
