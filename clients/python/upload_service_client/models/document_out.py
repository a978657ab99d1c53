from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TypeVar, cast

from attrs import define as _attrs_define
from attrs import field as _attrs_field

from ..models.document_out_status import DocumentOutStatus, check_document_out_status
from ..types import UNSET, Unset

if TYPE_CHECKING:
    from ..models.classification_out import ClassificationOut
    from ..models.document_error_out import DocumentErrorOut


T = TypeVar("T", bound="DocumentOut")


@_attrs_define
class DocumentOut:
    """A stored document and where its classification stands.

    Attributes:
        doc_id (str):
        status (DocumentOutStatus):
        filename (str):
        content_type (str):
        size_bytes (int):
        sha256 (str):
        storage_key (str):
        created_at (str):
        updated_at (str):
        classification (ClassificationOut | None | Unset):
        error (DocumentErrorOut | None | Unset):
    """

    doc_id: str
    status: DocumentOutStatus
    filename: str
    content_type: str
    size_bytes: int
    sha256: str
    storage_key: str
    created_at: str
    updated_at: str
    classification: ClassificationOut | None | Unset = UNSET
    error: DocumentErrorOut | None | Unset = UNSET
    additional_properties: dict[str, Any] = _attrs_field(init=False, factory=dict)

    def to_dict(self) -> dict[str, Any]:
        from ..models.classification_out import ClassificationOut  # noqa: PLC0415
        from ..models.document_error_out import DocumentErrorOut  # noqa: PLC0415

        doc_id = self.doc_id

        status: str = self.status

        filename = self.filename

        content_type = self.content_type

        size_bytes = self.size_bytes

        sha256 = self.sha256

        storage_key = self.storage_key

        created_at = self.created_at

        updated_at = self.updated_at

        classification: dict[str, Any] | None | Unset
        if isinstance(self.classification, Unset):
            classification = UNSET
        elif isinstance(self.classification, ClassificationOut):
            classification = self.classification.to_dict()
        else:
            classification = self.classification

        error: dict[str, Any] | None | Unset
        if isinstance(self.error, Unset):
            error = UNSET
        elif isinstance(self.error, DocumentErrorOut):
            error = self.error.to_dict()
        else:
            error = self.error

        field_dict: dict[str, Any] = {}
        field_dict.update(self.additional_properties)
        field_dict.update(
            {
                "doc_id": doc_id,
                "status": status,
                "filename": filename,
                "content_type": content_type,
                "size_bytes": size_bytes,
                "sha256": sha256,
                "storage_key": storage_key,
                "created_at": created_at,
                "updated_at": updated_at,
            }
        )
        if classification is not UNSET:
            field_dict["classification"] = classification
        if error is not UNSET:
            field_dict["error"] = error

        return field_dict

    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        from ..models.classification_out import ClassificationOut  # noqa: PLC0415
        from ..models.document_error_out import DocumentErrorOut  # noqa: PLC0415

        d = dict(src_dict)
        doc_id = d.pop("doc_id")

        status = check_document_out_status(d.pop("status"))

        filename = d.pop("filename")

        content_type = d.pop("content_type")

        size_bytes = d.pop("size_bytes")

        sha256 = d.pop("sha256")

        storage_key = d.pop("storage_key")

        created_at = d.pop("created_at")

        updated_at = d.pop("updated_at")

        def _parse_classification(data: object) -> ClassificationOut | None | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            try:
                if not isinstance(data, dict):
                    raise TypeError()
                classification_type_0 = ClassificationOut.from_dict(data)

                return classification_type_0
            except (TypeError, ValueError, AttributeError, KeyError):
                pass
            return cast(ClassificationOut | None | Unset, data)

        classification = _parse_classification(d.pop("classification", UNSET))

        def _parse_error(data: object) -> DocumentErrorOut | None | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            try:
                if not isinstance(data, dict):
                    raise TypeError()
                error_type_0 = DocumentErrorOut.from_dict(data)

                return error_type_0
            except (TypeError, ValueError, AttributeError, KeyError):
                pass
            return cast(DocumentErrorOut | None | Unset, data)

        error = _parse_error(d.pop("error", UNSET))

        document_out = cls(
            doc_id=doc_id,
            status=status,
            filename=filename,
            content_type=content_type,
            size_bytes=size_bytes,
            sha256=sha256,
            storage_key=storage_key,
            created_at=created_at,
            updated_at=updated_at,
            classification=classification,
            error=error,
        )

        document_out.additional_properties = d
        return document_out

    @property
    def additional_keys(self) -> list[str]:
        return list(self.additional_properties.keys())

    def __getitem__(self, key: str) -> Any:
        return self.additional_properties[key]

    def __setitem__(self, key: str, value: Any) -> None:
        self.additional_properties[key] = value

    def __delitem__(self, key: str) -> None:
        del self.additional_properties[key]

    def __contains__(self, key: str) -> bool:
        return key in self.additional_properties
