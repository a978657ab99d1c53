from typing import Literal

DocumentOutStatus = Literal["complete", "failed", "processing", "queued"]

DOCUMENT_OUT_STATUS_VALUES: set[DocumentOutStatus] = {
    "complete",
    "failed",
    "processing",
    "queued",
}


def check_document_out_status(value: str) -> DocumentOutStatus:
    if value in DOCUMENT_OUT_STATUS_VALUES:
        return value
    raise TypeError(f"Unexpected value {value!r}. Expected one of {DOCUMENT_OUT_STATUS_VALUES!r}")
