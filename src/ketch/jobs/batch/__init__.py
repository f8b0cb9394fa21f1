"""Kubernetes' ``batch/v1`` ``Job`` (Katib's default trial kind): its spec
(:mod:`~ketch.jobs.batch.spec`), status (:mod:`~ketch.jobs.batch.status`), pods
(:mod:`~ketch.jobs.batch.pods`) and controller (:mod:`~ketch.jobs.batch.controller`)."""
