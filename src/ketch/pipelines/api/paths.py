"""Where the KFP v2beta1 API is served, and its routes that take a file upload (light
to import: the capability declares the uploads without loading the API)."""

from __future__ import annotations

PREFIX = "/apis/v2beta1"
#: Pipeline and pipeline version uploads: a package file as multipart form data.
UPLOAD_PIPELINE = f"{PREFIX}/pipelines/upload"
UPLOAD_VERSION = f"{PREFIX}/pipelines/upload_version"
UPLOADS = (UPLOAD_PIPELINE, UPLOAD_VERSION)
