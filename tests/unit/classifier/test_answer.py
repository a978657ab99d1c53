"""A classifier's answer is checked where it enters: nothing outside the schema is ever built."""

from __future__ import annotations

import pytest

from upload_service.classifier.base import MAX_ANSWER_CHARS, Classification
from upload_service.errors import ClassifierAnswerInvalid, ClassifierFailed


@pytest.mark.parametrize(
    ("label", "confidence", "model_version", "complaint"),
    [
        ("invoice", 1.7, "m", "a confidence of 1.7, outside 0 to 1"),
        ("invoice", -0.01, "m", "a confidence of -0.01, outside 0 to 1"),
        ("invoice", float("nan"), "m", "a confidence of nan, outside 0 to 1"),
        ("invoice", float("inf"), "m", "a confidence of inf, outside 0 to 1"),
        ("invoice", True, "m", "a confidence that is not a number (bool)"),
        ("invoice", "0.5", "m", "a confidence that is not a number (3 characters: '0.5')"),
        ("", 0.5, "m", "an unusable label (0 characters: '')"),
        ("   ", 0.5, "m", "an unusable label"),
        ("in\nvoice", 0.5, "m", "an unusable label (8 characters: 'in\\nvoice')"),
        ("x" * (MAX_ANSWER_CHARS + 1), 0.5, "m", f"({MAX_ANSWER_CHARS + 1} characters"),
        (None, 0.5, "m", "an unusable label (NoneType)"),
        ("invoice", 0.5, "v" * (MAX_ANSWER_CHARS + 1), "an unusable model version"),
        ("invoice", 0.5, "v\x00", "an unusable model version"),
    ],
)
def test_an_answer_outside_the_schema_is_refused_in_words(
    label: object, confidence: object, model_version: object, complaint: str
) -> None:
    with pytest.raises(ClassifierAnswerInvalid) as refused:
        Classification(label, confidence, model_version)  # type: ignore[arg-type]
    assert refused.value.message.startswith("The classifier answered ")
    assert complaint in refused.value.message
    assert len(refused.value.message) < 200


def test_a_refused_answer_is_a_failed_attempt_not_a_rejected_document() -> None:
    # Counted and retried (a classifier may answer nonsense once), not failed at once.
    assert issubclass(ClassifierAnswerInvalid, ClassifierFailed)
    assert ClassifierAnswerInvalid.error_code == "CLASSIFICATION_FAILED"


@pytest.mark.parametrize(
    ("label", "confidence", "model_version"),
    [
        ("invoice", 0.0, ""),
        ("résumé", 1, "reference-keywords-1"),
        ("x" * MAX_ANSWER_CHARS, 0.5, "v" * MAX_ANSWER_CHARS),
    ],
)
def test_answers_within_the_schema_are_kept_as_they_came(
    label: str, confidence: float, model_version: str
) -> None:
    answer = Classification(label, confidence, model_version)
    assert (answer.label, answer.confidence, answer.model_version) == (
        label,
        confidence,
        model_version,
    )
