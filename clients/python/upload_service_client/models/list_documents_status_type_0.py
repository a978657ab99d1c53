from typing import Literal

ListDocumentsStatusType0 = Literal["complete", "failed", "processing", "queued"]

LIST_DOCUMENTS_STATUS_TYPE_0_VALUES: set[ListDocumentsStatusType0] = {
    "complete",
    "failed",
    "processing",
    "queued",
}


def check_list_documents_status_type_0(value: str) -> ListDocumentsStatusType0:
    if value in LIST_DOCUMENTS_STATUS_TYPE_0_VALUES:
        return value
    raise TypeError(f"Unexpected value {value!r}. Expected one of {LIST_DOCUMENTS_STATUS_TYPE_0_VALUES!r}")
