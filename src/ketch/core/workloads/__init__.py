"""Workloads run as local processes through the compute backend, shared by the
capabilities that run them (kubeflow.org/v1 jobs, batch/v1 Jobs, TrainJobs):

- :mod:`~ketch.core.workloads.pods`: the typed Kubernetes pod template (containers,
  env, ports, resources) with Kubernetes' field names;
- :mod:`~ketch.core.workloads.containers`: a container as a ProcessSpec (where its
  command is found, its env and limits), what it asks of the machine, GPU warnings;
- :mod:`~ketch.core.workloads.backoff`: the kubelet's crash-loop back-off;
- :mod:`~ketch.core.workloads.processes`: following and stopping the processes a
  controller started, and the folder of an object's logs;
- :mod:`~ketch.core.workloads.gang`: a job as a gang of replicas (replica specs,
  run policy, what runs for it);
- :mod:`~ketch.core.workloads.controller`: the controller loop of a gang (admission,
  stages, restarts, deadline, suspend, TTL, elastic scaling);
- :mod:`~ketch.core.workloads.rsh`: the remote shell a launcher (``mpirun``) starts
  processes "on" a replica's host with.
"""
