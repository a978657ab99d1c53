from typing import Literal

TaskOutStatus = Literal["failed", "queued", "running", "succeeded"]

TASK_OUT_STATUS_VALUES: set[TaskOutStatus] = {
    "failed",
    "queued",
    "running",
    "succeeded",
}


def check_task_out_status(value: str) -> TaskOutStatus:
    if value in TASK_OUT_STATUS_VALUES:
        return value
    raise TypeError(f"Unexpected value {value!r}. Expected one of {TASK_OUT_STATUS_VALUES!r}")
