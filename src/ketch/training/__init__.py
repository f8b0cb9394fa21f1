"""Kubeflow training jobs (kubeflow.org/v1): PyTorchJob, TFJob, XGBoostJob, MPIJob,
JAXJob and PaddleJob, run as local processes through the compute backend."""
