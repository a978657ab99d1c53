"""The tus door: resumable uploads (tus 1.0.0) at `/v1/uploads/tus`, onto the one pipeline.

`protocol` reads and writes the tus headers; `db.uploads` keeps each upload's progress and lease
in the database; `service` is the state machine (create, HEAD, PATCH, DELETE, completion) over the
storage's partial objects, `completion` makes the document; `running_checks` lets consecutive
PATCHes served by one process keep one running type check and sha256. Expiry is the janitor's.
"""
