"""Users, sign-in, profiles, contributors and roles (Kubeflow's multi-user model):
the implementation of :mod:`ketch.core.access`."""
