"""Kubeflow's training operator jobs (kubeflow.org/v1: PyTorchJob, TFJob, XGBoostJob,
MPIJob, JAXJob, PaddleJob, MXJob) and Kubernetes' batch/v1 Job, run as local
processes through the compute backend."""
