"""The pipelines capability's HTTP routes.

The KFP REST API v2beta1, so ``kfp.Client(host=KETCH_URL)`` works unchanged, one
module per KFP resource (all under ``/apis/v2beta1``): :mod:`.healthz`;
:mod:`.pipelines` (upload, create, create with a version, get, get by name, list,
delete) and :mod:`.versions`; :mod:`.experiments` (create, get, list, delete,
archive, unarchive); :mod:`.runs` (create, get, list, terminate, retry, archive,
unarchive, delete) and :mod:`.artifacts` (read a run's output artifact);
:mod:`.recurring` (create, get, list, delete, enable, disable).

And what ``PipelineRun`` (pipelines.ketch.dev/v1) has beside the generic resource
routes: :mod:`.pipelineruns` (cancel, retry) and :mod:`.logs`. :mod:`.routers`
assembles them for the capability.

Every route declares who may call it (:mod:`.access`): the KFP routes as Kubeflow
Pipelines authorizes them in multi-user mode (experiments, runs and recurring runs
belong to a namespace, pipelines are shared or namespaced), the PipelineRun routes
as Kubernetes reads their paths.
"""
