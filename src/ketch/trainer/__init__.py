"""Kubeflow Trainer (``trainer.kubeflow.org/v1alpha1``): TrainJobs run as the plan
of their (Cluster)TrainingRuntime, and :class:`~ketch.trainer.client.TrainerClient`,
the Kubeflow SDK's client, against a Ketch server."""
