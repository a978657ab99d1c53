"""The direct door: clients send bytes straight to S3 through presigned requests.

The service declares the upload (`declare`), signs part URLs and reports what S3 holds
(`parts`), then verifies what arrived before anything is recorded (`complete`); the rows of
uploads in flight live in `rows`. Nothing a client sends ever names a key.
"""
