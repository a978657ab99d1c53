from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar, cast

from attrs import define as _attrs_define
from attrs import field as _attrs_field

from ..models.task_out_status import TaskOutStatus, check_task_out_status

T = TypeVar("T", bound="TaskOut")


@_attrs_define
class TaskOut:
    """A background task (a classification, for clients) and where it stands.

    Attributes:
        task_id (str):
        doc_id (None | str):
        kind (str):
        status (TaskOutStatus):
        attempts (int):
        last_error (None | str):
        created_at (str):
        updated_at (str):
    """

    task_id: str
    doc_id: None | str
    kind: str
    status: TaskOutStatus
    attempts: int
    last_error: None | str
    created_at: str
    updated_at: str
    additional_properties: dict[str, Any] = _attrs_field(init=False, factory=dict)

    def to_dict(self) -> dict[str, Any]:
        task_id = self.task_id

        doc_id: None | str
        doc_id = self.doc_id

        kind = self.kind

        status: str = self.status

        attempts = self.attempts

        last_error: None | str
        last_error = self.last_error

        created_at = self.created_at

        updated_at = self.updated_at

        field_dict: dict[str, Any] = {}
        field_dict.update(self.additional_properties)
        field_dict.update(
            {
                "task_id": task_id,
                "doc_id": doc_id,
                "kind": kind,
                "status": status,
                "attempts": attempts,
                "last_error": last_error,
                "created_at": created_at,
                "updated_at": updated_at,
            }
        )

        return field_dict

    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        d = dict(src_dict)
        task_id = d.pop("task_id")

        def _parse_doc_id(data: object) -> None | str:
            if data is None:
                return data
            return cast(None | str, data)

        doc_id = _parse_doc_id(d.pop("doc_id"))

        kind = d.pop("kind")

        status = check_task_out_status(d.pop("status"))

        attempts = d.pop("attempts")

        def _parse_last_error(data: object) -> None | str:
            if data is None:
                return data
            return cast(None | str, data)

        last_error = _parse_last_error(d.pop("last_error"))

        created_at = d.pop("created_at")

        updated_at = d.pop("updated_at")

        task_out = cls(
            task_id=task_id,
            doc_id=doc_id,
            kind=kind,
            status=status,
            attempts=attempts,
            last_error=last_error,
            created_at=created_at,
            updated_at=updated_at,
        )

        task_out.additional_properties = d
        return task_out

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
