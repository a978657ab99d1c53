"""Contains all the data models used in inputs/outputs"""

from .batch_check_in import BatchCheckIn
from .batch_check_out import BatchCheckOut
from .batch_check_out_results import BatchCheckOutResults
from .classification_out import ClassificationOut
from .document_error_out import DocumentErrorOut
from .document_out import DocumentOut
from .document_out_status import DocumentOutStatus
from .document_page import DocumentPage
from .error_body import ErrorBody
from .error_body_details_type_0 import ErrorBodyDetailsType0
from .field_error import FieldError
from .list_documents_status_type_0 import ListDocumentsStatusType0
from .task_out import TaskOut
from .task_out_status import TaskOutStatus
from .upload_document_body import UploadDocumentBody
from .validation_error_body import ValidationErrorBody
from .validation_error_body_details_type_0 import ValidationErrorBodyDetailsType0

__all__ = (
    "BatchCheckIn",
    "BatchCheckOut",
    "BatchCheckOutResults",
    "ClassificationOut",
    "DocumentErrorOut",
    "DocumentOut",
    "DocumentOutStatus",
    "DocumentPage",
    "ErrorBody",
    "ErrorBodyDetailsType0",
    "FieldError",
    "ListDocumentsStatusType0",
    "TaskOut",
    "TaskOutStatus",
    "UploadDocumentBody",
    "ValidationErrorBody",
    "ValidationErrorBodyDetailsType0",
)
